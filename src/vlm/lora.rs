//! A PEFT LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`), merged into the
//! weights it targets as they are read: W ← W + s·B·A with A (r, in), B (out, r) and
//! s = lora_alpha / r (lora_alpha / √r with `use_rslora`), as PEFT's `merge_and_unload` does.
//!
//! Adapter keys are `base_model.model.<module>.lora_A.weight` / `.lora_B.weight`; `<module>.weight`
//! is the weight it targets. An adapter trained on the LLM alone names its modules without the
//! checkpoint's `language_model.` prefix (`model.layers.0.self_attn.q_proj`); one trained on the
//! whole InternVL model (the LinVT training code's `wrap_llm_lora`) names them
//! `language_model.base_model.model.model.layers…`; one trained on a transformers-native (-hf)
//! InternVL names them `model.language_model.layers…`; all are accepted. `rank_pattern` ranks
//! come from the tensors' shapes (s = α / that rank).

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

#[cfg(not(target_arch = "wasm32"))]
use serde_json::Value;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
#[cfg(not(target_arch = "wasm32"))]
use crate::weights::TensorStore;

struct Pair {
    /// (r, in)
    a: Tensor,
    /// (out, r)
    b: Tensor,
    scale: f32,
}

pub struct Lora {
    /// By the target weight's key (`<module>.weight`, without any `language_model.` prefix the
    /// adapter lacked).
    pairs: HashMap<String, Pair>,
    name: String,
}

#[cfg(not(target_arch = "wasm32"))]
fn lora_err(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::config(format!("LoRA adapter {}: {what}", dir.display()))
}

impl Lora {
    /// Reads a PEFT adapter directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|_| {
            lora_err(
                dir,
                "has no adapter_config.json; pass the directory PEFT's save_pretrained wrote",
            )
        })?;
        let c: Value = serde_json::from_str(&text)
            .map_err(|e| lora_err(dir, format!("adapter_config.json is not valid JSON: {e}")))?;
        let peft_type = c.get("peft_type").and_then(Value::as_str).unwrap_or("LORA");
        if peft_type != "LORA" {
            return Err(lora_err(
                dir,
                format!("peft_type `{peft_type}` is not LoRA"),
            ));
        }
        let flag = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
        for (key, why) in [
            ("use_dora", "DoRA adapters are not supported"),
            ("lora_bias", "LoRA biases (lora_bias) are not supported"),
            (
                "fan_in_fan_out",
                "fan_in_fan_out (Conv1D) adapters are not supported",
            ),
        ] {
            if flag(key) {
                return Err(lora_err(dir, why));
            }
        }
        let bias = c.get("bias").and_then(Value::as_str).unwrap_or("none");
        if bias != "none" {
            return Err(lora_err(
                dir,
                format!("bias `{bias}` is not supported (only \"none\")"),
            ));
        }
        let non_empty = |k: &str| match c.get(k) {
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        for key in ["modules_to_save", "alpha_pattern", "layers_to_transform"] {
            if non_empty(key) {
                return Err(lora_err(dir, format!("`{key}` is not supported")));
            }
        }
        let alpha = c
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| lora_err(dir, "adapter_config.json lacks lora_alpha"))?;
        let rslora = flag("use_rslora");
        let weights = dir.join("adapter_model.safetensors");
        if !weights.exists() {
            return Err(lora_err(
                dir,
                "has no adapter_model.safetensors (a .bin adapter must be saved with safe_serialization=True)",
            ));
        }
        let store = TensorStore::open(&weights)?;
        let mut pairs = HashMap::new();
        for key in store.keys().filter(|k| k.ends_with(".lora_A.weight")) {
            let module = key.trim_end_matches(".lora_A.weight");
            let b_key = format!("{module}.lora_B.weight");
            let a = store.get(key)?.expect("listed key");
            let b = store
                .get(&b_key)?
                .ok_or_else(|| lora_err(dir, format!("`{key}` has no `{b_key}`")))?;
            let r = a.shape().first().copied().unwrap_or(0);
            if a.shape().len() != 2 || b.shape().len() != 2 || b.shape()[1] != r || r == 0 {
                return Err(lora_err(
                    dir,
                    format!(
                        "`{module}`: lora_A {:?} and lora_B {:?} are not (r, in) and (out, r)",
                        a.shape(),
                        b.shape()
                    ),
                ));
            }
            let scale = if rslora {
                alpha / (r as f64).sqrt()
            } else {
                alpha / r as f64
            } as f32;
            // PEFT wraps the model it adapts in `base_model.model.`, wherever that model sits;
            // the -hf model's own names (`model.language_model.…`) are the checkpoint's
            // `language_model.model.…`.
            let module = module.replacen("base_model.model.", "", 1);
            let module = match module.strip_prefix("model.language_model.") {
                Some(rest) => format!("language_model.model.{rest}"),
                None => module,
            };
            let target = format!("{module}.weight");
            pairs.insert(target, Pair { a, b, scale });
        }
        if pairs.is_empty() {
            return Err(lora_err(
                dir,
                "adapter_model.safetensors holds no lora_A/lora_B pairs",
            ));
        }
        Ok(Lora {
            pairs,
            name: dir.display().to_string(),
        })
    }

    /// Number of adapted weights.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn pair_for(&self, key: &str) -> Option<&Pair> {
        self.pairs.get(key).or_else(|| {
            key.strip_prefix("language_model.")
                .and_then(|k| self.pairs.get(k))
        })
    }

    /// Adds s·B·A to `w` when the adapter targets `key`; true when it did. A shape that does not
    /// fit is an error naming the tensor.
    /// Whether the adapter has a delta for the weight `key`.
    pub fn targets(&self, key: &str) -> bool {
        self.pair_for(key).is_some()
    }

    pub fn merge_into(&self, key: &str, w: &mut Tensor) -> Result<bool> {
        let Some(p) = self.pair_for(key) else {
            return Ok(false);
        };
        let (r, n_in) = (p.a.shape()[0], p.a.shape()[1]);
        let n_out = p.b.shape()[0];
        if w.shape() != [n_out, n_in] {
            return Err(Error::config(format!(
                "LoRA adapter {}: the delta for `{key}` is [{n_out}, {n_in}] (lora_B {:?} · lora_A {:?}) but the weight is {:?}",
                self.name,
                p.b.shape(),
                p.a.shape(),
                w.shape()
            )));
        }
        let (a, b) = (p.a.data(), p.b.data());
        for (o, row) in w.data_mut().chunks_mut(n_in).enumerate() {
            for k in 0..r {
                let s = p.scale * b[o * r + k];
                for (x, av) in row.iter_mut().zip(&a[k * n_in..][..n_in]) {
                    *x += s * av;
                }
            }
        }
        Ok(true)
    }

    /// Errors when a target was never merged (the model has no such weight), naming it.
    pub fn check_all_merged(&self, merged: &[String]) -> Result<()> {
        let mut missing: Vec<&str> = self
            .pairs
            .keys()
            .filter(|t| {
                !merged
                    .iter()
                    .any(|m| m == *t || m.strip_prefix("language_model.") == Some(t.as_str()))
            })
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        Err(Error::config(format!(
            "LoRA adapter {}: {} target(s) have no weight in this model, e.g. `{}`; was it trained for another model?",
            self.name,
            missing.len(),
            missing[..missing.len().min(3)].join("`, `")
        )))
    }
}
