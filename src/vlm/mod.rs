//! The video-LLM: hosts composed of parts — vision encoder + projector (`vision`), LinVT, a
//! decoder family (`decoder`) — written once over `ops::VlmOps` (docs/design.md "one forward,
//! two executors"); InternVL's token flow is `internvl`. `engine` holds one executor's
//! parameters and runs each stage; `model::VideoLlm` adds the tokenizer, inputs and `ask`.

#[cfg(not(target_arch = "wasm32"))]
pub mod ask_cli;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench_decoder;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench_model;
pub mod config;
pub mod decoder;
#[cfg(not(target_arch = "wasm32"))]
pub mod demo;
pub mod engine;
#[cfg(not(target_arch = "wasm32"))]
pub mod gguf_model;
pub mod host;
pub mod intern_vit;
pub mod internlm2;
pub mod internvl;
pub mod internvl_projector;
pub mod layout;
pub mod lora;
pub mod model;
pub mod phi3;
pub mod picture;
pub mod preprocess;
pub mod prompt;
pub mod qwen2;
pub mod qwen2_merger;
pub mod qwen2_vit;
pub mod qwen2_vl;
pub mod qwen2_vl_preprocess;
pub mod rope;
#[cfg(not(target_arch = "wasm32"))]
pub mod synth;
pub mod synthetic;
#[cfg(not(target_arch = "wasm32"))]
pub mod tiny_model;
pub mod tokenizer;
#[cfg(not(target_arch = "wasm32"))]
pub mod video;
pub mod vision;
pub mod weights;
