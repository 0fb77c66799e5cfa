//! GPU top-k (radix select) against its CPU twin, and the CPU twin against hand-computed cases.
//!
//! Top-k results are index lists, so every comparison here is exact (no tolerance): ties are
//! defined (lower flat index wins), and both orders are fully determined.

mod common;

use linvt::cpu::topk as cpu;

use linvt::gpu::topk as gpu;
use linvt::gpu::{BufferPool, GpuContext, GpuTensor, Recorder};
use linvt::ops::TopKOrder;
use linvt::Error;

const ORDERS: [TopKOrder; 2] = [TopKOrder::Score, TopKOrder::Index];

/// Uploads `scores` behind `pad` leading junk values and returns the (len) view at offset `pad`.
fn upload_view(ctx: &GpuContext, scores: &[f32], pad: usize) -> GpuTensor {
    let mut data = vec![1.0e30f32; pad];
    data.extend_from_slice(scores);
    let t = ctx.upload("scores", &[data.len(), 1], &data).unwrap();
    t.rows_view(pad, scores.len()).reshaped(&[scores.len()])
}

/// Records every (k, order) case into ONE recorder (so pooled buffers are reused within the
/// recording), submits once, and returns (indices, status) per case.
fn gpu_many(
    ctx: &GpuContext,
    scores: &GpuTensor,
    cases: &[(usize, TopKOrder)],
) -> Vec<(Vec<u32>, u32)> {
    let pool = BufferPool::default();
    let mut rec = Recorder::new(ctx, &pool);
    let results: Vec<gpu::TopKResult> = cases
        .iter()
        .map(|&(k, order)| gpu::top_k(&mut rec, scores, k, order).unwrap())
        .collect();
    rec.submit().unwrap();
    results
        .iter()
        .map(|r| {
            let idx = ctx.read_u32(&r.indices).unwrap();
            let st = ctx.read_u32(&r.status).unwrap();
            (idx, st[0])
        })
        .collect()
}

/// The k values the brief asks for: 1, 7, len/4, len-1, len (valid and distinct).
fn ks_for(len: usize) -> Vec<usize> {
    let mut ks: Vec<usize> = [1, 7, len / 4, len.saturating_sub(1), len]
        .into_iter()
        .filter(|&k| k >= 1 && k <= len)
        .collect();
    ks.sort_unstable();
    ks.dedup();
    ks
}

/// GPU vs CPU twin, exact index lists, every k in `ks` and both orders; `pad` makes it a view.
fn check_against_cpu(ctx: &GpuContext, what: &str, scores: &[f32], ks: &[usize], pad: usize) {
    let view = upload_view(ctx, scores, pad);
    let cases: Vec<(usize, TopKOrder)> = ks
        .iter()
        .flat_map(|&k| ORDERS.iter().map(move |&o| (k, o)))
        .collect();
    let got = gpu_many(ctx, &view, &cases);
    for (&(k, order), (idx, status)) in cases.iter().zip(got) {
        let want = cpu::top_k(scores, k, order, scores.len()).unwrap();
        assert_eq!(
            status,
            u32::MAX,
            "{what}: len {} k {k} {order:?}: status",
            scores.len()
        );
        if idx != want {
            let first = idx.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "{what}: len {} k {k} {order:?}: GPU differs from CPU first at position {first:?} \
                 (got {:?}, want {:?})",
                scores.len(),
                first.map(|i| idx[i]),
                first.map(|i| want[i]),
            );
        }
    }
    eprintln!(
        "{what}: len {} ks {ks:?} both orders: exact match",
        scores.len()
    );
}

// ---------------------------------------------------------------- CPU twin, hand-computed

#[test]
fn cpu_twin_hand_cases() {
    let s = [0.5f32, 2.0, -1.0, 2.0, 0.0];
    // Sorted by (score desc, index asc): 1 (2.0), 3 (2.0), 0 (0.5), 4 (0.0), 2 (-1.0).
    assert_eq!(
        cpu::top_k(&s, 3, TopKOrder::Score, 5).unwrap(),
        vec![1, 3, 0]
    );
    assert_eq!(
        cpu::top_k(&s, 3, TopKOrder::Index, 5).unwrap(),
        vec![0, 1, 3]
    );
    assert_eq!(cpu::top_k(&s, 1, TopKOrder::Score, 5).unwrap(), vec![1]);
    assert_eq!(
        cpu::top_k(&s, 5, TopKOrder::Score, 5).unwrap(),
        vec![1, 3, 0, 4, 2]
    );
    assert_eq!(
        cpu::top_k(&s, 5, TopKOrder::Index, 5).unwrap(),
        vec![0, 1, 2, 3, 4]
    );
    // All equal: the lowest indices win, in index order either way.
    let e = [7.0f32; 6];
    assert_eq!(
        cpu::top_k(&e, 4, TopKOrder::Score, 3).unwrap(),
        vec![0, 1, 2, 3]
    );
    // -0.0 ranks below +0.0 (documented), and both above any negative value.
    let z = [-0.0f32, 0.0, -1e-30, -0.0, 0.0];
    assert_eq!(
        cpu::top_k(&z, 3, TopKOrder::Score, 5).unwrap(),
        vec![1, 4, 0]
    );
    assert_eq!(
        cpu::top_k(&z, 4, TopKOrder::Score, 5).unwrap(),
        vec![1, 4, 0, 3]
    );
    // Extreme magnitudes.
    let m = [f32::MIN, 1e-45, f32::MAX, -1e-45, 1e38, f32::MIN_POSITIVE];
    assert_eq!(
        cpu::top_k(&m, 6, TopKOrder::Score, 6).unwrap(),
        vec![2, 4, 5, 1, 3, 0]
    );
    // The order key itself.
    assert!(cpu::order_key(-0.0) + 1 == cpu::order_key(0.0));
    assert!(cpu::order_key(-1.0) < cpu::order_key(-0.5));
    assert!(cpu::order_key(1.0) < cpu::order_key(f32::INFINITY));
}

#[test]
fn cpu_twin_errors() {
    let s = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    assert!(matches!(
        cpu::top_k(&s, 0, TopKOrder::Score, 4),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        cpu::top_k(&s, 9, TopKOrder::Index, 4),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        cpu::top_k(&[], 1, TopKOrder::Index, 4),
        Err(Error::InvalidInput(_))
    ));
    let mut n = s;
    n[6] = f32::NAN;
    n[7] = f32::INFINITY;
    // First non-finite is index 6 → frame 6/4 = 1, token 6%4 = 2.
    match cpu::top_k(&n, 2, TopKOrder::Score, 4) {
        Err(Error::NonFiniteScore { frame: 1, token: 2 }) => {}
        other => panic!("expected NonFiniteScore(1, 2), got {other:?}"),
    }
    n[3] = f32::NEG_INFINITY;
    match cpu::top_k(&n, 2, TopKOrder::Score, 3) {
        Err(Error::NonFiniteScore { frame: 1, token: 0 }) => {}
        other => panic!("expected NonFiniteScore(1, 0), got {other:?}"),
    }
    // status_error: u32::MAX is "all finite".
    assert!(gpu::status_error(u32::MAX, 10).is_ok());
    assert!(matches!(
        gpu::status_error(23, 10),
        Err(Error::NonFiniteScore { frame: 2, token: 3 })
    ));
    assert_eq!(gpu::dispatch_count(100, TopKOrder::Index), 10);
    assert_eq!(gpu::dispatch_count(256, TopKOrder::Score), 11);
    assert_eq!(gpu::dispatch_count(2048, TopKOrder::Score), 14);
}

// ---------------------------------------------------------------- GPU vs CPU twin

#[test]
fn gpu_random_scores_all_sizes() {
    let Some(ctx) = common::gpu() else { return };
    for (seed, len) in [1usize, 5, 64, 245, 1000, 4096, 16384]
        .into_iter()
        .enumerate()
    {
        let scores = common::rand_vec(100 + seed as u64, len, 3.0);
        check_against_cpu(&ctx, "random", &scores, &ks_for(len), 0);
    }
}

#[test]
fn gpu_many_ties() {
    let Some(ctx) = common::gpu() else { return };
    for (seed, len) in [(1u64, 245usize), (2, 1000), (3, 4096)] {
        // Scores drawn from {0, 1, 2}: almost every threshold is shared by many elements.
        let scores: Vec<f32> = common::rand_vec(seed, len, 1.0)
            .iter()
            .map(|v| ((v + 1.0) * 1.5).floor().min(2.0))
            .collect();
        check_against_cpu(&ctx, "ties {0,1,2}", &scores, &ks_for(len), 0);
    }
}

#[test]
fn gpu_all_equal_scores() {
    let Some(ctx) = common::gpu() else { return };
    let scores = vec![1.5f32; 1000];
    check_against_cpu(&ctx, "all equal", &scores, &ks_for(1000), 0);
    let scores = vec![-3.25f32; 300];
    check_against_cpu(&ctx, "all equal negative", &scores, &ks_for(300), 0);
}

#[test]
fn gpu_negative_scores() {
    let Some(ctx) = common::gpu() else { return };
    let scores: Vec<f32> = common::rand_vec(7, 1000, 5.0)
        .iter()
        .map(|v| -v.abs() - 0.1)
        .collect();
    check_against_cpu(&ctx, "negative", &scores, &ks_for(1000), 0);
}

#[test]
fn gpu_extreme_magnitudes_and_signed_zeros() {
    let Some(ctx) = common::gpu() else { return };
    let specials = [
        f32::MAX,
        f32::MIN,
        1e38,
        -1e38,
        1e-38,
        -1e-38,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-45, // smallest subnormal
        -1e-45,
        0.0,
        -0.0,
        1.0,
        -1.0,
    ];
    let mut rng = linvt::rand::SeededRng::new(11);
    let scores: Vec<f32> = (0..777)
        .map(|_| {
            let s = specials[(rng.next_u64() % specials.len() as u64) as usize];
            // Half the time shrink it slightly (never overflowing f32::MAX), so neighbouring
            // keys differ in low bits only.
            if rng.uniform() < 0.5 {
                s
            } else {
                s * (1.0 - rng.uniform() * 1e-6)
            }
        })
        .collect();
    check_against_cpu(&ctx, "extreme magnitudes", &scores, &ks_for(777), 0);

    // -0.0 vs +0.0 on their own: +0.0 ranks above -0.0, ties by index.
    let z = [0.0f32, -0.0, 0.0, -0.0, -0.0];
    check_against_cpu(&ctx, "signed zeros", &z, &[1, 2, 3, 4, 5], 0);
    let got = gpu_many(&ctx, &upload_view(&ctx, &z, 0), &[(3, TopKOrder::Score)]);
    assert_eq!(got[0].0, vec![0, 2, 1]);
}

#[test]
fn gpu_view_input() {
    let Some(ctx) = common::gpu() else { return };
    // Nonzero offset; the padding holds 1e30, which would win every selection if it were read.
    let scores = common::rand_vec(21, 1000, 2.0);
    check_against_cpu(&ctx, "view @37", &scores, &ks_for(1000), 37);
    let scores = common::rand_vec(22, 245, 2.0);
    check_against_cpu(&ctx, "view @1", &scores, &[1, 7, 61, 245], 1);
}

#[test]
fn gpu_large_input() {
    let Some(ctx) = common::gpu() else { return };
    // More than 256 compaction blocks (multi-chunk block scan) and many histogram workgroups;
    // k = 5000 needs 5 merge levels.
    let len = 300_001;
    let scores = common::rand_vec(31, len, 10.0);
    check_against_cpu(&ctx, "large", &scores, &[1, 5000], 0);
}

#[test]
fn gpu_non_finite_status() {
    let Some(ctx) = common::gpu() else { return };
    let tpf = 49;
    let base = common::rand_vec(41, 245, 1.0);
    for (what, bad, want) in [
        ("NaN", vec![(200usize, f32::NAN), (100, f32::NAN)], 100usize),
        ("+Inf", vec![(50, f32::INFINITY)], 50),
        (
            "-Inf and NaN",
            vec![(244, f32::NAN), (3, f32::NEG_INFINITY)],
            3,
        ),
    ] {
        let mut scores = base.clone();
        for &(i, v) in &bad {
            scores[i] = v;
        }
        let view = upload_view(&ctx, &scores, 5);
        let got = gpu_many(
            &ctx,
            &view,
            &[(7, TopKOrder::Score), (61, TopKOrder::Index)],
        );
        let cpu_err = cpu::top_k(&scores, 7, TopKOrder::Score, tpf).unwrap_err();
        for (idx, status) in got {
            assert_eq!(status as usize, want, "{what}: status");
            let err = gpu::status_error(status, tpf).unwrap_err();
            match err {
                Error::NonFiniteScore { frame, token } => {
                    assert_eq!((frame, token), (want / tpf, want % tpf), "{what}");
                }
                other => panic!("{what}: expected NonFiniteScore, got {other:?}"),
            }
            assert_eq!(
                err.to_string(),
                cpu_err.to_string(),
                "{what}: same error as the CPU twin"
            );
            // A result is still produced: distinct, in-range indices.
            let mut s = idx.clone();
            s.sort_unstable();
            s.dedup();
            assert_eq!(s.len(), idx.len(), "{what}: duplicate indices");
            assert!(
                idx.iter().all(|&i| (i as usize) < scores.len()),
                "{what}: index out of range"
            );
        }
    }
}

#[test]
fn gpu_bad_k_is_an_error() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let scores = upload_view(&ctx, &[1.0, 2.0, 3.0], 0);
    let mut rec = Recorder::new(&ctx, &pool);
    for k in [0usize, 4, 100] {
        for order in ORDERS {
            match gpu::top_k(&mut rec, &scores, k, order) {
                Err(Error::InvalidInput(msg)) => assert!(msg.contains("k ="), "{msg}"),
                Err(e) => panic!("k = {k}: expected InvalidInput, got {e}"),
                Ok(_) => panic!("k = {k}: expected an error"),
            }
        }
    }
    rec.submit().unwrap();
}

#[test]
fn gpu_is_deterministic() {
    let Some(ctx) = common::gpu() else { return };
    // Heavy ties, so any dependence on atomic ordering would show up in the selection.
    let scores: Vec<f32> = common::rand_vec(51, 16384, 1.0)
        .iter()
        .map(|v| (v * 2.0).round())
        .collect();
    let view = upload_view(&ctx, &scores, 3);
    let cases = [
        (4096, TopKOrder::Score),
        (4096, TopKOrder::Index),
        (777, TopKOrder::Score),
    ];
    let a = gpu_many(&ctx, &view, &cases);
    let b = gpu_many(&ctx, &view, &cases);
    assert_eq!(a, b, "two runs differ");
    for (&(k, order), (idx, _)) in cases.iter().zip(&a) {
        assert_eq!(
            idx,
            &cpu::top_k(&scores, k, order, 128).unwrap(),
            "k {k} {order:?}"
        );
    }
}
