//! InternViT, InternVL's vision encoder, written once over `VlmOps`. Weight names are the
//! released model's (`vision_model.*`); its projector is `internvl_projector.rs`.

use super::config::{InternVlConfig, NormKind, VisionConfig};
use super::weights::WeightReader;
use crate::error::{Error, Result};
use crate::ops::Axis;
use crate::ops::Role;
use crate::ops::VlmOps;
use crate::tensor::Tensor;

/// A LayerNorm (weight + bias) or an RMSNorm (weight only).
pub struct NormParams<T> {
    pub weight: T,
    pub bias: Option<T>,
}

pub struct VitLayer<T> {
    pub norm1: NormParams<T>,
    pub qkv_w: T,
    pub qkv_b: Option<T>,
    pub proj_w: T,
    pub proj_b: T,
    pub ls1: T,
    /// InternViT-6B's qk-norm: RMSNorm weights (C) of the queries and keys (over all heads).
    pub qk_norm: Option<(T, T)>,
    pub norm2: NormParams<T>,
    pub fc1_w: T,
    pub fc1_b: T,
    pub fc2_w: T,
    pub fc2_b: T,
    pub ls2: T,
}

pub struct VitParams<T> {
    /// The 14×14 patch convolution as a GEMM weight: (C, channels·p·p).
    pub patch_w: T,
    /// Added to every frame's (1 + P) rows: row 0 = class embedding + position 0, row i =
    /// patch-conv bias + (interpolated) position i. The CLS row of the patch GEMM input is zero,
    /// so one GEMM and one add give exactly conv + bias, CLS, + position embedding.
    pub embed_table: T,
    /// Only the layers `select_layer` uses.
    pub layers: Vec<VitLayer<T>>,
}

fn norm_params<T>(
    r: &mut WeightReader<T>,
    key: &str,
    kind: NormKind,
    c: usize,
) -> Result<NormParams<T>> {
    Ok(NormParams {
        weight: r.get(&format!("{key}.weight"), &[c])?,
        bias: match kind {
            NormKind::LayerNorm => Some(r.get(&format!("{key}.bias"), &[c])?),
            NormKind::RmsNorm => None,
        },
    })
}

impl<T> VitParams<T> {
    pub fn load(r: &mut WeightReader<T>, cfg: &InternVlConfig) -> Result<Self> {
        let v = &cfg.vision;
        let (c, p, ch) = (v.hidden_size, v.patch_size, v.channels);
        let e = "vision_model.embeddings";
        let patch_w = r.host(&format!("{e}.patch_embedding.weight"), &[c, ch, p, p])?;
        let patch_b = r.host(&format!("{e}.patch_embedding.bias"), &[c])?;
        let cls = r.host(&format!("{e}.class_embedding"), &[1, 1, c])?;
        let stored_grid = v.stored_image_size / p;
        let pos = r.host(
            &format!("{e}.position_embedding"),
            &[1, 1 + stored_grid * stored_grid, c],
        )?;
        let grid = v.grid();
        let patch_pos = if grid == stored_grid {
            pos.data()[c..].to_vec()
        } else {
            bicubic_resize_grid(&pos.data()[c..], stored_grid, grid, c)
        };
        let mut table = Vec::with_capacity((1 + grid * grid) * c);
        table.extend(cls.data().iter().zip(&pos.data()[..c]).map(|(a, b)| a + b));
        for row in patch_pos.chunks(c) {
            table.extend(row.iter().zip(patch_b.data()).map(|(a, b)| a + b));
        }
        let patch_w = r.put_as(patch_w.reshape(&[c, ch * p * p])?, Role::LinearWeight)?;
        let embed_table = r.put(Tensor::new(vec![1 + grid * grid, c], table)?)?;
        let (m, kind) = (v.intermediate_size, v.norm);
        let layers = (0..cfg.vision_layers_used)
            .map(|i| {
                let l = format!("vision_model.encoder.layers.{i}");
                Ok(VitLayer {
                    norm1: norm_params(r, &format!("{l}.norm1"), kind, c)?,
                    qkv_w: r.linear(&format!("{l}.attn.qkv.weight"), &[3 * c, c])?,
                    qkv_b: if v.qkv_bias {
                        Some(r.get(&format!("{l}.attn.qkv.bias"), &[3 * c])?)
                    } else {
                        None
                    },
                    proj_w: r.linear(&format!("{l}.attn.proj.weight"), &[c, c])?,
                    proj_b: r.get(&format!("{l}.attn.proj.bias"), &[c])?,
                    ls1: r.get(&format!("{l}.ls1"), &[c])?,
                    qk_norm: if v.qk_normalization {
                        Some((
                            r.get(&format!("{l}.attn.q_norm.weight"), &[c])?,
                            r.get(&format!("{l}.attn.k_norm.weight"), &[c])?,
                        ))
                    } else {
                        None
                    },
                    norm2: norm_params(r, &format!("{l}.norm2"), kind, c)?,
                    fc1_w: r.linear(&format!("{l}.mlp.fc1.weight"), &[m, c])?,
                    fc1_b: r.get(&format!("{l}.mlp.fc1.bias"), &[m])?,
                    fc2_w: r.linear(&format!("{l}.mlp.fc2.weight"), &[c, m])?,
                    fc2_b: r.get(&format!("{l}.mlp.fc2.bias"), &[c])?,
                    ls2: r.get(&format!("{l}.ls2"), &[c])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(VitParams {
            patch_w,
            embed_table,
            layers,
        })
    }
}

/// PyTorch's `F.interpolate(mode='bicubic', align_corners=False)` of a (grid, grid, C) table to
/// (out, out, C): cubic convolution with A = −0.75, source coordinate (dst + 0.5)·in/out − 0.5,
/// taps clamped to the border.
pub fn bicubic_resize_grid(src: &[f32], grid: usize, out: usize, c: usize) -> Vec<f32> {
    fn cubic(t: f64) -> [f64; 4] {
        const A: f64 = -0.75;
        let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
        let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
        [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
    }
    let scale = grid as f64 / out as f64;
    let taps = |d: usize| -> ([usize; 4], [f64; 4]) {
        let real = (d as f64 + 0.5) * scale - 0.5;
        let base = real.floor();
        let w = cubic(real - base);
        let idx = std::array::from_fn(|i| {
            (base as i64 - 1 + i as i64).clamp(0, grid as i64 - 1) as usize
        });
        (idx, w)
    };
    let mut dst = vec![0.0f32; out * out * c];
    for y in 0..out {
        let (iy, wy) = taps(y);
        for x in 0..out {
            let (ix, wx) = taps(x);
            for ch in 0..c {
                let mut s = 0.0f64;
                for (a, &yy) in iy.iter().enumerate() {
                    for (b, &xx) in ix.iter().enumerate() {
                        s += wy[a] * wx[b] * src[(yy * grid + xx) * c + ch] as f64;
                    }
                }
                dst[(y * out + x) * c + ch] = s as f32;
            }
        }
    }
    dst
}

/// Cuts normalised frames (F, channels, S, S) into the patch GEMM's rows: per frame one zero row
/// (the CLS slot) then the P patches in row-major grid order, each flattened as (channel, ky, kx)
/// like the convolution weight → (F·(1 + P), channels·p·p).
pub fn patchify(pixels: &Tensor, v: &VisionConfig) -> Result<Tensor> {
    let (s, p, ch) = (v.image_size, v.patch_size, v.channels);
    let f = match pixels.shape() {
        [f, c, h, w] if *c == ch && *h == s && *w == s => *f,
        other => {
            return Err(Error::input(format!(
                "pixel values must be (frames, {ch}, {s}, {s}); got {other:?}"
            )))
        }
    };
    let g = s / p;
    let width = ch * p * p;
    let mut rows = vec![0.0f32; f * (1 + g * g) * width];
    let px = pixels.data();
    for frame in 0..f {
        for gy in 0..g {
            for gx in 0..g {
                let row = frame * (1 + g * g) + 1 + gy * g + gx;
                let dst = &mut rows[row * width..][..width];
                for c in 0..ch {
                    for ky in 0..p {
                        let src = ((frame * ch + c) * s + gy * p + ky) * s + gx * p;
                        dst[(c * p + ky) * p..][..p].copy_from_slice(&px[src..src + p]);
                    }
                }
            }
        }
    }
    Tensor::new(vec![f * (1 + g * g), width], rows)
}

fn norm<O: VlmOps>(ops: &mut O, x: &O::T, n: &NormParams<O::T>, eps: f32) -> Result<O::T> {
    match &n.bias {
        Some(b) => ops.layer_norm(x, &n.weight, b, eps),
        None => ops.rms_norm(x, &n.weight, eps),
    }
}

/// The encoder's hidden states after the selected layer, CLS included: (F·(1 + P), C).
pub fn encode<O: VlmOps>(
    ops: &mut O,
    p: &VitParams<O::T>,
    v: &VisionConfig,
    patches: &O::T,
    frames: usize,
) -> Result<O::T> {
    let _awake = ops.keep_awake();
    let tokens = 1 + v.grid() * v.grid();
    ops.stage("vit.embed")?;
    let x = ops.linear(patches, &p.patch_w, None)?;
    let mut x = ops.residual_add(&x, &p.embed_table, None)?;
    for (i, l) in p.layers.iter().enumerate() {
        ops.stage(&format!("vit.layer{i}"))?;
        let h = norm(ops, &x, &l.norm1, v.eps)?;
        let a = match &l.qk_norm {
            None => {
                let qkv = ops.linear(&h, &l.qkv_w, l.qkv_b.as_ref())?;
                ops.self_attention(&qkv, frames, tokens, v.heads, Axis::Tokens)?
            }
            Some((qn, kn)) => {
                let norms = Some((qn, kn, v.eps));
                split_attention(ops, l, &h, frames, tokens, v.heads, norms)?
            }
        };
        x = ops.linear_residual(&a, &l.proj_w, Some(&l.proj_b), &x, Some(&l.ls1))?;
        let h = norm(ops, &x, &l.norm2, v.eps)?;
        let h = ops.linear_gelu(&h, &l.fc1_w, Some(&l.fc1_b))?;
        x = ops.linear_residual(&h, &l.fc2_w, Some(&l.fc2_b), &x, Some(&l.ls2))?;
    }
    Ok(x)
}

/// The ViT's attention with q, k, v computed apart (row views of the packed qkv weight), q and
/// k RMS-normalised over all heads when `norms` is given (InternViT-6B's qk-norm), then each
/// frame's attention as a cross-attention of its rows. Without norms it equals the packed path.
pub fn split_attention<O: VlmOps>(
    ops: &mut O,
    l: &VitLayer<O::T>,
    h: &O::T,
    frames: usize,
    tokens: usize,
    heads: usize,
    norms: Option<(&O::T, &O::T, f32)>,
) -> Result<O::T> {
    let c = ops.row_count(&l.proj_w);
    let part = |ops: &mut O, i: usize| -> Result<O::T> {
        let w = ops.rows(&l.qkv_w, i * c, c);
        let b = l.qkv_b.as_ref().map(|b| ops.rows(b, i * c, c));
        ops.linear(h, &w, b.as_ref())
    };
    let (mut q, mut k, v) = (part(ops, 0)?, part(ops, 1)?, part(ops, 2)?);
    if let Some((qn, kn, eps)) = norms {
        q = ops.rms_norm(&q, qn, eps)?;
        k = ops.rms_norm(&k, kn, eps)?;
    }
    let per_frame = (0..frames)
        .map(|f| {
            let (qf, kf, vf) = (
                ops.rows(&q, f * tokens, tokens),
                ops.rows(&k, f * tokens, tokens),
                ops.rows(&v, f * tokens, tokens),
            );
            ops.cross_attention(&qf, &kf, &vf, heads)
        })
        .collect::<Result<Vec<_>>>()?;
    ops.concat_rows(&per_frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_attention_without_norms_equals_the_packed_path() {
        use crate::cpu::CpuOps;
        use crate::ops::Ops;
        let (c, frames, tokens, heads) = (8, 3, 5, 2);
        let mut rng = crate::rand::SeededRng::new(3);
        let mut t = |shape: &[usize]| {
            Tensor::new(shape.to_vec(), rng.vec(shape.iter().product(), 1.0)).unwrap()
        };
        let layer = VitLayer {
            norm1: NormParams {
                weight: t(&[c]),
                bias: None,
            },
            qkv_w: t(&[3 * c, c]),
            qkv_b: Some(t(&[3 * c])),
            proj_w: t(&[c, c]),
            proj_b: t(&[c]),
            ls1: t(&[c]),
            qk_norm: None,
            norm2: NormParams {
                weight: t(&[c]),
                bias: None,
            },
            fc1_w: t(&[c, c]),
            fc1_b: t(&[c]),
            fc2_w: t(&[c, c]),
            fc2_b: t(&[c]),
            ls2: t(&[c]),
        };
        let h = t(&[frames * tokens, c]);
        let mut ops = CpuOps::new();
        let qkv = ops.linear(&h, &layer.qkv_w, layer.qkv_b.as_ref()).unwrap();
        let packed = ops
            .self_attention(&qkv, frames, tokens, heads, Axis::Tokens)
            .unwrap();
        let split = split_attention(&mut ops, &layer, &h, frames, tokens, heads, None).unwrap();
        // Same sums in the same order per head: equal to f32 rounding.
        assert!(packed.max_abs_diff(&split) < 1e-6);
    }

    #[test]
    fn bicubic_impulse_response_by_hand() {
        // 4×4 → 8×8: source coordinate s = d/2 − 0.25. Output 3 has s = 1.25 (taps 0..3,
        // t = 0.25), output 5 has s = 2.25 (taps 1..4, t = 0.25). With A = −0.75 the weights at
        // t = 0.25 are (−0.10546875, 0.87890625, 0.26171875, −0.03515625) (computed by hand
        // from PyTorch's cubic_convolution1/2). An impulse at (1, 1) gives 0.87890625² at
        // (3, 3) and 0.87890625 · −0.10546875 at (3, 5).
        let mut src = vec![0.0f32; 16];
        src[4 + 1] = 1.0;
        let out = bicubic_resize_grid(&src, 4, 8, 1);
        assert!((out[3 * 8 + 3] - 0.878_906_25f32.powi(2)).abs() < 1e-6);
        assert!((out[3 * 8 + 5] - 0.878_906_25 * -0.105_468_75).abs() < 1e-6);
    }

    #[test]
    fn bicubic_same_size_is_identity_and_constant_stays_constant() {
        let src: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let same = bicubic_resize_grid(&src, 3, 3, 1);
        for (a, b) in same.iter().zip(&src) {
            assert!((a - b).abs() < 1e-6);
        }
        // The cubic weights sum to 1: a constant table stays constant at any size.
        let up = bicubic_resize_grid(&[2.5; 4], 2, 5, 1);
        assert!(up.iter().all(|v| (v - 2.5).abs() < 1e-6));
    }
}
