//! A bounds-checked reader of GGUF files (llama.cpp's model format), over a byte slice: callers
//! map or read the file, [`parse`] reads the header, the metadata and the tensor table, and
//! [`Gguf::tensor_bytes`] hands out a tensor's data as a sub-slice of the same bytes. Nothing is
//! copied but the metadata.
//!
//! Accepted: GGUF versions 2 and 3, little-endian. Refused with a [`crate::Error`] that starts with
//! "GGUF file:" and names what is wrong and where (key, tensor, byte offset): version 1 (32-bit
//! lengths) and other versions, big-endian files, a bad magic, truncation anywhere, string or
//! array lengths or metadata/tensor counts larger than the bytes left, invalid UTF-8, unknown
//! metadata value types, arrays nested deeper than [`MAX_ARRAY_DEPTH`], duplicate keys or tensor
//! names, a `general.alignment` that is not a nonzero power of two, more than [`MAX_DIMS`]
//! dimensions, a dimension product that overflows, a first dimension that is not a multiple of
//! the type's block size, tensor offsets not multiples of the alignment, tensor data past the
//! end of the file, and overlapping tensors.
//!
//! Hostile input never panics and never makes the reader allocate a declared size before the
//! size is checked against the bytes that remain, so memory stays proportional to the file.
//! Tensors of a ggml type this table does not know are kept (their [`TensorInfo::size_bytes`]
//! is `None`); the code that would run them names the tensor and the type.

use std::collections::HashSet;
use std::fmt;

use crate::error::{Error, Result};

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when the file has no `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Arrays of arrays are legal GGUF but no real model nests deeply; the bound keeps the
/// recursion (and the stack) small on hostile input.
pub const MAX_ARRAY_DEPTH: usize = 4;

fn err(msg: impl Into<String>) -> Error {
    Error::input(format!("GGUF file: {}", msg.into()))
}

/// The type tag of a metadata value (`gguf_type` in ggml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_u32(t: u32) -> Option<Self> {
        use ValueType::*;
        Some(match t {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// The fewest bytes one value of this type takes in the file: what an array's declared
    /// length is checked against before anything is allocated.
    fn min_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            String => 8,    // the u64 length
            Array => 4 + 8, // item type + u64 count
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value. Arrays keep their declared item type, so an empty array still has one.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer type whose value is nonnegative, widened (converters differ in which width
    /// they write for counts and sizes).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type whose value fits an i64, widened.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// f32 or f64, widened.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<(ValueType, &[Value])> {
        match self {
            Value::Array(t, items) => Some((*t, items)),
            _ => None,
        }
    }

    /// The type as a reader would say it: `u32`, `array of string`, …
    fn describe(&self) -> String {
        match self {
            Value::Array(t, _) => format!("array of {t}"),
            v => v.value_type().to_string(),
        }
    }
}

/// A ggml tensor type id. A newtype rather than an enum, so ids this table does not know are
/// still representable (they parse; [`GgmlType::block`] is `None` for them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

// Ids, block sizes and bytes per block are those of the `gguf` Python package, gguf==0.19.0,
// `GGMLQuantizationType` and `GGML_QUANT_SIZES` in gguf/constants.py (the same as ggml's
// `type_traits` in ggml.c: blck_size, type_size).
const TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (20, "IQ4_NL", 32, 18),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (30, "BF16", 1, 2),
];

impl GgmlType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q4_0: Self = Self(2);
    pub const Q4_1: Self = Self(3);
    pub const Q5_0: Self = Self(6);
    pub const Q5_1: Self = Self(7);
    pub const Q8_0: Self = Self(8);
    pub const Q8_1: Self = Self(9);
    pub const Q2_K: Self = Self(10);
    pub const Q3_K: Self = Self(11);
    pub const Q4_K: Self = Self(12);
    pub const Q5_K: Self = Self(13);
    pub const Q6_K: Self = Self(14);
    pub const Q8_K: Self = Self(15);
    pub const IQ4_NL: Self = Self(20);
    pub const IQ4_XS: Self = Self(23);
    pub const I8: Self = Self(24);
    pub const I16: Self = Self(25);
    pub const I32: Self = Self(26);
    pub const I64: Self = Self(27);
    pub const F64: Self = Self(28);
    pub const BF16: Self = Self(30);

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        TYPES.iter().find(|e| e.0 == self.0)
    }

    /// The ggml name (`Q8_0`), or `None` for an id this table does not know.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|e| e.1)
    }

    /// `(values per block, bytes per block)`, or `None` for an unknown id.
    pub fn block(self) -> Option<(u64, u64)> {
        self.entry().map(|e| (e.2, e.3))
    }

    pub fn is_known(self) -> bool {
        self.entry().is_some()
    }

    /// Bytes of `n_elements` values, or `None` for an unknown type, a count that is not a
    /// whole number of blocks, or an overflow.
    pub fn size_bytes(self, n_elements: u64) -> Option<u64> {
        let (block, bytes) = self.block()?;
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(bytes)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown ggml type {}", self.0),
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF (ggml) order: `dims[0]` (ne0) is the fastest-varying, the reverse of PyTorch's shape.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from [`Gguf::data_offset`]; a multiple of the alignment.
    pub offset: u64,
    pub n_elements: u64,
    /// Bytes of data; `None` when the type is unknown.
    pub size_bytes: Option<u64>,
}

/// A parsed GGUF header: everything but the tensor data, which stays in the caller's bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Gguf {
    /// 2 or 3.
    pub version: u32,
    /// `general.alignment`, or [`DEFAULT_ALIGNMENT`].
    pub alignment: u64,
    /// In file order; keys are unique.
    pub metadata: Vec<(String, Value)>,
    /// In file order; names are unique.
    pub tensors: Vec<TensorInfo>,
    /// Absolute byte offset of the data section: the header's end rounded up to the alignment.
    pub data_offset: u64,
}

/// Little-endian cursor that checks every read against the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(err(format!(
                "truncated: {} at byte {} needs {n} bytes but only {} remain",
                what(),
                self.pos,
                self.remaining()
            )));
        }
        let start = self.pos;
        self.pos += n as usize; // n <= remaining, so it fits usize
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let at = self.pos;
        let len = self.u64(&|| format!("the length of {}", what()))?;
        if len > self.remaining() {
            return Err(err(format!(
                "{} at byte {at} declares a string length of {len} bytes but only {} remain",
                what(),
                self.remaining()
            )));
        }
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|e| err(format!("{} at byte {at} is not valid UTF-8 ({e})", what())))
    }

    fn value(&mut self, t: ValueType, depth: usize, what: &dyn Fn() -> String) -> Result<Value> {
        Ok(match t {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(what)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(err(format!(
                            "{} at byte {at} is a bool stored as {b} (only 0 and 1 are valid)",
                            what()
                        )))
                    }
                }
            }
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(err(format!(
                        "{} at byte {at} nests arrays deeper than {MAX_ARRAY_DEPTH} levels",
                        what()
                    )));
                }
                let raw_t = self.u32(&|| format!("the item type of {}", what()))?;
                let item_t = ValueType::from_u32(raw_t).ok_or_else(|| {
                    err(format!(
                        "{} at byte {at} is an array of unknown value type {raw_t}",
                        what()
                    ))
                })?;
                let n = self.u64(&|| format!("the length of {}", what()))?;
                // Every item takes at least min_size bytes, so a count the bytes left cannot hold
                // is refused here, before any allocation.
                let need = n.checked_mul(item_t.min_size());
                if need.is_none_or(|need| need > self.remaining()) {
                    return Err(err(format!(
                        "{} at byte {at} declares an array length of {n} {item_t} items, more than the {} bytes left can hold",
                        what(),
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity(n as usize);
                for i in 0..n {
                    items.push(self.value(item_t, depth + 1, &|| format!("{}[{i}]", what()))?);
                }
                Value::Array(item_t, items)
            }
        })
    }
}

/// Reads the header, metadata and tensor table of a GGUF file held in `bytes`, checking every
/// length, count, offset and size against `bytes` (see the module documentation).
pub fn parse(bytes: &[u8]) -> Result<Gguf> {
    let mut r = Reader { bytes, pos: 0 };
    let magic: [u8; 4] = r.array(&|| "the magic".into())?;
    if magic != MAGIC {
        return Err(err(format!(
            "bad magic {magic:02x?} at byte 0 (expected \"GGUF\" = {MAGIC:02x?}); this is not a GGUF file"
        )));
    }
    let version = r.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(err(
                "version 1 is not supported (only versions 2 and 3; v1 used 32-bit lengths); re-convert the model with a current llama.cpp",
            ))
        }
        // A big-endian v2/v3 file reads as version 0x0200_0000 / 0x0300_0000 here.
        v if matches!(v.swap_bytes(), 2 | 3) => {
            return Err(err(format!(
                "the file is big-endian (version {} byte-swapped); only little-endian GGUF files are supported",
                v.swap_bytes()
            )))
        }
        v => {
            return Err(err(format!(
                "version {v} is not supported (only versions 2 and 3)"
            )))
        }
    }
    let n_tensors = r.u64(&|| "the tensor count".into())?;
    let n_kv = r.u64(&|| "the metadata count".into())?;
    // Smallest encodings: a key/value is an empty key (8) + type (4) + a 1-byte value; a tensor
    // entry is an empty name (8) + n_dims (4) + type (4) + offset (8).
    const MIN_KV: u64 = 8 + 4 + 1;
    const MIN_TENSOR: u64 = 8 + 4 + 4 + 8;
    let need = n_kv
        .checked_mul(MIN_KV)
        .zip(n_tensors.checked_mul(MIN_TENSOR))
        .and_then(|(a, b)| a.checked_add(b));
    if need.is_none_or(|need| need > r.remaining()) {
        return Err(err(format!(
            "the header declares {n_kv} metadata entries and {n_tensors} tensors (at bytes 16 and 8), more than the {} bytes left can hold",
            r.remaining()
        )));
    }

    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut keys = HashSet::new();
    for i in 0..n_kv {
        let key = r.string(&|| format!("metadata key #{i}"))?;
        let at = r.pos;
        let raw_t = r.u32(&|| format!("the value type of metadata `{key}`"))?;
        let t = ValueType::from_u32(raw_t).ok_or_else(|| {
            err(format!(
                "metadata `{key}` has unknown value type {raw_t} at byte {at}"
            ))
        })?;
        let value = r.value(t, 0, &|| format!("metadata `{key}`"))?;
        if !keys.insert(key.clone()) {
            return Err(err(format!("metadata key `{key}` appears twice")));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        // llama.cpp and gguf-py both require u32 here.
        Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
        Some((_, Value::U32(a))) => {
            return Err(err(format!(
                "general.alignment is {a}; it must be a nonzero power of two"
            )))
        }
        Some((_, v)) => {
            return Err(err(format!(
                "general.alignment is {}; it must be u32",
                v.describe()
            )))
        }
    };

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let name = r.string(&|| format!("the name of tensor #{i}"))?;
        let at = r.pos;
        let n_dims = r.u32(&|| format!("the dimension count of tensor `{name}`"))?;
        if n_dims as usize > MAX_DIMS {
            return Err(err(format!(
                "tensor `{name}` declares {n_dims} dimensions at byte {at}; GGUF allows at most {MAX_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(r.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
        }
        // ggml keeps dimensions as int64.
        if let Some(d) = dims.iter().find(|&&d| d > i64::MAX as u64) {
            return Err(err(format!(
                "tensor `{name}` has dimension {d}, larger than i64::MAX"
            )));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                err(format!(
                    "tensor `{name}`: the product of its dimensions {dims:?} overflows"
                ))
            })?;
        let ggml_type = GgmlType(r.u32(&|| format!("the type of tensor `{name}`"))?);
        let offset = r.u64(&|| format!("the data offset of tensor `{name}`"))?;
        let size_bytes = match ggml_type.block() {
            None => None,
            Some((block, _)) => {
                let ne0 = dims.first().copied().unwrap_or(1);
                if !ne0.is_multiple_of(block) {
                    return Err(err(format!(
                        "tensor `{name}` of type {ggml_type} has first dimension {ne0}, not a multiple of the type's block size {block}"
                    )));
                }
                // n_elements is a multiple of ne0, hence of the block; only overflow can fail.
                Some(ggml_type.size_bytes(n_elements).ok_or_else(|| {
                    err(format!(
                        "tensor `{name}`: its size in bytes overflows ({n_elements} elements of {ggml_type})"
                    ))
                })?)
            }
        };
        if !offset.is_multiple_of(alignment) {
            return Err(err(format!(
                "tensor `{name}` has data offset {offset}, not a multiple of the alignment {alignment}"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(err(format!("tensor name `{name}` appears twice")));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_elements,
            size_bytes,
        });
    }

    let header_end = r.pos as u64;
    let file_len = bytes.len() as u64;
    // header_end <= isize::MAX (a slice length) and the alignment is at most 2^31: no overflow.
    let data_offset = header_end.div_ceil(alignment) * alignment;
    // A file without tensors may end right after its metadata, unpadded.
    if !tensors.is_empty() && data_offset > file_len {
        return Err(err(format!(
            "the data section would start at byte {data_offset} (the header ends at {header_end}, aligned to {alignment}) but the file has only {file_len} bytes"
        )));
    }
    let data_len = file_len.saturating_sub(data_offset);
    for t in &tensors {
        let end = t.offset.checked_add(t.size_bytes.unwrap_or(0));
        if end.is_none_or(|end| end > data_len) {
            let size = match t.size_bytes {
                Some(s) => format!("{s} bytes"),
                None => "unknown size".into(),
            };
            return Err(err(format!(
                "tensor `{}` ({}, {size} at data offset {}, absolute byte {}) extends past the end of the file ({file_len} bytes, data section from byte {data_offset})",
                t.name,
                t.ggml_type,
                t.offset,
                data_offset as u128 + t.offset as u128
            )));
        }
    }
    // Overlap: in offset order, each tensor must start at or after the furthest end so far.
    // Empty tensors occupy nothing; tensors of unknown size are checked only by their start.
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.size_bytes != Some(0)).collect();
    order.sort_by_key(|t| (t.offset, t.size_bytes));
    let mut furthest: Option<(&TensorInfo, u64)> = None;
    for t in order {
        if let Some((prev, end)) = furthest {
            if t.offset < end {
                return Err(err(format!(
                    "tensors `{}` (data bytes {}..{end}) and `{}` (from data byte {}) overlap",
                    prev.name, prev.offset, t.name, t.offset
                )));
            }
        }
        if let Some(size) = t.size_bytes {
            let end = t.offset + size; // checked above
            if furthest.is_none_or(|(_, e)| end > e) {
                furthest = Some((t, end));
            }
        }
    }

    Ok(Gguf {
        version,
        alignment,
        metadata,
        tensors,
        data_offset,
    })
}

impl Gguf {
    /// The value of metadata `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| err(format!("metadata key `{key}` is missing")))
    }

    fn typed<T>(&self, key: &str, want: &str, f: impl Fn(&Value) -> Option<T>) -> Result<T> {
        let v = self.require(key)?;
        f(v).ok_or_else(|| {
            err(format!(
                "metadata `{key}` is {}, but {want} is expected",
                v.describe()
            ))
        })
    }

    /// Any integer type holding a value that fits a u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.typed(key, "an unsigned integer that fits u32", |v| {
            v.as_u64().and_then(|x| u32::try_from(x).ok())
        })
    }

    /// Any integer type holding a nonnegative value.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.typed(key, "an unsigned integer", Value::as_u64)
    }

    /// Any integer type holding a value that fits an i64.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.typed(key, "an integer", Value::as_i64)
    }

    /// f32 (exactly) or f64 narrowed.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.typed(key, "f32", |v| v.as_f64().map(|x| x as f32))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.typed(key, "f32 or f64", Value::as_f64)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.typed(key, "bool", Value::as_bool)
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| {
            err(format!(
                "metadata `{key}` is {}, but string is expected",
                v.describe()
            ))
        })
    }

    /// An array's items, whatever their type.
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        let v = self.require(key)?;
        v.as_array().map(|(_, items)| items).ok_or_else(|| {
            err(format!(
                "metadata `{key}` is {}, but an array is expected",
                v.describe()
            ))
        })
    }

    /// An array of strings (a tokenizer's vocabulary, say).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        match v.as_array() {
            Some((ValueType::String, items)) => {
                Ok(items.iter().filter_map(Value::as_str).collect())
            }
            _ => Err(err(format!(
                "metadata `{key}` is {}, but array of string is expected",
                v.describe()
            ))),
        }
    }

    /// The data of tensor `name` inside `file`, the bytes this header was parsed from (checked
    /// again here, so a different or shorter slice gives an error, not a panic).
    pub fn tensor_bytes<'a>(&self, file: &'a [u8], name: &str) -> Result<&'a [u8]> {
        let t = self
            .tensor(name)
            .ok_or_else(|| err(format!("tensor `{name}` is not in the file")))?;
        let size = t.size_bytes.ok_or_else(|| {
            err(format!(
                "tensor `{name}` has {}, whose size this reader does not know",
                t.ggml_type
            ))
        })?;
        let range = self
            .data_offset
            .checked_add(t.offset)
            .and_then(|start| Some((start, start.checked_add(size)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        range.and_then(|r| file.get(r)).ok_or_else(|| {
            err(format!(
                "tensor `{name}` ({size} bytes at data offset {}) lies past the end of the given {} bytes",
                t.offset,
                file.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_sizes() {
        assert_eq!(GgmlType::Q8_0.block(), Some((32, 34)));
        assert_eq!(GgmlType::Q4_0.block(), Some((32, 18)));
        assert_eq!(GgmlType::Q4_K.block(), Some((256, 144)));
        assert_eq!(GgmlType::Q6_K.block(), Some((256, 210)));
        assert_eq!(GgmlType::BF16.block(), Some((1, 2)));
        assert_eq!(GgmlType::F32.block(), Some((1, 4)));
        assert_eq!(GgmlType::F16.block(), Some((1, 2)));
        assert_eq!(GgmlType::Q8_0.size_bytes(64 * 3), Some(6 * 34));
        assert_eq!(GgmlType::Q8_0.size_bytes(33), None);
        assert_eq!(GgmlType::Q4_K.size_bytes(512), Some(288));
        assert_eq!(GgmlType::F32.size_bytes(u64::MAX), None);
        assert_eq!(GgmlType(30).name(), Some("BF16"));
        assert_eq!(GgmlType(99).name(), None);
        assert_eq!(GgmlType(99).to_string(), "unknown ggml type 99");
        assert!(!GgmlType(4).is_known()); // Q4_2, removed from ggml
    }

    #[test]
    fn value_types_round_trip() {
        for t in 0..=12 {
            assert_eq!(ValueType::from_u32(t).unwrap() as u32, t);
        }
        assert_eq!(ValueType::from_u32(13), None);
    }

    #[test]
    fn minimal_file() {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        let g = parse(&b).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.alignment, DEFAULT_ALIGNMENT);
        assert!(g.metadata.is_empty() && g.tensors.is_empty());
        assert_eq!(g.data_offset, 32);
        let e = g.get_u32("x").unwrap_err().to_string();
        assert!(e.contains("`x` is missing"), "{e}");
    }
}
