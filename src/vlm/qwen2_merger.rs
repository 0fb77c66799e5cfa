//! The Qwen2-VL / Qwen2.5-VL projector (`PatchMerger`), written once over `VlmOps`: the norm
//! (`ln_q`: LayerNorm in Qwen2-VL, RMSNorm in 2.5, ε 1e-6) on each patch, then each run of
//! s² consecutive rows (one merge unit, as the processor orders patches) concatenated into one
//! row, Linear → GELU → Linear to the LLM's width. Weight names: `visual.merger.*`.

use super::qwen2_vit::{norm, Qwen2VisionConfig, Qwen2VitKind};
use super::weights::WeightReader;
use crate::error::Result;
use crate::ops::VlmOps;

pub struct Qwen2MergerParams<T> {
    pub norm_w: T,
    pub norm_b: Option<T>,
    pub fc1_w: T,
    pub fc1_b: T,
    pub fc2_w: T,
    pub fc2_b: T,
}

impl<T> Qwen2MergerParams<T> {
    pub fn load(r: &mut WeightReader<T>, v: &Qwen2VisionConfig) -> Result<Self> {
        let (c, o) = (v.width, v.out_width);
        let inner = c * v.merge * v.merge;
        let m = "visual.merger";
        Ok(Qwen2MergerParams {
            norm_w: r.get(&format!("{m}.ln_q.weight"), &[c])?,
            norm_b: match v.kind {
                Qwen2VitKind::Qwen2 => Some(r.get(&format!("{m}.ln_q.bias"), &[c])?),
                Qwen2VitKind::Qwen25 { .. } => None,
            },
            fc1_w: r.linear(&format!("{m}.mlp.0.weight"), &[inner, inner])?,
            fc1_b: r.get(&format!("{m}.mlp.0.bias"), &[inner])?,
            fc2_w: r.linear(&format!("{m}.mlp.2.weight"), &[o, inner])?,
            fc2_b: r.get(&format!("{m}.mlp.2.bias"), &[o])?,
        })
    }
}

/// Encoder states (R, C), R a whole number of merge units → LLM tokens (R / s², out_width).
pub fn project<O: VlmOps>(
    ops: &mut O,
    p: &Qwen2MergerParams<O::T>,
    v: &Qwen2VisionConfig,
    hidden: &O::T,
) -> Result<O::T> {
    ops.stage("merger")?;
    let unit = v.merge * v.merge;
    let rows = ops.row_count(hidden);
    let x = norm(ops, hidden, &p.norm_w, p.norm_b.as_ref())?;
    let x = ops.reshape(&x, rows / unit, unit * v.width)?;
    let h = ops.linear_gelu(&x, &p.fc1_w, Some(&p.fc1_b))?;
    ops.linear(&h, &p.fc2_w, Some(&p.fc2_b))
}
