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
pub fn causal_attention(q: &[f32], k_cache: &[f32], v_cache: &[f32], g: &KvGeometry) -> Vec<f32> {
    let (h, kvh, d) = (g.heads, g.kv_heads, g.head_dim);
    assert!(
        kvh > 0 && h.is_multiple_of(kvh) && d > 0,
        "kv attention: bad head counts"
    );
    let qw = h * d;
    let kw = kvh * d;
    let rows = q.len() / qw;
    assert!(
        k_cache.len() >= (g.position + rows) * kw && v_cache.len() >= (g.position + rows) * kw,
        "kv attention: the cache does not hold positions up to {}",
        g.position + rows
    );
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
