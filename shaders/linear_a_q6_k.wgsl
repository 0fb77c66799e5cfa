// Operand A of the linear kernels (linear.wgsl): Q6_K weights (blocks.wgsl). A group of eight
// super-blocks (2048 values) is 105 quads: the eight f16 scales d, then each block's 208 bytes
// in ggml's order (13 quads): ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (signed,
// one per 16 values). Each half n of 128 values takes 64 bytes of ql, 32 of qh and 8 scales;
// within it, quarter r of 32 values takes ql bytes 32·(r & 1).. (nibble r / 2) and bits 2r of
// qh. y = (d · sc) · (q - 32), in that order, as ggml computes it.

// The signed scale `is` (0..16) of a block whose scale quad is `s`.
fn q6_scale(s: vec4<u32>, is: u32) -> f32 {
    return f32(bitcast<i32>(quad_byte(s, is) << 24u) >> 24u);
}
// Four 6-bit values minus 32 from a ql word (nibble shift `ls`) and a qh word (shift `hs`).
fn q6x4(ql: u32, ls: u32, qh: u32, hs: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(u8x4(ql, ls, 15u) | (u8x4(qh, hs, 3u) << vec4<u32>(4u))) - 32);
}
fn la4(i: u32) -> vec4<f32> {
    let base = (i / 512u) * 105u;
    let b = (i / 64u) & 7u;
    let blk = base + 1u + 13u * b;
    let t = 4u * (i & 63u);   // value within the super-block
    let n = t / 128u;         // half
    let r = (t / 32u) & 3u;   // quarter
    let l = t & 31u;
    let lw = 16u * n + 8u * (r & 1u) + l / 4u;   // ql word
    let hw = 8u * n + l / 4u;                     // qh word
    let q = q6x4(quad(blk + lw / 4u)[lw & 3u], 4u * (r / 2u), quad(blk + 8u + hw / 4u)[hw & 3u], 2u * r);
    let sc = q6_scale(quad(blk + 12u), 8u * n + 2u * r + l / 16u);
    return (quad_f16(quad(base), b) * sc) * q;
}
// Chunk i of 32 values is quarter r of half n of a super-block: (d · sc) · Σ b·q per 16.
fn la_dot(i: u32, bv: BChunk) -> f32 {
    let base = (i / 64u) * 105u;
    let b = (i / 8u) & 7u;
    let blk = base + 1u + 13u * b;
    let n = (i / 4u) & 1u;
    let r = i & 3u;
    let la = quad(blk + 4u * n + 2u * (r & 1u));
    let lb = quad(blk + 4u * n + 2u * (r & 1u) + 1u);
    let ha = quad(blk + 8u + 2u * n);
    let hb = quad(blk + 9u + 2u * n);
    let ls = 4u * (r / 2u);
    let hs = 2u * r;
    let lo = dot(bv.b0, q6x4(la.x, ls, ha.x, hs)) + dot(bv.b1, q6x4(la.y, ls, ha.y, hs)) + dot(bv.b2, q6x4(la.z, ls, ha.z, hs)) + dot(bv.b3, q6x4(la.w, ls, ha.w, hs));
    let hi = dot(bv.b4, q6x4(lb.x, ls, hb.x, hs)) + dot(bv.b5, q6x4(lb.y, ls, hb.y, hs)) + dot(bv.b6, q6x4(lb.z, ls, hb.z, hs)) + dot(bv.b7, q6x4(lb.w, ls, hb.w, hs));
    let s = quad(blk + 12u);
    let d = quad_f16(quad(base), b);
    let is = 8u * n + 2u * r;
    return (d * q6_scale(s, is)) * lo + (d * q6_scale(s, is + 1u)) * hi;
}
