//! GPU top-k: radix select in the manner of AIR top-k (RAFT `select_radix.cuh`), recorded into
//! one `Recorder` with no readback between passes.
//!
//! Scores become order-preserving u32 keys (larger float → larger key; **-0.0 ranks below
//! +0.0**, NaN keys are simply large or small values, so a NaN input still yields k indices).
//! Ties go to the lower flat index. Dispatches per call:
//!
//! | step | dispatches | workgroups |
//! |---|---|---|
//! | `init` (state, histogram, status = u32::MAX) | 1 | 1 |
//! | `histogram` + `select_digit`, digits of 11, 11, 10 bits | 6 | ⌈len / (256·HIST_ITEMS)⌉ and 1 |
//! | `count_blocks`, `scan_blocks`, `scatter` (index order) | 3 | ⌈len/1024⌉, 1, ⌈len/1024⌉ |
//! | Score order only: `sort_tiles` + ⌈log2 ⌈k/256⌉⌉ × `merge_runs` | 1 + m | ⌈k/256⌉ each |
//!
//! So 10 dispatches for `TopKOrder::Index`, 11 + ⌈log2 ⌈k/256⌉⌉ for `TopKOrder::Score` (e.g.
//! 11 for k ≤ 256, 14 for k = 2048, 17 for k = 16384); see [`dispatch_count`].
//! The histogram passes read all scores each time (no candidate filtering as in RAFT's
//! multi-pass variant), which keeps the buffers fixed-size; everything is O(len) except the
//! score-order sort, O(k log² k) in total.
//!
//! The result is deterministic: histogram counts are sums, the non-finite status is an
//! `atomicMin`, and every output position is computed, never claimed by an atomic counter.

use super::buffer::GpuTensor;
use super::kernel::{grid, Recorder, Shader};
use crate::cpu::topk::non_finite_error;
use crate::error::{Error, Result};
use crate::ops::{check_k, TopKOrder};

pub const SHADER: Shader = Shader {
    name: "topk",
    parts: &[include_str!("../../shaders/topk.wgsl")],
};

/// Workgroup size of every entry point (fixed in the WGSL: the scans and bin ownership use it).
const WG: usize = 256;
/// Layout of the `work` buffer (must match the WGSL constants).
const BLK: usize = 8 + 2048;
/// Elements per compaction block (WG × CITEMS in the WGSL).
const CBLOCK: usize = 1024;
/// Tile of the score-order rank sort.
const TILE: usize = 256;
/// Digit passes: (shift, bits), from the top of the key.
const PASSES: [(u32, u32); 3] = [(21, 11), (10, 11), (0, 10)];

/// What `top_k` leaves on the GPU.
pub struct TopKResult {
    /// (k) u32 flat indices, in the requested order.
    pub indices: GpuTensor,
    /// (1) u32: `u32::MAX` when every score was finite, else the lowest flat index of a
    /// non-finite score. Read it back and pass it to [`status_error`].
    pub status: GpuTensor,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    off: u32,
    k: u32,
    shift: u32,
    dmask: u32,
    hi_mask: u32,
    check: u32,
    nwg: u32,
    nblocks: u32,
    width: u32,
    pad0: u32,
    pad1: u32,
}

/// Elements per thread of one histogram workgroup. On a CPU adapter (lavapipe) workgroups are
/// run one after another by a few threads, so fewer, larger workgroups mean fewer flushes of the
/// 2048-bin local histogram; on GPUs 16 (4096 elements per workgroup) keeps enough workgroups
/// in flight for a few hundred thousand scores while amortising the flush.
fn hist_items(rec: &Recorder) -> usize {
    if rec.ctx.info.device_type == wgpu::DeviceType::Cpu {
        64
    } else {
        16
    }
}

/// Number of merge levels the score-order sort needs for `k` elements.
fn merge_levels(k: usize) -> usize {
    let mut w = TILE;
    let mut m = 0;
    while w < k {
        w *= 2;
        m += 1;
    }
    m
}

/// Dispatches one `top_k` call records.
pub fn dispatch_count(k: usize, order: TopKOrder) -> usize {
    match order {
        TopKOrder::Index => 10,
        TopKOrder::Score => 11 + merge_levels(k),
    }
}

/// Records top-k of the flat scores view (any shape; its `len()` elements from its offset).
/// See the module docs for the algorithm and the dispatch count.
pub fn top_k(
    rec: &mut Recorder,
    scores: &GpuTensor,
    k: usize,
    order: TopKOrder,
) -> Result<TopKResult> {
    let len = scores.len();
    check_k(k, len)?;
    if len > (u32::MAX / 2) as usize {
        return Err(Error::input(format!(
            "top-k over {len} scores: at most {} are supported (32-bit indices)",
            u32::MAX / 2
        )));
    }
    let ctx = rec.ctx;
    let items = hist_items(rec);
    let nblocks = len.div_ceil(CBLOCK);
    let work = rec.alloc("topk.work", &[BLK + 2 * nblocks])?;
    let status = rec.alloc("topk.status", &[1])?;
    let indices = rec.alloc("topk.indices", &[k])?;

    let consts = [("HIST_ITEMS", items as f64)];
    let p_init = ctx.pipeline(&SHADER, "init", &[])?;
    let p_hist = ctx.pipeline(&SHADER, "histogram", &consts)?;
    let p_select = ctx.pipeline(&SHADER, "select_digit", &[])?;
    let p_count = ctx.pipeline(&SHADER, "count_blocks", &[])?;
    let p_scan = ctx.pipeline(&SHADER, "scan_blocks", &[])?;
    let p_scatter = ctx.pipeline(&SHADER, "scatter", &[])?;

    let base = Params {
        len: len as u32,
        off: scores.off(),
        k: k as u32,
        nblocks: nblocks as u32,
        ..Default::default()
    };
    let (wb, sb, stb) = (&work, scores, &status);

    rec.dispatch(&p_init, bytemuck::bytes_of(&base), &[wb, stb], [1, 1, 1]);

    let hist_wgs = len.div_ceil(WG * items) as u32;
    for (pass, &(shift, bits)) in PASSES.iter().enumerate() {
        let decided = shift + bits; // bits 31..decided are fixed by earlier passes
        let params = Params {
            shift,
            dmask: (1u32 << bits) - 1,
            hi_mask: if decided >= 32 {
                0
            } else {
                !((1u32 << decided) - 1)
            },
            check: (pass == 0) as u32,
            nwg: hist_wgs,
            ..base
        };
        let pb = bytemuck::bytes_of(&params);
        rec.dispatch(&p_hist, pb, &[wb, sb, stb], grid(ctx, hist_wgs));
        rec.dispatch(&p_select, pb, &[wb], [1, 1, 1]);
    }

    let pb = bytemuck::bytes_of(&base);
    let blocks = grid(ctx, nblocks as u32);
    rec.dispatch(&p_count, pb, &[wb, sb], blocks);
    rec.dispatch(&p_scan, pb, &[wb], [1, 1, 1]);

    match order {
        TopKOrder::Index => {
            rec.dispatch(&p_scatter, pb, &[wb, sb, &indices], blocks);
        }
        TopKOrder::Score => {
            let p_tiles = ctx.pipeline(&SHADER, "sort_tiles", &[])?;
            let p_merge = ctx.pipeline(&SHADER, "merge_runs", &[])?;
            let tmp = rec.alloc("topk.sort_tmp", &[k])?;
            let m = merge_levels(k);
            // Writers in turn: scatter, sort_tiles, m merges; the last one must write `indices`.
            // Writer j writes `indices` when (m + 1 - j) is even.
            let target = |j: usize| {
                if (m + 1 - j).is_multiple_of(2) {
                    &indices
                } else {
                    &tmp
                }
            };
            rec.dispatch(&p_scatter, pb, &[wb, sb, target(0)], blocks);
            let wgs = grid(ctx, k.div_ceil(TILE) as u32);
            rec.dispatch(&p_tiles, pb, &[sb, target(0), target(1)], wgs);
            let mut width = TILE;
            for j in 2..m + 2 {
                let params = Params {
                    width: width as u32,
                    ..base
                };
                rec.dispatch(
                    &p_merge,
                    bytemuck::bytes_of(&params),
                    &[sb, target(j - 1), target(j)],
                    wgs,
                );
                width *= 2;
            }
        }
    }
    Ok(TopKResult { indices, status })
}

/// Turns a read-back status word into the result: `u32::MAX` (all finite) is `Ok`, anything
/// else is the lowest flat index of a non-finite score → `Error::NonFiniteScore` with
/// (frame, token) = (i / tokens_per_frame, i % tokens_per_frame).
pub fn status_error(status: u32, tokens_per_frame: usize) -> Result<()> {
    if status == u32::MAX {
        return Ok(());
    }
    non_finite_error(status as usize, tokens_per_frame)
}
