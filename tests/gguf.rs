//! The GGUF reader against files written by the reference `gguf` Python package
//! (tests/fixtures/gguf, made by scripts/goldens/gguf_fixture.py), and against hostile files:
//! each must give an error that names what is wrong, never a panic.

use linvt::gguf::{self, GgmlType, Gguf, Value, ValueType};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gguf");

fn fixture(stem: &str) -> (Vec<u8>, serde_json::Value) {
    let bytes = std::fs::read(format!("{FIXTURES}/{stem}.gguf")).unwrap();
    let json = std::fs::read_to_string(format!("{FIXTURES}/{stem}.json")).unwrap();
    (bytes, serde_json::from_str(&json).unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The error message of a parse that must fail.
fn parse_err(bytes: &[u8]) -> String {
    let e = gguf::parse(bytes).expect_err("parse must fail").to_string();
    assert!(e.contains("GGUF file: "), "{e}");
    e
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "`{msg}` should contain `{p}`");
    }
}

/// Compares one metadata value with its JSON record, exactly (floats included).
fn check_value(key: &str, v: &Value, j: &serde_json::Value) {
    let ok = match v {
        Value::U8(x) => j.as_u64() == Some(u64::from(*x)),
        Value::U16(x) => j.as_u64() == Some(u64::from(*x)),
        Value::U32(x) => j.as_u64() == Some(u64::from(*x)),
        Value::U64(x) => j.as_u64() == Some(*x),
        Value::I8(x) => j.as_i64() == Some(i64::from(*x)),
        Value::I16(x) => j.as_i64() == Some(i64::from(*x)),
        Value::I32(x) => j.as_i64() == Some(i64::from(*x)),
        Value::I64(x) => j.as_i64() == Some(*x),
        Value::F32(x) => j.as_f64() == Some(f64::from(*x)),
        Value::F64(x) => j.as_f64() == Some(*x),
        Value::Bool(x) => j.as_bool() == Some(*x),
        Value::String(s) => j.as_str() == Some(s.as_str()),
        Value::Array(t, items) => {
            let js = j
                .as_array()
                .unwrap_or_else(|| panic!("{key}: not an array in JSON"));
            assert_eq!(items.len(), js.len(), "{key}: array length");
            for (i, (item, ji)) in items.iter().zip(js).enumerate() {
                assert_eq!(item.value_type(), *t, "{key}[{i}]: item type");
                check_value(&format!("{key}[{i}]"), item, ji);
            }
            true
        }
    };
    assert!(ok, "{key}: {v:?} != {j}");
}

fn check_fixture(stem: &str, version: u32) -> (Vec<u8>, Gguf) {
    let (bytes, j) = fixture(stem);
    let g = gguf::parse(&bytes).unwrap();
    assert_eq!(g.version, version);
    assert_eq!(j["version"].as_u64(), Some(u64::from(version)));
    assert_eq!(Some(g.alignment), j["alignment"].as_u64());
    assert_eq!(g.alignment, 64);
    assert_eq!(Some(g.data_offset), j["data_offset"].as_u64());
    assert_eq!(Some(bytes.len() as u64), j["file_size"].as_u64());

    let meta = j["metadata"].as_object().unwrap();
    assert_eq!(g.metadata.len(), meta.len());
    for (key, v) in &g.metadata {
        let m = meta
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in the JSON"));
        assert_eq!(
            m["type"].as_u64(),
            Some(v.value_type() as u64),
            "{key}: type"
        );
        if let Value::Array(t, _) = v {
            assert_eq!(m["item_type"].as_u64(), Some(*t as u64), "{key}: item type");
        }
        check_value(key, v, &m["value"]);
    }

    let ts = j["tensors"].as_array().unwrap();
    assert_eq!(g.tensors.len(), ts.len());
    for (t, jt) in g.tensors.iter().zip(ts) {
        assert_eq!(Some(t.name.as_str()), jt["name"].as_str());
        let shape: Vec<u64> = jt["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, shape, "{}", t.name);
        assert_eq!(
            Some(u64::from(t.ggml_type.0)),
            jt["type"].as_u64(),
            "{}",
            t.name
        );
        assert!(t.ggml_type.is_known());
        assert_eq!(Some(t.offset), jt["offset"].as_u64(), "{}", t.name);
        assert_eq!(t.size_bytes, jt["n_bytes"].as_u64(), "{}", t.name);
        assert_eq!(t.n_elements, shape.iter().product::<u64>());
        let data = g.tensor_bytes(&bytes, &t.name).unwrap();
        assert_eq!(
            Some(hex(data).as_str()),
            jt["data_hex"].as_str(),
            "{}",
            t.name
        );
        assert_eq!(
            Some(hex(&data[..data.len().min(16)]).as_str()),
            jt["head_hex"].as_str()
        );
    }
    (bytes, g)
}

#[test]
fn fixture_v3_matches_gguf_py() {
    let (_, g) = check_fixture("tiny", 3);
    // The types the fixture was written to cover.
    let types: Vec<GgmlType> = g.tensors.iter().map(|t| t.ggml_type).collect();
    for t in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
    ] {
        assert!(types.contains(&t), "{t}");
    }
    let value_types: Vec<ValueType> = g.metadata.iter().map(|(_, v)| v.value_type()).collect();
    for t in 0..=12 {
        assert!(
            value_types.contains(&ValueType::from_u32(t).unwrap()),
            "{t}"
        );
    }
}

#[test]
fn fixture_v2_matches_gguf_py() {
    check_fixture("tiny_v2", 2);
}

#[test]
fn typed_helpers() {
    let (_, g) = check_fixture("tiny", 3);
    assert_eq!(g.get_u32("general.alignment").unwrap(), 64);
    assert_eq!(g.get_u32("t.u8").unwrap(), 200);
    assert_eq!(g.get_u64("t.u64").unwrap(), 18_000_000_000_000_000_000);
    assert_eq!(g.get_i64("t.i64").unwrap(), -9_000_000_000_000_000_000);
    assert_eq!(g.get_i64("t.i8").unwrap(), -100);
    assert_eq!(g.get_f32("t.f32").unwrap(), 1.5);
    assert_eq!(g.get_f64("t.f64").unwrap(), -2.25e100);
    assert!(g.get_bool("t.bool_true").unwrap());
    assert!(!g.get_bool("t.bool_false").unwrap());
    assert_eq!(g.get_str("general.architecture").unwrap(), "tiny");
    assert_eq!(g.get_str("t.str_utf8").unwrap(), "héllo — 日本語 🎬");
    assert_eq!(g.get_str_array("t.arr_str").unwrap(), ["a", "ünï", ""]);
    assert_eq!(g.get_array("t.arr_i32").unwrap().len(), 3);
    assert_eq!(
        g.get("t.arr_nested"),
        Some(&Value::Array(
            ValueType::Array,
            vec![
                Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(2)]),
                Value::Array(ValueType::I32, vec![Value::I32(3)]),
            ]
        ))
    );

    let e = g.get_u32("t.i8").unwrap_err().to_string();
    assert_contains(&e, &["`t.i8`", "i8"]);
    let e = g.get_u32("t.u64").unwrap_err().to_string();
    assert_contains(&e, &["`t.u64`", "u64", "u32"]);
    let e = g.get_str("t.u32").unwrap_err().to_string();
    assert_contains(&e, &["`t.u32`", "is u32", "string"]);
    let e = g.get_str_array("t.arr_i32").unwrap_err().to_string();
    assert_contains(&e, &["`t.arr_i32`", "array of i32"]);
    let e = g.get_f64("no.such.key").unwrap_err().to_string();
    assert_contains(&e, &["`no.such.key`", "missing"]);
    let e = g.tensor_bytes(&[], "nope").unwrap_err().to_string();
    assert_contains(&e, &["`nope`"]);
}

#[test]
fn tensor_bytes_checks_the_given_slice() {
    let (bytes, g) = check_fixture("tiny", 3);
    let e = g
        .tensor_bytes(&bytes[..g.data_offset as usize + 10], "w.q4_0_3d")
        .unwrap_err()
        .to_string();
    assert_contains(&e, &["`w.q4_0_3d`", "past the end"]);
}

#[test]
fn truncated_at_every_byte() {
    let (bytes, _) = fixture("tiny");
    let g = gguf::parse(&bytes).unwrap();
    let data_end = g
        .tensors
        .iter()
        .map(|t| g.data_offset + t.offset + t.size_bytes.unwrap())
        .max()
        .unwrap() as usize;
    for cut in 0..data_end {
        let e = parse_err(&bytes[..cut]);
        // Inside the header the message names the field and the byte; past it, the data
        // section or the tensor that no longer fits.
        let named = [
            "truncated",
            "remain",
            "bytes left",
            "data section",
            "past the end",
        ];
        assert!(named.iter().any(|n| e.contains(n)), "cut {cut}: {e}");
        assert!(e.contains("byte"), "cut {cut}: {e}");
        if cut >= g.data_offset as usize {
            assert!(
                e.contains("past the end") && e.contains("tensor `"),
                "cut {cut}: {e}"
            );
        }
    }
    // The padding after the last tensor's data is not needed.
    for cut in data_end..=bytes.len() {
        gguf::parse(&bytes[..cut]).unwrap();
    }
}

#[test]
fn every_header_byte_flipped_never_panics() {
    let (bytes, _) = fixture("tiny");
    let g = gguf::parse(&bytes).unwrap();
    for i in 0..g.data_offset as usize {
        for v in [0x00, 0xff, bytes[i] ^ 0x80, bytes[i].wrapping_add(1)] {
            let mut b = bytes.clone();
            b[i] = v;
            if let Err(e) = gguf::parse(&b) {
                assert!(e.to_string().contains("GGUF file: "), "{e}");
            }
        }
    }
}

/// Finds the metadata entry `key` in a fixture: the byte offset just after the key string.
fn after_key(bytes: &[u8], key: &str) -> usize {
    let mut pat = (key.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(key.as_bytes());
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat.as_slice())
        .unwrap_or_else(|| panic!("{key} not found"));
    at + pat.len()
}

#[test]
fn fixture_with_huge_string_length() {
    let (mut bytes, _) = fixture("tiny");
    let at = after_key(&bytes, "t.str_utf8") + 4; // past the value type
    bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = parse_err(&bytes);
    assert_contains(
        &e,
        &[
            "`t.str_utf8`",
            "18446744073709551615",
            &format!("byte {at}"),
        ],
    );

    let len = bytes.len() as u64 + 1;
    bytes[at..at + 8].copy_from_slice(&len.to_le_bytes());
    let e = parse_err(&bytes);
    assert_contains(&e, &["`t.str_utf8`", &format!("string length of {len}")]);
}

#[test]
fn fixture_with_huge_array_length() {
    let (mut bytes, _) = fixture("tiny");
    let at = after_key(&bytes, "t.arr_u64") + 4 + 4; // value type, item type
    bytes[at..at + 8].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
    let e = parse_err(&bytes);
    assert_contains(
        &e,
        &["`t.arr_u64`", &(u64::MAX / 4).to_string(), "array length"],
    );
}

/// A GGUF file built by hand, for cases the reference writer refuses to make.
struct Builder {
    version: u32,
    alignment: usize,
    kv: Vec<u8>,
    n_kv: u64,
    tensors: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s);
}

impl Builder {
    fn new() -> Self {
        Builder {
            version: 3,
            alignment: 32,
            kv: Vec::new(),
            n_kv: 0,
            tensors: Vec::new(),
            n_tensors: 0,
            data: Vec::new(),
        }
    }

    /// A raw key/value: key bytes, value type, encoded value.
    fn kv_raw(mut self, key: &[u8], t: u32, value: &[u8]) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend_from_slice(&t.to_le_bytes());
        self.kv.extend_from_slice(value);
        self.n_kv += 1;
        self
    }

    fn alignment_kv(self, a: u32) -> Self {
        let mut b = self.kv_raw(b"general.alignment", 4, &a.to_le_bytes());
        if a.is_power_of_two() {
            b.alignment = a as usize;
        }
        b
    }

    fn tensor(mut self, name: &str, dims: &[u64], t: u32, offset: u64) -> Self {
        put_str(&mut self.tensors, name.as_bytes());
        self.tensors
            .extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            self.tensors.extend_from_slice(&d.to_le_bytes());
        }
        self.tensors.extend_from_slice(&t.to_le_bytes());
        self.tensors.extend_from_slice(&offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    fn data(mut self, n: usize) -> Self {
        self.data = (0..n).map(|i| i as u8).collect();
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.n_tensors.to_le_bytes());
        b.extend_from_slice(&self.n_kv.to_le_bytes());
        b.extend_from_slice(&self.kv);
        b.extend_from_slice(&self.tensors);
        while !b.len().is_multiple_of(self.alignment) {
            b.push(0);
        }
        b.extend_from_slice(&self.data);
        b
    }
}

#[test]
fn builder_makes_a_valid_file() {
    let b = Builder::new()
        .kv_raw(b"k", 8, &[1, 0, 0, 0, 0, 0, 0, 0, b'x'])
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[8, 2], 1, 64)
        .data(96)
        .build();
    let g = gguf::parse(&b).unwrap();
    assert_eq!(g.get_str("k").unwrap(), "x");
    assert_eq!(
        g.tensor_bytes(&b, "b").unwrap(),
        &(64..96).collect::<Vec<u8>>()[..]
    );
}

#[test]
fn huge_key_length() {
    let mut kv = u64::MAX.to_le_bytes().to_vec();
    kv.extend_from_slice(&[0; 16]);
    let mut b = Builder::new();
    b.kv = kv;
    b.n_kv = 1;
    let e = parse_err(&b.build());
    assert_contains(&e, &["metadata key #0", "18446744073709551615", "byte 24"]);
}

#[test]
fn huge_counts() {
    let mut b = Builder::new();
    b.n_tensors = u64::MAX / 2;
    let e = parse_err(&b.build());
    assert_contains(&e, &[&(u64::MAX / 2).to_string(), "tensors"]);

    let mut b = Builder::new().kv_raw(b"k", 0, &[1]);
    b.n_kv = 1 << 40;
    let e = parse_err(&b.build());
    assert_contains(&e, &["1099511627776 metadata entries"]);

    let mut b = Builder::new();
    b.n_kv = u64::MAX;
    b.n_tensors = u64::MAX;
    let e = parse_err(&b.build());
    assert_contains(&e, &["18446744073709551615 metadata entries"]);
}

#[test]
fn huge_array_length() {
    let mut v = 0u32.to_le_bytes().to_vec(); // u8 items
    v.extend_from_slice(&(1u64 << 40).to_le_bytes());
    v.extend_from_slice(&[7; 8]);
    let e = parse_err(&Builder::new().kv_raw(b"arr", 9, &v).build());
    assert_contains(&e, &["`arr`", "1099511627776 u8 items"]);

    // u64::MAX items of 8 bytes: the size check itself must not overflow.
    let mut v = 10u32.to_le_bytes().to_vec();
    v.extend_from_slice(&u64::MAX.to_le_bytes());
    let e = parse_err(&Builder::new().kv_raw(b"arr", 9, &v).build());
    assert_contains(&e, &["`arr`", "18446744073709551615 u64 items"]);
}

#[test]
fn nested_arrays_too_deep() {
    // array of array of ... (6 levels), each of one item, ending in a u8.
    let mut v = Vec::new();
    for _ in 0..5 {
        v.extend_from_slice(&9u32.to_le_bytes());
        v.extend_from_slice(&1u64.to_le_bytes());
    }
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&1u64.to_le_bytes());
    v.push(1);
    let e = parse_err(&Builder::new().kv_raw(b"deep", 9, &v).build());
    assert_contains(&e, &["`deep`", "deeper than 4"]);
}

#[test]
fn five_dims() {
    let b = Builder::new()
        .tensor("w.five", &[1, 1, 1, 1, 1], 0, 0)
        .data(32)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.five`", "5 dimensions", "at most 4"]);
}

#[test]
fn dim_product_overflow() {
    let b = Builder::new()
        .tensor("w.big", &[1 << 32, 1 << 32, 2], 0, 0)
        .data(32)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.big`", "overflows"]);

    let b = Builder::new()
        .tensor("w.neg", &[u64::MAX], 0, 0)
        .data(32)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.neg`", "i64::MAX"]);

    // The element count fits, the byte count (× 4) does not.
    let b = Builder::new()
        .tensor("w.bytes", &[1 << 62], 0, 0)
        .data(32)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.bytes`", "overflows"]);
}

#[test]
fn data_past_the_end() {
    let b = Builder::new()
        .tensor("w.short", &[16], 0, 0)
        .data(63)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.short`", "64 bytes", "past the end"]);

    // An offset near u64::MAX must not wrap around.
    let b = Builder::new()
        .tensor("w.far", &[16], 0, u64::MAX - 31)
        .data(64)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.far`", "past the end"]);

    // No room even for the data section's start.
    let mut b = Builder::new().tensor("w.none", &[0], 0, 0).build();
    b.truncate(b.len() - 1);
    let e = parse_err(&b);
    assert_contains(&e, &["data section"]);
}

#[test]
fn overlapping_tensors() {
    let b = Builder::new()
        .tensor("w.first", &[16], 0, 32)
        .tensor("w.second", &[16], 0, 64)
        .tensor("w.zero", &[32], 0, 0)
        .data(128)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.zero`", "`w.first`", "overlap"]);

    // One tensor inside another, not adjacent in offset order.
    let b = Builder::new()
        .tensor("w.outer", &[64], 0, 0)
        .tensor("w.a", &[4], 0, 96)
        .tensor("w.b", &[4], 0, 32)
        .data(256)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.outer`", "`w.b`", "overlap"]);

    // Empty tensors overlap nothing.
    let b = Builder::new()
        .tensor("w.empty", &[0, 4], 0, 0)
        .tensor("w.full", &[8], 0, 0)
        .data(32)
        .build();
    gguf::parse(&b).unwrap();
}

#[test]
fn versions() {
    for v in [0u32, 1, 4, 7] {
        let mut b = Builder::new();
        b.version = v;
        let e = parse_err(&b.build());
        assert_contains(&e, &[&format!("version {v}"), "not supported"]);
    }
    let mut b = Builder::new();
    b.version = 3u32.swap_bytes();
    let e = parse_err(&b.build());
    assert_contains(&e, &["big-endian"]);
    let mut b = Builder::new();
    b.version = 2;
    gguf::parse(&b.build()).unwrap();
}

#[test]
fn bad_magic() {
    let mut b = Builder::new().build();
    b[..4].copy_from_slice(b"GGML");
    let e = parse_err(&b);
    assert_contains(&e, &["bad magic", "byte 0"]);
    let e = parse_err(b"GG");
    assert_contains(&e, &["truncated", "magic"]);
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48] {
        let e = parse_err(&Builder::new().alignment_kv(a).build());
        assert_contains(&e, &[&format!("general.alignment is {a}"), "power of two"]);
    }
    let e = parse_err(
        &Builder::new()
            .kv_raw(b"general.alignment", 10, &64u64.to_le_bytes())
            .build(),
    );
    assert_contains(&e, &["general.alignment is u64", "u32"]);
    // Alignment 1 is a power of two.
    let g = gguf::parse(&Builder::new().alignment_kv(1).build()).unwrap();
    assert_eq!(g.alignment, 1);
}

#[test]
fn misaligned_offset() {
    let b = Builder::new().tensor("w.odd", &[4], 0, 16).data(64).build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.odd`", "offset 16", "alignment 32"]);
}

#[test]
fn invalid_utf8() {
    let e = parse_err(&Builder::new().kv_raw(b"bad\xff", 0, &[1]).build());
    assert_contains(&e, &["metadata key #0", "UTF-8", "byte 24"]);

    let mut v = 2u64.to_le_bytes().to_vec();
    v.extend_from_slice(b"\xc3\x28");
    let e = parse_err(&Builder::new().kv_raw(b"s", 8, &v).build());
    assert_contains(&e, &["`s`", "UTF-8"]);

    let b = Builder::new().tensor("w\u{e9}", &[4], 0, 0).data(16);
    let mut bytes = b.build();
    let at = bytes
        .windows(3)
        .position(|w| w == "w\u{e9}".as_bytes())
        .unwrap();
    bytes[at + 2] = 0xff;
    let e = parse_err(&bytes);
    assert_contains(&e, &["tensor #0", "UTF-8"]);
}

#[test]
fn unknown_value_type_and_bad_bool() {
    let e = parse_err(&Builder::new().kv_raw(b"k", 13, &[0; 8]).build());
    assert_contains(&e, &["`k`", "unknown value type 13"]);

    let mut v = 77u32.to_le_bytes().to_vec();
    v.extend_from_slice(&1u64.to_le_bytes());
    let e = parse_err(&Builder::new().kv_raw(b"arr", 9, &v).build());
    assert_contains(&e, &["`arr`", "unknown value type 77"]);

    let e = parse_err(&Builder::new().kv_raw(b"flag", 7, &[2]).build());
    assert_contains(&e, &["`flag`", "bool stored as 2"]);
}

#[test]
fn duplicates() {
    let e = parse_err(
        &Builder::new()
            .kv_raw(b"k", 0, &[1])
            .kv_raw(b"k", 0, &[2])
            .build(),
    );
    assert_contains(&e, &["`k`", "twice"]);
    let e = parse_err(
        &Builder::new()
            .tensor("w", &[4], 0, 0)
            .tensor("w", &[4], 0, 32)
            .data(64)
            .build(),
    );
    assert_contains(&e, &["`w`", "twice"]);
}

#[test]
fn block_size_multiple() {
    let b = Builder::new()
        .tensor("w.q8", &[33, 2], 8, 0)
        .data(256)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.q8`", "Q8_0", "33", "block size 32"]);
    // The block constraint is on ne0 only.
    let b = Builder::new()
        .tensor("w.q8", &[32, 3], 8, 0)
        .data(3 * 34)
        .build();
    let g = gguf::parse(&b).unwrap();
    assert_eq!(g.tensors[0].size_bytes, Some(102));
}

#[test]
fn unknown_ggml_type_is_kept() {
    let b = Builder::new()
        .tensor("w.future", &[7, 3], 99, 0)
        .tensor("w.f32", &[4], 0, 32)
        .data(64)
        .build();
    let g = gguf::parse(&b).unwrap();
    let t = g.tensor("w.future").unwrap();
    assert_eq!(t.ggml_type, GgmlType(99));
    assert!(!t.ggml_type.is_known());
    assert_eq!(t.size_bytes, None);
    assert_eq!(t.n_elements, 21);
    let e = g.tensor_bytes(&b, "w.future").unwrap_err().to_string();
    assert_contains(&e, &["`w.future`", "unknown ggml type 99"]);
    assert_eq!(g.tensor_bytes(&b, "w.f32").unwrap().len(), 16);

    // Its start must still lie inside the file.
    let b = Builder::new()
        .tensor("w.future", &[7], 99, 1 << 20)
        .data(64)
        .build();
    let e = parse_err(&b);
    assert_contains(&e, &["`w.future`", "unknown ggml type 99", "past the end"]);
}
