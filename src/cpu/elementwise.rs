//! CPU twins of the VLM's elementwise kernels: GELU (erf form), SwiGLU, residual add with an
//! optional LayerScale, and bf16 rounding.

/// erf(x) to about 1.2e-7 relative error (Numerical Recipes' Chebyshev fit of erfc), evaluated
/// in f64 so the f32 result is correctly rounded for practical purposes.
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - erfc
    } else {
        erfc - 1.0
    }
}

/// `each(i, out_chunk, x_chunk)` for chunk i of `out` (`oc` values each) beside chunk i of `x`
/// (`xc` values each): on the rayon pool natively, at least 4096 output values a task; in order
/// in the browser. Every caller computes each element alone, so the split changes no value.
pub(crate) fn zip_chunks(
    out: &mut [f32],
    oc: usize,
    x: &[f32],
    xc: usize,
    each: impl Fn(usize, &mut [f32], &[f32]) + Sync + Send,
) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(oc)
            .zip(x.par_chunks(xc))
            .enumerate()
            .with_min_len(4096usize.div_ceil(oc))
            .for_each(|(i, (o, x))| each(i, o, x));
    }
    #[cfg(target_arch = "wasm32")]
    for (i, (o, x)) in out.chunks_mut(oc).zip(x.chunks(xc)).enumerate() {
        each(i, o, x)
    }
}

/// `scalar` of every element, or `lanes(chunk, out)` where the CPU has AVX-512F or AVX2; in
/// chunks on the rayon pool natively.
fn map(x: &[f32], scalar: impl Fn(f32) -> f32 + Sync + Send, lanes: lanes::Lanes) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    zip_chunks(&mut out, 4096, x, 4096, |_, o, x| {
        apply(x, o, &scalar, lanes)
    });
    out
}

/// x ← f(x) in place, as [`map`] computes it (each 4096 values through a stack copy, so the
/// vector form reads one slice and writes another): no output to allocate and zero.
fn map_in_place(x: &mut [f32], scalar: impl Fn(f32) -> f32 + Sync + Send, lanes: lanes::Lanes) {
    let apply = |x: &mut [f32]| apply_in_place(x, &scalar, lanes);
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        x.par_chunks_mut(IN_PLACE).for_each(apply);
    }
    #[cfg(target_arch = "wasm32")]
    x.chunks_mut(IN_PLACE).for_each(apply);
}

/// Values per task of [`map_in_place`].
const IN_PLACE: usize = 4096;

/// [`apply`] over x in place, on the calling thread, through a stack copy of 256 values at a
/// time (an L1-sized copy: a fused epilogue's stretch is often just that long).
fn apply_in_place(x: &mut [f32], scalar: impl Fn(f32) -> f32, lanes: lanes::Lanes) {
    let mut copy = [0.0f32; 256];
    for x in x.chunks_mut(copy.len()) {
        let copy = &mut copy[..x.len()];
        copy.copy_from_slice(x);
        apply(copy, x, &scalar, lanes)
    }
}

/// out = f(x) element by element: `lanes` where the CPU has AVX-512F or AVX2, else `scalar`.
fn apply(x: &[f32], out: &mut [f32], scalar: impl Fn(f32) -> f32, lanes: lanes::Lanes) {
    #[cfg(target_arch = "x86_64")]
    if super::vmath::available() {
        // SAFETY: `lanes` needs `vmath::available`, which holds (checked).
        return unsafe { lanes(x, out) };
    }
    let _ = lanes;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = scalar(v);
    }
}

/// GELU as PyTorch's default (`approximate='none'`): x · ½(1 + erf(x/√2)).
pub fn gelu(x: &[f32]) -> Vec<f32> {
    map(x, gelu_scalar, lanes::GELU)
}

/// [`gelu`] in place (a linear's fresh output: nothing new to allocate).
pub fn gelu_in_place(x: &mut [f32]) {
    map_in_place(x, gelu_scalar, lanes::GELU)
}

/// GELU of one value, erf evaluated in f64.
pub fn gelu_scalar(v: f32) -> f32 {
    let v = v as f64;
    (0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))) as f32
}

/// QuickGELU (CLIP's, Qwen2-VL's vision MLP): x · σ(1.702·x), in f32 as PyTorch computes it.
pub fn quick_gelu(x: &[f32]) -> Vec<f32> {
    map(x, |v| v / (1.0 + (-1.702 * v).exp()), lanes::QUICK_GELU)
}

/// SwiGLU over rows of `2·width` values packed as [gate | up]: silu(gate) ⊙ up → rows of `width`.
pub fn swiglu(x: &[f32], width: usize) -> Vec<f32> {
    assert!(
        width > 0 && x.len().is_multiple_of(2 * width),
        "swiglu: rows of 2·{width} expected"
    );
    let mut out = vec![0.0f32; x.len() / 2];
    zip_chunks(&mut out, width, x, 2 * width, |_, o, row| {
        let (gate, up) = row.split_at(width);
        apply(gate, o, |g| g / (1.0 + (-g).exp()), lanes::SILU);
        for (o, u) in o.iter_mut().zip(up) {
            *o *= u;
        }
    });
    out
}

/// The AVX-512 forms of the maps above (`super::vmath`); never called elsewhere.
mod lanes {
    #[cfg(target_arch = "x86_64")]
    use super::super::vmath;
    pub type Lanes = unsafe fn(&[f32], &mut [f32]);
    #[cfg(target_arch = "x86_64")]
    pub const GELU: Lanes = vmath::gelu;
    #[cfg(target_arch = "x86_64")]
    pub const QUICK_GELU: Lanes = |x, out| unsafe { vmath::x_sigmoid(x, 1.702, out) };
    #[cfg(target_arch = "x86_64")]
    pub const SILU: Lanes = |x, out| unsafe { vmath::x_sigmoid(x, 1.0, out) };
    #[cfg(not(target_arch = "x86_64"))]
    pub const GELU: Lanes = |_, _| unreachable!("no AVX-512 off x86-64");
    #[cfg(not(target_arch = "x86_64"))]
    pub const QUICK_GELU: Lanes = GELU;
    #[cfg(not(target_arch = "x86_64"))]
    pub const SILU: Lanes = GELU;
}

/// x + γ ⊙ y over rows of `cols` values (γ = 1 when None). `y` may hold fewer rows than `x`; it
/// is then repeated over the groups of rows (x rows must be a whole multiple of y rows): a
/// per-frame table such as a position embedding added to every frame.
pub fn residual_add(x: &[f32], y: &[f32], gamma: Option<&[f32]>, cols: usize) -> Vec<f32> {
    assert!(cols > 0 && !y.is_empty(), "residual_add: empty operand");
    assert!(
        x.len().is_multiple_of(y.len()) && y.len().is_multiple_of(cols),
        "residual_add: {} values cannot be tiled by {} values of rows of {cols}",
        x.len(),
        y.len()
    );
    if let Some(g) = gamma {
        assert_eq!(g.len(), cols, "residual_add: gamma must hold {cols} values");
    }
    let mut out = vec![0.0f32; x.len()];
    let y_rows = y.len() / cols;
    // Row r of x takes row r mod y_rows of y.
    zip_chunks(&mut out, cols, x, cols, |r, o, a| {
        let b = &y[(r % y_rows) * cols..][..cols];
        match gamma {
            Some(g) => {
                for (((o, a), b), g) in o.iter_mut().zip(a).zip(b).zip(g) {
                    *o = a + g * b;
                }
            }
            None => {
                for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                    *o = a + b;
                }
            }
        }
    });
    out
}

/// y ← x + γ ⊙ y over rows of `cols` values, x and y of one shape: [`residual_add`]'s values
/// written over y (a projection's fresh output) instead of into a new vector.
pub fn residual_add_into(x: &[f32], y: &mut [f32], gamma: Option<&[f32]>, cols: usize) {
    assert!(cols > 0 && x.len() == y.len() && x.len().is_multiple_of(cols));
    if let Some(g) = gamma {
        assert_eq!(g.len(), cols, "residual_add: gamma must hold {cols} values");
    }
    zip_chunks(y, cols, x, cols, |_, b, a| residual_row(a, b, gamma));
}

/// b ← a + γ ⊙ b for one row (or a stretch of one, γ its columns').
fn residual_row(a: &[f32], b: &mut [f32], gamma: Option<&[f32]>) {
    match gamma {
        Some(g) => {
            for ((b, a), g) in b.iter_mut().zip(a).zip(g) {
                *b = a + g * *b;
            }
        }
        None => {
            for (b, a) in b.iter_mut().zip(a) {
                *b += a;
            }
        }
    }
}

/// What a linear's output goes through before it is returned: the ops the GPU executor fuses
/// into its products' stores, fused here too where the product is ours (`super::gemm`: each
/// stretch while it is still in cache), else a pass over the output.
#[derive(Clone, Copy, Debug)]
pub enum After<'a> {
    Nothing,
    /// [`gelu`].
    Gelu,
    /// y ← residual + γ ⊙ y ([`residual_add_into`]), the residual of y's shape.
    Residual {
        residual: &'a [f32],
        gamma: Option<&'a [f32]>,
    },
}

impl After<'_> {
    /// Applied to y, rows of `cols` values, in parallel as the maps above.
    pub fn rows(&self, y: &mut [f32], cols: usize) {
        match *self {
            After::Nothing => {}
            After::Gelu => gelu_in_place(y),
            After::Residual { residual, gamma } => residual_add_into(residual, y, gamma, cols),
        }
    }

    /// Applied to the stretch `y` of row `row` from column `col` of an output with rows of
    /// `cols` values, on the calling thread: each element as [`After::rows`]
    /// computes it.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn stretch(&self, row: usize, col: usize, cols: usize, y: &mut [f32]) {
        match *self {
            After::Nothing => {}
            After::Gelu => apply_in_place(y, gelu_scalar, lanes::GELU),
            After::Residual { residual, gamma } => {
                let a = &residual[row * cols + col..][..y.len()];
                residual_row(a, y, gamma.map(|g| &g[col..][..y.len()]))
            }
        }
    }

    /// Panics unless the operands fit an output of `rows` × `cols`.
    pub(crate) fn check(&self, rows: usize, cols: usize) {
        if let After::Residual { residual, gamma } = self {
            assert_eq!(
                residual.len(),
                rows * cols,
                "the residual must match the output"
            );
            if let Some(g) = gamma {
                assert_eq!(g.len(), cols, "gamma must hold one value per column");
            }
        }
    }
}

/// Rounds every value to the nearest bfloat16 (ties to even), as `tensor.to(torch.bfloat16)`.
pub fn round_bf16(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from tables of erf (Abramowitz & Stegun 7.1).
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (-1.0, -0.842_700_792_9),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn gelu_by_hand() {
        // gelu(1) = 0.5·(1 + erf(1/√2)) = 0.841344746; gelu(-1) = -0.158655254; gelu(0) = 0.
        let y = gelu(&[1.0, -1.0, 0.0]);
        assert!((y[0] - 0.841_344_7).abs() < 1e-6);
        assert!((y[1] + 0.158_655_2).abs() < 1e-6);
        assert_eq!(y[2], 0.0);
    }

    #[test]
    fn swiglu_by_hand() {
        // silu(0) = 0, silu(2) = 2/(1+e^-2) = 1.761594; two rows of [gate | up] with width 2.
        let y = swiglu(&[0.0, 2.0, 5.0, 3.0, 2.0, 0.0, 1.0, 1.0], 2);
        assert!((y[0] - 0.0).abs() < 1e-7);
        assert!((y[1] - 1.761_594 * 3.0).abs() < 1e-5);
        assert!((y[2] - 1.761_594).abs() < 1e-5);
        assert_eq!(y[3], 0.0);
    }

    /// The in-place forms give the allocating forms' bits, across the 4096-value chunks.
    #[test]
    fn in_place_forms_match_the_allocating_ones() {
        let mut rng = crate::rand::SeededRng::new(3);
        let (rows, cols) = (37, 300);
        let x = rng.vec(rows * cols, 4.0);
        let y = rng.vec(rows * cols, 4.0);
        let g = rng.vec(cols, 1.0);
        let mut inplace = x.clone();
        gelu_in_place(&mut inplace);
        assert_eq!(inplace, gelu(&x));
        for gamma in [None, Some(g.as_slice())] {
            let mut into = y.clone();
            residual_add_into(&x, &mut into, gamma, cols);
            assert_eq!(into, residual_add(&x, &y, gamma, cols));
        }
    }

    #[test]
    fn residual_add_tiles_and_scales() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            residual_add(&x, &[10.0, 20.0], None, 2),
            [11.0, 22.0, 13.0, 24.0]
        );
        assert_eq!(
            residual_add(&x, &[1.0, 1.0, 2.0, 2.0], Some(&[0.5, 2.0]), 2),
            [1.5, 4.0, 4.0, 8.0]
        );
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 lies exactly between bf16 neighbours 1 and 1 + 2^-7: ties go to even (1).
        // 1 + 3·2^-9 is nearer to 1 + 2^-7.
        let y = round_bf16(&[1.0 + 1.0 / 256.0, 1.0 + 3.0 / 512.0, -2.0]);
        assert_eq!(y, [1.0, 1.0 + 1.0 / 128.0, -2.0]);
    }
}
