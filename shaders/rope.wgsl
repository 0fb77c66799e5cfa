// Rotary position embedding, "rotate half" layout (Hugging Face Qwen2/LLaMA
// `apply_rotary_pos_emb`); CPU twin: src/cpu/rope.rs.
//
// x: rows of heads·head_dim values, row r at position `position + r`. For each head and
// d < D/2, with angle a = p·θ_d:
//   y[d] = x[d]·cos a − x[d + D/2]·sin a,   y[d + D/2] = x[d + D/2]·cos a + x[d]·sin a.
// cos a and sin a come from a host-built table (src/gpu/rope.rs, `rope_table`): one row of D
// values per position, [cos_0 … cos_{D/2−1}, sin_0 … sin_{D/2−1}], computed in f64 like the twin.
// WGSL's sin/cos are only accurate to 2⁻¹¹ near ±π and the angles reach thousands of radians,
// so computing them here would not match the reference. One invocation per (row, head, d).

struct Params {
    rows: u32,
    heads: u32,
    half: u32,       // head_dim / 2
    position: u32,
    x_off: u32,
    t_off: u32,
    o_off: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn rope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.rows * p.heads * p.half) {
        return;
    }
    let d = i % p.half;
    let rh = i / p.half;             // row · heads + head
    let row = rh / p.heads;
    let base = rh * 2u * p.half;     // start of this head in the row-major (rows, heads·D) x
    let t = p.t_off + (p.position + row) * 2u * p.half;
    let c = table[t + d];
    let s = table[t + p.half + d];
    let a = x[p.x_off + base + d];
    let b = x[p.x_off + base + p.half + d];
    y[p.o_off + base + d] = a * c - b * s;
    y[p.o_off + base + p.half + d] = b * c + a * s;
}
