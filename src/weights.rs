//! Safetensors access: one file, a model directory (`config.json` + `model.safetensors` or a
//! sharded `model.safetensors.index.json`), or bytes already in memory (the browser build).
//! Floats come out as f32 whatever they are stored as (F32, F16, BF16).

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

use safetensors::tensor::Dtype;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

enum Backing {
    #[cfg(not(target_arch = "wasm32"))]
    Mmap(memmap2::Mmap),
    Bytes(Vec<u8>),
    /// A file read a range at a time (the files a web page was handed: never all in memory).
    Ranges(Box<dyn ByteRanges>),
}

/// A file this process reads by byte ranges rather than holding or mapping it whole: the
/// browser's `File`s, whose tensors are read one at a time straight to the GPU.
pub trait ByteRanges: Send + Sync {
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// `len` bytes from `start` (the caller keeps the range inside the file).
    fn read(&self, start: u64, len: usize) -> Result<Vec<u8>>;
}

impl Backing {
    fn size(&self) -> u64 {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Mmap(m) => m.len() as u64,
            Backing::Bytes(b) => b.len() as u64,
            Backing::Ranges(r) => r.size(),
        }
    }

    /// `len` bytes from `start` (inside the file: callers check): borrowed where the file is in
    /// memory, read where it is read by ranges.
    fn read(&self, start: u64, len: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
        let (at, end) = (start as usize, start as usize + len);
        Ok(match self {
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Mmap(m) => m[at..end].into(),
            Backing::Bytes(b) => b[at..end].into(),
            Backing::Ranges(r) => r.read(start, len)?.into(),
        })
    }
}

/// A tensor's place in a safetensors file: `len` bytes from `start` (after the header).
#[derive(Clone, Debug)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    start: u64,
    len: usize,
}

/// A parsed safetensors header: its length in bytes, its tensors, its string metadata.
struct Header {
    len: u64,
    infos: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
}

/// A tensor's entry as the header spells it.
#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// One safetensors file, header parsed, data left in place.
pub struct SafetensorsFile {
    name: String,
    data: Backing,
    data_start: u64,
    infos: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
}

fn parse_error(name: &str, reason: impl std::fmt::Display) -> Error {
    Error::Safetensors {
        path: PathBuf::from(name),
        reason: reason.to_string(),
    }
}

impl SafetensorsFile {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; a file changed underneath us while mapped is the
        // caller's problem, as with every mmap-based loader (candle, safetensors' own docs).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path.display().to_string(), Backing::Mmap(map))
    }

    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(name.to_string(), Backing::Bytes(bytes))
    }

    /// A file read a tensor at a time through `ranges`.
    pub fn from_ranges(name: &str, ranges: Box<dyn ByteRanges>) -> Result<Self> {
        Self::parse(name.to_string(), Backing::Ranges(ranges))
    }

    fn parse(name: String, data: Backing) -> Result<Self> {
        let header = Self::read_header(&name, &data)?;
        Ok(SafetensorsFile {
            name,
            data,
            data_start: 8 + header.len,
            infos: header.infos,
            metadata: header.metadata,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.infos.keys().map(String::as_str)
    }
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.infos.get(key).map(|i| i.shape.as_slice())
    }
    /// How `key` is stored in the file.
    pub fn dtype(&self, key: &str) -> Option<Dtype> {
        self.infos.get(key).map(|i| i.dtype)
    }

    /// The header: its length, the tensors it describes and the string metadata. Checked as
    /// the `safetensors` crate checks it (each tensor's bytes follow the previous one's and
    /// match its shape), and the file must be exactly header + data. Offsets are read as u64,
    /// not the crate's usize: a wasm32 page reads single files past 4 GiB (InternVL2-2B's is
    /// 4.4 GB). One path for every backing, reading only the header from a file read by ranges.
    fn read_header(name: &str, data: &Backing) -> Result<Header> {
        let size = data.size();
        if size < 8 {
            return Err(parse_error(
                name,
                "the file is shorter than a safetensors header",
            ));
        }
        let n = u64::from_le_bytes(data.read(0, 8)?.as_ref().try_into().expect("8 bytes"));
        if n > 100_000_000 || 8 + n > size {
            return Err(parse_error(
                name,
                format!("its header length {n} does not fit the file ({size} bytes)"),
            ));
        }
        let header = data.read(8, n as usize)?;
        let text = std::str::from_utf8(&header)
            .map_err(|e| parse_error(name, format!("its header is not text: {e}")))?;
        // `from_str`, as every other JSON read here: one deserializer in the browser bundle.
        let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| parse_error(name, format!("its header is not valid JSON: {e}")))?;
        let metadata = match map.remove("__metadata__") {
            Some(v) => serde_json::from_value(v)
                .map_err(|e| parse_error(name, format!("its `__metadata__`: {e}")))?,
            None => HashMap::new(),
        };
        let mut entries = Vec::with_capacity(map.len());
        for (key, v) in map {
            let raw: RawEntry = serde_json::from_value(v)
                .map_err(|e| parse_error(name, format!("the header's `{key}`: {e}")))?;
            entries.push((key, raw));
        }
        entries.sort_by_key(|(_, e)| e.data_offsets);
        let mut end = 0u64;
        let mut infos = HashMap::with_capacity(entries.len());
        for (key, e) in entries {
            let [start, stop] = e.data_offsets;
            let bits = (e.shape.iter())
                .try_fold(e.dtype.bitsize() as u64, |n, &d| n.checked_mul(d as u64));
            if start != end || stop < start {
                return Err(parse_error(
                    name,
                    format!("tensor `{key}`'s bytes do not follow the previous tensor's"),
                ));
            }
            if bits.is_none_or(|b| b % 8 != 0 || b / 8 != stop - start) {
                return Err(parse_error(
                    name,
                    format!(
                        "tensor `{key}` holds {} bytes, which is not its shape {:?} of {:?}",
                        stop - start,
                        e.shape,
                        e.dtype
                    ),
                ));
            }
            end = stop;
            let entry = Entry {
                dtype: e.dtype,
                shape: e.shape,
                start,
                len: usize::try_from(stop - start).map_err(|_| {
                    parse_error(
                        name,
                        format!("tensor `{key}` is too large for this platform"),
                    )
                })?,
            };
            infos.insert(key, entry);
        }
        if 8 + n + end != size {
            return Err(parse_error(
                name,
                format!(
                    "the file is {size} bytes but its header describes {} (was it cut short while copying?)",
                    8 + n + end
                ),
            ));
        }
        Ok(Header {
            len: n,
            infos,
            metadata,
        })
    }

    fn bytes(&self, info: &Entry) -> Result<std::borrow::Cow<'_, [u8]>> {
        self.data.read(self.data_start + info.start, info.len)
    }

    /// Drops a tensor's pages from the process once it has been copied out (loaders read each
    /// tensor once): file pages stay in the page cache and fault back in if read again, but a
    /// model no longer counts twice — its file and the executor's copy — at the loader's peak.
    fn release(&self, info: &Entry) {
        #[cfg(not(unix))]
        let _ = info;
        #[cfg(unix)]
        if let Backing::Mmap(m) = &self.data {
            // SAFETY: a read-only map of a file: the dropped pages are clean and refault with the
            // same contents (MADV_DONTNEED loses only private writes, and there are none).
            let _ = unsafe {
                m.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    (self.data_start + info.start) as usize,
                    info.len,
                )
            };
        }
    }

    /// A float tensor as f32, or None when the key is absent. It is read a piece at a time, so
    /// from a file read by ranges its raw bytes and the f32 values are never both held whole.
    pub fn tensor(&self, key: &str) -> Result<Option<Tensor>> {
        let Some(info) = self.infos.get(key) else {
            return Ok(None);
        };
        let widen: fn(&[u8], &mut Vec<f32>) = match info.dtype {
            Dtype::F32 => |b, out| {
                out.extend(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                )
            },
            Dtype::F16 => |b, out| {
                out.extend(
                    b.chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
                )
            },
            Dtype::BF16 => |b, out| {
                out.extend(
                    b.chunks_exact(2)
                        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
                )
            },
            other => {
                return Err(Error::UnsupportedDtype {
                    key: key.to_string(),
                    dtype: format!("{other:?}"),
                    extra: format!(" (in {})", self.name),
                })
            }
        };
        let mut data = Vec::with_capacity(info.len / (info.dtype.bitsize() / 8).max(1));
        self.read_pieces(info, |bytes| widen(bytes, &mut data))?;
        Tensor::new(info.shape.clone(), data)
            .map(Some)
            .map_err(|_| self.size_mismatch(key))
    }

    /// Hands a tensor's bytes to `take` in pieces of whole elements (a multiple of 4 bytes):
    /// borrowed from a file in memory, read one at a time from a file read by ranges; then
    /// drops its pages ([`Self::release`]).
    fn read_pieces(&self, info: &Entry, mut take: impl FnMut(&[u8])) -> Result<()> {
        const PIECE: usize = 8 << 20;
        for at in (0..info.len).step_by(PIECE) {
            let len = PIECE.min(info.len - at);
            let from = self.data_start + info.start + at as u64;
            take(&self.data.read(from, len)?);
        }
        self.release(info);
        Ok(())
    }

    /// The error for a tensor whose bytes do not make its shape.
    fn size_mismatch(&self, key: &str) -> Error {
        parse_error(
            &self.name,
            format!("tensor `{key}` has a byte size that does not match its shape"),
        )
    }

    /// [`Self::tensor`], but a bf16 or f16 tensor stays in its 16 bits (`Tensor::half`): what
    /// the loaders hand to executors that keep 16-bit weights, so a bf16 checkpoint is never
    /// widened to f32 and rounded back on the way in (that round trip was most of the CPU's
    /// load time).
    pub fn tensor_kept(&self, key: &str) -> Result<Option<Tensor>> {
        // The browser's GPU placement widens to f32 anyway; widening as the pieces are read
        // keeps its heap's peak at one weight's f32 values plus the placed copy (kept 16-bit,
        // the stand-in's heap peaked 262 MiB higher).
        if cfg!(target_arch = "wasm32") {
            return self.tensor(key);
        }
        let Some(info) = self.infos.get(key) else {
            return Ok(None);
        };
        let kind = match info.dtype {
            Dtype::BF16 => crate::tensor::Half::Bf16,
            Dtype::F16 => crate::tensor::Half::F16,
            _ => return self.tensor(key),
        };
        let mut bits: Vec<u16> = Vec::with_capacity(info.len / 2);
        self.read_pieces(info, |bytes| {
            // Little-endian bits are the file's bytes: one copy into the (aligned) u16s, where
            // the file's offsets need not be 2-byte aligned.
            let (at, n) = (bits.len(), bytes.len() / 2);
            bits.resize(at + n, 0);
            let dst = &mut bits[at..];
            if cfg!(target_endian = "little") {
                bytemuck::cast_slice_mut::<u16, u8>(dst).copy_from_slice(&bytes[..2 * n]);
            } else {
                for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = u16::from_le_bytes([c[0], c[1]]);
                }
            }
        })?;
        Tensor::half_bits(kind, info.shape.clone(), bits)
            .map(Some)
            .map_err(|_| self.size_mismatch(key))
    }

    /// An integer tensor (I64 or I32) as i64, or None when absent.
    pub fn tensor_i64(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        let Some(info) = self.infos.get(key) else {
            return Ok(None);
        };
        let bytes = self.bytes(info)?;
        let v: Vec<i64> = match info.dtype {
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            Dtype::I32 => bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    key: key.to_string(),
                    dtype: format!("{other:?}"),
                    extra: " (an integer tensor was expected)".into(),
                })
            }
        };
        Ok(Some((info.shape.clone(), v)))
    }
}

/// A file of named tensors a [`TensorStore`] reads: safetensors, or a GGUF pair seen under
/// Hugging Face names (`crate::vlm::gguf_model`).
pub trait TensorSource: Send + Sync {
    fn source_keys(&self) -> Vec<String>;
    fn source_shape(&self, key: &str) -> Option<&[usize]>;
    /// How `key` is stored, where safetensors has a name for it (ggml's block types have none).
    fn source_dtype(&self, key: &str) -> Option<Dtype>;
    /// The tensor, or None when absent: floats as f32, ggml blocks kept as blocks.
    fn source_tensor(&self, key: &str) -> Result<Option<Tensor>>;
    /// [`Self::source_tensor`], but 16-bit floats kept in their 16 bits where the source can.
    fn source_tensor_kept(&self, key: &str) -> Result<Option<Tensor>> {
        self.source_tensor(key)
    }
    /// An integer tensor as i64, or None when absent.
    fn source_tensor_i64(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>>;
    /// String metadata (safetensors `__metadata__`).
    fn source_metadata(&self) -> HashMap<String, String>;
}

impl TensorSource for SafetensorsFile {
    fn source_keys(&self) -> Vec<String> {
        self.keys().map(str::to_string).collect()
    }
    fn source_shape(&self, key: &str) -> Option<&[usize]> {
        self.shape(key)
    }
    fn source_dtype(&self, key: &str) -> Option<Dtype> {
        self.dtype(key)
    }
    fn source_tensor(&self, key: &str) -> Result<Option<Tensor>> {
        self.tensor(key)
    }
    fn source_tensor_kept(&self, key: &str) -> Result<Option<Tensor>> {
        self.tensor_kept(key)
    }
    fn source_tensor_i64(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        self.tensor_i64(key)
    }
    fn source_metadata(&self) -> HashMap<String, String> {
        self.metadata().clone()
    }
}

/// Where a model's files come from: a directory on disk, or the files a web page was handed.
/// Small files (JSON, the tokenizer) are read whole; safetensors are opened to be read a tensor
/// at a time.
pub trait ModelFiles {
    /// What to call the model in messages (the directory's path, the folder's name).
    fn describe(&self) -> String;
    /// The file `name`'s bytes, or None when there is no such file.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// The safetensors file `name`, or None when there is no such file.
    fn safetensors(&self, name: &str) -> Result<Option<SafetensorsFile>>;

    /// The JSON file `name`, or None when there is no such file.
    fn read_json(&self, name: &str) -> Result<Option<serde_json::Value>> {
        let Some(bytes) = self.read(name)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::config(format!("{}/{name} is not valid JSON: {e}", self.describe()))
        })
    }
}

/// A model directory on disk.
#[cfg(not(target_arch = "wasm32"))]
pub struct ModelDir(pub PathBuf);

#[cfg(not(target_arch = "wasm32"))]
impl ModelFiles for ModelDir {
    fn describe(&self) -> String {
        self.0.display().to_string()
    }
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let p = self.0.join(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&p, e)),
        }
    }
    fn safetensors(&self, name: &str) -> Result<Option<SafetensorsFile>> {
        let p = self.0.join(name);
        match p.exists() {
            true => SafetensorsFile::open(&p).map(Some),
            false => Ok(None),
        }
    }
}

/// Tensors from one file or a (possibly sharded) model directory.
pub struct TensorStore {
    name: String,
    files: Vec<Box<dyn TensorSource>>,
    index: HashMap<String, usize>,
    /// The model directory's `config.json`, when loaded from a directory.
    pub config_json: Option<serde_json::Value>,
}

impl TensorStore {
    pub fn from_files(
        name: &str,
        files: Vec<SafetensorsFile>,
        config_json: Option<serde_json::Value>,
    ) -> Self {
        let sources = files
            .into_iter()
            .map(|f| Box::new(f) as Box<dyn TensorSource>)
            .collect();
        Self::from_sources(name, sources, config_json)
    }

    /// A store over any [`TensorSource`]s; a key found in several is read from the first.
    pub fn from_sources(
        name: &str,
        files: Vec<Box<dyn TensorSource>>,
        config_json: Option<serde_json::Value>,
    ) -> Self {
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for k in f.source_keys() {
                index.entry(k).or_insert(i);
            }
        }
        TensorStore {
            name: name.to_string(),
            files,
            index,
            config_json,
        }
    }

    /// A `.safetensors` file, or a model directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            let f = SafetensorsFile::open(path)?;
            return Ok(Self::from_files(&path.display().to_string(), vec![f], None));
        }
        Self::open_model(&ModelDir(path.to_path_buf()))
    }

    /// A model's weights: `model.safetensors`, or the shards a `model.safetensors.index.json`
    /// names, with its `config.json` when there is one.
    pub fn open_model(files: &dyn ModelFiles) -> Result<Self> {
        let where_ = files.describe();
        let config_json = files.read_json("config.json")?;
        let index_name = "model.safetensors.index.json";
        let opened = if let Some(f) = files.safetensors("model.safetensors")? {
            vec![f]
        } else if let Some(v) = files.read_json(index_name)? {
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    Error::config(format!("{where_}/{index_name} has no `weight_map` object"))
                })?;
            let mut shards: Vec<&str> = map.values().filter_map(|s| s.as_str()).collect();
            shards.sort_unstable();
            shards.dedup();
            shards
                .iter()
                .map(|s| {
                    files.safetensors(s)?.ok_or_else(|| {
                        Error::input(format!(
                            "{index_name} names the shard {s}, which {where_} lacks; copy every shard of the checkpoint"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            return Err(Error::input(format!(
                "model directory {where_} has neither model.safetensors nor {index_name}"
            )));
        };
        Ok(Self::from_files(&where_, opened, config_json))
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.index
            .get(key)
            .and_then(|&i| self.files[i].source_shape(key))
    }
    /// How `key` is stored.
    pub fn dtype(&self, key: &str) -> Option<Dtype> {
        self.index
            .get(key)
            .and_then(|&i| self.files[i].source_dtype(key))
    }
    /// True when the store holds floating-point tensors and every one of them is bf16 (the
    /// released checkpoints): then keeping weights in bf16 loses nothing.
    pub fn floats_all_bf16(&self) -> bool {
        let floats: Vec<Dtype> = self
            .keys()
            .filter_map(|k| self.dtype(k))
            .filter(|d| matches!(d, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16))
            .collect();
        !floats.is_empty() && floats.iter().all(|&d| d == Dtype::BF16)
    }
    /// True when the store holds float matrices (2-D or more: the weights a storage choice
    /// applies to) and every one of them is stored as `dtype` (a GGUF F16 file's: its norms
    /// and biases are F32 vectors).
    pub fn matrices_all(&self, dtype: Dtype) -> bool {
        let floats: Vec<Dtype> = self
            .keys()
            .filter(|k| self.shape(k).is_some_and(|s| s.len() >= 2))
            .filter_map(|k| self.dtype(k))
            .filter(|d| matches!(d, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16))
            .collect();
        !floats.is_empty() && floats.iter().all(|&d| d == dtype)
    }
    pub fn get(&self, key: &str) -> Result<Option<Tensor>> {
        match self.index.get(key) {
            Some(&i) => self.files[i].source_tensor(key),
            None => Ok(None),
        }
    }
    /// [`Self::get`], 16-bit floats kept in their 16 bits (`TensorSource::source_tensor_kept`).
    pub fn get_kept(&self, key: &str) -> Result<Option<Tensor>> {
        match self.index.get(key) {
            Some(&i) => self.files[i].source_tensor_kept(key),
            None => Ok(None),
        }
    }
    pub fn get_i64(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        match self.index.get(key) {
            Some(&i) => self.files[i].source_tensor_i64(key),
            None => Ok(None),
        }
    }
    /// The first file's string metadata (safetensors `__metadata__`).
    pub fn metadata(&self) -> HashMap<String, String> {
        self.files
            .first()
            .map(|f| f.source_metadata())
            .unwrap_or_default()
    }
}
