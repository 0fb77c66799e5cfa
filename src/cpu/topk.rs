//! CPU twin of the top-k kernel. (stub: to be written)

use crate::error::Result;

/// Order of the selected indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopKOrder {
    /// Descending score; equal scores by ascending flat index (torch.topk's order here).
    Score,
    /// Ascending flat index t·N + n (spatio-temporal order).
    Index,
}

/// The k largest scores' flat indices. Ties are broken toward the lower flat index.
/// A non-finite score is `Error::NonFiniteScore` naming (frame, token) = (i / N, i % N);
/// k must be in 1..=len.
pub fn top_k(scores: &[f32], k: usize, order: TopKOrder, tokens_per_frame: usize) -> Result<Vec<u32>> {
    let _ = (scores, k, order, tokens_per_frame);
    unimplemented!("cpu::top_k")
}
