// Block-quantized operand A (blocks.wgsl) stored as texels (texels.wgsl): quad t is texel t of
// an rgba32uint texture, one branch-free fetch on CPU adapters where buffer loads loop over
// the lanes.
@group(0) @binding(1) var a_texels: texture_2d_array<u32>;

fn quad(t: u32) -> vec4<u32> {
    let c = texel_coords(t);
    return textureLoad(a_texels, c.xy, c.z, 0);
}
