//! The result file: one JSON object whose keys include every key of `vllm bench serve`'s result
//! file (so tools that read those read ours), plus servebench's own under their own names.
//!
//! vLLM's keys (from `vllm/benchmarks/serve.py`): `date`, `endpoint_type`, `backend`, `label`,
//! `model_id`, `tokenizer_id`, `num_prompts`, `request_rate` (a number or `"inf"`), `burstiness`,
//! `max_concurrency`, `duration`, `completed`, `failed`, `total_input_tokens`,
//! `total_output_tokens`, `request_throughput`, `request_goodput` (`null` without `--goodput`),
//! `output_throughput`, `total_token_throughput`, `max_output_tokens_per_s`,
//! `max_concurrent_requests`, and `mean_`/`median_`/`std_`/`p<N>_` × `ttft_ms`, `tpot_ms`,
//! `itl_ms`, `e2el_ms` (only the metrics named by `--percentile-metrics` when it is given, as
//! in vLLM; `client_queue_time` and `e2el_including_client_queue` too when named), `rtfx`
//! (0: no audio), the per-request arrays `latencies` and `queue_times` (seconds), with
//! `--save-detailed` also `input_lens`, `output_lens`, `ttfts`, `itls`, `start_times`,
//! `generated_texts`, `errors`; with a ramp `ramp_up_strategy`, `ramp_up_start_rps`,
//! `ramp_up_end_rps`, `rps_change_events`; and each `--metadata` key. Where the numbers differ by definition (ours:
//! per-token ITL, measured-phase duration, tokens rather than chunks in the peak)
//! `metric_definitions` says how; docs/metrics.md lists every difference.
//!
//! Structured output (`--structured-output`): `correct_rate` (the key of vLLM's
//! structured-output benchmark, percent) and `structured_output` (`checked`, `valid`,
//! `invalid`).
//!
//! Ours: the run metadata ([`RunInfo`], flat: `run_id`, `start_time`, `seed`, `simulated`,
//! `servebench_version`, `config`, …), `schema_version`, `attempted`, `success_rate`,
//! `errors_by_kind`, `streams_without_done`, `resends`, `requests_resent`, `token_source`,
//! `client_limited`, `self_check`, `min_`/`max_` and P50/P90/P95/P99 of every metric, the
//! same for `icl_ms`, `queue_ms` and `e2el_incl_queue_ms`, and the whole [`Summary`] under
//! `summary` (what servebench's own tools read back).

use super::{write_atomic, ReportError, RunInfo, RESULT_SCHEMA_VERSION};
use crate::metrics::{percentile_label, Distribution, SelfCheck, Summary};
use crate::record::{Outcome, RequestRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// How each reported metric is defined (written into every result file).
pub const METRIC_DEFINITIONS: [(&str, &str); 13] = [
    ("ttft", "first event carrying generated text (content or reasoning) - sent; a role-only or empty chunk does not count"),
    ("tpot", "(last text event - first token) / (output tokens - 1), requests with >= 2 output tokens"),
    ("itl", "per output token after the first: an event carrying k tokens after a gap g gives k samples of g/k; the first event gives none"),
    ("icl", "inter-chunk latency: one sample per text event after the first, its gap from the previous one"),
    ("e2el", "last text event - sent (e2el_incl_queue adds the queue time)"),
    ("queue", "sent - scheduled, over every sent request"),
    ("duration", "first send -> last finish of the measured phase (warmup excluded)"),
    ("percentiles", "linear interpolation between closest ranks (numpy.percentile default); std is the population std"),
    ("max_output_tokens_per_s", "most output tokens of successful requests in a 1 s window, windows from the first successful send (to 100 ms)"),
    ("ttfo", "time to first output token (AIPerf's TTFO): first answer event (content or tool call, not reasoning) - sent; only when a stream had reasoning or tool calls"),
    ("ttfr", "time to first reasoning token: first reasoning event (reasoning_content / reasoning) - sent, requests that reasoned"),
    ("reasoning", "first answer event - first reasoning event, requests with both"),
    ("ttftc", "time to first tool call: first tool_calls delta - sent, requests that called a tool"),
];

/// The metrics written flat as `{stat}_{name}_ms`, in this order, and whether each is one of
/// vLLM's `--percentile-metrics` (written only when selected) or servebench's own (always).
/// vLLM's `client_queue_time` and `e2el_including_client_queue` are our queue and
/// queue-inclusive E2E latency under vLLM's names, written only when selected (vLLM's default
/// leaves them out). Reasoning and tool-call timing only when a stream had them (`ttfo`,
/// `ttfr`, `reasoning`, `ttftc`).
fn flat_metrics(s: &Summary) -> Vec<(&'static str, &Distribution, bool)> {
    let mut flat = vec![
        ("ttft", &s.ttft_ms, true),
        ("tpot", &s.tpot_ms, true),
        ("itl", &s.itl_ms, true),
        ("e2el", &s.e2el_ms, true),
        ("client_queue_time", &s.queue_ms, true),
        ("e2el_including_client_queue", &s.e2el_with_queue_ms, true),
        ("icl", &s.icl_ms, false),
        ("queue", &s.queue_ms, false),
        ("e2el_incl_queue", &s.e2el_with_queue_ms, false),
    ];
    if let Some(p) = &s.output_parts {
        flat.extend([
            ("ttfo", &p.ttfo_ms, false),
            ("ttfr", &p.ttfr_ms, false),
            ("reasoning", &p.reasoning_ms, false),
            ("ttftc", &p.ttftc_ms, false),
        ]);
    }
    flat
}

/// Whether a vLLM metric gets flat keys: every one when `--percentile-metrics` is absent,
/// except vLLM's two queue metrics, which vLLM writes only when named.
fn selected(name: &str, chosen: Option<&[String]>) -> bool {
    match chosen {
        Some(list) => list.iter().any(|m| m == name),
        None => !matches!(name, "client_queue_time" | "e2el_including_client_queue"),
    }
}

/// The result file. Serialized flat: [`RunInfo`]'s fields and the `{stat}_{metric}_ms` keys
/// sit at the top level beside the others, as in vLLM's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    /// `YYYYmmdd-HHMMSS` of the start (UTC), vLLM's `date`.
    pub date: String,
    /// vLLM writes the backend again under this older name.
    pub endpoint_type: String,
    #[serde(flatten)]
    pub run: RunInfo,
    pub duration: f64,
    pub completed: u64,
    pub failed: u64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub request_throughput: f64,
    pub request_goodput: Option<f64>,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub max_output_tokens_per_s: f64,
    pub max_concurrent_requests: u64,
    /// vLLM's inverse real-time factor: seconds of input audio per second of benchmark, for
    /// its audio backends. servebench sends no audio, so 0.0 — the value vLLM writes for a text
    /// run.
    #[serde(default)]
    pub rtfx: f64,
    pub schema_version: u32,
    pub attempted: u64,
    pub success_rate: f64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Successful streams that ended without `data: [DONE]` after a `finish_reason` (see
    /// `Summary::streams_without_done`).
    #[serde(default)]
    pub streams_without_done: u64,
    /// Sends again on a fresh connection, and the requests that had one (see
    /// `Summary::resends`).
    #[serde(default)]
    pub resends: u64,
    #[serde(default)]
    pub requests_resent: u64,
    pub token_source: String,
    pub client_limited: bool,
    pub self_check: SelfCheck,
    pub metric_definitions: BTreeMap<String, String>,
    /// Structured output: valid answers / checked answers × 100, under the key of vLLM's
    /// structured-output benchmark (`benchmarks/benchmark_serving_structured_output.py`).
    /// Absent for an unconstrained run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct_rate: Option<f64>,
    /// The counts behind `correct_rate`: `checked`, `valid`, `invalid` (absent when
    /// unconstrained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_output: Option<crate::metrics::StructuredOutput>,
    pub summary: Summary,
    /// Request fields servebench adds on its own account (`ignore_eos`, `min_tokens`,
    /// `stream_options.continuous_usage_stats`) that the server refused in the preflight, and
    /// that every request of the run went without (set by `run`; empty when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_refused_fields: Option<Vec<String>>,
    /// Successful measured requests whose output ended before their `max_tokens`: with
    /// `--ignore-eos` honoured, 0 (set by `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<u64>,
    /// Whether the run ran to its planned end: `false` when it was interrupted, lost its
    /// journal, or (rebuilt by `report --journal`) its journal has no end mark. Absent in
    /// results written before servebench recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// Measured requests the run planned (`--num-prompts`; absent for a run bounded by
    /// duration), to hold `attempted` against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<u64>,
    /// Why the measured phase stopped and how many requests were never sent (set by `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<crate::load::LoadReport>,
    /// GPU and engine telemetry over the measured phase (set by `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<crate::telemetry::TelemetrySummary>,
    /// The on-premises energy cost at `--electricity-price` (absent without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_cost: Option<crate::cost::EnergyCost>,
    /// Where the numbers come from: servebench version and commit, host, the server's
    /// `/version`, the GPUs NVML saw, and the launcher's facts (set by `run`).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub environment: Value,
    /// `mean_`/`median_`/`std_`/`min_`/`max_`/`p<N>_` × `ttft_ms`, `tpot_ms`, `itl_ms`,
    /// `e2el_ms`, `icl_ms`, `queue_ms`, `e2el_incl_queue_ms`. Derived from `summary`.
    #[serde(flatten)]
    pub stats: BTreeMap<String, Value>,
}

impl ResultFile {
    pub fn new(run: &RunInfo, summary: &Summary) -> Self {
        let mut stats = BTreeMap::new();
        let chosen = run.percentile_metrics.as_deref();
        for (name, d, vllm) in flat_metrics(summary) {
            if vllm && !selected(name, chosen) {
                continue;
            }
            let mut put = |stat: &str, v: f64| {
                stats.insert(format!("{stat}_{name}_ms"), Value::from(v));
            };
            put("mean", d.mean);
            put("median", d.median());
            put("std", d.std);
            put("min", d.min);
            put("max", d.max);
            for &(p, v) in &d.percentiles {
                put(&format!("p{}", percentile_label(p)), v);
            }
        }
        ResultFile {
            date: run.start_time.format("%Y%m%d-%H%M%S").to_string(),
            endpoint_type: run.backend.clone(),
            run: run.clone(),
            duration: summary.duration_s,
            completed: summary.completed,
            failed: summary.failed,
            total_input_tokens: summary.total_input_tokens,
            total_output_tokens: summary.total_output_tokens,
            request_throughput: summary.request_throughput,
            request_goodput: summary.goodput.as_ref().map(|g| g.request_goodput),
            output_throughput: summary.output_throughput,
            total_token_throughput: summary.total_token_throughput,
            max_output_tokens_per_s: summary.max_output_tokens_per_s,
            max_concurrent_requests: summary.max_concurrent_requests,
            rtfx: 0.0,
            schema_version: RESULT_SCHEMA_VERSION,
            attempted: summary.attempted,
            success_rate: summary.success_rate,
            errors_by_kind: summary.errors_by_kind.clone(),
            streams_without_done: summary.streams_without_done,
            resends: summary.resends,
            requests_resent: summary.requests_resent,
            token_source: summary.tokens.token_source.clone(),
            client_limited: summary.self_check.client_limited,
            self_check: summary.self_check.clone(),
            metric_definitions: METRIC_DEFINITIONS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            correct_rate: summary.structured.as_ref().map(|s| s.correct_rate),
            structured_output: summary.structured.clone(),
            summary: summary.clone(),
            server_refused_fields: None,
            stopped_early: None,
            complete: None,
            planned: None,
            load: None,
            telemetry: None,
            energy_cost: None,
            environment: Value::Null,
            stats,
        }
        .with_metadata(&run.metadata)
    }

    /// vLLM writes each `--metadata` key at the top level. A key that names one of the
    /// result's own is left there only under `metadata` (a JSON object cannot hold a key twice).
    fn with_metadata(mut self, metadata: &BTreeMap<String, String>) -> Self {
        if metadata.is_empty() {
            return self;
        }
        let taken = match serde_json::to_value(&self) {
            Ok(Value::Object(o)) => o,
            _ => return self,
        };
        for (k, v) in metadata {
            if !taken.contains_key(k) {
                self.stats.insert(k.clone(), Value::from(v.as_str()));
            }
        }
        self
    }

    /// Add vLLM's per-request arrays (see [`request_arrays`]) at the top level, and for a
    /// ramped run vLLM's `rps_change_events` (see [`rps_change_events`]).
    pub fn add_request_arrays(&mut self, records: &[RequestRecord], detailed: bool) {
        self.stats.extend(request_arrays(records, detailed));
        if let Some(events) = rps_change_events(&self.run, records) {
            self.stats.insert("rps_change_events".into(), events);
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and maps with string keys always serializes.
        let mut s = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        s.push('\n');
        s
    }
}

/// vLLM's per-request arrays over the measured `records` (warmups left out), in request order:
/// one entry per request, failed ones included, as vLLM writes one per output. Times are
/// seconds.
///
/// - `latencies`: E2E latency, sent → last text event (vLLM: `output.latency`); 0 for a failed
///   request, as vLLM leaves it.
/// - `queue_times`: sent − scheduled, the time a due request waited for an in-flight slot
///   (vLLM's `client_queue_time`); 0 for a request never sent.
///
/// and with `detailed` (`--save-detailed`): `input_lens`, `output_lens` (0 when failed),
/// `ttfts` (0 when failed), `itls` (per request, the gaps between text events), `start_times`
/// (when each was sent, seconds since the run's epoch — vLLM's are `perf_counter` readings,
/// whose origin is arbitrary), `generated_texts` and `errors` (`""` for a success).
pub fn request_arrays(records: &[RequestRecord], detailed: bool) -> BTreeMap<String, Value> {
    let mut recs: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| r.phase == crate::record::Phase::Measured)
        .collect();
    recs.sort_by_key(|r| r.id);
    let secs = |ns: u64| ns as f64 / 1e9;
    let col =
        |f: &dyn Fn(&RequestRecord) -> Value| -> Value { recs.iter().map(|r| f(r)).collect() };
    let ok = |r: &RequestRecord| r.outcome.is_success();
    let mut out = BTreeMap::new();
    out.insert(
        "latencies".to_string(),
        col(&|r| {
            if ok(r) {
                secs(r.finished_ns.saturating_sub(r.sent_ns)).into()
            } else {
                0.0.into()
            }
        }),
    );
    out.insert(
        "queue_times".to_string(),
        col(&|r| secs(r.sent_ns.saturating_sub(r.scheduled_ns)).into()),
    );
    if !detailed {
        return out;
    }
    out.insert("input_lens".into(), col(&|r| r.input_tokens().into()));
    out.insert(
        "output_lens".into(),
        col(&|r| {
            if ok(r) {
                r.output_tokens.into()
            } else {
                0.into()
            }
        }),
    );
    out.insert(
        "ttfts".into(),
        col(&|r| match (ok(r), r.first_token_ns) {
            (true, Some(t)) => secs(t.saturating_sub(r.sent_ns)).into(),
            _ => 0.0.into(),
        }),
    );
    // Event times are µs since the send.
    out.insert(
        "itls".into(),
        col(&|r| {
            r.events
                .windows(2)
                .map(|w| f64::from(w[1].0.saturating_sub(w[0].0)) / 1e6)
                .collect::<Vec<f64>>()
                .into()
        }),
    );
    out.insert("start_times".into(), col(&|r| secs(r.sent_ns).into()));
    out.insert(
        "generated_texts".into(),
        col(&|r| r.output_text.clone().unwrap_or_default().into()),
    );
    out.insert(
        "errors".into(),
        col(&|r| match &r.outcome {
            Outcome::Success => "".into(),
            Outcome::Failed { kind, message } => format!("{}: {message}", kind.label()).into(),
        }),
    );
    out
}

/// vLLM's `rps_change_events` for a ramped run: `{"rps", "timestamp"}` for the start rate at
/// the start, then each time a request is due whose ramp rate (vLLM's formula over the
/// measured requests in order) has passed another whole request/s, one event per integer
/// passed, timed when that request was due. Timestamps are wall-clock UTC (RFC 3339), derived
/// from the run's start label and the request's due time on the monotonic clock; vLLM writes
/// local time without a zone. `None` for a run without a ramp.
pub fn rps_change_events(run: &RunInfo, records: &[RequestRecord]) -> Option<Value> {
    let strategy = match run.ramp_up_strategy.as_deref()? {
        "linear" => crate::arrival::RampStrategy::Linear,
        "exponential" => crate::arrival::RampStrategy::Exponential,
        _ => return None,
    };
    let ramp = crate::arrival::RampUp {
        strategy,
        start_rps: run.ramp_up_start_rps?,
        end_rps: run.ramp_up_end_rps?,
    };
    let mut due: Vec<u64> = records
        .iter()
        .filter(|r| r.phase == crate::record::Phase::Measured)
        .map(|r| r.scheduled_ns)
        .collect();
    due.sort_unstable();
    let total = if run.num_prompts > 0 {
        run.num_prompts
    } else {
        due.len() as u64
    };
    let at = |ns: u64| {
        (run.start_time + chrono::Duration::nanoseconds(i64::try_from(ns).unwrap_or(i64::MAX)))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let mut last = ramp.start_rps;
    let mut events =
        vec![serde_json::json!({"rps": last, "timestamp": at(due.first().copied().unwrap_or(0))})];
    for (i, ns) in due.iter().enumerate() {
        // vLLM truncates the rate to an integer (Python's int()).
        let now = ramp.rate_at(i as u64, total).floor() as u32;
        if now > last {
            events.extend(
                (last + 1..=now).map(|rps| serde_json::json!({"rps": rps, "timestamp": at(*ns)})),
            );
            last = now;
        }
    }
    Some(Value::Array(events))
}

/// Write the result file atomically (see [`write_atomic`]).
pub fn write_result(path: &Path, result: &ResultFile) -> Result<(), ReportError> {
    write_atomic(path, result.to_json().as_bytes())
}

/// Read a result file written by servebench.
pub fn read_result(path: &Path) -> Result<ResultFile, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ReportError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// vLLM's default name, `{label}-{rate}qps[-concurrency{N}]-{model}-{date}.json`, where label
/// defaults to the backend and model is the id's last path part; characters that do not belong
/// in a file name become `_`.
pub fn default_result_filename(run: &RunInfo) -> String {
    let label = run.label.as_deref().unwrap_or(&run.backend);
    let rate = match (&run.ramp_up_strategy, run.request_rate) {
        // vLLM's ramp name: `ramp-up-{strategy}-{start}qps-{end}qps` in place of the rate.
        (Some(s), _) => format!(
            "ramp-up-{s}-{}qps-{}",
            run.ramp_up_start_rps.unwrap_or(0),
            run.ramp_up_end_rps.unwrap_or(0)
        ),
        // Python's str(float): 10.0 → "10.0".
        (None, Some(r)) if r.fract() == 0.0 => format!("{r:.1}"),
        (None, Some(r)) => format!("{r}"),
        (None, None) => "inf".into(),
    };
    let concurrency = run
        .max_concurrency
        .map(|c| format!("-concurrency{c}"))
        .unwrap_or_default();
    let model = run.model_id.rsplit('/').next().unwrap_or(&run.model_id);
    let date = run.start_time.format("%Y%m%d-%H%M%S");
    let name = format!("{label}-{rate}qps{concurrency}-{model}-{date}.json");
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{run_info, summary};

    /// Every key `vllm bench serve` writes into its result file (`--save-result`, default
    /// percentile metrics and `--metric-percentiles 99`), plus e2el which it writes when asked.
    const VLLM_KEYS: &[&str] = &[
        "date",
        "endpoint_type",
        "backend",
        "label",
        "model_id",
        "tokenizer_id",
        "num_prompts",
        "request_rate",
        "burstiness",
        "max_concurrency",
        "duration",
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "request_goodput",
        "output_throughput",
        "total_token_throughput",
        "max_output_tokens_per_s",
        "max_concurrent_requests",
        "rtfx",
        "mean_ttft_ms",
        "median_ttft_ms",
        "std_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "median_tpot_ms",
        "std_tpot_ms",
        "p99_tpot_ms",
        "mean_itl_ms",
        "median_itl_ms",
        "std_itl_ms",
        "p99_itl_ms",
        "mean_e2el_ms",
        "median_e2el_ms",
        "std_e2el_ms",
        "p99_e2el_ms",
    ];

    fn json() -> serde_json::Map<String, Value> {
        let v: Value =
            serde_json::from_str(&ResultFile::new(&run_info(), &summary()).to_json()).unwrap();
        v.as_object().unwrap().clone()
    }

    #[test]
    fn has_every_vllm_key() {
        let obj = json();
        let missing: Vec<&&str> = VLLM_KEYS
            .iter()
            .filter(|k| !obj.contains_key(**k))
            .collect();
        assert!(missing.is_empty(), "missing vLLM keys: {missing:?}");
    }

    #[test]
    fn has_our_keys_and_values() {
        let o = json();
        for k in [
            "p50_ttft_ms",
            "p90_itl_ms",
            "p95_tpot_ms",
            "p99.9_e2el_ms",
            "mean_icl_ms",
            "p99_queue_ms",
            "errors_by_kind",
            "streams_without_done",
            "resends",
            "requests_resent",
            "token_source",
            "success_rate",
            "self_check",
            "client_limited",
            "simulated",
            "config",
            "seed",
            "servebench_version",
            "start_time",
            "run_id",
            "schema_version",
            "summary",
            "metric_definitions",
        ] {
            assert!(o.contains_key(k), "missing {k}");
        }
        assert_eq!(o["request_rate"], 10.0);
        assert_eq!(o["completed"], 2);
        assert_eq!(o["failed"], 1);
        assert_eq!(o["date"], "20261128-150405");
        assert_eq!(o["errors_by_kind"]["http_500"], 1);
        assert_eq!(o["mean_ttft_ms"], 15.0);
        assert_eq!(o["median_ttft_ms"], 15.0);
        assert_eq!(o["tokenizer_id"], "facebook/opt-125m");
        let goodput = o["request_goodput"].as_f64().unwrap();
        assert!((goodput - 1.0 / 0.030).abs() < 1e-9, "{goodput}");
        assert!((o["duration"].as_f64().unwrap() - 0.030).abs() < 1e-12);
    }

    #[test]
    fn rate_inf_and_no_goodput_are_written_as_vllm_does() {
        let mut run = run_info();
        run.request_rate = None;
        let mut s = summary();
        s.goodput = None;
        let v: Value = serde_json::from_str(&ResultFile::new(&run, &s).to_json()).unwrap();
        assert_eq!(v["request_rate"], "inf");
        assert_eq!(v["request_goodput"], Value::Null);
    }

    #[test]
    fn written_atomically_and_read_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("r.json");
        let r = ResultFile::new(&run_info(), &summary());
        write_result(&path, &r).unwrap();
        let back = read_result(&path).unwrap();
        assert_eq!(back.run, r.run);
        assert_eq!(back.summary.ttft_ms.count, r.summary.ttft_ms.count);
        // serde_json parses floats to within one ulp unless its `float_roundtrip` feature is on.
        assert!(
            same_numbers(
                &serde_json::to_value(&back).unwrap(),
                &serde_json::to_value(&r).unwrap()
            ),
            "{back:?}\nvs\n{r:?}"
        );
        // No temporary file left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["r.json"]);
    }

    fn same_numbers(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-12 * x.abs().max(1.0)
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_numbers(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| same_numbers(v, w)))
            }
            _ => a == b,
        }
    }

    #[test]
    fn reading_something_else_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        let err = read_result(&path).unwrap_err().to_string();
        assert!(
            err.contains("x.json") && err.contains("not a servebench result"),
            "{err}"
        );
    }

    #[test]
    fn percentile_metrics_choose_the_flat_keys_as_vllm_does() {
        let all = json();
        for k in [
            "mean_ttft_ms",
            "p99_itl_ms",
            "median_e2el_ms",
            "std_tpot_ms",
            "p99_queue_ms",
        ] {
            assert!(all.contains_key(k), "{k}");
        }
        assert!(
            !all.contains_key("mean_client_queue_time_ms"),
            "vLLM's queue metrics only when named"
        );
        let mut run = run_info();
        run.percentile_metrics = Some(vec!["ttft".into(), "client_queue_time".into()]);
        let v: Value = serde_json::from_str(&ResultFile::new(&run, &summary()).to_json()).unwrap();
        let o = v.as_object().unwrap();
        for k in [
            "mean_ttft_ms",
            "p99_ttft_ms",
            "mean_client_queue_time_ms",
            "p99_client_queue_time_ms",
        ] {
            assert!(o.contains_key(k), "{k}");
        }
        for k in [
            "mean_tpot_ms",
            "p99_itl_ms",
            "median_e2el_ms",
            "mean_e2el_including_client_queue_ms",
        ] {
            assert!(!o.contains_key(k), "{k} not asked for");
        }
        // servebench's own metrics stay; the full summary is there either way.
        assert!(o.contains_key("mean_icl_ms") && o["summary"]["e2el_ms"].is_object());
        assert_eq!(o["mean_client_queue_time_ms"], o["mean_queue_ms"]);
    }

    #[test]
    fn rtfx_is_zero_for_text_and_metadata_keys_go_to_the_top_level() {
        let mut run = run_info();
        run.metadata.insert("tp".into(), "8".into());
        run.metadata
            .insert("completed".into(), "not a count".into());
        let v: Value = serde_json::from_str(&ResultFile::new(&run, &summary()).to_json()).unwrap();
        assert_eq!(v["rtfx"], 0.0);
        assert_eq!(v["tp"], "8");
        assert_eq!(
            v["completed"], 2,
            "a metadata key never replaces a result key"
        );
        assert_eq!(v["metadata"]["completed"], "not a count");
        // Read back: the metadata key is one of the flat keys again.
        let back: ResultFile = serde_json::from_value(v).unwrap();
        assert_eq!(back.stats["tp"], "8");
    }

    #[test]
    fn per_request_arrays_follow_vllm_in_request_order() {
        use crate::report::fixtures::records;
        let mut recs = records();
        recs.reverse();
        let mut warm = RequestRecord::test_success(99, 0);
        warm.phase = crate::record::Phase::Warmup;
        recs.push(warm);
        let mut r = ResultFile::new(&run_info(), &summary());
        r.add_request_arrays(&recs, false);
        let v = serde_json::to_value(&r).unwrap();
        let lat: Vec<f64> = serde_json::from_value(v["latencies"].clone()).unwrap();
        // Requests 1, 2 (successes, 16 and 29 ms) and 3 (failed: 0, as vLLM writes it);
        // the warmup is left out.
        assert_eq!(lat.len(), 3);
        assert!(
            (lat[0] - 0.016).abs() < 1e-9 && (lat[1] - 0.029).abs() < 1e-9,
            "{lat:?}"
        );
        assert_eq!(lat[2], 0.0);
        assert_eq!(v["queue_times"].as_array().unwrap().len(), 3);
        for k in [
            "start_times",
            "ttfts",
            "itls",
            "input_lens",
            "output_lens",
            "generated_texts",
            "errors",
        ] {
            assert!(v.get(k).is_none(), "{k} only with --save-detailed");
        }
        r.add_request_arrays(&recs, true);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["start_times"][1], 0.001, "request 2 was sent at 1 ms");
        assert_eq!(v["ttfts"][0], 0.010);
        assert_eq!(v["itls"][0], serde_json::json!([0.002, 0.004]));
        assert_eq!(v["output_lens"][2], 0);
        assert_eq!(v["errors"][0], "");
        assert!(v["errors"][2].as_str().unwrap().contains("boom"));
    }

    #[test]
    fn rps_change_events_step_through_every_integer_rate_as_vllm_does() {
        let mut run = run_info();
        run.ramp_up_strategy = Some("linear".into());
        run.ramp_up_start_rps = Some(2);
        run.ramp_up_end_rps = Some(6);
        run.num_prompts = 3;
        // Three requests due at 0, 0.5 s and 1 s: rates 2, 4, 6.
        let recs: Vec<RequestRecord> = (0..3)
            .map(|i| {
                let mut r = RequestRecord::test_success(i, i * 500_000_000);
                r.scheduled_ns = i * 500_000_000;
                r
            })
            .collect();
        let ev = rps_change_events(&run, &recs).unwrap();
        let rps: Vec<u64> = ev
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["rps"].as_u64().unwrap())
            .collect();
        assert_eq!(rps, [2, 3, 4, 5, 6]);
        assert_eq!(ev[0]["timestamp"], "2026-11-28T15:04:05.000000Z");
        assert_eq!(ev[1]["timestamp"], "2026-11-28T15:04:05.500000Z");
        assert_eq!(ev[4]["timestamp"], "2026-11-28T15:04:06.000000Z");
        assert!(
            rps_change_events(&run_info(), &recs).is_none(),
            "no ramp, no events"
        );
    }

    #[test]
    fn ramped_run_is_named_and_keyed_as_vllm_does() {
        let mut run = run_info();
        run.request_rate = None;
        run.ramp_up_strategy = Some("linear".into());
        run.ramp_up_start_rps = Some(1);
        run.ramp_up_end_rps = Some(20);
        assert_eq!(
            default_result_filename(&run),
            "openai-ramp-up-linear-1qps-20qps-concurrency4-opt-125m-20261128-150405.json"
        );
        let v: Value = serde_json::from_str(&ResultFile::new(&run, &summary()).to_json()).unwrap();
        assert_eq!(
            (
                &v["ramp_up_strategy"],
                &v["ramp_up_start_rps"],
                &v["ramp_up_end_rps"]
            ),
            (&Value::from("linear"), &Value::from(1), &Value::from(20))
        );
        let plain: Value =
            serde_json::from_str(&ResultFile::new(&run_info(), &summary()).to_json()).unwrap();
        assert!(plain.get("ramp_up_strategy").is_none());
    }

    #[test]
    fn default_filename_follows_vllm() {
        let run = run_info();
        assert_eq!(
            default_result_filename(&run),
            "openai-10.0qps-concurrency4-opt-125m-20261128-150405.json"
        );
        let mut run = run_info();
        run.request_rate = None;
        run.max_concurrency = None;
        run.label = Some("my run/1".into());
        assert_eq!(
            default_result_filename(&run),
            "my_run_1-infqps-opt-125m-20261128-150405.json"
        );
    }
}
