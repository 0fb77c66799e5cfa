//! InternLM2 (`InternLM2ForCausalLM`, the LLM of InternVL2-2B/8B): the same layer stack as
//! Qwen2 (RMSNorm, GQA + RoPE, SwiGLU) without q/k/v biases, so only its weight layout is
//! here: `tok_embeddings`, `attention.wqkv` (packed per KV head), `attention.wo`,
//! `feed_forward.w1/w3/w2`, `attention_norm`, `ffn_norm`, `output`.

use super::config::LlmConfig;
use super::qwen2::{Qwen2Layer, Qwen2Params};
use super::weights::WeightReader;
use crate::error::Result;
use crate::ops::Role;
use crate::tensor::Tensor;

/// Reorders InternLM2's packed `wqkv` ((kv_heads · (g + 2) · d), H), laid out per KV head as
/// [g query heads | key | value] (`rearrange(.., 'b q (h gs d) -> b q h gs d', gs = g + 2)`),
/// into the stacked [q ((heads · d) rows) | k ((kv_heads · d) rows) | v] of `Qwen2Layer::qkv_w`.
pub fn regroup_wqkv(wqkv: &Tensor, group: usize, head_dim: usize) -> Result<Tensor> {
    let h = wqkv.cols();
    let block = head_dim * h;
    let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for (i, chunk) in wqkv.data().chunks(block).enumerate() {
        match i % (group + 2) {
            s if s < group => q.extend_from_slice(chunk),
            s if s == group => k.extend_from_slice(chunk),
            _ => v.extend_from_slice(chunk),
        }
    }
    q.extend(k);
    q.extend(v);
    Tensor::new(wqkv.shape().to_vec(), q)
}

pub fn load<T>(r: &mut WeightReader<T>, c: &LlmConfig) -> Result<Qwen2Params<T>> {
    let (h, i, v, d) = (
        c.hidden_size,
        c.intermediate_size,
        c.vocab_size,
        c.head_dim(),
    );
    let group = c.heads / c.kv_heads;
    let m = "language_model.model";
    let embed = r.table(&format!("{m}.tok_embeddings.weight"), &[v, h])?;
    let layers = (0..c.layers)
        .map(|n| {
            let l = format!("{m}.layers.{n}");
            let wqkv = r.host(
                &format!("{l}.attention.wqkv.weight"),
                &[c.kv_heads * (group + 2) * d, h],
            )?;
            let qkv = regroup_wqkv(&wqkv, group, d)?;
            Ok(Qwen2Layer {
                input_norm: r.get(&format!("{l}.attention_norm.weight"), &[h])?,
                qkv_w: r.put_as(qkv, Role::LinearWeight)?,
                qkv_b: None,
                o_w: r.linear(&format!("{l}.attention.wo.weight"), &[h, h])?,
                post_norm: r.get(&format!("{l}.ffn_norm.weight"), &[h])?,
                gate_up_w: r.stacked(
                    &[
                        &format!("{l}.feed_forward.w1.weight"),
                        &format!("{l}.feed_forward.w3.weight"),
                    ],
                    &[[i, h], [i, h]],
                )?,
                down_w: r.linear(&format!("{l}.feed_forward.w2.weight"), &[h, i])?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let norm = r.get(&format!("{m}.norm.weight"), &[h])?;
    let lm_head = if c.tie_word_embeddings {
        r.optional_linear("language_model.output.weight", &[v, h])?
    } else {
        Some(r.linear("language_model.output.weight", &[v, h])?)
    };
    Ok(Qwen2Params {
        embed,
        layers,
        norm,
        lm_head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wqkv_regrouped_by_hand() {
        // 2 KV heads, group 2, head_dim 1, H 1: rows [q0 q1 k0 v0 | q2 q3 k1 v1].
        let w = Tensor::new(vec![8, 1], vec![0., 1., 10., 20., 2., 3., 11., 21.]).unwrap();
        let qkv = regroup_wqkv(&w, 2, 1).unwrap();
        assert_eq!(qkv.shape(), &[8, 1]);
        assert_eq!(qkv.data(), &[0., 1., 2., 3., 10., 11., 20., 21.]);
    }
}
