//! One request → one [`RequestRecord`]: the timing points of `metrics.md`, the server's usage,
//! and the outcome. Nothing here aggregates, prints or takes a lock.
//!
//! Timing: the clock is read once per body chunk *as it comes off the socket*, before any
//! parsing, and every SSE event in that chunk carries that arrival time. Parsing cost therefore
//! never leaks into TTFT or ITL, and a chunk that carried several events is visible as such.
//!
//! Tokens: per text event, from the server's running `usage` when it streams one
//! (`usage-delta`), else the final `usage.completion_tokens` spread over the text events
//! (`usage-final`), else one per event (`events`). See [`resolve_tokens`]. A usage that cannot
//! be true is not believed ([`usage_is_suspect`]).
//!
//! End of a stream (what `vllm bench serve` and the engines do, see `docs/metrics.md`): a
//! stream is complete at `data: [DONE]`, or when the HTTP body ends cleanly after some choice
//! carried a `finish_reason` (`transformers serve` never sends `[DONE]`; the record then says
//! `done_marker: false`). A clean end with neither is `truncated`; a body that breaks is a
//! `disconnect`. The first bytes of a 200 answer to a streaming request are sniffed: JSON is
//! read as a non-streamed answer (or its error), anything else that is not SSE is `not_sse`.
//!
//! Failures never unwind: [`Client::send`] always returns a record, failed ones with a
//! [`FailureKind`] and a message that never contains the API key.

use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_TYPE, LOCATION,
};
use reqwest::{Method, Url};

use crate::launch::secret::{redact, redact_cut};
use crate::openai::{self, ChunkInfo, Endpoint, Generated, SseEvent, SseParser};
use crate::record::{FailureKind, Outcome, OutputParts, RequestRecord, TokenSource, Usage};

pub use crate::load::SendContext;

/// How to reach the server. Built once per run.
#[derive(Clone)]
pub struct ClientOptions {
    /// `http(s)://host:port`, optionally with a path prefix; a trailing `/v1` is accepted too.
    pub base_url: String,
    pub endpoint: Endpoint,
    /// Sent as `Authorization: Bearer …`; never written to a record, log or error.
    pub api_key: Option<String>,
    /// Covers the whole request: connect, headers and the complete body.
    pub request_timeout: Duration,
    pub stream: bool,
    /// Keep each response's answer text in its record (`RequestRecord::output_text`): needed to
    /// check structured output and to send a conversation's history back. Off by default: the
    /// timing path then never copies text.
    pub keep_text: bool,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("base_url", &self.base_url)
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("request_timeout", &self.request_timeout)
            .field("stream", &self.stream)
            .field("keep_text", &self.keep_text)
            .finish()
    }
}

/// Why a [`Client`] could not be built (bad configuration, before any request).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid base URL {url:?}: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("the API key is not a valid HTTP header value (control characters or non-ASCII?); check --api-key or OPENAI_API_KEY")]
    ApiKey,
    #[error("--header {name}: not a valid HTTP header name, or its value has control characters")]
    Header { name: String },
    #[error("could not build the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// The HTTP client of a run: one connection pool shared by every request; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    http: reqwest::Client,
    /// No pool: every request on a connection of its own (see [`Inner::transport`]).
    http_fresh: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    /// `--request-id-prefix`: request n is sent with `X-Request-Id: <prefix><n>`.
    request_id_prefix: Option<String>,
    stream: bool,
    keep_text: bool,
    timeout: Duration,
    /// Kept only to scrub it from error messages.
    api_key: Option<String>,
    /// The server was seen closing a kept-alive connection under a request: every later
    /// request goes out on a connection of its own. See [`exchange`].
    /// Shared by the clones `with_headers` makes before the run.
    fresh_connections: Arc<AtomicBool>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.url.as_str())
            .field("stream", &self.inner.stream)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// vLLM's request-id header (`--request-id-prefix`); vLLM's server takes it as the request id.
const X_REQUEST_ID: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("x-request-id");

/// The most body bytes read from an error response (enough for any error message).
const MAX_ERROR_BODY: usize = 64 << 10;
/// The most body bytes accepted for a non-streamed response.
const MAX_RESPONSE_BODY: usize = 64 << 20;
/// After `[DONE]`, how long to wait for the end of the body so the connection goes back to the
/// pool instead of being closed (a well-behaved server ends it at once).
const DRAIN_GRACE: Duration = Duration::from_millis(100);
/// Token events reserved up front; larger answers grow the vector as usual.
const MAX_RESERVED_EVENTS: u32 = 1 << 16;
/// Bytes of a failure message kept in a record (after the key was removed).
const MAX_MESSAGE: usize = 512;
/// Characters of a body quoted in a `not_sse` failure.
const QUOTED_CHARS: usize = 200;
/// Tokens a reported usage may exceed its bound by before it is disbelieved: speculative
/// decoding can overshoot `max_tokens` by a few draft tokens before the engine trims, and some
/// servers count a stop token. See [`usage_is_suspect`].
const USAGE_SLACK_TOKENS: u64 = 16;
/// Tokens one streamed text event is taken to carry at most when judging a usage (servers
/// stream one token per event by default; a few merge a handful). See [`usage_is_suspect`].
const MAX_TOKENS_PER_EVENT: u64 = 4;

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client, ClientError> {
        let url = endpoint_url(&opts.base_url, opts.endpoint)?;
        let loopback = is_loopback(&url);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(if opts.stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        let api_key = opts.api_key.filter(|k| !k.is_empty());
        if let Some(key) = &api_key {
            let mut v =
                HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| ClientError::ApiKey)?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let builder = |pool: bool| {
            let mut b = reqwest::Client::builder()
                .user_agent(concat!("servebench/", env!("CARGO_PKG_VERSION")))
                // One stream per connection, as every engine's own benchmark client does;
                // HTTP/2 multiplexing would make results incomparable across servers that lack
                // it.
                .http1_only()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(if pool { usize::MAX } else { 0 })
                .pool_idle_timeout(Duration::from_secs(90))
                // A benchmark measures the URL it was given, not where it redirects.
                .redirect(reqwest::redirect::Policy::none());
            if loopback {
                // A proxy from the environment must not sit between the client and a local
                // server.
                b = b.no_proxy();
            }
            b.build().map_err(ClientError::Build)
        };
        let http = builder(true)?;
        let http_fresh = builder(false)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                http_fresh,
                url,
                headers,
                request_id_prefix: None,
                stream: opts.stream,
                keep_text: opts.keep_text,
                timeout: opts.request_timeout,
                api_key,
                fresh_connections: Arc::new(AtomicBool::new(false)),
            }),
        })
    }

    /// Extra headers on every request (`--header`, after the client's own, so they can
    /// override them, as vLLM's do), and `X-Request-Id: <prefix><request id>` on each request
    /// (`--request-id-prefix`). Values of auth-like headers are marked sensitive, so no debug
    /// output shows them.
    pub fn with_headers(
        self,
        extra: &[(String, String)],
        request_id_prefix: Option<String>,
    ) -> Result<Client, ClientError> {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        for (k, v) in extra {
            let (name, value) =
                extra_header(k, v).ok_or_else(|| ClientError::Header { name: k.clone() })?;
            inner.headers.insert(name, value);
        }
        inner.request_id_prefix = request_id_prefix;
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// The full request URL (base URL + endpoint path).
    pub fn url(&self) -> &str {
        self.inner.url.as_str()
    }

    /// Open up to `n` keep-alive connections before the clock starts, so the first wave of
    /// measured requests does not pay for TCP handshakes (connection setup is the client's
    /// cost, not the server's latency). Sends `n` concurrent `GET /health` (answered by vLLM,
    /// SGLang and servebench; any answer, even 404, leaves a reusable connection). Returns
    /// how many got an answer; failures are ignored — the run reports its own.
    pub async fn prewarm(&self, n: usize) -> usize {
        let mut url = self.inner.url.clone();
        url.set_path("/health");
        url.set_query(None);
        let gets = (0..n).map(|_| {
            let req = self
                .inner
                .http
                .get(url.clone())
                .timeout(Duration::from_secs(10));
            async move {
                match req.send().await {
                    // Read the body so the connection goes back to the pool.
                    Ok(resp) => resp.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        });
        futures_util::future::join_all(gets)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count()
    }

    /// Sends one request and records what happened. Never fails: failures are records.
    ///
    /// Non-streamed requests have a single event at the arrival of the complete body, so their
    /// TTFT is the time to the whole answer (there is no earlier token to see).
    ///
    /// `sent_ns` is read just before the request is handed to the connection pool, after
    /// everything that allocates; a client too busy to write the request at once (hundreds of
    /// sends in the same instant on one thread) therefore shows up in TTFT, as it would for a
    /// user. Must run on a tokio runtime with the time driver enabled (the request timeout).
    pub async fn send(&self, body: Bytes, ctx: SendContext) -> RequestRecord {
        let inner = &*self.inner;
        let request_id = inner.request_id_prefix.as_ref().and_then(|p| {
            // The prefix was a valid header value when given; digits keep it one.
            HeaderValue::from_str(&format!("{p}{}", ctx.id)).ok()
        });
        // A cheap handle (reference-counted) for the rare resend on a fresh connection.
        let body_for_resend = body.clone();
        let request = inner.request(body, request_id.as_ref());

        // Everything that allocates happens before the clock is read.
        let mut ex = Exchange::new(&ctx);
        if inner.keep_text {
            ex.text = Some(String::new());
        }
        ex.sent = Instant::now();
        let fut = exchange(inner, request, body_for_resend, request_id, &mut ex);
        let end = match tokio::time::timeout(inner.timeout, fut).await {
            Ok(end) => end,
            Err(_) => {
                let at = Instant::now();
                // A request whose `[DONE]` arrived already is complete; only the drain timed out.
                if ex.done {
                    End::Ok { at }
                } else {
                    End::failed(
                        at,
                        FailureKind::Timeout,
                        format!(
                            "no complete response within the request timeout of {:?}",
                            inner.timeout
                        ),
                    )
                }
            }
        };
        ex.into_record(&ctx, end, inner.api_key.as_deref())
    }
}

impl crate::load::Sender for Client {
    fn send(
        &self,
        body: Bytes,
        ctx: SendContext,
    ) -> impl std::future::Future<Output = RequestRecord> + Send {
        Client::send(self, body, ctx)
    }
}

/// One `--header KEY=VALUE` as an HTTP header, its value marked sensitive when the name looks
/// like credentials (so no debug output shows it); `None` when the name or value is not valid
/// HTTP. Shared by the run's client and the preflight's.
pub fn extra_header(name: &str, value: &str) -> Option<(reqwest::header::HeaderName, HeaderValue)> {
    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).ok()?;
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(crate::config::is_sensitive_header(name.as_str()));
    Some((name, value))
}

/// Whether a URL names this machine (`localhost`, 127.0.0.0/8, `[::1]`). Every HTTP client of
/// servebench skips environment proxies for such URLs: a proxy must never sit between it and a
/// local server.
pub fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// Joins the base URL and the endpoint path, accepting the common spellings of a base URL.
fn endpoint_url(base: &str, endpoint: Endpoint) -> Result<Url, ClientError> {
    let bad = |reason: String| ClientError::BaseUrl {
        url: base.to_string(),
        reason,
    };
    let mut url = Url::parse(base.trim()).map_err(|e| {
        bad(format!(
            "{e}; expected something like http://127.0.0.1:8000"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "the scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(bad("it has no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "it must not have a query or fragment; pass only scheme, host, port and path prefix"
                .into(),
        ));
    }
    let mut prefix = url.path().trim_end_matches('/').to_string();
    // `http://host/v1` (the OpenAI SDK's convention) and a URL that already names the endpoint
    // both mean the same server.
    for suffix in [endpoint.path(), "/v1"] {
        if let Some(p) = prefix.strip_suffix(suffix) {
            prefix = p.to_string();
            break;
        }
    }
    url.set_path(&format!("{prefix}{}", endpoint.path()));
    Ok(url)
}

/// How an exchange ended (before the record is assembled).
enum End {
    Ok {
        at: Instant,
    },
    Failed {
        at: Instant,
        kind: FailureKind,
        message: String,
    },
}

impl End {
    fn failed(at: Instant, kind: FailureKind, message: String) -> End {
        End::Failed { at, kind, message }
    }
}

/// The observations of one request so far. Lives outside the timed future so that a timeout
/// keeps what was seen before it.
struct Exchange {
    epoch: Instant,
    sent: Instant,
    headers: Option<Instant>,
    first_token: Option<Instant>,
    first_content: Option<Instant>,
    last_text: Option<Instant>,
    /// (µs since sent, running usage at this event or [`NO_USAGE`]); resolved at the end.
    events: Vec<(u32, u32)>,
    every_event_has_usage: bool,
    usage: Option<Usage>,
    done: bool,
    /// Some choice of some chunk carried a `finish_reason` (with `n > 1`, any choice).
    finish_seen: bool,
    /// The body was read as an SSE stream (not a whole JSON answer).
    sse: bool,
    /// The stream ended cleanly after a `finish_reason`, without `[DONE]`: complete.
    ended_without_done: bool,
    failure: Option<(Instant, FailureKind, String)>,
    /// Sends again (see [`exchange`] for when): counted in the record, never hidden.
    resends: u32,
    /// The answer text so far, when the client keeps it (`ClientOptions::keep_text`).
    text: Option<String>,
    /// Reasoning and tool calls seen so far (`None` until the first one: plain answers pay
    /// nothing for it).
    parts: Option<Box<Parts>>,
}

/// What the stream showed of reasoning and tool calls, before tokens are resolved.
#[derive(Default)]
struct Parts {
    first_reasoning: Option<Instant>,
    /// Indices into `Exchange::events` of the reasoning events, whose resolved tokens are
    /// summed at the end.
    reasoning_events: Vec<u32>,
    tool_call_events: u32,
    first_tool_call: Option<Instant>,
}

const NO_USAGE: u32 = u32::MAX;

/// Sends again allowed per request (see [`exchange`]): a fresh connection that closes before
/// taking the request can close again.
const MAX_RESENDS: u32 = 3;

impl Exchange {
    fn new(ctx: &SendContext) -> Exchange {
        Exchange {
            epoch: ctx.epoch,
            sent: ctx.epoch,
            headers: None,
            first_token: None,
            first_content: None,
            last_text: None,
            events: Vec::with_capacity(ctx.max_tokens.min(MAX_RESERVED_EVENTS) as usize),
            every_event_has_usage: true,
            usage: None,
            done: false,
            finish_seen: false,
            sse: false,
            ended_without_done: false,
            failure: None,
            resends: 0,
            text: None,
            parts: None,
        }
    }

    fn finished(&self) -> bool {
        self.done || self.failure.is_some()
    }

    fn fail(&mut self, at: Instant, kind: FailureKind, message: String) {
        if self.failure.is_none() {
            self.failure = Some((at, kind, message));
        }
    }

    /// One SSE event that arrived (with its chunk) at `at`.
    fn on_event(&mut self, event: SseEvent<'_>, at: Instant) {
        if self.finished() {
            return; // anything after `[DONE]` or a failure does not change the record
        }
        match openai::classify_event(event) {
            ChunkInfo::Chunk {
                generated,
                usage,
                finish,
                tool_call,
            } => {
                self.finish_seen |= finish;
                if let (Some(text), SseEvent::Message { data, .. }) = (&mut self.text, event) {
                    if generated == Generated::Content {
                        // A second, text-extracting parse, only when the text is wanted (after
                        // the clock was read, so it costs the measurement nothing).
                        openai::append_content(data, text);
                    }
                }
                self.on_chunk(generated, usage, at);
                if tool_call {
                    self.on_tool_call(at);
                }
            }
            ChunkInfo::Done => self.done = true,
            ChunkInfo::Error(m) => self.fail(at, FailureKind::ServerError, m),
            ChunkInfo::Malformed(m) => self.fail(at, FailureKind::Parse, m),
        }
    }

    fn on_chunk(&mut self, generated: Generated, usage: Option<Usage>, at: Instant) {
        if usage.is_some() {
            self.usage = usage;
        }
        if !generated.is_text() {
            return;
        }
        self.first_token.get_or_insert(at);
        if generated == Generated::Content {
            self.first_content.get_or_insert(at);
        }
        self.last_text = Some(at);
        if generated == Generated::Reasoning {
            let index = self.events.len() as u32;
            let parts = self.parts.get_or_insert_with(Box::default);
            parts.first_reasoning.get_or_insert(at);
            parts.reasoning_events.push(index);
        }
        let running = match usage {
            Some(u) => u.completion_tokens.min(NO_USAGE - 1),
            None => {
                self.every_event_has_usage = false;
                NO_USAGE
            }
        };
        self.events.push((micros(self.sent, at), running));
    }

    /// A chunk with a tool-call delta (already counted as an answer event by `on_chunk`).
    fn on_tool_call(&mut self, at: Instant) {
        let parts = self.parts.get_or_insert_with(Box::default);
        parts.first_tool_call.get_or_insert(at);
        parts.tool_call_events += 1;
    }

    fn into_record(mut self, ctx: &SendContext, end: End, secret: Option<&str>) -> RequestRecord {
        let ns = |t: Instant| nanos(self.epoch, t);
        let end = match (self.failure.take(), end) {
            (Some((at, kind, message)), _) => End::failed(at, kind, message),
            (None, end) => end,
        };
        let (finished, outcome) = match end {
            End::Ok { at } => (self.last_text.unwrap_or(at), Outcome::Success),
            End::Failed { at, kind, message } => (
                at,
                Outcome::Failed {
                    kind,
                    message: scrub(message, secret),
                },
            ),
        };
        let per_event_usage = self.every_event_has_usage && !self.events.is_empty();
        // The largest count the server claimed anywhere: its final usage or a running one.
        let reported = self
            .events
            .iter()
            .map(|e| e.1)
            .filter(|&n| n != NO_USAGE)
            .chain(self.usage.map(|u| u.completion_tokens))
            .max();
        let usage_suspect = reported
            .is_some_and(|n| usage_is_suspect(n, ctx.max_tokens, self.events.len(), self.sse));
        let (token_source, output_tokens) = if usage_suspect {
            resolve_tokens(&mut self.events, false, None)
        } else {
            resolve_tokens(&mut self.events, per_event_usage, self.usage)
        };
        let output_parts = self.parts.take().map(|p| OutputParts {
            first_reasoning_ns: p.first_reasoning.map(ns),
            reasoning_tokens: p
                .reasoning_events
                .iter()
                .filter_map(|&i| self.events.get(i as usize))
                .fold(0u32, |acc, e| acc.saturating_add(e.1)),
            tool_call_events: p.tool_call_events,
            first_tool_call_ns: p.first_tool_call.map(ns),
        });
        // The reservation was for `max_tokens`; a record kept for the whole run holds only
        // what it used (bounded memory over 100k requests that stop early).
        if self.events.capacity() > 2 * self.events.len() + 16 {
            self.events.shrink_to_fit();
        }
        RequestRecord {
            id: ctx.id,
            phase: ctx.phase,
            scheduled_ns: ctx.scheduled_ns,
            slot_ns: ctx.slot_ns,
            sent_ns: ns(self.sent),
            headers_ns: self.headers.map(ns),
            first_token_ns: self.first_token.map(ns),
            first_content_ns: self.first_content.map(ns),
            finished_ns: ns(finished),
            events: self.events,
            prompt_tokens: ctx.prompt_tokens,
            max_tokens: ctx.max_tokens,
            usage: self.usage,
            output_tokens,
            token_source,
            usage_suspect,
            outcome,
            done_marker: !self.ended_without_done,
            resends: self.resends,
            // Answer text is server text: a server can echo the key in it (then it reaches the
            // journal, `--save-detailed` and structured-output checks). Removed here, whole,
            // before anything cuts it.
            output_text: self.text.map(|t| redact(t, secret)),
            conversation: None,
            turn: None,
            output_check: None,
            output_parts,
        }
    }
}

/// Turns the per-event running usage recorded during the stream into tokens per event, in
/// place, and says where the counts came from. Returns (source, total output tokens).
///
/// - `usage-delta` (every text event carried a running usage): an event gets the growth of
///   the count since the previous text event. Growth seen on chunks without text (a token whose
///   text the server held back, e.g. half a UTF-8 character) lands on the next text event, which
///   is when its text arrived; growth after the last text event (a separate finish or usage
///   chunk) lands on the last one. The total is the final usage.
/// - `usage-final`: the final `completion_tokens` spread as evenly as possible over the events
///   (the integer parts of i·total/n). A final count of 0 despite text events is not believed.
/// - `events`: one token per event (a lower bound when a server merges tokens into one chunk).
pub fn resolve_tokens(
    events: &mut [(u32, u32)],
    per_event_usage: bool,
    final_usage: Option<Usage>,
) -> (TokenSource, u32) {
    let n = events.len() as u64;
    let final_count = final_usage.map(|u| u.completion_tokens);
    if n == 0 {
        let source = if final_count.is_some() {
            TokenSource::UsageFinal
        } else {
            TokenSource::Events
        };
        return (source, 0);
    }
    match final_count {
        Some(total) if per_event_usage => {
            let mut prev = 0u32;
            for e in events.iter_mut() {
                let running = e.1;
                e.1 = running.saturating_sub(prev);
                prev = prev.max(running);
            }
            if let Some(last) = events.last_mut() {
                last.1 = last.1.saturating_add(total.saturating_sub(prev));
            }
            (TokenSource::UsageDelta, sum_tokens(events))
        }
        Some(total) if total > 0 => {
            let total = u64::from(total);
            for (i, e) in events.iter_mut().enumerate() {
                let i = i as u64;
                // Both values are ≤ total, which came from a u32.
                e.1 = ((i + 1) * total / n - i * total / n) as u32;
            }
            (TokenSource::UsageFinal, sum_tokens(events))
        }
        _ => {
            for e in events.iter_mut() {
                e.1 = 1;
            }
            (TokenSource::Events, sum_tokens(events))
        }
    }
}

/// Whether a server's `completion_tokens` (`reported`) cannot be true, so the client counts
/// tokens from the events instead. It is suspect when it exceeds every bound that could
/// justify it, of those that are known (at least one must be):
/// - `max_tokens` (when the request set it, > 0) + 16 + `max_tokens`/16: an engine stops at
///   `max_tokens`; the slack covers speculative-decoding overshoot and a counted stop token;
/// - for a stream, 4 tokens per text event + 16: servers stream one token per event (a few
///   merge a handful).
///
/// Both must be exceeded when both are known, so a server that ignores `max_tokens` but
/// streams each token is still believed, and one that merges many tokens per event is
/// believed up to `max_tokens`. A non-streamed answer has only the first bound. 4e9 tokens
/// for a request of `max_tokens` 64 is suspect by either.
pub fn usage_is_suspect(
    reported: u32,
    max_tokens: u32,
    text_events: usize,
    streamed: bool,
) -> bool {
    let max_tokens = u64::from(max_tokens);
    let by_max = (max_tokens > 0).then(|| max_tokens + USAGE_SLACK_TOKENS + max_tokens / 16);
    let by_events =
        streamed.then(|| MAX_TOKENS_PER_EVENT * text_events as u64 + USAGE_SLACK_TOKENS);
    match by_max.into_iter().chain(by_events).max() {
        Some(bound) => u64::from(reported) > bound,
        None => false,
    }
}

fn sum_tokens(events: &[(u32, u32)]) -> u32 {
    events.iter().fold(0u32, |acc, e| acc.saturating_add(e.1))
}

/// The network part of one request; every way it can end is an [`End`].
///
/// When a request is sent again (see [`SendError`] for the proof each case rests on): only
/// when no byte of it was written, or once per run for the first keep-alive connection found
/// closed by the server right under a request (after which no request reuses a connection,
/// so the case cannot recur). A reset or close after the request was written is the failure
/// `reset_after_send`: the server may have read it, and a resend would hide that.
async fn exchange(
    inner: &Inner,
    request: reqwest::Request,
    body: Bytes,
    request_id: Option<HeaderValue>,
    ex: &mut Exchange,
) -> End {
    let mut attempt = request;
    let mut resp = loop {
        let (http, pooled) = inner.transport(&mut attempt);
        let error = match http.execute(attempt).await {
            Ok(r) => break r,
            Err(e) => e,
        };
        let kind = classify_send_error(&error);
        let resend = ex.resends < MAX_RESENDS
            && match kind {
                SendError::NotWritten => true,
                SendError::ClosedBeforeResponse if pooled => {
                    // The server closes kept-alive connections under requests: from now on
                    // none is reused, so this cannot happen again. This request, and any other
                    // sent on a pooled connection before the switch (at most the concurrency),
                    // go once more on a connection of their own.
                    inner.fresh_connections.store(true, Ordering::Relaxed);
                    true
                }
                _ => false,
            };
        if !resend {
            let kind = match kind {
                SendError::Timeout => FailureKind::Timeout,
                SendError::ClosedBeforeResponse | SendError::Reset => FailureKind::ResetAfterSend,
                SendError::NotWritten | SendError::Other => FailureKind::Connect,
            };
            return End::failed(Instant::now(), kind, describe(error));
        }
        ex.resends += 1;
        attempt = inner.request(body.clone(), request_id.as_ref());
    };
    ex.headers = Some(Instant::now());
    let status = resp.status();
    if !status.is_success() {
        return http_failure(resp).await;
    }
    // A server that ignores `stream: true` and answers with one JSON body (or sends an error
    // object that way) is read as a non-streamed answer rather than as a broken stream.
    let secret = inner.api_key.as_deref();
    if !inner.stream {
        read_whole(&mut resp, ex).await
    } else if is_json(&resp) {
        read_json_for_stream(&mut resp, ex, Bytes::new(), secret).await
    } else {
        read_stream(&mut resp, ex, secret).await
    }
}

impl Inner {
    /// The POST of one body with the run's headers (and its `X-Request-Id`). Built before the
    /// clock is read: the header map is the request's one allocation.
    fn request(&self, body: Bytes, request_id: Option<&HeaderValue>) -> reqwest::Request {
        let mut request = reqwest::Request::new(Method::POST, self.url.clone());
        *request.headers_mut() = self.headers.clone();
        if let Some(v) = request_id {
            request.headers_mut().insert(X_REQUEST_ID, v.clone());
        }
        *request.body_mut() = Some(body.into());
        request
    }

    /// Picks the client to send a request with: the pooled one, or, once the server has been
    /// seen closing a kept-alive connection under a request, the one without a pool
    /// (`Connection: close`, a new connection each time). Returns whether the request may go
    /// out on a reused connection.
    fn transport(&self, request: &mut reqwest::Request) -> (&reqwest::Client, bool) {
        if self.fresh_connections.load(Ordering::Relaxed) {
            request
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            (&self.http_fresh, false)
        } else {
            (&self.http, true)
        }
    }
}

/// What a failed send (no response head) tells about whether the server got the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendError {
    /// hyper handed the request back unsent (`Error::is_canceled`): the connection closed
    /// before the request was taken from its queue, so not one byte of it was written (hyper's
    /// client dispatcher: a queued request is returned as `Canceled` with its message; once
    /// taken, every error comes without it). reqwest's pool already sends such a request again
    /// when the connection was a reused one; what reaches here is a fresh connection that
    /// closed at once. Safe to send again.
    NotWritten,
    /// The server closed the connection cleanly (EOF) before a byte of a response head:
    /// hyper's "connection closed before message completed". The request was written. This is
    /// how a server that closes its keep-alive connections after every stream looks (llama.cpp
    /// shuts the socket down right after the last chunk, while its headers say `Keep-Alive`:
    /// the next request, written before the close arrived, meets EOF; the server never reads
    /// it), and also how a server that read the request and then closed looks.
    ClosedBeforeResponse,
    /// The connection was reset (or the pipe broke) after the request started going out.
    Reset,
    Timeout,
    /// Connect errors (refused, DNS) and anything else.
    Other,
}

fn classify_send_error(e: &reqwest::Error) -> SendError {
    if e.is_timeout() {
        return SendError::Timeout;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_canceled() {
                return SendError::NotWritten;
            }
            if h.is_incomplete_message() {
                return SendError::ClosedBeforeResponse;
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            ) && !e.is_connect()
            {
                return SendError::Reset;
            }
        }
        cur = err.source();
    }
    SendError::Other
}

/// What the first non-blank bytes of a 200 answer to a streaming request look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyStart {
    /// Only whitespace (or a byte-order mark) so far.
    Blank,
    /// An SSE field (`data:`, `event:`, `id:`, `retry:`) or comment (`:`).
    Sse,
    /// `{` or `[`: one JSON document.
    Json,
    /// Anything else (`<!DOCTYPE html>`, plain text).
    Other,
}

/// Sniffs the start of a body. Whatever the content type says: servers send SSE as
/// `text/plain`, and JSON or HTML error pages as `text/event-stream`. A chunk that ends inside
/// a field name (`da`) is taken as SSE.
fn sniff(chunk: &[u8]) -> BodyStart {
    // The UTF-8 byte-order mark, which the SSE parser strips too.
    let skip = |b: &u8| b.is_ascii_whitespace() || matches!(b, 0xEF | 0xBB | 0xBF);
    let Some(i) = chunk.iter().position(|b| !skip(b)) else {
        return BodyStart::Blank;
    };
    let rest = &chunk[i..];
    const FIELDS: [&[u8]; 4] = [b"data", b"event", b"id", b"retry"];
    let sse_field = |f: &&[u8]| {
        if rest.len() <= f.len() {
            f.starts_with(rest)
        } else {
            rest.starts_with(f) && matches!(rest[f.len()], b':' | b'\n' | b'\r')
        }
    };
    match rest[0] {
        b':' => BodyStart::Sse,
        _ if FIELDS.iter().any(sse_field) => BodyStart::Sse,
        b'{' | b'[' => BodyStart::Json,
        _ => BodyStart::Other,
    }
}

async fn read_stream(resp: &mut reqwest::Response, ex: &mut Exchange, secret: Option<&str>) -> End {
    let mut parser = SseParser::new();
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                // The one clock read for everything in this chunk, before any parsing.
                let at = Instant::now();
                // Until the first non-blank byte it is not known that this is SSE at all
                // (usually decided on the first chunk; afterwards one bool test per chunk).
                if !ex.sse {
                    match sniff(&bytes) {
                        BodyStart::Blank => continue,
                        BodyStart::Sse => ex.sse = true,
                        BodyStart::Json => {
                            return read_json_for_stream(resp, ex, bytes, secret).await
                        }
                        BodyStart::Other => return not_sse(at, resp, &bytes, secret),
                    }
                }
                parser.feed(&bytes, |ev| ex.on_event(ev, at));
                if ex.failure.is_some() {
                    // Dropping the response closes the connection: the server may still be
                    // generating, and its output is of no use now.
                    return End::Ok { at };
                }
                if ex.done {
                    drain(resp).await;
                    return End::Ok { at };
                }
            }
            Ok(None) => {
                let at = Instant::now();
                if !ex.sse {
                    return not_sse(at, resp, b"", secret);
                }
                parser.finish(|ev| ex.on_event(ev, at));
                if !ex.finished() {
                    // The body ended properly: the server meant to stop here.
                    if ex.finish_seen {
                        ex.ended_without_done = true;
                    } else {
                        let message = format!(
                            "the stream ended cleanly after {} text events without a finish_reason \
                             or `data: [DONE]`: the answer was cut off",
                            ex.events.len()
                        );
                        ex.fail(at, FailureKind::Truncated, message);
                    }
                }
                return End::Ok { at };
            }
            Err(e) => {
                let at = Instant::now();
                let kind = if e.is_timeout() {
                    FailureKind::Timeout
                } else {
                    FailureKind::Disconnect
                };
                let message = format!("the stream broke off: {}", describe(e));
                ex.fail(at, kind, message);
                return End::Ok { at };
            }
        }
    }
}

fn is_json(resp: &reqwest::Response) -> bool {
    content_type(resp).is_some_and(|ct| {
        ct.trim_start()
            .get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case("application/json"))
    })
}

fn content_type(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// A streaming request answered with one JSON document (`first` holds its first bytes, if
/// any were read): a completion is read as a non-streamed answer, an error object is the
/// server's error, anything else is not what was asked for.
async fn read_json_for_stream(
    resp: &mut reqwest::Response,
    ex: &mut Exchange,
    first: Bytes,
    secret: Option<&str>,
) -> End {
    let body = match collect_body(resp, first.to_vec()).await {
        Ok(body) => body,
        Err(end) => return end,
    };
    let at = Instant::now();
    match openai::classify_response(&body) {
        ChunkInfo::Error(m) => End::failed(at, FailureKind::ServerError, m),
        ChunkInfo::Chunk { .. } if openai::is_completion_body(&body) => finish_whole(&body, ex, at),
        _ => not_sse(at, resp, &body, secret),
    }
}

/// A 200 answer to a streaming request that is neither SSE nor a completion: the failure
/// quotes its first characters (never the API key) and its content type.
fn not_sse(at: Instant, resp: &reqwest::Response, body: &[u8], secret: Option<&str>) -> End {
    let ct = content_type(resp).unwrap_or("no content type");
    let message = if body.trim_ascii().is_empty() {
        format!("the answer to a streaming request was an empty body ({ct}), not an SSE stream")
    } else {
        format!(
            "the answer to a streaming request is not an SSE stream ({ct}); it begins: {}",
            quote_start(body, secret)
        )
    };
    End::failed(at, FailureKind::NotSse, message)
}

/// The first [`QUOTED_CHARS`] characters of a body after leading whitespace, escaped and in
/// quotes. The key is removed before the cut, so a cut cannot leave part of it behind.
fn quote_start(body: &[u8], secret: Option<&str>) -> String {
    let body = body.trim_ascii_start();
    let window = &body[..body.len().min(16 << 10)];
    // Unbounded here (the window is the bound): only the key, and a piece of it that the
    // window's edge cut off, are removed before the quote is cut.
    let text = redact_cut(
        String::from_utf8_lossy(window).into_owned(),
        secret,
        usize::MAX,
    );
    let mut quoted: String = text.chars().take(QUOTED_CHARS).collect();
    let cut = quoted.len() < text.len();
    quoted = quoted.escape_debug().to_string();
    format!("\"{quoted}{}\"", if cut { "…" } else { "" })
}

/// Reads what is left of a finished stream so the connection can be reused.
async fn drain(resp: &mut reqwest::Response) {
    use futures_util::FutureExt as _;
    // Usually the end of the body arrived with `[DONE]`: take it without arming a timer.
    if let Some(Ok(None) | Err(_)) = resp.chunk().now_or_never() {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_GRACE, async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
}

async fn read_whole(resp: &mut reqwest::Response, ex: &mut Exchange) -> End {
    match collect_body(resp, Vec::new()).await {
        Ok(body) => finish_whole(&body, ex, Instant::now()),
        Err(end) => end,
    }
}

/// The rest of a body after `body` (bounded by [`MAX_RESPONSE_BODY`]), or how reading it failed.
async fn collect_body(resp: &mut reqwest::Response, mut body: Vec<u8>) -> Result<Vec<u8>, End> {
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                if body.len() + bytes.len() > MAX_RESPONSE_BODY {
                    return Err(End::failed(
                        Instant::now(),
                        FailureKind::Parse,
                        format!("the response body exceeded {MAX_RESPONSE_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&bytes);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                let kind = if e.is_timeout() {
                    FailureKind::Timeout
                } else {
                    FailureKind::Disconnect
                };
                let message = format!("the response broke off: {}", describe(e));
                return Err(End::failed(Instant::now(), kind, message));
            }
        }
    }
}

/// A complete non-streamed answer that arrived at `at`.
fn finish_whole(body: &[u8], ex: &mut Exchange, at: Instant) -> End {
    match openai::classify_response(body) {
        ChunkInfo::Chunk {
            generated,
            usage,
            tool_call,
            ..
        } => {
            ex.usage = usage;
            if let Some(text) = &mut ex.text {
                openai::append_response_text(body, text);
            }
            // One event for the whole answer; its tokens come from usage when given.
            let has_output = generated.is_text() || usage.is_some_and(|u| u.completion_tokens > 0);
            if has_output {
                ex.on_chunk(generated.max(Generated::Content), None, at);
            }
            if tool_call {
                ex.on_tool_call(at);
            }
            End::Ok { at }
        }
        ChunkInfo::Done => End::failed(
            at,
            FailureKind::Parse,
            "a non-streamed response body was `[DONE]`".into(),
        ),
        ChunkInfo::Error(m) => End::failed(at, FailureKind::ServerError, m),
        ChunkInfo::Malformed(m) => End::failed(at, FailureKind::Parse, m),
    }
}

/// A non-success status: the server's own message when its body has one.
async fn http_failure(mut resp: reqwest::Response) -> End {
    let status = resp.status();
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(bytes)) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    let at = Instant::now();
    let mut message = openai::error_message(&body);
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("no error message")
            .to_string();
    }
    if let Some(loc) = location.filter(|_| status.is_redirection()) {
        message = format!("redirected to {loc}; use that URL as the base URL ({message})");
    }
    End::failed(
        at,
        FailureKind::Http {
            status: status.as_u16(),
        },
        message,
    )
}

/// A transport error as one line: the error and its causes, without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Final guard on every message that leaves the client: the key is removed from the whole
/// text *before* it is cut to [`MAX_MESSAGE`] bytes, so no cut keeps part of it.
fn scrub(message: String, secret: Option<&str>) -> String {
    redact_cut(message, secret, MAX_MESSAGE)
}

fn nanos(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

fn micros(from: Instant, t: Instant) -> u32 {
    u32::try_from(t.saturating_duration_since(from).as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
