//! The op interface the LinVT forward is written against. The CPU path implements it plainly,
//! the GPU path by recording WGSL dispatches; the forward itself exists once
//! (`crate::linvt::forward`).

use super::{Axis, Norm, RowPairs, TopKOrder};
use crate::error::Result;

/// What [`Ops::keep_awake`] returns: held for its drop.
pub type KeepAwake = Option<Box<dyn std::any::Any>>;

pub trait Ops {
    /// A 2-D (rows, cols) tensor, or 1-D for biases and scores.
    type T: Clone;
    /// Selected flat indices (k of them), kept where they were computed.
    type Idx;

    /// Keeps the executor ready between ops while the returned guard lives; one pass of a
    /// model part (the vision encoder, a decoder pass, LinVT) holds one. The CPU executor's
    /// worker threads then spin between ops instead of sleeping (`cpu::threads::awake`); a
    /// GPU queue needs nothing.
    fn keep_awake(&self) -> KeepAwake {
        None
    }

    /// x (M, K) · wᵀ (w: N × K) + b → (M, N).
    fn linear(&mut self, x: &Self::T, w: &Self::T, b: Option<&Self::T>) -> Result<Self::T>;
    /// Number of rows of a 2-D tensor.
    fn row_count(&self, x: &Self::T) -> usize;
    /// Rows `start..start + len` of a 2-D tensor; elements of a 1-D tensor. A view, not a copy,
    /// where the executor can.
    fn rows(&mut self, x: &Self::T, start: usize, len: usize) -> Self::T;
    /// LayerNorm(x + residual).
    fn add_layer_norm(
        &mut self,
        x: &Self::T,
        residual: &Self::T,
        p: &Norm<Self::T>,
        eps: f32,
    ) -> Result<Self::T>;
    /// Multi-head self-attention along `axis` of a packed qkv (T·N, 3E) → (T·N, E).
    fn self_attention(
        &mut self,
        qkv: &Self::T,
        frames: usize,
        tokens: usize,
        heads: usize,
        axis: Axis,
    ) -> Result<Self::T>;
    /// Multi-head cross-attention: q (Q, E), k and v (S, E) → (Q, E).
    fn cross_attention(
        &mut self,
        q: &Self::T,
        k: &Self::T,
        v: &Self::T,
        heads: usize,
    ) -> Result<Self::T>;
    /// The softmax weights of `cross_attention(q, k, ·)`: (heads, Q, S).
    fn attention_probs(&mut self, q: &Self::T, k: &Self::T, heads: usize) -> Result<Self::T>;
    /// Flat indices of the k largest of `scores` (T·N values, N = `tokens_per_frame`) in
    /// `order`. A non-finite score is an error naming its (frame, token): at once on the CPU, at
    /// the executor's next read-back on a GPU (the status travels with the results read anyway).
    fn top_k(
        &mut self,
        scores: &Self::T,
        k: usize,
        order: TopKOrder,
        tokens_per_frame: usize,
    ) -> Result<Self::Idx>;
    /// Gathers `count` rows of x through `idx` (identity when None) and window-pools them at
    /// every scale, concatenated: (Σ ⌊count/s⌋, E).
    fn gather_pool(
        &mut self,
        x: &Self::T,
        idx: Option<&Self::Idx>,
        count: usize,
        scales: &[usize],
    ) -> Result<Self::T>;
    /// Row-wise concatenation.
    fn concat_rows(&mut self, parts: &[Self::T]) -> Result<Self::T>;
    /// The most bytes one tensor an op writes may hold (a GPU's storage-binding limit; None:
    /// no limit). Callers split work that would exceed it (LinVT's long clips, frames of the
    /// vision encoder, rows of a prefill), so long inputs run on any adapter.
    fn binding_limit(&self) -> Option<u64> {
        None
    }
    /// A new (rows, cols) tensor assembled from row copies: for each (source, pairs), row
    /// `dst` of the result is row `src` of the source, for every (src, dst) in pairs. Every
    /// row of the result is written exactly once (the callers' invariant, checked on the CPU).
    fn assemble_rows(
        &mut self,
        rows: usize,
        cols: usize,
        parts: &[(&Self::T, RowPairs)],
    ) -> Result<Self::T>;
    /// Rows `idx[0..count]` of a tensor held as consecutive row blocks (`parts[i]` holds the
    /// flat rows from `first_rows[i]` on): (count, cols), as `gather_pool` at scale 1 would
    /// gather them from the whole tensor.
    fn gather_parts(
        &mut self,
        parts: &[Self::T],
        first_rows: &[usize],
        idx: &Self::Idx,
        count: usize,
    ) -> Result<Self::T>;
    /// Marks the start of a named stage (for per-stage timing).
    fn stage(&mut self, name: &str) -> Result<()>;
}
