//! The provenance picture (the paper's Fig. 4): the sampled frames side by side, each cell
//! tinted by how much the video tokens average over it.

use std::path::Path;

use super::config::PsVersion;
use super::preprocess::{resize_bicubic, Frame};
use crate::error::{Error, Result};
use crate::linvt::Provenance;

/// Side of each frame in the picture, in pixels.
const TILE: usize = 128;

/// Draws `frames` with a red tint over each token cell proportional to the total weight the
/// video tokens give it (head-averaged, summed over tokens, scaled to the largest cell), and
/// the cell grid. Token n of a frame covers cell (row, col) of a `side`×`side` grid, in the
/// order the pixel shuffle emits tokens.
pub fn provenance_png(
    frames: &[Frame],
    prov: &Provenance,
    version: PsVersion,
    path: &Path,
) -> Result<()> {
    let side = (prov.tokens as f64).sqrt().round() as usize;
    if side * side != prov.tokens || prov.frames != frames.len() {
        return Err(Error::input(format!(
            "provenance of {} frames × {} tokens cannot be drawn over {} frames",
            prov.frames,
            prov.tokens,
            frames.len()
        )));
    }
    let cells = prov.frames * prov.tokens;
    let mut weight = vec![0.0f32; cells];
    for r in 0..prov.rows {
        for (w, v) in weight.iter_mut().zip(prov.mean_row(r)) {
            *w += v;
        }
    }
    let max = weight.iter().copied().fold(0.0f32, f32::max).max(1e-12);
    let (width, height) = (TILE * frames.len(), TILE);
    let mut img = image::RgbImage::new(width as u32, height as u32);
    for (t, f) in frames.iter().enumerate() {
        let tile = resize_bicubic(f, TILE, TILE);
        for y in 0..TILE {
            for x in 0..TILE {
                let (row, col) = (y * side / TILE, x * side / TILE);
                let n = match version {
                    PsVersion::V2 => row * side + col,
                    PsVersion::V1 => col * side + row,
                };
                let a = 0.7 * weight[t * prov.tokens + n] / max;
                let px = &tile.rgb[(y * TILE + x) * 3..][..3];
                let edge = (y * side) % TILE < side || (x * side) % TILE < side;
                let rgb = if edge {
                    [255, 255, 255]
                } else {
                    [
                        (px[0] as f32 * (1.0 - a) + 255.0 * a) as u8,
                        (px[1] as f32 * (1.0 - a)) as u8,
                        (px[2] as f32 * (1.0 - a)) as u8,
                    ]
                };
                img.put_pixel((t * TILE + x) as u32, y as u32, image::Rgb(rgb));
            }
        }
    }
    img.save(path)
        .map_err(|e| Error::input(format!("cannot write {}: {e}", path.display())))
}
