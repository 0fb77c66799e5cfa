//! `linvt` command-line program: info, condense, ask, serve, batch, bench, demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use linvt::gpu::{GpuContext, GpuOptions};
use linvt::weights::TensorStore;
use linvt::WeightChoice;
use linvt::{CondenseOptions, ConfigPatch, Device, Linvt};

#[derive(Parser)]
#[command(
    name = "linvt",
    version,
    about = "LinVT video-token condensation on any GPU (wgpu) or the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Threads of the CPU executor (default: one per physical core; `RAYON_NUM_THREADS` is
    /// honoured when this is not given).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum WeightLayoutArg {
    Buffers,
    Texels,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchShape {
    Official,
    Paper,
    Small,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter with its backend, type, features and key limits.
    Info,
    /// Condense video tokens with LinVT weights.
    Condense {
        /// LinVT weights: a .safetensors file or a model directory.
        #[arg(long)]
        weights: PathBuf,
        /// Input safetensors with `input.video` (T,N,C) and `input.text` (L,C).
        #[arg(long)]
        input: PathBuf,
        /// Output safetensors: `output`, `selected_indices`, `scores`.
        #[arg(long)]
        output: PathBuf,
        /// `official` (the released module) or `paper`.
        #[arg(long)]
        preset: Option<String>,
        /// A JSON file with LinVT config fields.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "gpu")]
        backend: Device,
        /// How the GPU stores the linear weights: auto (the file's precision: bf16 when all its
        /// floats are bf16, else f32; exact either way), f32, f16 (half the memory, f32
        /// arithmetic; needs SHADER_F16; scores move by ~1e-2, so the selection may reorder),
        /// bf16 (half the memory, any adapter; rounds f32 weights), or ggml's blocks quantized at
        /// load (q8_0, q4_0, q4_k; rows that fit no block take bf16).
        #[arg(long, value_enum, default_value = "auto")]
        gpu_weights: WeightChoice,
        #[arg(long)]
        num_heads: Option<usize>,
        #[arg(long)]
        num_layers: Option<usize>,
        #[arg(long)]
        top_k: Option<usize>,
        /// Multi-C query split, e.g. 64,32,16.
        #[arg(long, value_delimiter = ',')]
        queries_per_scale: Option<Vec<usize>>,
    },
    /// Time each kernel and forward stage against the device's best matmul rate.
    Bench {
        /// The LinVT shape to time (default small); not with --model or --decoder.
        #[arg(long, value_enum)]
        shape: Option<BenchShape>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Benchmark a video-LLM model directory instead (vision frames/s, LinVT ms, prefill
        /// and decode tokens/s on a synthetic clip).
        #[arg(long)]
        model: Option<PathBuf>,
        /// With --model or --decoder: where it runs (--model: the GPU when available, else the
        /// CPU; --decoder: the GPU).
        #[arg(long, value_enum)]
        backend: Option<Device>,
        /// Frames of the clip: with --model, the synthetic clip's (default 8); with --shape,
        /// instead of the shape's (a clip beyond one storage binding runs split, timed once).
        #[arg(long)]
        frames: Option<usize>,
        /// With --model: timed repetitions (default 5; the median is reported, after one
        /// warm-up).
        #[arg(long)]
        reps: Option<usize>,
        /// With --model: attach this LinVT module (see `ask --linvt`).
        #[arg(long, conflicts_with = "no_linvt")]
        linvt: Option<PathBuf>,
        /// With --model: the host's own video path (every frame's tokens), even with LinVT.
        #[arg(long)]
        no_linvt: bool,
        /// Benchmark decoding of a decoder of this shape with seeded weights (no download) on
        /// the GPU, next to the device's copy bandwidth: qwen2-0.5b, qwen2-7b (with --layers to
        /// fit memory) or qwen2-tiny.
        #[arg(long, conflicts_with = "model")]
        decoder: Option<String>,
        /// Timed decode steps: with --decoder (default: 32 on GPUs, 8 on CPU adapters) or
        /// --model (default: 16, per repetition).
        #[arg(long)]
        steps: Option<usize>,
        /// With --decoder: keep only this many layers (e.g. qwen2-7b trimmed to fit memory).
        #[arg(long)]
        layers: Option<usize>,
        /// With --decoder: where the weights live — buffers, or texels (textures; faster
        /// weight loads on CPU adapters). Default: texels on CPU adapters, buffers on GPUs.
        #[arg(long, value_enum)]
        weight_layout: Option<WeightLayoutArg>,
        /// With --decoder: the linear weights' element type (auto: f32, as the seeded weights
        /// are). bf16 and the block formats (q8_0, q4_0, q4_k: quantized as the weights are
        /// placed) also make the embedding table bf16 when stored as texels; f16 and block
        /// weights live in buffers.
        #[arg(long, value_enum)]
        gpu_weights: Option<WeightChoice>,
        /// With --backend cpu (--model or --decoder): how the CPU keeps the weights — auto (the
        /// checkpoint's precision; the seeded decoder's is f32), f32 or bf16.
        #[arg(long, value_enum)]
        cpu_weights: Option<WeightChoice>,
        /// With --backend cpu: how bf16 weights are multiplied — f32 (exact) or bf16
        /// (activations rounded to bf16: AMX tiles, AVX512-BF16 dot products).
        #[arg(long, value_enum)]
        cpu_products: Option<linvt::ops::Products>,
        /// With --backend cpu: the weights on 2 MiB pages as they are loaded (see `ask
        /// --cpu-huge-pages`).
        #[arg(long)]
        cpu_huge_pages: bool,
    },
    /// Ask a question about a video, a directory of frames or an image (the whole video-LLM).
    Ask(linvt::vlm::ask_cli::AskArgs),
    /// Serve the model over HTTP with the OpenAI chat-completions API (text, image_url and
    /// video_url parts; streaming; questions decoded together).
    Serve(linvt::serve::ServeArgs),
    /// Run a file of chat requests in OpenAI's batch format (resumable; --shard i/n).
    Batch(linvt::serve::batch::BatchArgs),
    /// The whole video-LLM on a generated clip with the embedded tiny model (random weights);
    /// no files needed.
    /// Write a real-size stand-in of a published checkpoint: its exact config.json, seeded
    /// random bf16 weights, a tokenizer of its vocabulary size (nothing is downloaded).
    Synth {
        /// The model to stand in for: internvl2-1b, internvl2-2b or internvl2.5-1b.
        #[arg(long)]
        like: String,
        /// The model directory to write (created if missing).
        out: PathBuf,
        /// Also write a seeded LinVT module (official preset; 8 heads for a 2048-wide LLM, where
        /// 4 would exceed the kernels' head dimension of 256) sized for its LLM to this file.
        #[arg(long)]
        linvt: Option<PathBuf>,
        /// The LinVT module's query count (video tokens per clip).
        #[arg(long, default_value_t = 64, requires = "linvt")]
        linvt_queries: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    Demo {
        /// Where to write the picture (provenance, or with --condense-only the selected cells).
        #[arg(long, default_value = "linvt-demo.png")]
        png: PathBuf,
        /// Only condense a synthetic clip's tokens with seeded LinVT weights (GPU and CPU).
        #[arg(long)]
        condense_only: bool,
        /// Also write the demo's clip as PNG frames into this directory (input for
        /// `ask --frames DIR`).
        #[arg(long, value_name = "DIR", conflicts_with = "condense_only")]
        save_frames: Option<PathBuf>,
    },
}

/// Big blocks on huge pages where the kernel has them (`huge_pages::HugeHeap`).
#[global_allocator]
static ALLOCATOR: linvt::cpu::huge_pages::HugeHeap = linvt::cpu::huge_pages::HugeHeap;

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    // The command runs on a worker of the CPU executor's pool (`threads::on_pool`); serve and
    // batch run their model thread there instead (their async runtime must not hold a worker).
    let started = linvt::cpu::threads::init(cli.threads).and_then(|_| match &cli.command {
        Command::Serve(_) | Command::Batch(_) => run(cli.command),
        _ => linvt::cpu::threads::on_pool(|| run(cli.command)),
    });
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Has glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.
/// The CPU executor allocates each op's output afresh (tens of MiB in the vision encoder); by
/// default glibc maps every block over 32 MiB anew and returns freed ones at once, so each op
/// page-faults its output in and the kernel zeroes it: a sixth of the vision encoder's time
/// with `--cpu-products bf16` on the InternVL2-1B stand-in. Served from the heap, the freed
/// pages of the previous op are reused; the peak memory stays the same.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// `bench` has three modes — the LinVT shapes (`--shape`), `--model` and `--decoder` — each
/// with its own options: an option given to a mode that does not read it is refused here
/// rather than ignored. (clap's `requires` did not hold across the modes' conflicts, so this
/// is the one place that checks.)
fn check_bench_options(cmd: &Command) -> linvt::Result<()> {
    let Command::Bench {
        shape,
        model,
        decoder,
        backend,
        frames,
        reps,
        linvt,
        no_linvt,
        steps,
        layers,
        weight_layout,
        gpu_weights,
        cpu_weights,
        cpu_products,
        cpu_huge_pages,
        ..
    } = cmd
    else {
        return Ok(());
    };
    let mode = match (model, decoder) {
        (Some(_), _) => "--model",
        (_, Some(_)) => "--decoder",
        _ => "--shape",
    };
    const BOTH: &[&str] = &["--model", "--decoder"];
    let options: [(&str, bool, &[&str]); 13] = [
        ("--shape", shape.is_some(), &["--shape"]),
        ("--backend", backend.is_some(), BOTH),
        ("--frames", frames.is_some(), &["--model", "--shape"]),
        ("--reps", reps.is_some(), &["--model"]),
        ("--linvt", linvt.is_some(), &["--model"]),
        ("--no-linvt", *no_linvt, &["--model"]),
        ("--steps", steps.is_some(), BOTH),
        ("--layers", layers.is_some(), &["--decoder"]),
        ("--weight-layout", weight_layout.is_some(), &["--decoder"]),
        ("--gpu-weights", gpu_weights.is_some(), &["--decoder"]),
        ("--cpu-weights", cpu_weights.is_some(), BOTH),
        ("--cpu-products", cpu_products.is_some(), BOTH),
        ("--cpu-huge-pages", *cpu_huge_pages, BOTH),
    ];
    match options
        .iter()
        .find(|(_, given, modes)| *given && !modes.contains(&mode))
    {
        Some((flag, _, modes)) => Err(linvt::Error::input(format!(
            "{flag} applies to `bench {}`, not `bench {mode}`",
            modes.join("` and `bench ")
        ))),
        None => Ok(()),
    }
}

fn run(cmd: Command) -> linvt::Result<()> {
    check_bench_options(&cmd)?;
    match cmd {
        Command::Info => info(),
        Command::Condense {
            weights,
            input,
            output,
            preset,
            config,
            backend,
            gpu_weights,
            num_heads,
            num_layers,
            top_k,
            queries_per_scale,
        } => {
            let flags = ConfigPatch {
                preset,
                num_heads,
                num_layers,
                top_k,
                queries_per_scale,
                ..Default::default()
            };
            let file = match &config {
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(|e| linvt::Error::io(p, e))?;
                    ConfigPatch::from_user_json(&text, &p.display().to_string())?
                }
                None => ConfigPatch::default(),
            };
            condense(
                &weights,
                &input,
                &output,
                &flags.over(&file),
                backend,
                gpu_weights,
            )
        }
        Command::Bench {
            model: Some(dir),
            json,
            backend,
            frames,
            reps,
            linvt,
            no_linvt,
            cpu_weights,
            cpu_products,
            cpu_huge_pages,
            steps,
            ..
        } => {
            use linvt::vlm::model::LinvtChoice;
            let defaults = linvt::vlm::bench_model::BenchModelOptions::default();
            let opts = linvt::vlm::bench_model::BenchModelOptions {
                backend,
                frames: frames.unwrap_or(8),
                reps: reps.unwrap_or(defaults.reps),
                decode_steps: steps.unwrap_or(defaults.decode_steps),
                linvt: match (linvt, no_linvt) {
                    (Some(file), _) => LinvtChoice::File(file),
                    (None, true) => LinvtChoice::Off,
                    (None, false) => LinvtChoice::Auto,
                },
                cpu_weights: cpu_weights.unwrap_or_default(),
                cpu_products: cpu_products.unwrap_or_default(),
                cpu_huge_pages,
            };
            let report = linvt::vlm::bench_model::run(&dir, &opts)?;
            if json {
                println!("{}", linvt::vlm::bench_model::to_json(&report));
            } else {
                linvt::vlm::bench_model::print_table(&report);
            }
            Ok(())
        }
        Command::Bench {
            decoder: Some(name),
            steps,
            layers,
            weight_layout,
            gpu_weights,
            json,
            backend,
            cpu_weights,
            cpu_products,
            cpu_huge_pages,
            ..
        } => {
            linvt::vlm::bench_decoder::shape(&name)?; // a bad name fails before the GPU starts
            let mut say = |s: &str| {
                if !json {
                    eprintln!("{s}…");
                }
            };
            let report = if backend == Some(Device::Cpu) {
                let opts = linvt::vlm::bench_decoder::DecoderBenchOptions {
                    decode_steps: steps,
                    layers,
                    // The seeded weights are f32: `auto` keeps f32.
                    weight_storage: cpu_weights
                        .unwrap_or_default()
                        .or(linvt::WeightStorage::F32),
                    products: cpu_products.unwrap_or_default(),
                    huge_pages: cpu_huge_pages,
                    ..Default::default()
                };
                linvt::vlm::bench_decoder::run_cpu(&name, &opts, &mut say)?
            } else {
                let ctx = GpuContext::new_blocking(&GpuOptions::from_env())?;
                let opts = linvt::vlm::bench_decoder::DecoderBenchOptions {
                    decode_steps: steps,
                    layers,
                    // The seeded weights are f32: `auto` keeps f32.
                    weight_storage: gpu_weights
                        .unwrap_or(WeightChoice::F32)
                        .or(linvt::WeightStorage::F32),
                    weight_layout: weight_layout.map(|l| match l {
                        WeightLayoutArg::Buffers => linvt::gpu::texels::WeightLayout::Buffers,
                        WeightLayoutArg::Texels => linvt::gpu::texels::WeightLayout::Texels,
                    }),
                    ..Default::default()
                };
                linvt::vlm::bench_decoder::run(&ctx, &name, &opts, &mut say)?
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                linvt::vlm::bench_decoder::print_table(&report);
            }
            Ok(())
        }
        Command::Bench {
            shape,
            json,
            frames,
            ..
        } => {
            let mut shape = match shape.unwrap_or(BenchShape::Small) {
                BenchShape::Official => linvt::bench::BenchShape::official(),
                BenchShape::Paper => linvt::bench::BenchShape::paper(),
                BenchShape::Small => linvt::bench::BenchShape::small(),
            };
            if let Some(f) = frames {
                if f == 0 {
                    return Err(linvt::Error::input("--frames must be at least 1"));
                }
                shape.frames = f;
            }
            let ctx = GpuContext::new_blocking(&GpuOptions::from_env())?;
            let report = linvt::bench::run(&ctx, &shape, !json)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                linvt::bench::print_table(&report);
            }
            Ok(())
        }
        Command::Ask(args) => linvt::vlm::ask_cli::run(args),
        Command::Serve(args) => linvt::serve::run(args),
        Command::Batch(args) => linvt::serve::batch::run(args),
        Command::Synth {
            like,
            out,
            linvt,
            linvt_queries,
            seed,
        } => {
            let plugin = linvt.as_deref().map(|p| (p, linvt_queries));
            let r = linvt::vlm::synth::synth(&like, &out, seed, plugin)?;
            eprintln!(
                "wrote a {like} stand-in ({:.1} M parameters, bf16, seed {seed}) to {}",
                r.parameters as f64 / 1e6,
                out.display()
            );
            if let (Some(path), Some((n, heads))) = (&linvt, r.linvt) {
                eprintln!(
                    "wrote a LinVT module ({:.1} M parameters, {linvt_queries} queries, official preset with {heads} heads) to {}",
                    n as f64 / 1e6,
                    path.display()
                );
            }
            Ok(())
        }
        Command::Demo {
            png,
            condense_only: true,
            ..
        } => linvt::demo::run(&png),
        Command::Demo {
            png, save_frames, ..
        } => linvt::vlm::demo::run(&png, save_frames.as_deref()),
    }
}

fn info() -> linvt::Result<()> {
    // Every backend unless LINVT_BACKEND names one: `info` is where a user looks for adapters
    // the default choice (Vulkan, Metal, DX12) leaves out, such as GL.
    let mut opts = GpuOptions::from_env();
    if opts.backend.is_none() {
        opts.backend = Some("all".into());
    }
    println!("cpu executor (`--backend cpu`):");
    for line in linvt::cpu::kernels() {
        println!("  {line}");
    }
    let adapters = pollster::block_on(linvt::gpu::list_adapters(&opts))?;
    if adapters.is_empty() {
        println!("no GPU adapters found.");
        println!("On a machine without a GPU: `apt-get install mesa-vulkan-drivers` provides lavapipe, a Vulkan driver on the CPU.");
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        let l = &a.limits;
        println!("adapter {i}: {}", a.name);
        println!(
            "  backend: {}   type: {}   driver: {}",
            a.backend, a.device_type, a.driver
        );
        println!(
            "  features: {}",
            if a.features.is_empty() {
                "(none of SHADER_F16, SUBGROUP, TIMESTAMP_QUERY)".to_string()
            } else {
                a.features.join(", ")
            }
        );
        println!(
            "  max storage binding: {} MiB   max buffer: {} MiB",
            l.max_storage_buffer_binding_size / (1 << 20),
            l.max_buffer_size / (1 << 20)
        );
        println!(
            "  workgroup storage: {} KiB   invocations/workgroup: {}   workgroups/dim: {}",
            l.max_compute_workgroup_storage_size / 1024,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        );
        println!(
            "  linear weights stored as: {}",
            match a.weight_layout {
                linvt::gpu::texels::WeightLayout::Texels =>
                    "texels (textures: a CPU adapter loads them faster than storage buffers)",
                linvt::gpu::texels::WeightLayout::Buffers => "storage buffers",
            }
        );
    }
    Ok(())
}

fn condense(
    weights: &Path,
    input: &Path,
    output: &Path,
    patch: &ConfigPatch,
    backend: Device,
    gpu_weights: WeightChoice,
) -> linvt::Result<()> {
    // Before any work: a run must not end in "cannot write" after minutes of computing.
    linvt::io::check_output_path(output, &[weights, input])?;
    let store = TensorStore::open(weights)?;
    let storage = gpu_weights.resolve(&store);
    let (mut model, report) = Linvt::from_store(&store, patch)?;
    if !report.unused.is_empty() {
        eprintln!(
            "warning: {} tensor(s) in {} are not used by this configuration: {}",
            report.unused.len(),
            weights.display(),
            report.unused.join(", ")
        );
    }
    let inputs = TensorStore::open(input)?;
    let (video, text) = linvt::io::condense_inputs(&inputs)?;
    if backend == Device::Gpu {
        let ctx = GpuContext::new_blocking(&GpuOptions::from_env())?;
        model.attach_gpu_with(ctx, storage)?;
    }
    let device = backend;
    let c = model.condense(device, &video, &text, &CondenseOptions::default())?;
    if c.k < c.k_requested {
        eprintln!(
            "note: top_k {} exceeds the clip's {} tokens ({} frames × {}); selecting all {}",
            c.k_requested,
            c.frames * c.tokens,
            c.frames,
            c.tokens,
            c.k
        );
    }
    linvt::io::write_condense_output(output, &c, model.config())?;
    let device = match c.device {
        Device::Cpu => "cpu".to_string(),
        Device::Gpu => format!("gpu, {} weights on {}", storage.name(), c.adapter),
    };
    eprintln!(
        "condensed {} frames × {} tokens → {} tokens ({} preset, {device}) → {}",
        c.frames,
        c.tokens,
        c.output.rows(),
        model.config().preset,
        output.display()
    );
    Ok(())
}
