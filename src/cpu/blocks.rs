//! Products over weights kept in ggml's blocks (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K): a GGUF file's
//! bytes as they are, or weights quantized at load by `--cpu-weights q8_0|q4_0|q4_k`.
//!
//! Decoding (up to [`DECODE_ROWS`] rows of X) streams each weight row's bytes once and widens
//! them in registers; the activations stay f32. Every value is widened exactly as
//! `crate::quant`'s dequantizers widen it (the same f32 operations in the same order), so the
//! product is the f32 product over the dequantized weights — what the GPU's block kernels
//! compute — up to summation order. Prefill widens blocks of rows to f32 for `gemm`.
//!
//! Two kinds of kernel, as llama.cpp has on the CPU:
//! - [`Activations::F32`]: f32 activations, each weight widened to f32 (the GPU kernels'
//!   twin; the product over the dequantized weights up to summation order);
//! - [`Activations::Int8`] (the default): each 32 activations quantized to int8 with their own
//!   f32 scale (amax/127, per product), then integer dot products (AVX-512 VNNI `vpdpbusd`: 32
//!   multiply-adds per instruction), one f32 multiply-add per block. llama.cpp does the same
//!   (its `vec_dot_type` Q8_0/Q8_K); the error is at most half an activation step times the
//!   weights' absolute sum per block (the tests hold it to that bound), far below the weights'
//!   own quantization error. 4-bit decoding runs ~3× faster this way: widening every weight to
//!   f32 costs ~10 vector instructions per 32 values, which bounds it below memory speed.
//!
//! The AVX-512 exact kernels widen 16 values per instruction. 4- and 5-bit values take no integer
//! arithmetic: a block's 16 (Q4_0, Q4_K) or 32 (Q5_0) possible values are computed once per block
//! or sub-block into a register table, and the nibbles index it (`vpermps`, which reads an
//! index's low 4 bits, so no masking either). Other CPUs (and the types without a kernel here)
//! widen a row through the dequantizer into a buffer and take the f32 matrix-vector kernel.

use super::linear::{dots_f32, linear_widened, matvec_chunks, DECODE_ROWS};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
pub use crate::ops::Activations;
use crate::quant;
use crate::tensor::{BlockRows, INTERLEAVE_ROWS};

/// The block types the CPU keeps in their blocks (others are widened to f32 at load).
pub fn keeps(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q4_K | GgmlType::Q6_K
    )
}

/// Y (m×n) = X (m×k) · Wᵀ + b with W's n rows of k values in `parts` (consecutive runs of rows,
/// each of one block type).
pub fn linear_blocks(
    x: &[f32],
    parts: &[BlockRows],
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    activations: Activations,
) -> Result<Vec<f32>> {
    let weight = BlockWeight::new(parts, n, k)?;
    assert!(x.len() >= m * k && b.is_none_or(|b| b.len() >= n));
    if m > DECODE_ROWS {
        return Ok(linear_widened(x, b, m, n, k, |j0, wide| {
            let mut at = 0;
            for run in weight.runs(j0, wide.len() / k) {
                let dst = &mut wide[at..at + run.rows * k];
                widen_row(run.ty, &run.row_major(k), dst);
                at += run.rows * k;
            }
        }));
    }
    let kernel = Kernel::detect();
    #[cfg(target_arch = "x86_64")]
    let int8: Option<Vec<vnni::Int8Row>> = (activations == Activations::Int8 && vnni::available())
        .then(|| {
            // SAFETY: `available` found the features.
            (0..m)
                .map(|i| unsafe { vnni::Int8Row::new(&x[i * k..(i + 1) * k]) })
                .collect()
        });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = activations;
    let x_rows: Vec<&[f32]> = (0..m).map(|i| &x[i * k..(i + 1) * k]).collect();
    Ok(matvec_chunks(m, b, n, |j0, ys| {
        let mut done = 0;
        for run in weight.runs(j0, ys.len() / m) {
            let out = &mut ys[done * m..(done + run.rows) * m];
            done += run.rows;
            #[cfg(target_arch = "x86_64")]
            if let Some(xq) = &int8 {
                // SAFETY: `available` found the features; each row holds k values.
                if unsafe { vnni::dots(&run, xq, out) } {
                    continue;
                }
            }
            let bytes = run.row_major(k);
            kernel.dots(run.ty, &x_rows, &bytes, out);
        }
    }))
}

/// A block weight in the layout this CPU's products read: Q4_0/Q8_0 runs interleaved
/// ([`BlockRows::interleave`]) where [`reads_interleaved`], when they start on a whole group.
pub fn for_products(
    t: crate::tensor::Tensor,
    activations: Activations,
) -> Result<crate::tensor::Tensor> {
    let Some(parts) = t.block_rows().filter(|_| reads_interleaved(activations)) else {
        return Ok(t);
    };
    let cols = t.cols();
    let mut start = 0;
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        out.push(match start % INTERLEAVE_ROWS {
            0 => p.clone().interleave(cols),
            _ => p.clone(),
        });
        start += p.rows;
    }
    crate::tensor::Tensor::blocks(t.shape().to_vec(), out)
}

/// True when products on this CPU read Q4_0 and Q8_0 weights interleaved
/// ([`BlockRows::interleave`]): int8 activations with the integer kernels present.
pub fn reads_interleaved(activations: Activations) -> bool {
    #[cfg(target_arch = "x86_64")]
    return activations == Activations::Int8 && vnni::available();
    #[allow(unreachable_code)]
    false
}

/// Row `id` of a block table, widened (the embedding gather).
pub fn table_row(parts: &[BlockRows], rows: usize, cols: usize, id: usize) -> Result<Vec<f32>> {
    let (ty, row) = BlockWeight::new(parts, rows, cols)?.row(id);
    let mut out = vec![0.0; cols];
    widen_row(ty, &row, &mut out);
    Ok(out)
}

fn row_bytes(ty: GgmlType, cols: usize) -> usize {
    ty.size_bytes(cols as u64).unwrap_or(0) as usize
}

/// A block weight's rows found by index: the run each row is in, and its bytes.
struct BlockWeight<'a> {
    parts: &'a [BlockRows],
    /// The first row of each run, and the bytes of one of its rows.
    starts: Vec<(usize, usize)>,
    cols: usize,
}

impl<'a> BlockWeight<'a> {
    fn new(parts: &'a [BlockRows], n: usize, k: usize) -> Result<Self> {
        let mut starts = Vec::with_capacity(parts.len());
        let mut rows = 0;
        for p in parts {
            let bytes = row_bytes(p.ty, k);
            starts.push((rows, bytes));
            rows += p.rows;
            if p.bytes.len() != p.rows * bytes || bytes == 0 {
                return Err(Error::input(format!(
                    "{} rows of {k} values in {} do not take {} bytes",
                    p.rows,
                    p.ty,
                    p.bytes.len()
                )));
            }
        }
        if rows != n {
            return Err(Error::input(format!(
                "a block weight of {rows} rows used as one of {n}"
            )));
        }
        Ok(BlockWeight {
            parts,
            starts,
            cols: k,
        })
    }

    /// Row j's type and bytes (copied out of its group when interleaved).
    fn row(&self, j: usize) -> (GgmlType, std::borrow::Cow<'a, [u8]>) {
        let p = self.starts.partition_point(|&(s, _)| s <= j) - 1;
        let ((start, row_bytes), part) = (self.starts[p], &self.parts[p]);
        let r = j - start;
        if !part.interleaved || r >= part.rows - part.rows % INTERLEAVE_ROWS {
            return (
                part.ty,
                part.bytes[r * row_bytes..(r + 1) * row_bytes].into(),
            );
        }
        let first = r - r % INTERLEAVE_ROWS;
        let group = BlockRows {
            ty: part.ty,
            rows: INTERLEAVE_ROWS,
            bytes: part.bytes[first * row_bytes..(first + INTERLEAVE_ROWS) * row_bytes].to_vec(),
            interleaved: true,
        };
        let at = (r - first) * row_bytes;
        let row = group.row_major(self.cols)[at..at + row_bytes].to_vec();
        (part.ty, row.into())
    }

    /// Rows `j0..j0 + rows` as runs of one part each. An interleaved part must be entered at a
    /// group's first row (`matvec_chunks` hands out whole groups; parts start on one).
    fn runs(&self, j0: usize, rows: usize) -> impl Iterator<Item = Run<'a>> + '_ {
        let first = self.starts.partition_point(|&(s, _)| s <= j0) - 1;
        let end = j0 + rows;
        (first..self.parts.len())
            .map(move |p| (p, self.starts[p]))
            .take_while(move |&(_, (start, _))| start < end)
            .map(move |(p, (start, row_bytes))| {
                let part = &self.parts[p];
                let (lo, hi) = (j0.max(start), end.min(start + part.rows));
                let bytes = &part.bytes[(lo - start) * row_bytes..(hi - start) * row_bytes];
                // Rows of this run inside the part's whole groups, when interleaved.
                let whole = part.rows - part.rows % INTERLEAVE_ROWS;
                let grouped = match part.interleaved {
                    true => whole.saturating_sub(lo - start).min(hi - lo),
                    false => 0,
                };
                debug_assert!(grouped == 0 || (lo - start) % INTERLEAVE_ROWS == 0);
                Run {
                    ty: part.ty,
                    bytes,
                    rows: hi - lo,
                    grouped,
                }
            })
    }
}

/// Consecutive rows of one block type: their bytes, and how many lead in interleaved groups.
pub(crate) struct Run<'a> {
    ty: GgmlType,
    bytes: &'a [u8],
    rows: usize,
    /// Leading rows in whole interleaved groups (a multiple of 8).
    grouped: usize,
}

impl Run<'_> {
    /// The bytes row after row.
    fn row_major(&self, cols: usize) -> std::borrow::Cow<'_, [u8]> {
        if self.grouped == 0 {
            return self.bytes.into();
        }
        let row_bytes = self.bytes.len() / self.rows;
        let grouped = &self.bytes[..row_bytes * self.grouped];
        let mut plain = crate::tensor::permute_groups(self.ty, grouped, cols, false);
        plain.extend_from_slice(&self.bytes[plain.len()..]);
        plain.into()
    }
}

/// One row's values through the dequantizer (the reference widening).
fn widen_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    let widened = quant::dequantize(ty, row, out.len()).expect("row sizes checked");
    out.copy_from_slice(&widened);
}

/// The dot-product kernels this CPU runs, chosen once per product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Widen the row through the dequantizer, then the f32 matrix-vector kernel.
    Widened,
    /// AVX-512F (+F16C) kernels for Q8_0, Q4_0, Q5_0, Q4_K and Q6_K.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU has.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("f16c") {
            return Kernel::Avx512;
        }
        Kernel::Widened
    }

    /// out[r·m + i] = x_i · W row r for the `rows` of `ty` blocks in `bytes` and the m rows
    /// of x.
    fn dots(self, ty: GgmlType, x: &[&[f32]], bytes: &[u8], out: &mut [f32]) {
        let m = x.len();
        let row_bytes = bytes.len() / (out.len() / m);
        for (row, out) in bytes.chunks_exact(row_bytes).zip(out.chunks_mut(m)) {
            for (o, x) in out.iter_mut().zip(x) {
                *o = self.dot(ty, x, row);
            }
        }
    }

    /// x · (the widened row), for a row of `ty` blocks holding x.len() values.
    pub fn dot(self, ty: GgmlType, x: &[f32], row: &[u8]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if self == Kernel::Avx512 && keeps(ty) {
            // SAFETY: `detect` found AVX-512F and F16C; each kernel reads whole blocks of `row`
            // and the x values they cover (asserted inside).
            return unsafe { avx512::dot(ty, x, row) };
        }
        thread_local! {
            static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        WIDE.with_borrow_mut(|wide| {
            wide.resize(x.len(), 0.0);
            widen_row(ty, row, wide);
            let mut out = [0.0];
            dots_f32(x, x.len(), wide, &mut out);
            out[0]
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use crate::gguf::GgmlType;
    use std::arch::x86_64::*;

    /// x · row for a row of `ty` blocks (one of [`super::keeps`]).
    #[target_feature(enable = "avx512f,f16c")]
    pub(super) unsafe fn dot(ty: GgmlType, x: &[f32], row: &[u8]) -> f32 {
        match ty {
            GgmlType::Q8_0 => q8_0(x, row),
            GgmlType::Q4_0 => q4_0(x, row),
            GgmlType::Q5_0 => q5_0(x, row),
            GgmlType::Q4_K => q4_k(x, row),
            GgmlType::Q6_K => q6_k(x, row),
            _ => unreachable!("no AVX-512 kernel for {ty}"),
        }
    }

    /// The f16 at `p` (little-endian) as f32, exactly.
    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = u16::from_le_bytes([*p, *p.add(1)]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// 16 bytes at `p`, zero-extended to 16 lanes of 32 bits.
    #[inline(always)]
    unsafe fn bytes16(p: *const u8) -> __m512i {
        _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i))
    }

    #[inline(always)]
    unsafe fn x16(x: &[f32], at: usize) -> __m512 {
        _mm512_loadu_ps(x.as_ptr().add(at))
    }

    /// The 16 values t − `offset` for t in 0..16, as f32.
    #[inline(always)]
    unsafe fn levels(offset: f32) -> __m512 {
        let t = _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        );
        _mm512_sub_ps(t, _mm512_set1_ps(offset))
    }

    /// Checks a row of `block_bytes`-byte blocks of `block` values fits x; the block count.
    fn blocks(x: &[f32], row: &[u8], block_bytes: usize, block: usize) -> usize {
        let nb = row.len() / block_bytes;
        assert!(row.len() == nb * block_bytes && x.len() >= nb * block);
        nb
    }

    /// Q8_0 (34 bytes: d, 32 × i8): y = q · d.
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn q8_0(x: &[f32], row: &[u8]) -> f32 {
        let nb = blocks(x, row, 34, 32);
        let mut acc = [_mm512_setzero_ps(); 2];
        for b in 0..nb {
            let p = row.as_ptr().add(34 * b);
            let d = _mm512_set1_ps(f16_at(p));
            for (h, acc) in acc.iter_mut().enumerate() {
                let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2 + 16 * h) as *const __m128i));
                let w = _mm512_mul_ps(_mm512_cvtepi32_ps(q), d);
                *acc = _mm512_fmadd_ps(x16(x, 32 * b + 16 * h), w, *acc);
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }

    /// Q4_0 (18 bytes: d, 16 bytes of nibbles; value j low nibble of byte j, j + 16 the high):
    /// y = (q − 8) · d, looked up in the block's table of the 16 levels times d.
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn q4_0(x: &[f32], row: &[u8]) -> f32 {
        let nb = blocks(x, row, 18, 32);
        let levels = levels(8.0);
        let mut acc = [_mm512_setzero_ps(); 2];
        for b in 0..nb {
            let p = row.as_ptr().add(18 * b);
            let table = _mm512_mul_ps(levels, _mm512_set1_ps(f16_at(p)));
            let q = bytes16(p.add(2));
            let lo = _mm512_permutexvar_ps(q, table);
            let hi = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
            acc[0] = _mm512_fmadd_ps(x16(x, 32 * b), lo, acc[0]);
            acc[1] = _mm512_fmadd_ps(x16(x, 32 * b + 16), hi, acc[1]);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }

    /// Q5_0 (22 bytes: d, qh: u32 fifth bits, 16 bytes of nibbles as Q4_0): y = (q − 16) · d. Two
    /// tables, (t − 16)·d and t·d; a value's fifth bit (a mask bit) picks the second.
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn q5_0(x: &[f32], row: &[u8]) -> f32 {
        let nb = blocks(x, row, 22, 32);
        let (low, high) = (levels(16.0), levels(0.0));
        let mut acc = [_mm512_setzero_ps(); 2];
        for b in 0..nb {
            let p = row.as_ptr().add(22 * b);
            let d = _mm512_set1_ps(f16_at(p));
            let (t_low, t_high) = (_mm512_mul_ps(low, d), _mm512_mul_ps(high, d));
            let qh = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
            let q = bytes16(p.add(6));
            let q_hi = _mm512_srli_epi32(q, 4);
            let lo = _mm512_mask_permutexvar_ps(
                _mm512_permutexvar_ps(q, t_low),
                qh as __mmask16,
                q,
                t_high,
            );
            let hi = _mm512_mask_permutexvar_ps(
                _mm512_permutexvar_ps(q_hi, t_low),
                (qh >> 16) as __mmask16,
                q_hi,
                t_high,
            );
            acc[0] = _mm512_fmadd_ps(x16(x, 32 * b), lo, acc[0]);
            acc[1] = _mm512_fmadd_ps(x16(x, 32 * b + 16), hi, acc[1]);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }

    /// Q4_K's 6-bit scale and min of sub-block `j` (`get_scale_min_k4`).
    #[inline(always)]
    pub(super) fn scale_min(j: usize, q: &[u8]) -> (f32, f32) {
        let (sc, m) = if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            (
                (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
                (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
            )
        };
        (sc as f32, m as f32)
    }

    /// Q4_K (144 bytes / 256 values: d, dmin, 12 bytes of scales and mins, 128 of nibbles; each
    /// 32 bytes hold 64 values, low nibbles first): y = (d·sc)·q − dmin·m, one table per
    /// sub-block of 32.
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn q4_k(x: &[f32], row: &[u8]) -> f32 {
        let nb = blocks(x, row, 144, 256);
        let levels = levels(0.0);
        let mut acc = [_mm512_setzero_ps(); 4];
        for b in 0..nb {
            let p = row.as_ptr().add(144 * b);
            let (d, dmin) = (f16_at(p), f16_at(p.add(2)));
            let scales = std::slice::from_raw_parts(p.add(4), 12);
            for g in 0..4 {
                let table = |j: usize| {
                    let (sc, m) = scale_min(j, scales);
                    _mm512_sub_ps(
                        _mm512_mul_ps(levels, _mm512_set1_ps(d * sc)),
                        _mm512_set1_ps(dmin * m),
                    )
                };
                let (t_lo, t_hi) = (table(2 * g), table(2 * g + 1));
                let q = p.add(16 + 32 * g);
                let at = 256 * b + 64 * g;
                for h in 0..2 {
                    let v = bytes16(q.add(16 * h));
                    let lo = _mm512_permutexvar_ps(v, t_lo);
                    let hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t_hi);
                    acc[h] = _mm512_fmadd_ps(x16(x, at + 16 * h), lo, acc[h]);
                    acc[2 + h] = _mm512_fmadd_ps(x16(x, at + 32 + 16 * h), hi, acc[2 + h]);
                }
            }
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(sum)
    }

    /// Q6_K (210 bytes / 256 values: ql[128] low 4 bits, qh[64] high 2 bits, 16 i8 scales, d
    /// last): y = (d·sc)·(q − 32), 16 values per scale.
    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn q6_k(x: &[f32], row: &[u8]) -> f32 {
        let nb = blocks(x, row, 210, 256);
        let (m4, m30, thirty_two) = (
            _mm512_set1_epi32(0xF),
            _mm512_set1_epi32(0x30),
            _mm512_set1_epi32(32),
        );
        let mut acc = [_mm512_setzero_ps(); 4];
        for b in 0..nb {
            let p = row.as_ptr().add(210 * b);
            let d = f16_at(p.add(208));
            for half in 0..2 {
                let ql = p.add(64 * half);
                let qh = p.add(128 + 32 * half);
                let sc = p.add(192 + 8 * half) as *const i8;
                for c in 0..2 {
                    let a = bytes16(ql.add(16 * c));
                    let a2 = bytes16(ql.add(32 + 16 * c));
                    let h = bytes16(qh.add(16 * c));
                    // The four 6-bit values of positions l, l + 32, l + 64, l + 96.
                    let q = [
                        _mm512_or_si512(
                            _mm512_and_si512(a, m4),
                            _mm512_and_si512(_mm512_slli_epi32(h, 4), m30),
                        ),
                        _mm512_or_si512(
                            _mm512_and_si512(a2, m4),
                            _mm512_and_si512(_mm512_slli_epi32(h, 2), m30),
                        ),
                        _mm512_or_si512(_mm512_srli_epi32(a, 4), _mm512_and_si512(h, m30)),
                        _mm512_or_si512(
                            _mm512_srli_epi32(a2, 4),
                            _mm512_and_si512(_mm512_srli_epi32(h, 2), m30),
                        ),
                    ];
                    for (s, q) in q.into_iter().enumerate() {
                        let scale = _mm512_set1_ps(d * *sc.add(c + 2 * s) as f32);
                        let w = _mm512_mul_ps(
                            scale,
                            _mm512_cvtepi32_ps(_mm512_sub_epi32(q, thirty_two)),
                        );
                        let at = 256 * b + 128 * half + 32 * s + 16 * c;
                        acc[s] = _mm512_fmadd_ps(x16(x, at), w, acc[s]);
                    }
                }
            }
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(sum)
    }
}

/// Integer dot products against int8 activations (AVX-512 VNNI on 256-bit registers).
#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::Run;
    use crate::gguf::GgmlType;
    use crate::tensor::INTERLEAVE_ROWS;
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("f16c")
            && std::is_x86_feature_detected!("fma")
    }

    /// One row of activations quantized per 32 values: x ≈ d·q, d = amax/127 (f32), q rounded
    /// to nearest (ties to even), so |x − d·q| ≤ d/2.
    pub(crate) struct Int8Row {
        pub q: Vec<i8>,
        pub d: Vec<f32>,
        /// d·Σq per block (Q4_K's mins multiply it).
        pub dsum: Vec<f32>,
        /// Per block, Σq over each 4 consecutive values (the lanes `vpdpbusd` sums into), times
        /// −8 and −128: the starting sums that take Q4_0's and Q8_0's offsets out exactly.
        pub minus8: Vec<[i32; 8]>,
        pub minus128: Vec<[i32; 8]>,
        /// Σq per block.
        pub sum: Vec<i32>,
    }

    impl Int8Row {
        /// x (a whole number of blocks of 32) quantized.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(crate) fn new(x: &[f32]) -> Int8Row {
            let nb = x.len() / 32;
            let mut row = Int8Row {
                q: vec![0; nb * 32],
                d: Vec::with_capacity(nb),
                dsum: Vec::with_capacity(nb),
                minus8: Vec::with_capacity(nb),
                minus128: Vec::with_capacity(nb),
                sum: Vec::with_capacity(nb),
            };
            let ones = _mm256_set1_epi8(1);
            for (b, xs) in x.chunks_exact(32).enumerate() {
                // SAFETY: xs holds 32 values, q 32 bytes from 32·b.
                unsafe {
                    let v = [
                        _mm512_loadu_ps(xs.as_ptr()),
                        _mm512_loadu_ps(xs.as_ptr().add(16)),
                    ];
                    let amax = _mm512_reduce_max_ps(_mm512_max_ps(
                        _mm512_abs_ps(v[0]),
                        _mm512_abs_ps(v[1]),
                    ));
                    let d = amax / 127.0;
                    let id = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
                    for (h, v) in v.into_iter().enumerate() {
                        // Rounds to nearest, ties to even (the default rounding mode).
                        let q = _mm512_cvtps_epi32(_mm512_mul_ps(v, id));
                        let dst = row.q.as_mut_ptr().add(32 * b + 16 * h) as *mut __m128i;
                        _mm_storeu_si128(dst, _mm512_cvtepi32_epi8(q));
                    }
                    let q = _mm256_loadu_si256(row.q.as_ptr().add(32 * b) as *const __m256i);
                    let mut lanes = [0i32; 8];
                    let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);
                    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sums);
                    row.d.push(d);
                    let sum = lanes.iter().sum::<i32>();
                    row.sum.push(sum);
                    row.dsum.push(d * sum as f32);
                    row.minus8.push(lanes.map(|v| -8 * v));
                    row.minus128.push(lanes.map(|v| -128 * v));
                }
            }
            row
        }
    }

    /// out[r·m + i] = x_i · W row r for the rows of `run`; false (nothing written) for a type
    /// without an integer kernel.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn dots(run: &Run, x: &[Int8Row], out: &mut [f32]) -> bool {
        if !super::keeps(run.ty) {
            return false;
        }
        let m = x.len();
        let row_bytes = run.bytes.len() / run.rows;
        let (grouped, rest) = run.bytes.split_at(run.grouped * row_bytes);
        let (out_grouped, out_rest) = out.split_at_mut(run.grouped * m);
        // Interleaved groups: eight rows at a time.
        let nb = row_bytes / run.ty.block().map_or(1, |b| b.1 as usize);
        for (group, out) in grouped
            .chunks_exact(INTERLEAVE_ROWS * row_bytes)
            .zip(out_grouped.chunks_mut(INTERLEAVE_ROWS * m))
        {
            for (i, xi) in x.iter().enumerate() {
                let sums = match run.ty {
                    GgmlType::Q4_0 => q4_0_x8(xi, group, nb),
                    GgmlType::Q4_K => q4_k_x8(xi, group, nb),
                    _ => q8_0_x8(xi, group, nb),
                };
                let mut lanes = [0f32; INTERLEAVE_ROWS];
                _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
                for (r, v) in lanes.into_iter().enumerate() {
                    out[r * m + i] = v;
                }
            }
        }
        // Rows after row: one row kernel per type, so each inlines into its loop.
        #[inline(always)]
        fn each(
            x: &[Int8Row],
            bytes: &[u8],
            row_bytes: usize,
            out: &mut [f32],
            dot: impl Fn(&Int8Row, &[u8]) -> f32,
        ) {
            for (row, out) in bytes.chunks_exact(row_bytes).zip(out.chunks_mut(x.len())) {
                for (o, x) in out.iter_mut().zip(x) {
                    *o = dot(x, row);
                }
            }
        }
        match run.ty {
            GgmlType::Q8_0 => each(x, rest, row_bytes, out_rest, |x, r| q8_0(x, r)),
            GgmlType::Q4_0 => each(x, rest, row_bytes, out_rest, |x, r| q4_0(x, r)),
            GgmlType::Q5_0 => each(x, rest, row_bytes, out_rest, |x, r| q5_0(x, r)),
            GgmlType::Q4_K => each(x, rest, row_bytes, out_rest, |x, r| q4_k(x, r)),
            _ => each(x, rest, row_bytes, out_rest, |x, r| q6_k(x, r)),
        }
        true
    }

    /// The 4 activations from `at` as one 32-bit lane in all 8.
    #[inline(always)]
    unsafe fn quad(x: &Int8Row, at: usize) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(x.q.as_ptr().add(at) as *const i32))
    }

    /// One interleaved group of 8 Q4_0 rows (`nb` blocks each) against x: the 8 dot products.
    /// Per block: the 8 rows' scales in one load; each 32-byte load holds 4 nibble pairs of
    /// every row, so `vpdpbusd` adds 4 products per row against 4 broadcast activations.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q4_0_x8(x: &Int8Row, group: &[u8], nb: usize) -> __m256 {
        assert!(group.len() >= nb * 144 && x.d.len() >= nb);
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let column = group.as_ptr().add(144 * b);
            let scale = _mm256_mul_ps(
                _mm256_cvtph_ps(_mm_loadu_si128(column as *const __m128i)),
                _mm256_set1_ps(x.d[b]),
            );
            // Σ (q − 8)·x = Σ q·x − 8·Σx, the second term the same for every row.
            let mut dot = [_mm256_set1_epi32(-8 * x.sum[b]), _mm256_setzero_si256()];
            for c in 0..4 {
                let v = _mm256_loadu_si256(column.add(16 + 32 * c) as *const __m256i);
                let lo = _mm256_and_si256(v, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                dot[0] = _mm256_dpbusd_epi32(dot[0], lo, quad(x, 32 * b + 4 * c));
                dot[1] = _mm256_dpbusd_epi32(dot[1], hi, quad(x, 32 * b + 16 + 4 * c));
            }
            let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(dot[0], dot[1]));
            acc[b % 2] = _mm256_fmadd_ps(dot, scale, acc[b % 2]);
        }
        _mm256_add_ps(acc[0], acc[1])
    }

    /// One interleaved group of 8 Q4_K rows against x. Per block the 8 rows' 6-bit scales and
    /// mins are unpacked 8 rows at a time (each of the 12 scale bytes of the 8 rows is one
    /// 64-bit word); per sub-block of 32: Σ q·x̂ for the 8 rows in one register, times
    /// d·sc·d_x, less dmin·m·d_x·Σq.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q4_k_x8(x: &Int8Row, group: &[u8], nb: usize) -> __m256 {
        assert!(group.len() >= nb * 1152 && x.d.len() >= 8 * nb);
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut mins = _mm256_setzero_ps();
        for b in 0..nb {
            let column = group.as_ptr().add(1152 * b);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(column as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(column.add(16) as *const __m128i));
            let q: [u64; 12] = std::array::from_fn(|i| {
                std::ptr::read_unaligned(column.add(32 + 8 * i) as *const u64)
            });
            // `get_scale_min_k4` on 8 rows at once (bytewise on 64-bit words).
            const LOW6: u64 = 0x3F3F_3F3F_3F3F_3F3F;
            const LOW4: u64 = 0x0F0F_0F0F_0F0F_0F0F;
            const TOP2: u64 = 0x0303_0303_0303_0303;
            let scale_min = |j: usize| match j {
                0..4 => (q[j] & LOW6, q[j + 4] & LOW6),
                _ => (
                    (q[j + 4] & LOW4) | (((q[j - 4] >> 6) & TOP2) << 4),
                    ((q[j + 4] >> 4) & LOW4) | (((q[j] >> 6) & TOP2) << 4),
                ),
            };
            let widen =
                |v: u64| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64)));
            for g in 0..4 {
                let mut dot = [_mm256_setzero_si256(); 2];
                for c in 0..8 {
                    let v =
                        _mm256_loadu_si256(column.add(128 + 32 * (8 * g + c)) as *const __m256i);
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    let xb = 8 * b + 2 * g;
                    dot[0] = _mm256_dpbusd_epi32(dot[0], lo, quad(x, 32 * xb + 4 * c));
                    dot[1] = _mm256_dpbusd_epi32(dot[1], hi, quad(x, 32 * (xb + 1) + 4 * c));
                }
                for (h, dot) in dot.into_iter().enumerate() {
                    let xb = 8 * b + 2 * g + h;
                    let (sc, m) = scale_min(2 * g + h);
                    let scale = _mm256_mul_ps(_mm256_mul_ps(d, widen(sc)), _mm256_set1_ps(x.d[xb]));
                    acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[h]);
                    let min = _mm256_mul_ps(dmin, widen(m));
                    mins = _mm256_fmadd_ps(min, _mm256_set1_ps(x.dsum[xb]), mins);
                }
            }
        }
        _mm256_sub_ps(_mm256_add_ps(acc[0], acc[1]), mins)
    }

    /// One interleaved group of 8 Q8_0 rows against x (as [`q4_0_x8`], the values made
    /// unsigned by +128 and 128·Σx taken out).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q8_0_x8(x: &Int8Row, group: &[u8], nb: usize) -> __m256 {
        assert!(group.len() >= nb * 272 && x.d.len() >= nb);
        let flip = _mm256_set1_epi8(-128);
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let column = group.as_ptr().add(272 * b);
            let scale = _mm256_mul_ps(
                _mm256_cvtph_ps(_mm_loadu_si128(column as *const __m128i)),
                _mm256_set1_ps(x.d[b]),
            );
            let mut dot = [_mm256_set1_epi32(-128 * x.sum[b]), _mm256_setzero_si256()];
            for c in 0..8 {
                let v = _mm256_loadu_si256(column.add(16 + 32 * c) as *const __m256i);
                let v = _mm256_xor_si256(v, flip);
                dot[c % 2] = _mm256_dpbusd_epi32(dot[c % 2], v, quad(x, 32 * b + 4 * c));
            }
            let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(dot[0], dot[1]));
            acc[b % 2] = _mm256_fmadd_ps(dot, scale, acc[b % 2]);
        }
        _mm256_add_ps(acc[0], acc[1])
    }

    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = u16::from_le_bytes([*p, *p.add(1)]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    #[inline(always)]
    unsafe fn q32(x: &Int8Row, b: usize) -> __m256i {
        _mm256_loadu_si256(x.q.as_ptr().add(32 * b) as *const __m256i)
    }

    #[inline(always)]
    unsafe fn lanes(v: &[i32; 8]) -> __m256i {
        _mm256_loadu_si256(v.as_ptr() as *const __m256i)
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Q8_0: Σ w·q exactly as Σ (w + 128)·q − 128·Σq (`vpdpbusd` multiplies unsigned by
    /// signed bytes), then d_w·d_x per block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q8_0(x: &Int8Row, row: &[u8]) -> f32 {
        let nb = row.len() / 34;
        assert!(row.len() == 34 * nb && x.d.len() >= nb);
        let flip = _mm256_set1_epi8(-128);
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let p = row.as_ptr().add(34 * b);
            let w = _mm256_xor_si256(_mm256_loadu_si256(p.add(2) as *const __m256i), flip);
            let dot = _mm256_dpbusd_epi32(lanes(&x.minus128[b]), w, q32(x, b));
            let scale = _mm256_set1_ps(f16_at(p) * x.d[b]);
            acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[b % 2]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }

    /// Q4_0: the nibbles (0..16) against the activations, less 8·Σq, then d_w·d_x per block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q4_0(x: &Int8Row, row: &[u8]) -> f32 {
        let nb = row.len() / 18;
        assert!(row.len() == 18 * nb && x.d.len() >= nb);
        let low = _mm_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let p = row.as_ptr().add(18 * b);
            let raw = _mm_loadu_si128(p.add(2) as *const __m128i);
            let nibbles = _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16(raw, 4), low),
                _mm_and_si128(raw, low),
            );
            let dot = _mm256_dpbusd_epi32(lanes(&x.minus8[b]), nibbles, q32(x, b));
            let scale = _mm256_set1_ps(f16_at(p) * x.d[b]);
            acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[b % 2]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }

    /// Q5_0: the 5-bit values (a nibble, and the fifth bit from `qh` as 16) against the
    /// activations, less 16·Σq, then d_w·d_x per block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q5_0(x: &Int8Row, row: &[u8]) -> f32 {
        let nb = row.len() / 22;
        assert!(row.len() == 22 * nb && x.d.len() >= nb);
        let (low, sixteen) = (_mm_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let p = row.as_ptr().add(22 * b);
            let qh = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
            let raw = _mm_loadu_si128(p.add(6) as *const __m128i);
            let nibbles = _mm256_set_m128i(
                _mm_and_si128(_mm_srli_epi16(raw, 4), low),
                _mm_and_si128(raw, low),
            );
            // Byte j of the mask expansion is all ones where bit j of qh is set.
            let fifth = _mm256_and_si256(_mm256_movm_epi8(qh), sixteen);
            let q = _mm256_or_si256(nibbles, fifth);
            let minus16 = _mm256_slli_epi32(lanes(&x.minus8[b]), 1);
            let dot = _mm256_dpbusd_epi32(minus16, q, q32(x, b));
            let scale = _mm256_set1_ps(f16_at(p) * x.d[b]);
            acc[b % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[b % 2]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }

    /// Q6_K: per 32 values the 6-bit values (4 low bits from `ql`, 2 high from `qh`) against
    /// the activations, less 32·Σq per lane, then (d·sc)·d_x — the scale changing at the
    /// middle lane (one per 16 values).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q6_k(x: &Int8Row, row: &[u8]) -> f32 {
        let nb = row.len() / 210;
        assert!(row.len() == 210 * nb && x.d.len() >= 8 * nb);
        let (m4, m3) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let p = row.as_ptr().add(210 * b);
            let d = f16_at(p.add(208));
            let sc = p.add(192) as *const i8;
            for half in 0..2 {
                let load = |at: usize| _mm256_loadu_si256(p.add(at) as *const __m256i);
                let (l0, l1, hb) = (load(64 * half), load(64 * half + 32), load(128 + 32 * half));
                let high = |shift: i32| {
                    let h = match shift {
                        0 => hb,
                        2 => _mm256_srli_epi16(hb, 2),
                        4 => _mm256_srli_epi16(hb, 4),
                        _ => _mm256_srli_epi16(hb, 6),
                    };
                    _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)
                };
                // Values 32s.. of this half: low nibbles of l0, l1, then their high nibbles.
                let q = [
                    _mm256_or_si256(_mm256_and_si256(l0, m4), high(0)),
                    _mm256_or_si256(_mm256_and_si256(l1, m4), high(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), high(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), high(6)),
                ];
                for (s, q) in q.into_iter().enumerate() {
                    let xb = 8 * b + 4 * half + s;
                    let minus32 = _mm256_slli_epi32(lanes(&x.minus8[xb]), 2);
                    let dot = _mm256_dpbusd_epi32(minus32, q, q32(x, xb));
                    let k = d * x.d[xb];
                    let (sa, sb) = (*sc.add(8 * half + 2 * s), *sc.add(8 * half + 2 * s + 1));
                    let scale =
                        _mm256_set_m128(_mm_set1_ps(k * sb as f32), _mm_set1_ps(k * sa as f32));
                    acc[s % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[s % 2]);
                }
            }
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }

    /// Q4_K: per sub-block of 32, (d·sc)·Σ q·x̂ − (dmin·m)·Σx̂; the activation blocks line up
    /// with the sub-blocks.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn q4_k(x: &Int8Row, row: &[u8]) -> f32 {
        let nb = row.len() / 144;
        assert!(row.len() == 144 * nb && x.d.len() >= 8 * nb);
        let low = _mm256_set1_epi8(0x0F);
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut mins = 0.0f32;
        for b in 0..nb {
            let p = row.as_ptr().add(144 * b);
            let (d, dmin) = (f16_at(p), f16_at(p.add(2)));
            let scales = std::slice::from_raw_parts(p.add(4), 12);
            for g in 0..4 {
                let v = _mm256_loadu_si256(p.add(16 + 32 * g) as *const __m256i);
                let halves = [
                    _mm256_and_si256(v, low),
                    _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
                ];
                for (h, q) in halves.into_iter().enumerate() {
                    let (sc, m) = super::avx512::scale_min(2 * g + h, scales);
                    let xb = 8 * b + 2 * g + h;
                    let dot = _mm256_dpbusd_epi32(zero, q, q32(x, xb));
                    let scale = _mm256_set1_ps(d * sc * x.d[xb]);
                    acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[h]);
                    mins += dmin * m * x.dsum[xb];
                }
            }
        }
        hsum(_mm256_add_ps(acc[0], acc[1])) - mins
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::linear::linear_reference;
    use crate::rand::SeededRng;

    use crate::quant::random_blocks;

    const TYPES: [GgmlType; 5] = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];

    /// The activations as the int8 kernels see them: d·round(x/d) per 32, d = amax/127.
    fn int8_view(x: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len());
        for b in x.chunks(32) {
            let d = b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            out.extend(b.iter().map(|v| d * (v * id).round_ties_even()));
        }
        out
    }

    /// True when this CPU runs `ty` through an integer kernel under `Activations::Int8`.
    fn integer_kernel(ty: GgmlType) -> bool {
        #[cfg(target_arch = "x86_64")]
        return vnni::available() && keeps(ty);
        #[allow(unreachable_code)]
        false
    }

    /// Every kernel against the oracle (f64 sums over the dequantized weights) for decode (1–8
    /// rows) and prefill (gemm over widened rows), with junk after x.
    /// - Exact activations: |got − want| ≤ 5e-7·k + 1e-6 (values in [-1, 1]; only the
    ///   summation order differs, the widening being the dequantizer's own operations — a wrong
    ///   nibble, bit or scale moves results by O(0.01–1)).
    /// - int8 activations: the same tolerance against the oracle on the activations the
    ///   kernels see (`int8_view`: their integer sums are exact), and against the true product
    ///   the bound that quantizing x allows: Σ over blocks of d/2 · Σ|w| (plus the same slack).
    ///
    /// Also each kernel on its own: this CPU's and the widened fallback.
    #[test]
    fn block_products_match_the_reference_on_dequantized_weights() {
        let mut rng = SeededRng::new(11);
        for ty in TYPES {
            let block = ty.block().unwrap().0 as usize;
            for &(m, n, blocks_per_row) in
                &[(1, 1, 1), (1, 37, 3), (3, 19, 2), (8, 5, 4), (11, 7, 2)]
            {
                let k = block * blocks_per_row;
                let bytes = random_blocks(ty, n * blocks_per_row, rng.next_u64());
                let w = quant::dequantize(ty, &bytes, n * k).unwrap();
                let x = rng.vec(m * k + 7, 1.0);
                let bias = rng.vec(n, 1.0);
                let want = linear_reference(&x, &w, Some(&bias), m, n, k);
                let tol = 5e-7 * k as f32 + 1e-6;
                // Row after row, and in the CPU's interleaved layout (Q4_0, Q8_0: 8-row groups
                // and a tail of rows; other types stay as they are).
                for interleaved in [false, true] {
                    let mut parts = vec![BlockRows::new(ty, n, bytes.clone())];
                    if interleaved {
                        parts[0] = parts[0].clone().interleave(k);
                        let t = crate::tensor::Tensor::blocks(vec![n, k], parts.clone()).unwrap();
                        assert_eq!(t.clone().widened().unwrap().data(), &w[..], "{ty} widened");
                        for id in [0, n / 2, n - 1] {
                            assert_eq!(
                                table_row(&parts, n, k, id).unwrap(),
                                w[id * k..(id + 1) * k],
                                "{ty} row {id}"
                            );
                            let one = t.rows_slice(id, 1).block_rows().unwrap()[0].bytes.clone();
                            assert_eq!(
                                one,
                                bytes[id * one.len()..(id + 1) * one.len()],
                                "{ty} slice {id}"
                            );
                        }
                    }
                    let exact = linear_blocks(&x, &parts, Some(&bias), (m, n, k), Activations::F32)
                        .unwrap();
                    for (i, (g, r)) in exact.iter().zip(&want).enumerate() {
                        assert!(
                            (g - r).abs() <= tol,
                            "{ty} exact {m}×{n}×{k} [{i}]: {g} vs {r}"
                        );
                    }
                    let int8 = linear_blocks(&x, &parts, Some(&bias), (m, n, k), Activations::Int8)
                        .unwrap();
                    let x_seen = match m <= DECODE_ROWS && integer_kernel(ty) {
                        true => int8_view(&x[..m * k]),
                        false => x.clone(),
                    };
                    let want_seen = linear_reference(&x_seen, &w, Some(&bias), m, n, k);
                    for (i, (g, r)) in int8.iter().zip(&want_seen).enumerate() {
                        assert!(
                            (g - r).abs() <= tol,
                            "{ty} int8 {m}×{n}×{k} [{i}]: {g} vs {r}"
                        );
                        let (row, col) = (i / n, i % n);
                        let xr = &x[row * k..(row + 1) * k];
                        let wr = &w[col * k..(col + 1) * k];
                        let bound: f32 = (0..k / 32)
                            .map(|b| {
                                let d = xr[32 * b..32 * b + 32]
                                    .iter()
                                    .fold(0f32, |m, v| m.max(v.abs()))
                                    / 127.0;
                                d / 2.0
                                    * wr[32 * b..32 * b + 32].iter().map(|v| v.abs()).sum::<f32>()
                            })
                            .sum();
                        let err = (g - want[i]).abs();
                        assert!(
                            err <= bound + tol,
                            "{ty} int8 [{i}]: off by {err}, bound {bound}"
                        );
                    }
                }
                for kernel in [Kernel::Widened, Kernel::detect()] {
                    for j in 0..n {
                        let row = &bytes[j * bytes.len() / n..(j + 1) * bytes.len() / n];
                        let got = kernel.dot(ty, &x[..k], row);
                        let r = want[j] - bias[j];
                        assert!(
                            (got - r).abs() <= tol,
                            "{ty} {kernel:?} row {j}: {got} vs {r}"
                        );
                    }
                }
            }
        }
    }

    /// A weight of runs of different types (a Q4_K_M q/k/v: Q4_K, Q6_K rows) answers row by row
    /// as each run alone; slicing rows across a run boundary keeps each row's bytes; a table
    /// row widens as the dequantizer does.
    #[test]
    fn mixed_runs_slice_and_gather_by_row() {
        let mut rng = SeededRng::new(5);
        let k = 512;
        let a = random_blocks(GgmlType::Q4_K, 3 * 2, 1);
        let c = random_blocks(GgmlType::Q6_K, 2 * 2, 2);
        let parts = vec![
            BlockRows::new(GgmlType::Q4_K, 3, a.clone()),
            BlockRows::new(GgmlType::Q6_K, 2, c.clone()),
        ];
        let mut w = quant::dequantize(GgmlType::Q4_K, &a, 3 * k).unwrap();
        w.extend(quant::dequantize(GgmlType::Q6_K, &c, 2 * k).unwrap());
        let x = rng.vec(k, 1.0);
        let got = linear_blocks(&x, &parts, None, (1, 5, k), Activations::F32).unwrap();
        let want = linear_reference(&x, &w, None, 1, 5, k);
        for (g, r) in got.iter().zip(&want) {
            assert!((g - r).abs() <= 5e-7 * k as f32 + 1e-6, "{g} vs {r}");
        }
        let t = crate::tensor::Tensor::blocks(vec![5, k], parts.clone()).unwrap();
        let cut = t.rows_slice(2, 2);
        assert_eq!(cut.shape(), [2, k]);
        let cut = cut.block_rows().unwrap();
        assert_eq!(cut.len(), 2);
        assert_eq!(
            (cut[0].ty, cut[0].rows, cut[1].ty, cut[1].rows),
            (GgmlType::Q4_K, 1, GgmlType::Q6_K, 1)
        );
        assert_eq!(cut[0].bytes, a[2 * 288..]);
        assert_eq!(cut[1].bytes, c[..420]);
        for id in 0..5 {
            assert_eq!(
                table_row(&parts, 5, k, id).unwrap(),
                w[id * k..(id + 1) * k]
            );
        }
        assert!(
            linear_blocks(&x, &parts, None, (1, 4, k), Activations::F32).is_err(),
            "rows must add up"
        );
    }

    /// Each decode row is bit for bit the product of that row alone (a batched step changes
    /// no sequence's answer).
    #[test]
    fn decode_rows_are_each_the_product_of_the_row_alone() {
        let mut rng = SeededRng::new(8);
        for ty in TYPES {
            let k = 2 * ty.block().unwrap().0 as usize;
            let n = 19;
            // Interleaved where the type has that layout: two groups of 8 and a tail of 3.
            let parts = [BlockRows::new(ty, n, random_blocks(ty, n * 2, 3)).interleave(k)];
            let x = rng.vec(DECODE_ROWS * k, 1.0);
            for act in [Activations::F32, Activations::Int8] {
                let all = linear_blocks(&x, &parts, None, (DECODE_ROWS, n, k), act).unwrap();
                for i in 0..DECODE_ROWS {
                    let xi = &x[i * k..(i + 1) * k];
                    let alone = linear_blocks(xi, &parts, None, (1, n, k), act).unwrap();
                    assert_eq!(all[i * n..(i + 1) * n], alone[..], "{ty} {act:?} row {i}");
                }
            }
        }
    }
}
