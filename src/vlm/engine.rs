//! The whole video-LLM on one executor: parameters loaded once, and each stage of the released
//! `forward()`'s token flow as a method (the golden tests call them one by one; `VideoLlm::ask`
//! strings them together).

use super::config::VlmConfig;
use super::decoder::{self, DecoderParams};
use super::intern_vit::{self, ProjectorParams, VitParams};
use super::ops::VlmOps;
use super::weights::WeightReader;
use crate::config::{ConfigPatch, LinvtConfig};
use crate::cpu::sample::SamplingParams;
use crate::error::{Error, Result};
use crate::linvt::forward::{self, Dims, ForwardOut, Want};
use crate::linvt::{Linvt, LinvtParams};
use crate::tensor::Tensor;
use crate::weights::TensorStore;

pub struct Engine<O: VlmOps> {
    pub ops: O,
    pub config: VlmConfig,
    pub linvt_config: LinvtConfig,
    pub vit: VitParams<O::T>,
    pub projector: ProjectorParams<O::T>,
    pub linvt: LinvtParams<O::T>,
    pub decoder: DecoderParams<O::T>,
}

/// How to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops after any of these ids (it is kept in the output).
    pub stop_ids: Vec<u32>,
    /// Also read back every step's logits (tests).
    pub keep_step_logits: bool,
}

/// What generation produced.
#[derive(Clone, Debug, Default)]
pub struct Generated {
    pub ids: Vec<u32>,
    /// (vocab) per step when asked for.
    pub step_logits: Vec<Tensor>,
    /// Milliseconds of the prefill and of the decode steps.
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64()
            * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        0.0
    }
}

impl<O: VlmOps> Engine<O> {
    /// Loads every part's weights from `store` onto `ops`. `on_tensor` is called per tensor read.
    pub fn load(
        mut ops: O,
        store: &TensorStore,
        config: VlmConfig,
        on_tensor: &mut dyn FnMut(),
    ) -> Result<Self> {
        let (linvt, _report) = Linvt::from_store(store, &ConfigPatch::default())?;
        if linvt.num_queries() != config.num_video_query_token {
            return Err(Error::config(format!(
                "num_video_query_token is {} but query_tokens holds {} queries",
                config.num_video_query_token,
                linvt.num_queries()
            )));
        }
        if linvt.config().embed_size != config.llm.hidden_size {
            return Err(Error::config(format!(
                "the LinVT width {} differs from the LLM hidden size {}",
                linvt.config().embed_size,
                config.llm.hidden_size
            )));
        }
        let linvt_config = linvt.config().clone();
        let linvt_params = linvt
            .params()
            .try_map_roles(|t, role| ops.upload_weight(t.clone(), role))?;
        drop(linvt);
        let mut upload = |t: Tensor, role| ops.upload_weight(t, role);
        let mut r = WeightReader::new(store, &mut upload);
        r.on_tensor = Some(on_tensor);
        let vit = VitParams::load(&mut r, &config)?;
        let projector = ProjectorParams::load(&mut r, &config)?;
        let decoder = DecoderParams::load(&mut r, &config.llm)?;
        Ok(Engine {
            ops,
            config,
            linvt_config,
            vit,
            projector,
            linvt: linvt_params,
            decoder,
        })
    }

    /// InternViT on pixel values (F, 3, S, S): hidden states after `select_layer`, CLS
    /// included, (F·(1 + P), C).
    pub fn encode(&mut self, pixels: &Tensor) -> Result<O::T> {
        let frames = pixels.shape().first().copied().unwrap_or(0);
        let patches = intern_vit::patchify(pixels, &self.config.vision)?;
        let patches = self.ops.upload(patches)?;
        intern_vit::encode(
            &mut self.ops,
            &self.vit,
            &self.config.vision,
            &patches,
            frames,
        )
    }

    /// Pixel shuffle + `mlp1`: (F·(1 + P), C) → visual tokens (F·N, E).
    pub fn project(&mut self, hidden: &O::T, frames: usize) -> Result<O::T> {
        intern_vit::project(&mut self.ops, &self.projector, &self.config, hidden, frames)
    }

    /// `encode` then `project`.
    pub fn vision(&mut self, pixels: &Tensor) -> Result<O::T> {
        let frames = pixels.shape().first().copied().unwrap_or(0);
        let h = self.encode(pixels)?;
        self.project(&h, frames)
    }

    /// Input embeddings of token ids (R, H), gathered from the table on the executor.
    pub fn embed(&mut self, ids: &[u32]) -> Result<O::T> {
        let table = self.decoder.embed_table();
        self.ops.gather_rows(table, ids)
    }

    /// LinVT on visual tokens (F·N, E) conditioned on text embeddings (L, E).
    pub fn condense(
        &mut self,
        visual: &O::T,
        frames: usize,
        text: &O::T,
        want: Want,
    ) -> Result<ForwardOut<O>> {
        let dims = self.linvt_dims(frames, text);
        forward::forward(
            &mut self.ops,
            &self.linvt_config,
            &self.linvt,
            visual,
            text,
            dims,
            self.config.num_video_query_token,
            want,
        )
    }

    /// LinVT's sizes for a clip of `frames` frames conditioned on `text`.
    pub fn linvt_dims(&self, frames: usize, text: &O::T) -> Dims {
        let tokens = self.config.tokens_per_frame();
        Dims {
            frames,
            tokens,
            text_len: self.ops.row_count(text),
            k: self.linvt_config.top_k.min(frames * tokens),
        }
    }

    /// The prompt's input embeddings with `visual` rows written at `positions`.
    pub fn prompt_embeds(&mut self, ids: &[u32], positions: &[u32], visual: &O::T) -> Result<O::T> {
        let e = self.embed(ids)?;
        self.ops.scatter_rows(&e, positions, visual)
    }

    /// An empty KV cache for `capacity` positions.
    pub fn new_cache(&mut self, capacity: usize) -> Result<O::Kv> {
        decoder::kv_cache(&mut self.ops, &self.config.llm, capacity)
    }

    /// Decoder + final norm on embeddings at positions position..position+R.
    pub fn decode(&mut self, x: &O::T, cache: &mut O::Kv, position: usize) -> Result<O::T> {
        decoder::forward(
            &mut self.ops,
            &self.decoder,
            &self.config.llm,
            x,
            cache,
            position,
        )
    }

    /// Logits (R, vocab) of final hidden states.
    pub fn logits(&mut self, hidden: &O::T) -> Result<O::T> {
        decoder::logits(&mut self.ops, &self.decoder, hidden)
    }

    /// Prefill of the prompt embeddings, then token-by-token decoding with the KV cache until a
    /// stop id or `max_new_tokens`. `on_token` sees each id as it is chosen.
    pub fn generate(
        &mut self,
        embeds: &O::T,
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generated> {
        let len = self.ops.row_count(embeds);
        let max_pos = self.config.llm.max_positions;
        if len >= max_pos {
            return Err(Error::input(format!(
                "the prompt has {len} tokens but the model's context holds {max_pos}; shorten the question"
            )));
        }
        let capacity = (len + opts.max_new_tokens).min(max_pos);
        let mut cache = self.new_cache(capacity)?;
        let mut out = Generated::default();
        let t0 = now_ms();
        let hidden = self.decode(embeds, &mut cache, 0)?;
        let last = self.ops.rows(&hidden, len - 1, 1);
        let mut logits = self.logits(&last)?;
        out.prefill_ms = now_ms() - t0;
        let t1 = now_ms();
        let mut rng = crate::rand::SeededRng::new(opts.sampling.seed);
        for position in len..len + opts.max_new_tokens {
            if opts.keep_step_logits {
                out.step_logits.push(self.ops.read_back(&logits)?);
            }
            let id = self.ops.sample(&logits, &opts.sampling, rng.uniform())?;
            out.ids.push(id);
            on_token(id);
            // Stop at a stop id, a full context, or the last requested token (whose successor's
            // logits would never be used).
            let last = position + 1 == len + opts.max_new_tokens;
            if opts.stop_ids.contains(&id) || position >= capacity || last {
                break;
            }
            let x = self.embed(&[id])?;
            let hidden = self.decode(&x, &mut cache, position)?;
            logits = self.logits(&hidden)?;
        }
        out.decode_ms = now_ms() - t1;
        Ok(out)
    }
}
