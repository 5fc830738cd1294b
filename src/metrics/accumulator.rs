//! The incremental path from records to a [`Summary`]: push one record at a time, keep only
//! compact scalars, finish once.
//!
//! Memory is what makes this a separate type. A run of 100k requests × 64 tokens is 6.4M
//! token events; whole records would cost ~70 MB of `Vec`s plus their headers. The accumulator
//! keeps, per measured request, a handful of `f64`/`u64` scalars (~90 bytes), and per token
//! event one `(gap µs, tokens)` pair of two `u32` (8 bytes) that serves both ITL and ICL, so
//! that run needs ~60 MB in all, linear in what was measured and independent of prompt or text
//! size. Peak-throughput counting uses a 100 ms histogram (4 bytes per 100 ms of run).

use super::{
    percentile_label, percentile_of_ranks, token_source_label, Distribution, Goodput,
    OutputPartsSummary, SelfCheck, Slo, StructuredOutput, Summary, SummaryFacts, TokenReport,
    TurnSummary, MAX_CPU_FRACTION, MAX_DISPATCH_LAG_P99_MS, MIN_SEND_RATE_FRACTION,
    STANDARD_PERCENTILES, SUMMARY_SCHEMA_VERSION,
};
use crate::record::{FailureKind, Outcome, Phase, RequestRecord};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

const NS_PER_MS: f64 = 1e6;
const NS_PER_S: u64 = 1_000_000_000;
/// Histogram bucket for `max_output_tokens_per_s`.
const BUCKET_NS: u64 = 100_000_000;
const BUCKETS_PER_WINDOW: u64 = NS_PER_S / BUCKET_NS;
/// At most ~9.7 days of 100 ms buckets (32 MiB): a corrupt timestamp must not allocate the world.
const MAX_BUCKETS: u64 = 1 << 23;

/// High bits of an event entry's token count. Entries normally serve both ITL and ICL; only
/// when a zero-token event splits the two does one entry become ICL-only and a second ITL-only.
const ICL_ONLY: u32 = 1 << 31;
const ITL_ONLY: u32 = 1 << 30;
const TOKENS_MASK: u32 = ITL_ONLY - 1;

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / NS_PER_MS
}

/// The smallest and largest of the values seen.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    min: Option<u64>,
    max: Option<u64>,
}

impl Span {
    fn include(&mut self, v: u64) {
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }

    fn merge(&mut self, other: Span) {
        if let Some(v) = other.min {
            self.include(v);
        }
        if let Some(v) = other.max {
            self.include(v);
        }
    }

    /// `(count − 1) / (max − min)` in per-second units, when defined.
    fn rate(&self, count: u64) -> Option<f64> {
        let (lo, hi) = (self.min?, self.max?);
        (count >= 2 && hi > lo).then(|| (count - 1) as f64 / ((hi - lo) as f64 / 1e9))
    }
}

/// Per successful request: what goodput and the per-request distributions need.
#[derive(Debug, Clone, Copy)]
struct Success {
    ttft_ms: Option<f64>,
    tpot_ms: Option<f64>,
    e2el_ms: f64,
    /// False only for an answer checked and found invalid against the run's constraint.
    valid: bool,
}

impl Success {
    fn meets(&self, slo: &Slo) -> bool {
        let ttft_ok = slo
            .ttft_ms
            .is_none_or(|max| self.ttft_ms.is_some_and(|v| v <= max));
        let tpot_ok = slo
            .tpot_ms
            .is_none_or(|max| self.tpot_ms.is_none_or(|v| v <= max));
        let e2el_ok = slo.e2el_ms.is_none_or(|max| self.e2el_ms <= max);
        // An answer that breaks its schema is not useful work, however fast it came.
        ttft_ok && tpot_ok && e2el_ok && self.valid
    }
}

/// Output tokens per 100 ms bucket of absolute run time, growing in either direction.
#[derive(Debug, Clone, Default)]
struct TokenBuckets {
    base: u64,
    counts: VecDeque<u32>,
}

impl TokenBuckets {
    fn add(&mut self, at_ns: u64, tokens: u32) {
        let idx = at_ns / BUCKET_NS;
        if self.counts.is_empty() {
            self.base = idx;
        }
        let end = self.base + self.counts.len() as u64;
        let new_lo = self.base.min(idx);
        let new_hi = end.max(idx + 1);
        if new_hi - new_lo > MAX_BUCKETS {
            return; // a timestamp days away from the rest: left out of the peak, not fatal
        }
        while self.base > idx {
            self.counts.push_front(0);
            self.base -= 1;
        }
        while self.base + (self.counts.len() as u64) <= idx {
            self.counts.push_back(0);
        }
        let slot = &mut self.counts[(idx - self.base) as usize];
        *slot = slot.saturating_add(tokens);
    }

    /// The most tokens in any 1 s window, windows starting at the bucket of `start_ns`.
    fn peak_per_second(&self, start_ns: u64) -> f64 {
        let start = start_ns / BUCKET_NS;
        let mut windows: BTreeMap<u64, u64> = BTreeMap::new();
        for (i, &c) in self.counts.iter().enumerate() {
            let b = self.base + i as u64;
            if b >= start && c > 0 {
                *windows.entry((b - start) / BUCKETS_PER_WINDOW).or_default() += u64::from(c);
            }
        }
        windows.values().copied().max().unwrap_or(0) as f64
    }
}

/// Incremental metrics over a run: [`push`](Self::push) each record as it completes (warmup
/// included — it is recognized and left out), then [`finish`](Self::finish).
///
/// Per-worker accumulators can be [`merge`](Self::merge)d at the end instead of sharing one.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    warmup: u64,
    attempted: u64,
    errors: BTreeMap<String, u64>,
    scheduled: Span,
    sent: Span,
    sent_count: u64,
    last_finished: Option<u64>,
    queue_ms: Vec<f64>,
    lag_ms: Vec<f64>,
    cap_waited: u64,
    successes: Vec<Success>,
    e2el_with_queue_ms: Vec<f64>,
    /// (sent, finished) of successful requests, for `max_concurrent_requests`.
    spans: Vec<(u64, u64)>,
    input_tokens: u64,
    output_tokens: u64,
    by_source: BTreeMap<&'static str, u64>,
    usage_records: u64,
    server_tokens: u64,
    client_tokens_where_usage: u64,
    disagreeing: u64,
    usage_suspect: u64,
    streams_without_done: u64,
    /// Sends again of measured requests (`RequestRecord::resends`), and the requests resent.
    resends: u64,
    requests_resent: u64,
    /// (gap µs since the previous event, tokens | flags), events after each request's first.
    events: Vec<(u32, u32)>,
    buckets: TokenBuckets,
    /// Successful answers checked against a structured-output constraint, and the valid ones.
    checked: u64,
    valid: u64,
    /// Multi-turn runs: per turn index.
    turns: BTreeMap<u32, TurnAcc>,
    /// Reasoning and tool calls (`None` until a successful record had either).
    parts: Option<Box<PartsAcc>>,
    /// First answer event − sent of every successful request with one (TTFO: reported only
    /// when `parts` is set, but collected from the start so no request is missed).
    ttfo_ms: Vec<f64>,
}

/// The reasoning and tool-call share of a run.
#[derive(Debug, Clone, Default)]
struct PartsAcc {
    with_reasoning: u64,
    reasoning_tokens: u64,
    ttfr_ms: Vec<f64>,
    reasoning_ms: Vec<f64>,
    with_tool_calls: u64,
    tool_call_events: u64,
    ttftc_ms: Vec<f64>,
}

impl PartsAcc {
    fn push(&mut self, rec: &RequestRecord, p: &crate::record::OutputParts) {
        let since_sent = |t: u64| ns_to_ms(t.saturating_sub(rec.sent_ns));
        if let Some(r) = p.first_reasoning_ns {
            self.with_reasoning += 1;
            self.ttfr_ms.push(since_sent(r));
            if let Some(c) = rec.first_content_ns {
                self.reasoning_ms.push(ns_to_ms(c.saturating_sub(r)));
            }
        }
        self.reasoning_tokens += u64::from(p.reasoning_tokens);
        if p.tool_call_events > 0 {
            self.with_tool_calls += 1;
            self.tool_call_events += u64::from(p.tool_call_events);
        }
        self.ttftc_ms.extend(p.first_tool_call_ns.map(since_sent));
    }

    fn merge(&mut self, o: PartsAcc) {
        self.with_reasoning += o.with_reasoning;
        self.reasoning_tokens += o.reasoning_tokens;
        self.ttfr_ms.extend(o.ttfr_ms);
        self.reasoning_ms.extend(o.reasoning_ms);
        self.with_tool_calls += o.with_tool_calls;
        self.tool_call_events += o.tool_call_events;
        self.ttftc_ms.extend(o.ttftc_ms);
    }
}

/// One turn index's share of a multi-turn run.
#[derive(Debug, Clone, Default)]
struct TurnAcc {
    attempted: u64,
    completed: u64,
    input_tokens: u64,
    ttft_ms: Vec<f64>,
}

impl TurnAcc {
    fn merge(&mut self, o: TurnAcc) {
        self.attempted += o.attempted;
        self.completed += o.completed;
        self.input_tokens += o.input_tokens;
        self.ttft_ms.extend(o.ttft_ms);
    }
}

impl Accumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserve room for `requests` measured requests of about `events_per_request` events, so a
    /// long run does not reallocate (and briefly double) its buffers as it grows.
    pub fn reserve(&mut self, requests: usize, events_per_request: usize) {
        self.queue_ms.reserve(requests);
        self.lag_ms.reserve(requests);
        self.successes.reserve(requests);
        self.ttfo_ms.reserve(requests);
        self.e2el_with_queue_ms.reserve(requests);
        self.spans.reserve(requests);
        self.events
            .reserve(requests.saturating_mul(events_per_request.saturating_sub(1)));
    }

    /// An estimate of the heap this accumulator holds (capacities, not lengths), for the
    /// memory line of a run's report.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        (self.queue_ms.capacity() + self.lag_ms.capacity() + self.e2el_with_queue_ms.capacity())
            * size_of::<f64>()
            + self.successes.capacity() * size_of::<Success>()
            + self.spans.capacity() * size_of::<(u64, u64)>()
            + self.events.capacity() * size_of::<(u32, u32)>()
            + self.buckets.counts.capacity() * size_of::<u32>()
            + self.ttfo_ms.capacity() * size_of::<f64>()
    }

    /// Measured records pushed so far (warmup not included).
    pub fn attempted(&self) -> u64 {
        self.attempted
    }

    /// Take one record into account. Cheap: a few pushes onto flat vectors.
    pub fn push(&mut self, rec: &RequestRecord) {
        if rec.phase == Phase::Warmup {
            self.warmup += 1;
            return;
        }
        self.attempted += 1;
        if let Some(t) = rec.turn {
            self.turns.entry(t).or_default().attempted += 1;
        }
        self.scheduled.include(rec.scheduled_ns);
        let never_sent = matches!(
            rec.outcome,
            Outcome::Failed {
                kind: FailureKind::NotSent,
                ..
            }
        );
        if !never_sent {
            self.resends += u64::from(rec.resends);
            self.requests_resent += u64::from(rec.resends > 0);
            self.sent_count += 1;
            self.sent.include(rec.sent_ns);
            self.last_finished = Some(
                self.last_finished
                    .map_or(rec.finished_ns, |f| f.max(rec.finished_ns)),
            );
            self.queue_ms
                .push(ns_to_ms(rec.sent_ns.saturating_sub(rec.scheduled_ns)));
            self.lag_ms
                .push(ns_to_ms(rec.sent_ns.saturating_sub(rec.slot_ns)));
            if rec.slot_ns > rec.scheduled_ns {
                self.cap_waited += 1;
            }
        }
        match &rec.outcome {
            Outcome::Success => self.push_success(rec),
            Outcome::Failed { kind, .. } => *self.errors.entry(kind.label()).or_default() += 1,
        }
    }

    fn push_success(&mut self, rec: &RequestRecord) {
        let ttft_ms = rec
            .first_token_ns
            .map(|t| ns_to_ms(t.saturating_sub(rec.sent_ns)));
        let tpot_ms = match rec.first_token_ns {
            Some(t) if rec.output_tokens >= 2 => {
                Some(ns_to_ms(rec.finished_ns.saturating_sub(t)) / f64::from(rec.output_tokens - 1))
            }
            _ => None,
        };
        if let Some(check) = &rec.output_check {
            self.checked += 1;
            self.valid += u64::from(check.is_valid());
        }
        self.ttfo_ms.extend(
            rec.first_content_ns
                .map(|t| ns_to_ms(t.saturating_sub(rec.sent_ns))),
        );
        if let Some(p) = &rec.output_parts {
            self.parts.get_or_insert_with(Box::default).push(rec, p);
        }
        if let Some(t) = rec.turn {
            let acc = self.turns.entry(t).or_default();
            acc.completed += 1;
            acc.input_tokens += u64::from(rec.input_tokens());
            acc.ttft_ms.extend(ttft_ms);
        }
        self.successes.push(Success {
            ttft_ms,
            tpot_ms,
            e2el_ms: ns_to_ms(rec.finished_ns.saturating_sub(rec.sent_ns)),
            valid: rec.output_check.as_ref().is_none_or(|c| c.is_valid()),
        });
        self.e2el_with_queue_ms
            .push(ns_to_ms(rec.finished_ns.saturating_sub(rec.scheduled_ns)));
        self.spans.push((rec.sent_ns, rec.finished_ns));
        self.input_tokens += u64::from(rec.input_tokens());
        self.output_tokens += u64::from(rec.output_tokens);
        *self
            .by_source
            .entry(token_source_label(rec.token_source))
            .or_default() += 1;
        self.usage_suspect += u64::from(rec.usage_suspect);
        self.streams_without_done += u64::from(!rec.done_marker);
        if let Some(usage) = rec.usage {
            self.usage_records += 1;
            self.server_tokens += u64::from(usage.completion_tokens);
            self.client_tokens_where_usage += u64::from(rec.output_tokens);
            if usage.completion_tokens != rec.output_tokens {
                self.disagreeing += 1;
            }
        }
        self.push_events(rec);
    }

    fn push_events(&mut self, rec: &RequestRecord) {
        let mut prev_us: Option<u32> = None;
        // Time of zero-token events since the last token-carrying one, owed to the next ITL gap.
        let mut carried_us: u32 = 0;
        for &(at_us, tokens) in &rec.events {
            let k = tokens.min(TOKENS_MASK);
            if let Some(prev) = prev_us {
                let gap = at_us.saturating_sub(prev);
                if k == 0 {
                    self.events.push((gap, ICL_ONLY));
                    carried_us = carried_us.saturating_add(gap);
                } else if carried_us == 0 {
                    self.events.push((gap, k));
                } else {
                    self.events.push((gap, ICL_ONLY));
                    self.events
                        .push((carried_us.saturating_add(gap), k | ITL_ONLY));
                    carried_us = 0;
                }
            }
            prev_us = Some(at_us);
            if k > 0 {
                let at_ns = rec.sent_ns.saturating_add(u64::from(at_us) * 1_000);
                self.buckets.add(at_ns, k);
            }
        }
    }

    /// Fold another accumulator (e.g. another worker's) into this one.
    pub fn merge(&mut self, other: Accumulator) {
        self.warmup += other.warmup;
        self.attempted += other.attempted;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.scheduled.merge(other.scheduled);
        self.sent.merge(other.sent);
        self.sent_count += other.sent_count;
        self.last_finished = self.last_finished.max(other.last_finished);
        self.queue_ms.extend(other.queue_ms);
        self.lag_ms.extend(other.lag_ms);
        self.cap_waited += other.cap_waited;
        self.successes.extend(other.successes);
        self.e2el_with_queue_ms.extend(other.e2el_with_queue_ms);
        self.spans.extend(other.spans);
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        for (k, v) in other.by_source {
            *self.by_source.entry(k).or_default() += v;
        }
        self.usage_records += other.usage_records;
        self.server_tokens += other.server_tokens;
        self.client_tokens_where_usage += other.client_tokens_where_usage;
        self.disagreeing += other.disagreeing;
        self.usage_suspect += other.usage_suspect;
        self.streams_without_done += other.streams_without_done;
        self.resends += other.resends;
        self.requests_resent += other.requests_resent;
        self.events.extend(other.events);
        for (t, acc) in other.turns {
            self.turns.entry(t).or_default().merge(acc);
        }
        self.ttfo_ms.extend(other.ttfo_ms);
        match (&mut self.parts, other.parts) {
            (Some(mine), Some(theirs)) => mine.merge(*theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        for (i, &c) in other.buckets.counts.iter().enumerate() {
            if c > 0 {
                let at_ns = (other.buckets.base + i as u64) * BUCKET_NS;
                self.buckets.add(at_ns, c);
            }
        }
    }

    /// The summary of everything pushed. Sorting happens here, once.
    pub fn finish(mut self, facts: &SummaryFacts) -> Summary {
        let ps = percentile_set(&facts.percentiles);
        let duration_s = match (self.sent.min, self.last_finished) {
            (Some(first), Some(last)) if last > first => (last - first) as f64 / 1e9,
            _ => 0.0,
        };
        let per_s = |x: f64| {
            if duration_s > 0.0 {
                x / duration_s
            } else {
                0.0
            }
        };
        let completed = self.successes.len() as u64;
        let failed = self.attempted - completed;
        let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        let success_rate = ratio(completed, self.attempted);

        let goodput = (!facts.slo.is_empty()).then(|| {
            let good = self
                .successes
                .iter()
                .filter(|s| s.meets(&facts.slo))
                .count() as u64;
            Goodput {
                slo: facts.slo,
                good,
                request_goodput: per_s(good as f64),
                good_fraction: ratio(good, self.attempted),
            }
        });

        let ttft: Vec<f64> = self.successes.iter().filter_map(|s| s.ttft_ms).collect();
        let tpot: Vec<f64> = self.successes.iter().filter_map(|s| s.tpot_ms).collect();
        let e2el: Vec<f64> = self.successes.iter().map(|s| s.e2el_ms).collect();
        let (max_output_tokens_per_s, max_concurrent_requests) = self.peaks();
        let itl_ms = itl_distribution(&mut self.events, &ps);
        let icl_ms = icl_distribution(&mut self.events, &ps);
        let lag = distribution(std::mem::take(&mut self.lag_ms), &STANDARD_PERCENTILES);
        let self_check = self.self_check(&lag, facts);

        Summary {
            schema_version: SUMMARY_SCHEMA_VERSION,
            warmup_records: self.warmup,
            attempted: self.attempted,
            completed,
            failed,
            success_rate,
            error_rate: if self.attempted > 0 {
                1.0 - success_rate
            } else {
                0.0
            },
            errors_by_kind: std::mem::take(&mut self.errors),
            streams_without_done: self.streams_without_done,
            resends: self.resends,
            requests_resent: self.requests_resent,
            duration_s,
            request_throughput: per_s(completed as f64),
            output_throughput: per_s(self.output_tokens as f64),
            total_token_throughput: per_s((self.input_tokens + self.output_tokens) as f64),
            total_input_tokens: self.input_tokens,
            total_output_tokens: self.output_tokens,
            goodput,
            max_output_tokens_per_s,
            max_concurrent_requests,
            ttft_ms: distribution(ttft, &ps),
            tpot_ms: distribution(tpot, &ps),
            itl_ms,
            icl_ms,
            e2el_ms: distribution(e2el, &ps),
            e2el_with_queue_ms: distribution(std::mem::take(&mut self.e2el_with_queue_ms), &ps),
            queue_ms: distribution(std::mem::take(&mut self.queue_ms), &ps),
            tokens: self.token_report(),
            self_check,
            turns: std::mem::take(&mut self.turns)
                .into_iter()
                .map(|(turn, t)| TurnSummary {
                    turn,
                    attempted: t.attempted,
                    completed: t.completed,
                    mean_input_tokens: ratio(t.input_tokens, t.completed),
                    ttft_ms: distribution(t.ttft_ms, &ps),
                })
                .collect(),
            output_parts: self.parts.take().map(|p| OutputPartsSummary {
                requests_with_reasoning: p.with_reasoning,
                reasoning_tokens: p.reasoning_tokens,
                answer_tokens: self.output_tokens.saturating_sub(p.reasoning_tokens),
                ttfo_ms: distribution(std::mem::take(&mut self.ttfo_ms), &ps),
                ttfr_ms: distribution(p.ttfr_ms, &ps),
                reasoning_ms: distribution(p.reasoning_ms, &ps),
                requests_with_tool_calls: p.with_tool_calls,
                tool_call_events: p.tool_call_events,
                ttftc_ms: distribution(p.ttftc_ms, &ps),
            }),
            structured: (self.checked > 0).then(|| StructuredOutput {
                checked: self.checked,
                valid: self.valid,
                invalid: self.checked - self.valid,
                correct_rate: ratio(self.valid, self.checked) * 100.0,
            }),
        }
    }

    fn token_report(&self) -> TokenReport {
        let token_source = match self.by_source.len() {
            0 => "none".to_string(),
            1 => self
                .by_source
                .keys()
                .next()
                .map_or("none", |k| k)
                .to_string(),
            _ => "mixed".to_string(),
        };
        let with_usage = self.usage_records > 0;
        TokenReport {
            token_source,
            by_source: self
                .by_source
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            client_output_tokens: self.output_tokens,
            records_with_usage: self.usage_records,
            server_completion_tokens: with_usage.then_some(self.server_tokens),
            client_tokens_where_usage: with_usage.then_some(self.client_tokens_where_usage),
            records_disagreeing: self.disagreeing,
            records_usage_suspect: self.usage_suspect,
        }
    }

    /// vLLM's peak keys: tokens per 1 s window and requests active per 1 s window, windows
    /// starting at the first successful send.
    fn peaks(&self) -> (f64, u64) {
        let Some(start) = self.spans.iter().map(|s| s.0).min() else {
            return (0.0, 0);
        };
        let tokens = self.buckets.peak_per_second(start);
        // A request is active in every whole second from its start's to its end's (inclusive),
        // counted by a sweep so a long run costs no per-second array.
        let mut edges: Vec<(u64, i8)> = Vec::with_capacity(self.spans.len() * 2);
        for &(sent, finished) in &self.spans {
            let a = sent.saturating_sub(start) / NS_PER_S;
            let b = finished.max(sent).saturating_sub(start) / NS_PER_S;
            edges.push((a, 1));
            edges.push((b + 1, -1));
        }
        edges.sort_unstable();
        let (mut active, mut peak) = (0i64, 0i64);
        for (_, d) in edges {
            active += i64::from(d);
            peak = peak.max(active);
        }
        (tokens, peak.max(0) as u64)
    }

    fn self_check(&self, lag: &Distribution, facts: &SummaryFacts) -> SelfCheck {
        let scheduled_rate = self.scheduled.rate(self.attempted);
        let achieved_send_rate = self.sent.rate(self.sent_count);
        let mut reasons = Vec::new();
        let lag_p99 = lag.percentile(99.0).unwrap_or(0.0);
        if lag_p99 > MAX_DISPATCH_LAG_P99_MS {
            reasons.push(format!(
                "dispatch lag P99 {lag_p99:.3} ms > {MAX_DISPATCH_LAG_P99_MS} ms"
            ));
        }
        if let (Some(_), Some(sched), Some(sent), 0) = (
            facts.offered_rate,
            scheduled_rate,
            achieved_send_rate,
            self.cap_waited,
        ) {
            if sent < MIN_SEND_RATE_FRACTION * sched {
                reasons.push(format!(
                    "achieved send rate {sent:.2}/s < {:.0} % of the schedule's {sched:.2}/s",
                    MIN_SEND_RATE_FRACTION * 100.0
                ));
            }
        }
        let cpu = facts.client_cpu;
        let cpu_percent = cpu
            .filter(|c| c.wall_seconds > 0.0)
            .map(|c| c.cpu_seconds / c.wall_seconds * 100.0);
        if let (Some(pct), Some(c)) = (cpu_percent, cpu) {
            if c.cores > 0.0 && pct >= MAX_CPU_FRACTION * c.cores * 100.0 {
                reasons.push(format!(
                    "client CPU {pct:.0} % ≥ {:.0} % of {} core(s)",
                    MAX_CPU_FRACTION * 100.0,
                    c.cores
                ));
            }
        }
        SelfCheck {
            offered_rate: facts.offered_rate,
            scheduled_rate,
            achieved_send_rate,
            dispatch_lag_p50_ms: lag.median(),
            dispatch_lag_p99_ms: lag_p99,
            dispatch_lag_max_ms: lag.max,
            cap_waited: self.cap_waited,
            cpu_seconds: cpu.map(|c| c.cpu_seconds),
            cpu_percent,
            cpu_cores: cpu.map(|c| c.cores),
            client_limited: !reasons.is_empty(),
            reasons,
        }
    }
}

/// Summarize records in one go (e.g. a journal read back). Built on [`Accumulator`], so it gives
/// exactly what the live run gives.
pub fn summarize<R: Borrow<RequestRecord>>(
    records: impl IntoIterator<Item = R>,
    facts: &SummaryFacts,
) -> Summary {
    let mut acc = Accumulator::new();
    for r in records {
        acc.push(r.borrow());
    }
    acc.finish(facts)
}

/// The standard percentiles plus the valid asked ones, ascending, without repeats.
fn percentile_set(asked: &[f64]) -> Vec<f64> {
    let mut ps: Vec<f64> = STANDARD_PERCENTILES
        .iter()
        .chain(asked.iter().filter(|p| (0.0..=100.0).contains(*p)))
        .copied()
        .collect();
    ps.sort_by(f64::total_cmp);
    // Two percentiles with one label (e.g. 99.0 and 99) would write one key twice.
    ps.dedup_by(|a, b| percentile_label(*a) == percentile_label(*b));
    ps
}

/// Mean, std, min, max and percentiles of `n` ascending values read through `value_at`, given
/// their sum (for the mean) and a way to sum squared deviations (for the std).
fn describe(
    n: usize,
    mean: f64,
    sum_sq_dev: f64,
    ps: &[f64],
    value_at: impl Fn(usize) -> f64,
) -> Distribution {
    if n == 0 {
        return Distribution::default();
    }
    Distribution {
        count: n as u64,
        mean,
        std: (sum_sq_dev / n as f64).sqrt(),
        min: value_at(0),
        max: value_at(n - 1),
        percentiles: ps
            .iter()
            .filter_map(|&p| percentile_of_ranks(n, p, &value_at).map(|v| (p, v)))
            .collect(),
    }
}

fn distribution(mut values: Vec<f64>, ps: &[f64]) -> Distribution {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let mean = if n > 0 {
        values.iter().sum::<f64>() / n as f64
    } else {
        0.0
    };
    let ss = values.iter().map(|v| (v - mean).powi(2)).sum();
    describe(n, mean, ss, ps, |i| values[i])
}

fn tokens(e: &(u32, u32)) -> u32 {
    e.1 & TOKENS_MASK
}

/// Orders ITL entries by per-token gap `g/k` exactly (cross-multiplied in u64).
fn cmp_per_token(a: &(u32, u32), b: &(u32, u32)) -> Ordering {
    (u64::from(a.0) * u64::from(tokens(b))).cmp(&(u64::from(b.0) * u64::from(tokens(a))))
}

/// Per-token ITL: each entry `(g, k)` stands for `k` samples of `g/k`. Sorting the entries by
/// `g/k` sorts the expanded samples, so the rank-`r` sample is found by walking the counts.
fn itl_distribution(events: &mut [(u32, u32)], ps: &[f64]) -> Distribution {
    events.sort_unstable_by(|a, b| {
        let (a_icl, b_icl) = (a.1 & ICL_ONLY != 0, b.1 & ICL_ONLY != 0);
        a_icl.cmp(&b_icl).then_with(|| cmp_per_token(a, b))
    });
    let len = events.iter().take_while(|e| e.1 & ICL_ONLY == 0).count();
    let itl = &events[..len];
    let n: u64 = itl.iter().map(|e| u64::from(tokens(e))).sum();
    if n == 0 {
        return Distribution::default();
    }
    let per_token_ms = |e: &(u32, u32)| f64::from(e.0) / f64::from(tokens(e)) / 1e3;
    let mean = itl.iter().map(|e| f64::from(e.0)).sum::<f64>() / n as f64 / 1e3;
    let ss = itl
        .iter()
        .map(|e| f64::from(tokens(e)) * (per_token_ms(e) - mean).powi(2))
        .sum();
    let value_at = |rank: usize| {
        let mut seen = 0u64;
        for e in itl {
            seen += u64::from(tokens(e));
            if (rank as u64) < seen {
                return per_token_ms(e);
            }
        }
        itl.last().map_or(0.0, per_token_ms)
    };
    describe(n as usize, mean, ss, ps, value_at)
}

/// Per-event ICL: one sample per entry that is not ITL-only.
fn icl_distribution(events: &mut [(u32, u32)], ps: &[f64]) -> Distribution {
    events.sort_unstable_by_key(|e| (e.1 & ITL_ONLY != 0, e.0));
    let len = events.iter().take_while(|e| e.1 & ITL_ONLY == 0).count();
    let icl = &events[..len];
    let n = icl.len();
    if n == 0 {
        return Distribution::default();
    }
    let mean = icl.iter().map(|e| f64::from(e.0)).sum::<f64>() / n as f64 / 1e3;
    let ss = icl
        .iter()
        .map(|e| (f64::from(e.0) / 1e3 - mean).powi(2))
        .sum();
    describe(n, mean, ss, ps, |i| f64::from(icl[i].0) / 1e3)
}
