// Y (M×N) = X (M×K) · Wᵀ + b, W stored (N×K) row-major (PyTorch Linear layout).
//
// X and W are both K-contiguous, so every output is the dot product of two contiguous rows. The
// kernels below therefore see two operands of the same form and compute out[a, b] = A[a]·B[b]:
// the dispatch function chooses which of X and W plays A and which B, and passes the output
// strides of an A row and of a B row (for A = W, B = X: ya = 1, yb = N). The bias is indexed by
// the output column, i.e. by a (bias_on_a = 1) or by b.
//
// Entry points:
//   rb_vec4    register-blocked, vec4 loads: needs K % 4 == 0 and both offsets % 4 == 0
//   rb_scalar  register-blocked, scalar loads: any K, any offset
//   tiled      workgroup-memory tiles for real GPUs: any K, any offset
// Rows past the end are clamped on load and skipped on store, so any M, N, K works.

struct Params {
    a_rows: u32,
    b_rows: u32,
    k: u32,
    a_off: u32,
    b_off: u32,
    bias_off: u32,
    y_off: u32,
    ya: u32,           // output stride of one A row
    yb: u32,           // output stride of one B row
    has_bias: u32,
    bias_on_a: u32,
    groups_a: u32,     // workgroups along A
    groups_total: u32, // workgroups in all (the grid may hold a few more)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// vec4 views of the operands (rb_vec4) ...
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
// ... and scalar views of the same bindings (rb_scalar, tiled).
@group(0) @binding(1) var<storage, read> a1: array<f32>;
@group(0) @binding(2) var<storage, read> b1: array<f32>;

fn out_value(acc: f32, a: u32, b: u32) -> f32 {
    if (p.has_bias == 0u) {
        return acc;
    }
    return acc + bias[p.bias_off + select(b, a, p.bias_on_a != 0u)];
}

fn store(acc: f32, a: u32, b: u32) {
    if (a < p.a_rows && b < p.b_rows) {
        y[p.y_off + a * p.ya + b * p.yb] = out_value(acc, a, b);
    }
}

// ---------------------------------------------------------------------------------------------
// Register-blocked kernels (CPU adapters such as llvmpipe).
//
// On a CPU driver an invocation is one SIMD lane, and every storage-buffer load is a loop over
// the lanes with a bounds check per component — loads, not multiply-adds, set the speed. So each
// invocation keeps a large block of outputs in registers: 16 rows of A (its own) against TM rows
// of B (shared by the workgroup), TM·16 accumulators, which costs TM + 16 vec4 loads per 4·TM·16
// multiply-adds. The block is written out by hand (rows r0..r31, groups g0..g3): drivers keep
// such straight-line code in registers, while the same thing written as loops over arrays was
// measured 2× slower on llvmpipe (the arrays stay in memory). Rows ≥ TM are compiled away.
//
// A rows of invocation `lid` in workgroup column ga: a0 + lid + WG·j, j < 16, a0 = ga·WG·16.
// Group g holds j = 4g..4g+3 as the four columns of a mat4x4, so `b * g` is four dot products.

override WG: u32 = 8u;  // invocations per workgroup
override TM: u32 = 32u; // rows of B per workgroup, 1..=32
const TN: u32 = 16u;    // rows of A per invocation

struct ABlock { g0: mat4x4<f32>, g1: mat4x4<f32>, g2: mat4x4<f32>, g3: mat4x4<f32> }
// One B row against the 16 A rows of an invocation.
struct Acc { g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32> }

fn fma_row(acc: Acc, b: vec4<f32>, a: ABlock) -> Acc {
    return Acc(acc.g0 + b * a.g0, acc.g1 + b * a.g1, acc.g2 + b * a.g2, acc.g3 + b * a.g3);
}

struct Rows {
    r0: Acc, r1: Acc, r2: Acc, r3: Acc, r4: Acc, r5: Acc, r6: Acc, r7: Acc,
    r8: Acc, r9: Acc, r10: Acc, r11: Acc, r12: Acc, r13: Acc, r14: Acc, r15: Acc,
    r16: Acc, r17: Acc, r18: Acc, r19: Acc, r20: Acc, r21: Acc, r22: Acc, r23: Acc,
    r24: Acc, r25: Acc, r26: Acc, r27: Acc, r28: Acc, r29: Acc, r30: Acc, r31: Acc,
}

// The first row and element of this workgroup's block.
struct Block {
    a0: u32, // first A row of invocation 0
    b0: u32, // first B row
    lid: u32,
    valid: bool,
}

fn rb_block(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Block {
    let g = wid.x + wid.y * nwg.x;
    let gb = g / p.groups_a;
    let ga = g - gb * p.groups_a;
    return Block(ga * WG * TN, gb * TM, lid, g < p.groups_total);
}

// Element offset of row `r` (clamped into range) of A or B.
fn a_row(blk: Block, j: u32) -> u32 {
    return p.a_off + min(blk.a0 + blk.lid + j * WG, p.a_rows - 1u) * p.k;
}
fn b_row(blk: Block, i: u32) -> u32 {
    return p.b_off + min(blk.b0 + i, p.b_rows - 1u) * p.k;
}

// k-th group of four values of A row j / B row i. vec4 loads (offsets and K are multiples of 4).
fn a_v4(blk: Block, j: u32, kk: u32) -> vec4<f32> {
    return a4[a_row(blk, j) / 4u + kk];
}
fn b_v4(blk: Block, i: u32, kk: u32) -> vec4<f32> {
    if (i >= TM) {
        return vec4(0.0);
    }
    return b4[b_row(blk, i) / 4u + kk];
}
// The same from the scalar views; values at k ≥ K read as 0 (the row index stays clamped).
fn at_k(base: u32, k: u32) -> f32 {
    return select(0.0, a1[base + min(k, p.k - 1u)], k < p.k);
}
fn bt_k(base: u32, k: u32) -> f32 {
    return select(0.0, b1[base + min(k, p.k - 1u)], k < p.k);
}
fn a_s4(blk: Block, j: u32, k: u32) -> vec4<f32> {
    let r = a_row(blk, j);
    return vec4(at_k(r, k), at_k(r, k + 1u), at_k(r, k + 2u), at_k(r, k + 3u));
}
fn b_s4(blk: Block, i: u32, k: u32) -> vec4<f32> {
    if (i >= TM) {
        return vec4(0.0);
    }
    let r = b_row(blk, i);
    return vec4(bt_k(r, k), bt_k(r, k + 1u), bt_k(r, k + 2u), bt_k(r, k + 3u));
}

fn ablock_v4(blk: Block, kk: u32) -> ABlock {
    return ABlock(
        mat4x4(a_v4(blk, 0u, kk), a_v4(blk, 1u, kk), a_v4(blk, 2u, kk), a_v4(blk, 3u, kk)),
        mat4x4(a_v4(blk, 4u, kk), a_v4(blk, 5u, kk), a_v4(blk, 6u, kk), a_v4(blk, 7u, kk)),
        mat4x4(a_v4(blk, 8u, kk), a_v4(blk, 9u, kk), a_v4(blk, 10u, kk), a_v4(blk, 11u, kk)),
        mat4x4(a_v4(blk, 12u, kk), a_v4(blk, 13u, kk), a_v4(blk, 14u, kk), a_v4(blk, 15u, kk)),
    );
}
fn ablock_s4(blk: Block, k: u32) -> ABlock {
    return ABlock(
        mat4x4(a_s4(blk, 0u, k), a_s4(blk, 1u, k), a_s4(blk, 2u, k), a_s4(blk, 3u, k)),
        mat4x4(a_s4(blk, 4u, k), a_s4(blk, 5u, k), a_s4(blk, 6u, k), a_s4(blk, 7u, k)),
        mat4x4(a_s4(blk, 8u, k), a_s4(blk, 9u, k), a_s4(blk, 10u, k), a_s4(blk, 11u, k)),
        mat4x4(a_s4(blk, 12u, k), a_s4(blk, 13u, k), a_s4(blk, 14u, k), a_s4(blk, 15u, k)),
    );
}

// Writes the block. The rows go through a local array and a loop (not 32 unrolled copies of
// the 16 stores) to keep the compiled shader small; this runs once per invocation.
fn store_rows(blk: Block, r: Rows) {
    let rows = array<Acc, 32>(
        r.r0, r.r1, r.r2, r.r3, r.r4, r.r5, r.r6, r.r7, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
        r.r16, r.r17, r.r18, r.r19, r.r20, r.r21, r.r22, r.r23, r.r24, r.r25, r.r26, r.r27, r.r28, r.r29, r.r30, r.r31,
    );
    for (var i = 0u; i < TM; i++) {
        let b = blk.b0 + i;
        if (b >= p.b_rows) {
            break;
        }
        let acc = rows[i];
        let v = array<vec4<f32>, 4>(acc.g0, acc.g1, acc.g2, acc.g3);
        for (var j = 0u; j < TN; j++) {
            store(v[j / 4u][j % 4u], blk.a0 + blk.lid + j * WG, b);
        }
    }
}

@compute @workgroup_size(WG)
fn rb_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let blk = rb_block(wid, nwg, lid);
    if (!blk.valid) {
        return;
    }
    var r: Rows;
    for (var kk = 0u; kk < p.k / 4u; kk++) {
        let a = ablock_v4(blk, kk);
        // Each B row is loaded right before its 16 dot products, so few loads are in flight.
        r.r0 = fma_row(r.r0, b_v4(blk, 0u, kk), a); r.r1 = fma_row(r.r1, b_v4(blk, 1u, kk), a);
        r.r2 = fma_row(r.r2, b_v4(blk, 2u, kk), a); r.r3 = fma_row(r.r3, b_v4(blk, 3u, kk), a);
        r.r4 = fma_row(r.r4, b_v4(blk, 4u, kk), a); r.r5 = fma_row(r.r5, b_v4(blk, 5u, kk), a);
        r.r6 = fma_row(r.r6, b_v4(blk, 6u, kk), a); r.r7 = fma_row(r.r7, b_v4(blk, 7u, kk), a);
        r.r8 = fma_row(r.r8, b_v4(blk, 8u, kk), a); r.r9 = fma_row(r.r9, b_v4(blk, 9u, kk), a);
        r.r10 = fma_row(r.r10, b_v4(blk, 10u, kk), a); r.r11 = fma_row(r.r11, b_v4(blk, 11u, kk), a);
        r.r12 = fma_row(r.r12, b_v4(blk, 12u, kk), a); r.r13 = fma_row(r.r13, b_v4(blk, 13u, kk), a);
        r.r14 = fma_row(r.r14, b_v4(blk, 14u, kk), a); r.r15 = fma_row(r.r15, b_v4(blk, 15u, kk), a);
        r.r16 = fma_row(r.r16, b_v4(blk, 16u, kk), a); r.r17 = fma_row(r.r17, b_v4(blk, 17u, kk), a);
        r.r18 = fma_row(r.r18, b_v4(blk, 18u, kk), a); r.r19 = fma_row(r.r19, b_v4(blk, 19u, kk), a);
        r.r20 = fma_row(r.r20, b_v4(blk, 20u, kk), a); r.r21 = fma_row(r.r21, b_v4(blk, 21u, kk), a);
        r.r22 = fma_row(r.r22, b_v4(blk, 22u, kk), a); r.r23 = fma_row(r.r23, b_v4(blk, 23u, kk), a);
        r.r24 = fma_row(r.r24, b_v4(blk, 24u, kk), a); r.r25 = fma_row(r.r25, b_v4(blk, 25u, kk), a);
        r.r26 = fma_row(r.r26, b_v4(blk, 26u, kk), a); r.r27 = fma_row(r.r27, b_v4(blk, 27u, kk), a);
        r.r28 = fma_row(r.r28, b_v4(blk, 28u, kk), a); r.r29 = fma_row(r.r29, b_v4(blk, 29u, kk), a);
        r.r30 = fma_row(r.r30, b_v4(blk, 30u, kk), a); r.r31 = fma_row(r.r31, b_v4(blk, 31u, kk), a);
    }
    store_rows(blk, r);
}

@compute @workgroup_size(WG)
fn rb_scalar(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let blk = rb_block(wid, nwg, lid);
    if (!blk.valid) {
        return;
    }
    var r: Rows;
    // Groups of four k (the last one zero-padded past K).
    for (var k = 0u; k < p.k; k += 4u) {
        let a = ablock_s4(blk, k);
        r.r0 = fma_row(r.r0, b_s4(blk, 0u, k), a); r.r1 = fma_row(r.r1, b_s4(blk, 1u, k), a);
        r.r2 = fma_row(r.r2, b_s4(blk, 2u, k), a); r.r3 = fma_row(r.r3, b_s4(blk, 3u, k), a);
        r.r4 = fma_row(r.r4, b_s4(blk, 4u, k), a); r.r5 = fma_row(r.r5, b_s4(blk, 5u, k), a);
        r.r6 = fma_row(r.r6, b_s4(blk, 6u, k), a); r.r7 = fma_row(r.r7, b_s4(blk, 7u, k), a);
        r.r8 = fma_row(r.r8, b_s4(blk, 8u, k), a); r.r9 = fma_row(r.r9, b_s4(blk, 9u, k), a);
        r.r10 = fma_row(r.r10, b_s4(blk, 10u, k), a); r.r11 = fma_row(r.r11, b_s4(blk, 11u, k), a);
        r.r12 = fma_row(r.r12, b_s4(blk, 12u, k), a); r.r13 = fma_row(r.r13, b_s4(blk, 13u, k), a);
        r.r14 = fma_row(r.r14, b_s4(blk, 14u, k), a); r.r15 = fma_row(r.r15, b_s4(blk, 15u, k), a);
        r.r16 = fma_row(r.r16, b_s4(blk, 16u, k), a); r.r17 = fma_row(r.r17, b_s4(blk, 17u, k), a);
        r.r18 = fma_row(r.r18, b_s4(blk, 18u, k), a); r.r19 = fma_row(r.r19, b_s4(blk, 19u, k), a);
        r.r20 = fma_row(r.r20, b_s4(blk, 20u, k), a); r.r21 = fma_row(r.r21, b_s4(blk, 21u, k), a);
        r.r22 = fma_row(r.r22, b_s4(blk, 22u, k), a); r.r23 = fma_row(r.r23, b_s4(blk, 23u, k), a);
        r.r24 = fma_row(r.r24, b_s4(blk, 24u, k), a); r.r25 = fma_row(r.r25, b_s4(blk, 25u, k), a);
        r.r26 = fma_row(r.r26, b_s4(blk, 26u, k), a); r.r27 = fma_row(r.r27, b_s4(blk, 27u, k), a);
        r.r28 = fma_row(r.r28, b_s4(blk, 28u, k), a); r.r29 = fma_row(r.r29, b_s4(blk, 29u, k), a);
        r.r30 = fma_row(r.r30, b_s4(blk, 30u, k), a); r.r31 = fma_row(r.r31, b_s4(blk, 31u, k), a);
    }
    store_rows(blk, r);
}

// ---------------------------------------------------------------------------------------------
// Workgroup-tiled kernel (real GPUs).
//
// A TILE×TILE workgroup computes a (TILE·4)×(TILE·4) block of outputs: invocation (tx, ty) owns
// B rows ty + TILE·i and A rows tx + TILE·j, i, j < 4, so neighbouring invocations write
// neighbouring outputs. The K axis advances in steps of BK: the workgroup stages the BK-wide
// slices of its B and A rows in workgroup memory (K-major, one padding column against bank
// conflicts), with consecutive invocations reading consecutive k (coalesced), then each
// invocation runs its 4×4 block over the slice from workgroup memory. With TILE = 16, BK = 16:
// 2 · 16 · 65 · 4 B = 8.3 KiB of workgroup memory.

override TILE: u32 = 16u; // invocations per side
override BK: u32 = 16u;   // k per stage
const TT: u32 = 4u;       // outputs per invocation per side

var<workgroup> b_tile: array<f32, BK * (TILE * TT + 1u)>;
var<workgroup> a_tile: array<f32, BK * (TILE * TT + 1u)>;

@compute @workgroup_size(TILE, TILE)
fn tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    // Uniform for the whole workgroup, so the barriers below stay in uniform control flow.
    if (g >= p.groups_total) {
        return;
    }
    let gb = g / p.groups_a;
    let ga = g - gb * p.groups_a;
    let side = TILE * TT;
    let a0 = ga * side;
    let b0 = gb * side;
    let stride = side + 1u;
    let tx = lid3.x;
    let ty = lid3.y;

    var acc: array<array<f32, TT>, TT>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Stage side × BK values of each operand: element e = row · BK + c.
        for (var e = lid; e < side * BK; e += TILE * TILE) {
            let row = e / BK;
            let c = e - row * BK;
            let k = k0 + c;
            let kc = min(k, p.k - 1u);
            let in_k = k < p.k;
            let br = min(b0 + row, p.b_rows - 1u);
            let ar = min(a0 + row, p.a_rows - 1u);
            b_tile[c * stride + row] = select(0.0, b1[p.b_off + br * p.k + kc], in_k);
            a_tile[c * stride + row] = select(0.0, a1[p.a_off + ar * p.k + kc], in_k);
        }
        workgroupBarrier();
        for (var c = 0u; c < BK; c++) {
            var bv: array<f32, TT>;
            var av: array<f32, TT>;
            for (var i = 0u; i < TT; i++) {
                bv[i] = b_tile[c * stride + ty + TILE * i];
                av[i] = a_tile[c * stride + tx + TILE * i];
            }
            for (var i = 0u; i < TT; i++) {
                for (var j = 0u; j < TT; j++) {
                    acc[i][j] += bv[i] * av[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TT; i++) {
        for (var j = 0u; j < TT; j++) {
            store(acc[i][j], a0 + tx + TILE * j, b0 + ty + TILE * i);
        }
    }
}
