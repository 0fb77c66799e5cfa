#!/bin/bash
# The AVX-512 GEMM kernels (`src/cpu/gemm.rs`: the 12×32 tile, its packing, strided operands,
# a packed right operand, the fused finish) run on a CPU without AVX-512, under Miri, which
# interprets the program and carries out the x86 intrinsics itself. A slow check (~12 minutes
# on one core here), not CI's: `cargo test` on a machine with AVX-512 runs the same tests
# natively, and with every shape.
#
# What Miri lacks, so what this does not reach: F16C's conversions (the `half` crate rounds
# through them, so no f16 weights), and the intrinsics of the AVX-512 exponential (min/max,
# roundscale, scalef) and of AMX (inline assembly). Under Miri the tests take only the AVX-512
# kernels (`cpu::simd_for_tests`); LINVT_REQUIRE_AVX512=1 makes sure they ran. Borrow tracking
# is off: crossbeam-epoch (under rayon) trips Stacked Borrows, and this is about the kernels'
# arithmetic, not aliasing; one rayon thread keeps the interpreter from spinning.
set -euo pipefail
cd "$(dirname "$0")/.."
# Miri on the nightly already here, else a fresh one.
rustup component add --toolchain nightly miri rust-src 2>/dev/null ||
    rustup toolchain install nightly --profile minimal --component miri,rust-src
export RAYON_NUM_THREADS=1 LINVT_REQUIRE_AVX512=1
export RUSTFLAGS="-C target-feature=+avx512f,+avx512bw,+avx512vl,+avx512dq"
export MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-disable-stacked-borrows -Zmiri-disable-validation"
exec cargo +nightly miri test --lib -- \
    cpu::gemm::tests::strided_products_match_the_reference \
    cpu::gemm::tests::transpose16_swaps_rows_and_lanes --test-threads 1
