//! Reads the host model's tensors by their Hugging Face names, checking shape and finiteness,
//! and hands each to the executor (`upload`) as soon as it is read, so a large model is never
//! held twice on the host.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::weights::TensorStore;

pub struct WeightReader<'a, T> {
    pub store: &'a TensorStore,
    upload: &'a mut dyn FnMut(Tensor) -> Result<T>,
    /// Called once per tensor read (progress reporting).
    pub on_tensor: Option<&'a mut dyn FnMut()>,
}

impl<'a, T> WeightReader<'a, T> {
    pub fn new(store: &'a TensorStore, upload: &'a mut dyn FnMut(Tensor) -> Result<T>) -> Self {
        WeightReader {
            store,
            upload,
            on_tensor: None,
        }
    }

    /// The host tensor `key` of exactly `shape`, finite.
    pub fn host(&mut self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.store.get(key)?.ok_or_else(|| Error::MissingTensor {
            key: key.to_string(),
            source_name: self.store.name().to_string(),
        })?;
        if t.shape() != shape {
            return Err(Error::ShapeMismatch {
                key: key.to_string(),
                expected: shape.to_vec(),
                actual: t.shape().to_vec(),
                hint: " (does config.json describe these weights?)".into(),
            });
        }
        if let Some((i, v)) = t.first_non_finite() {
            return Err(Error::NonFinite {
                what: format!("weight `{key}`"),
                position: format!("flat index {i}"),
                value: v,
            });
        }
        if let Some(f) = self.on_tensor.as_mut() {
            f();
        }
        Ok(t)
    }

    /// `host`, then uploaded.
    pub fn get(&mut self, key: &str, shape: &[usize]) -> Result<T> {
        let t = self.host(key, shape)?;
        self.put(t)
    }

    /// `get` when the store holds `key`, else None.
    pub fn optional(&mut self, key: &str, shape: &[usize]) -> Result<Option<T>> {
        if self.store.contains(key) {
            self.get(key, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Uploads a tensor prepared on the host.
    pub fn put(&mut self, t: Tensor) -> Result<T> {
        (self.upload)(t)
    }

    /// Several (rows, cols) weights stacked along the rows into one (e.g. gate and up
    /// projections, so one GEMM computes both).
    pub fn stacked(&mut self, keys: &[&str], shapes: &[[usize; 2]]) -> Result<T> {
        let mut data = Vec::new();
        let mut rows = 0;
        for (k, s) in keys.iter().zip(shapes) {
            data.extend(self.host(k, s)?.into_data());
            rows += s[0];
        }
        let t = Tensor::new(vec![rows, shapes[0][1]], data)?;
        self.put(t)
    }
}
