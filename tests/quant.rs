//! The CPU dequantizers against the `gguf` Python package's own dequantizers (tests/fixtures/quant,
//! made by scripts/goldens/quant_fixture.py with gguf==0.19.0): bit-exact, every value. Plus the
//! errors of `dequantize` and a Q8_0 block built by hand.
//!
//! The quantizers: `quantize` against `gguf.quants.quantize` byte for byte (`<TYPE>.quant_in.f32`
//! -> `<TYPE>.quant_out.bin`), and for Q4_K / Q6_K, which the package cannot quantize, against
//! ggml's C reference quantizers (scripts/goldens/kquant_fixture.sh); the round trip quantize ->
//! dequantize within each format's step, and `quantize`'s errors.

use half::f16;
use linvt::gguf::GgmlType;
use linvt::quant::{self, dequantize, quantize};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant");

fn manifest() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/manifest.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["fixtures"].as_array().unwrap().clone()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn every_fixture_dequantizes_bit_exact() {
    let fixtures = manifest();
    let mut seen = Vec::new();
    for fx in &fixtures {
        let name = fx["type"].as_str().unwrap();
        let ty = GgmlType(fx["id"].as_u64().unwrap() as u32);
        assert_eq!(ty.name(), Some(name), "manifest id of {name}");
        let n = fx["n"].as_u64().unwrap() as usize;
        let bytes = std::fs::read(format!("{FIXTURES}/{name}.bin")).unwrap();
        let want = f32s(&std::fs::read(format!("{FIXTURES}/{name}.f32")).unwrap());
        assert_eq!(want.len(), n, "{name}.f32 length");
        let got = dequantize(ty, &bytes, n).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.len(), n);
        let block = ty.block().unwrap().0 as usize;
        if let Some(i) = (0..n).find(|&i| got[i].to_bits() != want[i].to_bits()) {
            panic!(
                "{name}: value {i} (block {}, index {} in it) is {} ({:#010x}), gguf gives {} ({:#010x})",
                i / block,
                i % block,
                got[i],
                got[i].to_bits(),
                want[i],
                want[i].to_bits()
            );
        }
        seen.push(name.to_string());
    }
    // The formats a Q4_K_M / Q8_0 model needs must be covered.
    for must in ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K"] {
        assert!(seen.contains(&must.to_string()), "no fixture for {must}");
    }
}

#[test]
fn fixtures_exercise_special_values() {
    // The goldens are only worth something if they hold zeros, negatives and (for F16) infinities.
    let f16_vals = f32s(&std::fs::read(format!("{FIXTURES}/F16.f32")).unwrap());
    assert!(f16_vals.iter().any(|v| v.is_infinite()));
    for name in ["Q8_0", "Q4_0", "Q4_K", "Q6_K"] {
        let v = f32s(&std::fs::read(format!("{FIXTURES}/{name}.f32")).unwrap());
        assert!(v.contains(&0.0), "{name} has no zero");
        assert!(v.iter().any(|&x| x < 0.0), "{name} has no negative");
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name} has a non-finite value"
        );
    }
}

#[test]
fn q8_0_built_by_hand() {
    // Eight blocks with d = 0.5 (exact in f16) and qs = -128..=127 across them.
    let mut bytes = Vec::new();
    for blk in 0..8 {
        bytes.extend_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for j in 0..32 {
            bytes.push((-128 + blk * 32 + j) as i8 as u8);
        }
    }
    let got = dequantize(GgmlType::Q8_0, &bytes, 256).unwrap();
    for (i, v) in got.iter().enumerate() {
        let want = (i as f32 - 128.0) / 2.0;
        assert_eq!(v.to_bits(), want.to_bits(), "value {i}");
    }
    assert_eq!((got[0], got[128], got[255]), (-64.0, 0.0, 63.5));
    // The per-format function gives the same.
    let mut out = vec![0f32; 256];
    quant::dequantize_q8_0(&bytes, &mut out);
    assert_eq!(out, got);
}

fn err(ty: GgmlType, bytes: &[u8], n: usize) -> String {
    dequantize(ty, bytes, n)
        .expect_err("dequantize must fail")
        .to_string()
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "`{msg}` should contain `{p}`");
    }
}

#[test]
fn wrong_byte_length_is_an_error() {
    let e = err(GgmlType::Q8_0, &[0u8; 33], 32);
    assert_contains(&e, &["Q8_0", "34 bytes", "33 were given"]);
    let e = err(GgmlType::Q4_K, &[0u8; 145], 256);
    assert_contains(&e, &["Q4_K", "144 bytes", "145 were given"]);
    let e = err(GgmlType::F16, &[0u8; 6], 4);
    assert_contains(&e, &["F16", "8 bytes", "6 were given"]);
}

#[test]
fn n_not_a_multiple_of_the_block_is_an_error() {
    let e = err(GgmlType::Q6_K, &[0u8; 210], 200);
    assert_contains(&e, &["200 values of Q6_K", "block of 256"]);
    let e = err(GgmlType::Q4_0, &[0u8; 18], 31);
    assert_contains(&e, &["Q4_0", "block of 32"]);
}

#[test]
fn unsupported_types_are_errors() {
    let e = err(GgmlType::IQ4_NL, &[0u8; 18], 32);
    assert_contains(&e, &["IQ4_NL", "id 20", "not supported", "Q4_K"]);
    let e = err(GgmlType(99), &[], 0);
    assert_contains(&e, &["unknown ggml type 99", "not supported"]);
    assert!(!quant::is_supported(GgmlType::Q8_1));
    assert!(quant::is_supported(GgmlType::Q6_K));
}

#[test]
fn empty_input_is_empty_output() {
    assert!(dequantize(GgmlType::Q4_K, &[], 0).unwrap().is_empty());
}

// ---- quantize ----

fn quantize_manifest() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/manifest.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["quantize"].as_array().unwrap().clone()
}

/// `(type, name, input values, package bytes)` of every quantizer fixture.
fn quantize_fixtures() -> Vec<(GgmlType, String, Vec<f32>, Vec<u8>)> {
    quantize_manifest()
        .iter()
        .map(|fx| {
            let name = fx["type"].as_str().unwrap().to_string();
            let ty = GgmlType(fx["id"].as_u64().unwrap() as u32);
            assert_eq!(ty.name(), Some(name.as_str()), "manifest id of {name}");
            let input = f32s(&std::fs::read(format!("{FIXTURES}/{name}.quant_in.f32")).unwrap());
            assert_eq!(input.len() as u64, fx["n"].as_u64().unwrap(), "{name} n");
            let want = std::fs::read(format!("{FIXTURES}/{name}.quant_out.bin")).unwrap();
            (ty, name, input, want)
        })
        .collect()
}

#[test]
fn quantize_matches_the_package_bytes() {
    let fixtures = quantize_fixtures();
    let names: Vec<&str> = fixtures.iter().map(|f| f.1.as_str()).collect();
    for must in [
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K",
    ] {
        assert!(names.contains(&must), "no quantize fixture for {must}");
    }
    for (ty, name, input, want) in &fixtures {
        let got = quantize(*ty, input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let block_bytes = ty.block().unwrap().1 as usize;
        if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
            panic!(
                "{name}: byte {i} (block {}, byte {} in it) is {:#04x}, the reference gives {:#04x}",
                i / block_bytes,
                i % block_bytes,
                got[i],
                want[i]
            );
        }
        assert_eq!(got.len(), want.len(), "{name}: output length");
    }
}

#[test]
fn quantize_fixtures_hold_ties_and_special_rows() {
    // The ties must really be there: Q8_0 values exactly halfway between two steps of d = 1.
    let q8 = f32s(&std::fs::read(format!("{FIXTURES}/Q8_0.quant_in.f32")).unwrap());
    let tie_row = &q8[7 * 32..8 * 32];
    assert_eq!(tie_row[0], 127.0);
    assert!(tie_row[1..31].iter().all(|v| v.fract().abs() == 0.5));
    let q4 = f32s(&std::fs::read(format!("{FIXTURES}/Q4_0.quant_in.f32")).unwrap());
    assert!(q4[7 * 32 + 1..8 * 32 - 1]
        .iter()
        .all(|v| v.fract().abs() == 0.5));
    // The zero row and the extreme row (which overflows f16 to infinity).
    assert!(q8[2 * 32..3 * 32].iter().all(|&v| v == 0.0));
    let f16_out = std::fs::read(format!("{FIXTURES}/F16.quant_out.bin")).unwrap();
    let f16_back = dequantize(GgmlType::F16, &f16_out, f16_out.len() / 2).unwrap();
    assert!(f16_back.iter().any(|v| v.is_infinite()));
}

#[test]
fn quantize_ties_round_as_the_package_does() {
    // Q8_0, d = 1: round half away from zero (roundf / np_roundf), not half to even.
    let mut x = vec![0f32; 32];
    x[0] = 127.0;
    x[1..5].copy_from_slice(&[0.5, -0.5, 2.5, -2.5]);
    let b = quantize(GgmlType::Q8_0, &x).unwrap();
    assert_eq!(&b[..2], &f16::from_f32(1.0).to_le_bytes());
    let qs: Vec<i8> = b[2..7].iter().map(|&v| v as i8).collect();
    assert_eq!(qs, [127, 1, -1, 3, -3]);
    // Q4_0, max = -8 -> d = 1: trunc(x + 8.5) rounds ties up; +8 lands on 16 and clips to 15.
    let mut x = vec![0f32; 32];
    x[0] = -8.0;
    x[1] = -0.5; // 8.0 -> 8
    x[2] = 0.5; // 9.0 -> 9
    x[16] = 8.0; // 16.5 -> 16 -> 15
    x[17] = -7.5; // 1.0 -> 1
    let b = quantize(GgmlType::Q4_0, &x).unwrap();
    assert_eq!(&b[..2], &f16::from_f32(1.0).to_le_bytes());
    let qs = &b[2..];
    assert_eq!((qs[0] & 0xF, qs[0] >> 4), (0, 15));
    assert_eq!((qs[1] & 0xF, qs[1] >> 4), (8, 1));
    assert_eq!(qs[2] & 0xF, 9);
}

#[test]
fn bf16_nan_is_forced_quiet_as_in_the_package() {
    // A signalling NaN with a payload only in the low 16 bits keeps its top half plus bit 6.
    let snan = f32::from_bits(0x7f80_0001);
    let neg = f32::from_bits(0xff81_2345);
    let b = quantize(GgmlType::BF16, &[snan, neg, 1.0, f32::INFINITY]).unwrap();
    let h: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(h, [0x7fc0, 0xffc1, 0x3f80, 0x7f80]);
    // Round to nearest even at the 16-bit boundary.
    let b = quantize(
        GgmlType::BF16,
        &[f32::from_bits(0x3f80_8000), f32::from_bits(0x3f81_8000)],
    )
    .unwrap();
    assert_eq!(b, [0x80, 0x3f, 0x82, 0x3f]);
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Slack for f32 rounding in x * id, (x - min) * id and q * d + m: a few ulps of the block's
/// magnitude.
fn slack(block: &[f32]) -> f32 {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    amax * 2f32.powi(-20) + f32::MIN_POSITIVE
}

/// The bound on |x - y| for value `j` of a block after quantize -> dequantize, where `b` is the
/// block's bytes. `d` is the f32 scale the quantizer computes, `d16` the f16 one stored:
/// * Q8_0: d = amax / 127; |x - y| <= d/2 + 127 |d - d16|.
/// * Q4_0 / Q5_0 (h = 8 / 16): d = max / -h; |x - y| <= |d|/2 + h |d - d16|, but values with
///   x/d >= h - 1/2 (the side opposite to max) clip to q = 2h - 1: |x - y| <= |d| + h |d - d16|.
/// * Q4_1 / Q5_1 (L = 15 / 31): d = (max - min) / L; |x - y| <= d/2 + L |d - d16| + |min - m16|.
///
/// * Q4_K: per 32 values y = (d*sc) q - dmin*m with 6-bit sc, m and q in 0..=15, and q is
///   requantized against the stored d*sc and dmin*m. Inside the grid that is half a step, at most
///   63 d / 2; the grid's ends move from the sub-block's min and max by the 6-bit rounding of sc
///   (at most 15 d / 2) and the least-squares refit of the fit (a fraction of a step): together
///   below one coarsest step, 63 d. The min adds its own rounding, dmin / 2 plus dmin's f16
///   rounding: below dmin. A sub-block whose sc rounds to 0 (its fitted step under 63 d / 126)
///   dequantizes to -dmin*m: off by at most its range, 15 * 63 d / 126, again below 63 d.
/// * Q6_K: per 16 values y = (d*sc) (q - 32) with i8 sc = nearest(-128 s / max_scale) and q in
///   0..64 requantized against d*sc: half a step inside the grid; the fit may use up to 32.9
///   steps for amax, so a value of the other sign clips by up to 1.9 steps of its sub-block; a
///   small |sc| rounds its step by up to half, shortening the grid by at most 31/2 of its steps,
///   each under 1.5 / 128 of the coarsest: both below two coarsest steps, 2 * 128 |d|.
///
/// The f16 terms are the scale's own rounding (large, relative to d, for the subnormal f16
/// scales of the tiny row; for the K formats, whose quants follow the stored scales, a
/// subnormal or zero d shortens the grid by up to its 2^-25 rounding times the grid's levels);
/// each bound also gets [`slack`].
fn block_bound(name: &str, x: &[f32], b: &[u8], j: usize) -> f32 {
    let tol = slack(x);
    // Whether an f16 scale is subnormal or zero (absolute rounding 2^-25, not relative 2^-11).
    let sub = |d: f32| d.abs() < 2f32.powi(-14);
    match name {
        "Q8_0" => {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            d / 2.0 + 127.0 * (d - f16_at(b, 0)).abs() + tol
        }
        "Q4_0" | "Q5_0" => {
            let h = if name == "Q4_0" { 8.0 } else { 16.0 };
            let max = x
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -h;
            let step = if d != 0.0 && x[j] / d >= h - 0.5 {
                d.abs()
            } else {
                d.abs() / 2.0
            };
            step + h * (d - f16_at(b, 0)).abs() + tol
        }
        "Q4_1" | "Q5_1" => {
            let l = if name == "Q4_1" { 15.0 } else { 31.0 };
            let min = x.iter().copied().fold(f32::INFINITY, f32::min);
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / l;
            d / 2.0 + l * (d - f16_at(b, 0)).abs() + (min - f16_at(b, 2)).abs() + tol
        }
        "Q4_K" => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let mut bound = 63.0 * d + dmin + tol;
            if sub(d) {
                bound += 15.0 * 63.0 * 2f32.powi(-25);
            }
            if sub(dmin) {
                bound += 63.0 * 2f32.powi(-25);
            }
            bound
        }
        "Q6_K" => {
            let d = f16_at(b, 208);
            let mut bound = 2.0 * 128.0 * d.abs() + tol;
            if sub(d) {
                bound += 33.0 * 128.0 * 2f32.powi(-25);
            }
            bound
        }
        _ => unreachable!("{name}"),
    }
}

#[test]
fn quantize_round_trip_is_within_a_step() {
    for (ty, name, input, _) in quantize_fixtures() {
        let bytes = quantize(ty, &input).unwrap();
        let back = dequantize(ty, &bytes, input.len()).unwrap();
        let (block, block_bytes) = ty.block().map(|(v, b)| (v as usize, b as usize)).unwrap();
        for (i, (&x, &y)) in input.iter().zip(&back).enumerate() {
            let bound = match name.as_str() {
                // F32 is exact.
                "F32" => 0.0,
                // F16: half an f16 ulp (2^-11 relative; 2^-25 absolute among subnormals);
                // |x| >= 65520 rounds to infinity of the same sign.
                "F16" if x.abs() >= 65520.0 => {
                    assert_eq!(y, f32::INFINITY.copysign(x), "F16 value {i}: {x} -> {y}");
                    continue;
                }
                "F16" => (x.abs() * 2f32.powi(-11)).max(2f32.powi(-25)),
                // BF16: half a bf16 ulp (2^-8 relative; 2^-134 absolute among subnormals).
                "BF16" => (x.abs() * 2f32.powi(-8)).max(2f32.powi(-134)),
                _ => {
                    let blk = i / block;
                    let xb = &input[blk * block..(blk + 1) * block];
                    let bb = &bytes[blk * block_bytes..(blk + 1) * block_bytes];
                    block_bound(&name, xb, bb, i % block)
                }
            };
            let err = (x - y).abs();
            assert!(
                err <= bound,
                "{name}: value {i} (block {}, index {}): {x} -> {y}, error {err} > bound {bound}",
                i / block,
                i % block
            );
        }
    }
}

fn quantize_err(ty: GgmlType, values: &[f32]) -> String {
    quantize(ty, values)
        .expect_err("quantize must fail")
        .to_string()
}

#[test]
fn quantize_unsupported_types_are_errors() {
    for (ty, name) in [
        (GgmlType::Q5_K, "Q5_K"),
        (GgmlType::Q8_K, "Q8_K"),
        (GgmlType::Q8_1, "Q8_1"),
        (GgmlType::IQ4_NL, "IQ4_NL"),
        (GgmlType::I8, "I8"),
    ] {
        let block = ty.block().unwrap().0 as usize;
        let e = quantize_err(ty, &vec![0.0; block]);
        assert_contains(&e, &[name, "not supported", "Q8_0", "Q4_K, Q6_K"]);
    }
    let e = quantize_err(GgmlType(99), &[]);
    assert_contains(&e, &["unknown ggml type 99", "not supported"]);
}

#[test]
fn quantize_length_not_a_multiple_of_the_block_is_an_error() {
    let e = quantize_err(GgmlType::Q8_0, &[1.0; 31]);
    assert_contains(&e, &["31 values to Q8_0", "block of 32"]);
    let e = quantize_err(GgmlType::Q5_1, &[1.0; 33]);
    assert_contains(&e, &["Q5_1", "block of 32"]);
    // The K formats take super-blocks of 256: a multiple of 32 is not enough.
    let e = quantize_err(GgmlType::Q4_K, &[1.0; 224]);
    assert_contains(&e, &["224 values to Q4_K", "block of 256"]);
    let e = quantize_err(GgmlType::Q6_K, &[1.0; 300]);
    assert_contains(&e, &["300 values to Q6_K", "block of 256"]);
}

#[test]
fn quantize_non_finite_input_to_a_block_format_is_an_error() {
    let mut x = vec![1.0f32; 64];
    x[40] = f32::NAN;
    assert_contains(
        &quantize_err(GgmlType::Q4_0, &x),
        &["Q4_0", "value 40", "NaN"],
    );
    x[40] = f32::NEG_INFINITY;
    assert_contains(
        &quantize_err(GgmlType::Q8_0, &x),
        &["Q8_0", "value 40", "inf"],
    );
    // The K formats too: ggml's `nearest_int` of a NaN has no meaning.
    let mut x = vec![0.5f32; 512];
    x[300] = f32::NAN;
    for (ty, name) in [(GgmlType::Q4_K, "Q4_K"), (GgmlType::Q6_K, "Q6_K")] {
        assert_contains(&quantize_err(ty, &x), &[name, "value 300", "NaN", "finite"]);
    }
    x[300] = f32::INFINITY;
    assert_contains(
        &quantize_err(GgmlType::Q4_K, &x),
        &["Q4_K", "value 300", "inf"],
    );
    let mut x = vec![1.0f32; 64];
    x[40] = f32::NEG_INFINITY;
    // The float formats take them.
    assert_eq!(quantize(GgmlType::F16, &x).unwrap().len(), 128);
    assert_eq!(quantize(GgmlType::F32, &x).unwrap().len(), 256);
}

#[test]
fn quantize_empty_is_empty() {
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        assert!(quantize(ty, &[]).unwrap().is_empty());
    }
}

#[test]
fn k_quant_fixtures_hold_the_special_blocks() {
    // The generator's blocks of 256, in order: normal, extreme, zero, constant, outlier, tiny
    // (1e-30), subnormal scales (1e-6), negative only, positive only, mixed sub-block scales,
    // integers, zero sub-blocks, mixed within a sub-block, negative outlier.
    for (name, block_bytes) in [("Q4_K", 144), ("Q6_K", 210)] {
        let x = f32s(&std::fs::read(format!("{FIXTURES}/{name}.quant_in.f32")).unwrap());
        let q = std::fs::read(format!("{FIXTURES}/{name}.quant_out.bin")).unwrap();
        assert_eq!(x.len(), 14 * 256, "{name}");
        assert_eq!(q.len(), 14 * block_bytes, "{name}");
        let blk = |i: usize| &x[i * 256..(i + 1) * 256];
        assert!(blk(2).iter().all(|&v| v == 0.0), "{name}: zero block");
        assert!(blk(3).iter().all(|&v| v == 1.5), "{name}: constant block");
        assert!(blk(4).contains(&1e5), "{name}: outlier");
        assert!(blk(5).iter().all(|v| v.abs() < 1e-29), "{name}: tiny block");
        assert!(blk(7).iter().all(|&v| v < 0.0), "{name}: negative block");
        // A zero block is zero bytes in both formats.
        assert!(
            q[2 * block_bytes..3 * block_bytes].iter().all(|&b| b == 0),
            "{name}"
        );
    }
    // Q6_K: the 1e-30 block's scales are below ggml's GROUP_MAX_EPS, so it is all zero too; Q4_K
    // keeps the quants of its fit under zero super-block scales.
    let q6 = std::fs::read(format!("{FIXTURES}/Q6_K.quant_out.bin")).unwrap();
    assert!(q6[5 * 210..6 * 210].iter().all(|&b| b == 0));
    let q4 = std::fs::read(format!("{FIXTURES}/Q4_K.quant_out.bin")).unwrap();
    assert_eq!(&q4[5 * 144..5 * 144 + 4], &[0, 0, 0, 0]);
    assert!(q4[5 * 144 + 16..6 * 144].iter().any(|&b| b != 0));
}

/// Seeded blocks of 256 (xorshift; no dependency): each sub-block of 16 values gets its own
/// magnitude and offset, so scales and mins vary across and within super-blocks.
fn seeded_blocks(seed: u64, blocks: usize) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut x = Vec::with_capacity(blocks * 256);
    for _ in 0..blocks * 16 {
        let mag = 10f32.powf(next() * 8.0 - 5.0);
        let off = (next() - 0.5) * 4.0 * mag * (next() < 0.3) as u8 as f32;
        for _ in 0..16 {
            x.push(off + (next() - 0.5) * 2.0 * mag);
        }
    }
    x
}

#[test]
fn k_quant_round_trip_is_within_the_bound_on_seeded_blocks() {
    // The fixtures are few; the bounds of `block_bound` must hold for any block.
    for (ty, name) in [(GgmlType::Q4_K, "Q4_K"), (GgmlType::Q6_K, "Q6_K")] {
        let x = seeded_blocks(0x9e37_79b9_7f4a_7c15 ^ ty.0 as u64, 400);
        let bytes = quantize(ty, &x).unwrap();
        let back = dequantize(ty, &bytes, x.len()).unwrap();
        let block_bytes = ty.block().unwrap().1 as usize;
        for (i, (&v, &y)) in x.iter().zip(&back).enumerate() {
            let blk = i / 256;
            let bb = &bytes[blk * block_bytes..(blk + 1) * block_bytes];
            let bound = block_bound(name, &x[blk * 256..(blk + 1) * 256], bb, i % 256);
            assert!(
                (v - y).abs() <= bound,
                "{name}: value {i} (block {blk}): {v} -> {y} > bound {bound}"
            );
        }
    }
}
