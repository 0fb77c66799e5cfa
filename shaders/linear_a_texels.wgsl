// Operand A of the linear kernels (linear.wgsl): a weight stored as texels (texels.wgsl).
@group(0) @binding(1) var a_texels: texture_2d_array<f32>;

fn la4(i: u32) -> vec4<f32> {
    let c = texel_coords(i);
    return textureLoad(a_texels, c.xy, c.z, 0);
}
fn la1(i: u32) -> f32 {
    return la4(i >> 2u)[i & 3u];
}

