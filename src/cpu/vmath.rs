//! Transcendental functions 16 lanes at a time (AVX-512F; 8 on AVX2 CPUs through
//! `super::vmath_avx2`, the width `super::Simd` picks, chosen by [`gelu`], [`x_sigmoid`], [`softmax_in_place`]) for the CPU
//! executor's elementwise ops: softmax's exponentials, GELU (erf form), QuickGELU and SwiGLU's sigmoids. libm's scalar
//! `exp` was ~9 % of the vision encoder's samples (about 400 M exponentials per 448² frame in
//! InternViT's softmaxes, 100 M in its GELUs).
//!
//! `exp` is Cephes' `expf` reduction (by ln 2 in two parts), a degree-6 minimax polynomial and
//! `vscalefps` for 2ⁿ (which also gives 0 and ∞ past the ends): within 2 ulp of the correctly
//! rounded result (the tests check it against f64). NaN stays NaN. GELU evaluates the scalar
//! path's erf (Numerical Recipes' erfc fit, `super::elementwise::erf`) in f32 lanes; the tests
//! hold it to the f64 scalar one.

// The polynomial coefficients are written as published or printed by their fit (Numerical
// Recipes, `scripts/goldens/fit_exp_poly.py`); the compiler rounds each to the nearest f32.
#![allow(clippy::excessive_precision)]

use super::Simd;
use std::arch::x86_64::*;

/// ln 2 in two parts for exp's range reduction: n·LN2_HI is exact for the n that occur.
pub(super) const LN2_HI: f32 = 0.693_359_4;
/// The rest of ln 2.
pub(super) const LN2_LO: f32 = -2.121_944_4e-4;
/// e^r ≈ 1 + r + r²·p(r) on r ∈ [−ln 2/2, ln 2/2], p highest degree first: the minimax fit of
/// degree 6 (`scripts/goldens/fit_exp_poly.py`), 3·10⁻⁹ relative, so f32 rounding dominates
/// (≤ 0.99 ulp, as Cephes' degree-7 `expf` polynomial) with one multiply-add less on the chain.
pub(super) const EXP_POLY: [f32; 5] = [
    1.381_461_276e-3,
    8.368_710_056e-3,
    4.166_838_899e-2,
    1.666_652_113e-1,
    4.999_999_404e-1,
];
/// Numerical Recipes' erfc fit in t = 1/(1 + z/2), highest degree first:
/// erfc(z) ≈ t·e^(−z² + ERFC_C0 + t·p(t)).
pub(super) const ERFC_POLY: [f32; 9] = [
    0.170_872_77,
    -0.822_152_23,
    1.488_515_87,
    -1.135_203_98,
    0.278_868_07,
    -0.186_288_06,
    0.096_784_18,
    0.374_091_96,
    1.000_023_68,
];
/// The fit's constant term.
pub(super) const ERFC_C0: f32 = -1.265_512_23;

/// Whether this CPU runs [`gelu`], [`x_sigmoid`] and [`softmax_in_place`] (AVX-512F, or AVX2
/// and FMA).
pub fn available() -> bool {
    Simd::detect().is_some()
}

/// out = GELU(x) at this CPU's width.
///
/// # Safety
/// [`available`] must have returned true.
pub unsafe fn gelu(x: &[f32], out: &mut [f32]) {
    match Simd::detect() {
        Some(Simd::Avx512) => gelu_avx512(x, out),
        _ => super::vmath_avx2::gelu(x, out),
    }
}

/// out = x · σ(s·x) at this CPU's width.
///
/// # Safety
/// [`available`] must have returned true.
pub unsafe fn x_sigmoid(x: &[f32], s: f32, out: &mut [f32]) {
    match Simd::detect() {
        Some(Simd::Avx512) => x_sigmoid_avx512(x, s, out),
        _ => super::vmath_avx2::x_sigmoid(x, s, out),
    }
}

/// p ← softmax(p) at this CPU's width.
///
/// # Safety
/// [`available`] must have returned true.
pub unsafe fn softmax_in_place(p: &mut [f32]) {
    match Simd::detect() {
        Some(Simd::Avx512) => softmax_in_place_avx512(p),
        _ => super::vmath_avx2::softmax_in_place(p),
    }
}

/// p ← exp(scale·p − max_j scale·p_j) at this CPU's width, returning 1 / Σ of them: softmax
/// before its normalisation, which the caller folds into its next pass.
///
/// # Safety
/// [`available`] must have returned true.
pub unsafe fn exp_shifted(p: &mut [f32], scale: f32) -> f32 {
    match Simd::detect() {
        Some(Simd::Avx512) => exp_shifted_avx512(p, scale),
        _ => super::vmath_avx2::exp_shifted(p, scale),
    }
}

/// e^x in every lane.
///
/// # Safety
/// The CPU must have AVX-512F ([`Simd::Avx512`]).
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn exp(x: __m512) -> __m512 {
    // Past these ends e^x is 0 or ∞ in f32; clamping keeps n finite. `max(c, x)` returns x
    // when x is NaN (the second operand wins), so NaN passes through.
    let x = _mm512_min_ps(
        _mm512_set1_ps(89.0),
        _mm512_max_ps(_mm512_set1_ps(-104.0), x),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    // r = x − n·ln 2, with ln 2 split so n·C1 is exact.
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let y = _mm512_fmadd_ps(
        _mm512_mul_ps(p, r),
        r,
        _mm512_add_ps(r, _mm512_set1_ps(1.0)),
    );
    _mm512_scalef_ps(y, n)
}

/// Applies `f` to x 16 lanes at a time into out (the last partial group through masks).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn lanes(x: &[f32], out: &mut [f32], f: impl Fn(__m512) -> __m512) {
    assert_eq!(x.len(), out.len());
    let mut i = 0;
    while i + 16 <= x.len() {
        _mm512_storeu_ps(
            out.as_mut_ptr().add(i),
            f(_mm512_loadu_ps(x.as_ptr().add(i))),
        );
        i += 16;
    }
    if i < x.len() {
        let m: __mmask16 = ((1u32 << (x.len() - i)) - 1) as __mmask16;
        let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), m, f(v));
    }
}

/// out = GELU(x) = x · ½(1 + erf(x/√2)), erf as the scalar path's fit. 1 + erf is taken as
/// 2 − erfc for x ≥ 0 and as erfc itself below, so far-negative inputs keep their small values.
///
/// # Safety
/// The CPU must have AVX-512F ([`Simd::Avx512`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn gelu_avx512(x: &[f32], out: &mut [f32]) {
    lanes(x, out, |v| {
        let a = _mm512_mul_ps(v, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let z = _mm512_abs_ps(a);
        let one = _mm512_set1_ps(1.0);
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.5), z, one));
        let mut p = _mm512_set1_ps(ERFC_POLY[0]);
        for c in &ERFC_POLY[1..] {
            p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(*c));
        }
        // −z² + ERFC_C0 + t·p
        let arg = _mm512_fmadd_ps(t, p, _mm512_set1_ps(ERFC_C0));
        let arg = _mm512_fnmadd_ps(z, z, arg);
        let erfc = _mm512_mul_ps(t, exp(arg));
        let nonneg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, _mm512_setzero_ps());
        let one_plus_erf =
            _mm512_mask_blend_ps(nonneg, erfc, _mm512_sub_ps(_mm512_set1_ps(2.0), erfc));
        _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), v), one_plus_erf)
    })
}

/// out = x · σ(s·x) = x / (1 + e^(−s·x)): QuickGELU (s = 1.702) and SiLU (s = 1).
///
/// # Safety
/// The CPU must have AVX-512F ([`Simd::Avx512`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn x_sigmoid_avx512(x: &[f32], s: f32, out: &mut [f32]) {
    lanes(x, out, |v| {
        let e = exp(_mm512_mul_ps(_mm512_set1_ps(-s), v));
        _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0), e))
    })
}

/// p ← softmax(p), the maximum subtracted first, as `super::attention::softmax_in_place`
/// (the sum in 16 lanes, then across them).
///
/// # Safety
/// The CPU must have AVX-512F ([`Simd::Avx512`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn softmax_in_place_avx512(p: &mut [f32]) {
    let inv = _mm512_set1_ps(exp_shifted_avx512(p, 1.0));
    let (main, tail) = split16(p.len());
    for i in (0..main).step_by(16) {
        let v = _mm512_loadu_ps(p.as_ptr().add(i));
        _mm512_storeu_ps(p.as_mut_ptr().add(i), _mm512_mul_ps(v, inv));
    }
    if tail != 0 {
        let v = _mm512_maskz_loadu_ps(tail, p.as_ptr().add(main));
        _mm512_mask_storeu_ps(p.as_mut_ptr().add(main), tail, _mm512_mul_ps(v, inv));
    }
}

/// A length's whole 16s, and the lane mask of the rest.
fn split16(n: usize) -> (usize, __mmask16) {
    (n - n % 16, ((1u32 << (n % 16)) - 1) as __mmask16)
}

/// p ← exp(scale·p − max_j scale·p_j), returning 1 / Σ of them: softmax(scale·p) before its
/// normalisation, which the caller folds into its next pass (with scale 1, `scale·p` is p
/// exactly: the fused multiply-subtract rounds once).
///
/// # Safety
/// The CPU must have AVX-512F ([`Simd::Avx512`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn exp_shifted_avx512(p: &mut [f32], scale: f32) -> f32 {
    let (main, tail) = split16(p.len());
    let sc = _mm512_set1_ps(scale);
    let mut maxv = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..main).step_by(16) {
        maxv = _mm512_max_ps(maxv, _mm512_mul_ps(_mm512_loadu_ps(p.as_ptr().add(i)), sc));
    }
    if tail != 0 {
        let last = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, p.as_ptr().add(main)), sc);
        maxv = _mm512_mask_max_ps(maxv, tail, maxv, last);
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(maxv));
    let mut sum = _mm512_setzero_ps();
    for i in (0..main).step_by(16) {
        let e = exp(_mm512_fmsub_ps(_mm512_loadu_ps(p.as_ptr().add(i)), sc, max));
        _mm512_storeu_ps(p.as_mut_ptr().add(i), e);
        sum = _mm512_add_ps(sum, e);
    }
    if tail != 0 {
        let v = _mm512_maskz_loadu_ps(tail, p.as_ptr().add(main));
        let e = _mm512_maskz_mov_ps(tail, exp(_mm512_fmsub_ps(v, sc, max)));
        _mm512_mask_storeu_ps(p.as_mut_ptr().add(main), tail, e);
        sum = _mm512_add_ps(sum, e);
    }
    1.0 / _mm512_reduce_add_ps(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::SeededRng;

    /// Inputs over the ranges each function sees, plus the ends and the specials.
    fn inputs(scale: f32) -> Vec<f32> {
        let mut rng = SeededRng::new(17);
        let mut x: Vec<f32> = (0..4000).map(|_| (rng.uniform() - 0.5) * scale).collect();
        x.extend([
            0.0, -0.0, 1e-30, -1e-30, 88.0, 88.8, -87.0, -103.0, -110.0, 100.0,
        ]);
        x.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.0,
            -1.0,
            5.0,
            -5.0,
        ]);
        x
    }

    fn same_special(name: &str, x: f32, got: f32, want: f64) -> bool {
        let want = want as f32;
        if want.is_nan() || !want.is_finite() || got.is_nan() {
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{name}({x}) = {got}, want {want}"
            );
            return true;
        }
        false
    }

    /// exp within 2 ulp of e^x computed in f64 (relative 2·2⁻²³), 0 and ∞ past the ends, NaN
    /// kept; subnormal results within 2 of their smallest step.
    #[test]
    fn exp_is_within_two_ulp() {
        let x = inputs(200.0);
        for isa in crate::cpu::simd_for_tests() {
            let mut got = vec![0.0f32; x.len()];
            // SAFETY: the CPU runs `isa`; each width's exp over every input.
            unsafe {
                match isa {
                    Simd::Avx512 => lanes(&x, &mut got, |v| exp(v)),
                    Simd::Avx2 => super::super::vmath_avx2::exp_lanes(&x, &mut got),
                }
            };
            check_exp(isa, &x, &got);
        }
    }

    fn check_exp(isa: Simd, x: &[f32], got: &[f32]) {
        for (&x, &g) in x.iter().zip(got) {
            let want = (x as f64).exp();
            if same_special("exp", x, g, want) {
                continue;
            }
            let tol = (want * 2.0 * f32::EPSILON as f64 / 2.0).max(2.0 * 1.4e-45);
            assert!(
                (g as f64 - want).abs() <= tol,
                "{isa:?}: exp({x}) = {g}, want {want}"
            );
        }
    }

    /// The AVX2 softmax's exponential over x ≤ 0 (every float from −0 down to −104 in steps of
    /// 13 ulp, 69 M values, and the specials): within 2 ulp of e^x as `exp` is (it measures
    /// 0.99), 0 below −87.68 where e^x < 8.4·10⁻³⁹, 0 at −∞, NaN kept, 1 at −0; and slightly
    /// positive inputs (the fused x·scale − max of the row's largest term) near 1.
    #[test]
    fn softmax_exponential_is_exp_down_to_its_cutoff() {
        let avx2 = Simd::runnable().contains(&Simd::Avx2);
        if !crate::cpu::kernels_for_tests(avx2, "AVX2/FMA", "LINVT_REQUIRE_AVX2") {
            return;
        }
        let cutoff = super::super::vmath_avx2::EXP_NONPOSITIVE_MIN;
        let mut x = vec![
            0.0f32,
            -0.0,
            1e-6,
            3e-7,
            f32::NEG_INFINITY,
            f32::NAN,
            cutoff,
        ];
        let mut v = -1e-30f32;
        while v > -104.0 {
            x.push(v);
            v = f32::from_bits(v.to_bits() + 13);
        }
        let mut got = vec![0.0f32; x.len()];
        // SAFETY: the CPU has AVX2 and FMA (`Simd::runnable` lists what it runs).
        unsafe { super::super::vmath_avx2::exp_nonpositive_lanes(&x, &mut got) };
        let (below, above): (Vec<_>, Vec<_>) = x.iter().zip(&got).partition(|(&x, _)| x < cutoff);
        for (&x, &g) in below {
            assert!(
                g == 0.0 && (x as f64).exp() < 8.4e-39,
                "exp({x}) = {g}, want 0"
            );
        }
        let (x, got): (Vec<f32>, Vec<f32>) = above.into_iter().unzip();
        check_exp(Simd::Avx2, &x, &got);
    }

    /// GELU and x·σ(s·x) against the scalar f64 forms: |error| ≤ 4e-7·max(1, |y|) — the erf
    /// fit's own error is 1.2e-7, f32 lanes add a few roundings of values ≤ 2.
    #[test]
    fn gelu_and_sigmoids_match_the_scalar_forms() {
        let x = inputs(16.0);
        let mut got = vec![0.0f32; x.len()];
        type Reference = fn(f64) -> f64;
        let cases: [(&str, Option<f32>, Reference); 3] = [
            ("gelu", None, |v| {
                0.5 * v * (1.0 + super::super::elementwise::erf(v / std::f64::consts::SQRT_2))
            }),
            ("quick_gelu", Some(1.702), |v| {
                v / (1.0 + (-1.702 * v).exp())
            }),
            ("silu", Some(1.0), |v| v / (1.0 + (-v).exp())),
        ];
        for ((name, s, reference), isa) in cases.into_iter().flat_map(|case| {
            crate::cpu::simd_for_tests()
                .into_iter()
                .map(move |isa| (case, isa))
        }) {
            use super::super::vmath_avx2 as avx2;
            // SAFETY: the CPU runs `isa`.
            unsafe {
                match (s, isa) {
                    (None, Simd::Avx512) => gelu_avx512(&x, &mut got),
                    (Some(s), Simd::Avx512) => x_sigmoid_avx512(&x, s, &mut got),
                    (None, Simd::Avx2) => avx2::gelu(&x, &mut got),
                    (Some(s), Simd::Avx2) => avx2::x_sigmoid(&x, s, &mut got),
                }
            }
            for (&x, &g) in x.iter().zip(&got) {
                let want = reference(x as f64);
                if same_special(name, x, g, want) {
                    continue;
                }
                let tol = 4e-7 * want.abs().max(1.0);
                assert!(
                    (g as f64 - want).abs() <= tol,
                    "{isa:?}: {name}({x}) = {g}, want {want}"
                );
            }
        }
    }

    /// Softmax against the scalar one on rows of every length 1..40 (each tail) and a long
    /// row: relative 1e-6 (the sums run in another order).
    #[test]
    fn softmax_matches_the_scalar_one() {
        let mut rng = SeededRng::new(5);
        for n in (1..40).chain([1025]) {
            let row: Vec<f32> = (0..n).map(|_| (rng.uniform() - 0.5) * 30.0).collect();
            let mut want = row.clone();
            super::super::attention::softmax_scalar(&mut want);
            for isa in crate::cpu::simd_for_tests() {
                let mut got = row.clone();
                // SAFETY: the CPU runs `isa`.
                unsafe {
                    match isa {
                        Simd::Avx512 => softmax_in_place_avx512(&mut got),
                        Simd::Avx2 => super::super::vmath_avx2::softmax_in_place(&mut got),
                    }
                };
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-6 * w.max(1e-30),
                        "{isa:?} n={n}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// exp_shifted with a scale (the attention's 1/√d) is softmax(scale·p) before the
    /// normalisation it returns: scaled by it, the scalar softmax of the scaled row to 1e-6
    /// relative, as above.
    #[test]
    fn exp_shifted_is_the_unnormalised_softmax() {
        let mut rng = SeededRng::new(6);
        for n in (1..40).chain([1025]) {
            let row: Vec<f32> = (0..n).map(|_| (rng.uniform() - 0.5) * 30.0).collect();
            let mut want: Vec<f32> = row.iter().map(|v| v * 0.125).collect();
            super::super::attention::softmax_scalar(&mut want);
            for isa in crate::cpu::simd_for_tests() {
                let mut got = row.clone();
                // SAFETY: the CPU runs `isa`.
                let inv = unsafe {
                    match isa {
                        Simd::Avx512 => exp_shifted_avx512(&mut got, 0.125),
                        Simd::Avx2 => super::super::vmath_avx2::exp_shifted(&mut got, 0.125),
                    }
                };
                for (g, w) in got.iter().zip(&want) {
                    let g = g * inv;
                    assert!(
                        (g - w).abs() <= 1e-6 * w.max(1e-30),
                        "{isa:?} n={n}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
