//! Criterion benchmarks of the CPU executor's decode products: Y = X·Wᵀ for a few rows of X
//! (one row per sequence of a batched decode step) against Qwen2-0.5B's stacked gate|up weight
//! (9728 × 896), bf16 and f32. One row is bound by reading W; more rows share each weight load,
//! so time per row should fall as rows are added (`linvt serve --parallel`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use linvt::cpu::elementwise::After;
use linvt::cpu::linear::{linear, linear_bf16, linear_bf16_activations, linear_half, Bf16Weight};
use linvt::tensor::Half;

const N: usize = 9728;
const K: usize = 896;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = linvt::rand::SeededRng::new(seed);
    (0..n).map(|_| rng.uniform() - 0.5).collect()
}

fn decode_products(c: &mut Criterion) {
    linvt::cpu::threads::init(None).expect("the thread pool starts");
    let w = values(N * K, 1);
    let wb: Vec<u16> = w
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    let x = values(8 * K, 2);
    let mut g = c.benchmark_group("cpu decode product 9728x896");
    g.sample_size(20);
    for m in [1, 2, 3, 4, 8] {
        g.throughput(Throughput::Elements(m as u64));
        g.bench_with_input(BenchmarkId::new("bf16", m), &m, |b, &m| {
            b.iter(|| linear_bf16(&x, &wb, None, m, N, K))
        });
        g.bench_with_input(BenchmarkId::new("f32", m), &m, |b, &m| {
            b.iter(|| linear(&x, &w, None, m, N, K))
        });
    }
    g.finish();
}

/// One row against a weight far larger than the caches (32768 × 4096, 134 M values): the
/// rate a decode step streams weights at, per format; compare with the host's copy rate
/// (`linvt bench --decoder NAME --backend cpu` prints it).
fn streaming_products(c: &mut Criterion) {
    use linvt::cpu::blocks::{linear_blocks, Activations};
    use linvt::gguf::GgmlType;
    use linvt::tensor::BlockRows;
    linvt::cpu::threads::init(None).expect("the thread pool starts");
    const N: usize = 32768;
    const K: usize = 4096;
    let w = values(N * K, 3);
    let x = values(K, 4);
    let mut g = c.benchmark_group("cpu decode product 32768x4096");
    g.sample_size(10);
    g.throughput(Throughput::Elements((N * K) as u64));
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let bytes = linvt::quant::quantize(ty, &w).expect("quantizes");
        let parts = [BlockRows::new(ty, N, bytes)];
        for act in [Activations::Int8, Activations::F32] {
            g.bench_function(format!("{ty} {act:?}"), |b| {
                b.iter(|| linear_blocks(&x, &parts, None, (1, N, K), act).unwrap())
            });
        }
        // The CPU's decode layout (Q4_0, Q8_0, Q4_K): 8-row groups, one instruction per 8 rows.
        if matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q4_K) {
            let grouped = [parts[0].clone().interleave(K)];
            g.bench_function(format!("{ty} Int8 interleaved"), |b| {
                b.iter(|| linear_blocks(&x, &grouped, None, (1, N, K), Activations::Int8).unwrap())
            });
        }
    }
    let wb: Vec<u16> = w
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    g.bench_function("bf16", |b| b.iter(|| linear_bf16(&x, &wb, None, 1, N, K)));
    let wh: Vec<u16> = w
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    g.bench_function("f16", |b| {
        b.iter(|| linear_half(Half::F16, &x, &wh, None, (1, N, K), After::Nothing))
    });
    g.bench_function("f32", |b| b.iter(|| linear(&x, &w, None, 1, N, K)));
    g.finish();
}

/// Prefill-sized products: one InternViT-300M layer on one 448² frame (1025 tokens; its
/// q|k|v, output projection, MLP up and down), ours (AVX-512 where the CPU has it,
/// `linvt::cpu::gemm`) in f32 and with bf16 weights widened as they are packed, and with the
/// activations rounded to bf16 on AMX tiles (`--cpu-products bf16`, `linvt::cpu::amx`), beside
/// the `gemm` crate on the same f32 operands in the same run. Throughput in multiply-adds.
fn prefill_products(c: &mut Criterion) {
    linvt::cpu::threads::init(None).expect("the thread pool starts");
    const M: usize = 1025;
    for (name, n, k) in [
        ("qkv", 3072, 1024),
        ("proj", 1024, 1024),
        ("fc1", 4096, 1024),
        ("fc2", 1024, 4096),
    ] {
        let w = values(n * k, 5);
        let wb: Vec<u16> = w
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        let x = values(M * k, 6);
        let mut g = c.benchmark_group(format!("cpu prefill product {name} {M}x{n}x{k}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements((M * n * k) as u64));
        g.bench_function("f32", |b| b.iter(|| linear(&x, &w, None, M, n, k)));
        g.bench_function("bf16", |b| b.iter(|| linear_bf16(&x, &wb, None, M, n, k)));
        // `--cpu-products bf16`: the activations rounded to bf16, AMX tiles (where the CPU has
        // them; elsewhere this line reports the error once and is skipped).
        match linear_bf16_activations(&x, Bf16Weight::Rows(&wb), None, (M, n, k)) {
            Ok(_) => g.bench_function("bf16 activations (AMX)", |b| {
                b.iter(|| {
                    linear_bf16_activations(&x, Bf16Weight::Rows(&wb), None, (M, n, k)).unwrap()
                })
            }),
            Err(e) => {
                eprintln!("bf16 activations: {e}");
                &mut g
            }
        };
        // The same with W packed once, as `--cpu-products bf16` loads weights.
        #[cfg(target_arch = "x86_64")]
        if linvt::cpu::amx::available() {
            // SAFETY: AMX available (checked); wb holds n×k values.
            let tiles = unsafe { linvt::cpu::amx::pack_weight(&wb, (n, k)) };
            let w = Bf16Weight::Tiles(bytemuck::cast_slice(&tiles));
            g.bench_function("bf16 activations (AMX, packed at load)", |b| {
                b.iter(|| linear_bf16_activations(&x, w, None, (M, n, k)).unwrap())
            });
        }
        g.bench_function("gemm crate f32", |b| {
            b.iter(|| {
                let mut y = vec![0.0f32; M * n];
                // SAFETY: y is M×n, x M×k and w n×k (read as Wᵀ through swapped strides).
                unsafe {
                    gemm::gemm(
                        M,
                        n,
                        k,
                        y.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        x.as_ptr(),
                        1,
                        k as isize,
                        w.as_ptr(),
                        k as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(0),
                    )
                };
                y
            })
        });
        g.finish();
    }
}

/// The ViT's self-attention over one 448² frame (InternViT-300M: 1025 tokens, 16 heads of 64,
/// read from a packed q|k|v), against the products' own rate: 2·1025²·1024 multiply-adds
/// (S = Q·Kᵀ and O = P·V) plus the softmax.
fn vit_attention(c: &mut Criterion) {
    use linvt::ops::{AttnGeometry, Axis};
    linvt::cpu::threads::init(None).expect("the thread pool starts");
    let (tokens, embed, heads) = (1025, 1024, 16);
    let qkv = values(tokens * 3 * embed, 7);
    let geometry = AttnGeometry::along_axis(1, tokens, embed, heads, Axis::Tokens);
    let mut out = vec![0.0f32; tokens * embed];
    let mut g = c.benchmark_group(format!(
        "cpu vit attention {tokens}x{heads}x{}",
        embed / heads
    ));
    g.sample_size(10);
    g.throughput(Throughput::Elements((2 * tokens * tokens * embed) as u64));
    g.bench_function("f32", |b| {
        b.iter(|| linvt::cpu::attention::attention(&qkv, &qkv, &qkv, &mut out, &geometry))
    });
    g.finish();
}

criterion_group!(
    benches,
    decode_products,
    streaming_products,
    prefill_products,
    vit_attention
);
criterion_main!(benches);
