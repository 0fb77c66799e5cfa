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
    layer_norm_checked(x, residual, gamma, beta, cols, eps).0
}

/// [`layer_norm`], and the first row whose variance is not finite in f32 (an overflow
/// upstream): the twin of the GPU norms' health word.
pub fn layer_norm_checked(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    cols: usize,
    eps: f32,
) -> (Vec<f32>, Option<usize>) {
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
    let mut overflow = None;
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
        if !var.is_finite() {
            overflow = overflow.or(Some(row));
        }
        let inv = 1.0 / (var + eps).sqrt();
        for (i, o) in out.iter_mut().enumerate() {
            *o = (z[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
    (y, overflow)
}

/// y = x / √(mean(x²) + eps) · weight over rows of `cols` values (Qwen2/LLaMA RMSNorm and
/// InternViT's `InternRMSNorm`).
pub fn rms_norm(x: &[f32], weight: &[f32], cols: usize, eps: f32) -> Vec<f32> {
    rms_norm_checked(x, weight, cols, eps).0
}

/// [`rms_norm`], and the first row whose mean square is not finite in f32 (see
/// [`layer_norm_checked`]).
pub fn rms_norm_checked(
    x: &[f32],
    weight: &[f32],
    cols: usize,
    eps: f32,
) -> (Vec<f32>, Option<usize>) {
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "rms_norm: rows of {cols} expected"
    );
    assert_eq!(
        weight.len(),
        cols,
        "rms_norm: weight must hold {cols} values"
    );
    let mut y = Vec::with_capacity(x.len());
    let mut overflow = None;
    for (r, row) in x.chunks(cols).enumerate() {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / cols as f32;
        if !ms.is_finite() {
            overflow = overflow.or(Some(r));
        }
        let inv = 1.0 / (ms + eps).sqrt();
        y.extend(row.iter().zip(weight).map(|(v, w)| v * inv * w));
    }
    (y, overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_by_hand() {
        // Row (3, 4): mean square 12.5, 1/√12.5 = 0.2828427; weights (1, 2).
        let y = rms_norm(&[3.0, 4.0], &[1.0, 2.0], 2, 0.0);
        assert!((y[0] - 0.848_528_1).abs() < 1e-6 && (y[1] - 2.262_741_7).abs() < 1e-6);
    }

    #[test]
    fn layer_norm_by_hand() {
        // Row (1, 3): mean 2, variance 1 → (−1, 1), then ·γ + β.
        let y = layer_norm(&[1.0, 3.0], None, &[2.0, 1.0], &[0.5, 0.0], 2, 0.0);
        assert_eq!(y, [-1.5, 1.0]);
    }

    #[test]
    fn checked_twins_name_the_first_row_that_overflows() {
        // Row 1's squares (1e30² = 1e60) overflow f32; rows 0 and 2 are in range.
        let x = [1.0, 2.0, 1e30, -1e30, 3.0, 4.0];
        assert_eq!(rms_norm_checked(&x, &[1.0; 2], 2, 1e-6).1, Some(1));
        assert_eq!(
            layer_norm_checked(&x, None, &[1.0; 2], &[0.0; 2], 2, 1e-6).1,
            Some(1)
        );
        assert_eq!(rms_norm_checked(&[1.0, 2.0], &[1.0; 2], 2, 1e-6).1, None);
    }
}
