//! CPU twin of causal grouped-query attention over a KV cache (the decoder's attention).

/// Geometry of one causal attention call over a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvGeometry {
    /// Query heads; a multiple of `kv_heads` (query head h reads kv head h / (heads/kv_heads)).
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Cache position of the first query row.
    pub position: usize,
}

/// Causal GQA attention. `q` holds rows of `heads · head_dim`; row r sits at position
/// `position + r` and attends to cache rows 0..=position + r of `k_cache` / `v_cache` (rows of
/// `kv_heads · head_dim`, already holding those positions). Scale 1/√head_dim, softmax in f32
/// with the maximum subtracted. Returns rows of `heads · head_dim`.
///
/// Natively, 16 rows or more (a prefill) run as products per (head, block of rows) through
/// `gemm` on the rayon pool ([`causal_by_products`]); fewer (decoding), and the browser build,
/// run the loops of [`causal_loops`], which tests hold the products to.
pub fn causal_attention(q: &[f32], k_cache: &[f32], v_cache: &[f32], g: &KvGeometry) -> Vec<f32> {
    #[cfg(not(target_arch = "wasm32"))]
    if q.len() / (g.heads * g.head_dim).max(1) >= 16 {
        return causal_by_products(q, k_cache, v_cache, g, PRODUCT_ROWS);
    }
    causal_loops(q, k_cache, v_cache, g)
}

/// Query rows per product block: its scores (64 × keys: 160 KiB at 640 keys) stay in L2 beside
/// the packed keys and values, and the masked triangle each block computes stays small.
#[cfg(not(target_arch = "wasm32"))]
const PRODUCT_ROWS: usize = 64;

/// Checks the geometry against the buffers; returns the query rows.
pub(super) fn check(q: &[f32], k_cache: &[f32], v_cache: &[f32], g: &KvGeometry) -> usize {
    let (h, kvh, d) = (g.heads, g.kv_heads, g.head_dim);
    assert!(
        kvh > 0 && h.is_multiple_of(kvh) && d > 0,
        "kv attention: bad head counts"
    );
    let rows = q.len() / (h * d);
    assert!(
        k_cache.len() >= (g.position + rows) * kvh * d
            && v_cache.len() >= (g.position + rows) * kvh * d,
        "kv attention: the cache does not hold positions up to {}",
        g.position + rows
    );
    rows
}

/// For each (kv head, block of `block` query rows), the keys the block's last row sees packed
/// once (Kᵀ and V) for every query head that reads them; per head S = scale·Q·Kᵀ, each row's
/// exponentials over its own causal prefix (later keys weigh 0), O = P·V written into the
/// output, each row divided by its sum as it is stored.
#[cfg(not(target_arch = "wasm32"))]
pub fn causal_by_products(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    g: &KvGeometry,
    block: usize,
) -> Vec<f32> {
    use super::attention::exp_shifted;
    use super::linear::{product, ReusedRhs, Strided};
    use rayon::prelude::*;
    let rows = check(q, k_cache, v_cache, g);
    let (h, d) = (g.heads, g.head_dim);
    let (qw, kw, group) = (h * d, g.kv_heads * d, h / g.kv_heads);
    let scale = 1.0 / (d as f32).sqrt();
    let block = block.max(1);
    let blocks = rows.div_ceil(block);
    let mut out = vec![0.0f32; q.len()];
    // Each task writes only its rows of its kv head's query heads.
    let dst = super::threads::OutPtr(out.as_mut_ptr());
    (0..g.kv_heads * blocks)
        .into_par_iter()
        .for_each(move |task| {
            let dst = dst;
            let (kv, r0) = (task / blocks, task % blocks * block);
            let n = block.min(rows - r0);
            let keys = g.position + r0 + n;
            let mut s = vec![0.0f32; n * keys];
            let mut inv = vec![0.0f32; n];
            // SAFETY: `check` bounds every read: query rows r0..r0+n of heads kv·group.., cache
            // rows 0..keys of kv head `kv`; s is n×keys, row-major; out holds rows of qw values,
            // of which this task writes rows r0..r0+n of its heads. Kᵀ is the cache read with its
            // strides swapped.
            unsafe {
                let kt = Strided {
                    ptr: k_cache.as_ptr().add(kv * d),
                    col: kw,
                    row: 1,
                };
                let kt = ReusedRhs::new(kt, (d, keys));
                let vs = Strided {
                    ptr: v_cache.as_ptr().add(kv * d),
                    col: 1,
                    row: kw,
                };
                let vs = ReusedRhs::new(vs, (keys, d));
                for head in kv * group..(kv + 1) * group {
                    let qs = Strided {
                        ptr: q.as_ptr().add(r0 * qw + head * d),
                        col: 1,
                        row: qw,
                    };
                    product((n, keys, d), s.as_mut_ptr(), keys, qs, &kt, scale, None);
                    for (i, (row, inv)) in s.chunks_mut(keys).zip(&mut inv).enumerate() {
                        // Row i sees its causal prefix only; later keys weigh 0.
                        let len = g.position + r0 + i + 1;
                        *inv = exp_shifted(&mut row[..len]);
                        row[len..].fill(0.0);
                    }
                    let p = Strided {
                        ptr: s.as_ptr(),
                        col: 1,
                        row: keys,
                    };
                    let o = dst.0.add(r0 * qw + head * d);
                    product((n, d, keys), o, qw, p, &vs, 1.0, Some(&inv));
                }
            }
        });
    out
}

/// The plain loops: per row and head, the causal scores, their softmax, the weighted values.
pub fn causal_loops(q: &[f32], k_cache: &[f32], v_cache: &[f32], g: &KvGeometry) -> Vec<f32> {
    let (h, kvh, d) = (g.heads, g.kv_heads, g.head_dim);
    let rows = check(q, k_cache, v_cache, g);
    let qw = h * d;
    let kw = kvh * d;
    let group = h / kvh;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0.0f32; q.len()];
    let mut p = Vec::new();
    for r in 0..rows {
        let len = g.position + r + 1;
        for head in 0..h {
            let kv = head / group;
            let qv = &q[r * qw + head * d..][..d];
            p.clear();
            p.extend((0..len).map(|j| {
                let kj = &k_cache[j * kw + kv * d..][..d];
                scale * qv.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>()
            }));
            let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in p.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let o = &mut out[r * qw + head * d..][..d];
            for (j, &w) in p.iter().enumerate() {
                let vj = &v_cache[j * kw + kv * d..][..d];
                for (a, b) in o.iter_mut().zip(vj) {
                    *a += w / sum * b;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_position_copies_its_value() {
        // One position: softmax over one key is 1, so the output is v_0 for every head.
        let g = KvGeometry {
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
            position: 0,
        };
        let out = causal_attention(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0], &[7.0, 8.0], &g);
        assert_eq!(out, [7.0, 8.0, 7.0, 8.0]);
    }

    #[test]
    fn causal_weights_by_hand() {
        // head_dim 1 (scale 1), two cached positions k = (0, ln 3), v = (1, 5). A query q = 1 at
        // position 1 weighs them 1 : 3 → 0.25·1 + 0.75·5 = 4. At position 0 only v_0 = 1 counts.
        let k = [0.0, 3f32.ln()];
        let v = [1.0, 5.0];
        let g = KvGeometry {
            heads: 1,
            kv_heads: 1,
            head_dim: 1,
            position: 0,
        };
        let out = causal_attention(&[1.0, 1.0], &k, &v, &g);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert!((out[1] - 4.0).abs() < 1e-5);
        // The same second row asked alone at position 1 (incremental decode) agrees.
        let g1 = KvGeometry { position: 1, ..g };
        assert!((causal_attention(&[1.0], &k, &v, &g1)[0] - 4.0).abs() < 1e-5);
    }

    /// The products (blocks of 7 rows, so blocks cut the prompt unevenly) against the loops:
    /// 37 query rows after 5 cached positions, 6 query heads over 2 kv heads, head_dim 24.
    /// Tolerance 1e-5: the same f32 sums of ≤ 42 products of values ≤ 1, in another order.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn products_match_the_loops() {
        let mut rng = crate::rand::SeededRng::new(5);
        let g = KvGeometry {
            heads: 6,
            kv_heads: 2,
            head_dim: 24,
            position: 5,
        };
        let rows = 37;
        let q = rng.vec(rows * 6 * 24, 1.0);
        let k = rng.vec((5 + rows) * 2 * 24 + 7, 1.0);
        let v = rng.vec((5 + rows) * 2 * 24 + 7, 1.0);
        let want = causal_loops(&q, &k, &v, &g);
        for block in [7, PRODUCT_ROWS, 256] {
            let got = causal_by_products(&q, &k, &v, &g, block);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5,
                    "block {block}, element {i}: {a} vs {b}"
                );
            }
        }
        assert_eq!(causal_attention(&q, &k, &v, &g).len(), want.len());
    }

    #[test]
    fn query_heads_share_kv_heads_in_groups() {
        // 4 query heads over 2 kv heads: heads 0,1 read kv head 0 and heads 2,3 kv head 1.
        let g = KvGeometry {
            heads: 4,
            kv_heads: 2,
            head_dim: 1,
            position: 0,
        };
        let out = causal_attention(&[1.0; 4], &[0.0, 0.0], &[10.0, 20.0], &g);
        assert_eq!(out, [10.0, 10.0, 20.0, 20.0]);
    }
}
