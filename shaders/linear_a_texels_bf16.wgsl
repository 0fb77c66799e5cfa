// Operand A of the linear kernels (linear.wgsl): bf16 weights stored as texels (texels.wgsl),
// eight per rgba32uint texel, packed two per u32 as in bf16.wgsl. Texel t holds elements
// 8t..8t+7.
//
// A texel fetch costs about the same whatever the format on CPU adapters (llvmpipe), so eight
// bf16 values per fetch read weights nearly twice as fast as four f32 ones: the matrix-vector
// kernel takes a whole texel per step (A_CHUNK = 8); the other kernels read vec4s (half a
// texel) or single values.
@group(0) @binding(1) var a_texels: texture_2d_array<u32>;

fn la_texel(t: u32) -> vec4<u32> {
    let c = texel_coords(t);
    return textureLoad(a_texels, c.xy, c.z, 0);
}
fn la4(i: u32) -> vec4<f32> {
    let w = la_texel(i >> 1u);
    return bf16_x4(select(w.xy, w.zw, (i & 1u) == 1u));
}
fn la1(i: u32) -> f32 {
    let w = la_texel(i >> 3u)[(i >> 1u) & 3u];
    return select(bf16_low(w), bf16_high(w), (i & 1u) == 1u);
}

const A_CHUNK: u32 = 8u;
struct BChunk {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn lb_chunk(i: u32) -> BChunk {
    return BChunk(b4[2u * i], b4[2u * i + 1u]);
}
fn la_dot(i: u32, bv: BChunk) -> f32 {
    let w = la_texel(i);
    return dot(bv.lo, bf16_x4(w.xy)) + dot(bv.hi, bf16_x4(w.zw));
}
