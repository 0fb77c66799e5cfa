//! InternLM2 (`InternLM2ForCausalLM`, the LLM of InternVL2-2B/8B): the same layer stack as
//! Qwen2 (RMSNorm, GQA + RoPE, SwiGLU) without q/k/v biases, so only its weight layout is
//! here.

use super::qwen2::{GateUp, Qkv, WeightNames};
use crate::error::Result;
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

/// InternLM2's names: `tok_embeddings`, `attention.wqkv` (packed per KV head), `attention.wo`,
/// `feed_forward.w1/w3/w2` (gate/up/down), `attention_norm`, `ffn_norm`, `output`.
pub const NAMES: WeightNames = WeightNames {
    embed: "model.tok_embeddings.weight",
    input_norm: "attention_norm.weight",
    qkv: Qkv::Packed("attention.wqkv.weight", regroup_wqkv),
    o: "attention.wo.weight",
    post_norm: "ffn_norm.weight",
    gate_up: GateUp::Separate("feed_forward.w1.weight", "feed_forward.w3.weight"),
    down: "feed_forward.w2.weight",
    norm: "model.norm.weight",
    lm_head: "output.weight",
};

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
