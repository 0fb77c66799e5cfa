// Operand A of the linear kernels (linear.wgsl): bf16 weights in a storage buffer, two per u32
// (bf16.wgsl).
@group(0) @binding(1) var<storage, read> a8: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> a2: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read> a1w: array<u32>;

fn la4(i: u32) -> vec4<f32> {
    return bf16_x4(a2[i]);
}
fn la1(i: u32) -> f32 {
    let w = a1w[i >> 1u];
    return select(bf16_low(w), bf16_high(w), (i & 1u) == 1u);
}
// Eight values per matrix-vector step (linear_chunk8_bf16.wgsl): one 16-byte load.
fn la_word8(i: u32) -> vec4<u32> {
    return a8[i];
}
