// Y (M×N) = X (M×K) · Wᵀ + b, W stored (N×K) row-major (PyTorch Linear layout).
//
// Both operands are K-contiguous, so every output is a dot product of two contiguous rows.
// Entry points:
//   linear_rb4   register-blocked, vec4 loads (needs K % 4 == 0 and x/w offsets % 4 == 0)
//   linear_rb1   register-blocked, scalar loads (any K, any offset)
//   linear_tiled workgroup-memory tiles (for real GPUs), scalar loads, any K / offset
// Every operand's element offset comes in Params; rows/columns past M/N are clamped on load and
// skipped on store, so any M, N, K works.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    x_off: u32,
    w_off: u32,
    b_off: u32,
    y_off: u32,
    has_bias: u32,
    groups_n: u32,     // workgroups along N
    groups_total: u32, // workgroups in all (the grid may hold a few more)
}

@group(0) @binding(0) var<uniform> p: Params;

// ---------------------------------------------------------------------------------------------
// Register-blocked kernels (chosen on CPU adapters such as llvmpipe).
//
// A workgroup owns TM consecutive rows of X (the same for all its invocations, so a CPU driver
// loads them once and broadcasts) and WG·TN columns; invocation `lid` owns columns
// n0 + lid + j·WG, j < TN. Each invocation keeps TM×TN accumulators in registers and walks K
// once; each loaded X value is used TN times, each W value TM times.

override WG: u32 = 64u;
override TM: u32 = 4u; // ≤ MAX_TM
override TN: u32 = 2u; // ≤ MAX_TN
const MAX_TM: u32 = 8u;
const MAX_TN: u32 = 4u;

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Scalar views of the same bindings, for the entry points without the alignment requirement.
@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(2) var<storage, read> w1: array<f32>;

struct Block {
    m0: u32,
    n0: u32,
    valid: bool,
}

fn rb_block(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Block {
    let g = wid.x + wid.y * nwg.x;
    let gm = g / p.groups_n;
    let gn = g - gm * p.groups_n;
    return Block(gm * TM, gn * WG * TN + lid, g < p.groups_total);
}

fn store_block(b: Block, acc: ptr<function, array<array<f32, MAX_TN>, MAX_TM>>) {
    for (var i = 0u; i < TM; i++) {
        let m = b.m0 + i;
        if (m >= p.m) {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let n = b.n0 + j * WG;
            if (n < p.n) {
                var v = (*acc)[i][j];
                if (p.has_bias != 0u) {
                    v += bias[p.b_off + n];
                }
                y[p.y_off + m * p.n + n] = v;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn linear_rb4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let b = rb_block(wid, nwg, lid);
    if (!b.valid) {
        return;
    }
    let k4 = p.k / 4u;
    var xrow: array<u32, MAX_TM>;
    for (var i = 0u; i < TM; i++) {
        xrow[i] = p.x_off / 4u + min(b.m0 + i, p.m - 1u) * k4;
    }
    var wrow: array<u32, MAX_TN>;
    for (var j = 0u; j < TN; j++) {
        wrow[j] = p.w_off / 4u + min(b.n0 + j * WG, p.n - 1u) * k4;
    }
    var acc: array<array<f32, MAX_TN>, MAX_TM>;
    for (var kk = 0u; kk < k4; kk++) {
        var wv: array<vec4<f32>, MAX_TN>;
        for (var j = 0u; j < TN; j++) {
            wv[j] = w4[wrow[j] + kk];
        }
        for (var i = 0u; i < TM; i++) {
            let xv = x4[xrow[i] + kk];
            for (var j = 0u; j < TN; j++) {
                acc[i][j] += dot(xv, wv[j]);
            }
        }
    }
    store_block(b, &acc);
}

@compute @workgroup_size(WG)
fn linear_rb1(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let b = rb_block(wid, nwg, lid);
    if (!b.valid) {
        return;
    }
    var xrow: array<u32, MAX_TM>;
    for (var i = 0u; i < TM; i++) {
        xrow[i] = p.x_off + min(b.m0 + i, p.m - 1u) * p.k;
    }
    var wrow: array<u32, MAX_TN>;
    for (var j = 0u; j < TN; j++) {
        wrow[j] = p.w_off + min(b.n0 + j * WG, p.n - 1u) * p.k;
    }
    var acc: array<array<f32, MAX_TN>, MAX_TM>;
    // Groups of four (built from scalar loads), then the K % 4 tail.
    let k_main = p.k & ~3u;
    for (var kk = 0u; kk < k_main; kk += 4u) {
        var wv: array<vec4<f32>, MAX_TN>;
        for (var j = 0u; j < TN; j++) {
            let a = wrow[j] + kk;
            wv[j] = vec4(w1[a], w1[a + 1u], w1[a + 2u], w1[a + 3u]);
        }
        for (var i = 0u; i < TM; i++) {
            let a = xrow[i] + kk;
            let xv = vec4(x1[a], x1[a + 1u], x1[a + 2u], x1[a + 3u]);
            for (var j = 0u; j < TN; j++) {
                acc[i][j] += dot(xv, wv[j]);
            }
        }
    }
    for (var kk = k_main; kk < p.k; kk++) {
        for (var i = 0u; i < TM; i++) {
            let xv = x1[xrow[i] + kk];
            for (var j = 0u; j < TN; j++) {
                acc[i][j] += xv * w1[wrow[j] + kk];
            }
        }
    }
    store_block(b, &acc);
}

// EXPERIMENT: hand-unrolled TM=4, TN=2
@compute @workgroup_size(WG)
fn linear_exp(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let b = rb_block(wid, nwg, lid);
    if (!b.valid) {
        return;
    }
    let k4 = p.k / 4u;
    let x0 = p.x_off / 4u + min(b.m0 + 0u, p.m - 1u) * k4;
    let x1r = p.x_off / 4u + min(b.m0 + 1u, p.m - 1u) * k4;
    let x2 = p.x_off / 4u + min(b.m0 + 2u, p.m - 1u) * k4;
    let x3 = p.x_off / 4u + min(b.m0 + 3u, p.m - 1u) * k4;
    let w0 = p.w_off / 4u + min(b.n0, p.n - 1u) * k4;
    let w1r = p.w_off / 4u + min(b.n0 + WG, p.n - 1u) * k4;
    var a00 = 0.0; var a01 = 0.0; var a10 = 0.0; var a11 = 0.0;
    var a20 = 0.0; var a21 = 0.0; var a30 = 0.0; var a31 = 0.0;
    for (var kk = 0u; kk < k4; kk++) {
        let u0 = w4[w0 + kk];
        let u1 = w4[w1r + kk];
        let v0 = x4[x0 + kk];
        let v1 = x4[x1r + kk];
        let v2 = x4[x2 + kk];
        let v3 = x4[x3 + kk];
        a00 += dot(v0, u0); a01 += dot(v0, u1);
        a10 += dot(v1, u0); a11 += dot(v1, u1);
        a20 += dot(v2, u0); a21 += dot(v2, u1);
        a30 += dot(v3, u0); a31 += dot(v3, u1);
    }
    var acc: array<array<f32, MAX_TN>, MAX_TM>;
    acc[0][0] = a00; acc[0][1] = a01; acc[1][0] = a10; acc[1][1] = a11;
    acc[2][0] = a20; acc[2][1] = a21; acc[3][0] = a30; acc[3][1] = a31;
    store_block(b, &acc);
}
