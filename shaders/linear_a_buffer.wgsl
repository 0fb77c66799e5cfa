// Operand A of the linear kernels (linear.wgsl) in a storage buffer of `AElem` (f32, or f16
// weights), aliased by the line before this file. Loads convert to f32.
@group(0) @binding(1) var<storage, read> a4: array<vec4<AElem>>;
@group(0) @binding(1) var<storage, read> a1: array<AElem>;

fn la4(i: u32) -> vec4<f32> {
    return vec4<f32>(a4[i]);
}
fn la1(i: u32) -> f32 {
    return f32(a1[i]);
}

