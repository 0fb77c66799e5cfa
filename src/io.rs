//! The `linvt condense` file formats (safetensors in, safetensors out).
//!
//! Input: `input.video` (T, N, C) or (1, T, N, C) and `input.text` (L, C) or (1, L, C), in F32,
//! F16 or BF16. Output: `output` (Q', C) F32, `selected_indices` (k) I64 (flat t·N + n, in the
//! preset's order), `scores` (T·N) F32; metadata: preset, backend, adapter, k, k_requested.

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::config::LinvtConfig;
use crate::error::{Error, Result};
use crate::linvt::Condensed;
use crate::tensor::Tensor;
use crate::weights::TensorStore;

/// Reads `input.video` and `input.text` from a store.
pub fn condense_inputs(store: &TensorStore) -> Result<(Tensor, Tensor)> {
    let get = |key: &str| {
        store.get(key)?.ok_or_else(|| Error::MissingTensor {
            key: key.into(),
            source_name: format!(
                "{} (the input file needs `input.video` and `input.text`)",
                store.name()
            ),
        })
    };
    Ok((get("input.video")?, get("input.text")?))
}

fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>> {
    TensorView::new(dtype, shape, data)
        .map_err(|e| Error::input(format!("cannot write output: {e}")))
}

/// The output file's bytes.
pub fn condense_output_bytes(c: &Condensed, cfg: &LinvtConfig) -> Result<Vec<u8>> {
    let out: Vec<u8> = bytemuck::cast_slice(c.output.data()).to_vec();
    let idx: Vec<u8> = c
        .selected_indices
        .iter()
        .flat_map(|&i| (i as i64).to_le_bytes())
        .collect();
    let scores: Vec<u8> = bytemuck::cast_slice(&c.scores).to_vec();
    let tensors = vec![
        ("output", view(Dtype::F32, c.output.shape().to_vec(), &out)?),
        (
            "selected_indices",
            view(Dtype::I64, vec![c.selected_indices.len()], &idx)?,
        ),
        ("scores", view(Dtype::F32, vec![c.scores.len()], &scores)?),
    ];
    let meta: HashMap<String, String> = [
        ("preset", cfg.preset.to_string()),
        (
            "backend",
            match c.device {
                crate::Device::Cpu => "cpu".to_string(),
                crate::Device::Gpu => "gpu".to_string(),
            },
        ),
        ("adapter", c.adapter.clone()),
        ("k", c.k.to_string()),
        ("k_requested", c.k_requested.to_string()),
        (
            "linvt_config",
            serde_json::to_string(cfg).unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    safetensors::serialize(tensors, Some(meta))
        .map_err(|e| Error::input(format!("cannot write output: {e}")))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn write_condense_output(path: &Path, c: &Condensed, cfg: &LinvtConfig) -> Result<()> {
    let bytes = condense_output_bytes(c, cfg)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
