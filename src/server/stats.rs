//! The server's own counters: requests by outcome, faults injected by kind, tokens sent.
//!
//! Lock-free atomics, shared by every request. Exposed on `/metrics` (Prometheus text, names
//! prefixed `servebench_`) and through [`ServerStats`] for in-process tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::faults::FaultKind;

/// How the server ended a request. Every request to a generation route is counted exactly
/// once, when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestOutcome {
    /// The full response was handed to the connection (`[DONE]` included when streaming).
    Ok,
    /// A fault was injected into the request (whatever happened afterwards).
    Fault,
    /// The client went away (or the server shut down) before the response was complete.
    Cancelled,
    /// The backend reported an error (or ended its stream without a finish).
    BackendError,
    /// The request was rejected with 400 (malformed JSON, invalid field, too long).
    BadRequest,
    /// The request named a model the server does not serve (404).
    NotFound,
}

impl RequestOutcome {
    pub const ALL: [RequestOutcome; 6] = [
        RequestOutcome::Ok,
        RequestOutcome::Fault,
        RequestOutcome::Cancelled,
        RequestOutcome::BackendError,
        RequestOutcome::BadRequest,
        RequestOutcome::NotFound,
    ];

    /// Stable label, used as the `outcome` label on `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Fault => "fault",
            RequestOutcome::Cancelled => "cancelled",
            RequestOutcome::BackendError => "backend_error",
            RequestOutcome::BadRequest => "bad_request",
            RequestOutcome::NotFound => "not_found",
        }
    }
}

/// Counters of one server instance.
#[derive(Debug, Default)]
pub struct ServerStats {
    outcomes: [AtomicU64; RequestOutcome::ALL.len()],
    faults: [AtomicU64; FaultKind::ALL.len()],
    in_flight: AtomicI64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
}

impl ServerStats {
    /// Faults of `kind` injected so far (counted when the fault is actually delivered).
    pub fn faults_injected(&self, kind: FaultKind) -> u64 {
        self.faults[kind.index()].load(Ordering::Relaxed)
    }

    /// All non-zero fault counts.
    pub fn fault_counts(&self) -> BTreeMap<FaultKind, u64> {
        FaultKind::ALL
            .iter()
            .map(|k| (*k, self.faults_injected(*k)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Requests that ended with `outcome` so far.
    pub fn requests(&self, outcome: RequestOutcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    /// Generation requests admitted and not yet ended.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Completion tokens handed to connections so far.
    pub fn generation_tokens(&self) -> u64 {
        self.generation_tokens.load(Ordering::Relaxed)
    }

    /// Prompt tokens (estimated) of admitted requests so far.
    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens.load(Ordering::Relaxed)
    }

    pub(crate) fn record_outcome(&self, outcome: RequestOutcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_fault(&self, kind: FaultKind) {
        self.faults[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_generation_tokens(&self, n: u32) {
        self.generation_tokens
            .fetch_add(u64::from(n), Ordering::Relaxed);
    }

    pub(crate) fn admitted(&self, prompt_tokens: u32) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(u64::from(prompt_tokens), Ordering::Relaxed);
    }

    pub(crate) fn ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of these counters.
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP servebench_server_requests_total Generation requests ended by the embedded server, by outcome.\n");
        out.push_str("# TYPE servebench_server_requests_total counter\n");
        for o in RequestOutcome::ALL {
            let _ = writeln!(
                out,
                "servebench_server_requests_total{{outcome=\"{}\"}} {}",
                o.label(),
                self.requests(o)
            );
        }
        out.push_str("# HELP servebench_faults_injected_total Faults injected by the embedded server, by kind.\n");
        out.push_str("# TYPE servebench_faults_injected_total counter\n");
        for k in FaultKind::ALL {
            let _ = writeln!(
                out,
                "servebench_faults_injected_total{{kind=\"{}\"}} {}",
                k.label(),
                self.faults_injected(k)
            );
        }
        out.push_str("# HELP servebench_server_requests_in_flight Generation requests admitted and not yet ended.\n");
        out.push_str("# TYPE servebench_server_requests_in_flight gauge\n");
        let _ = writeln!(
            out,
            "servebench_server_requests_in_flight {}",
            self.in_flight()
        );
        out.push_str("# HELP servebench_server_prompt_tokens_total Prompt tokens (estimated) of admitted requests.\n");
        out.push_str("# TYPE servebench_server_prompt_tokens_total counter\n");
        let _ = writeln!(
            out,
            "servebench_server_prompt_tokens_total {}",
            self.prompt_tokens()
        );
        out.push_str(
            "# HELP servebench_server_generation_tokens_total Completion tokens sent to clients.\n",
        );
        out.push_str("# TYPE servebench_server_generation_tokens_total counter\n");
        let _ = writeln!(
            out,
            "servebench_server_generation_tokens_total {}",
            self.generation_tokens()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_lists_every_kind_and_outcome() {
        let stats = ServerStats::default();
        stats.record_fault(FaultKind::Http500);
        stats.record_fault(FaultKind::Http500);
        stats.record_outcome(RequestOutcome::Fault);
        let text = stats.prometheus();
        assert!(text.contains("servebench_faults_injected_total{kind=\"http_500\"} 2\n"));
        assert!(text.contains("servebench_faults_injected_total{kind=\"stall\"} 0\n"));
        assert!(text.contains("servebench_server_requests_total{outcome=\"fault\"} 1\n"));
        assert_eq!(stats.fault_counts().get(&FaultKind::Http500), Some(&2));
    }
}
