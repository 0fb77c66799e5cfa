// Elementwise kernels of the video-LLM (CPU twins: src/cpu/elementwise.rs) and row copies.
//
// One invocation per output element (`copy_rows`: per copied element), WG invocations per
// workgroup, the flat id rebuilt as (wid.x + wid.y·nwg.x)·WG + lid (see `grid` in kernel.rs).
//
// `gelu`, `quick_gelu`, `erf_values`, `round_bf16`: out[i] = f(x[i]).
// `swiglu`: x rows of 2·cols values [gate | up] → out rows of cols: silu(gate)·up.
// `residual_add`: out[i] = x[i] + γ[i % cols]·y[i % y_len] (γ = 1 without has_gamma); y_len
//   divides the element count, so a short y repeats over groups of rows.
// `copy_rows`: for each pair (src_row, dst_row) in `pairs`, out row dst_row = x row src_row;
//   an embedding lookup (dst_row = i) and the scatter of rows into slots are both this.
//   `copy_rows_texels` is the same with x stored as texels, `copy_rows_texels_bf16` as bf16 texels.
//
// GELU and erf come from gelu.wgsl (put before this file).

struct Params {
    n: u32,          // output elements (`copy_rows`: pairs · cols)
    cols: u32,
    x_off: u32,
    y_off: u32,
    g_off: u32,
    o_off: u32,
    y_len: u32,
    has_gamma: u32,
    p_off: u32,      // offset of `pairs` (u32 pairs)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// `residual_add` only:
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
// `copy_rows` only (shares binding 3 with `y`: never in the same entry point):
@group(0) @binding(3) var<storage, read> pairs: array<u32>;
// `copy_rows_texels` only: x is a table stored as f32 texels (texels.wgsl, put before this file).
@group(0) @binding(1) var x_texels: texture_2d_array<f32>;
// `copy_rows_texels_bf16` only: x is a table stored as bf16 texels (eight per texel, bf16.wgsl).
@group(0) @binding(1) var x_texels_bf16: texture_2d_array<u32>;

fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = x[p.x_off + i];
    dst[p.o_off + i] = gelu_value(v);
}

// x·σ(1.702·x): CLIP's and Qwen2-VL's vision MLP activation (`quick_gelu`).
@compute @workgroup_size(WG)
fn quick_gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = x[p.x_off + i];
    dst[p.o_off + i] = v / (1.0 + exp(-1.702 * v));
}

@compute @workgroup_size(WG)
fn erf_values(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    dst[p.o_off + i] = erf_approx(x[p.x_off + i]);
}

@compute @workgroup_size(WG)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let row = i / p.cols;
    let c = i % p.cols;
    let base = p.x_off + row * 2u * p.cols;
    let g = x[base + c];
    let u = x[base + p.cols + c];
    dst[p.o_off + i] = g / (1.0 + exp(-g)) * u;
}

@compute @workgroup_size(WG)
fn residual_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    var b = y[p.y_off + i % p.y_len];
    if (p.has_gamma != 0u) {
        b *= gamma[p.g_off + i % p.cols];
    }
    dst[p.o_off + i] = x[p.x_off + i] + b;
}

// Round to the nearest bfloat16, ties to even, on the bit pattern (the f32 arithmetic of a GPU
// may flush or reorder; integer ops are exact). NaN stays a quiet NaN as in the `half` crate.
@compute @workgroup_size(WG)
fn round_bf16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let bits = bitcast<u32>(x[p.x_off + i]);
    var r: u32;
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        r = (bits | 0x00400000u) & 0xffff0000u;
    } else {
        let lsb = (bits >> 16u) & 1u;
        r = (bits + 0x7fffu + lsb) & 0xffff0000u;
    }
    dst[p.o_off + i] = bitcast<f32>(r);
}

// Flat copied element i of `copy_rows`: (its index in x, its index in dst).
fn copy_indices(i: u32) -> vec2<u32> {
    let pair = i / p.cols;
    let c = i % p.cols;
    let src = pairs[p.p_off + 2u * pair];
    let to = pairs[p.p_off + 2u * pair + 1u];
    return vec2<u32>(p.x_off + src * p.cols + c, p.o_off + to * p.cols + c);
}

@compute @workgroup_size(WG)
fn copy_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let e = copy_indices(i);
    dst[e.y] = x[e.x];
}

// `copy_rows` reading x from texels (an embedding table stored as texels).
@compute @workgroup_size(WG)
fn copy_rows_texels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let e = copy_indices(i);
    let t = texel_coords(e.x >> 2u);
    dst[e.y] = textureLoad(x_texels, t.xy, t.z, 0)[e.x & 3u];
}

// `copy_rows` reading x from bf16 texels (an embedding table stored as bf16), widened to f32.
@compute @workgroup_size(WG)
fn copy_rows_texels_bf16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let e = copy_indices(i);
    let t = texel_coords(e.x >> 3u);
    let w = textureLoad(x_texels_bf16, t.xy, t.z, 0)[(e.x >> 1u) & 3u];
    dst[e.y] = select(bf16_low(w), bf16_high(w), (e.x & 1u) == 1u);
}
