//! The result file: one JSON object whose keys include every key of `vllm bench serve`'s result
//! file (so tools that read those read ours), plus servebench's own under their own names.
//!
//! vLLM's keys (from `vllm/benchmarks/serve.py`): `date`, `endpoint_type`, `backend`, `label`,
//! `model_id`, `tokenizer_id`, `num_prompts`, `request_rate` (a number or `"inf"`), `burstiness`,
//! `max_concurrency`, `duration`, `completed`, `failed`, `total_input_tokens`,
//! `total_output_tokens`, `request_throughput`, `request_goodput` (`null` without `--goodput`),
//! `output_throughput`, `total_token_throughput`, `max_output_tokens_per_s`,
//! `max_concurrent_requests`, and `mean_`/`median_`/`std_`/`p<N>_` × `ttft_ms`, `tpot_ms`,
//! `itl_ms`, `e2el_ms`. Where the numbers differ by definition (ours: per-token ITL, measured-
//! phase duration, tokens rather than chunks in the peak) `metric_definitions` says how.
//!
//! Structured output (`--structured-output`): `correct_rate` (the key of vLLM's
//! structured-output benchmark, percent) and `structured_output` (`checked`, `valid`,
//! `invalid`).
//!
//! Ours: the run metadata ([`RunInfo`], flat: `run_id`, `start_time`, `seed`, `simulated`,
//! `servebench_version`, `config`, …), `schema_version`, `attempted`, `success_rate`,
//! `errors_by_kind`, `streams_without_done`, `token_source`, `client_limited`, `self_check`,
//! `min_`/`max_` and P50/P90/P95/P99 of every metric, the same for `icl_ms`, `queue_ms` and
//! `e2el_incl_queue_ms`, and the whole [`Summary`] under `summary` (what servebench's own tools
//! read back).

use super::{write_atomic, ReportError, RunInfo, RESULT_SCHEMA_VERSION};
use crate::metrics::{percentile_label, Distribution, SelfCheck, Summary};
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

/// The metrics written flat as `{stat}_{name}_ms`, in this order; reasoning and tool-call
/// timing only when a stream had them (`ttfo`, `ttfr`, `reasoning`, `ttftc`).
fn flat_metrics(s: &Summary) -> Vec<(&'static str, &Distribution)> {
    let mut flat = vec![
        ("ttft", &s.ttft_ms),
        ("tpot", &s.tpot_ms),
        ("itl", &s.itl_ms),
        ("e2el", &s.e2el_ms),
        ("icl", &s.icl_ms),
        ("queue", &s.queue_ms),
        ("e2el_incl_queue", &s.e2el_with_queue_ms),
    ];
    if let Some(p) = &s.output_parts {
        flat.extend([
            ("ttfo", &p.ttfo_ms),
            ("ttfr", &p.ttfr_ms),
            ("reasoning", &p.reasoning_ms),
            ("ttftc", &p.ttftc_ms),
        ]);
    }
    flat
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
    pub schema_version: u32,
    pub attempted: u64,
    pub success_rate: f64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Successful streams that ended without `data: [DONE]` after a `finish_reason` (see
    /// `Summary::streams_without_done`).
    #[serde(default)]
    pub streams_without_done: u64,
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
        for (name, d) in flat_metrics(summary) {
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
            schema_version: RESULT_SCHEMA_VERSION,
            attempted: summary.attempted,
            success_rate: summary.success_rate,
            errors_by_kind: summary.errors_by_kind.clone(),
            streams_without_done: summary.streams_without_done,
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
    let rate = match run.request_rate {
        // Python's str(float): 10.0 → "10.0".
        Some(r) if r.fract() == 0.0 => format!("{r:.1}"),
        Some(r) => format!("{r}"),
        None => "inf".into(),
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
