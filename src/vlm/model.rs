//! `VideoLlm`: load a model directory once (with a LinVT plug-in and a LoRA adapter if asked),
//! ask many questions about videos, frame sets or images, with the answer streamed per token.
//! The token flow is the InternVL host's (`internvl.rs`); generation is `Engine::generate`.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

use web_time::Instant;

use super::config::{ids_of, Host, VlmConfig};
use super::engine::{Engine, EngineSources, FinishReason, GenerateOptions, Sequence};
use super::internvl::{self, HostOptions};
pub use super::internvl::{VideoPath, Visual};
#[cfg(not(target_arch = "wasm32"))]
use super::lora::Lora;
use super::prompt::{Template, Turns};
use super::qwen2_vl_preprocess::Qwen2Processor;
use super::tokenizer::Tokenizer;
use crate::cpu::CpuOps;
use crate::error::{Error, Result};
use crate::gpu::{BufferPool, GpuOps, Recorder, WeightChoice, WeightStorage};
use crate::linvt::provenance::Provenance;
use crate::ops::{Activations, Device, Products, SamplingParams, VlmOps};
use crate::weights::{ModelFiles, TensorStore};

/// Where the video path's LinVT module comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LinvtChoice {
    /// The checkpoint's own when its config has `linvt_config`, else none.
    #[default]
    Auto,
    /// A LinVT module file (its weights, `query_tokens`, its config in the safetensors
    /// metadata) attached to any checkpoint; it replaces the checkpoint's own.
    File(PathBuf),
    /// None: videos take the host's own path.
    Off,
}

/// How to load a model directory.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// How the GPU stores the linear weights; `Auto` keeps the checkpoint's precision, exact
    /// either way: bf16 when every float tensor of the checkpoint is bf16 (the released ones;
    /// the embedding table then goes to bf16 too where it is stored as texels), f16 when every
    /// float matrix is f16 and the adapter reads f16 (a GGUF F16 file), f32 otherwise.
    /// The CPU keeps f32.
    pub gpu_weights: WeightChoice,
    /// How the CPU keeps the linear weights and the embedding table: `Auto` keeps the
    /// checkpoint's precision (bf16 for the released checkpoints: half the memory, and half
    /// what each decode step reads), f32 or bf16 when asked.
    pub cpu_weights: WeightChoice,
    /// How the CPU multiplies block-quantized weights: int8 activations (llama.cpp's way) or
    /// f32 (the GPU's values exactly).
    pub cpu_activations: Activations,
    /// How the CPU multiplies activations by bf16 weights: f32 (exact) or rounded to bf16
    /// (AMX tiles, AVX512-BF16 dot products).
    pub cpu_products: Products,
    /// On the CPU: put the weights on 2 MiB pages as they are loaded (Linux), so decoding
    /// streams them without a page walk every 4 KiB: ~1.3× the int8 decode rate on the machine
    /// it was measured on, for ~1–2 s more load time per GB there (`docs/design.md`).
    pub cpu_huge_pages: bool,
    pub linvt: LinvtChoice,
    /// A PEFT LoRA adapter directory merged into the weights at load.
    pub lora: Option<PathBuf>,
    /// Split the work as if one storage binding held at most this many bytes (None: the
    /// adapter's own limit, no split on the CPU). For tests of the split paths.
    pub binding_limit: Option<u64>,
    /// With a GGUF decoder as the model: its vision file (llama.cpp's `mmproj-*.gguf`); None:
    /// the one `mmproj*.gguf` beside the decoder.
    pub mmproj: Option<PathBuf>,
}

impl LoadOptions {
    pub fn new(device: Device) -> Self {
        LoadOptions {
            device,
            gpu_weights: WeightChoice::Auto,
            cpu_weights: WeightChoice::Auto,
            cpu_activations: Activations::Int8,
            cpu_products: Products::F32,
            cpu_huge_pages: false,
            linvt: LinvtChoice::Auto,
            lora: None,
            binding_limit: None,
            mmproj: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AskOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Also return which input cells each video token averages (LinVT path only).
    pub provenance: bool,
    /// Images: at most this many tiles (see `internvl::HostOptions::max_tiles`).
    pub max_tiles: Option<usize>,
    /// The rate the video's frames were sampled at (see `host::HostOptions::fps`).
    pub fps: Option<f64>,
    /// Qwen2-VL: the most pixels an image or frame is resized to (see
    /// `host::HostOptions::max_pixels`).
    pub max_pixels: Option<usize>,
    /// A conversation's other turns and system message (multi-turn chat; empty: one question).
    pub turns: Turns,
}

impl Default for AskOptions {
    fn default() -> Self {
        AskOptions {
            max_new_tokens: 128,
            sampling: SamplingParams::default(),
            provenance: false,
            max_tiles: None,
            fps: None,
            max_pixels: None,
            turns: Turns::default(),
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
    /// Which path a video took (None for an image).
    pub video_path: Option<VideoPath>,
    /// Tiles or frames through the vision encoder.
    pub images: usize,
    /// Visual tokens out of the projector, and in the prompt (fewer after LinVT).
    pub visual_tokens: usize,
    pub prompt_visual_tokens: usize,
    /// Why the answer ended: a stop token, `max_new_tokens`, or the model's context.
    pub finish_reason: FinishReason,
}

/// Reads and validates a model directory: `config.json`, `generation_config.json` (optional),
/// the weights (`model.safetensors` or a sharded index).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_model_dir(dir: &Path) -> Result<(VlmConfig, TensorStore)> {
    open_model(dir, None)
}

/// [`open_model_dir`] for a model directory, or a GGUF decoder file with its `mmproj` vision
/// file (`mmproj`, or the one beside it): llama.cpp's files seen as the checkpoint they came
/// from (`gguf_model`).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_model(dir: &Path, mmproj: Option<&Path>) -> Result<(VlmConfig, TensorStore)> {
    if super::gguf_model::is_gguf(dir) {
        let mmproj = super::gguf_model::find_mmproj(dir, mmproj)?;
        return super::gguf_model::open(dir, &mmproj);
    }
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "{} is not a model directory",
            dir.display()
        )));
    }
    open_model_files(&crate::weights::ModelDir(dir.to_path_buf()))
}

/// A model's config and weights from its files (a directory, or the files a web page was
/// handed): `config.json`, `generation_config.json` and the processor's files (optional), the
/// weights (`model.safetensors` or a sharded index).
pub fn open_model_files(files: &dyn ModelFiles) -> Result<(VlmConfig, TensorStore)> {
    let config = files.read_json("config.json")?.ok_or_else(|| {
        Error::input(format!(
            "model directory {} has no config.json; copy it from the checkpoint",
            files.describe()
        ))
    })?;
    let eos = files
        .read_json("generation_config.json")?
        .map(|g| ids_of(g.get("eos_token_id")))
        .unwrap_or_default();
    let preprocessor = files.read_json("preprocessor_config.json")?;
    let mut cfg = VlmConfig::from_json(&config, eos, preprocessor.as_ref())?;
    if let Host::Qwen2Vl(q) = &mut cfg.host {
        // transformers 5 may keep both processors' settings in `processor_config.json`
        // ({"image_processor": {…}, "video_processor": {…}}); the separate files win.
        let combined = files.read_json("processor_config.json")?;
        let part = |key: &str| combined.as_ref().and_then(|c| c.get(key)).cloned();
        let image = preprocessor.or_else(|| part("image_processor"));
        let video = files
            .read_json("video_preprocessor_config.json")?
            .or_else(|| part("video_processor"));
        q.processor = Qwen2Processor::from_json(image.as_ref(), video.as_ref())?;
    }
    let store = TensorStore::open_model(files)?;
    Ok((cfg, store))
}

/// The prompt's token count for `visual` and `question` and the model's context, from `dir`'s
/// `config` (as `open_model_dir` read it) and tokenizer (and a LinVT plug-in's header) alone —
/// no weights read — so a prompt the context cannot hold is refused before a large model loads.
#[cfg(not(target_arch = "wasm32"))]
pub fn prompt_len(
    dir: &Path,
    config: &VlmConfig,
    load: &LoadOptions,
    visual: &Visual,
    question: &str,
    ask: &AskOptions,
) -> Result<(usize, usize)> {
    let tok = Tokenizer::from_dir(dir)?;
    let template = Template::by_name(&config.template)?;
    let queries = match &load.linvt {
        LinvtChoice::Off => None,
        LinvtChoice::Auto => config.num_video_query_token,
        LinvtChoice::File(p) => {
            crate::linvt::params::query_tokens_shape(&TensorStore::open(p)?).map(|(q, _)| q)
        }
    };
    let opts = HostOptions {
        max_tiles: ask.max_tiles,
        provenance: false,
        fps: ask.fps,
        max_pixels: ask.max_pixels,
    };
    let len = match &config.host {
        Host::InternVl(h) => {
            tok.require_internvl()?;
            let images = internvl::images_of(visual, h, &opts).len();
            internvl::prompt_for(&tok, &template, h, visual, question, images, queries)?
                .ids
                .len()
        }
        Host::Qwen2Vl(c) => {
            let c = super::qwen2_vl::with_options(c, &opts)?;
            let (frames, is_video) = match visual {
                Visual::Image(f) => (std::slice::from_ref(f), false),
                Visual::Video(frames) => (frames.as_slice(), true),
            };
            let grid =
                super::qwen2_vl_preprocess::grid_of(frames, is_video, &c.processor, &c.vision)?;
            let linvt = queries.map(|q| (q, crate::config::VideoPositions::Text));
            let placement = super::qwen2_vl::placement_of(&c, visual, grid, &opts, linvt)?;
            super::qwen2_vl::prompt(&tok, &template, &c, question, &placement)?
                .0
                .ids
                .len()
        }
    };
    Ok((len, config.llm.max_positions))
}

/// Loads a model directory's weights onto `ops`, with LinVT and a LoRA adapter as `opts` say.
/// `on_tensor(done, total)` reports weight loading.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_engine<O: VlmOps>(
    ops: O,
    dir: &Path,
    opts: &LoadOptions,
    on_tensor: &mut dyn FnMut(usize, usize),
) -> Result<Engine<O>> {
    let (config, store) = open_model(dir, opts.mmproj.as_deref())?;
    let plugin = match &opts.linvt {
        LinvtChoice::File(path) => Some(TensorStore::open(path)?),
        _ => None,
    };
    let lora = opts.lora.as_deref().map(Lora::open).transpose()?;
    let sources = EngineSources {
        linvt: linvt_source(&opts.linvt, &config, &store, plugin.as_ref()),
        lora: lora.as_ref(),
    };
    engine_with_progress(ops, &store, config, &sources, on_tensor)
}

/// The store LinVT's weights come from as `choice` says: a plug-in file's, the checkpoint's
/// own (when its config has a LinVT module), or none.
fn linvt_source<'a>(
    choice: &LinvtChoice,
    config: &VlmConfig,
    store: &'a TensorStore,
    plugin: Option<&'a TensorStore>,
) -> Option<&'a TensorStore> {
    match choice {
        LinvtChoice::Auto if config.num_video_query_token.is_some() => Some(store),
        LinvtChoice::File(_) => plugin,
        _ => None,
    }
}

/// `Engine::load` reporting (tensors read, tensors in the store) per tensor.
fn engine_with_progress<O: VlmOps>(
    ops: O,
    store: &TensorStore,
    config: VlmConfig,
    sources: &EngineSources,
    on_tensor: &mut dyn FnMut(usize, usize),
) -> Result<Engine<O>> {
    let total = store.keys().count();
    let mut done = 0;
    let mut tick = || {
        done += 1;
        on_tensor(done, total);
    };
    Engine::load(ops, store, config, sources, &mut tick)
}

/// A CPU executor for the checkpoint in `dir`, keeping the weights as `opts.cpu_weights` says
/// (`Auto`: the checkpoint's own precision: bf16, f16 or f32; ggml blocks as they are).
#[cfg(not(target_arch = "wasm32"))]
pub fn cpu_ops(dir: &Path, opts: &LoadOptions) -> Result<CpuOps> {
    let mut ops = CpuOps::new();
    ops.binding_limit = opts.binding_limit;
    ops.block_activations = opts.cpu_activations;
    // Through the model directory's own checks, so a wrong path says what is wrong.
    let store = open_model(dir, opts.mmproj.as_deref())?.1;
    // `auto` keeps f16 matrices (a GGUF F16 file's, an f16 checkpoint's) in f16, exactly.
    ops.weight_storage = match opts.cpu_weights == WeightChoice::Auto
        && store.matrices_all(safetensors::Dtype::F16)
    {
        true => WeightStorage::F16,
        false => opts.cpu_weights.resolve(&store),
    };
    ops.set_products(opts.cpu_products)?;
    ops.huge_pages = opts.cpu_huge_pages;
    Ok(ops)
}

/// A GPU executor on the process-wide context (so a loaded model can own it) for the checkpoint
/// in `dir`, storing linear weights as `opts.gpu_weights` says (`Auto`: the checkpoint's own
/// precision).
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_ops(dir: &Path, opts: &LoadOptions) -> Result<GpuOps<'static>> {
    let store = open_model(dir, opts.mmproj.as_deref())?.1;
    gpu_ops_for(crate::gpu::shared_gpu()?, &store, opts)
}

/// A GPU executor on `ctx` for the weights in `store`, storing linear weights as
/// `opts.gpu_weights` says.
pub fn gpu_ops_for(
    ctx: &'static crate::gpu::GpuContext,
    store: &TensorStore,
    opts: &LoadOptions,
) -> Result<GpuOps<'static>> {
    // `auto` keeps f16 matrices (a GGUF F16 file's) in f16 where the adapter reads f16, exactly.
    let f16 = opts.gpu_weights == WeightChoice::Auto
        && ctx.has_f16()
        && store.matrices_all(safetensors::Dtype::F16);
    let mut ops = GpuOps::new(Recorder::new(ctx, &BufferPool::default()));
    ops.placement.storage = match f16 {
        true => WeightStorage::F16,
        false => opts.gpu_weights.resolve(store),
    };
    ops.binding_limit = opts.binding_limit;
    Ok(ops)
}

enum Executor {
    // The browser loads onto its GPU only (`load_files_on_gpu`).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
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
    /// Loads `dir` onto `device` with the defaults of [`LoadOptions::new`].
    /// `on_tensor(done, total)` reports weight loading.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(
        dir: &Path,
        device: Device,
        on_tensor: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        Self::load_with(dir, &LoadOptions::new(device), on_tensor)
    }

    /// Loads `dir` as `opts` say.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_with(
        dir: &Path,
        opts: &LoadOptions,
        on_tensor: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let t0 = Instant::now();
        let executor = match opts.device {
            Device::Cpu => {
                let ops = cpu_ops(dir, opts)?;
                Executor::Cpu(Box::new(load_engine(ops, dir, opts, on_tensor)?))
            }
            Device::Gpu => {
                let ops = gpu_ops(dir, opts)?;
                Executor::Gpu(Box::new(load_engine(ops, dir, opts, on_tensor)?))
            }
        };
        Self::assemble(executor, Tokenizer::from_dir(dir)?, t0)
    }

    /// Loads a model from `files` onto the GPU context `ctx`, storing linear weights as
    /// `opts.gpu_weights` says, with the LinVT module of `plugin` (a LinVT module file) or else
    /// the checkpoint's own if it has one: the browser's way in (its files are the ones the
    /// visitor picked, read a tensor at a time).
    pub fn load_files_on_gpu(
        files: &dyn ModelFiles,
        plugin: Option<crate::weights::SafetensorsFile>,
        ctx: &'static crate::gpu::GpuContext,
        opts: &LoadOptions,
        on_tensor: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let t0 = Instant::now();
        let (config, store) = open_model_files(files)?;
        // Checked before any weight is read: a wrong tokenizer fails fast.
        let tokenizer = Tokenizer::from_files(files)?;
        let ops = gpu_ops_for(ctx, &store, opts)?;
        let plugin = plugin.map(|f| {
            let name = f.name().to_string();
            TensorStore::from_files(&name, vec![f], None)
        });
        let sources = EngineSources {
            // The plug-in replaces the checkpoint's own module, as `LinvtChoice::File` does.
            linvt: (plugin.as_ref())
                .or_else(|| linvt_source(&LinvtChoice::Auto, &config, &store, None)),
            lora: None,
        };
        let engine = engine_with_progress(ops, &store, config, &sources, on_tensor)?;
        Self::assemble(Executor::Gpu(Box::new(engine)), tokenizer, t0)
    }

    /// The loaded executor with its tokenizer, checked against the host's tokens.
    fn assemble(executor: Executor, tokenizer: Tokenizer, t0: Instant) -> Result<Self> {
        let config = match &executor {
            Executor::Cpu(e) => &e.config,
            Executor::Gpu(e) => &e.config,
        };
        match &config.host {
            Host::InternVl(_) => tokenizer.require_internvl()?,
            Host::Qwen2Vl(_) => tokenizer.require(
                &[
                    "<|vision_start|>",
                    "<|vision_end|>",
                    "<|image_pad|>",
                    "<|video_pad|>",
                ],
                "it is not a Qwen2-VL tokenizer",
            )?,
        }
        let template = Template::by_name(&config.template)?;
        let mut stop_ids = config.llm.eos_token_ids.clone();
        stop_ids.extend(tokenizer.token_to_id(template.stop_token()));
        Ok(VideoLlm {
            tokenizer,
            template,
            stop_ids,
            executor,
            load_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// Whether videos go through LinVT (else the host's own frames path).
    pub fn has_linvt(&self) -> bool {
        match &self.executor {
            Executor::Cpu(e) => e.linvt.is_some(),
            Executor::Gpu(e) => e.linvt.is_some(),
        }
    }

    /// How the GPU executor stores the linear weights (None on the CPU backend).
    pub fn gpu_weight_storage(&self) -> Option<WeightStorage> {
        match &self.executor {
            Executor::Cpu(_) => None,
            Executor::Gpu(e) => Some(e.ops.placement.storage),
        }
    }

    /// How the CPU executor keeps the linear weights and the embedding table (None on the GPU).
    pub fn cpu_weight_storage(&self) -> Option<WeightStorage> {
        match &self.executor {
            Executor::Cpu(e) => Some(e.ops.weight_storage),
            Executor::Gpu(_) => None,
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
    pub async fn ask(
        &mut self,
        visual: &Visual,
        question: &str,
        opts: &AskOptions,
        on_text: &mut dyn FnMut(&str),
        on_stage: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let mut q = self.begin(Some(visual), question, opts, on_stage).await?;
        loop {
            if let Some(delta) = q.new_text(&self.tokenizer)? {
                on_text(&delta);
            }
            if q.done() {
                break;
            }
            self.step(&mut [&mut q]).await?;
        }
        self.finish(q)
    }

    /// Starts answering: the visual input (None: a text-only question) through the host
    /// (vision encoder, LinVT), the prompt's prefill and the first token. Further tokens come from [`Self::step`], which
    /// decodes any number of started questions together.
    pub async fn begin(
        &mut self,
        visual: Option<&Visual>,
        question: &str,
        opts: &AskOptions,
        on_stage: &mut dyn FnMut(&str),
    ) -> Result<Question> {
        let mut template = self.template.clone();
        template.turns = opts.turns.clone();
        let ctx = AskContext {
            tokenizer: &self.tokenizer,
            template: &template,
            stop_ids: &self.stop_ids,
        };
        match &mut self.executor {
            Executor::Cpu(e) => {
                ctx.begin(e, visual, question, opts, on_stage, Running::Cpu)
                    .await
            }
            Executor::Gpu(e) => {
                ctx.begin(e, visual, question, opts, on_stage, Running::Gpu)
                    .await
            }
        }
    }

    /// One more token for every question in `questions` that is not done, decoded in one
    /// batched step (see `Engine::step`).
    pub async fn step(&mut self, questions: &mut [&mut Question]) -> Result<()> {
        match &mut self.executor {
            Executor::Cpu(e) => {
                let mut seqs: Vec<_> = (questions.iter_mut())
                    .filter_map(|q| match &mut q.running {
                        Running::Cpu(s) => Some(s),
                        Running::Gpu(_) => None,
                    })
                    .collect();
                e.step(&mut seqs).await
            }
            Executor::Gpu(e) => {
                let mut seqs: Vec<_> = (questions.iter_mut())
                    .filter_map(|q| match &mut q.running {
                        Running::Gpu(s) => Some(s),
                        Running::Cpu(_) => None,
                    })
                    .collect();
                e.step(&mut seqs).await
            }
        }
    }

    /// The answer of a question (done, or stopped early: its tokens so far).
    pub fn finish(&self, q: Question) -> Result<Answer> {
        let generated = match q.running {
            Running::Cpu(s) => s.finish(),
            Running::Gpu(s) => s.finish(),
        };
        let mut timings = q.timings_ms;
        timings.push(("prefill".into(), generated.prefill_ms));
        timings.push(("decode".into(), generated.decode_ms));
        Ok(Answer {
            text: self.tokenizer.decode(&generated.ids)?,
            token_ids: generated.ids,
            timings_ms: timings,
            provenance: q.provenance,
            prompt_ids: q.prompt_ids,
            video_path: q.video_path,
            images: q.images,
            visual_tokens: q.visual_tokens,
            prompt_visual_tokens: q.prompt_visual_tokens,
            finish_reason: generated.finish_reason,
        })
    }
}

/// A sequence on whichever executor the model runs on.
enum Running {
    Cpu(Sequence<<CpuOps as VlmOps>::Kv>),
    Gpu(Sequence<<GpuOps<'static> as VlmOps>::Kv>),
}

/// A question being answered ([`VideoLlm::begin`]): its sequence and what the host reported.
pub struct Question {
    running: Running,
    /// The answer's text handed out so far by [`Question::new_text`].
    shown: String,
    timings_ms: Vec<(String, f64)>,
    provenance: Option<Provenance>,
    prompt_ids: Vec<u32>,
    video_path: Option<VideoPath>,
    images: usize,
    visual_tokens: usize,
    prompt_visual_tokens: usize,
}

impl Question {
    fn generated(&self) -> &super::engine::Generated {
        match &self.running {
            Running::Cpu(s) => &s.out,
            Running::Gpu(s) => &s.out,
        }
    }

    /// No more tokens will come.
    pub fn done(&self) -> bool {
        match &self.running {
            Running::Cpu(s) => s.done,
            Running::Gpu(s) => s.done,
        }
    }

    /// The token ids so far.
    pub fn token_ids(&self) -> &[u32] {
        &self.generated().ids
    }

    /// Why it ended (meaningful once done).
    pub fn finish_reason(&self) -> FinishReason {
        self.generated().finish_reason
    }

    /// Prompt tokens.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_ids.len()
    }

    /// Visual tokens out of the projector, and in the prompt (fewer after LinVT).
    pub fn visual_tokens(&self) -> (usize, usize) {
        (self.visual_tokens, self.prompt_visual_tokens)
    }

    /// The text the tokens so far add to what was handed out before, if any: only complete
    /// characters (a multi-byte character may span tokens), all of it once done.
    pub fn new_text(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>> {
        let text = tokenizer.decode(self.token_ids())?;
        let complete = self.done() || !text.ends_with('\u{FFFD}');
        if !complete || text.len() <= self.shown.len() || !text.starts_with(&self.shown) {
            return Ok(None);
        }
        let delta = text[self.shown.len()..].to_string();
        self.shown = text;
        Ok(Some(delta))
    }
}

struct AskContext<'a> {
    tokenizer: &'a Tokenizer,
    template: &'a Template,
    stop_ids: &'a [u32],
}

impl AskContext<'_> {
    async fn begin<O: VlmOps>(
        &self,
        e: &mut Engine<O>,
        visual: Option<&Visual>,
        question: &str,
        opts: &AskOptions,
        on_stage: &mut dyn FnMut(&str),
        wrap: fn(Sequence<O::Kv>) -> Running,
    ) -> Result<Question> {
        if question.trim().is_empty() {
            return Err(Error::input(
                "the question is empty; ask something about the video",
            ));
        }
        let Some(visual) = visual else {
            return self.begin_text(e, question, opts, on_stage, wrap).await;
        };
        let host_opts = HostOptions {
            max_tiles: opts.max_tiles,
            provenance: opts.provenance,
            fps: opts.fps,
            max_pixels: opts.max_pixels,
        };
        let input = match &e.config.host {
            Host::InternVl(_) => {
                internvl::prepare(
                    e,
                    self.tokenizer,
                    self.template,
                    visual,
                    question,
                    &host_opts,
                    on_stage,
                )
                .await?
            }
            Host::Qwen2Vl(_) => {
                super::qwen2_vl::prepare(
                    e,
                    self.tokenizer,
                    self.template,
                    visual,
                    question,
                    &host_opts,
                    on_stage,
                )
                .await?
            }
        };
        let prompt = input.prompt;
        on_stage("prefill");
        let embeds = e.prompt_embeds(&prompt.ids, &prompt.context_positions, &input.rows)?;
        let (positions, delta) = match &input.rope {
            Some((p, d)) => (p.clone(), *d),
            None => (crate::ops::Positions::range(0, prompt.ids.len()), 0),
        };
        let seq = e
            .start(&embeds, &positions, delta, &self.generate_options(opts))
            .await?;
        Ok(Question {
            running: wrap(seq),
            shown: String::new(),
            timings_ms: input.timings_ms,
            provenance: input.provenance,
            prompt_ids: prompt.ids,
            video_path: input.video_path,
            images: input.images,
            visual_tokens: input.visual_tokens,
            prompt_visual_tokens: input.prompt_visual_tokens,
        })
    }

    /// A question without an image or video: the conversation in the template, as text.
    async fn begin_text<O: VlmOps>(
        &self,
        e: &mut Engine<O>,
        question: &str,
        opts: &AskOptions,
        on_stage: &mut dyn FnMut(&str),
        wrap: fn(Sequence<O::Kv>) -> Running,
    ) -> Result<Question> {
        on_stage("prefill");
        let ids = self
            .tokenizer
            .encode_prompt(&self.template.render(question))?;
        let embeds = e.embed(&ids)?;
        // Text alone sits at the same position on every rotary axis (Qwen2-VL's M-RoPE too).
        let axes = e.config.llm.rope.for_length(ids.len()).axes();
        let positions = crate::ops::Positions::range_on_axes(0, ids.len(), axes);
        let seq = e
            .start(&embeds, &positions, 0, &self.generate_options(opts))
            .await?;
        Ok(Question {
            running: wrap(seq),
            shown: String::new(),
            timings_ms: Vec::new(),
            provenance: None,
            prompt_ids: ids,
            video_path: None,
            images: 0,
            visual_tokens: 0,
            prompt_visual_tokens: 0,
        })
    }

    fn generate_options(&self, opts: &AskOptions) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: opts.max_new_tokens,
            sampling: opts.sampling,
            stop_ids: self.stop_ids.to_vec(),
            keep_step_logits: false,
        }
    }
}
