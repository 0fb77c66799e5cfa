//! LinVT in the browser: wasm-bindgen bindings over `linvt`'s async WebGPU path.
