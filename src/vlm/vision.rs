//! The vision side of a host: the encoder + projector graph that turns preprocessed pixels into
//! visual tokens of the LLM's width. One variant per encoder family (llama.cpp's mtmd picks one
//! graph per projector type the same way); a new host adds its variant here and its part files
//! beside this one.

use super::config::VlmConfig;
use super::intern_vit::{self, VitParams};
use super::internvl_projector::{self, ProjectorParams};
use super::weights::WeightReader;
use crate::error::Result;
use crate::ops::VlmOps;
use crate::tensor::Tensor;

pub enum Vision<T> {
    /// InternVL: InternViT (`intern_vit.rs`) → pixel shuffle + `mlp1`
    /// (`internvl_projector.rs`).
    InternVit {
        vit: VitParams<T>,
        projector: ProjectorParams<T>,
    },
}

impl<T> Vision<T> {
    /// Reads the encoder and projector `cfg` describes.
    pub fn load(r: &mut WeightReader<T>, cfg: &VlmConfig) -> Result<Self> {
        Ok(Vision::InternVit {
            vit: VitParams::load(r, cfg)?,
            projector: ProjectorParams::load(r, cfg)?,
        })
    }
}

/// The encoder's hidden states for `images` preprocessed images (tiles or frames) of `pixels`.
pub fn encode<O: VlmOps>(
    ops: &mut O,
    vision: &Vision<O::T>,
    cfg: &VlmConfig,
    pixels: &Tensor,
) -> Result<O::T> {
    match vision {
        Vision::InternVit { vit, .. } => {
            let images = pixels.shape().first().copied().unwrap_or(0);
            let patches = intern_vit::patchify(pixels, &cfg.vision)?;
            let patches = ops.upload(patches)?;
            intern_vit::encode(ops, vit, &cfg.vision, &patches, images)
        }
    }
}

/// The projector on the encoder's hidden states of `images` images: visual tokens (rows, E).
pub fn project<O: VlmOps>(
    ops: &mut O,
    vision: &Vision<O::T>,
    cfg: &VlmConfig,
    hidden: &O::T,
    images: usize,
) -> Result<O::T> {
    match vision {
        Vision::InternVit { projector, .. } => {
            internvl_projector::project(ops, projector, cfg, hidden, images)
        }
    }
}

/// The encoder's widest activation: (rows per image, values per row), so callers can split
/// images into passes that fit a binding.
pub fn footprint<T>(vision: &Vision<T>, cfg: &VlmConfig) -> (usize, usize) {
    match vision {
        Vision::InternVit { .. } => {
            let v = &cfg.vision;
            // 1 + P rows per image (CLS and patches); the MLP's or the packed qkv's width.
            (
                1 + v.grid() * v.grid(),
                (3 * v.hidden_size).max(v.intermediate_size),
            )
        }
    }
}
