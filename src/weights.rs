//! Safetensors access: one file, a model directory (`config.json` + `model.safetensors` or a
//! sharded `model.safetensors.index.json`), or bytes already in memory (the browser build).
//! Floats come out as f32 whatever they are stored as (F32, F16, BF16).

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

use safetensors::tensor::{Dtype, Metadata, TensorInfo};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

enum Backing {
    #[cfg(not(target_arch = "wasm32"))]
    Mmap(memmap2::Mmap),
    Bytes(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Mmap(m) => m,
            Backing::Bytes(b) => b,
        }
    }
}

/// One safetensors file, header parsed, data left in place.
pub struct SafetensorsFile {
    name: String,
    data: Backing,
    data_start: usize,
    infos: HashMap<String, TensorInfo>,
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

    fn parse(name: String, data: Backing) -> Result<Self> {
        let (header_len, meta): (usize, Metadata) =
            safetensors::SafeTensors::read_metadata(&data).map_err(|e| parse_error(&name, e))?;
        let data_start = 8 + header_len;
        let infos: HashMap<String, TensorInfo> = meta
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, v.clone()))
            .collect();
        for (k, info) in &infos {
            if data_start + info.data_offsets.1 > data.len() {
                return Err(parse_error(
                    &name,
                    format!("tensor `{k}` runs past the end of the file"),
                ));
            }
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(SafetensorsFile {
            name,
            data,
            data_start,
            infos,
            metadata,
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

    fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.data[self.data_start + info.data_offsets.0..self.data_start + info.data_offsets.1]
    }

    /// Drops a tensor's pages from the process once it has been copied out (loaders read each
    /// tensor once): file pages stay in the page cache and fault back in if read again, but a
    /// model no longer counts twice — its file and the executor's copy — at the loader's peak.
    fn release(&self, info: &TensorInfo) {
        #[cfg(not(unix))]
        let _ = info;
        #[cfg(unix)]
        if let Backing::Mmap(m) = &self.data {
            let (start, end) = info.data_offsets;
            // SAFETY: a read-only map of a file: the dropped pages are clean and refault with the
            // same contents (MADV_DONTNEED loses only private writes, and there are none).
            let _ = unsafe {
                m.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.data_start + start,
                    end - start,
                )
            };
        }
    }

    /// A float tensor as f32, or None when the key is absent.
    pub fn tensor(&self, key: &str) -> Result<Option<Tensor>> {
        let Some(info) = self.infos.get(key) else {
            return Ok(None);
        };
        let bytes = self.bytes(info);
        let data: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    key: key.to_string(),
                    dtype: format!("{other:?}"),
                    extra: format!(" (in {})", self.name),
                })
            }
        };
        self.release(info);
        Tensor::new(info.shape.clone(), data)
            .map(Some)
            .map_err(|_| {
                parse_error(
                    &self.name,
                    format!("tensor `{key}` has a byte size that does not match its shape"),
                )
            })
    }

    /// An integer tensor (I64 or I32) as i64, or None when absent.
    pub fn tensor_i64(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        let Some(info) = self.infos.get(key) else {
            return Ok(None);
        };
        let bytes = self.bytes(info);
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
    fn source_tensor_i64(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        self.tensor_i64(key)
    }
    fn source_metadata(&self) -> HashMap<String, String> {
        self.metadata().clone()
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
        let config_path = path.join("config.json");
        let config_json = if config_path.exists() {
            let text =
                std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
            Some(serde_json::from_str(&text).map_err(|e| {
                Error::config(format!("{} is not valid JSON: {e}", config_path.display()))
            })?)
        } else {
            None
        };
        let single = path.join("model.safetensors");
        let index_path = path.join("model.safetensors.index.json");
        let files = if single.exists() {
            vec![SafetensorsFile::open(&single)?]
        } else if index_path.exists() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::config(format!("{} is not valid JSON: {e}", index_path.display()))
            })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    Error::config(format!(
                        "{} has no `weight_map` object",
                        index_path.display()
                    ))
                })?;
            let mut shards: Vec<&str> = map.values().filter_map(|s| s.as_str()).collect();
            shards.sort_unstable();
            shards.dedup();
            shards
                .iter()
                .map(|s| SafetensorsFile::open(&path.join(s)))
                .collect::<Result<Vec<_>>>()?
        } else {
            return Err(Error::input(format!(
                "model directory {} has neither model.safetensors nor model.safetensors.index.json",
                path.display()
            )));
        };
        Ok(Self::from_files(
            &path.display().to_string(),
            files,
            config_json,
        ))
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
