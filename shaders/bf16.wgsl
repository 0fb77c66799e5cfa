// bf16 values packed two per u32, element 2j in the low half. A bf16 is the upper half of an
// f32, so widening is a shift or a mask and exact; plain u32 loads, so no device feature is
// needed.
fn bf16_low(w: u32) -> f32 {
    return bitcast<f32>(w << 16u);
}
fn bf16_high(w: u32) -> f32 {
    return bitcast<f32>(w & 0xffff0000u);
}
// The four bf16 values of a u32 pair, in element order.
fn bf16_x4(w: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(bf16_low(w.x), bf16_high(w.x), bf16_low(w.y), bf16_high(w.y));
}
