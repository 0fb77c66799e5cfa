//! CPU twin of the sampling kernel: one token id from a row of logits.
//!
//! Semantics (shared with the GPU kernel): temperature ≤ 0 is greedy (the largest logit, ties to
//! the lower id). Otherwise the logits are divided by the temperature; candidates are ordered by
//! (logit descending, id ascending); `top_k > 0` keeps the first top_k; the softmax is taken over
//! those; `top_p < 1` keeps the shortest prefix whose probability reaches top_p (at least one);
//! then, with the kept probabilities renormalised, the token is the first whose cumulative
//! probability exceeds `uniform` ∈ [0, 1). The uniform number comes from the caller (a seeded
//! generator on the host), so both executors draw the same token.

use crate::ops::SamplingParams;

/// The largest logit's id, ties to the lower id. NaN logits never win.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// One token id from `logits` (see the module docs). `uniform` ∈ [0, 1).
pub fn sample(logits: &[f32], p: &SamplingParams, uniform: f32) -> u32 {
    if p.is_greedy() || logits.len() <= 1 {
        return argmax(logits);
    }
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    if p.top_k > 0 {
        ids.truncate(p.top_k);
    }
    let max = logits[ids[0] as usize] / p.temperature;
    let mut probs: Vec<f32> = ids
        .iter()
        .map(|&i| (logits[i as usize] / p.temperature - max).exp())
        .collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|v| *v /= total);
    if p.top_p < 1.0 {
        let mut acc = 0.0;
        let keep = probs
            .iter()
            .position(|v| {
                acc += v;
                acc >= p.top_p
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
    }
    let kept: f32 = probs.iter().sum();
    let target = uniform * kept;
    let mut acc = 0.0;
    for (i, v) in probs.iter().enumerate() {
        acc += v;
        if acc > target {
            return ids[i];
        }
    }
    ids[probs.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            seed: 0,
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(sample(&[1.0, 3.0, 3.0], &params(0.0, 0, 1.0), 0.99), 1);
    }

    #[test]
    fn inverse_cdf_by_hand() {
        // Logits ln(1), ln(2), ln(5) at temperature 1 → probabilities 0.1, 0.2, 0.5 (sum 0.8 →
        // 0.125, 0.25, 0.625), ordered 2, 1, 0. u < 0.625 → id 2; < 0.875 → id 1; else id 0.
        let l = [1f32.ln(), 2f32.ln(), 5f32.ln()];
        let p = params(1.0, 0, 1.0);
        assert_eq!(sample(&l, &p, 0.0), 2);
        assert_eq!(sample(&l, &p, 0.62), 2);
        assert_eq!(sample(&l, &p, 0.63), 1);
        assert_eq!(sample(&l, &p, 0.9), 0);
    }

    #[test]
    fn top_k_and_top_p_filter() {
        let l = [1f32.ln(), 2f32.ln(), 5f32.ln()];
        // top_k 1: always the best id.
        assert_eq!(sample(&l, &params(1.0, 1, 1.0), 0.99), 2);
        // top_p 0.8: 0.625 < 0.8, 0.625 + 0.25 ≥ 0.8 → ids 2, 1 kept (renormalised 5/7, 2/7).
        let p = params(1.0, 0, 0.8);
        assert_eq!(sample(&l, &p, 0.70), 2);
        assert_eq!(sample(&l, &p, 0.72), 1);
        assert_eq!(sample(&l, &p, 0.999), 1);
    }

    #[test]
    fn temperature_sharpens() {
        // At temperature 0.01 the gap ln 2.5 becomes 91.6 nats: the best id for any u < 1.
        let l = [1f32.ln(), 2f32.ln(), 5f32.ln()];
        assert_eq!(sample(&l, &params(0.01, 0, 1.0), 0.999_999), 2);
    }
}
