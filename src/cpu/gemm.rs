//! Matrix products on x86-64 SIMD: C (m×n) = α·A·B (+ C), with A and B read through strides and
//! B optionally 16-bit floats (bf16, f16), widened exactly as they are packed. This is what
//! prefill, the vision encoder, LinVT and the attention products run on CPUs with AVX-512F
//! ([`Avx512`], here) or AVX2 + FMA ([`super::gemm_avx2::Avx2`]: AMD before Zen 4, most
//! laptops); the blocking loops below are written once over the [`Kernel`] trait.
//!
//! Why our own kernels: the `gemm` crate picks its AVX-512 kernels only with its `nightly`
//! feature (which needs a nightly compiler), so on stable it runs its AVX2 kernels — 8 lanes, half
//! of what a CPU with two 512-bit FMA units (Intel Xeon since Skylake-SP) multiplies per cycle.
//! Profiles of the vision encoder had 58 % of samples in that AVX2 kernel. On an AVX2 CPU (AMD
//! Zen 3) its kernel reached 0.85× of MKL on the ViT's products, and its packing per call
//! weighed on the attention's small products (k = 64). Other CPUs keep `gemm`
//! (`crate::cpu::linear`).
//!
//! The layout is BLIS's: B is packed a block of [`KC`] × [`NC`] at a time into panels of
//! `NR` columns (`[kk][NR]`, zero past n), A a block of `MC` × [`KC`] into tiles of `MR`
//! rows (`[kk][MR]`, zero past m); a tile of MR × NR outputs stays in accumulator registers
//! (AVX-512: 12 × 32 in 24 registers; AVX2: 6 × 16 in 12), and each step broadcasts MR values
//! of A against the registers of one depth of B. A block of B stays in L2 while every row of A
//! passes it. Sums over k are in order within a block, blocks added in order: results agree
//! with other paths to f32 rounding, not bit for bit.

use super::elementwise::After;
use super::linear::Strided;
use super::threads::OutPtr;
use super::Simd;
use crate::tensor::{cache_lines, Half};
use std::arch::x86_64::*;

/// Depth of a packed block: a panel of B (KC·NR·4 bytes: 32 KiB on AVX-512, 16 on AVX2)
/// stays in L1 while the tiles of A pass it from L2.
const KC: usize = 256;
/// Columns of B packed at a time (a block of KC·NC·4 = 256 KiB, in L2), and the width of one
/// parallel task of [`linear`]: a whole number of panels on either kernel.
const NC: usize = 256;

/// Whether this CPU runs the AVX-512 kernels.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("f16c")
}

/// One instruction set's micro-kernel and packing, under the shared blocking loops. Callers
/// of its functions hold a [`Simd`] that [`Simd::runnable`] returned for it.
pub(crate) trait Kernel {
    /// Rows of A per tile.
    const MR: usize;
    /// Columns of B per tile (a whole number of registers); divides [`NC`].
    const NR: usize;
    /// Rows of A packed at a time (MC·KC·4 bytes, in L2).
    const MC: usize;
    /// Packs `rows` ≤ MR rows of A (kc values each, `a_row` apart) as one tile, `[kk][MR]`,
    /// rows past `rows` zero; dst holds kc·MR values, then [`PACK_SLACK`] it may overwrite.
    unsafe fn pack_a(a: *const f32, a_row: usize, rows: usize, kc: usize, dst: *mut f32);
    /// Packs rhs depths k0..k0+kc, columns j0..j0+nc into panels of NR columns, `[kk][NR]`
    /// each, widened to f32, columns past nc zero.
    unsafe fn pack_b(rhs: Rhs, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]);
    /// One tile of `rows` ≤ MR rows × NR columns: c (rows × cols of it, rows `c_row` apart) =
    /// scale · a_tile · b_panel (+ c when `load_c`).
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        rows: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: (*mut f32, usize),
        cols: usize,
        scale: f32,
        load_c: bool,
    );
}

/// Values past a packed A tile that its writer may overwrite (a whole register stored at the
/// last depth): the next tile's, or this slack at the end of the buffer.
pub(crate) const PACK_SLACK: usize = 16;

/// The AVX-512F kernel: 12 × 32 tiles (24 accumulators, two registers of B per depth).
pub(crate) struct Avx512;

/// [`Avx512`]'s rows of A per tile.
const MR: usize = 12;
/// [`Avx512`]'s columns of B per tile (two 16-lane registers).
const NR: usize = 32;

impl Kernel for Avx512 {
    const MR: usize = MR;
    const NR: usize = NR;
    const MC: usize = 12 * MR;
    unsafe fn pack_a(a: *const f32, a_row: usize, rows: usize, kc: usize, dst: *mut f32) {
        pack_a(
            a,
            a_row,
            rows,
            kc,
            std::slice::from_raw_parts_mut(dst, kc * MR),
        )
    }
    unsafe fn pack_b(rhs: Rhs, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        pack_b(rhs, k0, kc, j0, nc, dst)
    }
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(
        rows: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: (*mut f32, usize),
        cols: usize,
        scale: f32,
        load_c: bool,
    ) {
        match rows {
            MR => tile::<MR>(kc, a, b, c, cols, scale, load_c),
            1 => tile::<1>(kc, a, b, c, cols, scale, load_c),
            2 => tile::<2>(kc, a, b, c, cols, scale, load_c),
            3 => tile::<3>(kc, a, b, c, cols, scale, load_c),
            4 => tile::<4>(kc, a, b, c, cols, scale, load_c),
            5 => tile::<5>(kc, a, b, c, cols, scale, load_c),
            6 => tile::<6>(kc, a, b, c, cols, scale, load_c),
            7 => tile::<7>(kc, a, b, c, cols, scale, load_c),
            8 => tile::<8>(kc, a, b, c, cols, scale, load_c),
            9 => tile::<9>(kc, a, b, c, cols, scale, load_c),
            10 => tile::<10>(kc, a, b, c, cols, scale, load_c),
            _ => tile::<11>(kc, a, b, c, cols, scale, load_c),
        }
    }
}

/// The B operand: f32, or 16-bit floats of a kind (widened exactly when packed).
#[derive(Clone, Copy)]
pub(crate) enum Rhs {
    F32(Strided<f32>),
    Half(Half, Strided<u16>),
}

/// How a parallel product splits Y (m×n): tasks own `nc` columns and, when there are too few
/// column blocks to give every thread two tasks or to split evenly over the threads, a share
/// of the rows (whole multiples of `row_step`).
#[derive(Clone, Copy)]
pub(super) struct Tasks {
    column_tasks: usize,
    nc: usize,
    pub rows_per_task: usize,
    count: usize,
}

impl Tasks {
    /// Columns in blocks of at most `nc`, all as wide (whole multiples of `col_step`, the last
    /// maybe narrower): n = 896 on 2 threads is 4 blocks of 224, not 3 of 256 and one of 128
    /// (one thread idle an eighth of the product).
    pub fn even((m, n): (usize, usize), nc: usize, col_step: usize, row_step: usize) -> Tasks {
        let even = n.div_ceil(n.div_ceil(nc).max(1)).next_multiple_of(col_step);
        Tasks::new((m, n), even.min(nc), row_step)
    }

    pub fn new((m, n): (usize, usize), nc: usize, row_step: usize) -> Tasks {
        let column_tasks = n.div_ceil(nc);
        let threads = rayon::current_num_threads();
        let most = m.div_ceil(row_step).max(1);
        let mut row_tasks = (2 * threads).div_ceil(column_tasks).min(most).max(1);
        // Whole rounds over the threads where the rows allow: 5 column blocks (n = 1280) on 2
        // threads left one idle for a fifth of the product; 10 tasks do not.
        while !(column_tasks * row_tasks).is_multiple_of(threads) && row_tasks < most.min(threads) {
            row_tasks += 1;
        }
        let rows_per_task = m.div_ceil(row_tasks).next_multiple_of(row_step);
        let count = column_tasks * m.div_ceil(rows_per_task);
        Tasks {
            column_tasks,
            nc,
            rows_per_task,
            count,
        }
    }

    /// Task `t`'s first column and row, and its columns: (j0, i0, cols).
    pub fn at(&self, t: usize, n: usize) -> (usize, usize, usize) {
        let j0 = t % self.column_tasks * self.nc;
        let i0 = (t / self.column_tasks) * self.rows_per_task;
        (j0, i0, self.nc.min(n - j0))
    }

    /// Every task's index, on the rayon pool.
    pub fn run(&self, work: impl Fn(usize) + Sync + Send) {
        use rayon::prelude::*;
        (0..self.count).into_par_iter().for_each(work);
    }
}
#[derive(Clone, Copy)]
struct SharedRhs(Rhs);
// SAFETY: B is only read, while the caller's borrow of it lasts (the call of `linear`).
unsafe impl Send for SharedRhs {}
unsafe impl Sync for SharedRhs {}

/// Y (m×n) = after(X (m×k) · Wᵀ + b), with W n×k row-major as f32 or 16-bit floats, split
/// over the rayon pool: tasks own [`NC`] columns of Y (each packs its columns of W once per
/// block of k for every row of X) and, when there are too few columns to keep every thread
/// busy, a share of the rows too. The bias and `after` are applied to each block of outputs
/// once its last depths are stored, while it is still in cache; Y is never zeroed first
/// (every output is stored before it is read).
///
/// # Safety
/// `isa` is one [`Simd::runnable`] returned; x holds m×k values, w (through `rhs`) n×k and b,
/// when given, n; `after` fits an m×n output ([`After::check`]).
pub(crate) unsafe fn linear(
    isa: Simd,
    x: &[f32],
    w: Rhs,
    b: Option<&[f32]>,
    dims: (usize, usize, usize),
    after: After,
) -> Vec<f32> {
    linear_for(isa, x, Weight::InPlace(SharedRhs(w)), b, dims, after)
}

/// [`linear`] for a weight held in a format the kernels do not pack (ggml blocks): each task
/// widens its own columns of W into f32 — `widen(j0, dst)` writes W's rows j0.. (dst.len() / k
/// of them; j0 and the count are whole groups of 8 rows, or reach n) — and multiplies them as
/// [`linear`] does. The widening runs on every thread, no f32 copy of all of W exists, and Y
/// is written once, `after` fused.
///
/// # Safety
/// As [`linear`], with `widen` writing every value of dst.
pub(crate) unsafe fn linear_widened(
    isa: Simd,
    x: &[f32],
    widen: &(dyn Fn(usize, &mut [f32]) + Sync),
    b: Option<&[f32]>,
    dims: (usize, usize, usize),
    after: After,
) -> Vec<f32> {
    linear_for(isa, x, Weight::Widened(widen), b, dims, after)
}

/// [`linear_on`] on `isa`'s kernel.
unsafe fn linear_for(
    isa: Simd,
    x: &[f32],
    w: Weight,
    b: Option<&[f32]>,
    dims: (usize, usize, usize),
    after: After,
) -> Vec<f32> {
    match isa {
        Simd::Avx512 => linear_on::<Avx512>(x, w, b, dims, after),
        Simd::Avx2 => linear_on::<super::gemm_avx2::Avx2>(x, w, b, dims, after),
    }
}

/// Where [`linear_on`]'s tasks read W.
#[derive(Clone, Copy)]
enum Weight<'a> {
    /// In place, through its strides (f32 or 16-bit floats).
    InPlace(SharedRhs),
    /// Widened by each task into f32, its own columns only ([`linear_widened`]).
    Widened(&'a (dyn Fn(usize, &mut [f32]) + Sync)),
}

/// [`linear`] on kernel K.
unsafe fn linear_on<K: Kernel>(
    x: &[f32],
    w: Weight,
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    after: After,
) -> Vec<f32> {
    if m == 0 || n == 0 {
        return Vec::new();
    }
    let mut y = Vec::<f32>::with_capacity(m * n);
    let tasks = Tasks::even((m, n), NC, K::NR, K::MR);
    let out = OutPtr(y.as_mut_ptr());
    tasks.run(move |task| {
        let (out, w) = (out, w);
        let (j0, i0, cols) = tasks.at(task, n);
        let rows = tasks.rows_per_task.min(m - i0);
        let mut wide = Vec::new();
        let rhs = match w {
            // SAFETY: columns j0.. of W are within it (the caller's sizes).
            Weight::InPlace(rhs) => unsafe { rhs.0.offset_cols(j0) },
            Weight::Widened(widen) => {
                wide.resize(cols * k, 0.0);
                widen(j0, &mut wide);
                Rhs::F32(Strided {
                    ptr: wide.as_ptr(),
                    col: k,
                    row: 1,
                })
            }
        };
        let finish = |i: usize, j: usize, stretch: &mut [f32]| {
            let (i, j) = (i0 + i, j0 + j);
            if let Some(b) = b {
                for (y, b) in stretch.iter_mut().zip(&b[j..]) {
                    *y += b;
                }
            }
            after.stretch(i, j, n, stretch);
        };
        // SAFETY: the task reads rows i0.. of X and columns j0.. of W (in bounds by the
        // caller's sizes, or its own widened copy of them) and writes only Y's rows
        // i0..i0+rows × columns j0..j0+cols.
        unsafe {
            product_on::<K>(
                (rows, cols, k),
                out.0.add(i0 * n + j0),
                n,
                Strided {
                    ptr: x.as_ptr().add(i0 * k),
                    col: 1,
                    row: k,
                },
                Operand::InPlace(rhs),
                1.0,
                Some(&finish),
            )
        }
    });
    // SAFETY: the tasks stored every one of Y's m×n values (their blocks tile it).
    y.set_len(m * n);
    y
}

/// What [`product_on`] calls on each stretch of a row of dst once it holds its final sums:
/// (row, column of its first value, the stretch), relative to dst's first value.
type Finish<'a> = &'a (dyn Fn(usize, usize, &mut [f32]) + Sync);

impl Rhs {
    /// The operand starting `j` columns further.
    unsafe fn offset_cols(self, j: usize) -> Rhs {
        match self {
            Rhs::F32(s) => Rhs::F32(Strided {
                ptr: s.ptr.add(j * s.col),
                ..s
            }),
            Rhs::Half(kind, s) => Rhs::Half(
                kind,
                Strided {
                    ptr: s.ptr.add(j * s.col),
                    ..s
                },
            ),
        }
    }
}

/// dst (m×n, rows `dst_row` apart) = scale · lhs (m×k) · rhs (k×n), on the calling thread,
/// `finish` called on each stretch of dst's rows once it holds its final values. lhs's rows
/// must be contiguous (`lhs.col == 1`); a packed rhs must have been packed for `isa` at k×n.
///
/// # Safety
/// `isa` is one [`Simd::runnable`] returned; every element the strides reach (m×k of lhs, k×n
/// of rhs, m×n of dst) must be in bounds, and dst must not overlap lhs or rhs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn product(
    isa: Simd,
    dims: (usize, usize, usize),
    dst: *mut f32,
    dst_row: usize,
    lhs: Strided,
    rhs: Operand,
    scale: f32,
    finish: Option<Finish>,
) {
    if let Operand::Packed(p) = rhs {
        assert!(
            p.isa == isa && (p.k, p.n) == (dims.2, dims.1),
            "a packed operand is used as it was packed"
        );
    }
    match isa {
        Simd::Avx512 => product_on::<Avx512>(dims, dst, dst_row, lhs, rhs, scale, finish),
        Simd::Avx2 => {
            use super::gemm_avx2::Avx2;
            product_on::<Avx2>(dims, dst, dst_row, lhs, rhs, scale, finish)
        }
    }
}

/// The right operand of a product: packed as the product goes, or once for several products.
#[derive(Clone, Copy)]
pub(crate) enum Operand<'a> {
    InPlace(Rhs),
    Packed(&'a PackedRhs),
}

/// A k×n right operand packed once ([`PackedRhs::new`]) for every product that reads it (the
/// attention's Kᵀ and V, read by each block of queries): its blocks of [`KC`] depths × [`NC`]
/// columns in the order the products visit them, each padded to whole panels.
pub(crate) struct PackedRhs {
    lines: Vec<crate::tensor::CacheLine>,
    isa: Simd,
    k: usize,
    n: usize,
    /// Columns of every KC-deep row of blocks, padded to whole panels.
    padded_n: usize,
}

impl PackedRhs {
    /// Packs k×n of `rhs` for products on `isa`.
    ///
    /// # Safety
    /// `isa` is one [`Simd::runnable`] returned; every element of the k×n operand is in bounds.
    pub(crate) unsafe fn new(isa: Simd, rhs: Rhs, (k, n): (usize, usize)) -> PackedRhs {
        match isa {
            Simd::Avx512 => Self::pack::<Avx512>(isa, rhs, (k, n)),
            Simd::Avx2 => Self::pack::<super::gemm_avx2::Avx2>(isa, rhs, (k, n)),
        }
    }

    unsafe fn pack<K: Kernel>(isa: Simd, rhs: Rhs, (k, n): (usize, usize)) -> PackedRhs {
        let padded_n = n / NC * NC + (n % NC).next_multiple_of(K::NR);
        let mut packed = PackedRhs {
            lines: cache_lines(2 * k * padded_n),
            isa,
            k,
            n,
            padded_n,
        };
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for j0 in (0..n).step_by(NC) {
                let nc = NC.min(n - j0);
                let (at, len) = packed.block::<K>(k0, kc, j0, nc);
                let values = bytemuck::cast_slice_mut::<_, f32>(&mut packed.lines);
                K::pack_b(rhs, k0, kc, j0, nc, &mut values[at..at + len]);
            }
        }
        packed
    }

    /// Where the block of depths k0..k0+kc × columns j0..j0+nc starts, and its length.
    fn block<K: Kernel>(&self, k0: usize, kc: usize, j0: usize, nc: usize) -> (usize, usize) {
        (
            k0 * self.padded_n + kc * j0,
            kc * nc.next_multiple_of(K::NR),
        )
    }
}

/// [`product`] on kernel K, `finish` called on each block of dst's rows once it holds its
/// final sums (dst need not be initialised).
#[allow(clippy::too_many_arguments)]
unsafe fn product_on<K: Kernel>(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_row: usize,
    lhs: Strided,
    rhs: Operand,
    scale: f32,
    finish: Option<Finish>,
) {
    assert_eq!(lhs.col, 1, "gemm::product reads rows of lhs in place");
    if m == 0 || n == 0 {
        return;
    }
    let row = |i: usize, j: usize, len: usize| {
        std::slice::from_raw_parts_mut(dst.add(i * dst_row + j), len)
    };
    if k == 0 {
        for i in 0..m {
            std::ptr::write_bytes(dst.add(i * dst_row), 0, n);
            if let Some(finish) = finish {
                finish(i, 0, row(i, 0, n));
            }
        }
        return;
    }
    // On cache-line boundaries, so no 64-byte load of a packed row straddles two lines.
    let b_len = match rhs {
        Operand::InPlace(_) => KC.min(k) * NC.min(n).next_multiple_of(K::NR),
        Operand::Packed(_) => 0,
    };
    let a_len = KC.min(k) * K::MC.min(m).next_multiple_of(K::MR) + PACK_SLACK;
    let (mut b_lines, mut a_lines) = (cache_lines(2 * b_len), cache_lines(2 * a_len));
    let b_buffer = &mut bytemuck::cast_slice_mut::<_, f32>(&mut b_lines)[..b_len];
    let a_pack = &mut bytemuck::cast_slice_mut::<_, f32>(&mut a_lines)[..a_len];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let load_c = k0 > 0;
        for j0 in (0..n).step_by(NC) {
            let nc = NC.min(n - j0);
            let b_pack: &[f32] = match rhs {
                Operand::InPlace(rhs) => {
                    K::pack_b(rhs, k0, kc, j0, nc, b_buffer);
                    &*b_buffer
                }
                Operand::Packed(p) => {
                    let (at, len) = p.block::<K>(k0, kc, j0, nc);
                    &bytemuck::cast_slice::<_, f32>(&p.lines)[at..at + len]
                }
            };
            for i0 in (0..m).step_by(K::MC) {
                let mc = K::MC.min(m - i0);
                let tiles = mc.div_ceil(K::MR);
                for t in 0..tiles {
                    let rows = K::MR.min(mc - t * K::MR);
                    let a = lhs.ptr.add((i0 + t * K::MR) * lhs.row + k0);
                    let to = a_pack.as_mut_ptr().add(t * kc * K::MR);
                    K::pack_a(a, lhs.row, rows, kc, to);
                }
                // Each panel of B stays in L1 while the block's tiles of A pass it from L2.
                let panels = b_pack.chunks(kc * K::NR).take(nc.div_ceil(K::NR));
                for (p, b_panel) in panels.enumerate() {
                    let cols = K::NR.min(nc - p * K::NR);
                    let b = b_panel.as_ptr();
                    for t in 0..tiles {
                        let rows = K::MR.min(mc - t * K::MR);
                        let c = (
                            dst.add((i0 + t * K::MR) * dst_row + j0 + p * K::NR),
                            dst_row,
                        );
                        let a = a_pack.as_ptr().add(t * kc * K::MR);
                        K::tile(rows, kc, a, b, c, cols, scale, load_c);
                    }
                }
                // The block's outputs are final after the last depths: finished while they are
                // in L2 (MC × NC values).
                if let Some(finish) = finish.filter(|_| k0 + kc == k) {
                    for i in i0..i0 + mc {
                        finish(i, j0, row(i, j0, nc));
                    }
                }
            }
        }
    }
}

/// [`Kernel::pack_a`] for [`Avx512`]: 16 depths of MR rows at a time through a register transpose, so the
/// tile's loop broadcasts at constant offsets (reading A's rows in place, the loop spent its
/// time stepping MR row pointers).
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(a: *const f32, a_row: usize, rows: usize, kc: usize, dst: &mut [f32]) {
    let main = kc - kc % 16;
    let lanes: __mmask16 = (1 << MR) - 1;
    for kk0 in (0..main).step_by(16) {
        let regs: [__m512; 16] = std::array::from_fn(|r| {
            if r < rows {
                _mm512_loadu_ps(a.add(r * a_row + kk0))
            } else {
                _mm512_setzero_ps()
            }
        });
        for (kk, v) in transpose16(regs).into_iter().enumerate() {
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add((kk0 + kk) * MR), lanes, v);
        }
    }
    for kk in main..kc {
        for r in 0..MR {
            dst[kk * MR + r] = if r < rows {
                *a.add(r * a_row + kk)
            } else {
                0.0
            };
        }
    }
}

/// [`Kernel::pack_b`] for [`Avx512`]. Weights (`Wᵀ`: depths contiguous) go through 16×16
/// register transposes; rows of columns (`V`: columns contiguous) are copied; other strides
/// element by element.
#[target_feature(enable = "avx512f,f16c")]
unsafe fn pack_b(rhs: Rhs, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
    let bf16 = |v: u16| f32::from_bits((v as u32) << 16);
    let f16 = |v: u16| half::f16::from_bits(v).to_f32();
    match rhs {
        Rhs::F32(s) if s.row == 1 => {
            let load = |p: *const f32| _mm512_loadu_ps(p);
            pack_b_transposed(s, k0, kc, j0, nc, dst, (load, |v| v))
        }
        Rhs::Half(Half::Bf16, s) if s.row == 1 => {
            let load = |p: *const u16| {
                let h = _mm256_loadu_si256(p as *const __m256i);
                _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
            };
            pack_b_transposed(s, k0, kc, j0, nc, dst, (load, bf16))
        }
        Rhs::Half(Half::F16, s) if s.row == 1 => {
            let load = |p: *const u16| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            pack_b_transposed(s, k0, kc, j0, nc, dst, (load, f16))
        }
        Rhs::F32(s) => pack_b_with::<NR, _>(s, k0, kc, j0, nc, dst, |v| v),
        Rhs::Half(Half::Bf16, s) => pack_b_with::<NR, _>(s, k0, kc, j0, nc, dst, bf16),
        Rhs::Half(Half::F16, s) => pack_b_with::<NR, _>(s, k0, kc, j0, nc, dst, f16),
    }
}

/// [`pack_b`] for an operand whose depths are contiguous (`s.row == 1`): 16 columns × 16
/// depths loaded as 16 registers (`load16` widens 16 values at a pointer), transposed, stored
/// as 16 depths of 16 columns; the depths past the last whole 16 element by element (`widen`).
#[target_feature(enable = "avx512f,f16c")]
unsafe fn pack_b_transposed<T: Copy>(
    s: Strided<T>,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
    (load16, widen): (impl Fn(*const T) -> __m512, impl Fn(T) -> f32),
) {
    debug_assert_eq!(s.row, 1);
    let main = kc - kc % 16;
    for (p, panel) in dst.chunks_mut(kc * NR).take(nc.div_ceil(NR)).enumerate() {
        for half in 0..NR / 16 {
            let c0 = p * NR + half * 16;
            let col = |c: usize| s.ptr.add((j0 + c0 + c) * s.col + k0);
            let live = nc.saturating_sub(c0).min(16);
            for kk0 in (0..main).step_by(16) {
                let rows: [__m512; 16] = std::array::from_fn(|c| {
                    if c < live {
                        load16(col(c).add(kk0))
                    } else {
                        _mm512_setzero_ps()
                    }
                });
                for (kk, v) in transpose16(rows).into_iter().enumerate() {
                    _mm512_storeu_ps(panel.as_mut_ptr().add((kk0 + kk) * NR + half * 16), v);
                }
            }
            for c in 0..16 {
                for kk in main..kc {
                    panel[kk * NR + half * 16 + c] = if c < live {
                        widen(*col(c).add(kk))
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// The 16×16 transpose: output register i holds lane i of every input register, in order.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    // Pairs of rows interleaved within each 128-bit lane L: lo = [a(4L) b(4L) a(4L+1) b(4L+1)],
    // hi = [a(4L+2) b(4L+2) a(4L+3) b(4L+3)].
    let lo: [__m512; 8] = std::array::from_fn(|i| _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]));
    let hi: [__m512; 8] = std::array::from_fn(|i| _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]));
    // Per group g of four rows, q = 0..3: lane L holds rows 4g..4g+3 at column 4L + q.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (l0, l1, h0, h1) = (lo[2 * g], lo[2 * g + 1], hi[2 * g], hi[2 * g + 1]);
        u[4 * g] = ps(_mm512_unpacklo_pd(pd(l0), pd(l1)));
        u[4 * g + 1] = ps(_mm512_unpackhi_pd(pd(l0), pd(l1)));
        u[4 * g + 2] = ps(_mm512_unpacklo_pd(pd(h0), pd(h1)));
        u[4 * g + 3] = ps(_mm512_unpackhi_pd(pd(h0), pd(h1)));
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for q in 0..4 {
        // Groups 0 and 1 (x), 2 and 3 (y): even lanes 0, 2 and odd lanes 1, 3 of each.
        let x_even = _mm512_shuffle_f32x4::<0x88>(u[q], u[4 + q]);
        let x_odd = _mm512_shuffle_f32x4::<0xDD>(u[q], u[4 + q]);
        let y_even = _mm512_shuffle_f32x4::<0x88>(u[8 + q], u[12 + q]);
        let y_odd = _mm512_shuffle_f32x4::<0xDD>(u[8 + q], u[12 + q]);
        out[q] = _mm512_shuffle_f32x4::<0x88>(x_even, y_even);
        out[8 + q] = _mm512_shuffle_f32x4::<0xDD>(x_even, y_even);
        out[4 + q] = _mm512_shuffle_f32x4::<0x88>(x_odd, y_odd);
        out[12 + q] = _mm512_shuffle_f32x4::<0xDD>(x_odd, y_odd);
    }
    out
}

/// [`Kernel::pack_b`] for any strides and panel width `NR`, element by element (`widen`
/// each): the attention's V, whose columns are contiguous.
#[inline(always)]
pub(super) unsafe fn pack_b_with<const NR: usize, T: Copy>(
    s: Strided<T>,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
    widen: impl Fn(T) -> f32,
) {
    for (p, panel) in dst.chunks_mut(kc * NR).take(nc.div_ceil(NR)).enumerate() {
        for kk in 0..kc {
            let depth = s.ptr.add((k0 + kk) * s.row);
            for c in 0..NR {
                let j = p * NR + c;
                panel[kk * NR + c] = if j < nc {
                    widen(*depth.add((j0 + j) * s.col))
                } else {
                    0.0
                };
            }
        }
    }
}

/// [`Kernel::tile`] for [`Avx512`] on R ≤ MR rows (a_tile `[kk][MR]`, b_panel `[kk][NR]`).
/// The accumulators are
/// indexed by constants only, so they stay in registers.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    (c, c_row): (*mut f32, usize),
    cols: usize,
    scale: f32,
    load_c: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(kk * NR));
        let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(kk * MR + r));
            acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
        }
    }
    let mask = |from: usize| -> __mmask16 {
        let n = cols.saturating_sub(from).min(16);
        ((1u32 << n) - 1) as __mmask16
    };
    let (m0, m1) = (mask(0), mask(16));
    let s = _mm512_set1_ps(scale);
    for (r, acc) in acc.iter().enumerate() {
        let p = c.add(r * c_row);
        // Masked: the lanes past `cols` (maybe past the allocation) are neither read nor written.
        let p1 = p.wrapping_add(16);
        let (c0, c1) = if load_c {
            (_mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, p1))
        } else {
            (_mm512_setzero_ps(), _mm512_setzero_ps())
        };
        _mm512_mask_storeu_ps(p, m0, _mm512_fmadd_ps(acc[0], s, c0));
        _mm512_mask_storeu_ps(p1, m1, _mm512_fmadd_ps(acc[1], s, c1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::linear::linear_reference;
    use crate::rand::SeededRng;

    /// Every element of Y in exactly one task, whatever the shape, the tasks in whole rounds
    /// over the pool's threads where the rows allow (n = 1280 on 2 threads: 10 tasks, not 5),
    /// and columns split evenly (n = 896: 4 blocks of 224, not 256, 256, 256 and 128).
    #[test]
    fn tasks_cover_y_once_in_whole_rounds() {
        let threads = rayon::current_num_threads();
        for (m, n) in [
            (1, 1),
            (13, 300),
            (1024, 1280),
            (1025, 3072),
            (20, 256),
            (7, 5000),
            (638, 896),
        ] {
            let tasks = Tasks::even((m, n), NC, 16, 6);
            let mut seen = vec![0u8; n * m];
            for t in 0..tasks.count {
                let (j0, i0, cols) = tasks.at(t, n);
                assert!(cols <= NC && (j0 + cols == n || cols.is_multiple_of(16)));
                assert!(n != 896 || cols == 224, "{m}×{n}: {cols} columns");
                for i in i0..(i0 + tasks.rows_per_task).min(m) {
                    for j in j0..j0 + cols {
                        seen[i * n + j] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&s| s == 1), "{m}×{n}: every element once");
            if m >= 6 * threads && (m, n) == (1024, 1280) {
                assert!(
                    tasks.count.is_multiple_of(threads),
                    "{m}×{n}: {} tasks",
                    tasks.count
                );
            }
        }
    }

    #[test]
    fn transpose16_swaps_rows_and_lanes() {
        if !crate::cpu::avx512_for_tests() {
            return;
        }
        let m: Vec<f32> = (0..256).map(|v| v as f32).collect();
        // SAFETY: AVX-512F checked; 16 loads of 16 values within m.
        let t = unsafe {
            transpose16(std::array::from_fn(|r| {
                _mm512_loadu_ps(m.as_ptr().add(16 * r))
            }))
        };
        for (i, v) in t.iter().enumerate() {
            let mut lanes = [0.0f32; 16];
            // SAFETY: as above; 16 lanes into 16 values.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *v) };
            let want: Vec<f32> = (0..16).map(|r| m[16 * r + i]).collect();
            assert_eq!(lanes.to_vec(), want, "output register {i}");
        }
    }

    /// Y = X·Wᵀ + b against the f64 oracle for f32, bf16 and f16 weights (the 16-bit ones
    /// compared on their widened values, so only the summation order differs: 2e-6·k + 1e-6
    /// for values ≤ 1, as `linear`'s tests), on shapes that cross every block edge — MR rows
    /// (12), NR columns (32), KC depths (256), NC columns (256), the 16-wide transposes — with
    /// junk after x and w, and no depth at all; each also through GELU and a scaled residual
    /// (fused: against the reference's output through [`After::rows`]).
    #[test]
    fn linear_matches_the_reference_across_block_edges() {
        let mut rng = SeededRng::new(21);
        for &(m, n, k) in &[
            (1, 1, 1),
            (12, 32, 256),
            (13, 33, 257),
            (11, 31, 15),
            (25, 300, 17),
            (97, 257, 513),
            (40, 520, 300),
            (5, 7, 0),
        ] {
            let x = rng.vec(m * k + 7, 1.0);
            let wf = rng.vec(n * k + 7, 1.0);
            let b = rng.vec(n, 1.0);
            for kind in [None, Some(Half::Bf16), Some(Half::F16)] {
                let (bits, widened): (Vec<u16>, Vec<f32>) = match kind {
                    Some(kind) => wf
                        .iter()
                        .map(|&v| kind.round(v))
                        .map(|b| (b, kind.widen(b)))
                        .unzip(),
                    None => (Vec::new(), wf.clone()),
                };
                let rhs = match kind {
                    None => Rhs::F32(Strided {
                        ptr: widened.as_ptr(),
                        col: k,
                        row: 1,
                    }),
                    Some(kind) => Rhs::Half(
                        kind,
                        Strided {
                            ptr: bits.as_ptr(),
                            col: k,
                            row: 1,
                        },
                    ),
                };
                for (bias, isa) in [None, Some(b.as_slice())].into_iter().flat_map(|b| {
                    crate::cpu::simd_for_tests()
                        .into_iter()
                        .map(move |isa| (b, isa))
                }) {
                    let reference = linear_reference(&x, &widened, bias, m, n, k);
                    let residual = rng.vec(m * n, 1.0);
                    let gamma = rng.vec(n, 1.0);
                    let afters = [
                        After::Nothing,
                        After::Gelu,
                        After::Residual {
                            residual: &residual,
                            gamma: Some(&gamma),
                        },
                    ];
                    for after in afters {
                        let mut want = reference.clone();
                        after.rows(&mut want, n);
                        // SAFETY: the CPU runs `isa`; x, w and b hold m×k, n×k and n values,
                        // the residual m×n and gamma n.
                        let got = unsafe { linear(isa, &x, rhs, bias, (m, n, k), after) };
                        assert_eq!(got.len(), m * n);
                        // GELU's slope and |γ| are at most 1.13 and 1: the product's tolerance.
                        let tol = 2.3e-6 * k as f32 + 1e-6;
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - w).abs() <= tol,
                                "{isa:?} {kind:?} {m}×{n}×{k} bias {} {after:?}: element {i}: \
                                 {g} vs {w}",
                                bias.is_some()
                            );
                        }
                    }
                }
            }
        }
    }

    /// The attention products' forms: lhs rows `lda` apart, rhs read as Kᵀ (depths contiguous)
    /// and as V (columns contiguous), packed as the product goes or once ([`PackedRhs`]), a
    /// scale, dst rows apart with junk between them kept, and a finish scaling each row.
    /// Oracle: f64 sums; tolerance as above.
    #[test]
    fn strided_products_match_the_reference() {
        let mut rng = SeededRng::new(22);
        for &(m, n, k) in &[(17, 40, 24), (33, 64, 300), (5, 3, 2)] {
            let (lda, ldb, ldc) = (k + 3, 2 * (k.max(n)) + 1, n + 5);
            let a = rng.vec(m * lda, 1.0);
            let b = rng.vec(k.max(n) * ldb, 1.0);
            let scale = 0.125;
            // rhs as Kᵀ: element (kk, j) at b[j·ldb + kk]; as V: at b[kk·ldb + j].
            for transposed in [true, false] {
                let at = |kk: usize, j: usize| {
                    if transposed {
                        j * ldb + kk
                    } else {
                        kk * ldb + j
                    }
                };
                for (packed, isa) in [false, true].into_iter().flat_map(|packed| {
                    crate::cpu::simd_for_tests()
                        .into_iter()
                        .map(move |isa| (packed, isa))
                }) {
                    let start = rng.vec(m * ldc, 1.0);
                    let mut dst = start.clone();
                    let rhs = Strided {
                        ptr: b.as_ptr(),
                        col: if transposed { ldb } else { 1 },
                        row: if transposed { 1 } else { ldb },
                    };
                    let lhs = Strided {
                        ptr: a.as_ptr(),
                        col: 1,
                        row: lda,
                    };
                    let row_scale = |i: usize| 1.0 + i as f32 / 4.0;
                    let finish = |i: usize, _: usize, stretch: &mut [f32]| {
                        stretch.iter_mut().for_each(|v| *v *= row_scale(i))
                    };
                    // SAFETY: the CPU runs `isa`; every index the strides reach is in bounds
                    // (a: m rows of lda ≥ k; b: ldb ≥ 2·max(k, n); dst: m rows of ldc ≥ n).
                    unsafe {
                        let once = PackedRhs::new(isa, Rhs::F32(rhs), (k, n));
                        let rhs = match packed {
                            true => Operand::Packed(&once),
                            false => Operand::InPlace(Rhs::F32(rhs)),
                        };
                        let dims = (m, n, k);
                        let dst = dst.as_mut_ptr();
                        product(isa, dims, dst, ldc, lhs, rhs, scale, Some(&finish))
                    };
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = dst[i * ldc + j];
                            if j >= n {
                                assert_eq!(got, start[i * ldc + j], "junk at ({i}, {j}) kept");
                                continue;
                            }
                            let dot: f64 = (0..k)
                                .map(|kk| a[i * lda + kk] as f64 * b[at(kk, j)] as f64)
                                .sum();
                            let want = row_scale(i) as f64 * scale as f64 * dot;
                            assert!(
                                (got as f64 - want).abs() <= 2e-6 * k as f64 + 1e-6,
                                "{isa:?} {m}×{n}×{k} transposed {transposed} packed {packed} \
                                 ({i}, {j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
