//! Scratch benchmark for tuning the attention kernel (not shipped).
use linvt::cpu::attention::{self as cpu, AttnGeometry, Axis};
use linvt::gpu::attention::{self as gpu, AttendTuning};
use linvt::gpu::{BufferPool, GpuContext, GpuOptions, Recorder};
use std::time::Instant;

fn main() {
    let ctx = GpuContext::new_blocking(&GpuOptions::from_env()).unwrap();
    eprintln!("adapter {} {:?}", ctx.info.name, ctx.info.device_type);
    let pool = BufferPool::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let shapes = [("tokens T16 N256", 16, 256, Axis::Tokens), ("frames T16 N256", 16, 256, Axis::Frames)];
    let tunings = [
        None,
        Some(AttendTuning { wg: 64, stage: true }),
        Some(AttendTuning { wg: 64, stage: false }),
        Some(AttendTuning { wg: 32, stage: true }),
        Some(AttendTuning { wg: 32, stage: false }),
        Some(AttendTuning { wg: 16, stage: true }),
        Some(AttendTuning { wg: 16, stage: false }),
        Some(AttendTuning { wg: 8, stage: false }),
    ];
    let only: Option<usize> = args.get(1).and_then(|a| a.parse().ok());
    for (name, t, n, axis) in shapes {
        let (e, h) = (896, 4);
        let g = AttnGeometry::along_axis(t, n, e, h, axis);
        let qkv = linvt::rand::SeededRng::new(1).vec(t * n * 3 * e, 1.0);
        let qt = ctx.upload("qkv", &[t * n, 3 * e], &qkv).unwrap();
        let out = ctx.alloc(&pool, "out", &[t * n, e]).unwrap();
        let gflop = g.flops() / 1e9;
        // CPU twin
        let mut want = vec![0f32; t * n * e];
        let t0 = Instant::now();
        cpu::attention(&qkv, &qkv, &qkv, &mut want, &g);
        let dt = t0.elapsed().as_secs_f64();
        println!("{name}: cpu twin {:.1} ms, {:.2} GFLOP/s", dt * 1e3, gflop / dt);
        for (ti, tuning) in tunings.iter().enumerate() {
            if only.is_some_and(|o| o != ti) {
                continue;
            }
            let mut best = f64::MAX;
            for r in 0..reps + 1 {
                let t0 = Instant::now();
                let mut rec = Recorder::new(&ctx, &pool);
                gpu::attention_tuned(&mut rec, &qt, &qt, &qt, &out, &g, *tuning).unwrap();
                rec.submit().unwrap();
                let got = ctx.read_f32(&out.rows_view(0, 1)).unwrap();
                let dt = t0.elapsed().as_secs_f64();
                if r > 0 {
                    best = best.min(dt);
                } else {
                    eprintln!("  (first run incl. compile {:.1} ms)", dt * 1e3);
                    let _ = got;
                }
            }
            let all = ctx.read_f32(&out).unwrap();
            let maxdiff = all.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            println!("{name}: gpu {tuning:?} {:.1} ms, {:.2} GFLOP/s (max diff {maxdiff:.1e})", best * 1e3, gflop / best);
        }
    }
}
