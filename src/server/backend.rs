//! The seam between the HTTP layer and whatever decides *when* tokens come out.
//!
//! The HTTP layer (routes, SSE framing, usage, faults) knows nothing about timing; a
//! [`Backend`] knows nothing about HTTP. [`super::FixedTiming`] is the simple backend; the
//! simulator's engine model is the other one.

use std::pin::Pin;
use std::time::Instant;

use futures_util::Stream;
use tokio::sync::mpsc;

/// Why generation ended, as the OpenAI API spells it in `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// The model stopped by itself (EOS or a stop string): `"stop"`.
    Stop,
    /// `max_tokens` was reached: `"length"`.
    Length,
}

impl FinishReason {
    /// The JSON string value of `finish_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One generation request, already validated by the HTTP layer.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Arrival index of this generation request (0, 1, 2, … in the order requests passed
    /// validation). The same index keys the fault decision, so it is unique per server.
    pub index: u64,
    /// When the server finished reading and validating the request. Backends should time
    /// their emissions from here (not from when `generate` happens to be called).
    pub received_at: Instant,
    /// The completions prompt, or the chat messages rendered to one text in ChatML layout
    /// (`<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
    /// `<|im_start|>assistant\n`), so shared prefixes stay shared prefixes. A prompt given as
    /// token ids is rendered as the ids separated by spaces.
    pub prompt: String,
    /// Estimated prompt length in tokens. The server has no tokenizer: a text counts one
    /// token per whitespace-separated word (the same rule as the workload's approximate
    /// prompts, so a prompt planned as N words is reported as N tokens); chat counts the words
    /// of every message's content and nothing for the template; a prompt given as token ids
    /// counts exactly. This is what `usage.prompt_tokens` reports.
    pub prompt_tokens: u32,
    /// Upper bound on generated tokens (`max_tokens`, or `max_completion_tokens` for chat;
    /// defaulted by the server when absent). Always ≥ 1.
    pub max_tokens: u32,
    /// The model may not stop by itself before this many tokens (vLLM's `min_tokens`).
    pub min_tokens: u32,
    /// `ignore_eos`: the model never stops by itself; only `max_tokens` ends generation.
    pub ignore_eos: bool,
    /// The request came in on `/v1/chat/completions`.
    pub chat: bool,
    /// Structured output was asked for (`response_format` other than text, `guided_json`,
    /// `guided_regex`, `guided_choice`, `guided_grammar`, `structured_outputs`).
    pub structured: bool,
    /// A constrained answer's length in tokens: the grammar ends it (EOS) there, whatever the
    /// backend's own stopping rule. `None`: unconstrained, or a constraint the server does not
    /// generate for.
    pub answer_tokens: Option<u32>,
    /// The constraint's content key ([`crate::structured::Constraint::key`]): engines compile
    /// a grammar once per key and cache it.
    pub grammar: Option<u64>,
    /// The client asked for a streamed (SSE) response. Informational: the backend's events
    /// are the same either way.
    pub stream: bool,
}

/// What a backend reports as generation goes on.
///
/// A well-behaved stream is: zero or more `Tokens { finish: None, .. }`, then exactly one
/// terminal event — `Tokens { finish: Some(_), .. }` (preferred: the last text chunk carries
/// `finish_reason`, as vLLM does), `Finished` (the finish arrives in a separate, text-less
/// chunk, as llama.cpp does), or `Error`. Anything after a terminal event is ignored; a stream
/// that ends without one is reported to the client as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenEvent {
    /// `count` tokens generated together, sent as ONE SSE chunk; `finish` is set on the last
    /// emission. `count` may be 0 only when `finish` is set.
    Tokens {
        count: u32,
        finish: Option<FinishReason>,
    },
    /// Generation ended with no further tokens.
    Finished(FinishReason),
    /// Generation failed; the message goes to the client in an OpenAI error object.
    Error(String),
}

/// The events of one generation. Dropping it means the client went away: the backend must
/// stop working on the request (a stream owned by the HTTP layer is dropped when the
/// connection closes; a channel-fed stream shows up as `Sender::is_closed()` / a failed send).
pub type GenStream = Pin<Box<dyn Stream<Item = GenEvent> + Send + 'static>>;

/// A source of generation timing behind the OpenAI-compatible HTTP surface.
pub trait Backend: Send + Sync + 'static {
    /// Reject a request before anything is sent (for example, a prompt longer than the
    /// simulated context). `Err(message)` becomes HTTP 400 with an OpenAI error body.
    fn check(&self, req: &GenerateRequest) -> Result<(), String> {
        let _ = req;
        Ok(())
    }

    /// Start generating. Called once per admitted request, on the server's runtime; it must
    /// not block. Polling the returned stream drives the emissions.
    fn generate(&self, req: GenerateRequest) -> GenStream;

    /// Prometheus text exposition for `/metrics`, in the engine's own dialect (e.g.
    /// `vllm:num_requests_running`). The server appends its own `servebench_*` counters.
    fn metrics(&self) -> Option<String> {
        None
    }

    /// The `/version` body.
    fn version(&self) -> serde_json::Value {
        serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "server": "servebench" })
    }
}

/// A [`GenStream`] fed by a bounded channel, for backends that drive many requests from one
/// task (such as a simulated engine loop). When the client goes away the receiver is dropped
/// and the sender's `send` fails / `is_closed()` turns true.
pub fn stream_from_channel(rx: mpsc::Receiver<GenEvent>) -> GenStream {
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Like [`stream_from_channel`] for an unbounded channel.
pub fn stream_from_unbounded(rx: mpsc::UnboundedReceiver<GenEvent>) -> GenStream {
    Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
}

/// Output length and finish reason for a model that "naturally" stops after `natural_len`
/// tokens (its EOS), given the request's limits: `ignore_eos` removes the natural stop,
/// `min_tokens` postpones it, `max_tokens` always caps.
pub fn output_length(req: &GenerateRequest, natural_len: Option<u32>) -> (u32, FinishReason) {
    let max = req.max_tokens.max(1);
    // A constrained answer ends where its grammar does.
    match req.answer_tokens.or(natural_len) {
        Some(n) if !req.ignore_eos => {
            let len = n.max(req.min_tokens).max(1);
            if len < max {
                (len, FinishReason::Stop)
            } else {
                (max, FinishReason::Length)
            }
        }
        _ => (max, FinishReason::Length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(max: u32, min: u32, ignore_eos: bool) -> GenerateRequest {
        GenerateRequest {
            index: 0,
            received_at: Instant::now(),
            prompt: String::new(),
            prompt_tokens: 0,
            max_tokens: max,
            min_tokens: min,
            ignore_eos,
            chat: false,
            structured: false,
            answer_tokens: None,
            grammar: None,
            stream: true,
        }
    }

    #[test]
    fn output_length_follows_eos_min_and_max() {
        assert_eq!(
            output_length(&req(10, 0, false), None),
            (10, FinishReason::Length)
        );
        assert_eq!(
            output_length(&req(10, 0, false), Some(4)),
            (4, FinishReason::Stop)
        );
        assert_eq!(
            output_length(&req(10, 6, false), Some(4)),
            (6, FinishReason::Stop)
        );
        assert_eq!(
            output_length(&req(10, 0, true), Some(4)),
            (10, FinishReason::Length)
        );
        assert_eq!(
            output_length(&req(3, 0, false), Some(4)),
            (3, FinishReason::Length)
        );
        assert_eq!(
            output_length(&req(4, 0, false), Some(4)),
            (4, FinishReason::Length)
        );
    }
}
