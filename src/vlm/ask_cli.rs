//! `linvt ask`: load a model directory, read a video / frames / image, answer a question.
//! The answer streams to stdout; progress bars go to stderr (hidden when it is not a terminal).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::config::Host;
use super::engine::FinishReason;
use super::model::{
    prompt_len, Answer, AskOptions, LinvtChoice, LoadOptions, VideoLlm, VideoPath, Visual,
};
use super::picture::provenance_png;
use super::video::{load_frames_dir, load_image, load_video_sampled, Sampling};

/// Frames sampled from a video on InternVL hosts when --num-frames is not given.
const DEFAULT_FRAMES: usize = 16;
use crate::error::{Error, Result};
use crate::gpu::WeightChoice;
use crate::ops::{Activations, Device, Products, SamplingParams};

/// Which model to load and how: shared by `ask`, `serve` and `batch`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Model directory (config.json, model.safetensors or an index, tokenizer.json), or a GGUF
    /// decoder file as llama.cpp makes them (Qwen2-VL; its vision file: --mmproj).
    #[arg(long)]
    pub model: PathBuf,
    /// With a GGUF --model: its vision file (llama.cpp's mmproj-*.gguf). Default: the one
    /// mmproj*.gguf beside the model file.
    #[arg(long)]
    pub mmproj: Option<PathBuf>,
    /// Attach a LinVT module (a .safetensors file with its weights, `query_tokens` and its
    /// config in the metadata) to the checkpoint: videos go through it. Replaces a LinVT
    /// checkpoint's own.
    #[arg(long, conflicts_with = "no_linvt")]
    pub linvt: Option<PathBuf>,
    /// Run videos through the host's own path (every frame's tokens in the prompt, as
    /// InternVL's chat does), even on a checkpoint that carries LinVT.
    #[arg(long)]
    pub no_linvt: bool,
    /// A PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors) merged
    /// into the weights at load.
    #[arg(long)]
    pub lora: Option<PathBuf>,
    /// Where the model runs: the GPU (wgpu; every op a WGSL kernel) or the CPU reference.
    /// The GPU is the default, as for `condense`; without an adapter the error says how to
    /// get one or to pass `--backend cpu`.
    #[arg(long, value_enum, default_value = "gpu")]
    pub backend: Device,
    /// How the GPU stores the linear weights: auto (the checkpoint's precision — bf16 for the
    /// released bf16 checkpoints, f16 for f16 ones on adapters with SHADER_F16, else f32 — exact
    /// either way), f32, bf16 (half the memory, any
    /// adapter; rounds f32 weights; on CPU adapters the embedding table too, and decoding ~1.5×
    /// faster there), f16 (half the memory; needs SHADER_F16), or ggml's blocks quantized at
    /// load: q8_0 (8.5 bits per weight), q4_0 or q4_k (4.5; q4_k takes q4_0 for rows that are
    /// not a multiple of 256). Blocks apply to every linear weight whose rows fit (vision
    /// encoder, projector, LinVT and decoder); others, embedding tables as texels, take bf16;
    /// norms and biases stay f32. Ignored with `--backend cpu`.
    #[arg(long, value_enum, default_value = "auto")]
    pub gpu_weights: WeightChoice,
    /// How the CPU keeps the linear weights and the embedding table: auto (the checkpoint's
    /// precision: bf16 for released checkpoints; a GGUF file's blocks as they are), f32 or
    /// bf16; q8_0, q4_0 or q4_k quantize at load as `--gpu-weights` does (rows that fit no
    /// block: bf16). Ignored with `--backend gpu`.
    #[arg(long, value_enum, default_value = "auto")]
    pub cpu_weights: WeightChoice,
    /// How the CPU multiplies block-quantized weights (q8_0, q4_0, q4_k, GGUF files): int8
    /// activations per 32 values and integer dot products, as llama.cpp does (fast), or f32
    /// (exactly the GPU's values, ~2–3× slower at 4 bits). Ignored with `--backend gpu`.
    #[arg(long, value_enum, default_value = "int8")]
    pub cpu_activations: Activations,
    /// How the CPU multiplies bf16 weights: f32 (the activations kept f32: exact) or bf16 (the
    /// activations rounded to bf16: AMX tiles for prefill, the vision encoder, LinVT and
    /// attention, as PyTorch runs a bf16 model, and AVX512-BF16 dot products for decoding, as
    /// llama.cpp does; about three times as fast in prefill and vision; Intel Xeon since
    /// Sapphire Rapids).
    /// Ignored with `--backend gpu`.
    #[arg(long, value_enum, default_value = "f32")]
    pub cpu_products: Products,
    /// Put the CPU's weights on 2 MiB pages as they are loaded (Linux): decoding then streams
    /// them without a page walk every 4 KiB (~1.3× the int8 decode rate where measured), for
    /// ~1–2 s more load time per GB there — for servers and long answers. Ignored with
    /// `--backend gpu`.
    #[arg(long)]
    pub cpu_huge_pages: bool,
}

impl ModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            device: self.backend,
            gpu_weights: self.gpu_weights,
            cpu_weights: self.cpu_weights,
            cpu_activations: self.cpu_activations,
            cpu_products: self.cpu_products,
            cpu_huge_pages: self.cpu_huge_pages,
            linvt: match (&self.linvt, self.no_linvt) {
                (Some(file), _) => LinvtChoice::File(file.clone()),
                (None, true) => LinvtChoice::Off,
                (None, false) => LinvtChoice::Auto,
            },
            lora: self.lora.clone(),
            binding_limit: None,
            mmproj: self.mmproj.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["video", "frames", "image"])))]
pub struct AskArgs {
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// A video file (decoded with the system ffmpeg).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// A directory of frames (.png/.jpg), in file-name order.
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// One image (LinVT is skipped: its tiles' tokens go to the LLM directly).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Images: at most this many 448-px tiles (InternVL's dynamic tiling, plus a thumbnail when
    /// the checkpoint uses one). Default: the checkpoint's max_dynamic_patch when it enables
    /// dynamic_image_size, else one tile.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=40))]
    pub max_tiles: Option<u16>,
    /// The question about the video (or image).
    #[arg(long)]
    pub question: String,
    /// Frames sampled uniformly from the video or directory. Default: 16 on InternVL; Qwen2-VL
    /// samples a video by --fps instead and takes a directory's frames as they are.
    #[arg(long)]
    pub num_frames: Option<usize>,
    /// Sample the video at this many frames per second (Qwen2-VL's default: 2), between 4 and
    /// --max-frames frames (pairs on Qwen2-VL).
    #[arg(long)]
    pub fps: Option<f64>,
    /// At most this many frames when sampling by --fps or taking a directory's frames.
    #[arg(long, default_value_t = 768)]
    pub max_frames: usize,
    /// The rate the frames of --frames were taken at, in frames per second (sets Qwen2.5-VL's
    /// time positions; default 2, Qwen's own).
    #[arg(long)]
    pub frames_fps: Option<f64>,
    /// Qwen2-VL: the most pixels an image or a video frame is resized to (the processor's
    /// max_pixels; default: preprocessor_config.json's).
    #[arg(long)]
    pub max_pixels: Option<usize>,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Draw the sampled frames with the cells the video tokens average over, into this PNG
    /// (without a value: linvt-provenance.png in the system's temporary directory).
    #[arg(long, value_name = "PNG", num_args = 0..=1)]
    pub provenance: Option<Option<PathBuf>>,
    /// Print one JSON object {"answer", "token_ids", "prompt_ids", "timings_ms", "video_path",
    /// "finish_reason", "tokens"} instead of streaming.
    #[arg(long)]
    pub json: bool,
}

/// How a video is sampled: `num_frames` uniformly when given alone (InternVL's default: 16),
/// else by rate — `fps` frames per second (2 by default), 4 … `max_frames` frames, in pairs on
/// hosts that sample by time (Qwen2-VL's pipeline).
pub fn video_sampling(
    by_time: bool,
    num_frames: Option<usize>,
    fps: Option<f64>,
    max_frames: usize,
) -> Sampling {
    match (num_frames, fps) {
        (Some(n), None) => Sampling::Uniform(n),
        (None, None) if !by_time => Sampling::Uniform(DEFAULT_FRAMES),
        (_, rate) => Sampling::Rate {
            fps: rate.unwrap_or(2.0),
            min_frames: 4,
            max_frames,
            multiple: if by_time { 2 } else { 1 },
        },
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal): `len` steps, or a spinner.
pub fn bar(len: Option<u64>, msg: &str) -> ProgressBar {
    let b = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let style = match len {
        Some(_) => ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len}"),
        None => ProgressStyle::with_template("{spinner} {msg}"),
    };
    if let Ok(s) = style {
        b.set_style(s.progress_chars("=> "));
    }
    b.set_message(msg.to_string());
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        b.set_draw_target(ProgressDrawTarget::hidden());
    }
    b
}

pub fn run(a: AskArgs) -> Result<()> {
    if a.question.trim().is_empty() {
        return Err(Error::input(
            "the question is empty; ask something about the video",
        ));
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) || a.temperature.is_nan() || a.temperature < 0.0 {
        return Err(Error::input(
            "--top-p must be in (0, 1] and --temperature ≥ 0",
        ));
    }
    let provenance = a
        .provenance
        .clone()
        .map(|p| p.unwrap_or_else(default_provenance_path));
    if let Some(p) = &provenance {
        crate::io::check_output_path(p, &[])?;
    }
    let load = a.model_args.load_options();
    let decoding = bar(None, "decoding frames");
    decoding.enable_steady_tick(Duration::from_millis(100));
    // Qwen2-VL samples videos by time (its positions follow time); InternVL uniformly.
    let (config, _) =
        super::model::open_model(&a.model_args.model, a.model_args.mmproj.as_deref())?;
    let by_time = matches!(config.host, Host::Qwen2Vl(_));
    let mut fps = None;
    let visual = if let Some(v) = &a.video {
        let sampling = video_sampling(by_time, a.num_frames, a.fps, a.max_frames);
        let (frames, rate) = load_video_sampled(v, sampling)?;
        fps = rate;
        Visual::Video(frames)
    } else if let Some(d) = &a.frames {
        let n = match a.num_frames {
            Some(n) => n,
            None if by_time => a.max_frames,
            None => DEFAULT_FRAMES,
        };
        fps = a.frames_fps;
        Visual::Video(load_frames_dir(d, n)?)
    } else if let Some(i) = &a.image {
        Visual::Image(load_image(i)?)
    } else {
        return Err(Error::input("pass --video, --frames or --image"));
    };
    decoding.finish_and_clear();
    // Uniform sampling asked for (or InternVL's default) but fewer frames there: say so.
    let requested = a.num_frames.or((!by_time).then_some(DEFAULT_FRAMES));
    if let (Visual::Video(frames), Some(n)) = (&visual, requested) {
        if frames.len() < n {
            eprintln!(
                "note: the input has {} frames, fewer than --num-frames {n}; using all {}",
                frames.len(),
                frames.len()
            );
        }
    }

    let opts = AskOptions {
        max_new_tokens: a.max_new_tokens,
        sampling: SamplingParams {
            temperature: a.temperature,
            top_k: 0,
            top_p: a.top_p,
            seed: a.seed,
        },
        provenance: provenance.is_some() && matches!(visual, Visual::Video(_)),
        max_tiles: a.max_tiles.map(usize::from),
        fps,
        max_pixels: a.max_pixels,
        turns: Default::default(),
    };
    // Before the weights: a prompt the context cannot hold is refused now, not after a load.
    let (len, context) = prompt_len(
        &a.model_args.model,
        &config,
        &load,
        &visual,
        &a.question,
        &opts,
    )?;
    if len >= context {
        return Err(Error::input(format!(
            "the prompt would have {len} tokens but the model's context holds {context}; use fewer frames (--num-frames, --fps, --max-frames), tiles (--max-tiles) or pixels (--max-pixels), or a LinVT module (--linvt)"
        )));
    }
    let loading = bar(Some(0), "loading weights");
    let mut model = VideoLlm::load_with(&a.model_args.model, &load, &mut |done, total| {
        loading.set_length(total as u64);
        loading.set_position(done as u64);
    })?;
    loading.finish_and_clear();

    let stage = bar(None, "vision encoder");
    stage.enable_steady_tick(Duration::from_millis(100));
    let json = a.json;
    let mut first = true;
    let stdout = std::io::stdout();
    let mut on_text = |delta: &str| {
        if first {
            stage.finish_and_clear();
            first = false;
        }
        if !json {
            let mut out = stdout.lock();
            let _ = out.write_all(delta.as_bytes());
            let _ = out.flush();
        }
    };
    let mut on_stage = |name: &str| stage.set_message(name.to_string());
    let answer =
        pollster::block_on(model.ask(&visual, &a.question, &opts, &mut on_text, &mut on_stage))?;
    stage.finish_and_clear();
    let mut timings: Vec<(String, f64)> = vec![("load".into(), model.load_ms)];
    timings.extend(answer.timings_ms.iter().cloned());
    if json {
        let obj = serde_json::json!({
            "answer": answer.text,
            "token_ids": answer.token_ids,
            "prompt_ids": answer.prompt_ids,
            "timings_ms": timings
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
            "video_path": answer.video_path.map(VideoPath::name),
            "finish_reason": answer.finish_reason.name(),
            "tokens": {
                "images": answer.images,
                "visual": answer.visual_tokens,
                "prompt_visual": answer.prompt_visual_tokens,
                "prompt": answer.prompt_ids.len(),
            },
        });
        println!("{obj}");
    } else {
        println!();
    }
    eprintln!("{}", describe_path(&answer, &visual));
    if answer.finish_reason == FinishReason::Context {
        eprintln!(
            "note: the answer stopped at the model's context limit ({} tokens: max_position_embeddings); ask with fewer frames or tiles to leave it room",
            model.config().llm.max_positions
        );
    }
    if let (Some(path), Some(p)) = (&provenance, &answer.provenance) {
        if let Visual::Video(frames) = &visual {
            provenance_png(frames, p, model.config().internvl()?.ps_version, path)?;
            eprintln!("provenance drawn to {}", path.display());
        }
    } else if provenance.is_some() {
        let why = match (&model.config().host, answer.video_path) {
            (Host::Qwen2Vl(_), _) => "provenance pictures are drawn on InternVL hosts only so far",
            (_, Some(VideoPath::Frames)) => "the host's own video path has no LinVT to trace",
            _ => "an image skips LinVT",
        };
        eprintln!("note: --provenance draws what LinVT's tokens average over; {why}");
    }
    Ok(())
}

/// One line saying which path the visual input took and how many tokens it became.
fn describe_path(answer: &Answer, visual: &Visual) -> String {
    match (answer.video_path, visual) {
        (Some(VideoPath::Linvt), _) => format!(
            "video: LinVT — {} frames → {} visual tokens → {} video tokens in a {}-token prompt",
            answer.images,
            answer.visual_tokens,
            answer.prompt_visual_tokens,
            answer.prompt_ids.len()
        ),
        (Some(VideoPath::Frames), _) => format!(
            "video: the host's own path (no LinVT) — {} frames → {} visual tokens, all in a {}-token prompt",
            answer.images,
            answer.visual_tokens,
            answer.prompt_ids.len()
        ),
        (None, _) => format!(
            "image: {} tile(s) → {} visual tokens in a {}-token prompt",
            answer.images,
            answer.visual_tokens,
            answer.prompt_ids.len()
        ),
    }
}

/// Where `--provenance` without a value draws: outside whatever directory `ask` runs in.
fn default_provenance_path() -> PathBuf {
    std::env::temp_dir().join("linvt-provenance.png")
}
