//! The exact block kernels (`Activations::F32`): f32 activations, every weight widened to f32
//! exactly as `crate::quant`'s dequantizers do, 16 values per AVX-512 instruction; 4- and
//! 5-bit values through per-block register tables (`vpermps`). The GPU block kernels' twin.

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
        let lo =
            _mm512_mask_permutexvar_ps(_mm512_permutexvar_ps(q, t_low), qh as __mmask16, q, t_high);
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
                    let w =
                        _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(q, thirty_two)));
                    let at = 256 * b + 128 * half + 32 * s + 16 * c;
                    acc[s] = _mm512_fmadd_ps(x16(x, at), w, acc[s]);
                }
            }
        }
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(sum)
}
