//! `linvt demo`: the whole video-LLM with nothing to download — the tiny LinVT-InternVL2 model
//! embedded in the binary (random weights), a procedurally generated clip and a fixed question
//! → an answer, on the GPU (when the video-LLM's GPU executor and an adapter are there) and on
//! the CPU, with per-stage timings, GPU/CPU agreement and the provenance picture (Fig. 4).

use std::path::Path;

use super::config::PsVersion;
use super::model::{Answer, AskOptions, VideoLlm, Visual};
use super::picture::provenance_png;
use super::preprocess::Frame;
use super::synthetic::moving_square_clip;
use super::tiny_model::{TinyModelDir, PARAMETERS};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuOptions};
use crate::ops::Device;

pub const QUESTION: &str = "What does the white square do in this video?";
/// Frames of the generated clip.
const FRAMES: usize = 8;
/// Side of each generated frame; larger than the model's 56 so preprocessing really resizes.
const FRAME_SIZE: usize = 96;
const MAX_NEW_TOKENS: usize = 12;
/// The stages `VideoLlm::ask` times, in the order the table prints them.
const STAGES: [&str; 5] = ["preprocess", "vision", "linvt", "prefill", "decode"];

/// One backend's answer, and what the table needs from its model.
struct Run {
    backend: &'static str,
    answer: Answer,
    load_ms: f64,
    tokens_per_frame: usize,
    linvt_tokens: usize,
    ps_version: PsVersion,
}

fn ask_on(dir: &Path, backend: Device, frames: &[Frame]) -> Result<Run> {
    let mut model = VideoLlm::load(dir, backend, &mut |_, _| {})?;
    let opts = AskOptions {
        max_new_tokens: MAX_NEW_TOKENS,
        provenance: true,
        ..Default::default()
    };
    let visual = Visual::Video(frames.to_vec());
    // Warm-up: a GPU compiles its pipelines on first dispatch; the timed run shows steady state.
    let mut ask =
        || pollster::block_on(model.ask(&visual, QUESTION, &opts, &mut |_| {}, &mut |_| {}));
    ask()?;
    let answer = ask()?;
    let config = model.config();
    Ok(Run {
        backend: match backend {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        },
        tokens_per_frame: config.internvl()?.tokens_per_frame(),
        linvt_tokens: answer.prompt_visual_tokens,
        ps_version: config.internvl()?.ps_version,
        load_ms: model.load_ms,
        answer,
    })
}

fn print_timings(r: &Run) {
    let ms = |stage: &str| {
        r.answer
            .timings_ms
            .iter()
            .find(|(n, _)| n == stage)
            .map_or(0.0, |(_, v)| *v)
    };
    let cells: Vec<String> = STAGES.iter().map(|s| format!("{:>10.2}", ms(s))).collect();
    let decoded = r.answer.token_ids.len();
    println!(
        "  {:<4}{}   ({} tokens decoded; load {:.1} ms)",
        r.backend,
        cells.join(""),
        decoded,
        r.load_ms
    );
}

/// Runs the demo and writes the provenance picture to `png`.
pub fn run(png: &Path, save_frames: Option<&Path>) -> Result<()> {
    println!(
        "linvt demo — the whole video-LLM: frames → InternViT → mlp1 → LinVT → Qwen2 → answer"
    );
    println!(
        "NOTE: the model's weights are RANDOM (the {PARAMETERS}-parameter test model, tests/fixtures/tiny-internvl2),"
    );
    println!(
        "      so the answer is gibberish; the demo shows the pipeline working, not understanding."
    );
    let dir = TinyModelDir::write()?;
    let frames = moving_square_clip(FRAMES, FRAME_SIZE);
    println!(
        "clip: {FRAMES} generated frames, {FRAME_SIZE}×{FRAME_SIZE} RGB (a white square moving over a gradient)"
    );
    println!("question: {QUESTION:?}");
    if let Some(out) = save_frames {
        super::picture::save_frames(&frames, out)?;
        println!(
            "frames written to {} (try: linvt ask --model tests/fixtures/tiny-internvl2 --frames {} --question \"Where does the square go?\")",
            out.display(),
            out.display()
        );
    }

    let gpu = match GpuContext::new_blocking(&GpuOptions::from_env()) {
        Ok(ctx) => {
            println!("adapter: {} ({})", ctx.adapter_name(), ctx.backend_name());
            drop(ctx);
            match ask_on(dir.path(), Device::Gpu, &frames) {
                Ok(run) => Some(run),
                Err(e) => {
                    println!("GPU path: not available ({e}); running on the CPU only");
                    None
                }
            }
        }
        Err(e) => {
            println!("adapter: none ({e}); running on the CPU only");
            None
        }
    };
    let cpu = ask_on(dir.path(), Device::Cpu, &frames)?;
    let shown = gpu.as_ref().unwrap_or(&cpu);

    println!(
        "tokens: {FRAMES} frames → {} vision tokens ({} per frame) → {} LinVT tokens → {} prompt tokens",
        FRAMES * shown.tokens_per_frame,
        shown.tokens_per_frame,
        shown.linvt_tokens,
        shown.answer.prompt_ids.len()
    );
    println!(
        "answer ({}, greedy, {} tokens): {:?}",
        shown.backend,
        shown.answer.token_ids.len(),
        shown.answer.text
    );
    println!("token ids: {:?}", shown.answer.token_ids);
    println!("stage times in ms (after one warm-up run):");
    let header: Vec<String> = STAGES.iter().map(|s| format!("{s:>10}")).collect();
    println!("      {}", header.join(""));
    if let Some(g) = &gpu {
        print_timings(g);
    }
    print_timings(&cpu);
    if gpu.is_some() {
        // `ask` times stages on the host; the GPU executor submits recorded work when something
        // is read back, so queued work lands in the stage that waits for it.
        println!(
            "  (GPU stage times are host laps: queued work counts in the stage that reads it back;"
        );
        println!("   `linvt bench --model DIR` times every stage synchronised)");
    }

    match &gpu {
        Some(g) => {
            let same = g.answer.token_ids == cpu.answer.token_ids;
            // VideoLlm::ask does not expose logits; the LinVT aggregation weights behind the
            // provenance picture are the finest per-element comparison it offers.
            let prov_diff = match (&g.answer.provenance, &cpu.answer.provenance) {
                (Some(a), Some(b)) => a
                    .mean
                    .iter()
                    .zip(&b.mean)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max),
                _ => f32::NAN,
            };
            println!(
                "GPU vs CPU: token ids {}; max |LinVT weight diff| {prov_diff:.2e}",
                if same { "identical" } else { "DIFFER" }
            );
        }
        None => println!("GPU vs CPU: not compared (no GPU run)"),
    }

    if let Some(p) = &shown.answer.provenance {
        provenance_png(&frames, p, shown.ps_version, png)?;
        println!(
            "provenance picture: {} (the {FRAMES} frames, each cell lit by how much the {} video tokens average over it, a bar per frame for its share; paper Fig. 4)",
            png.display(),
            shown.linvt_tokens
        );
    }
    Ok(())
}
