// Operand A of the linear kernels (linear.wgsl): Q8_0 weights (blocks.wgsl). A group of eight
// blocks (256 values) is 17 quads: the eight f16 scales d, then each block's 32 signed bytes q
// (two quads); y = q · d.
fn la4(i: u32) -> vec4<f32> {
    let base = (i / 64u) * 17u;
    let b = (i / 8u) & 7u;
    let k = i & 7u;
    return i8x4(quad(base + 1u + 2u * b + k / 4u)[k & 3u]) * quad_f16(quad(base), b);
}
// Chunk i of 32 values is block i: d · Σ b·q.
fn la_dot(i: u32, bv: BChunk) -> f32 {
    let base = (i / 8u) * 17u;
    let b = i & 7u;
    let q = base + 1u + 2u * b;
    return dot_i8(bv, quad(q), quad(q + 1u)) * quad_f16(quad(base), b);
}
