//! The embedded OpenAI-compatible server: tests, calibration, the default target, and the HTTP
//! surface of the simulator.
//!
//! The HTTP layer here (routes, SSE framing like vLLM's, usage, error bodies, fault injection,
//! counters) is generic over a [`Backend`] that decides *when* tokens come out:
//! [`FixedTiming`] (fixed TTFT/ITL) or the simulator's engine model.
//!
//! Routes: `GET /health`, `GET /v1/models`, `GET /version`, `GET /metrics`,
//! `POST /v1/completions`, `POST /v1/chat/completions` (streaming and not).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::{sync::Arc, time::Duration};
//! use servebench::server::{spawn_local, FixedTiming, FixedTimingConfig, ServerOptions};
//! let backend = FixedTiming::new(FixedTimingConfig {
//!     ttft: Duration::from_millis(50),
//!     itl: Duration::from_millis(10),
//!     ..Default::default()
//! });
//! let server = spawn_local(Arc::new(backend), ServerOptions::default()).await?;
//! println!("serving on {}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod backend;
mod faults;
mod fixed;
mod sse;
mod stats;
pub mod timer;
mod wire;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::watch;

pub use backend::{
    output_length, stream_from_channel, stream_from_unbounded, Backend, FinishReason, GenEvent,
    GenStream, GenerateRequest,
};
pub use faults::{FaultConfig, FaultConfigError, FaultKind, FaultPlan};
pub use fixed::{FixedTiming, FixedTimingConfig};
pub use stats::{RequestOutcome, ServerStats};
pub use wire::{answer_text, estimate_tokens, render_chat, words as output_words};

use sse::{shutdown_future, AbortBody, ChunkTemplate, RequestGuard, SseStream, StreamSetup};
use wire::{Endpoint, Rejection, ResponseMeta};

/// Server settings (the CLI maps its flags onto this; no clap here).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOptions {
    /// The served model name: listed by `/v1/models`, echoed in responses. A request naming
    /// another model gets 404 (`NotFoundError`), as from vLLM; a request without `model` is
    /// served.
    pub model: String,
    /// Context length: `prompt_tokens + max_tokens` above it is rejected with 400 (vLLM's
    /// rule), and a chat request without `max_tokens` may generate up to what is left of it.
    /// Completions default to 16 tokens, as in the OpenAI API.
    pub max_model_len: u32,
    /// Fault injection probabilities and parameters (none by default).
    pub faults: FaultConfig,
    /// Seed of the fault decisions (see [`FaultPlan`]).
    pub seed: u64,
    /// Answer like a reasoning model served with a reasoning parser (chat only; `None`: plain
    /// answers).
    pub reasoning: Option<Reasoning>,
    /// Request fields answered with 422 as Hugging Face `transformers serve` answers any field
    /// outside its schema (`{"detail": "Unexpected fields in the request: {...}"}`): the strict
    /// server a client's preflight must learn to talk to. A dotted name is a nested field
    /// (`stream_options.continuous_usage_stats`). Empty: every field is accepted.
    pub reject_fields: Vec<String>,
}

/// Reasoning-model emulation: the first `tokens` tokens of every chat answer are thinking,
/// streamed in `delta.<field>` as vLLM and SGLang do with a reasoning parser, the rest is the
/// answer in `delta.content`. An answer cut by `max_tokens` before `tokens` is all reasoning,
/// as a real reasoning model's would be. Structured-output requests answer without reasoning
/// (their answer is the constrained document). Completions have no reasoning field: unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Reasoning {
    pub tokens: u32,
    pub field: ReasoningField,
}

/// Where a reasoning parser puts the thinking text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningField {
    /// `reasoning_content`: SGLang, DeepSeek's API, and vLLM until its rename (vLLM PR #27752,
    /// late 2025; the old name was removed in early 2026, PR #33402).
    #[default]
    ReasoningContent,
    /// `reasoning`: vLLM since that rename (OpenAI's guidance; also OpenRouter's name).
    Reasoning,
}

impl ReasoningField {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningField::ReasoningContent => "reasoning_content",
            ReasoningField::Reasoning => "reasoning",
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            model: "servebench-fixed".into(),
            max_model_len: 32_768,
            faults: FaultConfig::default(),
            seed: 0,
            reasoning: None,
            reject_fields: Vec::new(),
        }
    }
}

/// Server options that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionsError {
    #[error("the served model name is empty; give a name such as `servebench-fixed`")]
    EmptyModel,
    #[error("max_model_len is 0; give the context length in tokens (for example 32768)")]
    ZeroContext,
    #[error(transparent)]
    Faults(#[from] FaultConfigError),
}

impl ServerOptions {
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.model.trim().is_empty() {
            return Err(OptionsError::EmptyModel);
        }
        if self.max_model_len == 0 {
            return Err(OptionsError::ZeroContext);
        }
        self.faults.validate()?;
        Ok(())
    }
}

/// Default completion length on `/v1/completions` when `max_tokens` is absent (OpenAI's).
const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// Largest request body accepted (prompts of a few hundred thousand tokens fit).
const MAX_BODY_BYTES: usize = 64 << 20;

/// Handle on a built router: its counters and its shutdown switch.
#[derive(Debug, Clone)]
pub struct ServerControl {
    stats: Arc<ServerStats>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl ServerControl {
    /// The server's counters (faults injected, requests by outcome, tokens).
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// Cut every response in progress (streams end without `[DONE]`, the connection closes)
    /// and, when served by [`spawn_local`]/[`spawn_dedicated`], stop accepting connections.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }
}

struct Shared {
    backend: Arc<dyn Backend>,
    model: String,
    /// The model name as a JSON string, rendered once for the chunk templates.
    model_json: String,
    max_model_len: u32,
    faults: Arc<FaultConfig>,
    plan: FaultPlan,
    stats: Arc<ServerStats>,
    next_index: AtomicU64,
    started: u64,
    shutdown: watch::Receiver<bool>,
    reasoning: Option<Reasoning>,
    reject_fields: Vec<String>,
}

/// The router, without a handle. Use [`app_with_control`] to read counters in-process.
pub fn app(backend: Arc<dyn Backend>, opts: ServerOptions) -> Router {
    app_with_control(backend, opts).0
}

/// The router and its [`ServerControl`]. Options are used as given: call
/// [`ServerOptions::validate`] first to reject bad ones with a message.
pub fn app_with_control(backend: Arc<dyn Backend>, opts: ServerOptions) -> (Router, ServerControl) {
    let (tx, rx) = watch::channel(false);
    let control = ServerControl {
        stats: Arc::new(ServerStats::default()),
        shutdown: Arc::new(tx),
    };
    let shared = Arc::new(Shared {
        backend,
        model_json: serde_json::Value::from(opts.model.as_str()).to_string(),
        model: opts.model,
        max_model_len: opts.max_model_len,
        plan: FaultPlan::new(&opts.faults, opts.seed),
        faults: Arc::new(opts.faults),
        stats: Arc::clone(&control.stats),
        next_index: AtomicU64::new(0),
        started: unix_now(),
        shutdown: rx,
        reasoning: opts.reasoning,
        reject_fields: opts.reject_fields,
    });
    let router = Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared);
    (router, control)
}

/// Serve `router` on `listener` until the process ends (TCP_NODELAY on every connection:
/// small SSE frames must not wait for Nagle).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> io::Result<()> {
    axum::serve(listener.tap_io(set_nodelay), router).await
}

/// Serve until `signal` resolves, then finish gracefully (idle connections close; responses
/// in progress finish unless cut by [`ServerControl::begin_shutdown`]).
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener.tap_io(set_nodelay), router)
        .with_graceful_shutdown(signal)
        .await
}

fn set_nodelay(tcp: &mut tokio::net::TcpStream) {
    // Best effort: a socket that refuses it still works, only with more latency.
    let _ = tcp.set_nodelay(true);
}

/// A server running in the background on 127.0.0.1. Dropping it shuts it down (responses in
/// progress are cut); [`RunningServer::shutdown`] also waits for it to stop.
#[derive(Debug)]
pub struct RunningServer {
    url: String,
    addr: SocketAddr,
    control: ServerControl,
    task: Option<ServerTask>,
}

#[derive(Debug)]
enum ServerTask {
    Local(tokio::task::JoinHandle<io::Result<()>>),
    Thread(tokio::sync::oneshot::Receiver<()>),
}

impl RunningServer {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:41234` (routes add `/v1/…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<ServerStats> {
        self.control.stats()
    }

    pub fn control(&self) -> &ServerControl {
        &self.control
    }

    /// Stop: cut responses in progress, close connections, and wait (at most 5 s) for the
    /// server to finish.
    pub async fn shutdown(mut self) {
        self.control.begin_shutdown();
        let wait = Duration::from_secs(5);
        match self.task.take() {
            Some(ServerTask::Local(handle)) => {
                let abort = handle.abort_handle();
                if tokio::time::timeout(wait, handle).await.is_err() {
                    abort.abort();
                }
            }
            Some(ServerTask::Thread(done)) => {
                let _ = tokio::time::timeout(wait, done).await;
            }
            None => {}
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.control.begin_shutdown();
    }
}

/// Accept queue length: a load generator opens hundreds of connections at once, and an
/// overflowing queue turns into connect delays of a second (SYN retransmission).
const LISTEN_BACKLOG: u32 = 4096;

/// Bind 127.0.0.1 on a free port. Must run inside a tokio runtime context (the listener is
/// registered with that runtime's reactor).
fn bind_loopback() -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    let hint = "could not bind the embedded server to a free port on 127.0.0.1; is the loopback interface up?";
    let socket = tokio::net::TcpSocket::new_v4().context(hint)?;
    socket
        .bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)))
        .context(hint)?;
    socket.listen(LISTEN_BACKLOG).context(hint)
}

/// Start the server on a free port of 127.0.0.1, on the current tokio runtime.
pub async fn spawn_local(
    backend: Arc<dyn Backend>,
    opts: ServerOptions,
) -> anyhow::Result<RunningServer> {
    opts.validate()?;
    let listener = bind_loopback()?;
    let addr = listener.local_addr()?;
    let (router, control) = app_with_control(backend, opts);
    let handle = tokio::spawn(serve_until(listener, router, control.signal()));
    let server = RunningServer {
        url: format!("http://{addr}"),
        addr,
        control,
        task: Some(ServerTask::Local(handle)),
    };
    await_ready(addr).await?;
    Ok(server)
}

/// Start the server on a free port of 127.0.0.1 on its own runtime, in a thread of its own
/// with `worker_threads` workers (1: a current-thread runtime). Use this when the client under
/// test runs in the same process, so the server's work does not queue behind the client's.
/// Callable from inside or outside a runtime.
pub fn spawn_dedicated(
    backend: Arc<dyn Backend>,
    opts: ServerOptions,
    worker_threads: usize,
) -> anyhow::Result<RunningServer> {
    use anyhow::Context as _;
    opts.validate()?;
    let (router, control) = app_with_control(backend, opts);
    let runtime = if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .thread_name("servebench-server")
            .enable_all()
            .build()
    }
    .context("could not start a runtime for the embedded server")?;
    let listener = {
        let _in_runtime = runtime.enter();
        bind_loopback()?
    };
    let addr = listener.local_addr()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let signal = control.signal();
    std::thread::Builder::new()
        .name("servebench-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                let _ = serve_until(listener, router, signal).await;
            });
            let _ = done_tx.send(());
        })
        .context("could not start the embedded server's thread")?;
    let server = RunningServer {
        url: format!("http://{addr}"),
        addr,
        control,
        task: Some(ServerTask::Thread(done_rx)),
    };
    await_ready_blocking(addr)?;
    Ok(server)
}

/// Readiness: one `GET /health` answered with 200. Besides proving the server is up, it runs
/// the accept and HTTP code paths once, so the first measured requests do not pay for a cold
/// start.
const HEALTH_REQUEST: &[u8] =
    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
const READY_TIMEOUT: Duration = Duration::from_secs(5);

fn check_health(addr: SocketAddr, answer: io::Result<Vec<u8>>) -> anyhow::Result<()> {
    match answer {
        Ok(bytes) if bytes.starts_with(b"HTTP/1.1 200") => Ok(()),
        Ok(bytes) => anyhow::bail!(
            "the embedded server on {addr} answered /health with {:?} instead of 200",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "the embedded server on {addr} did not answer /health"
        ))),
    }
}

async fn await_ready(addr: SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(HEALTH_REQUEST).await?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await?;
        Ok(answer)
    };
    let answer = tokio::time::timeout(READY_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer within 5 s",
            ))
        });
    check_health(addr, answer)
}

fn await_ready_blocking(addr: SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let ask = || -> io::Result<Vec<u8>> {
        let mut tcp = std::net::TcpStream::connect_timeout(&addr, READY_TIMEOUT)?;
        tcp.set_read_timeout(Some(READY_TIMEOUT))?;
        tcp.write_all(HEALTH_REQUEST)?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer)?;
        Ok(answer)
    };
    check_health(addr, ask())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn error_response(status: StatusCode, kind: &str, message: &str, param: Option<&str>) -> Response {
    let body = wire::error_body(message, kind, param, status.as_u16());
    json_response(status, body.to_string())
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    let body = wire::models_list(&s.model, s.started, s.max_model_len);
    json_response(StatusCode::OK, body.to_string())
}

async fn version(State(s): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, s.backend.version().to_string())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut text = s.backend.metrics().unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&s.stats.prometheus());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn unknown_route() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "NotFoundError",
        "no such route; the embedded server serves /v1/completions, /v1/chat/completions, /v1/models, /health, /version and /metrics",
        None,
    )
}

async fn completions(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    generate(s, Endpoint::Completions, body).await
}

async fn chat_completions(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    generate(s, Endpoint::Chat, body).await
}

fn reject(s: &Shared, r: Rejection) -> Response {
    let outcome = if r.status == 404 {
        RequestOutcome::NotFound
    } else {
        RequestOutcome::BadRequest
    };
    s.stats.record_outcome(outcome);
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    error_response(status, r.kind, &r.message, r.param)
}

/// Validate a parsed request against the server's model and context.
fn admit(
    s: &Shared,
    endpoint: Endpoint,
    parsed: &wire::ParsedRequest,
    received_at: Instant,
) -> Result<GenerateRequest, Rejection> {
    if let Some(model) = parsed.model.as_deref() {
        if model != s.model {
            return Err(Rejection {
                status: 404,
                kind: "NotFoundError",
                message: format!("The model `{model}` does not exist."),
                param: Some("model"),
            });
        }
    }
    let context_left = s.max_model_len.saturating_sub(parsed.prompt_tokens);
    let max_tokens = match (parsed.max_tokens, endpoint) {
        (Some(m), _) => m,
        (None, Endpoint::Completions) => COMPLETIONS_DEFAULT_MAX_TOKENS,
        (None, Endpoint::Chat) => context_left,
    };
    let asked = u64::from(parsed.prompt_tokens) + u64::from(max_tokens);
    if asked > u64::from(s.max_model_len) || max_tokens == 0 {
        return Err(Rejection::bad_request(
            format!(
                "This model's maximum context length is {} tokens. However, you requested {asked} tokens ({} in the prompt, {max_tokens} in the completion). Please reduce the length of the prompt or completion.",
                s.max_model_len, parsed.prompt_tokens
            ),
            Some("max_tokens"),
        ));
    }
    Ok(GenerateRequest {
        index: 0,
        received_at,
        prompt: parsed.prompt.clone(),
        prompt_tokens: parsed.prompt_tokens,
        max_tokens,
        min_tokens: parsed.min_tokens.min(max_tokens),
        ignore_eos: parsed.ignore_eos,
        chat: endpoint == Endpoint::Chat,
        structured: parsed.structured,
        answer_tokens: None,
        grammar: parsed.constraint.as_ref().map(|c| c.key()),
        stream: parsed.stream,
    })
}

async fn generate(s: Arc<Shared>, endpoint: Endpoint, body: Bytes) -> Response {
    let received_at = Instant::now();
    if !s.reject_fields.is_empty() {
        let unexpected = wire::present_fields(&body, &s.reject_fields);
        if !unexpected.is_empty() {
            s.stats.record_outcome(RequestOutcome::BadRequest);
            let body = wire::unexpected_fields_body(&unexpected);
            return json_response(StatusCode::UNPROCESSABLE_ENTITY, body.to_string());
        }
    }
    let parsed = match wire::parse_request(endpoint, &body) {
        Ok(p) => p,
        Err(r) => return reject(&s, r),
    };
    let mut req = match admit(&s, endpoint, &parsed, received_at) {
        Ok(req) => req,
        Err(r) => return reject(&s, r),
    };
    if let Err(message) = s.backend.check(&req) {
        return reject(&s, Rejection::bad_request(message, None));
    }
    req.index = s.next_index.fetch_add(1, Ordering::Relaxed);
    let answer = parsed
        .constraint
        .as_ref()
        .and_then(|c| structured_answer(c, req.index));
    req.answer_tokens = answer.as_ref().map(|p| p.len() as u32);
    let fault = s.plan.decide(req.index);
    let mut guard = RequestGuard::admit(Arc::clone(&s.stats), req.prompt_tokens);
    if let Some(kind) = fault.filter(|k| k.is_http_status()) {
        guard.fault(kind);
        guard.end();
        return status_fault(kind, s.faults.retry_after_secs);
    }
    if parsed.stream && fault == Some(FaultKind::NotSse) {
        guard.fault(FaultKind::NotSse);
        guard.end();
        return not_sse_page(req.index);
    }
    let prefix = match endpoint {
        Endpoint::Completions => "cmpl",
        Endpoint::Chat => "chatcmpl",
    };
    let meta = ResponseMeta {
        id: format!("{prefix}-{:016x}", req.index),
        created: unix_now(),
        model: s.model.clone(),
    };
    let prompt_tokens = req.prompt_tokens;
    // A constrained answer is the document itself: no thinking before it.
    let reasoning = s
        .reasoning
        .filter(|_| endpoint == Endpoint::Chat && answer.is_none());
    let gen = s.backend.generate(req);
    if parsed.stream {
        let setup = StreamSetup {
            template: ChunkTemplate::new(&meta, &s.model_json, endpoint == Endpoint::Chat)
                .with_answer(answer)
                .with_reasoning(reasoning),
            prompt_tokens,
            include_usage: parsed.include_usage,
            continuous_usage: parsed.continuous_usage,
            fault,
            faults: Arc::clone(&s.faults),
        };
        let stream = SseStream::new(gen, setup, guard, shutdown_future(s.shutdown.clone()));
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            Body::from_stream(stream),
        )
            .into_response()
    } else {
        let whole = Whole {
            endpoint,
            meta,
            prompt_tokens,
            fault,
            answer,
            reasoning,
        };
        whole.respond(&s, gen, guard).await
    }
}

fn status_fault(kind: FaultKind, retry_after_secs: u32) -> Response {
    let message = format!("injected fault: {}", kind.label());
    match kind {
        FaultKind::Http503 => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            &message,
            None,
        ),
        FaultKind::Http429 => {
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitError",
                &message,
                None,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        _ => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            &message,
            None,
        ),
    }
}

/// The [`FaultKind::NotSse`] answer: 200 with a page where an SSE stream was asked for, as a
/// misconfigured proxy or gateway sends. An HTML error page on even indexes, a JSON document
/// that is not a completion on odd ones.
fn not_sse_page(index: u64) -> Response {
    if index % 2 == 0 {
        let html = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n\
                    <body><h1>502 Bad Gateway</h1><p>injected fault: not_sse</p></body></html>\n";
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html,
        )
            .into_response()
    } else {
        json_response(
            StatusCode::OK,
            r#"{"object":"list","data":[],"note":"injected fault: not_sse"}"#.to_string(),
        )
    }
}

/// A non-streaming response in the making.
struct Whole {
    endpoint: Endpoint,
    meta: ResponseMeta,
    prompt_tokens: u32,
    fault: Option<FaultKind>,
    answer: Option<Arc<Vec<String>>>,
    reasoning: Option<Reasoning>,
}

/// The token pieces of a constrained answer: a valid instance of the schema (or a match of
/// the regex), seeded by the request's index so a run is reproducible. `None` when the
/// generator does not handle the constraint: the answer is then the usual filler text, which
/// the client's check reports as invalid rather than passing a schema nobody satisfied.
pub fn structured_answer(
    c: &crate::structured::Constraint,
    index: u64,
) -> Option<Arc<Vec<String>>> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(index ^ c.key());
    let text = crate::structured::generate(c, &mut rng).ok()?;
    Some(Arc::new(crate::structured::token_pieces(&text)))
}

/// Drain a generation: total tokens and the finish reason, or the backend's error.
async fn collect(mut gen: GenStream) -> Result<(u32, FinishReason), String> {
    let mut tokens: u32 = 0;
    while let Some(event) = gen.next().await {
        match event {
            GenEvent::Tokens { count, finish } => {
                tokens = tokens.saturating_add(count);
                if let Some(reason) = finish {
                    return Ok((tokens, reason));
                }
            }
            GenEvent::Finished(reason) => return Ok((tokens, reason)),
            GenEvent::Error(message) => return Err(message),
        }
    }
    Err("the backend ended the stream without a finish reason".into())
}

impl Whole {
    async fn respond(self, s: &Shared, gen: GenStream, mut guard: RequestGuard) -> Response {
        let mut shutdown = shutdown_future(s.shutdown.clone());
        let collected = tokio::select! {
            c = collect(gen) => c,
            _ = &mut shutdown => return shutting_down(),
        };
        let (tokens, reason) = match collected {
            Ok(done) => done,
            Err(message) => {
                guard.set_outcome(RequestOutcome::BackendError);
                guard.end();
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    &message,
                    None,
                );
            }
        };
        let mut pad = 0;
        match self.fault {
            Some(FaultKind::Stall) => {
                guard.fault(FaultKind::Stall);
                let stall = tokio::time::sleep(sse::bounded(s.faults.stall_for));
                tokio::select! {
                    _ = stall => {}
                    _ = &mut shutdown => return shutting_down(),
                }
            }
            Some(kind @ (FaultKind::ErrorEvent | FaultKind::Error200)) => {
                guard.fault(kind);
                guard.end();
                let message = format!("injected fault: {}", kind.label());
                let body = wire::error_body(&message, "InternalServerError", None, 500);
                return json_response(StatusCode::OK, body.to_string());
            }
            Some(FaultKind::HugeChunk) => {
                guard.fault(FaultKind::HugeChunk);
                pad = s.faults.huge_chunk_bytes;
            }
            _ => {}
        }
        let thinking = self.reasoning.map_or(0, |r| r.tokens.min(tokens));
        let text = match &self.answer {
            Some(pieces) => {
                let mut t = wire::answer_text(pieces, tokens);
                t.push_str(&wire::words(0, 0, pad));
                t
            }
            None => wire::words(thinking, tokens - thinking, pad),
        };
        let mut body = wire::full_response(
            self.endpoint,
            &self.meta,
            &text,
            reason,
            self.prompt_tokens,
            tokens,
        );
        if let Some(r) = self.reasoning {
            let message = &mut body["choices"][0]["message"];
            message[r.field.as_str()] = wire::words(0, thinking, 0).into();
            if thinking == tokens && pad == 0 {
                // vLLM's parser leaves no content when the answer never got past thinking.
                message["content"] = serde_json::Value::Null;
            }
        }
        let body = body.to_string();
        match self.fault {
            Some(FaultKind::Disconnect) => {
                guard.fault(FaultKind::Disconnect);
                let cut = body.len() / 2;
                let half = Bytes::from(body).slice(..cut);
                let stream = AbortBody::new(half, guard);
                return (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    Body::from_stream(stream),
                )
                    .into_response();
            }
            Some(FaultKind::MalformedChunk) => {
                guard.fault(FaultKind::MalformedChunk);
                guard.end();
                let cut = body.len() / 2;
                return json_response(StatusCode::OK, body[..cut].to_string());
            }
            _ => {}
        }
        guard.stats().add_generation_tokens(tokens);
        guard.set_outcome(RequestOutcome::Ok);
        guard.end();
        json_response(StatusCode::OK, body)
    }
}

fn shutting_down() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailableError",
        "the server is shutting down",
        None,
    )
}
