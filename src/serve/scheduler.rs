//! The model's own thread: it takes questions from a bounded queue and answers up to
//! `parallel` of them at once — each starts alone (vision encoder, LinVT, prefill, first
//! token), then every running question takes its next token in one batched decode step (the
//! weights are read once per step for all of them, as llama-server's parallel slots do).
//! Text streams back to each request's handler as it is decoded; a handler that goes away (its
//! client disconnected) cancels its question at the next step.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::api::{ApiError, Usage};
use super::metrics::Metrics;
use crate::vlm::model::{AskOptions, Question, VideoLlm, Visual};

/// One question for the model.
pub struct Job {
    /// None: a text-only question.
    pub visual: Option<Visual>,
    pub question: String,
    pub opts: AskOptions,
    /// Stop strings: the answer ends before the first of them.
    pub stop: Vec<String>,
    pub events: mpsc::UnboundedSender<Event>,
}

/// What the model thread tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// The next piece of the answer's text.
    Text(String),
    /// The answer is complete.
    Done(Outcome),
    Failed(ApiError),
}

#[derive(Clone, Debug)]
pub struct Outcome {
    /// `stop`, `length` or `context`.
    pub finish_reason: &'static str,
    pub usage: Usage,
}

/// The handle request handlers submit through.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::Sender<Job>,
    pub metrics: Arc<Metrics>,
}

impl Scheduler {
    /// Starts the model thread: `load` runs on it (so the model never crosses threads); its
    /// error is returned here. At most `queue` questions wait; `parallel` run at once.
    pub fn start(
        load: impl FnOnce() -> crate::error::Result<VideoLlm> + Send + 'static,
        parallel: usize,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> crate::error::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>(queue.max(1));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("linvt-model".into())
            // The model's work runs on a worker of the CPU executor's pool (`on_pool`).
            .spawn(move || {
                crate::cpu::threads::on_pool(move || match load() {
                    Ok(model) => {
                        let _ = ready_tx.send(Ok(()));
                        run(model, rx, parallel.max(1), &m);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                })
            })
            .map_err(|e| crate::error::Error::Gpu(format!("cannot start the model thread: {e}")))?;
        ready_rx.recv().map_err(|_| {
            crate::error::Error::Gpu("the model thread stopped while loading".into())
        })??;
        Ok(Scheduler { tx, metrics })
    }

    /// Whether the model thread is still taking questions.
    pub fn alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Queues a question, or refuses it when the queue is full (429: retry later).
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        match self.tx.try_send(job) {
            Ok(()) => {
                self.metrics.queued(1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.rejected();
                Err(ApiError {
                    status: 429,
                    message: "the server's queue is full; retry in a moment".into(),
                    kind: "rate_limit_error",
                    param: None,
                    code: Some("queue_full"),
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(ApiError::server("the model thread has stopped"))
            }
        }
    }
}

/// A running question with its request's channel and its stop-string scan.
struct Slot {
    question: Question,
    events: mpsc::UnboundedSender<Event>,
    stops: StopScan,
    started: Instant,
}

fn run(mut model: VideoLlm, mut rx: mpsc::Receiver<Job>, parallel: usize, metrics: &Metrics) {
    let mut slots: Vec<Slot> = Vec::new();
    loop {
        // Idle: wait for work. Busy: start at most one more question per step, so the running
        // ones keep decoding while new ones arrive.
        let job = if slots.is_empty() {
            match rx.blocking_recv() {
                Some(job) => Some(job),
                None => return,
            }
        } else if slots.len() < parallel {
            rx.try_recv().ok()
        } else {
            None
        };
        if let Some(job) = job {
            metrics.queued(-1);
            let events = job.events.clone();
            match guarded(|| begin(&mut model, job, metrics)) {
                Ok(Some(slot)) => slots.push(slot),
                Ok(None) => {}
                Err(err) => {
                    metrics.failed();
                    let _ = events.send(Event::Failed(err));
                }
            }
        }
        slots.retain(|s| {
            let gone = s.events.is_closed();
            if gone {
                metrics.cancelled();
            }
            !gone
        });
        metrics.set_active(slots.len());
        if slots.is_empty() {
            continue;
        }
        let t0 = Instant::now();
        let mut questions: Vec<&mut Question> = slots.iter_mut().map(|s| &mut s.question).collect();
        let stepped = guarded(|| {
            pollster::block_on(model.step(&mut questions)).map_err(|e| ApiError::from_error(&e))
        })
        .and_then(|r| r);
        metrics.stage("decode", t0.elapsed().as_secs_f64());
        if let Err(err) = stepped {
            for s in slots.drain(..) {
                metrics.failed();
                let _ = s.events.send(Event::Failed(err.clone()));
            }
            continue;
        }
        slots.retain_mut(|s| advance(&model, s, metrics));
        metrics.set_active(slots.len());
    }
}

/// Runs `f`, turning a panic (a bug) into a 500 for the requests involved rather than the end
/// of the model thread: each question has its own cache, so the others are unaffected.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ApiError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let what = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        ApiError::server(format!(
            "internal error in the model thread ({what}); please report it"
        ))
    })
}

/// Starts `job`'s question; None when it failed or already ended.
fn begin(model: &mut VideoLlm, job: Job, metrics: &Metrics) -> Option<Slot> {
    if job.events.is_closed() {
        metrics.cancelled();
        return None;
    }
    let started = Instant::now();
    let mut stage_start = Instant::now();
    let mut current = String::new();
    let mut on_stage = |name: &str| {
        if !current.is_empty() {
            metrics.stage(&current, stage_start.elapsed().as_secs_f64());
        }
        current = name.to_string();
        stage_start = Instant::now();
    };
    let begun = pollster::block_on(model.begin(
        job.visual.as_ref(),
        &job.question,
        &job.opts,
        &mut on_stage,
    ));
    if !current.is_empty() {
        metrics.stage(&current, stage_start.elapsed().as_secs_f64());
    }
    match begun {
        Err(e) => {
            let err = ApiError::from_error(&e);
            // A 4xx (the request's own fault) is counted by whoever answers it.
            if err.status >= 500 {
                metrics.failed();
            }
            let _ = job.events.send(Event::Failed(err));
            None
        }
        Ok(question) => {
            let mut slot = Slot {
                question,
                events: job.events,
                stops: StopScan::new(job.stop),
                started,
            };
            advance(model, &mut slot, metrics).then_some(slot)
        }
    }
}

/// Sends `slot`'s new text; at its end (done, or a stop string) sends the outcome. Whether it
/// keeps running.
fn advance(model: &VideoLlm, s: &mut Slot, metrics: &Metrics) -> bool {
    let delta = match s.question.new_text(model.tokenizer()) {
        Ok(d) => d,
        Err(e) => {
            metrics.failed();
            let _ = s.events.send(Event::Failed(ApiError::from_error(&e)));
            return false;
        }
    };
    let done = s.question.done();
    let (text, stopped) = s.stops.push(delta.as_deref().unwrap_or(""), done);
    if !text.is_empty() {
        let _ = s.events.send(Event::Text(text));
    }
    if !(done || stopped) {
        return true;
    }
    let reason = match stopped {
        true => "stop",
        false => finish_name(&s.question),
    };
    let (visual, prompt_visual) = s.question.visual_tokens();
    let usage = Usage {
        prompt_tokens: s.question.prompt_tokens(),
        completion_tokens: s.question.token_ids().len(),
        total_tokens: s.question.prompt_tokens() + s.question.token_ids().len(),
        visual_tokens: visual,
        prompt_visual_tokens: prompt_visual,
    };
    metrics.answered(&usage, s.started.elapsed().as_secs_f64());
    let _ = s.events.send(Event::Done(Outcome {
        finish_reason: reason,
        usage,
    }));
    false
}

fn finish_name(q: &Question) -> &'static str {
    match q.finish_reason() {
        crate::vlm::engine::FinishReason::Stop => "stop",
        crate::vlm::engine::FinishReason::Length => "length",
        // OpenAI has no "context": the answer was cut, as by max_tokens.
        crate::vlm::engine::FinishReason::Context => "length",
    }
}

/// Finds stop strings in the growing answer: text that could still become a stop string is
/// held back until it cannot.
pub struct StopScan {
    stops: Vec<String>,
    text: String,
    sent: usize,
}

impl StopScan {
    pub fn new(stops: Vec<String>) -> Self {
        StopScan {
            stops,
            text: String::new(),
            sent: 0,
        }
    }

    /// Adds `delta`; returns the text that may be sent now, and whether a stop string ended
    /// the answer (its text then ends before it). `last`: no more text will come.
    pub fn push(&mut self, delta: &str, last: bool) -> (String, bool) {
        self.text.push_str(delta);
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min();
        let (end, stopped) = match hit {
            Some(at) => (at, true),
            None if last => (self.text.len(), false),
            None => {
                // Keep back the longest tail that is a prefix of some stop string.
                let hold = (self.stops.iter())
                    .map(|s| {
                        (1..s.len())
                            .rev()
                            .find(|&n| {
                                s.is_char_boundary(n)
                                    && self.text.len() >= n
                                    && self.text.is_char_boundary(self.text.len() - n)
                                    && self.text.ends_with(&s[..n])
                            })
                            .unwrap_or(0)
                    })
                    .max()
                    .unwrap_or(0);
                (self.text.len() - hold, false)
            }
        };
        let end = end.max(self.sent);
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        (out, stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::StopScan;

    #[test]
    fn stop_strings_end_the_text_before_them_and_hold_back_partial_matches() {
        let mut s = StopScan::new(vec!["END".into(), "ß!".into()]);
        assert_eq!(s.push("abc E", false), ("abc ".into(), false));
        assert_eq!(s.push("N", false), ("".into(), false));
        assert_eq!(s.push("Xz", false), ("ENXz".into(), false));
        assert_eq!(s.push("yEND tail", false), ("y".into(), true));
        let mut s = StopScan::new(vec!["ß!".into()]);
        assert_eq!(s.push("aß", false), ("a".into(), false));
        assert_eq!(s.push("b", true), ("ßb".into(), false));
        let mut none = StopScan::new(vec![]);
        assert_eq!(none.push("x", false), ("x".into(), false));
    }
}
