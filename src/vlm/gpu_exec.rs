//! The GPU executor of the video-LLM: `VlmOps` for the LinVT GPU executor (`GpuOps`), every op
//! a recorded WGSL dispatch (or buffer copy) into the same command encoder as the LinVT ops.
//! Host traffic: `upload` (weights, inputs, small id lists), `read_back`, and the one u32 each
//! `sample` returns — the recorded work is submitted together with those read-backs.
//!
//! Tables larger than one storage binding (a real Qwen2 embedding, 151936 × 896 f32 = 545 MB,
//! against lavapipe's 128 MiB) are stored as row chunks that each fit the binding limit; the
//! embedding gather reads each id from the chunk holding it and the (tied) `lm_head` linear
//! writes each chunk's columns of the logits (see [`ChunkedTable`]).

use crate::error::{Error, Result};
use crate::gpu::linear::{Epilogue, OutLayout, Product, Rows, Tuning};
use crate::gpu::texels::WeightLayout;
use crate::gpu::topk::TopKResult;
use crate::gpu::{self, Elem, GpuContext, GpuTensor, Recorder};
use crate::linvt::gpu_exec::GpuOps;
use crate::linvt::WeightStorage;
use crate::ops::Role;
use crate::ops::VlmOps;
use crate::ops::{Rope, SamplingParams};
use crate::tensor::Tensor;

/// A (rows, cols) table stored as consecutive row chunks, each within one storage binding.
/// Ops see it through `handle`: a view of the first chunk that claims all rows, so shape
/// queries work; the executor routes `linear`, `gather_rows` and `read_back` on it to the
/// chunks, and refuses it elsewhere (other kernels would read past the first chunk).
pub struct ChunkedTable {
    handle: GpuTensor,
    /// (first row, chunk) in row order.
    chunks: Vec<(usize, GpuTensor)>,
}

struct RopeTable {
    rope: Rope,
    positions: usize,
    table: GpuTensor,
}

/// What the VLM ops keep between calls on a `GpuOps`.
#[derive(Default)]
pub struct GpuVlmState {
    rope_tables: Vec<RopeTable>,
    tables: Vec<ChunkedTable>,
    /// Most bytes one chunk of a row-chunked table may hold; None: the adapter's storage
    /// binding limit. Tests set a small budget so chunking runs on small tables.
    pub chunk_bytes: Option<u64>,
    /// The binding limit callers split their work by (`VlmOps::binding_limit`); None: the
    /// adapter's. Tests set a small one so frames and prefill rows are split on small models.
    pub binding_limit: Option<u64>,
    /// Where `upload_weight` puts linear weights and embedding tables (f16 weights, which
    /// texels do not hold, always go to buffers); None: the adapter's default
    /// ([`WeightLayout::for_adapter`]).
    pub weight_layout: Option<WeightLayout>,
    /// The element type of linear weights (`upload_weight` with `Role::LinearWeight`): f32,
    /// f16 or bf16 (half the memory and traffic). See `upload_weight` for tables.
    pub weight_storage: WeightStorage,
    /// Whether `linear_gelu` / `linear_residual` run as one kernel (the linear's epilogue) or as
    /// the linear and then the elementwise op; None: the adapter's default
    /// ([`Tuning::fuse_epilogues`]).
    pub fuse_epilogues: Option<bool>,
}

impl ChunkedTable {
    /// Number of row chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

impl GpuVlmState {
    /// The row-chunked table `t` is the handle of, if any.
    pub fn chunked(&self, t: &GpuTensor) -> Option<&ChunkedTable> {
        self.tables
            .iter()
            .find(|c| c.handle.same_buffer(t) && c.handle.offset == t.offset)
    }
}

/// The process-wide GPU context the video-LLM runs on (created on first use), so a loaded
/// model can own its executor; each executor brings its own buffer pool (see `Recorder`).
/// Native only: the browser creates its context asynchronously and its GPU objects are not
/// `Sync`.
#[cfg(not(target_arch = "wasm32"))]
pub fn shared_gpu() -> Result<&'static GpuContext> {
    use std::sync::{Arc, OnceLock};
    static CTX: OnceLock<std::result::Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        GpuContext::new_blocking(&gpu::GpuOptions::from_env()).map_err(|e| e.to_string())
    });
    match ctx {
        Ok(c) => Ok(c.as_ref()),
        Err(e) => Err(Error::Gpu(format!(
            "no usable GPU adapter for the video-LLM ({e}); use --backend cpu"
        ))),
    }
}

/// Chunked `linear`: x (M, K) · Wᵀ for a row-chunked W (N, K), each chunk's product written to
/// its columns of the (M, N) output, with `epilogue` (its γ and residual cut to the chunk's
/// columns).
pub fn chunked_linear(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &ChunkedTable,
    b: Option<&GpuTensor>,
    epilogue: Epilogue,
) -> Result<GpuTensor> {
    let (m, k, n) = (x.rows(), x.cols(), w.handle.rows());
    if k != w.handle.cols() || b.is_some_and(|b| b.len() != n) {
        return Err(Error::input(format!(
            "linear: x {:?} does not fit the chunked weight {:?} (or its bias)",
            x.shape, w.handle.shape
        )));
    }
    let out = rec.alloc("linear.out", &[m, n])?;
    let tuning = Tuning::for_adapter(rec.ctx);
    for (r0, chunk) in &w.chunks {
        let bias = b.map(|b| b.slice(*r0, chunk.rows()));
        // The chunk's output starts r0 elements into `out`; its residual and γ likewise.
        let epilogue_views = match epilogue {
            Epilogue::Residual { residual, gamma } => Some((
                residual
                    .reshaped(&[residual.len()])
                    .slice(*r0, residual.len() - r0),
                gamma.map(|g| g.slice(*r0, chunk.rows())),
            )),
            _ => None,
        };
        let chunk_epilogue = match &epilogue_views {
            Some((residual, gamma)) => Epilogue::Residual {
                residual,
                gamma: gamma.as_ref(),
            },
            None => epilogue,
        };
        Product {
            a: Rows::dense(chunk, chunk.rows(), k),
            b: Rows::dense(x, m, k),
            k,
            batches: 1,
            batch_inner: 1,
            out: OutLayout {
                t: &out,
                offset: *r0,
                ya: 1,
                yb: n,
                outer: 0,
                inner: 0,
            },
            bias: bias.as_ref(),
            columns_on_a: true,
            epilogue: chunk_epilogue,
        }
        .record(rec, tuning)?;
    }
    Ok(out)
}

impl<'a> GpuOps<'a> {
    fn ctx(&self) -> &'a GpuContext {
        self.rec.ctx
    }

    fn fuse_epilogues(&self) -> bool {
        self.vlm
            .fuse_epilogues
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
        if let Some(table) = self.vlm.chunked(w) {
            return chunked_linear(&mut self.rec, x, table, b, epilogue);
        }
        gpu::linear::linear_with(&mut self.rec, x, w, b, epilogue)
    }

    /// Submits everything recorded so far together with copies of `tensors` to the host.
    /// The pending health checks' words are read back with them and checked first, so a
    /// non-finite value upstream is an error, never a silently wrong result.
    fn submit_and_read(&mut self, tensors: &[&GpuTensor]) -> Result<Vec<Vec<u8>>> {
        let (ctx, pool) = (self.rec.ctx, self.rec.pool.clone());
        let rec = std::mem::replace(&mut self.rec, Recorder::new(ctx, &pool));
        let (encoder, _) = rec.finish()?;
        let checks = std::mem::take(&mut self.pending_checks);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let mut wanted = tensors.to_vec();
            wanted.extend(checks.iter().map(|c| c.tensor()));
            let mut bytes = pollster::block_on(ctx.read_back(encoder, &wanted))?;
            for (check, b) in checks.iter().zip(&bytes[tensors.len()..]) {
                check.check(b)?;
            }
            bytes.truncate(tensors.len());
            Ok(bytes)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (encoder, tensors, checks);
            Err(Error::Gpu(
                "blocking read-back is not available in the browser".into(),
            ))
        }
    }

    /// Refuses a row-chunked table or a weight stored as texels where an op cannot read it.
    pub(crate) fn plain(&self, what: &str, ts: &[&GpuTensor]) -> Result<()> {
        if ts.iter().any(|t| self.vlm.chunked(t).is_some()) {
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

    /// The cos/sin table for (head_dim, theta) covering `positions` positions, built on first
    /// need and grown by doubling.
    fn rope_table(&mut self, rope: &Rope, positions: usize) -> Result<GpuTensor> {
        let found = self.vlm.rope_tables.iter().position(|t| t.rope == *rope);
        if let Some(i) = found {
            if self.vlm.rope_tables[i].positions >= positions {
                return Ok(self.vlm.rope_tables[i].table.clone());
            }
            self.vlm.rope_tables.remove(i);
        }
        let positions = positions.next_power_of_two().max(256);
        let head_dim = rope.head_dim();
        let data = gpu::rope::rope_table_for(rope, positions);
        let table = self
            .ctx()
            .upload("rope.table", &[positions, head_dim], &data)?;
        self.vlm.rope_tables.push(RopeTable {
            rope: rope.clone(),
            positions,
            table: table.clone(),
        });
        Ok(table)
    }

    /// Uploads a 2-D tensor in `storage`'s element type: one tensor, or row chunks when it
    /// exceeds one storage binding (or the test budget `chunk_bytes`).
    fn upload_stored(&mut self, t: &Tensor, storage: WeightStorage) -> Result<GpuTensor> {
        let limit = self
            .vlm
            .chunk_bytes
            .unwrap_or(u64::MAX)
            .min(self.ctx().max_binding_bytes());
        if t.len() as u64 * storage.bytes_per_weight() > limit && t.shape().len() == 2 {
            return self.upload_chunked(t, limit, storage);
        }
        self.ctx()
            .upload_as("tensor", t.shape(), t.data(), storage.elem())
    }

    /// Uploads a (rows, cols) table as row chunks of at most `limit` bytes.
    fn upload_chunked(
        &mut self,
        t: &Tensor,
        limit: u64,
        storage: WeightStorage,
    ) -> Result<GpuTensor> {
        let (rows, cols) = (t.rows(), t.cols());
        let row_bytes = cols as u64 * storage.bytes_per_weight();
        let per_chunk = (limit / row_bytes.max(1)) as usize;
        if per_chunk == 0 {
            return Err(Error::TensorTooLarge {
                tensor: format!("one row of a ({rows}, {cols}) weight"),
                bytes: row_bytes,
                limit,
                hint: "use an adapter with a larger maxStorageBufferBindingSize".into(),
            });
        }
        let mut chunks = Vec::new();
        for r0 in (0..rows).step_by(per_chunk) {
            let n = per_chunk.min(rows - r0);
            let data = &t.data()[r0 * cols..(r0 + n) * cols];
            let chunk = self
                .ctx()
                .upload_as("table chunk", &[n, cols], data, storage.elem())?;
            chunks.push((r0, chunk));
        }
        let handle = chunks[0].1.rows_view(0, rows);
        self.vlm.tables.push(ChunkedTable {
            handle: handle.clone(),
            chunks,
        });
        Ok(handle)
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
    fn binding_limit(&self) -> Option<u64> {
        let adapter = self.ctx().limits.max_storage_buffer_binding_size;
        Some(self.vlm.binding_limit.map_or(adapter, |b| b.min(adapter)))
    }

    type Kv = GpuKvCache;

    fn upload(&mut self, t: Tensor) -> Result<GpuTensor> {
        let t = if t.shape().len() <= 1 {
            t
        } else {
            let (rows, cols) = (t.rows(), t.cols());
            t.reshape(&[rows, cols])?
        };
        self.upload_stored(&t, WeightStorage::F32)
    }

    fn upload_weight(&mut self, t: Tensor, role: Role) -> Result<GpuTensor> {
        let layout = self
            .vlm
            .weight_layout
            .unwrap_or_else(|| WeightLayout::for_adapter(self.ctx()));
        let storage = self.vlm.weight_storage;
        let matrix = t.shape().len() == 2;
        let read_by_rows = matches!(role, Role::LinearWeight | Role::Table);
        // Linear weights take the chosen storage. Tables (embeddings, read by the row gather and
        // as a tied lm_head) take it too as texels, which the gather reads as f32 or bf16, but
        // stay f32 in buffers. Everything else stays f32.
        let texel_elem = match role {
            Role::LinearWeight => storage.elem(),
            Role::Table if storage == WeightStorage::Bf16 => Elem::Bf16,
            _ => Elem::F32,
        };
        // A weight beyond the adapter's texture limits (or of a type texels do not hold, f16)
        // goes to buffers, row-chunked if need be: slower on CPU adapters, but it loads.
        if layout == WeightLayout::Texels
            && read_by_rows
            && matrix
            && self.ctx().fits_texels(t.len(), texel_elem)
        {
            return self
                .ctx()
                .upload_texels_as("weight", t.shape(), t.data(), texel_elem);
        }
        if role == Role::LinearWeight && matrix && storage != WeightStorage::F32 {
            return self.upload_stored(&t, storage);
        }
        self.upload(t)
    }

    fn read_back(&mut self, x: &GpuTensor) -> Result<Tensor> {
        let parts: Vec<GpuTensor> = match self.vlm.chunked(x) {
            Some(c) => c.chunks.iter().map(|(_, t)| t.clone()).collect(),
            None => vec![x.clone()],
        };
        let refs: Vec<&GpuTensor> = parts.iter().collect();
        let bytes = self.submit_and_read(&refs)?;
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
        let Some(table) = self.vlm.chunked(x) else {
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
        position: usize,
        rope: &Rope,
    ) -> Result<GpuTensor> {
        self.plain("rope", &[x])?;
        let table = self.rope_table(rope, position + x.rows())?;
        gpu::rope::rope(&mut self.rec, x, &table, heads, head_dim, position)
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
        position: usize,
        qkv: &GpuTensor,
        heads: usize,
        rope: &Rope,
    ) -> Result<GpuTensor> {
        self.plain("qkv_to_cache", &[qkv])?;
        if layer >= cache.keys.len() {
            return Err(Error::input(format!(
                "qkv_to_cache: layer {layer} of a cache with {} layers",
                cache.keys.len()
            )));
        }
        let d = cache.head_dim;
        let table = self.rope_table(rope, position + qkv.rows())?;
        gpu::rope::rope_qkv(
            &mut self.rec,
            qkv,
            &table,
            &cache.keys[layer],
            &cache.values[layer],
            heads,
            cache.kv_heads,
            d,
            position,
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

    fn sample(&mut self, logits: &GpuTensor, params: &SamplingParams, uniform: f32) -> Result<u32> {
        self.plain("sample", &[logits])?;
        let id = gpu::sample::sample(&mut self.rec, logits, params, uniform)?;
        let bytes = self.submit_and_read(&[&id])?;
        let id: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes[0]);
        Ok(id[0])
    }

    fn read_back_indices(&mut self, idx: &TopKResult) -> Result<Vec<u32>> {
        let bytes = self.submit_and_read(&[&idx.indices])?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[0]))
    }
}
