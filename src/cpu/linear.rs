//! CPU twin of the linear kernel, also the CPU inference path.
//!
//! Y = X·Wᵀ + b with W in PyTorch `Linear` layout (n×k, row-major). Native builds run products
//! of more than [`DECODE_ROWS`] rows through packed, cache-blocked micro-kernels on the rayon
//! pool that `--threads` sizes (`crate::cpu::threads`): our AVX-512 and AVX2 ones
//! (`super::gemm`, which widen bf16/f16 weights as they pack them) where the CPU has AVX-512F or
//! AVX2 + FMA, else the `gemm` crate (NEON, …; bf16/f16 weights widened a block of rows at a
//! time). Fewer rows (decode)
//! stream W once through [`matvec_rows`]. The browser build (no threads, no runtime dispatch)
//! keeps the portable blocked loops below.
//! [`linear_reference`] is the oracle both are tested against: plain loops, f64 sums.
//!
//! The blocked loops: the work is split into bands of output rows, one per thread
//! (`std::thread::scope`); inside a band, blocks of W rows small enough to stay in cache are
//! reused for every X row, and each dot product keeps `LANES` independent partial sums so the
//! compiler vectorises the K loop. Every path sums in its own order: results agree to f32
//! rounding, not bit for bit.

use super::elementwise::After;
#[cfg(target_arch = "x86_64")]
use super::gemm::Rhs;
use super::sums::{lane_sum, pairwise};
use crate::tensor::Half;

/// Y (m×n) = X (m×k) · Wᵀ (w is n×k, row-major) + b.
///
/// Panics when a slice is shorter than its shape says (callers validate user input first).
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    linear_then(x, w, b, (m, n, k), After::Nothing)
}

/// after(X·Wᵀ + b), fused into the product's stores where it is ours (`super::gemm`), else a
/// pass over Y.
///
/// Panics when a slice is shorter than its shape says (callers validate user input first).
pub fn linear_then(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    after: After,
) -> Vec<f32> {
    check_sizes(x, w.len(), b, m, n, k);
    after.check(m, n);
    #[cfg(not(target_arch = "wasm32"))]
    let mut y = {
        #[cfg(target_arch = "x86_64")]
        if let Some(isa) = super::Simd::detect().filter(|_| m > DECODE_ROWS) {
            // SAFETY: the CPU runs `isa` (detected); x, w and b hold m×k, n×k and n values,
            // after fits m×n (checked).
            let w = Rhs::F32(weight_rows(w, k));
            return unsafe { super::gemm::linear(isa, x, w, b, (m, n, k), after) };
        }
        if m <= DECODE_ROWS {
            matvec_rows(x, m, b, n, k, |j, out| {
                dots_f32(x, k, &w[j * k..(j + 1) * k], out)
            })
        } else {
            gemm_linear(x, w, b, m, n, k)
        }
    };
    #[cfg(target_arch = "wasm32")]
    let mut y = linear_blocked(x, w, b, m, n, k);
    after.rows(&mut y, n);
    y
}

/// Rows of X up to which a product streams W once through [`matvec_rows`] (decode steps, one
/// row per sequence of a batch) rather than packing both operands for `gemm`.
pub const DECODE_ROWS: usize = 8;

/// Panics, naming the operand, unless x holds m×k values, W (`w_len` values, any format) n×k
/// and the bias, when given, n.
pub(super) fn check_sizes(
    x: &[f32],
    w_len: usize,
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) {
    assert!(
        x.len() >= m * k,
        "linear: x holds {} values, {m}×{k} needs {}",
        x.len(),
        m * k
    );
    assert!(
        w_len >= n * k,
        "linear: w holds {w_len} values, {n}×{k} needs {}",
        n * k
    );
    if let Some(b) = b {
        assert!(
            b.len() >= n,
            "linear: bias holds {} values, needs {n}",
            b.len()
        );
    }
}

/// The product through `gemm`: Y starts as the bias rows (read back in: dst = dst + X·Wᵀ), X is
/// row-major (m×k), Wᵀ is W read with its strides swapped.
#[cfg(not(target_arch = "wasm32"))]
fn gemm_linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    if let Some(b) = b {
        for row in y.chunks_mut(n) {
            row.copy_from_slice(&b[..n]);
        }
    }
    // SAFETY: the pointers cover m×n (y), m×k (x, checked) and n×k (w, checked) values with the
    // strides given (row-major; Wᵀ's element (kk, j) is w[j·k + kk]); y does not alias x or w.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            b.is_some(),
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
    y
}

/// Y = X·Wᵀ + b with W held as bf16 bits (n×k; each the upper half of an f32, widened exactly).
pub fn linear_bf16(
    x: &[f32],
    w: &[u16],
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    linear_half(Half::Bf16, x, w, b, (m, n, k), After::Nothing)
}

/// Y = X·Wᵀ + b with W held as 16-bit floats of `kind` (n×k, widened exactly). A few rows of X
/// (decode) stream W once through [`matvec_rows`], widened in registers; more rows widen W a
/// block of rows at a time into f32 for `gemm`, so the f32 copy never exceeds one block.
/// Then `after` ([`linear_then`]).
pub fn linear_half(
    kind: Half,
    x: &[f32],
    w: &[u16],
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    after: After,
) -> Vec<f32> {
    check_sizes(x, w.len(), b, m, n, k);
    after.check(m, n);
    #[cfg(target_arch = "x86_64")]
    if let Some(isa) = super::Simd::detect().filter(|_| m > DECODE_ROWS) {
        // SAFETY: the CPU runs `isa` (detected); x, w and b hold m×k, n×k and n values, after
        // fits m×n (asserted).
        let w = Rhs::Half(kind, weight_rows(w, k));
        return unsafe { super::gemm::linear(isa, x, w, b, (m, n, k), after) };
    }
    if m > DECODE_ROWS {
        return linear_widened(x, b, (m, n, k), after, |j0, wide| {
            for (d, &v) in wide.iter_mut().zip(&w[j0 * k..]) {
                *d = kind.widen(v);
            }
        });
    }
    let mut y = matvec_rows(x, m, b, n, k, |j, out| {
        dots_half(kind, x, k, &w[j * k..(j + 1) * k], out)
    });
    after.rows(&mut y, n);
    y
}

/// A bf16 weight as the bf16 products (`amx::linear`, `amx::matvec`) read it.
#[derive(Clone, Copy)]
pub enum Bf16Weight<'a> {
    /// n×k bits, row-major: each product packs the columns it takes.
    Rows(&'a [u16]),
    /// Packed once at load (`amx::pack_weight`; `crate::tensor::tile_index` is the layout).
    Tiles(&'a [u16]),
}

impl Bf16Weight<'_> {
    /// The values the weight holds (padding included), for the size checks.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn len(&self, (n, k): (usize, usize)) -> usize {
        match self {
            Bf16Weight::Rows(w) => w.len(),
            Bf16Weight::Tiles(t) => {
                assert!(
                    t.len() >= crate::tensor::tiled_len(n, k),
                    "a tiled weight cut short"
                );
                n * k
            }
        }
    }
}

/// Y = bf16(X)·Wᵀ + b with W held as bf16 bits (n×k, in rows or packed as tiles): the
/// activations rounded to bf16 and multiplied on AMX tiles (many rows) or by AVX512-BF16 dot
/// products (decode's few rows), sums in f32 (`--cpu-products bf16`; `super::amx`). An error on
/// CPUs without AMX-BF16 (`cpu_ops` refuses the option there before any product runs).
pub fn linear_bf16_activations(
    x: &[f32],
    w: Bf16Weight,
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
) -> crate::error::Result<Vec<f32>> {
    #[cfg(target_arch = "x86_64")]
    if super::amx::available() {
        // SAFETY: AMX and AVX512-BF16 (checked); `linear` and `matvec` assert the sizes.
        return Ok(unsafe {
            match m <= DECODE_ROWS {
                true => super::amx::matvec(x, w, b, (m, n, k)),
                false => super::amx::linear(x, w, b, (m, n, k)),
            }
        });
    }
    let _ = (x, w, b, m, n, k);
    Err(crate::error::Error::input(AMX_MISSING))
}

/// Why `--cpu-products bf16` cannot run here.
pub const AMX_MISSING: &str = "--cpu-products bf16 multiplies on AMX tiles, which this CPU or \
OS lacks (it needs AMX-BF16: Intel Xeon since Sapphire Rapids, and Linux 5.16 or later); use \
--cpu-products f32";

/// after(X·Wᵀ + b) for many rows of X with W held in another format: `widen(j0, wide)` writes
/// W's rows j0.. as f32 into `wide` (a whole number of rows, in whole groups of 8 — the CPU's
/// interleaved block layout, `BlockRows::interleave` — or reaching n). Where our GEMM runs
/// (`super::gemm::linear_widened`) each parallel task widens its own columns; elsewhere a
/// block of rows at a time is widened and multiplied through `gemm`. Either way the f32 copy
/// never holds all of W.
pub(crate) fn linear_widened(
    x: &[f32],
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    after: After,
    widen: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    after.check(m, n);
    #[cfg(target_arch = "x86_64")]
    if let Some(isa) = super::Simd::detect() {
        // SAFETY: the CPU runs `isa` (detected); the callers checked x (m×k) and b (n), W's
        // rows come from `widen`, which writes every value; after fits m×n (checked).
        return unsafe { super::gemm::linear_widened(isa, x, &widen, b, (m, n, k), after) };
    }
    let mut y = vec![0.0f32; m * n];
    let block = (WIDEN_BYTES / (4 * k.max(1)))
        .next_multiple_of(crate::tensor::INTERLEAVE_ROWS)
        .min(n.max(1));
    let mut wide = vec![0.0f32; block * k];
    for j0 in (0..n).step_by(block) {
        let rows = block.min(n - j0);
        widen(j0, &mut wide[..rows * k]);
        let yb = linear(
            x,
            &wide[..rows * k],
            b.map(|b| &b[j0..j0 + rows]),
            m,
            rows,
            k,
        );
        for (dst, src) in y.chunks_mut(n).zip(yb.chunks(rows)) {
            dst[j0..j0 + rows].copy_from_slice(src);
        }
    }
    after.rows(&mut y, n);
    y
}

/// Wᵀ (k×n) as a strided operand over W's rows (n×k, row-major): element (kk, j) is w[j·k + kk].
#[cfg(target_arch = "x86_64")]
fn weight_rows<T>(w: &[T], k: usize) -> Strided<T> {
    Strided {
        ptr: w.as_ptr(),
        col: k,
        row: 1,
    }
}

/// Bytes of W widened to f32 at a time for `gemm`.
const WIDEN_BYTES: usize = 4 << 20;
/// The fewest W rows per parallel task of [`matvec_rows`] (enough work per task to amortise
/// the hand-off).
#[cfg(not(target_arch = "wasm32"))]
const MATVEC_ROWS_PER_TASK: usize = 32;

/// Y (m×n) = X·Wᵀ + b for a few rows of X: memory-bound, so W is read once — `dots(j, out)`
/// takes every X row's dot product with W row `j` while that row is in cache — and W's rows
/// are split over the rayon pool natively. Each dot product is computed exactly as a one-row
/// call computes it (the kernels below keep each row's own accumulators and order, whatever
/// rows share the weight loads), so a row's result never depends on the rows beside it: a
/// batched decode step gives every sequence the bits it would get decoded alone.
pub(crate) fn matvec_rows(
    x: &[f32],
    m: usize,
    b: Option<&[f32]>,
    n: usize,
    k: usize,
    dots: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    debug_assert!(x.len() >= m * k);
    matvec_chunks(m, b, n, |j0, ys| {
        for (jj, out) in ys.chunks_mut(m).enumerate() {
            dots(j0 + jj, out);
        }
    })
}

/// [`matvec_rows`] with the work handed out a chunk of W rows at a time: `fill(j0, ys)` writes
/// the m dot products of each W row j0, j0 + 1, … into consecutive stretches of m values of
/// `ys` (so a kernel can run over a whole run of rows in one call).
pub(crate) fn matvec_chunks(
    m: usize,
    b: Option<&[f32]>,
    n: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    if m == 0 {
        return Vec::new();
    }
    // Transposed (n×m): a task's W rows own one contiguous stretch of the output.
    let mut yt = vec![0.0f32; n * m];
    let fill = |j0: usize, ys: &mut [f32]| {
        fill(j0, ys);
        if let Some(b) = b {
            for (jj, out) in ys.chunks_mut(m).enumerate() {
                for o in out.iter_mut() {
                    *o += b[j0 + jj];
                }
            }
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        // A few tasks per thread: balanced, without a hand-off per handful of rows; whole
        // groups of 16 rows (so of the 8 of the CPU's interleaved block layout,
        // `BlockRows::interleave`, and the 16 of a tiled bf16 weight's tiles, `tile_index`).
        let per_task = n
            .div_ceil(4 * rayon::current_num_threads())
            .max(MATVEC_ROWS_PER_TASK)
            .next_multiple_of(16);
        yt.par_chunks_mut(per_task * m)
            .enumerate()
            .for_each(|(t, ys)| fill(t * per_task, ys));
    }
    #[cfg(target_arch = "wasm32")]
    fill(0, &mut yt);
    if m == 1 {
        return yt;
    }
    let mut y = vec![0.0f32; m * n];
    for (j, col) in yt.chunks(m).enumerate() {
        for (i, v) in col.iter().enumerate() {
            y[i * n + j] = *v;
        }
    }
    y
}

/// out[i] = x_i·w for the rows of x (out.len() rows of k) and one f32 weight row.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn dots_f32(x: &[f32], k: usize, w: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        return unsafe { by_row_groups(x, k, out, |xs, o| dots_f32_avx2(xs, w, o)) };
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = lane_sum(&x[i * k..(i + 1) * k], w, |x, w| x * w);
    }
}

/// out[i] = x_i·w for the rows of x (out.len() rows of k) and one 16-bit weight row.
fn dots_half(kind: Half, x: &[f32], k: usize, w: &[u16], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::gemm::available() {
        // SAFETY: the CPU has AVX-512F and F16C (checked just above).
        return unsafe {
            match kind {
                Half::Bf16 => by_row_groups(x, k, out, |xs, o| dots_bf16_avx512(xs, w, o)),
                Half::F16 => by_row_groups(x, k, out, |xs, o| dots_f16_avx512(xs, w, o)),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        return unsafe {
            match kind {
                Half::Bf16 => by_row_groups(x, k, out, |xs, o| dots_bf16_avx2(xs, w, o)),
                Half::F16 => by_row_groups(x, k, out, |xs, o| dots_f16_avx2(xs, w, o)),
            }
        };
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = lane_sum(&x[i * k..(i + 1) * k], w, |x, w| x * kind.widen(w));
    }
}

/// X rows sharing one weight load in the AVX2 kernels: 3 rows × 4 accumulators + the weight +
/// an X vector fill 14 of the 16 registers. Measured (`benches/cpu_products.rs`, bf16
/// 9728 × 896 in cache, 2 cores): 1 row 306 µs, 2 rows 479, 3 rows 754, 4 rows 788 (3 + 1) —
/// groups of 4 (spilling) 899, groups of 2 would be 958.
#[cfg(target_arch = "x86_64")]
const ROW_GROUP: usize = 3;

/// Calls `kernel` on groups of up to [`ROW_GROUP`] rows of x (rows of k) and their outputs.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn by_row_groups(
    x: &[f32],
    k: usize,
    out: &mut [f32],
    kernel: impl Fn(&[&[f32]], &mut [f32]),
) {
    let mut rows = [&x[..0]; ROW_GROUP];
    for (g, o) in out.chunks_mut(ROW_GROUP).enumerate() {
        for (r, row) in rows.iter_mut().enumerate().take(o.len()) {
            let i = g * ROW_GROUP + r;
            *row = &x[i * k..(i + 1) * k];
        }
        kernel(&rows[..o.len()], o);
    }
}

/// SIMD dot products of up to [`ROW_GROUP`] f32 rows with one weight row of type `$elem`,
/// `$load` reading one register of weights as f32 lanes (once for all rows): per row, four
/// registers of weights per step into four accumulators (so the adds do not wait on each
/// other), summed lane by lane in order, then the tail in order — the same operations in the
/// same order for a row whatever rows share the call. `$features` and the `$v` ops pick the
/// width: AVX2 (8 lanes) or AVX-512 (16).
#[cfg(target_arch = "x86_64")]
macro_rules! dots_simd {
    ($name:ident, $features:literal, $lanes:literal, $elem:ty, $load:expr, $widen:expr,
     $zero:ident, $loadu:ident, $fmadd:ident, $add:ident, $storeu:ident) => {
        #[target_feature(enable = $features)]
        unsafe fn $name(xs: &[&[f32]], w: &[$elem], out: &mut [f32]) {
            match xs.len() {
                1 => $name::rows::<1>(xs, w, out),
                2 => $name::rows::<2>(xs, w, out),
                _ => $name::rows::<3>(xs, w, out),
            }
        }
        mod $name {
            use std::arch::x86_64::*;
            #[target_feature(enable = $features)]
            pub(super) unsafe fn rows<const R: usize>(xs: &[&[f32]], w: &[$elem], out: &mut [f32]) {
                let k = xs[..R].iter().fold(w.len(), |k, x| k.min(x.len()));
                let step = 4 * $lanes;
                let main = k - k % step;
                let mut acc = [[$zero(); 4]; R];
                let mut i = 0;
                while i < main {
                    for a in 0..4 {
                        let at = i + $lanes * a;
                        // SAFETY: at + lanes ≤ main ≤ k, within w and every row.
                        let wf = $load(w.as_ptr().add(at));
                        for r in 0..R {
                            let xv = $loadu(xs[r].as_ptr().add(at));
                            acc[r][a] = $fmadd(xv, wf, acc[r][a]);
                        }
                    }
                    i += step;
                }
                for r in 0..R {
                    let [a0, a1, a2, a3] = acc[r];
                    let sum = $add($add(a0, a1), $add(a2, a3));
                    let mut lanes = [0.0f32; $lanes];
                    $storeu(lanes.as_mut_ptr(), sum);
                    let mut s = lanes.iter().sum::<f32>();
                    for j in main..k {
                        s += xs[r][j] * $widen(w[j]);
                    }
                    out[r] = s;
                }
            }
        }
    };
}

/// [`dots_simd`] on AVX2 + FMA (+ F16C): 8 lanes, 32 weights per step.
#[cfg(target_arch = "x86_64")]
macro_rules! dots_avx2 {
    ($name:ident, $elem:ty, $load:expr, $widen:expr) => {
        dots_simd!(
            $name,
            "avx2,fma,f16c",
            8,
            $elem,
            $load,
            $widen,
            _mm256_setzero_ps,
            _mm256_loadu_ps,
            _mm256_fmadd_ps,
            _mm256_add_ps,
            _mm256_storeu_ps
        );
    };
}

/// [`dots_simd`] on AVX-512F (+ F16C): 16 lanes, 64 weights per step.
#[cfg(target_arch = "x86_64")]
macro_rules! dots_avx512 {
    ($name:ident, $elem:ty, $load:expr, $widen:expr) => {
        dots_simd!(
            $name,
            "avx512f,f16c",
            16,
            $elem,
            $load,
            $widen,
            _mm512_setzero_ps,
            _mm512_loadu_ps,
            _mm512_fmadd_ps,
            _mm512_add_ps,
            _mm512_storeu_ps
        );
    };
}

// bf16: 8 values zero-extended to 32 bits and shifted into the upper half (the exact f32).
#[cfg(target_arch = "x86_64")]
dots_avx2!(
    dots_bf16_avx2,
    u16,
    |p: *const u16| _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
        16
    )),
    |v: u16| f32::from_bits((v as u32) << 16)
);
// f16: 8 values widened by F16C (exactly).
#[cfg(target_arch = "x86_64")]
dots_avx2!(
    dots_f16_avx2,
    u16,
    |p: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
    |v: u16| half::f16::from_bits(v).to_f32()
);
#[cfg(target_arch = "x86_64")]
dots_avx2!(
    dots_f32_avx2,
    f32,
    |p: *const f32| _mm256_loadu_ps(p),
    |v: f32| v
);

// The AVX-512 kernels are for 16-bit weights: 16 weights per load (32 bytes), 64
// per step into four accumulators per row, then the 16 lanes summed in order and the tail —
// again the same operations in the same order for a row whatever rows share the call. Fewer
// instructions per weight byte than the AVX2 kernels: bf16 decoding went from 0.71–0.74× to
// 0.77–0.84× of llama.cpp's in one interleaved run. f32 weights keep the AVX2 kernel: the
// AVX-512 one was no faster for them (9.4–10.3 against 10.2–10.4 tokens/s, interleaved).
#[cfg(target_arch = "x86_64")]
dots_avx512!(
    dots_bf16_avx512,
    u16,
    |p: *const u16| _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i)),
        16
    )),
    |v: u16| f32::from_bits((v as u32) << 16)
);
#[cfg(target_arch = "x86_64")]
dots_avx512!(
    dots_f16_avx512,
    u16,
    |p: *const u16| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
    |v: u16| half::f16::from_bits(v).to_f32()
);

/// A strided operand of [`product`]: its first element, and the steps between columns and
/// between rows (in elements): element (row, col) is at `ptr + row·row + col·col`.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy)]
pub(crate) struct Strided<T = f32> {
    pub ptr: *const T,
    pub col: usize,
    pub row: usize,
}

/// A right operand that several [`product`]s read (the attention's Kᵀ and V, read by each
/// block of queries): packed once where the products are ours (`super::gemm`), read in place
/// by each otherwise.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct ReusedRhs {
    strided: Strided,
    #[cfg(target_arch = "x86_64")]
    packed: Option<(super::Simd, super::gemm::PackedRhs)>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ReusedRhs {
    /// The k×n operand `rhs`.
    ///
    /// # Safety
    /// Every element the strides reach (k×n) must be in bounds while the result lives.
    pub(crate) unsafe fn new(rhs: Strided, (k, n): (usize, usize)) -> ReusedRhs {
        ReusedRhs {
            strided: rhs,
            #[cfg(target_arch = "x86_64")]
            packed: super::Simd::detect().map(|isa| {
                // SAFETY: the CPU runs `isa` (detected); bounds as the caller promises.
                (isa, super::gemm::PackedRhs::new(isa, Rhs::F32(rhs), (k, n)))
            }),
        }
    }
}

/// dst (m×n, rows `dst_row` apart) = scale · lhs (m×k) · rhs (k×n), one thread, then each row
/// i of dst times `row_scales[i]` when given: the attention products, which read their
/// operands in place through strides (rhs as [`ReusedRhs::new`] was given it: k×n).
///
/// # Safety
/// Every element the strides reach (m×k of lhs, m×n of dst) must be in bounds, dst must not
/// overlap lhs or rhs, and `row_scales` holds m values.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_row: usize,
    lhs: Strided,
    rhs: &ReusedRhs,
    scale: f32,
    row_scales: Option<&[f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if let Some((isa, packed)) = &rhs.packed {
        let finish = |i: usize, _: usize, stretch: &mut [f32]| {
            if let Some(s) = row_scales {
                stretch.iter_mut().for_each(|v| *v *= s[i]);
            }
        };
        let rhs = super::gemm::Operand::Packed(packed);
        // SAFETY: the CPU runs `isa` (detected when packed); bounds as the caller promises.
        return super::gemm::product(
            *isa,
            (m, n, k),
            dst,
            dst_row,
            lhs,
            rhs,
            scale,
            Some(&finish),
        );
    }
    let rhs = rhs.strided;
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row as isize,
        false,
        lhs.ptr,
        lhs.col as isize,
        lhs.row as isize,
        rhs.ptr,
        rhs.col as isize,
        rhs.row as isize,
        0.0,
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
    for (i, s) in row_scales.into_iter().flatten().enumerate().take(m) {
        for j in 0..n {
            *dst.add(i * dst_row + j) *= s;
        }
    }
}

/// The oracle: each output element a left-to-right dot product summed in f64, plus the bias.
pub fn linear_reference(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    check_sizes(x, w.len(), b, m, n, k);
    let mut y = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|kk| x[i * k + kk] as f64 * w[j * k + kk] as f64)
                .sum();
            y.push((dot + b.map_or(0.0, |b| b[j] as f64)) as f32);
        }
    }
    y
}

/// Independent partial sums per dot product (one SSE register, the baseline x86-64 target).
const LANES: usize = 4;
/// Rows of X and of W handled together: each loaded X chunk is used for `BLOCK_W` W rows and
/// each W chunk for `BLOCK_X` X rows (16 dot products, 16 accumulator registers), cutting
/// loads per multiply-add by 4× against one dot at a time. Measured (release, 2 cores, no
/// target-cpu flags) at 4096×896×896: 4×4 blocks of 4 lanes ≈ 48–55 GFLOP/s, 2×4 of 8 ≈ 47,
/// 4×4 of 8 ≈ 9 (register spills); 4096×896×2688 ≈ 45.
const BLOCK_X: usize = 4;
const BLOCK_W: usize = 4;
/// Bytes of W kept hot in cache while a band of X rows streams past it.
const W_CACHE_BYTES: usize = 192 * 1024;
/// Below this many multiply-adds one thread is faster than spawning several.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// The portable blocked loops (the browser build's products; also tested natively).
pub fn linear_blocked(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    check_sizes(x, w.len(), b, m, n, k);
    let mut y = vec![0.0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    let threads = if m * n * k < PARALLEL_MIN_WORK {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(m)
    };
    let rows_per_band = m.div_ceil(threads);
    if threads == 1 {
        band(&x[..m * k], w, b, n, k, &mut y);
    } else {
        std::thread::scope(|s| {
            for (i, y_band) in y.chunks_mut(rows_per_band * n).enumerate() {
                let rows = y_band.len() / n;
                let x_band = &x[i * rows_per_band * k..][..rows * k];
                s.spawn(move || band(x_band, w, b, n, k, y_band));
            }
        });
    }
    y
}

/// Computes the rows of Y for the rows of X in `x` (a whole number of rows of length k).
fn band(x: &[f32], w: &[f32], b: Option<&[f32]>, n: usize, k: usize, y: &mut [f32]) {
    let rows = y.len() / n;
    let w_rows_per_block = (W_CACHE_BYTES / (4 * k.max(1))).clamp(BLOCK_W, n.max(BLOCK_W));
    let mut j0 = 0;
    while j0 < n {
        let j1 = (j0 + w_rows_per_block).min(n);
        let mut i = 0;
        while i < rows {
            let ib = BLOCK_X.min(rows - i);
            let mut j = j0;
            while j < j1 {
                let jb = BLOCK_W.min(j1 - j);
                if ib == BLOCK_X && jb == BLOCK_W {
                    let xr: [&[f32]; BLOCK_X] = std::array::from_fn(|r| &x[(i + r) * k..][..k]);
                    let wr: [&[f32]; BLOCK_W] = std::array::from_fn(|c| &w[(j + c) * k..][..k]);
                    let d = dot_block(xr, wr);
                    for (r, row) in d.iter().enumerate() {
                        y[(i + r) * n + j..][..BLOCK_W].copy_from_slice(row);
                    }
                } else {
                    for r in i..i + ib {
                        for c in j..j + jb {
                            y[r * n + c] = dot_block([&x[r * k..][..k]], [&w[c * k..][..k]])[0][0];
                        }
                    }
                }
                j += jb;
            }
            i += ib;
        }
        j0 = j1;
    }
    if let Some(b) = b {
        for row in y.chunks_mut(n) {
            for (v, bias) in row.iter_mut().zip(b) {
                *v += bias;
            }
        }
    }
}

/// All R×C dot products between R rows of X and C rows of W (all of length k).
#[inline(always)]
fn dot_block<const R: usize, const C: usize>(xr: [&[f32]; R], wr: [&[f32]; C]) -> [[f32; C]; R] {
    let k = xr[0].len();
    let mut acc = [[[0.0f32; LANES]; C]; R];
    let main = k - k % LANES;
    for k0 in (0..main).step_by(LANES) {
        let xs: [&[f32; LANES]; R] =
            std::array::from_fn(|r| xr[r][k0..k0 + LANES].try_into().unwrap());
        let ws: [&[f32; LANES]; C] =
            std::array::from_fn(|c| wr[c][k0..k0 + LANES].try_into().unwrap());
        for r in 0..R {
            for c in 0..C {
                for l in 0..LANES {
                    acc[r][c][l] += xs[r][l] * ws[c][l];
                }
            }
        }
    }
    let mut out = [[0.0f32; C]; R];
    for r in 0..R {
        for c in 0..C {
            // The lanes added pairwise, then the k % LANES tail.
            let mut s = pairwise(acc[r][c]);
            for kk in main..k {
                s += xr[r][kk] * wr[c][kk];
            }
            out[r][c] = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::SeededRng;

    /// |got − want| ≤ 2e-6·k + 1e-6 everywhere: the f32 paths sum k products of values ≤ 1 in
    /// their own order, and that bounds the rounding.
    fn assert_within(name: &str, (m, n, k): (usize, usize, usize), got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), m * n, "{name} {m}×{n}×{k}");
        let tol = 2e-6 * k as f32 + 1e-6;
        for (i, (g, r)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - r).abs() <= tol,
                "{name} {m}×{n}×{k} element {i}: {g} vs reference {r}"
            );
        }
    }

    /// Every path against the oracle on shapes that are multiples of no block or SIMD width,
    /// with junk after the last row of x and w (views into larger buffers); tolerance as in
    /// `assert_within`.
    #[test]
    fn fast_paths_match_the_reference_on_odd_shapes() {
        let mut rng = SeededRng::new(3);
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 7, 3),
            (1, 100, 257),
            (2, 33, 31),
            (3, 5, 1000),
            (5, 129, 17),
            (17, 64, 129),
            (64, 96, 896),
            (129, 7, 64),
        ] {
            let junk = 13;
            let x = rng.vec(m * k + junk, 1.0);
            let w = rng.vec(n * k + junk, 1.0);
            let b = rng.vec(n + junk, 1.0);
            for bias in [None, Some(b.as_slice())] {
                let want = linear_reference(&x, &w, bias, m, n, k);
                for (name, got) in [
                    ("linear", linear(&x, &w, bias, m, n, k)),
                    ("blocked", linear_blocked(&x, &w, bias, m, n, k)),
                ] {
                    assert_within(name, (m, n, k), &got, &want);
                }
            }
        }
    }

    /// A decode step's rows are independent: each row of a product of up to `DECODE_ROWS` rows
    /// is bit for bit the product of that row alone (f32 and bf16 weights, odd K with a tail),
    /// so a batched step changes no sequence's answer. Past `DECODE_ROWS` gemm takes over and
    /// only the tolerance against the oracle holds.
    #[test]
    fn decode_rows_are_each_the_product_of_the_row_alone() {
        let mut rng = SeededRng::new(9);
        let (n, k) = (37, 203);
        let x = rng.vec(DECODE_ROWS * k, 1.0);
        let w = rng.vec(n * k, 1.0);
        let wb: Vec<u16> = w
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        let b = rng.vec(n, 1.0);
        for m in 1..=DECODE_ROWS {
            let f32_rows = linear(&x, &w, Some(&b), m, n, k);
            let bf16_rows = linear_bf16(&x, &wb, Some(&b), m, n, k);
            for i in 0..m {
                let xi = &x[i * k..(i + 1) * k];
                let alone = linear(xi, &w, Some(&b), 1, n, k);
                assert_eq!(
                    &f32_rows[i * n..(i + 1) * n],
                    &alone[..],
                    "f32 m={m} row {i}"
                );
                let alone = linear_bf16(xi, &wb, Some(&b), 1, n, k);
                assert_eq!(
                    &bf16_rows[i * n..(i + 1) * n],
                    &alone[..],
                    "bf16 m={m} row {i}"
                );
            }
        }
    }

    /// The bf16 and f16 paths (matrix-vector up to 8 rows, widened blocks for gemm past it)
    /// against the oracle on the same weights widened to f32 (by the `half` crate): the
    /// widening is exact, so only the summation order differs (tolerance as above). Block
    /// edges: n = 129 rows of k = 8193 cross one widened block (4 MiB / (4·8193) = 127 rows,
    /// rounded up to whole groups of 8: 128).
    #[test]
    fn half_weights_match_the_reference_on_the_widened_values() {
        let mut rng = SeededRng::new(4);
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 100, 257),
            (2, 33, 31),
            (3, 70, 100),
            (4, 33, 31),
            (9, 129, 8193),
            (17, 64, 129),
        ] {
            let x = rng.vec(m * k + 5, 1.0);
            let wf = rng.vec(n * k, 1.0);
            let b = rng.vec(n, 1.0);
            type Widen = fn(f32) -> (u16, f32);
            let kinds: [(Half, Widen); 2] = [
                (Half::Bf16, |v| {
                    let h = half::bf16::from_f32(v);
                    (h.to_bits(), h.to_f32())
                }),
                (Half::F16, |v| {
                    let h = half::f16::from_f32(v);
                    (h.to_bits(), h.to_f32())
                }),
            ];
            for (kind, round) in kinds {
                let (w, widened): (Vec<u16>, Vec<f32>) = wf.iter().map(|&v| round(v)).unzip();
                for bias in [None, Some(b.as_slice())] {
                    let want = linear_reference(&x, &widened, bias, m, n, k);
                    let got = linear_half(kind, &x, &w, bias, (m, n, k), After::Nothing);
                    assert_within(&format!("{kind:?}"), (m, n, k), &got, &want);
                }
            }
        }
    }
}
