//! The Qwen2-VL and Qwen2.5-VL vision encoders, written once over `VlmOps`: a patch embedding
//! over `temporal_patch_size` frames × 14×14 pixels (a Conv3d with stride = kernel, i.e. one
//! linear over the processor's flattened patches), blocks of attention with a 2-D rotary
//! embedding over each patch's (row, column), restricted to each image / temporal group (and,
//! in Qwen2.5-VL's windowed blocks, to each window), and an MLP (QuickGELU; SwiGLU with biases
//! in 2.5). Norms: LayerNorm (Qwen2-VL) or RMSNorm (2.5), ε 1e-6. The merger (projector) is
//! `qwen2_merger.rs`. Weight names are the hub checkpoints' (`visual.*`).

use serde_json::Value;

use super::weights::WeightReader;
use crate::error::{Error, Result};
use crate::ops::{Positions, Rope, VlmOps};

/// Which encoder: the blocks differ in norm, MLP and attention span.
#[derive(Clone, Debug, PartialEq)]
pub enum Qwen2VitKind {
    /// Qwen2-VL: LayerNorm, QuickGELU MLP (`fc1`, `fc2`), attention over each temporal group.
    Qwen2,
    /// Qwen2.5-VL: RMSNorm, SwiGLU MLP with biases (`gate_proj`, `up_proj`, `down_proj`),
    /// attention within windows of `window_size` pixels except in `full_attention` blocks.
    Qwen25 {
        window_size: usize,
        full_attention: Vec<usize>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Qwen2VisionConfig {
    pub kind: Qwen2VitKind,
    pub depth: usize,
    /// The encoder's width.
    pub width: usize,
    pub heads: usize,
    /// The MLP's hidden width.
    pub mlp: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    /// s: s×s neighbouring patches become one LLM token.
    pub merge: usize,
    pub channels: usize,
    /// The merger's output width (the LLM's hidden size).
    pub out_width: usize,
}

/// Largest size any vision dimension may take (real ones are ≤ 8192): products of sizes
/// stay far from overflowing.
const MAX_SIZE: u64 = 1 << 20;

fn field(v: &Value, key: &str) -> Result<usize> {
    v.get(key)
        .and_then(Value::as_u64)
        .filter(|&x| x <= MAX_SIZE)
        .map(|x| x as usize)
        .ok_or_else(|| {
            Error::config(format!(
                "config.json: `vision_config.{key}` is missing or not a whole number up to {MAX_SIZE}"
            ))
        })
}

impl Qwen2VisionConfig {
    /// Reads `vision_config` of a Qwen2-VL (`qwen2_5 = false`) or Qwen2.5-VL config.
    pub fn from_json(v: &Value, qwen2_5: bool) -> Result<Self> {
        // Absent: the default; present: checked like any size.
        let or = |key: &str, default: usize| -> Result<usize> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(_) => field(v, key),
            }
        };
        let channels = match v.get("in_chans").or_else(|| v.get("in_channels")) {
            None | Some(Value::Null) => 3,
            Some(_) if v.get("in_chans").is_some() => field(v, "in_chans")?,
            Some(_) => field(v, "in_channels")?,
        };
        let c = if qwen2_5 {
            let width = field(v, "hidden_size")?;
            Qwen2VisionConfig {
                kind: Qwen2VitKind::Qwen25 {
                    window_size: field(v, "window_size")?,
                    full_attention: v
                        .get("fullatt_block_indexes")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_u64)
                                .map(|x| x as usize)
                                .collect()
                        })
                        .unwrap_or_default(),
                },
                depth: field(v, "depth")?,
                width,
                heads: field(v, "num_heads")?,
                mlp: field(v, "intermediate_size")?,
                patch_size: or("patch_size", 14)?,
                temporal_patch_size: or("temporal_patch_size", 2)?,
                merge: or("spatial_merge_size", 2)?,
                channels,
                out_width: field(v, "out_hidden_size")?,
            }
        } else {
            let width = field(v, "embed_dim")?;
            Qwen2VisionConfig {
                kind: Qwen2VitKind::Qwen2,
                depth: field(v, "depth")?,
                width,
                heads: field(v, "num_heads")?,
                mlp: width * or("mlp_ratio", 4)?,
                patch_size: or("patch_size", 14)?,
                temporal_patch_size: or("temporal_patch_size", 2)?,
                merge: or("spatial_merge_size", 2)?,
                channels,
                out_width: field(v, "hidden_size")?,
            }
        };
        if [
            c.patch_size,
            c.temporal_patch_size,
            c.merge,
            c.channels,
            c.mlp,
            c.out_width,
        ]
        .contains(&0)
        {
            return Err(Error::config(format!(
                "config.json: the vision sizes must be positive ({c:?})"
            )));
        }
        if c.heads == 0
            || !c.width.is_multiple_of(c.heads)
            || !(c.width / c.heads).is_multiple_of(4)
        {
            return Err(Error::config(format!(
                "config.json: the vision width {} must split into {} heads of a size divisible by 4 (two rotary axes)",
                c.width, c.heads
            )));
        }
        Ok(c)
    }

    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// Values per flattened patch: channels × temporal_patch_size × patch_size².
    pub fn patch_values(&self) -> usize {
        self.channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// The 2-D rotary embedding of the attention: the first half of each head's rotary pairs
    /// turns by the patch's row, the second by its column, both with θ_i = 10000^(−2i/(D/2)),
    /// i < D/4 (`VisionRotaryEmbedding(head_dim / 2)`).
    pub fn rope(&self) -> Rope {
        let quarter = self.head_dim() / 4;
        let half_dim = (self.head_dim() / 2) as f64;
        let f: Vec<f64> = (0..quarter)
            .map(|i| 1.0 / 10000f64.powf((2 * i) as f64 / half_dim))
            .collect();
        Rope {
            inv_freq: f.iter().chain(&f).copied().collect(),
            scale: 1.0,
            sections: vec![quarter, quarter],
        }
    }
}

/// One image or video in patches: `t` temporal groups of `h` × `w` patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl Grid {
    pub fn patches(&self) -> usize {
        self.t * self.h * self.w
    }
}

/// Each patch's (row, column) in the order the processor lists patches: per temporal group,
/// s×s merge units in row-major order, the s×s patches of a unit row-major inside it.
pub fn patch_positions(grids: &[Grid], merge: usize) -> Positions {
    let mut ids = Vec::new();
    for g in grids {
        for _ in 0..g.t {
            for bh in 0..g.h / merge {
                for bw in 0..g.w / merge {
                    for i in 0..merge {
                        for j in 0..merge {
                            ids.push((bh * merge + i) as u32);
                            ids.push((bw * merge + j) as u32);
                        }
                    }
                }
            }
        }
    }
    Positions::new(ids, 2).expect("two ids per patch")
}

pub struct Qwen2VitLayer<T> {
    pub norm1_w: T,
    pub norm1_b: Option<T>,
    pub q_w: T,
    pub k_w: T,
    pub v_w: T,
    pub q_b: T,
    pub k_b: T,
    pub v_b: T,
    pub proj_w: T,
    pub proj_b: T,
    pub norm2_w: T,
    pub norm2_b: Option<T>,
    /// Qwen2-VL: fc1 (mlp, width). Qwen2.5-VL: gate_proj and up_proj stacked (2·mlp, width).
    pub fc1_w: T,
    pub fc1_b: T,
    /// fc2 / down_proj (width, mlp).
    pub fc2_w: T,
    pub fc2_b: T,
}

pub struct Qwen2VitParams<T> {
    /// The Conv3d as a GEMM weight: (width, channels·t·p·p).
    pub patch_w: T,
    pub layers: Vec<Qwen2VitLayer<T>>,
}

impl<T> Qwen2VitParams<T> {
    pub fn load(r: &mut WeightReader<T>, v: &Qwen2VisionConfig) -> Result<Self> {
        let (c, m) = (v.width, v.mlp);
        let (t, p, ch) = (v.temporal_patch_size, v.patch_size, v.channels);
        let conv = r.host("visual.patch_embed.proj.weight", &[c, ch, t, p, p])?;
        let patch_w = r.put_as(
            conv.reshape(&[c, v.patch_values()])?,
            crate::ops::Role::LinearWeight,
        )?;
        let layer_norm = matches!(v.kind, Qwen2VitKind::Qwen2);
        let layers = (0..v.depth)
            .map(|i| {
                let l = format!("visual.blocks.{i}");
                let norm_b = |r: &mut WeightReader<T>, n: &str| -> Result<Option<T>> {
                    if layer_norm {
                        Ok(Some(r.get(&format!("{l}.{n}.bias"), &[c])?))
                    } else {
                        Ok(None)
                    }
                };
                // q, k and v apart: each is rotated before the attention.
                let qkv = r.host(&format!("{l}.attn.qkv.weight"), &[3 * c, c])?;
                let qkv_b = r.host(&format!("{l}.attn.qkv.bias"), &[3 * c])?;
                let part = |r: &mut WeightReader<T>, i: usize| -> Result<(T, T)> {
                    let w = crate::tensor::Tensor::new(
                        vec![c, c],
                        qkv.data()[i * c * c..(i + 1) * c * c].to_vec(),
                    )?;
                    let b = crate::tensor::Tensor::new(
                        vec![c],
                        qkv_b.data()[i * c..(i + 1) * c].to_vec(),
                    )?;
                    Ok((r.put_as(w, crate::ops::Role::LinearWeight)?, r.put(b)?))
                };
                let (q_w, q_b) = part(r, 0)?;
                let (k_w, k_b) = part(r, 1)?;
                let (v_w, v_b) = part(r, 2)?;
                let (fc1_w, fc1_b, fc2_w, fc2_b) = if layer_norm {
                    (
                        r.linear(&format!("{l}.mlp.fc1.weight"), &[m, c])?,
                        r.get(&format!("{l}.mlp.fc1.bias"), &[m])?,
                        r.linear(&format!("{l}.mlp.fc2.weight"), &[c, m])?,
                        r.get(&format!("{l}.mlp.fc2.bias"), &[c])?,
                    )
                } else {
                    let gate = format!("{l}.mlp.gate_proj");
                    let up = format!("{l}.mlp.up_proj");
                    (
                        r.stacked(
                            &[&format!("{gate}.weight"), &format!("{up}.weight")],
                            &[[m, c], [m, c]],
                        )?,
                        r.concat(&[&format!("{gate}.bias"), &format!("{up}.bias")], &[m, m])?,
                        r.linear(&format!("{l}.mlp.down_proj.weight"), &[c, m])?,
                        r.get(&format!("{l}.mlp.down_proj.bias"), &[c])?,
                    )
                };
                Ok(Qwen2VitLayer {
                    norm1_w: r.get(&format!("{l}.norm1.weight"), &[c])?,
                    norm1_b: norm_b(r, "norm1")?,
                    q_w,
                    k_w,
                    v_w,
                    q_b,
                    k_b,
                    v_b,
                    proj_w: r.linear(&format!("{l}.attn.proj.weight"), &[c, c])?,
                    proj_b: r.get(&format!("{l}.attn.proj.bias"), &[c])?,
                    norm2_w: r.get(&format!("{l}.norm2.weight"), &[c])?,
                    norm2_b: norm_b(r, "norm2")?,
                    fc1_w,
                    fc1_b,
                    fc2_w,
                    fc2_b,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Qwen2VitParams { patch_w, layers })
    }
}

/// The vision norm: LayerNorm (with a bias) or RMSNorm, ε 1e-6.
pub fn norm<O: VlmOps>(ops: &mut O, x: &O::T, w: &O::T, b: Option<&O::T>) -> Result<O::T> {
    match b {
        Some(b) => ops.layer_norm(x, w, b, 1e-6),
        None => ops.rms_norm(x, w, 1e-6),
    }
}

/// Which rows attend together: runs of `blocks` equal blocks of `len` consecutive rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spans(pub Vec<(usize, usize)>);

impl Spans {
    /// Each temporal group of each grid attends within itself (`cu_seqlens`).
    pub fn per_frame(grids: &[Grid]) -> Self {
        Spans(grids.iter().map(|g| (g.t, g.h * g.w)).collect())
    }
}

/// Qwen2.5-VL's windows: merge units regrouped window by window (`get_window_index`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowPlan {
    /// The merge units (s² consecutive patch rows each) in window order: position i holds the
    /// unit that goes i-th.
    pub units: Vec<u32>,
    /// The windows' patch-row spans in that order (windows at the right and bottom edges are
    /// smaller).
    pub windows: Spans,
}

impl WindowPlan {
    /// Windows of `window_units` × `window_units` merge units over each temporal group of each
    /// grid, row-major over the windows, row-major inside each; empty windows dropped.
    pub fn new(grids: &[Grid], merge: usize, window_units: usize) -> Self {
        let n = window_units.max(1);
        let mut units = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        let mut first = 0usize;
        for g in grids {
            let (uh, uw) = (g.h / merge, g.w / merge);
            for t in 0..g.t {
                for wy in 0..uh.div_ceil(n) {
                    for wx in 0..uw.div_ceil(n) {
                        let mut count = 0;
                        for y in wy * n..((wy + 1) * n).min(uh) {
                            for x in wx * n..((wx + 1) * n).min(uw) {
                                units.push((first + (t * uh + y) * uw + x) as u32);
                                count += 1;
                            }
                        }
                        sizes.push(count * merge * merge);
                    }
                }
            }
            first += g.t * uh * uw;
        }
        // Runs of equal window sizes become one block attention each.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for len in sizes {
            match runs.last_mut() {
                Some((count, l)) if *l == len => *count += 1,
                _ => runs.push((1, len)),
            }
        }
        WindowPlan {
            units,
            windows: Spans(runs),
        }
    }

    /// The patch rows in window order: rows u·s² .. (u+1)·s² of each unit u in turn.
    pub fn patch_rows(&self, unit: usize) -> Vec<u32> {
        self.units
            .iter()
            .flat_map(|&u| (0..unit as u32).map(move |i| u * unit as u32 + i))
            .collect()
    }

    /// Where each unit's output row goes back to (the inverse permutation).
    pub fn inverse(&self) -> Vec<u32> {
        let mut inv = vec![0u32; self.units.len()];
        for (i, &u) in self.units.iter().enumerate() {
            inv[u as usize] = i as u32;
        }
        inv
    }
}

/// Attention of q, k, v (R, C) within `spans`.
fn attend<O: VlmOps>(
    ops: &mut O,
    q: &O::T,
    k: &O::T,
    v: &O::T,
    spans: &Spans,
    heads: usize,
) -> Result<O::T> {
    if let [(blocks, _)] = spans.0[..] {
        return ops.block_attention(q, k, v, blocks, heads);
    }
    let mut at = 0;
    let mut parts = Vec::new();
    for &(blocks, len) in &spans.0 {
        let rows = blocks * len;
        let (qs, ks, vs) = (
            ops.rows(q, at, rows),
            ops.rows(k, at, rows),
            ops.rows(v, at, rows),
        );
        parts.push(ops.block_attention(&qs, &ks, &vs, blocks, heads)?);
        at += rows;
    }
    ops.concat_rows(&parts)
}

/// The encoder on flattened patches (R, channels·t·p·p) of `grids`, rows in the processor's
/// order: hidden states (R, width) before the merger. `spans_of(layer)` says which rows attend
/// together in each block; `positions` are `patch_positions` (in the rows' order).
pub fn encode<O: VlmOps>(
    ops: &mut O,
    p: &Qwen2VitParams<O::T>,
    v: &Qwen2VisionConfig,
    patches: &O::T,
    positions: &Positions,
    spans_of: &dyn Fn(usize) -> Spans,
) -> Result<O::T> {
    let _awake = ops.keep_awake();
    let (heads, d) = (v.heads, v.head_dim());
    let rope = v.rope();
    rope.check(positions, ops.row_count(patches), "vision encoder")?;
    let pos = ops.positions(positions)?;
    ops.stage("vit.embed")?;
    let mut x = ops.linear(patches, &p.patch_w, None)?;
    for (i, l) in p.layers.iter().enumerate() {
        ops.stage(&format!("vit.layer{i}"))?;
        let h = norm(ops, &x, &l.norm1_w, l.norm1_b.as_ref())?;
        let q = ops.linear(&h, &l.q_w, Some(&l.q_b))?;
        let k = ops.linear(&h, &l.k_w, Some(&l.k_b))?;
        let vv = ops.linear(&h, &l.v_w, Some(&l.v_b))?;
        let q = ops.rope(&q, heads, d, &pos, &rope)?;
        let k = ops.rope(&k, heads, d, &pos, &rope)?;
        let a = attend(ops, &q, &k, &vv, &spans_of(i), heads)?;
        x = ops.linear_residual(&a, &l.proj_w, Some(&l.proj_b), &x, None)?;
        let h = norm(ops, &x, &l.norm2_w, l.norm2_b.as_ref())?;
        let h = ops.linear(&h, &l.fc1_w, Some(&l.fc1_b))?;
        let h = match v.kind {
            Qwen2VitKind::Qwen2 => ops.quick_gelu(&h)?,
            Qwen2VitKind::Qwen25 { .. } => ops.swiglu(&h)?,
        };
        x = ops.linear_residual(&h, &l.fc2_w, Some(&l.fc2_b), &x, None)?;
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_positions_follow_the_merge_units() {
        // One frame of 2×4 patches, s = 2: units (0,0) and (0,1), each 2×2 row-major.
        let p = patch_positions(&[Grid { t: 1, h: 2, w: 4 }], 2);
        let rows: Vec<&[u32]> = (0..p.rows()).map(|r| p.row(r)).collect();
        assert_eq!(
            rows,
            [
                [0, 0],
                [0, 1],
                [1, 0],
                [1, 1],
                [0, 2],
                [0, 3],
                [1, 2],
                [1, 3]
            ]
        );
        // Two temporal groups repeat the grid.
        assert_eq!(patch_positions(&[Grid { t: 2, h: 2, w: 2 }], 2).rows(), 8);
    }

    #[test]
    fn windows_group_merge_units_and_shrink_at_the_edges() {
        // One frame of 6×4 patches, s = 2 → 3×2 units; windows of 2×2 units: the first holds
        // units 0, 1, 2, 3 (rows 0–1), the second units 4, 5 (row 2).
        let plan = WindowPlan::new(&[Grid { t: 1, h: 6, w: 4 }], 2, 2);
        assert_eq!(plan.units, [0, 1, 2, 3, 4, 5]);
        assert_eq!(plan.windows, Spans(vec![(1, 16), (1, 8)]));
        // 4×6 patches → 2×3 units: windows (0, 1, 3, 4) and (2, 5), 16 and 8 rows.
        let plan = WindowPlan::new(&[Grid { t: 2, h: 4, w: 6 }], 2, 2);
        assert_eq!(plan.units, [0, 1, 3, 4, 2, 5, 6, 7, 9, 10, 8, 11]);
        assert_eq!(plan.windows, Spans(vec![(1, 16), (1, 8), (1, 16), (1, 8)]));
        assert_eq!(&plan.patch_rows(4)[..8], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(&plan.patch_rows(4)[8..12], &[12, 13, 14, 15]);
        let inv = plan.inverse();
        for (i, &u) in plan.units.iter().enumerate() {
            assert_eq!(inv[u as usize] as usize, i);
        }
    }

    #[test]
    fn the_rotary_embedding_splits_pairs_over_row_and_column() {
        let v = Qwen2VisionConfig {
            kind: Qwen2VitKind::Qwen2,
            depth: 1,
            width: 32,
            heads: 2,
            mlp: 64,
            patch_size: 14,
            temporal_patch_size: 2,
            merge: 2,
            channels: 3,
            out_width: 8,
        };
        // head_dim 16: 8 pairs, 4 per axis, θ_i = 10000^(−2i/8) for i < 4, repeated.
        let r = v.rope();
        assert_eq!(r.sections, [4, 4]);
        assert_eq!(r.inv_freq.len(), 8);
        assert!((r.inv_freq[1] - 0.1).abs() < 1e-15 && (r.inv_freq[5] - 0.1).abs() < 1e-15);
    }
}
