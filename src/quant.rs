//! CPU dequantizers of ggml's block formats: the reference ("CPU twin") that GPU kernels are
//! tested against. Each `dequantize_*` follows ggml's `dequantize_row_*` (ggml-quants.c)
//! operation for operation, in the same order and in f32, so results are bit-exact with ggml and
//! with the `gguf` Python package (tests/quant.rs checks `to_bits()` against gguf==0.19.0).
//!
//! Block sizes and bytes per block come from [`GgmlType::block`] (the table in `gguf.rs`); all
//! multi-byte fields are little-endian, f16 scales are IEEE half.

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// Values per K-quant super-block (`QK_K`).
pub const QK_K: usize = 256;

/// The types [`dequantize`] accepts, for error messages.
const SUPPORTED: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K";

type RowFn = fn(&[u8], &mut [f32]);

fn row_fn(ty: GgmlType) -> Option<RowFn> {
    Some(match ty {
        GgmlType::F32 => dequantize_f32,
        GgmlType::F16 => dequantize_f16,
        GgmlType::BF16 => dequantize_bf16,
        GgmlType::Q4_0 => dequantize_q4_0,
        GgmlType::Q4_1 => dequantize_q4_1,
        GgmlType::Q5_0 => dequantize_q5_0,
        GgmlType::Q5_1 => dequantize_q5_1,
        GgmlType::Q8_0 => dequantize_q8_0,
        GgmlType::Q4_K => dequantize_q4_k,
        GgmlType::Q5_K => dequantize_q5_k,
        GgmlType::Q6_K => dequantize_q6_k,
        GgmlType::Q8_K => dequantize_q8_k,
        _ => return None,
    })
}

/// Whether [`dequantize`] handles `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    row_fn(ty).is_some()
}

/// `n` values of type `ty` stored in `bytes`, as f32. Errors (naming the type) when the type is
/// not supported, when `n` is not a whole number of blocks, or when `bytes` is not exactly the
/// size `n` values take.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let row = row_fn(ty).ok_or_else(|| {
        Error::input(format!(
            "cannot dequantize ggml type {ty} (id {}): not supported; supported are {SUPPORTED}",
            ty.0
        ))
    })?;
    // Every supported type is in gguf.rs's table.
    let (block, block_bytes) = ty
        .block()
        .map(|(v, b)| (v as usize, b as usize))
        .ok_or_else(|| Error::input(format!("ggml type {ty} has no block size")))?;
    if !n.is_multiple_of(block) {
        return Err(Error::input(format!(
            "cannot dequantize {n} values of {ty}: not a multiple of its block of {block} values"
        )));
    }
    let need = (n / block)
        .checked_mul(block_bytes)
        .ok_or_else(|| Error::input(format!("{n} values of {ty} overflow the addressable size")))?;
    if bytes.len() != need {
        return Err(Error::input(format!(
            "{n} values of {ty} take {need} bytes ({} blocks of {block_bytes}), but {} were given",
            n / block,
            bytes.len()
        )));
    }
    let mut out = vec![0f32; n];
    row(bytes, &mut out);
    Ok(out)
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Checks the slices describe the same number of blocks; the per-format functions are called with
/// sizes [`dequantize`] has already checked, so a mismatch is a caller bug.
fn check(blocks: &[u8], out: &[f32], block_bytes: usize, block: usize) {
    assert!(
        blocks.len().is_multiple_of(block_bytes) && blocks.len() / block_bytes * block == out.len(),
        "{} bytes of {block_bytes}-byte blocks do not hold {} values",
        blocks.len(),
        out.len()
    );
}

/// F32: 4 bytes a value.
pub fn dequantize_f32(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 4, 1);
    for (b, y) in blocks.chunks_exact(4).zip(out) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// F16: 2 bytes a value (IEEE half).
pub fn dequantize_f16(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 2, 1);
    for (b, y) in blocks.chunks_exact(2).zip(out) {
        *y = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

/// BF16: 2 bytes a value (the top half of an f32).
pub fn dequantize_bf16(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 2, 1);
    for (b, y) in blocks.chunks_exact(2).zip(out) {
        *y = bf16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

/// Q4_0, 18 bytes / 32 values: `d: f16`, `qs[16]`: value j is the low nibble of `qs[j]`, value
/// j + 16 the high nibble; y = (q - 8) * d.
pub fn dequantize_q4_0(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 18, 32);
    for (b, y) in blocks.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) as i32 - 8;
            let x1 = (qs[j] >> 4) as i32 - 8;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

/// Q4_1, 20 bytes / 32 values: `d: f16`, `m: f16`, `qs[16]` (nibbles as Q4_0); y = q * d + m.
pub fn dequantize_q4_1(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 20, 32);
    for (b, y) in blocks.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qs = &b[4..20];
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) as i32;
            let x1 = (qs[j] >> 4) as i32;
            y[j] = x0 as f32 * d + m;
            y[j + 16] = x1 as f32 * d + m;
        }
    }
}

/// The fifth bits of values j and j + 16 from Q5's `qh` (a u32, bit j for value j), placed at 0x10.
#[inline]
fn q5_high(qh: u32, j: usize) -> (u8, u8) {
    let h0 = (((qh >> j) << 4) & 0x10) as u8;
    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
    (h0, h1)
}

/// Q5_0, 22 bytes / 32 values: `d: f16`, `qh: u32` (bit j = fifth bit of value j), `qs[16]`
/// (low nibbles as Q4_0); y = (q - 16) * d.
pub fn dequantize_q5_0(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 22, 32);
    for (b, y) in blocks.chunks_exact(22).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        for j in 0..16 {
            let (h0, h1) = q5_high(qh, j);
            let x0 = ((qs[j] & 0x0F) | h0) as i32 - 16;
            let x1 = ((qs[j] >> 4) | h1) as i32 - 16;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

/// Q5_1, 24 bytes / 32 values: `d: f16`, `m: f16`, `qh: u32`, `qs[16]` (as Q5_0); y = q * d + m.
pub fn dequantize_q5_1(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 24, 32);
    for (b, y) in blocks.chunks_exact(24).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let qs = &b[8..24];
        for j in 0..16 {
            let (h0, h1) = q5_high(qh, j);
            let x0 = ((qs[j] & 0x0F) | h0) as i32;
            let x1 = ((qs[j] >> 4) | h1) as i32;
            y[j] = x0 as f32 * d + m;
            y[j + 16] = x1 as f32 * d + m;
        }
    }
}

/// Q8_0, 34 bytes / 32 values: `d: f16`, `qs[32]: i8`; y = q * d.
pub fn dequantize_q8_0(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 34, 32);
    for (b, y) in blocks.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[2..34]) {
            *y = q as i8 as f32 * d;
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K/Q5_K
/// (`get_scale_min_k4`): sub-blocks 0..4 sit in the low 6 bits of bytes j and j + 4; 4..8 take a
/// nibble of byte j + 4 and the top 2 bits of bytes j - 4 and j.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K, 144 bytes / 256 values: `d: f16`, `dmin: f16`, `scales[12]` (8 six-bit scale/min pairs,
/// see [`scale_min_k4`]), `qs[128]`: each 32 bytes hold 64 values, low nibbles first.
/// y = (d * sc) * q - (dmin * m), in that order, as ggml computes it.
pub fn dequantize_q4_k(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 144, QK_K);
    for (b, y) in blocks.chunks_exact(144).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 0);
        let min = f16_at(b, 2);
        let scales = &b[4..16];
        let qs = &b[16..144];
        for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc, m) = scale_min_k4(2 * g, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = scale_min_k4(2 * g + 1, scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// Q5_K, 176 bytes / 256 values: `d: f16`, `dmin: f16`, `scales[12]` (as Q4_K), `qh[32]` (bit
/// 2g / 2g + 1 of `qh[l]` is the fifth bit of value l / l + 32 of group g), `qs[128]` (as Q4_K).
/// y = (d * sc) * q - (dmin * m).
pub fn dequantize_q5_k(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 176, QK_K);
    for (b, y) in blocks.chunks_exact(176).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 0);
        let min = f16_at(b, 2);
        let scales = &b[4..16];
        let qh = &b[16..48];
        let ql = &b[48..176];
        for (g, (q, y)) in ql.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc, m) = scale_min_k4(2 * g, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = scale_min_k4(2 * g + 1, scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
                y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// Q6_K, 210 bytes / 256 values: `ql[128]` (low 4 bits), `qh[64]` (high 2 bits), `scales[16]: i8`
/// (one per 16 values), `d: f16` last. Each half of 128 values uses 64 bytes of `ql`, 32 of `qh`
/// and 8 scales; y = (d * sc) * (q - 32).
pub fn dequantize_q6_k(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 210, QK_K);
    for (b, y) in blocks.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 208);
        for h in 0..2 {
            let ql = &b[64 * h..64 * h + 64];
            let qh = &b[128 + 32 * h..128 + 32 * h + 32];
            let sc = &b[192 + 8 * h..192 + 8 * h + 8];
            let y = &mut y[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                // The scales are signed bytes.
                y[l] = d * sc[is] as i8 as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
            }
        }
    }
}

/// Q8_K, 292 bytes / 256 values: `d: f32`, `qs[256]: i8`, `bsums[16]: i16` (group sums, used only
/// by dot products); y = d * q.
pub fn dequantize_q8_k(blocks: &[u8], out: &mut [f32]) {
    check(blocks, out, 292, QK_K);
    for (b, y) in blocks.chunks_exact(292).zip(out.chunks_exact_mut(QK_K)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (y, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
            *y = d * q as i8 as f32;
        }
    }
}

/// The types [`quantize`] accepts, for error messages.
const QUANTIZE_SUPPORTED: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0";

/// `values` in type `ty`, as the block bytes `gguf.quants.quantize(np.float32 array, ty)` writes
/// (gguf==0.19.0; tests/quant.rs checks them byte for byte). The block formats follow ggml's
/// `quantize_row_*_ref`, in f32, one operation at a time (no fused multiply-add: numpy never
/// fuses, a C compiler contracting `x*id + 8.5f` may). Where the package and ggml's C differ we
/// follow the package; the places are commented.
///
/// Errors (naming the type) for a type other than F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
/// for a length that is not a whole number of blocks, and for a NaN or infinity in a block format
/// (both ggml and the package then cast NaN to an integer, which has no defined result).
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    type QuantFn = fn(&[f32], &mut Vec<u8>);
    let (block, f): (usize, QuantFn) = match ty {
        GgmlType::F32 => (1, quantize_f32),
        GgmlType::F16 => (1, quantize_f16),
        GgmlType::BF16 => (1, quantize_bf16),
        GgmlType::Q4_0 => (32, quantize_q4_0),
        GgmlType::Q4_1 => (32, quantize_q4_1),
        GgmlType::Q5_0 => (32, quantize_q5_0),
        GgmlType::Q5_1 => (32, quantize_q5_1),
        GgmlType::Q8_0 => (32, quantize_q8_0),
        _ => {
            return Err(Error::input(format!(
                "cannot quantize to ggml type {ty} (id {}): not supported; supported are \
                 {QUANTIZE_SUPPORTED}",
                ty.0
            )))
        }
    };
    let n = values.len();
    if !n.is_multiple_of(block) {
        return Err(Error::input(format!(
            "cannot quantize {n} values to {ty}: not a multiple of its block of {block} values"
        )));
    }
    if block > 1 {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::input(format!(
                "cannot quantize to {ty}: value {i} is {} (block formats need finite values)",
                values[i]
            )));
        }
    }
    // The table in gguf.rs has every type above.
    let block_bytes = ty.block().map_or(0, |(_, b)| b as usize);
    let mut out = Vec::with_capacity(n / block * block_bytes);
    f(values, &mut out);
    debug_assert_eq!(out.len(), n / block * block_bytes);
    Ok(out)
}

/// f32 -> f16, round to nearest even, overflow to infinity: numpy's `astype(np.float16)` (which
/// the package uses) and ggml's `GGML_FP32_TO_FP16` (F16C or its software twin) agree on finite
/// values; `half` converts the same way.
#[inline]
fn push_f16(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
}

fn quantize_f32(x: &[f32], out: &mut Vec<u8>) {
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn quantize_f16(x: &[f32], out: &mut Vec<u8>) {
    for &v in x {
        push_f16(out, v);
    }
}

/// The package's BF16 (= ggml's `ggml_compute_fp32_to_bf16`): a NaN keeps its top 16 bits and is
/// forced quiet (bit 6 of the bf16); everything else rounds to nearest even, overflowing to
/// infinity. Not `half::bf16::from_f32`, whose NaN payload handling is its own.
fn quantize_bf16(x: &[f32], out: &mut Vec<u8>) {
    for v in x {
        let n = v.to_bits();
        let h = if n & 0x7fff_ffff > 0x7f80_0000 {
            (n >> 16) | 64
        } else {
            // u64 as in the package; the sum never passes u32 for these bits anyway.
            ((n as u64 + 0x7fff + ((n as u64 >> 16) & 1)) >> 16) as u32
        };
        out.extend_from_slice(&(h as u16).to_le_bytes());
    }
}

/// The first value of largest magnitude, as numpy's `abs(blocks).argmax()` picks it (index 0 for
/// an all-zero block). ggml's loop starts from `max = 0.0f` instead, so for a block of only -0.0
/// ggml keeps +0.0 where the package takes -0.0; the scale's sign bit then differs. We follow the
/// package.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if v.abs() > x[best].abs() {
            best = i;
        }
    }
    x[best]
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// `1/d`, or 0 for d == 0 (the package's `np.where(d == 0, 0, 1 / d)`, ggml's `d ? 1.0f/d : 0.0f`).
#[inline]
fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// Packs 32 quants of up to 5 bits as ggml does: value j's low nibble in `qs[j]`, value j + 16's
/// in the high nibble; the fifth bits into `qh`, bit j for value j (little-endian u32).
fn pack_nibbles(q: &[u8; 32], out: &mut Vec<u8>, five_bits: bool) {
    if five_bits {
        let qh = q
            .iter()
            .enumerate()
            .fold(0u32, |h, (j, &v)| h | (((v >> 4) as u32 & 1) << j));
        out.extend_from_slice(&qh.to_le_bytes());
    }
    for j in 0..16 {
        out.push((q[j] & 0x0F) | (q[j + 16] << 4));
    }
}

/// Q4_0 and Q5_0: d = max / -half (max the signed value of largest magnitude), q = trunc(x/d +
/// half + 0.5) clipped to 2*half - 1. The + 0.5 then truncation rounds ties up (toward +inf), in
/// both numpy and ggml; the value -max lands on 2*half and clips to one step short.
fn quantize_sym(x: &[f32], out: &mut Vec<u8>, half: f32, five_bits: bool) {
    let top = (2.0 * half - 1.0) as u8;
    for b in x.chunks_exact(32) {
        let d = signed_absmax(b) / -half;
        let id = inverse(d);
        let mut q = [0u8; 32];
        for (q, &v) in q.iter_mut().zip(b) {
            // Never below 0 for finite input (v*id >= -half up to rounding); `as u8` saturates.
            *q = ((v * id + (half + 0.5)).trunc() as u8).min(top);
        }
        push_f16(out, d);
        pack_nibbles(&q, out, five_bits);
    }
}

/// Q4_1 and Q5_1: d = (max - min) / levels, m = min, q = trunc((x - min)/d + 0.5) clipped.
fn quantize_affine(x: &[f32], out: &mut Vec<u8>, levels: f32, five_bits: bool) {
    for b in x.chunks_exact(32) {
        let (min, max) = min_max(b);
        let d = (max - min) / levels;
        let id = inverse(d);
        let mut q = [0u8; 32];
        for (q, &v) in q.iter_mut().zip(b) {
            *q = (((v - min) * id + 0.5).trunc() as u8).min(levels as u8);
        }
        push_f16(out, d);
        push_f16(out, min);
        pack_nibbles(&q, out, five_bits);
    }
}

fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    quantize_sym(x, out, 8.0, false);
}

fn quantize_q5_0(x: &[f32], out: &mut Vec<u8>) {
    quantize_sym(x, out, 16.0, true);
}

fn quantize_q4_1(x: &[f32], out: &mut Vec<u8>) {
    quantize_affine(x, out, 15.0, false);
}

fn quantize_q5_1(x: &[f32], out: &mut Vec<u8>) {
    quantize_affine(x, out, 31.0, true);
}

/// Q8_0: d = amax / 127, q = round(x / d) with ties away from zero. The package's `np_roundf`
/// (floor-based, not numpy's ties-to-even `np.round`) equals C's `roundf`, which `f32::round` is.
fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(32) {
        let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = inverse(d);
        push_f16(out, d);
        for &v in b {
            out.push((v * id).round() as i8 as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_scale_min_k4_unpacks_high_bits() {
        let mut q = [0u8; 12];
        q[0] = 0b11_000101; // scale 0 = 5, top bits 3 -> scale 4's high bits
        q[4] = 0b10_000111; // min 0 = 7, top bits 2 -> min 4's high bits
        q[8] = 0x9A; // scale 4 low nibble 0xA, min 4 low nibble 0x9
        assert_eq!(scale_min_k4(0, &q), (5, 7));
        assert_eq!(scale_min_k4(4, &q), (0x3A, 0x29));
    }

    #[test]
    fn quant_q4_0_nibble_order() {
        let mut b = vec![0u8; 18];
        b[..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        b[2] = 0xF0; // value 0: 0 - 8, value 16: 15 - 8
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!(y[0], -16.0);
        assert_eq!(y[16], 14.0);
        assert_eq!(y[1], -16.0);
    }

    #[test]
    fn quant_q8_k_by_hand() {
        let mut b = vec![0u8; 292];
        b[..4].copy_from_slice(&0.25f32.to_le_bytes());
        for j in 0..QK_K {
            b[4 + j] = (j as i32 - 128) as i8 as u8;
        }
        let y = dequantize(GgmlType::Q8_K, &b, QK_K).unwrap();
        for (j, v) in y.iter().enumerate() {
            assert_eq!(*v, (j as f32 - 128.0) * 0.25);
        }
    }

    #[test]
    fn quant_zero_block_scale_sign_follows_the_package() {
        // gguf 0.19 gives d bytes 00 80 (-0.0) for +0.0s and 00 00 for -0.0s: max / -8 with the
        // first value of largest magnitude (ggml's C would give -0.0 for both).
        let b = quantize(GgmlType::Q4_0, &[0.0; 32]).unwrap();
        assert_eq!((b[0], b[1], b[2]), (0x00, 0x80, 0x88));
        let b = quantize(GgmlType::Q4_0, &[-0.0; 32]).unwrap();
        assert_eq!((b[0], b[1], b[2]), (0x00, 0x00, 0x88));
        assert_eq!(signed_absmax(&[1.0, -3.0, 3.0, 2.0]), -3.0);
    }

    #[test]
    fn quant_supported_types_are_in_the_gguf_table() {
        for id in 0..64 {
            let ty = GgmlType(id);
            if is_supported(ty) {
                assert!(ty.block().is_some(), "{ty}");
            }
        }
    }
}
