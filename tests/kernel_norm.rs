//! LayerNorm (with fused residual add): GPU kernel vs the CPU twin, and the twin vs a
//! hand-computed case.
mod common;

use linvt::cpu::norm as cpu;
use linvt::gpu::{norm, BufferPool, Recorder};

/// Runs the GPU kernel on x (rows × cols, placed at a nonzero offset inside a bigger buffer)
/// and compares it with the CPU twin.
fn check(rows: usize, cols: usize, with_residual: bool, seed: u64) {
    check_wg(rows, cols, with_residual, seed, None);
}

/// As `check`, with an explicit workgroup size (None: the adapter default).
fn check_wg(rows: usize, cols: usize, with_residual: bool, seed: u64, wg: Option<u32>) {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    // Inputs with a nonzero mean (+3) so the two-pass variance matters.
    let x: Vec<f32> = common::rand_vec(seed, rows * cols, 2.0)
        .iter()
        .map(|v| v + 3.0)
        .collect();
    let r = common::rand_vec(seed + 1, rows * cols, 1.0);
    let gamma = common::rand_vec(seed + 2, cols, 1.5);
    let beta = common::rand_vec(seed + 3, cols, 0.5);
    let eps = 1e-5;

    // x lives at rows 2.. of a bigger tensor: exercises the offset.
    let mut padded = common::rand_vec(seed + 4, (rows + 3) * cols, 9.0);
    padded[2 * cols..(2 + rows) * cols].copy_from_slice(&x);
    let xg = ctx
        .upload("x", &[rows + 3, cols], &padded)
        .unwrap()
        .rows_view(2, rows);
    let rg = ctx.upload("r", &[rows, cols], &r).unwrap();
    let gg = ctx.upload("gamma", &[cols], &gamma).unwrap();
    let bg = ctx.upload("beta", &[cols], &beta).unwrap();

    let mut rec = Recorder::new(&ctx, &pool);
    let res = with_residual.then_some(&rg);
    let y = match wg {
        None => norm::layer_norm(&mut rec, &xg, res, &gg, &bg, eps).unwrap(),
        Some(wg) => norm::layer_norm_with_workgroup(&mut rec, &xg, res, &gg, &bg, eps, wg).unwrap(),
    };
    assert_eq!(y.shape, vec![rows, cols]);
    rec.submit().unwrap();
    let got = ctx.read_f32(&y).unwrap();
    let want = cpu::layer_norm(
        &x,
        with_residual.then_some(&r[..]),
        &gamma,
        &beta,
        cols,
        eps,
    );
    // Normalised values are O(1) (|γ| ≤ 1.5, so |y| ≲ 1.5·√cols at worst, typically ≲ 5).
    // Both sides sum `cols` f32 values in different orders; mean and variance then carry a
    // relative error ~ cols·2⁻²⁴ at worst (≈ 5e-5 for 896), which scales y by the same
    // relative amount: atol 1e-4 + rtol 1e-4 covers it with margin. cols = 1 gives
    // y = beta exactly (z − mean = 0) on both sides.
    common::assert_close(
        &format!("layer_norm rows={rows} cols={cols} residual={with_residual} wg={wg:?}"),
        &got,
        &want,
        1e-4,
        1e-4,
    );
}

#[test]
fn layer_norm_cols_1() {
    check(5, 1, false, 10);
    check(5, 1, true, 11);
}

#[test]
fn layer_norm_cols_7() {
    check(3, 7, false, 20);
    check(3, 7, true, 21);
}

#[test]
fn layer_norm_cols_224() {
    check(9, 224, false, 30);
    check(9, 224, true, 31);
}

#[test]
fn layer_norm_cols_896() {
    check(17, 896, false, 40);
    check(17, 896, true, 41);
}

#[test]
fn layer_norm_cols_4100_single_row() {
    // More columns than any workgroup has invocations, not a multiple of one.
    check(1, 4100, true, 50);
}

#[test]
fn layer_norm_other_workgroup_sizes() {
    // The real-GPU default (256) and a small group, on lavapipe too: fewer columns than
    // invocations, and several columns per invocation.
    for wg in [256, 32, 1] {
        check_wg(3, 7, true, 60, Some(wg));
        check_wg(4, 896, true, 61, Some(wg));
    }
}

#[test]
fn cpu_twin_hand_computed() {
    // Row [1, 2, 3, 6] + residual [1, 0, -1, 2] = z [2, 2, 2, 8]: mean 3.5,
    // var = (3·1.5² + 4.5²)/4 = (6.75 + 20.25)/4 = 6.75, eps 0.
    let x = [1.0, 2.0, 3.0, 6.0];
    let r = [1.0, 0.0, -1.0, 2.0];
    let gamma = [1.0, 2.0, 1.0, 0.5];
    let beta = [0.0, 1.0, 0.0, -1.0];
    let y = cpu::layer_norm(&x, Some(&r), &gamma, &beta, 4, 0.0);
    let s = 6.75f32.sqrt();
    let want = [
        -1.5 / s,
        -1.5 / s * 2.0 + 1.0,
        -1.5 / s,
        4.5 / s * 0.5 - 1.0,
    ];
    common::assert_close("cpu layer_norm hand case", &y, &want, 1e-6, 1e-6);

    // Constant row: variance 0, output = beta (eps keeps it finite).
    let y = cpu::layer_norm(&[5.0; 3], None, &[2.0; 3], &[0.25, -0.5, 1.0], 3, 1e-5);
    common::assert_close(
        "cpu layer_norm constant row",
        &y,
        &[0.25, -0.5, 1.0],
        0.0,
        0.0,
    );
}

#[test]
fn layer_norm_bad_shapes_are_errors() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let x = ctx.upload("x", &[2, 4], &[0.0f32; 8]).unwrap();
    let g4 = ctx.upload("g", &[4], &[1.0f32; 4]).unwrap();
    let g3 = ctx.upload("g3", &[3], &[1.0f32; 3]).unwrap();
    let r = ctx.upload("r", &[3, 4], &[0.0f32; 12]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    assert!(norm::layer_norm(&mut rec, &x, None, &g3, &g4, 1e-5).is_err());
    assert!(norm::layer_norm(&mut rec, &x, None, &g4, &g3, 1e-5).is_err());
    assert!(norm::layer_norm(&mut rec, &x, Some(&r), &g4, &g4, 1e-5).is_err());
    assert!(norm::layer_norm(&mut rec, &x, None, &g4, &g4, f32::NAN).is_err());
    assert!(norm::layer_norm_with_workgroup(&mut rec, &x, None, &g4, &g4, 1e-5, 48).is_err());
    rec.submit().unwrap();
}

/// RMSNorm: GPU vs the twin `cpu::rms_norm`, x at a nonzero offset, every workgroup path.
fn check_rms(rows: usize, cols: usize, seed: u64, wg: Option<u32>) {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let x: Vec<f32> = common::rand_vec(seed, rows * cols, 2.0)
        .iter()
        .map(|v| v + 1.0)
        .collect();
    let w = common::rand_vec(seed + 1, cols, 1.5);
    let eps = 1e-6;
    let mut padded = common::rand_vec(seed + 2, (rows + 2) * cols, 9.0);
    padded[cols..(1 + rows) * cols].copy_from_slice(&x);
    let xg = ctx
        .upload("x", &[rows + 2, cols], &padded)
        .unwrap()
        .rows_view(1, rows);
    let wgt = ctx.upload("w", &[cols], &w).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let y = match wg {
        None => norm::rms_norm(&mut rec, &xg, &wgt, eps).unwrap(),
        Some(wg) => norm::rms_norm_with_workgroup(&mut rec, &xg, &wgt, eps, wg).unwrap(),
    };
    rec.submit().unwrap();
    let got = ctx.read_f32(&y).unwrap();
    // The mean square sums `cols` positive f32 values in different orders: relative error
    // ≲ cols·2⁻²⁴ (5e-5 at 896, 3e-4 at 4864 in the worst case, ~√cols·2⁻²⁴ typically), halved
    // by the square root; outputs are O(1)·|w| ≤ ~5. atol 1e-5 + rtol 1e-4 holds with margin
    // for these widths; a wrong weight index or a missing eps changes values by ≥ 1e-3.
    common::assert_close(
        &format!("rms_norm rows={rows} cols={cols} wg={wg:?}"),
        &got,
        &cpu::rms_norm(&x, &w, cols, eps),
        1e-5,
        1e-4,
    );
}

#[test]
fn rms_norm_matches_twin() {
    check_rms(3, 1, 30, None);
    check_rms(5, 7, 31, None);
    check_rms(2, 896, 32, None);
    check_rms(1, 4864, 33, Some(8));
    check_rms(4, 130, 34, Some(256));
}

#[test]
fn rms_norm_rejects_a_wrong_weight() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let x = ctx.upload("x", &[2, 3], &[1.0f32; 6]).unwrap();
    let w = ctx.upload("w", &[2], &[1.0f32; 2]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    assert!(norm::rms_norm(&mut rec, &x, &w, 1e-6).is_err());
}

/// Residual add + RMSNorm in one kernel: the sum equals the twin `residual_add` exactly (one f32
/// addition each), the normed rows equal `rms_norm` of it within the RMSNorm tolerance above;
/// x and the residual at nonzero offsets.
#[test]
fn add_rms_norm_matches_residual_add_then_rms_norm() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    for (rows, cols, seed) in [(1usize, 896usize, 60u64), (3, 7, 61), (2, 4100, 62)] {
        let x = common::rand_vec(seed, rows * cols, 2.0);
        let r = common::rand_vec(seed + 1, rows * cols, 2.0);
        let w = common::rand_vec(seed + 2, cols, 1.5);
        let eps = 1e-6;
        let view = |name, data: &[f32], start: usize| {
            let mut all = vec![7.0f32; (rows + start + 1) * cols];
            all[start * cols..(start + rows) * cols].copy_from_slice(data);
            ctx.upload(name, &[rows + start + 1, cols], &all)
                .unwrap()
                .rows_view(start, rows)
        };
        let (xg, rg) = (view("x", &x, 1), view("r", &r, 2));
        let wgt = ctx.upload("w", &[cols], &w).unwrap();
        let mut rec = Recorder::new(&ctx, &pool);
        let (sum, y) = norm::add_rms_norm(&mut rec, &xg, &rg, &wgt, eps).unwrap();
        rec.submit().unwrap();
        let want_sum = linvt::cpu::elementwise::residual_add(&x, &r, None, cols);
        assert_eq!(ctx.read_f32(&sum).unwrap(), want_sum, "sum {rows}x{cols}");
        common::assert_close(
            &format!("add_rms_norm rows={rows} cols={cols}"),
            &ctx.read_f32(&y).unwrap(),
            &cpu::rms_norm(&want_sum, &w, cols, eps),
            1e-5,
            1e-4,
        );
    }
    // Shapes that do not fit are errors.
    let x = ctx.upload("x", &[2, 3], &[1.0f32; 6]).unwrap();
    let r = ctx.upload("r", &[3, 2], &[1.0f32; 6]).unwrap();
    let w = ctx.upload("w", &[3], &[1.0f32; 3]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let e = norm::add_rms_norm(&mut rec, &x, &r, &w, 1e-6)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 3]") && e.contains("[3, 2]"), "{e}");
}

/// The health word: each norm lowers it to the first row whose mean square (variance) is not
/// finite in f32 — here row 2 of 4 holds 1e30s, whose squares overflow — and leaves it at
/// u32::MAX when every row is in range. Rows of ordinary values beside it normalise as usual.
#[test]
fn norms_flag_rows_that_overflow() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let (rows, cols) = (4usize, 96usize);
    let mut x = common::rand_vec(5, rows * cols, 1.0);
    let gamma = ctx.upload("g", &[cols], &vec![1.0f32; cols]).unwrap();
    let beta = ctx.upload("b", &[cols], &vec![0.0f32; cols]).unwrap();
    let run = |x: &[f32], which: usize| -> u32 {
        let xg = ctx.upload("x", &[rows, cols], x).unwrap();
        let mut rec = Recorder::new(&ctx, &pool);
        match which {
            0 => drop(norm::rms_norm(&mut rec, &xg, &gamma, 1e-6).unwrap()),
            1 => drop(norm::layer_norm(&mut rec, &xg, None, &gamma, &beta, 1e-6).unwrap()),
            _ => drop(norm::add_rms_norm(&mut rec, &xg, &xg, &gamma, 1e-6).unwrap()),
        }
        let word = rec.health().unwrap();
        rec.submit().unwrap();
        ctx.read_u32(&word).unwrap()[0]
    };
    for which in 0..3 {
        assert_eq!(run(&x, which), u32::MAX, "norm {which}: all in range");
    }
    for v in &mut x[2 * cols..3 * cols] {
        *v = 1e30;
    }
    x[2 * cols] = -1e30; // a variance too, not only a mean square
    for which in 0..3 {
        assert_eq!(run(&x, which), 2, "norm {which}");
    }
}
