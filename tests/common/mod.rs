//! Shared test harness: the GPU context (with the skip/require policy), seeded data, and
//! comparisons that report where and by how much two results differ.
#![allow(dead_code)]

use pollster::FutureExt as _;
use std::sync::{Arc, OnceLock};

use linvt::gpu::{GpuContext, GpuOptions};

/// The shared GPU context, or None when the machine has no adapter. Without an adapter a test
/// says it is skipped; with `LINVT_REQUIRE_GPU=1` it fails instead (CI sets it). libtest has
/// no run-time "ignored", and it captures what tests print, so the notice goes straight to the
/// terminal's stderr, naming the test: `cargo test` shows one `SKIPPED` line per GPU test.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        GpuContext::new_blocking(&GpuOptions::from_env()).map_err(|e| e.to_string())
    });
    match ctx {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            if std::env::var("LINVT_REQUIRE_GPU")
                .map(|v| v == "1")
                .unwrap_or(false)
            {
                panic!("LINVT_REQUIRE_GPU=1 but no GPU adapter is usable: {e}");
            }
            use std::io::Write;
            let test = std::thread::current()
                .name()
                .unwrap_or("a GPU test")
                .to_string();
            static WHY: std::sync::Once = std::sync::Once::new();
            WHY.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "no GPU adapter, the GPU tests of this binary are SKIPPED (LINVT_REQUIRE_GPU=1 makes them fail): {e}"
                );
            });
            // Once per test, however often it asks.
            static TOLD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
            let mut told = TOLD.lock().unwrap_or_else(|e| e.into_inner());
            if !told.contains(&test) {
                let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no GPU adapter");
                told.push(test);
            }
            None
        }
    }
}

/// Seeded uniform values in [-scale, scale).
pub fn rand_vec(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    linvt::rand::SeededRng::new(seed).vec(n, scale)
}

/// Asserts |got - want| ≤ atol + rtol·|want| everywhere, naming the first offending element.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs expected {}",
        got.len(),
        want.len()
    );
    let mut worst = (0usize, 0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(g.is_finite(), "{what}: element {i} is {g}");
        if err > atol + rtol * w.abs() {
            panic!("{what}: element {i} is {g}, expected {w} (|diff| {err} > atol {atol} + rtol {rtol}·|want|)");
        }
        if err > worst.1 {
            worst = (i, err);
        }
    }
    eprintln!("{what}: max |diff| {:.3e} at {}", worst.1, worst.0);
}

/// Writes a copy of the safetensors file `src` to `dst` with every f32 tensor rounded to bf16,
/// as the released checkpoints are stored.
#[allow(dead_code)] // not every test binary uses it
pub fn write_bf16_copy(src: &std::path::Path, dst: &std::path::Path) {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let converted: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| match v.dtype() {
            Dtype::F32 => {
                let data = bytemuck::pod_collect_to_vec::<u8, f32>(v.data())
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect();
                (name, Dtype::BF16, v.shape().to_vec(), data)
            }
            d => (name, d, v.shape().to_vec(), v.data().to_vec()),
        })
        .collect();
    let views = converted
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
    let metadata = st_metadata(&bytes);
    safetensors::serialize_to_file(views, metadata, dst).unwrap();
}

/// The string metadata (`__metadata__`) of a safetensors file's bytes.
fn st_metadata(bytes: &[u8]) -> Option<std::collections::HashMap<String, String>> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone()
}

/// The tiny LinVT-InternVL2 model directory (tests/fixtures/tiny-internvl2).
#[allow(dead_code)]
pub fn tiny_fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-internvl2")
}

/// Writes f32 tensors (name, shape, values) and string metadata as a safetensors file.
#[allow(dead_code)]
pub fn write_f32_safetensors(
    path: &std::path::Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: Option<std::collections::HashMap<String, String>>,
) {
    use safetensors::tensor::TensorView;
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, v)| {
            let view = TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(v));
            (n.clone(), view.unwrap())
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, metadata).unwrap()).unwrap();
}

/// A copy of the tiny model (under the system temp dir, named after `name`) with its weights
/// rewritten by `map` ((name, shape, f32 values) → new tensors, visited in sorted key order)
/// and its config edited.
#[allow(dead_code)]
pub fn tiny_variant(
    name: &str,
    map: impl Fn(&str, &[usize], Vec<f32>) -> Vec<(String, Vec<usize>, Vec<f32>)>,
    config: impl FnOnce(&mut serde_json::Value),
) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("linvt-vlm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for f in ["tokenizer.json", "generation_config.json"] {
        std::fs::copy(tiny_fixture().join(f), d.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_fixture().join("config.json")).unwrap())
            .unwrap();
    config(&mut cfg);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let store =
        linvt::weights::TensorStore::open(&tiny_fixture().join("model.safetensors")).unwrap();
    let mut keys: Vec<String> = store.keys().map(str::to_string).collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let t = store.get(&k).unwrap().unwrap();
        out.extend(map(&k, t.shape(), t.data().to_vec()));
    }
    write_f32_safetensors(&d.join("model.safetensors"), &out, None);
    d
}

/// The tiny model's golden clip (6 frames of 56×56 from golden_e2e.safetensors), its question
/// and the released code's greedy ids for it.
pub fn tiny_golden_clip() -> (Vec<linvt::vlm::preprocess::Frame>, String, Vec<u32>) {
    use linvt::vlm::preprocess::Frame;
    let path = tiny_fixture().join("golden_e2e.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let frames = st
        .tensor("input.frames_u8")
        .unwrap()
        .data()
        .chunks(56 * 56 * 3)
        .map(|c| Frame::new(56, 56, c.to_vec()).unwrap())
        .collect();
    let store = linvt::weights::TensorStore::open(&path).unwrap();
    let question = store.metadata()["question"].clone();
    let (_, ids) = store.get_i64("output.greedy_ids").unwrap().unwrap();
    (
        frames,
        question,
        ids.into_iter().map(|v| v as u32).collect(),
    )
}

/// The ffmpeg on PATH, or None: a test that needs it then prints a skip notice; with
/// `LINVT_REQUIRE_FFMPEG` set (CI sets it) it fails instead.
pub fn ffmpeg() -> Option<std::path::PathBuf> {
    let found = linvt::vlm::video::find_program("ffmpeg");
    if found.is_none() {
        assert!(
            std::env::var_os("LINVT_REQUIRE_FFMPEG").is_none(),
            "LINVT_REQUIRE_FFMPEG is set but ffmpeg is not on PATH"
        );
        eprintln!("SKIPPED (no ffmpeg on PATH; `apt-get install ffmpeg` runs this test)");
    }
    found
}

/// The uint8 frames of tensor `key` in the safetensors file `path`: (n, h, w, 3), or one
/// (h, w, 3) image.
pub fn u8_frames(path: &std::path::Path, key: &str) -> Vec<linvt::vlm::preprocess::Frame> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(key).unwrap();
    let s = t.shape();
    let (h, w) = (s[s.len() - 3], s[s.len() - 2]);
    t.data()
        .chunks(h * w * 3)
        .map(|c| linvt::vlm::preprocess::Frame::new(w, h, c.to_vec()).unwrap())
        .collect()
}

/// Six 56×56 frames of a bright bar moving over a gradient.
pub fn moving_bar_clip() -> linvt::vlm::model::Visual {
    use linvt::vlm::preprocess::Frame;
    let frames: Vec<Frame> = (0..6)
        .map(|t| {
            let rgb = (0..56 * 56 * 3usize)
                .map(|i| {
                    let (x, c) = ((i / 3) % 56, i % 3);
                    if x.abs_diff(10 + 5 * t) < 5 {
                        255
                    } else {
                        ((x * 4 + c * 60) % 256) as u8
                    }
                })
                .collect();
            Frame::new(56, 56, rgb).unwrap()
        })
        .collect();
    linvt::vlm::model::Visual::Video(frames)
}

/// Greedy token ids of `m` answering "What moves?" about [`moving_bar_clip`].
pub fn greedy_moving_bar(m: &mut linvt::vlm::model::VideoLlm, max_new_tokens: usize) -> Vec<u32> {
    let opts = linvt::vlm::model::AskOptions {
        max_new_tokens,
        ..Default::default()
    };
    m.ask(
        &moving_bar_clip(),
        "What moves?",
        &opts,
        &mut |_| {},
        &mut |_| {},
    )
    .block_on()
    .unwrap()
    .token_ids
}

/// x·wᵀ (+ bias) with an explicit linear `tuning`, recorded, submitted and read back as (m, n).
pub fn product_tuned(
    ctx: &GpuContext,
    x: &linvt::gpu::GpuTensor,
    w: &linvt::gpu::GpuTensor,
    bias: Option<&linvt::gpu::GpuTensor>,
    tuning: linvt::gpu::linear::Tuning,
) -> Vec<f32> {
    let pool = linvt::gpu::BufferPool::default();
    let mut rec = linvt::gpu::Recorder::new(ctx, &pool);
    let y = rec.alloc("y", &[x.rows(), w.rows()]).unwrap();
    linvt::gpu::linear::linear_into_tuned(&mut rec, x, w, bias, &y, tuning).unwrap();
    rec.submit().unwrap();
    ctx.read_f32(&y).unwrap()
}

/// The matrix-vector kernel for every one-row product, `lanes` invocations wide, splitting K
/// for weights of up to `split_k_max_rows` rows (0: the lanes always own rows).
pub fn gemv_tuning(lanes: u32, split_k_max_rows: u32) -> linvt::gpu::linear::Tuning {
    use linvt::gpu::linear::{GemvUse, Tuning};
    Tuning {
        gemv: GemvUse::Always,
        gemv_lanes: lanes,
        gemv_split_k_max_rows: split_k_max_rows,
        ..Tuning::CPU
    }
}
