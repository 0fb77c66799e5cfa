//! The rotary embedding a decoder's config asks for (`rope_theta`, `rope_scaling`), turned into
//! the [`Rope`] the ops rotate by. Supported: plain RoPE, `linear` scaling, `dynamic` NTK
//! (InternLM2; the identity within `max_position_embeddings`), and Phi-3's
//! `longrope` (named `su` in Phi-3-mini-128k's config): per-pair frequency divisors
//! (`short_factor`, or `long_factor` once a sequence exceeds `original_max_position_embeddings`)
//! and cos/sin multiplied by √(1 + ln(s)/ln(original max)), s = max / original max positions
//! (transformers' `_compute_longrope_parameters`; `attention_factor` overrides it).

use serde_json::Value;

use crate::ops::Rope;

#[derive(Clone, Debug, PartialEq)]
pub enum Scaling {
    None,
    /// Positions divided by `factor` (θ_d / factor).
    Linear {
        factor: f64,
    },
    LongRope {
        short: Vec<f64>,
        long: Vec<f64>,
        original_max: usize,
        attention_factor: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct RopeScaling {
    pub head_dim: usize,
    pub theta: f64,
    pub scaling: Scaling,
    /// Qwen2-VL's multimodal RoPE (`mrope_section`): rotary pairs per position axis (temporal,
    /// height, width); None: one axis.
    pub sections: Option<Vec<usize>>,
}

impl RopeScaling {
    /// Reads `rope_scaling` (absent or null: plain RoPE) of an LLM config. Errors name the
    /// field and what is supported.
    pub fn from_config(
        lc: &Value,
        head_dim: usize,
        theta: f64,
        max_positions: usize,
    ) -> std::result::Result<Self, String> {
        let scaling = match lc.get("rope_scaling") {
            None | Some(Value::Null) => Scaling::None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("(none)");
                match kind {
                    // Qwen2-VL's hub configs say "mrope"; transformers rewrites it "default".
                    "default" | "mrope" => Scaling::None,
                    // InternLM2's dynamic NTK changes the base only past
                    // max_position_embeddings, beyond the context this crate allows.
                    "dynamic" => Scaling::None,
                    "linear" => Scaling::Linear {
                        factor: s
                            .get("factor")
                            .and_then(Value::as_f64)
                            .filter(|f| *f > 0.0)
                            .ok_or("rope_scaling.factor must be a positive number")?,
                    },
                    "longrope" | "su" => {
                        let factors = |key: &str| -> std::result::Result<Vec<f64>, String> {
                            let v: Vec<f64> = s
                                .get(key)
                                .and_then(Value::as_array)
                                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                                .unwrap_or_default();
                            if v.len() != head_dim / 2 || v.iter().any(|f| *f <= 0.0) {
                                return Err(format!(
                                    "rope_scaling.{key} must hold {} positive numbers (one per rotary pair)",
                                    head_dim / 2
                                ));
                            }
                            Ok(v)
                        };
                        let original_max = lc
                            .get("original_max_position_embeddings")
                            .and_then(Value::as_u64)
                            .map_or(max_positions, |x| x as usize);
                        let ratio = max_positions as f64 / original_max.max(1) as f64;
                        let attention_factor = match s.get("attention_factor").and_then(Value::as_f64) {
                            Some(f) => f,
                            None if ratio <= 1.0 => 1.0,
                            None => (1.0 + ratio.ln() / (original_max as f64).ln()).sqrt(),
                        };
                        Scaling::LongRope {
                            short: factors("short_factor")?,
                            long: factors("long_factor")?,
                            original_max,
                            attention_factor,
                        }
                    }
                    other => {
                        return Err(format!(
                            "rope_scaling type `{other}` is not supported; supported: default, linear, dynamic (within the context), longrope (su)"
                        ))
                    }
                }
            }
        };
        let sections = match lc.get("rope_scaling").and_then(|s| s.get("mrope_section")) {
            None | Some(Value::Null) => None,
            Some(m) => {
                let v: Vec<usize> = m
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_u64)
                            .map(|x| x as usize)
                            .collect()
                    })
                    .unwrap_or_default();
                let total = v.iter().try_fold(0usize, |a, &x| a.checked_add(x));
                if v.is_empty() || total != Some(head_dim / 2) {
                    return Err(format!(
                        "rope_scaling.mrope_section {m} must add up to the {} rotary pairs (head_dim / 2)",
                        head_dim / 2
                    ));
                }
                Some(v)
            }
        };
        if let Some(p) = lc.get("partial_rotary_factor").and_then(Value::as_f64) {
            if p != 1.0 {
                return Err(format!(
                    "partial_rotary_factor {p} is not supported (only 1.0: every dimension rotates)"
                ));
            }
        }
        Ok(RopeScaling {
            head_dim,
            theta,
            scaling,
            sections,
        })
    }

    /// Plain RoPE of this head size and base.
    pub fn plain(head_dim: usize, theta: f64) -> Self {
        RopeScaling {
            head_dim,
            theta,
            scaling: Scaling::None,
            sections: None,
        }
    }

    /// The rotation for a sequence that will reach `positions` positions. Longrope takes its
    /// long factors when that exceeds the original context (for the whole sequence: transformers
    /// switches when generation crosses it, keeping keys already rotated with the short ones).
    pub fn for_length(&self, positions: usize) -> Rope {
        let mut rope = Rope::new(self.head_dim, self.theta);
        if let Some(sections) = &self.sections {
            rope.sections = sections.clone(); // checked against head_dim when read
        }
        match &self.scaling {
            Scaling::None => {}
            Scaling::Linear { factor } => rope.inv_freq.iter_mut().for_each(|f| *f /= factor),
            Scaling::LongRope {
                short,
                long,
                original_max,
                attention_factor,
            } => {
                let ext = if positions > *original_max {
                    long
                } else {
                    short
                };
                rope.inv_freq.iter_mut().zip(ext).for_each(|(f, e)| *f /= e);
                rope.scale = *attention_factor;
            }
        }
        rope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longrope_by_hand() {
        // head_dim 4, θ 100: plain θ = (1, 0.1). short (1, 2), long (4, 8); 4096 → 131072
        // positions: s = 32, factor √(1 + ln 32 / ln 4096) = √(1 + 5/12).
        let lc = serde_json::json!({
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "su", "short_factor": [1.0, 2.0], "long_factor": [4.0, 8.0]}
        });
        let r = RopeScaling::from_config(&lc, 4, 100.0, 131072).unwrap();
        let short = r.for_length(100);
        assert_eq!(short.inv_freq, [1.0, 0.05]);
        assert!((short.scale - (1.0f64 + 5.0 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(r.for_length(5000).inv_freq, [0.25, 0.0125]);
        assert_eq!(
            RopeScaling::plain(4, 100.0).for_length(9),
            Rope::new(4, 100.0)
        );
    }

    #[test]
    fn mrope_sections_that_overflow_are_refused_not_a_panic() {
        // A fuzzing finding: the sections' sum overflowed (a panic in debug builds, a wrapped
        // sum in release ones).
        let lc = serde_json::json!({"rope_scaling": {"type": "mrope", "mrope_section": [u64::MAX, 2, 2]}});
        let e = RopeScaling::from_config(&lc, 12, 1e6, 4096).unwrap_err();
        assert!(e.contains("mrope_section"), "{e}");
    }

    #[test]
    fn unknown_types_and_bad_factors_are_refused() {
        let bad = serde_json::json!({"rope_scaling": {"type": "yarn", "factor": 4.0}});
        let e = RopeScaling::from_config(&bad, 4, 1e4, 4096).unwrap_err();
        assert!(e.contains("yarn") && e.contains("longrope"), "{e}");
        let short = serde_json::json!({"rope_scaling": {"type": "su", "short_factor": [1.0], "long_factor": [1.0, 1.0]}});
        let e = RopeScaling::from_config(&short, 4, 1e4, 4096).unwrap_err();
        assert!(e.contains("short_factor must hold 2"), "{e}");
    }
}
