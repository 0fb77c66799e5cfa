//! GPU attention kernel family (`shaders/attention.wgsl`): multi-head attention over strided
//! operands — fused flash-style, or as batched products around a row softmax where that is
//! faster ([`Strategy`]) — and the softmax weights for provenance. Geometry and semantics are those of
//! the CPU twin, `crate::cpu::attention`; operand offsets in the geometry are relative to each
//! tensor's own view offset.

use super::buffer::GpuTensor;
use super::kernel::{grid, Recorder, Shader};
use super::linear::{Epilogue, OutLayout, Product, Rows, Tuning};
use crate::error::{Error, Result};
use crate::ops::{AttnGeometry, Operand};

pub const SHADER: Shader = Shader {
    name: "attention",
    parts: &[include_str!("../../shaders/attention.wgsl")],
};

/// Largest head dimension the kernel supports (the private accumulator holds 256 values).
pub const MAX_HEAD_DIM: usize = 256;

/// Workgroup size of the `probs` entry point (fixed in the WGSL).
const PROBS_WG: usize = 64;

/// Must match `Params` in shaders/attention.wgsl field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    groups: u32,
    q_len: u32,
    kv_len: u32,
    heads: u32,
    head_dim: u32,
    scale: f32,
    q_blocks: u32,
    out_off: u32,
    q_off: u32,
    q_gs: u32,
    q_rs: u32,
    k_off: u32,
    k_gs: u32,
    k_rs: u32,
    v_off: u32,
    v_gs: u32,
    v_rs: u32,
    o_gs: u32,
    o_rs: u32,
    kv_group: u32,
    causal: u32,
    causal_off: u32,
    splits: u32,
}

/// Tunables of the `attend` entry point for one adapter and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttendTuning {
    /// Query rows per workgroup (one invocation each).
    pub wg: u32,
    /// Stage K/V tiles through workgroup memory.
    pub stage: bool,
}

impl AttendTuning {
    /// The choice for this adapter and query length.
    ///
    /// Real GPUs: K/V staged in workgroup memory (the ORT WebGPU flash-attention layout), 64
    /// query rows per workgroup, 32 when there are fewer rows so short sequences (attention
    /// along 16 frames) do not idle most of the workgroup.
    ///
    /// lavapipe (a CPU): Mesa's llvmpipe (22.3) turns every storage or workgroup load inside a
    /// loop into a per-lane scalar loop, so the kernel is load-bound; what helps is sharing each
    /// staged K/V tile among as many query rows as possible. Measured on llvmpipe, 2 cores,
    /// head_dim 224 (E 896, 4 heads), T 16, N 256, with a scratch benchmark: along tokens (256
    /// rows) staged 16/64/128 rows per workgroup 2.5/3.0/3.2 GFLOP/s, unstaged 2.1; along frames
    /// (16 rows) staged 16/64/128 rows 0.70/0.24/0.12, unstaged 16 rows 0.62. Hence staging and
    /// one workgroup per whole sequence, from 16 up to 128 rows.
    pub fn choose(is_cpu: bool, q_len: usize) -> Self {
        if is_cpu {
            AttendTuning {
                wg: (q_len.next_power_of_two() as u32).clamp(16, 128),
                stage: true,
            }
        } else {
            AttendTuning {
                wg: if q_len <= 32 { 32 } else { 64 },
                stage: true,
            }
        }
    }
}

/// How `attention` computes its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The fused flash kernel `attend`: one pass, no intermediate in memory.
    Flash(AttendTuning),
    /// Four dispatches: S = Q·Kᵀ and O = P·V as batched products of the linear family, a row
    /// softmax and a V transpose in between. S and Vᵀ live in scratch buffers; whole groups
    /// are processed in chunks whose scratch stays under `scratch_bytes` (at least one group
    /// per chunk).
    Gemm { scratch_bytes: usize },
}

/// Default bound of the GEMM route's scratch (scores plus transposed values) per chunk: small
/// against every adapter's binding limit, large enough that the official shape (64 (frame,
/// head) pairs of 256×256 scores, 18 MiB with Vᵀ) runs as one chunk.
pub const GEMM_SCRATCH_BYTES: usize = 32 << 20;

impl Strategy {
    /// The choice for this adapter and shape.
    ///
    /// On CPU adapters (lavapipe) the flash kernel is load-bound (see [`AttendTuning::choose`]):
    /// 3.2 GFLOP/s along 256 tokens at head_dim 224 where the register-blocked product runs at
    /// ~30. For sequences long enough to fill the product's blocks (≥ 64 keys, ≥ 32 queries) the
    /// GEMM route wins by far; short ones (attention along 16 frames) stay fused. Real GPUs keep
    /// the fused kernel (no intermediate traffic; not measured against the GEMM route here).
    pub fn choose(is_cpu: bool, q_len: usize, kv_len: usize) -> Self {
        if is_cpu && q_len >= 32 && kv_len >= 64 {
            Strategy::Gemm {
                scratch_bytes: GEMM_SCRATCH_BYTES,
            }
        } else {
            Strategy::Flash(AttendTuning::choose(is_cpu, q_len))
        }
    }
}

/// One past the last element `op` addresses, in u128 (geometry values come from callers and
/// may be absurd).
fn max_index(op: &Operand, groups: usize, rows: usize, width: usize) -> u128 {
    op.offset as u128
        + (groups.max(1) - 1) as u128 * op.group_stride as u128
        + (rows.max(1) - 1) as u128 * op.row_stride as u128
        + width as u128
}

/// Checks that every element `op` addresses for `groups × rows` rows of `width` values lies
/// inside the view `t`, and returns (absolute offset, group stride, row stride) as u32.
fn operand(
    name: &str,
    t: &GpuTensor,
    op: &Operand,
    groups: usize,
    rows: usize,
    width: usize,
) -> Result<(u32, u32, u32)> {
    if width > t.cols() {
        return Err(Error::input(format!(
            "attention: heads·head_dim = {width} exceeds the row width {} of `{name}` (shape {:?})",
            t.cols(),
            t.shape
        )));
    }
    let end = max_index(op, groups, rows, width);
    if end > t.len() as u128 {
        return Err(Error::input(format!(
            "attention: the geometry of `{name}` (offset {}, group stride {}, row stride {}, {groups} groups × {rows} rows × {width} values) reaches element {} but the view {:?} holds {}",
            op.offset,
            op.group_stride,
            op.row_stride,
            end - 1,
            t.shape,
            t.len()
        )));
    }
    // In bounds, so every used term fits the view; a stride that is never used may be huge.
    let stride = |s: usize, count: usize| if count <= 1 { 0 } else { s as u32 };
    let abs = t.offset as u128 + op.offset as u128;
    let abs = u32::try_from(abs)
        .map_err(|_| Error::input(format!("attention: `{name}` starts past 2^32 elements")))?;
    Ok((
        abs,
        stride(op.group_stride, groups),
        stride(op.row_stride, rows),
    ))
}

fn check_geometry(g: &AttnGeometry) -> Result<()> {
    if g.head_dim == 0 || g.head_dim > MAX_HEAD_DIM {
        return Err(Error::input(format!(
            "attention: head_dim {} is not supported; it must be 1..={MAX_HEAD_DIM} (embedding width / heads)",
            g.head_dim
        )));
    }
    if g.kv_len == 0 {
        return Err(Error::input(
            "attention: there are no keys (kv_len = 0); softmax over nothing is undefined",
        ));
    }
    if g.heads == 0 {
        return Err(Error::input("attention: heads must be at least 1"));
    }
    if !g.scale.is_finite() {
        return Err(Error::input(format!(
            "attention: scale {} is not finite",
            g.scale
        )));
    }
    let work = g.groups as u128 * g.heads as u128 * g.q_len.max(g.kv_len) as u128;
    if work > u32::MAX as u128 {
        return Err(Error::input(format!(
            "attention: {} groups × {} heads × {} rows is too many for one dispatch",
            g.groups,
            g.heads,
            g.q_len.max(g.kv_len)
        )));
    }
    Ok(())
}

/// Validates `g` against the tensors and fills the kernel parameters (out's fields zero when
/// `out` is None).
fn params(
    q: &GpuTensor,
    k: &GpuTensor,
    v: Option<&GpuTensor>,
    out: Option<&GpuTensor>,
    g: &AttnGeometry,
    kv_group: usize,
) -> Result<Params> {
    check_geometry(g)?;
    let width = g.heads.saturating_mul(g.head_dim);
    // k and v rows hold heads / kv_group heads (grouped-query attention).
    let kv_width = (g.heads / kv_group.max(1)).saturating_mul(g.head_dim);
    let (q_off, q_gs, q_rs) = operand("q", q, &g.q, g.groups, g.q_len, width)?;
    let (k_off, k_gs, k_rs) = operand("k", k, &g.k, g.groups, g.kv_len, kv_width)?;
    let (v_off, v_gs, v_rs) = match v {
        Some(v) => operand("v", v, &g.v, g.groups, g.kv_len, kv_width)?,
        None => (0, 0, 0),
    };
    let (out_off, o_gs, o_rs) = match out {
        Some(o) => operand("out", o, &g.out, g.groups, g.q_len, width)?,
        None => (0, 0, 0),
    };
    Ok(Params {
        groups: g.groups as u32,
        q_len: g.q_len as u32,
        kv_len: g.kv_len as u32,
        heads: g.heads as u32,
        head_dim: g.head_dim as u32,
        scale: g.scale,
        q_blocks: 0,
        out_off,
        q_off,
        q_gs,
        q_rs,
        k_off,
        k_gs,
        k_rs,
        v_off,
        v_gs,
        v_rs,
        o_gs,
        o_rs,
        kv_group: kv_group.max(1) as u32,
        causal: 0,
        causal_off: 0,
        splits: 1,
    })
}

/// Multi-head attention `out = softmax(scale·q·kᵀ)·v` over the strided operands `g` names (see
/// `AttnGeometry`); q, k and v may be views of one tensor (packed qkv). `out` must live in
/// another buffer.
pub fn attention(
    rec: &mut Recorder,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &GpuTensor,
    g: &AttnGeometry,
) -> Result<()> {
    attention_tuned(rec, q, k, v, out, g, None)
}

/// `attention` with an explicit strategy (None: [`Strategy::choose`] for this adapter and
/// shape); for benchmarks and tests of every code path.
pub fn attention_tuned(
    rec: &mut Recorder,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &GpuTensor,
    g: &AttnGeometry,
    strategy: Option<Strategy>,
) -> Result<()> {
    if [q, k, v].iter().any(|t| t.same_buffer(out)) {
        return Err(Error::input(
            "attention: `out` must not share a buffer with q, k or v",
        ));
    }
    let p = params(q, k, Some(v), Some(out), g, 1)?;
    if g.groups == 0 || g.q_len == 0 {
        return Ok(());
    }
    let is_cpu = rec.ctx.info.device_type == wgpu::DeviceType::Cpu;
    let mut strategy = strategy.unwrap_or_else(|| Strategy::choose(is_cpu, g.q_len, g.kv_len));
    if let Strategy::Gemm { scratch_bytes } = strategy {
        // One group's scores must fit the scratch (attention along thousands of frames would
        // need hundreds of MiB per token position): the fused kernel keeps nothing in memory.
        if gemm_group_bytes(g) > scratch_bytes.min(rec.ctx.max_binding_bytes() as usize) {
            strategy = Strategy::Flash(AttendTuning::choose(is_cpu, g.q_len));
        }
    }
    match strategy {
        Strategy::Flash(t) => flash(rec, q, k, v, out, p, t),
        Strategy::Gemm { scratch_bytes } => attention_gemm(rec, q, k, v, out, g, &p, scratch_bytes),
    }
}

/// How a decoder's attention over its KV cache differs from plain multi-head attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheAttention {
    /// Query heads per key/value head (grouped-query attention): query head h reads k/v head
    /// h / kv_group. k and v rows then hold heads / kv_group heads.
    pub kv_group: usize,
    /// Some(p): query row i sits at cache position p + i and sees keys 0..=p + i only.
    pub causal_offset: Option<usize>,
    /// Split-K ("flash decoding"): the keys are cut into this many ranges, one workgroup each,
    /// combined by a second dispatch. 1 = off. Only without a causal mask.
    pub splits: usize,
}

/// Attention of q over cached keys and values: `g` as for [`attention`] with `g.heads` query
/// heads, extended by `c` (grouped-query heads, causal mask). Always the fused flash kernel
/// (the GEMM route has neither extension). CPU twin:
/// `crate::cpu::kv_attention::causal_attention` (causal, groups = 1, rows from the cache start).
pub fn attention_cached(
    rec: &mut Recorder,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &GpuTensor,
    g: &AttnGeometry,
    c: CacheAttention,
) -> Result<()> {
    if c.kv_group == 0 || !g.heads.is_multiple_of(c.kv_group) {
        return Err(Error::input(format!(
            "attention: {} query heads cannot share key/value heads in groups of {}",
            g.heads, c.kv_group
        )));
    }
    if [q, k, v].iter().any(|t| t.same_buffer(out)) {
        return Err(Error::input(
            "attention: `out` must not share a buffer with q, k or v",
        ));
    }
    let mut p = params(q, k, Some(v), Some(out), g, c.kv_group)?;
    if let Some(off) = c.causal_offset {
        if off + g.q_len > g.kv_len {
            return Err(Error::input(format!(
                "attention: causal rows reach position {} but only {} keys are given",
                off + g.q_len,
                g.kv_len
            )));
        }
        p.causal = 1;
        p.causal_off = u32::try_from(off)
            .map_err(|_| Error::input("attention: causal offset exceeds 32 bits"))?;
    }
    if g.groups == 0 || g.q_len == 0 {
        return Ok(());
    }
    let is_cpu = rec.ctx.info.device_type == wgpu::DeviceType::Cpu;
    let tuning = AttendTuning::choose(is_cpu, g.q_len);
    // Whole, non-empty key ranges.
    let split_len = g.kv_len.div_ceil(c.splits.clamp(1, g.kv_len));
    let splits = g.kv_len.div_ceil(split_len);
    if splits == 1 {
        return flash(rec, q, k, v, out, p, tuning);
    }
    if c.causal_offset.is_some() {
        return Err(Error::input(
            "attention: split-K is only supported without a causal mask",
        ));
    }
    let rows = g.groups * g.heads * g.q_len;
    let scratch = rec.alloc("attention.splits", &[rows * splits, g.head_dim + 2])?;
    p.splits = splits as u32;
    let combine = Params {
        k_off: scratch.off(),
        ..p
    };
    p.out_off = scratch.off();
    flash(rec, q, k, v, &scratch, p, tuning)?;
    let pipeline = rec.ctx.pipeline(&SHADER, "combine_splits", &[])?;
    let wg = grid(rec.ctx, rows.div_ceil(PROBS_WG) as u32);
    rec.dispatch(
        &pipeline,
        bytemuck::bytes_of(&combine),
        &[&scratch, out],
        wg,
    );
    Ok(())
}

/// Split-K ranges for a one-row decode over `kv_len` keys: on GPUs, ranges of at least 128
/// keys, at most 64 of them, so a long cache spreads over many workgroups; on CPU adapters
/// (lavapipe, a few threads) the kv heads alone keep every core busy, so none.
pub fn decode_splits(is_cpu: bool, kv_len: usize) -> usize {
    if is_cpu {
        1
    } else {
        kv_len.div_ceil(128).clamp(1, 64)
    }
}

/// A decoder's causal grouped-query attention over its cache: q (R, heads·head_dim), row r at
/// position `position + r`, over rows 0..position + R of `keys` and `values` (capacity,
/// kv_heads·head_dim), scale 1/√head_dim. A new (R, heads·head_dim) tensor. CPU twin:
/// `crate::cpu::kv_attention::causal_attention`.
///
/// One row (decode) folds the query heads that share a key/value head into the rows of one
/// non-causal problem per kv head — kv_heads groups of heads/kv_heads rows, every row seeing
/// all position + 1 keys — so each staged K/V tile serves all of them. Several rows (prefill)
/// use the causal, grouped-query form of the flash kernel.
#[allow(clippy::too_many_arguments)]
pub fn decoder_attention(
    rec: &mut Recorder,
    q: &GpuTensor,
    keys: &GpuTensor,
    values: &GpuTensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    position: usize,
) -> Result<GpuTensor> {
    let is_cpu = rec.ctx.info.device_type == wgpu::DeviceType::Cpu;
    let splits = decode_splits(is_cpu, position + 1);
    decoder_attention_split(
        rec, q, keys, values, heads, kv_heads, head_dim, position, splits,
    )
}

/// [`decoder_attention`] with an explicit split-K count for the one-row case (tests,
/// benchmarks); ignored for several rows.
#[allow(clippy::too_many_arguments)]
pub fn decoder_attention_split(
    rec: &mut Recorder,
    q: &GpuTensor,
    keys: &GpuTensor,
    values: &GpuTensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    position: usize,
    splits: usize,
) -> Result<GpuTensor> {
    if kv_heads == 0 || heads == 0 || !heads.is_multiple_of(kv_heads) || head_dim == 0 {
        return Err(Error::input(format!(
            "decoder attention: {heads} query heads must be a nonzero multiple of {kv_heads} key/value heads"
        )));
    }
    let (rows, width, kv_width) = (q.rows(), heads * head_dim, kv_heads * head_dim);
    if q.cols() != width || keys.cols() != kv_width || values.cols() != kv_width {
        return Err(Error::input(format!(
            "decoder attention: q {:?} must hold {heads}×{head_dim} values per row and the cache {:?} {kv_heads}×{head_dim}",
            q.shape, keys.shape
        )));
    }
    let kv_len = position + rows;
    if kv_len > keys.rows() || kv_len > values.rows() {
        return Err(Error::input(format!(
            "decoder attention: rows at positions {position}..{kv_len} exceed the cache of {} positions",
            keys.rows()
        )));
    }
    let out = rec.alloc("decoder_attention.out", &[rows, width])?;
    let group = heads / kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let op = |group_stride, row_stride| Operand {
        offset: 0,
        group_stride,
        row_stride,
    };
    if rows == 1 {
        let g = AttnGeometry {
            groups: kv_heads,
            q_len: group,
            kv_len,
            heads: 1,
            head_dim,
            scale,
            q: op(group * head_dim, head_dim),
            k: op(head_dim, kv_width),
            v: op(head_dim, kv_width),
            out: op(group * head_dim, head_dim),
        };
        let c = CacheAttention {
            kv_group: 1,
            causal_offset: None,
            splits,
        };
        attention_cached(rec, q, keys, values, &out, &g, c)?;
    } else {
        let g = AttnGeometry {
            groups: 1,
            q_len: rows,
            kv_len,
            heads,
            head_dim,
            scale,
            q: op(0, width),
            k: op(0, kv_width),
            v: op(0, kv_width),
            out: op(0, width),
        };
        let c = CacheAttention {
            kv_group: group,
            causal_offset: Some(position),
            splits: 1,
        };
        attention_cached(rec, q, keys, values, &out, &g, c)?;
    }
    Ok(out)
}

/// Records the fused `attend` kernel for validated parameters.
fn flash(
    rec: &mut Recorder,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &GpuTensor,
    mut p: Params,
    t: AttendTuning,
) -> Result<()> {
    p.q_blocks = p.q_len.div_ceil(t.wg);
    let pipeline = rec.ctx.pipeline(
        &SHADER,
        "attend",
        &[
            ("WG", t.wg as f64),
            ("STAGE", if t.stage { 1.0 } else { 0.0 }),
        ],
    )?;
    let workgroups = p.groups * p.heads * p.q_blocks * p.splits;
    let wg = grid(rec.ctx, workgroups);
    rec.dispatch(&pipeline, bytemuck::bytes_of(&p), &[q, k, v, out], wg);
    Ok(())
}

/// Must match `SoftmaxParams` in shaders/attention.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxParams {
    rows: u32,
    len: u32,
    off: u32,
    scale: f32,
}

/// Replaces each of `rows` rows of `len` values of `s` by softmax(scale · row).
fn softmax_rows(
    rec: &mut Recorder,
    s: &GpuTensor,
    rows: usize,
    len: usize,
    scale: f32,
) -> Result<()> {
    let p = SoftmaxParams {
        rows: rows as u32,
        len: len as u32,
        off: s.off(),
        scale,
    };
    let pipeline = rec.ctx.pipeline(&SHADER, "softmax_rows", &[])?;
    let wg = grid(rec.ctx, rows.div_ceil(PROBS_WG) as u32);
    rec.dispatch(&pipeline, bytemuck::bytes_of(&p), &[s], wg);
    Ok(())
}

/// Scratch bytes of one group on the GEMM route: every head's scores and transposed values.
fn gemm_group_bytes(g: &AttnGeometry) -> usize {
    g.heads * (g.q_len * g.kv_len + g.head_dim * g.kv_len) * 4
}

#[allow(clippy::too_many_arguments)]
/// The GEMM route of [`Strategy::Gemm`]: for each chunk of (group, head) pairs, S = Q·Kᵀ, S ←
/// softmax(scale·S) row-wise, Vᵀ, O = S·V. `p` is the validated flash parameter block (its
/// absolute offsets and strides describe the same geometry).
fn attention_gemm(
    rec: &mut Recorder,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &GpuTensor,
    g: &AttnGeometry,
    p: &Params,
    scratch_bytes: usize,
) -> Result<()> {
    let (ql, kl, hd, heads) = (g.q_len, g.kv_len, g.head_dim, g.heads);
    let scores_per_pair = ql * kl;
    let vt_per_pair = hd * kl;
    let bytes_per_group = gemm_group_bytes(g);
    let max_z = rec.ctx.limits.max_compute_workgroups_per_dimension as usize / heads;
    // Whole groups per chunk (the batched product splits a batch index into (group, head)).
    let chunk = (scratch_bytes / bytes_per_group).clamp(1, max_z.max(1));
    let tuning = Tuning::for_adapter(rec.ctx);
    for g0 in (0..g.groups).step_by(chunk) {
        let groups = chunk.min(g.groups - g0);
        let pairs = groups * heads;
        let scores = rec.alloc("attention.scores", &[pairs, ql, kl])?;
        // S[z, i, j] = q_i·k_j with A = K (invocations over keys), B = Q.
        Product {
            a: Rows {
                t: k,
                rows: kl,
                offset: g.k.offset + g0 * g.k.group_stride,
                row_stride: g.k.row_stride,
                outer: g.k.group_stride,
                inner: hd,
            },
            b: Rows {
                t: q,
                rows: ql,
                offset: g.q.offset + g0 * g.q.group_stride,
                row_stride: g.q.row_stride,
                outer: g.q.group_stride,
                inner: hd,
            },
            k: hd,
            batches: pairs,
            batch_inner: heads,
            out: OutLayout {
                t: &scores,
                offset: 0,
                ya: 1,
                yb: kl,
                outer: heads * scores_per_pair,
                inner: scores_per_pair,
            },
            bias: None,
            columns_on_a: false,
            epilogue: Epilogue::None,
        }
        .record(rec, tuning)?;
        softmax_rows(rec, &scores, pairs * ql, kl, g.scale)?;

        let vt = rec.alloc("attention.v_transposed", &[pairs, hd, kl])?;
        let tp = Params {
            groups: groups as u32,
            out_off: vt.off(),
            v_off: p.v_off + (g0 * g.v.group_stride) as u32,
            ..*p
        };
        let quads = pairs * hd * kl.div_ceil(4);
        let pipeline = rec.ctx.pipeline(&SHADER, "transpose_v", &[])?;
        let wg = grid(rec.ctx, quads.div_ceil(64) as u32);
        rec.dispatch(&pipeline, bytemuck::bytes_of(&tp), &[v, &vt], wg);

        // O[z, i, d] = Σ_j P[z, i, j]·Vᵀ[z, d, j] with A = Vᵀ (invocations over head dims).
        Product {
            a: Rows {
                t: &vt,
                rows: hd,
                offset: 0,
                row_stride: kl,
                outer: heads * vt_per_pair,
                inner: vt_per_pair,
            },
            b: Rows {
                t: &scores,
                rows: ql,
                offset: 0,
                row_stride: kl,
                outer: heads * scores_per_pair,
                inner: scores_per_pair,
            },
            k: kl,
            batches: pairs,
            batch_inner: heads,
            out: OutLayout {
                t: out,
                offset: g.out.offset + g0 * g.out.group_stride,
                ya: 1,
                yb: g.out.row_stride,
                outer: g.out.group_stride,
                inner: hd,
            },
            bias: None,
            columns_on_a: false,
            epilogue: Epilogue::None,
        }
        .record(rec, tuning)?;
    }
    Ok(())
}

/// The softmax weights softmax_j(scale·q_i·k_j) of every (group, head, query row), as a new
/// tensor (groups, heads, q_len, kv_len).
pub fn attention_probs(
    rec: &mut Recorder,
    q: &GpuTensor,
    k: &GpuTensor,
    g: &AttnGeometry,
) -> Result<GpuTensor> {
    let p = params(q, k, None, None, g, 1)?;
    let out = rec.alloc("attention_probs", &[g.groups, g.heads, g.q_len, g.kv_len])?;
    let rows = g.groups * g.heads * g.q_len;
    if rows == 0 {
        return Ok(out);
    }
    let p = Params {
        out_off: out.off(),
        ..p
    };
    let pipeline = rec.ctx.pipeline(&SHADER, "probs", &[])?;
    let wg = grid(rec.ctx, rows.div_ceil(PROBS_WG) as u32);
    rec.dispatch(&pipeline, bytemuck::bytes_of(&p), &[q, k, &out], wg);
    Ok(out)
}
