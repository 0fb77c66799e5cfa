//! Window-pool kernel family: GPU vs the CPU twin, and the twin vs hand-computed cases.
//!
//! Tolerance: each output is the f32 sum of at most 5 inputs in U(-1, 1) times 1/s, summed in
//! the same order on both sides; only the rounding of 1/s and of the product may differ (≤ 1
//! ulp of values ≤ 1), so atol 1e-6 (rtol 0).
mod common;

use linvt::cpu::window_pool::{self as cpu, pooled_rows};
use linvt::gpu::window_pool as gpu;
use linvt::gpu::{BufferPool, Recorder};

const ATOL: f32 = 1e-6;
const SCALE_SETS: [&[usize]; 4] = [&[1, 2, 4], &[1], &[3], &[2, 5]];

#[test]
fn pooled_rows_counts_windows() {
    assert_eq!(pooled_rows(99, &[1, 2, 4]), 99 + 49 + 24);
    assert_eq!(pooled_rows(3, &[4]), 0);
    assert_eq!(pooled_rows(10, &[2, 5, 11]), 5 + 2);
}

#[test]
fn cpu_twin_matches_hand_computed() {
    // x rows r have values (r, 10 r); count 5 through indices [4, 0, 3, 1, 2], scales [1, 2, 4]:
    // scale 1: rows 4, 0, 3, 1, 2; scale 2: means of (4, 0), (3, 1) = 2, 2 (remainder 2 dropped);
    // scale 4: mean of (4, 0, 3, 1) = 2.
    let x: Vec<f32> = (0..6).flat_map(|r| [r as f32, 10.0 * r as f32]).collect();
    let idx = [4u32, 0, 3, 1, 2];
    let got = cpu::gather_pool(&x, 2, Some(&idx), 5, &[1, 2, 4]);
    let want = [
        4., 40., 0., 0., 3., 30., 1., 10., 2., 20., 2., 20., 2., 20., 2., 20.,
    ];
    assert_eq!(got, want);
    // Identity indices, scale 3 over 7 rows: windows (0,1,2), (3,4,5); row 6 dropped.
    let got = cpu::gather_pool(&x, 2, None, 6, &[3, 7]);
    assert_eq!(got, [1., 10., 4., 40.]);
}

/// A permutation-like index list with repeats, all in range of `rows`.
fn indices(count: usize, rows: usize) -> Vec<u32> {
    (0..count)
        .map(|i| ((i * 7919 + 13) % rows) as u32)
        .collect()
}

#[test]
fn gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let cols = 37;
    for count in [1usize, 3, 4, 99, 1024] {
        let rows = count + 5;
        let x = common::rand_vec(count as u64, rows * cols, 1.0);
        let xt = ctx.upload("x", &[rows, cols], &x).unwrap();
        let idx = indices(count, rows);
        let it = ctx.upload("idx", &[count], &idx).unwrap();
        for scales in SCALE_SETS {
            if pooled_rows(count, scales) == 0 {
                continue;
            }
            for with_idx in [false, true] {
                let want = cpu::gather_pool(&x, cols, with_idx.then_some(&idx[..]), count, scales);
                let mut rec = Recorder::new(&ctx, &pool);
                let out = gpu::gather_pool(&mut rec, &xt, with_idx.then_some(&it), count, scales)
                    .unwrap();
                rec.submit().unwrap();
                assert_eq!(out.shape, vec![pooled_rows(count, scales), cols]);
                let got = ctx.read_f32(&out).unwrap();
                common::assert_close(
                    &format!("count {count} scales {scales:?} idx {with_idx}"),
                    &got,
                    &want,
                    ATOL,
                    0.0,
                );
            }
        }
    }
}

#[test]
fn gpu_views_and_into() {
    // x is rows 4..104 of a bigger tensor, the indices a slice at offset 3 of a longer list, and
    // the output rows 2..174 of a bigger tensor whose other rows must stay untouched.
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let (cols, count, scales) = (16, 99, [1usize, 2, 4]);
    let big = common::rand_vec(5, 110 * cols, 1.0);
    let xt = ctx
        .upload("big", &[110, cols], &big)
        .unwrap()
        .rows_view(4, 100);
    let idx_all: Vec<u32> = [7u32, 7, 7]
        .into_iter()
        .chain(indices(count, 100))
        .collect();
    let it = ctx
        .upload("idx", &[idx_all.len(), 1], &idx_all)
        .unwrap()
        .rows_view(3, count);
    let rows = pooled_rows(count, &scales);
    assert_eq!(rows, 172);
    let outbig = ctx
        .upload("out", &[rows + 5, cols], &vec![9.0f32; (rows + 5) * cols])
        .unwrap();
    let out = outbig.rows_view(2, rows);
    let mut rec = Recorder::new(&ctx, &pool);
    gpu::gather_pool_into(&mut rec, &xt, Some(&it), count, &scales, &out).unwrap();
    rec.submit().unwrap();
    let got = ctx.read_f32(&outbig).unwrap();
    let want = cpu::gather_pool(
        &big[4 * cols..104 * cols],
        cols,
        Some(&idx_all[3..]),
        count,
        &scales,
    );
    common::assert_close("view", &got[2 * cols..(2 + rows) * cols], &want, ATOL, 0.0);
    assert!(
        got[..2 * cols]
            .iter()
            .chain(&got[(2 + rows) * cols..])
            .all(|&v| v == 9.0),
        "wrote outside the view"
    );
}

#[test]
fn gpu_out_of_range_indices_stay_in_bounds() {
    // Index values past the view are clamped to its last row (the kernel must not read outside
    // the view); the CPU twin assumes valid indices, so compare with clamped indices.
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let cols = 5;
    let x = common::rand_vec(9, 8 * cols, 1.0);
    let xt = ctx.upload("x", &[8, cols], &x).unwrap();
    let idx = [0u32, 100, 3, u32::MAX];
    let it = ctx.upload("idx", &[4], &idx).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let out = gpu::gather_pool(&mut rec, &xt, Some(&it), 4, &[1, 2]).unwrap();
    rec.submit().unwrap();
    let clamped = [0u32, 7, 3, 7];
    let want = cpu::gather_pool(&x, cols, Some(&clamped), 4, &[1, 2]);
    common::assert_close("clamped", &ctx.read_f32(&out).unwrap(), &want, ATOL, 0.0);
}

#[test]
fn gpu_rejects_bad_input() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let x = ctx.upload("x", &[10, 4], &[0f32; 40]).unwrap();
    let idx = ctx.upload("idx", &[6], &[0u32; 6]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let cases: [(&str, Option<&linvt::gpu::GpuTensor>, usize, &[usize]); 7] = [
        ("count past rows", None, 11, &[1]),
        ("count past indices", Some(&idx), 7, &[1]),
        ("scale 0", None, 4, &[1, 0]),
        ("no scales", None, 4, &[]),
        ("nine scales", None, 4, &[1; 9]),
        ("empty output", None, 3, &[4, 5]),
        ("count 0", Some(&idx), 0, &[1]),
    ];
    for (what, i, count, scales) in cases {
        let r = gpu::gather_pool(&mut rec, &x, i, count, scales);
        assert!(
            matches!(r, Err(linvt::Error::InvalidInput(_))),
            "{what}: {r:?}"
        );
    }
    // Output view of the wrong size, and an output aliasing the input.
    let small = ctx.upload("o", &[3, 4], &[0f32; 12]).unwrap();
    let r = gpu::gather_pool_into(&mut rec, &x, None, 10, &[2], &small);
    assert!(
        matches!(r, Err(linvt::Error::InvalidInput(_))),
        "wrong out size: {r:?}"
    );
    let r = gpu::gather_pool_into(&mut rec, &x, None, 4, &[2], &x.rows_view(8, 2));
    assert!(
        matches!(r, Err(linvt::Error::InvalidInput(_))),
        "aliasing: {r:?}"
    );
    assert!(gpu::gather_pool(&mut rec, &x, None, 10, &[1, 2, 4, 8]).is_ok());
    rec.submit().unwrap();
}
