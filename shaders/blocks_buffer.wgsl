// Block-quantized operand A (blocks.wgsl) in a storage buffer: quad t is element t.
@group(0) @binding(1) var<storage, read> a_quads: array<vec4<u32>>;

fn quad(t: u32) -> vec4<u32> {
    return a_quads[t];
}
