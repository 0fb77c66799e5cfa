//! RoPE kernel: GPU vs the CPU twin `linvt::cpu::rope::rope`, at small and large positions.
//!
//! Both rotate by the same f32 cos/sin values (the GPU's table is built in f64 exactly as the
//! twin computes them), so the only difference is the rounding of a·c − b·s (the GPU may fuse
//! one product into an fma): ≤ 1 ulp of |a|+|b| ≤ 4 here, i.e. ≤ 5e-7. atol 1e-6; an
//! off-by-one position or a wrong frequency moves values by ≥ 1e-3 even at θ = 1e6.
mod common;

use linvt::cpu::rope as cpu;
use linvt::gpu::rope::{rope, rope_table};
use linvt::gpu::{BufferPool, Recorder};

fn check(rows: usize, heads: usize, head_dim: usize, position: usize, theta: f64, seed: u64) {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let width = heads * head_dim;
    let x = common::rand_vec(seed, rows * width, 2.0);
    let mut padded = common::rand_vec(seed + 1, (rows + 1) * width, 9.0);
    padded[width..].copy_from_slice(&x);
    let xg = ctx
        .upload("x", &[rows + 1, width], &padded)
        .unwrap()
        .rows_view(1, rows);
    let positions = position + rows + 3;
    let table = rope_table(head_dim, theta, positions);
    let tg = ctx.upload("table", &[positions, head_dim], &table).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let y = rope(&mut rec, &xg, &tg, heads, head_dim, position).unwrap();
    rec.submit().unwrap();
    let got = ctx.read_f32(&y).unwrap();
    let mut want = x.clone();
    cpu::rope(&mut want, heads, head_dim, position, theta);
    common::assert_close(
        &format!("rope rows={rows} heads={heads} head_dim={head_dim} position={position}"),
        &got,
        &want,
        1e-6,
        0.0,
    );
}

#[test]
fn rope_matches_twin() {
    check(1, 1, 2, 0, 10_000.0, 1);
    check(3, 2, 6, 5, 100.0, 2);
    check(7, 3, 64, 1000, 1e6, 3);
    check(1, 14, 64, 30_000, 1e6, 4);
}

#[test]
fn rope_rejects_a_short_table_and_odd_head_dim() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let x = ctx.upload("x", &[2, 4], &[1.0f32; 8]).unwrap();
    let table = ctx
        .upload("t", &[2, 4], &rope_table(4, 10_000.0, 2))
        .unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    // Rows at positions 1 and 2 need 3 positions of the table.
    let err = rope(&mut rec, &x, &table, 1, 4, 1).unwrap_err().to_string();
    assert!(err.contains("table"), "{err}");
    let x3 = ctx.upload("x3", &[2, 3], &[1.0f32; 6]).unwrap();
    assert!(rope(&mut rec, &x3, &table, 1, 3, 0).is_err());
}
