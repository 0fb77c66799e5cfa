// Tensors stored as texels (src/gpu/texels.rs): f32 values as flat memory in an rgba32float
// 2-D array texture, 4096 texels per row, 4096 rows per layer. Vec4 i of the tensor is texel
// (x, y) of layer z, as returned here.
fn texel_coords(i: u32) -> vec3<u32> {
    return vec3<u32>(i & 4095u, (i >> 12u) & 4095u, i >> 24u);
}

