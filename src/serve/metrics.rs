//! Counters for `GET /metrics` in Prometheus' text format: requests by outcome, tokens, queue
//! depth, running questions, and seconds spent per stage.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use super::api::Usage;

#[derive(Default)]
pub struct Metrics {
    answered: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
    bad_requests: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    visual_tokens: AtomicU64,
    prompt_visual_tokens: AtomicU64,
    queue_depth: AtomicI64,
    active: AtomicI64,
    /// Seconds per stage (vision encoder, LinVT, prefill, decode steps) and per whole answer.
    seconds: Mutex<BTreeMap<String, f64>>,
}

impl Metrics {
    pub fn queued(&self, change: i64) {
        self.queue_depth.fetch_add(change, Ordering::Relaxed);
    }
    pub fn set_active(&self, n: usize) {
        self.active.store(n as i64, Ordering::Relaxed);
    }
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
    pub fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    /// A request refused before it reached the model (4xx).
    pub fn bad_request(&self) {
        self.bad_requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn stage(&self, name: &str, seconds: f64) {
        let mut s = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        *s.entry(name.to_string()).or_default() += seconds;
    }
    pub fn answered(&self, u: &Usage, seconds: f64) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let add = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Ordering::Relaxed);
        add(&self.prompt_tokens, u.prompt_tokens);
        add(&self.completion_tokens, u.completion_tokens);
        add(&self.visual_tokens, u.visual_tokens);
        add(&self.prompt_visual_tokens, u.prompt_visual_tokens);
        self.stage("request", seconds);
    }

    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP linvt_requests_total Chat requests by outcome.\n# TYPE linvt_requests_total counter");
        for (outcome, n) in [
            ("answered", get(&self.answered)),
            ("failed", get(&self.failed)),
            ("rejected_queue_full", get(&self.rejected)),
            ("cancelled", get(&self.cancelled)),
            ("bad_request", get(&self.bad_requests)),
        ] {
            let _ = writeln!(out, "linvt_requests_total{{outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP linvt_tokens_total Tokens of answered requests.\n# TYPE linvt_tokens_total counter");
        for (kind, n) in [
            ("prompt", get(&self.prompt_tokens)),
            ("completion", get(&self.completion_tokens)),
            ("visual", get(&self.visual_tokens)),
            ("prompt_visual", get(&self.prompt_visual_tokens)),
        ] {
            let _ = writeln!(out, "linvt_tokens_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP linvt_queue_depth Requests waiting for the model.\n# TYPE linvt_queue_depth gauge\nlinvt_queue_depth {}", self.queue_depth.load(Ordering::Relaxed).max(0));
        let _ = writeln!(out, "# HELP linvt_active_sequences Questions being decoded together.\n# TYPE linvt_active_sequences gauge\nlinvt_active_sequences {}", self.active.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP linvt_stage_seconds_total Seconds spent per stage.\n# TYPE linvt_stage_seconds_total counter");
        let s = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        for (stage, secs) in s.iter() {
            let _ = writeln!(out, "linvt_stage_seconds_total{{stage=\"{stage}\"}} {secs}");
        }
        out
    }
}
