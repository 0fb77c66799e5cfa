//! GPU RoPE kernel family (`shaders/rope.wgsl`): rotary position embedding, "rotate half"
//! layout, with the cos/sin values from a host-built table. CPU twin: `crate::cpu::rope::rope`.

use super::buffer::GpuTensor;
use super::kernel::{grid, Recorder, Shader};
use crate::error::{Error, Result};

pub const SHADER: Shader = Shader {
    name: "rope",
    source: include_str!("../../shaders/rope.wgsl"),
};

const WG: usize = 64;

/// Must match `Params` in shaders/rope.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    heads: u32,
    half: u32,
    position: u32,
    x_off: u32,
    t_off: u32,
    o_off: u32,
    _pad: u32,
}

/// The cos/sin table of positions 0..positions: per position, head_dim values [cos_0 …
/// cos_{D/2−1}, sin_0 … sin_{D/2−1}] with angle p·θ_d, θ_d = theta^(−2d/D), computed in f64 and
/// rounded to f32 by the CPU twin's own `cos_sin`, so both rotate by the same numbers.
pub fn rope_table(head_dim: usize, theta: f64, positions: usize) -> Vec<f32> {
    let inv_freq = crate::cpu::rope::inv_freq(head_dim, theta);
    let mut t = Vec::with_capacity(positions * head_dim);
    for p in 0..positions {
        let (cos, sin) = crate::cpu::rope::cos_sin(&inv_freq, p);
        t.extend(cos);
        t.extend(sin);
    }
    t
}

/// RoPE of x (R, heads·head_dim), row r at position `position + r`, with `table` from
/// [`rope_table`] for this head_dim and theta holding at least position + R positions.
/// A new tensor of x's shape.
pub fn rope(
    rec: &mut Recorder,
    x: &GpuTensor,
    table: &GpuTensor,
    heads: usize,
    head_dim: usize,
    position: usize,
) -> Result<GpuTensor> {
    if head_dim == 0 || !head_dim.is_multiple_of(2) || heads == 0 || x.cols() != heads * head_dim {
        return Err(Error::input(format!(
            "rope: x {:?} must hold rows of {heads} heads × {head_dim} values (head_dim even, nonzero)",
            x.shape
        )));
    }
    let rows = x.rows();
    let needed = (position + rows) * head_dim;
    if table.len() < needed {
        return Err(Error::input(format!(
            "rope: the cos/sin table holds {} positions but rows reach position {}",
            table.len() / head_dim,
            position + rows
        )));
    }
    let out = rec.alloc("rope", &x.shape)?;
    let n = rows * heads * head_dim / 2;
    if n == 0 {
        return Ok(out);
    }
    let p = Params {
        rows: rows as u32,
        heads: heads as u32,
        half: (head_dim / 2) as u32,
        position: position as u32,
        x_off: x.off(),
        t_off: table.off(),
        o_off: out.off(),
        _pad: 0,
    };
    let pipeline = rec.ctx.pipeline(&SHADER, "rope", &[("WG", WG as f64)])?;
    let wg = grid(rec.ctx, n.div_ceil(WG) as u32);
    rec.dispatch(
        &pipeline,
        bytemuck::bytes_of(&p),
        &[x.buffer(), table.buffer(), out.buffer()],
        wg,
    );
    Ok(out)
}
