//! The GPU executor: records every op into one command encoder (see `gpu::Recorder`).

use super::forward::forward;
use super::{CondenseOptions, Condensed, Linvt};
use crate::error::Error;
use crate::error::Result;
use crate::gpu::topk::TopKResult;
use crate::gpu::{self, GpuTensor, Recorder};
use crate::ops::Device;
use crate::ops::Norm;
use crate::ops::Ops;
use crate::ops::TopKOrder;
use crate::ops::{AttnGeometry, Axis};
use crate::tensor::Tensor;

pub struct GpuOps<'a> {
    pub rec: Recorder<'a>,
    /// What the video-LLM ops keep between calls (RoPE tables, row-chunked tables).
    pub vlm: crate::vlm::gpu_exec::GpuVlmState,
    /// Numerical-health words recorded since the last read-back, checked with it (see
    /// [`HealthCheck`]): the one place the GPU executor reports what the CPU stops at at once.
    pub pending_checks: Vec<HealthCheck>,
}

/// A status word a kernel wrote that must be read back and checked with the next results.
pub enum HealthCheck {
    /// A top-k's non-finite status (`gpu::topk::status_error`) over a grid of this many tokens
    /// per frame.
    TopK {
        status: GpuTensor,
        tokens_per_frame: usize,
    },
}

impl HealthCheck {
    pub fn tensor(&self) -> &GpuTensor {
        match self {
            HealthCheck::TopK { status, .. } => status,
        }
    }

    /// Turns the read-back word into the error the CPU executor would have raised.
    pub fn check(&self, bytes: &[u8]) -> Result<()> {
        match self {
            HealthCheck::TopK {
                tokens_per_frame, ..
            } => {
                let status: Vec<u32> = bytemuck::pod_collect_to_vec(bytes);
                crate::gpu::topk::status_error(status[0], *tokens_per_frame)
            }
        }
    }
}

impl<'a> GpuOps<'a> {
    pub fn new(rec: Recorder<'a>) -> Self {
        GpuOps {
            rec,
            vlm: Default::default(),
            pending_checks: Vec::new(),
        }
    }
}

impl Ops for GpuOps<'_> {
    type T = GpuTensor;
    type Idx = TopKResult;

    fn linear(&mut self, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
        self.linear_with(x, w, b, gpu::linear::Epilogue::None)
    }

    fn row_count(&self, x: &GpuTensor) -> usize {
        x.rows()
    }

    fn rows(&mut self, x: &GpuTensor, start: usize, len: usize) -> GpuTensor {
        if x.shape.len() == 1 {
            x.slice(start, len)
        } else {
            x.rows_view(start, len)
        }
    }

    fn add_layer_norm(
        &mut self,
        x: &GpuTensor,
        residual: &GpuTensor,
        p: &Norm<GpuTensor>,
        eps: f32,
    ) -> Result<GpuTensor> {
        gpu::norm::layer_norm(&mut self.rec, x, Some(residual), &p.weight, &p.bias, eps)
    }

    fn self_attention(
        &mut self,
        qkv: &GpuTensor,
        frames: usize,
        tokens: usize,
        heads: usize,
        axis: Axis,
    ) -> Result<GpuTensor> {
        let e = qkv.cols() / 3;
        let g = AttnGeometry::along_axis(frames, tokens, e, heads, axis);
        let out = self.rec.alloc("attention.out", &[frames * tokens, e])?;
        gpu::attention::attention(&mut self.rec, qkv, qkv, qkv, &out, &g)?;
        Ok(out)
    }

    fn cross_attention(
        &mut self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        heads: usize,
    ) -> Result<GpuTensor> {
        let g = AttnGeometry::cross(q.rows(), k.rows(), q.cols(), heads);
        let out = self
            .rec
            .alloc("cross_attention.out", &[q.rows(), q.cols()])?;
        gpu::attention::attention(&mut self.rec, q, k, v, &out, &g)?;
        Ok(out)
    }

    fn attention_probs(&mut self, q: &GpuTensor, k: &GpuTensor, heads: usize) -> Result<GpuTensor> {
        let g = AttnGeometry::cross(q.rows(), k.rows(), q.cols(), heads);
        let p = gpu::attention::attention_probs(&mut self.rec, q, k, &g)?;
        Ok(p.reshaped(&[heads, q.rows(), k.rows()]))
    }

    fn top_k(
        &mut self,
        scores: &GpuTensor,
        k: usize,
        order: TopKOrder,
        tokens_per_frame: usize,
    ) -> Result<TopKResult> {
        let flat = scores.reshaped(&[scores.len()]);
        let r = gpu::topk::top_k(&mut self.rec, &flat, k, order)?;
        self.pending_checks.push(HealthCheck::TopK {
            status: r.status.clone(),
            tokens_per_frame,
        });
        Ok(r)
    }

    fn gather_pool(
        &mut self,
        x: &GpuTensor,
        idx: Option<&TopKResult>,
        count: usize,
        scales: &[usize],
    ) -> Result<GpuTensor> {
        gpu::window_pool::gather_pool(&mut self.rec, x, idx.map(|r| &r.indices), count, scales)
    }

    fn concat_rows(&mut self, parts: &[GpuTensor]) -> Result<GpuTensor> {
        let cols = parts.first().map(GpuTensor::cols).unwrap_or(0);
        let rows: usize = parts.iter().map(GpuTensor::rows).sum();
        let out = self.rec.alloc("concat", &[rows, cols])?;
        let mut at = 0;
        for p in parts {
            self.rec.copy(p, &out.rows_view(at, p.rows()))?;
            at += p.rows();
        }
        Ok(out)
    }

    fn stage(&mut self, name: &str) -> Result<()> {
        self.rec.stage(name)
    }
}

impl Linvt {
    /// Runs on the attached GPU: the whole forward in one command encoder, one readback.
    pub async fn condense_gpu(
        &self,
        video: &Tensor,
        text: &Tensor,
        opts: &CondenseOptions,
    ) -> Result<Condensed> {
        let g = self.gpu.as_ref().ok_or_else(|| {
            Error::Gpu("no GPU attached to this model; call attach_gpu first".into())
        })?;
        let (video, text, dims) = self.prepare_inputs(video, text)?;
        let ctx = &g.ctx;
        check_sizes(ctx, self, dims, opts.provenance)?;
        let v = ctx.alloc(&g.pool, "video tokens", video.shape())?;
        let t = ctx.alloc(&g.pool, "text embeddings", text.shape())?;
        ctx.queue
            .write_buffer(v.buffer()?, 0, bytemuck::cast_slice(video.data()));
        ctx.queue
            .write_buffer(t.buffer()?, 0, bytemuck::cast_slice(text.data()));
        let mut rec = Recorder::new(ctx, &g.pool);
        if opts.profile {
            rec = rec.with_profiling();
        }
        let mut ops = GpuOps::new(rec);
        let f = forward(
            &mut ops,
            &self.config,
            &g.params,
            &v,
            &t,
            dims,
            self.num_queries(),
            opts.want(),
        )?;
        let (encoder, times) = ops.rec.finish()?;
        // The forward's one top-k status is read with the results, at index 3.
        let mut wanted: Vec<&GpuTensor> =
            vec![&f.output, &f.scores, &f.indices.indices, &f.indices.status];
        wanted.extend(f.aggregation_probs.iter());
        wanted.extend(f.trace.iter().map(|(_, t)| t));
        let bytes = ctx.read_back(encoder, &wanted).await?;
        let status: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes[3]);
        crate::gpu::topk::status_error(status[0], dims.tokens)?;
        let output: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[0]);
        let indices: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes[2]);
        let provenance = if opts.provenance {
            let probs = f
                .aggregation_probs
                .iter()
                .zip(&bytes[4..4 + f.aggregation_probs.len()])
                .map(|(p, b)| Tensor::new(p.shape.clone(), bytemuck::pod_collect_to_vec(b)))
                .collect::<Result<Vec<_>>>()?;
            Some(self.compose_provenance(&f, dims, &indices, probs))
        } else {
            None
        };
        Ok(Condensed {
            output: Tensor::new(f.output.shape.clone(), output)?,
            selected_indices: indices,
            scores: bytemuck::pod_collect_to_vec(&bytes[1]),
            frames: dims.frames,
            tokens: dims.tokens,
            k: dims.k,
            k_requested: self.config.top_k,
            provenance,
            stage_ms: times.0,
            device: Device::Gpu,
            trace: f
                .trace
                .iter()
                .zip(&bytes[4 + f.aggregation_probs.len()..])
                .map(|((name, t), b)| {
                    Ok((
                        name.clone(),
                        Tensor::new(t.shape.clone(), bytemuck::pod_collect_to_vec(b))?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?,
            adapter: ctx.adapter_name().to_string(),
        })
    }
}

/// Refuses, before anything is recorded, a call whose largest tensors exceed one storage
/// binding, naming the tensor and how many frames would fit.
fn check_sizes(
    ctx: &crate::gpu::GpuContext,
    m: &Linvt,
    dims: super::forward::Dims,
    provenance: bool,
) -> Result<()> {
    let cfg = m.config();
    let (tn, e) = (dims.frames * dims.tokens, cfg.embed_size);
    let limit = ctx.max_binding_bytes();
    let pooled = crate::cpu::window_pool::pooled_rows(dims.k, &cfg.pool_scales);
    let mut tensors = vec![
        ("video tokens (T·N × E)", tn * e, e),
        ("SVR qkv projection (T·N × 3E)", tn * 3 * e, 3 * e),
        ("pooled tokens (S × E)", pooled * e, 0),
    ];
    if provenance {
        tensors.push((
            "aggregation weights (heads × Q × S)",
            cfg.num_heads * m.num_queries() * pooled,
            0,
        ));
    }
    for (name, elements, per_token) in tensors {
        let bytes = elements as u64 * 4;
        if bytes > limit {
            let hint = if per_token > 0 {
                let max_tokens = limit / (per_token as u64 * 4);
                format!(
                    "reduce the clip to at most {} frames of {} tokens (or split it into shorter clips), or use an adapter with a larger storage-binding limit",
                    max_tokens / dims.tokens as u64,
                    dims.tokens
                )
            } else {
                "lower top_k or the number of queries".to_string()
            };
            return Err(Error::TensorTooLarge {
                tensor: name.to_string(),
                bytes,
                limit,
                hint,
            });
        }
    }
    Ok(())
}
