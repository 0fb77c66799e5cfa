//! The CPU reference path: plain, readable Rust for every op. Each GPU kernel family has its twin
//! here with the same signature semantics; tests compare the two.

pub mod attention;
pub mod linear;
pub mod norm;
pub mod topk;
pub mod window_pool;
