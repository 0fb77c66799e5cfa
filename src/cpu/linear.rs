//! CPU twin of the linear kernel, also the CPU inference path.
//!
//! Y = X·Wᵀ + b with W in PyTorch `Linear` layout (n×k, row-major), so every output element is a
//! dot product of two K-contiguous rows. The work is split into bands of output rows, one per
//! thread (`std::thread::scope`); inside a band, blocks of W rows small enough to stay in cache
//! are reused for every X row, and each dot product keeps `LANES` independent partial sums so
//! the compiler vectorises the K loop. The partial sums are added pairwise at the end, so the
//! summation order differs from a left-to-right sum (as the GPU kernel's does): results agree
//! to f32 rounding, not bit for bit.

/// Independent partial sums per dot product (one SSE register, the baseline x86-64 target).
const LANES: usize = 4;
/// Rows of X and of W handled together: each loaded X chunk is used for `BLOCK_W` W rows and
/// each W chunk for `BLOCK_X` X rows (16 dot products, 16 accumulator registers), cutting
/// loads per multiply-add by 4× against one dot at a time. Measured (release, 2 cores, no
/// target-cpu flags) at 4096×896×896: 4×4 blocks of 4 lanes ≈ 48–55 GFLOP/s, 2×4 of 8 ≈ 47,
/// 4×4 of 8 ≈ 9 (register spills); 4096×896×2688 ≈ 45.
const BLOCK_X: usize = 4;
const BLOCK_W: usize = 4;
/// Bytes of W kept hot in cache while a band of X rows streams past it.
const W_CACHE_BYTES: usize = 192 * 1024;
/// Below this many multiply-adds one thread is faster than spawning several.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// Y (m×n) = X (m×k) · Wᵀ (w is n×k, row-major) + b.
///
/// Panics when a slice is shorter than its shape says (callers validate user input first).
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    assert!(
        x.len() >= m * k,
        "linear: x holds {} values, {m}×{k} needs {}",
        x.len(),
        m * k
    );
    assert!(
        w.len() >= n * k,
        "linear: w holds {} values, {n}×{k} needs {}",
        w.len(),
        n * k
    );
    if let Some(b) = b {
        assert!(
            b.len() >= n,
            "linear: bias holds {} values, needs {n}",
            b.len()
        );
    }
    let mut y = vec![0.0f32; m * n];
    if m == 0 || n == 0 {
        return y;
    }
    let threads = if m * n * k < PARALLEL_MIN_WORK {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(m)
    };
    let rows_per_band = m.div_ceil(threads);
    if threads == 1 {
        band(&x[..m * k], w, b, n, k, &mut y);
    } else {
        std::thread::scope(|s| {
            for (i, y_band) in y.chunks_mut(rows_per_band * n).enumerate() {
                let rows = y_band.len() / n;
                let x_band = &x[i * rows_per_band * k..][..rows * k];
                s.spawn(move || band(x_band, w, b, n, k, y_band));
            }
        });
    }
    y
}

/// Computes the rows of Y for the rows of X in `x` (a whole number of rows of length k).
fn band(x: &[f32], w: &[f32], b: Option<&[f32]>, n: usize, k: usize, y: &mut [f32]) {
    let rows = y.len() / n;
    let w_rows_per_block = (W_CACHE_BYTES / (4 * k.max(1))).clamp(BLOCK_W, n.max(BLOCK_W));
    let mut j0 = 0;
    while j0 < n {
        let j1 = (j0 + w_rows_per_block).min(n);
        let mut i = 0;
        while i < rows {
            let ib = BLOCK_X.min(rows - i);
            let mut j = j0;
            while j < j1 {
                let jb = BLOCK_W.min(j1 - j);
                if ib == BLOCK_X && jb == BLOCK_W {
                    let xr: [&[f32]; BLOCK_X] = std::array::from_fn(|r| &x[(i + r) * k..][..k]);
                    let wr: [&[f32]; BLOCK_W] = std::array::from_fn(|c| &w[(j + c) * k..][..k]);
                    let d = dot_block(xr, wr);
                    for (r, row) in d.iter().enumerate() {
                        y[(i + r) * n + j..][..BLOCK_W].copy_from_slice(row);
                    }
                } else {
                    for r in i..i + ib {
                        for c in j..j + jb {
                            y[r * n + c] = dot_block([&x[r * k..][..k]], [&w[c * k..][..k]])[0][0];
                        }
                    }
                }
                j += jb;
            }
            i += ib;
        }
        j0 = j1;
    }
    if let Some(b) = b {
        for row in y.chunks_mut(n) {
            for (v, bias) in row.iter_mut().zip(b) {
                *v += bias;
            }
        }
    }
}

/// All R×C dot products between R rows of X and C rows of W (all of length k).
#[inline(always)]
fn dot_block<const R: usize, const C: usize>(xr: [&[f32]; R], wr: [&[f32]; C]) -> [[f32; C]; R] {
    let k = xr[0].len();
    let mut acc = [[[0.0f32; LANES]; C]; R];
    let main = k - k % LANES;
    for k0 in (0..main).step_by(LANES) {
        let xs: [&[f32; LANES]; R] =
            std::array::from_fn(|r| xr[r][k0..k0 + LANES].try_into().unwrap());
        let ws: [&[f32; LANES]; C] =
            std::array::from_fn(|c| wr[c][k0..k0 + LANES].try_into().unwrap());
        for r in 0..R {
            for c in 0..C {
                for l in 0..LANES {
                    acc[r][c][l] += xs[r][l] * ws[c][l];
                }
            }
        }
    }
    let mut out = [[0.0f32; C]; R];
    for r in 0..R {
        for c in 0..C {
            // Pairwise reduction of the lanes, then the k % LANES tail.
            let mut lanes = acc[r][c];
            let mut width = LANES / 2;
            while width > 0 {
                for l in 0..width {
                    lanes[l] += lanes[l + width];
                }
                width /= 2;
            }
            let mut s = lanes[0];
            for kk in main..k {
                s += xr[r][kk] * wr[c][kk];
            }
            out[r][c] = s;
        }
    }
    out
}
