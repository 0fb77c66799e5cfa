//! What every host shares: the visual input of a question, the options a host prepares it
//! with, and what it hands the decoder (`HostInput`). Each host's token flow is its own file
//! (`internvl.rs`, `qwen2_vl.rs`).

use super::preprocess::Frame;
use super::prompt::Prompt;
use crate::linvt::provenance::Provenance;
use crate::ops::Positions;

/// What the question is about.
#[derive(Clone, Debug)]
pub enum Visual {
    /// Frames already sampled from a video.
    Video(Vec<Frame>),
    /// One image (LinVT is skipped).
    Image(Frame),
}

/// Which path a video took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoPath {
    /// LinVT condensed the frames' tokens.
    Linvt,
    /// Every frame's tokens went to the LLM (`Frame{i}: <img>…</img>`).
    Frames,
}

impl VideoPath {
    pub fn name(self) -> &'static str {
        match self {
            VideoPath::Linvt => "linvt",
            VideoPath::Frames => "frames",
        }
    }
}

/// How the host prepares the visual input.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostOptions {
    /// Images: at most this many tiles (dynamic tiling on, whatever the checkpoint says); None:
    /// the checkpoint's `max_dynamic_patch` when it enables `dynamic_image_size`, else one tile.
    pub max_tiles: Option<usize>,
    /// Also return which input cells each LinVT token averages.
    pub provenance: bool,
    /// The rate the video's frames were sampled at (frames per second), where a host's
    /// positions follow time (Qwen2.5-VL); None: its processor's default (2).
    pub fps: Option<f64>,
    /// The most pixels an image or frame is resized to, where the host resizes to a budget
    /// (Qwen2-VL's `max_pixels`); None: its processor's.
    pub max_pixels: Option<usize>,
}

/// The decoder's input for one question.
pub struct HostInput<T> {
    pub prompt: Prompt,
    /// One row per `<IMG_CONTEXT>` of the prompt, in order.
    pub rows: T,
    /// Tiles (image) or frames (video) through the vision encoder.
    pub images: usize,
    /// Visual tokens out of the projector (before LinVT).
    pub visual_tokens: usize,
    /// Visual tokens in the prompt (after LinVT, if it ran).
    pub prompt_visual_tokens: usize,
    pub video_path: Option<VideoPath>,
    pub provenance: Option<Provenance>,
    /// (stage, milliseconds) of the host's stages.
    pub timings_ms: Vec<(String, f64)>,
    /// The prompt's rotary positions and the decode delta when the host has its own scheme
    /// (Qwen2-VL's three axes); None: positions 0, 1, 2, …
    pub rope: Option<(Positions, i64)>,
}
