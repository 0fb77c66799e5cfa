//! GPU linear kernel family: Y = X·Wᵀ + b (`shaders/linear.wgsl`).
//!
//! X (M×K) and W (N×K) are both K-contiguous, so the kernels compute out[a, b] = A[a]·B[b] for
//! two row-major operands and take the output strides of an A row and a B row: either W plays
//! A and X plays B (the usual case), or the roles swap when that wastes less of a block (N much
//! smaller than M, e.g. a score head with N = 1).
//!
//! Three kernels, chosen per adapter ([`Tuning::for_adapter`]) and shape:
//! - register-blocked (CPU adapters such as llvmpipe): each invocation holds 16 A rows × TM B
//!   rows of accumulators and walks K with vec4 loads, or scalar loads when K or an offset is not
//!   a multiple of 4;
//! - workgroup-tiled (real GPUs): 64×64 output tiles, operand slices staged in workgroup memory;
//! - matrix-vector (one B row: decoding): invocations split K, or own rows for tall weights on
//!   CPU adapters, a chunk of K per step (a vec4, or eight bf16 values).
//!
//! Operand A (the weight) is read through a prelude per storage (f32, f16 or bf16 buffers, f32
//! or bf16 texels); every kernel stores through one `out_value`, which adds the bias and applies
//! the optional [`Epilogue`] (GELU, or a residual add with LayerScale).

use super::buffer::{Elem, GpuTensor};
use super::kernel::{grid, Recorder, Shader};
use crate::error::{Error, Result};

const CORE: &str = include_str!("../../shaders/linear.wgsl");
/// The matrix-vector kernel's accessors for the preludes that read A as vec4s.
const CHUNK4: &str = include_str!("../../shaders/linear_chunk4.wgsl");
/// The same for bf16 weights: eight values (16 bytes) per step.
const CHUNK8_BF16: &str = include_str!("../../shaders/linear_chunk8_bf16.wgsl");
const BF16: &str = include_str!("../../shaders/bf16.wgsl");
const TEXELS: &str = include_str!("../../shaders/texels.wgsl");
/// The GELU epilogue's formula, shared with the elementwise family.
const GELU: &str = include_str!("../../shaders/gelu.wgsl");

pub const SHADER: Shader = Shader {
    name: "linear",
    parts: &[
        "alias AElem = f32;\n",
        include_str!("../../shaders/linear_a_buffer.wgsl"),
        CHUNK4,
        GELU,
        CORE,
    ],
};

/// The same kernels reading operand A as f16 (weights stored in half precision, f32
/// arithmetic): half the weight memory and bandwidth, on adapters with SHADER_F16.
pub const SHADER_F16_WEIGHTS: Shader = Shader {
    name: "linear_f16",
    parts: &[
        "enable f16;\nalias AElem = f16;\n",
        include_str!("../../shaders/linear_a_buffer.wgsl"),
        CHUNK4,
        GELU,
        CORE,
    ],
};

/// The same kernels reading operand A as bf16 (two per u32; any adapter); the matrix-vector
/// kernel loads eight per step (16 bytes per invocation, as with f32 vec4s).
pub const SHADER_BF16_WEIGHTS: Shader = Shader {
    name: "linear_bf16",
    parts: &[
        BF16,
        include_str!("../../shaders/linear_a_bf16.wgsl"),
        CHUNK8_BF16,
        GELU,
        CORE,
    ],
};

/// The same kernels reading operand A from a weight stored as f32 texels (`super::texels`).
pub const SHADER_TEXEL_WEIGHTS: Shader = Shader {
    name: "linear_texels",
    parts: &[
        TEXELS,
        include_str!("../../shaders/linear_a_texels.wgsl"),
        CHUNK4,
        GELU,
        CORE,
    ],
};

/// The same kernels reading operand A from bf16 weights stored as texels, eight per texel; the
/// matrix-vector kernel takes a whole texel per step.
pub const SHADER_TEXEL_BF16_WEIGHTS: Shader = Shader {
    name: "linear_texels_bf16",
    parts: &[
        TEXELS,
        BF16,
        include_str!("../../shaders/linear_a_texels_bf16.wgsl"),
        CHUNK8_BF16,
        GELU,
        CORE,
    ],
};

/// The block-quantized formats (`super::blocks`): shared byte helpers and the matrix-vector
/// kernel's 32-value chunk, then one prelude per format that widens four values at a time for
/// the matrix kernels and dots a whole block (or sub-block) with its scales read once for the
/// matrix-vector kernel. Each reads 16-byte quads from a buffer or from texels.
const BLOCKS: &str = include_str!("../../shaders/blocks.wgsl");
const BLOCKS_BUFFER: &str = include_str!("../../shaders/blocks_buffer.wgsl");
const BLOCKS_TEXELS: &str = include_str!("../../shaders/blocks_texels.wgsl");
const Q8_0: &str = include_str!("../../shaders/linear_a_q8_0.wgsl");
const Q4_0: &str = include_str!("../../shaders/linear_a_q4_0.wgsl");
const Q5_0: &str = include_str!("../../shaders/linear_a_q5_0.wgsl");
const Q4_K: &str = include_str!("../../shaders/linear_a_q4_k.wgsl");
const Q6_K: &str = include_str!("../../shaders/linear_a_q6_k.wgsl");

/// The same kernels reading operand A as Q8_0 blocks from a buffer.
pub const SHADER_Q8_0_WEIGHTS: Shader = Shader {
    name: "linear_q8_0",
    parts: &[BLOCKS, BLOCKS_BUFFER, Q8_0, GELU, CORE],
};
/// … as Q4_0 blocks from a buffer.
pub const SHADER_Q4_0_WEIGHTS: Shader = Shader {
    name: "linear_q4_0",
    parts: &[BLOCKS, BLOCKS_BUFFER, Q4_0, GELU, CORE],
};
/// … as Q5_0 blocks from a buffer.
pub const SHADER_Q5_0_WEIGHTS: Shader = Shader {
    name: "linear_q5_0",
    parts: &[BLOCKS, BLOCKS_BUFFER, Q5_0, GELU, CORE],
};
/// … as Q4_K super-blocks from a buffer.
pub const SHADER_Q4_K_WEIGHTS: Shader = Shader {
    name: "linear_q4_k",
    parts: &[BLOCKS, BLOCKS_BUFFER, Q4_K, GELU, CORE],
};
/// … as Q6_K super-blocks from a buffer.
pub const SHADER_Q6_K_WEIGHTS: Shader = Shader {
    name: "linear_q6_k",
    parts: &[BLOCKS, BLOCKS_BUFFER, Q6_K, GELU, CORE],
};
/// … as Q8_0 blocks stored as texels.
pub const SHADER_TEXEL_Q8_0_WEIGHTS: Shader = Shader {
    name: "linear_texels_q8_0",
    parts: &[TEXELS, BLOCKS, BLOCKS_TEXELS, Q8_0, GELU, CORE],
};
/// … as Q4_0 blocks stored as texels.
pub const SHADER_TEXEL_Q4_0_WEIGHTS: Shader = Shader {
    name: "linear_texels_q4_0",
    parts: &[TEXELS, BLOCKS, BLOCKS_TEXELS, Q4_0, GELU, CORE],
};
/// … as Q5_0 blocks stored as texels.
pub const SHADER_TEXEL_Q5_0_WEIGHTS: Shader = Shader {
    name: "linear_texels_q5_0",
    parts: &[TEXELS, BLOCKS, BLOCKS_TEXELS, Q5_0, GELU, CORE],
};
/// … as Q4_K super-blocks stored as texels.
pub const SHADER_TEXEL_Q4_K_WEIGHTS: Shader = Shader {
    name: "linear_texels_q4_k",
    parts: &[TEXELS, BLOCKS, BLOCKS_TEXELS, Q4_K, GELU, CORE],
};
/// … as Q6_K super-blocks stored as texels.
pub const SHADER_TEXEL_Q6_K_WEIGHTS: Shader = Shader {
    name: "linear_texels_q6_k",
    parts: &[TEXELS, BLOCKS, BLOCKS_TEXELS, Q6_K, GELU, CORE],
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
    col_on_a: u32,
    groups_a: u32,
    groups_total: u32,
    a_rs: u32,
    b_rs: u32,
    batch_inner: u32,
    a_bo: u32,
    a_bi: u32,
    b_bo: u32,
    b_bi: u32,
    y_bo: u32,
    y_bi: u32,
    res_off: u32,
    gamma_off: u32,
    has_gamma: u32,
}

/// What a linear does to each output after the bias, in the same pass (instead of a second
/// kernel reading and writing the whole output again).
#[derive(Clone, Copy, Debug, Default)]
pub enum Epilogue<'a> {
    #[default]
    None,
    /// GELU, erf form (as `elementwise::Unary::Gelu`, the same formula).
    Gelu,
    /// residual + γ ⊙ value: `residual` laid out as the output, γ (LayerScale) one value per
    /// output column, or 1 when None (as `elementwise::residual_add`).
    Residual {
        residual: &'a GpuTensor,
        gamma: Option<&'a GpuTensor>,
    },
}

impl Epilogue<'_> {
    /// The shader's `EPILOGUE` pipeline constant.
    fn code(&self) -> f64 {
        match self {
            Epilogue::None => 0.0,
            Epilogue::Gelu => 1.0,
            Epilogue::Residual { .. } => 2.0,
        }
    }
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
    /// When a product with one B row (a decoded token) runs the matrix-vector kernel.
    pub gemv: GemvUse,
    /// Matrix-vector kernel: invocations per workgroup.
    pub gemv_lanes: u32,
    /// Matrix-vector kernel: its invocations split K for A of at most this many rows; past it
    /// each invocation owns rows (no reduction; enough rows keep every core busy anyway).
    pub gemv_split_k_max_rows: u32,
    /// Whether executors should fuse a following GELU or residual add into the linear as its
    /// [`Epilogue`] (one pass over the output instead of two).
    pub fuse_epilogues: bool,
}

/// When the matrix-vector kernel (`gemv` in the shader) computes a product with one B row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemvUse {
    Never,
    /// Only when A is a weight stored as texels (CPU adapters: with buffer loads the
    /// register-blocked kernel is faster there).
    TexelWeights,
    Always,
}

/// Rows of A each register-blocked invocation holds (fixed by the shader).
const RB_A_ROWS: u32 = 16;
/// Rows of A per matrix-vector workgroup (split K) or invocation (lanes own rows): GR in the
/// shader.
const GEMV_A_ROWS: u32 = 16;
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

    /// Register-blocked default for CPU adapters, with the matrix-vector kernel for weights
    /// stored as texels. On llvmpipe (Mesa 22.3, LLVM 15, 8-wide
    /// lanes) every storage load is a per-lane loop with bounds checks, so throughput follows
    /// the register block (16 A rows × `rows_per_group` B rows per invocation). Measured on a
    /// quiet 2-core machine at M=4096, N=K=896 (release build, 4 dispatches per submission):
    /// 32 rows ≈ 31 GFLOP/s (1024³: ≈ 32), 16 rows ≈ 25, scalar loads ≈ 18; workgroup 8 (one
    /// SIMD chunk) with invocations over W rows beat workgroup 16 (≈ 28) and over X rows (≈ 27).
    /// Larger blocks (32×32, 64×16 in a scratch kernel) were no faster and compiled 4–10× longer;
    /// loops over arrays instead of the written-out block ran at half speed, and staging
    /// operands in workgroup memory at 0.3–0.8×. First use compiles the 32-row pipeline for
    /// ~15 s on such a machine (Mesa caches it on disk afterwards).
    ///
    /// One B row (decoding) with texel weights runs the matrix-vector kernel with 8 invocations
    /// (one SIMD row). Up to 4096 rows they split K: more workgroups for the 2 threads to
    /// share. Measured on the same machine, f32 texel weights, best of 5 interleaved rounds:
    /// 896×4864 13.9 GB/s (register-blocked, 7 workgroups: 11.5), 896×896 11.2 (10.8). Taller
    /// weights have workgroups enough, and there the reduction costs more than it shares, so
    /// each invocation owns rows: 9728×896 f32 2.8 ms (split K 3.5, register-blocked 2.8),
    /// bf16 texels 1.8 ms (split K 2.9; register-blocked 2.8, as it reads half a texel per
    /// vec4).
    ///
    /// Epilogues are not fused here: on llvmpipe the tiny model's vision encoder ran ~8 %
    /// slower fused (914–958 frames/s against 964–1051, interleaved runs) although it saves
    /// three dispatches per layer — every epilogue load is a per-lane loop inside the
    /// register-blocked kernel's branchy store phase, where a separate elementwise pass streams.
    pub const CPU: Tuning = Tuning {
        kernel: Kernel::RegisterBlocked,
        rows_per_group: 32,
        workgroup: 8,
        vec4: true,
        split: Split::Auto,
        bk: 16,
        gemv: GemvUse::TexelWeights,
        gemv_lanes: 8,
        gemv_split_k_max_rows: 4096,
        fuse_epilogues: false,
    };

    /// Workgroup-tiled default for real GPUs: 16×16 invocations, 64×64 outputs, K stages of 16
    /// (8.3 KiB of workgroup memory); one B row runs the matrix-vector kernel with 64
    /// invocations along K (coalesced weight reads, 4 KiB of workgroup memory). Epilogues are
    /// fused: a GELU or residual pass over a large activation is a full extra read and write
    /// of device memory (unmeasured here: no GPU was lent).
    pub const GPU: Tuning = Tuning {
        kernel: Kernel::Tiled,
        rows_per_group: 32,
        workgroup: 8,
        vec4: true,
        split: Split::Auto,
        bk: 16,
        gemv: GemvUse::Always,
        gemv_lanes: 64,
        gemv_split_k_max_rows: u32::MAX,
        fuse_epilogues: true,
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

/// [`linear`] with an epilogue applied to each output in the same pass.
pub fn linear_with(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    epilogue: Epilogue,
) -> Result<GpuTensor> {
    check_operands(x, w, b)?;
    let out = rec.alloc("linear.out", &[x.rows(), w.rows()])?;
    let tuning = Tuning::for_adapter(rec.ctx);
    linear_into_tuned_with(rec, x, w, b, epilogue, &out, tuning)?;
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
    linear_into_tuned_with(rec, x, w, b, Epilogue::None, out, tuning)
}

/// [`linear_into_tuned`] with an epilogue.
pub fn linear_into_tuned_with(
    rec: &mut Recorder,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    epilogue: Epilogue,
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
    tuning.check()?;
    // Operand roles: (A, B) = (W, X) puts invocations over output columns.
    let (a_span, b_span) = tuning.spans();
    let padded = |a_rows: usize, b_rows: usize| {
        a_rows.div_ceil(a_span) * a_span * (b_rows.div_ceil(b_span) * b_span)
    };
    // f16/bf16 weights and weights stored as texels are read only as operand A.
    let columns = w.elem != Elem::F32
        || w.is_texels()
        || match tuning.split {
            Split::Columns => true,
            Split::Rows => false,
            Split::Auto => padded(n, m) <= padded(m, n),
        };
    let xs = Rows::dense(x, m, k);
    let ws = Rows::dense(w, n, k);
    let (a, bt, ya, yb) = if columns {
        (ws, xs, 1, n)
    } else {
        (xs, ws, n, 1)
    };
    let product = Product {
        a,
        b: bt,
        k,
        batches: 1,
        batch_inner: 1,
        out: OutLayout {
            t: out,
            offset: 0,
            ya,
            yb,
            outer: 0,
            inner: 0,
        },
        bias: b,
        columns_on_a: columns,
        epilogue,
    };
    product.record(rec, tuning)
}

/// Rows of `x` (a table in any format this family reads; ggml blocks are the reason) copied to
/// rows of `out`: for each of the `pairs` (src, dst) u32 pairs in `list`, out row dst = x row
/// src widened to f32 (`elementwise::copy_rows`, which checked the pairs against both tensors,
/// routes block tables here).
pub fn copy_rows(
    rec: &mut Recorder,
    x: &GpuTensor,
    list: &GpuTensor,
    pairs: usize,
    out: &GpuTensor,
) -> Result<()> {
    let shader = shader_for(rec, x)?;
    let k = x.cols();
    let params = Params {
        b_rows: u(pairs, "pairs")?,
        k: u(k, "row width")?,
        a_off: u(x.offset, "offset")?,
        b_off: list.off(),
        y_off: out.off(),
        a_rs: u(k, "row width")?,
        batch_inner: 1,
        ..bytemuck::Zeroable::zeroed()
    };
    let pipeline = rec.ctx.pipeline(shader, "copy_rows", &[])?;
    let [gx, gy, _] = grid(rec.ctx, u((pairs * k).div_ceil(64), "elements")?);
    rec.dispatch_bound(
        &pipeline,
        bytemuck::bytes_of(&params),
        &[(1, x), (2, list), (4, out)],
        [gx, gy, 1],
    );
    Ok(())
}

/// One operand of a [`Product`]: `rows` rows of K values, element (batch z, row r, k) at
/// `offset + (z / batch_inner)·outer + (z % batch_inner)·inner + r·row_stride + k` of the
/// view `t` (offsets relative to the view).
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub t: &'a GpuTensor,
    pub rows: usize,
    pub offset: usize,
    pub row_stride: usize,
    pub outer: usize,
    pub inner: usize,
}

impl<'a> Rows<'a> {
    /// A plain (rows, k) row-major matrix, one batch.
    pub fn dense(t: &'a GpuTensor, rows: usize, k: usize) -> Self {
        Rows {
            t,
            rows,
            offset: 0,
            row_stride: k,
            outer: 0,
            inner: 0,
        }
    }
}

/// Where a [`Product`] writes out[z, a, b]: `offset + (z / batch_inner)·outer + (z %
/// batch_inner)·inner + a·ya + b·yb` of the view `t`.
#[derive(Clone, Copy, Debug)]
pub struct OutLayout<'a> {
    pub t: &'a GpuTensor,
    pub offset: usize,
    pub ya: usize,
    pub yb: usize,
    pub outer: usize,
    pub inner: usize,
}

/// The general form every call of this family reduces to: for each batch z < `batches`,
/// out[z, a, b] = A[z, a]·B[z, b] (+ bias), dot products of K values. Linear is one batch of
/// dense rows; attention batches Q·Kᵀ and P·V over (group, head) with strided rows.
#[derive(Clone, Copy, Debug)]
pub struct Product<'a> {
    pub a: Rows<'a>,
    pub b: Rows<'a>,
    pub k: usize,
    pub batches: usize,
    pub batch_inner: usize,
    pub out: OutLayout<'a>,
    /// Added to every output, one value per output column.
    pub bias: Option<&'a GpuTensor>,
    /// Whether an output column is an A row (else a B row): how the bias and the epilogue's γ
    /// are indexed.
    pub columns_on_a: bool,
    pub epilogue: Epilogue<'a>,
}

/// The variant of this family that reads `a` (the weight operand) in its format and storage.
fn shader_for(rec: &Recorder, a: &GpuTensor) -> Result<&'static Shader> {
    Ok(match a.elem {
        Elem::F32 if a.is_texels() => &SHADER_TEXEL_WEIGHTS,
        Elem::Bf16 if a.is_texels() => &SHADER_TEXEL_BF16_WEIGHTS,
        Elem::F32 => &SHADER,
        Elem::F16 if rec.ctx.has_f16() => &SHADER_F16_WEIGHTS,
        Elem::F16 => {
            return Err(Error::input(format!(
                "linear: f16 weights need SHADER_F16, which {} lacks",
                rec.ctx.adapter_name()
            )))
        }
        Elem::Bf16 => &SHADER_BF16_WEIGHTS,
        Elem::Q8_0 if a.is_texels() => &SHADER_TEXEL_Q8_0_WEIGHTS,
        Elem::Q4_0 if a.is_texels() => &SHADER_TEXEL_Q4_0_WEIGHTS,
        Elem::Q5_0 if a.is_texels() => &SHADER_TEXEL_Q5_0_WEIGHTS,
        Elem::Q4K if a.is_texels() => &SHADER_TEXEL_Q4_K_WEIGHTS,
        Elem::Q6K if a.is_texels() => &SHADER_TEXEL_Q6_K_WEIGHTS,
        Elem::Q8_0 => &SHADER_Q8_0_WEIGHTS,
        Elem::Q4_0 => &SHADER_Q4_0_WEIGHTS,
        Elem::Q5_0 => &SHADER_Q5_0_WEIGHTS,
        Elem::Q4K => &SHADER_Q4_K_WEIGHTS,
        Elem::Q6K => &SHADER_Q6_K_WEIGHTS,
    })
}

/// u32 view of a size the kernel takes, with an error naming it.
fn u(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::input(format!("linear: {what} = {v} exceeds u32")))
}

/// Checks that the largest element `last` (relative) of a view stays inside it and returns the
/// absolute start offset.
fn in_view(name: &str, t: &GpuTensor, offset: usize, last: u128) -> Result<u32> {
    if last >= t.len() as u128 {
        return Err(Error::input(format!(
            "linear: the layout of `{name}` reaches element {last} but the view {:?} holds {}",
            t.shape,
            t.len()
        )));
    }
    u(t.offset + offset, "operand offset")
}

impl Rows<'_> {
    /// Largest relative element addressed for `batches` batches of K values.
    fn last(&self, batches: usize, inner: usize, k: usize) -> u128 {
        let (outer_n, inner_n) = batch_extent(batches, inner);
        self.offset as u128
            + outer_n as u128 * self.outer as u128
            + inner_n as u128 * self.inner as u128
            + (self.rows as u128 - 1) * self.row_stride as u128
            + k as u128
            - 1
    }
}

/// Largest outer and inner batch index used by `batches` batches.
fn batch_extent(batches: usize, inner: usize) -> (usize, usize) {
    let inner_n = if batches > inner {
        inner - 1
    } else {
        batches - 1
    };
    ((batches - 1) / inner, inner_n)
}

impl Tuning {
    fn check(&self) -> Result<()> {
        if !(1..=32).contains(&self.rows_per_group)
            || self.workgroup == 0
            || self.bk == 0
            || self.gemv_lanes == 0
        {
            return Err(Error::input(format!("linear: unsupported tuning {self:?}")));
        }
        Ok(())
    }

    /// (A rows, B rows) one workgroup covers.
    fn spans(&self) -> (usize, usize) {
        match self.kernel {
            Kernel::RegisterBlocked => (
                (RB_A_ROWS * self.workgroup) as usize,
                self.rows_per_group as usize,
            ),
            Kernel::Tiled => (TILE_OUT as usize, TILE_OUT as usize),
        }
    }
}

impl Product<'_> {
    /// Validates the layout against the views and records one dispatch.
    pub fn record(&self, rec: &mut Recorder, tuning: Tuning) -> Result<()> {
        let (a, b, out) = (&self.a, &self.b, &self.out);
        let (residual, gamma) = match self.epilogue {
            Epilogue::Residual { residual, gamma } => (Some(residual), gamma),
            _ => (None, None),
        };
        let inputs = [Some(a.t), Some(b.t), self.bias, residual, gamma];
        if inputs.into_iter().flatten().any(|t| t.same_buffer(out.t)) {
            return Err(Error::input(
                "linear: the output may not share a buffer with x, the weight, the bias or the epilogue's inputs",
            ));
        }
        tuning.check()?;
        if [Some(b.t), Some(out.t), self.bias, residual, gamma]
            .into_iter()
            .flatten()
            .any(|t| t.elem != Elem::F32 || t.is_texels())
        {
            return Err(Error::input(
                "linear: only the weight may be stored as f16, bf16 or texels; activations, bias, output and the epilogue's inputs are f32 buffers",
            ));
        }
        let shader = shader_for(rec, a.t)?;
        if self.batch_inner == 0 {
            return Err(Error::input("linear: batch_inner must be at least 1"));
        }
        if a.rows == 0 || b.rows == 0 || self.batches == 0 {
            return Ok(());
        }
        if self.k == 0 {
            return Err(Error::input("linear: K = 0 (no values to multiply)"));
        }
        let max_z = rec.ctx.limits.max_compute_workgroups_per_dimension as usize;
        if self.batches > max_z {
            return Err(Error::input(format!(
                "linear: {} batches exceed the adapter's {max_z} workgroups per dimension",
                self.batches
            )));
        }
        let (bs, inner) = (self.batches, self.batch_inner);
        let a_off = in_view("A", a.t, a.offset, a.last(bs, inner, self.k))?;
        let b_off = in_view("B", b.t, b.offset, b.last(bs, inner, self.k))?;
        let (outer_n, inner_n) = batch_extent(bs, inner);
        let y_last = out.offset as u128
            + outer_n as u128 * out.outer as u128
            + inner_n as u128 * out.inner as u128
            + (a.rows as u128 - 1) * out.ya as u128
            + (b.rows as u128 - 1) * out.yb as u128;
        let y_off = in_view("out", out.t, out.offset, y_last)?;
        // One bias or γ value per output column.
        let columns = if self.columns_on_a { a.rows } else { b.rows };
        let per_column = |name: &str, t: Option<&GpuTensor>| match t {
            Some(t) => in_view(name, t, 0, columns as u128 - 1),
            None => Ok(0),
        };
        let bias_off = per_column("bias", self.bias)?;
        let gamma_off = per_column("gamma", gamma)?;
        // The residual is laid out as the output, from its own start.
        let res_off = match residual {
            Some(r) => in_view("residual", r, 0, y_last - out.offset as u128)?,
            None => 0,
        };
        let (a_rows, b_rows) = (u(a.rows, "A rows")?, u(b.rows, "B rows")?);
        let mut params = Params {
            a_rows,
            b_rows,
            k: u(self.k, "K")?,
            a_off,
            b_off,
            bias_off,
            y_off,
            ya: u(out.ya, "output stride")?,
            yb: u(out.yb, "output stride")?,
            has_bias: self.bias.is_some() as u32,
            col_on_a: self.columns_on_a as u32,
            groups_a: 0,
            groups_total: 0,
            a_rs: u(a.row_stride, "row stride")?,
            b_rs: u(b.row_stride, "row stride")?,
            batch_inner: u(inner, "batch_inner")?,
            a_bo: u(a.outer, "batch stride")?,
            a_bi: u(a.inner, "batch stride")?,
            b_bo: u(b.outer, "batch stride")?,
            b_bi: u(b.inner, "batch stride")?,
            y_bo: u(out.outer, "batch stride")?,
            y_bi: u(out.inner, "batch stride")?,
            res_off,
            gamma_off,
            has_gamma: gamma.is_some() as u32,
        };
        // Slots of absent inputs are bound to B (never read).
        let buffers = [
            a.t,
            b.t,
            self.bias.unwrap_or(b.t),
            out.t,
            residual.unwrap_or(b.t),
            gamma.unwrap_or(b.t),
        ];

        // Whether every row (and batch) of both operands starts at a multiple of `n` elements.
        let offsets = [
            self.k,
            a_off as usize,
            b_off as usize,
            a.row_stride,
            b.row_stride,
            a.outer,
            a.inner,
            b.outer,
            b.inner,
        ];
        let aligned_to = |n: usize| offsets.iter().all(|v| v % n == 0);
        // The vec4 entry points need every vec4 they read to start at a multiple of 4.
        let aligned = aligned_to(4);
        // The matrix-vector kernel steps through K in chunks (`A_CHUNK` in the shader): eight
        // bf16 values (16 bytes: a texel, or one load), a block format's 32, a vec4 otherwise.
        let chunk = match a.t.elem {
            Elem::Bf16 => 8,
            e if e.is_blocks() => 32,
            _ => 4,
        };
        let gemv = b.rows == 1
            && aligned_to(chunk)
            && match tuning.gemv {
                GemvUse::Never => false,
                GemvUse::TexelWeights => a.t.is_texels(),
                GemvUse::Always => true,
            };
        let epilogue = self.epilogue.code();
        let pipeline = if gemv {
            let lane_rows = a_rows > tuning.gemv_split_k_max_rows;
            let rows_per_group = match lane_rows {
                true => GEMV_A_ROWS * tuning.gemv_lanes,
                false => GEMV_A_ROWS,
            };
            params.groups_a = a_rows.div_ceil(rows_per_group);
            params.groups_total = params.groups_a;
            rec.ctx.pipeline(
                shader,
                "gemv",
                &[
                    ("GV", tuning.gemv_lanes as f64),
                    ("GEMV_LANE_ROWS", lane_rows as u32 as f64),
                    ("EPILOGUE", epilogue),
                ],
            )?
        } else {
            match tuning.kernel {
                Kernel::RegisterBlocked => {
                    // Fewer B rows per workgroup when B is short (GEMV-like calls): powers of
                    // two, so only a handful of pipelines exist.
                    let tm = tuning.rows_per_group.min(b_rows.next_power_of_two());
                    let entry = if tuning.vec4 && aligned {
                        "rb_vec4"
                    } else {
                        "rb_scalar"
                    };
                    params.groups_a = a_rows.div_ceil(RB_A_ROWS * tuning.workgroup);
                    params.groups_total = b_rows.div_ceil(tm) * params.groups_a;
                    rec.ctx.pipeline(
                        shader,
                        entry,
                        &[
                            ("WG", tuning.workgroup as f64),
                            ("TM", tm as f64),
                            ("EPILOGUE", epilogue),
                        ],
                    )?
                }
                Kernel::Tiled => {
                    params.groups_a = a_rows.div_ceil(TILE_OUT);
                    params.groups_total = b_rows.div_ceil(TILE_OUT) * params.groups_a;
                    rec.ctx.pipeline(
                        shader,
                        "tiled",
                        &[
                            ("TILE", TILE as f64),
                            ("BK", tuning.bk as f64),
                            ("EPILOGUE", epilogue),
                        ],
                    )?
                }
            }
        };
        let [x, y, _] = grid(rec.ctx, params.groups_total);
        rec.dispatch(
            &pipeline,
            bytemuck::bytes_of(&params),
            &buffers,
            [x, y, self.batches as u32],
        );
        Ok(())
    }
}
