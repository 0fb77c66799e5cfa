//! The CPU executor: every op in Rust, the GPU kernels' twins (same semantics; tests compare the
//! two). The products run through `gemm` on a rayon pool (`threads`); each fast path keeps a
//! plain reference beside it that tests hold it to (`linear::linear_reference`).

pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod blocks;
pub mod elementwise;
pub mod kv_attention;
pub mod linear;
pub mod norm;
pub mod ops;
pub mod rope;
pub mod sample;
#[cfg(not(target_arch = "wasm32"))]
pub mod threads;
pub mod topk;
pub mod window_pool;

pub use ops::{CpuKvCache, CpuOps};
