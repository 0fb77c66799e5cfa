//! The CPU executor: every op in Rust, the GPU kernels' twins (same semantics; tests compare the
//! two). The products run through our AVX-512 kernels (`gemm`) where the CPU has them, else the
//! `gemm` crate, on a rayon pool (`threads`); each fast path keeps a plain reference beside it
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
#[cfg(not(target_arch = "wasm32"))]
pub mod huge_pages;
pub mod kv_attention;
pub mod linear;
pub mod norm;
pub mod ops;
pub mod rope;
pub mod sample;
#[cfg(not(target_arch = "wasm32"))]
pub mod threads;
pub mod topk;
#[cfg(target_arch = "x86_64")]
pub mod vmath;
pub mod window_pool;

pub use ops::{CpuKvCache, CpuOps};

/// Whether a test of the AVX-512 kernels (`gemm`, `vmath`) can run here: true on CPUs with
/// AVX-512F and F16C. On other CPUs those kernels are never called, and the test fails unless
/// `LINVT_CPU_WITHOUT_AVX512=1` says that is expected, so no machine passes them unnoticed.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn avx512_for_tests() -> bool {
    if gemm::available() {
        return true;
    }
    assert!(
        std::env::var_os("LINVT_CPU_WITHOUT_AVX512").is_some(),
        "this CPU lacks AVX-512F/F16C, so the AVX-512 kernels cannot be tested here; set \
         LINVT_CPU_WITHOUT_AVX512=1 to accept that (the portable paths are tested either way)"
    );
    false
}
