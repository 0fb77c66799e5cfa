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

/// `blocks` random blocks of `ty` (Q8_0, Q4_0, Q5_0, Q4_K or Q6_K) for tests and benchmarks:
/// random quant bytes — every value, nibble, high bit and 6-bit scale/min pattern occurs, not
/// only those a quantizer produces — and f16 scales that keep every value within [-1, 1]
/// (signs alternating), so products are comparable with one tolerance.
pub fn random_blocks(ty: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
    let (_, block_bytes) = ty.block().expect("a block type");
    let mut rng = crate::rand::SeededRng::new(seed);
    let mut out: Vec<u8> = (0..blocks * block_bytes as usize)
        .map(|_| rng.next_u64() as u8)
        .collect();
    let f16 = |v: f32| f16::from_f32(v).to_le_bytes();
    for (i, b) in out.chunks_exact_mut(block_bytes as usize).enumerate() {
        // A scale in ±[0.5, 1] of the largest that keeps |value| ≤ 1.
        let u = 0.5 + 0.5 * (rng.next_u64() % 1000) as f32 / 1000.0;
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        match ty {
            GgmlType::Q8_0 => b[..2].copy_from_slice(&f16(sign * u / 128.0)),
            GgmlType::Q4_0 => b[..2].copy_from_slice(&f16(sign * u / 8.0)),
            GgmlType::Q5_0 => b[..2].copy_from_slice(&f16(sign * u / 16.0)),
            GgmlType::Q4_K => {
                // d·sc·q ≤ d·63·15 and dmin·m ≤ dmin·63.
                b[..2].copy_from_slice(&f16(u / (63.0 * 15.0)));
                b[2..4].copy_from_slice(&f16(u / 63.0));
            }
            GgmlType::Q6_K => b[208..210].copy_from_slice(&f16(sign * u / (128.0 * 32.0))),
            _ => panic!("random_blocks: no scale rule for {ty}"),
        }
    }
    out
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

/// The first block of `bytes` (ggml blocks of `ty`) whose scales are not finite, if any: the
/// quants are integers, so a block's values are all finite exactly when its f16 (or f32)
/// scales are. Checks a whole weight without widening it. Types without a known scale layout
/// (and the float types, whose values are checked as values) give None.
pub fn first_non_finite_block(ty: GgmlType, bytes: &[u8]) -> Option<usize> {
    // (bytes per block, offsets of f16 scales); Q8_K's scale is an f32.
    let (block, scales): (usize, &[usize]) = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => (ty.block()?.1 as usize, &[0]),
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
            (ty.block()?.1 as usize, &[0, 2])
        }
        GgmlType::Q6_K => (210, &[208]),
        GgmlType::Q8_K => {
            return bytes
                .chunks_exact(292)
                .position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite())
        }
        _ => return None,
    };
    bytes
        .chunks_exact(block)
        .position(|b| scales.iter().any(|&o| !f16_at(b, o).is_finite()))
}

/// The types [`quantize`] accepts, for error messages.
const QUANTIZE_SUPPORTED: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K";

/// `values` in type `ty`, as ggml block bytes. F32, F16, BF16 and the 32-value formats give the
/// bytes `gguf.quants.quantize(np.float32 array, ty)` writes (gguf==0.19.0); they follow ggml's
/// `quantize_row_*_ref` and where the package and ggml's C differ we follow the package (the
/// places are commented). The package cannot quantize the K formats, so Q4_K and Q6_K follow
/// ggml's C reference `quantize_row_q4_K_ref` / `quantize_row_q6_K_ref` itself. tests/quant.rs
/// checks both byte for byte. All of it runs in f32, one operation at a time, in the reference's
/// order (no fused multiply-add: numpy never fuses, a C compiler contracting `x*id + 8.5f` may;
/// the K-quant goldens are built with contraction off).
///
/// Errors (naming the type) for a type other than F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
/// Q4_K, Q6_K, for a length that is not a whole number of blocks (256 values for the K formats),
/// and for a NaN or infinity in a block format (both ggml and the package then cast NaN to an
/// integer, which has no defined result).
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
        // Quantizing to K formats at load is a native feature (`--gpu-weights q4_k`); the browser
        // bundle, with its 1 MiB budget, leaves the search out.
        #[cfg(not(target_arch = "wasm32"))]
        GgmlType::Q4_K => (QK_K, quantize_q4_k),
        #[cfg(not(target_arch = "wasm32"))]
        GgmlType::Q6_K => (QK_K, quantize_q6_k),
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

// ---- K-quants: ggml's C reference (`quantize_row_q4_K_ref`, `quantize_row_q6_K_ref`) ----
//
// These search for scales by comparing float sums, so a last-bit difference in any sum can flip a
// choice and change whole bytes. Every expression below is evaluated as C evaluates the reference
// (left to right, `a*b*c` as `(a*b)*c`, int operands converted to f32 first) and never fused.

/// Below this a group counts as all zero (ggml's `GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: adding 1.5 * 2^23 leaves the rounded value in the low 23 mantissa bits,
/// and the f32 addition rounds to nearest with ties to even (not `f32::round`, whose ties go away
/// from zero). ggml asserts |x| <= 2^22 - 1; past that we return the same bits its release build
/// would rather than panic.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
#[inline]
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// `v` as the stored f16 and the f32 it reads back as: the K-quants requantize against the
/// stored (rounded) super-block scales, not the exact ones.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
#[inline]
fn f16_round_trip(v: f32) -> (f16, f32) {
    let h = f16::from_f32(v);
    (h, h.to_f32())
}

/// ggml's `make_qkx2_quants` with `use_mad = false`: an affine fit x ~ scale * q - min of one
/// group, q in 0..=nmax, min >= 0, minimising the weighted squared error. Starts from the min/max
/// grid, then tries `nstep + 1` widened grids and keeps the least-squares (scale, min) of the best
/// one. Writes q to `l` and returns `(scale, min)`.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let nmax_f = nmax as f32;
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        // (scale * q + min) - x, as C groups it.
        let diff = scale * q as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    let laux = &mut laux[..n];
    for is in 0..=nstep {
        // (rmin + rdelta * is) + nmax: is and nmax become f32 first.
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let w = weights[i];
            let qf = q as f32;
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights (weights x^2): a
/// symmetric fit x ~ scale * (q - nmax), q in 0..2*nmax, trying 19 grids around -nmax / max (max
/// the first value of largest magnitude). Writes q to `l` and returns the scale (0 for a group
/// below [`GROUP_MAX_EPS`]).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn make_qx_quants(x: &[f32], l: &mut [u8], nmax: i32) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // sum w*x*q and sum w*q*q with w = x*x, as `(w*x)*q` and `(w*q)*q`.
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let q = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let fill = |l: &mut [u8], iscale: f32| {
        for (l, &v) in l.iter_mut().zip(x) {
            *l = (quant(iscale, v) + nmax) as u8;
        }
    };
    // -nmax is negated as an int, then converted.
    let iscale = (-nmax) as f32 / max;
    fill(l, iscale);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        // -(nmax + 0.1f*is) / max.
        let iscale = -(nmax_f + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(l, iscale);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q4_K (`quantize_row_q4_K_ref`): per 32-value sub-block an affine fit (weights |x| + rms of the
/// sub-block), the 8 scales and 8 mins quantized to 6 bits against the largest of each (d = max
/// scale / 63, dmin = max min / 63, stored as f16), then every value requantized against the
/// stored scale and min: q = nearest_int((x + dmin*m) / (d*sc)) clipped to 0..=15. A sub-block
/// whose d*sc is 0 keeps the q of its fit, as ggml does.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn quantize_q4_k(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK_K) {
        let mut l = [0u8; QK_K];
        let mut weights = [0f32; 32];
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        let mut max_scale = 0f32;
        let mut max_min = 0f32;
        for j in 0..8 {
            let xs = &b[32 * j..32 * j + 32];
            let sum_x2 = xs.iter().fold(0f32, |s, &v| s + v * v);
            let av_x = (sum_x2 / 32.0).sqrt();
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = av_x + v.abs();
            }
            let (scale, min) =
                make_qkx2_quants(xs, &weights, &mut l[32 * j..32 * j + 32], 15, -1.0, 0.1, 20);
            scales[j] = scale;
            mins[j] = min;
            if scale > max_scale {
                max_scale = scale;
            }
            if min > max_min {
                max_min = min;
            }
        }
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let mut packed = [0u8; 12];
        for j in 0..8 {
            // ggml stores nearest_int's int into a uint8_t before MIN(63): `as u8` wraps alike.
            let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
            let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
            if j < 4 {
                packed[j] = ls;
                packed[j + 4] = lm;
            } else {
                packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
                packed[j - 4] |= (ls >> 4) << 6;
                packed[j] |= (lm >> 4) << 6;
            }
        }
        let (d16, d) = f16_round_trip(max_scale / 63.0);
        let (dmin16, dmin) = f16_round_trip(max_min / 63.0);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &packed);
            let dj = d * sc as f32;
            if dj == 0.0 {
                continue;
            }
            let dm = dmin * m as f32;
            for (q, &v) in l[32 * j..32 * j + 32].iter_mut().zip(&b[32 * j..]) {
                // Divides by d*sc (not a multiply by its inverse), as ggml does.
                *q = nearest_int((v + dm) / dj).clamp(0, 15) as u8;
            }
        }
        out.extend_from_slice(&d16.to_le_bytes());
        out.extend_from_slice(&dmin16.to_le_bytes());
        out.extend_from_slice(&packed);
        for g in l.chunks_exact(64) {
            for i in 0..32 {
                out.push(g[i] | (g[i + 32] << 4));
            }
        }
    }
}

/// Q6_K (`quantize_row_q6_K_ref`): per 16-value sub-block a symmetric fit (q in -32..32), the 16
/// scales quantized to i8 against the one of largest magnitude (d = -max_scale / 128, stored as
/// f16), then every value requantized: q = nearest_int(x / (d*sc)) clipped to -32..=31. A block
/// whose scales are all below [`GROUP_MAX_EPS`] is all zero bytes; a sub-block whose d*sc is 0
/// keeps the q of its fit.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn quantize_q6_k(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK_K) {
        let mut l = [0u8; QK_K];
        let mut scales = [0f32; 16];
        let mut max_scale = 0f32;
        let mut max_abs_scale = 0f32;
        for (ib, s) in scales.iter_mut().enumerate() {
            *s = make_qx_quants(&b[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16], 32);
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = *s;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            out.extend_from_slice(&[0u8; 210]);
            continue;
        }
        let iscale = -128.0 / max_scale;
        let (d16, d) = f16_round_trip(1.0 / iscale);
        let mut sc = [0i8; 16];
        for (sc, &s) in sc.iter_mut().zip(&scales) {
            // MIN(127, ...) into an int8_t: the value is never below -128 for finite scales.
            *sc = nearest_int(iscale * s).min(127) as i8;
        }
        for (j, &s) in sc.iter().enumerate() {
            let dj = d * s as f32;
            if dj == 0.0 {
                continue;
            }
            for (q, &v) in l[16 * j..16 * j + 16].iter_mut().zip(&b[16 * j..]) {
                *q = (nearest_int(v / dj).clamp(-32, 31) + 32) as u8;
            }
        }
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for h in 0..2 {
            let l = &l[128 * h..128 * h + 128];
            let (ql, qh) = (&mut ql[64 * h..64 * h + 64], &mut qh[32 * h..32 * h + 32]);
            for i in 0..32 {
                let (q1, q2, q3, q4) = (l[i], l[i + 32], l[i + 64], l[i + 96]);
                ql[i] = (q1 & 0xF) | ((q3 & 0xF) << 4);
                ql[i + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
                qh[i] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
        out.extend_from_slice(&ql);
        out.extend_from_slice(&qh);
        out.extend(sc.iter().map(|&s| s as u8));
        out.extend_from_slice(&d16.to_le_bytes());
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
    fn quant_nearest_int_rounds_ties_to_even() {
        // Not `f32::round` (ties away from zero): ggml's magic-number addition rounds to even.
        let cases = [
            (2.5, 2),
            (3.5, 4),
            (-2.5, -2),
            (-3.5, -4),
            (0.5, 0),
            (-0.5, 0),
        ];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
        assert_eq!(nearest_int(0.499_999_97), 0);
        assert_eq!(nearest_int(-7.6), -8);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
        assert_eq!(nearest_int(-4_194_303.0), -4_194_303);
    }

    #[test]
    fn quant_k_formats_of_a_constant_block() {
        // Q4_K of 256 x 1.5: min clips to 0, one step of 0.1 (q = 15); every scale is the
        // largest, so sc = 63 and d = 0.1 / 63 in f16; dequantizes back to ~1.5.
        let b = quantize(GgmlType::Q4_K, &[1.5; QK_K]).unwrap();
        assert_eq!(b.len(), 144);
        assert_eq!(&b[2..4], &[0, 0], "dmin");
        assert!(b[16..].iter().all(|&q| q == 0xFF));
        let y = dequantize(GgmlType::Q4_K, &b, QK_K).unwrap();
        assert!(y.iter().all(|&v| (v - 1.5).abs() < 1e-3), "{}", y[0]);
        // Q6_K of -2.0s: max = -2 gives q - 32 = -32 at d*sc = 1/16 (exact in f16).
        let b = quantize(GgmlType::Q6_K, &[-2.0; QK_K]).unwrap();
        let y = dequantize(GgmlType::Q6_K, &b, QK_K).unwrap();
        assert!(y.iter().all(|&v| v == -2.0), "{}", y[0]);
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
