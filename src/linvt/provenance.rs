//! Provenance: for each output token, the weights over input cells (frame, token) that it
//! averages. Composed on the host from the aggregation weights, the selected indices and the
//! pooling windows. In the `paper` preset (tokens gathered from the input) these weights
//! reproduce every head slice of the output exactly from the input tokens.

use super::forward::{Dims, ForwardOut, TtaRun};
use crate::ops::Ops;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct Provenance {
    pub heads: usize,
    pub rows: usize,
    pub frames: usize,
    pub tokens: usize,
    /// (heads, rows, frames·tokens).
    pub per_head: Vec<f32>,
    /// Head-averaged: (rows, frames·tokens).
    pub mean: Vec<f32>,
}

impl Provenance {
    /// Weights of output row `row`, head `head`, over the flat cells t·N + n.
    pub fn head_row(&self, head: usize, row: usize) -> &[f32] {
        let tn = self.frames * self.tokens;
        let at = (head * self.rows + row) * tn;
        &self.per_head[at..at + tn]
    }
    pub fn mean_row(&self, row: usize) -> &[f32] {
        let tn = self.frames * self.tokens;
        &self.mean[row * tn..(row + 1) * tn]
    }
}

/// For each pooled row: the (flat cell, weight) pairs it averages.
fn pooled_sources(indices: &[u32], k: usize, scales: &[usize]) -> Vec<Vec<(usize, f32)>> {
    let mut rows = Vec::new();
    for &s in scales {
        for w in 0..k / s {
            rows.push(
                (0..s)
                    .map(|m| (indices[w * s + m] as usize, 1.0 / s as f32))
                    .collect(),
            );
        }
    }
    rows
}

pub struct ComposeInput<'a> {
    pub heads: usize,
    pub frames: usize,
    pub tokens: usize,
    pub num_queries: usize,
    pub indices: &'a [u32],
    pub k: usize,
    pub runs: &'a [TtaRun],
    pub scales_before: &'a [usize],
    pub scales_after: &'a [usize],
    /// Per run: (heads, queries, run tokens).
    pub probs: &'a [Tensor],
}

/// The provenance of one forward's output: `indices` and `probs` are its selected indices and
/// aggregation weights read back to the host.
pub fn of_forward<O: Ops>(
    heads: usize,
    num_queries: usize,
    dims: Dims,
    f: &ForwardOut<O>,
    indices: &[u32],
    probs: &[Tensor],
) -> Provenance {
    compose(&ComposeInput {
        heads,
        frames: dims.frames,
        tokens: dims.tokens,
        num_queries,
        indices,
        k: dims.k,
        runs: &f.runs,
        scales_before: &f.scales_before,
        scales_after: &f.scales_after,
        probs,
    })
}

pub fn compose(c: &ComposeInput) -> Provenance {
    let tn = c.frames * c.tokens;
    let sources = pooled_sources(c.indices, c.k, c.scales_before);
    let mut per_head = vec![0.0f32; c.heads * c.num_queries * tn];
    for (run, probs) in c.runs.iter().zip(c.probs) {
        let (q0, nq) = run.queries;
        let (r0, nr) = run.tokens;
        for h in 0..c.heads {
            for i in 0..nq {
                let dst = &mut per_head[(h * c.num_queries + q0 + i) * tn..][..tn];
                let w = &probs.data()[(h * nq + i) * nr..][..nr];
                for (j, &p) in w.iter().enumerate() {
                    for &(cell, frac) in &sources[r0 + j] {
                        dst[cell] += p * frac;
                    }
                }
            }
        }
    }
    // Multi-A pools the outputs themselves: average the rows of each window.
    let (rows, per_head) = if c.scales_after.is_empty() {
        (c.num_queries, per_head)
    } else {
        let windows: Vec<(usize, usize)> = c
            .scales_after
            .iter()
            .flat_map(|&s| (0..c.num_queries / s).map(move |w| (w * s, s)))
            .collect();
        let mut pooled = vec![0.0f32; c.heads * windows.len() * tn];
        for h in 0..c.heads {
            for (r, &(start, s)) in windows.iter().enumerate() {
                let dst = &mut pooled[(h * windows.len() + r) * tn..][..tn];
                for m in 0..s {
                    let src = &per_head[(h * c.num_queries + start + m) * tn..][..tn];
                    for (d, v) in dst.iter_mut().zip(src) {
                        *d += v / s as f32;
                    }
                }
            }
        }
        (windows.len(), pooled)
    };
    let mut mean = vec![0.0f32; rows * tn];
    for h in 0..c.heads {
        for (m, v) in mean
            .iter_mut()
            .zip(&per_head[h * rows * tn..(h + 1) * rows * tn])
        {
            *m += v / c.heads as f32;
        }
    }
    Provenance {
        heads: c.heads,
        rows,
        frames: c.frames,
        tokens: c.tokens,
        per_head,
        mean,
    }
}
