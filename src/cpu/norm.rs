//! CPU twin of the norm kernel: LayerNorm with a fused residual add.

use super::elementwise::zip_chunks;
use super::sums::lane_sum_of;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    let overflow = FirstRow::default();
    // Each row's z = x + residual is built in its output row, then normalised there.
    zip_chunks(&mut y, cols, x, cols, |row, z, xs| {
        match residual {
            Some(r) => {
                for ((zi, a), b) in z.iter_mut().zip(xs).zip(&r[row * cols..][..cols]) {
                    *zi = a + b;
                }
            }
            None => z.copy_from_slice(xs),
        }
        let mean = lane_sum_of(z, |v| v) / cols as f32;
        let var = lane_sum_of(z, |v| (v - mean) * (v - mean)) / cols as f32;
        if !var.is_finite() {
            overflow.note(row);
        }
        let inv = 1.0 / (var + eps).sqrt();
        for ((o, g), b) in z.iter_mut().zip(gamma).zip(beta) {
            *o = (*o - mean) * inv * g + b;
        }
    });
    (y, overflow.get())
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
    let mut y = vec![0.0f32; x.len()];
    let overflow = FirstRow::default();
    zip_chunks(&mut y, cols, x, cols, |r, out, row| {
        let ms = lane_sum_of(row, |v| v * v) / cols as f32;
        if !ms.is_finite() {
            overflow.note(r);
        }
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), w) in out.iter_mut().zip(row).zip(weight) {
            *o = v * inv * w;
        }
    });
    (y, overflow.get())
}

/// The lowest row index noted from any thread (rows are normalised in parallel).
struct FirstRow(AtomicUsize);

impl Default for FirstRow {
    fn default() -> Self {
        FirstRow(AtomicUsize::new(usize::MAX))
    }
}

impl FirstRow {
    fn note(&self, row: usize) {
        self.0.fetch_min(row, Ordering::Relaxed);
    }

    fn get(&self) -> Option<usize> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&r| r != usize::MAX)
    }
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

    /// Both norms against the formula in f64 on odd shapes (rows of 1, 15, 17 and 1000 values,
    /// a mean far from zero): the lane sums reorder f32 additions of ≤ 1000 terms, so 1e-5
    /// relative to the output's scale (a few ulp of the sums) bounds the difference.
    #[test]
    fn norms_match_the_formula_in_f64() {
        let mut rng = crate::rand::SeededRng::new(4);
        for cols in [1, 15, 17, 1000] {
            let rows = 5;
            let x: Vec<f32> = rng.vec(rows * cols, 3.0).iter().map(|v| v + 10.0).collect();
            let res = rng.vec(rows * cols, 1.0);
            let (g, b) = (rng.vec(cols, 1.0), rng.vec(cols, 1.0));
            let ln = layer_norm(&x, Some(&res), &g, &b, cols, 1e-5);
            let rms = rms_norm(&x, &g, cols, 1e-6);
            for r in 0..rows {
                let z: Vec<f64> = (0..cols)
                    .map(|i| x[r * cols + i] as f64 + res[r * cols + i] as f64)
                    .collect();
                let mean = z.iter().sum::<f64>() / cols as f64;
                let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / cols as f64;
                let xs = &x[r * cols..][..cols];
                let ms = xs.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64;
                for i in 0..cols {
                    let want = (z[i] - mean) / (var + 1e-5).sqrt() * g[i] as f64 + b[i] as f64;
                    let got = ln[r * cols + i] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{cols}: {got} vs {want}"
                    );
                    let want = xs[i] as f64 / (ms + 1e-6).sqrt() * g[i] as f64;
                    let got = rms[r * cols + i] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{cols}: {got} vs {want}"
                    );
                }
            }
        }
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
