//! The op interface the video-LLM forward (vision encoder, projector, decoder, token flow) is
//! written against, once. It extends the LinVT op set (`Ops`), so one executor
//! runs the whole pipeline and, on a GPU, the vision embeddings never leave the device.
//!
//! Conventions: every tensor is 2-D (rows, cols), row-major, f32, except 1-D weights (norm
//! weights, biases, LayerScale γ). Tensors are opaque (`Self::T`); host data crosses only through
//! `upload` and `read_back`, plus small host index lists (token ids, row permutations) passed by
//! value, and the one token id `sample` returns per step. The KV cache is executor-owned
//! (`Self::Kv`). Every op's CPU twin lives in `crate::cpu`; a GPU executor must match it.
//!
//! Ops inherited from `Ops` that the VLM uses: `linear` (x·Wᵀ + b), `rows` (row slice view),
//! `row_count`, `self_attention` (the ViT's attention along the token axis of (frames, tokens)),
//! `concat_rows`, `stage` (timing marks).

use std::future::Future;

use super::{Ops, Positions, Role, Rope, SamplingParams};
use crate::error::Result;
use crate::tensor::Tensor;

pub trait VlmOps: Ops {
    /// A decoder's key/value cache: `layers` × `capacity` positions × (kv_heads · head_dim) for
    /// keys and for values, owned where the executor computes.
    type Kv;

    /// Rotary positions on the executor (`positions`), made once per decoder pass and read by
    /// every layer's RoPE.
    type Pos;

    /// Moves rotary positions to the executor.
    fn positions(&mut self, p: &Positions) -> Result<Self::Pos>;

    /// Moves a host tensor (1-D or 2-D; higher ranks are viewed as (rows, last axis)) to the
    /// executor. Weights are uploaded once at load time; the CPU executor just takes ownership.
    fn upload(&mut self, t: Tensor) -> Result<Self::T>;

    /// `upload` of a model weight read for `role`, so an executor can store it where that
    /// role's reads are fastest (the GPU executor may hold linear weights and embedding tables
    /// as texels, see `crate::gpu::texels`). Only `linear` (as the weight) and `gather_rows`
    /// need to take a tensor uploaded as `Role::LinearWeight` or `Role::Table`.
    fn upload_weight(&mut self, t: Tensor, role: Role) -> Result<Self::T> {
        let _ = role;
        self.upload(t)
    }

    /// Copies a tensor back to the host as (rows, cols) (1-D stays 1-D). Used for outputs and
    /// tests, never inside the per-token decode loop (that reads back only `sample`'s id).
    /// Reads are futures because the browser cannot block on the GPU (native callers block on
    /// them with `pollster`); everything else is recorded synchronously.
    fn read_back(&mut self, x: &Self::T) -> impl Future<Output = Result<Tensor>>;

    /// The same elements viewed as (rows, cols); rows · cols must equal the element count.
    fn reshape(&mut self, x: &Self::T, rows: usize, cols: usize) -> Result<Self::T>;

    /// out[i] = x[ids[i]] for rows: embedding lookup (x = the (vocab, hidden) table, ids = token
    /// ids), dropping the CLS rows and pixel shuffle (an index permutation, then `reshape`).
    /// Every id must be < rows of x (checked: an error, not a panic).
    fn gather_rows(&mut self, x: &Self::T, ids: &[u32]) -> Result<Self::T>;

    /// A copy of `dst` (R, C) whose rows `positions[i]` are replaced by row i of `src` (P, C),
    /// P = positions.len(): the LinVT rows written into the `<IMG_CONTEXT>` slots.
    fn scatter_rows(&mut self, dst: &Self::T, positions: &[u32], src: &Self::T) -> Result<Self::T>;

    /// LayerNorm over the last axis: (x − mean)/√(var + eps)·weight + bias, biased variance.
    fn layer_norm(
        &mut self,
        x: &Self::T,
        weight: &Self::T,
        bias: &Self::T,
        eps: f32,
    ) -> Result<Self::T>;

    /// RMSNorm over the last axis: x/√(mean(x²) + eps)·weight.
    fn rms_norm(&mut self, x: &Self::T, weight: &Self::T, eps: f32) -> Result<Self::T>;

    /// `residual_add(x, y)` then `rms_norm` of the sum: returns (x + y, RMSNorm(x + y)·weight),
    /// a pre-norm decoder's residual add and the norm after it (one kernel on a GPU).
    fn add_rms_norm(
        &mut self,
        x: &Self::T,
        y: &Self::T,
        weight: &Self::T,
        eps: f32,
    ) -> Result<(Self::T, Self::T)> {
        let sum = self.residual_add(x, y, None)?;
        let normed = self.rms_norm(&sum, weight, eps)?;
        Ok((sum, normed))
    }

    /// GELU, erf form (PyTorch's default), elementwise.
    fn gelu(&mut self, x: &Self::T) -> Result<Self::T>;

    /// QuickGELU x·σ(1.702·x), elementwise (CLIP's and Qwen2-VL's vision MLP).
    fn quick_gelu(&mut self, x: &Self::T) -> Result<Self::T>;

    /// Non-causal attention within `blocks` equal consecutive blocks of rows: q, k, v (R, E)
    /// each, R = blocks · L; row i of block b attends to the L rows of block b only (a vision
    /// encoder's per-image or per-window attention). Scale 1/√(E/heads). → (R, E).
    fn block_attention(
        &mut self,
        q: &Self::T,
        k: &Self::T,
        v: &Self::T,
        blocks: usize,
        heads: usize,
    ) -> Result<Self::T>;

    /// GELU(x·Wᵀ + b): an MLP's first layer (one kernel on a GPU).
    fn linear_gelu(&mut self, x: &Self::T, w: &Self::T, b: Option<&Self::T>) -> Result<Self::T> {
        let h = self.linear(x, w, b)?;
        self.gelu(&h)
    }

    /// residual + γ ⊙ (x·Wᵀ + b): a pre-norm block's output projection and its residual add
    /// with LayerScale (one kernel on a GPU). residual has the output's shape.
    fn linear_residual(
        &mut self,
        x: &Self::T,
        w: &Self::T,
        b: Option<&Self::T>,
        residual: &Self::T,
        gamma: Option<&Self::T>,
    ) -> Result<Self::T> {
        let h = self.linear(x, w, b)?;
        self.residual_add(residual, &h, gamma)
    }

    /// SwiGLU: x (R, 2·I) packed as [gate | up] per row → silu(gate) ⊙ up (R, I). The decoder
    /// packs gate_proj and up_proj into one weight at load time, so one `linear` feeds this.
    fn swiglu(&mut self, x: &Self::T) -> Result<Self::T>;

    /// Residual add x + γ ⊙ y (γ (C) = LayerScale, or 1 when None). y (R', C) may hold fewer rows
    /// than x (R, C), R a multiple of R': y then repeats over the R/R' groups of rows (a
    /// per-frame table added to every frame).
    fn residual_add(
        &mut self,
        x: &Self::T,
        y: &Self::T,
        gamma: Option<&Self::T>,
    ) -> Result<Self::T>;

    /// Rounds every value to the nearest bfloat16 (ties to even) and back to f32: the released
    /// model's `.to(torch.bfloat16)` of the LinVT output.
    fn round_bf16(&mut self, x: &Self::T) -> Result<Self::T>;

    /// RoPE ("rotate half", as Hugging Face Qwen2/LLaMA) on x (R, heads·head_dim): row r at
    /// `positions`' row r, rotated as `rope` says (see `Rope`, `cpu::rope::rope_with`).
    fn rope(
        &mut self,
        x: &Self::T,
        heads: usize,
        head_dim: usize,
        positions: &Self::Pos,
        rope: &Rope,
    ) -> Result<Self::T>;

    /// An empty cache for `layers` layers of `kv_heads` heads of `head_dim`, `capacity` positions.
    fn kv_cache(
        &mut self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Result<Self::Kv>;

    /// Writes k and v (R, kv_heads·head_dim each) of `layer` at positions position..position+R.
    /// Errors when that runs past the capacity.
    fn kv_write(
        &mut self,
        cache: &mut Self::Kv,
        layer: usize,
        position: usize,
        k: &Self::T,
        v: &Self::T,
    ) -> Result<()>;

    /// A decoder layer's attention input from its packed projection `qkv` (R, (heads +
    /// 2·kv_heads)·head_dim), each row [q | k | v]: RoPE on q and on k at `positions` (as
    /// `rope`), k and v written into `layer`'s cache at slots slot..slot+R (as `kv_write`).
    /// Returns the rotated q (R, heads·head_dim). One kernel on a GPU instead of two RoPEs and
    /// two copies.
    #[allow(clippy::too_many_arguments)]
    fn qkv_to_cache(
        &mut self,
        cache: &mut Self::Kv,
        layer: usize,
        slot: usize,
        qkv: &Self::T,
        heads: usize,
        rope: &Rope,
        positions: &Self::Pos,
    ) -> Result<Self::T>;

    /// Causal grouped-query attention of q (R, heads·head_dim), rows at positions
    /// position..position+R, over `layer`'s cache rows 0..=that position (written before).
    /// Query head h reads kv head h / (heads / kv_heads); scale 1/√head_dim. → (R, heads·head_dim).
    /// See `cpu::kv_attention::causal_attention`.
    fn kv_attention(
        &mut self,
        cache: &Self::Kv,
        layer: usize,
        q: &Self::T,
        position: usize,
        heads: usize,
    ) -> Result<Self::T>;

    /// One token id from a logits row (1, vocab): greedy, or temperature/top-k/top-p with the
    /// caller's uniform number in [0, 1) (see `cpu::sample`). The only per-step read-back.
    fn sample(
        &mut self,
        logits: &Self::T,
        params: &SamplingParams,
        uniform: f32,
    ) -> impl Future<Output = Result<u32>>;

    /// The selected flat indices of a LinVT `top_k` on the host (for provenance pictures; once
    /// per question, after the forward).
    fn read_back_indices(&mut self, idx: &Self::Idx) -> impl Future<Output = Result<Vec<u32>>>;
}

/// The checks every executor's `kv_write` makes before writing: k and v are (rows, width) alike
/// and rows position.. of `layer` lie inside a cache of `layers` layers × `capacity` positions.
/// Shapes are (rows, cols).
pub fn check_kv_write(
    width: usize,
    layers: usize,
    capacity: usize,
    layer: usize,
    position: usize,
    k: (usize, usize),
    v: (usize, usize),
) -> Result<()> {
    if k.1 != width || v.1 != width || k.0 != v.0 {
        return Err(crate::error::Error::input(format!(
            "kv_write: k {k:?} and v {v:?} must both be (rows, {width})"
        )));
    }
    if position + k.0 > capacity || layer >= layers {
        return Err(crate::error::Error::input(format!(
            "the KV cache holds {capacity} positions of {layers} layers; writing {} rows of layer {layer} at position {position} overflows it",
            k.0
        )));
    }
    Ok(())
}

/// The checks every executor's `block_attention` makes: q, k and v of one shape (R, E), R a
/// whole number of `blocks`, E of `heads` heads. Returns the block length. Shapes are
/// (rows, cols).
pub fn check_blocks(
    q: (usize, usize),
    k: (usize, usize),
    v: (usize, usize),
    blocks: usize,
    heads: usize,
) -> Result<usize> {
    if q != k
        || q != v
        || blocks == 0
        || !q.0.is_multiple_of(blocks)
        || heads == 0
        || !q.1.is_multiple_of(heads)
    {
        return Err(crate::error::Error::input(format!(
            "block_attention: q {q:?}, k {k:?}, v {v:?} must be one shape whose rows split into {blocks} blocks and columns into {heads} heads"
        )));
    }
    Ok(q.0 / blocks)
}
