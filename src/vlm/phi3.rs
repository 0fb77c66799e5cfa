//! Phi-3 (`Phi3ForCausalLM`, the LLM of InternVL2-4B): the Qwen2 layer stack without biases,
//! with q/k/v already stacked in `qkv_proj` ([q | k | v] rows, as `Qwen2Layer::qkv_w`) and
//! gate/up in `gate_up_proj` ([gate | up] rows, as `Qwen2Layer::gate_up_w`). Its longrope
//! (`su`) RoPE scaling is read by `rope.rs`.

use super::config::LlmConfig;
use super::qwen2::{Qwen2Layer, Qwen2Params};
use super::weights::WeightReader;
use crate::error::Result;

pub fn load<T>(r: &mut WeightReader<T>, c: &LlmConfig) -> Result<Qwen2Params<T>> {
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let qkv_rows = (c.heads + 2 * c.kv_heads) * c.head_dim();
    let m = "language_model.model";
    let embed = r.table(&format!("{m}.embed_tokens.weight"), &[v, h])?;
    let layers = (0..c.layers)
        .map(|n| {
            let l = format!("{m}.layers.{n}");
            Ok(Qwen2Layer {
                input_norm: r.get(&format!("{l}.input_layernorm.weight"), &[h])?,
                qkv_w: r.linear(&format!("{l}.self_attn.qkv_proj.weight"), &[qkv_rows, h])?,
                qkv_b: None,
                o_w: r.linear(&format!("{l}.self_attn.o_proj.weight"), &[h, h])?,
                post_norm: r.get(&format!("{l}.post_attention_layernorm.weight"), &[h])?,
                gate_up_w: r.linear(&format!("{l}.mlp.gate_up_proj.weight"), &[2 * i, h])?,
                down_w: r.linear(&format!("{l}.mlp.down_proj.weight"), &[h, i])?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let norm = r.get(&format!("{m}.norm.weight"), &[h])?;
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
