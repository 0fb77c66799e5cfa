//! CPU twin of the linear kernel. (stub: to be written)

/// Y (m×n) = X (m×k) · Wᵀ (w is n×k, row-major) + b.
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let _ = (x, w, b, m, n, k);
    unimplemented!("cpu::linear")
}
