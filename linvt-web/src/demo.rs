//! The demo page's two actions: condense the built-in synthetic clip with seeded weights
//! (`linvt::demo`, the same as `linvt demo`), and time the `small` bench shape.

use linvt::config::Preset;
use linvt::demo::{demo_model, demo_text, synthetic_clip, GRID};
use linvt::linvt::LinvtParams;
use linvt::rand::SeededRng;
use linvt::{CondenseOptions, Condensed, Linvt, LinvtConfig, Result, Tensor};

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

/// The `small` bench shape (`linvt bench --shape small`, src/bench.rs `BenchShape::small`).
/// src/bench.rs is native-only (its timing loop blocks), so the numbers are repeated here; a
/// native test checks they and the seeded model and inputs agree with `BenchShape::small`.
pub struct SmallShape {
    pub frames: usize,
    pub tokens: usize,
    pub embed: usize,
    pub heads: usize,
    pub layers: usize,
    pub top_k: usize,
    pub queries: usize,
    pub text_len: usize,
}

pub const SMALL: SmallShape = SmallShape {
    frames: 4,
    tokens: 64,
    embed: 128,
    heads: 4,
    layers: 2,
    top_k: 128,
    queries: 16,
    text_len: 16,
};

impl SmallShape {
    pub fn describe(&self) -> String {
        format!(
            "T{} N{} E{} h{} L{} k{} Q{} text{} (small)",
            self.frames,
            self.tokens,
            self.embed,
            self.heads,
            self.layers,
            self.top_k,
            self.queries,
            self.text_len
        )
    }

    /// Seeded model and inputs, generated as `BenchShape::model_and_inputs` does.
    pub fn model_and_inputs(&self, seed: u64) -> Result<(Linvt, Tensor, Tensor)> {
        let mut cfg = LinvtConfig::preset(Preset::Official, self.embed);
        cfg.num_heads = self.heads;
        cfg.num_layers = self.layers;
        cfg.top_k = self.top_k;
        let params = LinvtParams::seeded(&cfg, self.queries, seed);
        let model = Linvt::new(cfg, params)?;
        let mut rng = SeededRng::new(seed + 1);
        let (t, n, e) = (self.frames, self.tokens, self.embed);
        let video = Tensor::new(vec![t, n, e], rng.vec(t * n * e, 1.0))?;
        let text = Tensor::new(vec![self.text_len, e], rng.vec(self.text_len * e, 1.0))?;
        Ok((model, video, text))
    }
}

/// Whole-forward times of the small shape: one warm-up run (pipelines, pool), then `reps`.
pub struct SmallTiming {
    pub shape: String,
    pub warmup_ms: f64,
    pub runs_ms: Vec<f64>,
}

impl SmallTiming {
    pub fn median_ms(&self) -> f64 {
        let mut v = self.runs_ms.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

pub async fn time_small(reps: usize) -> Result<SmallTiming> {
    let (mut model, video, text) = SMALL.model_and_inputs(42)?;
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
            shape: SMALL.describe(),
            warmup_ms,
            runs_ms,
        })
    })
    .await
    .inspect_err(context::forget_if_lost)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// The repeated numbers must stay those of `linvt bench --shape small`, or the browser and
    /// native times reported side by side would be of different work.
    #[test]
    fn small_shape_matches_the_native_bench() {
        let native = linvt::bench::BenchShape::small();
        assert_eq!(SMALL.describe(), native.describe());
        let (m, v, t) = SMALL.model_and_inputs(42).unwrap();
        let (nm, nv, nt) = native.model_and_inputs(42).unwrap();
        assert_eq!(m.config(), nm.config());
        assert_eq!(v.data(), nv.data());
        assert_eq!(t.data(), nt.data());
        assert_eq!(
            m.params().query_tokens.data(),
            nm.params().query_tokens.data()
        );
    }
}
