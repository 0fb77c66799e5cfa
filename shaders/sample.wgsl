// Token sampling from a row of logits; CPU twin: src/cpu/sample.rs (semantics there). Each
// entry point is one workgroup of WG invocations and writes one u32 token id.
//
// `argmax` (greedy): the largest logit, ties to the lower id; NaN never wins (all NaN → the
// last id, as the twin's sequential scan ends). Each invocation scans a strided slice in
// ascending id order, then a tree reduction with the same total order. It also writes, after
// the id, the lowest id whose logit is not finite (u32::MAX when all are): the executor's
// health check, read back with the id.
//
// `pick` (temperature / top-k / top-p): `ids` holds the k candidates in sampling order (logit
// descending, id ascending — the radix top-k's score order, src/gpu/topk.rs). With
// w_i = exp(l_i/T − l_0/T) and p_i = w_i / Σw: keep the shortest prefix whose Σp reaches top_p
// (when top_p < 1), then return the first id whose cumulative p exceeds uniform · (kept Σp).
// The invocations sum w over contiguous segments in parallel; invocation 0 then walks the
// segment sums and, inside the one segment where a threshold is crossed, the single values —
// the twin's sequential cumulative sums, up to the order of additions within segments.

struct Params {
    n: u32,           // logits (`argmax`) or candidates (`pick`)
    x_off: u32,
    i_off: u32,
    o_off: u32,
    temperature: f32,
    top_p: f32,
    uniform: f32,
    _pad: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;
var<workgroup> seg_sum: array<f32, WG>;
var<workgroup> bad_i: array<u32, WG>;

// NaN or ±inf.
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// NaN test on the bit pattern (compilers may assume `v != v` is false).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// True when candidate (v, i) beats (bv, bi): a number beats NaN, larger beats smaller, equal
// values go to the lower id, and between NaNs the higher id wins.
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    let vn = is_nan(v);
    let bn = is_nan(bv);
    if (vn != bn) {
        return bn;
    }
    if (vn) {
        return i > bi;
    }
    return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(local_invocation_index) lid: u32) {
    var bv = logits[p.x_off + min(lid, p.n - 1u)];
    var bi = min(lid, p.n - 1u);
    var bad = 0xFFFFFFFFu;
    if (lid < p.n && non_finite(bv)) {
        bad = lid;
    }
    for (var i = lid + WG; i < p.n; i += WG) {
        let v = logits[p.x_off + i];
        if (non_finite(v)) {
            bad = min(bad, i);
        }
        if (beats(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    bad_i[lid] = bad;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s && beats(best_v[lid + s], best_i[lid + s], best_v[lid], best_i[lid])) {
            best_v[lid] = best_v[lid + s];
            best_i[lid] = best_i[lid + s];
        }
        if (lid < s) {
            bad_i[lid] = min(bad_i[lid], bad_i[lid + s]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[p.o_off] = best_i[0];
        out[p.o_off + 1u] = bad_i[0];
    }
}

// Unnormalised weight of candidate j.
fn weight(j: u32, top: f32) -> f32 {
    return exp(logits[p.x_off + ids[p.i_off + j]] / p.temperature - top);
}

// The first candidate at which the running sum of p (starting from `start`) passes `thr`
// (`inclusive`: reaches it), scanning segments then values; p.n when it never does.
// Runs on invocation 0 only.
fn first_crossing(thr: f32, inclusive: bool, total: f32, seg: u32, top: f32) -> u32 {
    var acc = 0.0;
    for (var t = 0u; t < WG; t++) {
        let s = seg_sum[t] / total;
        let next = acc + s;
        let crosses = select(next > thr, next >= thr, inclusive);
        if (crosses) {
            // Walk this segment value by value.
            let end = min(t * seg + seg, p.n);
            for (var j = t * seg; j < end; j++) {
                acc += weight(j, top) / total;
                if (select(acc > thr, acc >= thr, inclusive)) {
                    return j;
                }
            }
            // Rounding made the segment sum cross but not its values: go on after it.
        } else {
            acc = next;
        }
    }
    return p.n;
}

@compute @workgroup_size(WG)
fn pick(@builtin(local_invocation_index) lid: u32) {
    let top = logits[p.x_off + ids[p.i_off]] / p.temperature;
    let seg = (p.n + WG - 1u) / WG;
    var s = 0.0;
    for (var j = lid * seg; j < min(lid * seg + seg, p.n); j++) {
        s += weight(j, top);
    }
    seg_sum[lid] = s;
    workgroupBarrier();
    if (lid != 0u) {
        return;
    }
    var total = 0.0;
    for (var t = 0u; t < WG; t++) {
        total += seg_sum[t];
    }
    // Kept prefix length and its probability mass.
    var keep = p.n;
    if (p.top_p < 1.0) {
        keep = min(first_crossing(p.top_p, true, total, seg, top) + 1u, p.n);
    }
    var kept = 0.0;
    for (var t = 0u; t < WG; t++) {
        let lo = t * seg;
        if (lo >= keep) {
            break;
        }
        if (lo + seg <= keep) {
            kept += seg_sum[t] / total;
        } else {
            for (var j = lo; j < keep; j++) {
                kept += weight(j, top) / total;
            }
        }
    }
    let chosen = min(first_crossing(p.uniform * kept, false, total, seg, top), keep - 1u);
    out[p.o_off] = ids[p.i_off + chosen];
}
