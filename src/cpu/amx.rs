//! bf16 products on Intel AMX tiles (Sapphire Rapids and later): Y = bf16(X) · Wᵀ + b for bf16
//! weights, every product of two bf16 values summed in f32 (`tdpbf16ps`: 16×16 outputs × 32
//! depths per instruction, ~16× the multiply-adds per cycle of AVX-512 f32). The activations
//! are rounded to bf16 (to nearest, ties to even) on the way in — what PyTorch does with a bf16
//! model (oneDNN runs these same instructions) and llama.cpp with BF16 weights — so this is a
//! mode the user chooses (`--cpu-products bf16`), never the exact f32 twin.
//!
//! The AMX intrinsics are not in stable Rust, so the tile instructions are inline assembly
//! (which is); Linux must also grant the process the tile state once (`arch_prctl`
//! `ARCH_REQ_XCOMP_PERM`), which [`available`] asks for. Tiles: A is 16 rows × 32 bf16 of the
//! rounded activations (written tile by tile as they are rounded), B 16 depth pairs × 16 columns in
//! the VNNI layout (`[k/2][n][2]`), packed per task from W's rows by 16×16 transposes of u32
//! pairs; four accumulators make a 32×32 block of Y.
//!
//! Decoding's few rows (up to `DECODE_ROWS`) take AVX512-BF16 dot products instead
//! ([`matvec`]: `vdpbf16ps`, 32 bf16 pairs per instruction, no widening), streaming each
//! weight row once, as llama.cpp decodes BF16 weights.

use super::gemm::{transpose16, Tasks};
use super::linear::Bf16Weight;
use super::threads::OutPtr;
use crate::tensor::{cache_lines, tiled_depth, CacheLine};
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Depths per tile row (64 bytes of bf16).
pub(super) const TK: usize = 32;
/// Columns of W packed per task (a multiple of the 32-column block).
const NC: usize = 128;
/// Depth tiles summed between two round trips of the accumulators through memory.
const KCH: usize = 8;

/// Whether this CPU and OS run these kernels: AMX-TILE and AMX-BF16 (CPUID leaf 7), AVX-512
/// F/BW/BF16 for the rounding and packing, and Linux's permission for the tile state (asked
/// once per process).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let leaf7 = __cpuid_count(7, 0);
        let amx = (leaf7.edx >> 22) & 1 == 1 && (leaf7.edx >> 24) & 1 == 1;
        amx && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
            && request_tile_state()
    })
}

/// Asks Linux for the AMX tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`); without it the first tile instruction kills the process.
fn request_tile_state() -> bool {
    #[cfg(target_os = "linux")]
    {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: a plain system call with integer arguments; it changes only which register
        // state the kernel saves for this process.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        ret == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// The tile configuration: palette 1, every tile 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// Configures the eight tiles as 16 rows of 64 bytes, runs `work` (which uses them through
/// [`panel`]) and releases them. Nothing else may run on this thread in between, so `work`
/// must not call into the rayon pool.
///
/// # Safety
/// [`available`] must have returned true.
pub(super) unsafe fn with_tiles<R>(work: impl FnOnce() -> R) -> R {
    let mut cfg = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [0; 16],
        rows: [0; 16],
    };
    for t in 0..8 {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack, readonly));
    let result = work();
    asm!("tilerelease", options(nostack, nomem));
    result
}

/// W (n×k bf16 bits, row-major) as the B operand's VNNI tiles for all its columns, as
/// [`linear`]'s tasks would pack their NC columns each ([`pack_tiles`]; columns padded to 32,
/// depths to 32): done once when a weight is loaded for `--cpu-products bf16`, so no product
/// packs it again and one copy serves prefill and decode. The layout, bit by bit:
/// `crate::tensor::tile_index`.
///
/// # Safety
/// [`available`] must have returned true; w holds n×k values.
pub unsafe fn pack_weight(w: &[u16], (n, k): (usize, usize)) -> Vec<CacheLine> {
    use rayon::prelude::*;
    assert!(
        w.len() >= n * k,
        "a weight of {} values packed as {n}×{k}",
        w.len()
    );
    let k_pad = tiled_depth(k);
    let mut bits = cache_lines(crate::tensor::tiled_len(n, k));
    // Each NC columns' tiles are one contiguous stretch (NC is a multiple of 32).
    bits.par_chunks_mut(NC * k_pad / 32)
        .enumerate()
        .for_each(|(c, out)| {
            let j0 = c * NC;
            // SAFETY: AVX-512F/BW (`available`); columns j0.. of W are in bounds (asserted),
            // and `out` holds their tiles.
            unsafe { pack_vnni(out, w, k, j0, NC.min(n - j0), k_pad) };
        });
    bits
}

/// Y (m×n) = bf16(X) (m×k) · Wᵀ + b, W n×k bf16, on the rayon pool: tasks own [`NC`] columns
/// of Y (each packs its columns of W once, unless W is packed already) and, when there are too
/// few columns to keep every thread busy, a share of the rows.
///
/// # Safety
/// [`available`] must have returned true; x holds m×k values, w n×k and b, when given, n.
pub(crate) unsafe fn linear(
    x: &[f32],
    w: Bf16Weight,
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
) -> Vec<f32> {
    super::linear::check_sizes(x, w.len((n, k)), b, m, n, k);
    // Every element is written once, by its block (sums + bias), never read before: no zeros
    // first (a serial pass over up to tens of MiB), the length set once the tasks are done.
    let mut y: Vec<f32> = Vec::with_capacity(m * n);
    linear_into(x, w, b, (m, n, k), y.as_mut_ptr());
    // SAFETY: `linear_into` wrote every element.
    unsafe { y.set_len(m * n) };
    y
}

/// [`linear`] into `y`, which holds m×n values (written, never read).
///
/// # Safety
/// As [`linear`]; y is valid for m×n writes.
unsafe fn linear_into(
    x: &[f32],
    w: Bf16Weight,
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    y: *mut f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The bias to whole 32-column groups (a block starts from 16·groups of it).
    let b_pad: Option<Vec<f32>> = b.map(|b| {
        let mut p = b[..n].to_vec();
        p.resize(n.next_multiple_of(32), 0.0);
        p
    });
    let b = b_pad.as_deref();
    let k_pad = tiled_depth(k);
    let m_pad = m.next_multiple_of(32);
    let xb = round_rows(x, (m, k), (m_pad, k_pad));
    let tasks = Tasks::new((m_pad, n), NC, 32);
    let out = OutPtr(y);
    tasks.run(move |task| {
        let out = out;
        let (j0, i0, cols) = tasks.at(task, n);
        let rows = (i0..m_pad.min(i0 + tasks.rows_per_task), m);
        // SAFETY: AMX granted (`available`); the task reads its rows of the padded
        // activations and its columns of W (in bounds by the sizes asserted above) and
        // writes only Y's rows i0.. × columns j0..j0+cols.
        unsafe {
            let mut packed;
            let tiles = match w {
                Bf16Weight::Rows(w) => {
                    packed = cache_lines(cols.next_multiple_of(32) * k_pad);
                    pack_vnni(&mut packed, w, k, j0, cols, k_pad);
                    packed.as_ptr() as *const u32
                }
                Bf16Weight::Tiles(t) => t.as_ptr().add(j0 * k_pad) as *const u32,
            };
            block(
                bytemuck::cast_slice(&xb),
                k_pad,
                tiles,
                rows,
                (j0, cols, n),
                b,
                out.0,
            );
        }
    });
    // The tasks cover every row < m and column < n (`Tasks`), and `block` writes each.
}

/// Y (m×n) = bf16(X) (m×k) · Wᵀ + b for a few rows of X: each row rounded to bf16 once, then
/// W streamed once (`matvec_chunks`, split over the rayon pool) against every row of X by
/// AVX512-BF16 dot products: a row of W at a time, or a packed W's tiles ([`tile_dots`]).
/// Each row's sums run in the same order whatever rows share the call, so a batched decode
/// step gives each sequence the bits it gets alone.
///
/// # Safety
/// [`available`] must have returned true; x holds m×k values, w n×k and b, when given, n.
pub(crate) unsafe fn matvec(
    x: &[f32],
    w: Bf16Weight,
    b: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
) -> Vec<f32> {
    super::linear::check_sizes(x, w.len((n, k)), b, m, n, k);
    let k_pad = tiled_depth(k);
    let mut xb = vec![0u16; m * k_pad];
    for (i, row) in xb.chunks_mut(k_pad).enumerate() {
        round_into(&x[i * k..(i + 1) * k], row);
    }
    super::linear::matvec_chunks(m, b, n, |j0, ys| match w {
        Bf16Weight::Rows(w) => {
            for (jj, out) in ys.chunks_mut(m).enumerate() {
                let row = &w[(j0 + jj) * k..(j0 + jj + 1) * k];
                for (i, o) in out.iter_mut().enumerate() {
                    // SAFETY: AVX-512F/BW/BF16 (`available`); the x row holds k_pad ≥ k values.
                    *o = unsafe { dot(&xb[i * k_pad..(i + 1) * k_pad], row) };
                }
            }
        }
        Bf16Weight::Tiles(t) => {
            // Chunks start on whole 16-column groups (`matvec_chunks`).
            for (g, out) in ys.chunks_mut(16 * m).enumerate() {
                let group = t.as_ptr().add((j0 + 16 * g) * k_pad);
                // SAFETY: AVX-512F/BF16 (`available`); the group's k_pad/32 tiles are in t
                // (its length checked against `tiled_len`), the x rows hold k_pad values.
                unsafe {
                    match m {
                        1 => tile_dots::<1>(&xb, k_pad, group, out),
                        2 => tile_dots::<2>(&xb, k_pad, group, out),
                        3 => tile_dots::<3>(&xb, k_pad, group, out),
                        4 => tile_dots::<4>(&xb, k_pad, group, out),
                        5 => tile_dots::<5>(&xb, k_pad, group, out),
                        6 => tile_dots::<6>(&xb, k_pad, group, out),
                        7 => tile_dots::<7>(&xb, k_pad, group, out),
                        _ => tile_dots::<8>(&xb, k_pad, group, out),
                    }
                }
            }
        }
    })
}

/// out[c·M + i] (c < out.len()/M ≤ 16) = x_i · column c of one packed 16-column group, for
/// the M rows of xb: per tile row (a depth pair of the 16 columns, 64 bytes), one `vdpbf16ps`
/// per row of x against its pair broadcast, so the 16 columns' sums build up in the lanes
/// with no horizontal sums; even and odd tile rows in two accumulators. M is a constant so
/// the 2·M accumulators stay in registers.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn tile_dots<const M: usize>(xb: &[u16], k_pad: usize, group: *const u16, out: &mut [f32]) {
    assert!(xb.len() == M * k_pad && out.len() <= 16 * M);
    let mut acc = [[_mm512_setzero_ps(); 2]; M];
    for kb in 0..k_pad / TK {
        let tile = group.add(kb * 16 * TK);
        for r in 0..16 {
            let w: __m512bh = std::mem::transmute(_mm512_loadu_si512(tile.add(r * TK) as *const _));
            for (i, acc) in acc.iter_mut().enumerate() {
                let at = xb.as_ptr().add(i * k_pad + kb * TK + 2 * r);
                let x: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32((at as *const i32).read_unaligned()));
                acc[r % 2] = _mm512_dpbf16_ps(acc[r % 2], x, w);
            }
        }
    }
    let cols = out.len() / M;
    for (i, acc) in acc.iter().enumerate() {
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), _mm512_add_ps(acc[0], acc[1]));
        for (c, v) in lanes.iter().take(cols).enumerate() {
            out[c * M + i] = *v;
        }
    }
}

/// x (bf16, zero past w's length, a multiple of 32 long) · w (bf16): four accumulators of 16
/// sums, 32 products per `vdpbf16ps`; the last partial 32 through a masked load of w.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dot(x: &[u16], w: &[u16]) -> f32 {
    let k = w.len();
    debug_assert!(x.len() >= k.next_multiple_of(TK));
    let load =
        |p: *const u16| -> __m512bh { std::mem::transmute(_mm512_loadu_si512(p as *const _)) };
    let main = k - k % TK;
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 4 * TK <= main {
        for (a, acc) in acc.iter_mut().enumerate() {
            let at = i + TK * a;
            *acc = _mm512_dpbf16_ps(*acc, load(x.as_ptr().add(at)), load(w.as_ptr().add(at)));
        }
        i += 4 * TK;
    }
    while i < main {
        acc[0] = _mm512_dpbf16_ps(acc[0], load(x.as_ptr().add(i)), load(w.as_ptr().add(i)));
        i += TK;
    }
    if main < k {
        let mask: __mmask32 = (1u32 << (k - main)) - 1;
        let wt: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi16(
            mask,
            w.as_ptr().add(main) as *const i16,
        ));
        acc[0] = _mm512_dpbf16_ps(acc[0], load(x.as_ptr().add(main)), wt);
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(sum)
}

/// One row of x rounded to bf16 into `out` (k_pad ≥ x.len() slots, a multiple of 16).
fn round_into(x: &[f32], out: &mut [u16]) {
    // SAFETY: AVX-512F/BF16 (checked by `available` before any caller runs).
    unsafe {
        round_chunks(x, 1.0, |i, h| {
            _mm256_storeu_si256(out.as_mut_ptr().add(16 * i) as *mut __m256i, h)
        })
    }
}

/// x · mul rounded to bf16 16 values at a time (masked-off lanes 0), each chunk handed to
/// `store` (mul = 1 leaves x as it is).
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn round_chunks(x: &[f32], mul: f32, mut store: impl FnMut(usize, __m256i)) {
    let mul = _mm512_set1_ps(mul);
    for (i, chunk) in x.chunks(16).enumerate() {
        let mask: __mmask16 = ((1u32 << chunk.len()) - 1) as __mmask16;
        let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, chunk.as_ptr()), mul);
        store(
            i,
            std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v)),
        );
    }
}

/// X rounded to bf16 (nearest, ties to even: `vcvtneps2bf16`) as A tiles: rows in groups of
/// 16, each group's depths in tiles of 32, a tile's 16 rows × 32 values contiguous (1 KiB), so
/// a tile load reads one contiguous KiB; m_pad rows, k_pad depths, zeros past m and k.
fn round_rows(x: &[f32], (m, k): (usize, usize), (m_pad, k_pad): (usize, usize)) -> Vec<CacheLine> {
    use rayon::prelude::*;
    let mut xb = cache_lines(m_pad * k_pad);
    xb.par_chunks_mut(16 * k_pad / 32)
        .enumerate()
        .for_each(|(g, group)| {
            let group: &mut [u16] = bytemuck::cast_slice_mut(group);
            for r in 0..16.min(m.saturating_sub(16 * g)) {
                let i = 16 * g + r;
                // SAFETY: AVX-512F/BF16 (checked by `available` before `linear` runs); row i
                // of x holds k values; the group holds 16 rows of k_pad ≥ k.
                unsafe { round_row(&x[i * k..(i + 1) * k], 1.0, group, r) }
            }
        });
    xb
}

/// Row r of a group of 16 rows, times `mul`, rounded into its tiles (see [`round_rows`]).
pub(super) unsafe fn round_row(x: &[f32], mul: f32, group: &mut [u16], r: usize) {
    round_chunks(x, mul, |i, h| {
        // Depths 16·i.. sit in tile 16·i / 32, row r, half (i % 2); whole 16s (masked-off
        // lanes are 0, and every tile row has 32 slots).
        let at = (i / 2) * 16 * TK + r * TK + (i % 2) * 16;
        _mm256_storeu_si256(group.as_mut_ptr().add(at) as *mut __m256i, h);
    })
}

/// W's columns j0..j0+cols (rows of W) as VNNI tiles, into `tiles` ([`pack_tiles_into`]).
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_vnni(
    tiles: &mut [CacheLine],
    w: &[u16],
    k: usize,
    j0: usize,
    cols: usize,
    k_pad: usize,
) {
    pack_tiles_into(tiles, cols, k_pad, |c, k0| {
        let live = k.saturating_sub(k0).min(TK);
        let mask: __mmask32 = if live == 32 { !0 } else { (1u32 << live) - 1 };
        let p = w.as_ptr().add((j0 + c) * k + k0);
        match live {
            0 => _mm512_setzero_si512(),
            _ => _mm512_maskz_loadu_epi16(mask, p as *const i16),
        }
    })
}

/// `cols` columns as the B operand's VNNI tiles: tile (jt, kb) holds columns 16·jt.. and
/// depths 32·kb.., 16 rows (depth pairs) of 16 u32 (two bf16 of one column), the tiles of one
/// 16-column group consecutive in kb; columns padded to 32, depths to k_pad, zero.
/// `depths(c, k0)` gives column c's 32 bf16 from depth k0 (zero past the column's end), so a
/// column is a row of W, or of K in attention; each 16 columns are turned by 16×16 transposes
/// of u32 pairs.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn pack_tiles(
    cols: usize,
    k_pad: usize,
    depths: impl Fn(usize, usize) -> __m512i,
) -> Vec<CacheLine> {
    let mut tiles = cache_lines(cols.next_multiple_of(32) * k_pad);
    pack_tiles_into(&mut tiles, cols, k_pad, depths);
    tiles
}

/// [`pack_tiles`] into `tiles`, which holds cols (padded to 32) × k_pad values; every tile
/// is written, padding included.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_tiles_into(
    tiles: &mut [CacheLine],
    cols: usize,
    k_pad: usize,
    depths: impl Fn(usize, usize) -> __m512i,
) {
    let groups = cols.next_multiple_of(32) / 16;
    let kbs = k_pad / TK;
    assert!(
        32 * tiles.len() >= groups * kbs * 512,
        "tiles for {cols}×{k_pad}"
    );
    for jt in 0..groups {
        for kb in 0..kbs {
            let regs: [__m512; 16] = std::array::from_fn(|c| match 16 * jt + c < cols {
                true => _mm512_castsi512_ps(depths(16 * jt + c, kb * TK)),
                false => _mm512_setzero_ps(),
            });
            let tile = (tiles.as_mut_ptr() as *mut u32).add((jt * kbs + kb) * 256);
            for (r, v) in transpose16(regs).into_iter().enumerate() {
                _mm512_storeu_ps(tile.add(16 * r) as *mut f32, v);
            }
        }
    }
}

/// Y's rows `rows.0` (padded; those ≥ `rows.1` = m are not written) × columns j0..j0+cols
/// = b + the activations' rows · the packed columns, 32 rows at a time (b padded to whole
/// 32-column groups: the accumulators start from it). Where all 32 rows and every column are
/// Y's and Y's rows start on cache lines, the last depth chunk stores them straight into Y;
/// otherwise through a scratch block, of which only the valid rows and columns are written.
#[target_feature(enable = "avx512f")]
unsafe fn block(
    xb: &[u16],
    k_pad: usize,
    tiles: *const u32,
    (rows, m): (std::ops::Range<usize>, usize),
    (j0, cols, n): (usize, usize, usize),
    bias: Option<&[f32]>,
    y: *mut f32,
) {
    let kbs = k_pad / TK;
    // The 32 rows × NC columns of the block being summed (f32, rows NC apart).
    #[repr(C, align(64))]
    struct Sums([f32; 32 * NC]);
    let mut c = Sums([0.0; 32 * NC]);
    let groups = cols.div_ceil(32) * 2;
    with_tiles(|| {
        for i in rows.step_by(32) {
            // Straight into Y only where its rows start on cache lines (n is a multiple of 32
            // there, so all do when the first does): a tile row stored across two lines was
            // ~10 % slower than the scratch block's copy.
            let whole = i + 32 <= m && cols % 32 == 0 && (y as usize).is_multiple_of(64);
            // Every block starts from the bias (padded to whole column groups), whichever way
            // its sums go out, so Y's bits never depend on where Y was allocated.
            // Depths in chunks of KCH tiles: a chunk of the block's A (32 rows × 8 tiles =
            // 16 KiB) stays in L1 while every column pair passes it, so only B streams from L2;
            // the four accumulators go back to `c` between chunks (Y's rows are n apart, often
            // a multiple of 4 KiB: 16 of them share one L1 set, so Y only takes the last store).
            for kc0 in (0..kbs).step_by(KCH) {
                let a = xb.as_ptr().add(i * k_pad);
                let depth = kc0..(kc0 + KCH).min(kbs);
                let from = match (kc0, bias) {
                    (0, Some(b)) => Acc::Broadcast(b.as_ptr().add(j0)),
                    (0, None) => Acc::Zero,
                    _ => Acc::Load(c.0.as_ptr(), NC),
                };
                let to = match depth.end == kbs && whole {
                    true => (y.add(i * n + j0), n),
                    false => (c.0.as_mut_ptr(), NC),
                };
                panel((a, k_pad), depth, (tiles, groups), from, to);
            }
            if whole {
                continue;
            }
            // Y = the sums, the block's valid rows and columns.
            for r in 0..32.min(m.saturating_sub(i)) {
                let dst = y.add((i + r) * n + j0);
                let src = c.0.as_ptr().add(r * NC);
                for c0 in (0..cols).step_by(16) {
                    // Masked: the lanes past `cols` (maybe past Y's end) are not written.
                    let lanes = ((1u32 << (cols - c0).min(16)) - 1) as __mmask16;
                    _mm512_mask_storeu_ps(dst.add(c0), lanes, _mm512_load_ps(src.add(c0)));
                }
            }
        }
    })
}

/// What a [`panel`]'s accumulators start from.
#[derive(Clone, Copy)]
pub(super) enum Acc {
    Zero,
    /// One row of 16·groups values, every row's start (a bias).
    Broadcast(*const f32),
    /// Sums so far: 32 rows of 16·groups values, rows the given count apart.
    Load(*const f32, usize),
}

/// C (32 rows × 16·groups columns, f32) = `from` + A · B over the depth tiles `depth`, stored
/// to `to` (rows its count apart): A is 32 rows as [`round_rows`] lays them out (two groups of
/// 16 rows, k_pad depths each), B `groups` 16-column groups of VNNI tiles as [`pack_tiles`]
/// lays them out (groups even); four accumulator tiles make each 32×32 block.
///
/// # Safety
/// Inside [`with_tiles`]; A holds 32·k_pad values, B groups·(k_pad/32) tiles; `from` and `to`
/// hold what they say for 16·groups columns.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn panel(
    (a, k_pad): (*const u16, usize),
    depth: std::ops::Range<usize>,
    (b, groups): (*const u32, usize),
    from: Acc,
    (c, ldc): (*mut f32, usize),
) {
    let kbs = k_pad / TK;
    let row_bytes = ldc * 4;
    for jt in (0..groups).step_by(2) {
        let cp = c.add(16 * jt);
        let (c0, c1, c2, c3) = (cp, cp.add(16), cp.add(16 * ldc), cp.add(16 * ldc + 16));
        // The accumulators' start: rows `stride` bytes apart from `top` (the left 16 columns
        // of rows 0..16) and `top + 16·bottom` (rows 16..32).
        let start = |top: *const f32, bottom: usize, stride: usize| {
            asm!(
                "tileloadd tmm0, [{t0} + {s}*1]",
                "tileloadd tmm1, [{t1} + {s}*1]",
                "tileloadd tmm2, [{b0} + {s}*1]",
                "tileloadd tmm3, [{b1} + {s}*1]",
                t0 = in(reg) top,
                t1 = in(reg) top.add(16),
                b0 = in(reg) top.add(16 * bottom),
                b1 = in(reg) top.add(16 * bottom + 16),
                s = in(reg) stride,
                options(nostack, readonly)
            );
        };
        match from {
            Acc::Zero => asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            ),
            // Stride 0: each of a tile's 16 rows loads the same 16 values.
            Acc::Broadcast(row) => start(row.add(16 * jt), 0, 0),
            Acc::Load(sums, lds) => start(sums.add(16 * jt), lds, lds * 4),
        }
        for kb in depth.clone() {
            let a0 = a.add(kb * 16 * TK);
            let a1 = a0.add(16 * k_pad);
            let b0 = b.add((jt * kbs + kb) * 256);
            let b1 = b.add(((jt + 1) * kbs + kb) * 256);
            // The next step's B tiles towards L1 while these multiply (they come from L2).
            for line in 0..16 {
                _mm_prefetch::<_MM_HINT_T0>(b0.wrapping_add(256 + 16 * line) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(b1.wrapping_add(256 + 16 * line) as *const i8);
            }
            asm!(
                "tileloadd tmm4, [{a0} + {s}*1]",
                "tileloadd tmm6, [{b0} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {s}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {s}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a0,
                a1 = in(reg) a1,
                b0 = in(reg) b0,
                b1 = in(reg) b1,
                s = in(reg) 64usize,
                options(nostack, readonly)
            );
        }
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c1} + {s}*1], tmm1",
            "tilestored [{c2} + {s}*1], tmm2",
            "tilestored [{c3} + {s}*1], tmm3",
            c0 = in(reg) c0,
            c1 = in(reg) c1,
            c2 = in(reg) c2,
            c3 = in(reg) c3,
            s = in(reg) row_bytes,
            options(nostack)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::linear::linear_reference;
    use crate::rand::SeededRng;
    use crate::tensor::Half;

    /// `pack_weight` puts every value where `tile_index` (the layout's definition, written
    /// element by element) says, zeros in the padding, and `Tensor::untiled` reads it back.
    #[test]
    fn packed_weights_follow_the_tile_layout() {
        if !crate::cpu::amx_for_tests() {
            return;
        }
        for (n, k) in [(1, 1), (16, 32), (33, 70), (130, 31), (300, 257)] {
            let w: Vec<u16> = (0..n * k).map(|i| (i % 65521) as u16 + 1).collect();
            let mut want = vec![0u16; crate::tensor::tiled_len(n, k)];
            for j in 0..n {
                for d in 0..k {
                    want[crate::tensor::tile_index(k, j, d)] = w[j * k + d];
                }
            }
            // SAFETY: AMX available (checked); w holds n×k values.
            let got = unsafe { pack_weight(&w, (n, k)) };
            assert_eq!(bytemuck::cast_slice::<_, u16>(&got), &want[..], "{n}×{k}");
            let t = crate::tensor::Tensor::bf16_tiled(vec![n, k], got).unwrap();
            assert_eq!(
                t.untiled().half_data().unwrap().1,
                &w[..],
                "{n}×{k} untiled"
            );
            // Row slices (whole 32-row groups stay tiled; others come back in rows) hold
            // the rows they cut.
            for (start, len) in [(0, n), (0, 32.min(n)), (32, 64), (16, 32), (1, 2)] {
                if start + len > n {
                    continue;
                }
                let cut = t.rows_slice(start, len);
                let tiled = cut.bf16_tiles().is_some();
                let whole = start % 32 == 0 && len % 32 == 0;
                assert_eq!(tiled, whole, "{n}×{k} [{start}, +{len})");
                let want = &w[start * k..(start + len) * k];
                let got = cut.untiled();
                assert_eq!(
                    got.half_data().unwrap().1,
                    want,
                    "{n}×{k} [{start}, +{len})"
                );
            }
        }
    }

    /// Y against the f64 oracle on the activations rounded to bf16 as `half` rounds them
    /// (nearest, ties to even, as `vcvtneps2bf16`) and the same bf16 weights: only the
    /// summation order differs (2e-6·k + 1e-6 for values ≤ 1), on shapes that cross every edge
    /// (32-row and 32-column blocks, 32-depth tiles, 128-column tasks; decode's ≤ 8 rows through
    /// `matvec`, tails of k past a whole 32), with junk after x and w; W in rows and packed.
    #[test]
    fn linear_matches_the_reference_on_bf16_activations() {
        if !crate::cpu::amx_for_tests() {
            return;
        }
        let mut rng = SeededRng::new(31);
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 70, 300),
            (3, 33, 31),
            (8, 129, 200),
            (13, 33, 40),
            (32, 32, 32),
            (33, 100, 257),
            (97, 300, 1000),
        ] {
            let x = rng.vec(m * k + 9, 1.0);
            let wf = rng.vec(n * k + 9, 1.0);
            let b = rng.vec(n, 1.0);
            let w: Vec<u16> = wf.iter().map(|&v| Half::Bf16.round(v)).collect();
            let wide: Vec<f32> = w.iter().map(|&v| Half::Bf16.widen(v)).collect();
            let xr: Vec<f32> = x
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect();
            // SAFETY: AMX available (checked); w holds n×k values.
            let tiles = unsafe { pack_weight(&w, (n, k)) };
            let tiles: &[u16] = bytemuck::cast_slice(&tiles);
            for (bias, w) in [None, Some(b.as_slice())]
                .into_iter()
                .flat_map(|b| [(b, Bf16Weight::Rows(&w)), (b, Bf16Weight::Tiles(tiles))])
            {
                let want = linear_reference(&xr, &wide, bias, m, n, k);
                // SAFETY: AMX available (checked); sizes as the shapes say.
                let got = unsafe {
                    match m <= crate::cpu::linear::DECODE_ROWS {
                        true => matvec(&x, w, bias, (m, n, k)),
                        false => linear(&x, w, bias, (m, n, k)),
                    }
                };
                let tol = 2e-6 * k as f32 + 1e-6;
                let layout = match w {
                    Bf16Weight::Rows(_) => "rows",
                    Bf16Weight::Tiles(_) => "tiled",
                };
                for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - r).abs() <= tol,
                        "{m}×{n}×{k} {layout} element {i}: {g} vs {r}"
                    );
                }
                // Y on a cache line (tiles stored straight into it) and off one (through the
                // scratch block): the same values.
                if m > crate::cpu::linear::DECODE_ROWS {
                    let mut lines = cache_lines(2 * (m * n + 16));
                    let lines: &mut [f32] = bytemuck::cast_slice_mut(&mut lines);
                    for offset in [0, 4] {
                        let y = lines[offset..].as_mut_ptr();
                        // SAFETY: as above; the buffer holds m×n values from `offset`.
                        unsafe { linear_into(&x, w, bias, (m, n, k), y) };
                        let at = &lines[offset..offset + m * n];
                        assert_eq!(at, &got[..], "{m}×{n}×{k} {layout} at {offset}");
                    }
                }
            }
        }
    }
}
