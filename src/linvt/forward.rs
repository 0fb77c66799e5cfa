//! The LinVT forward pass, written once against `Ops` (docs/design.md "one forward, two executors").
//! Every difference between the `official` and `paper` presets is a config field read here.

use super::params::{CrossAttn, LinvtParams, Mha};
use super::split::{retile, Split, Tiled};
use crate::config::{
    GatherFrom, LinvtConfig, MultiScale, QuerySelfAttention, SelectionOrder, SvrOrder,
};
use crate::cpu::window_pool::pooled_rows;
use crate::error::{Error, Result};
use crate::ops::Axis;
use crate::ops::Ops;
use crate::ops::TopKOrder;

/// Sizes of one call, already validated.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub frames: usize,
    pub tokens: usize,
    pub text_len: usize,
    /// Tokens actually selected: min(top_k, T·N).
    pub k: usize,
}

/// One TTA run: which rows of the pooled visual tokens it attends to and which queries it uses.
#[derive(Clone, Debug, PartialEq)]
pub struct TtaRun {
    /// (first row, row count) in the pooled token tensor.
    pub tokens: (usize, usize),
    /// (first query, query count) in `query_tokens`.
    pub queries: (usize, usize),
}

/// How the selected tokens flow into TTA for this config: the pooling scales applied before TTA,
/// the runs, and the scales applied to the outputs after (Multi-A).
pub fn plan_runs(
    cfg: &LinvtConfig,
    k: usize,
    num_queries: usize,
) -> Result<(Vec<usize>, Vec<TtaRun>, Vec<usize>)> {
    let all = |rows| TtaRun {
        tokens: (0, rows),
        queries: (0, num_queries),
    };
    let nonempty = |rows: usize, scales: &[usize]| {
        if rows == 0 {
            Err(Error::input(format!(
                "{k} selected token(s) give no pooling window of sizes {scales:?}; use a longer clip, a larger top_k or smaller pool_scales"
            )))
        } else {
            Ok(rows)
        }
    };
    match cfg.multi_scale {
        MultiScale::SingleA => Ok((vec![1], vec![all(k)], vec![])),
        MultiScale::MultiA => {
            nonempty(pooled_rows(num_queries, &cfg.pool_scales), &cfg.pool_scales)?;
            Ok((vec![1], vec![all(k)], cfg.pool_scales.clone()))
        }
        MultiScale::MultiB => {
            let rows = nonempty(pooled_rows(k, &cfg.pool_scales), &cfg.pool_scales)?;
            Ok((cfg.pool_scales.clone(), vec![all(rows)], vec![]))
        }
        MultiScale::MultiC => {
            let split = cfg.query_split(num_queries)?;
            let mut runs = Vec::new();
            let (mut row, mut query) = (0, 0);
            for (&s, &q) in cfg.pool_scales.iter().zip(&split) {
                let rows = nonempty(k / s, &[s])?;
                runs.push(TtaRun {
                    tokens: (row, rows),
                    queries: (query, q),
                });
                row += rows;
                query += q;
            }
            Ok((cfg.pool_scales.clone(), runs, vec![]))
        }
    }
}

/// Optional outputs of one forward.
#[derive(Clone, Copy, Debug, Default)]
pub struct Want {
    /// The aggregation weights (for provenance).
    pub probs: bool,
    /// Intermediates, named as in the golden files: `svr_layer.{i}`, `svr_out`, `tta_layer.{i}`.
    pub trace: bool,
}

/// What the forward leaves on its executor.
pub struct ForwardOut<O: Ops> {
    /// (Q', E).
    pub output: O::T,
    /// (T·N) significance scores.
    pub scores: O::T,
    pub indices: O::Idx,
    /// Per TTA run, the aggregation weights (heads, queries, tokens) when asked for.
    pub aggregation_probs: Vec<O::T>,
    pub runs: Vec<TtaRun>,
    pub scales_before: Vec<usize>,
    pub scales_after: Vec<usize>,
    /// Named intermediates when `Want::trace`.
    pub trace: Vec<(String, O::T)>,
}

/// The whole LinVT forward. `video` holds the (T·N, E) tokens (rows frame-major: flat index
/// t·N + n) as one tensor or as tiles (`super::split`); `text` is (L, E). Work that would exceed
/// the executor's binding limit is split into tiles that fit.
#[allow(clippy::too_many_arguments)]
pub fn forward<O: Ops>(
    ops: &mut O,
    cfg: &LinvtConfig,
    p: &LinvtParams<O::T>,
    video: &Tiled<O::T>,
    text: &O::T,
    dims: Dims,
    num_queries: usize,
    want: Want,
) -> Result<ForwardOut<O>> {
    let _awake = ops.keep_awake();
    let want_probs = want.probs;
    let mut trace = Vec::new();
    let (heads, e) = (cfg.num_heads, cfg.embed_size);
    let (scales_before, runs, scales_after) = plan_runs(cfg, dims.k, num_queries)?;
    let split = Split::plan(dims.frames, dims.tokens, e, ops.binding_limit())?;
    let video = retile(ops, video.clone(), &split.by_frames, e)?;

    // SVR: significance refinement, no residuals or norms (as released).
    let (first_axis, second_axis) = match cfg.svr_order {
        SvrOrder::FramesThenTokens => (Axis::Frames, Axis::Tokens),
        SvrOrder::TokensThenFrames => (Axis::Tokens, Axis::Frames),
    };
    let mut x = video.clone();
    for (i, layer) in p.svr.iter().enumerate() {
        ops.stage(&format!("svr.layer{i}"))?;
        for (m, axis) in [(&layer.first, first_axis), (&layer.second, second_axis)] {
            x = retile(ops, x, split.for_axis(axis), e)?;
            x = mha_tiles(ops, m, x, heads, axis)?;
        }
        if want.trace {
            let rows = retile(ops, x.clone(), &split.by_frames, e)?;
            trace.push((format!("svr_layer.{i}"), concat(ops, rows)?));
        }
    }
    let x = retile(ops, x, &split.by_frames, e)?;

    ops.stage("score+topk")?;
    let mut scores = Vec::with_capacity(x.tiles.len());
    for tile in &x.tiles {
        scores.push(ops.linear(tile, &p.score_w, Some(&p.score_b))?);
    }
    let scores = concat(
        ops,
        Tiled {
            tiles: scores,
            layout: x.layout.clone(),
        },
    )?;
    let order = match cfg.selection_order {
        SelectionOrder::Score => TopKOrder::Score,
        SelectionOrder::Index => TopKOrder::Index,
    };
    let indices = ops.top_k(&scores, dims.k, order, dims.tokens)?;

    ops.stage("pool")?;
    let source = match cfg.gather_from {
        GatherFrom::Refined => &x,
        GatherFrom::Input => &video,
    };
    let pooled = match source.tiles.as_slice() {
        [whole] => ops.gather_pool(whole, Some(&indices), dims.k, &scales_before)?,
        tiles => {
            let first_rows: Vec<usize> = source
                .layout
                .iter()
                .map(|t| t.frames.start * dims.tokens)
                .collect();
            let selected = ops.gather_parts(tiles, &first_rows, &indices, dims.k)?;
            ops.gather_pool(&selected, None, dims.k, &scales_before)?
        }
    };
    drop(x);
    drop(video);
    if want.trace {
        trace.push(("svr_out".to_string(), pooled.clone()));
    }

    let mut outputs = Vec::with_capacity(runs.len());
    let mut aggregation_probs = Vec::new();
    for run in &runs {
        let tokens = ops.rows(&pooled, run.tokens.0, run.tokens.1);
        let queries = ops.rows(&p.query_tokens, run.queries.0, run.queries.1);
        let (out, probs) = tta(
            ops, cfg, p, &queries, &tokens, text, want_probs, &mut trace, want.trace,
        )?;
        outputs.push(out);
        aggregation_probs.extend(probs);
    }
    let mut output = if outputs.len() == 1 {
        outputs.pop().expect("one run")
    } else {
        ops.concat_rows(&outputs)?
    };
    if !scales_after.is_empty() {
        ops.stage("pool.after")?;
        output = ops.gather_pool(&output, None, num_queries, &scales_after)?;
    }
    Ok(ForwardOut {
        output,
        scores,
        indices,
        aggregation_probs,
        runs,
        scales_before,
        scales_after,
        trace,
    })
}

/// `mha_along` on every tile (each tile's buffers go back to the pool as the next is made).
fn mha_tiles<O: Ops>(
    ops: &mut O,
    m: &Mha<O::T>,
    x: Tiled<O::T>,
    heads: usize,
    axis: Axis,
) -> Result<Tiled<O::T>> {
    let mut tiles = Vec::with_capacity(x.tiles.len());
    for (tile, at) in x.tiles.into_iter().zip(&x.layout) {
        tiles.push(mha_along(
            ops,
            m,
            &tile,
            at.frames.len(),
            at.positions.len(),
            heads,
            axis,
        )?);
    }
    Ok(Tiled {
        tiles,
        layout: x.layout,
    })
}

/// Tiles of whole frames as one tensor (a view of the one tile when there is one).
fn concat<O: Ops>(ops: &mut O, x: Tiled<O::T>) -> Result<O::T> {
    match x.tiles.len() {
        1 => Ok(x.tiles.into_iter().next().expect("one tile")),
        _ => ops.concat_rows(&x.tiles),
    }
}

/// nn.MultiheadAttention on (T·N, E) along one axis: in_proj → attention → out_proj.
fn mha_along<O: Ops>(
    ops: &mut O,
    m: &Mha<O::T>,
    x: &O::T,
    t: usize,
    n: usize,
    heads: usize,
    axis: Axis,
) -> Result<O::T> {
    let qkv = ops.linear(x, &m.in_w, Some(&m.in_b))?;
    let a = ops.self_attention(&qkv, t, n, heads, axis)?;
    ops.linear(&a, &m.out_w, Some(&m.out_b))
}

/// MultiHeadCrossAttention: wq(query), wk(kv), wv(kv), attention, dense.
fn cross<O: Ops>(
    ops: &mut O,
    c: &CrossAttn<O::T>,
    q: &O::T,
    kv: &O::T,
    heads: usize,
) -> Result<O::T> {
    let qp = ops.linear(q, &c.wq, Some(&c.bq))?;
    let kp = ops.linear(kv, &c.wk, Some(&c.bk))?;
    let vp = ops.linear(kv, &c.wv, Some(&c.bv))?;
    let a = ops.cross_attention(&qp, &kp, &vp, heads)?;
    ops.linear(&a, &c.dense_w, Some(&c.dense_b))
}

/// TTA layers, then the linear aggregation. Returns (Q, E) and, if asked, the aggregation
/// weights (heads, Q, S).
#[allow(clippy::too_many_arguments)]
fn tta<O: Ops>(
    ops: &mut O,
    cfg: &LinvtConfig,
    p: &LinvtParams<O::T>,
    queries: &O::T,
    visual: &O::T,
    text: &O::T,
    want_probs: bool,
    trace: &mut Vec<(String, O::T)>,
    want_trace: bool,
) -> Result<(O::T, Option<O::T>)> {
    let (heads, e, eps) = (cfg.num_heads, cfg.embed_size, cfg.layer_norm_eps);
    let mut q = queries.clone();
    for (i, layer) in p.tta.iter().enumerate() {
        ops.stage(&format!("tta.layer{i}"))?;
        let sa = &layer.self_attn;
        let self_out = match cfg.query_self_attention {
            // A length-1 sequence: softmax is 1, so SA(q) = out_proj(W_v q + b_v) per query.
            QuerySelfAttention::PerQuery => {
                let wv = ops.rows(&sa.in_w, 2 * e, e);
                let bv = ops.rows(&sa.in_b, 2 * e, e);
                let v = ops.linear(&q, &wv, Some(&bv))?;
                ops.linear(&v, &sa.out_w, Some(&sa.out_b))?
            }
            QuerySelfAttention::AcrossQueries => {
                let qkv = ops.linear(&q, &sa.in_w, Some(&sa.in_b))?;
                let a = ops.self_attention(&qkv, 1, ops.row_count(&q), heads, Axis::Tokens)?;
                ops.linear(&a, &sa.out_w, Some(&sa.out_b))?
            }
        };
        let s = ops.add_layer_norm(&q, &self_out, &layer.norm_self, eps)?;
        let xv = cross(ops, &layer.visual, &s, visual, heads)?;
        let c = ops.add_layer_norm(&s, &xv, &layer.norm_cross_v, eps)?;
        let xt = cross(ops, &layer.text, &c, text, heads)?;
        q = ops.add_layer_norm(&c, &xt, &layer.norm_cross_t, eps)?;
        if want_trace {
            trace.push((format!("tta_layer.{i}"), q.clone()));
        }
    }
    ops.stage("linagg")?;
    let la = &p.linagg;
    let qp = ops.linear(&q, &la.wq, Some(&la.bq))?;
    let kp = ops.linear(visual, &la.wk, Some(&la.bk))?;
    // Compress mode: the raw visual tokens are the values, no value or output projection.
    let out = ops.cross_attention(&qp, &kp, visual, heads)?;
    let probs = if want_probs {
        Some(ops.attention_probs(&qp, &kp, heads)?)
    } else {
        None
    };
    Ok((out, probs))
}
