//! The GPU executor: `Ops` (here) and `VlmOps` (`vlm_ops.rs`) over one [`Recorder`], every op
//! a recorded WGSL dispatch (or buffer copy) into one command encoder. Host traffic: uploads
//! (weights through [`Placement`], inputs, small id lists), read-backs, and the one u32 each
//! `sample` returns — the recorded work is submitted together with those read-backs.

use super::linear::{Epilogue, Tuning};
use super::placement::{chunked_linear, find_chunked, ChunkedTable, Placement};
use super::topk::TopKResult;
use super::{GpuContext, GpuTensor, Recorder};
use crate::error::{Error, Result};
use crate::gpu;
use crate::ops::{AttnGeometry, Axis, Norm, Ops, Rope, TopKOrder};

pub struct GpuOps<'a> {
    pub rec: Recorder<'a>,
    /// Where weights go (element type, buffers or texels, chunking).
    pub placement: Placement,
    /// The binding limit callers split their work by (`VlmOps::binding_limit`); None: the
    /// adapter's. Tests set a small one so frames and prefill rows are split on small models.
    pub binding_limit: Option<u64>,
    /// Whether `linear_gelu` / `linear_residual` run as one kernel (the linear's epilogue) or as
    /// the linear and then the elementwise op; None: the adapter's default
    /// ([`Tuning::fuse_epilogues`]).
    pub fuse_epilogues: Option<bool>,
    /// Weights placed as row chunks (see [`ChunkedTable`]).
    pub(crate) tables: Vec<ChunkedTable>,
    /// RoPE cos/sin tables built so far (see `rope_table`).
    pub(crate) rope_tables: Vec<RopeTable>,
    /// Numerical-health words recorded since the last read-back, checked with it (see
    /// [`HealthCheck`]): the one place the GPU executor reports what the CPU stops at at once.
    pub pending_checks: Vec<HealthCheck>,
}

pub(crate) struct RopeTable {
    pub(crate) rope: Rope,
    pub(crate) positions: usize,
    pub(crate) table: GpuTensor,
}

/// A status word a kernel wrote that must be read back and checked with the next results.
pub enum HealthCheck {
    /// The recorder's health word (`Recorder::health`): a norm saw a non-finite mean square.
    Overflow { word: GpuTensor },
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
            HealthCheck::Overflow { word } => word,
            HealthCheck::TopK { status, .. } => status,
        }
    }

    /// Turns the read-back word into the error the CPU executor would have raised.
    pub fn check(&self, bytes: &[u8]) -> Result<()> {
        match self {
            HealthCheck::Overflow { .. } => {
                let word: Vec<u32> = bytemuck::pod_collect_to_vec(bytes);
                match word[0] {
                    u32::MAX => Ok(()),
                    _ => Err(Error::Overflow),
                }
            }
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
            placement: Placement::default(),
            binding_limit: None,
            fuse_epilogues: None,
            tables: Vec::new(),
            rope_tables: Vec::new(),
            pending_checks: Vec::new(),
        }
    }
}

impl Ops for GpuOps<'_> {
    type T = GpuTensor;
    type Idx = TopKResult;

    fn linear(&mut self, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
        self.linear_with(x, w, b, Epilogue::None)
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

    fn binding_limit(&self) -> Option<u64> {
        let adapter = self.ctx().limits.max_storage_buffer_binding_size;
        Some(self.binding_limit.map_or(adapter, |b| b.min(adapter)))
    }

    fn assemble_rows(
        &mut self,
        rows: usize,
        cols: usize,
        parts: &[(&GpuTensor, crate::ops::RowPairs)],
    ) -> Result<GpuTensor> {
        let out = self.rec.alloc("assemble_rows", &[rows, cols])?;
        for (src, pairs) in parts {
            gpu::elementwise::copy_rows(&mut self.rec, src, pairs, &out)?;
        }
        Ok(out)
    }

    fn gather_parts(
        &mut self,
        parts: &[GpuTensor],
        first_rows: &[usize],
        idx: &TopKResult,
        count: usize,
    ) -> Result<GpuTensor> {
        let cols = parts.first().map_or(0, GpuTensor::cols);
        let out = self.rec.alloc("gather_parts", &[count, cols])?;
        for (part, &first) in parts.iter().zip(first_rows) {
            gpu::window_pool::gather_part_into(
                &mut self.rec,
                part,
                first,
                &idx.indices,
                count,
                &out,
            )?;
        }
        Ok(out)
    }

    fn stage(&mut self, name: &str) -> Result<()> {
        self.rec.stage(name)
    }
}

impl<'a> GpuOps<'a> {
    pub(crate) fn ctx(&self) -> &'a GpuContext {
        self.rec.ctx
    }

    pub(crate) fn fuse_epilogues(&self) -> bool {
        self.fuse_epilogues
            .unwrap_or_else(|| Tuning::for_adapter(self.ctx()).fuse_epilogues)
    }

    /// x·Wᵀ + b with `epilogue`, W one tensor or a row-chunked table.
    pub(crate) fn linear_with(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        b: Option<&GpuTensor>,
        epilogue: Epilogue,
    ) -> Result<GpuTensor> {
        self.plain("linear (input)", &[x])?;
        if let Some(table) = find_chunked(&self.tables, w) {
            return chunked_linear(&mut self.rec, x, table, b, epilogue);
        }
        gpu::linear::linear_with(&mut self.rec, x, w, b, epilogue)
    }

    /// Submits everything recorded so far together with copies of `tensors` to the host.
    /// The pending health checks' words are read back with them and checked first, so a
    /// non-finite value upstream is an error, never a silently wrong result.
    pub(crate) async fn submit_and_read(&mut self, tensors: &[&GpuTensor]) -> Result<Vec<Vec<u8>>> {
        let (ctx, pool) = (self.rec.ctx, self.rec.pool.clone());
        let checks = self.rec.checks;
        let health = self.rec.health_word().filter(|_| checks).cloned();
        let mut next = Recorder::new(ctx, &pool).with_health(self.rec.health_word().cloned());
        next.checks = checks;
        let rec = std::mem::replace(&mut self.rec, next);
        let (encoder, _) = rec.finish()?;
        // The overflow word first: an overflow upstream explains whatever failed after it.
        let mut checks: Vec<HealthCheck> = health
            .iter()
            .map(|word| HealthCheck::Overflow { word: word.clone() })
            .collect();
        checks.append(&mut self.pending_checks);
        let mut wanted = tensors.to_vec();
        wanted.extend(checks.iter().map(|c| c.tensor()));
        let mut bytes = ctx.read_back(encoder, &wanted).await?;
        if let Some(word) = &health {
            // Cleared for the next recording, whatever this one found.
            ctx.queue.write_buffer(
                word.buffer()?,
                4 * word.offset as u64,
                bytemuck::bytes_of(&u32::MAX),
            );
        }
        for (check, b) in checks.iter().zip(&bytes[tensors.len()..]) {
            check.check(b)?;
        }
        bytes.truncate(tensors.len());
        Ok(bytes)
    }

    /// Refuses a row-chunked table or a weight stored as texels where an op cannot read it.
    pub(crate) fn plain(&self, what: &str, ts: &[&GpuTensor]) -> Result<()> {
        if ts.iter().any(|t| self.chunked(t).is_some()) {
            return Err(Error::input(format!(
                "{what}: this operand is a table larger than one GPU storage binding; only `linear` and `gather_rows` take it"
            )));
        }
        if let Some(t) = ts.iter().find(|t| t.is_texels()) {
            return Err(Error::input(format!(
                "{what}: {t:?} is a weight stored as texels; only `linear` (as the weight) and `gather_rows` take it"
            )));
        }
        Ok(())
    }

    /// The row-chunked table `t` is the handle of, if any.
    pub fn chunked(&self, t: &GpuTensor) -> Option<&ChunkedTable> {
        find_chunked(&self.tables, t)
    }
}
