//! GPU window_pool kernel family (`shaders/window_pool.wgsl`): gathers rows through an index
//! list and average-pools them at several scales in one dispatch. Semantics are those of the CPU
//! twin, `crate::cpu::window_pool::gather_pool`.

use super::buffer::GpuTensor;
use super::kernel::{grid, Recorder, Shader};
use crate::cpu::window_pool::pooled_rows;
use crate::error::{Error, Result};

pub const SHADER: Shader = Shader {
    name: "window_pool",
    parts: &[include_str!("../../shaders/window_pool.wgsl")],
};

/// Most scales one call takes (the kernel's Params hold 8).
pub const MAX_SCALES: usize = 8;

/// Invocations per workgroup (one output element each); the kernel is memory-bound and this
/// size suits both GPUs and lavapipe.
const WG: usize = 64;

/// Must match `Params` in shaders/window_pool.wgsl field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    cols: u32,
    out_rows: u32,
    n_scales: u32,
    has_idx: u32,
    x_off: u32,
    x_rows: u32,
    idx_off: u32,
    out_off: u32,
    scales: [u32; MAX_SCALES],
    windows: [u32; MAX_SCALES],
    idx_base: u32,
    partial: u32,
    _pad: [u32; 2],
}

/// Gathers `count` rows of `x` (rows of x.cols() values) through `indices` (u32 row numbers;
/// identity when None) and average-pools them with window = stride = s for every scale s, the
/// scales' results concatenated: a new tensor (pooled_rows(count, scales), cols).
pub fn gather_pool(
    rec: &mut Recorder,
    x: &GpuTensor,
    indices: Option<&GpuTensor>,
    count: usize,
    scales: &[usize],
) -> Result<GpuTensor> {
    check(x, indices, count, scales)?;
    let out = rec.alloc("window_pool", &[pooled_rows(count, scales), x.cols()])?;
    gather_pool_into(rec, x, indices, count, scales, &out)?;
    Ok(out)
}

fn check(x: &GpuTensor, indices: Option<&GpuTensor>, count: usize, scales: &[usize]) -> Result<()> {
    if scales.is_empty() || scales.len() > MAX_SCALES {
        return Err(Error::input(format!(
            "window pool: {} scales given; 1..={MAX_SCALES} are supported",
            scales.len()
        )));
    }
    if let Some(s) = scales.iter().find(|&&s| s == 0 || s > u32::MAX as usize) {
        return Err(Error::input(format!(
            "window pool: scale {s} is invalid; scales must be ≥ 1"
        )));
    }
    if x.is_empty() {
        return Err(Error::input(format!(
            "window pool: the input {:?} is empty",
            x.shape
        )));
    }
    match indices {
        Some(idx) if count > idx.len() => {
            return Err(Error::input(format!(
                "window pool: count {count} exceeds the {} indices given",
                idx.len()
            )))
        }
        None if count > x.rows() => {
            return Err(Error::input(format!(
                "window pool: count {count} exceeds the {} rows of the input {:?}",
                x.rows(),
                x.shape
            )))
        }
        _ => {}
    }
    if pooled_rows(count, scales) == 0 {
        return Err(Error::input(format!(
            "window pool: {count} rows pooled at scales {scales:?} give no output row (every scale exceeds the count)"
        )));
    }
    Ok(())
}

/// `gather_pool` writing into the view `out`, which must hold (pooled_rows, x.cols()) values and
/// live in another buffer than x and indices.
pub fn gather_pool_into(
    rec: &mut Recorder,
    x: &GpuTensor,
    indices: Option<&GpuTensor>,
    count: usize,
    scales: &[usize],
    out: &GpuTensor,
) -> Result<()> {
    check(x, indices, count, scales)?;
    let rows = pooled_rows(count, scales);
    let cols = x.cols();
    if out.len() != rows * cols || out.cols() != cols {
        return Err(Error::input(format!(
            "window pool: the output view {:?} does not hold ({rows}, {cols}) values",
            out.shape
        )));
    }
    if out.same_buffer(x) || indices.is_some_and(|i| out.same_buffer(i)) {
        return Err(Error::input(
            "window pool: the output must not share a buffer with the input or the indices",
        ));
    }
    let mut scale_arr = [1u32; MAX_SCALES];
    let mut windows = [0u32; MAX_SCALES];
    for (i, &s) in scales.iter().enumerate() {
        scale_arr[i] = s as u32;
        windows[i] = (count / s) as u32;
    }
    let p = Params {
        cols: cols as u32,
        out_rows: rows as u32,
        n_scales: scales.len() as u32,
        has_idx: indices.is_some() as u32,
        x_off: x.off(),
        x_rows: x.rows() as u32,
        idx_off: indices.map_or(0, |i| i.off()),
        out_off: out.off(),
        scales: scale_arr,
        windows,
        idx_base: 0,
        partial: 0,
        _pad: [0; 2],
    };
    let pipeline = rec.ctx.pipeline(&SHADER, "pool", &[("WG", WG as f64)])?;
    let wg = grid(rec.ctx, (rows * cols).div_ceil(WG) as u32);
    // Without indices the kernel never reads binding 2; x stands in for it.
    let idx_buf = indices.map_or(x, |i| i);
    rec.dispatch(&pipeline, bytemuck::bytes_of(&p), &[x, idx_buf, out], wg);
    Ok(())
}

/// The part of a gather that one block of a larger tensor holds: `x` holds the flat rows
/// `first_row..first_row + x.rows()`, and each row r < count of `out` whose index
/// `indices[r]` falls there is written; the other rows are left for the other blocks.
pub fn gather_part_into(
    rec: &mut Recorder,
    x: &GpuTensor,
    first_row: usize,
    indices: &GpuTensor,
    count: usize,
    out: &GpuTensor,
) -> Result<()> {
    let cols = x.cols();
    if count > indices.len() || out.rows() != count || out.cols() != cols {
        return Err(Error::input(format!(
            "gather of a block: {count} rows of {cols} values from {} indices into {:?}",
            indices.len(),
            out.shape
        )));
    }
    if out.same_buffer(x) || out.same_buffer(indices) {
        return Err(Error::input(
            "gather of a block: the output must not share a buffer with the input or the indices",
        ));
    }
    let (Ok(first), Ok(rows)) = (u32::try_from(first_row), u32::try_from(x.rows())) else {
        return Err(Error::input(format!(
            "gather of a block: rows {first_row}.. exceed 32 bits"
        )));
    };
    if count == 0 || cols == 0 || rows == 0 {
        return Ok(());
    }
    let p = Params {
        cols: cols as u32,
        out_rows: count as u32,
        n_scales: 1,
        has_idx: 1,
        x_off: x.off(),
        x_rows: rows,
        idx_off: indices.off(),
        out_off: out.off(),
        scales: [1; MAX_SCALES],
        windows: [0; MAX_SCALES],
        idx_base: first,
        partial: 1,
        _pad: [0; 2],
    };
    let pipeline = rec.ctx.pipeline(&SHADER, "pool", &[("WG", WG as f64)])?;
    let wg = grid(rec.ctx, (count * cols).div_ceil(WG) as u32);
    rec.dispatch(&pipeline, bytemuck::bytes_of(&p), &[x, indices, out], wg);
    Ok(())
}
