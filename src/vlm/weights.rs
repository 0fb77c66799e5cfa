//! Reads the host model's tensors by their Hugging Face names, checking shape and finiteness,
//! merges a LoRA adapter's delta into the weights it targets, and hands each to the executor
//! (`upload`) as soon as it is read, so a large model is never held twice on the host.

use super::layout::{Layout, Source};
use super::lora::Lora;
use crate::error::{Error, Result};
use crate::ops::Role;
use crate::tensor::Tensor;
use crate::weights::TensorStore;

pub struct WeightReader<'a, T> {
    pub store: &'a TensorStore,
    /// Uploads a tensor read for the given role (so an executor can store it where that role's
    /// reads are fastest).
    upload: &'a mut dyn FnMut(Tensor, Role) -> Result<T>,
    /// Called once per tensor read (progress reporting).
    pub on_tensor: Option<&'a mut dyn FnMut()>,
    /// A LoRA adapter merged into every weight it targets as that weight is read.
    pub lora: Option<&'a Lora>,
    /// The weights the LoRA was merged into (so the caller can refuse targets never read).
    pub merged: Vec<String>,
    /// Where each requested (remote-code) name lives in the store.
    pub layout: Layout,
}

impl<'a, T> WeightReader<'a, T> {
    pub fn new(
        store: &'a TensorStore,
        upload: &'a mut dyn FnMut(Tensor, Role) -> Result<T>,
    ) -> Self {
        WeightReader {
            store,
            upload,
            on_tensor: None,
            lora: None,
            merged: Vec::new(),
            layout: Layout::Remote,
        }
    }

    /// The host tensor `key` of exactly `shape`, finite, with the LoRA delta merged in when the
    /// adapter targets it, as f32 values.
    pub fn host(&mut self, key: &str, shape: &[usize]) -> Result<Tensor> {
        self.checked(key, shape)?.widened()
    }

    /// [`Self::host`], but a weight stored in ggml blocks (a GGUF file) stays in blocks unless a
    /// LoRA delta must be merged into it: what `linear`, `table` and `stacked` hand to the
    /// executor, which places blocks as they are.
    fn checked(&mut self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let mut t = self.fetch(key)?;
        if t.shape() != shape {
            return Err(Error::ShapeMismatch {
                key: self.stored_name(key),
                expected: shape.to_vec(),
                actual: t.shape().to_vec(),
                hint: " (does config.json describe these weights?)".into(),
            });
        }
        let non_finite = match t.block_rows() {
            Some(parts) => parts.iter().find_map(|p| {
                crate::quant::first_non_finite_block(p.ty, &p.bytes)
                    .map(|b| (format!("{} block {b}", p.ty), f32::NAN))
            }),
            None => t
                .first_non_finite()
                .map(|(i, v)| (format!("flat index {i}"), v)),
        };
        if let Some((position, value)) = non_finite {
            return Err(Error::NonFinite {
                what: format!("weight `{}`", self.stored_name(key)),
                position,
                value,
            });
        }
        if let Some(lora) = self.lora {
            if (t.block_rows().is_some() || t.half_data().is_some()) && lora.targets(key) {
                t = t.widened()?;
            }
            if lora.merge_into(key, &mut t)? {
                self.merged.push(key.to_string());
            }
        }
        if let Some(f) = self.on_tensor.as_mut() {
            f();
        }
        Ok(t)
    }

    /// The tensor `key` names, wherever the layout puts it (rows of several tensors stacked);
    /// 16-bit floats and ggml blocks as stored (executors widen what they do not keep).
    fn fetch(&self, key: &str) -> Result<Tensor> {
        let read = |k: &str| {
            self.store.get_kept(k)?.ok_or_else(|| Error::MissingTensor {
                key: k.to_string(),
                source_name: self.store.name().to_string(),
            })
        };
        match self.layout.resolve(key) {
            Source::Key(k) => read(&k),
            Source::Rows(keys) => {
                let parts = keys.iter().map(|k| read(k)).collect::<Result<Vec<_>>>()?;
                Tensor::concat_rows(parts)
            }
        }
    }

    /// The name(s) `key` has in the store, for messages.
    fn stored_name(&self, key: &str) -> String {
        match self.layout.resolve(key) {
            Source::Key(k) => k,
            Source::Rows(keys) => keys.join(" + "),
        }
    }

    /// Whether the store holds the tensor `key` names.
    pub fn contains(&self, key: &str) -> bool {
        match self.layout.resolve(key) {
            Source::Key(k) => self.store.contains(&k),
            Source::Rows(keys) => keys.iter().all(|k| self.store.contains(k)),
        }
    }

    /// `host`, then uploaded: a bias, norm weight or other tensor that is not a linear weight.
    pub fn get(&mut self, key: &str, shape: &[usize]) -> Result<T> {
        let t = self.host(key, shape)?;
        self.put(t)
    }

    /// `host`, then uploaded as the W (N, K) of a linear layer (ggml blocks kept as they are).
    pub fn linear(&mut self, key: &str, shape: &[usize]) -> Result<T> {
        let t = self.checked(key, shape)?;
        self.put_as(t, Role::LinearWeight)
    }

    /// `host`, then uploaded as a table read by rows (an embedding; perhaps also a tied linear;
    /// ggml blocks kept as they are: the executor decides).
    pub fn table(&mut self, key: &str, shape: &[usize]) -> Result<T> {
        let t = self.checked(key, shape)?;
        self.put_as(t, Role::Table)
    }

    /// A linear weight when the store holds `key`, else None.
    pub fn optional_linear(&mut self, key: &str, shape: &[usize]) -> Result<Option<T>> {
        if self.contains(key) {
            self.linear(key, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Uploads a tensor prepared on the host (not a linear weight).
    pub fn put(&mut self, t: Tensor) -> Result<T> {
        (self.upload)(t, Role::Other)
    }

    /// Uploads a tensor prepared on the host for `role`.
    pub fn put_as(&mut self, t: Tensor, role: Role) -> Result<T> {
        (self.upload)(t, role)
    }

    /// Several 1-D tensors (e.g. biases) of the given lengths, concatenated into one.
    pub fn concat(&mut self, keys: &[&str], lens: &[usize]) -> Result<T> {
        let mut data = Vec::new();
        for (k, &n) in keys.iter().zip(lens) {
            data.extend(self.host(k, &[n])?.into_data());
        }
        let t = Tensor::new(vec![data.len()], data)?;
        self.put(t)
    }

    /// Several (rows, cols) linear weights stacked along the rows into one (e.g. gate and up
    /// projections, so one GEMM computes both).
    pub fn stacked(&mut self, keys: &[&str], shapes: &[[usize; 2]]) -> Result<T> {
        let parts = keys
            .iter()
            .zip(shapes)
            .map(|(k, s)| self.checked(k, s))
            .collect::<Result<Vec<_>>>()?;
        let t = Tensor::concat_rows(parts)?;
        self.put_as(t, Role::LinearWeight)
    }
}
