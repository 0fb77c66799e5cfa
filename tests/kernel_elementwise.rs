//! Elementwise kernel family (GELU and its erf, SwiGLU, residual add, bf16 rounding, row
//! copies): GPU vs the CPU twins in `linvt::cpu::elementwise` and the CPU executor, on odd
//! shapes and views at nonzero offsets.
mod common;

use linvt::cpu::elementwise as cpu;
use linvt::gpu::elementwise::{self as gpu, Unary};
use linvt::gpu::{BufferPool, GpuContext, GpuTensor, Recorder};

/// Uploads `data` as rows 2.. of a bigger (rows + 3, cols) tensor and returns that view, so
/// every kernel is tested with a nonzero offset.
fn view(ctx: &GpuContext, data: &[f32], cols: usize, seed: u64) -> GpuTensor {
    let rows = data.len() / cols;
    let mut padded = common::rand_vec(seed, (rows + 3) * cols, 9.0);
    padded[2 * cols..(2 + rows) * cols].copy_from_slice(data);
    ctx.upload("padded", &[rows + 3, cols], &padded)
        .unwrap()
        .rows_view(2, rows)
}

fn run(ctx: &GpuContext, f: impl FnOnce(&mut Recorder) -> GpuTensor) -> Vec<f32> {
    let pool = BufferPool::default();
    let mut rec = Recorder::new(ctx, &pool);
    let y = f(&mut rec);
    rec.submit().unwrap();
    ctx.read_f32(&y).unwrap()
}

/// erf in f64 by its Maclaurin series, for |x| ≤ 4: the largest term is ~e^16 ≈ 9e6, so the
/// cancellation leaves ~1e-9 absolute accuracy — two orders below what is being checked.
fn erf_series(x: f64) -> f64 {
    assert!(x.abs() <= 4.0);
    let mut term = x; // x^(2n+1)·(-1)^n / n!
    let mut sum = x;
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn erf_approximation_error_is_float32_level() {
    let Some(ctx) = common::gpu() else { return };
    // A dense grid over [-4, 4] (where the rational fit acts) plus the tails, where erf is ±1
    // to within erfc(4) = 1.5e-8.
    let mut x: Vec<f32> = (0..=8000).map(|i| -4.0 + i as f32 * 1e-3).collect();
    x.extend([4.5f32, -4.5, 6.0, -6.0, 10.0, -10.0, 1e-3, -1e-3, 1e-6]);
    let xs = ctx.upload("x", &[x.len()], &x).unwrap();
    let got = run(&ctx, |rec| gpu::unary(rec, &xs, Unary::Erf).unwrap());
    let mut worst = (0.0f64, 0.0f32);
    for (&xi, &g) in x.iter().zip(&got) {
        let want = if xi.abs() <= 4.0 {
            erf_series(xi as f64)
        } else {
            (xi as f64).signum()
        };
        let err = (g as f64 - want).abs();
        if err > worst.0 {
            worst = (err, xi);
        }
    }
    eprintln!("erf: max |error| {:.3e} at x = {}", worst.0, worst.1);
    // The fits' own errors are ≤ 6.5e-8 (rational, |x| < 0.75) and 1.2e-7·erfc (beyond); f32
    // evaluation adds a few ulps of values ≤ 1 (ulp 6e-8 near 1): 1.3e-7 measured on
    // lavapipe. 2e-7 is the "float32 level" the GELU needs and would catch a wrong coefficient
    // (errors ≥ 1e-5) or the tanh approximation (errors ~1e-4).
    assert!(
        worst.0 < 2e-7,
        "erf error {:.3e} at x = {}",
        worst.0,
        worst.1
    );
}

#[test]
fn gelu_matches_twin() {
    let Some(ctx) = common::gpu() else { return };
    for (rows, cols, seed) in [(1, 1, 1), (3, 7, 2), (5, 129, 3)] {
        let x = common::rand_vec(seed, rows * cols, 8.0);
        let xs = view(&ctx, &x, cols, seed + 10);
        let got = run(&ctx, |rec| gpu::unary(rec, &xs, Unary::Gelu).unwrap());
        // gelu = ½x(1 + erf(x/√2)): an erf error e moves it by ½|x|·e ≤ 4·2e-7 for |x| ≤ 8,
        // plus a few f32 ulps of the result (the twin rounds a f64 value once).
        common::assert_close("gelu", &got, &cpu::gelu(&x), 1e-6, 1e-6);
    }
}

#[test]
fn quick_gelu_matches_twin_and_its_definition() {
    let Some(ctx) = common::gpu() else { return };
    for (rows, cols, seed) in [(1, 1, 4), (3, 7, 5), (5, 129, 6)] {
        let x = common::rand_vec(seed, rows * cols, 8.0);
        let xs = view(&ctx, &x, cols, seed + 10);
        let got = run(&ctx, |rec| gpu::unary(rec, &xs, Unary::QuickGelu).unwrap());
        // Both compute x / (1 + e^(−1.702x)) in f32; the GPU's exp may differ by a few ulps
        // (WGSL's exp is within 3 + 2|x| ulp), so 1e-6 relative.
        common::assert_close("quick_gelu", &got, &cpu::quick_gelu(&x), 1e-6, 1e-6);
    }
    // The twin against its definition in f64 (x·σ(1.702x)) at a few points.
    for x in [-8.0f32, -1.0, 0.0, 0.5, 3.0] {
        let want = x as f64 / (1.0 + (-1.702 * x as f64).exp());
        assert!((cpu::quick_gelu(&[x])[0] as f64 - want).abs() < 1e-6);
    }
}

#[test]
fn swiglu_matches_twin() {
    let Some(ctx) = common::gpu() else { return };
    for (rows, width, seed) in [(1, 1, 4), (3, 7, 5), (2, 300, 6)] {
        let x = common::rand_vec(seed, rows * 2 * width, 6.0);
        let xs = view(&ctx, &x, 2 * width, seed + 10);
        let got = run(&ctx, |rec| gpu::swiglu(rec, &xs).unwrap());
        // silu(g)·u with |g|, |u| ≤ 6: both sides compute g/(1+e^-g)·u in f32; the GPU's exp
        // may differ by a few ulps, so a relative 1e-6 with a 1e-6 floor.
        common::assert_close("swiglu", &got, &cpu::swiglu(&x, width), 1e-6, 1e-6);
    }
    // An odd width is an error, not a panic.
    let odd = ctx.upload("odd", &[2, 3], &[0.0f32; 6]).unwrap();
    let pool = BufferPool::default();
    let mut rec = Recorder::new(&ctx, &pool);
    assert!(gpu::swiglu(&mut rec, &odd).is_err());
}

#[test]
fn residual_add_matches_twin_with_gamma_and_repeat() {
    let Some(ctx) = common::gpu() else { return };
    // (x rows, y rows): same rows, and a per-frame table repeated over 3 groups of rows.
    for (xr, yr, cols, seed) in [(5, 5, 7, 7), (6, 2, 13, 8), (1, 1, 1, 9)] {
        let x = common::rand_vec(seed, xr * cols, 3.0);
        let y = common::rand_vec(seed + 1, yr * cols, 3.0);
        let g = common::rand_vec(seed + 2, cols, 2.0);
        let (xs, ys) = (
            view(&ctx, &x, cols, seed + 3),
            view(&ctx, &y, cols, seed + 4),
        );
        let gs = view(&ctx, &g, cols, seed + 5);
        let plain = run(&ctx, |rec| gpu::residual_add(rec, &xs, &ys, None).unwrap());
        // One f32 addition on both sides: bit-identical.
        assert_eq!(plain, cpu::residual_add(&x, &y, None, cols), "residual_add");
        let scaled = run(&ctx, |rec| {
            gpu::residual_add(rec, &xs, &ys, Some(&gs)).unwrap()
        });
        // x + γ·y may be fused into one fma on the GPU: one rounding less, ≤ 1 ulp of |x| +
        // |γy| ≤ 9 (ulp 1e-6).
        common::assert_close(
            "residual_add γ",
            &scaled,
            &cpu::residual_add(&x, &y, Some(&g), cols),
            2e-6,
            0.0,
        );
    }
    // y rows that do not divide x rows: an error.
    let x = ctx.upload("x", &[5, 2], &[0.0f32; 10]).unwrap();
    let y = ctx.upload("y", &[2, 2], &[0.0f32; 4]).unwrap();
    let pool = BufferPool::default();
    let mut rec = Recorder::new(&ctx, &pool);
    assert!(gpu::residual_add(&mut rec, &x, &y, None).is_err());
}

#[test]
fn round_bf16_is_bit_exact() {
    let Some(ctx) = common::gpu() else { return };
    let mut x = common::rand_vec(11, 1001, 100.0);
    // Exact ties (round to even: down and up), near-ties, sign, overflow to infinity, the
    // largest bf16-representable value, infinities, NaN, small normals.
    x.extend([
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
        -(1.0 + 1.0 / 256.0),
        1.0 + 1.0 / 256.0 + 1.0 / 65536.0,
        f32::MAX,
        f32::from_bits(0x7f7f_7fff),
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.2e-38,
        -3.5e-30,
        0.0,
        -0.0,
    ]);
    let xs = view(&ctx, &x, 1, 12);
    let got = run(&ctx, |rec| gpu::unary(rec, &xs, Unary::RoundBf16).unwrap());
    let want = cpu::round_bf16(&x);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "element {i} ({}) rounds to {g:e} on the GPU, {w:e} on the CPU",
            x[i]
        );
    }
}

#[test]
fn gather_and_scatter_rows_copy_exactly() {
    let Some(ctx) = common::gpu() else { return };
    let cols = 5;
    let table = common::rand_vec(13, 9 * cols, 1.0);
    let ts = view(&ctx, &table, cols, 14);
    let ids = [8u32, 0, 3, 3, 8, 1];
    let got = run(&ctx, |rec| gpu::gather_rows(rec, &ts, &ids).unwrap());
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| table[i as usize * cols..][..cols].to_vec())
        .collect();
    assert_eq!(got, want, "gather_rows");

    // Scatter 3 source rows into 9, position 4 twice: the later row wins (as the CPU loop).
    let src = common::rand_vec(15, 3 * cols, 1.0);
    let ss = view(&ctx, &src, cols, 16);
    let positions = [4u32, 7, 4];
    let got = run(&ctx, |rec| {
        gpu::scatter_rows(rec, &ts, &positions, &ss).unwrap()
    });
    let mut want = table.clone();
    for (i, &p) in positions.iter().enumerate() {
        want[p as usize * cols..][..cols].copy_from_slice(&src[i * cols..][..cols]);
    }
    assert_eq!(got, want, "scatter_rows");

    // Ids beyond the table are an error naming the problem.
    let pool = BufferPool::default();
    let mut rec = Recorder::new(&ctx, &pool);
    let err = gpu::gather_rows(&mut rec, &ts, &[9])
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    assert!(gpu::scatter_rows(&mut rec, &ts, &[9, 0, 1], &ss).is_err());
}

/// An embedding table stored as texels, f32 or bf16 (what CPU adapters use), gathered by
/// rows: the stored values come back exactly (bf16 widened exactly), including rows that start
/// mid-texel (5 columns), the last row, and a row that straddles the first texture row (bf16:
/// 32 768 values per texture row; row 6553 holds values 32 765..32 769). An f16 tensor cannot
/// be stored as texels, and a bf16 buffer is refused by the gather.
#[test]
fn gather_rows_reads_texel_tables_exactly() {
    use linvt::gpu::Elem;
    let Some(ctx) = common::gpu() else { return };
    let (rows, cols) = (7000, 5);
    let table = common::rand_vec(19, rows * cols, 1.0);
    let ids = [6553u32, 0, 6999, 3, 3, 4096];
    for (elem, round) in [
        (Elem::F32, (|v| v) as fn(f32) -> f32),
        (Elem::Bf16, |v| half::bf16::from_f32(v).to_f32()),
    ] {
        let t = ctx
            .upload_texels_as("table", &[rows, cols], &table, elem)
            .unwrap();
        let got = run(&ctx, |rec| gpu::gather_rows(rec, &t, &ids).unwrap());
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| table[i as usize * cols..][..cols].iter().map(|&v| round(v)))
            .collect();
        assert_eq!(got, want, "gather_rows from {elem:?} texels");
    }
    let e = ctx
        .upload_texels_as("table", &[2, 4], &[0.0; 8], Elem::F16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("texels"), "{e}");
    let b = ctx.upload_bf16("table", &[2, 4], &[0.0; 8]).unwrap();
    let pool = BufferPool::default();
    let mut rec = Recorder::new(&ctx, &pool);
    let e = gpu::gather_rows(&mut rec, &b, &[1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read rows"), "{e}");
}

/// One recording of 700 dependent dispatches, each with its own parameters (a different y
/// row): the recorder packs parameters into shared 64 KiB uniform buffers (256 per buffer at
/// the usual alignment), so this spans three of them. x + Σ y_i must come out exact (small
/// integers).
#[test]
fn many_dispatches_in_one_recording_keep_their_parameters() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let (n, cols) = (700usize, 4usize);
    let ys: Vec<f32> = (0..n * cols).map(|i| (i % 7) as f32).collect();
    let yg = ctx.upload("ys", &[n, cols], &ys).unwrap();
    let mut x = ctx
        .upload("x", &[1, cols], &[1.0f32, 2.0, 3.0, 4.0])
        .unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    for i in 0..n {
        x = gpu::residual_add(&mut rec, &x, &yg.rows_view(i, 1), None).unwrap();
    }
    rec.submit().unwrap();
    let want: Vec<f32> = (0..cols)
        .map(|c| (c + 1) as f32 + (0..n).map(|i| ys[i * cols + c]).sum::<f32>())
        .collect();
    assert_eq!(ctx.read_f32(&x).unwrap(), want);
}
