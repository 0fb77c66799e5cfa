//! Decoder attention over a KV cache (the attention family's causal, grouped-query form and
//! the one-row decode fold): GPU vs the CPU twin `linvt::cpu::kv_attention::causal_attention`.
//!
//! Tolerance: as tests/kernel_attention.rs — inputs U(-1, 1), logits O(1), outputs convex
//! combinations of values in (-1, 1); the GPU's dot products and online softmax round
//! differently (~2e-7 measured there), so atol 1e-5 + rtol 1e-4. A wrong kv head, a key past
//! the causal limit or a missing key changes outputs by O(0.01–0.1).
mod common;

use linvt::cpu::kv_attention::{causal_attention, KvGeometry};
use linvt::gpu::attention::{decoder_attention, decoder_attention_split};
use linvt::gpu::{BufferPool, Recorder};

/// `rows` query rows at `position` over a cache of `capacity` positions whose rows past
/// position + rows hold garbage (NaN) — they must never be read.
fn check(heads: usize, kv_heads: usize, head_dim: usize, position: usize, rows: usize, seed: u64) {
    check_split(heads, kv_heads, head_dim, position, rows, seed, None);
}

/// As `check`, with an explicit split-K count (None: the adapter's choice).
fn check_split(
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    position: usize,
    rows: usize,
    seed: u64,
    splits: Option<usize>,
) {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let capacity = position + rows + 5;
    let (qw, kw) = (heads * head_dim, kv_heads * head_dim);
    let q = common::rand_vec(seed, rows * qw, 1.0);
    let filled = (position + rows) * kw;
    let mut k = common::rand_vec(seed + 1, capacity * kw, 1.0);
    let mut v = common::rand_vec(seed + 2, capacity * kw, 1.0);
    k[filled..].fill(f32::NAN);
    v[filled..].fill(f32::NAN);
    let qg = ctx.upload("q", &[rows, qw], &q).unwrap();
    let kg = ctx.upload("k", &[capacity, kw], &k).unwrap();
    let vg = ctx.upload("v", &[capacity, kw], &v).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    let out = match splits {
        None => decoder_attention(&mut rec, &qg, &kg, &vg, heads, kv_heads, head_dim, position),
        Some(n) => decoder_attention_split(
            &mut rec, &qg, &kg, &vg, heads, kv_heads, head_dim, position, n,
        ),
    }
    .unwrap();
    rec.submit().unwrap();
    let got = ctx.read_f32(&out).unwrap();
    let g = KvGeometry {
        heads,
        kv_heads,
        head_dim,
        position,
    };
    let want = causal_attention(&q, &k[..filled], &v[..filled], &g);
    common::assert_close(
        &format!(
            "kv attention heads={heads}/{kv_heads} d={head_dim} pos={position} rows={rows} splits={splits:?}"
        ),
        &got,
        &want,
        1e-5,
        1e-4,
    );
}

#[test]
fn prefill_is_causal_and_grouped() {
    // From the cache start; and a second chunk of rows after cached positions.
    check(6, 2, 18, 0, 9, 1);
    check(6, 3, 18, 7, 5, 2);
    // Qwen2-0.5B's heads: 14 over 2 kv heads of 64; more rows than one workgroup holds.
    check(14, 2, 64, 0, 37, 3);
    // Plain multi-head (kv_group 1) and a head_dim that is not a multiple of 4.
    check(3, 3, 7, 2, 4, 4);
}

#[test]
fn decode_row_folds_query_heads() {
    check(14, 2, 64, 0, 1, 5);
    check(14, 2, 64, 300, 1, 6);
    check(6, 2, 18, 33, 1, 7);
    check(4, 4, 10, 9, 1, 8);
}

#[test]
fn decode_split_k_combines_key_ranges() {
    // 301 keys in 2, 3 and 7 ranges (uneven last range), more ranges than keys (64 for 5 keys:
    // clamped to 5 ranges of 1), and a split count that does not divide the keys.
    for (position, splits) in [(300, 2), (300, 3), (300, 7), (4, 64), (40, 6)] {
        check_split(14, 2, 64, position, 1, 9 + splits as u64, Some(splits));
    }
    check_split(6, 3, 18, 77, 1, 20, Some(4));
}

#[test]
fn bad_geometry_is_an_error() {
    let Some(ctx) = common::gpu() else { return };
    let pool = BufferPool::default();
    let q = ctx.upload("q", &[2, 12], &[0.0f32; 24]).unwrap();
    let k = ctx.upload("k", &[4, 8], &[0.0f32; 32]).unwrap();
    let mut rec = Recorder::new(&ctx, &pool);
    // 3 query heads over 2 kv heads do not group.
    assert!(decoder_attention(&mut rec, &q, &k, &k, 3, 2, 4, 0).is_err());
    // Rows at positions 3..5 run past a 4-position cache.
    let k1 = ctx.upload("k1", &[4, 4], &[0.0f32; 16]).unwrap();
    let err = decoder_attention(&mut rec, &q, &k1, &k1, 3, 1, 4, 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceed the cache"), "{err}");
}
