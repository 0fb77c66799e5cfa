//! Shared test harness: the GPU context (with the skip/require policy), seeded data, and
//! comparisons that report where and by how much two results differ.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use linvt::gpu::{GpuContext, GpuOptions};

/// The shared GPU context, or None when the machine has no adapter. Without an adapter a test
/// prints a skip notice; with `LINVT_REQUIRE_GPU=1` it fails instead (CI sets it).
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        GpuContext::new_blocking(&GpuOptions::from_env()).map_err(|e| e.to_string())
    });
    match ctx {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            if std::env::var("LINVT_REQUIRE_GPU")
                .map(|v| v == "1")
                .unwrap_or(false)
            {
                panic!("LINVT_REQUIRE_GPU=1 but no GPU adapter is usable: {e}");
            }
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// Seeded uniform values in [-scale, scale).
pub fn rand_vec(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    linvt::rand::SeededRng::new(seed).vec(n, scale)
}

/// Asserts |got - want| ≤ atol + rtol·|want| everywhere, naming the first offending element.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} vs expected {}",
        got.len(),
        want.len()
    );
    let mut worst = (0usize, 0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(g.is_finite(), "{what}: element {i} is {g}");
        if err > atol + rtol * w.abs() {
            panic!("{what}: element {i} is {g}, expected {w} (|diff| {err} > atol {atol} + rtol {rtol}·|want|)");
        }
        if err > worst.1 {
            worst = (i, err);
        }
    }
    eprintln!("{what}: max |diff| {:.3e} at {}", worst.1, worst.0);
}
