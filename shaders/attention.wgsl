// Multi-head scaled-dot-product attention over strided operands (flash-style, online softmax).
//
// One kernel serves self-attention along either axis of a packed (T, N, 3E) qkv tensor and
// cross-attention between separate q, k, v tensors: the element of operand X at (group g, row i,
// head h, dim d) is X[X_off + g·X_gs + i·X_rs + h·head_dim + d].
//
//   out[g,i,h,:] = Σ_j softmax_j(scale · q[g,i,h,:]·k[g,j,h,:]) v[g,j,h,:]
//
// `attend`: a workgroup handles WG query rows of one (group, head); each invocation owns one
// query row (q and the output accumulator live in private vec4 arrays, head_dim ≤ 256 padded to a
// multiple of 4 with zeros). Keys are visited in tiles; with STAGE the tile's K and V rows are
// first copied into workgroup memory (2 × 8 KiB) by the whole workgroup, otherwise every
// invocation reads them from the storage buffers. Tiles hold up to 8 blocks of 4 keys (8 keys at
// head_dim 224 or 256, 32 at head_dim ≤ 16). Per tile: scores four keys at a time (one q load
// feeds four dot products), the tile max, the weights exp(s − m_new), then the weighted sum of V
// four keys at a time, the accumulator rescaled by exp(m_old − m_new) on the first block (running
// max m and sum l in f32). Keys of a partial last block get the score −3e38, i.e. weight 0.
//
// Decoder extensions (src/gpu/attention.rs, `attention_cached`): with kv_group > 1 query head h
// reads key/value head h / kv_group (grouped-query attention); with `causal`, query row i sees
// only keys j ≤ i + causal_off (a KV cache whose first query row sits at position causal_off),
// the key loop of a workgroup stops after its last row's last visible key, and masked keys get
// the score −3e38 like padding. Key 0 is visible to every row, so the first tile always sets a
// finite running max. Existing callers pass kv_group = 1, causal = 0: unchanged behaviour.
//
// Split-K (flash decoding, src/gpu/attention.rs): with splits > 1 (non-causal only) the keys
// are cut into `splits` ranges of ⌈kv_len/splits⌉, each range a workgroup of its own, so a
// one-row decode over a long cache fills the device. Each writes its unnormalised accumulator,
// running max m and sum l to a scratch buffer (out_off = the scratch, head_dim + 2 values per
// (group, head, row, split)); `combine_splits` rescales them to the common max and divides.
//
// `probs`: the softmax weights (groups, heads, q_len, kv_len), one invocation per query row, two
// passes over the keys (running max and sum, then normalised weights).
//
// The GEMM route (src/gpu/attention.rs, chosen where it is faster — CPU adapters — for long
// sequences) computes the same thing in four dispatches: S = Q·Kᵀ per (group, head) with the
// linear family's batched product, `softmax_rows` on S in place, `transpose_v` (V per (group,
// head) as head_dim rows of kv_len keys, the K-contiguous operand the product needs), and
// O = P·V with the batched product again.

struct Params {
    groups: u32,
    q_len: u32,
    kv_len: u32,
    heads: u32,
    head_dim: u32,
    scale: f32,
    q_blocks: u32,   // ceil(q_len / WG) for `attend`
    out_off: u32,    // element offset of the output view
    q_off: u32,
    q_gs: u32,
    q_rs: u32,
    k_off: u32,
    k_gs: u32,
    k_rs: u32,
    v_off: u32,
    v_gs: u32,
    v_rs: u32,
    o_gs: u32,
    o_rs: u32,
    kv_group: u32,   // query heads per key/value head (GQA); 1 = plain multi-head
    causal: u32,     // 1: query row i sees keys j ≤ i + causal_off only (`attend`)
    causal_off: u32, // cache position of query row 0
    splits: u32,     // split-K: key ranges per (group, head, block); 1 = off (`attend`)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qbuf: array<f32>;
@group(0) @binding(2) var<storage, read> kbuf: array<f32>;
@group(0) @binding(3) var<storage, read> vbuf: array<f32>;
@group(0) @binding(4) var<storage, read_write> obuf: array<f32>;
// `probs` binds its output at binding 3; `softmax_rows` and `transpose_v` bind their own buffers
// from binding 1 (the dispatcher binds buffers in order). A binding may be shared by
// variables of different entry points (WGSL forbids that only within one entry point).
@group(0) @binding(3) var<storage, read_write> pbuf: array<f32>;

// Query rows per workgroup (one per invocation).
override WG: u32 = 64u;
// Stage K/V tiles in workgroup memory (see src/gpu/attention.rs for the per-adapter choice).
override STAGE: bool = true;

const MAX_HD4: u32 = 64u;          // head_dim ≤ 256
const TILE_VEC4: u32 = 512u;       // vec4s per staged tile: 8 KiB for K plus 8 KiB for V
const MAX_BLOCKS: u32 = 8u;        // a tile holds at most 8 blocks of 4 keys
const NEG_BIG: f32 = -3.0e38;      // "minus infinity" for scores and running maxima

var<workgroup> ktile: array<vec4<f32>, TILE_VEC4>;
var<workgroup> vtile: array<vec4<f32>, TILE_VEC4>;

// Four consecutive values starting at `base + d` of row `base`, zero past head_dim.
fn ld_q(base: u32, d: u32) -> vec4<f32> {
    let hd = p.head_dim;
    let i = base + d;
    if (d + 3u < hd) {
        return vec4<f32>(qbuf[i], qbuf[i + 1u], qbuf[i + 2u], qbuf[i + 3u]);
    }
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (d + c < hd) { r[c] = qbuf[i + c]; }
    }
    return r;
}

fn ld_k(base: u32, d: u32) -> vec4<f32> {
    let hd = p.head_dim;
    let i = base + d;
    if (d + 3u < hd) {
        return vec4<f32>(kbuf[i], kbuf[i + 1u], kbuf[i + 2u], kbuf[i + 3u]);
    }
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (d + c < hd) { r[c] = kbuf[i + c]; }
    }
    return r;
}

fn ld_v(base: u32, d: u32) -> vec4<f32> {
    let hd = p.head_dim;
    let i = base + d;
    if (d + 3u < hd) {
        return vec4<f32>(vbuf[i], vbuf[i + 1u], vbuf[i + 2u], vbuf[i + 3u]);
    }
    var r = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (d + c < hd) { r[c] = vbuf[i + c]; }
    }
    return r;
}

// Start of key row j of (group, head) in kbuf / vbuf; j is clamped to the last key so reads of
// the padding keys of a partial block stay in bounds (their weight is exactly 0).
fn k_row(group: u32, head: u32, j: u32) -> u32 {
    return p.k_off + group * p.k_gs + min(j, p.kv_len - 1u) * p.k_rs + head * p.head_dim;
}
fn v_row(group: u32, head: u32, j: u32) -> u32 {
    return p.v_off + group * p.v_gs + min(j, p.kv_len - 1u) * p.v_rs + head * p.head_dim;
}

// Components d..d+3 of key (tile-relative) j of the current tile: from workgroup memory when
// staged, else straight from the storage buffer (key j0 + j).
fn key4(group: u32, head: u32, j0: u32, j: u32, d4: u32, hd4: u32) -> vec4<f32> {
    if (STAGE) {
        return ktile[j * hd4 + d4];
    }
    return ld_k(k_row(group, head, j0 + j), d4 * 4u);
}
fn val4(group: u32, head: u32, j0: u32, j: u32, d4: u32, hd4: u32) -> vec4<f32> {
    if (STAGE) {
        return vtile[j * hd4 + d4];
    }
    return ld_v(v_row(group, head, j0 + j), d4 * 4u);
}

@compute @workgroup_size(WG)
fn attend(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.groups * p.heads * p.q_blocks * p.splits) {
        return;
    }
    let split = flat % p.splits;
    let block = (flat / p.splits) % p.q_blocks;
    let gh = flat / p.splits / p.q_blocks;
    let head = gh % p.heads;
    let group = gh / p.heads;
    let kvh = head / p.kv_group;
    let hd4 = (p.head_dim + 3u) / 4u;
    let row = block * WG + lid;
    // Keys this workgroup visits (uniform across it, so the barriers below stay uniform) and
    // the last key this invocation's row may see.
    let split_len = (p.kv_len + p.splits - 1u) / p.splits;
    let kv_start = split * split_len;
    var kv_end = min(p.kv_len, kv_start + split_len);
    var last_key = p.kv_len;
    if (p.causal != 0u) {
        kv_end = min(kv_end, block * WG + WG + p.causal_off);
        last_key = row + p.causal_off;
    }

    // This invocation's query row, pre-multiplied by the scale (rows past q_len repeat the last
    // row so every read stays in bounds; their results are not written), and its accumulator.
    var q: array<vec4<f32>, MAX_HD4>;
    var acc: array<vec4<f32>, MAX_HD4>;
    let qbase = p.q_off + group * p.q_gs + min(row, p.q_len - 1u) * p.q_rs + head * p.head_dim;
    for (var d4 = 0u; d4 < hd4; d4++) {
        q[d4] = ld_q(qbase, d4 * 4u) * p.scale;
        acc[d4] = vec4<f32>(0.0);
    }
    var m = NEG_BIG;   // running max of the scores
    var l = 0.0;       // running sum of exp(score − m)

    // Keys per tile: a multiple of 4 whose K and V rows fit the staging arrays.
    let tile = min(TILE_VEC4 / hd4 / 4u, MAX_BLOCKS) * 4u;
    // Scores (then weights) of the current tile, keys 4b..4b+3 in s[b].
    var s: array<vec4<f32>, MAX_BLOCKS>;
    for (var j0 = kv_start; j0 < kv_end; j0 += tile) {
        let n = min(tile, kv_end - j0);
        let nb = (n + 3u) / 4u;
        if (STAGE) {
            workgroupBarrier();   // everyone is done with the previous tile
            for (var e = lid; e < nb * 4u * hd4; e += WG) {
                let j = e / hd4;
                let d = (e % hd4) * 4u;
                var kv = vec4<f32>(0.0);
                var vv = vec4<f32>(0.0);
                if (j < n) {
                    kv = ld_k(k_row(group, kvh, j0 + j), d);
                    vv = ld_v(v_row(group, kvh, j0 + j), d);
                }
                ktile[e] = kv;
                vtile[e] = vv;
            }
            workgroupBarrier();
        }

        // Scores, four keys at a time (each q load feeds four dot products), and the tile max.
        var tmax = m;
        for (var b = 0u; b < nb; b++) {
            var sb = vec4<f32>(0.0);
            for (var d4 = 0u; d4 < hd4; d4++) {
                let qv = q[d4];
                sb += vec4<f32>(
                    dot(qv, key4(group, kvh, j0, 4u * b, d4, hd4)),
                    dot(qv, key4(group, kvh, j0, 4u * b + 1u, d4, hd4)),
                    dot(qv, key4(group, kvh, j0, 4u * b + 2u, d4, hd4)),
                    dot(qv, key4(group, kvh, j0, 4u * b + 3u, d4, hd4)),
                );
            }
            // Keys past the end of a partial last block, and keys after a causal row's
            // position, get weight 0.
            let jv = vec4<u32>(4u * b) + vec4<u32>(0u, 1u, 2u, 3u);
            let valid = (jv < vec4<u32>(n)) & (vec4<u32>(j0) + jv <= vec4<u32>(last_key));
            sb = select(vec4<f32>(NEG_BIG), sb, valid);
            s[b] = sb;
            tmax = max(tmax, max(max(sb.x, sb.y), max(sb.z, sb.w)));
        }

        // Weights under the new max; the accumulator is rescaled by exp(m_old − m_new) while the
        // first block of values is added (each acc load/store serves four keys).
        let corr = exp(m - tmax);
        l *= corr;
        for (var b = 0u; b < nb; b++) {
            let w = exp(s[b] - vec4<f32>(tmax));
            s[b] = w;
            l += (w.x + w.y) + (w.z + w.w);
        }
        m = tmax;
        for (var b = 0u; b < nb; b++) {
            let w = s[b];
            let c = select(1.0, corr, b == 0u);
            for (var d4 = 0u; d4 < hd4; d4++) {
                var a = acc[d4] * c;
                a = fma(val4(group, kvh, j0, 4u * b, d4, hd4), vec4<f32>(w.x), a);
                a = fma(val4(group, kvh, j0, 4u * b + 1u, d4, hd4), vec4<f32>(w.y), a);
                a = fma(val4(group, kvh, j0, 4u * b + 2u, d4, hd4), vec4<f32>(w.z), a);
                a = fma(val4(group, kvh, j0, 4u * b + 3u, d4, hd4), vec4<f32>(w.w), a);
                acc[d4] = a;
            }
        }
    }

    if (row < p.q_len && p.splits > 1u) {
        let pbase = p.out_off + (((group * p.heads + head) * p.q_len + row) * p.splits + split) * (p.head_dim + 2u);
        for (var d = 0u; d < p.head_dim; d++) {
            obuf[pbase + d] = acc[d / 4u][d % 4u];
        }
        obuf[pbase + p.head_dim] = m;
        obuf[pbase + p.head_dim + 1u] = l;
    } else if (row < p.q_len) {
        let inv = 1.0 / l;
        let obase = p.out_off + group * p.o_gs + row * p.o_rs + head * p.head_dim;
        for (var d = 0u; d < p.head_dim; d++) {
            obuf[obase + d] = acc[d / 4u][d % 4u] * inv;
        }
    }
}

// Split-K combine: out[g, i, h, :] = Σ_s e^(m_s − M)·acc_s / Σ_s e^(m_s − M)·l_s with
// M = max_s m_s, from the scratch `attend` wrote (binding 1; k_off = its offset) into the output
// (binding 2, out_off / o_gs / o_rs). One invocation per (group, head, row).
@group(0) @binding(1) var<storage, read> c_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> c_out: array<f32>;

@compute @workgroup_size(64)
fn combine_splits(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let flat = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (flat >= p.groups * p.heads * p.q_len) {
        return;
    }
    let row = flat % p.q_len;
    let gh = flat / p.q_len;
    let head = gh % p.heads;
    let group = gh / p.heads;
    let stride = p.head_dim + 2u;
    let base = p.k_off + flat * p.splits * stride;
    var mx = NEG_BIG;
    for (var s = 0u; s < p.splits; s++) {
        mx = max(mx, c_part[base + s * stride + p.head_dim]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let b = base + s * stride;
        l += exp(c_part[b + p.head_dim] - mx) * c_part[b + p.head_dim + 1u];
    }
    let inv = 1.0 / l;
    let obase = p.out_off + group * p.o_gs + row * p.o_rs + head * p.head_dim;
    for (var d = 0u; d < p.head_dim; d++) {
        var a = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            let b = base + s * stride;
            a += exp(c_part[b + p.head_dim] - mx) * c_part[b + d];
        }
        c_out[obase + d] = a * inv;
    }
}

// Softmax weights: pbuf[out_off + ((g·heads + h)·q_len + i)·kv_len + j], one invocation per
// (group, head, query row).
@compute @workgroup_size(64)
fn probs(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let flat = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (flat >= p.groups * p.heads * p.q_len) {
        return;
    }
    let row = flat % p.q_len;
    let gh = flat / p.q_len;
    let head = gh % p.heads;
    let group = gh / p.heads;
    let hd4 = (p.head_dim + 3u) / 4u;

    var q: array<vec4<f32>, MAX_HD4>;
    let qbase = p.q_off + group * p.q_gs + row * p.q_rs + head * p.head_dim;
    for (var d4 = 0u; d4 < hd4; d4++) {
        q[d4] = ld_q(qbase, d4 * 4u) * p.scale;
    }

    // Pass 1: running max and sum.
    var m = NEG_BIG;
    var l = 0.0;
    for (var j = 0u; j < p.kv_len; j++) {
        let kb = k_row(group, head / p.kv_group, j);
        var dv = vec4<f32>(0.0);
        for (var d4 = 0u; d4 < hd4; d4++) {
            dv = fma(q[d4], ld_k(kb, d4 * 4u), dv);
        }
        let sj = (dv.x + dv.y) + (dv.z + dv.w);
        if (sj > m) {
            l = l * exp(m - sj) + 1.0;
            m = sj;
        } else {
            l += exp(sj - m);
        }
    }

    // Pass 2: normalised weights.
    let inv = 1.0 / l;
    let obase = p.out_off + flat * p.kv_len;
    for (var j = 0u; j < p.kv_len; j++) {
        let kb = k_row(group, head / p.kv_group, j);
        var dv = vec4<f32>(0.0);
        for (var d4 = 0u; d4 < hd4; d4++) {
            dv = fma(q[d4], ld_k(kb, d4 * 4u), dv);
        }
        let sj = (dv.x + dv.y) + (dv.z + dv.w);
        pbuf[obase + j] = exp(sj - m) * inv;
    }
}

// Row-wise softmax in place: rows `rows` of `len` values starting at `off`, each replaced by
// softmax(scale · row), max subtracted, f32. One invocation per row.
struct SoftmaxParams {
    rows: u32,
    len: u32,
    off: u32,
    scale: f32,
}
@group(0) @binding(0) var<uniform> sp: SoftmaxParams;
@group(0) @binding(1) var<storage, read_write> sbuf: array<f32>;

@compute @workgroup_size(64)
fn softmax_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (row >= sp.rows) {
        return;
    }
    let base = sp.off + row * sp.len;
    var m = NEG_BIG;
    for (var j = 0u; j < sp.len; j++) {
        m = max(m, sbuf[base + j] * sp.scale);
    }
    var l = 0.0;
    for (var j = 0u; j < sp.len; j++) {
        let w = exp(sbuf[base + j] * sp.scale - m);
        sbuf[base + j] = w;
        l += w;
    }
    let inv = 1.0 / l;
    for (var j = 0u; j < sp.len; j++) {
        sbuf[base + j] *= inv;
    }
}

// V of every (group, head) as head_dim rows of kv_len values:
// obuf[out_off + ((g·heads + h)·head_dim + d)·kv_len + j] = v[g, j, h, d].
// One invocation per four consecutive keys of one output row (four strided loads, one row of
// the output written contiguously).
@group(0) @binding(1) var<storage, read> t_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> t_dst: array<f32>;

@compute @workgroup_size(64)
fn transpose_v(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let quads = (p.kv_len + 3u) / 4u;
    let flat = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (flat >= p.groups * p.heads * p.head_dim * quads) {
        return;
    }
    let j0 = (flat % quads) * 4u;
    let row = flat / quads;          // (g·heads + h)·head_dim + d
    let d = row % p.head_dim;
    let gh = row / p.head_dim;
    let head = gh % p.heads;
    let group = gh / p.heads;
    let obase = p.out_off + row * p.kv_len;
    for (var j = j0; j < min(j0 + 4u, p.kv_len); j++) {
        t_dst[obase + j] = t_src[v_row(group, head / p.kv_group, j) + d];
    }
}
