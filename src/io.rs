//! The `linvt condense` file formats (safetensors in, safetensors out).
//!
//! Input: `input.video` (T, N, C) or (1, T, N, C) and `input.text` (L, C) or (1, L, C), in F32,
//! F16 or BF16. Output: `output` (Q', C) F32, `selected_indices` (k) I64 (flat t·N + n, in the
//! preset's order), `scores` (T·N) F32; metadata: preset, backend, adapter, k, k_requested.

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::config::LinvtConfig;
use crate::error::{Error, Result};
use crate::linvt::Condensed;
use crate::tensor::Tensor;
use crate::weights::TensorStore;

/// Reads `input.video` and `input.text` from a store.
pub fn condense_inputs(store: &TensorStore) -> Result<(Tensor, Tensor)> {
    let get = |key: &str| {
        store.get(key)?.ok_or_else(|| Error::MissingTensor {
            key: key.into(),
            source_name: format!(
                "{} (the input file needs `input.video` and `input.text`)",
                store.name()
            ),
        })
    };
    Ok((get("input.video")?, get("input.text")?))
}

fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>> {
    TensorView::new(dtype, shape, data)
        .map_err(|e| Error::input(format!("cannot write output: {e}")))
}

/// The output file's bytes.
pub fn condense_output_bytes(c: &Condensed, cfg: &LinvtConfig) -> Result<Vec<u8>> {
    let out: Vec<u8> = bytemuck::cast_slice(c.output.data()).to_vec();
    let idx: Vec<u8> = c
        .selected_indices
        .iter()
        .flat_map(|&i| (i as i64).to_le_bytes())
        .collect();
    let scores: Vec<u8> = bytemuck::cast_slice(&c.scores).to_vec();
    let tensors = vec![
        ("output", view(Dtype::F32, c.output.shape().to_vec(), &out)?),
        (
            "selected_indices",
            view(Dtype::I64, vec![c.selected_indices.len()], &idx)?,
        ),
        ("scores", view(Dtype::F32, vec![c.scores.len()], &scores)?),
    ];
    let meta: HashMap<String, String> = [
        ("preset", cfg.preset.to_string()),
        (
            "backend",
            match c.device {
                crate::Device::Cpu => "cpu".to_string(),
                crate::Device::Gpu => "gpu".to_string(),
            },
        ),
        ("adapter", c.adapter.clone()),
        ("k", c.k.to_string()),
        ("k_requested", c.k_requested.to_string()),
        (
            "linvt_config",
            serde_json::to_string(cfg).unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes = safetensors::serialize(tensors, Some(meta))
        .map_err(|e| Error::input(format!("cannot write output: {e}")))?;
    canonical_safetensors(bytes)
}

/// The same safetensors file with its JSON header written in sorted key order (the
/// `safetensors` crate writes the metadata map in hash order, so identical content would give
/// different bytes run to run), padded with spaces to 8 bytes as the format asks.
pub fn canonical_safetensors(bytes: Vec<u8>) -> Result<Vec<u8>> {
    use std::collections::BTreeMap;
    let bad = |what: &str| Error::input(format!("cannot write output: {what}"));
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .ok_or_else(|| bad("no header"))?;
    let header = bytes.get(8..8 + n).ok_or_else(|| bad("short header"))?;
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
    if let Some(meta) = entries.get_mut("__metadata__") {
        // Rebuilt as a BTreeMap: a `serde_json::Map` may keep the parsed (hash) order.
        let sorted: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(meta.clone()).map_err(|e| bad(&e.to_string()))?;
        *meta = serde_json::to_value(sorted).map_err(|e| bad(&e.to_string()))?;
    }
    let mut json = serde_json::to_vec(&entries).map_err(|e| bad(&e.to_string()))?;
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - 8 - n);
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    out.extend(&bytes[8 + n..]);
    Ok(out)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn write_condense_output(path: &Path, c: &Condensed, cfg: &LinvtConfig) -> Result<()> {
    write_atomic(path, &condense_output_bytes(c, cfg)?)
}

/// Writes `bytes` to `path` so that a failure part way leaves any previous file intact: into a
/// temporary file in the same directory, synced, then renamed over `path`. A path that exists
/// and is not a regular file (`/dev/null`, a pipe) is written directly.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() && !path.is_file() {
        return std::fs::write(path, bytes).map_err(werr);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(werr(e));
    }
    Ok(())
}

/// Checks, before any work, that `path` can be written as an output: not a directory, in a
/// directory that exists and takes new files, and not one of `inputs` (which writing would
/// destroy).
#[cfg(not(target_arch = "wasm32"))]
pub fn check_output_path(path: &Path, inputs: &[&Path]) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::input(format!(
            "cannot write {}: {why}",
            path.display()
        )))
    };
    if path.is_dir() {
        return refuse("it is a directory; name a file".into());
    }
    if let Ok(out) = path.canonicalize() {
        for input in inputs {
            if input.canonicalize().is_ok_and(|i| i == out) {
                return refuse(format!(
                    "it is the input {}; writing would destroy it: choose another output",
                    input.display()
                ));
            }
        }
    }
    if path.exists() && !path.is_file() {
        return Ok(()); // a device or pipe: written directly
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return refuse(format!("the directory {} does not exist", dir.display()));
    }
    let probe = dir.join(format!(".linvt-probe.{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => refuse(format!(
            "the directory {} does not take new files ({e})",
            dir.display()
        )),
    }
}
