//! `linvt` — the Linear Video Tokenizer (LinVT, arXiv 2412.05185) on portable GPUs through wgpu,
//! with a plain-Rust CPU reference path that computes the same thing.

pub mod cpu;
pub mod error;
pub mod gpu;
pub mod rand;
pub mod tensor;

pub use error::{Error, Result};
pub use tensor::Tensor;
