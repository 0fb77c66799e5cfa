//! A stable-toolchain fuzzing harness for every parser of untrusted bytes: safetensors files
//! (header, offsets, dtypes), `config.json` of every host, `tokenizer.json`, images, and the
//! user's `--config` JSON. Each target mutates a corpus seeded from the fixtures (byte flips,
//! insertions, deletions, splices, and for JSON, values swapped for hostile ones) and requires
//! that the parser returns — `Ok` or `Err` — without panicking. A panicking input is written to
//! `target/fuzz-findings/` and fails the test.
//!
//! CI runs a short pass (`LINVT_FUZZ_ITERS`, default 200 per target, a few seconds). The long
//! run, documented in the README:
//!
//!     LINVT_FUZZ_ITERS=200000 LINVT_FUZZ_SEED=$RANDOM cargo test --release --test fuzz -- --nocapture

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use linvt::rand::SeededRng;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn iters() -> usize {
    std::env::var("LINVT_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn seed() -> u64 {
    std::env::var("LINVT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn below(rng: &mut SeededRng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// One random mutation of `input` (a few stacked edits).
fn mutate(input: &[u8], corpus: &[Vec<u8>], rng: &mut SeededRng) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + below(rng, 4) {
        let at = below(rng, b.len() + 1);
        match below(rng, 6) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << below(rng, 8);
            }
            1 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = [0, 0xff, b'"', b'{', b'9', b'-'][below(rng, 6)];
            }
            2 => {
                let n = 1 + below(rng, 8);
                b.splice(at..at, (0..n).map(|_| below(rng, 256) as u8));
            }
            3 if at < b.len() => {
                let end = (at + 1 + below(rng, 16)).min(b.len());
                b.drain(at..end);
            }
            4 => {
                let other = &corpus[below(rng, corpus.len())];
                let from = below(rng, other.len());
                let n = below(rng, 64).min(other.len() - from);
                b.splice(at..at, other[from..from + n].iter().copied());
            }
            _ => b.truncate(at),
        }
    }
    b
}

/// Hostile values for JSON numbers and strings.
const HOSTILE: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "4294967296",
    "18446744073709551615",
    "0.5",
    "null",
    "\"\"",
    "[]",
    "{}",
    "true",
    "1e-308",
    "65536",
];

/// `text` with one JSON value (number, string, bool, null) replaced by a hostile one.
fn mutate_json_value(text: &str, rng: &mut SeededRng) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_string();
    };
    let mut leaves = Vec::new();
    collect_leaves(&v, String::new(), &mut leaves);
    if leaves.is_empty() {
        return text.to_string();
    }
    let path = &leaves[below(rng, leaves.len())];
    let replacement: serde_json::Value =
        serde_json::from_str(HOSTILE[below(rng, HOSTILE.len())]).expect("valid JSON");
    if let Some(slot) = v.pointer_mut(path) {
        *slot = replacement;
    }
    v.to_string()
}

fn collect_leaves(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                collect_leaves(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(64) {
                collect_leaves(x, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

/// Runs `parse` on `iters()` mutations of the corpus; a panic is a finding.
fn fuzz(name: &str, corpus: Vec<Vec<u8>>, json: bool, parse: impl Fn(&[u8])) {
    let mut rng = SeededRng::new(seed() ^ name.len() as u64);
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut finding = None;
    for i in 0..iters() {
        let base = &corpus[i % corpus.len()];
        let input = if json && rng.next_u64().is_multiple_of(2) {
            mutate_json_value(&String::from_utf8_lossy(base), &mut rng).into_bytes()
        } else {
            mutate(base, &corpus, &mut rng)
        };
        if catch_unwind(AssertUnwindSafe(|| parse(&input))).is_err() {
            finding = Some((i, input));
            break;
        }
    }
    std::panic::set_hook(quiet);
    if let Some((i, input)) = finding {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-findings");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{}-{i}", seed()));
        std::fs::write(&path, &input).unwrap();
        // Re-run with the default hook so the panic message shows.
        parse(&input);
        panic!("{name}: input {i} panicked; saved to {}", path.display());
    }
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap()
}

#[test]
fn safetensors_files_never_panic() {
    let corpus = vec![
        read("case_small.safetensors"),
        read("tiny-internvl2/model.safetensors"),
        read("qwen2vl-tiny/qwen2vl/golden.safetensors")[..4096].to_vec(),
    ];
    fuzz("safetensors", corpus, false, |bytes| {
        if let Ok(f) = linvt::weights::SafetensorsFile::from_bytes("fuzz", bytes.to_vec()) {
            let store = linvt::weights::TensorStore::from_files("fuzz", vec![f], None);
            let keys: Vec<String> = store.keys().map(str::to_string).collect();
            for k in keys {
                let _ = store.get(&k);
                let _ = store.get_i64(&k);
            }
        }
    });
}

#[test]
fn model_configs_never_panic() {
    let corpus = [
        "tiny-internvl2/config.json",
        "internvl-hf-tiny/config.json",
        "internvl-hf-tiny/remote/config.json",
        "internvl-hf-tiny/phi3/config.json",
        "internvl-hf-tiny/llama/remote/config.json",
        "qwen2vl-tiny/qwen2vl/config.json",
        "qwen2vl-tiny/qwen25vl/config.json",
    ]
    .iter()
    .map(|p| read(p))
    .collect();
    let pre: serde_json::Value =
        serde_json::from_slice(&read("qwen2vl-tiny/qwen2vl/preprocessor_config.json")).unwrap();
    fuzz("config", corpus, true, |bytes| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
            let _ = linvt::vlm::config::VlmConfig::from_json(&v, vec![], Some(&pre));
            let _ = linvt::vlm::config::VlmConfig::from_json(&v, vec![], None);
        }
    });
}

#[test]
fn processor_configs_never_panic() {
    let corpus = vec![
        read("qwen2vl-tiny/qwen2vl/preprocessor_config.json"),
        read("qwen2vl-tiny/qwen25vl/video_preprocessor_config.json"),
    ];
    fuzz("processor", corpus, true, |bytes| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Ok(p) =
                linvt::vlm::qwen2_vl_preprocess::Qwen2Processor::from_json(Some(&v), Some(&v))
            {
                let _ = linvt::vlm::qwen2_vl_preprocess::smart_resize(
                    90,
                    130,
                    28,
                    p.min_pixels,
                    p.max_pixels,
                );
            }
        }
    });
}

#[test]
fn user_linvt_configs_never_panic() {
    let corpus = vec![
        br#"{"preset": "official", "top_k": 64, "num_heads": 4}"#.to_vec(),
        br#"{"preset": "paper", "multi_scale": "multi-c", "queries_per_scale": [32, 16, 16], "pool_scales": [1, 2, 4]}"#.to_vec(),
    ];
    fuzz("linvt-config", corpus, true, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(p) = linvt::ConfigPatch::from_user_json(&text, "fuzz") {
            let _ = linvt::ConfigPatch {
                embed_size: Some(64),
                ..Default::default()
            }
            .over(&p)
            .resolve();
        }
    });
}

#[test]
fn tokenizer_files_never_panic() {
    let corpus = [read("tiny-internvl2/tokenizer.json")];
    // The tokenizer is large: a tenth of the iterations, each also encoding a prompt.
    let n = (iters() / 10).max(5);
    let mut rng = SeededRng::new(seed());
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..n {
        let input = mutate_json_value(&String::from_utf8_lossy(&corpus[0]), &mut rng);
        let ok = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(t) = tokenizers::Tokenizer::from_bytes(input.as_bytes()) {
                let _ = t.encode("<|im_start|>user\n<IMG_CONTEXT> what?", true);
            }
        }));
        if ok.is_err() {
            std::panic::set_hook(quiet);
            panic!("tokenizer input {i} panicked");
        }
    }
    std::panic::set_hook(quiet);
}

#[test]
fn images_never_panic() {
    let mut png = Vec::new();
    image::RgbImage::from_fn(13, 7, |x, y| image::Rgb([x as u8 * 9, y as u8 * 30, 77]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut jpg = Vec::new();
    image::RgbImage::from_fn(16, 9, |x, y| image::Rgb([x as u8 * 9, y as u8 * 20, 7]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let dir = std::env::temp_dir().join(format!("linvt-fuzz-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.png");
    fuzz("image", vec![png, jpg], false, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        if let Ok(f) = linvt::vlm::video::load_image(&path) {
            let _ = linvt::vlm::preprocess::pixel_values(&[f], 28);
        }
    });
    let _ = std::fs::remove_dir_all(dir);
}
