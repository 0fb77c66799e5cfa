//! LinVT parameters addressed by the released module's names (`linVT.` prefix optional), with
//! shape checks and a report of the tensors the model does not use.

use crate::config::LinvtConfig;
use crate::error::{Error, Result};
use crate::ops::{Norm, Role};
use crate::tensor::Tensor;
use crate::weights::TensorStore;

/// `nn.MultiheadAttention`: packed in_proj [Wq; Wk; Wv] (3E×E) + bias (3E), out_proj.
#[derive(Clone, Debug)]
pub struct Mha<T> {
    pub in_w: T,
    pub in_b: T,
    pub out_w: T,
    pub out_b: T,
}

/// The TTA's `MultiHeadCrossAttention`: Linear wq, wk, wv, dense (each E×E + bias).
#[derive(Clone, Debug)]
pub struct CrossAttn<T> {
    pub wq: T,
    pub bq: T,
    pub wk: T,
    pub bk: T,
    pub wv: T,
    pub bv: T,
    pub dense_w: T,
    pub dense_b: T,
}

#[derive(Clone, Debug)]
pub struct SvrLayer<T> {
    /// Runs first in a layer (`spatial_attention`).
    pub first: Mha<T>,
    /// Runs second (`temporal_attention`).
    pub second: Mha<T>,
}

#[derive(Clone, Debug)]
pub struct TtaLayer<T> {
    pub self_attn: Mha<T>,
    pub norm_self: Norm<T>,
    pub visual: CrossAttn<T>,
    pub norm_cross_v: Norm<T>,
    pub text: CrossAttn<T>,
    pub norm_cross_t: Norm<T>,
}

/// The final linear aggregation: only wq and wk matter (raw visual tokens are the values).
#[derive(Clone, Debug)]
pub struct LinAgg<T> {
    pub wq: T,
    pub bq: T,
    pub wk: T,
    pub bk: T,
}

#[derive(Clone, Debug)]
pub struct LinvtParams<T> {
    pub svr: Vec<SvrLayer<T>>,
    pub score_w: T,
    pub score_b: T,
    pub tta: Vec<TtaLayer<T>>,
    pub linagg: LinAgg<T>,
    /// (Q, E).
    pub query_tokens: T,
}

/// What loading found besides the parameters it used.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// LinVT tensors in the file that this configuration does not read (e.g. extra layers).
    pub unused: Vec<String>,
    /// Tensors the released module carries but that never affect its output
    /// (the aggregator's `wv` and `dense`).
    pub unused_by_design: Vec<String>,
}

use Role::{LinearWeight as W, Other as O};

impl<T> Mha<T> {
    fn try_map<U>(&self, f: &mut impl FnMut(&T, Role) -> Result<U>) -> Result<Mha<U>> {
        Ok(Mha {
            in_w: f(&self.in_w, W)?,
            in_b: f(&self.in_b, O)?,
            out_w: f(&self.out_w, W)?,
            out_b: f(&self.out_b, O)?,
        })
    }
}
impl<T> CrossAttn<T> {
    fn try_map<U>(&self, f: &mut impl FnMut(&T, Role) -> Result<U>) -> Result<CrossAttn<U>> {
        Ok(CrossAttn {
            wq: f(&self.wq, W)?,
            bq: f(&self.bq, O)?,
            wk: f(&self.wk, W)?,
            bk: f(&self.bk, O)?,
            wv: f(&self.wv, W)?,
            bv: f(&self.bv, O)?,
            dense_w: f(&self.dense_w, W)?,
            dense_b: f(&self.dense_b, O)?,
        })
    }
}
impl<T> Norm<T> {
    fn try_map<U>(&self, f: &mut impl FnMut(&T, Role) -> Result<U>) -> Result<Norm<U>> {
        Ok(Norm {
            weight: f(&self.weight, O)?,
            bias: f(&self.bias, O)?,
        })
    }
}

impl<T> LinvtParams<T> {
    /// The same parameters converted one by one (e.g. uploaded to a GPU).
    pub fn try_map<U>(&self, mut f: impl FnMut(&T) -> Result<U>) -> Result<LinvtParams<U>> {
        self.try_map_roles(|t, _| f(t))
    }

    /// [`Self::try_map`] telling `f` what each parameter is used as.
    pub fn try_map_roles<U>(
        &self,
        mut f: impl FnMut(&T, Role) -> Result<U>,
    ) -> Result<LinvtParams<U>> {
        let f = &mut f;
        Ok(LinvtParams {
            svr: self
                .svr
                .iter()
                .map(|l| {
                    Ok(SvrLayer {
                        first: l.first.try_map(f)?,
                        second: l.second.try_map(f)?,
                    })
                })
                .collect::<Result<_>>()?,
            score_w: f(&self.score_w, W)?,
            score_b: f(&self.score_b, O)?,
            tta: self
                .tta
                .iter()
                .map(|l| {
                    Ok(TtaLayer {
                        self_attn: l.self_attn.try_map(f)?,
                        norm_self: l.norm_self.try_map(f)?,
                        visual: l.visual.try_map(f)?,
                        norm_cross_v: l.norm_cross_v.try_map(f)?,
                        text: l.text.try_map(f)?,
                        norm_cross_t: l.norm_cross_t.try_map(f)?,
                    })
                })
                .collect::<Result<_>>()?,
            linagg: LinAgg {
                wq: f(&self.linagg.wq, W)?,
                bq: f(&self.linagg.bq, O)?,
                wk: f(&self.linagg.wk, W)?,
                bk: f(&self.linagg.bk, O)?,
            },
            query_tokens: f(&self.query_tokens, O)?,
        })
    }
}

/// Reads tensors under the official names, checking shapes and finiteness.
struct Reader<'a> {
    store: &'a TensorStore,
    prefix: &'static str,
    used: Vec<String>,
}

impl Reader<'_> {
    fn get(&mut self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{key}", self.prefix);
        let t = self.store.get(&full)?.ok_or_else(|| Error::MissingTensor {
            key: full.clone(),
            source_name: self.store.name().to_string(),
        })?;
        if t.shape() != shape {
            return Err(Error::ShapeMismatch {
                key: full,
                expected: shape.to_vec(),
                actual: t.shape().to_vec(),
                hint: String::new(),
            });
        }
        if let Some((i, v)) = t.first_non_finite() {
            return Err(Error::NonFinite {
                what: format!("weight `{full}`"),
                position: format!("flat index {i}"),
                value: v,
            });
        }
        self.used.push(full);
        Ok(t)
    }
    fn mha(&mut self, key: &str, e: usize) -> Result<Mha<Tensor>> {
        Ok(Mha {
            in_w: self.get(&format!("{key}.in_proj_weight"), &[3 * e, e])?,
            in_b: self.get(&format!("{key}.in_proj_bias"), &[3 * e])?,
            out_w: self.get(&format!("{key}.out_proj.weight"), &[e, e])?,
            out_b: self.get(&format!("{key}.out_proj.bias"), &[e])?,
        })
    }
    fn cross(&mut self, key: &str, e: usize) -> Result<CrossAttn<Tensor>> {
        let mut lin = |name: &str| -> Result<(Tensor, Tensor)> {
            Ok((
                self.get(&format!("{key}.{name}.weight"), &[e, e])?,
                self.get(&format!("{key}.{name}.bias"), &[e])?,
            ))
        };
        let (wq, bq) = lin("wq")?;
        let (wk, bk) = lin("wk")?;
        let (wv, bv) = lin("wv")?;
        let (dense_w, dense_b) = lin("dense")?;
        Ok(CrossAttn {
            wq,
            bq,
            wk,
            bk,
            wv,
            bv,
            dense_w,
            dense_b,
        })
    }
    fn norm(&mut self, key: &str, e: usize) -> Result<Norm<Tensor>> {
        Ok(Norm {
            weight: self.get(&format!("{key}.weight"), &[e])?,
            bias: self.get(&format!("{key}.bias"), &[e])?,
        })
    }
}

/// The key prefix a store uses for LinVT tensors: `linVT.` (inside InternVLChatModel) or none.
pub fn linvt_prefix(store: &TensorStore) -> &'static str {
    if store.keys().any(|k| k.starts_with("linVT.")) {
        "linVT."
    } else {
        ""
    }
}

/// Whether `store` holds a LinVT module: `query_tokens` and the SVR's score head, with or
/// without the `linVT.` prefix.
pub fn holds_linvt(store: &TensorStore) -> bool {
    let prefix = linvt_prefix(store);
    query_tokens_shape(store).is_some()
        && store.contains(&format!(
            "{prefix}svt_module.token_selection.score_net.weight"
        ))
}

/// Number of query tokens and width stored in `query_tokens` ((1, Q, E) or (Q, E)).
pub fn query_tokens_shape(store: &TensorStore) -> Option<(usize, usize)> {
    let s = store
        .shape("query_tokens")
        .or_else(|| store.shape("linVT.query_tokens"))?;
    match s {
        [1, q, e] | [q, e] => Some((*q, *e)),
        _ => None,
    }
}

impl LinvtParams<Tensor> {
    pub fn load(store: &TensorStore, cfg: &LinvtConfig) -> Result<(Self, LoadReport)> {
        let e = cfg.embed_size;
        let prefix = linvt_prefix(store);
        let mut r = Reader {
            store,
            prefix,
            used: Vec::new(),
        };
        let svr = (0..cfg.num_layers)
            .map(|i| {
                let base = format!("svt_module.attention_network.layers.{i}");
                Ok(SvrLayer {
                    first: r.mha(&format!("{base}.spatial_attention"), e)?,
                    second: r.mha(&format!("{base}.temporal_attention"), e)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let score_w = r.get("svt_module.token_selection.score_net.weight", &[1, e])?;
        let score_b = r.get("svt_module.token_selection.score_net.bias", &[1])?;
        let tta = (0..cfg.num_layers)
            .map(|i| {
                let base = format!("tta_module.layers_vt.{i}");
                Ok(TtaLayer {
                    self_attn: r.mha(&format!("{base}.self_attention"), e)?,
                    norm_self: r.norm(&format!("{base}.norm_self"), e)?,
                    visual: r.cross(&format!("{base}.visual_cross_attention"), e)?,
                    norm_cross_v: r.norm(&format!("{base}.norm_cross_v"), e)?,
                    text: r.cross(&format!("{base}.text_cross_attention"), e)?,
                    norm_cross_t: r.norm(&format!("{base}.norm_cross_t"), e)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let la = "tta_module.layer_linagg.linear_aggregator";
        let linagg = LinAgg {
            wq: r.get(&format!("{la}.wq.weight"), &[e, e])?,
            bq: r.get(&format!("{la}.wq.bias"), &[e])?,
            wk: r.get(&format!("{la}.wk.weight"), &[e, e])?,
            bk: r.get(&format!("{la}.wk.bias"), &[e])?,
        };
        // query_tokens lives outside `linVT.` in InternVLChatModel; accept it inside too.
        let qkey = if store.contains("query_tokens") {
            "query_tokens"
        } else {
            "linVT.query_tokens"
        };
        let (q, qe) = query_tokens_shape(store).ok_or_else(|| match store.shape(qkey) {
            Some(s) => Error::ShapeMismatch {
                key: qkey.into(),
                expected: vec![1, 0, e],
                actual: s.to_vec(),
                hint: " (expected (1, Q, E) or (Q, E))".into(),
            },
            None => Error::MissingTensor {
                key: "query_tokens".into(),
                source_name: store.name().to_string(),
            },
        })?;
        if qe != e || q == 0 {
            return Err(Error::ShapeMismatch {
                key: qkey.into(),
                expected: vec![1, q.max(1), e],
                actual: store.shape(qkey).unwrap_or_default().to_vec(),
                hint: format!(" (width must equal embed_size {e}, with at least one query)"),
            });
        }
        let raw = store.get(qkey)?.expect("shape was found");
        if let Some((i, v)) = raw.first_non_finite() {
            return Err(Error::NonFinite {
                what: format!("weight `{qkey}`"),
                position: format!("flat index {i}"),
                value: v,
            });
        }
        r.used.push(qkey.to_string());
        let query_tokens = raw.reshape(&[q, e])?;

        let mut report = LoadReport::default();
        let by_design = |k: &str| {
            k.starts_with(&format!("{prefix}{la}.wv"))
                || k.starts_with(&format!("{prefix}{la}.dense"))
        };
        let mut others: Vec<String> = store
            .keys()
            .filter(|k| {
                (prefix.is_empty() || k.starts_with(prefix)) && !r.used.iter().any(|u| u == k)
            })
            .map(str::to_string)
            .collect();
        others.sort();
        for k in others {
            if by_design(&k) {
                report.unused_by_design.push(k);
            } else {
                report.unused.push(k);
            }
        }
        Ok((
            LinvtParams {
                svr,
                score_w,
                score_b,
                tta,
                linagg,
                query_tokens,
            },
            report,
        ))
    }
}

/// Seeded parameter generator: weights uniform with variance 1/E (so activations keep their
/// scale through the residual-free SVR), biases ±0.1, LayerNorm weights 1 ± 0.1.
struct SeededGen {
    rng: crate::rand::SeededRng,
    e: usize,
}

impl SeededGen {
    fn tensor(&mut self, shape: &[usize], scale: f32, centre: f32) -> Tensor {
        let data = self
            .rng
            .vec(shape.iter().product(), scale)
            .into_iter()
            .map(|v| v + centre)
            .collect();
        Tensor::new(shape.to_vec(), data).expect("sizes match")
    }
    fn weight(&mut self, rows: usize) -> Tensor {
        let a = (3.0 / self.e as f32).sqrt();
        self.tensor(&[rows, self.e], a, 0.0)
    }
    fn bias(&mut self, len: usize) -> Tensor {
        self.tensor(&[len], 0.1, 0.0)
    }
    fn mha(&mut self) -> Mha<Tensor> {
        let e = self.e;
        Mha {
            in_w: self.weight(3 * e),
            in_b: self.bias(3 * e),
            out_w: self.weight(e),
            out_b: self.bias(e),
        }
    }
    fn cross(&mut self) -> CrossAttn<Tensor> {
        let e = self.e;
        CrossAttn {
            wq: self.weight(e),
            bq: self.bias(e),
            wk: self.weight(e),
            bk: self.bias(e),
            wv: self.weight(e),
            bv: self.bias(e),
            dense_w: self.weight(e),
            dense_b: self.bias(e),
        }
    }
    fn norm(&mut self) -> Norm<Tensor> {
        let e = self.e;
        Norm {
            weight: self.tensor(&[e], 0.1, 1.0),
            bias: self.bias(e),
        }
    }
}

impl LinvtParams<Tensor> {
    /// Seeded random parameters for demos, benchmarks and property tests.
    pub fn seeded(cfg: &LinvtConfig, num_queries: usize, seed: u64) -> Self {
        let e = cfg.embed_size;
        let mut g = SeededGen {
            rng: crate::rand::SeededRng::new(seed),
            e,
        };
        let svr = (0..cfg.num_layers)
            .map(|_| SvrLayer {
                first: g.mha(),
                second: g.mha(),
            })
            .collect();
        let score_w = g.weight(1);
        let score_b = g.bias(1);
        let tta = (0..cfg.num_layers)
            .map(|_| TtaLayer {
                self_attn: g.mha(),
                norm_self: g.norm(),
                visual: g.cross(),
                norm_cross_v: g.norm(),
                text: g.cross(),
                norm_cross_t: g.norm(),
            })
            .collect();
        let linagg = LinAgg {
            wq: g.weight(e),
            bq: g.bias(e),
            wk: g.weight(e),
            bk: g.bias(e),
        };
        let query_tokens = g.tensor(&[num_queries, e], 1.0, 0.0);
        LinvtParams {
            svr,
            score_w,
            score_b,
            tta,
            linagg,
            query_tokens,
        }
    }
}

impl<T> LinvtParams<T> {
    /// Every parameter under its official key (with the `linVT.` prefix; `query_tokens`
    /// outside it, shaped (Q, E)), as `load` reads them: for writing a LinVT module file.
    pub fn named(&self) -> Vec<(String, &T)> {
        fn mha<'a, T>(out: &mut Vec<(String, &'a T)>, key: String, m: &'a Mha<T>) {
            out.push((format!("{key}.in_proj_weight"), &m.in_w));
            out.push((format!("{key}.in_proj_bias"), &m.in_b));
            out.push((format!("{key}.out_proj.weight"), &m.out_w));
            out.push((format!("{key}.out_proj.bias"), &m.out_b));
        }
        let mut out: Vec<(String, &T)> = Vec::new();
        for (i, l) in self.svr.iter().enumerate() {
            let base = format!("linVT.svt_module.attention_network.layers.{i}");
            mha(&mut out, format!("{base}.spatial_attention"), &l.first);
            mha(&mut out, format!("{base}.temporal_attention"), &l.second);
        }
        let sel = "linVT.svt_module.token_selection.score_net";
        out.push((format!("{sel}.weight"), &self.score_w));
        out.push((format!("{sel}.bias"), &self.score_b));
        for (i, l) in self.tta.iter().enumerate() {
            let base = format!("linVT.tta_module.layers_vt.{i}");
            mha(&mut out, format!("{base}.self_attention"), &l.self_attn);
            for (name, n) in [
                ("norm_self", &l.norm_self),
                ("norm_cross_v", &l.norm_cross_v),
                ("norm_cross_t", &l.norm_cross_t),
            ] {
                out.push((format!("{base}.{name}.weight"), &n.weight));
                out.push((format!("{base}.{name}.bias"), &n.bias));
            }
            for (name, c) in [
                ("visual_cross_attention", &l.visual),
                ("text_cross_attention", &l.text),
            ] {
                for (lin, w, b) in [
                    ("wq", &c.wq, &c.bq),
                    ("wk", &c.wk, &c.bk),
                    ("wv", &c.wv, &c.bv),
                    ("dense", &c.dense_w, &c.dense_b),
                ] {
                    out.push((format!("{base}.{name}.{lin}.weight"), w));
                    out.push((format!("{base}.{name}.{lin}.bias"), b));
                }
            }
        }
        let la = "linVT.tta_module.layer_linagg.linear_aggregator";
        out.push((format!("{la}.wq.weight"), &self.linagg.wq));
        out.push((format!("{la}.wq.bias"), &self.linagg.bq));
        out.push((format!("{la}.wk.weight"), &self.linagg.wk));
        out.push((format!("{la}.wk.bias"), &self.linagg.bk));
        out.push(("query_tokens".to_string(), &self.query_tokens));
        out
    }
}
