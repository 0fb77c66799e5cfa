//! The tiny LinVT-InternVL2 model (tests/fixtures/tiny-internvl2: random weights, 436,001
//! parameters, ~1.8 MiB) embedded in the binary, so `linvt demo` works from any directory and
//! from an installed binary. The loaders read model directories, so the files are written to a
//! private temporary directory that is removed when the handle drops.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// The tiny model's byte-level BPE tokenizer (also the base of `synth`'s stand-in tokenizers).
pub const TOKENIZER_JSON: &[u8] =
    include_bytes!("../../tests/fixtures/tiny-internvl2/tokenizer.json");

/// (file name, contents): what a model directory needs (the golden outputs are left out).
const FILES: &[(&str, &[u8])] = &[
    (
        "config.json",
        include_bytes!("../../tests/fixtures/tiny-internvl2/config.json"),
    ),
    (
        "generation_config.json",
        include_bytes!("../../tests/fixtures/tiny-internvl2/generation_config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../../tests/fixtures/tiny-internvl2/model.safetensors"),
    ),
    ("tokenizer.json", TOKENIZER_JSON),
    (
        "tokenizer_config.json",
        include_bytes!("../../tests/fixtures/tiny-internvl2/tokenizer_config.json"),
    ),
];

/// The embedded model written out as a model directory; deleted on drop.
pub struct TinyModelDir {
    path: PathBuf,
}

impl TinyModelDir {
    /// Writes the model into a fresh directory under the system temporary directory.
    pub fn write() -> Result<Self> {
        // Process id + a counter: several handles (threads, tests) never share a directory.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("linvt-tiny-internvl2-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        // Owned from here on, so a failed write still cleans up.
        let dir = TinyModelDir { path };
        for (name, bytes) in FILES {
            let p = dir.path.join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TinyModelDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Parameters of the embedded model (its README's count), for the demo's banner.
pub const PARAMETERS: usize = 436_001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_opens_and_is_removed_on_drop() {
        let dir = TinyModelDir::write().unwrap();
        let path = dir.path().to_path_buf();
        let (cfg, store) = crate::vlm::model::open_model_dir(&path).unwrap();
        assert_eq!(cfg.num_video_query_token, Some(8));
        let params: usize = store
            .keys()
            .map(|k| store.get(k).unwrap().unwrap().len())
            .sum();
        assert_eq!(params, PARAMETERS);
        drop(dir);
        assert!(!path.exists());
    }
}
