//! LinVT configuration: the two presets, the ablation variants, and how partial configs from
//! flags, a `--config` file and a weights file's metadata are merged.

use std::collections::HashMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest head dimension the attention kernels support (E/heads).
pub const MAX_HEAD_DIM: usize = 256;
/// Most pooling scales one config may have (the pooling kernel's parameter block holds 8).
pub const MAX_SCALES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Bit-compatible with the released PyTorch module (batch 1).
    Official,
    /// The method as the paper describes it.
    Paper,
}

impl FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "official" => Ok(Preset::Official),
            "paper" => Ok(Preset::Paper),
            _ => Err(Error::UnknownPreset(s.to_string())),
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Preset::Official => "official",
            Preset::Paper => "paper",
        })
    }
}

/// Order of the two attentions inside one SVR layer. The parameters are always named
/// `spatial_attention` (first) and `temporal_attention` (second).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SvrOrder {
    /// Released module (batch_first=False): first over the T frames, then over the N tokens.
    FramesThenTokens,
    /// The paper: first over the N tokens of a frame, then over the T frames.
    TokensThenFrames,
}

/// Which tensor the selected tokens are gathered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatherFrom {
    /// The SVR-refined tokens (released module).
    Refined,
    /// The original input tokens: outputs stay convex combinations of inputs (paper).
    Input,
}

/// Order of the selected tokens fed to pooling and TTA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionOrder {
    /// Descending score (released module).
    Score,
    /// Ascending flat index t·N + n: spatio-temporal order (paper).
    Index,
}

/// Multi-scale variants from the paper's ablation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MultiScale {
    /// No pooling: TTA on the k selected tokens.
    SingleA,
    /// Pooling after TTA, over the query outputs.
    MultiA,
    /// Pooling before TTA, scales concatenated, one query set (released module).
    MultiB,
    /// Pooling before TTA, scale-specific queries, TTA once per scale with shared weights (paper).
    MultiC,
}

/// How the TTA's query self-attention behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuerySelfAttention {
    /// Sequence length 1 per query (released module): out_proj(W_v q + b_v).
    PerQuery,
    /// Attention across all queries (paper).
    AcrossQueries,
}

/// Where LinVT's tokens sit on a host whose rotary positions follow time and space (Qwen2-VL's
/// three axes). The paper does not say; a trained checkpoint states the one it was trained
/// with (docs/linvt-reference.md, "LinVT on Qwen2-VL").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VideoPositions {
    /// As text: each token one step further on all axes (the default: LinVT's tokens are
    /// query summaries with no place in the frame).
    #[default]
    Text,
    /// As one row of a video grid: one temporal and one height position, the tokens along the
    /// width axis (the span takes as many positions as a frame row would).
    Row,
}

/// A complete, validated LinVT configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinvtConfig {
    pub preset: Preset,
    pub embed_size: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    pub top_k: usize,
    pub pool_scales: Vec<usize>,
    pub multi_scale: MultiScale,
    /// Multi-C only: how the query tokens split over the scales (sums to Q).
    pub queries_per_scale: Option<Vec<usize>>,
    pub svr_order: SvrOrder,
    pub gather_from: GatherFrom,
    pub selection_order: SelectionOrder,
    pub query_self_attention: QuerySelfAttention,
    pub layer_norm_eps: f32,
    /// Where the output tokens sit on a multi-axis-RoPE host (Qwen2-VL).
    #[serde(default)]
    pub video_positions: VideoPositions,
}

/// A partial configuration: any source may set any field. Field names follow the released
/// code's `linvt_config` (`use_multi_scale`, `num_video_query_token`) plus ours.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ConfigPatch {
    pub preset: Option<String>,
    pub embed_size: Option<usize>,
    pub num_heads: Option<usize>,
    pub num_layers: Option<usize>,
    pub top_k: Option<usize>,
    pub use_multi_scale: Option<bool>,
    pub multi_scale: Option<MultiScale>,
    pub pool_scales: Option<Vec<usize>>,
    pub queries_per_scale: Option<Vec<usize>>,
    pub num_video_query_token: Option<usize>,
    pub svr_order: Option<SvrOrder>,
    pub gather_from: Option<GatherFrom>,
    pub selection_order: Option<SelectionOrder>,
    pub query_self_attention: Option<QuerySelfAttention>,
    pub layer_norm_eps: Option<f32>,
    pub video_positions: Option<VideoPositions>,
}

macro_rules! take_first {
    ($self:ident, $lower:ident; $($f:ident),*) => { $( if $self.$f.is_none() { $self.$f = $lower.$f.clone(); } )* };
}

impl ConfigPatch {
    /// Parses a JSON object (a `--config` file or a `linvt_config` value).
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::config(format!("{origin}: {e}")))
    }

    /// Parses a configuration a user wrote (`--config`, the browser's config object): like
    /// [`Self::from_json`], but a field this configuration does not have is refused with the
    /// list of those it has, rather than silently ignored.
    pub fn from_user_json(text: &str, origin: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::config(format!("{origin} is not valid JSON: {e}")))?;
        let Some(given) = value.as_object() else {
            return Err(Error::config(format!(
                "{origin} must be an object such as {{\"top_k\": 64}}; got {value}"
            )));
        };
        let known = serde_json::to_value(ConfigPatch::default()).unwrap_or_default();
        let known: Vec<&str> = known
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if let Some(bad) = given.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Error::config(format!(
                "{origin} has an unknown field `{bad}`; the fields are {}",
                known.join(", ")
            )));
        }
        Self::from_json(text, origin)
    }

    /// Reads a safetensors metadata map: a JSON string under `linvt_config`, or the plain keys
    /// `embed_size`, `num_heads`, `num_layers`, `top_k`, `use_multi_scale`, `preset`.
    pub fn from_metadata(meta: &HashMap<String, String>, origin: &str) -> Result<Self> {
        if let Some(json) = meta.get("linvt_config") {
            return Self::from_json(json, &format!("{origin} metadata `linvt_config`"));
        }
        let num = |k: &str| -> Result<Option<usize>> {
            meta.get(k)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::config(format!(
                            "{origin} metadata `{k}` = `{v}` is not a whole number"
                        ))
                    })
                })
                .transpose()
        };
        let use_multi_scale = match meta
            .get("use_multi_scale")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => None,
            Some(v) if v == "true" || v == "1" => Some(true),
            Some(v) if v == "false" || v == "0" => Some(false),
            Some(v) => {
                return Err(Error::config(format!(
                    "{origin} metadata `use_multi_scale` = `{v}` is not true/false"
                )))
            }
        };
        Ok(ConfigPatch {
            preset: meta.get("preset").cloned(),
            embed_size: num("embed_size")?,
            num_heads: num("num_heads")?,
            num_layers: num("num_layers")?,
            top_k: num("top_k")?,
            use_multi_scale,
            ..Default::default()
        })
    }

    /// Fills every field this patch leaves unset from `lower` (this patch wins).
    pub fn over(mut self, lower: &ConfigPatch) -> Self {
        take_first!(self, lower; preset, embed_size, num_heads, num_layers, top_k, use_multi_scale,
            multi_scale, pool_scales, queries_per_scale, num_video_query_token, svr_order,
            gather_from, selection_order, query_self_attention, layer_norm_eps, video_positions);
        self
    }

    /// The full configuration: preset defaults under this patch. `embed_size` must be set
    /// (callers fill it from the weights' `query_tokens` when no source names it).
    pub fn resolve(&self) -> Result<LinvtConfig> {
        let preset: Preset = match &self.preset {
            Some(p) => p.parse()?,
            None => Preset::Official,
        };
        let mut c = LinvtConfig::preset(preset, 0);
        c.embed_size = self.embed_size.ok_or_else(|| {
            Error::config("embed_size is not set and could not be read from the weights")
        })?;
        if let Some(v) = self.num_heads {
            c.num_heads = v;
        }
        if let Some(v) = self.num_layers {
            c.num_layers = v;
        }
        if let Some(v) = self.top_k {
            c.top_k = v;
        }
        if let Some(false) = self.use_multi_scale {
            c.multi_scale = MultiScale::SingleA;
        }
        if let Some(v) = self.multi_scale {
            c.multi_scale = v;
        }
        if c.multi_scale == MultiScale::SingleA {
            c.pool_scales = vec![1];
        }
        if let Some(v) = &self.pool_scales {
            c.pool_scales = v.clone();
        }
        if self.queries_per_scale.is_some() {
            c.queries_per_scale = self.queries_per_scale.clone();
        }
        if c.multi_scale != MultiScale::MultiC {
            // Only Multi-C splits the queries over the scales: a split given for another mode
            // would be dropped without a word, so it is refused.
            if let Some(q) = &self.queries_per_scale {
                return Err(Error::config(format!(
                    "queries_per_scale {q:?} applies only to multi_scale \"multi-c\" (the queries split over the pool scales); this configuration's multi_scale is {}: drop queries_per_scale or choose \"multi-c\"",
                    serde_json::to_string(&c.multi_scale).unwrap_or_default()
                )));
            }
            c.queries_per_scale = None;
        }
        if let Some(v) = self.svr_order {
            c.svr_order = v;
        }
        if let Some(v) = self.gather_from {
            c.gather_from = v;
        }
        if let Some(v) = self.selection_order {
            c.selection_order = v;
        }
        if let Some(v) = self.query_self_attention {
            c.query_self_attention = v;
        }
        if let Some(v) = self.layer_norm_eps {
            c.layer_norm_eps = v;
        }
        if let Some(v) = self.video_positions {
            c.video_positions = v;
        }
        c.validate()?;
        Ok(c)
    }
}

impl LinvtConfig {
    /// A preset's defaults for a given width.
    pub fn preset(preset: Preset, embed_size: usize) -> Self {
        match preset {
            Preset::Official => LinvtConfig {
                preset,
                embed_size,
                num_heads: 4,
                num_layers: 8,
                top_k: 1024,
                pool_scales: vec![1, 2, 4],
                multi_scale: MultiScale::MultiB,
                queries_per_scale: None,
                svr_order: SvrOrder::FramesThenTokens,
                gather_from: GatherFrom::Refined,
                selection_order: SelectionOrder::Score,
                query_self_attention: QuerySelfAttention::PerQuery,
                layer_norm_eps: 1e-5,
                video_positions: VideoPositions::Text,
            },
            Preset::Paper => LinvtConfig {
                preset,
                embed_size,
                num_heads: 8,
                num_layers: 4,
                top_k: 2048,
                pool_scales: vec![1, 2, 4],
                multi_scale: MultiScale::MultiC,
                queries_per_scale: Some(vec![64, 32, 16]),
                svr_order: SvrOrder::TokensThenFrames,
                gather_from: GatherFrom::Input,
                selection_order: SelectionOrder::Index,
                query_self_attention: QuerySelfAttention::AcrossQueries,
                layer_norm_eps: 1e-5,
                video_positions: VideoPositions::Text,
            },
        }
    }

    pub fn head_dim(&self) -> usize {
        self.embed_size / self.num_heads.max(1)
    }

    /// Checks everything that does not depend on the input.
    pub fn validate(&self) -> Result<()> {
        let e = self.embed_size;
        if e == 0 {
            return Err(Error::config("embed_size must be at least 1"));
        }
        if self.num_heads == 0 || !e.is_multiple_of(self.num_heads) {
            return Err(Error::config(format!(
                "embed_size {e} is not divisible by num_heads {}; choose a head count that divides it",
                self.num_heads
            )));
        }
        if self.head_dim() > MAX_HEAD_DIM {
            return Err(Error::config(format!(
                "head dimension {} (embed_size {e} / num_heads {}) exceeds {MAX_HEAD_DIM}; use more heads",
                self.head_dim(),
                self.num_heads
            )));
        }
        if self.top_k == 0 {
            return Err(Error::config(
                "top_k is 0; at least one token must be selected",
            ));
        }
        if self.pool_scales.is_empty()
            || self.pool_scales.contains(&0)
            || self.pool_scales.len() > MAX_SCALES
        {
            return Err(Error::config(format!(
                "pool_scales {:?} must hold 1 to {MAX_SCALES} window sizes, each at least 1",
                self.pool_scales
            )));
        }
        if let Some(q) = &self.queries_per_scale {
            if q.len() != self.pool_scales.len() || q.contains(&0) {
                return Err(Error::config(format!(
                    "queries_per_scale {q:?} needs one positive count per pool scale {:?}",
                    self.pool_scales
                )));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(Error::config("layer_norm_eps must be positive"));
        }
        Ok(())
    }

    /// How the Q query tokens split over TTA runs: one run with all queries, or (Multi-C) one
    /// per scale. Errors when a Multi-C split does not match Q.
    pub fn query_split(&self, num_queries: usize) -> Result<Vec<usize>> {
        if self.multi_scale != MultiScale::MultiC {
            return Ok(vec![num_queries]);
        }
        let split = match &self.queries_per_scale {
            Some(q) => q.clone(),
            None => {
                return Err(Error::config(
                    "Multi-C needs queries_per_scale (e.g. 64,32,16)",
                ))
            }
        };
        let sum: usize = split.iter().sum();
        if sum != num_queries {
            return Err(Error::config(format!(
                "queries_per_scale {split:?} sums to {sum}, but query_tokens holds {num_queries} queries; pass --queries-per-scale with counts that sum to {num_queries}"
            )));
        }
        Ok(split)
    }
}
