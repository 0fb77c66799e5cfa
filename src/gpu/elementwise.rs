//! GPU elementwise kernel family (`shaders/elementwise.wgsl`): GELU (erf form), SwiGLU, residual
//! add with optional LayerScale and row repeat, bf16 rounding, and row copies (embedding gather,
//! scatter of rows into slots). CPU twins: `crate::cpu::elementwise`; gather/scatter are the
//! CPU executor's `gather_rows` / `scatter_rows`.

use super::buffer::{Elem, GpuTensor};
use super::kernel::{grid, Recorder, Shader};
use crate::error::{Error, Result};

pub const SHADER: Shader = Shader {
    name: "elementwise",
    parts: &[
        include_str!("../../shaders/texels.wgsl"),
        include_str!("../../shaders/bf16.wgsl"),
        include_str!("../../shaders/gelu.wgsl"),
        include_str!("../../shaders/elementwise.wgsl"),
    ],
};

/// Invocations per workgroup: one element each; memory-bound, suits GPUs and lavapipe.
const WG: usize = 64;

/// Must match `Params` in shaders/elementwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    cols: u32,
    x_off: u32,
    y_off: u32,
    g_off: u32,
    o_off: u32,
    y_len: u32,
    has_gamma: u32,
    p_off: u32,
    _pad: [u32; 3],
}

/// A one-input map of the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// x·½(1 + erf(x/√2)).
    Gelu,
    /// x·σ(1.702·x) (CLIP's and Qwen2-VL's vision MLP).
    QuickGelu,
    /// erf(x) itself: the approximation GELU uses, exposed so its error can be tested.
    Erf,
    /// Nearest bfloat16, ties to even, back to f32.
    RoundBf16,
}

impl Unary {
    fn entry(self) -> &'static str {
        match self {
            Unary::Gelu => "gelu",
            Unary::QuickGelu => "quick_gelu",
            Unary::Erf => "erf_values",
            Unary::RoundBf16 => "round_bf16",
        }
    }
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::input(format!("{what} = {v} exceeds 32 bits")))
}

fn run(rec: &mut Recorder, entry: &str, p: &Params, tensors: &[&GpuTensor]) -> Result<()> {
    if p.n == 0 {
        return Ok(());
    }
    let pipeline = rec.ctx.pipeline(&SHADER, entry, &[("WG", WG as f64)])?;
    let wg = grid(rec.ctx, (p.n as usize).div_ceil(WG) as u32);
    rec.dispatch(&pipeline, bytemuck::bytes_of(p), tensors, wg);
    Ok(())
}

/// `op` applied to every element of x: a new tensor of x's shape.
pub fn unary(rec: &mut Recorder, x: &GpuTensor, op: Unary) -> Result<GpuTensor> {
    let out = rec.alloc(op.entry(), &x.shape)?;
    let p = Params {
        n: u32_of(x.len(), "elements")?,
        x_off: x.off(),
        o_off: out.off(),
        ..Default::default()
    };
    run(rec, op.entry(), &p, &[x, &out])?;
    Ok(out)
}

/// x (R, 2·I) packed as [gate | up] per row → silu(gate) ⊙ up (R, I).
pub fn swiglu(rec: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
    let (rows, cols) = (x.rows(), x.cols());
    if cols == 0 || cols % 2 != 0 {
        return Err(Error::input(format!(
            "swiglu: x {:?} must have an even, nonzero number of columns ([gate | up])",
            x.shape
        )));
    }
    let width = cols / 2;
    let out = rec.alloc("swiglu", &[rows, width])?;
    let p = Params {
        n: u32_of(rows * width, "elements")?,
        cols: width as u32,
        x_off: x.off(),
        o_off: out.off(),
        ..Default::default()
    };
    run(rec, "swiglu", &p, &[x, &out])?;
    Ok(out)
}

/// x + γ ⊙ y over rows of x.cols() values (γ = 1 when None). y may hold fewer rows than x when
/// x's rows are a whole multiple of them: y then repeats over the groups of rows.
pub fn residual_add(
    rec: &mut Recorder,
    x: &GpuTensor,
    y: &GpuTensor,
    gamma: Option<&GpuTensor>,
) -> Result<GpuTensor> {
    let cols = x.cols();
    if cols == 0 || y.is_empty() || y.cols() != cols || !x.rows().is_multiple_of(y.rows()) {
        return Err(Error::input(format!(
            "residual_add: {:?} cannot be added to {:?} (same width, and x rows a multiple of y rows)",
            y.shape, x.shape
        )));
    }
    if let Some(g) = gamma {
        if g.len() != cols {
            return Err(Error::input(format!(
                "residual_add: gamma {:?} must hold {cols} values",
                g.shape
            )));
        }
    }
    let out = rec.alloc("residual_add", &x.shape)?;
    let p = Params {
        n: u32_of(x.len(), "elements")?,
        cols: cols as u32,
        x_off: x.off(),
        y_off: y.off(),
        g_off: gamma.map_or(0, GpuTensor::off),
        o_off: out.off(),
        y_len: y.len() as u32,
        has_gamma: gamma.is_some() as u32,
        ..Default::default()
    };
    // Without γ the kernel never reads binding 4; y stands in for it.
    let g = gamma.unwrap_or(y);
    run(rec, "residual_add", &p, &[x, &out, y, g])?;
    Ok(out)
}

/// Row copies: for each (src_row, dst_row) in `pairs`, row dst_row of `out` becomes row src_row
/// of `x` (both rows of x.cols() values). Rows are checked against both tensors; `out` must not
/// share a buffer with x. Destination rows should be distinct (otherwise which copy wins is
/// unspecified).
pub fn copy_rows(
    rec: &mut Recorder,
    x: &GpuTensor,
    pairs: &[(u32, u32)],
    out: &GpuTensor,
) -> Result<()> {
    let cols = x.cols();
    if out.cols() != cols {
        return Err(Error::input(format!(
            "copy_rows: rows of {:?} do not fit rows of {:?}",
            x.shape, out.shape
        )));
    }
    if x.same_buffer(out) {
        return Err(Error::input(
            "copy_rows: out must not share a buffer with x",
        ));
    }
    for &(s, d) in pairs {
        if s as usize >= x.rows() || d as usize >= out.rows() {
            return Err(Error::input(format!(
                "row {s} → {d} is out of range for a table of {} rows into {} rows (a token id beyond the vocabulary?)",
                x.rows(),
                out.rows()
            )));
        }
    }
    if pairs.is_empty() || cols == 0 {
        return Ok(());
    }
    let flat: Vec<u32> = pairs.iter().flat_map(|&(s, d)| [s, d]).collect();
    let list = rec.ctx.upload("copy_rows.pairs", &[flat.len()], &flat)?;
    // Tables in ggml blocks are widened by the linear family's readers of them.
    if x.elem.is_blocks() {
        return super::linear::copy_rows(rec, x, &list, pairs.len(), out);
    }
    let p = Params {
        n: u32_of(pairs.len() * cols, "elements")?,
        cols: cols as u32,
        x_off: x.off(),
        o_off: out.off(),
        p_off: list.off(),
        ..Default::default()
    };
    // x may be a table stored as texels, f32 or bf16 (an embedding); out is always an f32
    // buffer.
    let entry = match (x.is_texels(), x.elem) {
        (false, Elem::F32) => "copy_rows",
        (true, Elem::F32) => "copy_rows_texels",
        (true, Elem::Bf16) => "copy_rows_texels_bf16",
        _ => {
            return Err(Error::input(format!(
                "copy_rows: cannot read rows of {x:?} (f32 buffers and f32 or bf16 texels only)"
            )))
        }
    };
    run(rec, entry, &p, &[x, out, &list])
}

/// out[i] = x[ids[i]] for rows: an embedding lookup. A new (ids.len(), cols) tensor.
pub fn gather_rows(rec: &mut Recorder, x: &GpuTensor, ids: &[u32]) -> Result<GpuTensor> {
    let out = rec.alloc("gather_rows", &[ids.len(), x.cols()])?;
    let pairs: Vec<(u32, u32)> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    copy_rows(rec, x, &pairs, &out)?;
    Ok(out)
}

/// A copy of `dst` whose rows `positions[i]` are replaced by row i of `src`. When a position
/// repeats, the last row written to it wins (as in a sequential loop).
pub fn scatter_rows(
    rec: &mut Recorder,
    dst: &GpuTensor,
    positions: &[u32],
    src: &GpuTensor,
) -> Result<GpuTensor> {
    if src.rows() != positions.len() || src.cols() != dst.cols() {
        return Err(Error::input(format!(
            "scatter_rows: {} positions for a source {:?} into rows of {}",
            positions.len(),
            src.shape,
            dst.cols()
        )));
    }
    let out = rec.alloc("scatter_rows", &[dst.rows(), dst.cols()])?;
    rec.copy(dst, &out)?;
    // Keep the last write to each position so the parallel copy is deterministic.
    let mut last = std::collections::HashMap::new();
    for (i, &p) in positions.iter().enumerate() {
        last.insert(p, i as u32);
    }
    let mut pairs: Vec<(u32, u32)> = last.into_iter().map(|(p, i)| (i, p)).collect();
    pairs.sort_unstable();
    copy_rows(rec, src, &pairs, &out)?;
    Ok(out)
}
