//! The benchmark shapes (`linvt bench --shape`) and their seeded models and inputs. Kept apart
//! from `bench` (native-only: its timing loop blocks) so the browser build times the same work.

use crate::config::{LinvtConfig, Preset};
use crate::error::Result;
use crate::linvt::{Linvt, LinvtParams};
use crate::rand::SeededRng;
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct BenchShape {
    pub name: &'static str,
    pub preset: Preset,
    pub frames: usize,
    pub tokens: usize,
    pub embed: usize,
    pub heads: usize,
    pub layers: usize,
    pub top_k: usize,
    pub queries: usize,
    pub queries_per_scale: Option<Vec<usize>>,
    pub text_len: usize,
}

impl BenchShape {
    /// The released module's configuration on a 16-frame clip (InternVL2-1B/Qwen2-0.5B width).
    pub fn official() -> Self {
        BenchShape {
            name: "official",
            preset: Preset::Official,
            frames: 16,
            tokens: 256,
            embed: 896,
            heads: 4,
            layers: 8,
            top_k: 1024,
            queries: 64,
            queries_per_scale: None,
            text_len: 64,
        }
    }
    /// The paper's configuration (8 heads, 4 layers, k 2048, 64/32/16 queries) on 8 frames.
    pub fn paper() -> Self {
        BenchShape {
            name: "paper",
            preset: Preset::Paper,
            frames: 8,
            tokens: 256,
            embed: 896,
            heads: 8,
            layers: 4,
            top_k: 2048,
            queries: 112,
            queries_per_scale: Some(vec![64, 32, 16]),
            text_len: 64,
        }
    }
    /// A quick shape for smoke runs.
    pub fn small() -> Self {
        BenchShape {
            name: "small",
            preset: Preset::Official,
            frames: 4,
            tokens: 64,
            embed: 128,
            heads: 4,
            layers: 2,
            top_k: 128,
            queries: 16,
            queries_per_scale: None,
            text_len: 16,
        }
    }

    pub fn config(&self) -> LinvtConfig {
        let mut c = LinvtConfig::preset(self.preset, self.embed);
        c.num_heads = self.heads;
        c.num_layers = self.layers;
        c.top_k = self.top_k;
        if self.queries_per_scale.is_some() {
            c.queries_per_scale = self.queries_per_scale.clone();
        }
        c
    }

    pub fn describe(&self) -> String {
        format!(
            "T{} N{} E{} h{} L{} k{} Q{} text{} ({})",
            self.frames,
            self.tokens,
            self.embed,
            self.heads,
            self.layers,
            self.top_k,
            self.queries,
            self.text_len,
            self.name
        )
    }

    /// Seeded model and inputs for this shape.
    pub fn model_and_inputs(&self, seed: u64) -> Result<(Linvt, Tensor, Tensor)> {
        let cfg = self.config();
        let params = LinvtParams::seeded(&cfg, self.queries, seed);
        let model = Linvt::new(cfg, params)?;
        let mut rng = SeededRng::new(seed + 1);
        let video = Tensor::new(
            vec![self.frames, self.tokens, self.embed],
            rng.vec(self.frames * self.tokens * self.embed, 1.0),
        )?;
        let text = Tensor::new(
            vec![self.text_len, self.embed],
            rng.vec(self.text_len * self.embed, 1.0),
        )?;
        Ok((model, video, text))
    }
}
