//! CPU twin of the norm kernel: LayerNorm with a fused residual add.

/// y = LayerNorm(x + residual) over rows of `cols` values, biased variance, eps inside the sqrt.
///
/// Per row: z = x + residual, mean = Σz / cols, var = Σ(z − mean)² / cols (two passes, as the
/// GPU kernel does, so a large mean does not cancel the variance), y = (z − mean) / √(var + eps)
/// · gamma + beta. Panics when the slices disagree with `cols` (callers validate user input).
pub fn layer_norm(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    cols: usize,
    eps: f32,
) -> Vec<f32> {
    assert!(cols > 0, "layer_norm: cols must be positive");
    assert!(
        x.len().is_multiple_of(cols),
        "layer_norm: {} values are not rows of {cols}",
        x.len()
    );
    assert!(
        gamma.len() == cols && beta.len() == cols,
        "layer_norm: gamma/beta must hold {cols} values"
    );
    if let Some(r) = residual {
        assert_eq!(
            r.len(),
            x.len(),
            "layer_norm: residual and x differ in length"
        );
    }
    let mut y = vec![0.0f32; x.len()];
    let mut z = vec![0.0f32; cols];
    for (row, out) in y.chunks_mut(cols).enumerate() {
        let xs = &x[row * cols..][..cols];
        match residual {
            Some(r) => {
                for ((zi, a), b) in z.iter_mut().zip(xs).zip(&r[row * cols..][..cols]) {
                    *zi = a + b;
                }
            }
            None => z.copy_from_slice(xs),
        }
        let mean = z.iter().sum::<f32>() / cols as f32;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / cols as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (i, o) in out.iter_mut().enumerate() {
            *o = (z[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
    y
}
