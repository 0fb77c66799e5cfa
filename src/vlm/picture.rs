//! The provenance picture (the paper's Fig. 4): the sampled frames side by side, each cell lit
//! by how much the video tokens average over it.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use super::config::PsVersion;
use super::preprocess::{resize_bicubic, Frame};
use crate::error::{Error, Result};
use crate::linvt::Provenance;

/// Side of each frame in the picture, in pixels.
const TILE: usize = 128;
/// Height of the per-frame weight bar under the frames.
const BAR: usize = 12;

/// Draws `frames` with each token cell's brightness set by the total weight the video tokens
/// give it (head-averaged, summed over tokens, scaled to the largest cell): the most used cell
/// at full brightness, an unused one at a quarter, so the picture stays readable whether the
/// weights are peaked or nearly uniform. A red bar under each frame shows that frame's share
/// of the total weight. Plus the cell grid. Token n of a frame covers cell (row, col) of a `side`×`side` grid, in the
/// order the pixel shuffle emits tokens.
pub fn provenance_picture(
    frames: &[Frame],
    prov: &Provenance,
    version: PsVersion,
) -> Result<Frame> {
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
    let total: f32 = weight.iter().sum::<f32>().max(1e-12);
    let (width, height) = (TILE * frames.len(), TILE + BAR);
    let mut img = Frame {
        width,
        height,
        rgb: vec![0; width * height * 3],
    };
    let mut put = |x: usize, y: usize, rgb: [u8; 3]| {
        img.rgb[(y * width + x) * 3..][..3].copy_from_slice(&rgb);
    };
    for (t, f) in frames.iter().enumerate() {
        let tile = resize_bicubic(f, TILE, TILE);
        for y in 0..TILE {
            for x in 0..TILE {
                let (row, col) = (y * side / TILE, x * side / TILE);
                let n = match version {
                    PsVersion::V2 => row * side + col,
                    PsVersion::V1 => col * side + row,
                };
                let light = 0.25 + 0.75 * weight[t * prov.tokens + n] / max;
                let px = &tile.rgb[(y * TILE + x) * 3..][..3];
                let edge = (y * side) % TILE < side || (x * side) % TILE < side;
                let rgb = if edge {
                    [255, 255, 255]
                } else {
                    [0, 1, 2].map(|c| (px[c] as f32 * light) as u8)
                };
                put(t * TILE + x, y, rgb);
            }
        }
        // This frame's share of the weight, as a bar scaled so that an equal share of all
        // frames fills half the tile.
        let share: f32 = weight[t * prov.tokens..(t + 1) * prov.tokens]
            .iter()
            .sum::<f32>()
            / total;
        let filled = ((share * frames.len() as f32 * 0.5).min(1.0) * TILE as f32) as usize;
        for y in TILE..TILE + BAR {
            for x in 0..TILE {
                let rgb = if x < filled {
                    [220, 40, 40]
                } else {
                    [24, 24, 24]
                };
                put(t * TILE + x, y, rgb);
            }
        }
    }
    Ok(img)
}

/// [`provenance_picture`] written to `path` as a PNG.
#[cfg(not(target_arch = "wasm32"))]
pub fn provenance_png(
    frames: &[Frame],
    prov: &Provenance,
    version: PsVersion,
    path: &Path,
) -> Result<()> {
    let pic = provenance_picture(frames, prov, version)?;
    let img = image::RgbImage::from_raw(pic.width as u32, pic.height as u32, pic.rgb)
        .expect("the picture holds width × height pixels");
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| Error::input(format!("cannot encode {}: {e}", path.display())))?;
    crate::io::write_atomic(path, png.get_ref())
}

/// Writes `frames` as `frame_000.png`, `frame_001.png`, … into `dir` (created if missing), in
/// the order `ask --frames DIR` reads them back.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_frames(frames: &[Frame], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        source: e,
    })?;
    for (i, f) in frames.iter().enumerate() {
        let path = dir.join(format!("frame_{i:03}.png"));
        let img = image::RgbImage::from_raw(f.width as u32, f.height as u32, f.rgb.clone())
            .ok_or_else(|| Error::input(format!("frame {i} does not hold its pixels")))?;
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png)
            .map_err(|e| Error::input(format!("cannot encode {}: {e}", path.display())))?;
        crate::io::write_atomic(&path, png.get_ref())?;
    }
    Ok(())
}
