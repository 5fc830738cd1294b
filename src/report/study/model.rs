//! The study's data: what the suite measured, cell by cell, plus the environment it ran in.
//! Serializable and versioned, so a study can be saved, reloaded and re-rendered.

use crate::cost::{CostSummary, Price};
use crate::metrics::Summary;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever a field of [`Study`] (or what it holds) changes meaning or is removed.
pub const STUDY_SCHEMA_VERSION: u32 = 1;

/// A matrix of frameworks × workloads (× repeats), measured or simulated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    pub schema_version: u32,
    pub title: String,
    /// When the report was made (given by the caller; renderers read no clock).
    pub generated_at: DateTime<Utc>,
    /// True when the study ran on servebench's simulator rather than real engines.
    pub simulated: bool,
    pub environment: Environment,
    pub cells: Vec<Cell>,
    /// Extra methodology lines the caller wants in the report (one sentence each).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Where the study ran.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Environment {
    /// Instance type (`g5.xlarge`) or a label for the machine.
    pub instance: Option<String>,
    /// GPU name as the catalog or the driver gives it (`A10G`).
    pub gpu: Option<String>,
    pub gpu_count: Option<u32>,
    pub region: Option<String>,
    /// Model id served (`facebook/opt-125m`).
    pub model: String,
    /// Framework → engine version, image or simulator profile (`vllm` → `vllm/vllm-openai:v0.11.0`).
    #[serde(default)]
    pub engines: BTreeMap<String, String>,
    pub servebench_version: String,
    #[serde(default)]
    pub servebench_commit: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    /// The hourly price the cost figures used, when there is one.
    #[serde(default)]
    pub price: Option<Price>,
}

/// How a workload loaded the server.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Measured requests.
    pub requests: u64,
    /// `max_tokens` of every request; 0 when each request's came from its dataset.
    pub max_tokens: u64,
    /// Requests in flight at most (`None`: no cap).
    pub concurrency: Option<u64>,
    /// Requests sent before measuring and left out of every number.
    #[serde(default)]
    pub warmup_requests: u64,
    /// Open-loop arrival rate, requests/s; `None`: closed loop (send as slots free).
    #[serde(default)]
    pub request_rate: Option<f64>,
    /// What the prompts were (`synthetic, 128 tokens`), when the caller says.
    #[serde(default)]
    pub prompt: Option<String>,
    /// The workload asked for structured (grammar/JSON-constrained) output.
    #[serde(default)]
    pub structured_output: bool,
    /// Requests in groups sharing a long prompt prefix (prefix caching matters).
    #[serde(default)]
    pub shared_prefix: bool,
    /// Conversations whose history (replies included) is sent back each turn.
    #[serde(default)]
    pub multi_turn: bool,
    /// The workload that is this one without its feature (no shared prefix, no output
    /// constraint), when the study has one: the report compares the two.
    #[serde(default)]
    pub baseline: Option<String>,
}

impl WorkloadSpec {
    /// A workload that exercises one engine feature (prefix caching, constrained decoding,
    /// a conversation's cached history)
    /// rather than the plain serving path the seed's tables compare.
    pub fn exercises_a_feature(&self) -> bool {
        self.shared_prefix || self.structured_output || self.multi_turn
    }
}

/// GPU telemetry over one cell's measured phase.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GpuSummary {
    pub util_mean_pct: f64,
    pub util_max_pct: f64,
    pub mem_max_gb: f64,
    /// Where the samples came from (`nvml`, `dcgm`, `simulator`, …).
    pub source: String,
    /// Mean power of all the cell's GPUs together, W (absent: not measured).
    #[serde(default)]
    pub power_mean_w: Option<f64>,
    /// GPU energy per output token, J (absent: not measured).
    #[serde(default)]
    pub joules_per_output_token: Option<f64>,
}

/// One framework × workload (× repeat) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `vllm`, `sglang`, … (shown as vLLM, SGLang).
    pub framework: String,
    /// `Small`, `Medium`, `Large`, …
    pub workload: String,
    pub spec: WorkloadSpec,
    /// 0 for the first run of this framework × workload, 1 for the next, …
    #[serde(default)]
    pub repeat: u32,
    pub summary: Summary,
    pub cost: Option<CostSummary>,
    pub gpu: Option<GpuSummary>,
    /// Why there is no GPU telemetry, when there is none (`no NVML on this host`).
    #[serde(default)]
    pub gpu_unavailable: Option<String>,
    /// The server's prefix-cache hit rate over the measured phase (0–1), read from its
    /// `/metrics`, when it exports one.
    #[serde(default)]
    pub prefix_cache_hit_rate: Option<f64>,
    pub simulated: bool,
    /// The cell's result JSON, relative to the report's directory where possible.
    pub result_file: String,
}

impl Study {
    /// True when any number in the study came from the simulator.
    pub fn any_simulated(&self) -> bool {
        self.simulated || self.cells.iter().any(|c| c.simulated)
    }

    /// True when some numbers, not all, came from the simulator: rows then say which.
    pub fn partly_simulated(&self) -> bool {
        self.any_simulated() && !self.all_simulated()
    }

    /// True when every number came from the simulator.
    pub fn all_simulated(&self) -> bool {
        self.simulated || (!self.cells.is_empty() && self.cells.iter().all(|c| c.simulated))
    }
}

/// How a framework is written in prose: `vllm` → `vLLM`, `sglang` → `SGLang`, others as given.
pub fn framework_label(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "vllm" => "vLLM".into(),
        "sglang" => "SGLang".into(),
        "tgi" => "TGI".into(),
        "trtllm" | "tensorrt-llm" => "TensorRT-LLM".into(),
        "llamacpp" | "llama.cpp" => "llama.cpp".into(),
        "sim" => "simulator".into(),
        _ => name.to_string(),
    }
}

impl Study {
    /// An empty study of the current schema; push [`Cell`]s into `cells`.
    pub fn new(
        title: impl Into<String>,
        generated_at: DateTime<Utc>,
        simulated: bool,
        environment: Environment,
    ) -> Study {
        Study {
            schema_version: STUDY_SCHEMA_VERSION,
            title: title.into(),
            generated_at,
            simulated,
            environment,
            cells: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl Cell {
    /// A cell with no cost and no GPU telemetry yet (see [`Cell::priced`] and the `gpu` fields).
    pub fn new(
        framework: impl Into<String>,
        workload: impl Into<String>,
        spec: WorkloadSpec,
        summary: Summary,
        simulated: bool,
        result_file: impl Into<String>,
    ) -> Cell {
        Cell {
            framework: framework.into(),
            workload: workload.into(),
            spec,
            repeat: 0,
            summary,
            cost: None,
            gpu: None,
            gpu_unavailable: None,
            prefix_cache_hit_rate: None,
            simulated,
            result_file: result_file.into(),
        }
    }

    /// This cell with its cost figures at `price`.
    pub fn priced(mut self, price: &Price) -> Cell {
        self.cost = Some(crate::cost::cost_summary(price, &self.summary));
        self
    }
}
