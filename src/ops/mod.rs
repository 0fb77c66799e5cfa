//! The op vocabulary and the op traits every forward is written against, once: LinVT's
//! (`Ops`) and the video-LLM's (`VlmOps`, which extends it). The CPU executor (`crate::cpu`
//! twins) and the GPU executor (`crate::gpu` kernels) implement them; models and hosts use
//! them. Layers point one way: app → hosts/models → runtime → these traits → executors.

mod base;
mod geometry;
mod storage;
mod vlm;

pub use base::{KeepAwake, Ops};
pub use geometry::{AttnGeometry, Operand};
pub use storage::{Activations, Products, WeightChoice, WeightStorage};
pub use vlm::{check_blocks, check_kv_write, VlmOps};

use crate::error::{Error, Result};

/// (source row, destination row) pairs of a row copy (`Ops::assemble_rows`).
pub type RowPairs = Vec<(u32, u32)>;

/// Where code runs: the CPU executor (plain Rust) or a GPU executor (WGSL kernels through wgpu).
/// The one type for it, from the library to the CLI flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Device {
    Cpu,
    Gpu,
}

/// A LayerNorm's parameters (weight and bias).
#[derive(Clone, Debug)]
pub struct Norm<T> {
    pub weight: T,
    pub bias: T,
}

/// What a parameter is used as, for conversions that treat them differently (e.g. f16 storage
/// of the linear weights only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The W of a linear layer (N, K): read only by `linear`.
    LinearWeight,
    /// A (rows, cols) table read by rows with `gather_rows` (an embedding), and perhaps also as
    /// the W of `linear` (a tied output head).
    Table,
    /// Biases, norm parameters and the query tokens (used as activations).
    Other,
}

/// A decoder's rotary position embedding ("rotate half", as Hugging Face Qwen2/LLaMA/Phi-3):
/// the inverse frequency θ_d of each rotary pair d < head_dim/2, a factor both cos and sin are
/// multiplied by (1, except for scaled variants such as Phi-3's longrope), and which position
/// axis each pair follows. Position p rotates pair d by the angle p·θ_d, p being the row's
/// position on pair d's axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub inv_freq: Vec<f64>,
    pub scale: f64,
    /// Rotary pairs per position axis, in order (they sum to head_dim/2): one axis for plain
    /// RoPE; Qwen2-VL's multimodal RoPE has three (`mrope_section`: temporal, height, width).
    pub sections: Vec<usize>,
}

impl Rope {
    /// Plain RoPE: θ_d = theta^(−2d/head_dim), no scaling, one position axis.
    pub fn new(head_dim: usize, theta: f64) -> Self {
        Rope {
            inv_freq: (0..head_dim / 2)
                .map(|d| 1.0 / theta.powf((2 * d) as f64 / head_dim as f64))
                .collect(),
            scale: 1.0,
            sections: vec![head_dim / 2],
        }
    }

    /// This rotation with its pairs split over several position axes (`sections[a]` pairs
    /// follow axis a). Errors unless they cover every pair.
    pub fn with_sections(mut self, sections: &[usize]) -> Result<Self> {
        let total = sections.iter().try_fold(0usize, |a, &n| a.checked_add(n));
        if sections.is_empty() || total != Some(self.inv_freq.len()) {
            return Err(Error::config(format!(
                "rotary sections {sections:?} must add up to the {} rotary pairs (head_dim / 2)",
                self.inv_freq.len()
            )));
        }
        self.sections = sections.to_vec();
        Ok(self)
    }

    /// The head dimension this rotates (two values per pair).
    pub fn head_dim(&self) -> usize {
        2 * self.inv_freq.len()
    }

    /// Position axes per row.
    pub fn axes(&self) -> usize {
        self.sections.len()
    }

    /// The position axis of each rotary pair.
    pub fn pair_axes(&self) -> Vec<usize> {
        self.sections
            .iter()
            .enumerate()
            .flat_map(|(axis, &n)| std::iter::repeat_n(axis, n))
            .collect()
    }

    /// (cos, sin) of the angles p·θ_d at `position` (every pair), computed in f64, times
    /// `scale`, rounded to f32: the numbers every executor rotates by (the GPU reads them from a
    /// table of these).
    pub fn cos_sin(&self, position: usize) -> (Vec<f32>, Vec<f32>) {
        let p = position as f64;
        self.inv_freq
            .iter()
            .map(|f| {
                let (s, c) = (p * f).sin_cos();
                ((c * self.scale) as f32, (s * self.scale) as f32)
            })
            .unzip()
    }

    /// (cos, sin) for a row at `row` (one position per axis): pair d at its axis's position.
    pub fn cos_sin_at(&self, row: &[u32]) -> (Vec<f32>, Vec<f32>) {
        self.pair_axes()
            .iter()
            .zip(&self.inv_freq)
            .map(|(&axis, f)| {
                let (s, c) = (row[axis] as f64 * f).sin_cos();
                ((c * self.scale) as f32, (s * self.scale) as f32)
            })
            .unzip()
    }

    /// Checks that `positions` fit this rotation and `rows` rows.
    pub fn check(&self, positions: &Positions, rows: usize, what: &str) -> Result<()> {
        if positions.axes() != self.axes() || positions.rows() != rows {
            return Err(Error::input(format!(
                "{what}: {} rows with {} position axes given for {rows} rows of a rotation over {} axes",
                positions.rows(),
                positions.axes(),
                self.axes()
            )));
        }
        Ok(())
    }
}

/// The rotary positions of R rows: `axes` ids per row, row-major — one for plain RoPE, three
/// (temporal, height, width) for Qwen2-VL's multimodal RoPE, where a video's tokens share
/// temporal ids and text after it resumes past the largest. Distinct from the rows' KV-cache
/// slots, which always run 0, 1, 2, …
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Positions {
    ids: Vec<u32>,
    axes: usize,
}

impl Positions {
    /// Rows start..start+rows on one axis (plain RoPE).
    pub fn range(start: usize, rows: usize) -> Self {
        Positions {
            ids: (start..start + rows).map(|p| p as u32).collect(),
            axes: 1,
        }
    }

    /// `ids` of rows of `axes` positions each.
    pub fn new(ids: Vec<u32>, axes: usize) -> Result<Self> {
        if axes == 0 || !ids.len().is_multiple_of(axes) {
            return Err(Error::input(format!(
                "{} position ids do not make rows of {axes} axes",
                ids.len()
            )));
        }
        Ok(Positions { ids, axes })
    }

    /// The same axis count for every row, `axes` copies of each of `range`'s ids (text in a
    /// multimodal-RoPE sequence).
    pub fn range_on_axes(start: usize, rows: usize, axes: usize) -> Self {
        Positions {
            ids: (start..start + rows)
                .flat_map(|p| std::iter::repeat_n(p as u32, axes))
                .collect(),
            axes,
        }
    }

    pub fn rows(&self) -> usize {
        self.ids.len() / self.axes
    }

    pub fn axes(&self) -> usize {
        self.axes
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Row r's positions, one per axis.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.ids[r * self.axes..(r + 1) * self.axes]
    }

    /// Rows start..start+len.
    pub fn slice(&self, start: usize, len: usize) -> Self {
        Positions {
            ids: self.ids[start * self.axes..(start + len) * self.axes].to_vec(),
            axes: self.axes,
        }
    }

    /// One past the largest id (0 when empty): the positions a cos/sin table must cover, and
    /// the sequence length that longrope's choice of factors goes by.
    pub fn end(&self) -> usize {
        self.ids.iter().max().map_or(0, |&m| m as usize + 1)
    }
}

/// Which axis of a (T, N, ·) tensor a self-attention runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Over the T frames, independently for each token position n.
    Frames,
    /// Over the N tokens, independently for each frame t.
    Tokens,
}

/// Order of the selected indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopKOrder {
    /// Descending score; equal scores by ascending flat index (torch.topk's order here).
    Score,
    /// Ascending flat index t·N + n (spatio-temporal order).
    Index,
}

/// `k = min(top_k, T·N)`: the tokens a top-k keeps from a clip of `tokens` scores (a short clip
/// still works; the caller reports the clamp).
pub fn clamp_k(top_k: usize, tokens: usize) -> usize {
    top_k.min(tokens)
}

/// Checks `k` against the number of scores (shared with the GPU dispatch).
pub fn check_k(k: usize, len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::input(
            "top-k needs at least one score, got an empty score list",
        ));
    }
    if k == 0 || k > len {
        return Err(Error::input(format!(
            "top-k: k = {k} is out of range; it must be between 1 and the number of scores ({len})"
        )));
    }
    Ok(())
}

/// How to pick the next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = no top-k filter.
    pub top_k: usize,
    /// 1 = no nucleus filter.
    pub top_p: f32,
    /// Seeds the host generator that supplies each step's uniform number.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}
