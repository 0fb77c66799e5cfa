//! The CPU executor: `Ops` (LinVT) and `VlmOps` (the video-LLM), every op by its reference
//! twin in `crate::cpu`.

use crate::cpu;
use crate::cpu::kv_attention::KvGeometry;
use crate::error::{Error, Result};
use crate::ops::{
    Activations, Positions, Products, Role, Rope, SamplingParams, VlmOps, WeightStorage,
};
use crate::ops::{AttnGeometry, Axis, Norm, Ops, TopKOrder};
use crate::tensor::{BlockRows, Half, Tensor};
use crate::timing::StageClock;
#[cfg(not(target_arch = "wasm32"))]
use cpu::blocks::{for_products, linear_blocks_then, table_row};
use cpu::elementwise::After;
use cpu::linear::{linear_half, linear_then, Bf16Weight};

/// True when the block kernels read every run of a block weight.
#[cfg(not(target_arch = "wasm32"))]
fn keeps_blocks(parts: &[BlockRows]) -> bool {
    parts.iter().all(|p| cpu::blocks::keeps(p.ty))
}

// The browser build has no block kernels (its bundle leaves the dequantizers out): blocks are
// widened at load there (`Tensor::widened` says so), so none reach these.
#[cfg(target_arch = "wasm32")]
fn keeps_blocks(_: &[BlockRows]) -> bool {
    false
}
#[cfg(target_arch = "wasm32")]
fn linear_blocks_then(
    _: &[f32],
    _: &[BlockRows],
    _: Option<&[f32]>,
    _: (usize, usize, usize),
    _: Activations,
    _: After,
) -> Result<Vec<f32>> {
    Err(Error::input(
        "block-quantized weights are not part of the browser build",
    ))
}
#[cfg(target_arch = "wasm32")]
fn for_products(t: Tensor, _: Activations) -> Result<Tensor> {
    Ok(t)
}
#[cfg(target_arch = "wasm32")]
fn table_row(_: &[BlockRows], _: usize, _: usize, _: usize) -> Result<Vec<f32>> {
    Err(Error::input(
        "block-quantized weights are not part of the browser build",
    ))
}

#[derive(Default)]
pub struct CpuOps {
    pub clock: StageClock,
    /// A storage-binding limit to split work by as a GPU with that limit would (None: no
    /// limit). Tests set it so the split forwards run, and are checked, on the CPU too.
    pub binding_limit: Option<u64>,
    /// How model weights uploaded for `linear` or as tables are kept: f32; bf16 or f16 (half
    /// the memory and the traffic a decode step reads; exact for checkpoints of that type);
    /// ggml blocks.
    pub weight_storage: WeightStorage,
    /// How products over ggml blocks treat the activations: int8 (llama.cpp's way, the
    /// default) or f32 (the GPU block kernels' twin).
    pub block_activations: Activations,
    /// How products over bf16 weights treat the activations: f32 (exact, the default) or
    /// rounded to bf16 (AMX tiles, AVX512-BF16 dot products).
    pub products: Products,
    /// Whether model weights are put on 2 MiB pages as they are uploaded
    /// (`cpu::huge_pages`).
    pub huge_pages: bool,
}

impl CpuOps {
    /// after(x·wᵀ + b), `after` fused into the product where it is ours (`cpu::gemm`).
    fn linear_then(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        after: After,
    ) -> Result<Tensor> {
        let (m, k, n) = (x.rows(), x.cols(), w.rows());
        if w.cols() != k {
            return Err(Error::input(format!(
                "linear: x has {k} columns but the weight has {}",
                w.cols()
            )));
        }
        let bias = b.map(Tensor::data);
        // Tiled weights exist only for the bf16 products (`tiled_for_products`).
        let bf16_products = match (w.bf16_tiles(), w.half_data()) {
            (Some(tiles), _) => Some(Bf16Weight::Tiles(tiles)),
            (_, Some((Half::Bf16, rows))) if self.products == Products::Bf16 => {
                Some(Bf16Weight::Rows(rows))
            }
            _ => None,
        };
        let dims = (m, n, k);
        let mut y = match (bf16_products, w.half_data(), w.block_rows()) {
            (Some(w), ..) => cpu::linear::linear_bf16_activations(x.data(), w, bias, dims)?,
            (None, Some((kind, w)), _) => {
                let y = linear_half(kind, x.data(), w, bias, dims, after);
                return Tensor::new(vec![m, n], y);
            }
            (None, None, Some(parts)) => {
                let act = self.block_activations;
                let y = linear_blocks_then(x.data(), parts, bias, dims, act, after)?;
                return Tensor::new(vec![m, n], y);
            }
            (None, None, None) => {
                let y = linear_then(x.data(), w.data(), bias, dims, after);
                return Tensor::new(vec![m, n], y);
            }
        };
        after.rows(&mut y, n);
        Tensor::new(vec![m, n], y)
    }

    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how bf16 weights are multiplied (after `weight_storage`): `Products::Bf16` is
    /// refused, with the reason, when the weights are kept as f32/f16 (nothing bf16 to
    /// multiply) or the CPU cannot run it.
    pub fn set_products(&mut self, products: Products) -> Result<()> {
        if products == Products::Bf16 {
            if matches!(self.weight_storage, WeightStorage::F32 | WeightStorage::F16) {
                return Err(Error::input(format!(
                    "--cpu-products bf16 multiplies bf16 weights, but these are kept as {:?}; use \
                     a bf16 checkpoint with --cpu-weights auto, or --cpu-weights bf16",
                    self.weight_storage
                )));
            }
            #[cfg(target_arch = "x86_64")]
            let runs = cpu::amx::available();
            #[cfg(not(target_arch = "x86_64"))]
            let runs = false;
            if !runs {
                return Err(Error::input(cpu::linear::AMX_MISSING));
            }
        }
        self.products = products;
        Ok(())
    }

    /// Whether attention over `q_len` queries and `kv_len` keys multiplies on AMX tiles
    /// (`cpu::amx_attention`): with `Products::Bf16`, as the linears do in that mode, where the
    /// exact path would take its products too (`attention::PRODUCTS_MIN_LEN`), and only where
    /// the CPU has AMX (`set_products` refuses Bf16 without it; the field is public).
    #[cfg(target_arch = "x86_64")]
    fn attention_on_tiles(&self, q_len: usize, kv_len: usize) -> bool {
        let min = cpu::attention::PRODUCTS_MIN_LEN;
        self.products == Products::Bf16 && q_len >= min && kv_len >= min && cpu::amx::available()
    }

    /// A model weight in the form its products read (`upload_weight`): kept, converted to the
    /// storage chosen, quantized, interleaved or tiled.
    fn place_weight(&mut self, t: Tensor, role: Role) -> Result<Tensor> {
        let read_by_rows = matches!(role, Role::LinearWeight | Role::Table);
        // ggml blocks (a GGUF file's) of the types the block kernels read stay as they are,
        // whatever the storage (as on the GPU); other types are widened.
        if read_by_rows && t.block_rows().is_some_and(keeps_blocks) {
            return for_products(two_d(t)?, self.block_activations);
        }
        // 16-bit weights of the kind kept stay as read (a bf16 checkpoint under bf16 storage).
        let kept = match self.weight_storage {
            WeightStorage::Bf16 => Some(Half::Bf16),
            WeightStorage::F16 => Some(Half::F16),
            _ => None,
        };
        if read_by_rows && kept.is_some() && t.half_data().map(|(k, _)| k) == kept {
            return self.tiled_for_products(two_d(t)?, role);
        }
        let t = two_d(t.widened()?)?;
        match (self.weight_storage, read_by_rows) {
            (WeightStorage::F32, _) | (_, false) => Ok(t),
            (WeightStorage::Bf16, _) => {
                self.tiled_for_products(Tensor::bf16(t.shape().to_vec(), t.data())?, role)
            }
            (WeightStorage::F16, _) => Tensor::half(Half::F16, t.shape().to_vec(), t.data()),
            (s, true) if s.is_blocks() => {
                let ty = match role {
                    Role::Table => s.table_block_type(t.cols()),
                    _ => s.block_type(t.cols()),
                };
                match ty {
                    Some(ty) => {
                        let bytes = crate::quant::quantize(ty, t.data())?;
                        let rows = t.rows();
                        let t = Tensor::blocks(
                            t.shape().to_vec(),
                            vec![BlockRows::new(ty, rows, bytes)],
                        )?;
                        for_products(t, self.block_activations)
                    }
                    // No block fits the rows (e.g. a 588-wide patch embedding): bf16.
                    None => Tensor::bf16(t.shape().to_vec(), t.data()),
                }
            }
            (_, true) => unreachable!("every storage is handled above"),
        }
    }

    /// A bf16 linear weight packed once as AMX tiles (`cpu::amx::pack_weight`) when the
    /// products run on tiles (`Products::Bf16`), so no product packs it again; tables (read
    /// by rows, and as a tied `lm_head` by decode's few rows) and other modes keep rows.
    fn tiled_for_products(&self, t: Tensor, role: Role) -> Result<Tensor> {
        #[cfg(target_arch = "x86_64")]
        if self.products == Products::Bf16
            && matches!(role, Role::LinearWeight)
            && cpu::amx::available()
        {
            if let Some((Half::Bf16, bits)) = t.half_data() {
                // SAFETY: AMX available (checked); bits hold rows × cols values.
                let tiles = unsafe { cpu::amx::pack_weight(bits, (t.rows(), t.cols())) };
                return Tensor::bf16_tiled(t.shape().to_vec(), tiles);
            }
        }
        let _ = role;
        Ok(t)
    }

    /// Attention (`cpu::attention`'s semantics) into `out`: on AMX tiles over bf16-rounded
    /// operands where [`Self::attention_on_tiles`], else the exact f32 path.
    fn attend(&self, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], g: &AttnGeometry) {
        #[cfg(target_arch = "x86_64")]
        if self.attention_on_tiles(g.q_len, g.kv_len) {
            // SAFETY: the CPU has AMX (`attention_on_tiles` checks).
            return unsafe { cpu::amx_attention::attention(q, k, v, out, g) };
        }
        cpu::attention::attention(q, k, v, out, g)
    }
}

impl Ops for CpuOps {
    type T = Tensor;
    type Idx = Vec<u32>;

    fn keep_awake(&self) -> crate::ops::KeepAwake {
        // The browser's build has no pool of threads.
        #[cfg(not(target_arch = "wasm32"))]
        return Some(Box::new(super::threads::awake()));
        #[cfg(target_arch = "wasm32")]
        None
    }

    fn linear(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        self.linear_then(x, w, b, After::Nothing)
    }

    fn row_count(&self, x: &Tensor) -> usize {
        x.rows()
    }

    fn rows(&mut self, x: &Tensor, start: usize, len: usize) -> Tensor {
        if x.shape().len() == 1 {
            Tensor::new(vec![len], x.data()[start..start + len].to_vec())
                .expect("slice length matches")
        } else {
            x.rows_slice(start, len)
        }
    }

    fn add_layer_norm(
        &mut self,
        x: &Tensor,
        residual: &Tensor,
        p: &Norm<Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        let y = no_overflow(cpu::norm::layer_norm_checked(
            x.data(),
            Some(residual.data()),
            p.weight.data(),
            p.bias.data(),
            x.cols(),
            eps,
        ))?;
        Tensor::new(vec![x.rows(), x.cols()], y)
    }

    fn self_attention(
        &mut self,
        qkv: &Tensor,
        frames: usize,
        tokens: usize,
        heads: usize,
        axis: Axis,
    ) -> Result<Tensor> {
        let e = qkv.cols() / 3;
        let g = AttnGeometry::along_axis(frames, tokens, e, heads, axis);
        let mut out = Tensor::zeros(&[frames * tokens, e]);
        self.attend(qkv.data(), qkv.data(), qkv.data(), out.data_mut(), &g);
        Ok(out)
    }

    fn cross_attention(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
    ) -> Result<Tensor> {
        let g = AttnGeometry::cross(q.rows(), k.rows(), q.cols(), heads);
        let mut out = Tensor::zeros(&[q.rows(), q.cols()]);
        self.attend(q.data(), k.data(), v.data(), out.data_mut(), &g);
        Ok(out)
    }

    fn attention_probs(&mut self, q: &Tensor, k: &Tensor, heads: usize) -> Result<Tensor> {
        let g = AttnGeometry::cross(q.rows(), k.rows(), q.cols(), heads);
        Tensor::new(
            vec![heads, q.rows(), k.rows()],
            cpu::attention::attention_probs(q.data(), k.data(), &g),
        )
    }

    fn top_k(
        &mut self,
        scores: &Tensor,
        k: usize,
        order: TopKOrder,
        tokens_per_frame: usize,
    ) -> Result<Vec<u32>> {
        cpu::topk::top_k(scores.data(), k, order, tokens_per_frame)
    }

    fn gather_pool(
        &mut self,
        x: &Tensor,
        idx: Option<&Vec<u32>>,
        count: usize,
        scales: &[usize],
    ) -> Result<Tensor> {
        let rows = cpu::window_pool::pooled_rows(count, scales);
        let y = cpu::window_pool::gather_pool(
            x.data(),
            x.cols(),
            idx.map(Vec::as_slice),
            count,
            scales,
        );
        Tensor::new(vec![rows, x.cols()], y)
    }

    fn concat_rows(&mut self, parts: &[Tensor]) -> Result<Tensor> {
        let cols = parts.first().map(Tensor::cols).unwrap_or(0);
        let rows = parts.iter().map(Tensor::rows).sum();
        let data = parts
            .iter()
            .flat_map(|p| p.data().iter().copied())
            .collect();
        Tensor::new(vec![rows, cols], data)
    }

    fn binding_limit(&self) -> Option<u64> {
        self.binding_limit
    }

    fn assemble_rows(
        &mut self,
        rows: usize,
        cols: usize,
        parts: &[(&Tensor, crate::ops::RowPairs)],
    ) -> Result<Tensor> {
        let mut data = vec![0f32; rows * cols];
        let mut written = vec![false; rows];
        for (src, pairs) in parts {
            if src.cols() != cols {
                return Err(Error::input(format!(
                    "assemble_rows: rows of {:?} do not fit rows of {cols} values",
                    src.shape()
                )));
            }
            for &(s, d) in pairs {
                let (s, d) = (s as usize, d as usize);
                if s >= src.rows() || d >= rows || written[d] {
                    return Err(Error::input(format!(
                        "assemble_rows: row {s} → {d} is out of range or written twice ({} rows into {rows})",
                        src.rows()
                    )));
                }
                written[d] = true;
                data[d * cols..(d + 1) * cols]
                    .copy_from_slice(&src.data()[s * cols..(s + 1) * cols]);
            }
        }
        if let Some(d) = written.iter().position(|w| !w) {
            return Err(Error::input(format!(
                "assemble_rows: row {d} of {rows} is never written"
            )));
        }
        Tensor::new(vec![rows, cols], data)
    }

    fn gather_parts(
        &mut self,
        parts: &[Tensor],
        first_rows: &[usize],
        idx: &Vec<u32>,
        count: usize,
    ) -> Result<Tensor> {
        let cols = parts.first().map_or(0, Tensor::cols);
        let mut data = Vec::with_capacity(count * cols);
        for &i in idx.iter().take(count) {
            let i = i as usize;
            let found = parts
                .iter()
                .zip(first_rows)
                .find(|(p, &first)| i >= first && i - first < p.rows());
            let Some((part, &first)) = found else {
                return Err(Error::input(format!(
                    "gather_parts: row {i} is in none of the {} parts",
                    parts.len()
                )));
            };
            data.extend_from_slice(&part.data()[(i - first) * cols..(i - first + 1) * cols]);
        }
        if data.len() != count * cols {
            return Err(Error::input(format!(
                "gather_parts: {count} rows asked for but {} indices given",
                idx.len()
            )));
        }
        Tensor::new(vec![count, cols], data)
    }

    fn stage(&mut self, name: &str) -> Result<()> {
        self.clock.mark(Some(name));
        Ok(())
    }
}

/// Keys and values per layer: (capacity, kv_heads · head_dim) each.
pub struct CpuKvCache {
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

fn two_d(x: Tensor) -> Result<Tensor> {
    let (r, c) = (x.rows(), x.cols());
    if x.shape().len() <= 2 {
        Ok(x)
    } else {
        x.reshape(&[r, c])
    }
}

/// A norm's output, or the overflow error when its twin saw a row whose mean square (or
/// variance) is not finite: a value upstream overflowed and the norm would turn it into silent
/// zeros (the GPU's norm kernels flag the same into the executor's health word).
fn no_overflow((y, overflow): (Vec<f32>, Option<usize>)) -> Result<Vec<f32>> {
    match overflow {
        Some(_) => Err(Error::Overflow),
        None => Ok(y),
    }
}

fn same_shape(x: &Tensor, data: Vec<f32>) -> Result<Tensor> {
    Tensor::new(x.shape().to_vec(), data)
}

impl VlmOps for CpuOps {
    type Kv = CpuKvCache;
    type Pos = Positions;

    fn positions(&mut self, p: &Positions) -> Result<Positions> {
        Ok(p.clone())
    }

    fn upload(&mut self, t: Tensor) -> Result<Tensor> {
        two_d(t.widened()?)
    }

    fn upload_weight(&mut self, t: Tensor, role: Role) -> Result<Tensor> {
        let t = self.place_weight(t, role)?;
        #[cfg(not(target_arch = "wasm32"))]
        if self.huge_pages {
            for bytes in t.storage() {
                cpu::huge_pages::back(bytes);
            }
        }
        Ok(t)
    }

    async fn read_back(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn reshape(&mut self, x: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
        x.clone().reshape(&[rows, cols])
    }

    fn gather_rows(&mut self, x: &Tensor, ids: &[u32]) -> Result<Tensor> {
        let (rows, cols) = (x.rows(), x.cols());
        let x = x.untiled(); // tables are not tiled (`tiled_for_products`); in case one is
        let mut data = Vec::with_capacity(ids.len() * cols);
        for &id in ids {
            if id as usize >= rows {
                return Err(Error::input(format!(
                    "row id {id} is out of range for a table of {rows} rows (a token id beyond the vocabulary?)"
                )));
            }
            let id = id as usize;
            match (x.half_data(), x.block_rows()) {
                (Some((kind, bits)), _) => data.extend(
                    bits[id * cols..(id + 1) * cols]
                        .iter()
                        .map(|&v| kind.widen(v)),
                ),
                (_, Some(parts)) => data.extend(table_row(parts, rows, cols, id)?),
                _ => data.extend_from_slice(x.row(id)),
            }
        }
        Tensor::new(vec![ids.len(), cols], data)
    }

    fn scatter_rows(&mut self, dst: &Tensor, positions: &[u32], src: &Tensor) -> Result<Tensor> {
        if src.rows() != positions.len() || src.cols() != dst.cols() {
            return Err(Error::input(format!(
                "scatter_rows: {} positions for a ({}, {}) source into rows of {}",
                positions.len(),
                src.rows(),
                src.cols(),
                dst.cols()
            )));
        }
        let mut out = dst.clone();
        let c = dst.cols();
        for (i, &p) in positions.iter().enumerate() {
            let p = p as usize;
            if p >= dst.rows() {
                return Err(Error::input(format!(
                    "scatter_rows: position {p} is beyond {} rows",
                    dst.rows()
                )));
            }
            out.data_mut()[p * c..(p + 1) * c].copy_from_slice(src.row(i));
        }
        Ok(out)
    }

    fn layer_norm(&mut self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        let y = cpu::norm::layer_norm_checked(x.data(), None, w.data(), b.data(), x.cols(), eps);
        same_shape(x, no_overflow(y)?)
    }

    fn rms_norm(&mut self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
        let y = cpu::norm::rms_norm_checked(x.data(), w.data(), x.cols(), eps);
        same_shape(x, no_overflow(y)?)
    }

    fn gelu(&mut self, x: &Tensor) -> Result<Tensor> {
        same_shape(x, cpu::elementwise::gelu(x.data()))
    }

    /// GELU over the linear's own output, in place: no second tensor to allocate and zero.
    fn linear_gelu(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        self.linear_then(x, w, b, After::Gelu)
    }

    /// The residual added over the linear's own output, in place (`residual_add`'s values).
    fn linear_residual(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        residual: &Tensor,
        gamma: Option<&Tensor>,
    ) -> Result<Tensor> {
        let out = [x.rows(), w.rows()];
        if residual.shape() != out {
            return Err(Error::input(format!(
                "linear_residual: the residual {:?} does not match the output {out:?}",
                residual.shape(),
            )));
        }
        if let Some(g) = gamma.filter(|g| g.len() != out[1]) {
            return Err(Error::input(format!(
                "linear_residual: gamma holds {} values for {} columns",
                g.len(),
                out[1]
            )));
        }
        let after = After::Residual {
            residual: residual.data(),
            gamma: gamma.map(Tensor::data),
        };
        self.linear_then(x, w, b, after)
    }

    fn quick_gelu(&mut self, x: &Tensor) -> Result<Tensor> {
        same_shape(x, cpu::elementwise::quick_gelu(x.data()))
    }

    fn block_attention(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        blocks: usize,
        heads: usize,
    ) -> Result<Tensor> {
        let shape = |t: &Tensor| (t.rows(), t.cols());
        let len = crate::ops::check_blocks(shape(q), shape(k), shape(v), blocks, heads)?;
        let g = AttnGeometry::blocks(blocks, len, q.cols(), heads);
        let mut out = Tensor::zeros(&[q.rows(), q.cols()]);
        self.attend(q.data(), k.data(), v.data(), out.data_mut(), &g);
        Ok(out)
    }

    fn swiglu(&mut self, x: &Tensor) -> Result<Tensor> {
        let width = x.cols() / 2;
        let y = cpu::elementwise::swiglu(x.data(), width);
        Tensor::new(vec![x.rows(), width], y)
    }

    fn residual_add(&mut self, x: &Tensor, y: &Tensor, gamma: Option<&Tensor>) -> Result<Tensor> {
        if y.cols() != x.cols() || y.is_empty() || !x.rows().is_multiple_of(y.rows()) {
            return Err(Error::input(format!(
                "residual_add: {:?} cannot be added to {:?}",
                y.shape(),
                x.shape()
            )));
        }
        let out =
            cpu::elementwise::residual_add(x.data(), y.data(), gamma.map(Tensor::data), x.cols());
        same_shape(x, out)
    }

    fn round_bf16(&mut self, x: &Tensor) -> Result<Tensor> {
        same_shape(x, cpu::elementwise::round_bf16(x.data()))
    }

    fn rope(
        &mut self,
        x: &Tensor,
        heads: usize,
        head_dim: usize,
        positions: &Positions,
        rope: &Rope,
    ) -> Result<Tensor> {
        if head_dim == 0 || rope.head_dim() != head_dim || x.cols() != heads * head_dim {
            return Err(Error::input(format!(
                "rope: x {:?} must hold rows of {heads} heads × {head_dim} values, rotated by a RoPE of head_dim {}",
                x.shape(),
                rope.head_dim()
            )));
        }
        rope.check(positions, x.rows(), "rope")?;
        let mut y = x.clone();
        cpu::rope::rope_with(y.data_mut(), heads, positions, rope);
        Ok(y)
    }

    fn kv_cache(
        &mut self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Result<CpuKvCache> {
        let size = capacity * kv_heads * head_dim;
        Ok(CpuKvCache {
            kv_heads,
            head_dim,
            capacity,
            keys: vec![vec![0.0; size]; layers],
            values: vec![vec![0.0; size]; layers],
        })
    }

    fn qkv_to_cache(
        &mut self,
        cache: &mut CpuKvCache,
        layer: usize,
        slot: usize,
        qkv: &Tensor,
        heads: usize,
        rope: &Rope,
        positions: &Positions,
    ) -> Result<Tensor> {
        let (kv_heads, d) = (cache.kv_heads, cache.head_dim);
        let (qw, kw) = (heads * d, kv_heads * d);
        if qkv.cols() != qw + 2 * kw {
            return Err(Error::input(format!(
                "qkv_to_cache: qkv {:?} must hold rows of {heads} + 2·{kv_heads} heads × {d} values",
                qkv.shape()
            )));
        }
        let rows = qkv.rows();
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for row in qkv.data().chunks(qw + 2 * kw) {
            q.extend_from_slice(&row[..qw]);
            k.extend_from_slice(&row[qw..qw + kw]);
            v.extend_from_slice(&row[qw + kw..]);
        }
        let q = self.rope(&Tensor::new(vec![rows, qw], q)?, heads, d, positions, rope)?;
        let k = self.rope(
            &Tensor::new(vec![rows, kw], k)?,
            kv_heads,
            d,
            positions,
            rope,
        )?;
        self.kv_write(cache, layer, slot, &k, &Tensor::new(vec![rows, kw], v)?)?;
        Ok(q)
    }

    fn kv_write(
        &mut self,
        cache: &mut CpuKvCache,
        layer: usize,
        position: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<()> {
        let w = cache.kv_heads * cache.head_dim;
        crate::ops::check_kv_write(
            w,
            cache.keys.len(),
            cache.capacity,
            layer,
            position,
            (k.rows(), k.cols()),
            (v.rows(), v.cols()),
        )?;
        cache.keys[layer][position * w..][..k.len()].copy_from_slice(k.data());
        cache.values[layer][position * w..][..v.len()].copy_from_slice(v.data());
        Ok(())
    }

    fn kv_attention(
        &mut self,
        cache: &CpuKvCache,
        layer: usize,
        q: &Tensor,
        position: usize,
        heads: usize,
    ) -> Result<Tensor> {
        let g = KvGeometry {
            heads,
            kv_heads: cache.kv_heads,
            head_dim: cache.head_dim,
            position,
        };
        if q.cols() != heads * cache.head_dim || position + q.rows() > cache.capacity {
            return Err(Error::input(format!(
                "kv_attention: q {:?} at position {position} does not fit {heads} heads of {} in a cache of {}",
                q.shape(),
                cache.head_dim,
                cache.capacity
            )));
        }
        let (keys, values) = (&cache.keys[layer], &cache.values[layer]);
        #[cfg(target_arch = "x86_64")]
        if self.attention_on_tiles(q.rows(), position + q.rows()) {
            // SAFETY: the CPU has AMX (`attention_on_tiles` checks); as `attend`, a prefill's
            // attention in the bf16 mode runs on the tiles.
            let out = unsafe { cpu::amx_attention::causal(q.data(), keys, values, &g) };
            return same_shape(q, out);
        }
        let out = cpu::kv_attention::causal_attention(q.data(), keys, values, &g);
        same_shape(q, out)
    }

    async fn read_back_indices(&mut self, idx: &Vec<u32>) -> Result<Vec<u32>> {
        Ok(idx.clone())
    }

    async fn sample(&mut self, logits: &Tensor, p: &SamplingParams, uniform: f32) -> Result<u32> {
        if let Some(bad) = logits.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteLogits { token: bad as u32 });
        }
        Ok(cpu::sample::sample(logits.data(), p, uniform))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_cache_round_trip_matches_twin() {
        let mut ops = CpuOps::new();
        let mut cache = ops.kv_cache(1, 1, 2, 3).unwrap();
        let k = Tensor::new(vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        let v = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        ops.kv_write(&mut cache, 0, 0, &k, &v).unwrap();
        let q = Tensor::new(vec![1, 2], vec![0.0, 0.0]).unwrap();
        // Equal scores at position 1: the mean of both values.
        let out = ops.kv_attention(&cache, 0, &q, 1, 1).unwrap();
        assert_eq!(out.data(), &[2.0, 3.0]);
        // Writing past the capacity is an error, not a panic.
        assert!(ops.kv_write(&mut cache, 0, 2, &k, &v).is_err());
    }

    #[test]
    fn gather_rejects_out_of_range_ids() {
        let mut ops = CpuOps::new();
        let t = Tensor::new(vec![2, 1], vec![5.0, 6.0]).unwrap();
        assert_eq!(
            ops.gather_rows(&t, &[1, 0, 1]).unwrap().data(),
            &[6.0, 5.0, 6.0]
        );
        assert!(ops.gather_rows(&t, &[2]).is_err());
    }
}
