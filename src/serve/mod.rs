//! `linvt serve`: an OpenAI-compatible HTTP server for one loaded video-LLM (axum on tokio).
//! Requests are read and their media fetched and decoded on the async side (`api`, `media`);
//! the model runs on its own thread, decoding the running questions together (`scheduler`).
//! `linvt batch` (`batch`) runs a file of the same requests through the same path.

pub mod api;
pub mod batch;
pub mod media;
pub mod metrics;
pub mod scheduler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use self::api::{ApiError, ChatRequest, VideoBudget};
use self::media::MediaPolicy;
use self::metrics::Metrics;
use self::scheduler::{Event, Job, Outcome, Scheduler};
use crate::error::{Error, Result};
use crate::ops::SamplingParams;
use crate::vlm::ask_cli::ModelArgs;
use crate::vlm::config::Host;
use crate::vlm::model::{AskOptions, VideoLlm};

/// How requests are served: shared by `serve` and `batch`.
#[derive(Debug, clap::Args)]
pub struct ServingArgs {
    /// The name clients pass as `model` (default: the model directory's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Questions decoded together (each with its own KV cache; one batched step for all).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// The most new tokens an answer may have when a request sets none.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// `file://` media URLs are read only from under this directory (refused without it).
    #[arg(long)]
    pub allowed_media_dir: Option<PathBuf>,
    /// The most bytes one image or video may have (data URL, file or download).
    #[arg(long, default_value_t = 256 << 20)]
    pub max_media_bytes: u64,
    /// Seconds a media download may take.
    #[arg(long, default_value_t = 30)]
    pub media_timeout: u64,
    /// Default video sampling rate (frames per second) when a request sets none (Qwen2-VL
    /// samples by rate, default 2; InternVL uniformly, see --num-frames).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Default frames sampled uniformly from a video (InternVL's default: 16).
    #[arg(long)]
    pub num_frames: Option<usize>,
    /// Default most frames a video is sampled to (by rate) when a request sets none (768).
    #[arg(long)]
    pub max_frames: Option<usize>,
    /// Default most pixels an image or frame is resized to (Qwen2-VL).
    #[arg(long)]
    pub max_pixels: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model_args: ModelArgs,
    #[command(flatten)]
    pub serving: ServingArgs,
    /// The address to listen on (loopback by default: pass 0.0.0.0 to expose the server, with
    /// --api-key).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on /v1/* and /metrics (also read from
    /// LINVT_API_KEY).
    #[arg(long, env = "LINVT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests that may wait for the model; beyond it a request gets 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// The largest request body in bytes (a video as a data URL is ~4/3 of the file).
    #[arg(long, default_value_t = 384 << 20)]
    pub max_body_bytes: usize,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
}

/// What every handler shares.
pub struct AppState {
    pub model_name: String,
    pub scheduler: Scheduler,
    pub policy: MediaPolicy,
    pub client: reqwest::Client,
    pub max_tokens: usize,
    pub context: usize,
    pub api_key: Option<String>,
    pub draining: AtomicBool,
    pub created: u64,
    next_id: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ServingArgs {
    /// Loads the model on its thread and builds the shared state.
    pub fn start(
        &self,
        m: &ModelArgs,
        queue: usize,
        api_key: Option<String>,
    ) -> Result<Arc<AppState>> {
        let (config, _) = crate::vlm::model::open_model(&m.model, m.mmproj.as_deref())?;
        let allowed_dir = match &self.allowed_media_dir {
            Some(d) => Some(d.canonicalize().map_err(|e| Error::io(d, e))?),
            None => None,
        };
        let name = self.served_model_name.clone().unwrap_or_else(|| {
            m.model
                .file_name()
                .map_or("model".into(), |n| n.to_string_lossy().into_owned())
        });
        let metrics = Arc::new(Metrics::default());
        let (dir, load) = (m.model.clone(), m.load_options());
        eprintln!("loading {} …", dir.display());
        let scheduler = Scheduler::start(
            move || VideoLlm::load_with(&dir, &load, &mut |_, _| {}),
            self.parallel as usize,
            queue,
            metrics,
        )?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(self.media_timeout))
            .build()
            .map_err(|e| Error::input(format!("cannot set up the media client: {e}")))?;
        Ok(Arc::new(AppState {
            model_name: name,
            scheduler,
            policy: MediaPolicy {
                allowed_dir,
                max_bytes: self.max_media_bytes,
                timeout: Duration::from_secs(self.media_timeout),
                by_time: matches!(config.host, Host::Qwen2Vl(_)),
                defaults: VideoBudget {
                    fps: self.fps,
                    num_frames: self.num_frames,
                    max_frames: self.max_frames,
                    max_pixels: self.max_pixels,
                    max_tiles: None,
                },
            },
            client,
            max_tokens: self.max_tokens,
            context: config.llm.max_positions,
            api_key,
            draining: AtomicBool::new(false),
            created: unix_now(),
            next_id: AtomicU64::new(0),
        }))
    }
}

impl AppState {
    fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("chatcmpl-{:x}{n:06x}", self.created)
    }

    /// A checked request as a question for the model, its media read and decoded.
    pub async fn job(
        &self,
        req: &ChatRequest,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Job, ApiError> {
        let (visual, fps) =
            media::load(&req.media, &req.budget, &self.policy, &self.client).await?;
        let d = &self.policy.defaults;
        let temperature = req.temperature.unwrap_or(1.0);
        let opts = AskOptions {
            max_new_tokens: req.max_tokens.unwrap_or(self.max_tokens).min(self.context),
            sampling: SamplingParams {
                temperature,
                top_k: 0,
                top_p: req.top_p.unwrap_or(1.0),
                // No seed: a fresh one per request (OpenAI's sampling is not reproducible
                // without one either).
                seed: req.seed.unwrap_or_else(|| {
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64)
                }),
            },
            provenance: false,
            max_tiles: req.budget.max_tiles,
            fps,
            max_pixels: req.budget.max_pixels.or(d.max_pixels),
            turns: req.turns.clone(),
        };
        Ok(Job {
            visual,
            question: req.question.clone(),
            opts,
            stop: req.stop.clone(),
            events,
        })
    }

    /// Parses, checks the model name, reads the media and queues the question.
    async fn submit(
        &self,
        body: &Value,
    ) -> Result<(ChatRequest, mpsc::UnboundedReceiver<Event>), ApiError> {
        let req = api::parse_chat(body)?;
        if req.model != self.model_name {
            return Err(ApiError {
                status: 404,
                message: format!(
                    "the model `{}` does not exist; this server serves `{}`",
                    req.model, self.model_name
                ),
                kind: "invalid_request_error",
                param: Some("model".into()),
                code: Some("model_not_found"),
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let job = self.job(&req, tx).await?;
        self.scheduler.submit(job)?;
        Ok((req, rx))
    }

    /// The whole answer of a queued question: its text and outcome.
    pub async fn collect(
        rx: &mut mpsc::UnboundedReceiver<Event>,
    ) -> Result<(String, Outcome), ApiError> {
        let mut text = String::new();
        while let Some(e) = rx.recv().await {
            match e {
                Event::Text(t) => text.push_str(&t),
                Event::Done(o) => return Ok((text, o)),
                Event::Failed(err) => return Err(err),
            }
        }
        Err(ApiError::server(
            "the model thread stopped before answering",
        ))
    }

    /// One chat request answered in full (the batch runner's path; `stream` is ignored).
    pub async fn answer(&self, body: &Value) -> Result<Value, ApiError> {
        let (req, mut rx) = self.submit(body).await?;
        let (text, o) = Self::collect(&mut rx).await?;
        Ok(api::completion(
            &self.request_id(),
            &req.model,
            unix_now(),
            &text,
            o.finish_reason,
            &o.usage,
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.body())).into_response();
        if self.status == 429 {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

async fn chat(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    match chat_inner(&s, body).await {
        Ok(r) => r,
        Err(e) => {
            if e.status < 500 && e.status != 429 {
                s.scheduler.metrics.bad_request();
            }
            e.into_response()
        }
    }
}

async fn chat_inner(
    s: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if s.draining.load(Ordering::Relaxed) {
        return Err(ApiError {
            status: 503,
            message: "the server is shutting down".into(),
            kind: "server_error",
            param: None,
            code: Some("shutting_down"),
        });
    }
    let body = body.map_err(|e| ApiError {
        status: e.status().as_u16(),
        message: format!("cannot read the request body: {e}"),
        kind: "invalid_request_error",
        param: None,
        code: None,
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(None, format!("the body is not valid JSON: {e}")))?;
    let (req, mut rx) = s.submit(&value).await?;
    let id = s.request_id();
    let created = unix_now();
    if !req.stream {
        let (text, o) = AppState::collect(&mut rx).await?;
        let body = api::completion(&id, &req.model, created, &text, o.finish_reason, &o.usage);
        return Ok(Json(body).into_response());
    }
    // The first event before the stream opens: a question that fails to start (too long for
    // the context, a model error) is then a plain error response, not a broken stream.
    let first = match rx.recv().await {
        Some(Event::Failed(e)) => return Err(e),
        Some(e) => e,
        None => {
            return Err(ApiError::server(
                "the model thread stopped before answering",
            ))
        }
    };
    let model = req.model.clone();
    let usage = req.stream_usage;
    let chunk = move |delta: Value, finish: Option<&str>, u: Option<&api::Usage>| {
        SseEvent::default().data(api::chunk(&id, &model, created, delta, finish, u).to_string())
    };
    let role = chunk(json!({"role": "assistant", "content": ""}), None, None);
    // Each event as its SSE lines; the stream ends when the model thread drops the channel,
    // which it does right after the last event (done or failed).
    let lines = move |event: Event| -> Vec<SseEvent> {
        let done = || SseEvent::default().data("[DONE]");
        match event {
            Event::Text(t) => vec![chunk(json!({"content": t}), None, None)],
            Event::Done(o) => {
                let mut out = vec![chunk(json!({}), Some(o.finish_reason), None)];
                if usage {
                    out.push(chunk(json!({}), None, Some(&o.usage)));
                }
                out.push(done());
                out
            }
            Event::Failed(e) => vec![SseEvent::default().data(e.body().to_string()), done()],
        }
    };
    let rest = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let stream = stream::once(async { role })
        .chain(
            stream::once(async { first })
                .chain(rest)
                .flat_map(move |e| stream::iter(lines(e))),
        )
        .map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn models(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": s.model_name, "object": "model", "created": s.created, "owned_by": "linvt",
    }]}))
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    let status = match (s.draining.load(Ordering::Relaxed), s.scheduler.alive()) {
        (false, true) => return Json(json!({"status": "ok"})).into_response(),
        (true, _) => "shutting down",
        (false, false) => "the model thread has stopped",
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": status})),
    )
        .into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.scheduler.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError {
        status: 404,
        message: "no such endpoint; this server has POST /v1/chat/completions, GET /v1/models, /health and /metrics".into(),
        kind: "not_found_error",
        param: None,
        code: None,
    }
}

/// `Authorization: Bearer KEY` on everything but /health when a key is set.
async fn auth(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(key) = &s.api_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if req.uri().path() != "/health" && given != Some(key.as_str()) {
            return ApiError {
                status: 401,
                message: "a valid API key is required: send `Authorization: Bearer KEY`".into(),
                kind: "authentication_error",
                param: None,
                code: Some("invalid_api_key"),
            }
            .into_response();
        }
    }
    next.run(req).await
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub fn run(a: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::input(format!("cannot start the async runtime: {e}")))?;
    let state = a.serving.start(&a.model_args, a.queue, a.api_key.clone())?;
    runtime.block_on(async move {
        let addr: SocketAddr = format!("{}:{}", a.host, a.port)
            .parse()
            .map_err(|e| Error::input(format!("--host {} --port {}: {e}", a.host, a.port)))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::input(format!("cannot listen on {addr}: {e}; is another server using the port? (--port)")))?;
        if a.api_key.is_none() && !addr.ip().is_loopback() {
            eprintln!("warning: listening on {addr} without --api-key: anyone who can reach it may use the model");
        }
        eprintln!("serving `{}` on http://{addr}/v1 (POST /v1/chat/completions)", state.model_name);
        let app = router(state.clone(), a.max_body_bytes);
        let stop = Arc::new(tokio::sync::Notify::new());
        let notified = stop.clone();
        let draining = state.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.draining.store(true, Ordering::Relaxed);
            eprintln!("shutting down: finishing in-flight requests (at most {} s)", a.shutdown_timeout);
            notified.notify_one();
        });
        let deadline = async {
            stop.notified().await;
            tokio::time::sleep(Duration::from_secs(a.shutdown_timeout)).await;
        };
        tokio::select! {
            r = server => r.map_err(|e| Error::input(format!("the server stopped: {e}"))),
            _ = deadline => {
                eprintln!("shutdown deadline passed; requests still running were cut");
                Ok(())
            }
        }
    })
}
