//! A backend with fixed timing: first token after a fixed TTFT, then one token per ITL.
//!
//! Used for tests, for calibrating the client (`servebench calibrate`) and as the default
//! target when no server is given. Every emission is scheduled from the request's arrival as
//! an absolute deadline (`received_at + ttft + tokens × itl`) on the precise timer
//! ([`super::timer`]), so lateness never accumulates over a long output. With `itl` and
//! `ttft` zero nothing sleeps at all: tokens are produced as fast as the HTTP layer can send
//! them.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;

use super::backend::{output_length, Backend, FinishReason, GenEvent, GenStream, GenerateRequest};
use super::timer::{self, PreciseSleep};

/// Timing of [`FixedTiming`]. `Default` is "as fast as possible, one token per chunk".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedTimingConfig {
    /// Time from the request's arrival to the first chunk.
    pub ttft: Duration,
    /// Time per output token after the first chunk. Zero: as fast as possible.
    pub itl: Duration,
    /// Tokens per SSE chunk (≥ 1; 0 is treated as 1). Each chunk after the first comes
    /// `tokens_per_chunk × itl` after the previous one, so a client that splits a k-token
    /// chunk into k samples still measures `itl` per token. The first chunk carries
    /// `tokens_per_chunk` tokens at `ttft`; a shorter last chunk comes `its tokens × itl` later.
    pub tokens_per_chunk: u32,
    /// Where the "model" emits EOS: outputs end after this many tokens with
    /// `finish_reason: "stop"`, unless the request sets `ignore_eos` (then `max_tokens` rules)
    /// or asks for more with `min_tokens`. `None`: always `max_tokens` tokens.
    pub output_cap: Option<u32>,
}

impl Default for FixedTimingConfig {
    fn default() -> Self {
        FixedTimingConfig {
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
            tokens_per_chunk: 1,
            output_cap: None,
        }
    }
}

/// The fixed-timing backend.
#[derive(Debug, Clone, Default)]
pub struct FixedTiming {
    config: FixedTimingConfig,
}

impl FixedTiming {
    pub fn new(config: FixedTimingConfig) -> FixedTiming {
        FixedTiming { config }
    }

    /// TTFT 0, ITL 0, one token per chunk: the fastest stream the server can produce.
    pub fn as_fast_as_possible() -> FixedTiming {
        FixedTiming::default()
    }

    pub fn config(&self) -> &FixedTimingConfig {
        &self.config
    }
}

impl Backend for FixedTiming {
    fn generate(&self, req: GenerateRequest) -> GenStream {
        let (total, reason) = output_length(&req, self.config.output_cap);
        Box::pin(FixedStream::new(
            &self.config,
            req.received_at,
            total,
            reason,
        ))
    }

    fn version(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "server": "servebench",
            "backend": "fixed",
            "ttft_ms": c.ttft.as_secs_f64() * 1e3,
            "itl_ms": c.itl.as_secs_f64() * 1e3,
            "tokens_per_chunk": c.tokens_per_chunk.max(1),
            "output_cap": c.output_cap,
        })
    }
}

/// A deadline far enough away to mean "never" without overflowing `Instant` arithmetic.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The emissions of one request, computed lazily from absolute deadlines. No task, no
/// channel: the HTTP body polls this stream directly, and dropping it stops everything.
struct FixedStream {
    /// `received_at + ttft`: when the first chunk is due.
    first_at: Instant,
    itl: Duration,
    per_chunk: u32,
    /// Tokens in the first chunk (`min(per_chunk, total)`); later chunks are timed relative
    /// to it.
    first_count: u32,
    total: u32,
    reason: FinishReason,
    sent: u32,
    /// Once a deadline has passed with `itl == 0`, every later one has too: skip the clock.
    always_due: bool,
    sleep: Option<PreciseSleep>,
}

impl FixedStream {
    fn new(
        cfg: &FixedTimingConfig,
        received_at: Instant,
        total: u32,
        reason: FinishReason,
    ) -> Self {
        let per_chunk = cfg.tokens_per_chunk.max(1);
        FixedStream {
            first_at: add(received_at, cfg.ttft),
            itl: cfg.itl,
            per_chunk,
            first_count: per_chunk.min(total),
            total,
            reason,
            sent: 0,
            always_due: false,
            sleep: None,
        }
    }

    /// When the chunk ending (exclusively) at token `end` is due.
    fn due(&self, end: u32) -> Instant {
        let steps = end.saturating_sub(self.first_count);
        add(self.first_at, self.itl.checked_mul(steps).unwrap_or(FAR))
    }
}

fn add(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(FAR)).unwrap_or(t)
}

impl Stream for FixedStream {
    type Item = GenEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GenEvent>> {
        let this = self.get_mut();
        if this.sent >= this.total {
            return Poll::Ready(None);
        }
        let end = this.sent.saturating_add(this.per_chunk).min(this.total);
        if !this.always_due {
            let due = this.due(end);
            if Instant::now() < due {
                let sleep = match &mut this.sleep {
                    Some(s) if s.deadline() == due => s,
                    slot => slot.insert(timer::sleep_until(due)),
                };
                if Pin::new(sleep).poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            this.sleep = None;
            this.always_due = this.itl.is_zero();
        }
        let count = end - this.sent;
        this.sent = end;
        let finish = (end == this.total).then_some(this.reason);
        Poll::Ready(Some(GenEvent::Tokens { count, finish }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn request(max_tokens: u32) -> GenerateRequest {
        GenerateRequest {
            index: 0,
            received_at: Instant::now(),
            prompt: "hello".into(),
            prompt_tokens: 1,
            max_tokens,
            min_tokens: 0,
            ignore_eos: false,
            chat: false,
            structured: false,
            answer_tokens: None,
            grammar: None,
            stream: true,
        }
    }

    async fn collect(backend: &FixedTiming, req: GenerateRequest) -> Vec<(Instant, GenEvent)> {
        let mut s = backend.generate(req);
        let mut out = Vec::new();
        while let Some(ev) = s.next().await {
            out.push((Instant::now(), ev));
        }
        out
    }

    #[tokio::test]
    async fn chunks_split_the_output_and_the_last_carries_the_finish() {
        let backend = FixedTiming::new(FixedTimingConfig {
            tokens_per_chunk: 4,
            ..Default::default()
        });
        let events: Vec<GenEvent> = collect(&backend, request(10))
            .await
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let tok = |count, finish| GenEvent::Tokens { count, finish };
        assert_eq!(
            events,
            vec![
                tok(4, None),
                tok(4, None),
                tok(2, Some(FinishReason::Length))
            ]
        );
    }

    #[tokio::test]
    async fn output_cap_acts_as_eos_unless_ignored() {
        let backend = FixedTiming::new(FixedTimingConfig {
            output_cap: Some(3),
            ..Default::default()
        });
        let events = collect(&backend, request(10)).await;
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[2].1,
            GenEvent::Tokens {
                count: 1,
                finish: Some(FinishReason::Stop)
            }
        );
        let mut req = request(10);
        req.ignore_eos = true;
        assert_eq!(collect(&backend, req).await.len(), 10);
    }

    #[tokio::test]
    async fn emissions_never_come_before_their_deadlines() {
        let backend = FixedTiming::new(FixedTimingConfig {
            ttft: Duration::from_millis(5),
            itl: Duration::from_millis(2),
            tokens_per_chunk: 2,
            output_cap: None,
        });
        let req = request(7);
        let start = req.received_at;
        let events = collect(&backend, req).await;
        // Chunks end at tokens 2, 4, 6, 7: due at 5, 9, 13, 15 ms.
        let due_ms = [5u64, 9, 13, 15];
        assert_eq!(events.len(), due_ms.len());
        for ((at, _), ms) in events.iter().zip(due_ms) {
            assert!(*at >= start + Duration::from_millis(ms));
        }
    }

    #[test]
    fn absurd_durations_do_not_overflow() {
        let cfg = FixedTimingConfig {
            ttft: Duration::MAX,
            itl: Duration::MAX,
            tokens_per_chunk: 0,
            output_cap: None,
        };
        let s = FixedStream::new(&cfg, Instant::now(), 5, FinishReason::Length);
        assert!(s.due(5) >= s.due(1));
    }
}
