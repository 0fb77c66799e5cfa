// Multi-scale windowed average pooling with the gather fused in.
//
// For every scale s (up to 8, in order) and window w < ⌊count/s⌋:
//   out[seg_s + w, c] = (Σ_{m<s} x[idx[w·s + m], c]) · (1/s)
// where idx is the u32 index list (or the identity when has_idx = 0) and seg_s the prefix sum of
// the earlier scales' window counts; the remainder count mod s is dropped. All scales run in one
// dispatch: one invocation per output element (row, column), rows found from the prefix sums.
// Index values ≥ x_rows are clamped to the last row, so a bad index never reads out of bounds.
//
// `partial` = 1 (scale 1 only): x holds only the flat rows idx_base..idx_base + x_rows of a
// larger tensor (one block of a long clip); output rows whose index falls outside are left as
// they are, so one dispatch per block fills the whole gather.

struct Params {
    cols: u32,
    out_rows: u32,
    n_scales: u32,
    has_idx: u32,
    x_off: u32,
    x_rows: u32,
    idx_off: u32,
    out_off: u32,
    s0: u32, s1: u32, s2: u32, s3: u32, s4: u32, s5: u32, s6: u32, s7: u32,
    // windows of each scale (⌊count / s_i⌋)
    w0: u32, w1: u32, w2: u32, w3: u32, w4: u32, w5: u32, w6: u32, w7: u32,
    idx_base: u32,
    partial: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 64u;

fn scale_of(i: u32) -> u32 {
    switch i {
        case 0u: { return p.s0; }
        case 1u: { return p.s1; }
        case 2u: { return p.s2; }
        case 3u: { return p.s3; }
        case 4u: { return p.s4; }
        case 5u: { return p.s5; }
        case 6u: { return p.s6; }
        default: { return p.s7; }
    }
}

fn windows_of(i: u32) -> u32 {
    switch i {
        case 0u: { return p.w0; }
        case 1u: { return p.w1; }
        case 2u: { return p.w2; }
        case 3u: { return p.w3; }
        case 4u: { return p.w4; }
        case 5u: { return p.w5; }
        case 6u: { return p.w6; }
        default: { return p.w7; }
    }
}

@compute @workgroup_size(WG)
fn pool(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.out_rows * p.cols) {
        return;
    }
    let row = e / p.cols;
    let c = e % p.cols;

    if (p.partial != 0u) {
        let r = idx[p.idx_off + row];
        if (r >= p.idx_base && r - p.idx_base < p.x_rows) {
            out[p.out_off + e] = x[p.x_off + (r - p.idx_base) * p.cols + c];
        }
        return;
    }

    // Find the scale segment holding `row`.
    var w = row;
    var s = 1u;
    for (var i = 0u; i < p.n_scales; i++) {
        let n = windows_of(i);
        s = scale_of(i);
        if (w < n) {
            break;
        }
        w -= n;
    }

    var sum = 0.0;
    for (var m = 0u; m < s; m++) {
        var r = w * s + m;
        if (p.has_idx != 0u) {
            r = idx[p.idx_off + r];
        }
        r = min(r, p.x_rows - 1u);
        sum += x[p.x_off + r * p.cols + c];
    }
    out[p.out_off + e] = sum * (1.0 / f32(s));
}
