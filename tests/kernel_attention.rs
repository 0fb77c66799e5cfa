//! Attention kernel family: GPU vs the CPU twin on odd shapes, and the twin vs independent
//! expectations.
//!
//! Tolerances: inputs are U(-1, 1) (unless stated), so with the PyTorch scale 1/√head_dim the
//! logits are O(1) and every output is a convex combination of values in (-1, 1). The GPU sums
//! the dot products in another order (vec4 partial sums, scale folded into q) and uses an online
//! softmax, so logits differ by a few f32 ulps (~1e-7 relative) and outputs by ~2e-7
//! (measured); atol 1e-5 (plus rtol 1e-4) leaves headroom for kv_len up to 300 without hiding a
//! real error (a wrong key, head or stride changes outputs by O(0.1)).
mod common;

use linvt::cpu::attention as cpu;

use linvt::gpu::attention::{self as gpu, AttendTuning, Strategy};
use linvt::gpu::{BufferPool, GpuContext, Recorder};
use linvt::ops::{AttnGeometry, Axis, Operand};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

/// Every code path: the adapter's choice, both variants of the fused `attend` kernel at a
/// workgroup size that divides no test length, and the GEMM route (batched products around a
/// row softmax), once in one chunk and once with a scratch budget so small that every group is
/// its own chunk.
fn tunings() -> Vec<Option<Strategy>> {
    vec![
        None,
        Some(Strategy::Flash(AttendTuning {
            wg: 16,
            stage: true,
        })),
        Some(Strategy::Flash(AttendTuning {
            wg: 8,
            stage: false,
        })),
        Some(Strategy::Gemm {
            scratch_bytes: gpu::GEMM_SCRATCH_BYTES,
        }),
        Some(Strategy::Gemm { scratch_bytes: 1 }),
    ]
}

fn run_gpu(
    ctx: &GpuContext,
    q: &[f32],
    k: Option<&[f32]>,
    v: Option<&[f32]>,
    out_len: usize,
    g: &AttnGeometry,
    tuning: Option<Strategy>,
) -> Vec<f32> {
    let pool = BufferPool::default();
    let qt = ctx.upload("q", &[q.len()], q).unwrap();
    let kt = k.map(|k| ctx.upload("k", &[k.len()], k).unwrap());
    let vt = v.map(|v| ctx.upload("v", &[v.len()], v).unwrap());
    let out = ctx
        .upload("out", &[out_len], &vec![f32::NAN; out_len])
        .unwrap();
    let mut rec = Recorder::new(ctx, &pool);
    gpu::attention_tuned(
        &mut rec,
        &qt,
        kt.as_ref().unwrap_or(&qt),
        vt.as_ref().unwrap_or(&qt),
        &out,
        g,
        tuning,
    )
    .unwrap();
    rec.submit().unwrap();
    ctx.read_f32(&out).unwrap()
}

/// Independent expectation in f64: explicit dot products, explicit softmax, explicit sum.
fn naive(q: &[f32], k: &[f32], v: &[f32], g: &AttnGeometry) -> Vec<(usize, f64)> {
    let hd = g.head_dim;
    let at = |o: &Operand, gr: usize, i: usize, h: usize, d: usize| {
        o.offset + gr * o.group_stride + i * o.row_stride + h * hd + d
    };
    let mut res = Vec::new();
    for gr in 0..g.groups {
        for i in 0..g.q_len {
            for h in 0..g.heads {
                let logits: Vec<f64> = (0..g.kv_len)
                    .map(|j| {
                        let dot: f64 = (0..hd)
                            .map(|d| {
                                q[at(&g.q, gr, i, h, d)] as f64 * k[at(&g.k, gr, j, h, d)] as f64
                            })
                            .sum();
                        dot * g.scale as f64
                    })
                    .collect();
                let max = logits.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let o: f64 = (0..g.kv_len)
                        .map(|j| e[j] / sum * v[at(&g.v, gr, j, h, d)] as f64)
                        .sum();
                    res.push((at(&g.out, gr, i, h, d), o));
                }
            }
        }
    }
    res
}

#[test]
fn cpu_twin_matches_hand_computed_tiny_case() {
    // q_len 1, kv_len 2, one head of dim 1, scale 1: logits q·k = (1·0, 1·ln 3) = (0, ln 3)
    // → weights (1/4, 3/4) → out = 0.25·2 + 0.75·(-2) = -1.
    let g = AttnGeometry {
        scale: 1.0,
        ..AttnGeometry::cross(1, 2, 1, 1)
    };
    let (q, k, v) = ([1.0f32], [0.0f32, 3f32.ln()], [2.0f32, -2.0]);
    let mut out = [0f32];
    cpu::attention(&q, &k, &v, &mut out, &g);
    assert!((out[0] + 1.0).abs() < 1e-6, "{}", out[0]);
    let p = cpu::attention_probs(&q, &k, &g);
    common::assert_close("tiny probs", &p, &[0.25, 0.75], 1e-6, 0.0);
}

#[test]
fn cpu_twin_matches_naive_f64() {
    // Odd shapes on both axes and a cross case; f64 reference, so the tolerance is pure f32
    // rounding of the twin: 1e-5.
    for (t, n, e, h) in [(3, 5, 12, 3), (4, 3, 10, 2), (2, 7, 896, 4)] {
        let qkv = common::rand_vec(1, t * n * 3 * e, 1.0);
        for axis in [Axis::Frames, Axis::Tokens] {
            let g = AttnGeometry::along_axis(t, n, e, h, axis);
            let mut out = vec![f32::NAN; t * n * e];
            cpu::attention(&qkv, &qkv, &qkv, &mut out, &g);
            let want = naive(&qkv, &qkv, &qkv, &g);
            assert_eq!(want.len(), out.len());
            for (i, w) in want {
                assert!(
                    (out[i] as f64 - w).abs() < 1e-5,
                    "{axis:?} ({t},{n},{e},{h}) element {i}: {} vs {w}",
                    out[i]
                );
            }
        }
    }
    let g = AttnGeometry::cross(5, 9, 12, 2);
    let (q, k, v) = (
        common::rand_vec(2, 60, 1.0),
        common::rand_vec(3, 108, 1.0),
        common::rand_vec(4, 108, 1.0),
    );
    let mut out = vec![0f32; 60];
    cpu::attention(&q, &k, &v, &mut out, &g);
    for (i, w) in naive(&q, &k, &v, &g) {
        assert!(
            (out[i] as f64 - w).abs() < 1e-5,
            "cross element {i}: {} vs {w}",
            out[i]
        );
    }
}

#[test]
fn geometry_of_along_axis_and_cross() {
    let f = AttnGeometry::along_axis(16, 256, 896, 4, Axis::Frames);
    assert_eq!(
        (f.groups, f.q_len, f.kv_len, f.head_dim),
        (256, 16, 16, 224)
    );
    assert_eq!(
        f.q,
        Operand {
            offset: 0,
            group_stride: 3 * 896,
            row_stride: 256 * 3 * 896
        }
    );
    assert_eq!(f.k.offset, 896);
    assert_eq!(f.v.offset, 2 * 896);
    assert_eq!(
        f.out,
        Operand {
            offset: 0,
            group_stride: 896,
            row_stride: 256 * 896
        }
    );
    assert!((f.scale - 1.0 / 224f32.sqrt()).abs() < 1e-9);
    let t = AttnGeometry::along_axis(16, 256, 896, 4, Axis::Tokens);
    assert_eq!((t.groups, t.q_len), (16, 256));
    assert_eq!(
        t.q,
        Operand {
            offset: 0,
            group_stride: 256 * 3 * 896,
            row_stride: 3 * 896
        }
    );
    assert_eq!(
        t.out,
        Operand {
            offset: 0,
            group_stride: 256 * 896,
            row_stride: 896
        }
    );
    let c = AttnGeometry::cross(7, 42, 64, 2);
    assert_eq!((c.groups, c.q_len, c.kv_len, c.head_dim), (1, 7, 42, 32));
    assert_eq!(
        (c.q.row_stride, c.k.row_stride, c.out.row_stride),
        (64, 64, 64)
    );
}

#[test]
fn cpu_along_axis_equals_cross_on_transposed_data() {
    // Frames: for each token n, gather rows (t, n) into separate q, k, v (T, E) tensors and run
    // cross(T, T); Tokens: the same per frame t. Same arithmetic in the same order → exact.
    let (t, n, e, h) = (4, 5, 12, 3);
    let qkv = common::rand_vec(7, t * n * 3 * e, 1.0);
    let row = |ti: usize, ni: usize, part: usize| &qkv[(ti * n + ni) * 3 * e + part * e..][..e];
    for axis in [Axis::Frames, Axis::Tokens] {
        let g = AttnGeometry::along_axis(t, n, e, h, axis);
        let mut out = vec![0f32; t * n * e];
        cpu::attention(&qkv, &qkv, &qkv, &mut out, &g);
        let (outer, len) = match axis {
            Axis::Frames => (n, t),
            Axis::Tokens => (t, n),
        };
        for o in 0..outer {
            let pos = |i: usize| match axis {
                Axis::Frames => (i, o),
                Axis::Tokens => (o, i),
            };
            let gather = |part| {
                (0..len)
                    .flat_map(|i| row(pos(i).0, pos(i).1, part).to_vec())
                    .collect::<Vec<_>>()
            };
            let mut want = vec![0f32; len * e];
            cpu::attention(
                &gather(0),
                &gather(1),
                &gather(2),
                &mut want,
                &AttnGeometry::cross(len, len, e, h),
            );
            let got: Vec<f32> = (0..len)
                .flat_map(|i| {
                    let (ti, ni) = pos(i);
                    out[(ti * n + ni) * e..][..e].to_vec()
                })
                .collect();
            assert_eq!(got, want, "{axis:?} slice {o}");
        }
    }
}

#[test]
fn gpu_along_axis_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (t, n, e, h) in [
        (1, 1, 4, 1),
        (3, 5, 12, 3),
        (4, 16, 64, 4),
        (2, 7, 896, 4),
        (5, 3, 96, 1),
        // Long enough along tokens (≥ 32 queries, ≥ 64 keys) for the GEMM route by default
        // on CPU adapters.
        (3, 70, 96, 2),
    ] {
        let qkv = common::rand_vec(11, t * n * 3 * e, 1.0);
        for axis in [Axis::Frames, Axis::Tokens] {
            let g = AttnGeometry::along_axis(t, n, e, h, axis);
            let mut want = vec![0f32; t * n * e];
            cpu::attention(&qkv, &qkv, &qkv, &mut want, &g);
            for tuning in tunings() {
                let got = run_gpu(&ctx, &qkv, None, None, t * n * e, &g, tuning);
                common::assert_close(
                    &format!("along {axis:?} ({t},{n},{e},{h}) {tuning:?}"),
                    &got,
                    &want,
                    ATOL,
                    RTOL,
                );
            }
        }
    }
}

#[test]
fn gpu_cross_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    // (embed, heads) for head_dim 224, 16, 256, 1 and 3.
    let dims = [(896, 4), (32, 2), (256, 1), (3, 3), (6, 2)];
    for (e, h) in dims {
        for (ql, kl) in [(1, 1), (8, 42), (12, 172), (3, 300)] {
            let g = AttnGeometry::cross(ql, kl, e, h);
            let q = common::rand_vec(21, ql * e, 1.0);
            let k = common::rand_vec(22, kl * e, 1.0);
            let v = common::rand_vec(23, kl * e, 1.0);
            let mut want = vec![0f32; ql * e];
            cpu::attention(&q, &k, &v, &mut want, &g);
            for tuning in tunings() {
                let got = run_gpu(&ctx, &q, Some(&k), Some(&v), ql * e, &g, tuning);
                common::assert_close(
                    &format!("cross q{ql} kv{kl} E{e} h{h} {tuning:?}"),
                    &got,
                    &want,
                    ATOL,
                    RTOL,
                );
            }
        }
    }
}

#[test]
fn gpu_large_logits_stay_finite() {
    // Inputs U(-4, 4) with scale 1 and head_dim 64: logits reach ±100s, so exp without the max
    // subtraction would overflow; the weights become nearly one-hot. Outputs stay within
    // (-4, 4); relative f32 error of logits ~1e-7·|logit| → ~1e-5 of a weight → atol 2e-4.
    let Some(ctx) = common::gpu() else { return };
    let g = AttnGeometry {
        scale: 1.0,
        ..AttnGeometry::cross(9, 70, 128, 2)
    };
    let q = common::rand_vec(31, 9 * 128, 4.0);
    let k = common::rand_vec(32, 70 * 128, 4.0);
    let v = common::rand_vec(33, 70 * 128, 4.0);
    let mut want = vec![0f32; 9 * 128];
    cpu::attention(&q, &k, &v, &mut want, &g);
    for tuning in tunings() {
        let got = run_gpu(&ctx, &q, Some(&k), Some(&v), 9 * 128, &g, tuning);
        common::assert_close(&format!("large logits {tuning:?}"), &got, &want, 2e-4, 1e-4);
    }
}

#[test]
fn gpu_views_at_nonzero_offsets() {
    // q is rows 3..15 of a bigger tensor, k/v rows of another, out rows 2..14 of a bigger
    // output; the elements around the output view must stay untouched.
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let (e, h, ql, kl) = (448, 2, 12, 37);
    let qbig = common::rand_vec(41, 20 * e, 1.0);
    let kvbig = common::rand_vec(42, 50 * 2 * e, 1.0);
    let qt = ctx
        .upload("qbig", &[20, e], &qbig)
        .unwrap()
        .rows_view(3, ql);
    let kvt = ctx
        .upload("kvbig", &[50, 2 * e], &kvbig)
        .unwrap()
        .rows_view(5, kl);
    let outbig = ctx
        .upload("outbig", &[16, e], &vec![7.0f32; 16 * e])
        .unwrap();
    let out = outbig.rows_view(2, ql);
    // k and v are the two halves of each row of the kv view (relative offsets 0 and e).
    let mut g = AttnGeometry::cross(ql, kl, e, h);
    g.k = Operand {
        offset: 0,
        group_stride: 0,
        row_stride: 2 * e,
    };
    g.v = Operand {
        offset: e,
        group_stride: 0,
        row_stride: 2 * e,
    };
    let qv = &qbig[3 * e..(3 + ql) * e];
    let kvv = &kvbig[5 * 2 * e..(5 + kl) * 2 * e];
    let mut want = vec![0f32; ql * e];
    cpu::attention(qv, kvv, kvv, &mut want, &g);
    for tuning in tunings() {
        let mut rec = Recorder::new(&ctx, &pool);
        gpu::attention_tuned(&mut rec, &qt, &kvt, &kvt, &out, &g, tuning).unwrap();
        rec.submit().unwrap();
        let got = ctx.read_f32(&outbig).unwrap();
        let what = format!("view out {tuning:?}");
        common::assert_close(&what, &got[2 * e..(2 + ql) * e], &want, ATOL, RTOL);
        assert!(
            got[..2 * e]
                .iter()
                .chain(&got[(2 + ql) * e..])
                .all(|&x| x == 7.0),
            "{what}: wrote outside the view"
        );
    }
    let mut rec = Recorder::new(&ctx, &pool);
    let probs = gpu::attention_probs(&mut rec, &qt, &kvt, &g).unwrap();
    rec.submit().unwrap();
    let want_p = cpu::attention_probs(qv, kvv, &g);
    // Weights are in (0, 1) and sum to 1; f32 rounding of logits → ~1e-7 each: atol 1e-6.
    common::assert_close(
        "view probs",
        &ctx.read_f32(&probs).unwrap(),
        &want_p,
        1e-6,
        1e-4,
    );
}

#[test]
fn gpu_probs_match_cpu_and_sum_to_one() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    // (geometry, q elements, k elements, q and k one packed tensor)
    let cases = [
        (
            AttnGeometry::cross(12, 172, 896, 4),
            12 * 896,
            172 * 896,
            false,
        ),
        (AttnGeometry::cross(1, 1, 16, 1), 16, 16, false),
        (
            AttnGeometry::along_axis(3, 5, 12, 3, Axis::Frames),
            3 * 5 * 36,
            0,
            true,
        ),
        (
            AttnGeometry::along_axis(2, 7, 96, 1, Axis::Tokens),
            2 * 7 * 288,
            0,
            true,
        ),
    ];
    for (seed, (g, qn, kn, packed)) in cases.into_iter().enumerate() {
        let q = common::rand_vec(51 + seed as u64, qn, 1.0);
        let k = if packed {
            q.clone()
        } else {
            common::rand_vec(61 + seed as u64, kn, 1.0)
        };
        let qt = ctx.upload("q", &[q.len()], &q).unwrap();
        let kt = ctx.upload("k", &[k.len()], &k).unwrap();
        let mut rec = Recorder::new(&ctx, &pool);
        let pt = gpu::attention_probs(&mut rec, &qt, &kt, &g).unwrap();
        rec.submit().unwrap();
        assert_eq!(pt.shape, vec![g.groups, g.heads, g.q_len, g.kv_len]);
        let got = ctx.read_f32(&pt).unwrap();
        let want = cpu::attention_probs(&q, &k, &g);
        // Weights in (0, 1]: f32 rounding of logits and of the sum → ~1e-7; atol 1e-6.
        common::assert_close(&format!("probs {g:?}"), &got, &want, 1e-6, 1e-4);
        for (r, row) in got.chunks(g.kv_len).enumerate() {
            let s: f32 = row.iter().sum();
            // kv_len ≤ 172 terms of f32 rounding: |Σ − 1| < 1e-5.
            assert!((s - 1.0).abs() < 1e-5, "probs row {r} sums to {s}");
        }
    }
}

#[test]
fn gpu_rejects_bad_geometry() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let t = ctx.upload("t", &[10, 512], &vec![0f32; 5120]).unwrap();
    let o = ctx.upload("o", &[10, 512], &vec![0f32; 5120]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let ok = AttnGeometry::cross(10, 10, 512, 2);
    assert!(gpu::attention(&mut rec, &t, &t, &t, &o, &ok).is_ok());
    let bad = [
        ("head_dim 512", AttnGeometry::cross(10, 10, 512, 1)),
        ("kv_len 0", AttnGeometry::cross(10, 0, 512, 2)),
        ("q too long", AttnGeometry::cross(11, 10, 512, 2)),
        ("kv too long", AttnGeometry::cross(10, 11, 512, 2)),
        ("row too wide", AttnGeometry::cross(10, 10, 1024, 4)),
        (
            "offset past end",
            AttnGeometry {
                k: Operand { offset: 1, ..ok.k },
                ..ok
            },
        ),
        ("zero heads", AttnGeometry { heads: 0, ..ok }),
    ];
    for (what, g) in bad {
        let r = gpu::attention(&mut rec, &t, &t, &t, &o, &g);
        assert!(
            matches!(r, Err(linvt::Error::InvalidInput(_))),
            "{what}: {r:?}"
        );
        let r = gpu::attention_probs(&mut rec, &t, &t, &g);
        assert!(
            matches!(r, Err(linvt::Error::InvalidInput(_))),
            "probs {what}: {r:?}"
        );
    }
    let r = gpu::attention(&mut rec, &t, &t, &t, &t, &ok);
    assert!(
        matches!(r, Err(linvt::Error::InvalidInput(_))),
        "out aliasing q: {r:?}"
    );
    rec.submit().unwrap();
}
