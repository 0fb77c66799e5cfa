//! RoPE kernel: GPU vs the CPU twin `linvt::cpu::rope::rope`, at small and large positions.
//!
//! Both rotate by the same f32 cos/sin values (the GPU's table is built in f64 exactly as the
//! twin computes them), so the only difference is the rounding of a·c − b·s (the GPU may fuse
//! one product into an fma): ≤ 1 ulp of |a|+|b| ≤ 4 here, i.e. ≤ 5e-7. atol 1e-6; an
//! off-by-one position or a wrong frequency moves values by ≥ 1e-3 even at θ = 1e6.
mod common;

use linvt::cpu::rope as cpu;
use linvt::gpu::rope::{rope, rope_table, rope_table_for, GpuPositions};
use linvt::gpu::{BufferPool, Recorder};
use linvt::ops::{Positions, Rope};

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
    let pos = GpuPositions::upload(&ctx, &Positions::range(position, rows)).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let y = rope(&mut rec, &xg, &tg, heads, head_dim, &pos, &[head_dim / 2]).unwrap();
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
    let at_1 = GpuPositions::upload(&ctx, &Positions::range(1, 2)).unwrap();
    let err = rope(&mut rec, &x, &table, 1, 4, &at_1, &[2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("table"), "{err}");
    let at_0 = GpuPositions::upload(&ctx, &Positions::range(0, 2)).unwrap();
    let x3 = ctx.upload("x3", &[2, 3], &[1.0f32; 6]).unwrap();
    assert!(rope(&mut rec, &x3, &table, 1, 3, &at_0, &[1]).is_err());
    // Positions for another row count, or sections that do not cover the pairs, are errors.
    let one = GpuPositions::upload(&ctx, &Positions::range(0, 1)).unwrap();
    assert!(rope(&mut rec, &x, &table, 1, 4, &one, &[2]).is_err());
    assert!(rope(&mut rec, &x, &table, 1, 4, &at_0, &[1]).is_err());
}

/// Multimodal RoPE (Qwen2-VL): three position axes, pairs split [3, 2, 3] over them, positions
/// that repeat and jump (a 2×2 video grid at temporal 4, then text at 7, 8) — each pair turned
/// by its own axis's position, as the twin does. Tolerance as `rope_matches_twin`.
#[test]
fn multimodal_rope_turns_each_pair_by_its_axis() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let (heads, d) = (2usize, 16usize);
    let rope_m = Rope::new(d, 1e4).with_sections(&[3, 2, 3]).unwrap();
    #[rustfmt::skip]
    let ids = vec![4, 0, 0,  4, 0, 1,  4, 1, 0,  4, 1, 1,  7, 7, 7,  8, 8, 8];
    let positions = Positions::new(ids, 3).unwrap();
    let rows = positions.rows();
    let x = common::rand_vec(7, rows * heads * d, 2.0);
    let xg = ctx.upload("x", &[rows, heads * d], &x).unwrap();
    let table = rope_table_for(&rope_m, positions.end());
    let tg = ctx.upload("table", &[positions.end(), d], &table).unwrap();
    let pos = GpuPositions::upload(&ctx, &positions).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let y = rope(&mut rec, &xg, &tg, heads, d, &pos, &rope_m.sections).unwrap();
    rec.submit().unwrap();
    let mut want = x.clone();
    cpu::rope_with(&mut want, heads, &positions, &rope_m);
    common::assert_close("mrope", &ctx.read_f32(&y).unwrap(), &want, 1e-6, 0.0);
    // And it is not plain RoPE at the first axis (the check can fail).
    let mut plain = x.clone();
    let temporal = Positions::new(vec![4, 4, 4, 4, 7, 8], 1).unwrap();
    cpu::rope_with(&mut plain, heads, &temporal, &Rope::new(d, 1e4));
    assert!(plain.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-3));
}

/// A decoder layer's attention input in one kernel (`rope_qkv`) against the twin's pieces:
/// q and k rotated by `cpu::rope::rope` at their rotary positions, v copied, k and v landing in
/// the cache rows at their slots (the rows before it untouched). GQA (heads 6, kv_heads 2), rows at a nonzero
/// offset, tolerance as `rope_matches_twin`.
#[test]
fn rope_qkv_matches_rope_and_copies() {
    use linvt::gpu::rope::rope_qkv;
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let (heads, kv_heads, d, theta) = (6usize, 2usize, 8usize, 1e6);
    let (qw, kw) = (heads * d, kv_heads * d);
    let width = qw + 2 * kw;
    for (rows, position) in [(1usize, 0usize), (1, 37), (5, 3)] {
        let capacity = position + rows + 2;
        let qkv = common::rand_vec(90 + rows as u64, rows * width, 2.0);
        let mut padded = vec![9.0f32; (rows + 1) * width];
        padded[width..].copy_from_slice(&qkv);
        let xg = ctx
            .upload("qkv", &[rows + 1, width], &padded)
            .unwrap()
            .rows_view(1, rows);
        let keys = ctx
            .upload("keys", &[capacity, kw], &vec![-1.0f32; capacity * kw])
            .unwrap();
        let values = ctx
            .upload("values", &[capacity, kw], &vec![-2.0f32; capacity * kw])
            .unwrap();
        // Rotary positions 100 past the cache slots: the slots place k and v, the positions
        // turn q and k.
        let positions = Positions::range(position + 100, rows);
        let table = rope_table(d, theta, positions.end());
        let tg = ctx.upload("table", &[positions.end(), d], &table).unwrap();
        let pos = GpuPositions::upload(&ctx, &positions).unwrap();
        let mut rec = Recorder::new(&ctx, &pool);
        let q = rope_qkv(
            &mut rec,
            &xg,
            &tg,
            &keys,
            &values,
            heads,
            kv_heads,
            d,
            position,
            &pos,
            &[d / 2],
        )
        .unwrap();
        rec.submit().unwrap();

        let part = |lo: usize, n: usize| -> Vec<f32> {
            qkv.chunks(width)
                .flat_map(|r| r[lo..lo + n].to_vec())
                .collect()
        };
        let (mut want_q, mut want_k, want_v) = (part(0, qw), part(qw, kw), part(qw + kw, kw));
        cpu::rope(&mut want_q, heads, d, position + 100, theta);
        cpu::rope(&mut want_k, kv_heads, d, position + 100, theta);
        let what = format!("rope_qkv rows={rows} position={position}");
        common::assert_close(
            &format!("{what} q"),
            &ctx.read_f32(&q).unwrap(),
            &want_q,
            1e-6,
            0.0,
        );
        let (k_all, v_all) = (ctx.read_f32(&keys).unwrap(), ctx.read_f32(&values).unwrap());
        let at = position * kw..(position + rows) * kw;
        common::assert_close(&format!("{what} k"), &k_all[at.clone()], &want_k, 1e-6, 0.0);
        assert_eq!(&v_all[at.clone()], &want_v[..], "{what} v");
        let untouched = |all: &[f32], fill: f32| {
            all[..at.start]
                .iter()
                .chain(&all[at.end..])
                .all(|&v| v == fill)
        };
        assert!(
            untouched(&k_all, -1.0) && untouched(&v_all, -2.0),
            "{what}: wrote outside its rows"
        );
    }
    // A write past the cache, or a row of the wrong width, is an error.
    let x = ctx.upload("x", &[1, width], &vec![0.0f32; width]).unwrap();
    let tg = ctx.upload("t", &[4, d], &rope_table(d, theta, 4)).unwrap();
    let cache = ctx.upload("c", &[2, kw], &vec![0.0f32; 2 * kw]).unwrap();
    let pos = GpuPositions::upload(&ctx, &Positions::range(2, 1)).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let e = rope_qkv(
        &mut rec,
        &x,
        &tg,
        &cache,
        &cache,
        heads,
        kv_heads,
        d,
        2,
        &pos,
        &[d / 2],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("overflow"), "{e}");
    assert!(rope_qkv(
        &mut rec,
        &x,
        &tg,
        &cache,
        &cache,
        heads,
        1,
        d,
        0,
        &pos,
        &[d / 2]
    )
    .is_err());
}
