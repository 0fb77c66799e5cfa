//! `linvt synth --like NAME OUT_DIR`: a real-size stand-in for a downloaded checkpoint (none can
//! be downloaded here): the model's published `config.json` (InternVL: the remote-code layout;
//! Qwen2-VL: the hub's), seeded random bf16 weights under its Hugging Face names, a byte-level
//! tokenizer with the model's vocabulary size and special-token ids, `generation_config.json`
//! (and Qwen2-VL's `preprocessor_config.json`). `--linvt FILE` also writes a seeded LinVT module
//! (official preset) sized for its LLM.
//!
//! Weights are uniform in ±√(3/fan_in) (unit-variance outputs for unit-variance inputs), norm
//! weights 1, biases 0, LayerScale 0.1, embeddings ±0.02·√3: random, but every activation stays
//! in range, so the stand-in exercises the same work as the real model.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

use super::decoder::LlmFamily;
use super::qwen2::{GateUp, Qkv};
use crate::config::ConfigPatch;
use crate::error::{Error, Result};
use crate::linvt::LinvtParams;
use crate::rand::SeededRng;

/// The checkpoints `--like` reproduces.
pub const LIKES: &[&str] = &[
    "internvl2-1b",
    "internvl2-2b",
    "internvl2.5-1b",
    "qwen2-vl-2b",
    "qwen2.5-vl-3b",
];

/// A Qwen2-VL checkpoint's own part.
struct QwenSpec {
    qwen2_5: bool,
    /// The vision tower: depth, width, heads, MLP width.
    depth: usize,
    width: usize,
    heads: usize,
    mlp: usize,
    max_positions: usize,
}

struct Llm {
    arch: &'static str,
    model_type: &'static str,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    inter: usize,
    vocab: usize,
    theta: f64,
    eps: f64,
    bos: u32,
    eos: u32,
}

struct Spec {
    llm: Llm,
    /// Qwen2-VL hosts; None: InternVL.
    qwen: Option<QwenSpec>,
    /// Tied input and output embeddings (no `lm_head` stored).
    tied: bool,
    template: &'static str,
    max_dynamic_patch: usize,
    /// (token, id) of the special tokens, in id order.
    specials: Vec<(&'static str, u32)>,
    /// Stop ids of `generation_config.json`.
    eos: Vec<u32>,
}

/// Qwen2-VL's special tokens, ids 151643 … 151656.
const QWEN2_VL_SPECIALS: [&str; 14] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
];

/// Qwen2.5-VL's further tokens, ids 151657 … 151664.
const QWEN2_5_EXTRA: [&str; 8] = [
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
];

/// InternVL's image tokens and the grounding tokens every InternVL tokenizer carries after them.
const IMAGE_TOKENS: [&str; 9] = [
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
];

fn spec(like: &str) -> Result<Spec> {
    // Qwen2 tokenizers: <|endoftext|>, <|im_start|>, <|im_end|> at 151643.., then the image
    // tokens (InternVL2-1B) or Qwen2.5's 22 own special tokens first (InternVL2.5 / 3).
    let qwen = |image_at: u32| {
        let mut s = vec![
            ("<|endoftext|>", 151643),
            ("<|im_start|>", 151644),
            ("<|im_end|>", 151645),
        ];
        s.extend(IMAGE_TOKENS.iter().zip(image_at..).map(|(t, i)| (*t, i)));
        s
    };
    match like {
        "internvl2-1b" => Ok(Spec {
            llm: Llm {
                arch: "Qwen2ForCausalLM",
                model_type: "qwen2",
                hidden: 896,
                layers: 24,
                heads: 14,
                kv_heads: 2,
                inter: 4864,
                vocab: 151655,
                theta: 1e6,
                eps: 1e-6,
                bos: 151643,
                eos: 151645,
            },
            qwen: None,
            tied: false,
            template: "Hermes-2",
            max_dynamic_patch: 12,
            specials: qwen(151646),
            eos: vec![151645, 151643],
        }),
        "internvl2.5-1b" => Ok(Spec {
            llm: Llm {
                arch: "Qwen2ForCausalLM",
                model_type: "qwen2",
                hidden: 896,
                layers: 24,
                heads: 14,
                kv_heads: 2,
                inter: 4864,
                vocab: 151674,
                theta: 1e6,
                eps: 1e-6,
                bos: 151643,
                eos: 151645,
            },
            qwen: None,
            tied: false,
            template: "internvl2_5",
            max_dynamic_patch: 12,
            specials: qwen(151665),
            eos: vec![151645, 151643],
        }),
        "internvl2-2b" => Ok(Spec {
            llm: Llm {
                arch: "InternLM2ForCausalLM",
                model_type: "internlm2",
                hidden: 2048,
                layers: 24,
                heads: 16,
                kv_heads: 8,
                inter: 8192,
                vocab: 92553,
                theta: 1e6,
                eps: 1e-5,
                bos: 1,
                eos: 2,
            },
            qwen: None,
            tied: false,
            template: "internlm2-chat",
            max_dynamic_patch: 12,
            specials: {
                let mut s = vec![("<|im_end|>", 92542), ("<|im_start|>", 92543)];
                s.extend(IMAGE_TOKENS.iter().zip(92544..).map(|(t, i)| (*t, i)));
                s
            },
            eos: vec![92542, 2],
        }),
        // Qwen2-VL-2B / Qwen2.5-VL-3B (-Instruct): docs/qwen2vl-reference.md §4.1, §5.2.
        "qwen2-vl-2b" | "qwen2.5-vl-3b" => {
            let qwen2_5 = like == "qwen2.5-vl-3b";
            let mut specials: Vec<(&'static str, u32)> = QWEN2_VL_SPECIALS
                .iter()
                .zip(151643..)
                .map(|(t, i)| (*t, i))
                .collect();
            if qwen2_5 {
                specials.extend(QWEN2_5_EXTRA.iter().zip(151657..).map(|(t, i)| (*t, i)));
            }
            let (hidden, layers, heads, inter) = if qwen2_5 {
                (2048, 36, 16, 11008)
            } else {
                (1536, 28, 12, 8960)
            };
            Ok(Spec {
                llm: Llm {
                    arch: "Qwen2ForCausalLM",
                    model_type: "qwen2",
                    hidden,
                    layers,
                    heads,
                    kv_heads: 2,
                    inter,
                    vocab: 151936,
                    theta: 1e6,
                    eps: 1e-6,
                    bos: 151643,
                    eos: 151645,
                },
                qwen: Some(QwenSpec {
                    qwen2_5,
                    depth: 32,
                    width: 1280,
                    heads: 16,
                    mlp: if qwen2_5 { 3420 } else { 5120 },
                    max_positions: if qwen2_5 { 128000 } else { 32768 },
                }),
                tied: true,
                template: "qwen2-vl",
                max_dynamic_patch: 0,
                specials,
                eos: vec![151645, 151643],
            })
        }
        other => Err(Error::input(format!(
            "unknown model `{other}` for --like; known: {}",
            LIKES.join(", ")
        ))),
    }
}

/// The published config.json of the `like` model (InternViT-300M-448px, pixel shuffle 0.5,
/// `ps_version` v2, `mlp1`, the LLM's own config), in the remote-code layout.
fn config_json(s: &Spec) -> Value {
    if let Some(q) = &s.qwen {
        return qwen_config_json(s, q);
    }
    let l = &s.llm;
    json!({
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "dynamic_image_size": true,
        "force_image_size": 448,
        "max_dynamic_patch": s.max_dynamic_patch,
        "min_dynamic_patch": 1,
        "ps_version": "v2",
        "select_layer": -1,
        "template": s.template,
        "torch_dtype": "bfloat16",
        "use_thumbnail": true,
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
            "image_size": 448,
            "patch_size": 14,
            "num_channels": 3,
            "hidden_act": "gelu",
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "qkv_bias": true,
            "qk_normalization": false,
            "torch_dtype": "bfloat16"
        },
        "llm_config": {
            "architectures": [l.arch],
            "model_type": l.model_type,
            "hidden_size": l.hidden,
            "num_hidden_layers": l.layers,
            "num_attention_heads": l.heads,
            "num_key_value_heads": l.kv_heads,
            "intermediate_size": l.inter,
            "vocab_size": l.vocab,
            "hidden_act": "silu",
            "rope_theta": l.theta,
            "rms_norm_eps": l.eps,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": false,
            "bos_token_id": l.bos,
            "eos_token_id": l.eos,
            "torch_dtype": "bfloat16"
        }
    })
}

/// A Qwen2-VL checkpoint's hub `config.json` (flat text fields, `vision_config`, M-RoPE).
fn qwen_config_json(s: &Spec, q: &QwenSpec) -> Value {
    let l = &s.llm;
    let vision = if q.qwen2_5 {
        json!({
            "depth": q.depth, "hidden_size": q.width, "intermediate_size": q.mlp,
            "num_heads": q.heads, "in_chans": 3, "out_hidden_size": l.hidden,
            "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
            "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
            "hidden_act": "silu", "model_type": "qwen2_5_vl"
        })
    } else {
        json!({
            "depth": q.depth, "embed_dim": q.width, "mlp_ratio": q.mlp / q.width,
            "num_heads": q.heads, "in_chans": 3, "hidden_size": l.hidden, "patch_size": 14,
            "spatial_merge_size": 2, "spatial_patch_size": 14, "temporal_patch_size": 2
        })
    };
    let (arch, model_type) = if q.qwen2_5 {
        ("Qwen2_5_VLForConditionalGeneration", "qwen2_5_vl")
    } else {
        ("Qwen2VLForConditionalGeneration", "qwen2_vl")
    };
    json!({
        "architectures": [arch],
        "model_type": model_type,
        "attention_dropout": 0.0,
        "bos_token_id": l.bos,
        "eos_token_id": l.eos,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "vision_token_id": 151654,
        "image_token_id": 151655,
        "video_token_id": 151656,
        "hidden_act": "silu",
        "hidden_size": l.hidden,
        "intermediate_size": l.inter,
        "max_position_embeddings": q.max_positions,
        "max_window_layers": l.layers,
        "num_attention_heads": l.heads,
        "num_hidden_layers": l.layers,
        "num_key_value_heads": l.kv_heads,
        "rms_norm_eps": l.eps,
        "rope_theta": l.theta,
        "sliding_window": 32768,
        "tie_word_embeddings": s.tied,
        "torch_dtype": "bfloat16",
        "use_cache": true,
        "use_sliding_window": false,
        "vision_config": vision,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vocab_size": l.vocab
    })
}

/// How a tensor is drawn.
#[derive(Clone, Copy)]
enum Init {
    /// Uniform in ±√(3/fan_in): a linear weight with `fan_in` inputs.
    Linear(usize),
    Const(f32),
    Uniform(f32),
}

/// (name, shape, init) of every weight of the stand-in, by its Hugging Face name.
fn tensors(s: &Spec) -> Vec<(String, Vec<usize>, Init)> {
    let mut t: Vec<(String, Vec<usize>, Init)> = Vec::new();
    let mut add = |name: String, shape: &[usize], init| t.push((name, shape.to_vec(), init));
    let lm = match &s.qwen {
        Some(q) => {
            qwen_vision_tensors(q, s.llm.hidden, &mut add);
            "" // the hub layout: model.*, lm_head.weight
        }
        None => {
            internvl_vision_tensors(s.llm.hidden, &mut add);
            "language_model."
        }
    };
    llm_tensors(s, lm, &mut add);
    t
}

type Add<'a> = dyn FnMut(String, &[usize], Init) + 'a;

/// Qwen2-VL's (2.5: windowed, RMSNorm, SwiGLU) vision tower and merger, by the hub's names.
fn qwen_vision_tensors(q: &QwenSpec, out: usize, add: &mut Add) {
    let (c, m) = (q.width, q.mlp);
    add(
        "visual.patch_embed.proj.weight".into(),
        &[c, 3, 2, 14, 14],
        Init::Linear(3 * 2 * 14 * 14),
    );
    for i in 0..q.depth {
        let l = format!("visual.blocks.{i}");
        for norm in ["norm1", "norm2"] {
            add(format!("{l}.{norm}.weight"), &[c], Init::Const(1.0));
            if !q.qwen2_5 {
                add(format!("{l}.{norm}.bias"), &[c], Init::Const(0.0));
            }
        }
        add(format!("{l}.attn.qkv.weight"), &[3 * c, c], Init::Linear(c));
        add(format!("{l}.attn.qkv.bias"), &[3 * c], Init::Const(0.0));
        add(format!("{l}.attn.proj.weight"), &[c, c], Init::Linear(c));
        add(format!("{l}.attn.proj.bias"), &[c], Init::Const(0.0));
        let mlp: &[(&str, [usize; 2])] = if q.qwen2_5 {
            &[
                ("gate_proj", [m, c]),
                ("up_proj", [m, c]),
                ("down_proj", [c, m]),
            ]
        } else {
            &[("fc1", [m, c]), ("fc2", [c, m])]
        };
        for (name, [rows, cols]) in mlp {
            add(
                format!("{l}.mlp.{name}.weight"),
                &[*rows, *cols],
                Init::Linear(*cols),
            );
            add(format!("{l}.mlp.{name}.bias"), &[*rows], Init::Const(0.0));
        }
    }
    let inner = 4 * c;
    add("visual.merger.ln_q.weight".into(), &[c], Init::Const(1.0));
    if !q.qwen2_5 {
        add("visual.merger.ln_q.bias".into(), &[c], Init::Const(0.0));
    }
    add(
        "visual.merger.mlp.0.weight".into(),
        &[inner, inner],
        Init::Linear(inner),
    );
    add(
        "visual.merger.mlp.0.bias".into(),
        &[inner],
        Init::Const(0.0),
    );
    add(
        "visual.merger.mlp.2.weight".into(),
        &[out, inner],
        Init::Linear(inner),
    );
    add("visual.merger.mlp.2.bias".into(), &[out], Init::Const(0.0));
}

/// InternViT-300M-448px and `mlp1`, by the remote-code names.
fn internvl_vision_tensors(h: usize, add: &mut Add) {
    let (c, m, p) = (1024, 4096, 14);
    let e = "vision_model.embeddings";
    add(
        format!("{e}.class_embedding"),
        &[1, 1, c],
        Init::Uniform(0.035),
    );
    add(
        format!("{e}.position_embedding"),
        &[1, 1025, c],
        Init::Uniform(0.035),
    );
    add(
        format!("{e}.patch_embedding.weight"),
        &[c, 3, p, p],
        Init::Linear(3 * p * p),
    );
    add(format!("{e}.patch_embedding.bias"), &[c], Init::Const(0.0));
    for i in 0..24 {
        let l = format!("vision_model.encoder.layers.{i}");
        for norm in ["norm1", "norm2"] {
            add(format!("{l}.{norm}.weight"), &[c], Init::Const(1.0));
            add(format!("{l}.{norm}.bias"), &[c], Init::Const(0.0));
        }
        add(format!("{l}.attn.qkv.weight"), &[3 * c, c], Init::Linear(c));
        add(format!("{l}.attn.qkv.bias"), &[3 * c], Init::Const(0.0));
        add(format!("{l}.attn.proj.weight"), &[c, c], Init::Linear(c));
        add(format!("{l}.attn.proj.bias"), &[c], Init::Const(0.0));
        add(format!("{l}.mlp.fc1.weight"), &[m, c], Init::Linear(c));
        add(format!("{l}.mlp.fc1.bias"), &[m], Init::Const(0.0));
        add(format!("{l}.mlp.fc2.weight"), &[c, m], Init::Linear(m));
        add(format!("{l}.mlp.fc2.bias"), &[c], Init::Const(0.0));
        add(format!("{l}.ls1"), &[c], Init::Const(0.1));
        add(format!("{l}.ls2"), &[c], Init::Const(0.1));
    }
    let inner = 4 * c;
    add("mlp1.0.weight".into(), &[inner], Init::Const(1.0));
    add("mlp1.0.bias".into(), &[inner], Init::Const(0.0));
    add("mlp1.1.weight".into(), &[h, inner], Init::Linear(inner));
    add("mlp1.1.bias".into(), &[h], Init::Const(0.0));
    add("mlp1.3.weight".into(), &[h, h], Init::Linear(h));
    add("mlp1.3.bias".into(), &[h], Init::Const(0.0));
}

/// The LLM's tensors by the names its family's loader reads (one table: `WeightNames`), under
/// `lm` (InternVL's `language_model.`, or none in Qwen2-VL's hub layout).
fn llm_tensors(s: &Spec, lm: &str, add: &mut Add) {
    let l = &s.llm;
    let (h, v, inter) = (l.hidden, l.vocab, l.inter);
    let family = LlmFamily::from_architecture(l.arch).expect("every spec names a known family");
    let names = family.names();
    let d = h / l.heads;
    let (q, kv) = (l.heads * d, l.kv_heads * d);
    add(
        format!("{lm}{}", names.embed),
        &[v, h],
        Init::Uniform(0.035),
    );
    for i in 0..l.layers {
        let b = format!("{lm}model.layers.{i}");
        add(format!("{b}.{}", names.input_norm), &[h], Init::Const(1.0));
        match &names.qkv {
            Qkv::Separate(a) => {
                for (p, rows) in [("q", q), ("k", kv), ("v", kv)] {
                    add(
                        format!("{b}.{a}.{p}_proj.weight"),
                        &[rows, h],
                        Init::Linear(h),
                    );
                    if family == LlmFamily::Qwen2 {
                        add(format!("{b}.{a}.{p}_proj.bias"), &[rows], Init::Const(0.0));
                    }
                }
            }
            Qkv::Stacked(key) | Qkv::Packed(key, _) => {
                add(format!("{b}.{key}"), &[q + 2 * kv, h], Init::Linear(h))
            }
        }
        add(format!("{b}.{}", names.o), &[h, q], Init::Linear(q));
        add(format!("{b}.{}", names.post_norm), &[h], Init::Const(1.0));
        match &names.gate_up {
            GateUp::Separate(gate, up) => {
                add(format!("{b}.{gate}"), &[inter, h], Init::Linear(h));
                add(format!("{b}.{up}"), &[inter, h], Init::Linear(h));
            }
            GateUp::Stacked(key) => add(format!("{b}.{key}"), &[2 * inter, h], Init::Linear(h)),
        }
        add(
            format!("{b}.{}", names.down),
            &[h, inter],
            Init::Linear(inter),
        );
    }
    add(format!("{lm}{}", names.norm), &[h], Init::Const(1.0));
    if !s.tied {
        add(format!("{lm}{}", names.lm_head), &[v, h], Init::Linear(h));
    }
}

fn bf16_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values
        .flat_map(|x| half::bf16::from_f32(x).to_le_bytes())
        .collect()
}

fn write_safetensors(
    path: &Path,
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::input(format!("cannot build tensor `{n}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    // Streamed to a temporary file, then renamed over `path` (a stand-in is GBs: never held
    // twice in memory). At most one metadata key, so the header is the same on every run.
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let written = safetensors::serialize_to_file(views, metadata, &tmp)
        .map_err(|e| Error::input(format!("cannot write {}: {e}", path.display())))
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|source| Error::Write {
                path: path.to_path_buf(),
                source,
            })
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A byte-level BPE tokenizer of `vocab` ids: the tiny fixture's 988 learned tokens and merges,
/// never-produced filler tokens up to the first special id, and the model's special tokens at
/// their published ids (so prompts tokenize and the image tokens have the real ids).
fn tokenizer_json(s: &Spec) -> Result<Value> {
    let tiny: Value = serde_json::from_slice(super::tiny_model::TOKENIZER_JSON)
        .map_err(|e| Error::input(format!("the embedded tokenizer is not JSON: {e}")))?;
    let mut t = tiny.clone();
    let learned = tiny["model"]["vocab"]
        .as_object()
        .ok_or_else(|| Error::input("the embedded tokenizer has no vocab"))?;
    let first_special = s.specials.iter().map(|(_, id)| *id).min().unwrap_or(0) as usize;
    let mut vocab = serde_json::Map::new();
    for (k, v) in learned {
        vocab.insert(k.clone(), v.clone());
    }
    for id in learned.len()..first_special {
        vocab.insert(format!("<|filler_{id}|>"), json!(id));
    }
    t["model"]["vocab"] = Value::Object(vocab);
    // Ids between the model's special tokens (Qwen2.5's own 22, before InternVL's) get
    // reserved placeholders: added tokens must be contiguous to keep their ids.
    let top = s
        .specials
        .iter()
        .map(|(_, id)| *id as usize)
        .max()
        .unwrap_or(0);
    t["added_tokens"] = (first_special..=top)
        .map(|id| {
            let content = s
                .specials
                .iter()
                .find(|(_, i)| *i as usize == id)
                .map_or(format!("<|reserved_{id}|>"), |(c, _)| c.to_string());
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    if top >= s.llm.vocab {
        return Err(Error::input(
            "a special token id lies beyond the vocabulary",
        ));
    }
    Ok(t)
}

/// What `synth` wrote.
pub struct SynthReport {
    pub parameters: usize,
    /// The LinVT module's parameters and heads, when one was written.
    pub linvt: Option<(usize, usize)>,
}

/// Writes the stand-in of `like` into `out` (created if missing); with `linvt`, also a seeded
/// LinVT module of `queries` queries (official preset) for its LLM.
pub fn synth(
    like: &str,
    out: &Path,
    seed: u64,
    linvt: Option<(&Path, usize)>,
) -> Result<SynthReport> {
    let s = spec(like)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let write_json = |name: &str, v: &Value| -> Result<()> {
        let p = out.join(name);
        let text = serde_json::to_string_pretty(v).unwrap_or_default();
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
    };
    write_json("config.json", &config_json(&s))?;
    write_json(
        "generation_config.json",
        &json!({"eos_token_id": s.eos, "bos_token_id": s.llm.bos}),
    )?;
    write_json("tokenizer.json", &tokenizer_json(&s)?)?;
    if s.qwen.is_some() {
        let p = crate::vlm::qwen2_vl_preprocess::Qwen2Processor::default();
        write_json(
            "preprocessor_config.json",
            &json!({
                "min_pixels": p.min_pixels, "max_pixels": p.max_pixels, "patch_size": 14,
                "temporal_patch_size": 2, "merge_size": 2, "image_mean": p.mean,
                "image_std": p.std, "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2VLProcessor"
            }),
        )?;
    }
    let mut rng = SeededRng::new(seed);
    let mut parameters = 0;
    let tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors(&s)
        .into_iter()
        .map(|(name, shape, init)| {
            let n: usize = shape.iter().product();
            parameters += n;
            let bytes = match init {
                Init::Const(c) => bf16_bytes(std::iter::repeat_n(c, n)),
                Init::Uniform(a) => bf16_bytes((0..n).map(|_| rng.symmetric(a))),
                Init::Linear(fan_in) => {
                    let a = (3.0 / fan_in as f32).sqrt();
                    bf16_bytes((0..n).map(|_| rng.symmetric(a)))
                }
            };
            (name, Dtype::BF16, shape, bytes)
        })
        .collect();
    write_safetensors(&out.join("model.safetensors"), &tensors, None)?;
    drop(tensors);
    let linvt = match linvt {
        None => None,
        Some((path, queries)) => Some(write_linvt(path, s.llm.hidden, queries, seed + 1)?),
    };
    Ok(SynthReport { parameters, linvt })
}

/// A seeded LinVT module of the official preset for an LLM of width `embed`: bf16 weights
/// under the official keys, its config in the metadata (`linvt_config`), as `--linvt` reads it.
/// The official preset's 4 heads, or more where its head dimension would exceed what the
/// kernels take (InternVL2-2B's width 2048 / 4 = 512 > `MAX_HEAD_DIM`: 8 heads).
/// Returns (parameters, heads).
pub fn write_linvt(path: &Path, embed: usize, queries: usize, seed: u64) -> Result<(usize, usize)> {
    write_linvt_with(path, embed, queries, seed, &ConfigPatch::default())
}

/// [`write_linvt`] with `extra` configuration fields over the official preset's.
pub fn write_linvt_with(
    path: &Path,
    embed: usize,
    queries: usize,
    seed: u64,
    extra: &ConfigPatch,
) -> Result<(usize, usize)> {
    let heads = 4.max(embed.div_ceil(crate::config::MAX_HEAD_DIM));
    let patch = extra.clone().over(&ConfigPatch {
        preset: Some("official".to_string()),
        embed_size: Some(embed),
        num_heads: Some(heads),
        num_video_query_token: Some(queries),
        ..Default::default()
    });
    let cfg = patch.resolve()?;
    let params = LinvtParams::seeded(&cfg, queries, seed);
    let mut parameters = 0;
    let tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = params
        .named()
        .into_iter()
        .map(|(name, t)| {
            parameters += t.len();
            let shape = if name == "query_tokens" {
                vec![1, t.rows(), t.cols()]
            } else {
                t.shape().to_vec()
            };
            (
                name,
                Dtype::BF16,
                shape,
                bf16_bytes(t.data().iter().copied()),
            )
        })
        .collect();
    let meta = [(
        "linvt_config".to_string(),
        serde_json::to_string(&cfg).unwrap_or_default(),
    )]
    .into_iter()
    .collect();
    write_safetensors(path, &tensors, Some(meta))?;
    Ok((parameters, heads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_have_the_published_sizes_configs_and_special_tokens() {
        // The parameter counts the published checkpoints list, at their precision:
        // InternVL2-1B and 2.5-1B 938 M, InternVL2-2B 2.21 B.
        for (like, published, unit, context_id) in [
            ("internvl2-1b", 938.0, 1e6, 151648),
            ("internvl2.5-1b", 938.0, 1e6, 151667),
            ("internvl2-2b", 221.0, 1e7, 92546),
        ] {
            let s = spec(like).unwrap();
            let n: usize = tensors(&s)
                .iter()
                .map(|(_, shape, _)| shape.iter().product::<usize>())
                .sum();
            assert_eq!((n as f64 / unit).round(), published, "{like}: {n}");
            let cfg =
                crate::vlm::config::VlmConfig::from_json(&config_json(&s), vec![], None).unwrap();
            assert_eq!(cfg.internvl().unwrap().tokens_per_frame(), 256);
            assert_eq!(cfg.llm.vocab_size, s.llm.vocab);
            let json = serde_json::to_vec(&tokenizer_json(&s).unwrap()).unwrap();
            let tok = tokenizers::Tokenizer::from_bytes(json).unwrap();
            assert_eq!(tok.token_to_id("<IMG_CONTEXT>"), Some(context_id), "{like}");
            assert_eq!(
                tok.get_vocab_size(true),
                s.specials.last().unwrap().1 as usize + 1
            );
        }
        // Qwen2-VL-2B 2.21 B, Qwen2.5-VL-3B 3.75 B (the hub pages' counts; tied embeddings).
        for (like, published) in [("qwen2-vl-2b", 221.0), ("qwen2.5-vl-3b", 375.0)] {
            let s = spec(like).unwrap();
            let n: usize = tensors(&s)
                .iter()
                .map(|(_, shape, _)| shape.iter().product::<usize>())
                .sum();
            assert_eq!((n as f64 / 1e7).round(), published, "{like}: {n}");
            let cfg =
                crate::vlm::config::VlmConfig::from_json(&config_json(&s), vec![], None).unwrap();
            let q = cfg.qwen2_vl().unwrap();
            assert_eq!((q.vision.width, q.vision.out_width), (1280, s.llm.hidden));
            assert_eq!(cfg.llm.rope.sections, Some(vec![16, 24, 24]));
            let json = serde_json::to_vec(&tokenizer_json(&s).unwrap()).unwrap();
            let tok = tokenizers::Tokenizer::from_bytes(json).unwrap();
            assert_eq!(tok.token_to_id("<|image_pad|>"), Some(151655), "{like}");
            assert_eq!(tok.token_to_id("<|video_pad|>"), Some(151656), "{like}");
        }
        let err = spec("internvl9-1b").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("internvl2-1b")));
    }
}
