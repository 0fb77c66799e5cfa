//! Phi-3 (`Phi3ForCausalLM`, the LLM of InternVL2-4B): the Qwen2 stack without biases, with
//! q/k/v already stacked in `qkv_proj` ([q | k | v] rows) and gate/up in `gate_up_proj`
//! ([gate | up] rows). Its longrope (`su`) RoPE scaling is read by `rope.rs`.

use super::qwen2::{GateUp, Qkv, WeightNames};

pub const NAMES: WeightNames = WeightNames {
    embed: "model.embed_tokens.weight",
    input_norm: "input_layernorm.weight",
    qkv: Qkv::Stacked("self_attn.qkv_proj.weight"),
    o: "self_attn.o_proj.weight",
    post_norm: "post_attention_layernorm.weight",
    gate_up: GateUp::Stacked("mlp.gate_up_proj.weight"),
    down: "mlp.down_proj.weight",
    norm: "model.norm.weight",
    lm_head: "lm_head.weight",
};
