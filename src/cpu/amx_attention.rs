//! Attention on AMX tiles for `--cpu-products bf16`: the two products of every (group, head)
//! — S = Q·Kᵀ and O = P·V — multiply bf16-rounded operands and sum in f32 (`tdpbf16ps`), as
//! PyTorch's bf16 attention does on this CPU; the scale, the softmax and P's normalisation are
//! f32. The semantics are `super::attention`'s, with Q, K, P and V rounded to bf16 (nearest,
//! ties to even) where they enter a product.
//!
//! Each (group, head) is one task on the rayon pool, and runs 32 queries at a time: their
//! scores against every key (32 × kv_len f32) and the rounded probabilities stay in L2 between
//! the two products, so no kv_len² matrix is ever written. K is packed once per task as the
//! first product's B tiles (a key is a column, as a weight row is in `amx::linear`); V as the
//! second's, each tile row two consecutive keys' values interleaved (the VNNI depth pairs).

use super::amx::{pack_tiles, panel, round_row, with_tiles, Acc, TK};
use super::kv_attention::KvGeometry;
use super::threads::OutPtr;
use crate::ops::{AttnGeometry, Operand};
use crate::tensor::{cache_lines, CacheLine};
use std::arch::x86_64::*;

/// Queries per step: two groups of 16 tile rows.
const QB: usize = 32;

/// Writes the attention output into `out` at the places `g.out` names, every product on AMX
/// tiles over bf16-rounded operands.
///
/// # Safety
/// `super::amx::available()` must have returned true.
pub(crate) unsafe fn attention(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], g: &AttnGeometry) {
    use rayon::prelude::*;
    let (heads, hd) = (g.heads, g.head_dim);
    if g.groups == 0 || heads == 0 || hd == 0 || g.q_len == 0 || g.kv_len == 0 {
        // Nothing to write, or a softmax over no keys, which the f32 paths leave at 0.
        return;
    }
    g.assert_within((q.len(), k.len(), v.len(), out.len()));
    let out = OutPtr(out.as_mut_ptr());
    (0..g.groups * heads).into_par_iter().for_each(move |task| {
        let out = out;
        let (group, h) = (task / heads, task % heads);
        let at = |o: &Operand| (o.at(group, 0, h, hd), o.row_stride);
        let view = Head {
            q: at(&g.q),
            k: at(&g.k),
            v: at(&g.v),
            out: at(&g.out),
            lens: (g.q_len, g.kv_len, hd),
            scale: g.scale,
            causal_from: None,
        };
        // SAFETY: AMX granted (the caller's contract); every read and write is within the
        // operands (asserted above), and this task writes only its (group, head)'s output.
        unsafe { head(q, k, v, out.0, &view) }
    });
}

/// Causal grouped-query attention over a KV cache (`super::kv_attention::causal_attention`'s
/// semantics: query row r sits at `g.position + r` and sees cache rows up to it), every
/// product on AMX tiles over bf16-rounded operands: a prefill's attention in
/// `--cpu-products bf16`. Returns rows of heads · head_dim.
///
/// # Safety
/// `super::amx::available()` must have returned true.
pub(crate) unsafe fn causal(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    g: &KvGeometry,
) -> Vec<f32> {
    use rayon::prelude::*;
    let rows = super::kv_attention::check(q, k_cache, v_cache, g);
    let (heads, d) = (g.heads, g.head_dim);
    let (qw, kw, group) = (heads * d, g.kv_heads * d, heads / g.kv_heads);
    let mut out = vec![0.0f32; rows * qw];
    if rows == 0 {
        return out;
    }
    let ptr = OutPtr(out.as_mut_ptr());
    (0..heads).into_par_iter().for_each(move |h| {
        let ptr = ptr;
        let kv = h / group;
        let view = Head {
            q: (h * d, qw),
            k: (kv * d, kw),
            v: (kv * d, kw),
            out: (h * d, qw),
            lens: (rows, g.position + rows, d),
            scale: 1.0 / (d as f32).sqrt(),
            causal_from: Some(g.position),
        };
        // SAFETY: AMX granted (the caller's contract); `check` bounds the reads (query rows
        // 0..rows, cache rows 0..position + rows); this task writes only head h's columns.
        unsafe { head(q, k_cache, v_cache, ptr.0, &view) }
    });
    out
}

/// One head's operands: each as (element offset of row 0, elements between rows), a row's
/// head_dim values contiguous.
struct Head {
    q: (usize, usize),
    k: (usize, usize),
    v: (usize, usize),
    out: (usize, usize),
    /// (query rows, keys, head_dim).
    lens: (usize, usize, usize),
    scale: f32,
    /// Causal: query row i sees keys 0..=causal_from + i only.
    causal_from: Option<usize>,
}

/// One head: K and V packed, then 32 queries at a time: round them, S = Q·Kᵀ into `s` over
/// the keys the step sees, scale and softmax each row over its keys (later ones weigh 0),
/// round it into `p`, O = P·V into `o`, O's rows to `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn head(q: &[f32], k: &[f32], v: &[f32], out: *mut f32, at: &Head) {
    let (ql, kl, hd) = at.lens;
    let hd_pad = hd.next_multiple_of(TK);
    let kl_pad = kl.next_multiple_of(TK);
    let row = |(base, stride): (usize, usize), i: usize| base + i * stride;
    let keys = pack_tiles(kl, hd_pad, |j, d0| {
        round32(k.as_ptr().wrapping_add(row(at.k, j) + d0), hd - d0.min(hd))
    });
    let values = pack_pairs(v, at.v, (kl, hd), kl_pad);
    // Tile-row layout (`amx::round_rows`): slots never written (depths past hd, keys past
    // those a step sees) stay 0; keys seen only grow from step to step.
    let (mut qa, mut p) = (cache_lines(QB * hd_pad), cache_lines(QB * kl_pad));
    let qa: &mut [u16] = bytemuck::cast_slice_mut(&mut qa);
    let p: &mut [u16] = bytemuck::cast_slice_mut(&mut p);
    // The products' sums too: tile rows stored whole into cache lines.
    let (mut s, mut o) = (cache_lines(2 * QB * kl_pad), cache_lines(2 * QB * hd_pad));
    let s: &mut [f32] = bytemuck::cast_slice_mut(&mut s);
    let o: &mut [f32] = bytemuck::cast_slice_mut(&mut o);
    with_tiles(|| {
        for i0 in (0..ql).step_by(QB) {
            let rows = QB.min(ql - i0);
            // The keys this step's last row sees, and row r's own.
            let seen = |r: usize| at.causal_from.map_or(kl, |c| (c + i0 + r + 1).min(kl));
            let step_keys = seen(rows - 1).next_multiple_of(TK);
            // Rows past `rows` keep the previous step's values: their sums are never read.
            for r in 0..rows {
                let x = std::slice::from_raw_parts(q.as_ptr().add(row(at.q, i0 + r)), hd);
                round_row(x, 1.0, &mut qa[(r / 16) * 16 * hd_pad..], r % 16);
            }
            let (s_groups, o_groups) = (step_keys / 16, hd_pad / 16);
            panel(
                (qa.as_ptr(), hd_pad),
                0..hd_pad / TK,
                (keys.as_ptr() as *const u32, s_groups),
                Acc::Zero,
                (s.as_mut_ptr(), kl_pad),
            );
            for r in 0..rows {
                let sums = &mut s[r * kl_pad..][..seen(rows - 1)];
                let (visible, later) = sums.split_at_mut(seen(r));
                // softmax(scale·s) in two passes; its normalisation rides on the rounding.
                let inv = super::vmath::exp_shifted_avx512(visible, at.scale);
                later.fill(0.0);
                round_row(sums, inv, &mut p[(r / 16) * 16 * kl_pad..], r % 16);
            }
            panel(
                (p.as_ptr(), kl_pad),
                0..step_keys / TK,
                (values.as_ptr() as *const u32, o_groups),
                Acc::Zero,
                (o.as_mut_ptr(), hd_pad),
            );
            for r in 0..rows {
                let dst = out.add(row(at.out, i0 + r));
                std::ptr::copy_nonoverlapping(o.as_ptr().add(r * hd_pad), dst, hd);
            }
        }
    })
}

/// 32 values from `x` (the first `live` of them, zeros after; none read past them) rounded to
/// bf16, as one register of 32 bf16.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round32(x: *const f32, live: usize) -> __m512i {
    let mask = |n: usize| ((1u32 << n.min(16)) - 1) as __mmask16;
    let lo = _mm512_maskz_loadu_ps(mask(live), x);
    let hi = _mm512_maskz_loadu_ps(mask(live.saturating_sub(16)), x.wrapping_add(16));
    std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo))
}

/// V's rows as the second product's B tiles (`amx::pack_tiles`' layout with the head's
/// dimensions as columns and keys as depths): tile (jt, kb) row r holds, for dimensions
/// 16·jt.., the u32 pair (V[32·kb + 2r], V[32·kb + 2r + 1]) rounded to bf16; zero past kv_len
/// and head_dim.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_pairs(
    v: &[f32],
    (base, stride): (usize, usize),
    (kl, hd): (usize, usize),
    kl_pad: usize,
) -> Vec<CacheLine> {
    let groups = hd.next_multiple_of(TK) / 16;
    let kbs = kl_pad / TK;
    let mut tiles = cache_lines(groups * kbs * 512);
    // Dimensions d0.. of key j, rounded, widened to the low half of u32 lanes (0 past the row).
    let half = |j: usize, d0: usize| -> __m512i {
        if j >= kl {
            return _mm512_setzero_si512();
        }
        let mask = ((1u32 << (hd - d0).min(16)) - 1) as __mmask16;
        let x = _mm512_maskz_loadu_ps(mask, v.as_ptr().add(base + j * stride + d0));
        _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
            _mm512_cvtneps_pbh(x),
        ))
    };
    for jt in 0..groups {
        let d0 = 16 * jt;
        if d0 >= hd {
            continue;
        }
        for kb in 0..kbs {
            let tile = (tiles.as_mut_ptr() as *mut u32).add((jt * kbs + kb) * 256);
            for r in 0..16 {
                let j = kb * TK + 2 * r;
                let pair = _mm512_or_si512(half(j, d0), _mm512_slli_epi32(half(j + 1, d0), 16));
                _mm512_storeu_si512(tile.add(16 * r) as *mut _, pair);
            }
        }
    }
    tiles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Axis;
    use crate::rand::SeededRng;

    /// The oracle for one query row against `len` keys (`kv(j)` = (k_j, v_j)): the f32 path's
    /// steps on the operands rounded to bf16, the products in f64, P rounded to bf16 before
    /// P·V as the tiles take it. Returns the row's output and its largest probability.
    fn oracle_row<'a>(
        qi: &[f32],
        len: usize,
        kv: impl Fn(usize) -> (&'a [f32], &'a [f32]),
        scale: f32,
    ) -> (Vec<f32>, f32) {
        let r = |x: f32| half::bf16::from_f32(x).to_f32() as f64;
        let mut p: Vec<f32> = (0..len)
            .map(|j| {
                let s: f64 = qi.iter().zip(kv(j).0).map(|(&a, &b)| r(a) * r(b)).sum();
                s as f32 * scale
            })
            .collect();
        crate::cpu::attention::softmax_scalar(&mut p);
        let max_p = p.iter().copied().fold(0.0, f32::max);
        let o = (0..qi.len())
            .map(|d| (0..len).map(|j| r(p[j]) * r(kv(j).1[d])).sum::<f64>() as f32)
            .collect();
        (o, max_p)
    }

    /// The oracle over a geometry; returns the largest probability.
    fn oracle(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], g: &AttnGeometry) -> f32 {
        let hd = g.head_dim;
        let mut max_p = 0f32;
        for group in 0..g.groups {
            for h in 0..g.heads {
                for i in 0..g.q_len {
                    let qi = &q[g.q.at(group, i, h, hd)..][..hd];
                    let kv = |j| {
                        let (kj, vj) = (g.k.at(group, j, h, hd), g.v.at(group, j, h, hd));
                        (&k[kj..kj + hd], &v[vj..vj + hd])
                    };
                    let (o, p) = oracle_row(qi, g.kv_len, kv, g.scale);
                    out[g.out.at(group, i, h, hd)..][..hd].copy_from_slice(&o);
                    max_p = max_p.max(p);
                }
            }
        }
        max_p
    }

    /// Whether `got` is within `tol` of `want` everywhere and within 2e-6 on average (see
    /// the tests' reasons).
    fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        let mut total = 0f64;
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= tol, "{what} element {i}: {a} vs {b}");
            total += (a - b).abs() as f64;
        }
        let mean = total / want.len() as f64;
        assert!(mean <= 2e-6, "{what}: mean error {mean}");
    }

    /// Against the oracle on every geometry (packed q|k|v along either axis, cross-attention
    /// with hd = 80 padded to 96 depths, blocks with hd = 16) across the edges of the 32-query
    /// steps and 32-key tiles. Only the order of the sums differs, so each output is within
    /// 1e-5, plus one bf16 step (2⁻⁸) of the largest probability times the largest |v|: a p
    /// whose f32 value sits at a bf16 rounding boundary may round the other way here than in
    /// the oracle. Such flips are rare, so the mean error must stay under 2e-6, which a
    /// systematic error (truncating instead of rounding: ~2⁻⁹ of every p) would exceed.
    #[test]
    fn attention_matches_the_oracle_on_bf16_operands() {
        if !crate::cpu::amx_for_tests() {
            return;
        }
        let mut rng = SeededRng::new(5);
        let (t, n, e) = (3, 33, 128);
        let qkv = rng.vec(t * n * 3 * e + 7, 1.0);
        let cross_q = rng.vec(37 * 160 + 7, 1.0);
        let cross_kv = rng.vec(70 * 160 + 7, 1.0);
        let long_kv = rng.vec(1025 * 64 + 7, 1.0);
        let blocks = rng.vec(3 * 20 * 64 + 7, 1.0);
        let cases = [
            (
                AttnGeometry::along_axis(t, n, e, 2, Axis::Tokens),
                &qkv,
                &qkv,
                t * n * e,
            ),
            (
                AttnGeometry::along_axis(t, n, e, 2, Axis::Frames),
                &qkv,
                &qkv,
                t * n * e,
            ),
            (
                AttnGeometry::cross(37, 70, 160, 2),
                &cross_q,
                &cross_kv,
                37 * 160,
            ),
            (
                AttnGeometry::cross(33, 1025, 64, 1),
                &long_kv,
                &long_kv,
                33 * 64,
            ),
            (
                AttnGeometry::blocks(3, 20, 64, 4),
                &blocks,
                &blocks,
                3 * 20 * 64,
            ),
        ];
        for (g, q, kv, len) in cases {
            let mut want = vec![0f32; len];
            let max_p = oracle(q, kv, kv, &mut want, &g);
            let mut got = vec![f32::NAN; len];
            // SAFETY: AMX available (checked).
            unsafe { attention(q, kv, kv, &mut got, &g) };
            assert_close(&got, &want, 1e-5 + max_p / 256.0, &format!("{g:?}"));
        }
    }

    /// The causal form against the oracle on each row's causal prefix, with grouped kv heads,
    /// a prefill from position 0 and a chunk after cached positions (rows crossing the 32-query
    /// steps, keys crossing the 32-key tiles); tolerances as above.
    #[test]
    fn causal_attention_matches_the_oracle_on_bf16_operands() {
        if !crate::cpu::amx_for_tests() {
            return;
        }
        let mut rng = SeededRng::new(6);
        for (rows, position, heads, kv_heads, d) in
            [(70, 0, 4, 2, 64), (33, 19, 3, 1, 80), (16, 100, 2, 2, 32)]
        {
            let g = KvGeometry {
                heads,
                kv_heads,
                head_dim: d,
                position,
            };
            let keys = position + rows;
            let q = rng.vec(rows * heads * d, 1.0);
            let k = rng.vec(keys * kv_heads * d + 5, 1.0);
            let v = rng.vec(keys * kv_heads * d + 5, 1.0);
            let (qw, kw) = (heads * d, kv_heads * d);
            let mut want = vec![0f32; rows * qw];
            let mut max_p = 0f32;
            for r in 0..rows {
                for h in 0..heads {
                    let kv = h / (heads / kv_heads);
                    let pair = |j| {
                        let o = j * kw + kv * d;
                        (&k[o..o + d], &v[o..o + d])
                    };
                    let qi = &q[r * qw + h * d..][..d];
                    let scale = 1.0 / (d as f32).sqrt();
                    let (o, p) = oracle_row(qi, position + r + 1, pair, scale);
                    want[r * qw + h * d..][..d].copy_from_slice(&o);
                    max_p = max_p.max(p);
                }
            }
            // SAFETY: AMX available (checked).
            let got = unsafe { causal(&q, &k, &v, &g) };
            assert_close(&got, &want, 1e-5 + max_p / 256.0, &format!("{g:?}"));
        }
    }
}
