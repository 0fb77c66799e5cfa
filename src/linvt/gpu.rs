//! LinVT on the attached GPU: the whole forward in one command encoder, one read-back.

use super::forward::forward;
use super::{CondenseOptions, Condensed, Linvt};
use crate::error::{Error, Result};
use crate::gpu::{GpuOps, GpuTensor, Recorder};
use crate::ops::Device;
use crate::tensor::Tensor;

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
