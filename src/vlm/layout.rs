//! The weight-name layouts InternVL checkpoints are published in. Model code asks for every
//! tensor by its remote-code name (`InternVLChatModel`: `vision_model.*`, `mlp1.*`,
//! `language_model.*`); a layout says where that tensor lives in the store.
//!
//! The transformers-native layout (`InternVLForConditionalGeneration`, OpenGVLab's `-hf`
//! checkpoints) renames the vision tower and projector, splits the ViT's packed qkv into
//! q/k/v, and comes with two prefix forms: the converter's (`vision_tower.*`,
//! `multi_modal_projector.*`, `language_model.model.*`, `language_model.lm_head.weight`) and
//! the one newer transformers saves (`model.vision_tower.*`, `model.multi_modal_projector.*`,
//! `model.language_model.*`, `lm_head.weight`). See docs/internvl-reference.md §5.2.

use crate::weights::TensorStore;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `InternVLChatModel` names, as the model code asks for them.
    Remote,
    /// `InternVLForConditionalGeneration` names; `prefixed` = the `model.`-prefixed form.
    Hf { prefixed: bool },
    /// `Qwen2VLForConditionalGeneration` / `Qwen2_5_VL…`: the hub form (`visual.*`,
    /// `model.layers.*`, `lm_head.weight`) or, `prefixed`, the one transformers ≥ 4.52 keeps in
    /// memory (`model.visual.*`, `model.language_model.*`, `lm_head.weight`). The model code asks
    /// for the decoder as `language_model.*` and the vision tower as `visual.*`.
    Qwen2Vl { prefixed: bool },
}

/// Where a requested tensor lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Key(String),
    /// These tensors' rows, concatenated in order (the ViT's qkv split in the -hf layout).
    Rows(Vec<String>),
}

impl Layout {
    /// The layout of `store`: remote-code, or (`hf`: an `InternVLForConditionalGeneration`
    /// config) the -hf layout in whichever prefix form the store uses.
    pub fn detect(store: &TensorStore, hf: bool) -> Layout {
        if hf {
            Layout::Hf {
                prefixed: store.keys().any(|k| k.starts_with("model.")),
            }
        } else {
            Layout::Remote
        }
    }

    /// A Qwen2-VL store's layout (whichever prefix form it uses).
    pub fn detect_qwen2_vl(store: &TensorStore) -> Layout {
        Layout::Qwen2Vl {
            prefixed: store.keys().any(|k| k.starts_with("model.language_model.")),
        }
    }

    /// Where the tensor the model code calls `key` lives.
    pub fn resolve(&self, key: &str) -> Source {
        let prefixed = match *self {
            Layout::Remote => return Source::Key(key.to_string()),
            Layout::Qwen2Vl { prefixed } => return Source::Key(qwen2_vl_key(key, prefixed)),
            Layout::Hf { prefixed } => prefixed,
        };
        let p = if prefixed { "model." } else { "" };
        if let Some(rest) = key.strip_prefix("language_model.") {
            return Source::Key(match (prefixed, rest.strip_prefix("model.")) {
                (true, Some(inner)) => format!("model.language_model.{inner}"),
                (true, None) => rest.to_string(), // lm_head.weight
                (false, _) => key.to_string(),
            });
        }
        if let Some(rest) = key.strip_prefix("mlp1.") {
            let (index, param) = rest.split_once('.').unwrap_or((rest, ""));
            let name = match index {
                "0" => "layer_norm",
                "1" => "linear_1",
                "3" => "linear_2",
                other => other,
            };
            return Source::Key(format!("{p}multi_modal_projector.{name}.{param}"));
        }
        let Some(rest) = key.strip_prefix("vision_model.") else {
            return Source::Key(key.to_string());
        };
        let v = format!("{p}vision_tower");
        if let Some(e) = rest.strip_prefix("embeddings.") {
            let name = match e {
                "class_embedding" => "cls_token".to_string(),
                "position_embedding" => "position_embeddings".to_string(),
                _ => e.replacen("patch_embedding.", "patch_embeddings.projection.", 1),
            };
            return Source::Key(format!("{v}.embeddings.{name}"));
        }
        let Some(layer) = rest.strip_prefix("encoder.layers.") else {
            return Source::Key(format!("{v}.{rest}"));
        };
        let (i, part) = layer.split_once('.').unwrap_or((layer, ""));
        let l = format!("{v}.encoder.layer.{i}");
        if let Some(param) = part.strip_prefix("attn.qkv.") {
            return Source::Rows(
                ["q_proj", "k_proj", "v_proj"]
                    .iter()
                    .map(|n| format!("{l}.attention.{n}.{param}"))
                    .collect(),
            );
        }
        let name = match part {
            "ls1" => "lambda_1".to_string(),
            "ls2" => "lambda_2".to_string(),
            _ => {
                let (module, param) = part.split_once('.').unwrap_or((part, ""));
                let module = match module {
                    "norm1" => "layernorm_before".to_string(),
                    "norm2" => "layernorm_after".to_string(),
                    "attn" => match param.split_once('.') {
                        Some(("proj", w)) => {
                            return Source::Key(format!("{l}.attention.projection_layer.{w}"))
                        }
                        _ => "attention".to_string(),
                    },
                    other => other.to_string(),
                };
                format!("{module}.{param}")
            }
        };
        Source::Key(format!("{l}.{name}"))
    }
}

/// A Qwen2-VL checkpoint's name for `key` (see [`Layout::Qwen2Vl`]).
fn qwen2_vl_key(key: &str, prefixed: bool) -> String {
    if let Some(rest) = key.strip_prefix("language_model.") {
        return match (prefixed, rest.strip_prefix("model.")) {
            (true, Some(inner)) => format!("model.language_model.{inner}"),
            _ => rest.to_string(), // model.* (hub) or lm_head.weight (both)
        };
    }
    match (prefixed, key.strip_prefix("visual.")) {
        (true, Some(_)) => format!("model.{key}"),
        _ => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(l: &Layout, k: &str) -> String {
        match l.resolve(k) {
            Source::Key(k) => k,
            Source::Rows(r) => r.join(" + "),
        }
    }

    #[test]
    fn hf_names_as_the_converter_writes_them() {
        let hf = Layout::Hf { prefixed: false };
        let cases = [
            ("vision_model.embeddings.class_embedding", "vision_tower.embeddings.cls_token"),
            ("vision_model.embeddings.position_embedding", "vision_tower.embeddings.position_embeddings"),
            ("vision_model.embeddings.patch_embedding.weight", "vision_tower.embeddings.patch_embeddings.projection.weight"),
            ("vision_model.encoder.layers.3.attn.proj.bias", "vision_tower.encoder.layer.3.attention.projection_layer.bias"),
            ("vision_model.encoder.layers.3.attn.q_norm.weight", "vision_tower.encoder.layer.3.attention.q_norm.weight"),
            ("vision_model.encoder.layers.3.norm1.weight", "vision_tower.encoder.layer.3.layernorm_before.weight"),
            ("vision_model.encoder.layers.3.norm2.bias", "vision_tower.encoder.layer.3.layernorm_after.bias"),
            ("vision_model.encoder.layers.3.ls2", "vision_tower.encoder.layer.3.lambda_2"),
            ("vision_model.encoder.layers.3.mlp.fc1.weight", "vision_tower.encoder.layer.3.mlp.fc1.weight"),
            ("mlp1.0.weight", "multi_modal_projector.layer_norm.weight"),
            ("mlp1.3.bias", "multi_modal_projector.linear_2.bias"),
            ("language_model.model.layers.0.self_attn.q_proj.weight", "language_model.model.layers.0.self_attn.q_proj.weight"),
            ("language_model.lm_head.weight", "language_model.lm_head.weight"),
            (
                "vision_model.encoder.layers.0.attn.qkv.bias",
                "vision_tower.encoder.layer.0.attention.q_proj.bias + vision_tower.encoder.layer.0.attention.k_proj.bias + vision_tower.encoder.layer.0.attention.v_proj.bias",
            ),
        ];
        for (remote, want) in cases {
            assert_eq!(key(&hf, remote), want, "{remote}");
        }
        let newer = Layout::Hf { prefixed: true };
        assert_eq!(
            key(&newer, "mlp1.1.weight"),
            "model.multi_modal_projector.linear_1.weight"
        );
        assert_eq!(
            key(&newer, "language_model.model.norm.weight"),
            "model.language_model.norm.weight"
        );
        assert_eq!(
            key(&newer, "language_model.lm_head.weight"),
            "lm_head.weight"
        );
        assert_eq!(
            key(&newer, "vision_model.encoder.layers.1.ls1"),
            "model.vision_tower.encoder.layer.1.lambda_1"
        );
        assert_eq!(key(&Layout::Remote, "mlp1.1.weight"), "mlp1.1.weight");
    }

    #[test]
    fn qwen2_vl_names_in_both_forms() {
        let hub = Layout::Qwen2Vl { prefixed: false };
        let newer = Layout::Qwen2Vl { prefixed: true };
        let cases = [
            (
                "language_model.model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.language_model.layers.0.self_attn.q_proj.weight",
            ),
            (
                "language_model.model.embed_tokens.weight",
                "model.embed_tokens.weight",
                "model.language_model.embed_tokens.weight",
            ),
            (
                "language_model.lm_head.weight",
                "lm_head.weight",
                "lm_head.weight",
            ),
            (
                "visual.blocks.0.attn.qkv.weight",
                "visual.blocks.0.attn.qkv.weight",
                "model.visual.blocks.0.attn.qkv.weight",
            ),
            (
                "visual.merger.mlp.0.bias",
                "visual.merger.mlp.0.bias",
                "model.visual.merger.mlp.0.bias",
            ),
        ];
        for (asked, in_hub, in_newer) in cases {
            assert_eq!(key(&hub, asked), in_hub);
            assert_eq!(key(&newer, asked), in_newer);
        }
    }
}
