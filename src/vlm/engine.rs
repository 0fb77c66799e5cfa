//! The whole video-LLM on one executor: parameters loaded once, and each stage of the released
//! `forward()`'s token flow as a method (the golden tests call them one by one; `VideoLlm::ask`
//! strings them together).

use super::config::{Host, VlmConfig};
use super::decoder::{self, DecoderParams};
use super::layout::Layout;
use super::lora::Lora;
use super::qwen2::Span;
use super::vision::{self, Vision};
use super::weights::WeightReader;
use crate::config::{ConfigPatch, LinvtConfig};
use crate::error::{Error, Result};
use crate::linvt::forward::{self, Dims, ForwardOut, Want};
use crate::linvt::split::Tiled;
use crate::linvt::{Linvt, LinvtParams};
use crate::ops::{Positions, SamplingParams, VlmOps};
use crate::tensor::Tensor;
use crate::weights::TensorStore;

/// A LinVT module attached to the host: its config and parameters on the executor.
pub struct LinvtModule<T> {
    pub config: LinvtConfig,
    pub params: LinvtParams<T>,
    /// Q': the video tokens it writes into the prompt.
    pub queries: usize,
}

pub struct Engine<O: VlmOps> {
    pub ops: O,
    pub config: VlmConfig,
    /// The host's vision encoder and projector.
    pub vision: Vision<O::T>,
    /// None: videos take the host's own path (every frame's tokens in the prompt).
    pub linvt: Option<LinvtModule<O::T>>,
    pub decoder: DecoderParams<O::T>,
}

/// Where the weights of an [`Engine`] come from besides the model's own store.
#[derive(Default)]
pub struct EngineSources<'a> {
    /// The LinVT module: a store holding `linVT.*` and `query_tokens` (the model's own store for
    /// a LinVT checkpoint, or a plug-in file); None runs without LinVT.
    pub linvt: Option<&'a TensorStore>,
    /// A LoRA adapter merged into the weights it targets as they are read.
    pub lora: Option<&'a Lora>,
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

/// Why generation stopped (OpenAI's `finish_reason`, plus the context limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop id (end of turn) was generated.
    #[default]
    Stop,
    /// `max_new_tokens` were generated.
    Length,
    /// The model's context is full (`max_position_embeddings`).
    Context,
}

impl FinishReason {
    /// "stop", "length" or "context".
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Context => "context",
        }
    }
}

/// What generation produced.
#[derive(Clone, Debug, Default)]
pub struct Generated {
    pub ids: Vec<u32>,
    pub finish_reason: FinishReason,
    /// (vocab) per step when asked for.
    pub step_logits: Vec<Tensor>,
    /// Milliseconds of the prefill up to the first token's id (the time to first token, device
    /// work included) and of the decode steps after it.
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

fn now_ms() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<web_time::Instant> = OnceLock::new();
    START
        .get_or_init(web_time::Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1e3
}

impl<O: VlmOps> Engine<O> {
    /// Loads every part's weights from `store` onto `ops`, LinVT and a LoRA from `sources`.
    /// `on_tensor` is called per tensor read.
    pub fn load(
        mut ops: O,
        store: &TensorStore,
        config: VlmConfig,
        sources: &EngineSources,
        on_tensor: &mut dyn FnMut(),
    ) -> Result<Self> {
        let linvt = match sources.linvt {
            None => None,
            Some(linvt_store) => {
                let module = load_linvt(linvt_store, &config)?;
                let params = module
                    .params()
                    .try_map_roles(|t, role| ops.upload_weight(t.clone(), role))?;
                Some(LinvtModule {
                    config: module.config().clone(),
                    queries: module.num_queries(),
                    params,
                })
            }
        };
        let mut upload = |t: Tensor, role| ops.upload_weight(t, role);
        let mut r = WeightReader::new(store, &mut upload);
        r.on_tensor = Some(on_tensor);
        r.lora = sources.lora;
        r.layout = match &config.host {
            Host::InternVl(c) => Layout::detect(store, c.hf_layout),
            Host::Qwen2Vl(_) => Layout::detect_qwen2_vl(store),
        };
        let vision = Vision::load(&mut r, &config)?;
        let decoder = decoder::load(&mut r, &config.llm)?;
        if let Some(lora) = sources.lora {
            lora.check_all_merged(&r.merged)?;
        }
        Ok(Engine {
            ops,
            config,
            vision,
            linvt,
            decoder,
        })
    }

    /// The vision encoder on preprocessed images (F, 3, S, S): its hidden states (for
    /// InternViT: after `select_layer`, CLS included, (F·(1 + P), C)).
    pub fn encode(&mut self, pixels: &Tensor) -> Result<O::T> {
        vision::encode(&mut self.ops, &self.vision, &self.config, pixels)
    }

    /// The projector on the encoder's hidden states of `frames` images: visual tokens (F·N, E).
    pub fn project(&mut self, hidden: &O::T, frames: usize) -> Result<O::T> {
        vision::project(&mut self.ops, &self.vision, &self.config, hidden, frames)
    }

    /// Qwen2-VL's vision tower on flattened patches of `grids` (see `vision::qwen2_tokens`),
    /// a run of temporal groups at a time when all at once would exceed the executor's binding
    /// limit (no attention crosses a temporal group, so the pieces compute the same).
    pub fn qwen2_vision(
        &mut self,
        pixels: &Tensor,
        grids: &[super::qwen2_vit::Grid],
    ) -> Result<O::T> {
        let parts = self.qwen2_vision_parts(pixels, grids)?;
        self.join(parts)
    }

    /// [`Self::qwen2_vision`] before the pieces are joined: each piece's tokens and how many
    /// temporal groups (a video's frames for LinVT) it holds.
    pub fn qwen2_vision_parts(
        &mut self,
        pixels: &Tensor,
        grids: &[super::qwen2_vit::Grid],
    ) -> Result<Vec<(O::T, usize)>> {
        use super::qwen2_vit::Grid;
        let v = &self.config.qwen2_vl()?.vision;
        // The widest activation: the MLP's hidden rows (gate | up stacked in 2.5), or the
        // merger's 4·width rows.
        let width = (2 * v.mlp).max(v.merge * v.merge * v.width);
        let budget = self.rows_per_op(width);
        let total: usize = grids.iter().map(Grid::patches).sum();
        if total <= budget {
            let groups = grids.iter().map(|g| g.t).sum();
            let tokens =
                vision::qwen2_tokens(&mut self.ops, &self.vision, &self.config, pixels, grids)?;
            return Ok(vec![(tokens, groups)]);
        }
        let cols = pixels.cols();
        let (mut parts, mut row) = (Vec::new(), 0);
        for g in grids {
            let per_group = g.h * g.w;
            let step = (budget / per_group.max(1)).max(1);
            for t0 in (0..g.t).step_by(step) {
                let piece = Grid {
                    t: step.min(g.t - t0),
                    ..*g
                };
                let rows = piece.patches();
                let data = pixels
                    .data()
                    .get(row * cols..(row + rows) * cols)
                    .ok_or_else(|| {
                        Error::input("the pixel values hold fewer patches than the grids")
                    })?
                    .to_vec();
                let part = Tensor::new(vec![rows, cols], data)?;
                let tokens = vision::qwen2_tokens(
                    &mut self.ops,
                    &self.vision,
                    &self.config,
                    &part,
                    &[piece],
                )?;
                parts.push((tokens, piece.t));
                row += rows;
            }
        }
        Ok(parts)
    }

    /// `encode` then `project`, a chunk of images at a time when all of them at once would
    /// exceed the executor's binding limit.
    pub fn vision(&mut self, pixels: &Tensor) -> Result<O::T> {
        let parts = self.vision_parts(pixels)?;
        self.join(parts)
    }

    /// [`Self::vision`] before the chunks are joined: each chunk's tokens and its image count.
    pub fn vision_parts(&mut self, pixels: &Tensor) -> Result<Vec<(O::T, usize)>> {
        let frames = pixels.shape().first().copied().unwrap_or(0);
        let (rows_per_frame, width) = vision::footprint(&self.config)?;
        let chunk = (self.rows_per_op(width) / rows_per_frame).max(1);
        if frames <= chunk {
            let h = self.encode(pixels)?;
            return Ok(vec![(self.project(&h, frames)?, frames)]);
        }
        let per_frame = pixels.len() / frames;
        let mut shape = pixels.shape().to_vec();
        let mut parts = Vec::new();
        for f0 in (0..frames).step_by(chunk) {
            let n = chunk.min(frames - f0);
            shape[0] = n;
            let data = pixels.data()[f0 * per_frame..(f0 + n) * per_frame].to_vec();
            let h = self.encode(&Tensor::new(shape.clone(), data)?)?;
            parts.push((self.project(&h, n)?, n));
        }
        Ok(parts)
    }

    /// The pieces' rows as one tensor.
    pub fn join(&mut self, mut parts: Vec<(O::T, usize)>) -> Result<O::T> {
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part").0);
        }
        let tensors: Vec<O::T> = parts.into_iter().map(|(t, _)| t).collect();
        self.ops.concat_rows(&tensors)
    }

    /// Waits until `t` is computed, by reading its first row back (a GPU executor records
    /// lazily: without this a stage's time would be its recording's). A copy on the CPU.
    pub async fn sync(&mut self, t: &O::T) -> Result<()> {
        let row = self.ops.rows(t, 0, 1);
        self.ops.read_back(&row).await.map(drop)
    }

    /// How many rows of `width` f32 values one op may write on this executor.
    fn rows_per_op(&self, width: usize) -> usize {
        self.ops.binding_limit().map_or(usize::MAX, |b| {
            (b / (4 * width.max(1) as u64)).max(1) as usize
        })
    }

    /// Input embeddings of token ids (R, H), gathered from the table on the executor.
    pub fn embed(&mut self, ids: &[u32]) -> Result<O::T> {
        self.ops.gather_rows(&self.decoder.embed, ids)
    }

    /// The attached LinVT module, or an error saying how to attach one.
    pub fn linvt(&self) -> Result<&LinvtModule<O::T>> {
        self.linvt.as_ref().ok_or_else(|| {
            Error::input(
                "this model runs without LinVT (a plain InternVL checkpoint, or --no-linvt); attach a LinVT module with --linvt FILE",
            )
        })
    }

    /// LinVT on visual tokens (F·N, E) of F frames (N tokens each, any N: InternVL's tiles or
    /// Qwen2-VL's temporal groups), held as one tensor or as blocks of frames
    /// ([`Tiled::whole`], [`Tiled::from_parts`]), conditioned on text embeddings (L, E).
    pub fn condense(
        &mut self,
        visual: &Tiled<O::T>,
        text: &O::T,
        want: Want,
    ) -> Result<ForwardOut<O>> {
        let frames = visual.layout.last().map_or(0, |t| t.frames.end);
        let tokens = visual.layout.first().map_or(0, |t| t.positions.len());
        let rows: usize = visual.tiles.iter().map(|t| self.ops.row_count(t)).sum();
        if frames == 0 || rows != frames * tokens {
            return Err(Error::input(format!(
                "{rows} visual tokens do not split into {frames} frames of {tokens}"
            )));
        }
        let dims = self.linvt_dims(frames, tokens, text)?;
        let m = self.linvt.as_ref().expect("linvt_dims checked it");
        forward::forward(
            &mut self.ops,
            &m.config,
            &m.params,
            visual,
            text,
            dims,
            m.queries,
            want,
        )
    }

    /// LinVT's sizes for a clip of `frames` frames of `tokens` tokens conditioned on `text`.
    pub fn linvt_dims(&self, frames: usize, tokens: usize, text: &O::T) -> Result<Dims> {
        let top_k = self.linvt()?.config.top_k;
        Ok(Dims {
            frames,
            tokens,
            text_len: self.ops.row_count(text),
            k: crate::ops::clamp_k(top_k, frames * tokens),
        })
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

    /// Decoder + final norm on embeddings at cache slots slot..slot+R, at rotary positions
    /// slot..slot+R.
    pub fn decode(&mut self, x: &O::T, cache: &mut O::Kv, slot: usize) -> Result<O::T> {
        let rows = self.ops.row_count(x);
        self.decode_at(x, cache, slot, &Positions::range(slot, rows))
    }

    /// Decoder + final norm on embeddings at cache slots slot..slot+R and rotary `positions`
    /// (a host with its own position scheme, such as Qwen2-VL's multimodal RoPE, passes them).
    /// The rotation is chosen for the whole pass (a longrope model's factors go by the
    /// sequence length the pass reaches, as transformers chooses them per forward call).
    /// Rows beyond the executor's binding limit are decoded a chunk at a time (each chunk
    /// attends to the cache the earlier ones filled: the same result as one pass).
    pub fn decode_at(
        &mut self,
        x: &O::T,
        cache: &mut O::Kv,
        slot: usize,
        positions: &Positions,
    ) -> Result<O::T> {
        let c = &self.config.llm;
        let rope = c.rope.for_length(positions.end());
        let qkv = (c.heads + 2 * c.kv_heads) * c.head_dim();
        let chunk = self.rows_per_op((2 * c.intermediate_size).max(qkv));
        let rows = self.ops.row_count(x);
        rope.check(positions, rows, "decode")?;
        let mut parts = Vec::new();
        for r0 in (0..rows).step_by(chunk) {
            let n = chunk.min(rows - r0);
            let part = self.ops.rows(x, r0, n);
            let pos = self.ops.positions(&positions.slice(r0, n))?;
            let h = decoder::forward(
                &mut self.ops,
                &self.decoder,
                &self.config.llm,
                &rope,
                &part,
                cache,
                slot + r0,
                &pos,
            )?;
            parts.push(h);
        }
        match parts.len() {
            1 => Ok(parts.remove(0)),
            _ => self.ops.concat_rows(&parts),
        }
    }

    /// Logits (R, vocab) of final hidden states.
    pub fn logits(&mut self, hidden: &O::T) -> Result<O::T> {
        decoder::logits(&mut self.ops, &self.decoder, hidden)
    }

    /// Prefill of the prompt embeddings, then token-by-token decoding with the KV cache until a
    /// stop id or `max_new_tokens`. `on_token` sees each id as it is chosen.
    pub async fn generate(
        &mut self,
        embeds: &O::T,
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generated> {
        let len = self.ops.row_count(embeds);
        self.generate_at(embeds, &Positions::range(0, len), 0, opts, on_token)
            .await
    }

    /// [`Self::generate`] with the prompt's rotary `positions` (a host's own scheme, e.g.
    /// Qwen2-VL's three axes); the token at slot n ≥ prompt length then sits at position
    /// n + `delta` on every axis.
    pub async fn generate_at(
        &mut self,
        embeds: &O::T,
        positions: &Positions,
        delta: i64,
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generated> {
        let mut seq = self.start(embeds, positions, delta, opts).await?;
        if let Some(&id) = seq.out.ids.first() {
            on_token(id);
        }
        while !seq.done {
            self.step(&mut [&mut seq]).await?;
            on_token(*seq.out.ids.last().expect("a step adds a token"));
        }
        Ok(seq.finish())
    }

    /// Starts generating after a prompt: its prefill (on the prompt embeddings at rotary
    /// `positions`; generated tokens then sit at slot + `delta`) and the first token. The
    /// sequence then takes one token per [`Self::step`] until `done`.
    pub async fn start(
        &mut self,
        embeds: &O::T,
        positions: &Positions,
        delta: i64,
        opts: &GenerateOptions,
    ) -> Result<Sequence<O::Kv>> {
        let len = self.ops.row_count(embeds);
        let max_pos = self.config.llm.max_positions;
        if len >= max_pos {
            return Err(Error::input(format!(
                "the prompt has {len} tokens but the model's context holds {max_pos}; shorten the question"
            )));
        }
        let capacity = (len + opts.max_new_tokens).min(max_pos);
        let cache = self.new_cache(capacity)?;
        let mut seq = Sequence {
            cache,
            prompt_len: len,
            delta,
            axes: positions.axes(),
            max_positions: max_pos,
            opts: opts.clone(),
            rng: crate::rand::SeededRng::new(opts.sampling.seed),
            out: Generated::default(),
            done: opts.max_new_tokens == 0,
            decode_started_ms: 0.0,
        };
        if seq.done {
            return Ok(seq);
        }
        let t0 = now_ms();
        let hidden = self.decode_at(embeds, &mut seq.cache, 0, positions)?;
        let last = self.ops.rows(&hidden, len - 1, 1);
        let logits = self.logits(&last)?;
        // The prefill ends when its token is known (on a GPU the work runs at the first
        // read-back): the time to the first token.
        self.choose(&mut seq, &logits).await?;
        seq.decode_started_ms = now_ms();
        seq.out.prefill_ms = seq.decode_started_ms - t0;
        if seq.done {
            seq.out.decode_ms = 0.0;
        }
        Ok(seq)
    }

    /// One token for every sequence of `seqs` not yet done, decoded together: the products
    /// read each weight once for all of them (decoding is bound by reading the weights), each
    /// sequence attends over its own cache. On the CPU executor each sequence's token is the
    /// one it would get alone (`cpu::linear::DECODE_ROWS` products are row-independent); GPU
    /// kernels for several rows sum in another order than the one-row kernel, so there a
    /// batched token agrees with a lone one to rounding.
    pub async fn step(&mut self, seqs: &mut [&mut Sequence<O::Kv>]) -> Result<()> {
        let mut active: Vec<&mut Sequence<O::Kv>> = seqs
            .iter_mut()
            .filter(|s| !s.done)
            .map(|s| &mut **s)
            .collect();
        if active.is_empty() {
            return Ok(());
        }
        let ids: Vec<u32> = active.iter().map(|s| s.last_id()).collect();
        let x = self.embed(&ids)?;
        let c = &self.config.llm;
        let mut pos = Vec::with_capacity(active.len());
        let mut ropes = Vec::with_capacity(active.len());
        for s in active.iter() {
            let slot = s.next_slot();
            let at = (slot as i64 + s.delta).max(0) as usize;
            let step = Positions::range_on_axes(at, 1, s.axes);
            let rope = c.rope.for_length(step.end());
            rope.check(&step, 1, "decode")?;
            ropes.push(rope);
            pos.push(self.ops.positions(&step)?);
        }
        let mut spans: Vec<Span<'_, O>> = active
            .iter_mut()
            .zip(ropes.iter().zip(&pos))
            .map(|(s, (rope, positions))| {
                let slot = s.next_slot();
                Span {
                    cache: &mut s.cache,
                    slot,
                    rows: 1,
                    rope,
                    positions,
                }
            })
            .collect();
        let hidden = decoder::forward_spans(
            &mut self.ops,
            &self.decoder,
            &self.config.llm,
            &x,
            &mut spans,
        )?;
        drop(spans);
        let logits = self.logits(&hidden)?;
        for (i, s) in active.iter_mut().enumerate() {
            let row = match ids.len() {
                1 => logits.clone(),
                _ => self.ops.rows(&logits, i, 1),
            };
            self.choose(s, &row).await?;
        }
        Ok(())
    }

    /// Samples `seq`'s next token from its logits row and decides whether it ends there: a
    /// stop id, its `max_new_tokens`, or a full context.
    async fn choose(&mut self, seq: &mut Sequence<O::Kv>, logits: &O::T) -> Result<()> {
        if seq.opts.keep_step_logits {
            seq.out.step_logits.push(self.ops.read_back(logits).await?);
        }
        let id = self
            .ops
            .sample(logits, &seq.opts.sampling, seq.rng.uniform())
            .await?;
        seq.out.ids.push(id);
        let position = seq.prompt_len + seq.out.ids.len() - 1;
        // Stop at a stop id, the last requested token (whose successor's logits would never be
        // used), or a full context.
        let reason = if seq.opts.stop_ids.contains(&id) {
            Some(FinishReason::Stop)
        } else if seq.out.ids.len() == seq.opts.max_new_tokens {
            Some(FinishReason::Length)
        } else if position + 1 >= seq.max_positions {
            Some(FinishReason::Context)
        } else {
            None
        };
        if let Some(reason) = reason {
            seq.out.finish_reason = reason;
            seq.done = true;
            seq.out.decode_ms = now_ms() - seq.decode_started_ms;
        }
        Ok(())
    }
}

/// A sequence being generated ([`Engine::start`], [`Engine::step`]): its own KV cache, where it
/// stands, how it samples, and what it has produced.
pub struct Sequence<Kv> {
    cache: Kv,
    prompt_len: usize,
    delta: i64,
    axes: usize,
    max_positions: usize,
    opts: GenerateOptions,
    rng: crate::rand::SeededRng,
    /// The tokens so far, why it ended and its timings (`decode_ms` once done).
    pub out: Generated,
    /// No more tokens will come (a stop id, `max_new_tokens`, the context, or none asked for).
    pub done: bool,
    decode_started_ms: f64,
}

impl<Kv> Sequence<Kv> {
    /// The last token chosen (the next step's input).
    fn last_id(&self) -> u32 {
        *self.out.ids.last().expect("a started sequence has a token")
    }

    /// The cache slot the last chosen token goes to.
    fn next_slot(&self) -> usize {
        self.prompt_len + self.out.ids.len() - 1
    }

    /// What it produced (call once done; a sequence stopped early keeps its tokens so far).
    pub fn finish(self) -> Generated {
        self.out
    }
}

/// The LinVT module of `store`, checked against the host: its width must be the LLM's hidden
/// size (its tokens go straight into the LLM).
fn load_linvt(store: &TensorStore, config: &VlmConfig) -> Result<Linvt> {
    if !crate::linvt::params::holds_linvt(store) {
        return Err(Error::input(format!(
            "{} holds no LinVT module (no `query_tokens` and `linVT.*` tensors); pass a file written for LinVT (e.g. by `linvt synth --linvt`), or run without --linvt",
            store.name()
        )));
    }
    let (linvt, _report) = Linvt::from_store(store, &ConfigPatch::default())?;
    if let Some(q) = config.num_video_query_token {
        if linvt.num_queries() != q {
            return Err(Error::config(format!(
                "num_video_query_token is {q} but query_tokens holds {} queries",
                linvt.num_queries()
            )));
        }
    }
    if linvt.config().embed_size != config.llm.hidden_size {
        return Err(Error::config(format!(
            "the LinVT module's width {} differs from the LLM hidden size {}; LinVT tokens go straight into the LLM, so they must match (was it made for another model?)",
            linvt.config().embed_size,
            config.llm.hidden_size
        )));
    }
    Ok(linvt)
}
