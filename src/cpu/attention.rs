//! CPU twin of the attention kernel: multi-head scaled-dot-product attention over strided
//! operands, so one function serves self-attention along either axis of a (T, N, 3E) packed qkv
//! tensor and cross-attention between separate q, k, v tensors.
//!
//! Semantics (shared with `shaders/attention.wgsl`): for every group g, query row i < q_len and
//! head h, with q_i = q[g,i,h,:], k_j = k[g,j,h,:], v_j = v[g,j,h,:] (head_dim values each),
//!   out[g,i,h,:] = Σ_j p_j v_j,  p = softmax_j(scale · q_i·k_j)  (max subtracted, f32).
//! The element of operand X at (g, i, h, d) is X[offset + g·group_stride + i·row_stride +
//! h·head_dim + d].

#[cfg(not(target_arch = "wasm32"))]
use super::linear::{product, ReusedRhs, Strided};
use super::sums::lane_sum;
use crate::ops::AttnGeometry;

/// Softmax of `scale · q·k_j` over the keys of (group, head) for one query row, into `p`.
fn row_probs(k: &[f32], g: &AttnGeometry, group: usize, head: usize, qrow: &[f32], p: &mut [f32]) {
    let hd = g.head_dim;
    for (j, pj) in p.iter_mut().enumerate() {
        let kj = &k[g.k.at(group, j, head, hd)..][..hd];
        *pj = g.scale * lane_sum(qrow, kj, |x, y| x * y);
    }
    softmax_in_place(p);
}

/// p ← softmax(p), the maximum subtracted first: 16 or 8 lanes at a time where the CPU has
/// AVX-512F or AVX2 (`super::vmath`), else [`softmax_scalar`].
pub(crate) fn softmax_in_place(p: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::vmath::available() {
        // SAFETY: `vmath::available` (checked).
        return unsafe { super::vmath::softmax_in_place(p) };
    }
    softmax_scalar(p)
}

/// p ← softmax(p), the maximum subtracted first, one value at a time.
pub(crate) fn softmax_scalar(p: &mut [f32]) {
    let inv = exp_shifted_scalar(p);
    for pj in p.iter_mut() {
        *pj *= inv;
    }
}

/// p ← exp(p − max p), one value at a time, returning 1 / Σ of them.
fn exp_shifted_scalar(p: &mut [f32]) -> f32 {
    let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for pj in p.iter_mut() {
        *pj = (*pj - max).exp();
        sum += *pj;
    }
    1.0 / sum
}

/// Runs `work(group) -> Vec<f32>` for every group, on the rayon pool natively (sized by
/// `--threads`, `crate::cpu::threads`); results in group order.
fn per_group(groups: usize, work: impl Fn(usize) -> Vec<f32> + Sync + Send) -> Vec<Vec<f32>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..groups).into_par_iter().map(work).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        (0..groups).map(work).collect()
    }
}

/// Sequences from which [`attention`] computes each (group, head) as two matrix products.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const PRODUCTS_MIN_LEN: usize = 16;

/// Query rows per product: 4 of the AVX-512 GEMM's 12-row tiles (8 of AVX2's 6), so the
/// scores of a block (48 × kv_len f32: 200 KiB at a 448² frame's 1025 tokens) stay in L2
/// beside the packed Kᵀ and V between the two products. Measured on the ViT's attention
/// (`benches/cpu_products.rs`, Zen 3): 24 rows 46–59 G/s, 48 rows 60–64, 96 rows 56–57.
#[cfg(not(target_arch = "wasm32"))]
const PRODUCT_ROWS: usize = 48;

/// Writes the attention output into `out` at the places `g.out` names. Natively, sequences of
/// at least 16 queries and keys run as S = Q·Kᵀ and O = P·V (`linear::product`) per (group,
/// head, block of [`PRODUCT_ROWS`] queries) on the rayon pool (the ViT's and long clips'
/// attention); short ones, and the browser build, run the loops of [`attention_loops`], which
/// tests hold the products to.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], g: &AttnGeometry) {
    #[cfg(not(target_arch = "wasm32"))]
    if g.q_len >= PRODUCTS_MIN_LEN && g.kv_len >= PRODUCTS_MIN_LEN {
        return by_products(q, k, v, out, g);
    }
    attention_loops(q, k, v, out, g);
}

/// Each group's output, (q_len, heads, head_dim), into `out` at the places `g.out` names.
fn scatter(results: &[Vec<f32>], out: &mut [f32], g: &AttnGeometry) {
    let hd = g.head_dim;
    for (group, res) in results.iter().enumerate() {
        for i in 0..g.q_len {
            for h in 0..g.heads {
                let src = &res[(i * g.heads + h) * hd..][..hd];
                out[g.out.at(group, i, h, hd)..][..hd].copy_from_slice(src);
            }
        }
    }
}

/// Every (group, head, block of query rows) by two products: S = scale·Q·Kᵀ read through the
/// operands' strides, each row's exponentials as in [`row_probs`] (the max subtracted), O =
/// P·V written straight to the output's rows, each divided by its row's sum as it is stored.
/// A task takes a (group, head) and a run of its query blocks, packing Kᵀ and V once for the
/// run: runs are as long as keeping every thread busy allows (the whole head when there are
/// at least twice as many heads as threads).
#[cfg(not(target_arch = "wasm32"))]
fn by_products(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], g: &AttnGeometry) {
    use rayon::prelude::*;
    let (ql, kl, hd, heads) = (g.q_len, g.kv_len, g.head_dim, g.heads);
    if g.groups == 0 || heads == 0 || hd == 0 {
        return;
    }
    g.assert_within((q.len(), k.len(), v.len(), out.len()));
    let blocks = ql.div_ceil(PRODUCT_ROWS);
    let pairs = g.groups * heads;
    let runs = (2 * rayon::current_num_threads())
        .div_ceil(pairs)
        .min(blocks);
    let per_run = blocks.div_ceil(runs);
    let runs = blocks.div_ceil(per_run);
    // Each task writes only rows of its own blocks of head h of its group.
    let dst = super::threads::OutPtr(out.as_mut_ptr());
    (0..pairs * runs).into_par_iter().for_each(move |task| {
        let dst = dst;
        let (pair, run) = (task / runs, task % runs);
        let (group, h) = (pair / heads, pair % heads);
        let mut s = vec![0f32; PRODUCT_ROWS.min(ql) * kl];
        let mut inv = [0f32; PRODUCT_ROWS];
        // SAFETY: every (row, d) read or written is within its operand (asserted above); s
        // holds rows×kl values; this task writes only rows of its blocks of head h of its
        // group. Kᵀ is K read with its strides swapped.
        unsafe {
            let kt = Strided {
                ptr: k.as_ptr().add(g.k.at(group, 0, h, hd)),
                col: g.k.row_stride,
                row: 1,
            };
            let kt = ReusedRhs::new(kt, (hd, kl));
            let vs = Strided {
                ptr: v.as_ptr().add(g.v.at(group, 0, h, hd)),
                col: 1,
                row: g.v.row_stride,
            };
            let vs = ReusedRhs::new(vs, (kl, hd));
            for block in run * per_run..(blocks.min((run + 1) * per_run)) {
                let i0 = block * PRODUCT_ROWS;
                let rows = PRODUCT_ROWS.min(ql - i0);
                let lhs = Strided {
                    ptr: q.as_ptr().add(g.q.at(group, i0, h, hd)),
                    col: 1,
                    row: g.q.row_stride,
                };
                product((rows, kl, hd), s.as_mut_ptr(), kl, lhs, &kt, g.scale, None);
                for (row, inv) in s.chunks_mut(kl).zip(&mut inv).take(rows) {
                    *inv = exp_shifted(row);
                }
                let p = Strided {
                    ptr: s.as_ptr(),
                    col: 1,
                    row: kl,
                };
                let o = dst.0.add(g.out.at(group, i0, h, hd));
                product(
                    (rows, hd, kl),
                    o,
                    g.out.row_stride,
                    p,
                    &vs,
                    1.0,
                    Some(&inv[..rows]),
                );
            }
        }
    });
}

/// p ← exp(p − max p), returning 1 / Σ of them (softmax before its normalisation): 16 or 8
/// lanes at a time where the CPU has AVX-512F or AVX2 (`super::vmath`), else
/// [`exp_shifted_scalar`].
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn exp_shifted(p: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::vmath::available() {
        // SAFETY: `vmath::available` (checked).
        return unsafe { super::vmath::exp_shifted(p, 1.0) };
    }
    exp_shifted_scalar(p)
}

/// The plain loops: per query row and head, the scores, their softmax, the weighted values.
pub fn attention_loops(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], g: &AttnGeometry) {
    let hd = g.head_dim;
    // Each group's output, (q_len, heads, head_dim), computed in parallel, scattered afterwards.
    let results = per_group(g.groups, |group| {
        let mut res = vec![0f32; g.q_len * g.heads * hd];
        let mut p = vec![0f32; g.kv_len];
        for i in 0..g.q_len {
            for h in 0..g.heads {
                let qrow = &q[g.q.at(group, i, h, hd)..][..hd];
                row_probs(k, g, group, h, qrow, &mut p);
                let o = &mut res[(i * g.heads + h) * hd..][..hd];
                for (j, &pj) in p.iter().enumerate() {
                    let vj = &v[g.v.at(group, j, h, hd)..][..hd];
                    for (od, &vd) in o.iter_mut().zip(vj) {
                        *od += pj * vd;
                    }
                }
            }
        }
        res
    });
    scatter(&results, out, g);
}

/// The softmax weights, laid out (groups, heads, q_len, kv_len).
pub fn attention_probs(q: &[f32], k: &[f32], g: &AttnGeometry) -> Vec<f32> {
    let hd = g.head_dim;
    let results = per_group(g.groups, |group| {
        let mut res = vec![0f32; g.heads * g.q_len * g.kv_len];
        for h in 0..g.heads {
            for i in 0..g.q_len {
                let qrow = &q[g.q.at(group, i, h, hd)..][..hd];
                let p = &mut res[(h * g.q_len + i) * g.kv_len..][..g.kv_len];
                row_probs(k, g, group, h, qrow, p);
            }
        }
        res
    });
    results.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Axis;
    use crate::rand::SeededRng;

    /// The products route against the loops on every geometry the executors use: along tokens
    /// and frames of a packed qkv (strided operands), cross-attention and blocks, at odd sizes
    /// (17, 33 and 100 rows, the last several blocks of queries; head_dim 24). Tolerance 1e-5:
    /// the same f32 sums of ≤ 40 products of values ≤ 1 and a softmax, in another order.
    #[test]
    fn products_match_the_loops() {
        let mut rng = SeededRng::new(9);
        let (t, n, e, heads) = (17, 33, 96, 4);
        let qkv = rng.vec(t * n * 3 * e, 1.0);
        let kv = rng.vec(40 * e, 1.0);
        let q100 = rng.vec(100 * e, 1.0);
        let cases = [
            (
                AttnGeometry::along_axis(t, n, e, heads, Axis::Tokens),
                &qkv,
                &qkv,
                &qkv,
                t * n,
            ),
            (
                AttnGeometry::along_axis(t, n, e, heads, Axis::Frames),
                &qkv,
                &qkv,
                &qkv,
                t * n,
            ),
            (AttnGeometry::cross(17, 40, e, heads), &kv, &kv, &kv, 17),
            // Three blocks of queries, the last one short.
            (AttnGeometry::cross(100, 40, e, heads), &q100, &kv, &kv, 100),
            (AttnGeometry::blocks(2, 20, e, heads), &kv, &kv, &kv, 40),
        ];
        for (g, q, k, v, rows) in cases {
            assert!(
                g.q_len >= PRODUCTS_MIN_LEN && g.kv_len >= PRODUCTS_MIN_LEN,
                "{g:?}"
            );
            let mut want = vec![0f32; rows * e];
            attention_loops(q, k, v, &mut want, &g);
            let mut got = vec![0f32; rows * e];
            attention(q, k, v, &mut got, &g);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5, "{g:?} element {i}: {a} vs {b}");
            }
        }
    }
}
