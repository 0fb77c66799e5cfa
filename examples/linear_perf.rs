//! Scratch: linear throughput (to be deleted).
//! cargo run --release --example linear_perf -- gpu rb 4 2 64 [vec4=1]
use std::time::Instant;

use linvt::gpu::linear::{self, Kernel, Tuning};
use linvt::gpu::{BufferPool, GpuContext, GpuOptions, Recorder};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(|s| s.as_str()).unwrap_or("cpu");
    let shapes: Vec<(usize, usize, usize)> = match std::env::var("SHAPES").ok().as_deref() {
        Some("small") => vec![(4096, 896, 896)],
        _ => vec![(4096, 896, 896), (1024, 1024, 1024)],
    };
    if mode == "cpu" {
        for &(m, n, k) in &[(4096usize, 896usize, 896usize), (1024, 1024, 1024), (4096, 896, 2688)] {
            let x = linvt::rand::SeededRng::new(1).vec(m * k, 1.0);
            let w = linvt::rand::SeededRng::new(2).vec(n * k, 1.0);
            let b = linvt::rand::SeededRng::new(3).vec(n, 1.0);
            let t = Instant::now();
            let y = linvt::cpu::linear::linear(&x, &w, Some(&b), m, n, k);
            let s = t.elapsed().as_secs_f64();
            println!("cpu {m}x{n}x{k}: {:.3}s {:.2} GFLOP/s ({})", s, 2.0 * (m * n * k) as f64 / s / 1e9, y[7]);
        }
        return;
    }
    let p = |i: usize, d: u32| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let tuning = Tuning {
        kernel: if args.get(2).map(|s| s.as_str()) == Some("tiled") { Kernel::Tiled } else { Kernel::RegisterBlocked },
        tm: p(3, 4),
        tn: p(4, 2),
        wg: p(5, 64),
        vec4: p(6, 1) == 1,
    };
    let reps: usize = std::env::var("REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let ctx = GpuContext::new_blocking(&GpuOptions::from_env()).unwrap();
    let pool = BufferPool::default();
    for (m, n, k) in shapes {
        let x = ctx.upload("x", &[m, k], &linvt::rand::SeededRng::new(1).vec(m * k, 1.0)).unwrap();
        let w = ctx.upload("w", &[n, k], &linvt::rand::SeededRng::new(2).vec(n * k, 1.0)).unwrap();
        let b = ctx.upload("b", &[n], &linvt::rand::SeededRng::new(3).vec(n, 1.0)).unwrap();
        let out = ctx.alloc(&pool, "y", &[m, n]).unwrap();
        // warm-up (pipeline compile)
        let t = Instant::now();
        let mut rec = Recorder::new(&ctx, &pool);
        linear::linear_into_tuned(&mut rec, &x, &w, Some(&b), &out, tuning).unwrap();
        rec.submit().unwrap();
        ctx.read_f32(&b).unwrap();
        let warm = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut rec = Recorder::new(&ctx, &pool);
        for _ in 0..reps {
            linear::linear_into_tuned(&mut rec, &x, &w, Some(&b), &out, tuning).unwrap();
        }
        rec.submit().unwrap();
        ctx.read_f32(&b).unwrap();
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{:?} {m}x{n}x{k}: {:.1} ms  {:.2} GFLOP/s (first call incl. compile {:.2}s)",
            tuning, s * 1e3, linear::flops(m, n, k) / s / 1e9, warm
        );
    }
}
