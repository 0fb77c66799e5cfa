// Operand A of the linear kernels (linear.wgsl): Q4_K weights (blocks.wgsl), ggml's 144-byte
// super-blocks of 256 values as they are (9 quads): quad 0 holds f16 d and dmin and 12 bytes of
// 6-bit scales and mins for 8 sub-blocks of 32; quads 1..9 hold 128 bytes of nibbles, each 32
// bytes (two quads) 64 values, low nibbles first. y = (d · sc) · q - dmin · m, in that order,
// as ggml computes it.

// (d · sc, dmin · m) of sub-block j (0..8) from quad 0 (ggml's get_scale_min_k4 over the
// scale bytes, which start at byte 4).
fn scale_min(q0: vec4<u32>, j: u32) -> vec2<f32> {
    var sc: u32;
    var m: u32;
    if j < 4u {
        sc = quad_byte(q0, 4u + j) & 63u;
        m = quad_byte(q0, 8u + j) & 63u;
    } else {
        sc = (quad_byte(q0, 8u + j) & 15u) | ((quad_byte(q0, j) >> 6u) << 4u);
        m = (quad_byte(q0, 8u + j) >> 4u) | ((quad_byte(q0, 4u + j) >> 6u) << 4u);
    }
    return vec2<f32>(f16_bits(q0.x) * f32(sc), f16_bits(q0.x >> 16u) * f32(m));
}
fn la4(i: u32) -> vec4<f32> {
    let base = (i / 64u) * 9u;
    let t = i & 63u;          // vec4 within the super-block
    let g = t / 16u;          // 64-value group: two quads
    let hi = (t / 8u) & 1u;   // high nibbles: the group's second sub-block
    let k = t & 7u;
    let q = u8x4(quad(base + 1u + 2u * g + k / 4u)[k & 3u], 4u * hi, 15u);
    let dm = scale_min(quad(base), 2u * g + hi);
    return dm.x * vec4<f32>(q) - dm.y;
}
// Chunk i of 32 values is sub-block i % 8 of super-block i / 8:
// (d · sc) · Σ b·q - (dmin · m) · Σ b.
fn la_dot(i: u32, bv: BChunk) -> f32 {
    let base = (i / 8u) * 9u;
    let j = i & 7u;
    let g = base + 1u + 2u * (j / 2u);
    let q = dot_nibbles(bv, quad(g), quad(g + 1u), 4u * (j & 1u));
    let dm = scale_min(quad(base), j);
    return dm.x * (q.x + q.y) - dm.y * b_sum(bv);
}
