//! `linvt bench`: each kernel's and each forward stage's time and achieved GFLOP/s, next to the
//! device's best matmul rate measured in the same run (the ratio is the figure that survives
//! noisy, shared machines).

use std::sync::Arc;

use serde::Serialize;

pub use crate::bench_shape::BenchShape;
use crate::config::LinvtConfig;
use crate::error::Result;
use crate::gpu::texels::WeightLayout;
use crate::gpu::{self, BufferPool, GpuContext, GpuTensor, Recorder};
use crate::linvt::forward::plan_runs;
use crate::linvt::split::{memory_plan, MemoryPlan, Split};
use crate::linvt::{CondenseOptions, Linvt};
use crate::ops::TopKOrder;
use crate::ops::{AttnGeometry, Axis};
use crate::rand::SeededRng;

#[derive(Clone, Debug, Serialize)]
pub struct KernelTiming {
    pub name: String,
    pub shape: String,
    pub ms: f64,
    pub gflops: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageTiming {
    pub name: String,
    pub ms: f64,
    pub gflops: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ForwardTiming {
    pub shape: String,
    pub gflop: f64,
    pub ms: f64,
    pub stages: Vec<StageTiming>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    pub device_matmul_gflops: f64,
    pub kernels: Vec<KernelTiming>,
    pub forward: ForwardTiming,
    /// How this run's clip was cut to fit the adapter's binding limit (1 × 1: not at all), and
    /// the buffers the forward's pool held after it (an upper bound of its peak).
    pub split: SplitReport,
    /// The plan for a 1-hour video at 1 frame/s (3,600 frames) of this shape's tokens and width
    /// under this adapter's binding limit.
    pub hour_plan: MemoryPlan,
}

#[derive(Clone, Debug, Serialize)]
pub struct SplitReport {
    pub frame_tiles: usize,
    pub position_tiles: usize,
    pub pool_bytes: u64,
}

/// Analytic FLOPs of each forward stage, by the stage names the forward marks.
pub fn forward_flops(
    cfg: &LinvtConfig,
    frames: usize,
    tokens: usize,
    text_len: usize,
    queries: usize,
) -> Result<Vec<(String, f64)>> {
    let (t, n, e) = (frames as f64, tokens as f64, cfg.embed_size as f64);
    let tn = t * n;
    let k = crate::ops::clamp_k(cfg.top_k, frames * tokens);
    let mut stages = Vec::new();
    // in_proj (3E) + out_proj (E) GEMMs, plus QKᵀ and PV along each axis (4·TN·len·E).
    let mha = |len: f64| 2.0 * tn * e * 3.0 * e + 2.0 * tn * e * e + 4.0 * tn * len * e;
    for i in 0..cfg.num_layers {
        stages.push((format!("svr.layer{i}"), mha(t) + mha(n)));
    }
    stages.push(("score+topk".into(), 2.0 * tn * e));
    stages.push(("pool".into(), 0.0));
    let (_, runs, _) = plan_runs(cfg, k, queries)?;
    let l = text_len as f64;
    let mut tta = vec![0.0; cfg.num_layers];
    let mut linagg = 0.0;
    for run in &runs {
        let (q, s) = (run.queries.1 as f64, run.tokens.1 as f64);
        let self_attn = match cfg.query_self_attention {
            crate::config::QuerySelfAttention::PerQuery => 4.0 * q * e * e,
            crate::config::QuerySelfAttention::AcrossQueries => 8.0 * q * e * e + 4.0 * q * q * e,
        };
        let cross = |kv: f64| 4.0 * q * e * e + 4.0 * kv * e * e + 4.0 * q * kv * e;
        for v in tta.iter_mut() {
            *v += self_attn + cross(s) + cross(l);
        }
        linagg += 2.0 * q * e * e + 2.0 * s * e * e + 4.0 * q * s * e;
    }
    for (i, v) in tta.into_iter().enumerate() {
        stages.push((format!("tta.layer{i}"), v));
    }
    stages.push(("linagg".into(), linagg));
    Ok(stages)
}

/// Times `reps` repetitions of `record` in one submission (after one warm-up run that also
/// compiles the pipelines); milliseconds per repetition.
fn time_kernel(
    ctx: &GpuContext,
    pool: &BufferPool,
    reps: usize,
    mut record: impl FnMut(&mut Recorder) -> Result<()>,
) -> Result<f64> {
    let mut warm = Recorder::new(ctx, pool);
    record(&mut warm)?;
    warm.submit()?;
    ctx.wait_idle()?;
    let mut rec = Recorder::new(ctx, pool);
    for _ in 0..reps {
        record(&mut rec)?;
    }
    let start = std::time::Instant::now();
    rec.submit()?;
    ctx.wait_idle()?;
    Ok(start.elapsed().as_secs_f64() * 1e3 / reps as f64)
}

fn random(ctx: &GpuContext, name: &str, shape: &[usize], seed: u64) -> Result<GpuTensor> {
    let n = shape.iter().product();
    ctx.upload(name, shape, &SeededRng::new(seed).vec(n, 1.0))
}

/// `linear` with a random (n, k) weight stored as the forward stores it on this adapter
/// (`WeightLayout::for_adapter`), x (m, K) random.
fn linear_timing(
    ctx: &GpuContext,
    pool: &BufferPool,
    m: usize,
    n: usize,
    k: usize,
    reps: usize,
) -> Result<KernelTiming> {
    let data = SeededRng::new(2).vec(n * k, 1.0);
    let w = match WeightLayout::for_adapter(ctx) {
        WeightLayout::Texels => ctx.upload_texels("w", &[n, k], &data)?,
        WeightLayout::Buffers => ctx.upload("w", &[n, k], &data)?,
    };
    linear_timing_with(ctx, pool, m, &w, reps, "linear")
}

/// `linear` with the weight `w` (f32 or f16, buffer or texels), x (m, K) random.
fn linear_timing_with(
    ctx: &GpuContext,
    pool: &BufferPool,
    m: usize,
    w: &GpuTensor,
    reps: usize,
    name: &str,
) -> Result<KernelTiming> {
    let (n, k) = (w.rows(), w.cols());
    let x = random(ctx, "x", &[m, k], 1)?;
    let b = random(ctx, "b", &[n], 3)?;
    let ms = time_kernel(ctx, pool, reps, |rec| {
        gpu::linear::linear(rec, &x, w, Some(&b)).map(drop)
    })?;
    Ok(KernelTiming {
        name: name.into(),
        shape: format!("{m}x{n}x{k}"),
        ms,
        gflops: 2.0 * (m * n * k) as f64 / ms / 1e6,
    })
}

/// Runs every kernel at the shape's sizes, the device's matmul reference, and the forward.
pub fn run(ctx: &Arc<GpuContext>, shape: &BenchShape, progress: bool) -> Result<BenchReport> {
    let say = |s: &str| {
        if progress {
            eprintln!("  … {s}");
        }
    };
    let pool = BufferPool::default();
    let reps = if ctx.info.device_type == wgpu::DeviceType::Cpu {
        3
    } else {
        20
    };
    let (t, n, e, h) = (shape.frames, shape.tokens, shape.embed, shape.heads);
    let tn = t * n;

    say("device matmul reference (linear at 1024³ and 4096×896×896)");
    let mut kernels = vec![linear_timing(ctx, &pool, 4096, 896, 896, reps)?];
    let square = linear_timing(ctx, &pool, 1024, 1024, 1024, reps)?;
    let device_matmul_gflops = kernels[0].gflops.max(square.gflops);
    kernels.push(square);
    if WeightLayout::for_adapter(ctx) == WeightLayout::Texels {
        // The same product with the weight in a buffer, for comparison with the texel layout
        // the forward uses on this adapter.
        say("linear with the weight in a buffer");
        let w = random(ctx, "w", &[896, 896], 2)?;
        kernels.push(linear_timing_with(
            ctx,
            &pool,
            4096,
            &w,
            reps,
            "linear.buffer_weights",
        )?);
    }
    if ctx.has_f16() {
        // f16 weight storage (opt-in, not part of the f32 reference rate above).
        say("linear with f16 weights");
        let data = SeededRng::new(2).vec(896 * 896, 1.0);
        let w16 = ctx.upload_f16("w16", &[896, 896], &data)?;
        kernels.push(linear_timing_with(
            ctx,
            &pool,
            4096,
            &w16,
            reps,
            "linear.f16_weights",
        )?);
    }

    let limit = ctx.max_binding_bytes();
    let split = Split::plan(t, n, e, Some(limit))?;
    let is_split = split.by_frames.len() > 1 || split.by_positions.len() > 1;
    if is_split {
        say("the clip exceeds one binding: the forward runs split, once, without kernel timings");
        return forward_only(ctx, shape, device_matmul_gflops, kernels, &split);
    }
    say("kernels at the forward's shapes");
    kernels.push(linear_timing(ctx, &pool, tn, 3 * e, e, reps)?);
    let qkv = random(ctx, "qkv", &[tn, 3 * e], 4)?;
    for axis in [Axis::Tokens, Axis::Frames] {
        let g = AttnGeometry::along_axis(t, n, e, h, axis);
        let out = ctx.alloc(&pool, "out", &[tn, e])?;
        let ms = time_kernel(ctx, &pool, reps, |rec| {
            gpu::attention::attention(rec, &qkv, &qkv, &qkv, &out, &g)
        })?;
        let len = if axis == Axis::Tokens { n } else { t };
        kernels.push(KernelTiming {
            name: format!(
                "st_attention.{}",
                if axis == Axis::Tokens {
                    "tokens"
                } else {
                    "frames"
                }
            ),
            shape: format!("T{t} N{n} E{e} h{h}"),
            ms,
            gflops: 4.0 * (tn * len * e) as f64 / ms / 1e6,
        });
    }
    let k = crate::ops::clamp_k(shape.top_k, tn);
    let scores = random(ctx, "scores", &[tn], 5)?;
    let ms = time_kernel(ctx, &pool, reps, |rec| {
        gpu::topk::top_k(rec, &scores, k, TopKOrder::Score).map(drop)
    })?;
    kernels.push(KernelTiming {
        name: "topk".into(),
        shape: format!("{tn} k{k}"),
        ms,
        gflops: 0.0,
    });
    let idx = gpu::topk::top_k(&mut Recorder::new(ctx, &pool), &scores, k, TopKOrder::Score)?;
    let tokens = random(ctx, "tokens", &[tn, e], 6)?;
    let scales = shape.config().pool_scales;
    let ms = time_kernel(ctx, &pool, reps, |rec| {
        gpu::window_pool::gather_pool(rec, &tokens, Some(&idx.indices), k, &scales).map(drop)
    })?;
    kernels.push(KernelTiming {
        name: "window_pool".into(),
        shape: format!("k{k} E{e} scales{scales:?}"),
        ms,
        gflops: 0.0,
    });
    let s = crate::cpu::window_pool::pooled_rows(k, &scales);
    let q = random(ctx, "q", &[shape.queries, e], 7)?;
    let kv = random(ctx, "kv", &[s, e], 8)?;
    let g = AttnGeometry::cross(shape.queries, s, e, h);
    let out = ctx.alloc(&pool, "out", &[shape.queries, e])?;
    let ms = time_kernel(ctx, &pool, reps, |rec| {
        gpu::attention::attention(rec, &q, &kv, &kv, &out, &g)
    })?;
    kernels.push(KernelTiming {
        name: "cross_attention".into(),
        shape: format!("Q{} S{s} E{e} h{h}", shape.queries),
        ms,
        gflops: 4.0 * (shape.queries * s * e) as f64 / ms / 1e6,
    });
    let gamma = random(ctx, "gamma", &[e], 9)?;
    let ms = time_kernel(ctx, &pool, reps, |rec| {
        gpu::norm::layer_norm(rec, &q, Some(&q), &gamma, &gamma, 1e-5).map(drop)
    })?;
    kernels.push(KernelTiming {
        name: "layer_norm".into(),
        shape: format!("{}x{e}", shape.queries),
        ms,
        gflops: 0.0,
    });

    say("whole forward");
    let (mut model, video, text) = shape.model_and_inputs(42)?;
    let cfg = model.config().clone();
    model.attach_gpu(ctx.clone())?;
    let plain = CondenseOptions::default();
    pollster::block_on(model.condense_gpu(&video, &text, &plain))?; // warm-up: pipelines, pool
    let start = std::time::Instant::now();
    pollster::block_on(model.condense_gpu(&video, &text, &plain))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    say("forward stages (profiled run)");
    let profiled = pollster::block_on(model.condense_gpu(
        &video,
        &text,
        &CondenseOptions {
            profile: true,
            ..Default::default()
        },
    ))?;
    let flops = forward_flops(&cfg, t, n, shape.text_len, shape.queries)?;
    let mut stages: Vec<StageTiming> = Vec::new();
    for (name, stage_ms) in profiled.stage_ms {
        match stages.iter_mut().find(|s| s.name == name) {
            Some(s) => s.ms += stage_ms,
            None => stages.push(StageTiming {
                name,
                ms: stage_ms,
                gflops: 0.0,
            }),
        }
    }
    for s in &mut stages {
        let f = flops
            .iter()
            .find(|(n, _)| *n == s.name)
            .map(|(_, f)| *f)
            .unwrap_or(0.0);
        s.gflops = f / s.ms.max(1e-9) / 1e6;
    }
    let forward = ForwardTiming {
        shape: shape.describe(),
        gflop: flops.iter().map(|(_, f)| f).sum::<f64>() / 1e9,
        ms,
        stages,
    };
    report(
        ctx,
        device_matmul_gflops,
        kernels,
        forward,
        &split,
        &model,
        shape,
    )
}

/// The report of a run: its timings, how the clip was split, and the 1-hour plan.
fn report(
    ctx: &GpuContext,
    device_matmul_gflops: f64,
    kernels: Vec<KernelTiming>,
    forward: ForwardTiming,
    split: &Split,
    model: &Linvt,
    shape: &BenchShape,
) -> Result<BenchReport> {
    Ok(BenchReport {
        adapter: ctx.adapter_name().to_string(),
        backend: ctx.backend_name(),
        device_matmul_gflops,
        kernels,
        forward,
        split: SplitReport {
            frame_tiles: split.by_frames.len(),
            position_tiles: split.by_positions.len(),
            pool_bytes: model.gpu_pool_bytes(),
        },
        hour_plan: hour_plan(model, shape, ctx.max_binding_bytes())?,
    })
}

/// A clip beyond one binding: the whole forward once (pipelines are built during it), split as
/// `split` says.
fn forward_only(
    ctx: &Arc<GpuContext>,
    shape: &BenchShape,
    device_matmul_gflops: f64,
    kernels: Vec<KernelTiming>,
    split: &Split,
) -> Result<BenchReport> {
    let (mut model, video, text) = shape.model_and_inputs(42)?;
    let cfg = model.config().clone();
    model.attach_gpu(ctx.clone())?;
    let start = std::time::Instant::now();
    pollster::block_on(model.condense_gpu(&video, &text, &CondenseOptions::default()))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let flops = forward_flops(
        &cfg,
        shape.frames,
        shape.tokens,
        shape.text_len,
        shape.queries,
    )?;
    let forward = ForwardTiming {
        shape: shape.describe(),
        gflop: flops.iter().map(|(_, f)| f).sum::<f64>() / 1e9,
        ms,
        stages: Vec::new(),
    };
    report(
        ctx,
        device_matmul_gflops,
        kernels,
        forward,
        split,
        &model,
        shape,
    )
}

/// The memory plan of 3,600 frames of this shape's tokens and width under `limit`.
fn hour_plan(model: &Linvt, shape: &BenchShape, limit: u64) -> Result<MemoryPlan> {
    let mut elements = 0u64;
    model.params().try_map_roles(|t, _| {
        elements += t.len() as u64;
        Ok(())
    })?;
    memory_plan(3600, shape.tokens, shape.embed, limit, elements * 4)
}

pub fn print_table(r: &BenchReport) {
    println!("adapter: {} ({})", r.adapter, r.backend);
    println!(
        "device matmul (best linear, this run): {:.1} GFLOP/s\n",
        r.device_matmul_gflops
    );
    println!(
        "{:<24} {:<28} {:>10} {:>10} {:>8}",
        "kernel", "shape", "ms", "GFLOP/s", "ratio"
    );
    for k in &r.kernels {
        println!(
            "{:<24} {:<28} {:>10.3} {:>10.1} {:>8.2}",
            k.name,
            k.shape,
            k.ms,
            k.gflops,
            k.gflops / r.device_matmul_gflops
        );
    }
    let f = &r.forward;
    let rate = f.gflop / f.ms * 1e3;
    if r.split.frame_tiles * r.split.position_tiles > 1 {
        println!(
            "\nthe clip exceeds one binding: split into {} tiles of whole frames and {} of whole token positions (one run, pipeline builds included); the pool held {:.1} MiB after it",
            r.split.frame_tiles,
            r.split.position_tiles,
            r.split.pool_bytes as f64 / (1u64 << 20) as f64
        );
    }
    println!(
        "\nforward {}: {:.1} GFLOP in {:.1} ms = {:.1} GFLOP/s = {:.0}% of device matmul",
        f.shape,
        f.gflop,
        f.ms,
        rate,
        100.0 * rate / r.device_matmul_gflops
    );
    if !f.stages.is_empty() {
        println!(
            "{:<24} {:>10} {:>10} {:>8}",
            "stage (profiled run)", "ms", "GFLOP/s", "ratio"
        );
    }
    for s in &f.stages {
        println!(
            "{:<24} {:>10.2} {:>10.1} {:>8.2}",
            s.name,
            s.ms,
            s.gflops,
            s.gflops / r.device_matmul_gflops
        );
    }
    let h = &r.hour_plan;
    println!(
        "\n1 hour at 1 frame/s ({} frames × {} tokens, E {}) under {} MiB bindings: {} × {} tiles, largest binding {:.1} MiB, peak {:.2} GiB (activations + parameters)",
        h.frames,
        h.tokens,
        h.width,
        h.binding_limit >> 20,
        h.frame_tiles,
        h.position_tiles,
        h.largest_binding as f64 / (1u64 << 20) as f64,
        h.peak_bytes as f64 / (1u64 << 30) as f64
    );
}
