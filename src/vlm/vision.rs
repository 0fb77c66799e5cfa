//! The vision side of a host: the encoder + projector graph that turns preprocessed pixels into
//! visual tokens of the LLM's width. One variant per encoder family (llama.cpp's mtmd picks one
//! graph per projector type the same way); a new host adds its variant here and its part files
//! beside this one.

use super::config::{Host, VlmConfig};
use super::intern_vit::{self, VitParams};
use super::internvl_projector::{self, ProjectorParams};
use super::qwen2_merger::{self, Qwen2MergerParams};
use super::qwen2_vit::{self, Grid, Qwen2VitKind, Qwen2VitParams, Spans, WindowPlan};
use super::weights::WeightReader;
use crate::error::{Error, Result};
use crate::ops::{Positions, VlmOps};
use crate::tensor::Tensor;

pub enum Vision<T> {
    /// InternVL: InternViT (`intern_vit.rs`) → pixel shuffle + `mlp1`
    /// (`internvl_projector.rs`).
    InternVit {
        vit: VitParams<T>,
        projector: ProjectorParams<T>,
    },
    /// Qwen2-VL / Qwen2.5-VL: their ViT (`qwen2_vit.rs`) → the patch merger
    /// (`qwen2_merger.rs`).
    Qwen2Vit {
        vit: Qwen2VitParams<T>,
        merger: Qwen2MergerParams<T>,
    },
}

impl<T> Vision<T> {
    /// Reads the encoder and projector `cfg` describes.
    pub fn load(r: &mut WeightReader<T>, cfg: &VlmConfig) -> Result<Self> {
        Ok(match &cfg.host {
            Host::InternVl(c) => Vision::InternVit {
                vit: VitParams::load(r, c)?,
                projector: ProjectorParams::load(r, c, cfg.llm.hidden_size)?,
            },
            Host::Qwen2Vl(c) => Vision::Qwen2Vit {
                vit: Qwen2VitParams::load(r, &c.vision)?,
                merger: Qwen2MergerParams::load(r, &c.vision)?,
            },
        })
    }
}

fn mismatch() -> Error {
    Error::input("the vision weights do not belong to this model's host")
}

/// InternViT's hidden states for `images` preprocessed square images (tiles or frames) of
/// `pixels` (F, 3, S, S).
pub fn encode<O: VlmOps>(
    ops: &mut O,
    vision: &Vision<O::T>,
    cfg: &VlmConfig,
    pixels: &Tensor,
) -> Result<O::T> {
    let (Vision::InternVit { vit, .. }, Host::InternVl(c)) = (vision, &cfg.host) else {
        return Err(mismatch());
    };
    let images = pixels.shape().first().copied().unwrap_or(0);
    let patches = intern_vit::patchify(pixels, &c.vision)?;
    let patches = ops.upload(patches)?;
    intern_vit::encode(ops, vit, &c.vision, &patches, images)
}

/// InternVL's projector on the encoder's hidden states of `images` images: visual tokens.
pub fn project<O: VlmOps>(
    ops: &mut O,
    vision: &Vision<O::T>,
    cfg: &VlmConfig,
    hidden: &O::T,
    images: usize,
) -> Result<O::T> {
    let (Vision::InternVit { projector, .. }, Host::InternVl(c)) = (vision, &cfg.host) else {
        return Err(mismatch());
    };
    internvl_projector::project(ops, projector, c, hidden, images)
}

/// InternViT's widest activation: (rows per image, values per row), so callers can split
/// images into passes that fit a binding.
pub fn footprint(cfg: &VlmConfig) -> Result<(usize, usize)> {
    let v = &cfg.internvl()?.vision;
    // 1 + P rows per image (CLS and patches); the MLP's or the packed qkv's width.
    Ok((
        1 + v.grid() * v.grid(),
        (3 * v.hidden_size).max(v.intermediate_size),
    ))
}

/// Qwen2-VL's tower on flattened patches (R, C·T·p·p) of `grids`, rows in the processor's order
/// (one call per kind of input: images, or videos): LLM tokens (R / s², H) in the same order.
/// Qwen2.5-VL's windows are applied here (rows regrouped window by window before the encoder,
/// put back after the merger).
pub fn qwen2_tokens<O: VlmOps>(
    ops: &mut O,
    vision: &Vision<O::T>,
    cfg: &VlmConfig,
    pixels: &Tensor,
    grids: &[Grid],
) -> Result<O::T> {
    let (Vision::Qwen2Vit { vit, merger }, Host::Qwen2Vl(c)) = (vision, &cfg.host) else {
        return Err(mismatch());
    };
    let v = &c.vision;
    let rows: usize = grids.iter().map(Grid::patches).sum();
    if pixels.shape() != [rows, v.patch_values()] {
        return Err(Error::input(format!(
            "pixel values {:?} do not hold the {rows} patches of {} values that grids {grids:?} need",
            pixels.shape(),
            v.patch_values()
        )));
    }
    if grids
        .iter()
        .any(|g| g.h % v.merge != 0 || g.w % v.merge != 0)
    {
        return Err(Error::input(format!(
            "patch grids {grids:?} must have sides divisible by the merge size {}",
            v.merge
        )));
    }
    let unit = v.merge * v.merge;
    let positions = qwen2_vit::patch_positions(grids, v.merge);
    let per_frame = Spans::per_frame(grids);
    let (patches, positions, plan, full) = match &v.kind {
        Qwen2VitKind::Qwen2 => (ops.upload(pixels.clone())?, positions, None, vec![]),
        Qwen2VitKind::Qwen25 {
            window_size,
            full_attention,
        } => {
            let plan = WindowPlan::new(grids, v.merge, window_size / v.merge / v.patch_size);
            let order = plan.patch_rows(unit);
            let cols = pixels.cols();
            let data: Vec<f32> = order
                .iter()
                .flat_map(|&r| &pixels.data()[r as usize * cols..(r as usize + 1) * cols])
                .copied()
                .collect();
            let ids: Vec<u32> = order
                .iter()
                .flat_map(|&r| positions.row(r as usize).to_vec())
                .collect();
            (
                ops.upload(Tensor::new(vec![rows, cols], data)?)?,
                Positions::new(ids, 2)?,
                Some(plan),
                full_attention.clone(),
            )
        }
    };
    let spans = |layer: usize| match &plan {
        Some(p) if !full.contains(&layer) => p.windows.clone(),
        _ => per_frame.clone(),
    };
    let h = qwen2_vit::encode(ops, vit, v, &patches, &positions, &spans)?;
    let out = qwen2_merger::project(ops, merger, v, &h)?;
    match &plan {
        Some(p) => ops.gather_rows(&out, &p.inverse()),
        None => Ok(out),
    }
}
