//! The CPU reference path: plain, readable Rust for every op. Each GPU kernel family has its twin
//! here with the same signature semantics; tests compare the two.

pub mod attention;
pub mod elementwise;
pub mod kv_attention;
pub mod linear;
pub mod norm;
pub mod ops;
pub mod rope;
pub mod sample;
pub mod topk;
pub mod window_pool;

pub use ops::{CpuKvCache, CpuOps};
