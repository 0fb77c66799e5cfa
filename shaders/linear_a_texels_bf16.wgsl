// Operand A of the linear kernels (linear.wgsl): bf16 weights stored as texels (texels.wgsl),
// eight per rgba32uint texel, packed two per u32 as in bf16.wgsl. Texel t holds elements
// 8t..8t+7.
//
// A texel fetch costs about the same whatever the format on CPU adapters (llvmpipe), so eight
// bf16 values per fetch read weights nearly twice as fast as four f32 ones: the matrix-vector
// kernel takes a whole texel per step (linear_chunk8_bf16.wgsl); the other kernels read vec4s
// (half a texel) or single values.
@group(0) @binding(1) var a_texels: texture_2d_array<u32>;

// Texel t: values 8t..8t+7, also the matrix-vector kernel's chunk t (linear_chunk8_bf16.wgsl).
fn la_word8(t: u32) -> vec4<u32> {
    let c = texel_coords(t);
    return textureLoad(a_texels, c.xy, c.z, 0);
}
fn la4(i: u32) -> vec4<f32> {
    let w = la_word8(i >> 1u);
    return bf16_x4(select(w.xy, w.zw, (i & 1u) == 1u));
}
fn la1(i: u32) -> f32 {
    let w = la_word8(i >> 3u)[(i >> 1u) & 3u];
    return select(bf16_low(w), bf16_high(w), (i & 1u) == 1u);
}
