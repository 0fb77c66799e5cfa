//! The CPU executor of the video-LLM: `VlmOps` for the LinVT CPU executor, every op by its
//! reference twin in `crate::cpu`.

use crate::cpu;
use crate::cpu::kv_attention::KvGeometry;
use crate::error::{Error, Result};
use crate::linvt::cpu_exec::CpuOps;
use crate::ops::VlmOps;
use crate::ops::{Rope, SamplingParams};
use crate::tensor::Tensor;

/// Keys and values per layer: (capacity, kv_heads · head_dim) each.
pub struct CpuKvCache {
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

fn two_d(x: Tensor) -> Result<Tensor> {
    let (r, c) = (x.rows(), x.cols());
    if x.shape().len() <= 2 {
        Ok(x)
    } else {
        x.reshape(&[r, c])
    }
}

fn same_shape(x: &Tensor, data: Vec<f32>) -> Result<Tensor> {
    Tensor::new(x.shape().to_vec(), data)
}

impl VlmOps for CpuOps {
    type Kv = CpuKvCache;

    fn upload(&mut self, t: Tensor) -> Result<Tensor> {
        two_d(t)
    }

    fn read_back(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn reshape(&mut self, x: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
        x.clone().reshape(&[rows, cols])
    }

    fn gather_rows(&mut self, x: &Tensor, ids: &[u32]) -> Result<Tensor> {
        let (rows, cols) = (x.rows(), x.cols());
        let mut data = Vec::with_capacity(ids.len() * cols);
        for &id in ids {
            if id as usize >= rows {
                return Err(Error::input(format!(
                    "row id {id} is out of range for a table of {rows} rows (a token id beyond the vocabulary?)"
                )));
            }
            data.extend_from_slice(x.row(id as usize));
        }
        Tensor::new(vec![ids.len(), cols], data)
    }

    fn scatter_rows(&mut self, dst: &Tensor, positions: &[u32], src: &Tensor) -> Result<Tensor> {
        if src.rows() != positions.len() || src.cols() != dst.cols() {
            return Err(Error::input(format!(
                "scatter_rows: {} positions for a ({}, {}) source into rows of {}",
                positions.len(),
                src.rows(),
                src.cols(),
                dst.cols()
            )));
        }
        let mut out = dst.clone();
        let c = dst.cols();
        for (i, &p) in positions.iter().enumerate() {
            let p = p as usize;
            if p >= dst.rows() {
                return Err(Error::input(format!(
                    "scatter_rows: position {p} is beyond {} rows",
                    dst.rows()
                )));
            }
            out.data_mut()[p * c..(p + 1) * c].copy_from_slice(src.row(i));
        }
        Ok(out)
    }

    fn layer_norm(&mut self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        let y = cpu::norm::layer_norm(x.data(), None, w.data(), b.data(), x.cols(), eps);
        same_shape(x, y)
    }

    fn rms_norm(&mut self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
        same_shape(x, cpu::norm::rms_norm(x.data(), w.data(), x.cols(), eps))
    }

    fn gelu(&mut self, x: &Tensor) -> Result<Tensor> {
        same_shape(x, cpu::elementwise::gelu(x.data()))
    }

    fn swiglu(&mut self, x: &Tensor) -> Result<Tensor> {
        let width = x.cols() / 2;
        let y = cpu::elementwise::swiglu(x.data(), width);
        Tensor::new(vec![x.rows(), width], y)
    }

    fn residual_add(&mut self, x: &Tensor, y: &Tensor, gamma: Option<&Tensor>) -> Result<Tensor> {
        if y.cols() != x.cols() || y.is_empty() || !x.rows().is_multiple_of(y.rows()) {
            return Err(Error::input(format!(
                "residual_add: {:?} cannot be added to {:?}",
                y.shape(),
                x.shape()
            )));
        }
        let out =
            cpu::elementwise::residual_add(x.data(), y.data(), gamma.map(Tensor::data), x.cols());
        same_shape(x, out)
    }

    fn round_bf16(&mut self, x: &Tensor) -> Result<Tensor> {
        same_shape(x, cpu::elementwise::round_bf16(x.data()))
    }

    fn rope(
        &mut self,
        x: &Tensor,
        heads: usize,
        head_dim: usize,
        position: usize,
        rope: &Rope,
    ) -> Result<Tensor> {
        if head_dim == 0 || rope.head_dim() != head_dim || x.cols() != heads * head_dim {
            return Err(Error::input(format!(
                "rope: x {:?} must hold rows of {heads} heads × {head_dim} values, rotated by a RoPE of head_dim {}",
                x.shape(),
                rope.head_dim()
            )));
        }
        let mut y = x.clone();
        cpu::rope::rope_with(y.data_mut(), heads, position, rope);
        Ok(y)
    }

    fn kv_cache(
        &mut self,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Result<CpuKvCache> {
        let size = capacity * kv_heads * head_dim;
        Ok(CpuKvCache {
            kv_heads,
            head_dim,
            capacity,
            keys: vec![vec![0.0; size]; layers],
            values: vec![vec![0.0; size]; layers],
        })
    }

    fn qkv_to_cache(
        &mut self,
        cache: &mut CpuKvCache,
        layer: usize,
        position: usize,
        qkv: &Tensor,
        heads: usize,
        rope: &Rope,
    ) -> Result<Tensor> {
        let (kv_heads, d) = (cache.kv_heads, cache.head_dim);
        let (qw, kw) = (heads * d, kv_heads * d);
        if qkv.cols() != qw + 2 * kw {
            return Err(Error::input(format!(
                "qkv_to_cache: qkv {:?} must hold rows of {heads} + 2·{kv_heads} heads × {d} values",
                qkv.shape()
            )));
        }
        let rows = qkv.rows();
        let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for row in qkv.data().chunks(qw + 2 * kw) {
            q.extend_from_slice(&row[..qw]);
            k.extend_from_slice(&row[qw..qw + kw]);
            v.extend_from_slice(&row[qw + kw..]);
        }
        let q = self.rope(&Tensor::new(vec![rows, qw], q)?, heads, d, position, rope)?;
        let k = self.rope(
            &Tensor::new(vec![rows, kw], k)?,
            kv_heads,
            d,
            position,
            rope,
        )?;
        self.kv_write(cache, layer, position, &k, &Tensor::new(vec![rows, kw], v)?)?;
        Ok(q)
    }

    fn kv_write(
        &mut self,
        cache: &mut CpuKvCache,
        layer: usize,
        position: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<()> {
        let w = cache.kv_heads * cache.head_dim;
        crate::ops::check_kv_write(
            w,
            cache.keys.len(),
            cache.capacity,
            layer,
            position,
            (k.rows(), k.cols()),
            (v.rows(), v.cols()),
        )?;
        cache.keys[layer][position * w..][..k.len()].copy_from_slice(k.data());
        cache.values[layer][position * w..][..v.len()].copy_from_slice(v.data());
        Ok(())
    }

    fn kv_attention(
        &mut self,
        cache: &CpuKvCache,
        layer: usize,
        q: &Tensor,
        position: usize,
        heads: usize,
    ) -> Result<Tensor> {
        let g = KvGeometry {
            heads,
            kv_heads: cache.kv_heads,
            head_dim: cache.head_dim,
            position,
        };
        if q.cols() != heads * cache.head_dim || position + q.rows() > cache.capacity {
            return Err(Error::input(format!(
                "kv_attention: q {:?} at position {position} does not fit {heads} heads of {} in a cache of {}",
                q.shape(),
                cache.head_dim,
                cache.capacity
            )));
        }
        let out = cpu::kv_attention::causal_attention(
            q.data(),
            &cache.keys[layer],
            &cache.values[layer],
            &g,
        );
        same_shape(q, out)
    }

    fn read_back_indices(&mut self, idx: &Vec<u32>) -> Result<Vec<u32>> {
        Ok(idx.clone())
    }

    fn sample(&mut self, logits: &Tensor, p: &SamplingParams, uniform: f32) -> Result<u32> {
        Ok(cpu::sample::sample(logits.data(), p, uniform))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_cache_round_trip_matches_twin() {
        let mut ops = CpuOps::new();
        let mut cache = ops.kv_cache(1, 1, 2, 3).unwrap();
        let k = Tensor::new(vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        let v = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        ops.kv_write(&mut cache, 0, 0, &k, &v).unwrap();
        let q = Tensor::new(vec![1, 2], vec![0.0, 0.0]).unwrap();
        // Equal scores at position 1: the mean of both values.
        let out = ops.kv_attention(&cache, 0, &q, 1, 1).unwrap();
        assert_eq!(out.data(), &[2.0, 3.0]);
        // Writing past the capacity is an error, not a panic.
        assert!(ops.kv_write(&mut cache, 0, 2, &k, &v).is_err());
    }

    #[test]
    fn gather_rejects_out_of_range_ids() {
        let mut ops = CpuOps::new();
        let t = Tensor::new(vec![2, 1], vec![5.0, 6.0]).unwrap();
        assert_eq!(
            ops.gather_rows(&t, &[1, 0, 1]).unwrap().data(),
            &[6.0, 5.0, 6.0]
        );
        assert!(ops.gather_rows(&t, &[2]).is_err());
    }
}
