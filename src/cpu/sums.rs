//! Sums written so the compiler vectorises them on any target (the browser build, and CPUs
//! without our SIMD kernels): 16 interleaved partial sums, which also keep the additions from
//! waiting on each other, added pairwise at the end, then the tail in order. The reference
//! attention loops, the portable matrix-vector products and the norms' statistics take them.

/// Partial sums: two AVX2 registers, four SSE or WebAssembly SIMD ones.
const LANES: usize = 16;

/// Σ f(a[i], b[i]) over every i < a.len() (b is at least as long).
#[inline(always)]
pub(crate) fn lane_sum<A: Copy, B: Copy>(a: &[A], b: &[B], f: impl Fn(A, B) -> f32) -> f32 {
    let b = &b[..a.len()];
    let main = a.len() - a.len() % LANES;
    let mut acc = [0f32; LANES];
    for (xs, ys) in a[..main]
        .chunks_exact(LANES)
        .zip(b[..main].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += f(xs[l], ys[l]);
        }
    }
    let mut s = pairwise(acc);
    for (&x, &y) in a[main..].iter().zip(&b[main..]) {
        s += f(x, y);
    }
    s
}

/// The sum of L partial sums, added in halves (L a power of two).
#[inline(always)]
pub(crate) fn pairwise<const L: usize>(mut lanes: [f32; L]) -> f32 {
    let mut width = L / 2;
    while width > 0 {
        for l in 0..width {
            lanes[l] += lanes[l + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// Σ f(v[i]) over every value of v.
#[inline(always)]
pub(crate) fn lane_sum_of(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    lane_sum(v, v, |x, _| f(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length from 0 past two whole rounds of lanes, each tail: the sums of small
    /// integers (exact in f32 in any order) and of a mapped slice.
    #[test]
    fn sums_every_value_once() {
        for n in 0..40usize {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let b: Vec<u16> = (0..n as u16 + 3).map(|i| 2 * i + 1).collect();
            let want: f32 = (0..n).map(|i| (i * (2 * i + 1)) as f32).sum();
            assert_eq!(lane_sum(&a, &b, |x, w| x * w as f32), want, "n = {n}");
            let squares: f32 = (0..n).map(|i| (i * i) as f32).sum();
            assert_eq!(lane_sum_of(&a, |x| x * x), squares, "n = {n}");
        }
    }
}
