//! CPU twin of the top-k kernel (`gpu::topk`).
//!
//! Scores are compared through the same order-preserving key the GPU kernel uses
//! ([`order_key`]): a larger float gives a larger `u32`. On finite values this is the ordinary
//! float order except that **-0.0 ranks below +0.0** (their keys differ by one), exactly as on the
//! GPU. Ties between equal keys go to the lower flat index, so the result is fully determined.

use crate::error::{Error, Result};
use crate::ops::{check_k, TopKOrder};

/// The order-preserving key of a float: negative values have all bits flipped, non-negative
/// values get the sign bit set. For any two non-NaN floats `a < b` implies `key(a) < key(b)`,
/// and `key(-0.0) + 1 == key(+0.0)`.
pub fn order_key(x: f32) -> u32 {
    let u = x.to_bits();
    if u & 0x8000_0000 != 0 {
        !u
    } else {
        u | 0x8000_0000
    }
}

/// `Error::NonFiniteScore` for flat index `i` of a (frames, tokens_per_frame) score grid.
pub fn non_finite_error(i: usize, tokens_per_frame: usize) -> Result<()> {
    if tokens_per_frame == 0 {
        return Err(Error::input("top-k: tokens_per_frame must be at least 1"));
    }
    Err(Error::NonFiniteScore {
        frame: i / tokens_per_frame,
        token: i % tokens_per_frame,
    })
}

/// The k largest scores' flat indices. Ties are broken toward the lower flat index.
/// A non-finite score is `Error::NonFiniteScore` naming (frame, token) = (i / N, i % N);
/// k must be in 1..=len.
pub fn top_k(
    scores: &[f32],
    k: usize,
    order: TopKOrder,
    tokens_per_frame: usize,
) -> Result<Vec<u32>> {
    check_k(k, scores.len())?;
    if tokens_per_frame == 0 {
        return Err(Error::input("top-k: tokens_per_frame must be at least 1"));
    }
    if scores.len() > u32::MAX as usize {
        return Err(Error::input(format!(
            "top-k: {} scores do not fit 32-bit indices",
            scores.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        non_finite_error(i, tokens_per_frame)?;
    }
    // (key descending, index ascending): a total order, so the sort is fully determined.
    let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
    idx.sort_unstable_by(|&a, &b| {
        order_key(scores[b as usize])
            .cmp(&order_key(scores[a as usize]))
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    if order == TopKOrder::Index {
        idx.sort_unstable();
    }
    Ok(idx)
}
