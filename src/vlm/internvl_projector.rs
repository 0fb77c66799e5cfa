//! InternVL's projector, written once over `VlmOps`: pixel shuffle of the encoder's patch grid
//! (CLS dropped) and `mlp1` (LayerNorm → Linear → GELU → Linear) to the LLM's width. Weight
//! names are the released model's (`mlp1.*`).

use super::config::{InternVlConfig, PsVersion};
use super::weights::WeightReader;
use crate::error::Result;
use crate::ops::VlmOps;

/// `mlp1`: LayerNorm → Linear → GELU → Linear.
pub struct ProjectorParams<T> {
    pub norm_w: T,
    pub norm_b: T,
    pub fc1_w: T,
    pub fc1_b: T,
    pub fc2_w: T,
    pub fc2_b: T,
}

impl<T> ProjectorParams<T> {
    /// `mlp1` from the pixel-shuffled encoder width to the LLM's `llm_hidden`.
    pub fn load(r: &mut WeightReader<T>, cfg: &InternVlConfig, llm_hidden: usize) -> Result<Self> {
        let inner = cfg.vision.hidden_size * cfg.shuffle * cfg.shuffle;
        let h = llm_hidden;
        Ok(ProjectorParams {
            norm_w: r.get("mlp1.0.weight", &[inner])?,
            norm_b: r.get("mlp1.0.bias", &[inner])?,
            fc1_w: r.linear("mlp1.1.weight", &[h, inner])?,
            fc1_b: r.get("mlp1.1.bias", &[h])?,
            fc2_w: r.linear("mlp1.3.weight", &[h, h])?,
            fc2_b: r.get("mlp1.3.bias", &[h])?,
        })
    }
}

/// Row ids that drop each frame's CLS row and pixel-shuffle the (g, g) patch grid by s, as
/// InternVL's `pixel_shuffle`: output token (a, b) of a frame concatenates the patches
/// (s·a + i, s·b + j) for i, j < s (i outer); tokens in row-major (a, b) order for v2 and
/// column-major (b, a) for v1 (no final permute). Gathering these rows and viewing the result
/// as (F·(g/s)², s²·C) is the pixel shuffle.
pub fn pixel_shuffle_ids(frames: usize, grid: usize, s: usize, version: PsVersion) -> Vec<u32> {
    let g2 = grid / s;
    let per_frame = 1 + grid * grid;
    let mut ids = Vec::with_capacity(frames * grid * grid);
    for f in 0..frames {
        for t1 in 0..g2 {
            for t2 in 0..g2 {
                let (a, b) = match version {
                    PsVersion::V2 => (t1, t2),
                    PsVersion::V1 => (t2, t1),
                };
                for i in 0..s {
                    for j in 0..s {
                        let patch = (s * a + i) * grid + s * b + j;
                        ids.push((f * per_frame + 1 + patch) as u32);
                    }
                }
            }
        }
    }
    ids
}

/// Pixel shuffle then `mlp1`: encoder states (F·(1 + P), C) → visual tokens (F·N, E).
pub fn project<O: VlmOps>(
    ops: &mut O,
    p: &ProjectorParams<O::T>,
    cfg: &InternVlConfig,
    hidden: &O::T,
    frames: usize,
) -> Result<O::T> {
    ops.stage("pixel_shuffle+mlp1")?;
    let s = cfg.shuffle;
    let ids = pixel_shuffle_ids(frames, cfg.vision.grid(), s, cfg.ps_version);
    let gathered = ops.gather_rows(hidden, &ids)?;
    let n = frames * cfg.tokens_per_frame();
    let x = ops.reshape(&gathered, n, s * s * cfg.vision.hidden_size)?;
    // nn.LayerNorm's default eps: mlp1 is built without one.
    let h = ops.layer_norm(&x, &p.norm_w, &p.norm_b, 1e-5)?;
    let h = ops.linear_gelu(&h, &p.fc1_w, Some(&p.fc1_b))?;
    ops.linear(&h, &p.fc2_w, Some(&p.fc2_b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_shuffle_ids_by_hand() {
        // One frame, 4×4 grid, s = 2: token (0, 1) (v2) takes patches (0,2), (0,3), (1,2), (1,3),
        // i.e. grid indices 2, 3, 6, 7, each + 1 for the CLS row.
        let ids = pixel_shuffle_ids(1, 4, 2, PsVersion::V2);
        assert_eq!(&ids[..4], &[1, 2, 5, 6]);
        assert_eq!(&ids[4..8], &[3, 4, 7, 8]);
        // v1 lists tokens column-major: the second token is (1, 0) → patches 8, 9, 12, 13.
        let v1 = pixel_shuffle_ids(1, 4, 2, PsVersion::V1);
        assert_eq!(&v1[4..8], &[9, 10, 13, 14]);
    }
}
