//! A procedurally generated clip for demos and benchmarks: a bright square moving right and
//! down over a gradient that shifts from frame to frame (the kind of scene the tiny model's
//! golden clip shows), so nothing has to be read from disk.

use super::preprocess::Frame;

/// The square's colour.
pub const SQUARE: [u8; 3] = [245, 245, 235];

/// `frames` RGB frames of `size`×`size`. The square (a quarter of the side) starts at the top
/// left and reaches the bottom right in the last frame.
pub fn moving_square_clip(frames: usize, size: usize) -> Vec<Frame> {
    let side = (size / 4).max(1);
    let travel = size - side;
    (0..frames)
        .map(|t| {
            // Position along the path, 0 in the first frame and `travel` in the last.
            let step = if frames > 1 {
                t * travel / (frames - 1)
            } else {
                0
            };
            let mut rgb = Vec::with_capacity(size * size * 3);
            for y in 0..size {
                for x in 0..size {
                    let inside =
                        (step..step + side).contains(&x) && (step..step + side).contains(&y);
                    let px = if inside {
                        SQUARE
                    } else {
                        // Channel levels 0..=255 from the position (and, for blue, time).
                        let ramp = |v: usize, span: usize| (v * 255 / span.max(1)).min(255) as u8;
                        [
                            ramp(x, 4 * size),
                            40 + ramp(y, 2 * size),
                            ramp(x + y + t * size / frames.max(1), 3 * size),
                        ]
                    };
                    rgb.extend_from_slice(&px);
                }
            }
            Frame {
                width: size,
                height: size,
                rgb,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_square_moves_from_top_left_to_bottom_right() {
        let clip = moving_square_clip(4, 16);
        assert_eq!(clip.len(), 4);
        let red = |f: &Frame, x: usize, y: usize| f.rgb[(y * 16 + x) * 3..][..3] == SQUARE;
        assert!(red(&clip[0], 0, 0) && !red(&clip[0], 15, 15));
        assert!(red(&clip[3], 15, 15) && !red(&clip[3], 0, 0));
        assert!(clip.iter().all(|f| f.rgb.len() == 16 * 16 * 3));
    }
}
