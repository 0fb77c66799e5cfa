//! CPU twin of the attention kernel: multi-head scaled-dot-product attention over strided
//! operands, so one function serves self-attention along either axis of a (T, N, 3E) packed qkv
//! tensor and cross-attention between separate q, k, v tensors.
//!
//! Semantics (shared with `shaders/attention.wgsl`): for every group g, query row i < q_len and
//! head h, with q_i = q[g,i,h,:], k_j = k[g,j,h,:], v_j = v[g,j,h,:] (head_dim values each),
//!   out[g,i,h,:] = Σ_j p_j v_j,  p = softmax_j(scale · q_i·k_j)  (max subtracted, f32).
//! The element of operand X at (g, i, h, d) is X[offset + g·group_stride + i·row_stride +
//! h·head_dim + d].

use crate::ops::AttnGeometry;

/// Dot product with `LANES` independent partial sums, so the compiler can vectorise it and
/// the additions do not wait on each other.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ac, at) = a.split_at(a.len() / LANES * LANES);
    let (bc, bt) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in at.iter().zip(bt) {
        s += x * y;
    }
    s
}

/// Softmax of `scale · q·k_j` over the keys of (group, head) for one query row, into `p`.
fn row_probs(k: &[f32], g: &AttnGeometry, group: usize, head: usize, qrow: &[f32], p: &mut [f32]) {
    let hd = g.head_dim;
    let mut max = f32::NEG_INFINITY;
    for (j, pj) in p.iter_mut().enumerate() {
        let kj = &k[g.k.at(group, j, head, hd)..][..hd];
        *pj = g.scale * dot(qrow, kj);
        max = max.max(*pj);
    }
    let mut sum = 0f32;
    for pj in p.iter_mut() {
        *pj = (*pj - max).exp();
        sum += *pj;
    }
    let inv = 1.0 / sum;
    for pj in p.iter_mut() {
        *pj *= inv;
    }
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

/// Writes the attention output into `out` at the places `g.out` names.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], g: &AttnGeometry) {
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
    for (group, res) in results.iter().enumerate() {
        for i in 0..g.q_len {
            for h in 0..g.heads {
                let src = &res[(i * g.heads + h) * hd..][..hd];
                out[g.out.at(group, i, h, hd)..][..hd].copy_from_slice(src);
            }
        }
    }
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
