//! `linvt bench --decoder NAME`: decode speed of a decoder of a real model's shape with seeded
//! weights (no download), on the GPU executor, next to the device's copy bandwidth measured in
//! the same run. Decoding one token reads every weight once (the M = 1 products are
//! memory-bound), so weight bytes per token ÷ time per token, as a fraction of the copy
//! bandwidth, says how close decode runs to the memory system's limit.

use std::time::Instant;

use serde::Serialize;

use super::config::{LlmConfig, LlmFamily};
use super::qwen2::{self, Qwen2Layer, Qwen2Params};
use crate::error::{Error, Result};
use crate::gpu::texels::WeightLayout;
use crate::gpu::GpuOps;
use crate::gpu::WeightStorage;
use crate::gpu::{BufferPool, Elem, GpuContext, GpuTensor, Recorder};
use crate::ops::{Positions, Role, SamplingParams, VlmOps};
use crate::rand::SeededRng;
use crate::tensor::Tensor;

/// Decoder shapes the benchmark knows.
pub const SHAPES: &[&str] = &["qwen2-0.5b", "qwen2-7b", "qwen2-tiny"];

/// The decoder configuration of `name` (see [`SHAPES`]).
pub fn shape(name: &str) -> Result<LlmConfig> {
    let (hidden, inter, layers, heads, kv_heads, vocab) = match name {
        // Qwen2-0.5B (InternVL2-1B's LLM): config.json of Qwen/Qwen2-0.5B-Instruct.
        "qwen2-0.5b" => (896, 4864, 24, 14, 2, 151_936),
        // Qwen2-7B (Qwen2-VL-7B's LLM): config.json of Qwen/Qwen2-7B-Instruct (benchmarked with
        // its embedding tied as the lm_head, which reads as many bytes as its own lm_head).
        "qwen2-7b" => (3584, 18944, 28, 28, 4, 152_064),
        // A small stand-in with the same structure, for tests of the benchmark itself.
        "qwen2-tiny" => (64, 128, 2, 4, 2, 1000),
        other => {
            return Err(Error::input(format!(
                "unknown decoder shape `{other}`; known: {}",
                SHAPES.join(", ")
            )))
        }
    };
    Ok(LlmConfig {
        family: LlmFamily::Qwen2,
        hidden_size: hidden,
        intermediate_size: inter,
        layers,
        heads,
        kv_heads,
        vocab_size: vocab,
        rms_norm_eps: 1e-6,
        max_positions: 32_768,
        tie_word_embeddings: true,
        attention_bias: true,
        eos_token_ids: vec![],
        rope: super::rope::RopeScaling::plain(hidden / heads, 1e6),
    })
}

/// `c` with only `layers` decoder layers, when asked.
fn trimmed(mut c: LlmConfig, layers: Option<usize>) -> Result<LlmConfig> {
    match layers {
        Some(0) => return Err(Error::input("--layers must be at least 1")),
        Some(n) if n > c.layers => {
            return Err(Error::input(format!(
                "--layers {n}: the shape has only {} layers",
                c.layers
            )))
        }
        Some(n) => c.layers = n,
        None => {}
    }
    Ok(c)
}

#[derive(Clone, Debug)]
pub struct DecoderBenchOptions {
    /// Prompt tokens prefilled before decoding.
    pub prompt_tokens: usize,
    /// Timed decode steps; None: 32 on GPUs, 8 on CPU adapters (lavapipe: a median of fewer
    /// steps moved by 15 % between runs on a shared machine).
    pub decode_steps: Option<usize>,
    pub seed: u64,
    /// Where the linear weights and the embedding live; None: the adapter's default.
    pub weight_layout: Option<WeightLayout>,
    /// The linear weights' element type (f16 always lives in buffers; bf16 as texels also
    /// stores the embedding table in bf16).
    pub weight_storage: WeightStorage,
    /// Keep only this many decoder layers (a large shape trimmed to fit a machine's memory;
    /// per-layer figures stay those of the full model).
    pub layers: Option<usize>,
    /// On the CPU: how bf16 weights are multiplied (f32 activations, or rounded to bf16).
    pub products: crate::ops::Products,
    /// On the CPU: put the weights on 2 MiB pages as they are loaded (Linux), so decoding
    /// streams them without a page walk every 4 KiB: ~1.3× the int8 decode rate on the machine
    /// it was measured on, for ~1–2 s more load time per GB there (`docs/design.md`).
    pub huge_pages: bool,
}

impl Default for DecoderBenchOptions {
    fn default() -> Self {
        DecoderBenchOptions {
            prompt_tokens: 16,
            decode_steps: None,
            seed: 0,
            weight_layout: None,
            weight_storage: WeightStorage::F32,
            layers: None,
            products: crate::ops::Products::F32,
            huge_pages: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DecoderBench {
    pub shape: String,
    pub adapter: String,
    /// "buffers" or "texels" (see `crate::gpu::texels`): where the weights live (f16 weights
    /// always in buffers).
    pub weight_layout: String,
    /// The linear weights' element type: "f32", "f16" or "bf16".
    pub weight_storage: String,
    pub parameters: usize,
    /// Bytes of weights one decode step reads (every layer, the final norm, the tied lm_head
    /// table, one embedding row).
    pub weight_bytes_per_token: u64,
    pub prompt_tokens: usize,
    pub decode_steps: usize,
    pub load_ms: f64,
    /// The first forward: includes building (or loading from the driver's cache) every
    /// pipeline the prefill uses.
    pub prefill_ms: f64,
    /// Median time of one decode step (embed → layers → lm_head → sample → one id read back).
    pub decode_ms_per_token: f64,
    /// Of that, the host time spent recording the step's dispatches (median): the floor of a
    /// step's time on a GPU fast enough to finish the work sooner.
    pub record_ms_per_token: Option<f64>,
    pub decode_tokens_per_s: f64,
    /// Median decode step with the numerical-health checks off (the norms' overflow check and
    /// its word's read-back), timed interleaved with the checked steps; and the checks' cost:
    /// checked ÷ unchecked − 1.
    pub unchecked_decode_ms_per_token: Option<f64>,
    pub health_check_overhead: Option<f64>,
    /// Weight bytes per token ÷ time per token, GB/s.
    pub weight_gb_per_s: f64,
    /// Buffer-to-buffer copy of `copy_bytes`, counted as bytes read + bytes written per second;
    /// the higher of a measurement before and one after the timed steps.
    pub copy_gb_per_s: f64,
    pub copy_bytes: u64,
    /// weight_gb_per_s ÷ copy_gb_per_s.
    pub bandwidth_fraction: f64,
    pub notes: Vec<String>,
}

fn upload<O: VlmOps>(
    ops: &mut O,
    rng: &mut SeededRng,
    shape: &[usize],
    scale: f32,
) -> Result<O::T> {
    upload_as(ops, rng, shape, scale, Role::Other)
}

fn upload_as<O: VlmOps>(
    ops: &mut O,
    rng: &mut SeededRng,
    shape: &[usize],
    scale: f32,
    role: Role,
) -> Result<O::T> {
    let n = shape.iter().product();
    ops.upload_weight(Tensor::new(shape.to_vec(), rng.vec(n, scale))?, role)
}

/// A linear weight (N, K).
fn linear_weight<O: VlmOps>(
    ops: &mut O,
    rng: &mut SeededRng,
    shape: &[usize],
    scale: f32,
) -> Result<O::T> {
    upload_as(ops, rng, shape, scale, Role::LinearWeight)
}

/// Norm weights near 1, as trained models have.
fn norm_weight<O: VlmOps>(ops: &mut O, rng: &mut SeededRng, n: usize) -> Result<O::T> {
    let w = rng.vec(n, 0.1).into_iter().map(|v| 1.0 + v).collect();
    ops.upload(Tensor::new(vec![n], w)?)
}

/// Seeded Qwen2 parameters of shape `c` on the executor (linear weights U(±0.03), roughly the
/// 0.02-std initialisation). Returns them with the parameter count.
fn seeded_params<O: VlmOps>(
    ops: &mut O,
    c: &LlmConfig,
    seed: u64,
) -> Result<(Qwen2Params<O::T>, usize)> {
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let kv = c.kv_heads * c.head_dim();
    let mut rng = SeededRng::new(seed);
    let s = 0.03;
    let embed = upload_as(ops, &mut rng, &[v, h], s, Role::Table)?;
    let mut layers = Vec::with_capacity(c.layers);
    for _ in 0..c.layers {
        layers.push(Qwen2Layer {
            input_norm: norm_weight(ops, &mut rng, h)?,
            qkv_w: linear_weight(ops, &mut rng, &[h + 2 * kv, h], s)?,
            qkv_b: Some(upload(ops, &mut rng, &[h + 2 * kv], s)?),
            o_w: linear_weight(ops, &mut rng, &[h, h], s)?,
            post_norm: norm_weight(ops, &mut rng, h)?,
            gate_up_w: linear_weight(ops, &mut rng, &[2 * i, h], s)?,
            down_w: linear_weight(ops, &mut rng, &[h, i], s)?,
        });
    }
    let norm = norm_weight(ops, &mut rng, h)?;
    // The embedding, per layer two norms and the q/k/v biases, the final norm, the linears.
    let parameters = v * h + c.layers * (2 * h + h + 2 * kv) + h + linear_parameters(c);
    let params = Qwen2Params {
        embed,
        layers,
        norm,
        lm_head: None,
    };
    Ok((params, parameters))
}

/// Parameters of the linear layers (q/k/v, o, gate/up, down), the ones `weight_storage`
/// applies to.
fn linear_parameters(c: &LlmConfig) -> usize {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let kv = c.kv_heads * c.head_dim();
    c.layers * ((h + 2 * kv) * h + h * h + 2 * i * h + h * i)
}

/// Bytes one decode step reads from the weights: all of them but the embedding table, which
/// is read as the tied lm_head (all of it) and by the gather (one row). Each is counted at the
/// size it has on the executor: linear weights and the table as stored (`linear_bits`,
/// `table_bits` per value, block formats with their scales), the rest 4 bytes.
fn weight_bytes_per_token(
    c: &LlmConfig,
    parameters: usize,
    linear_bits: f64,
    table_bits: f64,
) -> u64 {
    let linear = linear_parameters(c) as u64;
    let table = (c.vocab_size * c.hidden_size) as u64;
    let rest = parameters as u64 - linear - table;
    let bits = linear as f64 * linear_bits + (table + c.hidden_size as u64) as f64 * table_bits;
    rest * 4 + (bits / 8.0).round() as u64
}

/// Bits per value of a layer's linear weights as the GPU holds them (their types may differ:
/// a block format falls back where rows do not fit its block).
fn linear_bits(layer: &Qwen2Layer<GpuTensor>) -> f64 {
    let weights = [&layer.qkv_w, &layer.o_w, &layer.gate_up_w, &layer.down_w];
    let values: usize = weights.iter().map(|w| w.len()).sum();
    let bytes: u64 = weights.iter().map(|w| w.elem.bytes_for(w.len())).sum();
    bytes as f64 * 8.0 / values as f64
}

/// Device copy bandwidth: `bytes` copied buffer to buffer, read + write bytes per second (GB/s),
/// best of a few submissions of 4 copies each.
fn copy_bandwidth(ctx: &GpuContext, pool: &BufferPool, bytes: u64) -> Result<f64> {
    let n = (bytes / 4) as usize;
    let src = ctx.alloc(pool, "bandwidth.src", &[n])?;
    let dst = ctx.alloc(pool, "bandwidth.dst", &[n])?;
    let mut best = f64::INFINITY;
    for rep in 0..4 {
        let mut rec = Recorder::new(ctx, pool);
        let copies = 4;
        for _ in 0..copies {
            rec.copy(&src, &dst)?;
        }
        let t = Instant::now();
        rec.flush()?;
        let s = t.elapsed().as_secs_f64() / copies as f64;
        if rep > 0 {
            best = best.min(s); // the first submission warms the pages up
        }
    }
    Ok(2.0 * bytes as f64 / best / 1e9)
}

/// Builds the decoder `name` with seeded weights on `ctx`, prefills a seeded prompt, times
/// greedy decode steps and the device's copy bandwidth. `progress` gets a line per phase.
pub fn run(
    ctx: &GpuContext,
    name: &str,
    opts: &DecoderBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<DecoderBench> {
    let c = trimmed(shape(name)?, opts.layers)?;
    let is_cpu = ctx.info.device_type == wgpu::DeviceType::Cpu;
    let steps = checked_steps(opts, if is_cpu { 8 } else { 32 })?;
    let mut notes = Vec::new();
    if is_cpu && opts.decode_steps.is_none() {
        notes.push(format!(
            "{} is a CPU adapter: {steps} decode steps only (each reads every weight once)",
            ctx.adapter_name()
        ));
    }
    let pool = BufferPool::default();
    let mut ops = GpuOps::new(Recorder::new(ctx, &pool));
    let layout = opts
        .weight_layout
        .unwrap_or_else(|| WeightLayout::for_adapter(ctx));
    ops.placement.layout = Some(layout);
    ops.placement.storage = opts.weight_storage;

    progress(&format!("building {name} with seeded weights"));
    let t = Instant::now();
    let (p, parameters) = seeded_params(&mut ops, &c, opts.seed)?;
    if let Some(t) = ops.chunked(&p.embed) {
        notes.push(format!(
            "the ({}, {}) embedding exceeds one storage binding: stored as {} row chunks",
            c.vocab_size,
            c.hidden_size,
            t.chunk_count()
        ));
    }
    if p.embed.elem != Elem::F32 {
        notes.push(format!(
            "the embedding table (also the tied lm_head) is stored as {:?}",
            p.embed.elem
        ));
    }
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let copy_bytes = (256u64 << 20).min(ctx.max_binding_bytes() / 256 * 256);
    let checks = |ops: &mut GpuOps, on: bool| ops.rec.checks = on;
    let m = measure(
        &mut ops,
        &p,
        &c,
        opts,
        steps,
        Some(&checks),
        &mut || copy_bandwidth(ctx, &pool, copy_bytes),
        progress,
    )?;
    let bytes = weight_bytes_per_token(
        &c,
        parameters,
        linear_bits(&p.layers[0]),
        p.embed.elem.bits_per_value(),
    );
    Ok(m.report(
        name,
        ctx.adapter_name(),
        layout.name(),
        opts.weight_storage.name(),
        parameters,
        bytes,
        opts,
        steps,
        load_ms,
        copy_bytes,
        notes,
    ))
}

/// [`run`] on the CPU executor: weights in host memory as `opts.weight_storage` says (f32 or
/// bf16), the products on the rayon pool (`--threads`), next to the host's own copy rate with
/// as many threads. The CPU's norms
/// always check their rows (the checked statistics are the ones they compute), so there is no
/// unchecked variant to time.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_cpu(
    name: &str,
    opts: &DecoderBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<DecoderBench> {
    let c = trimmed(shape(name)?, opts.layers)?;
    let steps = checked_steps(opts, 32)?;
    let mut ops = crate::cpu::CpuOps::new();
    let storage = opts.weight_storage;
    ops.weight_storage = storage;
    ops.set_products(opts.products)?;
    ops.huge_pages = opts.huge_pages;
    progress(&format!("building {name} with seeded weights"));
    let t = Instant::now();
    let (p, parameters) = seeded_params(&mut ops, &c, opts.seed)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let copy_bytes = 256u64 << 20;
    let m = measure(
        &mut ops,
        &p,
        &c,
        opts,
        steps,
        None,
        &mut || Ok(host_copy_bandwidth(copy_bytes)),
        progress,
    )?;
    let layer = &p.layers[0];
    let weights = [&layer.qkv_w, &layer.o_w, &layer.gate_up_w, &layer.down_w];
    let values: usize = weights.iter().map(|w| w.len()).sum();
    let bytes: usize = weights.iter().map(|w| w.stored_bytes()).sum();
    let bits = bytes as f64 * 8.0 / values as f64;
    let table_bits = p.embed.stored_bytes() as f64 * 8.0 / p.embed.len() as f64;
    let mut report = m.report(
        name,
        &crate::cpu::threads::label(),
        "host memory",
        opts.weight_storage.name(),
        parameters,
        weight_bytes_per_token(&c, parameters, bits, table_bits),
        opts,
        steps,
        load_ms,
        copy_bytes,
        match storage.is_blocks() {
            true => vec![format!(
                "block products: {:?} activations",
                ops.block_activations
            )],
            false => Vec::new(),
        },
    );
    // The CPU computes as it goes: there is no separate recording to time.
    report.record_ms_per_token = None;
    Ok(report)
}

/// Host memory copy rate with the pool's threads (each copies its share): read + write bytes
/// per second (GB/s), best of four after a warm-up.
#[cfg(not(target_arch = "wasm32"))]
fn host_copy_bandwidth(bytes: u64) -> f64 {
    use rayon::prelude::*;
    let n = (bytes / 4) as usize;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let chunk = n.div_ceil(rayon::current_num_threads().max(1));
    let mut best = f64::INFINITY;
    for rep in 0..5 {
        let t = Instant::now();
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
        let s = t.elapsed().as_secs_f64();
        if rep > 0 {
            best = best.min(s);
        }
    }
    std::hint::black_box(&dst);
    2.0 * bytes as f64 / best / 1e9
}

/// The timed decode steps (`default` unless asked), refusing an empty prompt or no steps.
fn checked_steps(opts: &DecoderBenchOptions, default: usize) -> Result<usize> {
    if opts.prompt_tokens == 0 {
        return Err(Error::input(
            "the decoder benchmark needs a prompt of at least one token",
        ));
    }
    match opts.decode_steps.unwrap_or(default) {
        0 => Err(Error::input(
            "the decoder benchmark needs at least one decode step",
        )),
        steps => Ok(steps),
    }
}

/// What [`measure`] timed.
struct Measured {
    prefill_ms: f64,
    decode_ms: f64,
    unchecked_ms: Option<f64>,
    record_ms: f64,
    copy_gb: f64,
}

impl Measured {
    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        name: &str,
        adapter: &str,
        layout: &str,
        storage: &str,
        parameters: usize,
        bytes: u64,
        opts: &DecoderBenchOptions,
        steps: usize,
        load_ms: f64,
        copy_bytes: u64,
        notes: Vec<String>,
    ) -> DecoderBench {
        let weight_gb = bytes as f64 / (self.decode_ms / 1e3) / 1e9;
        DecoderBench {
            shape: name.to_string(),
            adapter: adapter.to_string(),
            weight_layout: layout.to_string(),
            weight_storage: storage.to_string(),
            parameters,
            weight_bytes_per_token: bytes,
            prompt_tokens: opts.prompt_tokens,
            decode_steps: steps,
            load_ms,
            prefill_ms: self.prefill_ms,
            decode_ms_per_token: self.decode_ms,
            record_ms_per_token: Some(self.record_ms),
            decode_tokens_per_s: 1e3 / self.decode_ms,
            unchecked_decode_ms_per_token: self.unchecked_ms,
            health_check_overhead: self.unchecked_ms.map(|u| self.decode_ms / u - 1.0),
            weight_gb_per_s: weight_gb,
            copy_gb_per_s: self.copy_gb,
            copy_bytes,
            bandwidth_fraction: weight_gb / self.copy_gb,
            notes,
        }
    }
}

/// Turns an executor's numerical-health checks on or off.
type SetChecks<O> = dyn Fn(&mut O, bool);

/// Prefill, a warm-up step, then `steps` timed decode steps on any executor; with
/// `set_checks`, as many unchecked steps interleaved with them. The copy rate is measured
/// before and after the timed steps and the higher one kept, so a noisy moment during one
/// measurement cannot flatter the fraction.
#[allow(clippy::too_many_arguments)]
fn measure<O: VlmOps>(
    ops: &mut O,
    p: &Qwen2Params<O::T>,
    c: &LlmConfig,
    opts: &DecoderBenchOptions,
    steps: usize,
    set_checks: Option<&SetChecks<O>>,
    copy_rate: &mut dyn FnMut() -> Result<f64>,
    progress: &mut dyn FnMut(&str),
) -> Result<Measured> {
    let mut rng = SeededRng::new(opts.seed + 1);
    let prompt: Vec<u32> = (0..opts.prompt_tokens)
        .map(|_| (rng.next_u64() % c.vocab_size as u64) as u32)
        .collect();
    // One warm-up step after the prefill compiles the one-row pipelines; it is not timed.
    let capacity = opts.prompt_tokens + 2 * steps + 1;
    let mut cache = ops.kv_cache(c.layers, c.kv_heads, c.head_dim(), capacity)?;
    let greedy = SamplingParams::default();
    let rope = c.rope.for_length(capacity);
    // One forward and the sampled id; also the host time spent recording it (before the
    // submission inside `sample`).
    let step = |ops: &mut O, cache: &mut O::Kv, ids: &[u32], position: usize| {
        let t = Instant::now();
        let x = ops.gather_rows(&p.embed, ids)?;
        let pos = ops.positions(&Positions::range(position, ids.len()))?;
        let h = qwen2::forward(ops, p, c, &rope, &x, cache, position, &pos)?;
        let last = ops.rows(&h, ids.len() - 1, 1);
        let logits = qwen2::logits(ops, p, &last)?;
        let record_ms = t.elapsed().as_secs_f64() * 1e3;
        Ok::<_, Error>((
            pollster::block_on(ops.sample(&logits, &greedy, 0.0))?,
            record_ms,
        ))
    };
    progress("prefill");
    let t = Instant::now();
    let (mut id, _) = step(ops, &mut cache, &prompt, 0)?;
    let prefill_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut position = opts.prompt_tokens;
    progress("copy bandwidth");
    let copy_before = copy_rate()?;
    progress("decode (warm-up step)");
    (id, _) = step(ops, &mut cache, &[id], position)?;
    position += 1;
    // Checked and unchecked steps interleaved, so both see the same machine.
    let mut times = Vec::with_capacity(steps);
    let mut unchecked = Vec::with_capacity(steps);
    let mut record_times = Vec::with_capacity(steps);
    let rounds = if set_checks.is_some() {
        2 * steps
    } else {
        steps
    };
    for s in 0..rounds {
        let checked = set_checks.is_none() || s % 2 == 0;
        progress(&format!(
            "decode step {}/{steps}{}",
            times.len() + 1,
            if checked { "" } else { " (health checks off)" }
        ));
        if let Some(set) = set_checks {
            set(ops, checked);
        }
        let t = Instant::now();
        let record_ms;
        (id, record_ms) = step(ops, &mut cache, &[id], position)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if checked {
            times.push(ms);
            record_times.push(record_ms);
        } else {
            unchecked.push(ms);
        }
        position += 1;
    }
    if let Some(set) = set_checks {
        set(ops, true);
    }
    let decode_ms = crate::timing::median(times);
    let unchecked_ms = (!unchecked.is_empty()).then(|| crate::timing::median(unchecked));
    let record_ms = crate::timing::median(record_times);

    progress("copy bandwidth (again)");
    let copy_gb = copy_before.max(copy_rate()?);
    Ok(Measured {
        prefill_ms,
        decode_ms,
        unchecked_ms,
        record_ms,
        copy_gb,
    })
}

/// The report as a few lines.
pub fn print_table(b: &DecoderBench) {
    println!(
        "decoder bench: {} on {}, linear weights {} in {}",
        b.shape, b.adapter, b.weight_storage, b.weight_layout
    );
    println!(
        "  {:.1} M parameters (seeded), {:.1} MB of weights read per token; built in {:.0} ms",
        b.parameters as f64 / 1e6,
        b.weight_bytes_per_token as f64 / 1e6,
        b.load_ms
    );
    println!(
        "  prefill {} tokens: {:.1} ms; decode: {:.2} ms/token = {:.2} tokens/s (median of {} steps)",
        b.prompt_tokens, b.prefill_ms, b.decode_ms_per_token, b.decode_tokens_per_s, b.decode_steps
    );
    if let Some(ms) = b.record_ms_per_token {
        println!("  recording one step's dispatches on the host: {ms:.2} ms");
    }
    if let (Some(ms), Some(cost)) = (b.unchecked_decode_ms_per_token, b.health_check_overhead) {
        println!(
            "  numerical-health checks: {ms:.2} ms/token without them (interleaved) → they cost {:+.2} %",
            cost * 100.0
        );
    }
    println!(
        "  weights streamed at {:.2} GB/s; device copy bandwidth {:.2} GB/s (read + write, {} MiB buffers) → {:.0} % of it",
        b.weight_gb_per_s,
        b.copy_gb_per_s,
        b.copy_bytes >> 20,
        b.bandwidth_fraction * 100.0
    );
    for n in &b.notes {
        println!("  note: {n}");
    }
}
