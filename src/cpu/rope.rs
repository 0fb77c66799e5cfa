//! CPU twin of the RoPE kernel: rotary position embedding in the "rotate half" layout of
//! Hugging Face's Qwen2/LLaMA (`apply_rotary_pos_emb`), applied to every head of every row.

use crate::ops::{Positions, Rope};

/// Rotates rows of `heads · head_dim` values in place. Row r sits at position `position + r`.
/// For each head and d < D/2, with θ_d = theta^(−2d/D) and angle a = p·θ_d (computed in f64):
///   out[d] = x[d]·cos a − x[d + D/2]·sin a,   out[d + D/2] = x[d + D/2]·cos a + x[d]·sin a.
pub fn rope(x: &mut [f32], heads: usize, head_dim: usize, position: usize, theta: f64) {
    let rows = x.len() / (heads * head_dim).max(1);
    rope_with(
        x,
        heads,
        &Positions::range(position, rows),
        &Rope::new(head_dim, theta),
    );
}

/// [`rope`] with any [`Rope`] (scaled frequencies, a factor on cos and sin, pairs on several
/// position axes) at any positions: pair d of row r turns by `positions.row(r)[axis of d]`·θ_d.
/// The caller has checked the shapes (`Rope::check`).
pub fn rope_with(x: &mut [f32], heads: usize, positions: &Positions, rope: &Rope) {
    let head_dim = rope.head_dim();
    let width = heads * head_dim;
    assert!(
        head_dim.is_multiple_of(2) && width > 0,
        "rope: head_dim must be even and positive"
    );
    assert!(
        x.len() == width * positions.rows(),
        "rope: {} rows of {width} expected",
        positions.rows()
    );
    let half = head_dim / 2;
    for (r, row) in x.chunks_mut(width).enumerate() {
        let (cos, sin) = rope.cos_sin_at(positions.row(r));
        for head in row.chunks_mut(head_dim) {
            for d in 0..half {
                let (a, b) = (head[d], head[d + half]);
                head[d] = a * cos[d] - b * sin[d];
                head[d + half] = b * cos[d] + a * sin[d];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut x, 1, 4, 0, 10_000.0);
        assert_eq!(x, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn rotates_pairs_by_hand() {
        // head_dim 4, theta 100: θ_0 = 1, θ_1 = 100^(-1/2) = 0.1. Row 0 at position 2 rotates
        // (x0, x2) by 2 rad and (x1, x3) by 0.2 rad; row 1 (position 3) by 3 and 0.3 rad.
        let mut x = vec![1.0, 1.0, 0.0, 0.0, 0.0, 2.0, 1.0, 0.0];
        rope(&mut x, 1, 4, 2, 100.0);
        let want = [
            2f32.cos(),
            0.2f32.cos(),
            2f32.sin(),
            0.2f32.sin(),
            -(3f32.sin()),
            2.0 * 0.3f32.cos(),
            3f32.cos(),
            2.0 * 0.3f32.sin(),
        ];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{x:?} vs {want:?}");
        }
    }

    #[test]
    fn rotation_keeps_pair_lengths() {
        let mut x: Vec<f32> = (0..16).map(|i| i as f32 * 0.3 - 2.0).collect();
        let before: Vec<f32> = x.clone();
        rope(&mut x, 2, 4, 7, 1e6);
        // A rotation keeps each (d, d + D/2) pair's length.
        for (row_a, row_b) in x.chunks(4).zip(before.chunks(4)) {
            for d in 0..2 {
                let la = row_a[d].hypot(row_a[d + 2]);
                let lb = row_b[d].hypot(row_b[d + 2]);
                assert!((la - lb).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn pairs_follow_their_axis_position() {
        // head_dim 6 → 3 pairs over axes (1, 2 pairs): pair 0 turns by the first position, pairs 1
        // and 2 by the second. θ = 1 so every θ_d = 1 (angles = positions).
        let split = Rope::new(6, 1.0).with_sections(&[1, 2]).unwrap();
        let mut x = vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        rope_with(&mut x, 1, &Positions::new(vec![2, 5], 2).unwrap(), &split);
        let want = [
            2f32.cos(),
            5f32.cos(),
            5f32.cos(),
            2f32.sin(),
            5f32.sin(),
            5f32.sin(),
        ];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{x:?} vs {want:?}");
        }
        // Both axes at the same position: plain RoPE.
        let (mut a, mut b) = (vec![0.3f32, -1.0, 2.0, 0.5, 0.1, -0.7], vec![0.0; 6]);
        b.copy_from_slice(&a);
        rope_with(&mut a, 1, &Positions::range_on_axes(9, 1, 2), &split);
        rope(&mut b, 1, 6, 9, 1.0);
        assert_eq!(a, b);
    }
}
