//! The CPU executor: every op in Rust, the GPU kernels' twins (same semantics; tests compare the
//! two). The products run through our AVX-512 or AVX2 kernels (`gemm`) where the CPU has them,
//! else the `gemm` crate, on a rayon pool (`threads`); each fast path keeps a plain reference beside it
//! that tests hold it to (`linear::linear_reference`).

#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "x86_64")]
pub mod amx_attention;
pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod blocks;
pub mod elementwise;
#[cfg(target_arch = "x86_64")]
pub mod gemm;
#[cfg(target_arch = "x86_64")]
pub mod gemm_avx2;
#[cfg(not(target_arch = "wasm32"))]
pub mod huge_pages;
pub mod kv_attention;
pub mod linear;
pub mod norm;
pub mod ops;
pub mod rope;
pub mod sample;
mod sums;
#[cfg(not(target_arch = "wasm32"))]
pub mod threads;
pub mod topk;
#[cfg(target_arch = "x86_64")]
pub mod vmath;
#[cfg(target_arch = "x86_64")]
pub mod vmath_avx2;
pub mod window_pool;

pub use ops::{CpuKvCache, CpuOps};

/// The x86-64 vector instruction sets our own products (`gemm`, `gemm_avx2`) and
/// transcendentals (`vmath`, `vmath_avx2`) are written for.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    /// AVX-512F + F16C: 16 lanes.
    Avx512,
    /// AVX2 + FMA + F16C: 8 lanes (AMD before Zen 4, most laptops).
    Avx2,
}

#[cfg(target_arch = "x86_64")]
impl Simd {
    /// The widest this CPU runs, if any (cached).
    pub fn detect() -> Option<Simd> {
        static DETECTED: std::sync::OnceLock<Option<Simd>> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| Simd::runnable().first().copied())
    }

    /// Every one this CPU runs, widest first (tests take each).
    pub fn runnable() -> Vec<Simd> {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        [(gemm::available(), Simd::Avx512), (avx2, Simd::Avx2)]
            .into_iter()
            .filter_map(|(has, simd)| has.then_some(simd))
            .collect()
    }
}

/// The kernels the CPU executor takes on this CPU, one line per part (`linvt info`), as
/// llama.cpp's system info names its SIMD paths.
#[cfg(not(target_arch = "wasm32"))]
pub fn kernels() -> Vec<String> {
    #[cfg(target_arch = "x86_64")]
    let ((products, lanes), bf16) = (
        match Simd::detect() {
            Some(Simd::Avx512) => ("ours, AVX-512F (12×32 tiles)", "16 lanes (AVX-512F)"),
            Some(Simd::Avx2) => ("ours, AVX2 + FMA (6×16 tiles)", "8 lanes (AVX2 + FMA)"),
            None => ("the gemm crate", "scalar"),
        },
        match amx::available() {
            true => "AMX tiles",
            false => "refused (needs AMX-BF16)",
        },
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (products, lanes, bf16) = ("the gemm crate", "scalar", "refused (needs AMX-BF16)");
    vec![
        format!("products of more than 8 rows: {products}"),
        format!("softmax, GELU, sigmoids: {lanes}"),
        format!(
            "8- and 4-bit blocks, int8 activations: {}",
            blocks::int8_kernels()
        ),
        format!("--cpu-products bf16: {bf16}"),
        format!(
            "threads by default: {} (physical cores)",
            threads::physical_cores()
        ),
    ]
}

/// Whether a test of the AVX-512 kernels (`gemm`, `vmath`) can run here: true on CPUs with
/// AVX-512F and F16C. Elsewhere those kernels are never called: the test says it is skipped
/// (`SKIPPED <test>: …` on the terminal), or fails when `LINVT_REQUIRE_AVX512=1` says this
/// machine must run them.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn avx512_for_tests() -> bool {
    kernels_for_tests(gemm::available(), "AVX-512F/F16C", "LINVT_REQUIRE_AVX512")
}

/// Every [`Simd`] this CPU runs, for the tests of `gemm` and `vmath` (the AVX-512 ones said to
/// be skipped where missing, as [`avx512_for_tests`]). Under Miri, only the AVX-512 kernels:
/// Miri is how a machine without them runs them (`scripts/miri-avx512.sh`), ~10⁴× slower, and
/// the AVX2 ones run natively.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn simd_for_tests() -> Vec<Simd> {
    avx512_for_tests();
    let mut runnable = Simd::runnable();
    if cfg!(miri) {
        runnable.retain(|simd| *simd == Simd::Avx512);
    }
    runnable
}

/// [`avx512_for_tests`] for the AMX kernels (`amx`, `amx_attention`): `LINVT_REQUIRE_AMX=1`
/// makes their absence a failure.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn amx_for_tests() -> bool {
    kernels_for_tests(amx::available(), "AMX-BF16", "LINVT_REQUIRE_AMX")
}

/// The skip/require policy of the GPU tests (`tests/common`) for kernels of one instruction
/// set: run when `available`; else panic if `require` is set to 1, or write one `SKIPPED`
/// line naming the test straight to stderr (libtest captures what tests print).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn kernels_for_tests(available: bool, isa: &str, require: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{require}=1 but this CPU (or OS) lacks {isa}, so its kernels cannot be tested here"
    );
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Once per test and instruction set, however often it asks.
    static TOLD: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let mut told = TOLD.lock().unwrap_or_else(|e| e.into_inner());
    if told.contains(&(test.clone(), isa.to_string())) {
        return false;
    }
    told.push((test.clone(), isa.to_string()));
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test} ({isa} kernels): this CPU lacks {isa} (the portable paths are tested \
         either way; {require}=1 makes this a failure)"
    );
    false
}
