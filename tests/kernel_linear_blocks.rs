//! Linear with block-quantized weights (ggml's Q8_0, Q4_0, Q5_0, Q4_K, Q6_K in the device layout of
//! `gpu/blocks.rs`) through every kernel, against the CPU twin: the f32 product over the weights
//! widened by `linvt::quant`'s dequantizers (bit-exact with the `gguf` package's, tests/quant.rs).
//! The blocks are random bytes, so every quant value, nibble, high bit and 6-bit scale/min
//! pattern occurs, not only those a quantizer happens to produce.
mod common;

use linvt::cpu::linear as cpu;
use linvt::gguf::GgmlType;
use linvt::gpu::blocks::{device_layout, ggml_type};
use linvt::gpu::linear::{GemvUse, Kernel, Split, Tuning};
use linvt::gpu::{BufferPool, Elem, GpuContext, Recorder, WeightStorage};
use linvt::quant::random_blocks;

/// Tolerance for a K-long f32 dot product of values in [-1, 1] plus a bias: as
/// tests/kernel_linear.rs argues, the kernels and the CPU twin sum in different orders, which
/// moves a result by ~√K · √K/2 · 2⁻²⁴ typically; 5e-7·K + 1e-6 bounds that with room, and any
/// wrong byte, nibble or scale moves results by O(0.01–1). The widening itself is exact on both
/// sides (the same f32 operations in the same order).
fn atol(k: usize) -> f32 {
    5e-7 * k as f32 + 1e-6
}

/// Every kernel that reads a weight: matrix-vector (split K with 8 and 64 lanes, lanes owning
/// rows), register-blocked with vec4 and scalar loads, both splits, and the tiled kernel.
fn tunings() -> Vec<Tuning> {
    vec![
        Tuning::CPU,
        Tuning {
            vec4: false,
            ..Tuning::CPU
        },
        Tuning {
            gemv: GemvUse::Never,
            ..Tuning::CPU
        },
        Tuning {
            gemv: GemvUse::Never,
            rows_per_group: 4,
            split: Split::Rows,
            ..Tuning::CPU
        },
        common::gemv_tuning(8, 4096),
        common::gemv_tuning(8, 0),
        Tuning::GPU,
        Tuning {
            kernel: Kernel::Tiled,
            gemv: GemvUse::Never,
            ..Tuning::GPU
        },
    ]
}

/// (m, n, k) products with the weight as rows 2..n+2 of an (n + 3, k) block tensor (so the
/// view starts mid-stream, and groups of blocks span rows), in a buffer and as texels.
fn check(ctx: &GpuContext, elem: Elem, shapes: &[(usize, usize, usize)]) {
    let ty = ggml_type(elem).unwrap();
    let block = elem.block_values();
    for (s, &(m, n, k)) in shapes.iter().enumerate() {
        let seed = 1000 + 10 * s as u64;
        let total = (n + 3) * k;
        let ggml = random_blocks(ty, total / block, seed);
        let widened = linvt::quant::dequantize(ty, &ggml, total).unwrap();
        let w = &widened[2 * k..(n + 2) * k];
        assert!(w.iter().all(|v| v.abs() <= 1.0001), "{elem:?} scales");
        let x = common::rand_vec(seed + 1, m * k, 1.0);
        let b = common::rand_vec(seed + 2, n, 1.0);
        let want = cpu::linear(&x, w, Some(&b), m, n, k);
        let xg = ctx.upload("x", &[m, k], &x).unwrap();
        let bg = ctx.upload("b", &[n], &b).unwrap();
        // Buffers and texels differ only in how a quad is fetched (blocks_buffer.wgsl vs
        // blocks_texels.wgsl): every kernel on buffers, the CPU adapters' defaults (and the
        // row-owning matrix-vector kernel) on texels — pipelines take seconds to build there.
        let texel_tunings = [Tuning::CPU, common::gemv_tuning(8, 0)];
        for texels in [false, true] {
            let wg = ctx
                .upload_ggml_blocks_in("w", &[n + 3, k], &ggml, elem, texels)
                .unwrap()
                .rows_view(2, n);
            assert_eq!((wg.elem, wg.is_texels()), (elem, texels));
            let tunings = match texels {
                true => texel_tunings.to_vec(),
                false => tunings(),
            };
            for tuning in tunings {
                common::assert_close(
                    &format!("{elem:?} {m}x{n}x{k} texels={texels} {tuning:?}"),
                    &common::product_tuned(ctx, &xg, &wg, Some(&bg), tuning),
                    &want,
                    atol(k),
                    1e-5,
                );
            }
        }
    }
}

/// (m, n, k) for the 32-value block formats: odd rows and columns, one token and several, K of
/// 1 to 7 blocks (so groups of eight blocks span rows).
const SHAPES_32: &[(usize, usize, usize)] = &[
    (45, 70, 96),
    (1, 300, 64),
    (1, 70, 160),
    (3, 33, 32),
    (2, 5, 224),
];

#[test]
fn q8_0_weights_match_the_cpu_on_widened_blocks() {
    let Some(ctx) = common::gpu() else { return };
    check(&ctx, Elem::Q8_0, SHAPES_32);
}

#[test]
fn q4_0_weights_match_the_cpu_on_widened_blocks() {
    let Some(ctx) = common::gpu() else { return };
    check(&ctx, Elem::Q4_0, SHAPES_32);
}

#[test]
fn q5_0_weights_match_the_cpu_on_widened_blocks() {
    let Some(ctx) = common::gpu() else { return };
    check(&ctx, Elem::Q5_0, SHAPES_32);
}

#[test]
fn q4_k_weights_match_the_cpu_on_widened_blocks() {
    let Some(ctx) = common::gpu() else { return };
    check(&ctx, Elem::Q4K, &[(7, 37, 256), (1, 70, 512), (20, 9, 768)]);
}

#[test]
fn q6_k_weights_match_the_cpu_on_widened_blocks() {
    let Some(ctx) = common::gpu() else { return };
    check(&ctx, Elem::Q6K, &[(7, 37, 256), (1, 70, 512), (1, 33, 768)]);
}

/// The matrix-vector kernel with lanes owning rows needs more than `gemv_split_k_max_rows` A
/// rows; the CPU default only switches past 4096, so a tall weight checks that path as the
/// model uses it (an lm_head or gate/up projection).
#[test]
fn tall_block_weights_take_the_row_owning_gemv() {
    let Some(ctx) = common::gpu() else { return };
    for elem in [Elem::Q8_0, Elem::Q4_0] {
        let ty = ggml_type(elem).unwrap();
        let (n, k) = (4500, 64);
        let ggml = random_blocks(ty, n * k / 32, 5);
        let w = linvt::quant::dequantize(ty, &ggml, n * k).unwrap();
        let x = common::rand_vec(6, k, 1.0);
        let want = cpu::linear(&x, &w, None, 1, n, k);
        let wg = ctx
            .upload_ggml_blocks_in("w", &[n, k], &ggml, elem, true)
            .unwrap();
        let xg = ctx.upload("x", &[1, k], &x).unwrap();
        let got = common::product_tuned(&ctx, &xg, &wg, None, Tuning::CPU);
        common::assert_close(&format!("{elem:?} tall"), &got, &want, atol(k), 1e-5);
    }
}

/// The device layout keeps ggml's bytes per value: groups of eight blocks with their scales in
/// the first 16 bytes (Q4_K as it is), every field on a 16-byte boundary.
#[test]
fn device_layout_groups_blocks_at_ggml_size() {
    let q8 = random_blocks(GgmlType::Q8_0, 9, 1);
    let dev = device_layout(Elem::Q8_0, &q8).unwrap();
    // Two groups (the second filled up with seven zero blocks) of 16 + 8·32 bytes.
    assert_eq!(dev.len(), 2 * 272);
    for b in 0..8 {
        assert_eq!(&dev[2 * b..2 * b + 2], &q8[34 * b..34 * b + 2], "scale {b}");
        let quants = 16 + 32 * b;
        assert_eq!(&dev[quants..quants + 32], &q8[34 * b + 2..34 * b + 34]);
    }
    assert_eq!(&dev[272..274], &q8[8 * 34..8 * 34 + 2]);
    assert_eq!(&dev[274..288], &[0; 14]);
    assert_eq!(&dev[288..320], &q8[8 * 34 + 2..9 * 34]);
    assert!(dev[320..].iter().all(|&b| b == 0));
    let q4 = random_blocks(GgmlType::Q4_0, 8, 4);
    let dev = device_layout(Elem::Q4_0, &q4).unwrap();
    assert_eq!(dev.len(), 144);
    assert_eq!(&dev[14..16], &q4[7 * 18..7 * 18 + 2]);
    assert_eq!(&dev[16 + 16 * 7..], &q4[7 * 18 + 2..]);
    let q6 = random_blocks(GgmlType::Q6_K, 2, 2);
    let dev = device_layout(Elem::Q6K, &q6).unwrap();
    assert_eq!(dev.len(), 1680);
    assert_eq!(&dev[0..2], &q6[208..210]);
    assert_eq!(&dev[2..4], &q6[418..420]);
    assert_eq!(&dev[16..224], &q6[0..208]);
    assert_eq!(&dev[224..432], &q6[210..418]);
    let q4k = random_blocks(GgmlType::Q4_K, 2, 3);
    assert_eq!(device_layout(Elem::Q4K, &q4k).unwrap(), q4k);
    for (elem, bits) in [
        (Elem::Q8_0, 8.5),
        (Elem::Q4_0, 4.5),
        (Elem::Q5_0, 5.5),
        (Elem::Q4K, 4.5),
        (Elem::Q6K, 6.5625),
    ] {
        assert_eq!(elem.bits_per_value(), bits, "{elem:?}");
    }
    let e = device_layout(Elem::Q8_0, &q8[..40])
        .unwrap_err()
        .to_string();
    assert!(e.contains("34-byte blocks"), "{e}");
}

/// Weights quantized at placement: each block storage takes its type where rows fit its block,
/// the next smaller block or bf16 where they do not, and the product equals the CPU twin's
/// ([`WeightStorage::round_trip`], what `--cpu-weights q*` computes with).
#[test]
fn placement_quantizes_linear_weights_with_fallbacks() {
    use linvt::gpu::Placement;
    use linvt::ops::Role;
    use linvt::tensor::Tensor;
    let Some(ctx) = common::gpu() else { return };
    let cases = [
        (WeightStorage::Q8_0, 96, Role::LinearWeight, Elem::Q8_0),
        (WeightStorage::Q4_0, 96, Role::LinearWeight, Elem::Q4_0),
        (WeightStorage::Q4K, 512, Role::LinearWeight, Elem::Q4K),
        (WeightStorage::Q4K, 96, Role::LinearWeight, Elem::Q4_0),
        (WeightStorage::Q8_0, 84, Role::LinearWeight, Elem::Bf16),
        // Tables (embeddings, perhaps a tied lm_head): Q6_K as llama.cpp's Q4_K_M, else Q8_0.
        (WeightStorage::Q4K, 512, Role::Table, Elem::Q6K),
        (WeightStorage::Q4_0, 96, Role::Table, Elem::Q8_0),
        (WeightStorage::Q8_0, 512, Role::Table, Elem::Q8_0),
    ];
    for (storage, k, role, elem) in cases {
        let n = 19;
        let w = common::rand_vec(40 + k as u64, n * k, 0.5);
        let t = Tensor::new(vec![n, k], w.clone()).unwrap();
        let placed = match Placement::new(storage).place(&ctx, "w", &t, role).unwrap() {
            linvt::gpu::placement::Placed::One(t) => t,
            _ => panic!("chunked"),
        };
        assert_eq!(placed.elem, elem, "{storage:?} k={k} {role:?}");
        let twin = storage.round_trip(k, &w, role == Role::Table).unwrap();
        // The round trip is a real quantization (not the identity) and stays close.
        let err = twin
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err > 0.0 && err < 0.1, "{storage:?} k={k}: error {err}");
        let x = common::rand_vec(7, 3 * k, 1.0);
        let want = cpu::linear(&x, &twin, None, 3, n, k);
        let xg = ctx.upload("x", &[3, k], &x).unwrap();
        let got = common::product_tuned(&ctx, &xg, &placed, None, Tuning::for_adapter(&ctx));
        common::assert_close(&format!("{storage:?} k={k}"), &got, &want, atol(k), 1e-5);
    }
}

/// The shaders widen f16 scales with integer ops: zero, -0, subnormals, the largest normal and
/// ordinary values all come out exact (one row per scale, x one-hot, so each output is q · d
/// with nothing summed).
#[test]
fn f16_scales_widen_exactly_including_subnormals() {
    let Some(ctx) = common::gpu() else { return };
    let scales: [u16; 8] = [
        0x0000, 0x8000, 0x0001, 0x83ff, 0x0400, 0x7bff, 0x3c00, 0xb555,
    ];
    let mut ggml = Vec::new();
    for s in scales {
        ggml.extend_from_slice(&s.to_le_bytes());
        ggml.extend((0..32).map(|j| (j as i8 - 100) as u8));
    }
    let want_rows = linvt::quant::dequantize(GgmlType::Q8_0, &ggml, 8 * 32).unwrap();
    let w = ctx
        .upload_ggml_blocks("w", &[8, 32], &ggml, Elem::Q8_0)
        .unwrap();
    for j in [0usize, 5, 31] {
        let mut x = vec![0.0f32; 32];
        x[j] = 1.0;
        let xg = ctx.upload("x", &[1, 32], &x).unwrap();
        let want: Vec<f32> = (0..8).map(|r| want_rows[r * 32 + j]).collect();
        for tuning in [
            common::gemv_tuning(8, 4096),
            Tuning::GPU,
            Tuning {
                gemv: GemvUse::Never,
                ..Tuning::CPU
            },
        ] {
            let got = common::product_tuned(&ctx, &xg, &w, None, tuning);
            // Equal as numbers: a kernel's sum starts at +0, so -0 · 1 comes out +0.
            assert_eq!(got, want, "value {j}, {tuning:?}");
        }
    }
}

/// An embedding table in blocks (a GGUF file's `token_embd`): the row gather widens its rows
/// exactly as the dequantizer does, in buffers and texels, in any order, repeated rows too.
#[test]
fn block_tables_gather_rows_as_dequantized() {
    use linvt::gpu::elementwise;
    let Some(ctx) = common::gpu() else { return };
    for elem in [Elem::Q8_0, Elem::Q4_0, Elem::Q5_0, Elem::Q4K, Elem::Q6K] {
        let ty = ggml_type(elem).unwrap();
        let (rows, cols) = (37, 512);
        let ggml = random_blocks(ty, rows * cols / elem.block_values(), 9);
        let table = linvt::quant::dequantize(ty, &ggml, rows * cols).unwrap();
        let ids = [36u32, 0, 5, 5, 17];
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| table[i as usize * cols..(i as usize + 1) * cols].to_vec())
            .collect();
        for texels in [false, true] {
            let t = ctx
                .upload_ggml_blocks_in("table", &[rows, cols], &ggml, elem, texels)
                .unwrap();
            let pool = BufferPool::default();
            let mut rec = Recorder::new(&ctx, &pool);
            let got = elementwise::gather_rows(&mut rec, &t, &ids).unwrap();
            rec.submit().unwrap();
            let got = ctx.read_f32(&got).unwrap();
            assert!(got == want, "{elem:?} texels={texels}");
        }
    }
}
