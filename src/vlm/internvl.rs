//! The InternVL host: how a question about an image or a video becomes the decoder's input, as
//! InternVL's own chat code builds it, with LinVT as a plug-in on the video path.
//!
//! - Image: `dynamic_preprocess` tiles (plus a thumbnail) when the checkpoint enables dynamic
//!   tiling (or `max_tiles` is given), each tile through the vision encoder; the prompt's one
//!   `<image>` becomes `<img>` + tiles·N × `<IMG_CONTEXT>` + `</img>`.
//! - Video with LinVT: the released LinVT `forward()`'s flow — every frame one tile, LinVT
//!   conditioned on the preset's text slice condenses the frames' tokens to Q' rows, cast to
//!   bf16, written over Q' `<IMG_CONTEXT>` of one `<image>`.
//! - Video without LinVT (the host's own path, the paper's "InternVL2" baseline): every frame
//!   one tile, the question prefixed by `Frame{i}: <image>\n` per frame, each frame's N tokens
//!   in its own `<img>…</img>`.

use super::config::InternVlConfig;
use super::engine::Engine;
pub use super::host::{HostInput, HostOptions, VideoPath, Visual};
use super::preprocess::{dynamic_tiles, pixel_values, Frame};
use super::prompt::{Prompt, Template};
use super::tokenizer::Tokenizer;
use crate::error::Result;
use crate::linvt::forward::Want;
use crate::linvt::provenance;
use crate::linvt::split::Tiled;
use crate::ops::VlmOps;
use crate::timing::StageClock;

/// InternVL's video question for `frames` frames without LinVT: `Frame{i}: <image>\n` per frame,
/// then the question (each `<image>` then takes one frame's tokens).
pub fn frames_question(frames: usize, question: &str) -> String {
    let prefix: String = (1..=frames)
        .map(|i| format!("Frame{i}: <image>\n"))
        .collect();
    format!("{prefix}{question}")
}

/// The tiles (image: InternVL's dynamic tiling when the checkpoint or `opts` asks) or frames
/// (video) that go through the vision encoder.
pub fn images_of(visual: &Visual, host: &InternVlConfig, opts: &HostOptions) -> Vec<Frame> {
    let size = host.vision.image_size;
    match visual {
        Visual::Video(frames) => frames.clone(),
        Visual::Image(f) => {
            let t = host.tiling;
            match opts.max_tiles {
                Some(max) => dynamic_tiles(f, size, t.min_tiles.min(max), max, t.thumbnail),
                None if t.dynamic => dynamic_tiles(f, size, t.min_tiles, t.max_tiles, t.thumbnail),
                None => vec![f.clone()],
            }
        }
    }
}

/// The prompt for `visual` (`images` tiles or frames through the encoder): an image's tiles in
/// one `<image>`, a video's LinVT tokens (`linvt_queries`) in one, or one `<image>` per frame
/// on the host's own path.
pub fn prompt_for(
    tok: &Tokenizer,
    template: &Template,
    host: &InternVlConfig,
    visual: &Visual,
    question: &str,
    images: usize,
    linvt_queries: Option<usize>,
) -> Result<Prompt> {
    let n = host.tokens_per_frame();
    match (visual, linvt_queries) {
        (Visual::Image(_), _) => Prompt::build(tok, template, question, images * n),
        (Visual::Video(_), Some(q)) => Prompt::build(tok, template, question, q),
        (Visual::Video(frames), None) => Prompt::build_spans(
            tok,
            template,
            &frames_question(frames.len(), question),
            &vec![n; frames.len()],
        ),
    }
}

/// Builds the prompt and its visual rows. `on_stage` hears each stage's name as it starts.
pub async fn prepare<O: VlmOps>(
    e: &mut Engine<O>,
    tok: &Tokenizer,
    template: &Template,
    visual: &Visual,
    question: &str,
    opts: &HostOptions,
    on_stage: &mut dyn FnMut(&str),
) -> Result<HostInput<O::T>> {
    let mut clock = StageClock::default();
    clock.mark(Some("preprocess"));
    on_stage("preprocess");
    let host = e.config.internvl()?.clone();
    let images = images_of(visual, &host, opts);
    let pixels = pixel_values(&images, host.vision.image_size)?;
    clock.mark(Some("vision"));
    on_stage("vision encoder");
    let parts = e.vision_parts(&pixels)?;
    if let Some((last, _)) = parts.last() {
        e.sync(last).await?;
    }
    let n = host.tokens_per_frame();
    let visual_tokens = images.len() * n;
    let linvt_queries = match visual {
        Visual::Video(_) => e.linvt.as_ref().map(|m| m.queries),
        Visual::Image(_) => None,
    };
    let prompt = prompt_for(
        tok,
        template,
        &host,
        visual,
        question,
        images.len(),
        linvt_queries,
    )?;
    let input = match visual {
        Visual::Image(_) => (prompt, e.join(parts)?, None, None),
        Visual::Video(frames) if e.linvt.is_some() => {
            clock.mark(Some("linvt"));
            on_stage("LinVT");
            let (q, preset, heads) = {
                let m = e.linvt()?;
                (m.queries, m.config.preset, m.config.num_heads)
            };
            let text = e.embed(prompt.value_ids(preset)?)?;
            let want = Want {
                probs: opts.provenance,
                trace: false,
            };
            let out = e.condense(&Tiled::from_parts(parts, n), &text, want)?;
            // The released model casts LinVT's output to bf16 before the LLM sees it.
            let rows = e.ops.round_bf16(&out.output)?;
            e.sync(&rows).await?;
            let provenance = if opts.provenance {
                let indices = e.ops.read_back_indices(&out.indices).await?;
                let mut probs = Vec::with_capacity(out.aggregation_probs.len());
                for p in &out.aggregation_probs {
                    probs.push(e.ops.read_back(p).await?);
                }
                let dims = e.linvt_dims(frames.len(), n, &text)?;
                Some(provenance::of_forward(
                    heads, q, dims, &out, &indices, &probs,
                ))
            } else {
                None
            };
            (prompt, rows, provenance, Some(VideoPath::Linvt))
        }
        Visual::Video(_) => (prompt, e.join(parts)?, None, Some(VideoPath::Frames)),
    };
    let (prompt, rows, provenance, video_path) = input;
    clock.mark(None);
    Ok(HostInput {
        prompt_visual_tokens: prompt.context_positions.len(),
        prompt,
        rows,
        images: images.len(),
        visual_tokens,
        video_path,
        provenance,
        timings_ms: clock.times,
        rope: None,
    })
}
