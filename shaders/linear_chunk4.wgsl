// The matrix-vector kernel's unit of K (linear.wgsl, `gemv`) for an operand A read as vec4s:
// one chunk is 4 values, of A through `la4` and of B through its vec4 view.
const A_CHUNK: u32 = 4u;
alias BChunk = vec4<f32>;

fn lb_chunk(i: u32) -> BChunk {
    return b4[i];
}
fn la_dot(i: u32, bv: BChunk) -> f32 {
    return dot(bv, la4(i));
}
