//! CPU twin of the window-pool kernel: gather rows through an index list, then average-pool them
//! with window = stride = s for several scales s, concatenating the scales' results.

/// Rows the pooled output has: Σ_s ⌊count / s⌋.
pub fn pooled_rows(count: usize, scales: &[usize]) -> usize {
    scales.iter().map(|s| count / s).sum()
}

/// Gathers `count` rows of x (rows of `cols` values) through `indices` (identity when None) and
/// average-pools them with window = stride = s for every scale s, remainder dropped; the scales'
/// results are concatenated in the order given: (pooled_rows(count, scales), cols).
pub fn gather_pool(
    x: &[f32],
    cols: usize,
    indices: Option<&[u32]>,
    count: usize,
    scales: &[usize],
) -> Vec<f32> {
    let source_row = |m: usize| indices.map_or(m, |idx| idx[m] as usize);
    let mut out = Vec::with_capacity(pooled_rows(count, scales) * cols);
    for &s in scales {
        for w in 0..count / s {
            let mut sum = vec![0f32; cols];
            for m in 0..s {
                let row = &x[source_row(w * s + m) * cols..][..cols];
                for (a, &b) in sum.iter_mut().zip(row) {
                    *a += b;
                }
            }
            let inv = 1.0 / s as f32;
            out.extend(sum.iter().map(|a| a * inv));
        }
    }
    out
}
