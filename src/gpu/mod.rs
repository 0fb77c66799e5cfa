//! The GPU path: context, buffers, pipeline cache, and one module per kernel family, each with
//! a typed dispatch function over `GpuTensor`s.

pub mod attention;
pub mod blocks;
pub mod buffer;
pub mod context;
pub mod elementwise;
pub mod kernel;
pub mod linear;
pub mod norm;
pub mod ops;
pub mod placement;
pub mod rope;
pub mod sample;
pub mod texels;
pub mod topk;
pub mod vlm_ops;
pub mod window_pool;

pub use buffer::{BufferPool, Elem, GpuTensor};
#[cfg(not(target_arch = "wasm32"))]
pub use context::shared_gpu;
pub use context::{list_adapters, AdapterSummary, GpuContext, GpuOptions};
pub use kernel::{grid, Recorder, Shader, StageTimes};
pub use ops::{GpuOps, HealthCheck};
pub use placement::{Placement, WeightChoice, WeightStorage};
pub use vlm_ops::GpuKvCache;

/// All shaders shipped in `shaders/`, so a test can validate every one with naga.
pub const ALL_SHADERS: &[&Shader] = &[
    &linear::SHADER,
    &linear::SHADER_F16_WEIGHTS,
    &linear::SHADER_BF16_WEIGHTS,
    &linear::SHADER_TEXEL_WEIGHTS,
    &linear::SHADER_TEXEL_BF16_WEIGHTS,
    &linear::SHADER_Q8_0_WEIGHTS,
    &linear::SHADER_Q4_0_WEIGHTS,
    &linear::SHADER_Q5_0_WEIGHTS,
    &linear::SHADER_Q4_K_WEIGHTS,
    &linear::SHADER_Q6_K_WEIGHTS,
    &linear::SHADER_TEXEL_Q8_0_WEIGHTS,
    &linear::SHADER_TEXEL_Q4_0_WEIGHTS,
    &linear::SHADER_TEXEL_Q5_0_WEIGHTS,
    &linear::SHADER_TEXEL_Q4_K_WEIGHTS,
    &linear::SHADER_TEXEL_Q6_K_WEIGHTS,
    &norm::SHADER,
    &attention::SHADER,
    &topk::SHADER,
    &window_pool::SHADER,
    &elementwise::SHADER,
    &rope::SHADER,
    &sample::SHADER,
];
