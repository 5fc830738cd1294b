//! The vocabulary every stage shares: one request as the client saw it.
//!
//! A [`RequestRecord`] holds raw observations only — instants and counts — and nothing derived.
//! Metrics are computed later by pure functions (`metrics`), so a journal of records is enough
//! to rebuild every summary (that is what `servebench report --journal` relies on).
//!
//! Times are nanoseconds on the monotonic clock since the run's epoch (one `Instant` taken when
//! the run starts), so records from one run share one timeline with telemetry samples.

use serde::{Deserialize, Serialize};

/// Whether a request belongs to the warmup (kept in the journal, out of summaries) or is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Warmup,
    Measured,
}

/// Where a request's output token counts came from (best first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TokenSource {
    /// Per-event deltas of the server's running usage (vLLM `continuous_usage_stats`).
    UsageDelta,
    /// The server's final `usage.completion_tokens`, spread over the text events.
    UsageFinal,
    /// No usage from the server: one token per text event (a lower bound when chunks merge tokens).
    #[default]
    Events,
}

/// Why a request failed. Every failure is counted by kind; none is left out of the denominators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FailureKind {
    /// The connection could not be made (refused, DNS), or the request could not be handed
    /// to one.
    Connect,
    /// `--request-timeout` elapsed before the response completed.
    Timeout,
    /// The server answered with a non-success HTTP status.
    Http { status: u16 },
    /// The server reported an error inside the response (an `event: error` frame, or an
    /// `{"error": …}` object in a 200 response).
    ServerError,
    /// The connection broke mid-response: the HTTP body did not end properly (a reset, a
    /// close before the last chunk of a chunked body).
    Disconnect,
    /// The stream ended cleanly (the HTTP body was complete) but no choice ever carried a
    /// `finish_reason` and no `data: [DONE]` came: the answer was cut off by the server or a
    /// proxy. A clean end *after* a `finish_reason` is a success (see
    /// [`RequestRecord::done_marker`]).
    Truncated,
    /// A 200 answer to a streaming request that is not SSE and not a completion: an HTML
    /// page, plain text, JSON that is neither a completion nor an error object, or an empty
    /// body. The message quotes the first bytes.
    NotSse,
    /// A chunk that is not the JSON it should be.
    Parse,
    /// The request was written to the connection, and the server reset or closed it before
    /// the first byte of a response. The server may have read it (and be working on it), so
    /// it is never sent again: a reset after the request was delivered is the server's
    /// failure, not a stale connection. See `docs/metrics.md` (resends).
    ResetAfterSend,
    /// The request was in flight when the run was interrupted (Ctrl-C).
    Cancelled,
    /// The request was scheduled but never sent because the run was interrupted.
    NotSent,
}

impl FailureKind {
    /// A stable label for breakdowns, e.g. `http_500`, `timeout`.
    pub fn label(&self) -> String {
        match self {
            FailureKind::Connect => "connect".into(),
            FailureKind::Timeout => "timeout".into(),
            FailureKind::Http { status } => format!("http_{status}"),
            FailureKind::ServerError => "server_error".into(),
            FailureKind::Disconnect => "disconnect".into(),
            FailureKind::Truncated => "truncated".into(),
            FailureKind::NotSse => "not_sse".into(),
            FailureKind::Parse => "parse".into(),
            FailureKind::ResetAfterSend => "reset_after_send".into(),
            FailureKind::Cancelled => "cancelled".into(),
            FailureKind::NotSent => "not_sent".into(),
        }
    }
}

/// How a request ended. Failures are data, not errors that unwind a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Success,
    Failed {
        #[serde(flatten)]
        kind: FailureKind,
        /// What the server or the transport said, truncated; never contains the API key.
        message: String,
    },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

/// Token counts as the server reported them in `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// One request as the client saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: u64,
    pub phase: Phase,
    /// When the load schedule wanted the request sent (open loop: its arrival time; closed loop:
    /// when its slot freed).
    pub scheduled_ns: u64,
    /// When an in-flight slot was granted (equals `scheduled_ns` when no cap made it wait).
    /// `sent_ns - slot_ns` is the client's own dispatch lag.
    pub slot_ns: u64,
    /// When the request was handed to the connection.
    pub sent_ns: u64,
    /// Response headers received.
    pub headers_ns: Option<u64>,
    /// First event that carried generated text (content or reasoning). A role-only or empty
    /// delta does not count.
    pub first_token_ns: Option<u64>,
    /// First event with non-reasoning content.
    pub first_content_ns: Option<u64>,
    /// The last event with generated text (success), or when the failure was seen. The
    /// usage-only chunk and `[DONE]` do not move it.
    pub finished_ns: u64,
    /// Generated-text events: (µs since `sent_ns`, tokens in the event). Token counts are final
    /// (already resolved from `token_source`).
    pub events: Vec<(u32, u32)>,
    /// Prompt tokens the workload planned to send.
    pub prompt_tokens: u32,
    /// `max_tokens` the request asked for.
    pub max_tokens: u32,
    /// What the server reported, when it did.
    pub usage: Option<Usage>,
    /// Output tokens counted by the client from `token_source`.
    pub output_tokens: u32,
    pub token_source: TokenSource,
    /// The server's `usage` could not be true (far more completion tokens than `max_tokens`
    /// allows and the text events can carry; see `client::usage_is_suspect`), so
    /// `output_tokens` was counted from the events instead (`token_source: events`). `usage`
    /// still holds what the server said. Written only when true.
    #[serde(default, skip_serializing_if = "is_false")]
    pub usage_suspect: bool,
    pub outcome: Outcome,
    /// Whether a successful stream ended with `data: [DONE]`. False only for a stream that
    /// ended cleanly after a choice carried a `finish_reason` but without `[DONE]` (as
    /// `transformers serve` ends every stream): complete, and counted in the summary's
    /// `streams_without_done`. True for everything else (non-streamed answers, failures).
    /// Written only when false, so journals from before the field read as true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub done_marker: bool,
    /// Times the request was sent again on a fresh connection (the timing points still run
    /// from the first send): when the connection closed before any byte of the request was
    /// written, or, once per run, when a keep-alive connection the server was closing after
    /// its last answer (llama.cpp's pattern) ended before any response byte. Counted in the
    /// summary's `resends`; see `docs/metrics.md`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resends: u32,
    /// The answer text (content, not reasoning), when the run kept it: structured-output
    /// checks and multi-turn histories need it, `--save-detailed` writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_text: Option<String>,
    /// The conversation this request was a turn of (multi-turn workloads; `None` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<u64>,
    /// Which turn of its conversation, from 0: metrics are broken down by it, because each
    /// turn's prompt carries the whole history before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// The verdict on the answer against the run's structured-output constraint: set for
    /// successful requests of a constrained run, after the response completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_check: Option<OutputCheck>,
    /// How the output divided into reasoning, answer and tool calls, when the stream had any
    /// reasoning or tool-call delta (`None` for a plain answer, so plain journals are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_parts: Option<OutputParts>,
}

/// The parts of a reasoning model's or a function-calling answer, as the stream showed them.
///
/// A reasoning event is one whose only generated text was `delta.reasoning_content` (vLLM
/// until late 2025, SGLang) or `delta.reasoning` (vLLM since its rename, PR #27752); an event with answer content is an
/// answer event even if it carried reasoning too. Reasoning events are token events like any
/// other (they count for TTFT, ITL and TPOT); `first_content_ns` is the first answer event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputParts {
    /// The first reasoning event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_reasoning_ns: Option<u64>,
    /// Output tokens carried by reasoning events, from the record's `token_source` (so
    /// `output_tokens - reasoning_tokens` are the answer's tokens, tool-call arguments included).
    #[serde(default)]
    pub reasoning_tokens: u32,
    /// Events that carried a non-empty `tool_calls` delta (function name or argument fragments).
    #[serde(default)]
    pub tool_call_events: u32,
    /// The first tool-call event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_tool_call_ns: Option<u64>,
}

/// Whether an answer satisfied the run's constraint (JSON schema or regex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum OutputCheck {
    Valid,
    /// Not valid, with why (truncated): not JSON, cut off by `max_tokens`, a schema violation,
    /// no regex match.
    Invalid {
        reason: String,
    },
}

impl OutputCheck {
    pub fn is_valid(&self) -> bool {
        matches!(self, OutputCheck::Valid)
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

impl RequestRecord {
    /// A record for a request that failed before any response byte arrived.
    pub fn failed_before_response(
        id: u64,
        phase: Phase,
        times: (u64, u64, u64),
        at_ns: u64,
        kind: FailureKind,
        message: String,
    ) -> Self {
        let (scheduled_ns, slot_ns, sent_ns) = times;
        RequestRecord {
            id,
            phase,
            scheduled_ns,
            slot_ns,
            sent_ns,
            headers_ns: None,
            first_token_ns: None,
            first_content_ns: None,
            finished_ns: at_ns,
            events: Vec::new(),
            prompt_tokens: 0,
            max_tokens: 0,
            usage: None,
            output_tokens: 0,
            token_source: TokenSource::Events,
            usage_suspect: false,
            outcome: Outcome::Failed { kind, message },
            done_marker: true,
            resends: 0,
            output_text: None,
            conversation: None,
            turn: None,
            output_check: None,
            output_parts: None,
        }
    }

    /// Prompt tokens: the server's count when it gave one, else the planned count.
    pub fn input_tokens(&self) -> u32 {
        self.usage
            .map(|u| u.prompt_tokens)
            .filter(|&n| n > 0)
            .unwrap_or(self.prompt_tokens)
    }
}

#[cfg(test)]
impl RequestRecord {
    /// A successful measured request sent at `sent_ns`, every other time there too, no tokens
    /// and no optional observation: unit tests set what they check and take the rest from
    /// here (`RequestRecord { … , ..RequestRecord::test_success(id, sent_ns) }`), so a new
    /// field of the record is added in one place, not in every test's literal.
    pub(crate) fn test_success(id: u64, sent_ns: u64) -> RequestRecord {
        RequestRecord {
            id,
            phase: Phase::Measured,
            scheduled_ns: sent_ns,
            slot_ns: sent_ns,
            sent_ns,
            headers_ns: Some(sent_ns),
            first_token_ns: None,
            first_content_ns: None,
            finished_ns: sent_ns,
            events: Vec::new(),
            prompt_tokens: 0,
            max_tokens: 0,
            usage: None,
            output_tokens: 0,
            token_source: TokenSource::Events,
            usage_suspect: false,
            outcome: Outcome::Success,
            done_marker: true,
            resends: 0,
            output_text: None,
            conversation: None,
            turn: None,
            output_check: None,
            output_parts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_serializes_flat_and_round_trips() {
        let o = Outcome::Failed {
            kind: FailureKind::Http { status: 429 },
            message: "slow down".into(),
        };
        let s = serde_json::to_string(&o).unwrap();
        assert_eq!(
            s,
            r#"{"outcome":"failed","kind":"http","status":429,"message":"slow down"}"#
        );
        let back: Outcome = serde_json::from_str(&s).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn new_failure_kinds_have_stable_labels_and_tags() {
        for (kind, label) in [
            (FailureKind::Truncated, "truncated"),
            (FailureKind::NotSse, "not_sse"),
        ] {
            assert_eq!(kind.label(), label);
            let o = Outcome::Failed {
                kind,
                message: "m".into(),
            };
            let s = serde_json::to_string(&o).unwrap();
            assert_eq!(
                s,
                format!(r#"{{"outcome":"failed","kind":"{label}","message":"m"}}"#)
            );
            assert_eq!(serde_json::from_str::<Outcome>(&s).unwrap(), o);
        }
    }

    #[test]
    fn done_marker_and_usage_suspect_are_written_only_when_unusual() {
        let plain = RequestRecord::test_success(1, 10);
        let json = serde_json::to_string(&plain).unwrap();
        assert!(
            !json.contains("done_marker") && !json.contains("usage_suspect"),
            "{json}"
        );
        // A journal line from before the fields reads as a stream with [DONE], usage believed.
        let back: RequestRecord = serde_json::from_str(&json).unwrap();
        assert!(back.done_marker && !back.usage_suspect);
        let odd = RequestRecord {
            done_marker: false,
            usage_suspect: true,
            ..plain
        };
        let json = serde_json::to_string(&odd).unwrap();
        assert!(json.contains(r#""done_marker":false"#), "{json}");
        assert!(json.contains(r#""usage_suspect":true"#), "{json}");
        assert_eq!(serde_json::from_str::<RequestRecord>(&json).unwrap(), odd);
    }
}
