// Y (M×N) = X (M×K) · Wᵀ + b, W stored (N×K) row-major (PyTorch Linear layout).
//
// X and W are both K-contiguous, so every output is the dot product of two contiguous rows. The
// kernels below therefore see two operands of the same form and compute out[a, b] = A[a]·B[b]:
// the dispatch function chooses which of X and W plays A and which B, and passes the output
// strides of an A row and of a B row (for A = W, B = X: ya = 1, yb = N). The bias is indexed by
// the output column, i.e. by a (col_on_a = 1) or by b, and an optional epilogue (GELU, or a
// residual add with LayerScale) acts on each output as it is stored (out_value).
//
// Entry points:
//   rb_vec4    register-blocked, vec4 loads: needs K % 4 == 0 and both offsets % 4 == 0
//   rb_scalar  register-blocked, scalar loads: any K, any offset
//   tiled      workgroup-memory tiles for real GPUs: any K, any offset
//   gemv       one B row (token-by-token decoding), A_CHUNK values of K per step: K, the offsets
//              and the strides must be multiples of A_CHUNK (4, or 8 for bf16)
// Rows past the end are clamped on load and skipped on store, so any M, N, K works.
//
// Batched and strided: workgroup row z of the grid computes batch z. Batch z of an operand
// starts (z / batch_inner)·outer + (z % batch_inner)·inner elements after its offset, and its
// rows lie a_rs / b_rs apart (K for a plain linear). Attention uses this for Q·Kᵀ and P·V of
// every (group, head) at once, straight from the packed qkv tensor.

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
    col_on_a: u32,     // an output column is an A row (else a B row): indexes bias and γ
    groups_a: u32,     // workgroups along A
    groups_total: u32, // workgroups in all (the grid may hold a few more)
    a_rs: u32,         // element stride between A rows
    b_rs: u32,         // element stride between B rows
    batch_inner: u32,  // batches per outer step (≥ 1)
    a_bo: u32,         // A offset per outer batch step
    a_bi: u32,         // A offset per inner batch step
    b_bo: u32,
    b_bi: u32,
    y_bo: u32,
    y_bi: u32,
    res_off: u32,      // residual: offset of the tensor laid out as the output
    gamma_off: u32,    // residual: offset of γ (one per output column)
    has_gamma: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// The residual epilogue's inputs (bound to B when unused).
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<f32>;

// Operand A (binding 1) is read only through `la4(i)` (vec4 i of A's elements, rb_vec4) and
// `la1(i)` (element i: rb_scalar, tiled), both f32, and the matrix-vector kernel through
// `la_dot(i, lb_chunk(j))` (chunk i of A against chunk j of B, A_CHUNK values each). Prelude
// files the host puts before this one (src/gpu/linear.rs) declare the binding and define them:
// an f32 buffer (linear_a_buffer.wgsl with `AElem = f32`), f16 weights in a buffer (the same
// with `AElem = f16`; adapters with SHADER_F16) or a weight stored as f32 texels
// (linear_a_texels.wgsl), each with linear_chunk4.wgsl; bf16 weights in a buffer
// (linear_a_bf16.wgsl) or as texels (linear_a_texels_bf16.wgsl), each with
// linear_chunk8_bf16.wgsl (eight values per chunk). All arithmetic is f32.
//
// Operand B: a vec4 view (rb_vec4) and a scalar view (rb_scalar, tiled) of one buffer.
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b1: array<f32>;

// This invocation's batch offsets (elements), set at entry.
var<private> a_batch: u32;
var<private> b_batch: u32;
var<private> y_batch: u32;

fn enter_batch(z: u32) {
    let outer = z / p.batch_inner;
    let inner = z - outer * p.batch_inner;
    a_batch = outer * p.a_bo + inner * p.a_bi;
    b_batch = outer * p.b_bo + inner * p.b_bi;
    y_batch = outer * p.y_bo + inner * p.y_bi;
}

// The value stored for out[a, b] (at element `at` past the output's start): the dot product,
// plus the bias, then the epilogue — GELU (gelu.wgsl), or residual[at] + γ ⊙ value (γ = 1
// without has_gamma), the residual laid out as the output. Bias and γ are indexed by the output
// column (the W row: a when col_on_a).
//
// The epilogue is a pipeline constant, so pipelines without one compile exactly as if it did not
// exist: as a uniform branch it slowed every linear on llvmpipe by a fifth (LinVT 6.8 → 9.0 ms).
override EPILOGUE: u32 = 0u; // 0: none, 1: GELU, 2: residual add

fn out_value(acc: f32, a: u32, b: u32, at: u32) -> f32 {
    let col = select(b, a, p.col_on_a != 0u);
    var v = acc;
    if (p.has_bias != 0u) {
        v += bias[p.bias_off + col];
    }
    if (EPILOGUE == 1u) {
        v = gelu_value(v);
    } else if (EPILOGUE == 2u) {
        if (p.has_gamma != 0u) {
            v *= gamma[p.gamma_off + col];
        }
        v = residual[p.res_off + at] + v;
    }
    return v;
}

fn store(acc: f32, a: u32, b: u32) {
    if (a < p.a_rows && b < p.b_rows) {
        let at = y_batch + a * p.ya + b * p.yb;
        y[p.y_off + at] = out_value(acc, a, b, at);
    }
}

// ---------------------------------------------------------------------------------------------
// Register-blocked kernels (CPU adapters such as llvmpipe).
//
// On a CPU driver an invocation is one SIMD lane and every storage-buffer load is a loop over
// the lanes with a bounds check per component: loads, not multiply-adds, set the speed. So each
// invocation keeps a large block of outputs in registers: its own 16 rows of A against the TM
// rows of B its workgroup shares, TM·16 accumulators, costing TM + 16 vec4 loads per 64·TM
// multiply-adds. Group g of the 16 A rows (j = 4g..4g+3) is held as the four columns of a
// mat4x4, so `b * group` is four dot products.
//
// The block is written out (rows r0..r31, bases ar*/br*) rather than as loops over arrays: on
// llvmpipe the loop-and-array form ran at half the speed (the arrays stay in memory), and even
// an epilogue that copied the accumulators into an array slowed the K loop by a quarter, and
// re-reading the loop bound from the uniform buffer each iteration cost 7%. Rows ≥ TM are
// removed at pipeline creation (TM is an override), so smaller blocks cost nothing.
// Invocation `lid` of workgroup column ga owns A rows a0 + WG·j, a0 = ga·WG·16 + lid.

override WG: u32 = 8u;  // invocations per workgroup
override TM: u32 = 32u; // rows of B per workgroup, 1..=32
const TN: u32 = 16u;    // rows of A per invocation

struct ABlock { g0: mat4x4<f32>, g1: mat4x4<f32>, g2: mat4x4<f32>, g3: mat4x4<f32> }
// One B row against the 16 A rows of an invocation.
struct Acc { g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32> }

fn fma_row(acc: Acc, b: vec4<f32>, a: ABlock) -> Acc {
    return Acc(acc.g0 + b * a.g0, acc.g1 + b * a.g1, acc.g2 + b * a.g2, acc.g3 + b * a.g3);
}

// Element offset of A / B row `row`, clamped to the last row (such rows are never stored).
fn a_start(row: u32) -> u32 {
    return p.a_off + a_batch + min(row, p.a_rows - 1u) * p.a_rs;
}
fn b_start(row: u32) -> u32 {
    return p.b_off + b_batch + min(row, p.b_rows - 1u) * p.b_rs;
}

// Values k..k+3 of the row starting at `base` through the scalar views, zero past K.
fn a_at(base: u32, k: u32) -> f32 {
    return select(0.0, la1(base + min(k, p.k - 1u)), k < p.k);
}
fn b_at(base: u32, k: u32) -> f32 {
    return select(0.0, b1[base + min(k, p.k - 1u)], k < p.k);
}
fn a_s4(base: u32, k: u32) -> vec4<f32> {
    return vec4(a_at(base, k), a_at(base, k + 1u), a_at(base, k + 2u), a_at(base, k + 3u));
}
fn b_s4(base: u32, k: u32) -> vec4<f32> {
    return vec4(b_at(base, k), b_at(base, k + 1u), b_at(base, k + 2u), b_at(base, k + 3u));
}

// Writes one B row's 16 outputs (skipping rows and columns past the end).
fn store_row(a0: u32, b: u32, acc: Acc) {
    store(acc.g0.x, a0, b);
    store(acc.g0.y, a0 + 1u * WG, b);
    store(acc.g0.z, a0 + 2u * WG, b);
    store(acc.g0.w, a0 + 3u * WG, b);
    store(acc.g1.x, a0 + 4u * WG, b);
    store(acc.g1.y, a0 + 5u * WG, b);
    store(acc.g1.z, a0 + 6u * WG, b);
    store(acc.g1.w, a0 + 7u * WG, b);
    store(acc.g2.x, a0 + 8u * WG, b);
    store(acc.g2.y, a0 + 9u * WG, b);
    store(acc.g2.z, a0 + 10u * WG, b);
    store(acc.g2.w, a0 + 11u * WG, b);
    store(acc.g3.x, a0 + 12u * WG, b);
    store(acc.g3.y, a0 + 13u * WG, b);
    store(acc.g3.z, a0 + 14u * WG, b);
    store(acc.g3.w, a0 + 15u * WG, b);
}

@compute @workgroup_size(WG)
fn rb_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups_total) {
        return;
    }
    enter_batch(wid.z);
    let gb = g / p.groups_a;
    let a0 = (g - gb * p.groups_a) * WG * TN + lid; // this invocation's A rows: a0 + WG·j
    let b0 = gb * TM;                                // the workgroup's B rows: b0 + i
    // Where each row starts (vec4 units), hoisted out of the K loop.
    let ar0 = a_start(a0) / 4u; let ar1 = a_start(a0 + 1u * WG) / 4u;
    let ar2 = a_start(a0 + 2u * WG) / 4u; let ar3 = a_start(a0 + 3u * WG) / 4u;
    let ar4 = a_start(a0 + 4u * WG) / 4u; let ar5 = a_start(a0 + 5u * WG) / 4u;
    let ar6 = a_start(a0 + 6u * WG) / 4u; let ar7 = a_start(a0 + 7u * WG) / 4u;
    let ar8 = a_start(a0 + 8u * WG) / 4u; let ar9 = a_start(a0 + 9u * WG) / 4u;
    let ar10 = a_start(a0 + 10u * WG) / 4u; let ar11 = a_start(a0 + 11u * WG) / 4u;
    let ar12 = a_start(a0 + 12u * WG) / 4u; let ar13 = a_start(a0 + 13u * WG) / 4u;
    let ar14 = a_start(a0 + 14u * WG) / 4u; let ar15 = a_start(a0 + 15u * WG) / 4u;
    let br0 = b_start(b0) / 4u; let br1 = b_start(b0 + 1u) / 4u; let br2 = b_start(b0 + 2u) / 4u;
    let br3 = b_start(b0 + 3u) / 4u; let br4 = b_start(b0 + 4u) / 4u; let br5 = b_start(b0 + 5u) / 4u;
    let br6 = b_start(b0 + 6u) / 4u; let br7 = b_start(b0 + 7u) / 4u; let br8 = b_start(b0 + 8u) / 4u;
    let br9 = b_start(b0 + 9u) / 4u; let br10 = b_start(b0 + 10u) / 4u; let br11 = b_start(b0 + 11u) / 4u;
    let br12 = b_start(b0 + 12u) / 4u; let br13 = b_start(b0 + 13u) / 4u; let br14 = b_start(b0 + 14u) / 4u;
    let br15 = b_start(b0 + 15u) / 4u; let br16 = b_start(b0 + 16u) / 4u; let br17 = b_start(b0 + 17u) / 4u;
    let br18 = b_start(b0 + 18u) / 4u; let br19 = b_start(b0 + 19u) / 4u; let br20 = b_start(b0 + 20u) / 4u;
    let br21 = b_start(b0 + 21u) / 4u; let br22 = b_start(b0 + 22u) / 4u; let br23 = b_start(b0 + 23u) / 4u;
    let br24 = b_start(b0 + 24u) / 4u; let br25 = b_start(b0 + 25u) / 4u; let br26 = b_start(b0 + 26u) / 4u;
    let br27 = b_start(b0 + 27u) / 4u; let br28 = b_start(b0 + 28u) / 4u; let br29 = b_start(b0 + 29u) / 4u;
    let br30 = b_start(b0 + 30u) / 4u; let br31 = b_start(b0 + 31u) / 4u;
    var r0: Acc; var r1: Acc; var r2: Acc; var r3: Acc; var r4: Acc; var r5: Acc; var r6: Acc; var r7: Acc;
    var r8: Acc; var r9: Acc; var r10: Acc; var r11: Acc; var r12: Acc; var r13: Acc; var r14: Acc; var r15: Acc;
    var r16: Acc; var r17: Acc; var r18: Acc; var r19: Acc; var r20: Acc; var r21: Acc; var r22: Acc; var r23: Acc;
    var r24: Acc; var r25: Acc; var r26: Acc; var r27: Acc; var r28: Acc; var r29: Acc; var r30: Acc; var r31: Acc;
    let k4 = p.k / 4u;
    for (var kk = 0u; kk < k4; kk++) {
        let a = ABlock(
            mat4x4(la4(ar0 + kk), la4(ar1 + kk), la4(ar2 + kk), la4(ar3 + kk)),
            mat4x4(la4(ar4 + kk), la4(ar5 + kk), la4(ar6 + kk), la4(ar7 + kk)),
            mat4x4(la4(ar8 + kk), la4(ar9 + kk), la4(ar10 + kk), la4(ar11 + kk)),
            mat4x4(la4(ar12 + kk), la4(ar13 + kk), la4(ar14 + kk), la4(ar15 + kk)),
        );
        // Each B row is loaded right before its 16 dot products; rows ≥ TM compile away.
        r0 = fma_row(r0, b4[br0 + kk], a);
        if (TM > 1u) { r1 = fma_row(r1, b4[br1 + kk], a); }
        if (TM > 2u) { r2 = fma_row(r2, b4[br2 + kk], a); }
        if (TM > 3u) { r3 = fma_row(r3, b4[br3 + kk], a); }
        if (TM > 4u) { r4 = fma_row(r4, b4[br4 + kk], a); }
        if (TM > 5u) { r5 = fma_row(r5, b4[br5 + kk], a); }
        if (TM > 6u) { r6 = fma_row(r6, b4[br6 + kk], a); }
        if (TM > 7u) { r7 = fma_row(r7, b4[br7 + kk], a); }
        if (TM > 8u) { r8 = fma_row(r8, b4[br8 + kk], a); }
        if (TM > 9u) { r9 = fma_row(r9, b4[br9 + kk], a); }
        if (TM > 10u) { r10 = fma_row(r10, b4[br10 + kk], a); }
        if (TM > 11u) { r11 = fma_row(r11, b4[br11 + kk], a); }
        if (TM > 12u) { r12 = fma_row(r12, b4[br12 + kk], a); }
        if (TM > 13u) { r13 = fma_row(r13, b4[br13 + kk], a); }
        if (TM > 14u) { r14 = fma_row(r14, b4[br14 + kk], a); }
        if (TM > 15u) { r15 = fma_row(r15, b4[br15 + kk], a); }
        if (TM > 16u) { r16 = fma_row(r16, b4[br16 + kk], a); }
        if (TM > 17u) { r17 = fma_row(r17, b4[br17 + kk], a); }
        if (TM > 18u) { r18 = fma_row(r18, b4[br18 + kk], a); }
        if (TM > 19u) { r19 = fma_row(r19, b4[br19 + kk], a); }
        if (TM > 20u) { r20 = fma_row(r20, b4[br20 + kk], a); }
        if (TM > 21u) { r21 = fma_row(r21, b4[br21 + kk], a); }
        if (TM > 22u) { r22 = fma_row(r22, b4[br22 + kk], a); }
        if (TM > 23u) { r23 = fma_row(r23, b4[br23 + kk], a); }
        if (TM > 24u) { r24 = fma_row(r24, b4[br24 + kk], a); }
        if (TM > 25u) { r25 = fma_row(r25, b4[br25 + kk], a); }
        if (TM > 26u) { r26 = fma_row(r26, b4[br26 + kk], a); }
        if (TM > 27u) { r27 = fma_row(r27, b4[br27 + kk], a); }
        if (TM > 28u) { r28 = fma_row(r28, b4[br28 + kk], a); }
        if (TM > 29u) { r29 = fma_row(r29, b4[br29 + kk], a); }
        if (TM > 30u) { r30 = fma_row(r30, b4[br30 + kk], a); }
        if (TM > 31u) { r31 = fma_row(r31, b4[br31 + kk], a); }
    }
    store_row(a0, b0, r0);
    if (TM > 1u) { store_row(a0, b0 + 1u, r1); }
    if (TM > 2u) { store_row(a0, b0 + 2u, r2); }
    if (TM > 3u) { store_row(a0, b0 + 3u, r3); }
    if (TM > 4u) { store_row(a0, b0 + 4u, r4); }
    if (TM > 5u) { store_row(a0, b0 + 5u, r5); }
    if (TM > 6u) { store_row(a0, b0 + 6u, r6); }
    if (TM > 7u) { store_row(a0, b0 + 7u, r7); }
    if (TM > 8u) { store_row(a0, b0 + 8u, r8); }
    if (TM > 9u) { store_row(a0, b0 + 9u, r9); }
    if (TM > 10u) { store_row(a0, b0 + 10u, r10); }
    if (TM > 11u) { store_row(a0, b0 + 11u, r11); }
    if (TM > 12u) { store_row(a0, b0 + 12u, r12); }
    if (TM > 13u) { store_row(a0, b0 + 13u, r13); }
    if (TM > 14u) { store_row(a0, b0 + 14u, r14); }
    if (TM > 15u) { store_row(a0, b0 + 15u, r15); }
    if (TM > 16u) { store_row(a0, b0 + 16u, r16); }
    if (TM > 17u) { store_row(a0, b0 + 17u, r17); }
    if (TM > 18u) { store_row(a0, b0 + 18u, r18); }
    if (TM > 19u) { store_row(a0, b0 + 19u, r19); }
    if (TM > 20u) { store_row(a0, b0 + 20u, r20); }
    if (TM > 21u) { store_row(a0, b0 + 21u, r21); }
    if (TM > 22u) { store_row(a0, b0 + 22u, r22); }
    if (TM > 23u) { store_row(a0, b0 + 23u, r23); }
    if (TM > 24u) { store_row(a0, b0 + 24u, r24); }
    if (TM > 25u) { store_row(a0, b0 + 25u, r25); }
    if (TM > 26u) { store_row(a0, b0 + 26u, r26); }
    if (TM > 27u) { store_row(a0, b0 + 27u, r27); }
    if (TM > 28u) { store_row(a0, b0 + 28u, r28); }
    if (TM > 29u) { store_row(a0, b0 + 29u, r29); }
    if (TM > 30u) { store_row(a0, b0 + 30u, r30); }
    if (TM > 31u) { store_row(a0, b0 + 31u, r31); }
}

@compute @workgroup_size(WG)
fn rb_scalar(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups_total) {
        return;
    }
    enter_batch(wid.z);
    let gb = g / p.groups_a;
    let a0 = (g - gb * p.groups_a) * WG * TN + lid; // this invocation's A rows: a0 + WG·j
    let b0 = gb * TM;                                // the workgroup's B rows: b0 + i
    // Where each row starts (elements), hoisted out of the K loop.
    let ar0 = a_start(a0); let ar1 = a_start(a0 + 1u * WG);
    let ar2 = a_start(a0 + 2u * WG); let ar3 = a_start(a0 + 3u * WG);
    let ar4 = a_start(a0 + 4u * WG); let ar5 = a_start(a0 + 5u * WG);
    let ar6 = a_start(a0 + 6u * WG); let ar7 = a_start(a0 + 7u * WG);
    let ar8 = a_start(a0 + 8u * WG); let ar9 = a_start(a0 + 9u * WG);
    let ar10 = a_start(a0 + 10u * WG); let ar11 = a_start(a0 + 11u * WG);
    let ar12 = a_start(a0 + 12u * WG); let ar13 = a_start(a0 + 13u * WG);
    let ar14 = a_start(a0 + 14u * WG); let ar15 = a_start(a0 + 15u * WG);
    let br0 = b_start(b0); let br1 = b_start(b0 + 1u); let br2 = b_start(b0 + 2u);
    let br3 = b_start(b0 + 3u); let br4 = b_start(b0 + 4u); let br5 = b_start(b0 + 5u);
    let br6 = b_start(b0 + 6u); let br7 = b_start(b0 + 7u); let br8 = b_start(b0 + 8u);
    let br9 = b_start(b0 + 9u); let br10 = b_start(b0 + 10u); let br11 = b_start(b0 + 11u);
    let br12 = b_start(b0 + 12u); let br13 = b_start(b0 + 13u); let br14 = b_start(b0 + 14u);
    let br15 = b_start(b0 + 15u); let br16 = b_start(b0 + 16u); let br17 = b_start(b0 + 17u);
    let br18 = b_start(b0 + 18u); let br19 = b_start(b0 + 19u); let br20 = b_start(b0 + 20u);
    let br21 = b_start(b0 + 21u); let br22 = b_start(b0 + 22u); let br23 = b_start(b0 + 23u);
    let br24 = b_start(b0 + 24u); let br25 = b_start(b0 + 25u); let br26 = b_start(b0 + 26u);
    let br27 = b_start(b0 + 27u); let br28 = b_start(b0 + 28u); let br29 = b_start(b0 + 29u);
    let br30 = b_start(b0 + 30u); let br31 = b_start(b0 + 31u);
    var r0: Acc; var r1: Acc; var r2: Acc; var r3: Acc; var r4: Acc; var r5: Acc; var r6: Acc; var r7: Acc;
    var r8: Acc; var r9: Acc; var r10: Acc; var r11: Acc; var r12: Acc; var r13: Acc; var r14: Acc; var r15: Acc;
    var r16: Acc; var r17: Acc; var r18: Acc; var r19: Acc; var r20: Acc; var r21: Acc; var r22: Acc; var r23: Acc;
    var r24: Acc; var r25: Acc; var r26: Acc; var r27: Acc; var r28: Acc; var r29: Acc; var r30: Acc; var r31: Acc;
    // Groups of four k; the last group is zero-padded past K.
    let k = p.k;
    for (var kk = 0u; kk < k; kk += 4u) {
        let a = ABlock(
            mat4x4(a_s4(ar0, kk), a_s4(ar1, kk), a_s4(ar2, kk), a_s4(ar3, kk)),
            mat4x4(a_s4(ar4, kk), a_s4(ar5, kk), a_s4(ar6, kk), a_s4(ar7, kk)),
            mat4x4(a_s4(ar8, kk), a_s4(ar9, kk), a_s4(ar10, kk), a_s4(ar11, kk)),
            mat4x4(a_s4(ar12, kk), a_s4(ar13, kk), a_s4(ar14, kk), a_s4(ar15, kk)),
        );
        // Each B row is loaded right before its 16 dot products; rows ≥ TM compile away.
        r0 = fma_row(r0, b_s4(br0, kk), a);
        if (TM > 1u) { r1 = fma_row(r1, b_s4(br1, kk), a); }
        if (TM > 2u) { r2 = fma_row(r2, b_s4(br2, kk), a); }
        if (TM > 3u) { r3 = fma_row(r3, b_s4(br3, kk), a); }
        if (TM > 4u) { r4 = fma_row(r4, b_s4(br4, kk), a); }
        if (TM > 5u) { r5 = fma_row(r5, b_s4(br5, kk), a); }
        if (TM > 6u) { r6 = fma_row(r6, b_s4(br6, kk), a); }
        if (TM > 7u) { r7 = fma_row(r7, b_s4(br7, kk), a); }
        if (TM > 8u) { r8 = fma_row(r8, b_s4(br8, kk), a); }
        if (TM > 9u) { r9 = fma_row(r9, b_s4(br9, kk), a); }
        if (TM > 10u) { r10 = fma_row(r10, b_s4(br10, kk), a); }
        if (TM > 11u) { r11 = fma_row(r11, b_s4(br11, kk), a); }
        if (TM > 12u) { r12 = fma_row(r12, b_s4(br12, kk), a); }
        if (TM > 13u) { r13 = fma_row(r13, b_s4(br13, kk), a); }
        if (TM > 14u) { r14 = fma_row(r14, b_s4(br14, kk), a); }
        if (TM > 15u) { r15 = fma_row(r15, b_s4(br15, kk), a); }
        if (TM > 16u) { r16 = fma_row(r16, b_s4(br16, kk), a); }
        if (TM > 17u) { r17 = fma_row(r17, b_s4(br17, kk), a); }
        if (TM > 18u) { r18 = fma_row(r18, b_s4(br18, kk), a); }
        if (TM > 19u) { r19 = fma_row(r19, b_s4(br19, kk), a); }
        if (TM > 20u) { r20 = fma_row(r20, b_s4(br20, kk), a); }
        if (TM > 21u) { r21 = fma_row(r21, b_s4(br21, kk), a); }
        if (TM > 22u) { r22 = fma_row(r22, b_s4(br22, kk), a); }
        if (TM > 23u) { r23 = fma_row(r23, b_s4(br23, kk), a); }
        if (TM > 24u) { r24 = fma_row(r24, b_s4(br24, kk), a); }
        if (TM > 25u) { r25 = fma_row(r25, b_s4(br25, kk), a); }
        if (TM > 26u) { r26 = fma_row(r26, b_s4(br26, kk), a); }
        if (TM > 27u) { r27 = fma_row(r27, b_s4(br27, kk), a); }
        if (TM > 28u) { r28 = fma_row(r28, b_s4(br28, kk), a); }
        if (TM > 29u) { r29 = fma_row(r29, b_s4(br29, kk), a); }
        if (TM > 30u) { r30 = fma_row(r30, b_s4(br30, kk), a); }
        if (TM > 31u) { r31 = fma_row(r31, b_s4(br31, kk), a); }
    }
    store_row(a0, b0, r0);
    if (TM > 1u) { store_row(a0, b0 + 1u, r1); }
    if (TM > 2u) { store_row(a0, b0 + 2u, r2); }
    if (TM > 3u) { store_row(a0, b0 + 3u, r3); }
    if (TM > 4u) { store_row(a0, b0 + 4u, r4); }
    if (TM > 5u) { store_row(a0, b0 + 5u, r5); }
    if (TM > 6u) { store_row(a0, b0 + 6u, r6); }
    if (TM > 7u) { store_row(a0, b0 + 7u, r7); }
    if (TM > 8u) { store_row(a0, b0 + 8u, r8); }
    if (TM > 9u) { store_row(a0, b0 + 9u, r9); }
    if (TM > 10u) { store_row(a0, b0 + 10u, r10); }
    if (TM > 11u) { store_row(a0, b0 + 11u, r11); }
    if (TM > 12u) { store_row(a0, b0 + 12u, r12); }
    if (TM > 13u) { store_row(a0, b0 + 13u, r13); }
    if (TM > 14u) { store_row(a0, b0 + 14u, r14); }
    if (TM > 15u) { store_row(a0, b0 + 15u, r15); }
    if (TM > 16u) { store_row(a0, b0 + 16u, r16); }
    if (TM > 17u) { store_row(a0, b0 + 17u, r17); }
    if (TM > 18u) { store_row(a0, b0 + 18u, r18); }
    if (TM > 19u) { store_row(a0, b0 + 19u, r19); }
    if (TM > 20u) { store_row(a0, b0 + 20u, r20); }
    if (TM > 21u) { store_row(a0, b0 + 21u, r21); }
    if (TM > 22u) { store_row(a0, b0 + 22u, r22); }
    if (TM > 23u) { store_row(a0, b0 + 23u, r23); }
    if (TM > 24u) { store_row(a0, b0 + 24u, r24); }
    if (TM > 25u) { store_row(a0, b0 + 25u, r25); }
    if (TM > 26u) { store_row(a0, b0 + 26u, r26); }
    if (TM > 27u) { store_row(a0, b0 + 27u, r27); }
    if (TM > 28u) { store_row(a0, b0 + 28u, r28); }
    if (TM > 29u) { store_row(a0, b0 + 29u, r29); }
    if (TM > 30u) { store_row(a0, b0 + 30u, r30); }
    if (TM > 31u) { store_row(a0, b0 + 31u, r31); }
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
    enter_batch(wid.z);
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
            b_tile[c * stride + row] = select(0.0, b1[b_start(br) + kc], in_k);
            a_tile[c * stride + row] = select(0.0, la1(a_start(ar) + kc), in_k);
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

// ---------------------------------------------------------------------------------------------
// Matrix-vector kernel: one B row (a decoded token), out[a] = A[a]·B[0] for GR rows of A per
// workgroup.
//
// Decoding reads every weight once per token, so this kernel is about streaming A, a chunk of
// A_CHUNK values at a time (la_dot). Two ways to share the rows among the GV invocations:
// - split K (GEMV_LANE_ROWS = false): the invocations of a workgroup take GR rows together,
//   invocation l reading chunks l, l + GV, l + 2·GV, … of each, so neighbouring invocations
//   read neighbouring memory (coalesced on GPUs) and there are a_rows / GR workgroups (56 for
//   N = 896, against 7 register-blocked ones); the GV partial sums of each row meet in
//   workgroup memory;
// - lanes own rows (GEMV_LANE_ROWS = true): invocation l takes rows a0 + l + GV·i, i < GR,
//   through the whole of K, with no reduction. For tall matrices on CPU adapters, where the
//   split form pays a barrier per GR rows: 9728×896 bf16 texels 2.9 → 1.8 ms on llvmpipe.
// On llvmpipe either pays off only with the weight stored as texels (a texel fetch is one
// gather; a storage load with per-lane addresses is a loop over the lanes), so the host uses
// this kernel there only for such weights, and on GPUs always (split K).

override GV: u32 = 8u; // invocations per workgroup
override GEMV_LANE_ROWS: bool = false;
const GR: u32 = 16u;   // rows of A per invocation (lanes own rows) or per workgroup (split K)

var<workgroup> gemv_partial: array<f32, GV * GR>;

@compute @workgroup_size(GV)
fn gemv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x + wid.y * nwg.x;
    // Uniform for the whole workgroup, so the barrier below stays in uniform control flow.
    if (g >= p.groups_total) {
        return;
    }
    enter_batch(wid.z);
    // Accumulator i holds row a0 + i·row_step; this invocation reads chunks k_first,
    // k_first + k_step, … of it.
    let a0 = select(g * GR, g * GR * GV + lid, GEMV_LANE_ROWS);
    let row_step = select(1u, GV, GEMV_LANE_ROWS);
    let k_first = select(lid, 0u, GEMV_LANE_ROWS);
    let k_step = select(GV, 1u, GEMV_LANE_ROWS);
    let b = b_start(0u) / A_CHUNK;
    let r0 = a_start(a0 + 0u * row_step) / A_CHUNK;
    let r1 = a_start(a0 + 1u * row_step) / A_CHUNK;
    let r2 = a_start(a0 + 2u * row_step) / A_CHUNK;
    let r3 = a_start(a0 + 3u * row_step) / A_CHUNK;
    let r4 = a_start(a0 + 4u * row_step) / A_CHUNK;
    let r5 = a_start(a0 + 5u * row_step) / A_CHUNK;
    let r6 = a_start(a0 + 6u * row_step) / A_CHUNK;
    let r7 = a_start(a0 + 7u * row_step) / A_CHUNK;
    let r8 = a_start(a0 + 8u * row_step) / A_CHUNK;
    let r9 = a_start(a0 + 9u * row_step) / A_CHUNK;
    let r10 = a_start(a0 + 10u * row_step) / A_CHUNK;
    let r11 = a_start(a0 + 11u * row_step) / A_CHUNK;
    let r12 = a_start(a0 + 12u * row_step) / A_CHUNK;
    let r13 = a_start(a0 + 13u * row_step) / A_CHUNK;
    let r14 = a_start(a0 + 14u * row_step) / A_CHUNK;
    let r15 = a_start(a0 + 15u * row_step) / A_CHUNK;
    var s0 = 0.0; var s1 = 0.0; var s2 = 0.0; var s3 = 0.0; var s4 = 0.0; var s5 = 0.0; var s6 = 0.0; var s7 = 0.0; var s8 = 0.0; var s9 = 0.0; var s10 = 0.0; var s11 = 0.0; var s12 = 0.0; var s13 = 0.0; var s14 = 0.0; var s15 = 0.0;
    let kc = p.k / A_CHUNK;
    for (var kk = k_first; kk < kc; kk += k_step) {
        let bv = lb_chunk(b + kk);
        s0 += la_dot(r0 + kk, bv);
        s1 += la_dot(r1 + kk, bv);
        s2 += la_dot(r2 + kk, bv);
        s3 += la_dot(r3 + kk, bv);
        s4 += la_dot(r4 + kk, bv);
        s5 += la_dot(r5 + kk, bv);
        s6 += la_dot(r6 + kk, bv);
        s7 += la_dot(r7 + kk, bv);
        s8 += la_dot(r8 + kk, bv);
        s9 += la_dot(r9 + kk, bv);
        s10 += la_dot(r10 + kk, bv);
        s11 += la_dot(r11 + kk, bv);
        s12 += la_dot(r12 + kk, bv);
        s13 += la_dot(r13 + kk, bv);
        s14 += la_dot(r14 + kk, bv);
        s15 += la_dot(r15 + kk, bv);
    }
    if (GEMV_LANE_ROWS) {
        store(s0, a0 + 0u * row_step, 0u);
        store(s1, a0 + 1u * row_step, 0u);
        store(s2, a0 + 2u * row_step, 0u);
        store(s3, a0 + 3u * row_step, 0u);
        store(s4, a0 + 4u * row_step, 0u);
        store(s5, a0 + 5u * row_step, 0u);
        store(s6, a0 + 6u * row_step, 0u);
        store(s7, a0 + 7u * row_step, 0u);
        store(s8, a0 + 8u * row_step, 0u);
        store(s9, a0 + 9u * row_step, 0u);
        store(s10, a0 + 10u * row_step, 0u);
        store(s11, a0 + 11u * row_step, 0u);
        store(s12, a0 + 12u * row_step, 0u);
        store(s13, a0 + 13u * row_step, 0u);
        store(s14, a0 + 14u * row_step, 0u);
        store(s15, a0 + 15u * row_step, 0u);
        return;
    }
    gemv_partial[lid * GR + 0u] = s0;
    gemv_partial[lid * GR + 1u] = s1;
    gemv_partial[lid * GR + 2u] = s2;
    gemv_partial[lid * GR + 3u] = s3;
    gemv_partial[lid * GR + 4u] = s4;
    gemv_partial[lid * GR + 5u] = s5;
    gemv_partial[lid * GR + 6u] = s6;
    gemv_partial[lid * GR + 7u] = s7;
    gemv_partial[lid * GR + 8u] = s8;
    gemv_partial[lid * GR + 9u] = s9;
    gemv_partial[lid * GR + 10u] = s10;
    gemv_partial[lid * GR + 11u] = s11;
    gemv_partial[lid * GR + 12u] = s12;
    gemv_partial[lid * GR + 13u] = s13;
    gemv_partial[lid * GR + 14u] = s14;
    gemv_partial[lid * GR + 15u] = s15;
    workgroupBarrier();
    for (var j = lid; j < GR; j += GV) {
        var acc = 0.0;
        for (var l = 0u; l < GV; l++) {
            acc += gemv_partial[l * GR + j];
        }
        store(acc, a0 + j, 0u);
    }
}

// copy_rows: for each (src, dst) pair of u32s in B (b_rows pairs from b_off), y row dst =
// A row src (K values, rows a_rs apart from a_off), widened through `la1`: the row gather of an
// embedding table stored in a format only this family reads (ggml blocks). y row dst starts
// at y_off + dst·K. One invocation per copied element, 64 per workgroup, the grid's x and y
// flattened.
@compute @workgroup_size(64)
fn copy_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if i >= p.b_rows * p.k {
        return;
    }
    let r = i / p.k;
    let c = i - r * p.k;
    let src = bitcast<u32>(b1[p.b_off + 2u * r]);
    let dst = bitcast<u32>(b1[p.b_off + 2u * r + 1u]);
    y[p.y_off + dst * p.k + c] = la1(p.a_off + src * p.a_rs + c);
}
