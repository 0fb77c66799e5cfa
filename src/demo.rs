//! `linvt demo`: a synthetic clip's tokens with seeded weights, condensed on the GPU and on the
//! CPU; prints what happened and draws which (frame, token) cells were selected.

//! The clip, text and model builders are shared with the browser demo (linvt-web); drawing the
//! PNG and the blocking `run` are native-only.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use crate::config::{LinvtConfig, Preset};
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Error;
use crate::error::Result;
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::{GpuContext, GpuOptions};
#[cfg(not(target_arch = "wasm32"))]
use crate::linvt::{CondenseOptions, Condensed};
use crate::linvt::{Linvt, LinvtParams};
#[cfg(not(target_arch = "wasm32"))]
use crate::ops::Device;
use crate::rand::SeededRng;
use crate::tensor::Tensor;

pub const FRAMES: usize = 8;
pub const GRID: usize = 8; // tokens per frame = GRID × GRID
pub const EMBED: usize = 128;
const TEXT_LEN: usize = 12;

/// Token features of a clip where a bright square moves across a textured background: the
/// square's cells carry a strong, shared direction on top of per-cell noise.
pub fn synthetic_clip(seed: u64) -> Tensor {
    let mut rng = SeededRng::new(seed);
    let object = rng.vec(EMBED, 1.0);
    let mut data = Vec::with_capacity(FRAMES * GRID * GRID * EMBED);
    for t in 0..FRAMES {
        for y in 0..GRID {
            for x in 0..GRID {
                let inside = (t / 2..t / 2 + 3).contains(&x) && (1 + t / 3..4 + t / 3).contains(&y);
                for &o in &object {
                    let noise = rng.symmetric(0.5);
                    data.push(if inside { 2.0 * o + noise } else { noise });
                }
            }
        }
    }
    Tensor::new(vec![FRAMES, GRID * GRID, EMBED], data).expect("sizes match")
}

/// Seeded text embeddings (TEXT_LEN × EMBED) to condition on.
pub fn demo_text(seed: u64) -> Tensor {
    Tensor::new(
        vec![TEXT_LEN, EMBED],
        SeededRng::new(seed).vec(TEXT_LEN * EMBED, 1.0),
    )
    .expect("sizes match")
}

/// Seeded random weights (not a trained model) in the `paper` preset, small enough for a CPU.
pub fn demo_model() -> Result<Linvt> {
    let mut cfg = LinvtConfig::preset(Preset::Paper, EMBED);
    cfg.num_heads = 4;
    cfg.num_layers = 2;
    cfg.top_k = 128;
    cfg.queries_per_scale = Some(vec![16, 8, 4]);
    let params = LinvtParams::seeded(&cfg, 28, 7);
    Linvt::new(cfg, params)
}

#[cfg(not(target_arch = "wasm32"))]
/// Draws frames side by side; each token cell bright where selected (by rank colour), dim else.
pub fn selection_png(c: &Condensed, grid: usize, path: &Path) -> Result<()> {
    let cell = 10u32;
    let gap = 6u32;
    let (w, h) = (
        c.frames as u32 * (grid as u32 * cell + gap) + gap,
        grid as u32 * cell + 2 * gap,
    );
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([24, 24, 28]));
    let mut selected = vec![false; c.frames * c.tokens];
    for &i in &c.selected_indices {
        selected[i as usize] = true;
    }
    for t in 0..c.frames {
        for n in 0..c.tokens {
            let (gx, gy) = ((n % grid) as u32, (n / grid) as u32);
            let colour = if selected[t * c.tokens + n] {
                image::Rgb([255, 196, 64])
            } else {
                image::Rgb([60, 64, 80])
            };
            let x0 = gap + t as u32 * (grid as u32 * cell + gap) + gx * cell;
            let y0 = gap + gy * cell;
            for dy in 1..cell {
                for dx in 1..cell {
                    img.put_pixel(x0 + dx, y0 + dy, colour);
                }
            }
        }
    }
    img.save(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn print_stages(label: &str, c: &Condensed) {
    let total: f64 = c.stage_ms.iter().map(|(_, ms)| ms).sum();
    let parts: Vec<String> = c
        .stage_ms
        .iter()
        .map(|(n, ms)| format!("{n} {ms:.1}"))
        .collect();
    println!("  {label:<4} {total:>8.1} ms   [{}]", parts.join(", "));
}

#[cfg(not(target_arch = "wasm32"))]
pub fn run(png: &Path) -> Result<()> {
    let mut model = demo_model()?;
    let video = synthetic_clip(1);
    let text = demo_text(2);
    let opts = CondenseOptions {
        profile: true,
        ..Default::default()
    };
    println!(
        "linvt demo — seeded random weights (not a trained model), `paper` preset, synthetic clip"
    );
    let gpu = match GpuContext::new_blocking(&GpuOptions::from_env()) {
        Ok(ctx) => {
            println!("adapter: {} ({})", ctx.adapter_name(), ctx.backend_name());
            model.attach_gpu(ctx)?;
            // Warm-up compiles the pipelines so the timed run shows steady-state stage times.
            model.condense(Device::Gpu, &video, &text, &CondenseOptions::default())?;
            Some(model.condense(Device::Gpu, &video, &text, &opts)?)
        }
        Err(e) => {
            println!("no GPU adapter ({e}); running on the CPU path only");
            None
        }
    };
    let cpu = model.condense(Device::Cpu, &video, &text, &opts)?;
    let cfg = model.config();
    println!(
        "tokens: {} frames × {} tokens = {} in → top-{} selected → {} out (queries {:?}, scales {:?})",
        cpu.frames,
        cpu.tokens,
        cpu.frames * cpu.tokens,
        cpu.k,
        cpu.output.rows(),
        cfg.queries_per_scale.clone().unwrap_or_default(),
        cfg.pool_scales
    );
    println!("stage times:");
    if let Some(g) = &gpu {
        print_stages("gpu", g);
    }
    print_stages("cpu", &cpu);
    let shown = gpu.as_ref().unwrap_or(&cpu);
    if let Some(g) = &gpu {
        let same = g.selected_indices == cpu.selected_indices;
        println!(
            "GPU vs CPU: max |output diff| {:.2e}, selections {}",
            g.output.max_abs_diff(&cpu.output),
            if same { "identical" } else { "DIFFER" }
        );
    }
    selection_png(shown, GRID, png)?;
    println!("selected cells drawn to {}", png.display());
    Ok(())
}
