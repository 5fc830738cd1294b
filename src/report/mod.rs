//! The run's outputs, rendered from a [`Summary`](crate::metrics::Summary) and the run's
//! metadata ([`RunInfo`]): the result JSON ([`json`]), a CSV row ([`csv`]) and the console
//! table ([`table`]). Renderers compute no metric and read no clock.

pub mod csv;
pub mod energy;
pub mod json;
pub mod study;
pub mod table;

pub use csv::{append_csv_row, csv_row, read_csv, write_csv, CSV_COLUMNS};
pub use energy::{energy_line, EnergyColumns};
pub use json::{
    default_result_filename, read_result, request_arrays, write_result, ResultFile,
    METRIC_DEFINITIONS,
};
pub use table::render_table;

use crate::metrics::{Slo, SummaryFacts};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bumped whenever a key of the result file changes meaning or is removed.
pub const RESULT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "cannot write {path}: {source}; check that the result directory is writable (--result-dir)"
    )]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a servebench result file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has other CSV columns than this servebench writes; write to a new file or move the old one aside\n  found:    {found}\n  expected: {expected}")]
    CsvHeaderMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// What the caller knows about the run that the records do not say. Filled by the load driver
/// (or suite); written into the result file (flat, with vLLM's key names where vLLM has one) and
/// into the journal header, so `servebench report --journal` can rebuild the result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    /// Wall-clock start of the run (a label only; durations come from the monotonic clock).
    pub start_time: DateTime<Utc>,
    /// vLLM's backend name for the endpoint: `openai` (`/v1/completions`) or `openai-chat`.
    pub backend: String,
    pub endpoint: String,
    pub base_url: Option<String>,
    pub label: Option<String>,
    /// The serving engine measured (`vllm`, `sglang`, `sim`, …), when known.
    pub engine: Option<String>,
    /// The workload's name (`small`, `shared-prefix`, …), when there is one.
    pub workload: Option<String>,
    pub model_id: String,
    /// The tokenizer used; as vLLM, the model id when none was given.
    pub tokenizer_id: String,
    pub num_prompts: u64,
    /// Requests/s of the open-loop schedule; `None` is vLLM's `inf` (written as `"inf"`).
    #[serde(with = "rate_serde")]
    pub request_rate: Option<f64>,
    pub burstiness: f64,
    pub max_concurrency: Option<u64>,
    pub seed: u64,
    /// True when the numbers come from the simulator (`servebench predict`), not a server.
    pub simulated: bool,
    pub servebench_version: String,
    /// Percentiles asked for besides P50/P90/P95/P99 (`--metric-percentiles`).
    #[serde(default)]
    pub metric_percentiles: Vec<f64>,
    /// The SLOs given with `--goodput`.
    #[serde(default)]
    pub goodput_slo: Slo,
    /// `--percentile-metrics`: the metrics (vLLM's names) given flat `{stat}_{metric}_ms`
    /// keys; `None`: every metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_metrics: Option<Vec<String>>,
    /// `--metadata KEY=VALUE`; also written as top-level keys, as vLLM does.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// vLLM's ramp keys (`--ramp-up-strategy`), present only for a ramped run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_up_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_up_start_rps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_up_end_rps: Option<u32>,
    /// The run's full configuration, as the caller serialized it.
    #[serde(default)]
    pub config: serde_json::Value,
}

impl RunInfo {
    /// A run of `model_id` started at `start_time`, with vLLM's defaults for the rest
    /// (`openai` backend on `/v1/completions`, rate `inf`, burstiness 1, seed 0); set the public
    /// fields that differ.
    pub fn new(
        run_id: impl Into<String>,
        model_id: impl Into<String>,
        start_time: DateTime<Utc>,
    ) -> Self {
        let model_id = model_id.into();
        RunInfo {
            run_id: run_id.into(),
            start_time,
            backend: "openai".into(),
            endpoint: "/v1/completions".into(),
            base_url: None,
            label: None,
            engine: None,
            workload: None,
            tokenizer_id: model_id.clone(),
            model_id,
            num_prompts: 0,
            request_rate: None,
            burstiness: 1.0,
            max_concurrency: None,
            seed: 0,
            simulated: false,
            servebench_version: env!("CARGO_PKG_VERSION").into(),
            metric_percentiles: Vec::new(),
            goodput_slo: Slo::default(),
            percentile_metrics: None,
            metadata: std::collections::BTreeMap::new(),
            ramp_up_strategy: None,
            ramp_up_start_rps: None,
            ramp_up_end_rps: None,
            config: serde_json::Value::Null,
        }
    }

    /// The facts a summary needs that this run info holds (no client CPU: the caller adds it).
    pub fn summary_facts(&self) -> SummaryFacts {
        SummaryFacts {
            percentiles: self.metric_percentiles.clone(),
            slo: self.goodput_slo,
            offered_rate: self.request_rate,
            client_cpu: None,
        }
    }
}

/// `request_rate` as vLLM writes it: a number, or the string `"inf"`.
pub(crate) mod rate_serde {
    use super::*;

    pub fn serialize<S: Serializer>(rate: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match rate {
            Some(r) if r.is_finite() => s.serialize_f64(*r),
            _ => s.serialize_str("inf"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Rate {
            Number(f64),
            Text(String),
        }
        match Rate::deserialize(d)? {
            Rate::Number(r) => Ok(Some(r).filter(|r| r.is_finite())),
            Rate::Text(t) if t == "inf" => Ok(None),
            Rate::Text(t) => t
                .parse::<f64>()
                .map(|r| Some(r).filter(|r| r.is_finite()))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "request_rate {t:?} is neither a number nor \"inf\""
                    ))
                }),
        }
    }
}

/// Write `bytes` to `path` so that readers see the old file or the new one, never half of it:
/// a temporary file in the same directory, synced, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "result".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A run and summary shared by the renderers' tests.
    use super::*;
    use crate::metrics::{summarize, ClientCpu};
    use crate::record::{FailureKind, Phase, RequestRecord, TokenSource, Usage};

    pub fn run_info() -> RunInfo {
        let start = DateTime::parse_from_rfc3339("2026-11-28T15:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut run = RunInfo::new("run-42", "facebook/opt-125m", start);
        run.num_prompts = 3;
        run.request_rate = Some(10.0);
        run.max_concurrency = Some(4);
        run.seed = 7;
        run.engine = Some("vllm".into());
        run.workload = Some("small".into());
        run.metric_percentiles = vec![99.9];
        run.goodput_slo = Slo {
            ttft_ms: Some(15.0),
            ..Default::default()
        };
        run.config = serde_json::json!({"num_prompts": 3, "api_key": null});
        run
    }

    fn ok(id: u64, sent_ms: u64, events_ms: &[(u32, u32)]) -> RequestRecord {
        let ms = 1_000_000;
        let events: Vec<(u32, u32)> = events_ms.iter().map(|&(t, k)| (t * 1000, k)).collect();
        let sent = sent_ms * ms;
        RequestRecord {
            id,
            first_token_ns: Some(sent + u64::from(events[0].0) * 1000),
            finished_ns: sent + u64::from(events[events.len() - 1].0) * 1000,
            output_tokens: events.iter().map(|e| e.1).sum(),
            events,
            prompt_tokens: 100,
            max_tokens: 16,
            usage: Some(Usage {
                prompt_tokens: 100,
                completion_tokens: 4,
            }),
            token_source: TokenSource::UsageDelta,
            ..RequestRecord::test_success(id, sent)
        }
    }

    /// Two successes (TTFT 10 and 20 ms, 4 tokens each) and one HTTP 500, over 30 ms.
    pub fn records() -> Vec<RequestRecord> {
        let ms = 1_000_000;
        vec![
            ok(1, 0, &[(10, 1), (12, 1), (16, 2)]),
            ok(2, 1, &[(20, 1), (29, 3)]),
            RequestRecord::failed_before_response(
                3,
                Phase::Measured,
                (2 * ms, 2 * ms, 2 * ms),
                3 * ms,
                FailureKind::Http { status: 500 },
                "boom".into(),
            ),
        ]
    }

    pub fn summary() -> crate::metrics::Summary {
        let mut facts = run_info().summary_facts();
        facts.client_cpu = Some(ClientCpu {
            cpu_seconds: 0.2,
            wall_seconds: 1.0,
            cores: 1.0,
        });
        summarize(records(), &facts)
    }
}
