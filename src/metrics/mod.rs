//! Metrics: pure functions from request records to a [`Summary`].
//!
//! Every definition here is the one in `docs`/`shared/design/metrics.md`; the points that the
//! table leaves open are decided and written down next to the code that decides them:
//!
//! - **Which requests.** Warmup records are counted (`warmup_records`) and otherwise ignored.
//!   Latency distributions (TTFT, TPOT, ITL, ICL, E2E) are over *successful* measured requests,
//!   as in `vllm bench serve`. Queue time and dispatch lag are about the client, so they are over
//!   every measured request that was *sent* (successful or not). A request scheduled but never
//!   sent (`FailureKind::NotSent`) counts as attempted and failed, and is left out of every time
//!   span (it has no real send time).
//! - **ITL** is one sample per output token after the first: an event that carried `k` tokens
//!   `g` after the previous one contributes `k` samples of `g/k`. The first event has no previous
//!   event (its gap from the send is TTFT), so it contributes nothing — not even for the `k − 1`
//!   extra tokens it may carry: they arrived together with the first token, and no gap can be
//!   honestly attributed to them. A text event with 0 tokens (possible when a server's final usage
//!   is spread over more events than it has tokens) gives an ICL sample; its gap is carried into
//!   the next token-carrying event's ITL gap so no time is lost.
//! - **ICL** is one sample per event gap (events after the first), whatever the tokens.
//! - **TPOT** is `(finished − first_token) / (output_tokens − 1)` for successful requests with
//!   at least two output tokens and a first-token time.
//! - **Empty distributions** (no samples) are all zeros with `count: 0`, like vLLM's `np.mean(0)`,
//!   so the JSON never holds NaN.
//! - **Throughputs** are 0 when the duration is 0.
//! - **Goodput**: a successful request is good when it meets every SLO given (`≤`). A request
//!   with fewer than 2 output tokens has no TPOT and meets a TPOT SLO (vLLM counts its TPOT as 0);
//!   a request with no first-token time cannot be shown to meet a TTFT SLO, so it does not.
//! - **`max_output_tokens_per_s`** (vLLM's peak key): output tokens of successful requests counted
//!   in 1 s windows starting at the first successful send (to 10 ms), maximum over the windows.
//!   Unlike vLLM, which counts one token per chunk, each event adds the tokens it carried.
//!   **`max_concurrent_requests`**: as vLLM, the most successful requests active in any of those
//!   1 s windows.
//! - **Client self-check**: see [`SelfCheck`] for the `client_limited` rule.
//! - **Per turn** (multi-turn runs, records with a `turn`): attempted, completed, mean input
//!   tokens and the TTFT distribution of each turn index, over the same requests as above.

mod accumulator;
mod percentile;

pub use accumulator::{summarize, Accumulator};
pub use percentile::{percentile, percentile_of_ranks};

use crate::record::TokenSource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever a field of [`Summary`] changes meaning or is removed.
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

/// Percentiles every distribution carries, whatever else is asked (`--metric-percentiles`).
pub const STANDARD_PERCENTILES: [f64; 4] = [50.0, 90.0, 95.0, 99.0];

/// Dispatch lag (P99) above which the client is judged too slow to keep its schedule.
pub const MAX_DISPATCH_LAG_P99_MS: f64 = 1.0;
/// Achieved send rate below this fraction of the schedule's own rate marks the client limited.
pub const MIN_SEND_RATE_FRACTION: f64 = 0.95;
/// Client CPU at or above this fraction of the cores it may use marks the client limited.
pub const MAX_CPU_FRACTION: f64 = 0.90;

/// How a percentile is named in keys and labels, as vLLM does: `99` → `"99"`, `99.9` → `"99.9"`.
pub fn percentile_label(p: f64) -> String {
    if p.fract() == 0.0 && p.abs() < 1e15 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

/// The stable label of a token source, as in the report (`usage-delta` | `usage-final` | `events`).
pub fn token_source_label(source: TokenSource) -> &'static str {
    match source {
        TokenSource::UsageDelta => "usage-delta",
        TokenSource::UsageFinal => "usage-final",
        TokenSource::Events => "events",
    }
}

/// Service-level objectives for goodput, in milliseconds (`--goodput ttft:MS tpot:MS e2el:MS`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Slo {
    /// No objective given: goodput is not computed (vLLM writes `request_goodput: null`).
    pub fn is_empty(&self) -> bool {
        self.ttft_ms.is_none() && self.tpot_ms.is_none() && self.e2el_ms.is_none()
    }
}

/// The client's own CPU use over the run, measured by the caller (e.g. `getrusage`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClientCpu {
    /// User + system CPU seconds the client process used.
    pub cpu_seconds: f64,
    /// Wall-clock seconds over which `cpu_seconds` was measured.
    pub wall_seconds: f64,
    /// Cores the client may use (its affinity mask or `available_parallelism`).
    pub cores: f64,
}

/// What the records alone cannot tell: inputs to [`Accumulator::finish`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryFacts {
    /// Extra percentiles asked for (`--metric-percentiles`); [`STANDARD_PERCENTILES`] are
    /// always included.
    pub percentiles: Vec<f64>,
    pub slo: Slo,
    /// The open-loop rate asked for, requests/s; `None` for closed loop or `inf`.
    pub offered_rate: Option<f64>,
    pub client_cpu: Option<ClientCpu>,
}

/// Mean, spread and percentiles of one metric, in milliseconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Distribution {
    /// Samples (0 means every other field is 0).
    pub count: u64,
    pub mean: f64,
    /// Population standard deviation (numpy's default, `ddof=0`).
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// `(p, value)` ascending by `p`.
    pub percentiles: Vec<(f64, f64)>,
}

impl Distribution {
    /// The value at percentile `p` if it was computed.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|(q, _)| *q == p)
            .map(|&(_, v)| v)
    }

    /// P50 (always computed).
    pub fn median(&self) -> f64 {
        self.percentile(50.0).unwrap_or(0.0)
    }
}

/// Requests that met every SLO given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goodput {
    pub slo: Slo,
    /// Successful requests that met every SLO.
    pub good: u64,
    /// `good / duration`, requests/s.
    pub request_goodput: f64,
    /// `good / attempted` (failures are never good).
    pub good_fraction: f64,
}

/// Where token counts came from, and server vs client counts side by side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TokenReport {
    /// The source of every successful request's count, or `mixed` when they differ
    /// (`none` when there was no successful request).
    pub token_source: String,
    /// Successful requests per source label.
    pub by_source: BTreeMap<String, u64>,
    /// Output tokens counted by the client over successful requests.
    pub client_output_tokens: u64,
    /// Successful requests whose server reported `usage`.
    pub records_with_usage: u64,
    /// Sum of the server's `usage.completion_tokens` over those requests.
    pub server_completion_tokens: Option<u64>,
    /// Client output tokens over the same requests, to compare with the line above.
    pub client_tokens_where_usage: Option<u64>,
    /// Of those requests, how many had a client count different from the server's.
    pub records_disagreeing: u64,
    /// Successful requests whose server `usage` could not be true (far beyond `max_tokens`
    /// and what the text events can carry) and was replaced by a count from the events
    /// (they are in `by_source` under `events`; see `client::usage_is_suspect`).
    #[serde(default)]
    pub records_usage_suspect: u64,
}

/// Whether the client kept up with what it was asked to do.
///
/// `client_limited` is true when any of these holds (each adds a line to `reasons`):
/// 1. dispatch lag (`sent − slot`) P99 > [`MAX_DISPATCH_LAG_P99_MS`] (1 ms): the client was late
///    handing requests to connections;
/// 2. open loop only (an offered rate was given), and no request waited for an in-flight cap:
///    achieved send rate < [`MIN_SEND_RATE_FRACTION`] (95 %) of the schedule's own rate. The
///    schedule's realized rate is used rather than the nominal one because a seeded Poisson
///    schedule of a few hundred requests legitimately differs from its nominal rate by several
///    percent; a cap that made requests wait is the server's limit, not the client's;
/// 3. client CPU ≥ [`MAX_CPU_FRACTION`] (90 %) of the cores it may use (one core when pinned).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SelfCheck {
    /// Rate asked for, requests/s (`None`: closed loop or `inf`).
    pub offered_rate: Option<f64>,
    /// The schedule's realized rate, `(n − 1) / (last scheduled − first scheduled)`.
    pub scheduled_rate: Option<f64>,
    /// `(n − 1) / (last sent − first sent)` over sent measured requests; `n − 1` intervals
    /// because `n` sends span `n − 1` gaps (exact for a constant-rate schedule).
    pub achieved_send_rate: Option<f64>,
    pub dispatch_lag_p50_ms: f64,
    pub dispatch_lag_p99_ms: f64,
    pub dispatch_lag_max_ms: f64,
    /// Sent requests that waited for an in-flight slot (`slot > scheduled`).
    pub cap_waited: u64,
    pub cpu_seconds: Option<f64>,
    /// CPU seconds / wall seconds × 100 (can exceed 100 with several cores).
    pub cpu_percent: Option<f64>,
    pub cpu_cores: Option<f64>,
    pub client_limited: bool,
    pub reasons: Vec<String>,
}

/// Everything the run's outputs report, over the measured phase. Serializable and versioned.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    /// Records of the warmup phase seen (and left out of everything else).
    pub warmup_records: u64,
    /// Measured requests scheduled, including failed and never-sent ones.
    pub attempted: u64,
    /// Successful measured requests.
    pub completed: u64,
    /// `attempted − completed`.
    pub failed: u64,
    /// `completed / attempted` (0 when nothing was attempted).
    pub success_rate: f64,
    pub error_rate: f64,
    /// Failed requests per [`FailureKind::label`](crate::record::FailureKind::label).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Successful streams that ended cleanly after a `finish_reason` without `data: [DONE]`
    /// (`done_marker: false`; `transformers serve` ends every stream so). Complete, so they
    /// are among `completed`; counted so a server's framing is visible.
    #[serde(default)]
    pub streams_without_done: u64,
    /// Times measured requests were sent again on a fresh connection (successful or not), and
    /// how many requests that was (`RequestRecord::resends`; see `docs/metrics.md`).
    #[serde(default)]
    pub resends: u64,
    #[serde(default)]
    pub requests_resent: u64,
    /// First send → last finish of the measured phase, seconds.
    pub duration_s: f64,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    /// Prompt tokens of successful requests (server's count when given).
    pub total_input_tokens: u64,
    /// Output tokens of successful requests.
    pub total_output_tokens: u64,
    /// `None` when no SLO was given.
    pub goodput: Option<Goodput>,
    pub max_output_tokens_per_s: f64,
    pub max_concurrent_requests: u64,
    pub ttft_ms: Distribution,
    pub tpot_ms: Distribution,
    pub itl_ms: Distribution,
    pub icl_ms: Distribution,
    pub e2el_ms: Distribution,
    /// E2E plus queue time (`finished − scheduled`).
    pub e2el_with_queue_ms: Distribution,
    pub queue_ms: Distribution,
    pub tokens: TokenReport,
    pub self_check: SelfCheck,
    /// Structured output: the verdicts on the answers of a constrained run (`None` when no
    /// record carried one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured: Option<StructuredOutput>,
    /// Multi-turn runs: the measured requests by turn (0-based), ascending. Each turn's prompt
    /// holds the whole history before it, so TTFT by turn shows whether a prefix cache pays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<TurnSummary>,
    /// Reasoning models and function calling: how the answers divided into reasoning, answer
    /// and tool calls (`None` when no successful measured request streamed either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_parts: Option<OutputPartsSummary>,
}

/// Reasoning and tool-call timing over the successful measured requests (AIPerf's names
/// where it has one: TTFO, reasoning token count).
///
/// TTFT stays the time to the first token of any kind (reasoning included), as in vLLM and
/// AIPerf; `ttfo_ms` is the time to the first *answer* token, which is what GenAI-Perf called
/// TTFT for reasoning models.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutputPartsSummary {
    /// Successful requests whose stream had reasoning events.
    pub requests_with_reasoning: u64,
    /// Output tokens in reasoning events (same token source as `total_output_tokens`).
    pub reasoning_tokens: u64,
    /// `total_output_tokens − reasoning_tokens`: the answers' tokens, tool calls included.
    pub answer_tokens: u64,
    /// Time to first output token: first answer event (content or tool call) − sent, over
    /// successful requests that had one.
    pub ttfo_ms: Distribution,
    /// Time to first reasoning token: first reasoning event − sent, over requests with one.
    pub ttfr_ms: Distribution,
    /// Reasoning time: first answer event − first reasoning event, over requests with both.
    pub reasoning_ms: Distribution,
    /// Successful requests whose stream had tool-call deltas.
    pub requests_with_tool_calls: u64,
    /// Events that carried tool-call deltas, over all successful requests.
    pub tool_call_events: u64,
    /// Time to first tool call: first tool-call event − sent, over requests with one.
    pub ttftc_ms: Distribution,
}

/// The measured requests of one turn index (multi-turn runs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TurnSummary {
    /// 0-based turn of its conversation.
    pub turn: u32,
    /// Measured requests of this turn, failed and never-sent ones included.
    pub attempted: u64,
    pub completed: u64,
    /// Mean prompt tokens of its successful requests (the server's count when given): the
    /// history's length at this turn.
    pub mean_input_tokens: f64,
    /// TTFT of its successful requests.
    pub ttft_ms: Distribution,
}

/// How many successful answers of a constrained run satisfied the constraint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StructuredOutput {
    /// Successful measured requests whose answer was checked.
    pub checked: u64,
    pub valid: u64,
    pub invalid: u64,
    /// `valid / checked × 100`, in percent as vLLM's structured-output benchmark writes its
    /// `correct_rate`. Failed requests are in `error_rate`, not here.
    pub correct_rate: f64,
}

#[cfg(test)]
mod tests;
