//! `VideoLlm`: load a model directory once, ask many questions about videos, frame sets or
//! images, with the answer streamed per token. The token flow is the released `forward()`'s
//! (see tests/fixtures/tiny-internvl2/README.md): visual tokens → LinVT conditioned on the
//! preset's text slice → bf16 → written over the `<IMG_CONTEXT>` embeddings → decoder.

use std::path::Path;
use std::time::Instant;

use super::config::{ids_of, VlmConfig};
use super::engine::{Engine, GenerateOptions};
use super::ops::VlmOps;
use super::preprocess::{pixel_values, Frame};
use super::prompt::{Prompt, Template};
use super::tokenizer::Tokenizer;
use crate::cpu::sample::SamplingParams;
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::linvt::cpu_exec::CpuOps;
use crate::linvt::forward::Want;
use crate::linvt::gpu_exec::GpuOps;
use crate::linvt::provenance::{self, Provenance};
use crate::linvt::WeightStorage;
use crate::weights::TensorStore;

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Gpu,
}

/// What the question is about.
#[derive(Clone, Debug)]
pub enum Visual {
    /// Frames already sampled from a video (LinVT condenses them).
    Video(Vec<Frame>),
    /// One image: its tokens go to the LLM directly (LinVT is skipped).
    Image(Frame),
}

#[derive(Clone, Debug)]
pub struct AskOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Also return which input cells each video token averages.
    pub provenance: bool,
}

impl Default for AskOptions {
    fn default() -> Self {
        AskOptions {
            max_new_tokens: 128,
            sampling: SamplingParams::default(),
            provenance: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Answer {
    pub text: String,
    pub token_ids: Vec<u32>,
    /// (stage, milliseconds) in order.
    pub timings_ms: Vec<(String, f64)>,
    /// The video tokens' weights over (frame, cell) when asked for (video input only).
    pub provenance: Option<Provenance>,
    /// The prompt as tokenized.
    pub prompt_ids: Vec<u32>,
}

/// Reads and validates a model directory: `config.json`, `generation_config.json` (optional),
/// the weights (`model.safetensors` or a sharded index).
pub fn open_model_dir(dir: &Path) -> Result<(VlmConfig, TensorStore)> {
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "{} is not a model directory",
            dir.display()
        )));
    }
    let read_json = |name: &str| -> Result<Option<serde_json::Value>> {
        let p = dir.join(name);
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::config(format!("{} is not valid JSON: {e}", p.display())))
    };
    let config = read_json("config.json")?.ok_or_else(|| {
        Error::input(format!(
            "model directory {} has no config.json; copy it from the checkpoint",
            dir.display()
        ))
    })?;
    let eos = read_json("generation_config.json")?
        .map(|g| ids_of(g.get("eos_token_id")))
        .unwrap_or_default();
    let cfg = VlmConfig::from_json(&config, eos)?;
    let store = TensorStore::open(dir)?;
    Ok((cfg, store))
}

enum Executor {
    Cpu(Box<Engine<CpuOps>>),
    Gpu(Box<Engine<GpuOps<'static>>>),
}

pub struct VideoLlm {
    tokenizer: Tokenizer,
    template: Template,
    stop_ids: Vec<u32>,
    executor: Executor,
    pub load_ms: f64,
}

impl VideoLlm {
    /// Loads `dir` onto `backend`. `on_tensor(done, total)` reports weight loading. The GPU
    /// keeps the weights in the checkpoint's own precision (see [`Self::load_with`]).
    pub fn load(
        dir: &Path,
        backend: Backend,
        on_tensor: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        Self::load_with(dir, backend, None, on_tensor)
    }

    /// [`Self::load`] with the GPU's linear weights stored as `gpu_weights` (f16/bf16: half the
    /// memory). None keeps the checkpoint's precision, exact either way: bf16 when every float
    /// tensor of the checkpoint is bf16 (the released ones; the embedding table then goes to
    /// bf16 too where it is stored as texels), f32 otherwise. The CPU backend keeps f32.
    pub fn load_with(
        dir: &Path,
        backend: Backend,
        gpu_weights: Option<WeightStorage>,
        on_tensor: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let t0 = Instant::now();
        let (config, store) = open_model_dir(dir)?;
        let gpu_weights = gpu_weights.unwrap_or_else(|| WeightStorage::exact_for(&store));
        let tokenizer = Tokenizer::from_dir(dir)?;
        let template = Template::by_name(&config.template)?;
        let mut stop_ids = config.llm.eos_token_ids.clone();
        stop_ids.extend(tokenizer.token_to_id(template.sep));
        let total = store.keys().count();
        let mut done = 0;
        let mut tick = || {
            done += 1;
            on_tensor(done, total);
        };
        let executor = match backend {
            Backend::Cpu => {
                let ops = CpuOps::new(config.tokens_per_frame());
                Executor::Cpu(Box::new(Engine::load(ops, &store, config, &mut tick)?))
            }
            Backend::Gpu => {
                // The process-wide context, so the loaded model can own its executor.
                let (ctx, pool) = super::gpu_exec::shared_gpu()?;
                let mut ops = GpuOps::new(Recorder::new(ctx, pool));
                ops.vlm.weight_storage = gpu_weights;
                Executor::Gpu(Box::new(Engine::load(ops, &store, config, &mut tick)?))
            }
        };
        Ok(VideoLlm {
            tokenizer,
            template,
            stop_ids,
            executor,
            load_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// How the GPU executor stores the linear weights (None on the CPU backend).
    pub fn gpu_weight_storage(&self) -> Option<WeightStorage> {
        match &self.executor {
            Executor::Cpu(_) => None,
            Executor::Gpu(e) => Some(e.ops.vlm.weight_storage),
        }
    }

    pub fn config(&self) -> &VlmConfig {
        match &self.executor {
            Executor::Cpu(e) => &e.config,
            Executor::Gpu(e) => &e.config,
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Answers `question` about `visual`. `on_text` receives the answer as it grows (text
    /// deltas); `on_stage` the name of each stage as it starts.
    pub fn ask(
        &mut self,
        visual: &Visual,
        question: &str,
        opts: &AskOptions,
        on_text: &mut dyn FnMut(&str),
        on_stage: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let ctx = AskContext {
            tokenizer: &self.tokenizer,
            template: &self.template,
            stop_ids: &self.stop_ids,
        };
        match &mut self.executor {
            Executor::Cpu(e) => ctx.ask(e, visual, question, opts, on_text, on_stage),
            Executor::Gpu(e) => ctx.ask(e, visual, question, opts, on_text, on_stage),
        }
    }
}

struct AskContext<'a> {
    tokenizer: &'a Tokenizer,
    template: &'a Template,
    stop_ids: &'a [u32],
}

impl AskContext<'_> {
    fn ask<O: VlmOps>(
        &self,
        e: &mut Engine<O>,
        visual: &Visual,
        question: &str,
        opts: &AskOptions,
        on_text: &mut dyn FnMut(&str),
        on_stage: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let mut timings = Vec::new();
        let mut clock = Instant::now();
        let mut lap = |name: &str, timings: &mut Vec<(String, f64)>| {
            timings.push((name.to_string(), clock.elapsed().as_secs_f64() * 1e3));
            clock = Instant::now();
        };
        if question.trim().is_empty() {
            return Err(Error::input(
                "the question is empty; ask something about the video",
            ));
        }
        on_stage("preprocess");
        let frames: &[Frame] = match visual {
            Visual::Video(f) => f,
            Visual::Image(f) => std::slice::from_ref(f),
        };
        let pixels = pixel_values(frames, e.config.vision.image_size)?;
        lap("preprocess", &mut timings);
        on_stage("vision encoder");
        let tokens = e.vision(&pixels)?;
        lap("vision", &mut timings);
        let (prompt, rows, provenance) = match visual {
            Visual::Image(_) => {
                let n = e.config.tokens_per_frame();
                let prompt = Prompt::build(self.tokenizer, self.template, question, n)?;
                (prompt, tokens, None)
            }
            Visual::Video(f) => {
                on_stage("LinVT");
                let q = e.config.num_video_query_token;
                let prompt = Prompt::build(self.tokenizer, self.template, question, q)?;
                let text = e.embed(prompt.value_ids(e.linvt_config.preset)?)?;
                let want = Want {
                    probs: opts.provenance,
                    trace: false,
                };
                let out = e.condense(&tokens, f.len(), &text, want)?;
                // The released model casts LinVT's output to bf16 before the LLM sees it.
                let rows = e.ops.round_bf16(&out.output)?;
                let provenance = if opts.provenance {
                    let indices = e.ops.read_back_indices(&out.indices)?;
                    let probs = out
                        .aggregation_probs
                        .iter()
                        .map(|p| e.ops.read_back(p))
                        .collect::<Result<Vec<_>>>()?;
                    let dims = e.linvt_dims(f.len(), &text);
                    Some(provenance::of_forward(
                        e.linvt_config.num_heads,
                        q,
                        dims,
                        &out,
                        &indices,
                        &probs,
                    ))
                } else {
                    None
                };
                lap("linvt", &mut timings);
                (prompt, rows, provenance)
            }
        };
        on_stage("prefill");
        let embeds = e.prompt_embeds(&prompt.ids, &prompt.context_positions, &rows)?;
        let gen_opts = GenerateOptions {
            max_new_tokens: opts.max_new_tokens,
            sampling: opts.sampling,
            stop_ids: self.stop_ids.to_vec(),
            keep_step_logits: false,
        };
        let mut ids = Vec::new();
        let mut shown = String::new();
        let mut failed = None;
        let generated = e.generate(&embeds, &gen_opts, &mut |id| {
            ids.push(id);
            // Emit only complete characters: a multi-byte character may span tokens.
            match self.tokenizer.decode(&ids) {
                Ok(text) if !text.ends_with('\u{FFFD}') && text.len() > shown.len() => {
                    if let Some(delta) = text.get(shown.len()..) {
                        on_text(delta);
                    }
                    shown = text;
                }
                Ok(_) => {}
                Err(err) => failed = Some(err),
            }
        })?;
        if let Some(err) = failed {
            return Err(err);
        }
        timings.push(("prefill".into(), generated.prefill_ms));
        timings.push(("decode".into(), generated.decode_ms));
        let text = self.tokenizer.decode(&generated.ids)?;
        if text.len() > shown.len() {
            if let Some(delta) = text.get(shown.len()..) {
                on_text(delta);
            }
        }
        Ok(Answer {
            text,
            token_ids: generated.ids,
            timings_ms: timings,
            provenance,
            prompt_ids: prompt.ids,
        })
    }
}
