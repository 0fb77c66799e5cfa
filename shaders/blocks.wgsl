// Block-quantized operand A (the linear preludes linear_a_q*.wgsl) in the device layout of
// gpu/blocks.rs: 16-byte quads, read through `quad(t)` from a storage buffer
// (blocks_buffer.wgsl) or a u32 texture (blocks_texels.wgsl), and taken apart here.

// The four bytes of a word as signed values (little-endian order).
fn i8x4(w: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(w << 24u, w << 16u, w << 8u, w)) >> vec4<u32>(24u);
    return vec4<f32>(v);
}
// The four bytes of a word, unsigned, each shifted right by `s` and masked to `mask`.
fn u8x4(w: u32, s: u32, mask: u32) -> vec4<u32> {
    return (vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) >> vec4<u32>(s)) & vec4<u32>(mask);
}
// Word `w` of the operand (for fields not on a quad boundary: Q5_0's).
fn word(w: u32) -> u32 {
    return quad(w >> 2u)[w & 3u];
}
// Byte `b` (0..16) of a quad.
fn quad_byte(q: vec4<u32>, b: u32) -> u32 {
    return (q[b / 4u] >> (8u * (b & 3u))) & 0xffu;
}
// The f16 in the low 16 bits of `h`, widened exactly (zero, subnormal, normal, inf/NaN):
// integer ops only, since `unpack2x16float` needs a capability some back ends lack.
fn f16_bits(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 31u;
    let m = h & 0x3ffu;
    let normal = bitcast<f32>(sign | select((e + 112u) << 23u, 0x7f800000u, e == 31u) | (m << 13u));
    // Subnormal (or zero): m · 2⁻²⁴, exact in f32.
    let small = bitcast<f32>(sign | bitcast<u32>(f32(m) * 5.9604645e-8));
    return select(normal, small, e == 0u);
}
// f16 number `b` (0..8) of a quad: the scale of block b of a group of eight.
fn quad_f16(q: vec4<u32>, b: u32) -> f32 {
    return f16_bits(q[b / 2u] >> (16u * (b & 1u)));
}
// Element i through its vec4 (all block sizes are multiples of 4).
fn la1(i: u32) -> f32 {
    return la4(i / 4u)[i & 3u];
}

// The matrix-vector kernel's unit of K (linear.wgsl, `gemv`) for block formats: 32 values, one
// block or sub-block, whose scales are read once per chunk; B as eight vec4s.
const A_CHUNK: u32 = 32u;
struct BChunk {
    b0: vec4<f32>,
    b1: vec4<f32>,
    b2: vec4<f32>,
    b3: vec4<f32>,
    b4: vec4<f32>,
    b5: vec4<f32>,
    b6: vec4<f32>,
    b7: vec4<f32>,
}

fn lb_chunk(i: u32) -> BChunk {
    let j = 8u * i;
    return BChunk(b4[j], b4[j + 1u], b4[j + 2u], b4[j + 3u], b4[j + 4u], b4[j + 5u], b4[j + 6u], b4[j + 7u]);
}
// Σ b·q over a chunk whose 32 values are the signed bytes of two quads.
fn dot_i8(bv: BChunk, qa: vec4<u32>, qb: vec4<u32>) -> f32 {
    return dot(bv.b0, i8x4(qa.x)) + dot(bv.b1, i8x4(qa.y)) + dot(bv.b2, i8x4(qa.z)) + dot(bv.b3, i8x4(qa.w)) + dot(bv.b4, i8x4(qb.x)) + dot(bv.b5, i8x4(qb.y)) + dot(bv.b6, i8x4(qb.z)) + dot(bv.b7, i8x4(qb.w));
}
// Σ b·q over a chunk whose 32 values are the nibbles (shift `s`) of two quads, as its two
// halves of 16.
fn dot_nibbles(bv: BChunk, qa: vec4<u32>, qb: vec4<u32>, s: u32) -> vec2<f32> {
    return vec2<f32>(
        dot(bv.b0, vec4<f32>(u8x4(qa.x, s, 15u))) + dot(bv.b1, vec4<f32>(u8x4(qa.y, s, 15u))) + dot(bv.b2, vec4<f32>(u8x4(qa.z, s, 15u))) + dot(bv.b3, vec4<f32>(u8x4(qa.w, s, 15u))),
        dot(bv.b4, vec4<f32>(u8x4(qb.x, s, 15u))) + dot(bv.b5, vec4<f32>(u8x4(qb.y, s, 15u))) + dot(bv.b6, vec4<f32>(u8x4(qb.z, s, 15u))) + dot(bv.b7, vec4<f32>(u8x4(qb.w, s, 15u))),
    );
}
// Σ b over a chunk.
fn b_sum(bv: BChunk) -> f32 {
    return dot(bv.b0 + bv.b1 + bv.b2 + bv.b3 + bv.b4 + bv.b5 + bv.b6 + bv.b7, vec4<f32>(1.0));
}
