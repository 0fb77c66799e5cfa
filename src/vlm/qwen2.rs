//! The Qwen2 decoder (`Qwen2ForCausalLM`), written once over `VlmOps`: RMSNorm, GQA attention
//! with q/k/v biases (optional: the same layer stack serves InternLM2, see `internlm2.rs`) and RoPE over an executor-owned KV cache, SwiGLU MLP, tied or untied
//! `lm_head`. Weight names are the released model's (`language_model.*`).

use super::config::LlmConfig;
use super::ops::VlmOps;
use super::weights::WeightReader;
use crate::error::Result;

pub struct Qwen2Layer<T> {
    pub input_norm: T,
    pub q_w: T,
    /// q/k/v biases (Qwen2 has them; InternLM2 has none).
    pub q_b: Option<T>,
    pub k_w: T,
    pub k_b: Option<T>,
    pub v_w: T,
    pub v_b: Option<T>,
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
        let embed = r.get(&format!("{m}.embed_tokens.weight"), &[v, h])?;
        let layers = (0..c.layers)
            .map(|n| {
                let l = format!("{m}.layers.{n}");
                let a = format!("{l}.self_attn");
                Ok(Qwen2Layer {
                    input_norm: r.get(&format!("{l}.input_layernorm.weight"), &[h])?,
                    q_w: r.get(&format!("{a}.q_proj.weight"), &[h, h])?,
                    q_b: Some(r.get(&format!("{a}.q_proj.bias"), &[h])?),
                    k_w: r.get(&format!("{a}.k_proj.weight"), &[kv, h])?,
                    k_b: Some(r.get(&format!("{a}.k_proj.bias"), &[kv])?),
                    v_w: r.get(&format!("{a}.v_proj.weight"), &[kv, h])?,
                    v_b: Some(r.get(&format!("{a}.v_proj.bias"), &[kv])?),
                    o_w: r.get(&format!("{a}.o_proj.weight"), &[h, h])?,
                    post_norm: r.get(&format!("{l}.post_attention_layernorm.weight"), &[h])?,
                    gate_up_w: r.stacked(
                        &[
                            &format!("{l}.mlp.gate_proj.weight"),
                            &format!("{l}.mlp.up_proj.weight"),
                        ],
                        &[[i, h], [i, h]],
                    )?,
                    down_w: r.get(&format!("{l}.mlp.down_proj.weight"), &[h, i])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = r.get(&format!("{m}.norm.weight"), &[h])?;
        // Tied checkpoints usually omit lm_head; use it when present either way.
        let lm_head = if c.tie_word_embeddings {
            r.optional("language_model.lm_head.weight", &[v, h])?
        } else {
            Some(r.get("language_model.lm_head.weight", &[v, h])?)
        };
        Ok(Qwen2Params {
            embed,
            layers,
            norm,
            lm_head,
        })
    }
}

/// Runs the decoder layers on `x` (R, H) — the input embeddings of positions
/// position..position+R — writing their keys and values into `cache`. Returns the final-norm
/// hidden states (R, H).
pub fn forward<O: VlmOps>(
    ops: &mut O,
    p: &Qwen2Params<O::T>,
    c: &LlmConfig,
    x: &O::T,
    cache: &mut O::Kv,
    position: usize,
) -> Result<O::T> {
    let d = c.head_dim();
    let mut x = x.clone();
    for (n, l) in p.layers.iter().enumerate() {
        let h = ops.rms_norm(&x, &l.input_norm, c.rms_norm_eps)?;
        let q = ops.linear(&h, &l.q_w, l.q_b.as_ref())?;
        let k = ops.linear(&h, &l.k_w, l.k_b.as_ref())?;
        let v = ops.linear(&h, &l.v_w, l.v_b.as_ref())?;
        let q = ops.rope(&q, c.heads, d, position, c.rope_theta)?;
        let k = ops.rope(&k, c.kv_heads, d, position, c.rope_theta)?;
        ops.kv_write(cache, n, position, &k, &v)?;
        let a = ops.kv_attention(cache, n, &q, position, c.heads)?;
        let a = ops.linear(&a, &l.o_w, None)?;
        x = ops.residual_add(&x, &a, None)?;
        let h = ops.rms_norm(&x, &l.post_norm, c.rms_norm_eps)?;
        let h = ops.linear(&h, &l.gate_up_w, None)?;
        let h = ops.swiglu(&h)?;
        let h = ops.linear(&h, &l.down_w, None)?;
        x = ops.residual_add(&x, &h, None)?;
    }
    ops.rms_norm(&x, &p.norm, c.rms_norm_eps)
}

/// Logits (R, vocab) of hidden states (R, H).
pub fn logits<O: VlmOps>(ops: &mut O, p: &Qwen2Params<O::T>, hidden: &O::T) -> Result<O::T> {
    ops.linear(hidden, p.lm_head.as_ref().unwrap_or(&p.embed), None)
}
