//! `linvt bench --model DIR`: a model directory's throughput per stage on a synthetic clip —
//! vision-encoder frames/s, LinVT ms, prefill tokens/s, decode tokens/s — as the median of
//! several repetitions after a warm-up. The stage functions here are also what the criterion
//! benches (benches/vlm.rs) time, so both measure the same work.
//!
//! Every stage ends by reading one row (or the sampled id) back to the host, so on a GPU the
//! time covers the device work, not just its recording.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::config::{Host, VlmConfig};
use super::engine::Engine;
use super::model::{gpu_ops, load_engine, open_model_dir, LinvtChoice, LoadOptions};
use super::preprocess::pixel_values;
use super::prompt::{Prompt, Template};
use super::qwen2_vit::Grid;
use super::qwen2_vl::Placement;
use super::qwen2_vl_preprocess::video_patches;
use super::synthetic::moving_square_clip;
use super::tokenizer::Tokenizer;
use crate::cpu::CpuOps;
use crate::error::{Error, Result};
use crate::gpu::GpuOps;
use crate::linvt::forward::Want;
use crate::linvt::split::Tiled;
use crate::ops::VlmOps;
use crate::ops::{Device, Positions};
use crate::ops::{SamplingParams, WeightChoice};
use crate::tensor::Tensor;

/// The question of every benchmark prompt (its length sets the prompt's, with the template).
pub const QUESTION: &str = "Describe what happens in this video.";

#[derive(Clone, Debug)]
pub struct BenchModelOptions {
    /// Frames of the synthetic clip.
    pub frames: usize,
    /// Timed repetitions (after one warm-up); each figure is their median.
    pub reps: usize,
    /// Decode steps per repetition.
    pub decode_steps: usize,
    /// None: the GPU when its executor and an adapter are available, else the CPU.
    pub backend: Option<Device>,
    /// LinVT (the checkpoint's, a plug-in, or none: the host's own video path).
    pub linvt: LinvtChoice,
    /// How the CPU keeps the weights (auto: the checkpoint's precision).
    pub cpu_weights: WeightChoice,
    /// How the CPU multiplies bf16 weights (f32, or the activations rounded to bf16).
    pub cpu_products: crate::ops::Products,
    /// The CPU's weights on 2 MiB pages (`LoadOptions::cpu_huge_pages`).
    pub cpu_huge_pages: bool,
}

impl Default for BenchModelOptions {
    fn default() -> Self {
        BenchModelOptions {
            frames: 8,
            reps: 5,
            decode_steps: 16,
            backend: None,
            linvt: LinvtChoice::Auto,
            cpu_weights: WeightChoice::Auto,
            cpu_products: crate::ops::Products::F32,
            cpu_huge_pages: false,
        }
    }
}

/// What `bench --model` reports (also its JSON).
#[derive(Clone, Debug, Serialize)]
pub struct ModelBench {
    pub adapter: String,
    pub backend: String,
    pub frames: usize,
    /// `linvt` or `frames` (the host's own video path).
    pub video_path: String,
    pub vision_tokens: usize,
    /// Visual tokens in the prompt: LinVT's output, or every frame's tokens without it.
    pub linvt_tokens: usize,
    pub prompt_tokens: usize,
    pub decode_steps: usize,
    pub reps: usize,
    pub vision_frames_per_s: f64,
    pub linvt_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// Preprocess + vision + LinVT + prefill: the time until the first answer token is known.
    pub time_to_first_token_ms: f64,
    /// The process's peak resident memory (host; on a CPU adapter this includes the GPU's).
    pub peak_rss_mb: f64,
    /// Median ms per stage: preprocess (host), vision, linvt, prefill, decode_step.
    pub stage_ms: Vec<(String, f64)>,
    /// The greedy token ids of the first timed repetition: prefill's, then each decode step's
    /// (a warning on stderr if another repetition's differ), to compare with a peer's run on
    /// the same inputs.
    pub greedy_ids: Vec<u32>,
}

/// The host-side inputs every repetition reuses: the clip's pixel values and the prompt.
pub struct BenchInputs {
    pub pixels: Tensor,
    /// The clip's frames as the vision encoder's images (InternVL: tiles; Qwen2-VL: temporal
    /// groups of `temporal_patch_size` frames), which are LinVT's frames.
    pub frames: usize,
    /// The clip's video frames.
    pub video_frames: usize,
    pub prompt: Prompt,
    /// Host milliseconds to preprocess the clip (resize + normalise).
    pub preprocess_ms: f64,
    /// Qwen2-VL: the clip's patch grid (its temporal groups are LinVT's frames).
    pub grid: Option<Grid>,
    /// Visual tokens out of the vision encoder.
    pub vision_tokens: usize,
    /// The prompt's rotary positions and the decode delta.
    pub positions: Positions,
    pub delta: i64,
}

/// Qwen2-VL's benchmark clip side (a 224² video finishes on a CPU adapter in minutes).
pub const QWEN2_VL_SIZE: usize = 224;

impl BenchInputs {
    /// A `frames`-frame synthetic clip at the model's image size and the benchmark prompt for
    /// a model with LinVT of `linvt_queries` queries, or without LinVT (every frame's tokens).
    pub fn new(
        dir: &Path,
        config: &VlmConfig,
        frames: usize,
        linvt_queries: Option<usize>,
    ) -> Result<Self> {
        if frames == 0 {
            return Err(Error::input("the benchmark needs at least one frame"));
        }
        let tokenizer = Tokenizer::from_dir(dir)?;
        let template = Template::by_name(&config.template)?;
        if let Host::Qwen2Vl(c) = &config.host {
            let clip = moving_square_clip(frames, QWEN2_VL_SIZE);
            let t0 = Instant::now();
            let (pixels, grid) = video_patches(&clip, &c.processor, &c.vision)?;
            let preprocess_ms = t0.elapsed().as_secs_f64() * 1e3;
            let placement = match linvt_queries {
                // The module's own placement is read at load; the bench places as text.
                Some(q) => Placement::Linvt(q, crate::config::VideoPositions::Text),
                None => Placement::Video(grid, c.vision.temporal_patch_size as f64 / 2.0),
            };
            let (prompt, positions, delta) =
                super::qwen2_vl::prompt(&tokenizer, &template, c, QUESTION, &placement)?;
            return Ok(BenchInputs {
                pixels,
                frames: grid.t,
                video_frames: frames,
                prompt,
                preprocess_ms,
                grid: Some(grid),
                vision_tokens: grid.patches() / (c.vision.merge * c.vision.merge),
                positions,
                delta,
            });
        }
        tokenizer.require_internvl()?;
        let prompt = match linvt_queries {
            Some(q) => Prompt::build(&tokenizer, &template, QUESTION, q)?,
            None => {
                let spans = vec![config.internvl()?.tokens_per_frame(); frames];
                let question = super::internvl::frames_question(frames, QUESTION);
                Prompt::build_spans(&tokenizer, &template, &question, &spans)?
            }
        };
        let size = config.internvl()?.vision.image_size;
        let clip = moving_square_clip(frames, size);
        let t0 = Instant::now();
        let pixels = pixel_values(&clip, size)?;
        let len = prompt.ids.len();
        Ok(BenchInputs {
            pixels,
            frames,
            video_frames: frames,
            prompt,
            preprocess_ms: t0.elapsed().as_secs_f64() * 1e3,
            grid: None,
            vision_tokens: frames * config.internvl()?.tokens_per_frame(),
            positions: Positions::range(0, len),
            delta: 0,
        })
    }
}

/// InternViT + pixel shuffle + `mlp1`: the visual tokens (F·N, E).
pub fn vision_stage<O: VlmOps>(e: &mut Engine<O>, inputs: &BenchInputs) -> Result<O::T> {
    let tokens = match &inputs.grid {
        Some(grid) => e.qwen2_vision(&inputs.pixels, &[*grid])?,
        None => e.vision(&inputs.pixels)?,
    };
    pollster::block_on(e.sync(&tokens))?;
    Ok(tokens)
}

/// LinVT on the visual tokens, conditioned on the preset's text slice, cast to bf16: the rows
/// written over the `<IMG_CONTEXT>` embeddings.
pub fn linvt_stage<O: VlmOps>(
    e: &mut Engine<O>,
    inputs: &BenchInputs,
    visual: &O::T,
) -> Result<O::T> {
    let preset = e.linvt()?.config.preset;
    let text = e.embed(inputs.prompt.value_ids(preset)?)?;
    let tokens = e.ops.row_count(visual) / inputs.frames.max(1);
    let clip = Tiled::whole(visual.clone(), inputs.frames, tokens);
    let out = e.condense(&clip, &text, Want::default())?;
    let rows = e.ops.round_bf16(&out.output)?;
    pollster::block_on(e.sync(&rows))?;
    Ok(rows)
}

/// The prompt's embeddings with the LinVT rows in place (not timed: a gather and a scatter).
pub fn prompt_embeds<O: VlmOps>(
    e: &mut Engine<O>,
    inputs: &BenchInputs,
    rows: &O::T,
) -> Result<O::T> {
    let p = &inputs.prompt;
    e.prompt_embeds(&p.ids, &p.context_positions, rows)
}

/// The prompt through the decoder into a fresh cache with room for `decode_steps` more
/// positions, and the first (greedy) token.
pub fn prefill_stage<O: VlmOps>(
    e: &mut Engine<O>,
    inputs: &BenchInputs,
    embeds: &O::T,
    decode_steps: usize,
) -> Result<(O::Kv, u32)> {
    let len = e.ops.row_count(embeds);
    let mut cache = e.new_cache(len + decode_steps)?;
    let hidden = e.decode_at(embeds, &mut cache, 0, &inputs.positions)?;
    let last = e.ops.rows(&hidden, len - 1, 1);
    let logits = e.logits(&last)?;
    let id = pollster::block_on(e.ops.sample(&logits, &SamplingParams::default(), 0.0))?;
    Ok((cache, id))
}

/// One decode step: token `id` at cache slot `slot` → the next (greedy) token.
pub fn decode_step<O: VlmOps>(
    e: &mut Engine<O>,
    inputs: &BenchInputs,
    cache: &mut O::Kv,
    id: u32,
    slot: usize,
) -> Result<u32> {
    let x = e.embed(&[id])?;
    let at = (slot as i64 + inputs.delta).max(0) as usize;
    let positions = Positions::range_on_axes(at, 1, inputs.positions.axes());
    let hidden = e.decode_at(&x, cache, slot, &positions)?;
    let logits = e.logits(&hidden)?;
    pollster::block_on(e.ops.sample(&logits, &SamplingParams::default(), 0.0))
}

/// Loads a model directory onto the CPU executor (LinVT as `linvt` says, weights as
/// `weights` says).
pub fn cpu_engine(
    dir: &Path,
    linvt: &LinvtChoice,
    weights: WeightChoice,
) -> Result<Engine<CpuOps>> {
    cpu_engine_with(
        dir,
        &LoadOptions {
            linvt: linvt.clone(),
            cpu_weights: weights,
            ..LoadOptions::new(Device::Cpu)
        },
    )
}

/// [`cpu_engine`] with every load option.
pub fn cpu_engine_with(dir: &Path, opts: &LoadOptions) -> Result<Engine<CpuOps>> {
    load_engine(super::model::cpu_ops(dir, opts)?, dir, opts, &mut |_, _| {})
}

/// Stage times of one repetition, in ms, and its greedy ids.
struct Rep {
    vision: f64,
    linvt: f64,
    prefill: f64,
    decode_step: f64,
    ids: Vec<u32>,
}

fn one_rep<O: VlmOps>(e: &mut Engine<O>, inputs: &BenchInputs, steps: usize) -> Result<Rep> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let visual = vision_stage(e, inputs)?;
    let vision = ms(t);
    let t = Instant::now();
    let rows = if e.linvt.is_some() {
        linvt_stage(e, inputs, &visual)?
    } else {
        visual
    };
    let linvt = ms(t);
    let embeds = prompt_embeds(e, inputs, &rows)?;
    let t = Instant::now();
    let (mut cache, mut id) = prefill_stage(e, inputs, &embeds, steps)?;
    let prefill = ms(t);
    let len = inputs.prompt.ids.len();
    let mut ids = vec![id];
    let t = Instant::now();
    for position in len..len + steps {
        id = decode_step(e, inputs, &mut cache, id, position)?;
        ids.push(id);
    }
    let decode_step = ms(t) / steps.max(1) as f64;
    Ok(Rep {
        vision,
        linvt,
        prefill,
        decode_step,
        ids,
    })
}

/// Warm-up, then `reps` timed repetitions on a loaded engine.
pub fn measure<O: VlmOps>(
    e: &mut Engine<O>,
    inputs: &BenchInputs,
    opts: &BenchModelOptions,
    adapter: &str,
    backend: &str,
) -> Result<ModelBench> {
    if opts.reps == 0 || opts.decode_steps == 0 {
        return Err(Error::input(
            "the benchmark needs at least one repetition and one decode step",
        ));
    }
    let max_pos = e.config.llm.max_positions;
    let len = inputs.prompt.ids.len();
    if len + opts.decode_steps > max_pos {
        return Err(Error::input(format!(
            "the benchmark prompt ({len} tokens) plus {} decode steps exceeds the model's context of {max_pos}",
            opts.decode_steps
        )));
    }
    // Warm-up: first dispatches compile pipelines and fill buffer pools.
    one_rep(e, inputs, opts.decode_steps)?;
    let reps = (0..opts.reps)
        .map(|_| one_rep(e, inputs, opts.decode_steps))
        .collect::<Result<Vec<_>>>()?;
    // Every repetition computes the same thing: different ids would mean a nondeterministic
    // executor, which the report must not hide.
    if let Some(r) = reps.iter().find(|r| r.ids != reps[0].ids) {
        eprintln!(
            "warning: the repetitions gave different greedy ids ({:?} and {:?}): the executor \
             is not deterministic on these inputs; the first repetition's are reported",
            reps[0].ids, r.ids
        );
    }
    let med = |f: fn(&Rep) -> f64| crate::timing::median(reps.iter().map(f).collect());
    let (vision, linvt, prefill, decode_step) = (
        med(|r| r.vision),
        med(|r| r.linvt),
        med(|r| r.prefill),
        med(|r| r.decode_step),
    );
    let per_s = |count: usize, ms: f64| count as f64 / (ms.max(1e-9) / 1e3);
    Ok(ModelBench {
        adapter: adapter.to_string(),
        backend: backend.to_string(),
        frames: inputs.video_frames,
        video_path: if e.linvt.is_some() { "linvt" } else { "frames" }.to_string(),
        vision_tokens: inputs.vision_tokens,
        linvt_tokens: inputs.prompt.context_positions.len(),
        prompt_tokens: len,
        decode_steps: opts.decode_steps,
        reps: opts.reps,
        vision_frames_per_s: per_s(inputs.video_frames, vision),
        linvt_ms: linvt,
        prefill_tokens_per_s: per_s(len, prefill),
        decode_tokens_per_s: per_s(1, decode_step),
        time_to_first_token_ms: inputs.preprocess_ms + vision + linvt + prefill,
        peak_rss_mb: peak_rss_mb(),
        stage_ms: vec![
            ("preprocess".into(), inputs.preprocess_ms),
            ("vision".into(), vision),
            ("linvt".into(), linvt),
            ("prefill".into(), prefill),
            ("decode_step".into(), decode_step),
        ],
        greedy_ids: reps[0].ids.clone(),
    })
}

/// Loads a model directory onto the GPU executor, on the process-wide GPU context (LinVT as
/// `linvt` says); also returns the adapter's name.
pub fn gpu_engine(
    dir: &Path,
    linvt: &LinvtChoice,
) -> Result<(Engine<GpuOps<'static>>, &'static str)> {
    let opts = LoadOptions {
        linvt: linvt.clone(),
        ..LoadOptions::new(Device::Gpu)
    };
    let ops = gpu_ops(dir, &opts)?;
    let adapter = ops.rec.ctx.adapter_name();
    Ok((load_engine(ops, dir, &opts, &mut |_, _| {})?, adapter))
}

/// The peak resident set size of this process in MiB (`VmHWM`; 0 where /proc is missing).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench_on<O: VlmOps>(
    mut e: Engine<O>,
    dir: &Path,
    opts: &BenchModelOptions,
    adapter: &str,
    backend: &str,
) -> Result<ModelBench> {
    let queries = e.linvt.as_ref().map(|m| m.queries);
    let inputs = BenchInputs::new(dir, &e.config, opts.frames, queries)?;
    measure(&mut e, &inputs, opts, adapter, backend)
}

fn run_gpu(dir: &Path, opts: &BenchModelOptions) -> Result<ModelBench> {
    let (e, adapter) = gpu_engine(dir, &opts.linvt)?;
    bench_on(e, dir, opts, adapter, "gpu")
}

/// Loads `dir` and benchmarks it on the requested backend (or the best available one; a GPU
/// that cannot run it is reported on stderr before falling back to the CPU).
pub fn run(dir: &Path, opts: &BenchModelOptions) -> Result<ModelBench> {
    open_model_dir(dir)?;
    match opts.backend {
        Some(Device::Gpu) => run_gpu(dir, opts),
        Some(Device::Cpu) => run_cpu(dir, opts),
        None => run_gpu(dir, opts).or_else(|e| {
            eprintln!("note: benchmarking on the CPU ({e})");
            run_cpu(dir, opts)
        }),
    }
}

fn run_cpu(dir: &Path, opts: &BenchModelOptions) -> Result<ModelBench> {
    let e = cpu_engine_with(
        dir,
        &LoadOptions {
            linvt: opts.linvt.clone(),
            cpu_weights: opts.cpu_weights,
            cpu_products: opts.cpu_products,
            cpu_huge_pages: opts.cpu_huge_pages,
            ..LoadOptions::new(Device::Cpu)
        },
    )?;
    let adapter = crate::cpu::threads::label();
    bench_on(e, dir, opts, &adapter, "cpu")
}

/// The report as a table.
pub fn print_table(b: &ModelBench) {
    println!("model bench on {} ({})", b.adapter, b.backend);
    println!(
        "clip: {} frames → {} vision tokens → {} video tokens in the prompt ({} path); prompt {} tokens; {} decode steps; median of {} reps",
        b.frames, b.vision_tokens, b.linvt_tokens, b.video_path, b.prompt_tokens, b.decode_steps, b.reps
    );
    println!("  vision encoder  {:>10.1} frames/s", b.vision_frames_per_s);
    println!("  LinVT           {:>10.2} ms", b.linvt_ms);
    println!(
        "  prefill         {:>10.1} tokens/s",
        b.prefill_tokens_per_s
    );
    println!("  decode          {:>10.1} tokens/s", b.decode_tokens_per_s);
    println!("  first token     {:>10.1} ms", b.time_to_first_token_ms);
    println!(
        "  peak memory     {:>10.1} MiB (process RSS)",
        b.peak_rss_mb
    );
    let parts: Vec<String> = b
        .stage_ms
        .iter()
        .map(|(n, ms)| format!("{n} {ms:.2}"))
        .collect();
    println!("  stage ms: {}", parts.join(", "));
    println!("  greedy ids: {:?}", b.greedy_ids);
}

/// The report as one JSON object: stage_ms becomes an object keyed by stage.
pub fn to_json(b: &ModelBench) -> serde_json::Value {
    let mut v = serde_json::to_value(b).unwrap_or_default();
    v["stage_ms"] = b
        .stage_ms
        .iter()
        .map(|(k, ms)| (k.clone(), serde_json::json!(ms)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    v
}
