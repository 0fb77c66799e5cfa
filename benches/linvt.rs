//! Criterion benchmarks: each kernel family at the `small`/`official` sizes, and the whole
//! forward at the `small` shape, on the GPU (synchronised: every iteration waits for the device)
//! and the CPU path. Without an adapter the GPU groups are skipped with a notice.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use linvt::bench::BenchShape;
use linvt::gpu::{self, BufferPool, GpuContext, GpuOptions, GpuTensor, Recorder};
use linvt::ops::TopKOrder;
use linvt::ops::{AttnGeometry, Axis};
use linvt::{CondenseOptions, Device};

fn rand(ctx: &GpuContext, shape: &[usize], seed: u64) -> GpuTensor {
    let n = shape.iter().product();
    ctx.upload(
        "bench",
        shape,
        &linvt::rand::SeededRng::new(seed).vec(n, 1.0),
    )
    .unwrap()
}

/// Records one op, submits and waits: what one call costs on the device.
fn run_once(ctx: &GpuContext, pool: &BufferPool, f: &mut impl FnMut(&mut Recorder)) {
    let mut rec = Recorder::new(ctx, pool);
    f(&mut rec);
    rec.submit().unwrap();
    ctx.wait_idle().unwrap();
}

fn kernels(c: &mut Criterion) {
    let Ok(ctx) = GpuContext::new_blocking(&GpuOptions::from_env()) else {
        eprintln!("SKIPPED GPU benches: no adapter");
        return;
    };
    let pool = BufferPool::default();
    let mut g = c.benchmark_group(format!("kernels/{}", ctx.adapter_name()));
    g.sample_size(10);

    let (m, n, k) = (4096, 896, 896);
    let (x, w, b) = (
        rand(&ctx, &[m, k], 1),
        rand(&ctx, &[n, k], 2),
        rand(&ctx, &[n], 3),
    );
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    g.bench_function("linear 4096x896x896 (elements = flops)", |bch| {
        bch.iter(|| {
            run_once(&ctx, &pool, &mut |r| {
                drop(gpu::linear::linear(r, &x, &w, Some(&b)).unwrap())
            })
        })
    });

    let s = BenchShape::small();
    let (t, nn, e, h) = (s.frames, s.tokens, s.embed, s.heads);
    let qkv = rand(&ctx, &[t * nn, 3 * e], 4);
    let out = ctx.alloc(&pool, "out", &[t * nn, e]).unwrap();
    for axis in [Axis::Tokens, Axis::Frames] {
        let geo = AttnGeometry::along_axis(t, nn, e, h, axis);
        g.throughput(Throughput::Elements(
            (4 * t * nn * if axis == Axis::Tokens { nn } else { t } * e) as u64,
        ));
        g.bench_function(
            format!("st_attention {axis:?} T{t} N{nn} E{e} h{h}"),
            |bch| {
                bch.iter(|| {
                    run_once(&ctx, &pool, &mut |r| {
                        gpu::attention::attention(r, &qkv, &qkv, &qkv, &out, &geo).unwrap()
                    })
                })
            },
        );
    }
    let scores = rand(&ctx, &[16 * 256], 5);
    g.throughput(Throughput::Elements(16 * 256));
    g.bench_function("topk 4096 k1024 score order", |bch| {
        bch.iter(|| {
            run_once(&ctx, &pool, &mut |r| {
                drop(gpu::topk::top_k(r, &scores, 1024, TopKOrder::Score).unwrap())
            })
        })
    });
    let tokens = rand(&ctx, &[4096, 128], 6);
    let idx = gpu::topk::top_k(
        &mut Recorder::new(&ctx, &pool),
        &scores,
        1024,
        TopKOrder::Score,
    )
    .unwrap();
    g.bench_function("window_pool k1024 E128 scales 1,2,4", |bch| {
        bch.iter(|| {
            run_once(&ctx, &pool, &mut |r| {
                drop(
                    gpu::window_pool::gather_pool(r, &tokens, Some(&idx.indices), 1024, &[1, 2, 4])
                        .unwrap(),
                )
            })
        })
    });
    g.finish();
}

fn forward(c: &mut Criterion) {
    let shape = BenchShape::small();
    let (mut model, video, text) = shape.model_and_inputs(42).unwrap();
    let mut g = c.benchmark_group(format!("forward/{}", shape.describe()));
    g.sample_size(10);
    let opts = CondenseOptions::default();
    g.bench_function("cpu", |b| {
        b.iter(|| model.condense(Device::Cpu, &video, &text, &opts).unwrap())
    });
    match GpuContext::new_blocking(&GpuOptions::from_env()) {
        Ok(ctx) => {
            model.attach_gpu(ctx).unwrap();
            g.bench_function("gpu", |b| {
                b.iter(|| model.condense(Device::Gpu, &video, &text, &opts).unwrap())
            });
        }
        Err(e) => eprintln!("SKIPPED GPU forward bench: {e}"),
    }
    g.finish();
}

criterion_group!(benches, kernels, forward);
criterion_main!(benches);
