//! The Qwen2 decoder (`Qwen2ForCausalLM`), written once over `VlmOps`: RMSNorm, GQA attention
//! with q/k/v biases (optional: the same layer stack serves InternLM2, see `internlm2.rs`) and RoPE over an executor-owned KV cache, SwiGLU MLP, tied or untied
//! `lm_head`. Weight names are the released model's (`language_model.*`).

use super::config::LlmConfig;
use super::weights::WeightReader;
use crate::error::Result;
use crate::ops::{Rope, VlmOps};

pub struct Qwen2Layer<T> {
    pub input_norm: T,
    /// q_proj, k_proj and v_proj stacked: ((heads + 2·kv_heads)·head_dim, H), so one product
    /// gives each token's [q | k | v] (`qkv_to_cache` splits it).
    pub qkv_w: T,
    /// The q/k/v biases stacked likewise (Qwen2 has them; InternLM2 has none).
    pub qkv_b: Option<T>,
    pub o_w: T,
    pub post_norm: T,
    /// gate_proj and up_proj stacked: (2·I, H), so one GEMM feeds `swiglu`.
    pub gate_up_w: T,
    pub down_w: T,
}

pub struct Qwen2Params<T> {
    /// (vocab, H): token embeddings, gathered by id on the executor.
    pub embed: T,
    pub layers: Vec<Qwen2Layer<T>>,
    pub norm: T,
    /// (vocab, H); None when tied to `embed`.
    pub lm_head: Option<T>,
}

impl<T> Qwen2Params<T> {
    pub fn load(r: &mut WeightReader<T>, c: &LlmConfig) -> Result<Self> {
        let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let kv = c.kv_heads * c.head_dim();
        let m = "language_model.model";
        let embed = r.table(&format!("{m}.embed_tokens.weight"), &[v, h])?;
        let layers = (0..c.layers)
            .map(|n| {
                let l = format!("{m}.layers.{n}");
                let a = format!("{l}.self_attn");
                Ok(Qwen2Layer {
                    input_norm: r.get(&format!("{l}.input_layernorm.weight"), &[h])?,
                    qkv_w: r.stacked(
                        &[
                            &format!("{a}.q_proj.weight"),
                            &format!("{a}.k_proj.weight"),
                            &format!("{a}.v_proj.weight"),
                        ],
                        &[[h, h], [kv, h], [kv, h]],
                    )?,
                    qkv_b: if c.attention_bias {
                        Some(r.concat(
                            &[
                                &format!("{a}.q_proj.bias"),
                                &format!("{a}.k_proj.bias"),
                                &format!("{a}.v_proj.bias"),
                            ],
                            &[h, kv, kv],
                        )?)
                    } else {
                        None
                    },
                    o_w: r.linear(&format!("{a}.o_proj.weight"), &[h, h])?,
                    post_norm: r.get(&format!("{l}.post_attention_layernorm.weight"), &[h])?,
                    gate_up_w: r.stacked(
                        &[
                            &format!("{l}.mlp.gate_proj.weight"),
                            &format!("{l}.mlp.up_proj.weight"),
                        ],
                        &[[i, h], [i, h]],
                    )?,
                    down_w: r.linear(&format!("{l}.mlp.down_proj.weight"), &[h, i])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = r.get(&format!("{m}.norm.weight"), &[h])?;
        // Tied checkpoints usually omit lm_head; use it when present either way.
        let lm_head = if c.tie_word_embeddings {
            r.optional_linear("language_model.lm_head.weight", &[v, h])?
        } else {
            Some(r.linear("language_model.lm_head.weight", &[v, h])?)
        };
        Ok(Qwen2Params {
            embed,
            layers,
            norm,
            lm_head,
        })
    }
}

/// Runs the decoder layers on `x` (R, H), rotated by `rope` (`LlmConfig::rope` for the sequence) — the input embeddings of positions
/// position..position+R — writing their keys and values into `cache`. Returns the final-norm
/// hidden states (R, H).
pub fn forward<O: VlmOps>(
    ops: &mut O,
    p: &Qwen2Params<O::T>,
    c: &LlmConfig,
    rope: &Rope,
    x: &O::T,
    cache: &mut O::Kv,
    position: usize,
) -> Result<O::T> {
    // Each residual add is fused with the norm after it (the next layer's, or the final one).
    let first_norm = p.layers.first().map_or(&p.norm, |l| &l.input_norm);
    let mut h = ops.rms_norm(x, first_norm, c.rms_norm_eps)?;
    let mut x = x.clone();
    for (n, l) in p.layers.iter().enumerate() {
        let qkv = ops.linear(&h, &l.qkv_w, l.qkv_b.as_ref())?;
        let q = ops.qkv_to_cache(cache, n, position, &qkv, c.heads, rope)?;
        let a = ops.kv_attention(cache, n, &q, position, c.heads)?;
        let a = ops.linear(&a, &l.o_w, None)?;
        let (x1, h1) = ops.add_rms_norm(&x, &a, &l.post_norm, c.rms_norm_eps)?;
        let m = ops.linear(&h1, &l.gate_up_w, None)?;
        let m = ops.swiglu(&m)?;
        let m = ops.linear(&m, &l.down_w, None)?;
        let next_norm = p.layers.get(n + 1).map_or(&p.norm, |l| &l.input_norm);
        (x, h) = ops.add_rms_norm(&x1, &m, next_norm, c.rms_norm_eps)?;
    }
    Ok(h)
}

/// Logits (R, vocab) of hidden states (R, H).
pub fn logits<O: VlmOps>(ops: &mut O, p: &Qwen2Params<O::T>, hidden: &O::T) -> Result<O::T> {
    ops.linear(hidden, p.lm_head.as_ref().unwrap_or(&p.embed), None)
}
