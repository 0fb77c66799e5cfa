//! The CPU executor: every op by the reference implementations in `crate::cpu`.

use crate::cpu;
use crate::error::{Error, Result};
use crate::ops::Norm;
use crate::ops::Ops;
use crate::ops::TopKOrder;
use crate::ops::{AttnGeometry, Axis};
use crate::tensor::Tensor;
use crate::timing::StageClock;

#[derive(Default)]
pub struct CpuOps {
    pub clock: StageClock,
}

impl CpuOps {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Ops for CpuOps {
    type T = Tensor;
    type Idx = Vec<u32>;

    fn linear(&mut self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let (m, k, n) = (x.rows(), x.cols(), w.rows());
        if w.cols() != k {
            return Err(Error::input(format!(
                "linear: x has {k} columns but the weight has {}",
                w.cols()
            )));
        }
        let y = cpu::linear::linear(x.data(), w.data(), b.map(Tensor::data), m, n, k);
        Tensor::new(vec![m, n], y)
    }

    fn row_count(&self, x: &Tensor) -> usize {
        x.rows()
    }

    fn rows(&mut self, x: &Tensor, start: usize, len: usize) -> Tensor {
        if x.shape().len() == 1 {
            Tensor::new(vec![len], x.data()[start..start + len].to_vec())
                .expect("slice length matches")
        } else {
            x.rows_slice(start, len)
        }
    }

    fn add_layer_norm(
        &mut self,
        x: &Tensor,
        residual: &Tensor,
        p: &Norm<Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        let y = cpu::norm::layer_norm(
            x.data(),
            Some(residual.data()),
            p.weight.data(),
            p.bias.data(),
            x.cols(),
            eps,
        );
        Tensor::new(vec![x.rows(), x.cols()], y)
    }

    fn self_attention(
        &mut self,
        qkv: &Tensor,
        frames: usize,
        tokens: usize,
        heads: usize,
        axis: Axis,
    ) -> Result<Tensor> {
        let e = qkv.cols() / 3;
        let g = AttnGeometry::along_axis(frames, tokens, e, heads, axis);
        let mut out = Tensor::zeros(&[frames * tokens, e]);
        cpu::attention::attention(qkv.data(), qkv.data(), qkv.data(), out.data_mut(), &g);
        Ok(out)
    }

    fn cross_attention(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
    ) -> Result<Tensor> {
        let g = AttnGeometry::cross(q.rows(), k.rows(), q.cols(), heads);
        let mut out = Tensor::zeros(&[q.rows(), q.cols()]);
        cpu::attention::attention(q.data(), k.data(), v.data(), out.data_mut(), &g);
        Ok(out)
    }

    fn attention_probs(&mut self, q: &Tensor, k: &Tensor, heads: usize) -> Result<Tensor> {
        let g = AttnGeometry::cross(q.rows(), k.rows(), q.cols(), heads);
        Tensor::new(
            vec![heads, q.rows(), k.rows()],
            cpu::attention::attention_probs(q.data(), k.data(), &g),
        )
    }

    fn top_k(
        &mut self,
        scores: &Tensor,
        k: usize,
        order: TopKOrder,
        tokens_per_frame: usize,
    ) -> Result<Vec<u32>> {
        cpu::topk::top_k(scores.data(), k, order, tokens_per_frame)
    }

    fn gather_pool(
        &mut self,
        x: &Tensor,
        idx: Option<&Vec<u32>>,
        count: usize,
        scales: &[usize],
    ) -> Result<Tensor> {
        let rows = cpu::window_pool::pooled_rows(count, scales);
        let y = cpu::window_pool::gather_pool(
            x.data(),
            x.cols(),
            idx.map(Vec::as_slice),
            count,
            scales,
        );
        Tensor::new(vec![rows, x.cols()], y)
    }

    fn concat_rows(&mut self, parts: &[Tensor]) -> Result<Tensor> {
        let cols = parts.first().map(Tensor::cols).unwrap_or(0);
        let rows = parts.iter().map(Tensor::rows).sum();
        let data = parts
            .iter()
            .flat_map(|p| p.data().iter().copied())
            .collect();
        Tensor::new(vec![rows, cols], data)
    }

    fn stage(&mut self, name: &str) -> Result<()> {
        self.clock.mark(Some(name));
        Ok(())
    }
}
