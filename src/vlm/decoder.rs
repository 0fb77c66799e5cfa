//! The LLM decoder. Every family this crate runs is a pre-norm RMSNorm / GQA + RoPE / SwiGLU
//! stack (`qwen2::Qwen2Params`, whose loader and forward are written once); a family is its
//! weight names (`qwen2::WeightNames`), one file each (`qwen2.rs`, `internlm2.rs`, `phi3.rs`).
//! Adding one: the file, a variant, a row in [`FAMILIES`] and an arm in [`LlmFamily::names`].

use super::config::LlmConfig;
use super::qwen2::{self, Qwen2Params, WeightNames};
use super::weights::WeightReader;
use super::{internlm2, phi3};
use crate::error::Result;
use crate::ops::{Rope, VlmOps};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmFamily {
    Qwen2,
    InternLm2,
    Phi3,
    /// LLaMA: the Qwen2 names, q/k/v biases only with `attention_bias` (the -hf form of the
    /// InternLM2 checkpoints).
    Llama,
}

/// `llm_config.architectures[0]` → family.
pub const FAMILIES: &[(&str, LlmFamily)] = &[
    ("Qwen2ForCausalLM", LlmFamily::Qwen2),
    ("InternLM2ForCausalLM", LlmFamily::InternLm2),
    ("Phi3ForCausalLM", LlmFamily::Phi3),
    ("LlamaForCausalLM", LlmFamily::Llama),
];

/// The architectures of [`FAMILIES`], for error messages.
pub const SUPPORTED_LLMS: &[&str] = &[
    "Qwen2ForCausalLM",
    "InternLM2ForCausalLM",
    "Phi3ForCausalLM",
    "LlamaForCausalLM",
];

impl LlmFamily {
    pub fn from_architecture(arch: &str) -> Option<Self> {
        FAMILIES.iter().find(|(a, _)| *a == arch).map(|(_, f)| *f)
    }

    /// The family's weight names.
    pub fn names(self) -> &'static WeightNames {
        match self {
            LlmFamily::Qwen2 | LlmFamily::Llama => &qwen2::NAMES,
            LlmFamily::InternLm2 => &internlm2::NAMES,
            LlmFamily::Phi3 => &phi3::NAMES,
        }
    }
}

/// The decoder's parameters, whatever the family's weight names.
pub type DecoderParams<T> = Qwen2Params<T>;

/// Reads a family's weights (by their Hugging Face names under `language_model.`).
pub fn load<T>(r: &mut WeightReader<T>, c: &LlmConfig) -> Result<DecoderParams<T>> {
    Qwen2Params::load(r, c, c.family.names())
}

/// Decoder layers + final norm on the embeddings at cache slots slot..slot+R and rotary
/// `positions` (see `qwen2::forward`).
#[allow(clippy::too_many_arguments)]
pub fn forward<O: VlmOps>(
    ops: &mut O,
    p: &DecoderParams<O::T>,
    c: &LlmConfig,
    rope: &Rope,
    x: &O::T,
    cache: &mut O::Kv,
    slot: usize,
    positions: &O::Pos,
) -> Result<O::T> {
    qwen2::forward(ops, p, c, rope, x, cache, slot, positions)
}

/// Decoder layers + final norm on rows that belong to several sequences (a batched decode
/// step; see `qwen2::forward_spans`).
pub fn forward_spans<O: VlmOps>(
    ops: &mut O,
    p: &DecoderParams<O::T>,
    c: &LlmConfig,
    x: &O::T,
    spans: &mut [qwen2::Span<'_, O>],
) -> Result<O::T> {
    qwen2::forward_spans(ops, p, c, x, spans)
}

/// Logits (R, vocab) of final hidden states (R, H).
pub fn logits<O: VlmOps>(ops: &mut O, p: &DecoderParams<O::T>, hidden: &O::T) -> Result<O::T> {
    qwen2::logits(ops, p, hidden)
}

/// An empty KV cache for `capacity` positions.
pub fn kv_cache<O: VlmOps>(ops: &mut O, c: &LlmConfig, capacity: usize) -> Result<O::Kv> {
    ops.kv_cache(c.layers, c.kv_heads, c.head_dim(), capacity)
}
