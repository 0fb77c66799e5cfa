//! GPU RoPE kernel family (`shaders/rope.wgsl`): rotary position embedding, "rotate half"
//! layout, with the cos/sin values from a host-built table and each row's positions (one per
//! position axis) from a small buffer. CPU twin: `crate::cpu::rope::rope_with`. `rope_qkv`
//! also writes a decoder layer's keys and values into its KV cache.

use super::buffer::GpuTensor;
use super::context::GpuContext;
use super::kernel::{grid, Recorder, Shader};
use crate::error::{Error, Result};
use crate::ops::Positions;

pub const SHADER: Shader = Shader {
    name: "rope",
    parts: &[include_str!("../../shaders/rope.wgsl")],
};

const WG: usize = 64;

/// Must match `Params` in shaders/rope.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    heads: u32,
    half: u32,
    x_off: u32,
    t_off: u32,
    o_off: u32,
    kv_heads: u32,
    k_off: u32,
    v_off: u32,
    pos_off: u32,
    axes: u32,
    sec0: u32,
    sec1: u32,
    sec2: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Most position axes the kernel follows (Qwen2-VL's multimodal RoPE uses three).
pub const MAX_AXES: usize = 4;

/// Rotary positions on the device: `axes` u32 ids per row, and one past the largest (the
/// positions the cos/sin table must cover).
#[derive(Clone, Debug)]
pub struct GpuPositions {
    pub ids: GpuTensor,
    pub rows: usize,
    pub axes: usize,
    pub end: usize,
}

impl GpuPositions {
    pub fn upload(ctx: &GpuContext, p: &Positions) -> Result<Self> {
        Ok(GpuPositions {
            ids: ctx.upload("rope.positions", &[p.ids().len()], p.ids())?,
            rows: p.rows(),
            axes: p.axes(),
            end: p.end(),
        })
    }
}

/// Checks `pos` against `rows` rows, a table for `head_dim`, and `sections` (pairs per axis);
/// returns `Params` with the fields that say where positions are and which axis each pair
/// follows (the rest zero, for the caller to fill).
fn position_params(
    what: &str,
    pos: &GpuPositions,
    rows: usize,
    table: &GpuTensor,
    head_dim: usize,
    sections: &[usize],
) -> Result<Params> {
    let half = head_dim / 2;
    if pos.rows != rows
        || pos.axes != sections.len()
        || sections.len() > MAX_AXES
        || sections.iter().try_fold(0usize, |a, &n| a.checked_add(n)) != Some(half)
    {
        return Err(Error::input(format!(
            "{what}: positions of {} rows × {} axes for {rows} rows with rotary sections {sections:?} (at most {MAX_AXES} axes, adding up to {half} pairs)",
            pos.rows, pos.axes
        )));
    }
    if table.len() < pos.end * head_dim {
        return Err(Error::input(format!(
            "{what}: the cos/sin table holds {} positions but rows reach position {}",
            table.len() / head_dim,
            pos.end
        )));
    }
    let mut ends = [half as u32; 3];
    let mut at = 0;
    for (a, n) in sections.iter().take(3).enumerate() {
        at += n;
        ends[a] = at as u32;
    }
    Ok(Params {
        pos_off: pos.ids.off(),
        axes: pos.axes as u32,
        sec0: ends[0],
        sec1: ends[1],
        sec2: ends[2],
        ..bytemuck::Zeroable::zeroed()
    })
}

/// The cos/sin table of positions 0..positions: per position, head_dim values [cos_0 …
/// cos_{D/2−1}, sin_0 … sin_{D/2−1}] with angle p·θ_d, θ_d = theta^(−2d/D), computed in f64 and
/// rounded to f32 by `Rope::cos_sin`, so both rotate by the same numbers.
pub fn rope_table(head_dim: usize, theta: f64, positions: usize) -> Vec<f32> {
    rope_table_for(&crate::ops::Rope::new(head_dim, theta), positions)
}

/// [`rope_table`] for any [`crate::ops::Rope`] (its own frequencies and cos/sin factor).
pub fn rope_table_for(rope: &crate::ops::Rope, positions: usize) -> Vec<f32> {
    let mut t = Vec::with_capacity(positions * rope.head_dim());
    for p in 0..positions {
        let (cos, sin) = rope.cos_sin(p);
        t.extend(cos);
        t.extend(sin);
    }
    t
}

/// RoPE of x (R, heads·head_dim), row r at `pos`' row r, pairs on the position axes
/// `sections` says, with `table` from [`rope_table_for`] for this rotation covering
/// `pos.end` positions. A new tensor of x's shape.
pub fn rope(
    rec: &mut Recorder,
    x: &GpuTensor,
    table: &GpuTensor,
    heads: usize,
    head_dim: usize,
    pos: &GpuPositions,
    sections: &[usize],
) -> Result<GpuTensor> {
    if head_dim == 0 || !head_dim.is_multiple_of(2) || heads == 0 || x.cols() != heads * head_dim {
        return Err(Error::input(format!(
            "rope: x {:?} must hold rows of {heads} heads × {head_dim} values (head_dim even, nonzero)",
            x.shape
        )));
    }
    let rows = x.rows();
    let pp = position_params("rope", pos, rows, table, head_dim, sections)?;
    let out = rec.alloc("rope", &x.shape)?;
    let n = rows * heads * head_dim / 2;
    if n == 0 {
        return Ok(out);
    }
    let p = Params {
        rows: rows as u32,
        heads: heads as u32,
        half: (head_dim / 2) as u32,
        x_off: x.off(),
        t_off: table.off(),
        o_off: out.off(),
        ..pp
    };
    let pipeline = rec.ctx.pipeline(&SHADER, "rope", &[("WG", WG as f64)])?;
    let wg = grid(rec.ctx, n.div_ceil(WG) as u32);
    rec.dispatch(
        &pipeline,
        bytemuck::bytes_of(&p),
        &[x, table, &pos.ids, &out],
        wg,
    );
    Ok(out)
}

/// A decoder layer's attention input from its packed projection `qkv` (R, (heads + 2·kv_heads)
/// · head_dim), rows [q | k | v] at `pos` (as [`rope`]): returns RoPE(q) (R, heads·head_dim)
/// and writes RoPE(k) and v into rows slot..slot+R of `keys` and `values` (the layer's cache,
/// (capacity, kv_heads·head_dim) each). One dispatch.
#[allow(clippy::too_many_arguments)]
pub fn rope_qkv(
    rec: &mut Recorder,
    qkv: &GpuTensor,
    table: &GpuTensor,
    keys: &GpuTensor,
    values: &GpuTensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    slot: usize,
    pos: &GpuPositions,
    sections: &[usize],
) -> Result<GpuTensor> {
    let kv_width = kv_heads * head_dim;
    let slots = heads + 2 * kv_heads;
    if head_dim == 0
        || !head_dim.is_multiple_of(2)
        || heads == 0
        || kv_heads == 0
        || qkv.cols() != slots * head_dim
    {
        return Err(Error::input(format!(
            "rope_qkv: qkv {:?} must hold rows of {heads} + 2·{kv_heads} heads × {head_dim} values (head_dim even, nonzero)",
            qkv.shape
        )));
    }
    let rows = qkv.rows();
    if keys.cols() != kv_width || values.cols() != kv_width || keys.rows() != values.rows() {
        return Err(Error::input(format!(
            "rope_qkv: the cache ({:?}, {:?}) must have rows of {kv_width} values",
            keys.shape, values.shape
        )));
    }
    if slot + rows > keys.rows() {
        return Err(Error::input(format!(
            "rope_qkv: {rows} rows at slot {slot} overflow a cache of {} positions",
            keys.rows()
        )));
    }
    let pp = position_params("rope_qkv", pos, rows, table, head_dim, sections)?;
    let out = rec.alloc("rope_qkv.q", &[rows, heads * head_dim])?;
    let n = rows * slots * head_dim / 2;
    if n == 0 {
        return Ok(out);
    }
    let u = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| Error::input(format!("rope_qkv: {what} = {v} exceeds u32")))
    };
    let p = Params {
        rows: u(rows, "rows")?,
        heads: heads as u32,
        half: (head_dim / 2) as u32,
        x_off: qkv.off(),
        t_off: table.off(),
        o_off: out.off(),
        kv_heads: kv_heads as u32,
        k_off: u(keys.offset + slot * kv_width, "cache offset")?,
        v_off: u(values.offset + slot * kv_width, "cache offset")?,
        ..pp
    };
    let pipeline = rec
        .ctx
        .pipeline(&SHADER, "rope_qkv", &[("WG", WG as f64)])?;
    let wg = grid(rec.ctx, u(n.div_ceil(WG), "workgroups")?);
    rec.dispatch(
        &pipeline,
        bytemuck::bytes_of(&p),
        &[qkv, table, &pos.ids, &out, keys, values],
        wg,
    );
    Ok(out)
}
