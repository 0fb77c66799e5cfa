//! Sampling kernel: GPU vs the CPU twin `linvt::cpu::sample` — greedy exactly (ties, NaN, a
//! Qwen2-sized vocabulary), temperature / top-k / top-p draws exactly wherever the draw is not
//! within rounding of a boundary between two tokens.
mod common;

use linvt::cpu::sample::sample as cpu_sample;

use linvt::gpu::sample::sample;
use linvt::gpu::{BufferPool, GpuContext, Recorder};
use linvt::ops::SamplingParams;

fn gpu_sample(ctx: &GpuContext, logits: &[f32], p: &SamplingParams, u: f32) -> u32 {
    let pool = BufferPool::default();
    // The row sits at a nonzero offset.
    let mut padded = vec![1e9f32; logits.len() + 3];
    padded[3..].copy_from_slice(logits);
    let t = ctx
        .upload("logits", &[padded.len()], &padded)
        .unwrap()
        .slice(3, logits.len())
        .reshaped(&[1, logits.len()]);
    let mut rec = Recorder::new(ctx, &pool);
    let id = sample(&mut rec, &t, p, u).unwrap();
    rec.submit().unwrap();
    ctx.read_u32(&id).unwrap()[0]
}

fn params(temperature: f32, top_k: usize, top_p: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        seed: 0,
    }
}

#[test]
fn greedy_matches_twin_with_ties_and_nan() {
    let Some(ctx) = common::gpu() else { return };
    let greedy = params(0.0, 0, 1.0);
    let mut l = common::rand_vec(1, 151_936, 10.0);
    // The maximum appears twice: the lower id wins.
    l[90_001] = 20.0;
    l[150_000] = 20.0;
    l[7] = f32::NAN;
    assert_eq!(
        gpu_sample(&ctx, &l, &greedy, 0.5),
        cpu_sample(&l, &greedy, 0.5)
    );
    assert_eq!(gpu_sample(&ctx, &l, &greedy, 0.5), 90_001);
    // NaN never wins; all NaN gives the last id, as the twin's scan.
    let l = [f32::NAN, -1.0, f32::NAN, -0.5, f32::NAN];
    assert_eq!(gpu_sample(&ctx, &l, &greedy, 0.0), 3);
    let l = [f32::NAN; 5];
    assert_eq!(
        gpu_sample(&ctx, &l, &greedy, 0.0),
        cpu_sample(&l, &greedy, 0.0)
    );
    assert_eq!(gpu_sample(&ctx, &[-3.0], &greedy, 0.0), 0);
}

#[test]
fn temperature_top_k_top_p_match_twin() {
    let Some(ctx) = common::gpu() else { return };
    // 777 logits with a spread like a decoder's, and a few exact ties.
    let mut l = common::rand_vec(2, 777, 6.0);
    l[100] = l[5];
    l[600] = l[5];
    let mut rng = linvt::rand::SeededRng::new(3);
    let cases = [
        params(1.0, 0, 1.0),
        params(0.7, 0, 0.9),
        params(1.3, 50, 1.0),
        params(0.5, 20, 0.8),
        params(2.0, 777, 0.95),
        params(1.0, 1, 1.0),
        params(1.0, 0, 0.0),
    ];
    let (mut checked, mut near) = (0, 0);
    for p in &cases {
        for _ in 0..12 {
            let u = rng.uniform();
            let want = cpu_sample(&l, p, u);
            // The GPU sums probabilities in another order (relative differences ~1e-6), so a
            // draw within 1e-4 of a boundary — in u or in the top-p cut — may legitimately
            // land on the neighbouring token; those draws are only counted.
            let steady = [u - 1e-4, u + 1e-4]
                .iter()
                .filter(|v| (0.0..1.0).contains(*v))
                .all(|&v| cpu_sample(&l, p, v) == want)
                && [p.top_p - 1e-4, p.top_p + 1e-4]
                    .iter()
                    .all(|&tp| cpu_sample(&l, &SamplingParams { top_p: tp, ..*p }, u) == want);
            if !steady {
                near += 1;
                continue;
            }
            assert_eq!(gpu_sample(&ctx, &l, p, u), want, "{p:?} u = {u}");
            checked += 1;
        }
    }
    eprintln!("{checked} draws compared exactly, {near} near a boundary skipped");
    assert!(
        checked >= 70,
        "only {checked} of 84 draws were away from boundaries"
    );
}

#[test]
fn bad_uniform_and_rows_are_errors() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let t = ctx.upload("l", &[2, 3], &[0.0f32; 6]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    assert!(sample(&mut rec, &t, &params(1.0, 0, 1.0), 0.5).is_err());
    let row = t.rows_view(0, 1);
    assert!(sample(&mut rec, &row, &params(1.0, 0, 1.0), 1.0).is_err());
}

/// The health word after the id: the lowest id whose logit is NaN or ±inf (u32::MAX when all
/// are finite), on the greedy path (the argmax's own scan) and the sampling path (the top-k's),
/// which the executor turns into an error.
#[test]
fn the_health_word_names_the_first_non_finite_logit() {
    let Some(ctx) = common::gpu() else { return };
    let words = |logits: &[f32], p: &SamplingParams| -> Vec<u32> {
        let pool = BufferPool::default();
        let t = ctx.upload("logits", &[1, logits.len()], logits).unwrap();
        let mut rec = Recorder::new(&ctx, &pool);
        let out = sample(&mut rec, &t, p, 0.25).unwrap();
        rec.submit().unwrap();
        ctx.read_u32(&out).unwrap()
    };
    let mut l = common::rand_vec(3, 1000, 5.0);
    for p in [params(0.0, 0, 1.0), params(0.8, 40, 0.9)] {
        assert_eq!(words(&l, &p)[1], u32::MAX, "all finite");
    }
    l[700] = f32::INFINITY;
    l[513] = f32::NAN;
    l[900] = f32::NEG_INFINITY;
    for p in [params(0.0, 0, 1.0), params(0.8, 40, 0.9)] {
        assert_eq!(words(&l, &p)[1], 513, "{p:?}");
    }
    assert!(linvt::gpu::sample::logits_error(513).is_err());
    assert!(linvt::gpu::sample::logits_error(u32::MAX).is_ok());
}
