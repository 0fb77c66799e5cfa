#!/usr/bin/env python3
"""Fits `EXP_POLY` in src/cpu/vmath.rs: e^r ≈ 1 + r + r²·p(r) on r ∈ [−ln2/2, ln2/2] (what
is left after exp's range reduction), p of degree 4, minimising the largest error relative
to e^r (Lawson's reweighted least squares on 4001 Chebyshev points, which converges to the
minimax fit). Prints the coefficients, highest degree first, and the largest relative error
of the polynomial evaluated as the kernels do (Horner in f32, each step rounded twice here where
the kernels' FMA rounds once, so a bound from above), in units of 2⁻²³.

A degree-6 polynomial reaches ~0.98 of that unit in f32, as Cephes' degree-7 `expf` one does
(0.997 measured), with one fused multiply-add less on the exponential's dependent chain.

Run in the goldens' environment (scripts/goldens/setup-venv.sh; numpy as pinned there):
    .venv-goldens/bin/python scripts/goldens/fit_exp_poly.py
"""
import numpy as np

DEGREE = 4  # of p; the whole polynomial is of degree DEGREE + 2


def fit():
    h = np.log(2.0) / 2
    r = np.cos(np.linspace(0.0, np.pi, 4001)) * h
    r = r[np.abs(r) > 1e-6]  # p's target (e^r − 1 − r)/r² is 0/0 at 0
    target = (np.expm1(r) - r) / r**2
    basis = np.vstack([r**i for i in range(DEGREE + 1)]).T
    # The error in e^r is r²·(p − target), relative to e^r.
    to_relative = r**2 / np.exp(r)
    weights = np.ones_like(r)
    for _ in range(300):
        w = np.sqrt(weights) * to_relative
        coef, *_ = np.linalg.lstsq(basis * w[:, None], target * w, rcond=None)
        err = np.abs((basis @ coef - target) * to_relative)
        weights *= err
        weights /= weights.sum()
    return coef.astype(np.float32)[::-1], err.max()


def f32_error(high_first):
    h = np.log(2.0) / 2
    r = np.linspace(-h, h, 400001).astype(np.float32)
    p = np.full_like(r, high_first[0])
    for c in high_first[1:]:
        p = (p * r + c).astype(np.float32)
    y = ((p * r) * r + (r + np.float32(1.0))).astype(np.float32)
    want = np.exp(r.astype(np.float64))
    return (np.abs(y - want) / want).max() / 2.0**-23


if __name__ == "__main__":
    coef, fit_err = fit()
    print("EXP_POLY (highest degree first):")
    for c in coef:
        print(f"    {float(c):.9e},")
    print(f"minimax relative error {fit_err:.3e}; in f32 at most {f32_error(coef):.3f} × 2^-23")
