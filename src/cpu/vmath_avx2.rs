//! `super::vmath`'s functions 8 lanes at a time on AVX2 + FMA (CPUs without AVX-512: AMD before
//! Zen 4, most laptops), the same formulas: on such a CPU (AMD Zen 3) libm's scalar `exp` and
//! the f64 erf took ~17 % of the vision encoder's samples once its products ran on the AVX2
//! GEMM.
//!
//! What AVX2 lacks is written out: 2ⁿ (AVX-512's `vscalefps`) is built in the exponent bits,
//! as two factors 2^⌊n/2⌋ · 2^(n−⌊n/2⌋) so that n from −150 to 128 stays within normal
//! floats (one rounding at the last multiply, as `vscalefps` rounds once, so subnormal results
//! and the overflow to ∞ come out the same); masked tails go through a stack copy.

use super::vmath::{ERFC_C0, ERFC_POLY, EXP_POLY, LN2_HI, LN2_LO};
use std::arch::x86_64::*;

/// e^x in every lane: `super::vmath::exp`'s reduction and polynomial.
///
/// # Safety
/// The CPU must have AVX2 and FMA (`super::Simd::Avx2`).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub unsafe fn exp(x: __m256) -> __m256 {
    // `max(c, x)` returns x when x is NaN (the second operand wins), so NaN passes through.
    let x = _mm256_min_ps(
        _mm256_set1_ps(89.0),
        _mm256_max_ps(_mm256_set1_ps(-104.0), x),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let y = exp_reduced(x, n);
    // n ∈ [−150, 129]: each half within the normal exponents (−126..127).
    let n = _mm256_cvtps_epi32(n);
    let half = _mm256_srai_epi32::<1>(n);
    let pow2 = |e: __m256i| {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            e,
            _mm256_set1_epi32(127),
        )))
    };
    _mm256_mul_ps(
        _mm256_mul_ps(y, pow2(half)),
        pow2(_mm256_sub_epi32(n, half)),
    )
}

/// e^(x − n·ln 2) for the integer-valued n nearest x·log₂e: ln 2 subtracted in two parts, then
/// `super::vmath::EXP_POLY` (|x − n·ln 2| ≤ ln 2/2).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp_reduced(x: __m256, n: __m256) -> __m256 {
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    _mm256_fmadd_ps(
        _mm256_mul_ps(p, r),
        r,
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    )
}

/// Below this e^x is subnormal in f32 even for the polynomial's largest factor, so
/// [`exp_nonpositive`] gives 0 there (< 8.4·10⁻³⁹).
pub(crate) const EXP_NONPOSITIVE_MIN: f32 = -87.68;

/// e^x for x ≤ 88 — the softmax's x − max and GELU's erfc exponent, both ≤ 0 — with a
/// shorter dependent chain than [`exp`]: n = round(x·log₂e) from one multiply-add onto
/// 1.5·2²³ + 127, whose low bits then hold n + 127 (2ⁿ is those bits shifted into the
/// exponent, one factor), and no clamp above. On Zen 3 the chain's length, not the pipes,
/// bounds `exp` (the scheduler holds too few chains to cover it): an exponential runs ~1.4×
/// as fast with this one (0.61 → 0.43 ns a value), GELU 1.2×. Within 1 ulp of e^x, as
/// [`exp`], for x ≥ −87.68; 0 below, where [`exp`] gives subnormals under 8.4·10⁻³⁹ (next to
/// a softmax's largest term, 1, or to GELU's 1 + erf, nothing); NaN stays NaN, −∞ gives 0.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp_nonpositive(x: __m256) -> __m256 {
    let min = _mm256_set1_ps(EXP_NONPOSITIVE_MIN);
    // `max(c, x)` returns x when x is NaN.
    let clamped = _mm256_max_ps(min, x);
    let magic = _mm256_set1_ps(12_582_912.0 + 127.0);
    let shifted = _mm256_fmadd_ps(clamped, _mm256_set1_ps(std::f32::consts::LOG2_E), magic);
    let y = exp_reduced(clamped, _mm256_sub_ps(shifted, magic));
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(shifted)));
    // Not-less-than is true for NaN, so NaN lanes keep their NaN.
    let kept = _mm256_cmp_ps::<_CMP_NLT_UQ>(x, min);
    _mm256_and_ps(_mm256_mul_ps(y, pow2), kept)
}

/// The first `n` ≤ 8 values at p, the other lanes `fill`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_partial(p: *const f32, n: usize, fill: f32) -> __m256 {
    let mut buf = [fill; 8];
    std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
    _mm256_loadu_ps(buf.as_ptr())
}

/// The first `n` ≤ 8 lanes of v to p.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_partial(p: *mut f32, n: usize, v: __m256) {
    let mut buf = [0.0f32; 8];
    _mm256_storeu_ps(buf.as_mut_ptr(), v);
    std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
}

/// Applies `f` to x 8 lanes at a time into out (the last partial group through a copy), two
/// registers per step: f is one long chain of dependent operations (GELU's: a division, two
/// polynomials, an exponential), so two chains side by side keep both FMA pipes busy.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn lanes(x: &[f32], out: &mut [f32], f: impl Fn(__m256) -> __m256) {
    assert_eq!(x.len(), out.len());
    let main = x.len() - x.len() % 8;
    let pairs = x.len() - x.len() % 16;
    for i in (0..pairs).step_by(16) {
        let (a, b) = (x.as_ptr().add(i), x.as_ptr().add(i + 8));
        let (fa, fb) = (f(_mm256_loadu_ps(a)), f(_mm256_loadu_ps(b)));
        _mm256_storeu_ps(out.as_mut_ptr().add(i), fa);
        _mm256_storeu_ps(out.as_mut_ptr().add(i + 8), fb);
    }
    for i in (pairs..main).step_by(8) {
        _mm256_storeu_ps(
            out.as_mut_ptr().add(i),
            f(_mm256_loadu_ps(x.as_ptr().add(i))),
        );
    }
    if main < x.len() {
        let n = x.len() - main;
        let v = load_partial(x.as_ptr().add(main), n, 0.0);
        store_partial(out.as_mut_ptr().add(main), n, f(v));
    }
}

/// out = GELU(x), as `super::vmath::gelu_avx512`.
///
/// # Safety
/// The CPU must have AVX2 and FMA (`super::Simd::Avx2`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gelu(x: &[f32], out: &mut [f32]) {
    lanes(x, out, |v| {
        let a = _mm256_mul_ps(v, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let z = _mm256_andnot_ps(_mm256_set1_ps(-0.0), a);
        let one = _mm256_set1_ps(1.0);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5), z, one));
        let mut p = _mm256_set1_ps(ERFC_POLY[0]);
        for c in &ERFC_POLY[1..] {
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(*c));
        }
        let arg = _mm256_fmadd_ps(t, p, _mm256_set1_ps(ERFC_C0));
        let arg = _mm256_fnmadd_ps(z, z, arg);
        // arg ≤ 0 up to the fit's rounding (erfc(z) ≤ 1 for z ≥ 0, t ≤ 1).
        let erfc = _mm256_mul_ps(t, exp_nonpositive(arg));
        let nonneg = _mm256_cmp_ps::<_CMP_GE_OQ>(a, _mm256_setzero_ps());
        let one_plus_erf = _mm256_blendv_ps(erfc, _mm256_sub_ps(_mm256_set1_ps(2.0), erfc), nonneg);
        _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5), v), one_plus_erf)
    })
}

/// out = x · σ(s·x) = x / (1 + e^(−s·x)), as `super::vmath::x_sigmoid_avx512`.
///
/// # Safety
/// The CPU must have AVX2 and FMA (`super::Simd::Avx2`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn x_sigmoid(x: &[f32], s: f32, out: &mut [f32]) {
    lanes(x, out, |v| {
        let e = exp(_mm256_mul_ps(_mm256_set1_ps(-s), v));
        _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0), e))
    })
}

/// The 8 lanes as values.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn lanes_of(v: __m256) -> [f32; 8] {
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), v);
    out
}

/// p ← softmax(p), the maximum subtracted first (the sum in 8 lanes, then across them).
///
/// # Safety
/// The CPU must have AVX2 and FMA (`super::Simd::Avx2`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn softmax_in_place(p: &mut [f32]) {
    let main = p.len() - p.len() % 8;
    let inv = _mm256_set1_ps(exp_shifted(p, 1.0));
    for i in (0..main).step_by(8) {
        let v = _mm256_loadu_ps(p.as_ptr().add(i));
        _mm256_storeu_ps(p.as_mut_ptr().add(i), _mm256_mul_ps(v, inv));
    }
    for v in &mut p[main..] {
        *v *= _mm_cvtss_f32(_mm256_castps256_ps128(inv));
    }
}

/// p ← exp(scale·p − max_j scale·p_j), returning 1 / Σ of them, as
/// `super::vmath::exp_shifted_avx512` (terms under 8.4·10⁻³⁹ give 0: [`exp_nonpositive`]).
///
/// # Safety
/// The CPU must have AVX2 and FMA (`super::Simd::Avx2`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_shifted(p: &mut [f32], scale: f32) -> f32 {
    let (n, main) = (p.len(), p.len() - p.len() % 8);
    let sc = _mm256_set1_ps(scale);
    let mut maxv = _mm256_set1_ps(f32::NEG_INFINITY);
    for i in (0..main).step_by(8) {
        maxv = _mm256_max_ps(maxv, _mm256_mul_ps(_mm256_loadu_ps(p.as_ptr().add(i)), sc));
    }
    if main < n {
        let last = load_partial(p.as_ptr().add(main), n - main, f32::NEG_INFINITY);
        maxv = _mm256_max_ps(maxv, _mm256_mul_ps(last, sc));
    }
    let max = _mm256_set1_ps(lanes_of(maxv).into_iter().fold(f32::NEG_INFINITY, f32::max));
    // Two registers per step, as in `lanes`: two exponentials' chains side by side.
    let (mut sum, mut sum2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let pairs = n - n % 16;
    for i in (0..pairs).step_by(16) {
        let at = p.as_mut_ptr().add(i);
        let e = exp_nonpositive(_mm256_fmsub_ps(_mm256_loadu_ps(at), sc, max));
        let e2 = exp_nonpositive(_mm256_fmsub_ps(_mm256_loadu_ps(at.add(8)), sc, max));
        _mm256_storeu_ps(at, e);
        _mm256_storeu_ps(at.add(8), e2);
        sum = _mm256_add_ps(sum, e);
        sum2 = _mm256_add_ps(sum2, e2);
    }
    for i in (pairs..main).step_by(8) {
        let e = exp_nonpositive(_mm256_fmsub_ps(_mm256_loadu_ps(p.as_ptr().add(i)), sc, max));
        _mm256_storeu_ps(p.as_mut_ptr().add(i), e);
        sum = _mm256_add_ps(sum, e);
    }
    let mut sum = _mm256_add_ps(sum, sum2);
    if main < n {
        // −∞ past the end: e^(−∞ − max) is 0, so those lanes add nothing (unless max is −∞
        // too, when every value is NaN already).
        let v = load_partial(p.as_ptr().add(main), n - main, f32::NEG_INFINITY);
        let e = exp_nonpositive(_mm256_fmsub_ps(v, sc, max));
        store_partial(p.as_mut_ptr().add(main), n - main, e);
        sum = _mm256_add_ps(sum, e);
    }
    1.0 / lanes_of(sum).iter().sum::<f32>()
}

/// e^x of every value (the tests' view of [`exp`]).
///
/// # Safety
/// The CPU must have AVX2 and FMA (`super::Simd::Avx2`).
#[cfg(test)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_lanes(x: &[f32], out: &mut [f32]) {
    lanes(x, out, |v| exp(v))
}

/// e^x of every value through [`exp_nonpositive`] (the tests' view of it).
///
/// # Safety
/// The CPU must have AVX2 and FMA (`super::Simd::Avx2`).
#[cfg(test)]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_nonpositive_lanes(x: &[f32], out: &mut [f32]) {
    lanes(x, out, |v| exp_nonpositive(v))
}
