//! GPU linear kernel family: Y = X·Wᵀ + b (`shaders/linear.wgsl`).
//!
//! X (M×K) and W (N×K) are both K-contiguous, so the kernels compute out[a, b] = A[a]·B[b] for
//! two row-major operands and take the output strides of an A row and a B row: either W plays
//! A and X plays B (the usual case), or the roles swap when that wastes less of a block (N much
//! smaller than M, e.g. a score head with N = 1).
//!
//! Two kernels, chosen per adapter ([`Tuning::for_adapter`]):
//! - register-blocked (CPU adapters such as llvmpipe): each invocation holds 16 A rows × TM B
//!   rows of accumulators and walks K with vec4 loads, or scalar loads when K or an offset is not
//!   a multiple of 4;
//! - workgroup-tiled (real GPUs): 64×64 output tiles, operand slices staged in workgroup memory.

use super::buffer::GpuTensor;
use super::kernel::{grid, Recorder, Shader};
use crate::error::{Error, Result};

pub const SHADER: Shader = Shader {
    name: "linear",
    source: include_str!("../../shaders/linear.wgsl"),
};

/// Floating-point operations of one `linear` (multiply and add counted separately): 2·m·n·k.
pub fn flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    a_rows: u32,
    b_rows: u32,
    k: u32,
    a_off: u32,
    b_off: u32,
    bias_off: u32,
    y_off: u32,
    ya: u32,
    yb: u32,
    has_bias: u32,
    bias_on_a: u32,
    groups_a: u32,
    groups_total: u32,
}

/// Which kernel computes the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Large register blocks, no workgroup memory (fast where loads are expensive: CPUs).
    RegisterBlocked,
    /// Workgroup-memory tiles (fast on GPUs).
    Tiled,
}

/// Which operand the invocations of a register-blocked workgroup split among themselves (A);
/// the other (B) is shared by the workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Pick the one that pads the fewest rows.
    Auto,
    /// A = W (invocations over output columns), B = X.
    Columns,
    /// A = X (invocations over output rows), B = W.
    Rows,
}

/// Kernel choice and tile shape (the shader's `override` constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub kernel: Kernel,
    /// Register-blocked: B rows per workgroup, 1..=32 (each invocation holds 16 A rows × this
    /// many accumulators). Smaller values are used automatically when B has fewer rows.
    pub rows_per_group: u32,
    /// Register-blocked: invocations per workgroup.
    pub workgroup: u32,
    /// Register-blocked: use vec4 loads when K and the offsets allow; false forces scalar loads.
    pub vec4: bool,
    /// Register-blocked: operand roles.
    pub split: Split,
    /// Tiled: k per workgroup-memory stage.
    pub bk: u32,
}

/// Rows of A each register-blocked invocation holds (fixed by the shader).
const RB_A_ROWS: u32 = 16;
/// Side of a tiled workgroup (invocations) and of its output tile (TILE · 4).
const TILE: u32 = 16;
const TILE_OUT: u32 = TILE * 4;

impl Tuning {
    /// The default for this adapter: register blocking on CPU adapters, tiling elsewhere.
    pub fn for_adapter(ctx: &super::GpuContext) -> Self {
        if ctx.info.device_type == wgpu::DeviceType::Cpu {
            Self::CPU
        } else {
            Self::GPU
        }
    }

    /// Register-blocked default for CPU adapters. On llvmpipe (Mesa 22.3, LLVM 15, 8-wide
    /// lanes) every storage load is a per-lane loop with bounds checks, so throughput follows
    /// the register block (16 A rows × `rows_per_group` B rows per invocation). Measured on a
    /// quiet 2-core machine at M=4096, N=K=896 (release build, 4 dispatches per submission):
    /// 32 rows ≈ 31 GFLOP/s (1024³: ≈ 32), 16 rows ≈ 25, scalar loads ≈ 18; workgroup 8 (one
    /// SIMD chunk) with invocations over W rows beat workgroup 16 (≈ 28) and over X rows (≈ 27).
    /// Larger blocks (32×32, 64×16 in a scratch kernel) were no faster and compiled 4–10× longer;
    /// loops over arrays instead of the written-out block ran at half speed, and staging
    /// operands in workgroup memory at 0.3–0.8×. First use compiles the 32-row pipeline for
    /// ~15 s on such a machine (Mesa caches it on disk afterwards).
    pub const CPU: Tuning = Tuning {
        kernel: Kernel::RegisterBlocked,
        rows_per_group: 32,
        workgroup: 8,
        vec4: true,
        split: Split::Auto,
        bk: 16,
    };

    /// Workgroup-tiled default for real GPUs: 16×16 invocations, 64×64 outputs, K stages of 16
    /// (8.3 KiB of workgroup memory).
    pub const GPU: Tuning = Tuning {
        kernel: Kernel::Tiled,
        rows_per_group: 32,
        workgroup: 8,
        vec4: true,
        split: Split::Auto,
        bk: 16,
    };
}

/// Y = X·Wᵀ + b into a new (M, N) tensor. X is seen as (M, K) = (x.rows(), x.cols()), W as
/// (N, K), b (optional) as N values.
pub fn linear(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
) -> Result<GpuTensor> {
    check_operands(x, w, b)?;
    let out = rec.alloc("linear.out", &[x.rows(), w.rows()])?;
    linear_into(rec, x, w, b, &out)?;
    Ok(out)
}

/// Y = X·Wᵀ + b written into `out` (an (M, N) view; its offset is honoured).
pub fn linear_into(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    out: &GpuTensor,
) -> Result<()> {
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
    if [Some(x), Some(w), b]
        .into_iter()
        .flatten()
        .any(|t| t.same_buffer(out))
    {
        return Err(Error::input(
            "linear: the output may not share a buffer with x, the weight or the bias",
        ));
    }
    if !(1..=32).contains(&tuning.rows_per_group) || tuning.workgroup == 0 || tuning.bk == 0 {
        return Err(Error::input(format!(
            "linear: unsupported tuning {tuning:?}"
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let u = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| Error::input(format!("linear: {what} = {v} exceeds u32")))
    };
    let (m32, n32, k32) = (u(m, "M")?, u(n, "N")?, u(k, "K")?);

    // Operand roles: (A, B) = (W, X) puts invocations over output columns.
    let a_span = match tuning.kernel {
        Kernel::RegisterBlocked => RB_A_ROWS * tuning.workgroup,
        Kernel::Tiled => TILE_OUT,
    };
    let b_span = match tuning.kernel {
        Kernel::RegisterBlocked => tuning.rows_per_group,
        Kernel::Tiled => TILE_OUT,
    };
    let padded = |a_rows: u32, b_rows: u32| {
        a_rows.div_ceil(a_span) as u64
            * a_span as u64
            * (b_rows.div_ceil(b_span) as u64 * b_span as u64)
    };
    let columns = match tuning.split {
        Split::Columns => true,
        Split::Rows => false,
        Split::Auto => padded(n32, m32) <= padded(m32, n32),
    };
    let (a, bt, a_rows, b_rows, ya, yb) = if columns {
        (w, x, n32, m32, 1, n32)
    } else {
        (x, w, m32, n32, n32, 1)
    };
    let mut params = Params {
        a_rows,
        b_rows,
        k: k32,
        a_off: a.off(),
        b_off: bt.off(),
        bias_off: b.map_or(0, |b| b.off()),
        y_off: out.off(),
        ya,
        yb,
        has_bias: b.is_some() as u32,
        bias_on_a: columns as u32,
        groups_a: 0,
        groups_total: 0,
    };
    // Without a bias the slot is bound to the weight (never read).
    let bias_buf = b.unwrap_or(w).buffer();
    let buffers = [a.buffer(), bt.buffer(), bias_buf, out.buffer()];

    let pipeline = match tuning.kernel {
        Kernel::RegisterBlocked => {
            // Fewer B rows per workgroup when B is short (GEMV-like calls): powers of two, so
            // only a handful of pipelines exist.
            let tm = tuning.rows_per_group.min(b_rows.next_power_of_two());
            let aligned = k % 4 == 0 && a.offset % 4 == 0 && bt.offset % 4 == 0;
            let entry = if tuning.vec4 && aligned {
                "rb_vec4"
            } else {
                "rb_scalar"
            };
            params.groups_a = a_rows.div_ceil(RB_A_ROWS * tuning.workgroup);
            params.groups_total = b_rows.div_ceil(tm) * params.groups_a;
            rec.ctx.pipeline(
                &SHADER,
                entry,
                &[("WG", tuning.workgroup as f64), ("TM", tm as f64)],
            )?
        }
        Kernel::Tiled => {
            params.groups_a = a_rows.div_ceil(TILE_OUT);
            params.groups_total = b_rows.div_ceil(TILE_OUT) * params.groups_a;
            rec.ctx.pipeline(
                &SHADER,
                "tiled",
                &[("TILE", TILE as f64), ("BK", tuning.bk as f64)],
            )?
        }
    };
    let g = grid(rec.ctx, params.groups_total);
    rec.dispatch(&pipeline, bytemuck::bytes_of(&params), &buffers, g);
    Ok(())
}
