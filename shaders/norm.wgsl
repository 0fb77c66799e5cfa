// LayerNorm with a fused residual add: y = (z - mean) / sqrt(var + eps) * gamma + beta,
// z = x + residual, biased variance, one workgroup per row.
//
// Each invocation walks the row with stride WG (coalesced on GPUs), a workgroup tree reduction
// gives the mean, a second pass over the row (re-read: it is in cache) gives the variance of
// (z - mean) — two passes, so a large mean cannot cancel the variance — and a third writes y.
// Works for any number of columns; WG must be a power of two.

struct Params {
    rows: u32,
    cols: u32,
    x_off: u32,
    r_off: u32,
    g_off: u32,
    b_off: u32,
    y_off: u32,
    has_residual: u32,
    eps: f32,
}

override WG: u32 = 256u;
// Whether rows are checked for overflow (off only to measure what the checks cost).
override CHECK: bool = true;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> res: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

// The executor's health word (src/gpu/kernel.rs, `Recorder::health`): lowered to the row whose
// mean square or variance is not finite — an overflow upstream. `layer_norm` and
// `add_rms_norm` bind it at 6, `rms_norm` at 4.
@group(0) @binding(6) var<storage, read_write> health: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> rms_health: array<atomic<u32>>;

// NaN or ±inf.
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

var<workgroup> red: array<f32, WG>;

fn z_at(row_base: u32, c: u32) -> f32 {
    var v = x[p.x_off + row_base + c];
    if (p.has_residual != 0u) {
        v += res[p.r_off + row_base + c];
    }
    return v;
}

// Sum of `v` over the workgroup, returned to every invocation.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier(); // everyone has read red[0] before the next reduction overwrites it
    return total;
}

@compute @workgroup_size(WG)
fn layer_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    // The whole workgroup takes this branch together, so the barriers below stay uniform.
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    let n = f32(p.cols);

    var s = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        s += z_at(base, c);
    }
    let mean = workgroup_sum(s, lid) / n;

    var q = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        let d = z_at(base, c) - mean;
        q += d * d;
    }
    let var_ = workgroup_sum(q, lid) / n;
    if (CHECK && lid == 0u && non_finite(var_)) {
        atomicMin(&health[0], row);
    }
    let inv = 1.0 / sqrt(var_ + p.eps);

    for (var c = lid; c < p.cols; c += WG) {
        y[p.y_off + base + c] = (z_at(base, c) - mean) * inv * gamma[p.g_off + c] + beta[p.b_off + c];
    }
}

// RMSNorm: y = x / sqrt(mean(x²) + eps) · gamma, one workgroup per row (Qwen2/LLaMA RMSNorm,
// InternViT's InternRMSNorm). Its own bindings (1: x, 2: gamma, 3: y) so the dispatcher binds
// them in order; they share binding numbers with `layer_norm`'s, never in one entry point.
@group(0) @binding(2) var<storage, read> rms_gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> rms_y: array<f32>;

@compute @workgroup_size(WG)
fn rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var q = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        let v = x[p.x_off + base + c];
        q += v * v;
    }
    let ms = mean_square(q, lid);
    if (CHECK && lid == 0u && non_finite(ms)) {
        atomicMin(&rms_health[0], row);
    }
    let inv = 1.0 / sqrt(ms + p.eps);
    for (var c = lid; c < p.cols; c += WG) {
        rms_y[p.y_off + base + c] = x[p.x_off + base + c] * inv * rms_gamma[p.g_off + c];
    }
}

// mean(v²) of a row from this invocation's part `sum_sq` of its squares.
fn mean_square(sum_sq: f32, lid: u32) -> f32 {
    return workgroup_sum(sum_sq, lid) / f32(p.cols);
}

// Residual add + RMSNorm, a pre-norm decoder's `x + attention` (or `+ mlp`) followed by the
// next norm: z = x + res (`z_at`; the host sets has_residual) is written to `sum` (the new
// residual stream, at b_off) and y = z / sqrt(mean(z²) + eps) · gamma. Bindings as `layer_norm` (1: x, 2: res, 3: gamma,
// 5: y) with `sum` at 4, where `layer_norm` has beta.
@group(0) @binding(4) var<storage, read_write> sum: array<f32>;

@compute @workgroup_size(WG)
fn add_rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var q = 0.0;
    for (var c = lid; c < p.cols; c += WG) {
        let v = z_at(base, c);
        sum[p.b_off + base + c] = v;
        q += v * v;
    }
    let ms = mean_square(q, lid);
    if (CHECK && lid == 0u && non_finite(ms)) {
        atomicMin(&health[0], row);
    }
    let inv = 1.0 / sqrt(ms + p.eps);
    for (var c = lid; c < p.cols; c += WG) {
        y[p.y_off + base + c] = z_at(base, c) * inv * gamma[p.g_off + c];
    }
}
