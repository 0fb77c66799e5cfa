//! `linvt` — the Linear Video Tokenizer (LinVT, arXiv 2412.05185) on portable GPUs through wgpu,
//! with a plain-Rust CPU reference path that computes the same thing.

// Proving the GPU context `Send` walks wgpu's nested types past the default depth of 128:
// nightly Rust (1.101) warns that this will become a hard error.
#![recursion_limit = "256"]

// Native-only: its timing loop blocks on the GPU (pollster) and uses `std::time::Instant`.
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod bench_shape;
pub mod config;
pub mod cpu;
pub mod demo;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod io;
pub mod linvt;
pub mod ops;
pub mod quant;
pub mod rand;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod tensor;
pub mod timing;
pub mod vlm;
pub mod weights;

pub use config::{ConfigPatch, LinvtConfig, Preset};
pub use error::{Error, Result};
pub use gpu::{WeightChoice, WeightStorage};
pub use linvt::{CondenseOptions, Condensed, Linvt};
pub use ops::{Device, Products};
pub use tensor::Tensor;
