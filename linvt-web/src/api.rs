//! The web API's work, independent of JavaScript types: what `condense` does with the bytes it
//! is given. Semantics are `linvt condense`'s (see src/bin/linvt.rs): the weights are a
//! safetensors file whose metadata may carry a `linvt_config`; the caller's config object plays
//! the role of the CLI's flags and `--config` file and takes precedence over that metadata; the
//! input file holds `input.video` and `input.text`; the result carries the same tensors as the
//! CLI's output file (which `output_bytes` reproduces byte for byte).

use linvt::config::LinvtConfig;
use linvt::weights::{SafetensorsFile, TensorStore};
use linvt::{CondenseOptions, Condensed, ConfigPatch, Linvt, Result};

use crate::clock::now_ms;
use crate::context;

/// Milliseconds spent in each phase of one call.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Parsing the weights and input files and resolving the config.
    pub parse_ms: f64,
    /// Opening the GPU context (only the first call of a page pays for it).
    pub context_ms: f64,
    /// Uploading the weights.
    pub upload_ms: f64,
    /// The GPU condensation: recording, submission, kernels and readback.
    pub condense_ms: f64,
    pub total_ms: f64,
}

/// One condensation's result with what the web API reports besides the tensors.
pub struct WebCondensed {
    pub condensed: Condensed,
    pub config: LinvtConfig,
    /// LinVT tensors in the weights that this configuration does not use (the CLI warns).
    pub unused: Vec<String>,
    pub timings: Timings,
}

impl WebCondensed {
    /// The bytes `linvt condense --output` would write for this result.
    pub fn output_bytes(&self) -> Result<Vec<u8>> {
        linvt::io::condense_output_bytes(&self.condensed, &self.config)
    }
}

/// The config object's JSON as a `ConfigPatch`. Field names are the `--config` file's; a name
/// the configuration does not have is refused rather than silently ignored.
pub fn config_patch(json: Option<&str>) -> Result<ConfigPatch> {
    let Some(json) = json else {
        return Ok(ConfigPatch::default());
    };
    ConfigPatch::from_user_json(json, "the config object")
}

fn store(name: &str, bytes: Vec<u8>) -> Result<TensorStore> {
    let file = SafetensorsFile::from_bytes(name, bytes)?;
    Ok(TensorStore::from_files(name, vec![file], None))
}

/// Condenses the video in `input` with the weights in `weights` on the shared GPU context.
pub async fn condense(
    weights: Vec<u8>,
    input: Vec<u8>,
    patch: &ConfigPatch,
) -> Result<WebCondensed> {
    let start = now_ms();
    let weights = store("`weights`", weights)?;
    let (mut model, report) = Linvt::from_store(&weights, patch)?;
    drop(weights);
    let inputs = store("`input`", input)?;
    let (video, text) = linvt::io::condense_inputs(&inputs)?;
    drop(inputs);
    // Shapes and values are checked before any GPU work, as on the native path.
    model.prepare_inputs(&video, &text)?;
    let parsed = now_ms();

    let ctx = context::shared().await?;
    let opened = now_ms();
    let run = async {
        model.attach_gpu(ctx.clone())?;
        let uploaded = now_ms();
        let c = model
            .condense_gpu(&video, &text, &CondenseOptions::default())
            .await?;
        Ok((uploaded, c))
    };
    let (uploaded, condensed) = context::scoped(&ctx, run)
        .await
        .inspect_err(context::forget_if_lost)?;
    let done = now_ms();
    Ok(WebCondensed {
        config: model.config().clone(),
        condensed,
        unused: report.unused,
        timings: Timings {
            parse_ms: parsed - start,
            context_ms: opened - parsed,
            upload_ms: uploaded - opened,
            condense_ms: done - uploaded,
            total_ms: done - start,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_object_uses_the_config_file_field_names() {
        let p = config_patch(Some(r#"{"top_k": 5, "preset": "paper"}"#)).unwrap();
        assert_eq!(p.top_k, Some(5));
        assert_eq!(p.preset.as_deref(), Some("paper"));
        assert!(config_patch(None).unwrap().top_k.is_none());
    }

    #[test]
    fn config_object_refuses_unknown_fields_and_non_objects() {
        let e = config_patch(Some(r#"{"topK": 5}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `topK`") && e.contains("top_k"),
            "{e}"
        );
        let e = config_patch(Some("[1, 2]")).unwrap_err().to_string();
        assert!(e.contains("must be an object"), "{e}");
        let e = config_patch(Some(r#"{"top_k": "many"}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the config object"), "{e}");
    }
}
