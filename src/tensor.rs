//! Host tensor: a shape and row-major f32 data. Shared by file I/O and the CPU executor.
//!
//! A model weight the CPU executor keeps in its stored precision is a bf16 tensor instead
//! ([`Tensor::bf16`]): it holds bf16 values only, and only the ops that read weights take it
//! (`linear` as the weight, `gather_rows` as the table, `rows` to slice it); reading it as f32
//! ([`Tensor::data`]) is a bug in the caller and panics with a message saying so.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
    /// The values as bf16 (upper halves of f32) when the tensor is a bf16 weight; `data` is
    /// then empty.
    bf16: Option<Vec<u16>>,
}

/// An error unless `shape` holds exactly `given` values.
fn holds(shape: &[usize], given: usize) -> Result<()> {
    let expected: usize = shape.iter().product();
    if expected != given {
        return Err(Error::input(format!(
            "shape {shape:?} holds {expected} values but {given} were given"
        )));
    }
    Ok(())
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        holds(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data,
            bf16: None,
        })
    }

    /// A bf16 weight: `values` are f32 values rounded to the nearest bf16 (ties to even),
    /// exactly so when they were bf16 already.
    pub fn bf16(shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        holds(&shape, values.len())?;
        let bits = values
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        Ok(Tensor {
            shape,
            data: Vec::new(),
            bf16: Some(bits),
        })
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
            bf16: None,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The f32 values. Panics on a bf16 weight (see the module note): only the ops that read
    /// weights take one, through [`Tensor::bf16_data`].
    pub fn data(&self) -> &[f32] {
        self.assert_f32();
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.assert_f32();
        &mut self.data
    }
    pub fn into_data(self) -> Vec<f32> {
        self.assert_f32();
        self.data
    }
    /// The bf16 bits of a bf16 weight; None for an f32 tensor.
    pub fn bf16_data(&self) -> Option<&[u16]> {
        self.bf16.as_deref()
    }
    fn assert_f32(&self) {
        assert!(
            self.bf16.is_none(),
            "a bf16 weight {:?} was read as f32; only linear, gather_rows and rows take bf16 weights",
            self.shape
        );
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Same data, another shape with the same element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(Error::input(format!(
                "cannot view shape {:?} as {shape:?}",
                self.shape
            )));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Size of the last axis (the row width); 1 for a scalar.
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    /// Product of all axes but the last.
    pub fn rows(&self) -> usize {
        if self.shape.is_empty() {
            1
        } else {
            self.shape[..self.shape.len() - 1].iter().product()
        }
    }
    pub fn row(&self, i: usize) -> &[f32] {
        let c = self.cols();
        &self.data()[i * c..(i + 1) * c]
    }
    /// Rows `start..start + len` of a 2-D view, copied (bf16 stays bf16).
    pub fn rows_slice(&self, start: usize, len: usize) -> Tensor {
        let c = self.cols();
        let range = start * c..(start + len) * c;
        Tensor {
            shape: vec![len, c],
            data: match &self.bf16 {
                Some(_) => Vec::new(),
                None => self.data[range.clone()].to_vec(),
            },
            bf16: self.bf16.as_ref().map(|b| b[range].to_vec()),
        }
    }

    /// First non-finite value as (flat index, value), if any.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        self.data()
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (i, self.data[i]))
    }

    /// Largest absolute difference to `other` (shapes must hold the same count).
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        assert_eq!(self.len(), other.len(), "max_abs_diff on different sizes");
        self.data()
            .iter()
            .zip(other.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}
