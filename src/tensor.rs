//! Host tensor: a shape and row-major f32 data. Shared by file I/O and the CPU executor.
//!
//! A model weight the CPU executor keeps in its stored precision is a bf16 or f16 tensor
//! instead ([`Tensor::half`]): it holds 16-bit values only, and only the ops that read weights
//! take it (`linear` as the weight, `gather_rows` as the table, `rows` to slice it); reading it
//! as f32 ([`Tensor::data`]) is a bug in the caller and panics with a message saying so. A weight read
//! from a GGUF file in a quantized type stays in ggml's blocks ([`Tensor::blocks`]) until an
//! executor places it; [`Tensor::widened`] gives its f32 values.

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// Rows of a weight kept as ggml blocks, as a GGUF file holds them (whole blocks per row).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockRows {
    pub ty: GgmlType,
    pub rows: usize,
    pub bytes: Vec<u8>,
    /// The CPU's decode layout ([`BlockRows::interleave`]) rather than row after row.
    pub interleaved: bool,
}

/// Rows per group of the interleaved layout.
pub const INTERLEAVE_ROWS: usize = 8;

impl BlockRows {
    /// Rows of `ty` blocks, row after row (ggml's layout).
    pub fn new(ty: GgmlType, rows: usize, bytes: Vec<u8>) -> Self {
        BlockRows {
            ty,
            rows,
            bytes,
            interleaved: false,
        }
    }

    /// The CPU's decode layout for Q4_0, Q8_0 and Q4_K. Q4_0 and Q8_0 (an f16 scale, then 16 or 32 quant bytes per
    /// block): rows in groups of [`INTERLEAVE_ROWS`], each group block by block — the 8 rows'
    /// scales, then their quants 4 bytes at a time (row 0's bytes 0..4, row 1's 0..4, …, row 0's
    /// 4..8, …). One 32-byte load then holds 4 values of 8 rows, so an integer dot instruction
    /// works on 8 rows at once against 4 broadcast activations. Rows past the last whole
    /// group stay row after row; the bytes are the same, each row group where it was. Other
    /// types are returned as they are. Q4_K (d, dmin, 12 bytes of scales, 128 of quants per
    /// 256 values) likewise: per block the 8 rows' d, their dmin, their 12 scale bytes byte by
    /// byte (byte i of row r at 8i + r), then their quants 4 bytes at a time. Native only (the
    /// browser build has no block kernels).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn interleave(self, cols: usize) -> BlockRows {
        if self.interleaved || !matches!(self.ty, GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q4_K)
        {
            return self;
        }
        BlockRows {
            bytes: self.permute(cols, true),
            interleaved: true,
            ..self
        }
    }

    /// The bytes row after row (a copy when interleaved).
    pub fn row_major(&self, cols: usize) -> std::borrow::Cow<'_, [u8]> {
        #[cfg(not(target_arch = "wasm32"))]
        if self.interleaved {
            return self.permute(cols, false).into();
        }
        let _ = cols;
        self.bytes.as_slice().into()
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn permute(&self, cols: usize, into: bool) -> Vec<u8> {
        permute_groups(self.ty, &self.bytes, cols, into)
    }
}

/// `bytes` (rows of `cols` values in `ty` blocks) with every whole group of
/// [`INTERLEAVE_ROWS`] rows moved to (`into`: true) or from the interleaved layout
/// ([`BlockRows::interleave`]); rows past the last whole group as they are.
#[cfg(not(target_arch = "wasm32"))]
pub fn permute_groups(ty: GgmlType, bytes: &[u8], cols: usize, into: bool) -> Vec<u8> {
    let (block, block_bytes) = ty.block().expect("a block type");
    let (nb, bb) = (cols / block as usize, block_bytes as usize);
    let rows = bytes.len() / (nb * bb).max(1);
    // Each field as (offset in a row's block, offset of row 0's copy in the group's block,
    // bytes); row r's copy follows at r·bytes: the 8 rows' copies of a field side by side.
    let fields: Vec<(usize, usize, usize)> = match ty {
        GgmlType::Q4_K => {
            let mut f = vec![(0, 0, 2), (2, 16, 2)];
            f.extend((0..12).map(|i| (4 + i, 32 + 8 * i, 1)));
            f.extend((0..32).map(|c| (16 + 4 * c, 128 + 32 * c, 4)));
            f
        }
        _ => {
            let mut f = vec![(0, 0, 2)];
            f.extend((0..(bb - 2) / 4).map(|c| (2 + 4 * c, 16 + 32 * c, 4)));
            f
        }
    };
    let mut out = bytes.to_vec();
    for group in 0..rows / INTERLEAVE_ROWS {
        let base = group * INTERLEAVE_ROWS * nb * bb;
        for b in 0..nb {
            let column = base + b * INTERLEAVE_ROWS * bb;
            for r in 0..INTERLEAVE_ROWS {
                let row_block = base + (r * nb + b) * bb;
                for &(at, packed, len) in &fields {
                    let (plain, packed) = (row_block + at, column + packed + r * len);
                    let (from, to) = if into {
                        (plain, packed)
                    } else {
                        (packed, plain)
                    };
                    out[to..to + len].copy_from_slice(&bytes[from..from + len]);
                }
            }
        }
    }
    out
}

/// 64 bytes on a 64-byte boundary: one cache line, 32 bf16 (an AMX tile row). Tiles are held
/// in these so no tile row straddles two lines (a load of each row would then touch two).
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
pub struct CacheLine(pub [u16; 32]);

/// Zeroed cache lines holding at least `values` 16-bit values.
pub fn cache_lines(values: usize) -> Vec<CacheLine> {
    vec![CacheLine([0; 32]); values.div_ceil(32)]
}

/// Depths an AMX tile operand holds for k columns: whole tiles of 32, at least one.
pub fn tiled_depth(k: usize) -> usize {
    k.next_multiple_of(32).max(32)
}

/// Values a bf16 weight of n rows × k columns takes in the AMX tile layout ([`tile_index`]):
/// rows padded to 32, columns to [`tiled_depth`].
pub fn tiled_len(n: usize, k: usize) -> usize {
    n.next_multiple_of(32) * tiled_depth(k)
}

/// Where W[j][d] (row j, column d of a weight with k columns) sits in the AMX tile layout that
/// `--cpu-products bf16` keeps its weights in (`cpu::amx::pack_weight`): W's rows are the
/// product's output columns, taken 16 at a time, each 16 a run of tiles of 32 depths (1 KiB:
/// 16 tile rows, each one depth pair of the 16 — row j's two values side by side, as AMX's
/// `tdpbf16ps` and AVX512-BF16's `vdpbf16ps` read them). Padding is zero.
pub fn tile_index(k: usize, j: usize, d: usize) -> usize {
    let kbs = tiled_depth(k) / 32;
    ((j / 16) * kbs + d / 32) * 512 + ((d % 32) / 2) * 32 + (j % 16) * 2 + d % 2
}

/// A 16-bit float format a weight can be kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// The upper half of an f32 (widened by a shift, exactly).
    Bf16,
    /// IEEE half precision.
    F16,
}

impl Half {
    pub fn widen(self, bits: u16) -> f32 {
        match self {
            Half::Bf16 => f32::from_bits((bits as u32) << 16),
            Half::F16 => half::f16::from_bits(bits).to_f32(),
        }
    }
    /// True for the bits of a finite value (the exponent not all ones: not ±∞ or NaN).
    pub fn is_finite(self, bits: u16) -> bool {
        let exponent = match self {
            Half::Bf16 => 0x7F80,
            Half::F16 => 0x7C00,
        };
        bits & exponent != exponent
    }
    /// True for the bits of ±infinity.
    pub fn is_infinite(self, bits: u16) -> bool {
        match self {
            Half::Bf16 => bits & 0x7FFF == 0x7F80,
            Half::F16 => bits & 0x7FFF == 0x7C00,
        }
    }
    /// The nearest value (ties to even).
    pub fn round(self, v: f32) -> u16 {
        match self {
            Half::Bf16 => half::bf16::from_f32(v).to_bits(),
            Half::F16 => half::f16::from_f32(v).to_bits(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
    /// The values as 16-bit floats when the tensor is a bf16 or f16 weight; `data` is then
    /// empty.
    half: Option<(Half, Vec<u16>)>,
    /// The rows as ggml blocks, in consecutive ranges that may differ in type (a stacked q/k/v
    /// of a Q4_K_M file mixes Q4_K and Q6_K); `data` is then empty.
    blocks: Option<Vec<BlockRows>>,
    /// A bf16 weight's bits in the AMX tile layout ([`tile_index`]) that `--cpu-products bf16`
    /// multiplies; `data` is then empty. Only `linear` reads it as it is; everything else sees
    /// it back in rows ([`Tensor::untiled`]).
    tiles: Option<Vec<CacheLine>>,
}

/// An error unless `shape` holds exactly `given` values.
fn holds(shape: &[usize], given: usize) -> Result<()> {
    let expected: usize = shape.iter().product();
    if expected != given {
        return Err(Error::input(format!(
            "shape {shape:?} holds {expected} values but {given} were given"
        )));
    }
    Ok(())
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        holds(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data,
            half: None,
            blocks: None,
            tiles: None,
        })
    }

    /// A (rows, cols) weight held as ggml blocks: `parts` cover the rows in order, each with
    /// exactly the bytes its type takes for its rows.
    pub fn blocks(shape: Vec<usize>, parts: Vec<BlockRows>) -> Result<Self> {
        let [rows, cols] = shape[..] else {
            return Err(Error::input(format!(
                "a block-quantized tensor must be 2-D, not {shape:?}"
            )));
        };
        if parts.iter().map(|p| p.rows).sum::<usize>() != rows {
            return Err(Error::input(format!(
                "block rows do not add up to the {rows} rows of {shape:?}"
            )));
        }
        for p in &parts {
            let want = p.ty.size_bytes((p.rows * cols) as u64);
            if want != Some(p.bytes.len() as u64) {
                return Err(Error::input(format!(
                    "{} rows of {cols} values in {} take {want:?} bytes, not {}",
                    p.rows,
                    p.ty,
                    p.bytes.len()
                )));
            }
        }
        Ok(Tensor {
            shape,
            data: Vec::new(),
            half: None,
            blocks: Some(parts),
            tiles: None,
        })
    }

    /// The block rows of a block-quantized weight; None otherwise.
    pub fn block_rows(&self) -> Option<&[BlockRows]> {
        self.blocks.as_deref()
    }

    /// The values as an f32 tensor: blocks dequantized, bf16 widened, f32 as it is.
    pub fn widened(self) -> Result<Tensor> {
        if self.tiles.is_some() {
            return self.untiled().into_owned().widened();
        }
        let shape = self.shape.clone();
        if let Some(parts) = &self.blocks {
            // Block tensors come from GGUF files, which only the native build reads; the
            // browser bundle (1 MiB budget) leaves the dequantizers out.
            #[cfg(target_arch = "wasm32")]
            {
                let _ = parts;
                return Err(Error::input(
                    "widening ggml blocks is not part of the browser build",
                ));
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                let cols = self.cols();
                let mut data = Vec::with_capacity(self.len());
                for p in parts {
                    data.extend(crate::quant::dequantize(
                        p.ty,
                        &p.row_major(cols),
                        p.rows * cols,
                    )?);
                }
                return Tensor::new(shape, data);
            }
        }
        if let Some((kind, bits)) = &self.half {
            let data = bits.iter().map(|&b| kind.widen(b)).collect();
            return Tensor::new(shape, data);
        }
        Ok(self)
    }

    /// `parts` stacked along their first axis (their other axes must agree; 1-D parts make a
    /// longer vector): blocks stay blocks when every part is blocks, else everything is
    /// widened to f32.
    pub fn concat_rows(parts: Vec<Tensor>) -> Result<Tensor> {
        let parts: Vec<Tensor> = parts
            .into_iter()
            .map(|t| match t.tiles {
                Some(_) => t.untiled().into_owned(),
                None => t,
            })
            .collect();
        let Some(first) = parts.first() else {
            return Err(Error::input("concat_rows of no tensors"));
        };
        let inner = first.shape.get(1..).unwrap_or_default().to_vec();
        if parts
            .iter()
            .any(|t| t.shape.is_empty() || t.shape[1..] != inner[..])
        {
            let shapes: Vec<&[usize]> = parts.iter().map(|t| t.shape()).collect();
            return Err(Error::input(format!(
                "cannot stack the rows of {shapes:?}: their other axes differ"
            )));
        }
        let mut shape = vec![parts.iter().map(|t| t.shape[0]).sum::<usize>()];
        shape.extend(&inner);
        if parts.iter().all(|t| t.blocks.is_some()) {
            let cols = first.cols();
            let mut merged: Vec<BlockRows> = Vec::new();
            for p in parts.into_iter().flat_map(|t| t.blocks.unwrap_or_default()) {
                let p = BlockRows::new(p.ty, p.rows, p.row_major(cols).into_owned());
                match merged.last_mut() {
                    Some(last) if last.ty == p.ty => {
                        last.rows += p.rows;
                        last.bytes.extend_from_slice(&p.bytes);
                    }
                    _ => merged.push(p),
                }
            }
            return Tensor::blocks(shape, merged);
        }
        // 16-bit parts of one kind stay 16-bit (a stacked q/k/v of a bf16 checkpoint).
        if let Some((kind, _)) = first.half.as_ref() {
            let kind = *kind;
            if parts
                .iter()
                .all(|t| t.half.as_ref().is_some_and(|(k, _)| *k == kind))
            {
                let mut bits = Vec::with_capacity(shape.iter().product());
                for t in &parts {
                    bits.extend_from_slice(t.half.as_ref().map_or(&[][..], |(_, b)| b));
                }
                return Tensor::half_bits(kind, shape, bits);
            }
        }
        let mut data = Vec::with_capacity(shape.iter().product());
        for t in parts {
            data.extend(t.widened()?.data);
        }
        Tensor::new(shape, data)
    }

    /// A bf16 weight: `values` are f32 values rounded to the nearest bf16 (ties to even),
    /// exactly so when they were bf16 already.
    pub fn bf16(shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        Tensor::half(Half::Bf16, shape, values)
    }

    /// A 16-bit weight of `kind`: `values` rounded to the nearest (ties to even), exactly so
    /// when they were of that kind already. An error when a finite value is beyond the kind's
    /// range (f16: 65504), rather than an infinite weight.
    pub fn half(kind: Half, shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        holds(&shape, values.len())?;
        // One pass: round, and refuse a finite value that rounds to infinity.
        let bits = values
            .iter()
            .map(|&v| match kind.round(v) {
                b if kind.is_infinite(b) && v.is_finite() => Err(Error::input(format!(
                    "weight value {v} (of shape {shape:?}) is beyond {kind:?}'s range; keep such weights in bf16 or f32"
                ))),
                b => Ok(b),
            })
            .collect::<Result<Vec<u16>>>()?;
        Ok(Tensor {
            shape,
            data: Vec::new(),
            half: Some((kind, bits)),
            blocks: None,
            tiles: None,
        })
    }

    /// A 16-bit weight of `kind` from its bits as stored (no rounding, no range check: they are
    /// values of that kind already).
    pub fn half_bits(kind: Half, shape: Vec<usize>, bits: Vec<u16>) -> Result<Self> {
        holds(&shape, bits.len())?;
        Ok(Tensor {
            shape,
            data: Vec::new(),
            half: Some((kind, bits)),
            blocks: None,
            tiles: None,
        })
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
            half: None,
            blocks: None,
            tiles: None,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The f32 values. Panics on a 16-bit or block weight (see the module note): only the ops
    /// that read weights take one, through [`Tensor::half_data`] / [`Tensor::block_rows`].
    pub fn data(&self) -> &[f32] {
        self.assert_f32();
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.assert_f32();
        &mut self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.assert_f32();
        self.data
    }
    /// A bf16 weight of `shape` (n×k) in the AMX tile layout: `bits` as
    /// `cpu::amx::pack_weight` packs them ([`tiled_len`] values).
    pub fn bf16_tiled(shape: Vec<usize>, bits: Vec<CacheLine>) -> Result<Self> {
        let [n, k] = shape[..] else {
            return Err(Error::input(format!(
                "a tiled weight must be 2-D, not {shape:?}"
            )));
        };
        if 32 * bits.len() != tiled_len(n, k) {
            return Err(Error::input(format!(
                "a tiled {shape:?} weight takes {} values, not {}",
                tiled_len(n, k),
                32 * bits.len()
            )));
        }
        Ok(Tensor {
            shape,
            data: Vec::new(),
            half: None,
            blocks: None,
            tiles: Some(bits),
        })
    }

    /// The bits of a bf16 weight in the AMX tile layout ([`tile_index`]); None otherwise.
    pub fn bf16_tiles(&self) -> Option<&[u16]> {
        self.tiles.as_deref().map(bytemuck::cast_slice)
    }

    /// A tiled weight as a bf16 weight in rows (the same values); any other tensor as it is.
    pub fn untiled(&self) -> std::borrow::Cow<'_, Tensor> {
        let Some(tiles) = self.bf16_tiles() else {
            return std::borrow::Cow::Borrowed(self);
        };
        let (n, k) = (self.rows(), self.cols());
        let mut bits = Vec::with_capacity(n * k);
        for j in 0..n {
            bits.extend((0..k).map(|d| tiles[tile_index(k, j, d)]));
        }
        std::borrow::Cow::Owned(
            Tensor::half_bits(Half::Bf16, self.shape.clone(), bits).expect("n×k bits"),
        )
    }

    /// The kind and bits of a 16-bit weight in rows; None otherwise (a tiled weight too).
    pub fn half_data(&self) -> Option<(Half, &[u16])> {
        self.half
            .as_ref()
            .map(|(kind, bits)| (*kind, bits.as_slice()))
    }
    fn assert_f32(&self) {
        assert!(
            self.half.is_none(),
            "a 16-bit weight {:?} was read as f32; only linear, gather_rows and rows take 16-bit weights",
            self.shape
        );
        assert!(
            self.blocks.is_none(),
            "a block-quantized weight {:?} was read as f32; widen it first (Tensor::widened)",
            self.shape
        );
        assert!(
            self.tiles.is_none(),
            "a tiled bf16 weight {:?} was read as f32; only linear takes it (Tensor::untiled)",
            self.shape
        );
    }
    /// The memory the values are held in, as bytes (one slice, or one per run of blocks).
    pub fn storage(&self) -> Vec<&[u8]> {
        match (&self.tiles, &self.half, &self.blocks) {
            (Some(t), _, _) => vec![bytemuck::cast_slice(t)],
            (_, Some((_, t)), _) => vec![bytemuck::cast_slice(t)],
            (_, _, Some(parts)) => parts.iter().map(|p| p.bytes.as_slice()).collect(),
            _ => vec![bytemuck::cast_slice(&self.data)],
        }
    }

    /// Bytes the values take as held: 4 per f32, 2 per bf16/f16, a block weight's bytes.
    pub fn stored_bytes(&self) -> usize {
        if let Some(tiles) = &self.tiles {
            return 64 * tiles.len();
        }
        match (&self.half, &self.blocks) {
            (Some((_, bits)), _) => 2 * bits.len(),
            (_, Some(parts)) => parts.iter().map(|p| p.bytes.len()).sum(),
            _ => 4 * self.data.len(),
        }
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Same data, another shape with the same element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(Error::input(format!(
                "cannot view shape {:?} as {shape:?}",
                self.shape
            )));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Size of the last axis (the row width); 1 for a scalar.
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Product of all axes but the last.
    pub fn rows(&self) -> usize {
        if self.shape.is_empty() {
            1
        } else {
            self.shape[..self.shape.len() - 1].iter().product()
        }
    }
    pub fn row(&self, i: usize) -> &[f32] {
        let c = self.cols();
        &self.data()[i * c..(i + 1) * c]
    }
    /// Rows `start..start + len` of a 2-D view, copied (16-bit stays 16-bit; blocks stay blocks,
    /// the runs they fall in cut to them).
    pub fn rows_slice(&self, start: usize, len: usize) -> Tensor {
        if let Some(tiles) = &self.tiles {
            // Whole 32-row groups (a packed q/k/v's thirds) are a stretch of tiles, cut as
            // they are; other cuts go through rows.
            let k = self.cols();
            if start.is_multiple_of(32) && len.is_multiple_of(32) && start + len <= self.rows() {
                let lines_per_row = tiled_depth(k) / 32;
                let cut = tiles[start * lines_per_row..(start + len) * lines_per_row].to_vec();
                return Tensor::bf16_tiled(vec![len, k], cut).expect("whole tile groups");
            }
            return self.untiled().rows_slice(start, len);
        }
        let c = self.cols();
        if let Some(parts) = &self.blocks {
            let mut cut = Vec::new();
            let mut first = 0;
            for p in parts {
                let (lo, hi) = (start.max(first), (start + len).min(first + p.rows));
                if lo < hi {
                    let row_bytes = p.bytes.len() / p.rows;
                    let bytes = p.row_major(c);
                    let bytes = bytes[(lo - first) * row_bytes..(hi - first) * row_bytes].to_vec();
                    cut.push(BlockRows::new(p.ty, hi - lo, bytes));
                }
                first += p.rows;
            }
            return Tensor::blocks(vec![len, c], cut).expect("rows within the weight");
        }
        let range = start * c..(start + len) * c;
        Tensor {
            shape: vec![len, c],
            data: match &self.half {
                Some(_) => Vec::new(),
                None => self.data[range.clone()].to_vec(),
            },
            half: self
                .half
                .as_ref()
                .map(|(kind, b)| (*kind, b[range].to_vec())),
            blocks: None,
            tiles: None,
        }
    }

    /// First non-finite value as (flat index, value), if any.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        // This runs over every weight of a checkpoint at load: each chunk is tested without an
        // early exit (which the compiler vectorises), and only a chunk that fails is searched.
        fn first<T: Copy>(values: &[T], finite: impl Fn(T) -> bool) -> Option<usize> {
            const CHUNK: usize = 4096;
            let bad = values
                .chunks(CHUNK)
                .position(|c| c.iter().fold(false, |any, &v| any | !finite(v)))?;
            let at = bad * CHUNK;
            values[at..]
                .iter()
                .position(|&v| !finite(v))
                .map(|i| at + i)
        }
        if self.tiles.is_some() {
            return self.untiled().first_non_finite();
        }
        if let Some((kind, bits)) = &self.half {
            return first(bits, |b| kind.is_finite(b)).map(|i| (i, kind.widen(bits[i])));
        }
        first(self.data(), f32::is_finite).map(|i| (i, self.data[i]))
    }

    /// Largest absolute difference to `other` (shapes must hold the same count).
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        assert_eq!(self.len(), other.len(), "max_abs_diff on different sizes");
        self.data()
            .iter()
            .zip(other.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first non-finite value past the first 4096-value chunk, with a later one after it,
    /// in f32 and both halves; the largest finite halves pass.
    #[test]
    fn first_non_finite_finds_the_first_in_any_chunk() {
        let mut data = vec![1.0f32; 10_000];
        data[9_000] = f32::NAN;
        data[5_000] = f32::NEG_INFINITY;
        let t = Tensor::new(vec![100, 100], data).unwrap();
        assert_eq!(t.first_non_finite(), Some((5_000, f32::NEG_INFINITY)));
        for (kind, max, inf) in [(Half::Bf16, 0x7F7F, 0x7F80), (Half::F16, 0x7BFF, 0x7C00)] {
            let mut bits = vec![max; 10_000];
            bits[1] = max | 0x8000;
            assert_eq!(
                Tensor::half_bits(kind, vec![10_000], bits.clone())
                    .unwrap()
                    .first_non_finite(),
                None
            );
            bits[7_000] = inf | 0x8000;
            bits[8_000] = inf + 1; // a NaN
            let t = Tensor::half_bits(kind, vec![10_000], bits).unwrap();
            assert_eq!(t.first_non_finite(), Some((7_000, f32::NEG_INFINITY)));
        }
    }

    /// Weights read in their 16 bits (a bf16 checkpoint as loaded): a non-finite one is found
    /// by its widened value; rows of one kind stack as that kind, bit for bit; mixed kinds stack
    /// as f32, each value widened exactly.
    #[test]
    fn half_bits_are_checked_and_stacked_as_stored() {
        let bf16 = |v: &[f32]| {
            v.iter()
                .map(|&x| half::bf16::from_f32(x).to_bits())
                .collect()
        };
        let a = Tensor::half_bits(Half::Bf16, vec![1, 3], bf16(&[1.0, -2.5, 3.0])).unwrap();
        let b = Tensor::half_bits(Half::Bf16, vec![1, 3], bf16(&[0.5, f32::NAN, 4.0])).unwrap();
        assert_eq!(a.first_non_finite(), None);
        let (i, v) = b.first_non_finite().unwrap();
        assert!(i == 1 && v.is_nan());
        let inf = Tensor::half_bits(Half::F16, vec![2], vec![0x3c00, 0x7c00]).unwrap();
        assert_eq!(inf.first_non_finite(), Some((1, f32::INFINITY)));
        assert!(Tensor::half_bits(Half::Bf16, vec![2, 2], vec![0; 3]).is_err());

        let stacked = Tensor::concat_rows(vec![a.clone(), a.clone()]).unwrap();
        let (kind, bits) = stacked.half_data().unwrap();
        assert_eq!((kind, stacked.shape()), (Half::Bf16, &[2, 3][..]));
        assert_eq!(
            bits,
            [a.half_data().unwrap().1, a.half_data().unwrap().1].concat()
        );

        let f16 = Tensor::half_bits(Half::F16, vec![1, 3], vec![0x3c00, 0xc000, 0x3800]).unwrap();
        let mixed = Tensor::concat_rows(vec![a, f16]).unwrap();
        assert_eq!(mixed.data(), [1.0, -2.5, 3.0, 1.0, -2.0, 0.5]);
    }

    /// A finite weight that rounds to infinity is refused, naming it; infinities and values in
    /// range keep their nearest 16-bit value.
    #[test]
    fn half_weights_refuse_values_beyond_their_range() {
        let err = Tensor::half(Half::F16, vec![2], &[1.0, 70000.0]).unwrap_err();
        assert!(err.to_string().contains("70000"), "{err}");
        assert!(Tensor::half(Half::Bf16, vec![1], &[f32::MAX]).is_err());
        let t = Tensor::half(Half::F16, vec![3], &[65504.0, f32::INFINITY, -0.5]).unwrap();
        let (_, bits) = t.half_data().unwrap();
        let back: Vec<f32> = bits.iter().map(|&b| Half::F16.widen(b)).collect();
        assert_eq!(back, [65504.0, f32::INFINITY, -0.5]);
    }

    fn q8(rows: usize, cols: usize, fill: u8) -> Tensor {
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / 32 {
            bytes.extend_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
            bytes.extend(std::iter::repeat_n(fill, 32));
        }
        let part = BlockRows::new(GgmlType::Q8_0, rows, bytes);
        Tensor::blocks(vec![rows, cols], vec![part]).unwrap()
    }

    #[test]
    fn concat_rows_stacks_vectors_matrices_and_blocks() {
        let a = Tensor::new(vec![2], vec![1.0, 2.0]).unwrap();
        let b = Tensor::new(vec![1], vec![3.0]).unwrap();
        let v = Tensor::concat_rows(vec![a, b]).unwrap();
        assert_eq!((v.shape(), v.data()), (&[3][..], &[1.0, 2.0, 3.0][..]));
        // Blocks of one type merge into one run; their values are the parts' in order.
        let t = Tensor::concat_rows(vec![q8(1, 32, 2), q8(2, 32, 4)]).unwrap();
        let runs = t.block_rows().unwrap();
        assert_eq!((runs.len(), runs[0].rows), (1, 3));
        let w = t.widened().unwrap();
        assert_eq!(w.shape(), &[3, 32]);
        assert_eq!((w.data()[0], w.data()[32], w.data()[95]), (1.0, 2.0, 2.0));
        // Blocks beside floats: everything widened.
        let f = Tensor::new(vec![1, 32], vec![7.0; 32]).unwrap();
        let m = Tensor::concat_rows(vec![q8(1, 32, 2), f]).unwrap();
        assert!(m.block_rows().is_none());
        assert_eq!((m.data()[0], m.data()[32]), (1.0, 7.0));
        let e = Tensor::concat_rows(vec![q8(1, 32, 2), q8(1, 64, 2)]).unwrap_err();
        assert!(e.to_string().contains("other axes differ"), "{e}");
    }
}
