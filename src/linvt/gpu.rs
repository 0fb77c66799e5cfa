//! LinVT on the attached GPU: the whole forward in one command encoder, one read-back.

use super::forward::{forward, Dims};
use super::split::{Split, Tiled};
use super::{CondenseOptions, Condensed, Linvt};
use crate::error::{Error, Result};
use crate::gpu::{GpuOps, GpuTensor, Recorder};
use crate::ops::{Device, Ops};
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
        let mut rec = Recorder::new(ctx, &g.pool);
        if opts.profile {
            rec = rec.with_profiling();
        }
        let mut ops = GpuOps::new(rec);
        ops.binding_limit = opts.binding_limit;
        let limit = ops.binding_limit().expect("a GPU has a binding limit");
        check_sizes(limit, self, dims, opts.provenance)?;
        // The clip goes up already cut as the forward will need it (tiles of whole frames).
        let e = self.config.embed_size;
        let split = Split::plan(dims.frames, dims.tokens, e, Some(limit))?;
        let mut tiles = Vec::with_capacity(split.by_frames.len());
        for tile in &split.by_frames {
            let rows = tile.frames.start * dims.tokens..tile.frames.end * dims.tokens;
            let v = ctx.alloc(&g.pool, "video tokens", &[rows.len(), e])?;
            ctx.queue.write_buffer(
                v.buffer()?,
                0,
                bytemuck::cast_slice(&video.data()[rows.start * e..rows.end * e]),
            );
            tiles.push(v);
        }
        let video = Tiled {
            tiles,
            layout: split.by_frames,
        };
        let t = ctx.alloc(&g.pool, "text embeddings", text.shape())?;
        ctx.queue
            .write_buffer(t.buffer()?, 0, bytemuck::cast_slice(text.data()));
        let f = forward(
            &mut ops,
            &self.config,
            &g.params,
            &video,
            &t,
            dims,
            self.num_queries(),
            opts.want(),
        )?;
        drop(video);
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

/// Refuses, before anything is recorded, a call whose selected or pooled tensors exceed one
/// storage binding (the clip's own tokens are split to fit: `Split::plan`).
fn check_sizes(limit: u64, m: &Linvt, dims: Dims, provenance: bool) -> Result<()> {
    let cfg = m.config();
    let e = cfg.embed_size;
    let pooled = crate::cpu::window_pool::pooled_rows(dims.k, &cfg.pool_scales);
    let mut tensors = vec![
        ("selected tokens (k × E)", dims.k * e),
        ("pooled tokens (S × E)", pooled * e),
    ];
    if provenance {
        tensors.push((
            "aggregation weights (heads × Q × S)",
            cfg.num_heads * m.num_queries() * pooled,
        ));
    }
    for (name, elements) in tensors {
        let bytes = elements as u64 * 4;
        if bytes > limit {
            return Err(Error::TensorTooLarge {
                tensor: name.to_string(),
                bytes,
                limit,
                hint: "lower top_k or the number of queries".to_string(),
            });
        }
    }
    Ok(())
}
