//! The demo page's two actions: condense the built-in synthetic clip with seeded weights
//! (`linvt::demo`, the same as `linvt demo`), and time the `small` bench shape.

use linvt::bench_shape::BenchShape;
use linvt::demo::{demo_model, demo_text, synthetic_clip, GRID};
use linvt::{CondenseOptions, Condensed, Result};

use crate::clock::now_ms;
use crate::context;

/// The built-in demo's result: the GPU condensation and how it agrees with the CPU path.
pub struct DemoRun {
    pub gpu: Condensed,
    pub grid: usize,
    /// First GPU run (compiles the pipelines) and the following, steady-state one.
    pub first_ms: f64,
    pub gpu_ms: f64,
    pub cpu_ms: f64,
    pub max_abs_diff: f32,
    pub selections_identical: bool,
}

pub async fn run_demo() -> Result<DemoRun> {
    let mut model = demo_model()?;
    let video = synthetic_clip(1);
    let text = demo_text(2);
    let ctx = context::shared().await?;
    let opts = CondenseOptions::default();
    let (first_ms, gpu_ms, gpu) = context::scoped(&ctx, async {
        model.attach_gpu(ctx.clone())?;
        let t0 = now_ms();
        model.condense_gpu(&video, &text, &opts).await?;
        let t1 = now_ms();
        let gpu = model.condense_gpu(&video, &text, &opts).await?;
        Ok((t1 - t0, now_ms() - t1, gpu))
    })
    .await
    .inspect_err(context::forget_if_lost)?;
    let t = now_ms();
    let cpu = model.condense_cpu(&video, &text, &opts)?;
    let cpu_ms = now_ms() - t;
    Ok(DemoRun {
        max_abs_diff: gpu.output.max_abs_diff(&cpu.output),
        selections_identical: gpu.selected_indices == cpu.selected_indices,
        gpu,
        grid: GRID,
        first_ms,
        gpu_ms,
        cpu_ms,
    })
}

/// Whole-forward times of the small shape: one warm-up run (pipelines, pool), then `reps`.
pub struct SmallTiming {
    pub shape: String,
    pub warmup_ms: f64,
    pub runs_ms: Vec<f64>,
}

impl SmallTiming {
    pub fn median_ms(&self) -> f64 {
        linvt::timing::median(self.runs_ms.clone())
    }
}

pub async fn time_small(reps: usize) -> Result<SmallTiming> {
    let shape = BenchShape::small();
    let (mut model, video, text) = shape.model_and_inputs(42)?;
    let ctx = context::shared().await?;
    let opts = CondenseOptions::default();
    context::scoped(&ctx, async {
        model.attach_gpu(ctx.clone())?;
        let t = now_ms();
        model.condense_gpu(&video, &text, &opts).await?;
        let warmup_ms = now_ms() - t;
        let mut runs_ms = Vec::with_capacity(reps);
        for _ in 0..reps.max(1) {
            let t = now_ms();
            model.condense_gpu(&video, &text, &opts).await?;
            runs_ms.push(now_ms() - t);
        }
        Ok(SmallTiming {
            shape: shape.describe(),
            warmup_ms,
            runs_ms,
        })
    })
    .await
    .inspect_err(context::forget_if_lost)
}
