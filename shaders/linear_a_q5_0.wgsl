// Operand A of the linear kernels (linear.wgsl): Q5_0 weights (blocks.wgsl). A group of eight
// blocks (256 values) is 44 words: the eight f16 scales d (4 words), then each block's 5 words:
// qh (bit e is the fifth bit of value e) and 16 bytes of nibbles (value j < 16 the low nibble of
// byte j, value j + 16 the high one); y = (q - 16) · d.

// Four values: nibbles (shift `s`) of word `w` with bits `e`.. of `qh` as their fifth bits,
// minus 16.
fn q5x4(w: u32, s: u32, qh: u32, e: u32) -> vec4<f32> {
    let high = ((vec4<u32>(qh) >> (vec4<u32>(e) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) << vec4<u32>(4u);
    return vec4<f32>(u8x4(w, s, 15u) | high) - 16.0;
}
fn la4(i: u32) -> vec4<f32> {
    let g = (i / 64u) * 44u;
    let b = (i / 8u) & 7u;
    let v = i & 7u;
    let bw = g + 4u + 5u * b;
    let q = q5x4(word(bw + 1u + (v & 3u)), 4u * (v / 4u), word(bw), 4u * v);
    return q * quad_f16(quad(g / 4u), b);
}
// Chunk i of 32 values is block i: d · Σ b·(q - 16).
fn la_dot(i: u32, bv: BChunk) -> f32 {
    let g = (i / 8u) * 44u;
    let b = i & 7u;
    let bw = g + 4u + 5u * b;
    let qh = word(bw);
    let w0 = word(bw + 1u);
    let w1 = word(bw + 2u);
    let w2 = word(bw + 3u);
    let w3 = word(bw + 4u);
    let lo = dot(bv.b0, q5x4(w0, 0u, qh, 0u)) + dot(bv.b1, q5x4(w1, 0u, qh, 4u)) + dot(bv.b2, q5x4(w2, 0u, qh, 8u)) + dot(bv.b3, q5x4(w3, 0u, qh, 12u));
    let hi = dot(bv.b4, q5x4(w0, 4u, qh, 16u)) + dot(bv.b5, q5x4(w1, 4u, qh, 20u)) + dot(bv.b6, q5x4(w2, 4u, qh, 24u)) + dot(bv.b7, q5x4(w3, 4u, qh, 28u));
    return (lo + hi) * quad_f16(quad(g / 4u), b);
}
