// The matrix-vector kernel's unit of K (linear.wgsl, `gemv`) for bf16 weights: one chunk is
// eight values, 16 bytes of A fetched at once through the prelude's `la_word8(i)` (values
// 8i..8i+7, packed as in bf16.wgsl) and two vec4s of B.
const A_CHUNK: u32 = 8u;
struct BChunk {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn lb_chunk(i: u32) -> BChunk {
    return BChunk(b4[2u * i], b4[2u * i + 1u]);
}
fn la_dot(i: u32, bv: BChunk) -> f32 {
    let w = la_word8(i);
    return dot(bv.lo, bf16_x4(w.xy)) + dot(bv.hi, bf16_x4(w.zw));
}
