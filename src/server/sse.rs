//! The streamed (SSE) response body, framed like vLLM's, written without serde per token.
//!
//! Each response renders its constant JSON prefix (`data: {"id":…,"model":…,"choices":[`) once;
//! a token chunk is then that prefix, a static middle, the words, and a static tail — a few
//! `memcpy`s. Frames that are ready together (zero ITL, or several backend events at once)
//! are batched into one `Bytes` of up to [`BATCH_BYTES`], so hyper writes them with one
//! syscall instead of one per token.
//!
//! Shapes (vLLM 0.x):
//! - completions chunk: `{"id","object":"text_completion","created","model","choices":[{"index":0,
//!   "text","logprobs":null,"finish_reason","stop_reason":null}],"usage":null|{…}}`; the last text
//!   chunk carries `finish_reason`.
//! - chat: a role-only chunk `{"delta":{"role":"assistant","content":""}}` first (sent with
//!   the response headers, before any token, so that a client counting it as the first token
//!   is caught; vLLM sends it together with the first token), then `{"delta":{"content":…}}`.
//! - `stream_options.include_usage`: a final chunk with `"choices":[]` and `usage`;
//!   `continuous_usage_stats` adds the running `usage` to every chunk.
//! - then `data: [DONE]`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use super::backend::{FinishReason, GenEvent, GenStream};
use super::faults::{FaultConfig, FaultKind};
use super::stats::{RequestOutcome, ServerStats};
use super::wire::{push_padding, push_pieces, push_words, ResponseMeta};

/// Frames are collected into one body write until it holds this many bytes.
pub const BATCH_BYTES: usize = 16 * 1024;

/// Counts one generation request from admission to its end, exactly once.
pub(crate) struct RequestGuard {
    stats: Arc<ServerStats>,
    fault: bool,
    /// The outcome if the request ends now without a fault (`Cancelled` until it completes).
    outcome: RequestOutcome,
    ended: bool,
}

impl RequestGuard {
    pub(crate) fn admit(stats: Arc<ServerStats>, prompt_tokens: u32) -> RequestGuard {
        stats.admitted(prompt_tokens);
        RequestGuard {
            stats,
            fault: false,
            outcome: RequestOutcome::Cancelled,
            ended: false,
        }
    }

    pub(crate) fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Count an injected fault; the request will end as `Fault`.
    pub(crate) fn fault(&mut self, kind: FaultKind) {
        self.stats.record_fault(kind);
        self.fault = true;
    }

    /// How the request ends unless a fault was injected or it is dropped first.
    pub(crate) fn set_outcome(&mut self, outcome: RequestOutcome) {
        self.outcome = outcome;
    }

    /// End the request with the outcome set so far.
    pub(crate) fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let outcome = if self.fault {
            RequestOutcome::Fault
        } else {
            self.outcome
        };
        self.stats.record_outcome(outcome);
        self.stats.ended();
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // Not ended explicitly: the response was dropped (client gone, or shutdown) with the
        // outcome set so far — `Cancelled` unless it had already completed.
        self.end();
    }
}

/// The per-response constant parts of every chunk.
pub(crate) struct ChunkTemplate {
    /// `data: {"id":"…","object":"…","created":…,"model":"…","choices":[`
    prefix: Vec<u8>,
    chat: bool,
    /// A structured answer's token pieces; `None`: the filler words.
    answer: Option<Arc<Vec<String>>>,
}

impl ChunkTemplate {
    /// `model_json` is the served model name already encoded as a JSON string.
    pub(crate) fn new(meta: &ResponseMeta, model_json: &str, chat: bool) -> ChunkTemplate {
        let object = if chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let prefix = format!(
            "data: {{\"id\":\"{}\",\"object\":\"{object}\",\"created\":{},\"model\":{model_json},\"choices\":[",
            meta.id, meta.created
        );
        ChunkTemplate {
            prefix: prefix.into_bytes(),
            chat,
            answer: None,
        }
    }

    /// Stream the pieces of a structured answer instead of the filler words.
    pub(crate) fn with_answer(mut self, answer: Option<Arc<Vec<String>>>) -> ChunkTemplate {
        self.answer = answer;
        self
    }

    /// The chat role-only chunk.
    fn role(&self, out: &mut Vec<u8>, usage: Option<(u32, u32)>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(
            br#"{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
        );
        if let Some((p, c)) = usage {
            push_usage_field(out, p, c);
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// One text chunk with the words of tokens `first..first + count`.
    fn tokens(
        &self,
        out: &mut Vec<u8>,
        first: u32,
        count: u32,
        pad: usize,
        finish: Option<FinishReason>,
        usage: Option<(u32, u32)>,
    ) {
        out.extend_from_slice(&self.prefix);
        if self.chat {
            out.extend_from_slice(br#"{"index":0,"delta":{"content":""#);
        } else {
            out.extend_from_slice(br#"{"index":0,"text":""#);
        }
        match &self.answer {
            Some(pieces) => push_pieces(out, pieces, first, count),
            None => push_words(out, first, count),
        }
        push_padding(out, pad);
        if self.chat {
            out.extend_from_slice(br#""},"logprobs":null,"finish_reason":"#);
        } else {
            out.extend_from_slice(br#"","logprobs":null,"finish_reason":"#);
        }
        match finish {
            None => out.extend_from_slice(b"null"),
            Some(r) => {
                out.push(b'"');
                out.extend_from_slice(r.as_str().as_bytes());
                out.push(b'"');
            }
        }
        if !self.chat || finish.is_some() {
            out.extend_from_slice(br#","stop_reason":null"#);
        }
        out.extend_from_slice(b"}]");
        match usage {
            Some((p, c)) => push_usage_field(out, p, c),
            // vLLM's completion chunks serialize the unset usage as null; chat chunks omit it.
            None if !self.chat => out.extend_from_slice(br#","usage":null"#),
            None => {}
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// The final usage-only chunk (`"choices":[]`).
    fn usage(&self, out: &mut Vec<u8>, prompt: u32, completion: u32) {
        out.extend_from_slice(&self.prefix);
        out.push(b']');
        push_usage_field(out, prompt, completion);
        out.extend_from_slice(b"}\n\n");
    }

    /// A `data:` line whose JSON is cut off in the middle of the first choice.
    fn malformed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(br#"{"index":0,"te"#);
        out.extend_from_slice(b"\n\n");
    }
}

fn push_usage_field(out: &mut Vec<u8>, prompt: u32, completion: u32) {
    out.extend_from_slice(br#","usage":{"prompt_tokens":"#);
    push_u64(out, u64::from(prompt));
    out.extend_from_slice(br#","total_tokens":"#);
    push_u64(out, u64::from(prompt) + u64::from(completion));
    out.extend_from_slice(br#","completion_tokens":"#);
    push_u64(out, u64::from(completion));
    out.push(b'}');
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// An error frame: `data: {"error":…}` (vLLM's mid-stream error), or with `event: error`
/// first (OpenAI's), followed by `data: [DONE]`.
fn push_error_frame(out: &mut Vec<u8>, with_event_line: bool, message: &str) {
    if with_event_line {
        out.extend_from_slice(b"event: error\n");
    }
    let body = super::wire::error_body(message, "InternalServerError", None, 500);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(body.to_string().as_bytes());
    out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
}

/// Resolves when the server is shutting down (never, if the signal's sender is gone).
pub(crate) type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) fn shutdown_future(mut rx: tokio::sync::watch::Receiver<bool>) -> ShutdownFuture {
    Box::pin(async move {
        if rx.wait_for(|closing| *closing).await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}

/// Options of one streamed response.
pub(crate) struct StreamSetup {
    pub template: ChunkTemplate,
    pub prompt_tokens: u32,
    pub include_usage: bool,
    pub continuous_usage: bool,
    /// The fault decided for this request (HTTP-status kinds never get here).
    pub fault: Option<FaultKind>,
    pub faults: Arc<FaultConfig>,
}

enum State {
    /// Nothing sent yet.
    Start,
    /// Forwarding backend events.
    Streaming,
    /// A stall fault: nothing is sent until the sleep ends.
    Stalled(Pin<Box<tokio::time::Sleep>>),
    /// Closing the connection on purpose: flush what is buffered, then fail the body.
    Abort {
        flushed: bool,
    },
    /// Everything is rendered; hand over the rest of the buffer, then end the body.
    Closing,
    Ended,
}

/// The SSE body of one response.
pub(crate) struct SseStream {
    gen: Option<GenStream>,
    tpl: ChunkTemplate,
    prompt_tokens: u32,
    include_usage: bool,
    continuous: bool,
    emitted: u32,
    /// A mid-stream fault not yet struck.
    fault: Option<FaultKind>,
    no_done: bool,
    faults: Arc<FaultConfig>,
    /// The final chunk, held back while a fault that strikes before it plays out.
    held: Option<(u32, FinishReason)>,
    state: State,
    buf: Vec<u8>,
    guard: RequestGuard,
    shutdown: ShutdownFuture,
}

impl SseStream {
    pub(crate) fn new(
        gen: GenStream,
        setup: StreamSetup,
        guard: RequestGuard,
        shutdown: ShutdownFuture,
    ) -> SseStream {
        let no_done = setup.fault == Some(FaultKind::NoDone);
        SseStream {
            gen: Some(gen),
            tpl: setup.template,
            prompt_tokens: setup.prompt_tokens,
            include_usage: setup.include_usage,
            continuous: setup.continuous_usage,
            emitted: 0,
            // Status faults were answered before the stream; `not_sse` is answered instead of it.
            fault: setup.fault.filter(|k| {
                !k.is_http_status() && !matches!(k, FaultKind::NoDone | FaultKind::NotSse)
            }),
            no_done,
            faults: setup.faults,
            held: None,
            state: State::Start,
            buf: Vec::with_capacity(1024),
            guard,
            shutdown,
        }
    }

    fn running_usage(&self, completion: u32) -> Option<(u32, u32)> {
        self.continuous.then_some((self.prompt_tokens, completion))
    }

    fn take(&mut self) -> Bytes {
        // Keep big buffers for fast streams, small ones for slow streams.
        let next = if self.buf.len() >= BATCH_BYTES / 2 {
            BATCH_BYTES + 2048
        } else {
            1024
        };
        Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(next)))
    }

    fn flush_or_pending(&mut self) -> Poll<Option<io::Result<Bytes>>> {
        if self.buf.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Some(Ok(self.take())))
        }
    }

    fn on_tokens(&mut self, count: u32, finish: Option<FinishReason>) {
        let reached = self.emitted.saturating_add(count) >= self.faults.after_tokens;
        match self.fault {
            Some(kind) if reached || finish.is_some() => {
                self.fault = None;
                if kind == FaultKind::HugeChunk {
                    self.guard.fault(kind);
                    self.emit(count, finish, self.faults.huge_chunk_bytes);
                } else if let Some(reason) = finish {
                    // Strike before the final chunk, so the fault always lands.
                    self.strike(kind, Some((count, reason)));
                } else {
                    self.emit(count, None, 0);
                    self.strike(kind, None);
                }
            }
            _ => self.emit(count, finish, 0),
        }
    }

    fn emit(&mut self, count: u32, finish: Option<FinishReason>, pad: usize) {
        let first = self.emitted;
        self.emitted = self.emitted.saturating_add(count);
        let usage = self.running_usage(self.emitted);
        self.tpl
            .tokens(&mut self.buf, first, count, pad, finish, usage);
        self.guard.stats().add_generation_tokens(count);
        if finish.is_some() {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.gen = None;
        if self.include_usage {
            self.tpl
                .usage(&mut self.buf, self.prompt_tokens, self.emitted);
        }
        if self.no_done {
            self.guard.fault(FaultKind::NoDone);
        } else {
            self.buf.extend_from_slice(b"data: [DONE]\n\n");
        }
        self.guard.set_outcome(RequestOutcome::Ok);
        self.state = State::Closing;
    }

    fn strike(&mut self, kind: FaultKind, held: Option<(u32, FinishReason)>) {
        self.guard.fault(kind);
        match kind {
            FaultKind::Disconnect => {
                self.gen = None;
                self.state = State::Abort { flushed: false };
            }
            FaultKind::Stall => {
                self.held = held;
                self.state =
                    State::Stalled(Box::pin(tokio::time::sleep(bounded(self.faults.stall_for))));
            }
            FaultKind::ErrorEvent | FaultKind::Error200 => {
                self.gen = None;
                let message = format!("injected fault: {}", kind.label());
                push_error_frame(&mut self.buf, kind == FaultKind::ErrorEvent, &message);
                self.state = State::Closing;
            }
            FaultKind::Truncated => {
                // The content that was due goes out without its finish reason; then the body
                // ends cleanly with nothing after it: no usage chunk, no `[DONE]`.
                if let Some((count, _)) = held {
                    self.emit(count, None, 0);
                }
                self.gen = None;
                self.state = State::Closing;
            }
            FaultKind::MalformedChunk
            | FaultKind::HugeChunk
            | FaultKind::NoDone
            | FaultKind::NotSse
            | FaultKind::Http500
            | FaultKind::Http503
            | FaultKind::Http429 => {
                if kind == FaultKind::MalformedChunk {
                    self.tpl.malformed(&mut self.buf);
                }
                if let Some((count, reason)) = held {
                    self.emit(count, Some(reason), 0);
                }
            }
        }
    }

    fn on_backend_error(&mut self, message: &str) {
        self.gen = None;
        push_error_frame(&mut self.buf, false, message);
        self.guard.set_outcome(RequestOutcome::BackendError);
        self.state = State::Closing;
    }
}

impl Stream for SseStream {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let this = self.get_mut();
        let live = matches!(
            this.state,
            State::Start | State::Streaming | State::Stalled(_)
        );
        if live && this.shutdown.as_mut().poll(cx).is_ready() {
            this.gen = None;
            this.state = State::Abort { flushed: false };
        }
        loop {
            match &mut this.state {
                State::Start => {
                    this.state = State::Streaming;
                    if this.tpl.chat {
                        let usage = this.running_usage(0);
                        this.tpl.role(&mut this.buf, usage);
                    }
                    if this.faults.after_tokens == 0 {
                        if let Some(kind) = this.fault.take() {
                            if kind == FaultKind::HugeChunk {
                                this.fault = Some(kind);
                            } else {
                                this.strike(kind, None);
                            }
                        }
                    }
                }
                State::Streaming => {
                    if this.buf.len() >= BATCH_BYTES {
                        return Poll::Ready(Some(Ok(this.take())));
                    }
                    let Some(gen) = this.gen.as_mut() else {
                        this.on_backend_error("the backend stream is gone");
                        continue;
                    };
                    match gen.as_mut().poll_next(cx) {
                        Poll::Pending => return this.flush_or_pending(),
                        Poll::Ready(Some(GenEvent::Tokens { count, finish })) => {
                            this.on_tokens(count, finish)
                        }
                        Poll::Ready(Some(GenEvent::Finished(reason))) => {
                            this.on_tokens(0, Some(reason))
                        }
                        Poll::Ready(Some(GenEvent::Error(message))) => {
                            this.on_backend_error(&message)
                        }
                        Poll::Ready(None) => this.on_backend_error(
                            "the backend ended the stream without a finish reason",
                        ),
                    }
                }
                State::Stalled(sleep) => match sleep.as_mut().poll(cx) {
                    Poll::Pending => return this.flush_or_pending(),
                    Poll::Ready(()) => {
                        this.state = State::Streaming;
                        if let Some((count, reason)) = this.held.take() {
                            this.emit(count, Some(reason), 0);
                        }
                    }
                },
                State::Abort { flushed } => {
                    if !this.buf.is_empty() {
                        return Poll::Ready(Some(Ok(this.take())));
                    }
                    if !*flushed {
                        // hyper drops its write buffer when the body fails; returning Pending
                        // once makes it flush what we gave it before the failure closes the
                        // connection.
                        *flushed = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.state = State::Ended;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "connection closed on purpose (injected disconnect or shutdown)",
                    ))));
                }
                State::Closing => {
                    if !this.buf.is_empty() {
                        return Poll::Ready(Some(Ok(this.take())));
                    }
                    this.state = State::Ended;
                    this.guard.end();
                    return Poll::Ready(None);
                }
                State::Ended => return Poll::Ready(None),
            }
        }
    }
}

/// A body that sends `head` (possibly empty), lets hyper flush it, then fails so that the
/// connection is closed without completing the response: the non-streaming disconnect.
pub(crate) struct AbortBody {
    head: Option<Bytes>,
    flushed: bool,
    _guard: RequestGuard,
}

impl AbortBody {
    pub(crate) fn new(head: Bytes, guard: RequestGuard) -> AbortBody {
        AbortBody {
            head: (!head.is_empty()).then_some(head),
            flushed: false,
            _guard: guard,
        }
    }
}

impl Stream for AbortBody {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        if !this.flushed {
            this.flushed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection closed on purpose (injected disconnect)",
        ))))
    }
}

/// A stall long enough to matter but bounded, for `Duration` values from user input.
pub(crate) fn bounded(d: Duration) -> Duration {
    d.min(Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(chat: bool) -> ChunkTemplate {
        let meta = ResponseMeta {
            id: "cmpl-1".into(),
            created: 7,
            model: "m".into(),
        };
        ChunkTemplate::new(&meta, "\"m\"", chat)
    }

    fn json_of(frame: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(frame).unwrap();
        let data = text.strip_prefix("data: ").unwrap().trim_end();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn completion_chunks_are_valid_json_with_vllm_fields() {
        let t = template(false);
        let mut out = Vec::new();
        t.tokens(&mut out, 0, 2, 0, None, None);
        assert!(out.ends_with(b"\n\n"));
        let v = json_of(&out);
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], " the and");
        assert!(v["choices"][0]["finish_reason"].is_null());
        assert!(v["usage"].is_null());
        out.clear();
        t.tokens(&mut out, 2, 1, 0, Some(FinishReason::Length), Some((5, 3)));
        let v = json_of(&out);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["total_tokens"], 8);
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn chat_chunks_role_usage_and_malformed() {
        let t = template(true);
        let mut out = Vec::new();
        t.role(&mut out, None);
        let v = json_of(&out);
        assert_eq!(v["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(v["choices"][0]["delta"]["content"], "");
        assert!(v.get("usage").is_none());
        out.clear();
        t.tokens(&mut out, 0, 1, 0, Some(FinishReason::Stop), None);
        let v = json_of(&out);
        assert_eq!(v["choices"][0]["delta"]["content"], " the");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        out.clear();
        t.usage(&mut out, 4, 9);
        let v = json_of(&out);
        assert_eq!(v["choices"], serde_json::json!([]));
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        out.clear();
        t.malformed(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let data = text.strip_prefix("data: ").unwrap().trim_end();
        assert!(serde_json::from_str::<serde_json::Value>(data).is_err());
    }

    #[test]
    fn integers_render_like_display() {
        for v in [0u64, 7, 10, 999, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }
}
