//! The model directory's `config.json`, validated against what this crate implements: the LLM,
//! the chat template, LinVT's query count when the checkpoint carries LinVT (`linvt_config`),
//! and the host's own part ([`Host`]): InternVL (`InternVLChatConfig` as OpenGVLab publishes
//! it, or the transformers-native `InternVLConfig`) or Qwen2-VL / Qwen2.5-VL.

use serde_json::Value;

use crate::error::{Error, Result};

/// Vision encoders this crate runs (`vision_config.model_type`).
pub const SUPPORTED_VISION: &[&str] = &["intern_vit_6b"];
/// Chat templates (`template`); see `prompt::Template::by_name`.
pub const SUPPORTED_TEMPLATES: &[&str] = &[
    "Hermes-2",
    "internlm2-chat",
    "phi3-chat",
    "internvl2_5",
    HF_TEMPLATE,
    QWEN2_VL_TEMPLATE,
];
/// The template of transformers-native (-hf) checkpoints: their chat template's chatml turns,
/// without a system turn.
pub const HF_TEMPLATE: &str = "internvl-hf";
/// Checkpoint layouts (`architectures[0]`).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "InternVLChatModel",
    "InternVLForConditionalGeneration",
    "Qwen2VLForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration",
];
/// The chat template of Qwen2-VL and Qwen2.5-VL checkpoints.
pub const QWEN2_VL_TEMPLATE: &str = "qwen2-vl";

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

pub use super::decoder::{LlmFamily, SUPPORTED_LLMS};

#[derive(Clone, Debug, PartialEq)]
pub struct LlmConfig {
    pub family: LlmFamily,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    /// The context length (`max_position_embeddings`).
    pub max_positions: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections with biases (Qwen2 always; LLaMA when `attention_bias`).
    pub attention_bias: bool,
    pub eos_token_ids: Vec<u32>,
    /// The rotary embedding's frequencies (RoPE scaling included).
    pub rope: super::rope::RopeScaling,
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

/// InternVL's dynamic tiling of an image (`dynamic_preprocess`): the closest aspect-ratio grid
/// of `min_tiles..=max_tiles` tiles, plus a thumbnail of the whole image when there is more
/// than one tile and `thumbnail` is set. Without `dynamic`, an image is one tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageTiling {
    pub dynamic: bool,
    pub min_tiles: usize,
    pub max_tiles: usize,
    pub thumbnail: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VlmConfig {
    pub llm: LlmConfig,
    pub template: String,
    /// LinVT's query count when the checkpoint carries LinVT (`linvt_config`); None for a plain
    /// checkpoint (a LinVT plug-in brings its own).
    pub num_video_query_token: Option<usize>,
    /// The host's vision side and its glue to the LLM.
    pub host: Host,
}

/// What differs between host families.
#[derive(Clone, Debug, PartialEq)]
pub enum Host {
    InternVl(InternVlConfig),
    Qwen2Vl(Qwen2VlConfig),
}

/// InternVL's vision side: InternViT, pixel shuffle, `mlp1`, tiling.
#[derive(Clone, Debug, PartialEq)]
pub struct InternVlConfig {
    pub vision: VisionConfig,
    /// Pixel-shuffle factor s = 1/downsample_ratio: s×s patches become one token.
    pub shuffle: usize,
    /// Encoder layers actually run (from `select_layer`).
    pub vision_layers_used: usize,
    pub ps_version: PsVersion,
    pub tiling: ImageTiling,
    /// Weights in the transformers-native layout (`InternVLForConditionalGeneration`), else
    /// the remote-code layout (see `layout.rs`).
    pub hf_layout: bool,
}

impl InternVlConfig {
    /// Visual tokens per frame (tile) after pixel shuffle.
    pub fn tokens_per_frame(&self) -> usize {
        let g = self.vision.grid() / self.shuffle;
        g * g
    }
}

/// Qwen2-VL's and Qwen2.5-VL's vision side and special tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Qwen2VlConfig {
    pub vision: super::qwen2_vit::Qwen2VisionConfig,
    pub image_token: u32,
    pub video_token: u32,
    pub vision_start_token: u32,
    pub vision_end_token: u32,
    /// Qwen2.5-VL: a video's temporal positions advance by this many per second.
    pub tokens_per_second: Option<f64>,
    /// The image and video processors' settings.
    pub processor: super::qwen2_vl_preprocess::Qwen2Processor,
}

impl VlmConfig {
    /// The InternVL part, or an error for another host.
    pub fn internvl(&self) -> Result<&InternVlConfig> {
        match &self.host {
            Host::InternVl(c) => Ok(c),
            Host::Qwen2Vl(_) => Err(Error::input(
                "this needs an InternVL model, and this one is Qwen2-VL",
            )),
        }
    }

    /// The Qwen2-VL part, or an error for another host.
    pub fn qwen2_vl(&self) -> Result<&Qwen2VlConfig> {
        match &self.host {
            Host::Qwen2Vl(c) => Ok(c),
            Host::InternVl(_) => Err(Error::input(
                "this needs a Qwen2-VL model, and this one is InternVL",
            )),
        }
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
    /// `generation_config.json` (they win over `llm_config.eos_token_id`); `preprocessor` is
    /// `preprocessor_config.json` (a -hf checkpoint's tiling settings).
    pub fn from_json(
        v: &Value,
        generation_eos: Vec<u32>,
        preprocessor: Option<&Value>,
    ) -> Result<Self> {
        let arch = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Value::as_str)
            .unwrap_or("InternVLChatModel");
        match arch {
            "InternVLChatModel" => Self::from_remote(v, generation_eos, false),
            "InternVLForConditionalGeneration" => {
                Self::from_remote(&hf_as_remote(v, preprocessor)?, generation_eos, true)
            }
            "Qwen2VLForConditionalGeneration" => {
                Self::from_qwen2_vl(v, generation_eos, false, preprocessor)
            }
            "Qwen2_5_VLForConditionalGeneration" => {
                Self::from_qwen2_vl(v, generation_eos, true, preprocessor)
            }
            other => Err(unsupported("architecture", other, SUPPORTED_ARCHITECTURES)),
        }
    }

    /// The remote-code `config.json` (`InternVLChatConfig`).
    fn from_remote(v: &Value, generation_eos: Vec<u32>, hf_layout: bool) -> Result<Self> {
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
        let num_video_query_token = match v.get("linvt_config") {
            None => None,
            Some(linvt) => {
                let q_default = v
                    .get("num_video_query_token")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as usize;
                let q = linvt
                    .get("num_video_query_token")
                    .and_then(Value::as_u64)
                    .map_or(q_default, |x| x as usize);
                if q == 0 {
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
                Some(q)
            }
        };
        let min_tiles = v
            .get("min_dynamic_patch")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        let max_tiles = v
            .get("max_dynamic_patch")
            .and_then(Value::as_u64)
            .unwrap_or(12) as usize;
        if min_tiles == 0 || max_tiles < min_tiles {
            return Err(cfg_err(format!(
                "min_dynamic_patch {min_tiles} and max_dynamic_patch {max_tiles} must satisfy 1 ≤ min ≤ max"
            )));
        }
        let tiling = ImageTiling {
            dynamic: bool_or(v, "dynamic_image_size", false),
            min_tiles,
            max_tiles,
            thumbnail: bool_or(v, "use_thumbnail", false),
        };
        Ok(VlmConfig {
            llm,
            template,
            num_video_query_token,
            host: Host::InternVl(InternVlConfig {
                vision,
                shuffle,
                vision_layers_used: used as usize,
                ps_version,
                tiling,
                hf_layout,
            }),
        })
    }

    /// A Qwen2-VL (`qwen2_5`: Qwen2.5-VL) `config.json`: the text fields at the top level (the
    /// hub's form) or in `text_config` (as transformers ≥ 4.52 saves it, which also keeps them
    /// at the top level), `vision_config`, the special-token ids.
    fn from_qwen2_vl(
        v: &Value,
        generation_eos: Vec<u32>,
        qwen2_5: bool,
        preprocessor: Option<&Value>,
    ) -> Result<Self> {
        let mut text = v.get("text_config").cloned().unwrap_or_else(|| v.clone());
        // The decoder is Qwen2's; the file names its own architecture.
        text["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
        for key in ["tie_word_embeddings", "rope_scaling", "rope_theta"] {
            if text.get(key).is_none() {
                if let Some(x) = v.get(key) {
                    text[key] = x.clone();
                }
            }
        }
        // transformers 5: `rope_parameters` {rope_type, mrope_section, rope_theta}.
        if let Some(rp) = text.get("rope_parameters").cloned() {
            if text.get("rope_scaling").is_none() {
                text["rope_scaling"] = rp.clone();
            }
            if let (None, Some(theta)) = (text.get("rope_theta"), rp.get("rope_theta")) {
                text["rope_theta"] = theta.clone();
            }
        }
        if text
            .get("rope_scaling")
            .and_then(|r| r.get("mrope_section"))
            .is_none()
        {
            return Err(cfg_err(
                "rope_scaling.mrope_section is missing; Qwen2-VL's decoder rotates by three position axes",
            ));
        }
        let llm = Self::llm(&text, generation_eos)?;
        let vc = get(v, "vision_config", "")?;
        let vision = super::qwen2_vit::Qwen2VisionConfig::from_json(vc, qwen2_5)?;
        if vision.out_width != llm.hidden_size {
            return Err(cfg_err(format!(
                "the vision merger's output width {} differs from the LLM hidden size {}",
                vision.out_width, llm.hidden_size
            )));
        }
        let token = |key: &str, default: u32| -> u32 {
            v.get(key)
                .and_then(Value::as_u64)
                .map_or(default, |x| x as u32)
        };
        Ok(VlmConfig {
            llm,
            template: QWEN2_VL_TEMPLATE.to_string(),
            num_video_query_token: v
                .get("linvt_config")
                .and_then(|l| l.get("num_video_query_token"))
                .and_then(Value::as_u64)
                .map(|q| q as usize),
            host: Host::Qwen2Vl(Qwen2VlConfig {
                vision,
                image_token: token("image_token_id", 151655),
                video_token: token("video_token_id", 151656),
                vision_start_token: token("vision_start_token_id", 151652),
                vision_end_token: token("vision_end_token_id", 151653),
                tokens_per_second: if qwen2_5 {
                    Some(
                        vc.get("tokens_per_second")
                            .and_then(Value::as_f64)
                            .unwrap_or(2.0),
                    )
                } else {
                    None
                },
                processor: super::qwen2_vl_preprocess::Qwen2Processor::from_json(
                    preprocessor,
                    None,
                )?,
            }),
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
        let family = LlmFamily::from_architecture(arch)
            .ok_or_else(|| unsupported("LLM architecture", arch, SUPPORTED_LLMS))?;
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
        let head_dim = hidden_size / heads;
        let attention_bias = match family {
            LlmFamily::Qwen2 => true,
            _ => bool_or(lc, "attention_bias", false),
        };
        let rope_theta = lc
            .get("rope_theta")
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0);
        let max_positions = lc
            .get("max_position_embeddings")
            .and_then(Value::as_u64)
            .unwrap_or(32_768) as usize;
        let rope = super::rope::RopeScaling::from_config(lc, head_dim, rope_theta, max_positions)
            .map_err(|e| cfg_err(format!("llm_config.{e}")))?;
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
            rms_norm_eps: lc
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6) as f32,
            max_positions,
            tie_word_embeddings: bool_or(lc, "tie_word_embeddings", false),
            attention_bias,
            eos_token_ids: eos,
            rope,
        })
    }
}

/// A -hf `config.json` (`InternVLConfig`: `vision_config` of `internvl_vision`, `text_config`)
/// rewritten as the remote-code config it was converted from, so one parser validates both.
/// Its tiling comes from `preprocessor_config.json` (`crop_to_patches`, which InternVL's
/// processor turns on by default, `min_patches`, `max_patches`; a thumbnail always).
fn hf_as_remote(v: &Value, preprocessor: Option<&Value>) -> Result<Value> {
    let vc = get(v, "vision_config", "")?;
    let tc = get(v, "text_config", "")?;
    // image_size / patch_size: a number or a square [h, w].
    let side = |key: &str| -> Result<u64> {
        let ctx = "vision_config.";
        match get(vc, key, ctx)? {
            Value::Number(n) => n.as_u64(),
            Value::Array(a) if a.len() == 2 && a[0] == a[1] => a[0].as_u64(),
            _ => None,
        }
        .ok_or_else(|| {
            cfg_err(format!(
                "`vision_config.{key}` must be a number or a square [h, w]"
            ))
        })
    };
    let strategy = str_or(v, "vision_feature_select_strategy", "default");
    if strategy != "default" {
        return Err(unsupported(
            "vision_feature_select_strategy",
            strategy,
            &["default"],
        ));
    }
    let family = match str_or(tc, "model_type", "(none)") {
        "qwen2" => "Qwen2ForCausalLM",
        "llama" => "LlamaForCausalLM",
        "phi3" => "Phi3ForCausalLM",
        other => {
            return Err(unsupported(
                "text_config.model_type",
                other,
                &["qwen2", "llama", "phi3"],
            ))
        }
    };
    let mut llm = tc.clone();
    llm["architectures"] = serde_json::json!([family]);
    // `InternVLConfig` ties by default; a checkpoint's own lm_head is read whenever present.
    llm["tie_word_embeddings"] = (bool_or(tc, "tie_word_embeddings", false)
        || bool_or(v, "tie_word_embeddings", true))
    .into();
    let pre = preprocessor.cloned().unwrap_or(Value::Null);
    Ok(serde_json::json!({
        "architectures": ["InternVLChatModel"],
        "vision_config": {
            "model_type": "intern_vit_6b",
            "hidden_size": get(vc, "hidden_size", "vision_config.")?,
            "num_hidden_layers": get(vc, "num_hidden_layers", "vision_config.")?,
            "num_attention_heads": get(vc, "num_attention_heads", "vision_config.")?,
            "intermediate_size": get(vc, "intermediate_size", "vision_config.")?,
            "image_size": side("image_size")?,
            "patch_size": side("patch_size")?,
            "num_channels": vc.get("num_channels").cloned().unwrap_or(3.into()),
            "hidden_act": str_or(vc, "hidden_act", "gelu"),
            "norm_type": str_or(vc, "norm_type", "layer_norm"),
            "layer_norm_eps": vc.get("layer_norm_eps").cloned().unwrap_or(1e-6.into()),
            "qkv_bias": bool_or(vc, "attention_bias", false),
            "qk_normalization": bool_or(vc, "use_qk_norm", false),
        },
        "llm_config": llm,
        "downsample_ratio": v.get("downsample_ratio").cloned().unwrap_or(0.5.into()),
        "select_layer": v.get("vision_feature_layer").cloned().unwrap_or((-1).into()),
        "template": HF_TEMPLATE,
        "ps_version": "v2",
        "dynamic_image_size": bool_or(&pre, "crop_to_patches", true),
        "use_thumbnail": true,
        "min_dynamic_patch": pre.get("min_patches").cloned().unwrap_or(1.into()),
        "max_dynamic_patch": pre.get("max_patches").cloned().unwrap_or(12.into()),
    }))
}
