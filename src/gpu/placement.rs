//! Where and how a weight lives on the GPU — element type × layout (buffer or texels) ×
//! chunking — decided in one place for LinVT and the video-LLM alike ([`Placement::place`]).
//! ggml's 8- and 4-bit blocks are [`WeightStorage`] members too: linear weights are quantized
//! as they are placed (`super::blocks`).
//!
//! Tables larger than one storage binding (a real Qwen2 embedding, 151936 × 896 f32 = 545 MB,
//! against lavapipe's 128 MiB) are stored as row chunks that each fit the binding limit
//! ([`ChunkedTable`]); the executor routes `linear`, `gather_rows` and `read_back` on them to the
//! chunks ([`chunked_linear`]).

use super::blocks::elem_for;
use super::buffer::{Elem, GpuTensor};
use super::context::GpuContext;
use super::kernel::Recorder;
use super::linear::{Epilogue, OutLayout, Product, Rows, Tuning};
use super::texels::WeightLayout;
use crate::error::{Error, Result};
use crate::ops::Role;
pub use crate::ops::{WeightChoice, WeightStorage};
use crate::tensor::{BlockRows, Tensor};

/// The device element type of a linear weight with rows of `cols` values stored as `storage`
/// (block formats fall back as [`WeightStorage::block_type`] says, to bf16 where no block fits).
pub fn elem_of(storage: WeightStorage, cols: usize) -> Elem {
    match storage {
        WeightStorage::F32 => Elem::F32,
        WeightStorage::F16 => Elem::F16,
        WeightStorage::Bf16 => Elem::Bf16,
        s => s.block_type(cols).and_then(elem_for).unwrap_or(Elem::Bf16),
    }
}

/// A (rows, cols) table stored as consecutive row chunks, each within one storage binding.
/// Ops see it through `handle`: a view of the first chunk that claims all rows, so shape
/// queries work; the executor routes `linear`, `gather_rows` and `read_back` on it to the
/// chunks, and refuses it elsewhere (other kernels would read past the first chunk).
pub struct ChunkedTable {
    pub(crate) handle: GpuTensor,
    /// (first row, chunk) in row order.
    pub(crate) chunks: Vec<(usize, GpuTensor)>,
}

impl ChunkedTable {
    /// The table of `rows` rows held by `chunks` ((first row, chunk) in row order).
    fn new(chunks: Vec<(usize, GpuTensor)>, rows: usize) -> Self {
        ChunkedTable {
            handle: chunks[0].1.rows_view(0, rows),
            chunks,
        }
    }

    /// Number of row chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// The table of `tables` that `t` is the handle of, if any.
pub fn find_chunked<'t>(tables: &'t [ChunkedTable], t: &GpuTensor) -> Option<&'t ChunkedTable> {
    tables
        .iter()
        .find(|c| c.handle.same_buffer(t) && c.handle.offset == t.offset)
}

/// A placed weight: one tensor, or a table in row chunks.
pub enum Placed {
    One(GpuTensor),
    Chunked(ChunkedTable),
}

/// The placement policy of one executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Placement {
    /// Buffers or texels for weights read by rows (linear weights, embedding tables); None: the
    /// adapter's default ([`WeightLayout::for_adapter`]).
    pub layout: Option<WeightLayout>,
    /// The element type of linear weights.
    pub storage: WeightStorage,
    /// Most bytes one chunk of a row-chunked table may hold; None: the adapter's storage
    /// binding limit. Tests set a small budget so chunking runs on small tables.
    pub chunk_bytes: Option<u64>,
}

impl Placement {
    /// Linear weights stored as `storage`, laid out as the adapter prefers.
    pub fn new(storage: WeightStorage) -> Self {
        Placement {
            storage,
            ..Default::default()
        }
    }

    /// Puts `t`, used as `role`, on `ctx`:
    /// - linear weights take `storage` (block formats: quantized here); tables
    ///   (embeddings, read by the row gather and as a tied `lm_head`) take bf16 when `storage` is
    ///   bf16, as texels, but stay f32 in buffers (the f32 gather), and under a block storage
    ///   take Q6_K or Q8_0 ([`WeightStorage::table_block_type`]; bf16 texels / f32 buffers
    ///   where no block fits); everything else is f32;
    /// - matrices read by rows go to texels when the layout says so and the texels hold them
    ///   (not f16, not beyond the texture limits); a one-row weight (LinVT's score head) stays in
    ///   a buffer, where the product can share it;
    /// - a matrix beyond one storage binding is split into row chunks.
    ///
    /// A weight already in ggml blocks (a GGUF file's) keeps them when it is a linear weight or
    /// a table (the row gather widens rows through the linear family's readers) of types the
    /// kernels read (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K), one chunk per run of rows of one type; anything
    /// else is widened to f32 first and placed as above.
    pub fn place(&self, ctx: &GpuContext, name: &str, t: &Tensor, role: Role) -> Result<Placed> {
        let layout = self
            .layout
            .unwrap_or_else(|| WeightLayout::for_adapter(ctx));
        if let Some((kind, bits)) = t.half_data() {
            // 16-bit weights as read: the placement below converts from f32.
            let wide = Tensor::new(
                t.shape().to_vec(),
                bits.iter().map(|&b| kind.widen(b)).collect(),
            )?;
            return self.place(ctx, name, &wide, role);
        }
        if let Some(parts) = t.block_rows() {
            // The CPU's interleaved layout: back to ggml's rows.
            if parts.iter().any(|p| p.interleaved) {
                let rows = parts
                    .iter()
                    .map(|p| BlockRows::new(p.ty, p.rows, p.row_major(t.cols()).into_owned()))
                    .collect();
                return self.place(ctx, name, &Tensor::blocks(t.shape().to_vec(), rows)?, role);
            }
            let kept = parts
                .iter()
                .map(|p| elem_for(p.ty))
                .collect::<Option<Vec<_>>>();
            return match kept {
                Some(elems) if matches!(role, Role::LinearWeight | Role::Table) => {
                    self.place_blocks(ctx, name, t, &elems, layout)
                }
                _ => self.place(ctx, name, &t.clone().widened()?, role),
            };
        }
        let matrix = t.shape().len() == 2;
        let read_by_rows = matches!(role, Role::LinearWeight | Role::Table);
        let linear_elem = elem_of(self.storage, t.cols());
        // Tables under a block storage: Q6_K or Q8_0 ([`WeightStorage::table_block_type`]).
        let table_blocks = (self.storage.table_block_type(t.cols())).and_then(elem_for);
        let texel_elem = match role {
            Role::LinearWeight => linear_elem,
            Role::Table => match table_blocks {
                Some(e) => e,
                None if self.storage == WeightStorage::Bf16 || self.storage.is_blocks() => {
                    Elem::Bf16
                }
                None => Elem::F32,
            },
            _ => Elem::F32,
        };
        if layout == WeightLayout::Texels
            && read_by_rows
            && matrix
            && t.rows() > 1
            && ctx.fits_texels(t.len(), texel_elem)
        {
            let placed = match texel_elem.is_blocks() {
                true => ctx.upload_blocks(name, t.shape(), t.data(), texel_elem, true)?,
                false => ctx.upload_texels_as(name, t.shape(), t.data(), texel_elem)?,
            };
            return Ok(Placed::One(placed));
        }
        let elem = match role {
            Role::LinearWeight if matrix => linear_elem,
            Role::Table if matrix => table_blocks.unwrap_or(Elem::F32),
            _ => Elem::F32,
        };
        let limit = self.chunk_limit(ctx);
        if matrix && elem.bytes_for(t.len()) > limit {
            return Ok(Placed::Chunked(upload_chunked(ctx, t, limit, elem)?));
        }
        Ok(Placed::One(ctx.upload_as(
            name,
            t.shape(),
            t.data(),
            elem,
        )?))
    }
}

impl Placement {
    /// Most bytes one chunk of a row-chunked weight may hold.
    fn chunk_limit(&self, ctx: &GpuContext) -> u64 {
        self.chunk_bytes
            .unwrap_or(u64::MAX)
            .min(ctx.max_binding_bytes())
    }

    /// Places a weight held as ggml blocks as it is: each run of rows of one type (`elems`) in
    /// texels when the layout says so and they fit, else in buffers, split further into row
    /// chunks within the binding limit; several chunks make a [`ChunkedTable`].
    fn place_blocks(
        &self,
        ctx: &GpuContext,
        name: &str,
        t: &Tensor,
        elems: &[Elem],
        layout: WeightLayout,
    ) -> Result<Placed> {
        let (rows, cols) = (t.rows(), t.cols());
        let limit = self.chunk_limit(ctx);
        let mut chunks = Vec::new();
        let mut r0 = 0;
        for (part, &elem) in t.block_rows().unwrap_or_default().iter().zip(elems) {
            let row_bytes = part.bytes.len() / part.rows.max(1);
            let texels = layout == WeightLayout::Texels
                && ctx.fits_texels(part.rows * cols, elem)
                && part.rows > 1;
            // Rows per chunk: all of them as texels; within the binding limit in buffers.
            let per_chunk = match texels {
                true => part.rows,
                false => {
                    let what = format!("`{name}` ({cols} values of {elem:?})");
                    rows_per_chunk(&what, cols, elem, limit)?.min(part.rows)
                }
            };
            for start in (0..part.rows).step_by(per_chunk) {
                let n = per_chunk.min(part.rows - start);
                let bytes = &part.bytes[start * row_bytes..(start + n) * row_bytes];
                let chunk = ctx.upload_ggml_blocks_in(name, &[n, cols], bytes, elem, texels)?;
                chunks.push((r0 + start, chunk));
            }
            r0 += part.rows;
        }
        if chunks.len() == 1 {
            return Ok(Placed::One(chunks.remove(0).1));
        }
        Ok(Placed::Chunked(ChunkedTable::new(chunks, rows)))
    }
}

/// Rows of `cols` values of `elem` that one chunk of at most `limit` bytes holds, or the error
/// that one row of `what` is already too large. Block formats group values across rows
/// (`super::blocks`): a chunk of `n` rows takes bytes_for(n·cols), at most (n + 1) rows' worth.
fn rows_per_chunk(what: &str, cols: usize, elem: Elem, limit: u64) -> Result<usize> {
    let row_bytes = elem.bytes_for(cols).max(1);
    let rows = (limit / row_bytes).saturating_sub(elem.is_blocks() as u64) as usize;
    if rows == 0 {
        return Err(Error::TensorTooLarge {
            tensor: format!("one row of {what}"),
            bytes: row_bytes,
            limit,
            hint: "use an adapter with a larger maxStorageBufferBindingSize".into(),
        });
    }
    Ok(rows)
}

/// Uploads a (rows, cols) table as row chunks of at most `limit` bytes.
fn upload_chunked(ctx: &GpuContext, t: &Tensor, limit: u64, elem: Elem) -> Result<ChunkedTable> {
    let (rows, cols) = (t.rows(), t.cols());
    let per_chunk = rows_per_chunk(&format!("a ({rows}, {cols}) weight"), cols, elem, limit)?;
    let mut chunks = Vec::new();
    for r0 in (0..rows).step_by(per_chunk) {
        let n = per_chunk.min(rows - r0);
        let data = &t.data()[r0 * cols..(r0 + n) * cols];
        chunks.push((r0, ctx.upload_as("table chunk", &[n, cols], data, elem)?));
    }
    Ok(ChunkedTable::new(chunks, rows))
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
