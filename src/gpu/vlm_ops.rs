//! `VlmOps` on the GPU executor: the video-LLM's ops (uploads, gathers, norms, RoPE, the KV
//! cache, sampling) as recorded dispatches into the executor's command encoder.

use super::ops::{GpuOps, RopeTable};
use super::placement::{find_chunked, Placed};
use super::rope::GpuPositions;
use super::topk::TopKResult;
use super::GpuTensor;
use crate::error::{Error, Result};
use crate::gpu;
use crate::gpu::linear::Epilogue;
use crate::ops::{Positions, Role, Rope, SamplingParams, VlmOps};
use crate::tensor::Tensor;

impl GpuOps<'_> {
    /// The cos/sin table for (head_dim, theta) covering `positions` positions, built on first
    /// need and grown by doubling.
    fn rope_table(&mut self, rope: &Rope, positions: usize) -> Result<GpuTensor> {
        let found = self.rope_tables.iter().position(|t| t.rope == *rope);
        if let Some(i) = found {
            if self.rope_tables[i].positions >= positions {
                return Ok(self.rope_tables[i].table.clone());
            }
            self.rope_tables.remove(i);
        }
        let positions = positions.next_power_of_two().max(256);
        let head_dim = rope.head_dim();
        let data = gpu::rope::rope_table_for(rope, positions);
        let table = self
            .ctx()
            .upload("rope.table", &[positions, head_dim], &data)?;
        self.rope_tables.push(RopeTable {
            rope: rope.clone(),
            positions,
            table: table.clone(),
        });
        Ok(table)
    }
}

/// Keys and values per layer, (capacity, kv_heads · head_dim) each, in pooled GPU buffers.
pub struct GpuKvCache {
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    keys: Vec<GpuTensor>,
    values: Vec<GpuTensor>,
}

impl VlmOps for GpuOps<'_> {
    type Kv = GpuKvCache;
    type Pos = GpuPositions;

    fn positions(&mut self, p: &Positions) -> Result<GpuPositions> {
        GpuPositions::upload(self.ctx(), p)
    }

    fn upload(&mut self, t: Tensor) -> Result<GpuTensor> {
        self.upload_weight(t, Role::Other)
    }

    fn upload_weight(&mut self, t: Tensor, role: Role) -> Result<GpuTensor> {
        // 16-bit weights as read are widened here, where the tensor is ours: its bits are freed
        // before the placement makes its own copy (the browser's heap peaks at one weight's f32
        // values plus that copy, as when the loader widened).
        let t = match t.half_data() {
            Some(_) => t.widened()?,
            None => t,
        };
        let t = if t.shape().len() <= 2 {
            t
        } else {
            let (rows, cols) = (t.rows(), t.cols());
            t.reshape(&[rows, cols])?
        };
        match self.placement.place(self.ctx(), "tensor", &t, role)? {
            Placed::One(t) => Ok(t),
            Placed::Chunked(table) => {
                let handle = table.handle.clone();
                self.tables.push(table);
                Ok(handle)
            }
        }
    }

    async fn read_back(&mut self, x: &GpuTensor) -> Result<Tensor> {
        let parts: Vec<GpuTensor> = match self.chunked(x) {
            Some(c) => c.chunks.iter().map(|(_, t)| t.clone()).collect(),
            None => vec![x.clone()],
        };
        let refs: Vec<&GpuTensor> = parts.iter().collect();
        let bytes = self.submit_and_read(&refs).await?;
        let data: Vec<f32> = bytes
            .iter()
            .flat_map(|b| bytemuck::pod_collect_to_vec::<u8, f32>(b))
            .collect();
        Tensor::new(x.shape.clone(), data)
    }

    fn reshape(&mut self, x: &GpuTensor, rows: usize, cols: usize) -> Result<GpuTensor> {
        self.plain("reshape", &[x])?;
        if rows * cols != x.len() {
            return Err(Error::input(format!(
                "reshape: {:?} has {} values, not {rows}×{cols}",
                x.shape,
                x.len()
            )));
        }
        Ok(x.reshaped(&[rows, cols]))
    }

    fn gather_rows(&mut self, x: &GpuTensor, ids: &[u32]) -> Result<GpuTensor> {
        let Some(table) = find_chunked(&self.tables, x) else {
            return gpu::elementwise::gather_rows(&mut self.rec, x, ids);
        };
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= x.rows()) {
            return Err(Error::input(format!(
                "row id {bad} is out of range for a table of {} rows (a token id beyond the vocabulary?)",
                x.rows()
            )));
        }
        let out = self.rec.alloc("gather_rows", &[ids.len(), x.cols()])?;
        for (r0, chunk) in &table.chunks {
            let end = r0 + chunk.rows();
            let pairs: Vec<(u32, u32)> = ids
                .iter()
                .enumerate()
                .filter(|(_, &id)| (*r0..end).contains(&(id as usize)))
                .map(|(i, &id)| (id - *r0 as u32, i as u32))
                .collect();
            gpu::elementwise::copy_rows(&mut self.rec, chunk, &pairs, &out)?;
        }
        Ok(out)
    }

    fn scatter_rows(
        &mut self,
        dst: &GpuTensor,
        positions: &[u32],
        src: &GpuTensor,
    ) -> Result<GpuTensor> {
        self.plain("scatter_rows", &[dst, src])?;
        gpu::elementwise::scatter_rows(&mut self.rec, dst, positions, src)
    }

    fn layer_norm(
        &mut self,
        x: &GpuTensor,
        weight: &GpuTensor,
        bias: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor> {
        self.plain("layer_norm", &[x])?;
        gpu::norm::layer_norm(&mut self.rec, x, None, weight, bias, eps)
    }

    fn rms_norm(&mut self, x: &GpuTensor, weight: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        self.plain("rms_norm", &[x])?;
        gpu::norm::rms_norm(&mut self.rec, x, weight, eps)
    }

    fn add_rms_norm(
        &mut self,
        x: &GpuTensor,
        y: &GpuTensor,
        weight: &GpuTensor,
        eps: f32,
    ) -> Result<(GpuTensor, GpuTensor)> {
        self.plain("add_rms_norm", &[x, y, weight])?;
        gpu::norm::add_rms_norm(&mut self.rec, x, y, weight, eps)
    }

    fn gelu(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        self.plain("gelu", &[x])?;
        gpu::elementwise::unary(&mut self.rec, x, gpu::elementwise::Unary::Gelu)
    }

    fn quick_gelu(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        self.plain("quick_gelu", &[x])?;
        gpu::elementwise::unary(&mut self.rec, x, gpu::elementwise::Unary::QuickGelu)
    }

    fn block_attention(
        &mut self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        blocks: usize,
        heads: usize,
    ) -> Result<GpuTensor> {
        self.plain("block_attention", &[q, k, v])?;
        let shape = |t: &GpuTensor| (t.rows(), t.cols());
        let len = crate::ops::check_blocks(shape(q), shape(k), shape(v), blocks, heads)?;
        let g = crate::ops::AttnGeometry::blocks(blocks, len, q.cols(), heads);
        let out = self
            .rec
            .alloc("block_attention.out", &[q.rows(), q.cols()])?;
        gpu::attention::attention(&mut self.rec, q, k, v, &out, &g)?;
        Ok(out)
    }

    fn linear_gelu(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        b: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        if !self.fuse_epilogues() {
            let h = self.linear_with(x, w, b, Epilogue::None)?;
            return self.gelu(&h);
        }
        self.linear_with(x, w, b, Epilogue::Gelu)
    }

    fn linear_residual(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        b: Option<&GpuTensor>,
        residual: &GpuTensor,
        gamma: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        // Checked whether fused or not: residual_add alone would also accept a residual that
        // the output tiles (its row repeat).
        if residual.shape != [x.rows(), w.rows()] {
            return Err(Error::input(format!(
                "linear_residual: the residual {:?} must have the output's shape ({}, {})",
                residual.shape,
                x.rows(),
                w.rows()
            )));
        }
        if !self.fuse_epilogues() {
            let h = self.linear_with(x, w, b, Epilogue::None)?;
            return self.residual_add(residual, &h, gamma);
        }
        self.plain("linear_residual", &[residual])?;
        self.linear_with(x, w, b, Epilogue::Residual { residual, gamma })
    }

    fn swiglu(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        self.plain("swiglu", &[x])?;
        gpu::elementwise::swiglu(&mut self.rec, x)
    }

    fn residual_add(
        &mut self,
        x: &GpuTensor,
        y: &GpuTensor,
        gamma: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        self.plain("residual_add", &[x, y])?;
        gpu::elementwise::residual_add(&mut self.rec, x, y, gamma)
    }

    fn round_bf16(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        self.plain("round_bf16", &[x])?;
        gpu::elementwise::unary(&mut self.rec, x, gpu::elementwise::Unary::RoundBf16)
    }

    fn rope(
        &mut self,
        x: &GpuTensor,
        heads: usize,
        head_dim: usize,
        positions: &GpuPositions,
        rope: &Rope,
    ) -> Result<GpuTensor> {
        self.plain("rope", &[x])?;
        let table = self.rope_table(rope, positions.end)?;
        gpu::rope::rope(
            &mut self.rec,
            x,
            &table,
            heads,
            head_dim,
            positions,
            &rope.sections,
        )
    }

    fn kv_cache(
        &mut self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Result<GpuKvCache> {
        let width = kv_heads * head_dim;
        let mut alloc = |name| self.rec.alloc(name, &[capacity, width]);
        let keys = (0..layers)
            .map(|_| alloc("kv_cache.keys"))
            .collect::<Result<Vec<_>>>()?;
        let values = (0..layers)
            .map(|_| alloc("kv_cache.values"))
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuKvCache {
            kv_heads,
            head_dim,
            capacity,
            keys,
            values,
        })
    }

    fn kv_write(
        &mut self,
        cache: &mut GpuKvCache,
        layer: usize,
        position: usize,
        k: &GpuTensor,
        v: &GpuTensor,
    ) -> Result<()> {
        crate::ops::check_kv_write(
            cache.kv_heads * cache.head_dim,
            cache.keys.len(),
            cache.capacity,
            layer,
            position,
            (k.rows(), k.cols()),
            (v.rows(), v.cols()),
        )?;
        let rows = k.rows();
        self.rec
            .copy(k, &cache.keys[layer].rows_view(position, rows))?;
        self.rec
            .copy(v, &cache.values[layer].rows_view(position, rows))
    }

    fn qkv_to_cache(
        &mut self,
        cache: &mut GpuKvCache,
        layer: usize,
        slot: usize,
        qkv: &GpuTensor,
        heads: usize,
        rope: &Rope,
        positions: &GpuPositions,
    ) -> Result<GpuTensor> {
        self.plain("qkv_to_cache", &[qkv])?;
        if layer >= cache.keys.len() {
            return Err(Error::input(format!(
                "qkv_to_cache: layer {layer} of a cache with {} layers",
                cache.keys.len()
            )));
        }
        let d = cache.head_dim;
        let table = self.rope_table(rope, positions.end)?;
        gpu::rope::rope_qkv(
            &mut self.rec,
            qkv,
            &table,
            &cache.keys[layer],
            &cache.values[layer],
            heads,
            cache.kv_heads,
            d,
            slot,
            positions,
            &rope.sections,
        )
    }

    fn kv_attention(
        &mut self,
        cache: &GpuKvCache,
        layer: usize,
        q: &GpuTensor,
        position: usize,
        heads: usize,
    ) -> Result<GpuTensor> {
        if layer >= cache.keys.len() {
            return Err(Error::input(format!(
                "kv_attention: layer {layer} of a cache with {} layers",
                cache.keys.len()
            )));
        }
        gpu::attention::decoder_attention(
            &mut self.rec,
            q,
            &cache.keys[layer],
            &cache.values[layer],
            heads,
            cache.kv_heads,
            cache.head_dim,
            position,
        )
    }

    async fn sample(
        &mut self,
        logits: &GpuTensor,
        params: &SamplingParams,
        uniform: f32,
    ) -> Result<u32> {
        self.plain("sample", &[logits])?;
        let id = gpu::sample::sample(&mut self.rec, logits, params, uniform)?;
        let bytes = self.submit_and_read(&[&id]).await?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes[0]);
        gpu::sample::logits_error(words[1])?;
        Ok(words[0])
    }

    async fn read_back_indices(&mut self, idx: &TopKResult) -> Result<Vec<u32>> {
        let bytes = self.submit_and_read(&[&idx.indices]).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[0]))
    }
}
