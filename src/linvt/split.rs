//! Long clips on any adapter. SVR works on the clip's (T·N, E) tokens and writes their (T·N, 3E)
//! qkv projections; a few hundred frames exceed one storage binding (128 MiB on lavapipe and on
//! many WebGPU devices). The forward then holds the activations as tiles, each a block of frames
//! × token positions small enough that its projections fit one binding: attention along tokens
//! runs on tiles of whole frames, attention along frames on tiles of whole token positions, and
//! the activations are re-cut between the two by row copies. Projections are row-wise; the
//! scores (T·N values) are concatenated and the top-k runs once; the selected rows are gathered
//! tile by tile. A clip that fits is one tile, and the forward is then the unsplit one exactly.
//! See docs/design.md "Long clips".

use std::ops::Range;

use crate::error::{Error, Result};
use crate::ops::{Axis, Ops};

/// A block of a clip's (frames × token positions) grid, its rows stored frame-major: the row of
/// (t, n) is (t − frames.start)·|positions| + (n − positions.start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub frames: Range<usize>,
    pub positions: Range<usize>,
}

impl Tile {
    pub fn rows(&self) -> usize {
        self.frames.len() * self.positions.len()
    }
    fn row_of(&self, t: usize, n: usize) -> u32 {
        ((t - self.frames.start) * self.positions.len() + n - self.positions.start) as u32
    }
}

/// A clip's activations held as tiles (`tiles[i]` holds the rows of `layout[i]`).
#[derive(Clone, Debug)]
pub struct Tiled<T> {
    pub tiles: Vec<T>,
    pub layout: Vec<Tile>,
}

impl<T> Tiled<T> {
    /// One tensor holding the whole clip: `frames` × `tokens` rows, frame-major.
    pub fn whole(x: T, frames: usize, tokens: usize) -> Self {
        Tiled {
            tiles: vec![x],
            layout: vec![Tile {
                frames: 0..frames,
                positions: 0..tokens,
            }],
        }
    }

    /// Consecutive blocks of whole frames (a vision encoder's chunks): each part's tensor and
    /// how many frames of `tokens` tokens it holds.
    pub fn from_parts(parts: Vec<(T, usize)>, tokens: usize) -> Self {
        let mut start = 0;
        let (tiles, layout) = parts
            .into_iter()
            .map(|(t, f)| {
                start += f;
                let tile = Tile {
                    frames: start - f..start,
                    positions: 0..tokens,
                };
                (t, tile)
            })
            .unzip();
        Tiled { tiles, layout }
    }
}

/// f32 values in one row of the widest tensor SVR writes: the qkv projection, 3E.
fn qkv_row_bytes(width: usize) -> u64 {
    3 * width as u64 * 4
}

/// How one forward cuts a clip: tiles of whole frames (attention along tokens, projections,
/// scores, the gather) and tiles of whole token positions (attention along frames).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub by_frames: Vec<Tile>,
    pub by_positions: Vec<Tile>,
}

impl Split {
    /// The split of a clip of `frames` × `tokens` tokens of width `width` under a binding limit
    /// (None: one tile). An error when even the smallest tile cannot fit, naming a clip length
    /// or frame size that does.
    pub fn plan(frames: usize, tokens: usize, width: usize, limit: Option<u64>) -> Result<Split> {
        let whole = vec![Tile {
            frames: 0..frames,
            positions: 0..tokens,
        }];
        let Some(limit) = limit else {
            return Ok(Split {
                by_frames: whole.clone(),
                by_positions: whole,
            });
        };
        let row_bytes = qkv_row_bytes(width);
        let rows_fit = (limit / row_bytes) as usize;
        let scores = (frames * tokens) as u64 * 4;
        if scores > limit {
            return Err(Error::TensorTooLarge {
                tensor: "significance scores (T·N)".into(),
                bytes: scores,
                limit,
                hint: format!(
                    "split the clip into clips of at most {} frames",
                    limit / 4 / tokens.max(1) as u64
                ),
            });
        }
        if frames * tokens <= rows_fit {
            return Ok(Split {
                by_frames: whole.clone(),
                by_positions: whole,
            });
        }
        let frames_per_tile = rows_fit / tokens.max(1);
        if frames_per_tile == 0 {
            return Err(Error::TensorTooLarge {
                tensor: "SVR qkv projection of one frame (N × 3E)".into(),
                bytes: tokens as u64 * row_bytes,
                limit,
                hint: format!(
                    "a frame of {tokens} tokens of width {width} needs more than one binding; use fewer tokens per frame (at most {rows_fit}) or an adapter with a larger storage-binding limit"
                ),
            });
        }
        let positions_per_tile = rows_fit / frames.max(1);
        if positions_per_tile == 0 {
            return Err(Error::TensorTooLarge {
                tensor: "SVR qkv projection along the frame axis (T × 3E per token position)"
                    .into(),
                bytes: frames as u64 * row_bytes,
                limit,
                hint: format!(
                    "attention along frames needs every frame of one token position in one binding: split the clip into clips of at most {rows_fit} frames, or use an adapter with a larger storage-binding limit"
                ),
            });
        }
        Ok(Split {
            by_frames: balanced(frames, frames_per_tile)
                .map(|f| Tile {
                    frames: f,
                    positions: 0..tokens,
                })
                .collect(),
            by_positions: balanced(tokens, positions_per_tile)
                .map(|p| Tile {
                    frames: 0..frames,
                    positions: p,
                })
                .collect(),
        })
    }

    /// The tiles attention along `axis` runs on.
    pub fn for_axis(&self, axis: Axis) -> &[Tile] {
        match axis {
            Axis::Tokens => &self.by_frames,
            Axis::Frames => &self.by_positions,
        }
    }

    /// Rows of the largest tile.
    pub fn max_tile_rows(&self) -> usize {
        self.by_frames
            .iter()
            .chain(&self.by_positions)
            .map(Tile::rows)
            .max()
            .unwrap_or(0)
    }
}

/// `0..len` cut into the fewest ranges of at most `most` items, their sizes differing by at
/// most one.
fn balanced(len: usize, most: usize) -> impl Iterator<Item = Range<usize>> {
    let count = len.div_ceil(most.max(1)).max(1);
    (0..count).map(move |i| i * len / count..(i + 1) * len / count)
}

/// The same activations re-cut into the tiles `to` (rows of `width` values); `x` itself when
/// it is already cut so.
pub fn retile<O: Ops>(
    ops: &mut O,
    x: Tiled<O::T>,
    to: &[Tile],
    width: usize,
) -> Result<Tiled<O::T>> {
    if x.layout == to {
        return Ok(x);
    }
    let mut tiles = Vec::with_capacity(to.len());
    for dst in to {
        let mut parts = Vec::new();
        for (tensor, src) in x.tiles.iter().zip(&x.layout) {
            let frames = src.frames.start.max(dst.frames.start)..src.frames.end.min(dst.frames.end);
            let positions = src.positions.start.max(dst.positions.start)
                ..src.positions.end.min(dst.positions.end);
            if frames.is_empty() || positions.is_empty() {
                continue;
            }
            let pairs = frames
                .flat_map(|t| {
                    positions
                        .clone()
                        .map(move |n| (src.row_of(t, n), dst.row_of(t, n)))
                })
                .collect();
            parts.push((tensor, pairs));
        }
        tiles.push(ops.assemble_rows(dst.rows(), width, &parts)?);
    }
    Ok(Tiled {
        tiles,
        layout: to.to_vec(),
    })
}

/// Device memory LinVT needs for one clip, for the plan the bench prints.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MemoryPlan {
    pub frames: usize,
    pub tokens: usize,
    pub width: usize,
    /// The binding limit planned for.
    pub binding_limit: u64,
    pub frame_tiles: usize,
    pub position_tiles: usize,
    /// Bytes of the largest tensor one op writes (must be ≤ the binding limit).
    pub largest_binding: u64,
    /// Activations alive at once at the peak, plus the parameters, in bytes.
    pub peak_bytes: u64,
}

/// The memory plan of a clip: the split, its largest binding, and the peak. The peak counts the
/// input tokens (held by the caller), the activations being re-cut (two copies) and the largest
/// tile's projection, attention output and result; unsplit, the input, x, qkv (3×), the
/// attention output and the result.
pub fn memory_plan(
    frames: usize,
    tokens: usize,
    width: usize,
    limit: u64,
    parameter_bytes: u64,
) -> Result<MemoryPlan> {
    let split = Split::plan(frames, tokens, width, Some(limit))?;
    let act = (frames * tokens * width) as u64 * 4;
    let tile_rows = split.max_tile_rows() as u64;
    let tile_bytes = tile_rows * width as u64 * 4;
    let whole = split.by_frames.len() == 1 && split.by_positions.len() == 1;
    let peak = if whole {
        7 * act
    } else {
        3 * act + 5 * tile_bytes
    };
    Ok(MemoryPlan {
        frames,
        tokens,
        width,
        binding_limit: limit,
        frame_tiles: split.by_frames.len(),
        position_tiles: split.by_positions.len(),
        largest_binding: (tile_rows * qkv_row_bytes(width)).max((frames * tokens) as u64 * 4),
        peak_bytes: peak + parameter_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_ranges_cover_everything_once() {
        for (len, most) in [(10, 3), (10, 10), (10, 1), (7, 100), (3600, 46)] {
            let r: Vec<_> = balanced(len, most).collect();
            assert_eq!(r.first().unwrap().start, 0);
            assert_eq!(r.last().unwrap().end, len);
            assert!(r.windows(2).all(|w| w[0].end == w[1].start));
            assert!(r.iter().all(|x| x.len() <= most && !x.is_empty()));
            assert_eq!(r.len(), len.div_ceil(most));
        }
    }

    #[test]
    fn a_clip_that_fits_is_one_tile() {
        let s = Split::plan(16, 256, 896, Some(128 << 20)).unwrap();
        assert_eq!(s.by_frames.len(), 1);
        assert_eq!(s.by_frames, s.by_positions);
        assert_eq!(Split::plan(16, 256, 896, None).unwrap(), s);
    }

    #[test]
    fn every_tile_fits_and_the_frame_axis_limit_is_named() {
        let limit = 128u64 << 20;
        let s = Split::plan(3600, 256, 896, Some(limit)).unwrap();
        assert!(s.max_tile_rows() as u64 * qkv_row_bytes(896) <= limit);
        assert!(s.by_frames.len() > 1 && s.by_positions.len() > 1);
        let most = (limit / qkv_row_bytes(896)) as usize;
        let e = Split::plan(most + 1, 256, 896, Some(limit))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("at most {most} frames")), "{e}");
        Split::plan(most, 256, 896, Some(limit)).unwrap();
    }
}
