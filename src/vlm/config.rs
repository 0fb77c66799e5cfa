//! The model directory's `config.json` (InternVLChatConfig): vision encoder, LLM and the glue
//! between them, validated against what this crate implements.

use serde_json::Value;

use crate::error::{Error, Result};

/// Vision encoders this crate runs (`vision_config.model_type`).
pub const SUPPORTED_VISION: &[&str] = &["intern_vit_6b"];
/// Decoder families (`llm_config.architectures[0]`); each is one file in `src/vlm/`.
pub const SUPPORTED_LLMS: &[&str] = &["Qwen2ForCausalLM", "InternLM2ForCausalLM"];
/// Chat templates (`template`).
pub const SUPPORTED_TEMPLATES: &[&str] = &["Hermes-2", "internlm2-chat"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    LayerNorm,
    RmsNorm,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    /// Side of the square input image the encoder runs at (`force_image_size` wins).
    pub image_size: usize,
    /// Side of the position-embedding grid the weights were trained for (`image_size`).
    pub stored_image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub hidden_size: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub qkv_bias: bool,
    pub qk_normalization: bool,
    pub norm: NormKind,
    pub eps: f32,
}

impl VisionConfig {
    /// Patches per side at the configured image size.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmFamily {
    Qwen2,
    InternLm2,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlmConfig {
    pub family: LlmFamily,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab_size: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f32,
    /// The context length (`max_position_embeddings`).
    pub max_positions: usize,
    pub tie_word_embeddings: bool,
    pub eos_token_ids: Vec<u32>,
}

impl LlmConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.heads
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsVersion {
    V1,
    V2,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VlmConfig {
    pub vision: VisionConfig,
    pub llm: LlmConfig,
    /// Pixel-shuffle factor s = 1/downsample_ratio: s×s patches become one token.
    pub shuffle: usize,
    /// Encoder layers actually run (from `select_layer`).
    pub vision_layers_used: usize,
    pub template: String,
    pub ps_version: PsVersion,
    pub num_video_query_token: usize,
}

impl VlmConfig {
    /// Visual tokens per frame after pixel shuffle.
    pub fn tokens_per_frame(&self) -> usize {
        let g = self.vision.grid() / self.shuffle;
        g * g
    }
}

fn cfg_err(what: impl Into<String>) -> Error {
    Error::config(format!("config.json: {}", what.into()))
}

fn get<'a>(v: &'a Value, key: &str, ctx: &str) -> Result<&'a Value> {
    v.get(key)
        .ok_or_else(|| cfg_err(format!("`{ctx}{key}` is missing")))
}
fn usize_of(v: &Value, key: &str, ctx: &str) -> Result<usize> {
    get(v, key, ctx)?
        .as_u64()
        .map(|x| x as usize)
        .ok_or_else(|| cfg_err(format!("`{ctx}{key}` must be a whole number")))
}
fn f64_of(v: &Value, key: &str, ctx: &str) -> Result<f64> {
    get(v, key, ctx)?
        .as_f64()
        .ok_or_else(|| cfg_err(format!("`{ctx}{key}` must be a number")))
}
fn bool_or(v: &Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(default)
}
fn str_or<'a>(v: &'a Value, key: &str, default: &'a str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or(default)
}
/// An id or a list of ids (as `eos_token_id` may be).
pub(crate) fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn unsupported(what: &str, got: &str, supported: &[&str]) -> Error {
    Error::config(format!(
        "unsupported {what} `{got}`; supported: {}",
        supported.join(", ")
    ))
}

impl VlmConfig {
    /// Parses and validates `config.json`. `generation_eos` are the ids of
    /// `generation_config.json` (they win over `llm_config.eos_token_id`).
    pub fn from_json(v: &Value, generation_eos: Vec<u32>) -> Result<Self> {
        let arch = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("InternVLChatModel");
        if arch != "InternVLChatModel" {
            return Err(unsupported(
                "architecture",
                arch,
                &["InternVLChatModel (with linvt_config)"],
            ));
        }
        let vc = get(v, "vision_config", "")?;
        let lc = get(v, "llm_config", "")?;
        let vision = Self::vision(v, vc)?;
        let llm = Self::llm(lc, generation_eos)?;

        let ratio = f64_of(v, "downsample_ratio", "")?;
        let shuffle = (1.0 / ratio).round() as usize;
        if ratio <= 0.0 || shuffle == 0 || ((1.0 / ratio) - shuffle as f64).abs() > 1e-6 {
            return Err(cfg_err(format!(
                "downsample_ratio {ratio} must be 1/s for a whole number s"
            )));
        }
        if !vision.grid().is_multiple_of(shuffle) || vision.grid() == 0 {
            return Err(cfg_err(format!(
                "the {0}×{0} patch grid cannot be pixel-shuffled by {shuffle} (downsample_ratio {ratio})",
                vision.grid()
            )));
        }
        let select = v.get("select_layer").and_then(Value::as_i64).unwrap_or(-1);
        let n = vision.layers as i64;
        let used = if select < 0 { n + 1 + select } else { select };
        if used < 1 || used > n {
            return Err(cfg_err(format!(
                "select_layer {select} is outside the encoder's {n} layers"
            )));
        }
        let template = str_or(v, "template", "Hermes-2").to_string();
        if !SUPPORTED_TEMPLATES.contains(&template.as_str()) {
            return Err(unsupported("chat template", &template, SUPPORTED_TEMPLATES));
        }
        let ps_version = match str_or(v, "ps_version", "v1") {
            "v1" => PsVersion::V1,
            "v2" => PsVersion::V2,
            other => return Err(unsupported("ps_version", other, &["v1", "v2"])),
        };
        let linvt = get(v, "linvt_config", "")?;
        let q_default = v
            .get("num_video_query_token")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        let num_video_query_token = linvt
            .get("num_video_query_token")
            .and_then(Value::as_u64)
            .map_or(q_default, |x| x as usize);
        if num_video_query_token == 0 {
            return Err(cfg_err(
                "`num_video_query_token` is missing or 0; LinVT needs at least one query",
            ));
        }
        if let Some(e) = linvt.get("embed_size").and_then(Value::as_u64) {
            if e as usize != llm.hidden_size {
                return Err(cfg_err(format!(
                    "linvt_config.embed_size {e} differs from the LLM hidden size {}; LinVT tokens go straight into the LLM, so they must match",
                    llm.hidden_size
                )));
            }
        }
        Ok(VlmConfig {
            vision,
            llm,
            shuffle,
            vision_layers_used: used as usize,
            template,
            ps_version,
            num_video_query_token,
        })
    }

    fn vision(top: &Value, vc: &Value) -> Result<VisionConfig> {
        let ctx = "vision_config.";
        let model_type = str_or(vc, "model_type", "intern_vit_6b");
        if !SUPPORTED_VISION.contains(&model_type) {
            return Err(unsupported("vision encoder", model_type, SUPPORTED_VISION));
        }
        let act = str_or(vc, "hidden_act", "gelu");
        if act != "gelu" {
            return Err(unsupported("vision activation", act, &["gelu"]));
        }
        let norm = match str_or(vc, "norm_type", "rms_norm") {
            "layer_norm" => NormKind::LayerNorm,
            "rms_norm" => NormKind::RmsNorm,
            other => {
                return Err(unsupported(
                    "vision norm_type",
                    other,
                    &["layer_norm", "rms_norm"],
                ))
            }
        };
        let stored = usize_of(vc, "image_size", ctx)?;
        let image_size = top
            .get("force_image_size")
            .and_then(Value::as_u64)
            .map_or(stored, |x| x as usize);
        let patch_size = usize_of(vc, "patch_size", ctx)?;
        let hidden_size = usize_of(vc, "hidden_size", ctx)?;
        let heads = usize_of(vc, "num_attention_heads", ctx)?;
        if patch_size == 0
            || !image_size.is_multiple_of(patch_size)
            || !stored.is_multiple_of(patch_size)
        {
            return Err(cfg_err(format!(
                "image size {image_size} (stored {stored}) is not a multiple of patch_size {patch_size}"
            )));
        }
        if heads == 0 || !hidden_size.is_multiple_of(heads) {
            return Err(cfg_err(format!(
                "vision hidden_size {hidden_size} is not divisible by {heads} heads"
            )));
        }
        Ok(VisionConfig {
            image_size,
            stored_image_size: stored,
            patch_size,
            channels: vc.get("num_channels").and_then(Value::as_u64).unwrap_or(3) as usize,
            hidden_size,
            heads,
            intermediate_size: usize_of(vc, "intermediate_size", ctx)?,
            layers: usize_of(vc, "num_hidden_layers", ctx)?,
            qkv_bias: bool_or(vc, "qkv_bias", true),
            qk_normalization: bool_or(vc, "qk_normalization", false),
            norm,
            eps: vc
                .get("layer_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6) as f32,
        })
    }

    fn llm(lc: &Value, generation_eos: Vec<u32>) -> Result<LlmConfig> {
        let ctx = "llm_config.";
        let arch = lc
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("(none)");
        let family = match arch {
            "Qwen2ForCausalLM" => LlmFamily::Qwen2,
            "InternLM2ForCausalLM" => LlmFamily::InternLm2,
            other => return Err(unsupported("LLM architecture", other, SUPPORTED_LLMS)),
        };
        let act = str_or(lc, "hidden_act", "silu");
        if act != "silu" {
            return Err(unsupported("LLM activation", act, &["silu"]));
        }
        let hidden_size = usize_of(lc, "hidden_size", ctx)?;
        let heads = usize_of(lc, "num_attention_heads", ctx)?;
        let kv_heads = lc
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map_or(heads, |x| x as usize);
        if heads == 0
            || kv_heads == 0
            || !hidden_size.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(cfg_err(format!(
                "LLM hidden_size {hidden_size}, {heads} heads and {kv_heads} KV heads do not divide evenly"
            )));
        }
        if !(hidden_size / heads).is_multiple_of(2) {
            return Err(cfg_err("the LLM head dimension must be even for RoPE"));
        }
        let eos = if generation_eos.is_empty() {
            ids_of(lc.get("eos_token_id"))
        } else {
            generation_eos
        };
        Ok(LlmConfig {
            family,
            hidden_size,
            intermediate_size: usize_of(lc, "intermediate_size", ctx)?,
            layers: usize_of(lc, "num_hidden_layers", ctx)?,
            heads,
            kv_heads,
            vocab_size: usize_of(lc, "vocab_size", ctx)?,
            rope_theta: lc
                .get("rope_theta")
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            rms_norm_eps: lc
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6) as f32,
            max_positions: lc
                .get("max_position_embeddings")
                .and_then(Value::as_u64)
                .unwrap_or(32_768) as usize,
            tie_word_embeddings: bool_or(lc, "tie_word_embeddings", false),
            eos_token_ids: eos,
        })
    }
}
