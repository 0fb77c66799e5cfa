// Top-k selection by radix select (after RAFT's select_radix / AIR top-k), no readback.
//
// Scores become order-preserving u32 keys (larger float → larger key; -0.0 < +0.0). Three
// digit passes (11, 11, 10 bits from the top) each histogram the keys whose already-decided
// high bits equal `prefix` (`histogram`), then one workgroup finds the bin holding the k-th
// largest key (`select_digit`). After the third pass `prefix` is the exact threshold key and
// `krem` the number of threshold-equal elements to take (the lowest-index ones). Compaction in
// index order: per-block counts (`count_blocks`), a scan over blocks (`scan_blocks`) and a
// per-block scatter (`scatter`). Score order then sorts the k selected by (key desc, index
// asc): rank sort of 256-element tiles (`sort_tiles`) and merge levels that place each element
// by a binary search in the partner run (`merge_runs`).
//
// Bindings differ per entry point (WGSL allows two resource variables on one binding as long as
// no single entry point uses both):
//   init          1 work, 2 status
//   histogram     1 work, 2 scores, 3 status
//   select_digit  1 work
//   count_blocks  1 work, 2 scores
//   scan_blocks   1 work
//   scatter       1 work, 2 scores, 3 out
//   sort_tiles    1 s_scores, 2 s_src, 3 s_dst
//   merge_runs    1 s_scores, 2 s_src, 3 s_dst
// `work` layout (u32): [S_PREFIX, S_KREM, pad…] | HIST (2048 bins) | BLK (2 per block: count,
// then exclusive offset, of key > thr and key == thr).

struct Params {
    len: u32,      // number of scores
    off: u32,      // element offset of the scores view
    k: u32,        // number to select
    shift: u32,    // digit shift (histogram / select_digit)
    dmask: u32,    // digit mask (2^bits - 1)
    hi_mask: u32,  // mask of the bits decided by earlier passes
    check: u32,    // 1: record the lowest non-finite index in status (first histogram pass)
    nwg: u32,      // real number of workgroups of a grid()-split dispatch
    nblocks: u32,  // compaction blocks (CBLOCK elements each)
    width: u32,    // merge_runs: length of the sorted runs being merged
    pad0: u32,
    pad1: u32,
}

const WG: u32 = 256u;
const NBINS: u32 = 2048u;
const BINS_PER_THREAD: u32 = 8u; // NBINS / WG
const S_PREFIX: u32 = 0u;
const S_KREM: u32 = 1u;
const HIST: u32 = 8u;
const BLK: u32 = 2056u; // HIST + NBINS
const CITEMS: u32 = 4u; // contiguous elements per thread in count_blocks / scatter
const CBLOCK: u32 = 1024u; // WG * CITEMS
const TILE: u32 = 256u; // sort_tiles tile = WG

// Elements per thread of one histogram workgroup (chosen per adapter in Rust).
override HIST_ITEMS: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> work: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read_write> status_h: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<storage, read> s_scores: array<f32>;
@group(0) @binding(2) var<storage, read> s_src: array<u32>;
@group(0) @binding(3) var<storage, read_write> s_dst: array<u32>;

var<workgroup> lhist: array<atomic<u32>, 2048>;
var<workgroup> scan_buf: array<u32, 256>;
var<workgroup> tile_key: array<u32, 256>;
var<workgroup> tile_idx: array<u32, 256>;

fn order_key(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    if ((u & 0x80000000u) != 0u) {
        return ~u;
    }
    return u | 0x80000000u;
}

// (ka, ia) comes before (kb, ib) in score order: larger key first, then lower index.
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

// Workgroup inclusive prefix sum of v over the WG threads: (inclusive, total).
// Must be called in workgroup-uniform control flow.
fn scan_incl(t: u32, v: u32) -> vec2<u32> {
    scan_buf[t] = v;
    for (var o = 1u; o < WG; o = o * 2u) {
        workgroupBarrier();
        var add = 0u;
        if (t >= o) {
            add = scan_buf[t - o];
        }
        workgroupBarrier();
        scan_buf[t] = scan_buf[t] + add;
    }
    workgroupBarrier();
    let r = vec2<u32>(scan_buf[t], scan_buf[WG - 1u]);
    workgroupBarrier();
    return r;
}

fn flat_wg(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// One workgroup: prefix = 0, krem = k, histogram cleared, status = "all finite".
@compute @workgroup_size(256)
fn init(@builtin(local_invocation_index) t: u32) {
    for (var j = 0u; j < BINS_PER_THREAD; j = j + 1u) {
        atomicStore(&work[HIST + t * BINS_PER_THREAD + j], 0u);
    }
    if (t == 0u) {
        atomicStore(&work[S_PREFIX], 0u);
        atomicStore(&work[S_KREM], p.k);
        atomicStore(&status[0], 0xFFFFFFFFu);
    }
}

// Histogram of the current digit over the keys whose decided high bits equal the prefix.
@compute @workgroup_size(256)
fn histogram(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = flat_wg(wid, nwg);
    if (g >= p.nwg) {
        return;
    }
    for (var j = 0u; j < BINS_PER_THREAD; j = j + 1u) {
        atomicStore(&lhist[t * BINS_PER_THREAD + j], 0u);
    }
    workgroupBarrier();
    let prefix = atomicLoad(&work[S_PREFIX]);
    let base = g * (HIST_ITEMS * WG);
    var bad = 0xFFFFFFFFu;
    for (var j = 0u; j < HIST_ITEMS; j = j + 1u) {
        let i = base + j * WG + t;
        if (i < p.len) {
            let x = scores[p.off + i];
            let key = order_key(x);
            if ((key & p.hi_mask) == prefix) {
                atomicAdd(&lhist[(key >> p.shift) & p.dmask], 1u);
            }
            if ((bitcast<u32>(x) & 0x7F800000u) == 0x7F800000u) {
                bad = min(bad, i);
            }
        }
    }
    if (p.check != 0u && bad != 0xFFFFFFFFu) {
        atomicMin(&status_h[0], bad);
    }
    workgroupBarrier();
    for (var j = 0u; j < BINS_PER_THREAD; j = j + 1u) {
        let b = t * BINS_PER_THREAD + j;
        let c = atomicLoad(&lhist[b]);
        if (c != 0u) {
            atomicAdd(&work[HIST + b], c);
        }
    }
}

// One workgroup: walk the histogram from the top bin down to the bin holding the krem-th
// largest key; extend the prefix by that digit, subtract the counts above it, clear the bins.
@compute @workgroup_size(256)
fn select_digit(@builtin(local_invocation_index) t: u32) {
    let krem = atomicLoad(&work[S_KREM]);
    let prefix = atomicLoad(&work[S_PREFIX]);
    // Thread t owns bins top, top-1, …, top-7 (thread 0 the highest).
    let top = NBINS - 1u - t * BINS_PER_THREAD;
    var sum = 0u;
    for (var j = 0u; j < BINS_PER_THREAD; j = j + 1u) {
        sum = sum + atomicLoad(&work[HIST + top - j]);
    }
    // All reads of the state happen before the barriers in scan_incl, all writes after.
    let s = scan_incl(t, sum);
    let above = s.x - sum;
    if (above < krem && krem <= s.x) {
        var acc = above;
        for (var j = 0u; j < BINS_PER_THREAD; j = j + 1u) {
            let b = top - j;
            let c = atomicLoad(&work[HIST + b]);
            if (acc + c >= krem) {
                atomicStore(&work[S_PREFIX], prefix | (b << p.shift));
                atomicStore(&work[S_KREM], krem - acc);
                break;
            }
            acc = acc + c;
        }
    }
    for (var j = 0u; j < BINS_PER_THREAD; j = j + 1u) {
        atomicStore(&work[HIST + top - j], 0u);
    }
}

// Per thread: how many of its CITEMS contiguous elements are above / equal to the threshold,
// packed as gt | eq << 16 (each at most CBLOCK).
fn block_counts(base: u32, thr: u32) -> u32 {
    var gt = 0u;
    var eq = 0u;
    for (var j = 0u; j < CITEMS; j = j + 1u) {
        let i = base + j;
        if (i < p.len) {
            let key = order_key(scores[p.off + i]);
            gt = gt + select(0u, 1u, key > thr);
            eq = eq + select(0u, 1u, key == thr);
        }
    }
    return gt | (eq << 16u);
}

@compute @workgroup_size(256)
fn count_blocks(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = flat_wg(wid, nwg);
    if (b >= p.nblocks) {
        return;
    }
    let thr = atomicLoad(&work[S_PREFIX]);
    let s = scan_incl(t, block_counts(b * CBLOCK + t * CITEMS, thr));
    if (t == 0u) {
        atomicStore(&work[BLK + 2u * b], s.y & 0xFFFFu);
        atomicStore(&work[BLK + 2u * b + 1u], s.y >> 16u);
    }
}

// One workgroup: block counts → exclusive block offsets, in place.
@compute @workgroup_size(256)
fn scan_blocks(@builtin(local_invocation_index) t: u32) {
    var carry_gt = 0u;
    var carry_eq = 0u;
    for (var c = 0u; c < p.nblocks; c = c + WG) {
        let b = c + t;
        var g = 0u;
        var e = 0u;
        if (b < p.nblocks) {
            g = atomicLoad(&work[BLK + 2u * b]);
            e = atomicLoad(&work[BLK + 2u * b + 1u]);
        }
        let sg = scan_incl(t, g);
        let se = scan_incl(t, e);
        if (b < p.nblocks) {
            atomicStore(&work[BLK + 2u * b], carry_gt + sg.x - g);
            atomicStore(&work[BLK + 2u * b + 1u], carry_eq + se.x - e);
        }
        carry_gt = carry_gt + sg.y;
        carry_eq = carry_eq + se.y;
    }
}

// Writes the selected indices in ascending order: element i is taken if key > thr, or
// key == thr and fewer than krem threshold-equal elements precede it. Its output position is
// (#selected before i) = (#gt before i) + min(#eq before i, krem).
@compute @workgroup_size(256)
fn scatter(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = flat_wg(wid, nwg);
    if (b >= p.nblocks) {
        return;
    }
    let thr = atomicLoad(&work[S_PREFIX]);
    let keq = atomicLoad(&work[S_KREM]);
    let base = b * CBLOCK + t * CITEMS;
    let v = block_counts(base, thr);
    let s = scan_incl(t, v);
    let excl = s.x - v;
    var g = atomicLoad(&work[BLK + 2u * b]) + (excl & 0xFFFFu);
    var e = atomicLoad(&work[BLK + 2u * b + 1u]) + (excl >> 16u);
    for (var j = 0u; j < CITEMS; j = j + 1u) {
        let i = base + j;
        if (i < p.len) {
            let key = order_key(scores[p.off + i]);
            if (key > thr) {
                out[g + min(e, keq)] = i;
                g = g + 1u;
            } else if (key == thr) {
                if (e < keq) {
                    out[g + e] = i;
                }
                e = e + 1u;
            }
        }
    }
}

// Sorts each TILE-element tile of s_src (k indices) by (key desc, index asc) into s_dst:
// every element counts the tile elements that come before it.
@compute @workgroup_size(256)
fn sort_tiles(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let start = flat_wg(wid, nwg) * TILE;
    if (start >= p.k) {
        return;
    }
    let n = min(TILE, p.k - start);
    var key = 0u;
    var idx = 0u;
    if (t < n) {
        idx = s_src[start + t];
        key = order_key(s_scores[p.off + idx]);
        tile_key[t] = key;
        tile_idx[t] = idx;
    }
    workgroupBarrier();
    if (t < n) {
        var rank = 0u;
        for (var j = 0u; j < n; j = j + 1u) {
            rank = rank + select(0u, 1u, before(tile_key[j], tile_idx[j], key, idx));
        }
        s_dst[start + rank] = idx;
    }
}

// Merges pairs of sorted runs of length p.width: an element at position q of its run lands at
// q + (number of elements of the partner run that come before it), found by binary search.
@compute @workgroup_size(256)
fn merge_runs(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let pos = flat_wg(wid, nwg) * WG + t;
    if (pos >= p.k) {
        return;
    }
    let w = p.width;
    let run = pos / w;
    let q = pos - run * w;
    let pair = (run & ~1u) * w;
    let idx = s_src[pos];
    let key = order_key(s_scores[p.off + idx]);
    var ps = pair;
    var pe = pair + w;
    if ((run & 1u) == 0u) {
        let rest = p.k - pair;
        ps = pair + min(w, rest);
        pe = pair + min(2u * w, rest);
    }
    var lo = 0u;
    var hi = pe - ps;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        let j = s_src[ps + mid];
        if (before(order_key(s_scores[p.off + j]), j, key, idx)) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    s_dst[pair + q + lo] = idx;
}
