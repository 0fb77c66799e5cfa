//! Qwen2-VL's processor (docs/qwen2vl-reference.md §1): `smart_resize` to sides that are
//! multiples of 28 within a pixel budget, PIL's bicubic resize, CLIP mean/std, frames grouped in
//! temporal pairs (an image repeated, an odd video's last frame repeated), and the patches
//! flattened in the order the model reads them: per temporal group, 2×2 merge units in raster
//! order, the unit's patches raster inside it; each patch channel-major, then frame, then its
//! 14×14 pixels.

use serde_json::Value;

use super::preprocess::{resize_bicubic, Frame};
use super::qwen2_vit::{Grid, Qwen2VisionConfig};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

// The values as OpenAI's CLIP publishes them; like the processor, we round them to f32.
#[allow(clippy::excessive_precision)]
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// The processor's settings (`preprocessor_config.json`, `video_preprocessor_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct Qwen2Processor {
    /// Pixel budget of an image: its resized area lies in [min_pixels, max_pixels].
    pub min_pixels: usize,
    pub max_pixels: usize,
    /// The same for each video frame.
    pub video_min_pixels: usize,
    pub video_max_pixels: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Qwen2Processor {
    /// The hub checkpoints' image budget (3136 … 12845056 pixels); videos take the image
    /// processor's settings when there is no video processor file, as transformers does.
    fn default() -> Self {
        Qwen2Processor {
            min_pixels: 56 * 56,
            max_pixels: 16384 * 28 * 28,
            video_min_pixels: 56 * 56,
            video_max_pixels: 16384 * 28 * 28,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }
}

fn pixels_of(v: &Value, key: &str, edge: &str) -> Option<usize> {
    v.get(key)
        .or_else(|| v.get("size").and_then(|s| s.get(edge)))
        .and_then(Value::as_u64)
        .map(|x| x as usize)
}

fn triple(v: &Value, key: &str) -> Option<[f32; 3]> {
    let a = v.get(key)?.as_array()?;
    match a.iter().filter_map(Value::as_f64).collect::<Vec<_>>()[..] {
        [x, y, z] => Some([x as f32, y as f32, z as f32]),
        _ => None,
    }
}

impl Qwen2Processor {
    /// Reads the image processor's file and, if present, the video processor's.
    pub fn from_json(image: Option<&Value>, video: Option<&Value>) -> Result<Self> {
        let mut p = Qwen2Processor::default();
        if let Some(v) = image {
            p.min_pixels = pixels_of(v, "min_pixels", "shortest_edge").unwrap_or(p.min_pixels);
            p.max_pixels = pixels_of(v, "max_pixels", "longest_edge").unwrap_or(p.max_pixels);
            p.mean = triple(v, "image_mean").unwrap_or(p.mean);
            p.std = triple(v, "image_std").unwrap_or(p.std);
        }
        (p.video_min_pixels, p.video_max_pixels) = (p.min_pixels, p.max_pixels);
        if let Some(v) = video {
            p.video_min_pixels =
                pixels_of(v, "min_pixels", "shortest_edge").unwrap_or(p.min_pixels);
            p.video_max_pixels = pixels_of(v, "max_pixels", "longest_edge").unwrap_or(p.max_pixels);
        }
        if p.min_pixels > p.max_pixels || p.video_min_pixels > p.video_max_pixels {
            return Err(Error::config(format!(
                "preprocessor_config.json: min_pixels must not exceed max_pixels ({p:?})"
            )));
        }
        Ok(p)
    }
}

/// `smart_resize`: (height, width) → sides that are multiples of `factor` (28), area within
/// [min_pixels, max_pixels], aspect ratio kept as closely as that allows. Python's `round`
/// (half to even) as the processor uses it.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    if height < factor || width < factor {
        return Err(Error::input(format!(
            "a {width}×{height} image is too small for Qwen2-VL: both sides must be at least {factor} pixels (one 2×2 unit of 14-pixel patches)"
        )));
    }
    if h.max(w) / h.min(w) > 200.0 {
        return Err(Error::input(format!(
            "a {width}×{height} image cannot be resized for Qwen2-VL: the longer side must be at most 200 times the shorter"
        )));
    }
    let mut hb = (h / f).round_ties_even() * f;
    let mut wb = (w / f).round_ties_even() * f;
    if hb * wb > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        hb = f.max((h / beta / f).floor() * f);
        wb = f.max((w / beta / f).floor() * f);
    } else if hb * wb < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        hb = (h * beta / f).ceil() * f;
        wb = (w * beta / f).ceil() * f;
    }
    Ok((hb as usize, wb as usize))
}

/// Flattens frames (all of one size, a whole number of temporal groups), already normalised as
/// (frame, channel, y, x) planes, into the model's patch rows.
fn flatten(
    planes: &[Vec<f32>],
    height: usize,
    width: usize,
    v: &Qwen2VisionConfig,
) -> Result<(Tensor, Grid)> {
    let (p, tp, m, ch) = (v.patch_size, v.temporal_patch_size, v.merge, v.channels);
    let grid = Grid {
        t: planes.len() / tp,
        h: height / p,
        w: width / p,
    };
    let mut data = Vec::with_capacity(grid.patches() * v.patch_values());
    for t in 0..grid.t {
        for bh in 0..grid.h / m {
            for bw in 0..grid.w / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (y0, x0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                        for c in 0..ch {
                            for ft in 0..tp {
                                let plane = &planes[t * tp + ft];
                                for y in 0..p {
                                    let row = (c * height + y0 + y) * width + x0;
                                    data.extend_from_slice(&plane[row..row + p]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok((
        Tensor::new(vec![grid.patches(), v.patch_values()], data)?,
        grid,
    ))
}

/// An image as the image processor makes it: smart-resized (PIL bicubic), x·(1/255), then
/// (x − mean)/std in f32, repeated to fill a temporal pair. Patch rows and the grid.
pub fn image_patches(
    f: &Frame,
    proc: &Qwen2Processor,
    v: &Qwen2VisionConfig,
) -> Result<(Tensor, Grid)> {
    let factor = v.patch_size * v.merge;
    let (h, w) = smart_resize(f.height, f.width, factor, proc.min_pixels, proc.max_pixels)?;
    let r = resize_bicubic(f, w, h);
    let mut plane = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        plane.extend(r.rgb.chunks(3).map(|px| {
            // rescale in f64 then f32, normalise in f32, as the image processor does.
            let x = (px[c] as f64 * (1.0 / 255.0)) as f32;
            (x - proc.mean[c]) / proc.std[c]
        }));
    }
    let planes = vec![plane; v.temporal_patch_size];
    flatten(&planes, h, w, v)
}

/// The patch grid `image_patches` / `video_patches` will make of `frames` (one: an image),
/// from their size alone.
pub fn grid_of(
    frames: &[Frame],
    is_video: bool,
    proc: &Qwen2Processor,
    v: &Qwen2VisionConfig,
) -> Result<Grid> {
    let first = frames
        .first()
        .ok_or_else(|| Error::input("no frames to process (zero frames)"))?;
    let (min, max) = match is_video {
        true => (proc.video_min_pixels, proc.video_max_pixels),
        false => (proc.min_pixels, proc.max_pixels),
    };
    let (h, w) = smart_resize(first.height, first.width, v.patch_size * v.merge, min, max)?;
    let t = match is_video {
        true => frames.len().div_ceil(v.temporal_patch_size),
        false => 1,
    };
    Ok(Grid {
        t,
        h: h / v.patch_size,
        w: w / v.patch_size,
    })
}

/// Video frames as the video processor makes them: one smart-resized size for all (from the
/// first frame's), PIL bicubic (transformers resizes videos with torchvision's antialiased
/// bicubic, which differs by one level in ~0.007 % of values), (x − 255·mean)/(255·std) in f32,
/// the last frame repeated to an even count. Patch rows and the grid.
pub fn video_patches(
    frames: &[Frame],
    proc: &Qwen2Processor,
    v: &Qwen2VisionConfig,
) -> Result<(Tensor, Grid)> {
    let first = frames
        .first()
        .ok_or_else(|| Error::input("no frames to process (zero frames)"))?;
    if frames.len() < v.temporal_patch_size {
        return Err(Error::input(format!(
            "a video of {} frame(s) is too short: Qwen2-VL groups frames in pairs, so it needs at least {}; ask about a single frame as an image",
            frames.len(),
            v.temporal_patch_size
        )));
    }
    if frames
        .iter()
        .any(|f| (f.width, f.height) != (first.width, first.height))
    {
        return Err(Error::input("the video's frames differ in size"));
    }
    let factor = v.patch_size * v.merge;
    let (h, w) = smart_resize(
        first.height,
        first.width,
        factor,
        proc.video_min_pixels,
        proc.video_max_pixels,
    )?;
    let mut planes: Vec<Vec<f32>> = frames
        .iter()
        .map(|f| {
            let r = resize_bicubic(f, w, h);
            let mut plane = Vec::with_capacity(3 * h * w);
            for c in 0..3 {
                let (mean, std) = (255.0 * proc.mean[c], 255.0 * proc.std[c]);
                plane.extend(r.rgb.chunks(3).map(|px| (px[c] as f32 - mean) / std));
            }
            plane
        })
        .collect();
    let tp = v.temporal_patch_size;
    while !planes.len().is_multiple_of(tp) {
        planes.push(planes.last().expect("non-empty").clone());
    }
    flatten(&planes, h, w, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_as_the_reference_describes() {
        // docs/qwen2vl-reference.md §1.1's fixture examples.
        assert_eq!(smart_resize(90, 130, 28, 3136, 10976).unwrap(), (84, 112));
        assert_eq!(smart_resize(40, 50, 28, 3136, 10976).unwrap(), (56, 84));
        // 70 / 28 = 2.5 rounds to 2 (half to even), 98 / 28 = 3.5 to 4.
        assert_eq!(smart_resize(70, 98, 28, 3136, 10976).unwrap(), (56, 112));
        assert!(smart_resize(28, 6000, 28, 3136, 10976).is_err());
        let e = smart_resize(20, 300, 28, 3136, 10976)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 28"), "{e}");
    }
}
