//! The OpenAI-compatible wire format: request bodies, response chunks, errors, and SSE framing.
//!
//! This module knows what bytes mean, never when they arrived: timing and load live in
//! `client` and `load`. Two layers serve two kinds of callers:
//!
//! - the hot path uses [`SseParser`] and [`classify_data`], which answer only what the client
//!   needs to know about a chunk (did it carry generated text, of which kind, did it finish,
//!   what usage did it report, was it an error) without allocating;
//! - everything else (tests, the embedded server, multi-turn workloads that need the reply text)
//!   can use the full serde types ([`StreamChunk`], [`CompletionResponse`], …), which borrow from
//!   the input where JSON escaping allows.
//!
//! Request bodies are built once, before a run, by [`build_body`] / [`build_chat_body`], so no JSON
//! is serialized while requests are in flight.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::record::Usage;

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

/// The two OpenAI-compatible generation endpoints servebench drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/v1/completions`: a raw prompt, text in `choices[].text`.
    Completions,
    /// `/v1/chat/completions`: messages, text in `choices[].delta.content` (streamed) or
    /// `choices[].message.content`.
    ChatCompletions,
}

impl Endpoint {
    /// The URL path, as `vllm bench serve --endpoint` spells it.
    pub const fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::ChatCompletions => "/v1/chat/completions",
        }
    }

    pub const fn is_chat(self) -> bool {
        matches!(self, Endpoint::ChatCompletions)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// An endpoint string that is neither of the supported paths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported endpoint {given:?}: use /v1/completions or /v1/chat/completions")]
pub struct EndpointParseError {
    pub given: String,
}

impl FromStr for Endpoint {
    type Err = EndpointParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A trailing slash is a harmless typo; anything else is a different API.
        match s.trim().trim_end_matches('/') {
            "/v1/completions" => Ok(Endpoint::Completions),
            "/v1/chat/completions" => Ok(Endpoint::ChatCompletions),
            _ => Err(EndpointParseError {
                given: s.to_string(),
            }),
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.path())
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// Everything in a request body except the prompt and `max_tokens`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodyOptions {
    pub model: String,
    pub stream: bool,
    /// Sent only when true: OpenAI's own API rejects the unknown field, and false is every
    /// engine's default anyway.
    pub ignore_eos: bool,
    /// Sent only when given (vLLM, SGLang).
    pub min_tokens: Option<u32>,
    /// Ask for a running `usage` in every chunk (vLLM `stream_options.continuous_usage_stats`),
    /// which gives exact tokens per event. Sent only when true and streaming.
    pub continuous_usage_stats: bool,
    /// Merged last, so it can add fields (`response_format`, `temperature`, …) or override any
    /// of the above.
    pub extra: Map<String, Value>,
}

/// One chat message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "assistant".into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "system".into(),
            content: content.into(),
        }
    }
}

/// The JSON body for one request: a raw prompt on completions, one user message on chat.
pub fn build_body(endpoint: Endpoint, prompt: &str, max_tokens: u32, opts: &BodyOptions) -> Bytes {
    match endpoint {
        Endpoint::Completions => assemble(("prompt", Value::from(prompt)), max_tokens, opts),
        Endpoint::ChatCompletions => {
            let messages = vec![chat_message_value("user", prompt)];
            assemble(("messages", Value::Array(messages)), max_tokens, opts)
        }
    }
}

/// The JSON body for a chat request with a whole conversation (multi-turn workloads).
pub fn build_chat_body(messages: &[ChatMessage], max_tokens: u32, opts: &BodyOptions) -> Bytes {
    let messages = messages
        .iter()
        .map(|m| chat_message_value(&m.role, &m.content))
        .collect();
    assemble(("messages", Value::Array(messages)), max_tokens, opts)
}

fn chat_message_value(role: &str, content: &str) -> Value {
    let mut m = Map::new();
    m.insert("role".into(), Value::from(role));
    m.insert("content".into(), Value::from(content));
    Value::Object(m)
}

fn assemble(input: (&str, Value), max_tokens: u32, opts: &BodyOptions) -> Bytes {
    let mut body = Map::new();
    body.insert("model".into(), Value::from(opts.model.as_str()));
    body.insert(input.0.into(), input.1);
    body.insert("max_tokens".into(), Value::from(max_tokens));
    body.insert("stream".into(), Value::from(opts.stream));
    if opts.ignore_eos {
        body.insert("ignore_eos".into(), Value::from(true));
    }
    if let Some(min) = opts.min_tokens {
        body.insert("min_tokens".into(), Value::from(min));
    }
    if opts.stream {
        let mut so = Map::new();
        so.insert("include_usage".into(), Value::from(true));
        if opts.continuous_usage_stats {
            so.insert("continuous_usage_stats".into(), Value::from(true));
        }
        body.insert("stream_options".into(), Value::Object(so));
    }
    for (k, v) in &opts.extra {
        body.insert(k.clone(), v.clone());
    }
    // `Display` for a `Value` cannot fail (every key is a string), unlike `to_vec`'s signature.
    Bytes::from(Value::Object(body).to_string())
}

// ---------------------------------------------------------------------------------------------
// Full response types (for callers that want the text; the hot path uses `classify_data`)
// ---------------------------------------------------------------------------------------------

/// `usage` as servers report it. Extra fields (`total_tokens`, `*_details`) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// An OpenAI-style error object (`{"error": {"message", "type", "code"}}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorObject<'a> {
    #[serde(borrow, default)]
    pub message: Cow<'a, str>,
    #[serde(
        borrow,
        default,
        rename = "type",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<Cow<'a, str>>,
    /// A number (vLLM: the HTTP status) or a string (OpenAI: `"rate_limit_exceeded"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Value>,
}

/// A chat delta. `content` may be absent, `null` or `""` in chunks that carry no text.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delta<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Cow<'a, str>>,
    /// vLLM (older) and SGLang reasoning parsers.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// vLLM (newer) reasoning parsers.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Cow<'a, str>>,
}

/// One choice of a streamed chunk: `text` on completions, `delta` on chat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamChoice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// One `data:` payload of a streamed response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamChunk<'a> {
    #[serde(borrow, default)]
    pub choices: Vec<StreamChoice<'a>>,
    /// A running count with `continuous_usage_stats`; the final count in the `choices: []`
    /// chunk that `include_usage` adds (or in llama.cpp's finish chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<WireUsage>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject<'a>>,
}

/// The message of a non-streamed chat choice: the same fields as a streamed delta (role,
/// content, and the reasoning of either parser generation).
pub type ResponseMessage<'a> = Delta<'a>;

/// One choice of a non-streamed response: `text` on completions, `message` on chat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseChoice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ResponseMessage<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// A non-streamed completions or chat response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CompletionResponse<'a> {
    #[serde(borrow, default)]
    pub choices: Vec<ResponseChoice<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<WireUsage>,
}

impl CompletionResponse<'_> {
    /// The generated text of the first choice (completions `text` or chat `message.content`).
    pub fn text(&self) -> Option<&str> {
        let c = self.choices.first()?;
        c.text
            .as_deref()
            .or_else(|| c.message.as_ref().and_then(|m| m.content.as_deref()))
    }
}

/// Appends the answer text of one streamed `data:` payload to `out`: the first choice's `text`
/// (completions) or `delta.content` (chat); reasoning text is not part of the answer. Payloads
/// that are not chunks add nothing. Off the hot path: the client calls it only when it keeps
/// text, after the arrival time was read.
pub fn append_content(data: &[u8], out: &mut String) {
    if let Ok(chunk) = serde_json::from_slice::<StreamChunk<'_>>(data.trim_ascii()) {
        if let Some(c) = chunk.choices.first() {
            let text = c
                .text
                .as_deref()
                .or_else(|| c.delta.as_ref().and_then(|d| d.content.as_deref()));
            out.push_str(text.unwrap_or(""));
        }
    }
}

/// Appends the answer text of a complete non-streamed response body to `out`.
pub fn append_response_text(body: &[u8], out: &mut String) {
    if let Ok(r) = serde_json::from_slice::<CompletionResponse<'_>>(body.trim_ascii()) {
        out.push_str(r.text().unwrap_or(""));
    }
}

// ---------------------------------------------------------------------------------------------
// SSE framing
// ---------------------------------------------------------------------------------------------

/// Default cap on one event (its pending line plus its data): a server that never ends a line
/// cannot make the client eat memory.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 << 20;

/// One dispatched server-sent event, borrowed from the parser's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseEvent<'a> {
    /// A complete event. `event` is the `event:` field (empty when absent, i.e. "message");
    /// `data` is its `data:` lines joined with `\n`.
    Message { event: &'a [u8], data: &'a [u8] },
    /// The event grew beyond the parser's cap. The parser ignores the rest of the stream.
    TooLarge { limit: usize },
}

impl SseEvent<'_> {
    /// An `event: error` frame (the server reports a failure inside a 200 stream).
    pub fn is_error(&self) -> bool {
        matches!(self, SseEvent::Message { event, .. } if *event == b"error")
    }
}

/// Incremental SSE framing (the WHATWG event-stream rules) over byte chunks split anywhere:
/// inside a line, inside a UTF-8 character, between `\r` and `\n`.
///
/// Allocation-free in steady state: a line that ends inside the chunk it started in is read in
/// place; only a line split across chunks is staged in a reused buffer, and event data is copied
/// into a reused buffer. Dispatch happens at the blank line that ends an event.
#[derive(Debug, Clone)]
pub struct SseParser {
    /// The unterminated tail of the previous chunk.
    line: Vec<u8>,
    data: Vec<u8>,
    event: Vec<u8>,
    has_data: bool,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    started: bool,
    /// Bytes of a leading BOM seen so far, before the stream has started (0..3).
    bom_held: usize,
    poisoned: bool,
    limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that reports [`SseEvent::TooLarge`] once an event exceeds `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            line: Vec::new(),
            data: Vec::new(),
            event: Vec::new(),
            has_data: false,
            after_cr: false,
            started: false,
            bom_held: 0,
            poisoned: false,
            limit,
        }
    }

    /// Feeds the next bytes of the stream; `on_event` is called for every event they complete.
    pub fn feed<F: FnMut(SseEvent<'_>)>(&mut self, mut chunk: &[u8], mut on_event: F) {
        if self.poisoned || chunk.is_empty() {
            return;
        }
        if !self.started {
            // The spec strips one leading UTF-8 BOM, which may itself arrive split across reads.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let want = &BOM[self.bom_held..];
            let n = want.len().min(chunk.len());
            if chunk[..n] == want[..n] {
                if n < want.len() {
                    self.bom_held += n;
                    return; // still a prefix of the BOM: wait for the next read
                }
                chunk = &chunk[n..];
            } else {
                // Not a BOM after all: the bytes held back are the start of the first line.
                self.line.extend_from_slice(&BOM[..self.bom_held]);
            }
            self.started = true;
        }
        if self.after_cr {
            self.after_cr = false;
            chunk = chunk.strip_prefix(b"\n").unwrap_or(chunk);
        }
        while !chunk.is_empty() {
            let Some(i) = memchr::memchr2(b'\n', b'\r', chunk) else {
                if self.line.len() + chunk.len() > self.limit {
                    self.poison(&mut on_event);
                } else {
                    self.line.extend_from_slice(chunk);
                }
                return;
            };
            let terminator = chunk[i];
            // A line longer than the cap poisons the stream however it was split: otherwise a
            // line that arrived whole would pass while the same line staged across reads
            // would not, and the events seen would depend on TCP segmentation.
            if self.line.len() + i > self.limit {
                self.poison(&mut on_event);
                return;
            }
            if self.line.is_empty() {
                self.process_line(&chunk[..i], &mut on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&chunk[..i]);
                self.process_line(&line, &mut on_event);
                line.clear();
                self.line = line;
            }
            if self.poisoned {
                return;
            }
            chunk = &chunk[i + 1..];
            if terminator == b'\r' {
                match chunk.first() {
                    None => self.after_cr = true,
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                }
            }
        }
    }

    /// The stream ended. Strict SSE would drop an event that was not closed by a blank line;
    /// servebench dispatches it (a last line without its newline included) because a server
    /// that closes right after `data: [DONE]\n` did finish its answer.
    pub fn finish<F: FnMut(SseEvent<'_>)>(&mut self, mut on_event: F) {
        if self.poisoned {
            return;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut on_event);
        }
        if !self.poisoned {
            self.dispatch(&mut on_event);
        }
    }

    fn process_line<F: FnMut(SseEvent<'_>)>(&mut self, line: &[u8], on_event: &mut F) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // a comment, e.g. `: keep-alive`
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    self.poison(on_event);
                    return;
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {} // `id`, `retry` and unknown fields do not matter to a benchmark
        }
    }

    fn dispatch<F: FnMut(SseEvent<'_>)>(&mut self, on_event: &mut F) {
        // Strict SSE skips an event without data; an `event: error` without data is still news.
        if self.has_data || !self.event.is_empty() {
            on_event(SseEvent::Message {
                event: &self.event,
                data: &self.data,
            });
        }
        self.data.clear();
        self.event.clear();
        self.has_data = false;
    }

    fn poison<F: FnMut(SseEvent<'_>)>(&mut self, on_event: &mut F) {
        self.poisoned = true;
        // Give the memory back: the stream is over for this parser.
        self.line = Vec::new();
        self.data = Vec::new();
        on_event(SseEvent::TooLarge { limit: self.limit });
    }
}

// ---------------------------------------------------------------------------------------------
// Classifying one payload (the hot path)
// ---------------------------------------------------------------------------------------------

/// What kind of generated text a chunk carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Generated {
    /// No generated text: a role-only chunk, `content: null` or `""`, a finish-only chunk
    /// (`delta: {}`), a usage-only chunk (`choices: []`). Not a token event.
    #[default]
    Nothing,
    /// Only reasoning text (`reasoning_content` / `reasoning`).
    Reasoning,
    /// Answer text (`text`, `delta.content`, `message.content`) or tool-call deltas.
    Content,
}

impl Generated {
    pub fn is_text(self) -> bool {
        self != Generated::Nothing
    }
}

/// What one SSE payload (or one non-streamed body) means to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkInfo {
    /// A regular chunk.
    Chunk {
        generated: Generated,
        /// Some choice carried a `finish_reason`.
        finish: bool,
        /// Some choice carried a non-empty `delta.tool_calls` (or `message.tool_calls`): the
        /// model is calling a function; its argument fragments are answer output.
        tool_call: bool,
        /// The `usage` it carried (running with `continuous_usage_stats`, else final).
        usage: Option<Usage>,
    },
    /// `data: [DONE]`.
    Done,
    /// The server reported an error (an `error` object, vLLM's `"object": "error"`, or an
    /// `event: error` frame), with its message.
    Error(String),
    /// The payload is not the JSON it should be.
    Malformed(String),
}

/// Classifies a dispatched SSE event: `event: error` frames and oversized events included.
pub fn classify_event(event: SseEvent<'_>) -> ChunkInfo {
    match event {
        SseEvent::TooLarge { limit } => {
            ChunkInfo::Malformed(format!("an SSE event exceeded the {limit}-byte cap"))
        }
        SseEvent::Message { event, data } if event == b"error" => {
            let message = error_message(data);
            ChunkInfo::Error(if message.is_empty() {
                "the server sent an `event: error` frame without a message".into()
            } else {
                message
            })
        }
        SseEvent::Message { data, .. } => classify_data(data),
    }
}

/// Classifies one `data:` payload without allocating (unless it is an error or malformed).
pub fn classify_data(data: &[u8]) -> ChunkInfo {
    let trimmed = data.trim_ascii();
    if trimmed == b"[DONE]" {
        return ChunkInfo::Done;
    }
    match serde_json::from_slice::<LeanChunk<'_>>(trimmed) {
        Ok(chunk) => chunk.into_info(),
        Err(e) => ChunkInfo::Malformed(format!("malformed chunk ({e}): {}", preview(data))),
    }
}

/// Classifies a complete non-streamed response body (`message.content` or `text`).
pub fn classify_response(body: &[u8]) -> ChunkInfo {
    match serde_json::from_slice::<LeanChunk<'_>>(body.trim_ascii()) {
        Ok(chunk) => chunk.into_info(),
        Err(e) => ChunkInfo::Malformed(format!("malformed response body ({e}): {}", preview(body))),
    }
}

/// Whether a complete body is a completion or chat completion (it has a `choices` array),
/// as opposed to some other JSON document. Used off the hot path, on a JSON body that came
/// back to a streaming request.
pub fn is_completion_body(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        choices: Option<Vec<IgnoredAny>>,
    }
    serde_json::from_slice::<Probe>(body.trim_ascii()).is_ok_and(|p| p.choices.is_some())
}

/// The message in an error response body, whatever its dialect: OpenAI `{"error": {...}}`,
/// `{"error": "..."}`, vLLM `{"object": "error", "message": ...}`, FastAPI `{"detail": ...}`,
/// or plain text. Bounded by [`MAX_SERVER_TEXT`], not cut for display: it may hold the API key,
/// so whoever keeps it removes the key first and cuts after (`launch::secret::redact_cut`).
/// Empty when the body is empty.
pub fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct AnyError<'a> {
        #[serde(default)]
        error: Option<ErrorField>,
        #[serde(borrow, default)]
        message: Option<Cow<'a, str>>,
        #[serde(default)]
        detail: Option<Value>,
    }
    let body = body.trim_ascii();
    if let Ok(e) = serde_json::from_slice::<AnyError<'_>>(body) {
        let found = e
            .error
            .and_then(|f| f.0)
            .or_else(|| e.message.map(Cow::into_owned))
            .or_else(|| {
                e.detail.map(|d| match d {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
            });
        if let Some(m) = found {
            return truncate(m, MAX_SERVER_TEXT);
        }
    }
    truncate(String::from_utf8_lossy(body).into_owned(), MAX_SERVER_TEXT)
}

/// The most bytes of server text (an error message, a malformed chunk) this module returns: a
/// bound on memory only. Display length is the caller's cut, made after it removed the API
/// key, so that no cut can leave part of a key behind (issue 12).
pub const MAX_SERVER_TEXT: usize = 16 << 10;

fn preview(data: &[u8]) -> String {
    truncate(String::from_utf8_lossy(data).into_owned(), MAX_SERVER_TEXT)
}

/// Cuts `s` to at most `max` bytes at a character boundary, marking the cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The fields the client looks at; everything else is skipped by serde without allocation.
#[derive(Deserialize)]
struct LeanChunk<'a> {
    #[serde(default, deserialize_with = "fold_choices")]
    choices: ChoicesSummary,
    #[serde(default)]
    usage: Option<LeanUsage>,
    #[serde(default)]
    error: Option<ErrorField>,
    /// vLLM's error shape: `{"object": "error", "message": ...}`.
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

impl LeanChunk<'_> {
    fn into_info(self) -> ChunkInfo {
        if let Some(message) = self.error.and_then(|e| e.0) {
            return ChunkInfo::Error(message);
        }
        if self.object.as_deref() == Some("error") {
            let message = self.message.map(Cow::into_owned).unwrap_or_default();
            return ChunkInfo::Error(if message.is_empty() {
                "the server returned an error object without a message".into()
            } else {
                truncate(message, MAX_SERVER_TEXT)
            });
        }
        ChunkInfo::Chunk {
            generated: self.choices.generated,
            finish: self.choices.finish,
            tool_call: self.choices.tool_call,
            usage: self.usage.and_then(LeanUsage::into_usage),
        }
    }
}

#[derive(Default)]
struct ChoicesSummary {
    generated: Generated,
    finish: bool,
    tool_call: bool,
}

fn fold_choices<'de, D: Deserializer<'de>>(d: D) -> Result<ChoicesSummary, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = ChoicesSummary;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of choices")
        }
        fn visit_unit<E: de::Error>(self) -> Result<ChoicesSummary, E> {
            Ok(ChoicesSummary::default())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChoicesSummary, A::Error> {
            let mut sum = ChoicesSummary::default();
            while let Some(c) = seq.next_element::<LeanChoice>()? {
                sum.generated = sum.generated.max(c.generated());
                sum.finish |= c.finish_reason.is_some_and(|p| p.0);
                sum.tool_call |= c.tool_call();
            }
            Ok(sum)
        }
    }
    d.deserialize_any(V)
}

#[derive(Deserialize)]
struct LeanChoice {
    #[serde(default)]
    text: Option<Present>,
    #[serde(default)]
    delta: Option<LeanDelta>,
    /// Non-streamed chat responses.
    #[serde(default)]
    message: Option<LeanDelta>,
    #[serde(default)]
    finish_reason: Option<Present>,
}

impl LeanChoice {
    fn generated(&self) -> Generated {
        let from_text = if self.text.is_some_and(|p| p.0) {
            Generated::Content
        } else {
            Generated::Nothing
        };
        let from_delta = self
            .delta
            .as_ref()
            .map_or(Generated::Nothing, LeanDelta::generated);
        let from_message = self
            .message
            .as_ref()
            .map_or(Generated::Nothing, LeanDelta::generated);
        from_text.max(from_delta).max(from_message)
    }

    fn tool_call(&self) -> bool {
        [&self.delta, &self.message]
            .into_iter()
            .flatten()
            .any(|d| d.tool_calls.is_some_and(|a| a.0))
    }
}

#[derive(Deserialize)]
struct LeanDelta {
    #[serde(default)]
    content: Option<Present>,
    #[serde(default)]
    reasoning_content: Option<Present>,
    #[serde(default)]
    reasoning: Option<Present>,
    /// Function-calling output is generated text too.
    #[serde(default)]
    tool_calls: Option<NonEmptyArray>,
}

impl LeanDelta {
    fn generated(&self) -> Generated {
        let yes = |p: Option<Present>| p.is_some_and(|p| p.0);
        if yes(self.content) || self.tool_calls.is_some_and(|a| a.0) {
            Generated::Content
        } else if yes(self.reasoning_content) || yes(self.reasoning) {
            Generated::Reasoning
        } else {
            Generated::Nothing
        }
    }
}

#[derive(Deserialize)]
struct LeanUsage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

impl LeanUsage {
    fn into_usage(self) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            completion_tokens: self.completion_tokens?,
        })
    }
}

/// A JSON string, reduced to whether it is non-empty (borrowed or escaped, never copied).
#[derive(Clone, Copy)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Present;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Present, E> {
                Ok(Present(!v.is_empty()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON array (or null), reduced to whether it has elements.
#[derive(Clone, Copy)]
struct NonEmptyArray(bool);

impl<'de> Deserialize<'de> for NonEmptyArray {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmptyArray;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_unit<E: de::Error>(self) -> Result<NonEmptyArray, E> {
                Ok(NonEmptyArray(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmptyArray, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmptyArray(any))
            }
        }
        d.deserialize_any(V)
    }
}

/// An `error` field: a string, an object with `message` (and `type`, `code`), or null.
/// Reduced to the message to report (`None` for `"error": null`).
struct ErrorField(Option<String>);

impl<'de> Deserialize<'de> for ErrorField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ErrorField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error object or message")
            }
            fn visit_unit<E: de::Error>(self) -> Result<ErrorField, E> {
                Ok(ErrorField(None))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ErrorField, E> {
                Ok(ErrorField(Some(truncate(v.to_string(), MAX_SERVER_TEXT))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorField, A::Error> {
                let mut message = None;
                let mut kind = None;
                let mut code = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "message" => message = map.next_value::<Option<String>>()?,
                        "type" => kind = map.next_value::<Option<String>>()?,
                        "code" => code = map.next_value::<Option<Value>>()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let mut text = message.unwrap_or_default();
                if text.is_empty() {
                    text.push_str("the server reported an error without a message");
                }
                let detail: Vec<String> = [
                    kind.filter(|k| !k.is_empty()).map(|k| format!("type {k}")),
                    code.filter(|c| !c.is_null()).map(|c| match c {
                        Value::String(s) => format!("code {s}"),
                        other => format!("code {other}"),
                    }),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !detail.is_empty() {
                    text = format!("{text} ({})", detail.join(", "));
                }
                Ok(ErrorField(Some(truncate(text, MAX_SERVER_TEXT))))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
