// Tensors stored as texels (src/gpu/texels.rs): values as flat memory in a 2-D array texture of
// 16-byte texels (rgba32float: four f32; rgba32uint: eight bf16), 4096 texels per row, 4096 rows
// per layer. Texel i of the tensor is texel (x, y) of layer z, as returned here.
fn texel_coords(i: u32) -> vec3<u32> {
    return vec3<u32>(i & 4095u, (i >> 12u) & 4095u, i >> 24u);
}
