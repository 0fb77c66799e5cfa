// Operand A of the linear kernels (linear.wgsl): Q4_0 weights (blocks.wgsl). A group of eight
// blocks (256 values) is 9 quads: the eight f16 scales d, then each block's 16 bytes (a quad);
// value j < 16 of a block is the low nibble of byte j, value j + 16 the high nibble;
// y = (q - 8) · d.
fn la4(i: u32) -> vec4<f32> {
    let base = (i / 64u) * 9u;
    let b = (i / 8u) & 7u;
    let v = i & 7u;
    let q = u8x4(quad(base + 1u + b)[v & 3u], 4u * (v / 4u), 15u);
    return (vec4<f32>(q) - 8.0) * quad_f16(quad(base), b);
}
// Chunk i of 32 values is block i: d · (Σ b·q - 8 Σ b), the low nibbles giving values 0..16.
fn la_dot(i: u32, bv: BChunk) -> f32 {
    let base = (i / 8u) * 9u;
    let b = i & 7u;
    let q = quad(base + 1u + b);
    let lo = dot(bv.b0, vec4<f32>(u8x4(q.x, 0u, 15u))) + dot(bv.b1, vec4<f32>(u8x4(q.y, 0u, 15u))) + dot(bv.b2, vec4<f32>(u8x4(q.z, 0u, 15u))) + dot(bv.b3, vec4<f32>(u8x4(q.w, 0u, 15u)));
    let hi = dot(bv.b4, vec4<f32>(u8x4(q.x, 4u, 15u))) + dot(bv.b5, vec4<f32>(u8x4(q.y, 4u, 15u))) + dot(bv.b6, vec4<f32>(u8x4(q.z, 4u, 15u))) + dot(bv.b7, vec4<f32>(u8x4(q.w, 4u, 15u)));
    return (lo + hi - 8.0 * b_sum(bv)) * quad_f16(quad(base), b);
}
