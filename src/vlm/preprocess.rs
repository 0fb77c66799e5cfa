//! Frame preprocessing as the released eval transform: resize to the model's image size with
//! PIL's bicubic filter, /255, ImageNet mean/std, one tile per frame; and uniform frame sampling.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An RGB frame, 8 bits per channel, row-major (height, width, 3).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Frame {
    pub fn new(width: usize, height: usize, rgb: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 || rgb.len() != width * height * 3 {
            return Err(Error::input(format!(
                "a {width}×{height} RGB frame needs {} bytes, got {}",
                width * height * 3,
                rgb.len()
            )));
        }
        Ok(Frame { width, height, rgb })
    }
}

/// Fixed-point bits of PIL's 8-bit resampling coefficients (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL's bicubic kernel (a = −0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`: per output pixel, the first input
/// index and the fixed-point weights (antialiased when shrinking).
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) / filterscale))
                .collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|v| {
                    let v = if total != 0.0 { v / total } else { *v };
                    let scaled = v * (1u32 << PRECISION_BITS) as f64;
                    if scaled < 0.0 {
                        (scaled - 0.5) as i32
                    } else {
                        (scaled + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like `PIL.Image.resize((w, h), Image.BICUBIC)` on an RGB image: horizontal pass then
/// vertical, each rounded to 8 bits, as Pillow's `ImagingResample` does.
pub fn resize_bicubic(f: &Frame, out_w: usize, out_h: usize) -> Frame {
    let mut cur = f.clone();
    if cur.width != out_w {
        let cs = coefficients(cur.width, out_w);
        let mut rgb = vec![0u8; cur.height * out_w * 3];
        for y in 0..cur.height {
            for (x, (xmin, k)) in cs.iter().enumerate() {
                for c in 0..3 {
                    let mut s: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &w) in k.iter().enumerate() {
                        s += cur.rgb[(y * cur.width + xmin + i) * 3 + c] as i64 * w as i64;
                    }
                    rgb[(y * out_w + x) * 3 + c] = clip8(s);
                }
            }
        }
        cur = Frame {
            width: out_w,
            height: cur.height,
            rgb,
        };
    }
    if cur.height != out_h {
        let cs = coefficients(cur.height, out_h);
        let mut rgb = vec![0u8; out_h * cur.width * 3];
        for (y, (ymin, k)) in cs.iter().enumerate() {
            for x in 0..cur.width {
                for c in 0..3 {
                    let mut s: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &w) in k.iter().enumerate() {
                        s += cur.rgb[((ymin + i) * cur.width + x) * 3 + c] as i64 * w as i64;
                    }
                    rgb[(y * cur.width + x) * 3 + c] = clip8(s);
                }
            }
        }
        cur = Frame {
            width: cur.width,
            height: out_h,
            rgb,
        };
    }
    cur
}

/// Frames of any size → pixel values (F, 3, size, size): bicubic resize (a no-op at the right
/// size), then (v/255 − mean)/std per channel.
pub fn pixel_values(frames: &[Frame], size: usize) -> Result<Tensor> {
    if frames.is_empty() {
        return Err(Error::input("no frames to process (zero frames)"));
    }
    let mut data = Vec::with_capacity(frames.len() * 3 * size * size);
    for f in frames {
        let r = resize_bicubic(f, size, size);
        for c in 0..3 {
            data.extend(
                r.rgb
                    .chunks(3)
                    .map(|px| (px[c] as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]),
            );
        }
    }
    Tensor::new(vec![frames.len(), 3, size, size], data)
}

/// The tile grid (columns, rows) InternVL's `find_closest_aspect_ratio` picks for a
/// `width`×`height` image: among every grid of `min_tiles..=max_tiles` tiles, ordered by tile
/// count, the one whose aspect ratio is closest to the image's; on a tie the later grid wins
/// when the image's area exceeds half the grid's area in pixels (`tile` = tile side). Grids of
/// equal count tie only at the exact midpoint of their ratios, where Python's set order would
/// decide; here they go by (columns, rows).
pub fn tile_grid(
    width: usize,
    height: usize,
    tile: usize,
    min_tiles: usize,
    max_tiles: usize,
) -> (usize, usize) {
    let mut grids: Vec<(usize, usize)> = (1..=max_tiles)
        .flat_map(|i| (1..=max_tiles).map(move |j| (i, j)))
        .filter(|(i, j)| (min_tiles..=max_tiles).contains(&(i * j)))
        .collect();
    grids.sort_by_key(|&(i, j)| (i * j, i, j));
    let aspect = width as f64 / height as f64;
    let area = (width * height) as f64;
    let mut best = (1, 1);
    let mut best_diff = f64::INFINITY;
    for (i, j) in grids {
        let diff = (aspect - i as f64 / j as f64).abs();
        if diff < best_diff {
            best_diff = diff;
            best = (i, j);
        } else if diff == best_diff && area > 0.5 * (tile * tile * i * j) as f64 {
            best = (i, j);
        }
    }
    best
}

/// InternVL's `dynamic_preprocess`: the image resized (bicubic) to the chosen grid of
/// `tile`×`tile` tiles and cut into them row by row, plus a `tile`×`tile` thumbnail of the
/// whole image when `thumbnail` is set and there is more than one tile.
pub fn dynamic_tiles(
    f: &Frame,
    tile: usize,
    min_tiles: usize,
    max_tiles: usize,
    thumbnail: bool,
) -> Vec<Frame> {
    let (cols, rows) = tile_grid(f.width, f.height, tile, min_tiles, max_tiles);
    let resized = resize_bicubic(f, cols * tile, rows * tile);
    let mut tiles = Vec::with_capacity(cols * rows + 1);
    for r in 0..rows {
        for c in 0..cols {
            let mut rgb = Vec::with_capacity(tile * tile * 3);
            for y in r * tile..(r + 1) * tile {
                let start = (y * resized.width + c * tile) * 3;
                rgb.extend_from_slice(&resized.rgb[start..start + tile * 3]);
            }
            tiles.push(Frame {
                width: tile,
                height: tile,
                rgb,
            });
        }
    }
    if thumbnail && tiles.len() != 1 {
        tiles.push(resize_bicubic(f, tile, tile));
    }
    tiles
}

/// Indices of `num` frames spread uniformly over `total` (the released eval's `get_index`:
/// segment midpoints over frames 0..total−1). With `total ≤ num` every frame is used once.
pub fn uniform_indices(total: usize, num: usize) -> Vec<usize> {
    if total <= num {
        return (0..total).collect();
    }
    let seg = (total - 1) as f64 / num as f64;
    (0..num)
        .map(|i| ((seg / 2.0 + (seg * i as f64).round_ties_even()) as usize).min(total - 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_resize_is_identity() {
        let f = Frame::new(3, 2, (0..18).map(|v| v as u8 * 13).collect()).unwrap();
        assert_eq!(resize_bicubic(&f, 3, 2), f);
    }

    #[test]
    fn constant_image_stays_constant() {
        let f = Frame::new(7, 5, vec![200; 105]).unwrap();
        let r = resize_bicubic(&f, 4, 9);
        assert!(r.rgb.iter().all(|&v| v == 200));
    }

    #[test]
    fn tile_grid_by_hand() {
        // 130×60 (aspect 2.17), up to 6 tiles: grids by count then (i, j); 2:1 (diff 0.17)
        // beats 3:1 (0.83) and 3:2 (0.67).
        assert_eq!(tile_grid(130, 60, 28, 1, 6), (2, 1));
        // A square image: 1:1 first; 2:2 ties it (diff 0) and wins only when the image area
        // exceeds half of 2×2 tiles: 56² > 0.5·4·28² = 1568 → (2, 2); 30² does not.
        assert_eq!(tile_grid(56, 56, 28, 1, 6), (2, 2));
        assert_eq!(tile_grid(30, 30, 28, 1, 6), (1, 1));
        // max 1: always one tile.
        assert_eq!(tile_grid(500, 20, 28, 1, 1), (1, 1));
    }

    #[test]
    fn dynamic_tiles_cut_row_by_row_with_a_thumbnail() {
        // A 4×2 image whose pixels hold their x in red: grid 2×1 of 2-pixel tiles, no resize.
        let rgb = (0..2)
            .flat_map(|_| (0..4u8).flat_map(|x| [x, 0, 0]))
            .collect();
        let f = Frame::new(4, 2, rgb).unwrap();
        let tiles = dynamic_tiles(&f, 2, 1, 6, true);
        assert_eq!(tiles.len(), 3);
        assert_eq!(
            tiles[0].rgb.iter().step_by(3).copied().collect::<Vec<_>>(),
            [0, 1, 0, 1]
        );
        assert_eq!(
            tiles[1].rgb.iter().step_by(3).copied().collect::<Vec<_>>(),
            [2, 3, 2, 3]
        );
        assert_eq!((tiles[2].width, tiles[2].height), (2, 2));
        assert_eq!(dynamic_tiles(&f, 2, 1, 6, false).len(), 2);
    }

    #[test]
    fn uniform_indices_by_hand() {
        // 100 frames, 4 segments: seg = 99/4 = 24.75 → ⌊12.375 + round(24.75·i)⌋ with
        // round half to even (numpy): 12, 37, 62 (49.5 → 50), 86.
        assert_eq!(uniform_indices(100, 4), [12, 37, 62, 86]);
        assert_eq!(uniform_indices(3, 8), [0, 1, 2]);
    }
}
