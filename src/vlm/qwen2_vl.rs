//! The Qwen2-VL / Qwen2.5-VL host's token flow: where each image or video sits in the prompt
//! and the multimodal rotary positions (`get_rope_index`): text tokens advance all three axes
//! (temporal, height, width) together; a vision span's tokens take (t, row, column) of their
//! merge unit, offset past the text before it; text after a span resumes one past the largest
//! position so far. Decoding continues from there (the sequence's `delta` = largest position
//! + 1 − length).

use super::config::Qwen2VlConfig;
use super::qwen2_vit::Grid;
use crate::error::{Error, Result};
use crate::ops::Positions;

/// One image or video in the prompt: its tokens start at `first` (the first pad token after
/// `<|vision_start|>`), a grid of `h` × `w` LLM tokens per temporal group, and each temporal
/// group's position on the temporal axis (Qwen2-VL: 0, 1, 2, …; Qwen2.5-VL: the group's time
/// in seconds × `tokens_per_second`, floored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisionSpan {
    pub first: usize,
    pub h: usize,
    pub w: usize,
    pub temporal: Vec<u32>,
}

impl VisionSpan {
    pub fn tokens(&self) -> usize {
        self.temporal.len() * self.h * self.w
    }
}

/// Temporal positions of `groups` temporal groups: Qwen2-VL's 0, 1, 2, … (`None`), or
/// Qwen2.5-VL's ⌊g · seconds_per_group · tokens_per_second⌋ — the product in floating point as
/// the Qwen team's code, vLLM and transformers 5 compute it. transformers 4.57 truncates
/// seconds_per_group to an integer first; the two agree for whole seconds per group (2 frames
/// at 1 or 2 fps, the usual sampling), see docs/qwen2vl-reference.md §3.3.
pub fn temporal_positions(groups: usize, seconds: Option<(f64, f64)>) -> Vec<u32> {
    (0..groups)
        .map(|g| match seconds {
            None => g as u32,
            // PyTorch computes g · s (float32 tensor × Python float) then `.long()` truncates.
            Some((per_group, per_second)) => {
                ((g as f32 * per_group as f32) * per_second as f32) as u32
            }
        })
        .collect()
}

/// The (3-axis) positions of a prompt of `len` tokens with `spans` (in prompt order, not
/// overlapping), and the delta decoding continues with.
pub fn rope_index(len: usize, spans: &[VisionSpan]) -> Result<(Positions, i64)> {
    let mut ids: Vec<u32> = Vec::with_capacity(3 * len);
    let mut next = 0u32; // one past the largest position so far
    let mut at = 0usize; // the next token to place
    for s in spans {
        if s.first < at || s.first + s.tokens() > len {
            return Err(Error::input(format!(
                "a vision span of {} tokens at {} does not fit a prompt of {len} tokens after {at}",
                s.tokens(),
                s.first
            )));
        }
        for _ in at..s.first {
            ids.extend([next; 3]);
            next += 1;
        }
        let base = next;
        let mut top = base;
        for &t in &s.temporal {
            for y in 0..s.h as u32 {
                for x in 0..s.w as u32 {
                    let p = [base + t, base + y, base + x];
                    top = top.max(p[0]).max(p[1]).max(p[2]);
                    ids.extend(p);
                }
            }
        }
        next = if s.tokens() > 0 { top + 1 } else { base };
        at = s.first + s.tokens();
    }
    for _ in at..len {
        ids.extend([next; 3]);
        next += 1;
    }
    let delta = next as i64 - len as i64;
    Ok((Positions::new(ids, 3)?, delta))
}

/// The vision spans of prompt `ids`: each run of image (video) pad tokens takes the next of
/// `images` (`videos`, with each one's seconds per temporal group), in order. Errors when the
/// pad tokens and the grids do not agree.
pub fn vision_spans(
    ids: &[u32],
    c: &Qwen2VlConfig,
    images: &[Grid],
    videos: &[(Grid, f64)],
) -> Result<Vec<VisionSpan>> {
    let m = c.vision.merge;
    let (mut next_image, mut next_video) = (images.iter(), videos.iter());
    let mut spans = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let (grid, temporal) = if ids[i] == c.image_token {
            let g = next_image
                .next()
                .ok_or_else(|| Error::input("the prompt has more images than were given"))?;
            // A still image has no time: its temporal position stays at the span's start.
            let t = match c.tokens_per_second {
                Some(_) => vec![0; g.t],
                None => temporal_positions(g.t, None),
            };
            (*g, t)
        } else if ids[i] == c.video_token {
            let (g, seconds) = next_video
                .next()
                .ok_or_else(|| Error::input("the prompt has more videos than were given"))?;
            let t = temporal_positions(g.t, c.tokens_per_second.map(|tps| (*seconds, tps)));
            (*g, t)
        } else {
            i += 1;
            continue;
        };
        let span = VisionSpan {
            first: i,
            h: grid.h / m,
            w: grid.w / m,
            temporal,
        };
        let pad = ids[i];
        let run = ids[i..].iter().take_while(|&&t| t == pad).count();
        if run != span.tokens() {
            return Err(Error::input(format!(
                "{run} pad tokens at {i} for a {}×{}×{} grid of {} tokens",
                grid.t,
                grid.h,
                grid.w,
                span.tokens()
            )));
        }
        i += run;
        spans.push(span);
    }
    if next_image.next().is_some() || next_video.next().is_some() {
        return Err(Error::input(
            "more images or videos were given than the prompt has places for",
        ));
    }
    Ok(spans)
}

/// The positions of `rows` decoded tokens at slots slot.. of a sequence with `delta`.
pub fn decode_positions(slot: usize, rows: usize, delta: i64) -> Positions {
    Positions::range_on_axes((slot as i64 + delta).max(0) as usize, rows, 3)
}

/// How a Qwen2-VL prompt holds its one image or video.
pub enum Placement {
    /// An image's tokens over its grid.
    Image(Grid),
    /// A video's tokens over its grid, its temporal groups `seconds` apart.
    Video(Grid, f64),
    /// LinVT's `queries` tokens in a video's place, positioned as `VideoPositions` says.
    Linvt(usize, crate::config::VideoPositions),
}

/// The user turn with the vision block before `question`, tokenized in `template`, and its
/// 3-axis positions and decode delta.
pub fn prompt(
    tok: &super::tokenizer::Tokenizer,
    template: &super::prompt::Template,
    c: &Qwen2VlConfig,
    question: &str,
    placement: &Placement,
) -> Result<(super::prompt::Prompt, Positions, i64)> {
    let unit = c.vision.merge * c.vision.merge;
    let (pad, count) = match placement {
        Placement::Image(g) => ("<|image_pad|>", g.patches() / unit),
        Placement::Video(g, _) => ("<|video_pad|>", g.patches() / unit),
        Placement::Linvt(q, _) => ("<|video_pad|>", *q),
    };
    let message = format!(
        "<|vision_start|>{}<|vision_end|>{question}",
        pad.repeat(count)
    );
    let prompt =
        super::prompt::Prompt::from_message(tok, template, &message, pad, count, "<|vision_end|>")?;
    let spans = match placement {
        Placement::Image(g) => vision_spans(&prompt.ids, c, &[*g], &[])?,
        Placement::Video(g, seconds) => vision_spans(&prompt.ids, c, &[], &[(*g, *seconds)])?,
        Placement::Linvt(_, crate::config::VideoPositions::Text) => vec![],
        Placement::Linvt(q, crate::config::VideoPositions::Row) => vec![VisionSpan {
            first: prompt.context_positions.first().map_or(0, |&p| p as usize),
            h: 1,
            w: *q,
            temporal: vec![0],
        }],
    };
    let (positions, delta) = rope_index(prompt.ids.len(), &spans)?;
    Ok((prompt, positions, delta))
}

/// The host's settings with `opts`' overrides (`max_pixels`).
pub fn with_options(c: &Qwen2VlConfig, opts: &super::host::HostOptions) -> Result<Qwen2VlConfig> {
    let mut c = c.clone();
    if let Some(max) = opts.max_pixels {
        let min = c.processor.min_pixels.min(c.processor.video_min_pixels);
        if max < min {
            return Err(Error::input(format!(
                "--max-pixels {max} is below the processor's min_pixels {min}"
            )));
        }
        c.processor.max_pixels = max;
        c.processor.video_max_pixels = max;
    }
    Ok(c)
}

/// How `visual` of `grid` sits in the prompt: an image's or video's own tokens (a video's
/// temporal groups `temporal_patch_size / fps` seconds apart), or a LinVT module's
/// (`linvt`: queries and placement) in a video's place.
pub fn placement_of(
    c: &Qwen2VlConfig,
    visual: &super::host::Visual,
    grid: Grid,
    opts: &super::host::HostOptions,
    linvt: Option<(usize, crate::config::VideoPositions)>,
) -> Result<Placement> {
    use super::host::Visual;
    let fps = opts.fps.unwrap_or(2.0);
    if !(fps > 0.0 && fps.is_finite()) {
        return Err(Error::input(format!(
            "the frame rate {fps} must be a positive number"
        )));
    }
    Ok(match (visual, linvt) {
        (Visual::Video(_), Some((q, positions))) => Placement::Linvt(q, positions),
        (Visual::Video(_), None) => {
            Placement::Video(grid, c.vision.temporal_patch_size as f64 / fps)
        }
        (Visual::Image(_), _) => Placement::Image(grid),
    })
}

/// Builds the prompt, its visual rows and their 3-axis positions for one image or video, as
/// Qwen2-VL's processor and chat template do: the vision block (`<|vision_start|>`, one pad
/// token per LLM token, `<|vision_end|>`) before the question in the user turn. With a LinVT
/// module a video's temporal groups are its frames and its Q' tokens take the pad tokens'
/// place, at the positions `LinvtConfig::video_positions` names. A video's
/// temporal groups are `temporal_patch_size / fps` seconds apart (`opts.fps`, else the
/// processor's default 2).
pub async fn prepare<O: crate::ops::VlmOps>(
    e: &mut super::engine::Engine<O>,
    tok: &super::tokenizer::Tokenizer,
    template: &super::prompt::Template,
    visual: &super::host::Visual,
    question: &str,
    opts: &super::host::HostOptions,
    on_stage: &mut dyn FnMut(&str),
) -> Result<super::host::HostInput<O::T>> {
    use super::host::{HostInput, VideoPath, Visual};
    use super::qwen2_vl_preprocess::{image_patches, video_patches};
    let c = with_options(e.config.qwen2_vl()?, opts)?;
    let mut clock = crate::timing::StageClock::default();
    clock.mark(Some("preprocess"));
    on_stage("preprocess");
    let ((pixels, grid), images) = match visual {
        Visual::Image(f) => (image_patches(f, &c.processor, &c.vision)?, 1),
        Visual::Video(frames) => (
            video_patches(frames, &c.processor, &c.vision)?,
            frames.len(),
        ),
    };
    clock.mark(Some("vision"));
    on_stage("vision encoder");
    let parts = e.qwen2_vision_parts(&pixels, &[grid])?;
    if let Some((last, _)) = parts.last() {
        e.sync(last).await?;
    }
    let n = grid.patches() / (c.vision.merge * c.vision.merge);
    let with_linvt = matches!(visual, Visual::Video(_)) && e.linvt.is_some();
    let linvt = e
        .linvt
        .as_ref()
        .map(|m| (m.queries, m.config.video_positions));
    let placement = placement_of(&c, visual, grid, opts, linvt)?;
    let (prompt, positions, delta) = prompt(tok, template, &c, question, &placement)?;
    let in_prompt = prompt.context_positions.len();
    let context = e.config.llm.max_positions;
    if prompt.ids.len() >= context {
        let what = match visual {
            Visual::Image(_) => "image's",
            Visual::Video(_) => "video's",
        };
        return Err(Error::input(format!(
            "the prompt has {} tokens ({in_prompt} of them the {what}) but the model's context holds {context}; use fewer frames (--num-frames) or a smaller pixel budget (max_pixels){}",
            prompt.ids.len(),
            if with_linvt { "" } else { ", or a LinVT module (--linvt)" }
        )));
    }
    let (rows, video_path) = if with_linvt {
        clock.mark(Some("linvt"));
        on_stage("LinVT");
        let preset = e.linvt()?.config.preset;
        let text = e.embed(prompt.value_ids(preset)?)?;
        let want = crate::linvt::forward::Want::default();
        let out = e.condense(
            &crate::linvt::split::Tiled::from_parts(parts, n / grid.t.max(1)),
            &text,
            want,
        )?;
        // As on InternVL: the LLM sees LinVT's output in bf16, its own precision.
        let rows = e.ops.round_bf16(&out.output)?;
        e.sync(&rows).await?;
        (rows, Some(VideoPath::Linvt))
    } else {
        let path = matches!(visual, Visual::Video(_)).then_some(VideoPath::Frames);
        (e.join(parts)?, path)
    };
    clock.mark(None);
    Ok(HostInput {
        prompt_visual_tokens: in_prompt,
        prompt,
        rows,
        images,
        visual_tokens: n,
        video_path,
        provenance: None,
        timings_ms: clock.times,
        rope: Some((positions, delta)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_index_by_hand() {
        // 2 text tokens, an image of 1×2×3 tokens, 2 text tokens: text 0, 1; the image at
        // base 2: t = 2, rows 2–3, columns 2–4; text after resumes at 5, 6. Delta = 7 − 10.
        let span = VisionSpan {
            first: 2,
            h: 2,
            w: 3,
            temporal: vec![0],
        };
        let (p, delta) = rope_index(10, &[span]).unwrap();
        let rows: Vec<[u32; 3]> = (0..10).map(|r| p.row(r).try_into().unwrap()).collect();
        assert_eq!(
            rows,
            [
                [0, 0, 0],
                [1, 1, 1],
                [2, 2, 2],
                [2, 2, 3],
                [2, 2, 4],
                [2, 3, 2],
                [2, 3, 3],
                [2, 3, 4],
                [5, 5, 5],
                [6, 6, 6]
            ]
        );
        assert_eq!(delta, -3);
        assert_eq!(decode_positions(10, 1, delta).row(0), [7, 7, 7]);
    }

    #[test]
    fn temporal_positions_scale_with_time_in_2_5() {
        assert_eq!(temporal_positions(3, None), [0, 1, 2]);
        // 2 frames per group at 2 fps sampled = 1 s per group; 2 tokens per second.
        assert_eq!(temporal_positions(3, Some((1.0, 2.0))), [0, 2, 4]);
        assert_eq!(temporal_positions(3, Some((0.5, 2.0))), [0, 1, 2]);
    }

    #[test]
    fn spans_that_do_not_fit_are_errors() {
        let span = VisionSpan {
            first: 8,
            h: 2,
            w: 2,
            temporal: vec![0],
        };
        assert!(rope_index(10, &[span]).is_err());
    }
}
