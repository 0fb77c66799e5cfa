// Rotary position embedding, "rotate half" layout (Hugging Face Qwen2/LLaMA
// `apply_rotary_pos_emb`); CPU twin: src/cpu/rope.rs.
//
// x: rows of heads·head_dim values. Row r's positions are `pos[r·axes ..]`, one per position
// axis (one axis for plain RoPE; three — temporal, height, width — for Qwen2-VL's multimodal
// RoPE); rotary pair d follows the axis whose section holds it (sec0/sec1/sec2: where the pairs
// of axes 0, 1 and 2 end). For each head and d < D/2, with p row r's position on d's axis and
// angle a = p·θ_d:
//   y[d] = x[d]·cos a − x[d + D/2]·sin a,   y[d + D/2] = x[d + D/2]·cos a + x[d]·sin a.
// cos a and sin a come from a host-built table (src/gpu/rope.rs, `rope_table`): one row of D
// values per position, [cos_0 … cos_{D/2−1}, sin_0 … sin_{D/2−1}], computed in f64 like the twin.
// WGSL's sin/cos are only accurate to 2⁻¹¹ near ±π and the angles reach thousands of radians,
// so computing them here would not match the reference. One invocation per (row, head, d).
//
// `rope_qkv` is a decoder layer's attention input in one dispatch: x rows are a packed
// projection [q (heads) | k (kv_heads) | v (kv_heads)] of head_dim values each; q is rotated
// into y, k rotated into the KV cache's key rows and v copied into its value rows (the rows'
// cache slots, at k_off / v_off). Equal to `rope` on q and k plus the
// copies, without three more dispatches per layer.

struct Params {
    rows: u32,
    heads: u32,
    half: u32,       // head_dim / 2
    x_off: u32,
    t_off: u32,
    o_off: u32,
    kv_heads: u32,   // `rope_qkv` only, like the two below
    k_off: u32,
    v_off: u32,
    pos_off: u32,
    axes: u32,       // positions per row
    sec0: u32,       // pairs d < sec0 follow axis 0, d < sec1 axis 1, d < sec2 axis 2, else 3
    sec1: u32,
    sec2: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> pos: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// `rope_qkv` only: the layer's KV cache.
@group(0) @binding(5) var<storage, read_write> keys: array<f32>;
@group(0) @binding(6) var<storage, read_write> values: array<f32>;

// Start of the cos/sin table row for rotary pair d of row `row`.
fn table_row(row: u32, d: u32) -> u32 {
    let axis = select(0u, 1u, d >= p.sec0) + select(0u, 1u, d >= p.sec1)
        + select(0u, 1u, d >= p.sec2);
    return p.t_off + pos[p.pos_off + row * p.axes + axis] * 2u * p.half;
}

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
    let t = table_row(row, d);
    let c = table[t + d];
    let s = table[t + p.half + d];
    let a = x[p.x_off + base + d];
    let b = x[p.x_off + base + p.half + d];
    y[p.o_off + base + d] = a * c - b * s;
    y[p.o_off + base + p.half + d] = b * c + a * s;
}

@compute @workgroup_size(WG)
fn rope_qkv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let slots = p.heads + 2u * p.kv_heads; // heads of a packed row
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.rows * slots * p.half) {
        return;
    }
    let d = i % p.half;
    let rs = i / p.half;                   // row · slots + slot
    let row = rs / slots;
    let slot = rs % slots;
    let src = p.x_off + rs * 2u * p.half;
    let a = x[src + d];
    let b = x[src + p.half + d];
    if (slot >= p.heads + p.kv_heads) {
        let dst = p.v_off + (row * p.kv_heads + slot - p.heads - p.kv_heads) * 2u * p.half;
        values[dst + d] = a;
        values[dst + p.half + d] = b;
        return;
    }
    let t = table_row(row, d);
    let c = table[t + d];
    let s = table[t + p.half + d];
    let ra = a * c - b * s;
    let rb = b * c + a * s;
    if (slot < p.heads) {
        let dst = p.o_off + (row * p.heads + slot) * 2u * p.half;
        y[dst + d] = ra;
        y[dst + p.half + d] = rb;
    } else {
        let dst = p.k_off + (row * p.kv_heads + slot - p.heads) * 2u * p.half;
        keys[dst + d] = ra;
        keys[dst + p.half + d] = rb;
    }
}
