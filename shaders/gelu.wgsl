// GELU, erf form (PyTorch's default): gelu_value(v) = v·½(1 + erf(v/√2)). Shared by the
// elementwise family and the linear family's epilogue (one formula, so a fused epilogue gives
// the same values as a separate pass).
//
// erf has no WGSL builtin. For |x| < 0.75 we use the rational minimax fit of Eigen's
// `generic_fast_erf_float` (also XLA's ErfImpl32), erf(x) ≈ x·P(x²)/Q(x²), 6.5e-8 in exact
// arithmetic; beyond, 1 − erfc(|x|) with the Chebyshev erfc the CPU twin uses. Measured against
// the exact erf: below 2e-7 absolute over the whole line (tests/kernel_elementwise.rs).

// erf for |x| < 0.75: the rational minimax fit x·P(x²)/Q(x²).
fn erf_rational(x: f32) -> f32 {
    let x2 = x * x;
    var a = -2.72614225801306e-10;
    a = fma(a, x2, 2.77068142495902e-08);
    a = fma(a, x2, -2.10102402082508e-06);
    a = fma(a, x2, -5.69250639462346e-05);
    a = fma(a, x2, -7.34990630326855e-04);
    a = fma(a, x2, -2.95459980854025e-03);
    a = fma(a, x2, -1.60960333262415e-02);
    var b = -1.45660718464996e-05;
    b = fma(b, x2, -2.13374055278905e-04);
    b = fma(b, x2, -1.68282697438203e-03);
    b = fma(b, x2, -7.37332916720468e-03);
    b = fma(b, x2, -1.42647390514189e-02);
    return x * a / b;
}

// erfc(z) for z ≥ 0 (Numerical Recipes' Chebyshev fit, 1.2e-7 relative; the twin's formula).
fn erfc_cheb(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    var q = 0.17087277;
    q = fma(q, t, -0.82215223);
    q = fma(q, t, 1.48851587);
    q = fma(q, t, -1.13520398);
    q = fma(q, t, 0.27886807);
    q = fma(q, t, -0.18628806);
    q = fma(q, t, 0.09678418);
    q = fma(q, t, 0.37409196);
    q = fma(q, t, 1.00002368);
    q = fma(q, t, -1.26551223);
    return t * exp(q - z * z);
}

// Away from 0 the rational fit loses several ulps in f32 (2.4e-7 near 2), so |x| ≥ 0.75 uses
// 1 − erfc(|x|) (erfc ≤ 0.29 there, which keeps its relative errors small in absolute terms).
fn erf_approx(v: f32) -> f32 {
    let z = abs(v);
    if (z < 0.75) {
        return erf_rational(v);
    }
    return sign(v) * (1.0 - erfc_cheb(min(z, 10.0)));
}

fn gelu_value(v: f32) -> f32 {
    return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
}
