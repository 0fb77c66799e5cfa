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

use super::elementwise::After;
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
    linear_blocks_then(x, parts, b, (m, n, k), activations, After::Nothing)
}

/// after([`linear_blocks`]): fused into the product's stores where many rows go through our
/// GEMM, else a pass over Y.
pub fn linear_blocks_then(
    x: &[f32],
    parts: &[BlockRows],
    b: Option<&[f32]>,
    dims: (usize, usize, usize),
    activations: Activations,
    after: After,
) -> Result<Vec<f32>> {
    linear_blocks_on(x, parts, b, dims, activations, int8_isa(), after)
}

/// The instruction set of the int8 kernels (x86-64 only; `None` where there are none).
#[cfg(target_arch = "x86_64")]
type Int8Isa = Option<int8::Isa>;
#[cfg(not(target_arch = "x86_64"))]
type Int8Isa = Option<std::convert::Infallible>;

/// The int8 kernels' instruction set on this CPU (`int8::Isa::detect`).
fn int8_isa() -> Int8Isa {
    #[cfg(target_arch = "x86_64")]
    return int8::Isa::detect();
    #[allow(unreachable_code)]
    None
}

/// The int8 kernels' instruction set on this CPU, in words (`linvt info`).
pub(crate) fn int8_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    match int8_isa() {
        Some(int8::Isa::Vnni) => return "AVX-512 VNNI",
        Some(int8::Isa::Avx2) => return "AVX2",
        None => {}
    }
    "none (weights widened to f32)"
}

/// [`linear_blocks`] with the int8 kernels of `int8_isa` (tests take each this CPU runs).
fn linear_blocks_on(
    x: &[f32],
    parts: &[BlockRows],
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    activations: Activations,
    int8_isa: Int8Isa,
    after: After,
) -> Result<Vec<f32>> {
    let weight = BlockWeight::new(parts, n, k)?;
    assert!(x.len() >= m * k && b.is_none_or(|b| b.len() >= n));
    if m > DECODE_ROWS {
        return Ok(linear_widened(x, b, (m, n, k), after, |j0, wide| {
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
    let int8: Option<(int8::Isa, Vec<int8::Int8Row>)> = match activations {
        Activations::Int8 => int8_isa.map(|isa| {
            let rows = (0..m).map(|i| int8::Int8Row::new(&x[i * k..(i + 1) * k], isa));
            (isa, rows.collect())
        }),
        Activations::F32 => None,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (activations, int8_isa);
    let x_rows: Vec<&[f32]> = (0..m).map(|i| &x[i * k..(i + 1) * k]).collect();
    after.check(m, n);
    let mut y = matvec_chunks(m, b, n, |j0, ys| {
        let mut done = 0;
        for run in weight.runs(j0, ys.len() / m) {
            let out = &mut ys[done * m..(done + run.rows) * m];
            done += run.rows;
            #[cfg(target_arch = "x86_64")]
            if let Some((isa, xq)) = &int8 {
                // SAFETY: `isa` is one this CPU runs (`int8::Isa`); each row holds k values.
                if unsafe { int8::dots(*isa, &run, xq, out) } {
                    continue;
                }
            }
            let bytes = run.row_major(k);
            kernel.dots(run.ty, &x_rows, &bytes, out);
        }
    });
    after.rows(&mut y, n);
    Ok(y)
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
    activations == Activations::Int8 && int8_isa().is_some()
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
mod avx512;

#[cfg(target_arch = "x86_64")]
mod int8;

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

    /// Every int8 instruction set this CPU runs (each tested, whatever `detect` picks), then
    /// none (the f32 fallback every CPU has).
    fn int8_isas() -> Vec<Int8Isa> {
        #[cfg(target_arch = "x86_64")]
        let runnable = int8::Isa::runnable();
        #[cfg(target_arch = "x86_64")]
        crate::cpu::kernels_for_tests(
            runnable.contains(&int8::Isa::Vnni),
            "AVX-512 VNNI",
            "LINVT_REQUIRE_AVX512",
        );
        #[cfg(not(target_arch = "x86_64"))]
        let runnable: Vec<std::convert::Infallible> = vec![];
        runnable.into_iter().map(Some).chain([None]).collect()
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
            // 300 rows: tasks of 48 rows (6 groups: 4 read side by side, then 2 alone).
            for &(m, n, blocks_per_row) in &[
                (1, 1, 1),
                (1, 37, 3),
                (3, 19, 2),
                (8, 5, 4),
                (11, 7, 2),
                (2, 75, 2),
                (1, 300, 2),
                // Many rows over two column tasks: each widens its own 8-row groups.
                (11, 300, 2),
            ] {
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
                    // What follows the product, fused or as a pass: each value as the pass
                    // computes it from the same product.
                    let residual = rng.vec(m * n, 1.0);
                    let gamma = rng.vec(n, 1.0);
                    for after in [
                        After::Gelu,
                        After::Residual {
                            residual: &residual,
                            gamma: Some(&gamma),
                        },
                    ] {
                        let mut want_after = exact.clone();
                        after.rows(&mut want_after, n);
                        let dims = (m, n, k);
                        let act = Activations::F32;
                        let got = linear_blocks_then(&x, &parts, Some(&bias), dims, act, after);
                        assert_eq!(got.unwrap(), want_after, "{ty} {m}×{n}×{k} then");
                    }
                    for (i, (g, r)) in exact.iter().zip(&want).enumerate() {
                        assert!(
                            (g - r).abs() <= tol,
                            "{ty} exact {m}×{n}×{k} [{i}]: {g} vs {r}"
                        );
                    }
                    for isa in int8_isas() {
                        let dims = (m, n, k);
                        let int8 = linear_blocks_on(
                            &x,
                            &parts,
                            Some(&bias),
                            dims,
                            Activations::Int8,
                            isa,
                            After::Nothing,
                        )
                        .unwrap();
                        let x_seen = match m <= DECODE_ROWS && isa.is_some() && keeps(ty) {
                            true => int8_view(&x[..m * k]),
                            false => x.clone(),
                        };
                        let want_seen = linear_reference(&x_seen, &w, Some(&bias), m, n, k);
                        for (i, (g, r)) in int8.iter().zip(&want_seen).enumerate() {
                            assert!(
                                (g - r).abs() <= tol,
                                "{ty} int8 {isa:?} {m}×{n}×{k} [{i}]: {g} vs {r}"
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
                                        * wr[32 * b..32 * b + 32]
                                            .iter()
                                            .map(|v| v.abs())
                                            .sum::<f32>()
                                })
                                .sum();
                            let err = (g - want[i]).abs();
                            assert!(
                                err <= bound + tol,
                                "{ty} int8 {isa:?} [{i}]: off by {err}, bound {bound}"
                            );
                        }
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
            for (act, isa) in int8_isas()
                .into_iter()
                .map(|isa| (Activations::Int8, isa))
                .chain([(Activations::F32, None)])
            {
                let dims = (DECODE_ROWS, n, k);
                let all =
                    linear_blocks_on(&x, &parts, None, dims, act, isa, After::Nothing).unwrap();
                for i in 0..DECODE_ROWS {
                    let xi = &x[i * k..(i + 1) * k];
                    let alone =
                        linear_blocks_on(xi, &parts, None, (1, n, k), act, isa, After::Nothing)
                            .unwrap();
                    assert_eq!(
                        all[i * n..(i + 1) * n],
                        alone[..],
                        "{ty} {act:?} {isa:?} row {i}"
                    );
                }
            }
        }
    }
}
