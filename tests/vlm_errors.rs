//! Every failure a user can cause in the video-LLM gets a clear error (no panic): each test
//! breaks one thing in a temporary copy of the tiny model directory (or its inputs).

use pollster::FutureExt as _;
use std::path::{Path, PathBuf};

use ::linvt::vlm::model::{AskOptions, VideoLlm, Visual};
use ::linvt::vlm::preprocess::Frame;
use ::linvt::vlm::video::{find_program, load_frames_dir, load_video};
use ::linvt::Device;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-internvl2")
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("linvt-vlm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    /// A copy of the tiny model directory (without its golden file).
    fn model(name: &str) -> Self {
        let d = Self::new(name);
        for e in std::fs::read_dir(fixture()).unwrap() {
            let e = e.unwrap();
            if e.file_name() != "golden_e2e.safetensors" {
                std::fs::copy(e.path(), d.0.join(e.file_name())).unwrap();
            }
        }
        d
    }
    fn edit_json(&self, file: &str, f: impl FnOnce(&mut serde_json::Value)) {
        let p = self.0.join(file);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_err(dir: &Path) -> String {
    match VideoLlm::load(dir, Device::Cpu, &mut |_, _| {}) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn load(dir: &Path) -> VideoLlm {
    VideoLlm::load(dir, Device::Cpu, &mut |_, _| {}).unwrap()
}

/// A 6-frame clip of `w`×`h` frames (a bright square moving over a gradient).
fn clip(w: usize, h: usize) -> Vec<Frame> {
    (0..6)
        .map(|t| {
            let mut rgb = vec![0u8; w * h * 3];
            for y in 0..h {
                for x in 0..w {
                    let i = (y * w + x) * 3;
                    rgb[i] = (x * 255 / w) as u8;
                    rgb[i + 1] = (y * 255 / h) as u8;
                    if x / 8 == t && y / 8 == t {
                        rgb[i] = 255;
                    }
                }
            }
            Frame::new(w, h, rgb).unwrap()
        })
        .collect()
}

#[track_caller]
/// The error message of asking `question` about `visual` with default options.
fn ask_err(m: &mut VideoLlm, visual: &Visual, question: &str) -> String {
    m.ask(
        visual,
        question,
        &AskOptions::default(),
        &mut |_| {},
        &mut |_| {},
    )
    .block_on()
    .unwrap_err()
    .to_string()
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` should mention `{p}`");
    }
}

#[test]
fn model_dir_missing_a_file_names_it() {
    for (file, expect) in [
        ("config.json", "config.json"),
        ("tokenizer.json", "tokenizer.json"),
        ("model.safetensors", "model.safetensors"),
    ] {
        let d = TempDir::model(&format!("missing-{file}"));
        std::fs::remove_file(d.0.join(file)).unwrap();
        assert_mentions(&load_err(&d.0), &[expect]);
    }
    // A path that is not a directory at all.
    assert_mentions(
        &load_err(Path::new("/nonexistent/linvt-model")),
        &["not a model directory"],
    );
}

#[test]
fn unsupported_architecture_lists_the_supported_ones() {
    let d = TempDir::model("arch");
    d.edit_json("config.json", |v| {
        v["llm_config"]["architectures"] = serde_json::json!(["GemmaForCausalLM"]);
    });
    assert_mentions(
        &load_err(&d.0),
        &[
            "GemmaForCausalLM",
            "Qwen2ForCausalLM",
            "InternLM2ForCausalLM",
            "Phi3ForCausalLM",
        ],
    );
    let d = TempDir::model("vision-arch");
    d.edit_json("config.json", |v| {
        v["vision_config"]["model_type"] = serde_json::json!("siglip");
    });
    assert_mentions(&load_err(&d.0), &["siglip", "intern_vit_6b"]);
}

#[test]
fn tokenizer_without_image_tokens() {
    let d = TempDir::model("tokenizer");
    d.edit_json("tokenizer.json", |v| {
        let added = v["added_tokens"].as_array_mut().unwrap();
        added.retain(|t| t["content"] != "<IMG_CONTEXT>");
    });
    assert_mentions(&load_err(&d.0), &["<IMG_CONTEXT>"]);
}

#[test]
fn linvt_width_differs_from_llm_hidden_size() {
    let d = TempDir::model("width");
    d.edit_json("config.json", |v| {
        v["linvt_config"]["embed_size"] = serde_json::json!(32);
    });
    assert_mentions(&load_err(&d.0), &["embed_size 32", "hidden size 64"]);
}

#[test]
fn nan_in_weights_names_the_tensor() {
    let d = TempDir::model("nan");
    let path = d.0.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let key = "language_model.model.layers.1.mlp.up_proj.weight";
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, t)| (k, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let t = owned.iter_mut().find(|t| t.0 == key).unwrap();
    t.2[40..44].copy_from_slice(&f32::NAN.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    assert_mentions(&load_err(&d.0), &[key, "NaN"]);
}

#[test]
fn prompt_longer_than_the_context() {
    let d = TempDir::model("context");
    d.edit_json("config.json", |v| {
        v["llm_config"]["max_position_embeddings"] = serde_json::json!(100);
    });
    let mut m = load(&d.0);
    let err = ask_err(&mut m, &Visual::Video(clip(56, 56)), "What moves?");
    assert_mentions(&err, &["context holds 100"]);
}

#[test]
fn empty_question() {
    let mut m = load(&fixture());
    let err = ask_err(&mut m, &Visual::Video(clip(56, 56)), "  \n");
    assert_mentions(&err, &["question is empty"]);
}

#[test]
fn zero_frames() {
    let d = TempDir::new("no-frames");
    assert_mentions(
        &load_frames_dir(&d.0, 8).unwrap_err().to_string(),
        &["no frames"],
    );
    assert_mentions(
        &load_frames_dir(&fixture(), 0).unwrap_err().to_string(),
        &["--num-frames is 0"],
    );
    let mut m = load(&fixture());
    let err = ask_err(&mut m, &Visual::Video(vec![]), "What moves?");
    assert_mentions(&err, &["zero frames"]);
}

#[test]
fn frames_of_unexpected_size_are_resized() {
    // Frames of 71×45 and 30×90 in one directory: each is resized to 56×56, no error.
    let d = TempDir::new("sizes");
    for (i, f) in clip(71, 45).iter().chain(&clip(30, 90)[..2]).enumerate() {
        image::RgbImage::from_raw(f.width as u32, f.height as u32, f.rgb.clone())
            .unwrap()
            .save(d.0.join(format!("{i:03}.png")))
            .unwrap();
    }
    let frames = load_frames_dir(&d.0, 16).unwrap();
    assert_eq!(frames.len(), 8);
    let mut m = load(&fixture());
    let opts = AskOptions {
        max_new_tokens: 3,
        ..Default::default()
    };
    let a = m
        .ask(
            &Visual::Video(frames),
            "What moves?",
            &opts,
            &mut |_| {},
            &mut |_| {},
        )
        .block_on()
        .unwrap();
    assert_eq!(a.token_ids.len(), 3);
}

#[test]
fn unreadable_or_empty_video() {
    let d = TempDir::new("video");
    let missing = d.0.join("missing.mp4");
    assert_mentions(
        &load_video(&missing, 8).unwrap_err().to_string(),
        &["missing.mp4"],
    );
    let empty = d.0.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let text = d.0.join("notes.mp4");
    std::fs::write(&text, b"this is not a video").unwrap();
    for f in [&empty, &text] {
        let err = load_video(f, 8).unwrap_err().to_string();
        if find_program("ffmpeg").is_some() && find_program("ffprobe").is_some() {
            assert_mentions(&err, &["not a readable video"]);
        } else {
            // Without ffmpeg the error says what to install.
            assert_mentions(&err, &["ffmpeg", "apt-get install ffmpeg"]);
        }
    }
}
