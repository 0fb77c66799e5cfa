//! CPU twin of the window-pool kernel. (stub: to be written)

/// Rows the pooled output has: Σ_s ⌊count / s⌋.
pub fn pooled_rows(count: usize, scales: &[usize]) -> usize {
    scales.iter().map(|s| count / s).sum()
}

/// Gathers `count` rows of x (rows of `cols` values) through `indices` (identity when None) and
/// average-pools them with window = stride = s for every scale s, remainder dropped; the scales'
/// results are concatenated in the order given: (pooled_rows(count, scales), cols).
pub fn gather_pool(x: &[f32], cols: usize, indices: Option<&[u32]>, count: usize, scales: &[usize]) -> Vec<f32> {
    let _ = (x, cols, indices, count, scales);
    unimplemented!("cpu::gather_pool")
}
