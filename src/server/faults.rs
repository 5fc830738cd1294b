//! Fault injection: which request gets which fault, decided deterministically from a seed.
//!
//! Every generation request that passes validation gets an arrival index (0, 1, 2, …). The
//! fault for index `i` is drawn from a ChaCha8 stream keyed by `(seed, i)`: one uniform draw
//! compared with the cumulative probabilities in [`FaultKind::ALL`] order. The decision
//! therefore depends only on the seed and the index, never on timing or on other requests, so
//! a test can compute how many faults of each kind N requests will see
//! ([`FaultPlan::expected_counts`]) and compare them with what the server injected
//! ([`super::ServerStats::faults_injected`]) and what the client counted.
//!
//! Kinds are mutually exclusive: a request gets at most one fault.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A kind of injected fault. What the client sees, per kind:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// HTTP 500 with an OpenAI error body, before anything is generated.
    Http500,
    /// HTTP 503 with an OpenAI error body.
    Http503,
    /// HTTP 429 with a `Retry-After` header and an OpenAI error body.
    Http429,
    /// Status 200, then after `after_tokens` tokens the connection is closed without the
    /// end of the chunked body and without `data: [DONE]`. Non-streaming: half of the JSON
    /// body, then the close.
    Disconnect,
    /// After `after_tokens` tokens nothing is sent for `stall` (longer than the client's
    /// timeout), then the response continues normally. Non-streaming: the response is held
    /// back by `stall`.
    Stall,
    /// After `after_tokens` tokens one `data:` line with truncated JSON, then the stream goes
    /// on. Non-streaming: a truncated JSON body with status 200.
    MalformedChunk,
    /// After `after_tokens` tokens an `event: error` frame with an OpenAI error object, then
    /// `data: [DONE]`. Non-streaming: an error object with status 200.
    ErrorEvent,
    /// After `after_tokens` tokens a `data: {"error": …}` frame (vLLM's mid-stream error
    /// shape) and `data: [DONE]`; non-streaming: an error object with status 200.
    Error200,
    /// The stream completes (finish reason, usage) but `data: [DONE]` is never sent; the HTTP
    /// body ends cleanly, as `transformers serve` ends every stream. The client counts a
    /// success with `done_marker: false`. Not applicable to non-streaming requests (not
    /// injected, not counted).
    NoDone,
    /// The chunk that reaches `after_tokens` carries `huge_chunk_bytes` of extra text (one
    /// SSE event of that size); token counts and usage are unchanged, so the request still
    /// succeeds. Non-streaming: the text is padded the same way.
    HugeChunk,
    /// After the content chunk that reaches `after_tokens` the HTTP body ends cleanly: no
    /// `finish_reason`, no usage chunk, no `data: [DONE]` (an answer cut off by a server or
    /// proxy). The client counts `truncated`. Streaming only (not injected otherwise).
    Truncated,
    /// Status 200 to a streaming request, but the body is a page instead of SSE: an HTML
    /// error page (`text/html`) on even arrival indexes, a JSON document that is not a
    /// completion (`application/json`) on odd ones. The client counts `not_sse`. Streaming
    /// only (not injected otherwise).
    NotSse,
}

impl FaultKind {
    /// Every kind, in the order the cumulative probabilities are laid out.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Http500,
        FaultKind::Http503,
        FaultKind::Http429,
        FaultKind::Disconnect,
        FaultKind::Stall,
        FaultKind::MalformedChunk,
        FaultKind::ErrorEvent,
        FaultKind::Error200,
        FaultKind::NoDone,
        FaultKind::HugeChunk,
        // Appended, so the draws of the kinds above are what they were for a given seed.
        FaultKind::Truncated,
        FaultKind::NotSse,
    ];

    /// Stable label, used as the `kind` label on `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Http500 => "http_500",
            FaultKind::Http503 => "http_503",
            FaultKind::Http429 => "http_429",
            FaultKind::Disconnect => "disconnect",
            FaultKind::Stall => "stall",
            FaultKind::MalformedChunk => "malformed_chunk",
            FaultKind::ErrorEvent => "error_event",
            FaultKind::Error200 => "error_200",
            FaultKind::NoDone => "no_done",
            FaultKind::HugeChunk => "huge_chunk",
            FaultKind::Truncated => "truncated",
            FaultKind::NotSse => "not_sse",
        }
    }

    /// Index into [`FaultKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Faults answered instead of generating (an HTTP error status).
    pub fn is_http_status(self) -> bool {
        matches!(
            self,
            FaultKind::Http500 | FaultKind::Http503 | FaultKind::Http429
        )
    }

    /// Faults that exist only for streamed answers: a non-streamed request that draws one is
    /// answered normally and nothing is counted.
    pub fn is_streaming_only(self) -> bool {
        matches!(
            self,
            FaultKind::NoDone | FaultKind::Truncated | FaultKind::NotSse
        )
    }
}

/// Per-request fault probabilities and their parameters. All probabilities are in [0, 1] and
/// their sum must not exceed 1 (see [`FaultConfig::validate`]). `Default` injects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Probability of [`FaultKind::Http500`].
    pub http_500: f64,
    /// Probability of [`FaultKind::Http503`].
    pub http_503: f64,
    /// Probability of [`FaultKind::Http429`].
    pub http_429: f64,
    /// Probability of [`FaultKind::Disconnect`].
    pub disconnect: f64,
    /// Probability of [`FaultKind::Stall`].
    pub stall: f64,
    /// Probability of [`FaultKind::MalformedChunk`].
    pub malformed_chunk: f64,
    /// Probability of [`FaultKind::ErrorEvent`].
    pub error_event: f64,
    /// Probability of [`FaultKind::Error200`].
    pub error_200: f64,
    /// Probability of [`FaultKind::NoDone`].
    pub no_done: f64,
    /// Probability of [`FaultKind::HugeChunk`].
    pub huge_chunk: f64,
    /// Probability of [`FaultKind::Truncated`].
    pub truncated: f64,
    /// Probability of [`FaultKind::NotSse`].
    pub not_sse: f64,
    /// Mid-stream faults strike once this many tokens were sent (0: before the first token),
    /// and at the latest just before the final chunk, so a short output still gets its fault.
    pub after_tokens: u32,
    /// How long a [`FaultKind::Stall`] sends nothing. Make it longer than the client's
    /// request timeout to exercise timeouts.
    pub stall_for: Duration,
    /// `Retry-After` seconds sent with HTTP 429.
    pub retry_after_secs: u32,
    /// Extra text bytes carried by a [`FaultKind::HugeChunk`].
    pub huge_chunk_bytes: usize,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            http_500: 0.0,
            http_503: 0.0,
            http_429: 0.0,
            disconnect: 0.0,
            stall: 0.0,
            malformed_chunk: 0.0,
            error_event: 0.0,
            error_200: 0.0,
            no_done: 0.0,
            huge_chunk: 0.0,
            truncated: 0.0,
            not_sse: 0.0,
            after_tokens: 1,
            stall_for: Duration::from_secs(60),
            retry_after_secs: 1,
            huge_chunk_bytes: 1 << 20,
        }
    }
}

/// A fault configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultConfigError {
    #[error("fault probability for {kind} is {value}; give a number between 0 and 1")]
    OutOfRange { kind: &'static str, value: f64 },
    #[error("fault probabilities add up to {sum:.4}; a request gets at most one fault, so keep the sum at or below 1")]
    SumAboveOne { sum: f64 },
}

impl FaultConfig {
    /// The probability configured for `kind`.
    pub fn probability(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::Http500 => self.http_500,
            FaultKind::Http503 => self.http_503,
            FaultKind::Http429 => self.http_429,
            FaultKind::Disconnect => self.disconnect,
            FaultKind::Stall => self.stall,
            FaultKind::MalformedChunk => self.malformed_chunk,
            FaultKind::ErrorEvent => self.error_event,
            FaultKind::Error200 => self.error_200,
            FaultKind::NoDone => self.no_done,
            FaultKind::HugeChunk => self.huge_chunk,
            FaultKind::Truncated => self.truncated,
            FaultKind::NotSse => self.not_sse,
        }
    }

    /// Set the probability for `kind` (handy for tests and flag mapping).
    pub fn with(mut self, kind: FaultKind, p: f64) -> FaultConfig {
        let slot = match kind {
            FaultKind::Http500 => &mut self.http_500,
            FaultKind::Http503 => &mut self.http_503,
            FaultKind::Http429 => &mut self.http_429,
            FaultKind::Disconnect => &mut self.disconnect,
            FaultKind::Stall => &mut self.stall,
            FaultKind::MalformedChunk => &mut self.malformed_chunk,
            FaultKind::ErrorEvent => &mut self.error_event,
            FaultKind::Error200 => &mut self.error_200,
            FaultKind::NoDone => &mut self.no_done,
            FaultKind::HugeChunk => &mut self.huge_chunk,
            FaultKind::Truncated => &mut self.truncated,
            FaultKind::NotSse => &mut self.not_sse,
        };
        *slot = p;
        self
    }

    pub fn validate(&self) -> Result<(), FaultConfigError> {
        let mut sum = 0.0;
        for kind in FaultKind::ALL {
            let value = self.probability(kind);
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultConfigError::OutOfRange {
                    kind: kind.label(),
                    value,
                });
            }
            sum += value;
        }
        // Allow for rounding in sums such as 0.1 + 0.2 + 0.7.
        if sum > 1.0 + 1e-9 {
            return Err(FaultConfigError::SumAboveOne { sum });
        }
        Ok(())
    }

    /// Whether any fault can be injected at all.
    pub fn any(&self) -> bool {
        FaultKind::ALL.iter().any(|k| self.probability(*k) > 0.0)
    }
}

/// The seeded decision rule. Cheap to clone; `decide` is a pure function of the index.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    seed: u64,
    /// Cumulative upper bounds per kind, in [`FaultKind::ALL`] order.
    cumulative: [f64; FaultKind::ALL.len()],
    active: bool,
}

impl FaultPlan {
    /// A plan for `config` and `seed`. Probabilities outside [0, 1] are clamped; if they add
    /// up to more than 1 the later kinds get what is left (call [`FaultConfig::validate`]
    /// first to reject such configs with a message).
    pub fn new(config: &FaultConfig, seed: u64) -> FaultPlan {
        let mut cumulative = [0.0; FaultKind::ALL.len()];
        let mut acc: f64 = 0.0;
        for (slot, kind) in cumulative.iter_mut().zip(FaultKind::ALL) {
            let p = config.probability(kind);
            let p = if p.is_finite() {
                p.clamp(0.0, 1.0)
            } else {
                0.0
            };
            acc = (acc + p).min(1.0);
            *slot = acc;
        }
        FaultPlan {
            seed,
            cumulative,
            active: acc > 0.0,
        }
    }

    /// The fault for the request with arrival index `index`, if any.
    pub fn decide(&self, index: u64) -> Option<FaultKind> {
        if !self.active {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index);
        let u: f64 = rng.random();
        self.cumulative
            .iter()
            .position(|upper| u < *upper)
            .map(|i| FaultKind::ALL[i])
    }

    /// How many faults of each kind requests `0..n` get (kinds with zero omitted).
    pub fn expected_counts(&self, n: u64) -> BTreeMap<FaultKind, u64> {
        let mut counts = BTreeMap::new();
        for i in 0..n {
            if let Some(kind) = self.decide(i) {
                *counts.entry(kind).or_insert(0) += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_faults_by_default() {
        let plan = FaultPlan::new(&FaultConfig::default(), 7);
        assert!((0..1000).all(|i| plan.decide(i).is_none()));
        assert!(!FaultConfig::default().any());
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = FaultConfig::default().with(FaultKind::Stall, 1.5);
        assert_eq!(
            bad.validate(),
            Err(FaultConfigError::OutOfRange {
                kind: "stall",
                value: 1.5
            })
        );
        let too_much = FaultConfig::default()
            .with(FaultKind::Http500, 0.6)
            .with(FaultKind::Disconnect, 0.6);
        assert!(matches!(
            too_much.validate(),
            Err(FaultConfigError::SumAboveOne { .. })
        ));
        let certain = FaultConfig::default()
            .with(FaultKind::Http500, 0.1)
            .with(FaultKind::Http503, 0.2)
            .with(FaultKind::Disconnect, 0.7);
        assert_eq!(certain.validate(), Ok(()));
    }

    #[test]
    fn probability_one_always_injects_that_kind() {
        for kind in FaultKind::ALL {
            let plan = FaultPlan::new(&FaultConfig::default().with(kind, 1.0), 3);
            assert!((0..200).all(|i| plan.decide(i) == Some(kind)), "{kind:?}");
        }
    }

    #[test]
    fn rates_are_close_to_the_probabilities() {
        let config = FaultConfig::default()
            .with(FaultKind::Http500, 0.1)
            .with(FaultKind::Disconnect, 0.05);
        let counts = FaultPlan::new(&config, 42).expected_counts(20_000);
        let rate = |k| counts.get(&k).copied().unwrap_or(0) as f64 / 20_000.0;
        assert!((rate(FaultKind::Http500) - 0.1).abs() < 0.01);
        assert!((rate(FaultKind::Disconnect) - 0.05).abs() < 0.01);
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn labels_are_distinct_and_indexes_match() {
        let labels: std::collections::BTreeSet<_> =
            FaultKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), FaultKind::ALL.len());
        for (i, k) in FaultKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    proptest! {
        #[test]
        fn decisions_depend_only_on_seed_and_index(seed in any::<u64>(), index in any::<u64>(), p in 0.0f64..1.0) {
            let config = FaultConfig::default().with(FaultKind::Http429, p);
            let a = FaultPlan::new(&config, seed);
            let b = FaultPlan::new(&config, seed);
            // Asking about other indexes first changes nothing.
            let _ = b.decide(index.wrapping_add(1));
            prop_assert_eq!(a.decide(index), b.decide(index));
        }
    }
}
