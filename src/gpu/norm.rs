//! GPU norm kernel family (`shaders/norm.wgsl`): LayerNorm with an optional fused residual add,
//! and RMSNorm.

use super::buffer::GpuTensor;
use super::kernel::{grid, Recorder, Shader};
use crate::error::{Error, Result};

pub const SHADER: Shader = Shader {
    name: "norm",
    parts: &[include_str!("../../shaders/norm.wgsl")],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    x_off: u32,
    r_off: u32,
    g_off: u32,
    b_off: u32,
    y_off: u32,
    has_residual: u32,
    eps: f32,
}

/// Default invocations per row (a power of two). llvmpipe runs a workgroup's invocations as
/// loops over 8-wide SIMD chunks and every barrier is a coroutine switch, so a small group is
/// cheaper there; real GPUs want enough threads per row to hide memory latency.
pub fn default_workgroup(rec: &Recorder) -> u32 {
    if rec.ctx.info.device_type == wgpu::DeviceType::Cpu {
        64
    } else {
        256
    }
}

/// y = LayerNorm(x + residual) · gamma + beta over the last axis of `x` (seen as rows × cols),
/// biased variance, `eps` inside the square root. Output: a new (rows, cols) tensor.
pub fn layer_norm(
    rec: &mut Recorder,
    x: &GpuTensor,
    residual: Option<&GpuTensor>,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    eps: f32,
) -> Result<GpuTensor> {
    let wg = default_workgroup(rec);
    layer_norm_with_workgroup(rec, x, residual, gamma, beta, eps, wg)
}

/// [`layer_norm`] with an explicit number of invocations per row (a power of two, at most the
/// device's workgroup size limit); for tests and benchmarks.
pub fn layer_norm_with_workgroup(
    rec: &mut Recorder,
    x: &GpuTensor,
    residual: Option<&GpuTensor>,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    eps: f32,
    wg: u32,
) -> Result<GpuTensor> {
    check_workgroup(rec, wg, "layer_norm")?;
    let (rows, cols) = (x.rows(), x.cols());
    if cols == 0 {
        return Err(Error::input(format!(
            "layer_norm: x {:?} has no columns",
            x.shape
        )));
    }
    if gamma.len() != cols || beta.len() != cols {
        return Err(Error::input(format!(
            "layer_norm: gamma {:?} and beta {:?} must hold {cols} values (the last axis of x {:?})",
            gamma.shape, beta.shape, x.shape
        )));
    }
    if let Some(r) = residual {
        if r.len() != x.len() || r.cols() != cols {
            return Err(Error::input(format!(
                "layer_norm: residual {:?} does not match x {:?}",
                r.shape, x.shape
            )));
        }
    }
    check_eps(eps, "layer_norm")?;
    let out = rec.alloc("layer_norm.out", &[rows, cols])?;
    let health = rec.health()?;
    if rows == 0 {
        return Ok(out);
    }
    let pipeline = rec.ctx.pipeline(
        &SHADER,
        "layer_norm",
        &[("WG", wg as f64), ("CHECK", check(rec))],
    )?;
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        x_off: x.off(),
        r_off: residual.map_or(0, |r| r.off()),
        g_off: gamma.off(),
        b_off: beta.off(),
        y_off: out.off(),
        has_residual: residual.is_some() as u32,
        eps,
    };
    // Without a residual the slot is bound to x (never read).
    let r_buf = residual.unwrap_or(x);
    let g = grid(rec.ctx, rows as u32);
    rec.dispatch(
        &pipeline,
        bytemuck::bytes_of(&params),
        &[x, r_buf, gamma, beta, &out, &health],
        g,
    );
    Ok(out)
}

fn check_eps(eps: f32, what: &str) -> Result<()> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(Error::input(format!(
            "{what}: eps must be finite and ≥ 0, got {eps}"
        )));
    }
    Ok(())
}

/// Checks an explicit invocations-per-row count: a power of two within the device's limits.
fn check_workgroup(rec: &Recorder, wg: u32, what: &str) -> Result<()> {
    let limit = rec
        .ctx
        .limits
        .max_compute_invocations_per_workgroup
        .min(rec.ctx.limits.max_compute_workgroup_size_x);
    if !wg.is_power_of_two() || wg > limit {
        return Err(Error::input(format!(
            "{what}: workgroup size {wg} must be a power of two ≤ {limit}"
        )));
    }
    Ok(())
}

/// y = x / √(mean(x²) + eps) · gamma over the last axis of `x` (rows × cols). CPU twin:
/// `crate::cpu::norm::rms_norm`.
pub fn rms_norm(
    rec: &mut Recorder,
    x: &GpuTensor,
    gamma: &GpuTensor,
    eps: f32,
) -> Result<GpuTensor> {
    let wg = default_workgroup(rec);
    rms_norm_with_workgroup(rec, x, gamma, eps, wg)
}

/// [`rms_norm`] with an explicit number of invocations per row; for tests and benchmarks.
pub fn rms_norm_with_workgroup(
    rec: &mut Recorder,
    x: &GpuTensor,
    gamma: &GpuTensor,
    eps: f32,
    wg: u32,
) -> Result<GpuTensor> {
    check_workgroup(rec, wg, "rms_norm")?;
    let (rows, cols) = (x.rows(), x.cols());
    if cols == 0 || gamma.len() != cols {
        return Err(Error::input(format!(
            "rms_norm: weight {:?} must hold the {cols} values of the last axis of x {:?} (nonzero)",
            gamma.shape, x.shape
        )));
    }
    check_eps(eps, "rms_norm")?;
    let out = rec.alloc("rms_norm.out", &[rows, cols])?;
    let health = rec.health()?;
    if rows == 0 {
        return Ok(out);
    }
    let pipeline = rec.ctx.pipeline(
        &SHADER,
        "rms_norm",
        &[("WG", wg as f64), ("CHECK", check(rec))],
    )?;
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        x_off: x.off(),
        r_off: 0,
        g_off: gamma.off(),
        b_off: 0,
        y_off: out.off(),
        has_residual: 0,
        eps,
    };
    let g = grid(rec.ctx, rows as u32);
    rec.dispatch(
        &pipeline,
        bytemuck::bytes_of(&params),
        &[x, gamma, &out, &health],
        g,
    );
    Ok(out)
}

/// z = x + residual and y = z / √(mean(z²) + eps) · gamma over the last axis (rows × cols), in
/// one dispatch: a pre-norm decoder's residual add and the norm after it. Returns (z, y). CPU
/// twin: `crate::cpu::elementwise::residual_add` then `crate::cpu::norm::rms_norm`.
pub fn add_rms_norm(
    rec: &mut Recorder,
    x: &GpuTensor,
    residual: &GpuTensor,
    gamma: &GpuTensor,
    eps: f32,
) -> Result<(GpuTensor, GpuTensor)> {
    let wg = default_workgroup(rec);
    check_workgroup(rec, wg, "add_rms_norm")?;
    let (rows, cols) = (x.rows(), x.cols());
    if cols == 0 || gamma.len() != cols || residual.shape != x.shape {
        return Err(Error::input(format!(
            "add_rms_norm: x {:?} and the residual {:?} must have one shape, and the weight {:?} the {cols} values of its last axis (nonzero)",
            x.shape, residual.shape, gamma.shape
        )));
    }
    check_eps(eps, "add_rms_norm")?;
    let sum = rec.alloc("add_rms_norm.sum", &[rows, cols])?;
    let out = rec.alloc("add_rms_norm.out", &[rows, cols])?;
    let health = rec.health()?;
    if rows == 0 {
        return Ok((sum, out));
    }
    let pipeline = rec.ctx.pipeline(
        &SHADER,
        "add_rms_norm",
        &[("WG", wg as f64), ("CHECK", check(rec))],
    )?;
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        x_off: x.off(),
        r_off: residual.off(),
        g_off: gamma.off(),
        b_off: sum.off(),
        y_off: out.off(),
        has_residual: 1,
        eps,
    };
    let g = grid(rec.ctx, rows as u32);
    rec.dispatch(
        &pipeline,
        bytemuck::bytes_of(&params),
        &[x, residual, gamma, &sum, &out, &health],
        g,
    );
    Ok((sum, out))
}

/// The `CHECK` override: whether the kernel checks its rows for overflow (`Recorder::checks`).
fn check(rec: &Recorder) -> f64 {
    if rec.checks {
        1.0
    } else {
        0.0
    }
}
