//! The GPU path: context, buffers, pipeline cache, and one module per kernel family, each with
//! a typed dispatch function over `GpuTensor`s.

pub mod attention;
pub mod buffer;
pub mod context;
pub mod elementwise;
pub mod kernel;
pub mod linear;
pub mod norm;
pub mod rope;
pub mod sample;
pub mod texels;
pub mod topk;
pub mod window_pool;

pub use buffer::{BufferPool, Elem, GpuTensor};
pub use context::{list_adapters, AdapterSummary, GpuContext, GpuOptions};
pub use kernel::{grid, Recorder, Shader, StageTimes};
