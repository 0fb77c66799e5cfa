//! The CPU dequantizers against the `gguf` Python package's own dequantizers (tests/fixtures/quant,
//! made by scripts/goldens/quant_fixture.py with gguf==0.19.0): bit-exact, every value. Plus the
//! errors of `dequantize` and a Q8_0 block built by hand.

use half::f16;
use linvt::gguf::GgmlType;
use linvt::quant::{self, dequantize};

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
