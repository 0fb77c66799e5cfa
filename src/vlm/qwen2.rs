//! The decoder stack every LLM family here shares, written once over `VlmOps`: RMSNorm, GQA
//! attention with optional q/k/v biases and RoPE over an executor-owned KV cache, SwiGLU MLP,
//! tied or untied `lm_head` — Qwen2's (`Qwen2ForCausalLM`), whose weight names are
//! [`NAMES`]. Other families (`internlm2.rs`, `phi3.rs`) are their [`WeightNames`].

use super::config::LlmConfig;
use super::weights::WeightReader;
use crate::error::Result;
use crate::ops::Role;
use crate::ops::{Rope, VlmOps};
use crate::tensor::Tensor;

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

/// Where a decoder family keeps the q/k/v projections.
pub enum Qkv {
    /// `{prefix}.{q,k,v}_proj.weight` (and `.bias` with `attention_bias`): Qwen2, LLaMA.
    Separate(&'static str),
    /// One (q | k | v)-stacked weight: Phi-3's `qkv_proj`.
    Stacked(&'static str),
    /// One weight packed another way, and the function that restacks it as q | k | v
    /// (`(weight, query heads per KV head, head_dim)`): InternLM2's `wqkv`.
    Packed(&'static str, fn(&Tensor, usize, usize) -> Result<Tensor>),
}

/// Where a decoder family keeps the MLP's gate and up projections.
pub enum GateUp {
    /// Two weights, gate then up.
    Separate(&'static str, &'static str),
    /// One (gate | up)-stacked weight: Phi-3's `gate_up_proj`.
    Stacked(&'static str),
}

/// A decoder family's weight names under `language_model.` (per-layer names under
/// `model.layers.{n}.`): all that differs between the families this stack runs.
pub struct WeightNames {
    pub embed: &'static str,
    pub input_norm: &'static str,
    pub qkv: Qkv,
    pub o: &'static str,
    pub post_norm: &'static str,
    pub gate_up: GateUp,
    pub down: &'static str,
    pub norm: &'static str,
    pub lm_head: &'static str,
}

/// Qwen2's (and LLaMA's) names.
pub const NAMES: WeightNames = WeightNames {
    embed: "model.embed_tokens.weight",
    input_norm: "input_layernorm.weight",
    qkv: Qkv::Separate("self_attn"),
    o: "self_attn.o_proj.weight",
    post_norm: "post_attention_layernorm.weight",
    gate_up: GateUp::Separate("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    down: "mlp.down_proj.weight",
    norm: "model.norm.weight",
    lm_head: "lm_head.weight",
};

impl<T> Qwen2Params<T> {
    /// Reads a decoder whose weights are named as `names` says.
    pub fn load(r: &mut WeightReader<T>, c: &LlmConfig, names: &WeightNames) -> Result<Self> {
        let (h, i, v, d) = (
            c.hidden_size,
            c.intermediate_size,
            c.vocab_size,
            c.head_dim(),
        );
        let (q, kv) = (c.heads * d, c.kv_heads * d);
        let lm = "language_model";
        let embed = r.table(&format!("{lm}.{}", names.embed), &[v, h])?;
        let layers = (0..c.layers)
            .map(|n| {
                let l = format!("{lm}.model.layers.{n}");
                let qkv_b = match &names.qkv {
                    Qkv::Separate(a) if c.attention_bias => {
                        let keys = ["q", "k", "v"].map(|p| format!("{l}.{a}.{p}_proj.bias"));
                        Some(r.concat(&keys.each_ref().map(String::as_str), &[q, kv, kv])?)
                    }
                    _ => None,
                };
                let qkv_w = match &names.qkv {
                    Qkv::Separate(a) => {
                        let keys = ["q", "k", "v"].map(|p| format!("{l}.{a}.{p}_proj.weight"));
                        let keys = keys.each_ref().map(String::as_str);
                        r.stacked(&keys, &[[q, h], [kv, h], [kv, h]])?
                    }
                    Qkv::Stacked(key) => r.linear(&format!("{l}.{key}"), &[q + 2 * kv, h])?,
                    Qkv::Packed(key, restack) => {
                        let packed = r.host(&format!("{l}.{key}"), &[q + 2 * kv, h])?;
                        r.put_as(
                            restack(&packed, c.heads / c.kv_heads, d)?,
                            Role::LinearWeight,
                        )?
                    }
                };
                let gate_up_w = match &names.gate_up {
                    GateUp::Separate(gate, up) => r.stacked(
                        &[&format!("{l}.{gate}"), &format!("{l}.{up}")],
                        &[[i, h], [i, h]],
                    )?,
                    GateUp::Stacked(key) => r.linear(&format!("{l}.{key}"), &[2 * i, h])?,
                };
                Ok(Qwen2Layer {
                    input_norm: r.get(&format!("{l}.{}", names.input_norm), &[h])?,
                    qkv_w,
                    qkv_b,
                    o_w: r.linear(&format!("{l}.{}", names.o), &[h, q])?,
                    post_norm: r.get(&format!("{l}.{}", names.post_norm), &[h])?,
                    gate_up_w,
                    down_w: r.linear(&format!("{l}.{}", names.down), &[h, i])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = r.get(&format!("{lm}.{}", names.norm), &[h])?;
        // Tied checkpoints usually omit lm_head; use it when present either way.
        let head = format!("{lm}.{}", names.lm_head);
        let lm_head = if c.tie_word_embeddings {
            r.optional_linear(&head, &[v, h])?
        } else {
            Some(r.linear(&head, &[v, h])?)
        };
        Ok(Qwen2Params {
            embed,
            layers,
            norm,
            lm_head,
        })
    }
}

/// Runs the decoder layers on `x` (R, H) — input embeddings at cache slots slot..slot+R and at
/// rotary `positions`, rotated by `rope` (`LlmConfig::rope` for the pass) — writing their keys
/// and values into `cache`. Returns the final-norm hidden states (R, H).
#[allow(clippy::too_many_arguments)]
pub fn forward<O: VlmOps>(
    ops: &mut O,
    p: &Qwen2Params<O::T>,
    c: &LlmConfig,
    rope: &Rope,
    x: &O::T,
    cache: &mut O::Kv,
    slot: usize,
    positions: &O::Pos,
) -> Result<O::T> {
    let rows = ops.row_count(x);
    let mut span = [Span {
        cache,
        slot,
        rows,
        rope,
        positions,
    }];
    forward_spans(ops, p, c, x, &mut span)
}

/// A run of `rows` consecutive rows of a decoder pass that belong to one sequence: its KV
/// cache, the cache slot of its first row, its rotation and its rows' rotary positions.
pub struct Span<'a, O: VlmOps> {
    pub cache: &'a mut O::Kv,
    pub slot: usize,
    pub rows: usize,
    pub rope: &'a Rope,
    pub positions: &'a O::Pos,
}

/// The decoder layers on `x`, whose rows are the `spans`' rows in order: one span is a prompt
/// (or a chunk of one); several are a batched decode step, one row per sequence. The products
/// and norms run on all rows at once (decoding reads each weight once for the whole batch);
/// keys and values go to each span's cache and its rows attend over that cache alone.
pub fn forward_spans<O: VlmOps>(
    ops: &mut O,
    p: &Qwen2Params<O::T>,
    c: &LlmConfig,
    x: &O::T,
    spans: &mut [Span<'_, O>],
) -> Result<O::T> {
    let _awake = ops.keep_awake();
    // Each residual add is fused with the norm after it (the next layer's, or the final one).
    let first_norm = p.layers.first().map_or(&p.norm, |l| &l.input_norm);
    let mut h = ops.rms_norm(x, first_norm, c.rms_norm_eps)?;
    let mut x = x.clone();
    for (n, l) in p.layers.iter().enumerate() {
        let qkv = ops.linear(&h, &l.qkv_w, l.qkv_b.as_ref())?;
        let a = attend(ops, spans, n, &qkv, c.heads)?;
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

/// Layer `layer`'s attention: each span's rows of `qkv` rotated into its cache, attending over
/// it; the outputs in the spans' order.
fn attend<O: VlmOps>(
    ops: &mut O,
    spans: &mut [Span<'_, O>],
    layer: usize,
    qkv: &O::T,
    heads: usize,
) -> Result<O::T> {
    let one = spans.len() == 1;
    let mut outs = Vec::with_capacity(spans.len());
    let mut row = 0;
    for s in spans.iter_mut() {
        let part = match one {
            true => qkv.clone(),
            false => ops.rows(qkv, row, s.rows),
        };
        row += s.rows;
        let q = ops.qkv_to_cache(s.cache, layer, s.slot, &part, heads, s.rope, s.positions)?;
        outs.push(ops.kv_attention(s.cache, layer, &q, s.slot, heads)?);
    }
    match one {
        true => Ok(outs.pop().expect("one span")),
        false => ops.concat_rows(&outs),
    }
}

/// Logits (R, vocab) of hidden states (R, H).
pub fn logits<O: VlmOps>(ops: &mut O, p: &Qwen2Params<O::T>, hidden: &O::T) -> Result<O::T> {
    ops.linear(hidden, p.lm_head.as_ref().unwrap_or(&p.embed), None)
}
