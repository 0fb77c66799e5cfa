//! Every failure a user can cause is a clear `Error`, never a panic. Each case asserts the
//! variant and that the message names what is wrong.

mod common;

use linvt::config::{LinvtConfig, Preset};
use linvt::gpu::{GpuContext, GpuOptions};
use linvt::linvt::LinvtParams;
use linvt::weights::TensorStore;
use linvt::{CondenseOptions, ConfigPatch, Device, Error, Linvt, Tensor};

const E: usize = 16;

fn cfg() -> LinvtConfig {
    let mut c = LinvtConfig::preset(Preset::Official, E);
    c.num_heads = 2;
    c.num_layers = 1;
    c.top_k = 8;
    c
}

fn model() -> Linvt {
    let c = cfg();
    Linvt::new(c.clone(), LinvtParams::seeded(&c, 4, 3)).unwrap()
}

fn video(t: usize, n: usize, c: usize) -> Tensor {
    Tensor::new(
        vec![t, n, c],
        linvt::rand::SeededRng::new(1).vec(t * n * c, 1.0),
    )
    .unwrap()
}
fn text(l: usize, c: usize) -> Tensor {
    Tensor::new(vec![l, c], linvt::rand::SeededRng::new(2).vec(l * c, 1.0)).unwrap()
}

fn cpu_err(m: &Linvt, v: &Tensor, t: &Tensor) -> Error {
    m.condense(Device::Cpu, v, t, &CondenseOptions::default())
        .expect_err("must fail")
}

#[track_caller]
fn says(e: &Error, words: &[&str]) {
    let msg = e.to_string();
    for w in words {
        assert!(msg.contains(w), "message `{msg}` should mention `{w}`");
    }
}

#[test]
fn empty_video_is_rejected() {
    let m = model();
    says(
        &cpu_err(&m, &video(0, 4, E), &text(3, E)),
        &["empty", "T = 0"],
    );
    says(
        &cpu_err(&m, &video(2, 0, E), &text(3, E)),
        &["empty", "N = 0"],
    );
}

#[test]
fn width_mismatch_is_rejected() {
    let m = model();
    says(
        &cpu_err(&m, &video(2, 4, E + 1), &text(3, E)),
        &["C = 17", "embed_size is 16"],
    );
    says(
        &cpu_err(&m, &video(2, 4, E), &text(3, E - 1)),
        &["width 15", "16"],
    );
}

#[test]
fn wrong_rank_is_rejected() {
    let m = model();
    let flat = Tensor::new(vec![8 * E], vec![0.0; 8 * E]).unwrap();
    says(&cpu_err(&m, &flat, &text(3, E)), &["(T, N, C)", "[128]"]);
}

#[test]
fn heads_must_divide_width() {
    let mut c = cfg();
    c.num_heads = 3;
    let e = c.validate().unwrap_err();
    assert!(matches!(e, Error::Config(_)));
    says(&e, &["not divisible by num_heads 3"]);
}

#[test]
fn empty_text_is_rejected() {
    says(
        &cpu_err(&model(), &video(2, 4, E), &text(0, E)),
        &["text is empty"],
    );
}

#[test]
fn non_finite_tokens_are_rejected_with_their_position() {
    let m = model();
    let mut v = video(2, 4, E);
    v.data_mut()[(4 + 3) * E + 5] = f32::NAN; // frame 1, token 3, channel 5
    let e = cpu_err(&m, &v, &text(3, E));
    assert!(matches!(e, Error::NonFinite { .. }));
    says(&e, &["video tokens", "frame 1, token 3, channel 5"]);
    let mut t = text(3, E);
    t.data_mut()[E + 2] = f32::INFINITY;
    says(
        &cpu_err(&m, &video(2, 4, E), &t),
        &["text embeddings", "text token 1, channel 2"],
    );
}

/// A non-finite score (here from a NaN score weight given directly, bypassing the loader's
/// check) is reported with its (frame, token), on both executors.
#[test]
fn non_finite_scores_name_frame_and_token() {
    let c = cfg();
    let mut p = LinvtParams::seeded(&c, 4, 3);
    p.score_w.data_mut()[0] = f32::NAN;
    let mut m = Linvt::new(c, p).unwrap();
    let (v, t) = (video(2, 4, E), text(3, E));
    let e = cpu_err(&m, &v, &t);
    assert!(matches!(e, Error::NonFiniteScore { .. }), "{e}");
    says(&e, &["frame 0, token 0"]);
    let Some(ctx) = common::gpu() else { return };
    m.attach_gpu(ctx).unwrap();
    let e = m
        .condense(Device::Gpu, &v, &t, &CondenseOptions::default())
        .unwrap_err();
    assert!(
        matches!(e, Error::NonFiniteScore { frame: 0, token: 0 }),
        "{e}"
    );
}

#[test]
fn zero_top_k_is_rejected() {
    let mut c = cfg();
    c.top_k = 0;
    says(&c.validate().unwrap_err(), &["top_k is 0"]);
    let patch = ConfigPatch {
        embed_size: Some(E),
        top_k: Some(0),
        ..Default::default()
    };
    says(&patch.resolve().unwrap_err(), &["top_k is 0"]);
}

#[test]
fn unknown_preset_is_rejected() {
    let patch = ConfigPatch {
        embed_size: Some(E),
        preset: Some("fancy".into()),
        ..Default::default()
    };
    let e = patch.resolve().unwrap_err();
    assert!(matches!(e, Error::UnknownPreset(_)));
    says(&e, &["fancy", "official", "paper"]);
}

#[test]
fn short_clip_clamps_k_and_reports_it() {
    let m = model(); // top_k 8
    let c = m
        .condense(
            Device::Cpu,
            &video(1, 5, E),
            &text(2, E),
            &CondenseOptions::default(),
        )
        .unwrap();
    assert_eq!((c.k, c.k_requested), (5, 8));
    assert_eq!(c.selected_indices.len(), 5);
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/case_small.safetensors"
    ))
    .unwrap()
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("linvt-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn truncated_or_garbage_files_are_rejected() {
    let bytes = fixture_bytes();
    let p = temp_file("truncated.safetensors", &bytes[..bytes.len() / 2]);
    let e = TensorStore::open(&p).err().expect("truncated file fails");
    assert!(matches!(e, Error::Safetensors { .. }));
    says(&e, &["truncated.safetensors", "not a readable safetensors"]);
    let p = temp_file(
        "garbage.safetensors",
        b"hello, this is not a tensor file at all",
    );
    assert!(matches!(
        TensorStore::open(&p),
        Err(Error::Safetensors { .. })
    ));
    let missing = std::env::temp_dir().join("linvt-no-such-file.safetensors");
    says(
        &TensorStore::open(&missing).err().unwrap(),
        &["cannot read", "linvt-no-such-file"],
    );
}

/// A store built from the fixture with one tensor replaced.
fn store_with(key: &str, shape: Vec<usize>, data: Vec<f32>) -> TensorStore {
    let src = linvt::weights::SafetensorsFile::from_bytes("fixture", fixture_bytes()).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for k in src.keys() {
        if k == key || k.starts_with("inter.topk") {
            continue;
        }
        let t = src.tensor(k).unwrap().unwrap();
        tensors.push((
            k.to_string(),
            t.shape().to_vec(),
            bytemuck::cast_slice(t.data()).to_vec(),
        ));
    }
    if !shape.is_empty() {
        tensors.push((key.to_string(), shape, bytemuck::cast_slice(&data).to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, Some(src.metadata().clone())).unwrap();
    TensorStore::from_files(
        "edited",
        vec![linvt::weights::SafetensorsFile::from_bytes("edited", bytes).unwrap()],
        None,
    )
}

#[test]
fn missing_misshaped_and_nan_weights_name_the_key() {
    let key = "linVT.tta_module.layers_vt.0.norm_self.weight";
    let e =
        Linvt::from_store(&store_with(key, vec![], vec![]), &ConfigPatch::default()).unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }));
    says(&e, &[key]);
    let e = Linvt::from_store(
        &store_with(key, vec![63], vec![1.0; 63]),
        &ConfigPatch::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }));
    says(&e, &[key, "[63]", "[64]"]);
    let mut bad = vec![1.0; 64];
    bad[9] = f32::NAN;
    let e =
        Linvt::from_store(&store_with(key, vec![64], bad), &ConfigPatch::default()).unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }));
    says(&e, &[key, "flat index 9"]);
}

#[test]
fn extra_layers_are_reported_unused() {
    // Ask for 1 layer of a 2-layer file: layer 1's tensors are listed, not silently dropped.
    let store = store_with("none", vec![], vec![]);
    let patch = ConfigPatch {
        num_layers: Some(1),
        ..Default::default()
    };
    let (_, report) = Linvt::from_store(&store, &patch).unwrap();
    assert!(
        report
            .unused
            .iter()
            .any(|k| k.contains("layers.1.spatial_attention")),
        "{:?}",
        report.unused
    );
}

#[test]
fn missing_adapter_is_a_clear_error() {
    let opts = GpuOptions {
        backend: None,
        adapter_name: Some("no-such-gpu-xyz".into()),
    };
    let e = GpuContext::new_blocking(&opts).unwrap_err();
    assert!(matches!(e, Error::NoAdapter { .. }));
    says(&e, &["no-such-gpu-xyz", "mesa-vulkan-drivers"]);
    let e = GpuContext::new_blocking(&GpuOptions {
        backend: Some("glide".into()),
        adapter_name: None,
    })
    .unwrap_err();
    says(&e, &["unknown GPU backend `glide`"]);
}

/// Long clips are split to fit the binding (tests/linvt_split.rs), but two things cannot be:
/// one frame's qkv projection (attention along tokens needs the whole frame), and one token
/// position's qkv across all frames (attention along frames). Each is refused up front, naming
/// the tensor, the sizes and a size that fits.
#[test]
fn too_large_tensors_are_refused_with_sizes() {
    let Some(ctx) = common::gpu() else { return };
    let limit = ctx.max_binding_bytes() as usize;
    let most = limit / (3 * E * 4);
    let mut m = model();
    m.attach_gpu(ctx).unwrap();
    for (frames, tokens, remedy) in [
        (
            1,
            most + 1,
            format!("fewer tokens per frame (at most {most})"),
        ),
        (most + 1, 1, format!("clips of at most {most} frames")),
    ] {
        let v = Tensor::new(vec![frames, tokens, E], vec![0.5; frames * tokens * E]).unwrap();
        let e = m
            .condense(Device::Gpu, &v, &text(2, E), &CondenseOptions::default())
            .unwrap_err();
        assert!(matches!(e, Error::TensorTooLarge { .. }), "{e}");
        says(
            &e,
            &[
                "qkv",
                &format!("{}", (most + 1) * 3 * E * 4),
                &format!("{limit}"),
                &remedy,
            ],
        );
    }
}
