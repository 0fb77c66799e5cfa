//! LinVT in the browser: wasm-bindgen bindings over `linvt`'s async WebGPU path.
//!
//! Nothing here blocks: the GPU context, the condensation and the readback are awaited
//! (`wasm-bindgen-futures` turns them into Promises). `api` holds the work with plain Rust
//! types (also built natively, where tests can run it on any adapter); `bindings` converts to
//! and from JavaScript values.

pub mod api;
pub mod bindings;
pub mod clock;
pub mod context;
pub mod demo;
/// The whole video-LLM (its own, larger bundle: `scripts/build-web.sh` builds both).
#[cfg(all(feature = "vlm", target_arch = "wasm32"))]
pub mod vlm;

/// Panics (bugs, never bad input) print their message to the browser console.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}
