//! The library API and the `linvt ask` CLI on the tiny model: the golden clip and question give
//! the released code's greedy ids; the stream adds up to the answer; --json has its fields.

mod common;

use common::tiny_golden_clip;
use pollster::FutureExt as _;

use std::path::{Path, PathBuf};
use std::process::Command;

use ::linvt::vlm::model::{AskOptions, VideoLlm, Visual};
use ::linvt::Device;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-internvl2")
}

#[test]
fn ask_reproduces_the_golden_greedy_ids_and_streams_the_answer() {
    let (frames, question, want) = tiny_golden_clip();
    let mut m = VideoLlm::load(&fixture(), Device::Cpu, &mut |_, _| {}).unwrap();
    let opts = AskOptions {
        max_new_tokens: 8,
        provenance: true,
        ..Default::default()
    };
    let mut streamed = String::new();
    let mut stages = Vec::new();
    let a = m
        .ask(
            &Visual::Video(frames.clone()),
            &question,
            &opts,
            &mut |d| streamed.push_str(d),
            &mut |s| stages.push(s.to_string()),
        )
        .block_on()
        .unwrap();
    assert_eq!(a.token_ids, want);
    assert_eq!(streamed, a.text);
    assert!(stages.iter().any(|s| s == "LinVT"));
    // Provenance: 8 output rows over 6 frames × 4 cells; each head-averaged row sums to 1
    // (convex weights over the selected tokens, which average input cells).
    let p = a.provenance.unwrap();
    assert_eq!((p.rows, p.frames, p.tokens), (8, 6, 4));
    for r in 0..p.rows {
        let s: f32 = p.mean_row(r).iter().sum();
        assert!((s - 1.0).abs() < 1e-4, "row {r} sums to {s}");
    }
    // Load once, ask again: same answer (greedy is deterministic).
    let again = m
        .ask(
            &Visual::Video(frames),
            &question,
            &opts,
            &mut |_| {},
            &mut |_| {},
        )
        .block_on()
        .unwrap();
    assert_eq!(again.token_ids, want);
}

#[test]
fn an_image_skips_linvt() {
    let (frames, question, _) = tiny_golden_clip();
    let mut m = VideoLlm::load(&fixture(), Device::Cpu, &mut |_, _| {}).unwrap();
    let mut stages = Vec::new();
    let opts = AskOptions {
        max_new_tokens: 4,
        ..Default::default()
    };
    let a = m
        .ask(
            &Visual::Image(frames[0].clone()),
            &question,
            &opts,
            &mut |_| {},
            &mut |s| stages.push(s.to_string()),
        )
        .block_on()
        .unwrap();
    assert!(!stages.iter().any(|s| s == "LinVT"));
    // The image's 4 tokens fill 4 `<IMG_CONTEXT>` slots (the video prompt has 8).
    let ctx = m.tokenizer().token_to_id("<IMG_CONTEXT>").unwrap();
    assert_eq!(a.prompt_ids.iter().filter(|&&i| i == ctx).count(), 4);
    assert_eq!(a.token_ids.len(), 4);
}

#[test]
fn cli_ask_json_on_a_frames_directory() {
    cli_ask_json("cpu");
}

#[test]
fn cli_ask_json_on_the_gpu_gives_the_same_answer() {
    if common::gpu().is_none() {
        return;
    }
    cli_ask_json("gpu");
}

fn cli_ask_json(backend: &str) {
    let (frames, question, want) = tiny_golden_clip();
    let dir = std::env::temp_dir().join(format!("linvt-vlm-cli-{backend}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, f) in frames.iter().enumerate() {
        image::RgbImage::from_raw(56, 56, f.rgb.clone())
            .unwrap()
            .save(dir.join(format!("frame{i:02}.png")))
            .unwrap();
    }
    let png = dir.join("prov.png");
    let out = Command::new(env!("CARGO_BIN_EXE_linvt"))
        .args([
            "ask",
            "--backend",
            backend,
            "--json",
            "--max-new-tokens",
            "8",
        ])
        .arg("--model")
        .arg(fixture())
        .arg("--frames")
        .arg(&dir)
        .args(["--question", &question])
        .arg("--provenance")
        .arg(&png)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let png_ok = image::open(&png).map(|i| (i.width(), i.height()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "stderr: {stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let ids: Vec<u32> = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, want);
    assert!(v["answer"].is_string());
    assert_eq!(v["finish_reason"], "length");
    // Six frames in the folder for the default 16: said, not silent.
    assert!(
        stderr.contains("6 frames, fewer than --num-frames 16"),
        "{stderr}"
    );
    for stage in ["load", "preprocess", "vision", "linvt", "prefill", "decode"] {
        assert!(v["timings_ms"][stage].is_number(), "timing {stage} missing");
    }
    // Six 128-pixel tiles side by side over their 12-pixel weight bars.
    assert_eq!(png_ok.unwrap(), (6 * 128, 128 + 12));
}

#[test]
fn a_video_file_decodes_through_ffmpeg() {
    use ::linvt::vlm::video::load_video;
    // The error path without ffmpeg is covered in vlm_errors.rs. CI requires ffmpeg.
    let Some(ffmpeg) = common::ffmpeg() else {
        return;
    };
    let (frames, question, want) = tiny_golden_clip();
    let dir = std::env::temp_dir().join(format!("linvt-vlm-video-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, f) in frames.iter().enumerate() {
        image::RgbImage::from_raw(56, 56, f.rgb.clone())
            .unwrap()
            .save(dir.join(format!("f{i:02}.png")))
            .unwrap();
    }
    // A lossless RGB video (PNG codec), so decoding must give the frames back bit for bit.
    let video = dir.join("clip.mkv");
    let status = Command::new(ffmpeg)
        .args(["-v", "error", "-y", "-framerate", "6", "-i"])
        .arg(dir.join("f%02d.png"))
        .args(["-c:v", "png", "-pix_fmt", "rgb24"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    let decoded = load_video(&video, 16);
    let sampled = load_video(&video, 3);
    let _ = std::fs::remove_dir_all(&dir);
    let decoded = decoded.unwrap();
    assert_eq!(
        decoded, frames,
        "6 frames, fewer than 16: all of them, unchanged"
    );
    // Uniform sampling of 3 of 6: segment midpoints 0, 2, 3 (seg = 5/3).
    let sampled = sampled.unwrap();
    assert_eq!(
        sampled,
        vec![frames[0].clone(), frames[2].clone(), frames[3].clone()]
    );
    let mut m = VideoLlm::load(&fixture(), Device::Cpu, &mut |_, _| {}).unwrap();
    let opts = AskOptions {
        max_new_tokens: 8,
        ..Default::default()
    };
    let a = m
        .ask(
            &Visual::Video(decoded),
            &question,
            &opts,
            &mut |_| {},
            &mut |_| {},
        )
        .block_on()
        .unwrap();
    assert_eq!(a.token_ids, want);
}

#[test]
fn sampling_is_seeded() {
    let (frames, question, _) = tiny_golden_clip();
    let mut m = VideoLlm::load(&fixture(), Device::Cpu, &mut |_, _| {}).unwrap();
    let mut run = |seed| {
        let opts = AskOptions {
            max_new_tokens: 12,
            sampling: ::linvt::ops::SamplingParams {
                temperature: 1.5,
                top_k: 0,
                top_p: 0.95,
                seed,
            },
            ..Default::default()
        };
        m.ask(
            &Visual::Video(frames.clone()),
            &question,
            &opts,
            &mut |_| {},
            &mut |_| {},
        )
        .block_on()
        .unwrap()
        .token_ids
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a, b, "the same seed gives the same tokens");
    // At temperature 1.5 over 1000 tokens, two seeds agreeing on all 12 draws would be a
    // vanishing coincidence.
    assert_ne!(a, c, "another seed gives other tokens");
}

/// The answer says why it ended: `length` after `max_new_tokens`; `context` when the model's
/// context fills first (a copy of the tiny model whose context holds the prompt and 3 more
/// tokens gives exactly 3, the same ids as the unlimited model's first 3 — never a token past
/// the context).
#[test]
fn the_answer_says_why_it_ended() {
    use ::linvt::vlm::engine::FinishReason;
    let (frames, question, want) = tiny_golden_clip();
    let ask = |dir: &Path, max_new_tokens: usize| {
        let mut m = VideoLlm::load(dir, Device::Cpu, &mut |_, _| {}).unwrap();
        let opts = AskOptions {
            max_new_tokens,
            ..Default::default()
        };
        m.ask(
            &Visual::Video(frames.clone()),
            &question,
            &opts,
            &mut |_| {},
            &mut |_| {},
        )
        .block_on()
        .unwrap()
    };
    let a = ask(&fixture(), 4);
    assert_eq!(a.finish_reason, FinishReason::Length);
    assert_eq!(a.token_ids, want[..4]);
    let limit = a.prompt_ids.len() + 3;
    let small = common::tiny_variant(
        "context",
        |k, s, d| vec![(k.to_string(), s.to_vec(), d)],
        |c| c["llm_config"]["max_position_embeddings"] = limit.into(),
    );
    let b = ask(&small, 20);
    assert_eq!(b.finish_reason, FinishReason::Context);
    assert_eq!(b.token_ids, want[..3]);
}

/// `linvt ask` checks the prompt against the context before it reads the weights: on a copy of
/// the tiny model whose context is too short for a 6-frame prompt and whose weights lack a
/// tensor, the error is the context's (the weights were never read), naming what to change.
#[test]
fn cli_refuses_a_prompt_the_context_cannot_hold_before_loading() {
    let (frames, question, _) = tiny_golden_clip();
    let model = common::tiny_variant(
        "short-context",
        |k, s, d| match k {
            "mlp1.1.weight" => vec![],
            _ => vec![(k.to_string(), s.to_vec(), d)],
        },
        |c| c["llm_config"]["max_position_embeddings"] = 60.into(),
    );
    let dir = std::env::temp_dir().join(format!("linvt-short-ctx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, f) in frames.iter().enumerate() {
        image::RgbImage::from_raw(56, 56, f.rgb.clone())
            .unwrap()
            .save(dir.join(format!("frame{i:02}.png")))
            .unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_linvt"))
        .args(["ask", "--backend", "cpu", "--no-linvt", "--model"])
        .arg(&model)
        .arg("--frames")
        .arg(&dir)
        .args(["--question", &question])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(
        err.contains("context holds 60") && err.contains("--num-frames") && !err.contains("mlp1"),
        "{err}"
    );
}
