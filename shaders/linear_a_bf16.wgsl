// Operand A of the linear kernels (linear.wgsl): bf16 weights, two per u32, element 2j in the
// low half. A bf16 is the upper half of an f32, so widening is a shift and exact; plain u32
// loads, so no device feature is needed.
@group(0) @binding(1) var<storage, read> a2: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read> a1w: array<u32>;

fn bf16_low(w: u32) -> f32 {
    return bitcast<f32>(w << 16u);
}
fn bf16_high(w: u32) -> f32 {
    return bitcast<f32>(w & 0xffff0000u);
}
fn la4(i: u32) -> vec4<f32> {
    let w = a2[i];
    return vec4<f32>(bf16_low(w.x), bf16_high(w.x), bf16_low(w.y), bf16_high(w.y));
}
fn la1(i: u32) -> f32 {
    let w = a1w[i >> 1u];
    return select(bf16_low(w), bf16_high(w), (i & 1u) == 1u);
}

