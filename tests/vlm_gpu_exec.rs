//! The video-LLM's GPU executor (`VlmOps` for `GpuOps`) where it does more than call one
//! kernel: tables stored as row chunks (embedding gather, lm_head linear) or as texels, the KV
//! cache through write + attend, and `sample`'s single read-back. Compared with the CPU executor (whose ops
//! are the twins).
mod common;

use linvt::cpu::CpuOps;
use linvt::gpu::texels::WeightLayout;
use linvt::gpu::GpuOps;
use linvt::gpu::{BufferPool, Recorder};
use linvt::ops::Ops;
use linvt::ops::Role;
use linvt::ops::VlmOps;
use linvt::ops::{Positions, Rope, SamplingParams};
use linvt::Tensor;
use pollster::FutureExt as _;

fn tensor(seed: u64, rows: usize, cols: usize) -> Tensor {
    Tensor::new(vec![rows, cols], common::rand_vec(seed, rows * cols, 1.0)).unwrap()
}

#[test]
fn chunked_table_gathers_and_projects_like_one_table() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let mut gpu = GpuOps::new(Recorder::new(&ctx, &pool));
    // 1000 × 24 f32 = 96 000 bytes against a 10 000-byte budget: 104 rows per chunk, 10 chunks.
    gpu.placement.chunk_bytes = Some(10_000);
    let mut cpu = CpuOps::new();
    let table = tensor(1, 1000, 24);
    let tg = gpu.upload(table.clone()).unwrap();
    assert_eq!(gpu.chunked(&tg).map(|c| c.chunk_count()), Some(10));
    let tc = cpu.upload(table).unwrap();

    // Ids in the first, middle and last chunks, at chunk edges, repeated.
    let ids = [0u32, 103, 104, 999, 500, 0, 936, 935];
    let got = gpu.gather_rows(&tg, &ids).unwrap();
    let want = cpu.gather_rows(&tc, &ids).unwrap();
    assert_eq!(
        gpu.read_back(&got).block_on().unwrap().data(),
        want.data(),
        "gather: copies"
    );
    assert!(gpu.gather_rows(&tg, &[1000]).is_err());

    // lm_head: logits (3, 1000) = x · tableᵀ, chunk by chunk into the columns.
    let x = tensor(2, 3, 24);
    let xg = gpu.upload(x.clone()).unwrap();
    let got = gpu.linear(&xg, &tg, None).unwrap();
    let got = gpu.read_back(&got).block_on().unwrap();
    let want = cpu.linear(&x, &tc, None).unwrap();
    assert_eq!(got.shape(), &[3, 1000]);
    // Dot products of 24 terms in (-1, 1): f32 summation-order differences ≲ 24·2⁻²⁴·|terms|.
    common::assert_close("chunked lm_head", got.data(), want.data(), 1e-5, 0.0);
    // The fused epilogues (forced on: CPU adapters compose them by default) through the
    // chunks: each chunk's columns of the residual and of γ (the CPU executor composes linear,
    // then gelu or residual_add; GELU's approximation adds < 2e-7).
    gpu.fuse_epilogues = Some(true);
    let b = tensor(3, 1, 1000).reshape(&[1000]).unwrap();
    let (bg, bc) = (gpu.upload(b.clone()).unwrap(), cpu.upload(b).unwrap());
    let got = gpu.linear_gelu(&xg, &tg, Some(&bg)).unwrap();
    let want = cpu.linear_gelu(&x, &tc, Some(&bc)).unwrap();
    let got = gpu.read_back(&got).block_on().unwrap();
    common::assert_close("chunked linear_gelu", got.data(), want.data(), 2e-5, 0.0);
    gpu.placement.chunk_bytes = None; // activations (12 000 bytes) stay whole
    let r = tensor(4, 3, 1000);
    let gamma = tensor(5, 1, 1000).reshape(&[1000]).unwrap();
    let (rg, rc) = (gpu.upload(r.clone()).unwrap(), cpu.upload(r).unwrap());
    let (gg, gc) = (
        gpu.upload(gamma.clone()).unwrap(),
        cpu.upload(gamma).unwrap(),
    );
    let got = gpu
        .linear_residual(&xg, &tg, Some(&bg), &rg, Some(&gg))
        .unwrap();
    let want = cpu
        .linear_residual(&x, &tc, Some(&bc), &rc, Some(&gc))
        .unwrap();
    let got = gpu.read_back(&got).block_on().unwrap();
    common::assert_close(
        "chunked linear_residual",
        got.data(),
        want.data(),
        2e-5,
        0.0,
    );
    let err = gpu
        .linear_residual(&xg, &tg, None, &xg, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("residual"), "{err}");
    // Reading the whole table back joins the chunks.
    assert_eq!(gpu.read_back(&tg).block_on().unwrap().data(), tc.data());
    // Other ops refuse the chunked table instead of reading past its first chunk.
    let err = gpu.rms_norm(&tg, &xg, 1e-6).unwrap_err().to_string();
    assert!(err.contains("storage binding"), "{err}");
}

/// Weights uploaded as texels (`upload_weight` with the texel layout): linear weights and
/// tables go to textures, other roles and 1-D tensors stay buffers; the gather, the linear and
/// the read-back agree with the CPU executor exactly or to f32 summation order, and other ops
/// refuse a texel tensor with an error naming the two ops that read it.
#[test]
fn texel_weights_gather_project_and_read_back_like_the_cpu() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let mut gpu = GpuOps::new(Recorder::new(&ctx, &pool));
    gpu.placement.layout = Some(WeightLayout::Texels);
    let mut cpu = CpuOps::new();
    let table = tensor(5, 1000, 24);
    let tg = gpu.upload_weight(table.clone(), Role::Table).unwrap();
    let tc = cpu.upload(table.clone()).unwrap();
    assert!(tg.is_texels());
    let bias = Tensor::new(vec![1000], common::rand_vec(6, 1000, 1.0)).unwrap();
    assert!(!gpu
        .upload_weight(bias.clone(), Role::LinearWeight)
        .unwrap()
        .is_texels());
    assert!(!gpu.upload_weight(table, Role::Other).unwrap().is_texels());

    let ids = [0u32, 999, 17, 17, 512];
    let got = gpu.gather_rows(&tg, &ids).unwrap();
    let want = cpu.gather_rows(&tc, &ids).unwrap();
    assert_eq!(
        gpu.read_back(&got).block_on().unwrap().data(),
        want.data(),
        "gather"
    );
    assert!(gpu.gather_rows(&tg, &[1000]).is_err());

    // One token (the matrix-vector kernel) and three (register-blocked), with a bias.
    let bg = gpu.upload(bias.clone()).unwrap();
    let bc = cpu.upload(bias).unwrap();
    for rows in [1, 3] {
        let x = tensor(7, rows, 24);
        let xg = gpu.upload(x.clone()).unwrap();
        let got = gpu.linear(&xg, &tg, Some(&bg)).unwrap();
        let want = cpu.linear(&x, &tc, Some(&bc)).unwrap();
        // Dot products of 24 terms in (-1, 1) plus a bias: summation order ≲ 24·2⁻²⁴·|terms|.
        common::assert_close(
            &format!("texel lm_head, {rows} rows"),
            gpu.read_back(&got).block_on().unwrap().data(),
            want.data(),
            1e-5,
            0.0,
        );
    }
    assert_eq!(
        gpu.read_back(&tg).block_on().unwrap().data(),
        tc.data(),
        "read-back"
    );
    let view = gpu.rows(&tg, 10, 2);
    assert_eq!(
        gpu.read_back(&view).block_on().unwrap().data(),
        &tc.data()[240..288],
        "read-back of a row view"
    );
    let xg = gpu.upload(tensor(8, 2, 24)).unwrap();
    let err = gpu.rms_norm(&tg, &xg, 1e-6).unwrap_err().to_string();
    assert!(
        err.contains("texels") && err.contains("gather_rows"),
        "{err}"
    );
    let err = gpu.linear(&tg, &tg, None).unwrap_err().to_string();
    assert!(err.contains("texels"), "{err}");
    // The texture limits bound a texel tensor (4 f32 or 8 bf16 values per texel, 4096 × 4096
    // texels per layer); `upload_weight` keeps larger weights in buffers instead of failing.
    // Texels never hold f16.
    use linvt::gpu::Elem;
    let texels = 4096 * 4096 * ctx.limits.max_texture_array_layers as usize;
    assert!(ctx.fits_texels(4 * texels, Elem::F32));
    assert!(!ctx.fits_texels(4 * texels + 1, Elem::F32));
    assert!(ctx.fits_texels(8 * texels, Elem::Bf16));
    assert!(!ctx.fits_texels(8 * texels + 1, Elem::Bf16));
    assert!(!ctx.fits_texels(4, Elem::F16));
}

#[test]
fn decode_through_the_cache_matches_cpu_and_samples_one_id() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let mut gpu = GpuOps::new(Recorder::new(&ctx, &pool));
    let mut cpu = CpuOps::new();
    let (heads, kv_heads, d, layers) = (4, 2, 8, 2);
    let mut gc = gpu.kv_cache(layers, kv_heads, d, 12).unwrap();
    let mut cc = cpu.kv_cache(layers, kv_heads, d, 12).unwrap();
    // Prefill 5 rows into layer 1, then 3 single-row steps; RoPE on q and k as the decoder.
    let mut position = 0;
    for (step, rows) in [5usize, 1, 1, 1].into_iter().enumerate() {
        let seed = 10 * step as u64;
        let (q, k, v) = (
            tensor(seed, rows, heads * d),
            tensor(seed + 1, rows, kv_heads * d),
            tensor(seed + 2, rows, kv_heads * d),
        );
        let (qg, kg, vg) = (
            gpu.upload(q.clone()).unwrap(),
            gpu.upload(k.clone()).unwrap(),
            gpu.upload(v.clone()).unwrap(),
        );
        let at = Positions::range(position, rows);
        let (pg, pc) = (gpu.positions(&at).unwrap(), cpu.positions(&at).unwrap());
        let qg = gpu.rope(&qg, heads, d, &pg, &Rope::new(d, 1e6)).unwrap();
        let kg = gpu.rope(&kg, kv_heads, d, &pg, &Rope::new(d, 1e6)).unwrap();
        let qc = cpu.rope(&q, heads, d, &pc, &Rope::new(d, 1e6)).unwrap();
        let kc = cpu.rope(&k, kv_heads, d, &pc, &Rope::new(d, 1e6)).unwrap();
        gpu.kv_write(&mut gc, 1, position, &kg, &vg).unwrap();
        cpu.kv_write(&mut cc, 1, position, &kc, &v).unwrap();
        let a = gpu.kv_attention(&gc, 1, &qg, position, heads).unwrap();
        let want = cpu.kv_attention(&cc, 1, &qc, position, heads).unwrap();
        // As tests/kernel_kv_attention.rs (convex combinations of values in (-1, 1)).
        common::assert_close(
            &format!("attention at {position}"),
            gpu.read_back(&a).block_on().unwrap().data(),
            want.data(),
            1e-5,
            1e-4,
        );
        position += rows;
    }
    // Two rows at position 11 overflow the 12-position cache: an error, not a panic.
    let two = gpu.upload(tensor(99, 2, kv_heads * d)).unwrap();
    assert!(gpu.kv_write(&mut gc, 0, 11, &two, &two).is_err());

    // sample: greedy reads back the argmax id.
    let logits = Tensor::new(vec![1, 5], vec![0.1, 3.0, -2.0, 3.0, 1.0]).unwrap();
    let lg = gpu.upload(logits).unwrap();
    assert_eq!(
        gpu.sample(&lg, &SamplingParams::default(), 0.3)
            .block_on()
            .unwrap(),
        1
    );
}

fn tiny_model_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-internvl2")
}

/// A copy of the tiny model in `dir` with every f32 tensor rounded to bf16, as the released
/// checkpoints are stored.
fn write_bf16_copy_of_tiny_model(dir: &std::path::Path) {
    let src = tiny_model_dir();
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".safetensors") {
            std::fs::copy(e.path(), dir.join(name)).unwrap();
        }
    }
    common::write_bf16_copy(
        &src.join("model.safetensors"),
        &dir.join("model.safetensors"),
    );
}

/// On the CPU too a released-style checkpoint keeps its bf16 weights (half the memory and the
/// decode traffic) by default, and answers exactly as with the same weights widened to f32
/// (`--cpu-weights f32`): widening is exact, only the products' summation order differs.
/// `--cpu-weights f16` keeps f16 (answers: tests/gguf_model.rs's F16 file).
#[test]
fn bf16_checkpoints_stay_bf16_on_the_cpu_and_answer_as_f32() {
    use linvt::vlm::model::{LoadOptions, VideoLlm};
    use linvt::{Device, WeightChoice, WeightStorage};
    let dir = std::env::temp_dir().join(format!("linvt-bf16-cpu-{}", std::process::id()));
    write_bf16_copy_of_tiny_model(&dir);
    let load = |w: WeightChoice| {
        let opts = LoadOptions {
            cpu_weights: w,
            ..LoadOptions::new(Device::Cpu)
        };
        VideoLlm::load_with(&dir, &opts, &mut |_, _| {})
    };
    let mut bf16 = load(WeightChoice::Auto).unwrap();
    assert_eq!(bf16.cpu_weight_storage(), Some(WeightStorage::Bf16));
    let mut f32 = load(WeightChoice::F32).unwrap();
    assert_eq!(f32.cpu_weight_storage(), Some(WeightStorage::F32));
    let f16 = load(WeightChoice::F16).unwrap();
    assert_eq!(f16.cpu_weight_storage(), Some(WeightStorage::F16));
    drop(f16);
    let f32_fixture = VideoLlm::load(&tiny_model_dir(), Device::Cpu, &mut |_, _| {}).unwrap();
    assert_eq!(f32_fixture.cpu_weight_storage(), Some(WeightStorage::F32));
    let ask = |m: &mut VideoLlm| common::greedy_moving_bar(m, 12);
    let (want, got) = (ask(&mut f32), ask(&mut bf16));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(got, want);
}

/// `--cpu-products bf16` (activations rounded to bf16, AMX tiles) on the bf16 checkpoint: where
/// the CPU has AMX it loads and gives the exact path's greedy answer (the tiny model's margins
/// are wider than bf16 rounding of its activations moves its logits; the products themselves
/// are held to the f64 reference in `cpu::amx`'s tests); elsewhere it is refused at load with
/// the reason. Weights kept in f32 are refused either way: there is nothing bf16 to multiply.
#[test]
fn bf16_products_answer_as_the_exact_path_or_are_refused() {
    use linvt::vlm::model::{LoadOptions, VideoLlm};
    use linvt::{Device, Products, WeightChoice};
    let dir = std::env::temp_dir().join(format!("linvt-bf16-amx-{}", std::process::id()));
    write_bf16_copy_of_tiny_model(&dir);
    let load = |w: WeightChoice, p: Products| {
        let opts = LoadOptions {
            cpu_weights: w,
            cpu_products: p,
            ..LoadOptions::new(Device::Cpu)
        };
        VideoLlm::load_with(&dir, &opts, &mut |_, _| {})
    };
    let refused = load(WeightChoice::F32, Products::Bf16)
        .err()
        .expect("f32 weights refused");
    assert!(
        refused
            .to_string()
            .contains("--cpu-products bf16 multiplies bf16 weights"),
        "{refused}"
    );
    let mut exact = load(WeightChoice::Auto, Products::F32).unwrap();
    let amx = load(WeightChoice::Auto, Products::Bf16);
    let ask = |m: &mut VideoLlm| common::greedy_moving_bar(m, 12);
    let want = ask(&mut exact);
    let got = amx.map(|mut m| ask(&mut m));
    std::fs::remove_dir_all(&dir).unwrap();
    match got {
        Ok(got) => assert_eq!(got, want),
        Err(e) => assert!(e.to_string().contains("AMX"), "{e}"),
    }
}

/// A released-style checkpoint (every float tensor bf16) loads with the GPU's weights in bf16
/// by default — exact, as the values are bf16 already — and answers greedily exactly as the
/// CPU backend does on the same checkpoint; the f32 fixture keeps f32.
#[test]
fn bf16_checkpoints_load_as_bf16_and_answer_like_the_cpu() {
    use linvt::vlm::model::VideoLlm;
    use linvt::Device;
    use linvt::WeightStorage;
    if common::gpu().is_none() {
        return;
    }
    let f32_model = VideoLlm::load(&tiny_model_dir(), Device::Gpu, &mut |_, _| {}).unwrap();
    assert_eq!(f32_model.gpu_weight_storage(), Some(WeightStorage::F32));
    drop(f32_model);
    let dir = std::env::temp_dir().join(format!("linvt-bf16-model-{}", std::process::id()));
    write_bf16_copy_of_tiny_model(&dir);
    let mut gpu = VideoLlm::load(&dir, Device::Gpu, &mut |_, _| {}).unwrap();
    assert_eq!(gpu.gpu_weight_storage(), Some(WeightStorage::Bf16));
    let mut cpu = VideoLlm::load(&dir, Device::Cpu, &mut |_, _| {}).unwrap();
    assert_eq!(cpu.gpu_weight_storage(), None);
    let ask = |m: &mut VideoLlm| common::greedy_moving_bar(m, 12);
    let (want, got) = (ask(&mut cpu), ask(&mut gpu));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(got, want);
}

/// Sampled (not greedy) answers of the tiny model: the GPU's top-k order and `pick` draw the
/// same tokens as the CPU twin from the same seeded uniform numbers. (A draw within ~1e-6 of a
/// boundary between two tokens could legitimately differ; none of these 3 × 16 draws is.)
#[test]
fn seeded_sampling_answers_match_the_cpu() {
    use linvt::vlm::model::{AskOptions, VideoLlm};
    use linvt::Device;
    if common::gpu().is_none() {
        return;
    }
    let dir = tiny_model_dir();
    let visual = common::moving_bar_clip();
    let mut cpu = VideoLlm::load(&dir, Device::Cpu, &mut |_, _| {}).unwrap();
    let mut gpu = VideoLlm::load(&dir, Device::Gpu, &mut |_, _| {}).unwrap();
    for (temperature, top_k, top_p, seed) in [(0.9, 0, 0.9, 7), (1.5, 40, 1.0, 8), (0.6, 0, 1.0, 9)]
    {
        let opts = AskOptions {
            max_new_tokens: 16,
            sampling: SamplingParams {
                temperature,
                top_k,
                top_p,
                seed,
            },
            ..Default::default()
        };
        let ask = |m: &mut VideoLlm| {
            m.ask(&visual, "What moves?", &opts, &mut |_| {}, &mut |_| {})
                .block_on()
                .unwrap()
                .token_ids
        };
        let (want, got) = (ask(&mut cpu), ask(&mut gpu));
        assert_eq!(
            got, want,
            "T = {temperature}, top_k = {top_k}, top_p = {top_p}"
        );
    }
}

/// bf16 weights in the decoder (`weight_storage`): the GPU executor with its linear weights
/// stored as bf16 against the CPU executor on the same weights rounded to bf16. Both then do the
/// same f32 arithmetic, so over a 3-token prefill and 3 greedy steps the ids must agree and the
/// logits differ only by summation order: dot products of ≤ 256 terms of size ≲ 0.03·3 give
/// ≲ 256·2⁻²⁴·0.1 ≈ 2e-6 per product, well inside atol 1e-4 after two layers. In buffers the
/// embedding table stays f32; as texels it is bf16 too (the gather and the tied lm_head read it).
#[test]
fn bf16_decoder_weights_in_buffers_match_the_cpu_on_rounded_weights() {
    bf16_decoder_matches_cpu(WeightLayout::Buffers);
}

#[test]
fn bf16_decoder_weights_as_texels_match_the_cpu_on_rounded_weights() {
    bf16_decoder_matches_cpu(WeightLayout::Texels);
}

fn bf16_decoder_matches_cpu(layout: WeightLayout) {
    use linvt::gpu::Elem;
    use linvt::vlm::qwen2::{self, Qwen2Layer, Qwen2Params};
    use linvt::WeightStorage;
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let mut gpu = GpuOps::new(Recorder::new(&ctx, &pool));
    gpu.placement.storage = WeightStorage::Bf16;
    gpu.placement.layout = Some(layout);
    let texels = layout == WeightLayout::Texels;
    let mut cpu = CpuOps::new();
    let c = linvt::vlm::bench_decoder::shape("qwen2-tiny").unwrap();
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let kv = c.kv_heads * c.head_dim();
    let bf16 = |t: &Tensor| {
        let data = t.data().iter().map(|&x| half::bf16::from_f32(x).to_f32());
        Tensor::new(t.shape().to_vec(), data.collect()).unwrap()
    };
    let mut seed = 300;
    let mut pair = |shape: &[usize], role: Role, offset: f32| {
        seed += 1;
        let n = shape.iter().product();
        let data = common::rand_vec(seed, n, 0.03)
            .iter()
            .map(|x| x + offset)
            .collect();
        let t = Tensor::new(shape.to_vec(), data).unwrap();
        let host = if role == Role::LinearWeight || (texels && role == Role::Table) {
            bf16(&t)
        } else {
            t.clone()
        };
        (
            gpu.upload_weight(t, role).unwrap(),
            cpu.upload(host).unwrap(),
        )
    };
    let (embed_g, embed_c) = pair(&[v, h], Role::Table, 0.0);
    let table_elem = if texels { Elem::Bf16 } else { Elem::F32 };
    assert_eq!((embed_g.elem, embed_g.is_texels()), (table_elem, texels));
    let (mut layers_g, mut layers_c) = (Vec::new(), Vec::new());
    for _ in 0..c.layers {
        let (in_g, in_c) = pair(&[h], Role::Other, 1.0);
        let (qkv_g, qkv_c) = pair(&[h + 2 * kv, h], Role::LinearWeight, 0.0);
        let (qb_g, qb_c) = pair(&[h + 2 * kv], Role::Other, 0.0);
        let (o_g, o_c) = pair(&[h, h], Role::LinearWeight, 0.0);
        let (post_g, post_c) = pair(&[h], Role::Other, 1.0);
        let (gu_g, gu_c) = pair(&[2 * i, h], Role::LinearWeight, 0.0);
        let (d_g, d_c) = pair(&[h, i], Role::LinearWeight, 0.0);
        assert_eq!((qkv_g.elem, qkv_g.is_texels()), (Elem::Bf16, texels));
        layers_g.push(Qwen2Layer {
            input_norm: in_g,
            qkv_w: qkv_g,
            qkv_b: Some(qb_g),
            o_w: o_g,
            post_norm: post_g,
            gate_up_w: gu_g,
            down_w: d_g,
        });
        layers_c.push(Qwen2Layer {
            input_norm: in_c,
            qkv_w: qkv_c,
            qkv_b: Some(qb_c),
            o_w: o_c,
            post_norm: post_c,
            gate_up_w: gu_c,
            down_w: d_c,
        });
    }
    let (norm_g, norm_c) = pair(&[h], Role::Other, 1.0);
    let pg = Qwen2Params {
        embed: embed_g,
        layers: layers_g,
        norm: norm_g,
        lm_head: None,
    };
    let pc = Qwen2Params {
        embed: embed_c,
        layers: layers_c,
        norm: norm_c,
        lm_head: None,
    };
    let mut cache_g = gpu.kv_cache(c.layers, c.kv_heads, c.head_dim(), 8).unwrap();
    let mut cache_c = cpu.kv_cache(c.layers, c.kv_heads, c.head_dim(), 8).unwrap();
    let greedy = SamplingParams::default();
    let rope = c.rope.for_length(8);
    let (mut ids, mut position) = (vec![1u32, 5, 7], 0);
    for step in 0..4 {
        let at = Positions::range(position, ids.len());
        let xg = gpu.gather_rows(&pg.embed, &ids).unwrap();
        let pos = gpu.positions(&at).unwrap();
        let hg =
            qwen2::forward(&mut gpu, &pg, &c, &rope, &xg, &mut cache_g, position, &pos).unwrap();
        let last = gpu.rows(&hg, ids.len() - 1, 1);
        let lg = qwen2::logits(&mut gpu, &pg, &last).unwrap();
        let xc = cpu.gather_rows(&pc.embed, &ids).unwrap();
        let hc =
            qwen2::forward(&mut cpu, &pc, &c, &rope, &xc, &mut cache_c, position, &at).unwrap();
        let last = cpu.rows(&hc, ids.len() - 1, 1);
        let lc = qwen2::logits(&mut cpu, &pc, &last).unwrap();
        common::assert_close(
            &format!("bf16 decoder logits ({layout:?}), step {step}"),
            gpu.read_back(&lg).block_on().unwrap().data(),
            lc.data(),
            1e-4,
            0.0,
        );
        let id = gpu.sample(&lg, &greedy, 0.0).block_on().unwrap();
        assert_eq!(
            id,
            cpu.sample(&lc, &greedy, 0.0).block_on().unwrap(),
            "step {step}"
        );
        position += ids.len();
        ids = vec![id];
    }
}

/// `block_attention` (a vision encoder's per-image / per-window attention): on the CPU equal to
/// one cross-attention per block (the same sums), on the GPU within 1e-5 of the CPU (attention
/// tolerance of tests/kernel_attention.rs), with q, k, v as row views at nonzero offsets; a
/// shape that does not split into the blocks is an error on both.
#[test]
fn block_attention_is_one_cross_attention_per_block() {
    let (blocks, len, e, heads) = (3usize, 5usize, 12usize, 3usize);
    let rows = blocks * len;
    let mut cpu = CpuOps::new();
    let (q, k, v) = (
        tensor(71, rows, e),
        tensor(72, rows, e),
        tensor(73, rows, e),
    );
    let want = cpu.block_attention(&q, &k, &v, blocks, heads).unwrap();
    let per_block: Vec<f32> = (0..blocks)
        .flat_map(|b| {
            let part = |t: &Tensor| {
                Tensor::new(
                    vec![len, e],
                    t.data()[b * len * e..(b + 1) * len * e].to_vec(),
                )
                .unwrap()
            };
            cpu.cross_attention(&part(&q), &part(&k), &part(&v), heads)
                .unwrap()
                .data()
                .to_vec()
        })
        .collect();
    assert_eq!(want.data(), &per_block[..]);
    assert!(cpu.block_attention(&q, &k, &v, 4, heads).is_err());

    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let mut gpu = GpuOps::new(Recorder::new(&ctx, &pool));
    let at_offset = |gpu: &mut GpuOps, t: &Tensor, seed: u64| {
        let mut padded = tensor(seed, rows + 2, e).data().to_vec();
        padded[2 * e..].copy_from_slice(t.data());
        let g = gpu
            .upload(Tensor::new(vec![rows + 2, e], padded).unwrap())
            .unwrap();
        gpu.rows(&g, 2, rows)
    };
    let (qg, kg, vg) = (
        at_offset(&mut gpu, &q, 81),
        at_offset(&mut gpu, &k, 82),
        at_offset(&mut gpu, &v, 83),
    );
    let got = gpu.block_attention(&qg, &kg, &vg, blocks, heads).unwrap();
    common::assert_close(
        "block_attention",
        gpu.read_back(&got).block_on().unwrap().data(),
        want.data(),
        1e-5,
        1e-4,
    );
    assert!(gpu.block_attention(&qg, &kg, &vg, 4, heads).is_err());
}

/// `--gpu-weights q8_0|q4_0|q4_k` quantize the decoder's, vision encoder's and projector's
/// linear weights at load (the tiny model's rows are too short for Q4_K's 256: Q4_0 then, and
/// bf16 where not even 32 fit). The CPU executor with the same `--cpu-weights` keeps the same
/// values widened to f32 (the twin): both answer greedily alike.
#[test]
fn block_weights_answer_like_the_cpu_twin() {
    use linvt::vlm::model::{LoadOptions, VideoLlm};
    use linvt::{Device, WeightChoice, WeightStorage};
    if common::gpu().is_none() {
        return;
    }
    for (choice, storage) in [
        (WeightChoice::Q8_0, WeightStorage::Q8_0),
        (WeightChoice::Q4_0, WeightStorage::Q4_0),
        (WeightChoice::Q4K, WeightStorage::Q4K),
    ] {
        let mut opts = LoadOptions::new(Device::Gpu);
        opts.gpu_weights = choice;
        let mut gpu = VideoLlm::load_with(&tiny_model_dir(), &opts, &mut |_, _| {}).unwrap();
        assert_eq!(gpu.gpu_weight_storage(), Some(storage));
        let mut opts = LoadOptions::new(Device::Cpu);
        opts.cpu_weights = choice;
        // f32 activations: the GPU block kernels' twin (int8 ones approximate it).
        opts.cpu_activations = linvt::ops::Activations::F32;
        let mut cpu = VideoLlm::load_with(&tiny_model_dir(), &opts, &mut |_, _| {}).unwrap();
        assert_eq!(cpu.cpu_weight_storage(), Some(storage));
        let ask = |m: &mut VideoLlm| common::greedy_moving_bar(m, 12);
        assert_eq!(ask(&mut gpu), ask(&mut cpu), "{storage:?}");
    }
}
