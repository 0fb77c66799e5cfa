//! The LLM decoder, dispatched by family. Adding a family (InternLM2, Phi-3, LLaMA) is one file
//! with its parameters and forward over `VlmOps`, plus one arm in each match below.

use super::config::{LlmConfig, LlmFamily};
use super::internlm2;
use super::ops::VlmOps;
use super::qwen2::{self, Qwen2Params};
use super::weights::WeightReader;
use crate::error::Result;

pub enum DecoderParams<T> {
    Qwen2(Qwen2Params<T>),
    /// InternLM2 (InternVL2-2B/8B): its weights mapped onto the Qwen2 layer stack.
    InternLm2(Qwen2Params<T>),
}

impl<T> DecoderParams<T> {
    pub fn load(r: &mut WeightReader<T>, c: &LlmConfig) -> Result<Self> {
        match c.family {
            LlmFamily::Qwen2 => Ok(DecoderParams::Qwen2(Qwen2Params::load(r, c)?)),
            LlmFamily::InternLm2 => Ok(DecoderParams::InternLm2(internlm2::load(r, c)?)),
        }
    }

    /// The (vocab, H) input embedding table.
    pub fn embed_table(&self) -> &T {
        match self {
            DecoderParams::Qwen2(p) | DecoderParams::InternLm2(p) => &p.embed,
        }
    }
}

/// Decoder layers + final norm on the embeddings of positions position..position+R.
pub fn forward<O: VlmOps>(
    ops: &mut O,
    p: &DecoderParams<O::T>,
    c: &LlmConfig,
    x: &O::T,
    cache: &mut O::Kv,
    position: usize,
) -> Result<O::T> {
    match p {
        DecoderParams::Qwen2(q) | DecoderParams::InternLm2(q) => {
            qwen2::forward(ops, q, c, x, cache, position)
        }
    }
}

/// Logits (R, vocab) of final hidden states (R, H).
pub fn logits<O: VlmOps>(ops: &mut O, p: &DecoderParams<O::T>, hidden: &O::T) -> Result<O::T> {
    match p {
        DecoderParams::Qwen2(q) | DecoderParams::InternLm2(q) => qwen2::logits(ops, q, hidden),
    }
}

/// An empty KV cache for `capacity` positions.
pub fn kv_cache<O: VlmOps>(ops: &mut O, c: &LlmConfig, capacity: usize) -> Result<O::Kv> {
    ops.kv_cache(c.layers, c.kv_heads, c.head_dim(), capacity)
}
