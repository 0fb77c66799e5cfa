//! Linear (Y = X·Wᵀ + b): GPU kernels vs the CPU twin on odd shapes, views and every kernel
//! variant; the CPU twin vs hand-computed and f64 references; bad input → errors.
mod common;

use linvt::cpu::linear as cpu;
use linvt::gpu::linear::{self, Epilogue, GemvUse, Kernel, Split, Tuning};
use linvt::gpu::{BufferPool, Elem, GpuContext, GpuTensor, Recorder};

/// Tolerance for a K-long f32 dot product of values in [-1, 1] (plus a bias in [-1, 1]).
///
/// The GPU kernels and the CPU twin add the K products in different orders (vec4 dot products
/// in k order vs 4 interleaved partial sums added pairwise, tiled stages, fused multiply-adds).
/// Each order's rounding error is a sum of ~K roundings of partial sums whose size grows like
/// √k·|x·w| (random signs, E|x·w| ≈ 1/4), so the two results differ by roughly
/// √K · √K/2 · 2⁻²⁴ in a typical element and a few times that at worst: K = 2688 gives ~1e-4
/// at most. atol = 5e-7·K + 1e-6 bounds that (the largest difference seen is ≈ 1/8 of it) and
/// still fails on any indexing error (those are O(1)).
fn atol(k: usize) -> f32 {
    5e-7 * k as f32 + 1e-6
}

/// A tensor holding `data` as rows `start..start+rows` of a bigger (start+rows+2, cols) buffer
/// filled around it with large junk, so a kernel that ignores the offset fails loudly.
fn upload_view(
    ctx: &GpuContext,
    name: &str,
    start: usize,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> GpuTensor {
    upload_view_in(ctx, name, start, rows, cols, data, WeightIn::Buffer)
}

/// Where a test weight lives.
#[derive(Clone, Copy, Debug, PartialEq)]
enum WeightIn {
    Buffer,
    /// A texture (`upload_texels`): what CPU adapters use for model weights.
    Texels,
}

fn upload_view_in(
    ctx: &GpuContext,
    name: &str,
    start: usize,
    rows: usize,
    cols: usize,
    data: &[f32],
    store: WeightIn,
) -> GpuTensor {
    let mut all = vec![1e6f32; (start + rows + 2) * cols];
    all[start * cols..(start + rows) * cols].copy_from_slice(data);
    let shape = [start + rows + 2, cols];
    let t = match store {
        WeightIn::Buffer => ctx.upload(name, &shape, &all),
        WeightIn::Texels => ctx.upload_texels(name, &shape, &all),
    };
    t.unwrap().rows_view(start, rows)
}

/// Runs one product on the GPU with `tuning` (None: the adapter default) and compares it with
/// the CPU twin. x, w and the bias are views at nonzero offsets (`x_start` rows into x's buffer).
fn check(m: usize, n: usize, k: usize, with_bias: bool, x_start: usize, tuning: Option<Tuning>) {
    check_in(m, n, k, with_bias, x_start, tuning, WeightIn::Buffer)
}

/// [`check`] with the weight stored in `store`.
fn check_in(
    m: usize,
    n: usize,
    k: usize,
    with_bias: bool,
    x_start: usize,
    tuning: Option<Tuning>,
    store: WeightIn,
) {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let seed = (m * 1_000_003 + n * 1009 + k) as u64;
    let x = common::rand_vec(seed, m * k, 1.0);
    let w = common::rand_vec(seed + 1, n * k, 1.0);
    let b = common::rand_vec(seed + 2, n, 1.0);
    let xg = upload_view(&ctx, "x", x_start, m, k, &x);
    let wg = upload_view_in(&ctx, "w", 1, n, k, &w, store);
    let bg = upload_view(&ctx, "b", 2, 1, n, &b);
    let bias = with_bias.then_some(&bg);

    let mut rec = Recorder::new(&ctx, &pool);
    let y = match tuning {
        None => linear::linear(&mut rec, &xg, &wg, bias).unwrap(),
        Some(t) => {
            let y = rec.alloc("y", &[m, n]).unwrap();
            linear::linear_into_tuned(&mut rec, &xg, &wg, bias, &y, t).unwrap();
            y
        }
    };
    assert_eq!(y.shape, vec![m, n]);
    rec.submit().unwrap();
    let got = ctx.read_f32(&y).unwrap();
    let want = cpu::linear(&x, &w, with_bias.then_some(&b[..]), m, n, k);
    let what =
        format!("linear {m}x{n}x{k} bias={with_bias} x_start={x_start} {store:?} {tuning:?}");
    common::assert_close(&what, &got, &want, atol(k), 1e-5);
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (7, 13, 5),
    (33, 65, 97),
    (130, 70, 224),
    (3, 200, 8),
];

#[test]
fn default_kernel_odd_shapes() {
    for &(m, n, k) in SHAPES {
        check(m, n, k, true, 3, None);
        check(m, n, k, false, 0, None);
    }
}

#[test]
fn default_kernel_tall_and_wide() {
    // N = 1 (a score head: the register-blocked kernel puts invocations over rows instead),
    // M = 1 (a single token), and N just past one register-blocked workgroup (128 columns).
    check(300, 1, 64, true, 1, None);
    check(1, 300, 64, true, 1, None);
    check(40, 129, 36, true, 5, None);
}

fn rb(rows_per_group: u32, workgroup: u32, vec4: bool, split: Split) -> Tuning {
    Tuning {
        kernel: Kernel::RegisterBlocked,
        rows_per_group,
        workgroup,
        vec4,
        split,
        ..Tuning::CPU
    }
}

#[test]
fn register_blocked_scalar_loads() {
    // K % 4 == 0 and aligned offsets, but vec4 loads disabled: the scalar entry point, which
    // otherwise only runs for odd K (covered by the shapes above on CPU adapters).
    check(33, 65, 96, true, 1, Some(rb(32, 8, false, Split::Auto)));
    check(7, 13, 5, true, 1, Some(rb(32, 8, false, Split::Auto)));
}

#[test]
fn register_blocked_both_splits_and_small_blocks() {
    for split in [Split::Columns, Split::Rows] {
        check(33, 65, 20, true, 2, Some(rb(4, 8, true, split)));
        check(33, 65, 21, false, 2, Some(rb(4, 8, true, split)));
    }
    // A workgroup of several SIMD chunks (and a size that is not a power of two).
    check(19, 300, 12, true, 0, Some(rb(8, 24, true, Split::Columns)));
}

#[test]
fn tiled_kernel_odd_shapes() {
    let t = Tuning {
        kernel: Kernel::Tiled,
        ..Tuning::GPU
    };
    for &(m, n, k) in SHAPES {
        check(m, n, k, true, 3, Some(t));
    }
    check(70, 130, 40, false, 0, Some(t)); // K not a multiple of the stage (16)
    check(1, 300, 64, true, 1, Some(t));
}

/// The matrix-vector kernel (one B row: decoding) on every kind of shape it meets: N below,
/// at and past one workgroup's 16 rows, K shorter than one pass of the lanes and not a multiple
/// of lanes·4, a bias, an x view at an offset; with 8 lanes (CPU adapters), 64 (GPUs) and a
/// count that is not a power of two. K % 4 ≠ 0 falls back to the register-blocked scalar
/// kernel and must still be right.
#[test]
fn gemv_kernel_odd_shapes() {
    for lanes in [8, 64, 24] {
        let t = common::gemv_tuning(lanes, u32::MAX);
        for &(n, k) in &[
            (1, 4),
            (15, 8),
            (16, 36),
            (17, 260),
            (300, 64),
            (70, 4 * 65),
        ] {
            check(1, n, k, true, 3, Some(t));
            check(1, n, k, false, 0, Some(t));
        }
        check(1, 33, 21, true, 1, Some(t)); // K % 4 ≠ 0: not the gemv kernel
                                            // Lanes owning rows (tall weights on CPU adapters): rows below, at and past one
                                            // workgroup's GR·lanes, each invocation walking the whole of K.
        let lane_rows = common::gemv_tuning(lanes, 0);
        for &(n, k) in &[(1, 4), (130, 36), (16 * lanes as usize + 5, 260)] {
            check(1, n, k, true, 3, Some(lane_rows));
            check_in(1, n, k, false, 0, Some(lane_rows), WeightIn::Texels);
        }
    }
}

/// Weights stored as texels (`upload_texels`, what CPU adapters use for model weights) through
/// every kernel that reads them as operand A: the adapter default (register-blocked or
/// matrix-vector), scalar loads, the tiled kernel, and the matrix-vector kernel on both sides
/// of the CPU row limit (4096). The weight is a view 1 row into its texture.
#[test]
fn texel_weights_every_kernel() {
    let tunings = [
        None,
        Some(Tuning {
            vec4: false,
            ..Tuning::CPU
        }),
        Some(Tuning {
            gemv: GemvUse::Never,
            ..Tuning::CPU
        }),
        Some(Tuning::GPU),
        Some(Tuning {
            kernel: Kernel::Tiled,
            gemv: GemvUse::Never,
            ..Tuning::GPU
        }),
    ];
    for tuning in tunings {
        for &(m, n, k) in SHAPES {
            check_in(m, n, k, true, 3, tuning, WeightIn::Texels);
        }
        check_in(1, 300, 64, true, 1, tuning, WeightIn::Texels);
    }
    // Past the matrix-vector row limit of CPU adapters: register-blocked.
    check_in(1, 4200, 8, true, 0, None, WeightIn::Texels);
}

/// The epilogues (GELU; residual + γ ⊙ value, with and without γ) against the CPU twins
/// composed (`cpu::linear`, then `elementwise::gelu` or the residual formula). Every kernel
/// applies them in the one `store` they share, so what varies is how each passes the output
/// position: register-blocked with the weight as A and as B (`Split::Rows`: γ and the bias then
/// follow the B row), the matrix-vector kernel split along K and with lanes owning rows, the
/// tiled kernel, texel and bf16-texel weights. x and the residual are views at nonzero offsets;
/// few rows keep the pipelines small (first compiles are slow on CPU adapters). Tolerance: the
/// linear one, plus 1e-6 for GELU's erf approximation (< 2e-7, with |GELU'| ≤ 1.13 carrying the
/// linear error over).
#[test]
fn epilogues_match_the_composed_twins() {
    use linvt::cpu::elementwise as cpu_ew;
    let Some(ctx) = common::gpu() else { return };
    let tunings = [
        Tuning::CPU,
        rb(4, 8, true, Split::Rows),
        common::gemv_tuning(8, u32::MAX),
        common::gemv_tuning(8, 0),
        Tuning {
            gemv: GemvUse::Never,
            ..Tuning::GPU
        },
    ];
    let pool = BufferPool::default();
    for (m, n, k) in [(1, 70, 64), (3, 37, 24)] {
        let seed = (m * 1000 + n + k) as u64;
        let x = common::rand_vec(seed, m * k, 1.0);
        let w = common::rand_vec(seed + 1, n * k, 1.0);
        let b = common::rand_vec(seed + 2, n, 1.0);
        let r = common::rand_vec(seed + 3, m * n, 1.0);
        let g = common::rand_vec(seed + 4, n, 1.0);
        let lin = cpu::linear(&x, &w, Some(&b), m, n, k);
        let xg = upload_view(&ctx, "x", 3, m, k, &x);
        let bg = upload_view(&ctx, "b", 1, 1, n, &b);
        let rg = upload_view(&ctx, "r", 2, m, n, &r);
        let gg = upload_view(&ctx, "g", 1, 1, n, &g);
        let gelu = cpu_ew::gelu(&lin);
        let with_gamma = cpu_ew::residual_add(&r, &lin, Some(&g), n);
        let plain_residual = cpu_ew::residual_add(&r, &lin, None, n);
        let weights = [
            (
                WeightIn::Buffer,
                upload_view_in(&ctx, "w", 1, n, k, &w, WeightIn::Buffer),
            ),
            (
                WeightIn::Texels,
                upload_view_in(&ctx, "w", 1, n, k, &w, WeightIn::Texels),
            ),
        ];
        for (store, wg) in &weights {
            for tuning in tunings {
                let cases: [(&str, Epilogue, &[f32], f32); 3] = [
                    ("gelu", Epilogue::Gelu, &gelu, 1e-6),
                    (
                        "residual with gamma",
                        Epilogue::Residual {
                            residual: &rg,
                            gamma: Some(&gg),
                        },
                        &with_gamma,
                        0.0,
                    ),
                    (
                        "residual",
                        Epilogue::Residual {
                            residual: &rg,
                            gamma: None,
                        },
                        &plain_residual,
                        0.0,
                    ),
                ];
                for (name, epilogue, want, extra) in cases {
                    let mut rec = Recorder::new(&ctx, &pool);
                    let y = rec.alloc("y", &[m, n]).unwrap();
                    linear::linear_into_tuned_with(
                        &mut rec,
                        &xg,
                        wg,
                        Some(&bg),
                        epilogue,
                        &y,
                        tuning,
                    )
                    .unwrap();
                    rec.submit().unwrap();
                    common::assert_close(
                        &format!("{name} {m}x{n}x{k} {store:?} {tuning:?}"),
                        &ctx.read_f32(&y).unwrap(),
                        want,
                        atol(k) + extra,
                        1e-5,
                    );
                }
            }
        }
        // bf16 texel weights (a whole texel per matrix-vector step when K % 8 = 0).
        let rounded: Vec<f32> = w
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32())
            .collect();
        let lin16 = cpu::linear(&x, &rounded, Some(&b), m, n, k);
        let w16 = ctx.upload_texels_as("w", &[n, k], &w, Elem::Bf16).unwrap();
        let mut rec = Recorder::new(&ctx, &pool);
        let y = rec.alloc("y", &[m, n]).unwrap();
        let epilogue = Epilogue::Residual {
            residual: &rg,
            gamma: Some(&gg),
        };
        let tuning = common::gemv_tuning(8, u32::MAX);
        linear::linear_into_tuned_with(&mut rec, &xg, &w16, Some(&bg), epilogue, &y, tuning)
            .unwrap();
        rec.submit().unwrap();
        common::assert_close(
            &format!("bf16 texels residual {m}x{n}x{k}"),
            &ctx.read_f32(&y).unwrap(),
            &cpu_ew::residual_add(&r, &lin16, Some(&g), n),
            atol(k),
            1e-5,
        );
    }
    // A residual or γ too short for the output is an error naming it.
    let (xg, wg) = (
        ctx.upload("x", &[2, 4], &[0.5f32; 8]).unwrap(),
        ctx.upload("w", &[3, 4], &[0.5f32; 12]).unwrap(),
    );
    let short = ctx.upload("r", &[5], &[0.0f32; 5]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    for (epilogue, what) in [
        (
            Epilogue::Residual {
                residual: &short,
                gamma: None,
            },
            "residual",
        ),
        (
            Epilogue::Residual {
                residual: &xg,
                gamma: Some(&short.slice(0, 2)),
            },
            "gamma",
        ),
    ] {
        let e = linear::linear_with(&mut rec, &xg, &wg, None, epilogue)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{e}");
    }
}

/// A weight of more than one texture layer (4096² texels = 2²⁶ values): 16 400 × 4096 values
/// span two layers, so rows past 16 384 come from layer 1. One token through the adapter's
/// default kernel and through the matrix-vector kernel, against f64 dot products.
#[test]
fn texel_weight_spanning_two_layers() {
    let Some(ctx) = common::gpu() else { return };
    let (n, k) = (16_400usize, 4096usize);
    let w = common::rand_vec(81, n * k, 1.0);
    let x = common::rand_vec(82, k, 1.0);
    let wg = ctx.upload_texels("w", &[n, k], &w).unwrap();
    let xg = ctx.upload("x", &[1, k], &x).unwrap();
    let want: Vec<f32> = w
        .chunks(k)
        .map(|row| {
            row.iter()
                .zip(&x)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>() as f32
        })
        .collect();
    for tuning in [
        Tuning::CPU,
        Tuning {
            gemv: GemvUse::Always,
            ..Tuning::CPU
        },
    ] {
        common::assert_close(
            &format!("two-layer texel weight {tuning:?}"),
            &common::product_tuned(&ctx, &xg, &wg, None, tuning),
            &want,
            atol(k),
            1e-5,
        );
    }
}

#[test]
fn misaligned_offsets_use_scalar_loads() {
    // K % 4 == 0 but x and w start at element offsets that are not multiples of 4.
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let (m, n, k) = (9, 21, 16);
    let x = common::rand_vec(31, m * k, 1.0);
    let w = common::rand_vec(32, n * k, 1.0);
    let mut xs = vec![7.0f32; m * k + 8];
    xs[1..1 + m * k].copy_from_slice(&x);
    let mut ws = vec![7.0f32; n * k + 8];
    ws[3..3 + n * k].copy_from_slice(&w);
    let mut xg = ctx
        .upload("x", &[xs.len()], &xs)
        .unwrap()
        .reshaped(&[1, xs.len()]);
    xg.offset = 1;
    xg.shape = vec![m, k];
    let mut wg = ctx
        .upload("w", &[ws.len()], &ws)
        .unwrap()
        .reshaped(&[1, ws.len()]);
    wg.offset = 3;
    wg.shape = vec![n, k];
    let mut rec = Recorder::new(&ctx, &pool);
    let y = linear::linear(&mut rec, &xg, &wg, None).unwrap();
    rec.submit().unwrap();
    let want = cpu::linear(&x, &w, None, m, n, k);
    common::assert_close(
        "linear misaligned offsets",
        &ctx.read_f32(&y).unwrap(),
        &want,
        atol(k),
        1e-5,
    );
}

#[test]
fn weight_sub_block_into_output_view() {
    // W = rows 2E..3E of a packed (3E, E) in_proj weight, bias = the matching slice of a (3E)
    // bias, written into rows 1..1+M of a bigger output: the rest must stay untouched.
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let (m, e) = (10, 24);
    let x = common::rand_vec(41, m * e, 1.0);
    let w_all = common::rand_vec(42, 3 * e * e, 1.0);
    let b_all = common::rand_vec(43, 3 * e, 1.0);
    let xg = ctx.upload("x", &[m, e], &x).unwrap();
    let wg = ctx
        .upload("in_proj_weight", &[3 * e, e], &w_all)
        .unwrap()
        .rows_view(2 * e, e);
    let bg = ctx
        .upload("in_proj_bias", &[3, e], &b_all)
        .unwrap()
        .rows_view(2, 1);
    let out_all = ctx
        .upload("out", &[m + 3, e], &vec![-5.0f32; (m + 3) * e])
        .unwrap();
    let out = out_all.rows_view(1, m);
    let mut rec = Recorder::new(&ctx, &pool);
    linear::linear_into(&mut rec, &xg, &wg, Some(&bg), &out).unwrap();
    rec.submit().unwrap();
    let got = ctx.read_f32(&out_all).unwrap();
    let want = cpu::linear(&x, &w_all[2 * e * e..], Some(&b_all[2 * e..]), m, e, e);
    common::assert_close(
        "linear weight sub-block",
        &got[e..(m + 1) * e],
        &want,
        atol(e),
        1e-5,
    );
    assert!(
        got[..e]
            .iter()
            .chain(&got[(m + 1) * e..])
            .all(|&v| v == -5.0),
        "wrote outside the output view"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let x = ctx.upload("x", &[4, 8], &[0.0f32; 32]).unwrap();
    let w = ctx.upload("w", &[3, 7], &[0.0f32; 21]).unwrap();
    let w8 = ctx.upload("w8", &[3, 8], &[0.0f32; 24]).unwrap();
    let b2 = ctx.upload("b2", &[2], &[0.0f32; 2]).unwrap();
    let out_bad = ctx.upload("o", &[4, 4], &[0.0f32; 16]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let e = linear::linear(&mut rec, &x, &w, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[4, 8]") && e.contains("[3, 7]"),
        "K mismatch message names shapes: {e}"
    );
    assert!(
        linear::linear(&mut rec, &x, &w8, Some(&b2)).is_err(),
        "bias length"
    );
    assert!(
        linear::linear_into(&mut rec, &x, &w8, None, &out_bad).is_err(),
        "output shape"
    );
    let in_place = x.reshaped(&[4, 8]).rows_view(0, 4);
    let w_sq = ctx.upload("wsq", &[8, 8], &[0.0f32; 64]).unwrap();
    assert!(
        linear::linear_into(&mut rec, &x, &w_sq, None, &in_place).is_err(),
        "output aliasing x"
    );
    let bad_tuning = Tuning {
        rows_per_group: 0,
        ..Tuning::CPU
    };
    let y = rec.alloc("y", &[4, 3]).unwrap();
    assert!(linear::linear_into_tuned(&mut rec, &x, &w8, None, &y, bad_tuning).is_err());
    rec.submit().unwrap();
}

#[test]
fn flops_counts_multiply_and_add() {
    assert_eq!(linear::flops(4096, 896, 896), 2.0 * 4096.0 * 896.0 * 896.0);
}

#[test]
fn cpu_twin_hand_computed() {
    // x = [[1, 2], [3, 4]], w = [[1, 0], [0, 1], [1, 1]], b = [0.5, -1, 2]
    // y = [[1 + 0.5, 2 - 1, 3 + 2], [3 + 0.5, 4 - 1, 7 + 2]]
    let y = cpu::linear(
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        Some(&[0.5, -1.0, 2.0]),
        2,
        3,
        2,
    );
    assert_eq!(y, vec![1.5, 1.0, 5.0, 3.5, 3.0, 9.0]);
    let y = cpu::linear(&[2.0], &[-3.0], None, 1, 1, 1);
    assert_eq!(y, vec![-6.0]);
    assert!(cpu::linear(&[], &[1.0, 2.0], None, 0, 2, 1).is_empty());
}

#[test]
fn cpu_twin_matches_f64_reference_on_blocked_threaded_path() {
    // Large enough to take the threaded path, with every block size ragged.
    let (m, n, k) = (67, 131, 263);
    let x = common::rand_vec(51, m * k, 1.0);
    let w = common::rand_vec(52, n * k, 1.0);
    let b = common::rand_vec(53, n, 1.0);
    let got = cpu::linear(&x, &w, Some(&b), m, n, k);
    let want: Vec<f32> = (0..m * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            let dot: f64 = (0..k)
                .map(|kk| x[r * k + kk] as f64 * w[c * k + kk] as f64)
                .sum();
            (dot + b[c] as f64) as f32
        })
        .collect();
    // f32 accumulation vs exact (f64) sums: same bound as GPU vs CPU.
    common::assert_close("cpu linear vs f64", &got, &want, atol(k), 1e-5);
}

/// The batched, strided form every caller reduces to (attention's Q·Kᵀ and P·V): A and B rows
/// inside wider rows, batches split into (outer, inner) with different strides, the output
/// written with both strides non-unit — on every kernel, against plain loops in f64.
#[test]
fn batched_strided_product_every_kernel() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    // 2 outer × 3 inner batches; A: 37 rows, B: 19 rows (or 1), K = 20, rows 64 apart, batches
    // laid out (outer 5000, inner 20) inside one buffer; output batches (outer, inner) =
    // (3·br·37, br·37) apart, out[z, a, b] at a·br + b (A rows are output rows here, the
    // opposite of `linear`'s usual roles).
    for br in [19usize, 1] {
        batched_strided_product(&ctx, &pool, br);
    }
}

/// [`batched_strided_product_every_kernel`] with `br` B rows (1: the matrix-vector kernel).
fn batched_strided_product(ctx: &GpuContext, pool: &BufferPool, br: usize) {
    use linear::{OutLayout, Product, Rows};
    let (outer, inner, ar, k) = (2usize, 3usize, 37usize, 20usize);
    let (rs, bo, bi) = (64usize, 5000usize, 20usize);
    let len = (outer - 1) * bo + (inner - 1) * bi + (ar.max(br) - 1) * rs + k + 3;
    let a_host = common::rand_vec(61, len, 1.0);
    let b_host = common::rand_vec(62, len, 1.0);
    let a = ctx.upload("a", &[len], &a_host).unwrap();
    let b = ctx.upload("b", &[len], &b_host).unwrap();
    let (ya, yb, yi, yo) = (br, 1, br * ar, inner * br * ar);
    let out_len = outer * yo;
    let rows = |t, n, off| Rows {
        t,
        rows: n,
        offset: off,
        row_stride: rs,
        outer: bo,
        inner: bi,
    };
    // A starts at element 0 (vec4 loads) or 3 (not vec4-aligned: scalar loads).
    for a_off in [0usize, 3] {
        let mut want = vec![0f32; out_len];
        for z in 0..outer * inner {
            let base = (z / inner) * bo + (z % inner) * bi;
            for i in 0..ar {
                for j in 0..br {
                    let dot: f64 = (0..k)
                        .map(|c| {
                            a_host[a_off + base + i * rs + c] as f64
                                * b_host[base + j * rs + c] as f64
                        })
                        .sum();
                    want[(z / inner) * yo + (z % inner) * yi + i * ya + j * yb] = dot as f32;
                }
            }
        }
        let tunings = [
            Tuning::CPU,
            Tuning {
                vec4: false,
                rows_per_group: 8,
                ..Tuning::CPU
            },
            Tuning {
                gemv: GemvUse::Always,
                ..Tuning::CPU
            },
            Tuning::GPU,
        ];
        for tuning in tunings {
            let y = ctx
                .upload("y", &[out_len], &vec![f32::NAN; out_len])
                .unwrap();
            let mut rec = Recorder::new(ctx, pool);
            Product {
                a: rows(&a, ar, a_off),
                b: rows(&b, br, 0),
                k,
                batches: outer * inner,
                batch_inner: inner,
                out: OutLayout {
                    t: &y,
                    offset: 0,
                    ya,
                    yb,
                    outer: yo,
                    inner: yi,
                },
                bias: None,
                columns_on_a: false,
                epilogue: Epilogue::None,
            }
            .record(&mut rec, tuning)
            .unwrap();
            rec.submit().unwrap();
            let got = ctx.read_f32(&y).unwrap();
            common::assert_close(
                &format!("batched br {br} a_off {a_off} {tuning:?}"),
                &got,
                &want,
                atol(k),
                1e-5,
            );
        }
    }
}

/// How a half-precision weight is uploaded and what its values become.
struct HalfWeights {
    name: &'static str,
    upload: fn(&GpuContext, &str, &[usize], &[f32]) -> linvt::Result<GpuTensor>,
    round: fn(f32) -> f32,
}

const BF16: HalfWeights = HalfWeights {
    name: "bf16",
    upload: GpuContext::upload_bf16,
    round: |v| half::bf16::from_f32(v).to_f32(),
};

/// bf16 weights stored as texels, eight per texel (what CPU adapters use for bf16 weights).
const BF16_TEXELS: HalfWeights = HalfWeights {
    name: "bf16 texels",
    upload: |ctx, name, shape, data| ctx.upload_texels_as(name, shape, data, Elem::Bf16),
    round: |v| half::bf16::from_f32(v).to_f32(),
};

const F16: HalfWeights = HalfWeights {
    name: "f16",
    upload: GpuContext::upload_f16,
    round: |v| half::f16::from_f32(v).to_f32(),
};

/// One (m, n, k) product with the weight stored as `half` — as rows 2.. of a bigger tensor,
/// so the offset is in half-precision elements — through every tuning, against the CPU twin
/// on the rounded weights: the kernels widen W and compute in f32, so only the summation
/// order differs (the f32 tolerance). x, w and the bias come from seeds `seed`, +1, +2.
/// Returns the weight view.
fn check_half_weights(
    ctx: &GpuContext,
    half: &HalfWeights,
    (m, n, k): (usize, usize, usize),
    seed: u64,
    tunings: &[Tuning],
) -> GpuTensor {
    let x = common::rand_vec(seed, m * k, 1.0);
    let w = common::rand_vec(seed + 1, n * k, 1.0);
    let b = common::rand_vec(seed + 2, n, 1.0);
    let rounded: Vec<f32> = w.iter().map(|&v| (half.round)(v)).collect();
    let want = cpu::linear(&x, &rounded, Some(&b), m, n, k);
    let xg = upload_view(ctx, "x", 1, m, k, &x);
    let mut w_big = vec![9.0f32; (n + 3) * k];
    w_big[2 * k..(n + 2) * k].copy_from_slice(&w);
    let wg = (half.upload)(ctx, "w", &[n + 3, k], &w_big)
        .unwrap()
        .rows_view(2, n);
    let bg = ctx.upload("b", &[n], &b).unwrap();
    for &tuning in tunings {
        common::assert_close(
            &format!("{} weights {m}x{n}x{k} {tuning:?}", half.name),
            &common::product_tuned(ctx, &xg, &wg, Some(&bg), tuning),
            &want,
            atol(k),
            1e-5,
        );
    }
    wg
}

/// bf16 weights, in a buffer (two per u32) and as texels (eight per texel), through every
/// kernel that reads them: the matrix-vector kernel (split K with 8 and 64 lanes, lanes owning
/// rows; with texels a whole texel per step when K % 8 = 0, and K = 264 leaves the lanes uneven
/// chunks), register-blocked (for one token too when K % 8 = 4: half a texel per vec4), single
/// values (odd K: la1's halves of a word) and the tiled kernel. The weight view starts 2 rows
/// into its storage, so with texels a row starts mid-texel whenever K % 8 ≠ 0.
#[test]
fn bf16_weights_match_cpu_on_rounded_weights() {
    let Some(ctx) = common::gpu() else { return };
    let tunings = [
        Tuning::CPU,
        Tuning {
            vec4: false,
            ..Tuning::CPU
        },
        Tuning {
            gemv: GemvUse::Never,
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
    ];
    for (storage, texels) in [(&BF16, false), (&BF16_TEXELS, true)] {
        for shape in [
            (45, 70, 132),
            (1, 300, 64),
            (1, 70, 132),
            (1, 150, 264),
            (1, 17, 8),
            (3, 33, 21),
        ] {
            let wg = check_half_weights(&ctx, storage, shape, 77, &tunings);
            assert_eq!((wg.elem, wg.is_texels()), (Elem::Bf16, texels), "{wg:?}");
        }
    }
}

/// f16 weight storage, as bf16 above; on an adapter without SHADER_F16 the upload must fail
/// with a clear error instead, and the weight may not be used as the activations.
#[test]
fn f16_weights_match_cpu_on_rounded_weights() {
    let Some(ctx) = common::gpu() else { return };
    if !ctx.has_f16() {
        let e = ctx
            .upload_f16("w", &[2, 4], &[0.0; 8])
            .unwrap_err()
            .to_string();
        assert!(e.contains("SHADER_F16"), "{e}");
        return;
    }
    let tunings = [
        Tuning::CPU,
        Tuning {
            vec4: false,
            ..Tuning::CPU
        },
        Tuning {
            split: Split::Rows, // ignored: f16 weights are always operand A
            ..Tuning::CPU
        },
        Tuning::GPU,
    ];
    let wg = check_half_weights(&ctx, &F16, (45, 70, 132), 71, &tunings);
    // Activations must stay f32.
    let pool = BufferPool::default();
    let mut rec = Recorder::new(&ctx, &pool);
    let e = linear::linear(&mut rec, &wg, &wg, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("f16"), "{e}");
}
