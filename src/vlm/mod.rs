//! The video-LLM: InternVL2-family host (InternViT → pixel shuffle → `mlp1` → LinVT → Qwen2)
//! written once over `ops::VlmOps`, with a CPU executor.

pub mod cpu_exec;
pub mod ops;
