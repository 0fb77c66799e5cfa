//! The AVX2 + FMA micro-kernel of `super::gemm` (CPUs without AVX-512: AMD before Zen 4, most
//! laptops): tiles of 6 rows × 16 columns, 12 accumulator registers of 8 lanes, two registers
//! of B and one broadcast of A per step — 15 of the 16 registers, BLIS's shape for Haswell and
//! Zen. Packing moves 8 × 8 blocks through a register transpose; bf16 and f16 weights are
//! widened exactly as they are packed.

use super::gemm::{pack_b_with, Kernel, Rhs, PACK_SLACK};
use super::linear::Strided;
use crate::tensor::Half;
use std::arch::x86_64::*;

/// The AVX2 kernel (`super::Simd::Avx2`).
pub(crate) struct Avx2;

/// Rows of A per tile.
const MR: usize = 6;
/// Columns of B per tile (two 8-lane registers).
const NR: usize = 16;

impl Kernel for Avx2 {
    const MR: usize = MR;
    const NR: usize = NR;
    /// 72 rows: a block of 72 KiB at depth 256, in L2 beside B's 256 KiB block.
    const MC: usize = 12 * MR;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn pack_a(a: *const f32, a_row: usize, rows: usize, kc: usize, dst: *mut f32) {
        const _: () = assert!(PACK_SLACK >= 8 - MR);
        let main = kc - kc % 8;
        for kk0 in (0..main).step_by(8) {
            let regs: [__m256; 8] = std::array::from_fn(|r| {
                if r < rows {
                    _mm256_loadu_ps(a.add(r * a_row + kk0))
                } else {
                    _mm256_setzero_ps()
                }
            });
            // Depth kk's 6 rows, then 2 zeros that the next depth's store overwrites (or the
            // slack after the tile takes).
            for (kk, v) in transpose8(regs).into_iter().enumerate() {
                _mm256_storeu_ps(dst.add((kk0 + kk) * MR), v);
            }
        }
        for kk in main..kc {
            for r in 0..MR {
                *dst.add(kk * MR + r) = if r < rows {
                    *a.add(r * a_row + kk)
                } else {
                    0.0
                };
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pack_b(rhs: Rhs, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        let bf16 = |v: u16| f32::from_bits((v as u32) << 16);
        let f16 = |v: u16| half::f16::from_bits(v).to_f32();
        match rhs {
            Rhs::F32(s) if s.row == 1 => {
                let load = |p: *const f32| _mm256_loadu_ps(p);
                pack_b_transposed(s, k0, kc, j0, nc, dst, (load, |v| v))
            }
            Rhs::Half(Half::Bf16, s) if s.row == 1 => {
                let load = |p: *const u16| {
                    let h = _mm_loadu_si128(p as *const __m128i);
                    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                };
                pack_b_transposed(s, k0, kc, j0, nc, dst, (load, bf16))
            }
            Rhs::Half(Half::F16, s) if s.row == 1 => {
                let load = |p: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
                pack_b_transposed(s, k0, kc, j0, nc, dst, (load, f16))
            }
            Rhs::F32(s) if s.col == 1 => pack_b_rows(s, k0, kc, j0, nc, dst),
            Rhs::F32(s) => pack_b_with::<NR, _>(s, k0, kc, j0, nc, dst, |v| v),
            Rhs::Half(Half::Bf16, s) => pack_b_with::<NR, _>(s, k0, kc, j0, nc, dst, bf16),
            Rhs::Half(Half::F16, s) => pack_b_with::<NR, _>(s, k0, kc, j0, nc, dst, f16),
        }
    }

    #[target_feature(enable = "avx2,fma")]
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
            _ => tile::<5>(kc, a, b, c, cols, scale, load_c),
        }
    }
}

/// [`Kernel::pack_b`] for an operand whose depths are contiguous (`s.row == 1`: weights, Kᵀ):
/// 8 columns × 8 depths loaded as 8 registers (`load8` widens 8 values at a pointer),
/// transposed, stored as 8 depths of 8 columns; the depths past the last whole 8 element by
/// element (`widen`).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_b_transposed<T: Copy>(
    s: Strided<T>,
    k0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
    (load8, widen): (impl Fn(*const T) -> __m256, impl Fn(T) -> f32),
) {
    debug_assert_eq!(s.row, 1);
    let main = kc - kc % 8;
    for (p, panel) in dst.chunks_mut(kc * NR).take(nc.div_ceil(NR)).enumerate() {
        for half in 0..NR / 8 {
            let c0 = p * NR + half * 8;
            let col = |c: usize| s.ptr.add((j0 + c0 + c) * s.col + k0);
            let live = nc.saturating_sub(c0).min(8);
            for kk0 in (0..main).step_by(8) {
                let regs: [__m256; 8] = std::array::from_fn(|c| {
                    if c < live {
                        load8(col(c).add(kk0))
                    } else {
                        _mm256_setzero_ps()
                    }
                });
                for (kk, v) in transpose8(regs).into_iter().enumerate() {
                    _mm256_storeu_ps(panel.as_mut_ptr().add((kk0 + kk) * NR + half * 8), v);
                }
            }
            for c in 0..8 {
                for kk in main..kc {
                    panel[kk * NR + half * 8 + c] = if c < live {
                        widen(*col(c).add(kk))
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// [`Kernel::pack_b`] for f32 columns that are contiguous (`s.col == 1`: the attention's V):
/// each depth's 16 columns copied as two registers; a last panel narrower than 16 element by
/// element.
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b_rows(s: Strided, k0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
    debug_assert_eq!(s.col, 1);
    let whole = nc / NR;
    for (p, panel) in dst.chunks_mut(kc * NR).take(whole).enumerate() {
        for kk in 0..kc {
            let src = s.ptr.add((k0 + kk) * s.row + j0 + p * NR);
            let out = panel.as_mut_ptr().add(kk * NR);
            _mm256_storeu_ps(out, _mm256_loadu_ps(src));
            _mm256_storeu_ps(out.add(8), _mm256_loadu_ps(src.add(8)));
        }
    }
    if !nc.is_multiple_of(NR) {
        let rest = Strided {
            ptr: s.ptr.add(whole * NR),
            ..s
        };
        let tail = &mut dst[whole * kc * NR..];
        pack_b_with::<NR, _>(rest, k0, kc, j0, nc - whole * NR, tail, |v| v);
    }
}

/// The 8×8 transpose: output register i holds lane i of every input register, in order.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    // Pairs of rows interleaved within each 128-bit half: t[2i] = [a0 b0 a1 b1 | a4 b4 a5 b5],
    // t[2i+1] = [a2 b2 a3 b3 | a6 b6 a7 b7] for rows a = r[2i], b = r[2i+1].
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // Four rows per register: u = [a0 b0 c0 d0 | a4 b4 c4 d4], … for rows a..d (then e..h).
    let mut u = [_mm256_setzero_ps(); 8];
    for g in 0..2 {
        let (lo, hi) = (4 * g, 4 * g + 1);
        let (lo2, hi2) = (4 * g + 2, 4 * g + 3);
        u[4 * g] = _mm256_shuffle_ps::<0x44>(t[lo], t[lo2]);
        u[4 * g + 1] = _mm256_shuffle_ps::<0xEE>(t[lo], t[lo2]);
        u[4 * g + 2] = _mm256_shuffle_ps::<0x44>(t[hi], t[hi2]);
        u[4 * g + 3] = _mm256_shuffle_ps::<0xEE>(t[hi], t[hi2]);
    }
    // Halves joined: column q (q < 4) from the low halves of rows a..d and e..h, q + 4 from
    // the high halves.
    let mut out = [_mm256_setzero_ps(); 8];
    for q in 0..4 {
        out[q] = _mm256_permute2f128_ps::<0x20>(u[q], u[4 + q]);
        out[4 + q] = _mm256_permute2f128_ps::<0x31>(u[q], u[4 + q]);
    }
    out
}

/// [`Kernel::tile`] for [`Avx2`] on R ≤ MR rows (a_tile `[kk][MR]`, b_panel `[kk][NR]`). The
/// accumulators are indexed by constants only, so they stay in registers.
#[target_feature(enable = "avx2,fma")]
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
    // C's rows come from memory (a product's output is far larger than L2); asked for now, they
    // arrive while the loop runs instead of stalling the stores after it.
    for r in 0..R {
        let p = c.add(r * c_row);
        if load_c {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.add(cols - 1) as *const i8);
        } else {
            _mm_prefetch::<_MM_HINT_ET0>(p as *const i8);
            _mm_prefetch::<_MM_HINT_ET0>(p.add(cols - 1) as *const i8);
        }
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for kk in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(kk * NR));
        let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(kk * MR + r));
            acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
        }
    }
    let s = _mm256_set1_ps(scale);
    for (r, acc) in acc.iter().enumerate() {
        let p = c.add(r * c_row);
        if cols == NR {
            let (c0, c1) = if load_c {
                (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
            } else {
                (_mm256_setzero_ps(), _mm256_setzero_ps())
            };
            _mm256_storeu_ps(p, _mm256_fmadd_ps(acc[0], s, c0));
            _mm256_storeu_ps(p.add(8), _mm256_fmadd_ps(acc[1], s, c1));
        } else {
            // A last panel narrower than 16: the columns past `cols` (maybe past the
            // allocation) are neither read nor written.
            let mut lanes = [0.0f32; NR];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc[1]);
            for (j, v) in lanes.iter().enumerate().take(cols) {
                let base = if load_c { *p.add(j) } else { 0.0 };
                *p.add(j) = v.mul_add(scale, base);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose8_swaps_rows_and_lanes() {
        if !crate::cpu::Simd::runnable().contains(&crate::cpu::Simd::Avx2) {
            return; // no x86-64 CPU with these products lacks AVX2; `gemm`'s tests say so
        }
        let m: Vec<f32> = (0..64).map(|v| v as f32).collect();
        // SAFETY: AVX2 checked; 8 loads of 8 values within m, 8 stores of 8 into lanes.
        let t = unsafe {
            transpose8(std::array::from_fn(|r| {
                _mm256_loadu_ps(m.as_ptr().add(8 * r))
            }))
        };
        for (i, v) in t.iter().enumerate() {
            let mut lanes = [0.0f32; 8];
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *v) };
            let want: Vec<f32> = (0..8).map(|r| m[8 * r + i]).collect();
            assert_eq!(lanes.to_vec(), want, "output register {i}");
        }
    }
}
