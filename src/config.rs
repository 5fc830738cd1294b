//! Validated, typed configuration. Raw flags (`cli`) come in; typed values with every default
//! decided and every cross-flag rule checked come out. Nothing else in the program re-checks
//! flags, and every rejection names the flag, the bad value and what to do instead.

use crate::arrival::{Arrival, RampStrategy, RampUp};
use crate::cli::{
    EmbeddedArgs, LoadArgs, MetricArgs, OutputArgs, RunArgs, SamplingArgs, VllmCompatArgs,
    WorkloadArgs,
};
use crate::load::{LoadMode, LoadPlan, Pacing, Stop};
use crate::metrics::Slo;
use crate::openai::Endpoint;
use crate::server::{FaultConfig, FaultKind, FixedTimingConfig};
use crate::workload::{
    DatasetKind, DatasetSpec, LengthDist, MultiTurnSpec, PromptMaker, RandomSpec,
    ShareGptConversations, SharedPrefixSpec, ThinkTime, TraceSpec, TurnCount, Workload,
};
use serde::Serialize;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

pub mod limits;

/// A configuration problem: which field, what was wrong, what to do. Exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid {field} `{value}`: {problem}")]
pub struct ConfigError {
    pub field: String,
    pub value: String,
    pub problem: String,
}

fn bad(field: &str, value: impl ToString, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        value: value.to_string(),
        problem: problem.into(),
    }
}

/// What the run measures.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    /// An existing server.
    External { base_url: String },
    /// servebench's embedded server, started in-process on a free loopback port.
    Embedded(EmbeddedConfig),
}

/// The embedded fixed-timing server's behaviour.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmbeddedConfig {
    pub ttft: Duration,
    pub itl: Duration,
    pub tokens_per_chunk: u32,
    /// Fault label (`http_500`, …) → probability.
    pub faults: std::collections::BTreeMap<String, f64>,
    pub fault_after_tokens: u32,
    pub fault_stall: Duration,
    pub fault_seed: u64,
    pub server_threads: usize,
    /// Reasoning-model emulation (`--reasoning-tokens`); `None`: plain answers.
    pub reasoning: Option<crate::server::Reasoning>,
}

impl EmbeddedConfig {
    /// The fault configuration in the server's terms.
    pub fn fault_config(&self) -> FaultConfig {
        let mut f = FaultConfig {
            after_tokens: self.fault_after_tokens,
            stall_for: self.fault_stall,
            ..FaultConfig::default()
        };
        for kind in FaultKind::ALL {
            if let Some(p) = self.faults.get(kind.label()) {
                f = f.with(kind, *p);
            }
        }
        f
    }

    /// The timing in the server's terms.
    pub fn timing(&self) -> FixedTimingConfig {
        FixedTimingConfig {
            ttft: self.ttft,
            itl: self.itl,
            tokens_per_chunk: self.tokens_per_chunk,
            output_cap: None,
        }
    }
}

/// Which token usage to ask the server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageRequest {
    /// Per-chunk usage (`continuous_usage_stats`), falling back to final usage if rejected.
    Auto,
    /// `stream_options.include_usage` only.
    Final,
    /// Neither; tokens are counted from events.
    None,
}

/// What to sample beside the requests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TelemetryConfig {
    /// `None`: telemetry off.
    pub interval: Option<Duration>,
    /// Scrape the server's own `/metrics` (engines' Prometheus endpoint).
    pub engine_metrics: bool,
    pub dcgm_url: Option<String>,
    pub nvml: bool,
}

/// Everything one `servebench run` needs, validated.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub target: Target,
    pub endpoint: Endpoint,
    /// vLLM's `--backend` name, written as the result's `backend` (`openai`, `vllm` or
    /// `openai-chat`).
    pub backend: String,
    pub model: Option<String>,
    /// `--served-model-name`: the name sent in requests when it differs from `model`.
    pub served_model_name: Option<String>,
    /// `--header KEY=VALUE`, in the order given. Serialized with auth-like values redacted.
    #[serde(serialize_with = "ser_headers")]
    pub headers: Vec<(String, String)>,
    /// `--request-id-prefix`: request n carries `X-Request-Id: <prefix><n>`.
    pub request_id_prefix: Option<String>,
    /// `--ready-check-timeout-sec`: how long the preflight retries an unready server (zero:
    /// one attempt).
    pub ready_check_timeout: Duration,
    /// Fields merged into every request body last: sampling parameters, `--logprobs`, then
    /// `--extra-body` (which wins, as in vLLM).
    pub body_extra: serde_json::Map<String, serde_json::Value>,
    /// `--metadata KEY=VALUE`: top-level keys of the result file.
    pub metadata: Vec<(String, String)>,
    /// `--percentile-metrics`: the metrics given flat `mean_`/`median_`/`std_`/`p<N>_` keys;
    /// `None`: all of them.
    pub percentile_metrics: Option<Vec<String>>,
    /// The ramp of `--ramp-up-strategy`, for the result's `ramp_up_*` keys and file name.
    pub ramp_up: Option<RampUp>,
    /// One line per accepted `vllm bench serve` flag that has no effect here, printed on
    /// stderr when the run starts.
    #[serde(skip)]
    pub compat_notes: Vec<String>,
    /// `--tokenizer` as given (a file, or a model directory), for the result's `tokenizer_id`;
    /// `tokenizer` is the tokenizer.json it resolved to.
    pub tokenizer_id: Option<String>,
    /// Never serialized: secrets stay out of every output.
    #[serde(skip)]
    pub api_key: Option<String>,
    pub request_timeout: Duration,
    pub stream: bool,
    pub usage: UsageRequest,
    pub label: Option<String>,
    pub tokenizer: Option<PathBuf>,
    pub workload: Workload,
    pub ignore_eos: bool,
    pub min_tokens: Option<u32>,
    pub seed: u64,
    /// A constrained run (`--structured-output`); `None`: unconstrained.
    pub structured: Option<StructuredConfig>,
    #[serde(serialize_with = "ser_plan")]
    pub plan: LoadPlan,
    /// The rate as given (`inf` or a number), for result file names and the vLLM-style keys.
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub num_prompts: Option<u64>,
    pub client_threads: Option<usize>,
    pub slo: Slo,
    pub fail_under_goodput: Option<f64>,
    pub fail_under_success_rate: Option<f64>,
    pub percentiles: Vec<f64>,
    pub result_dir: PathBuf,
    pub result_filename: Option<String>,
    pub save_detailed: bool,
    pub progress: bool,
    /// `--electricity-price`/`--pue`: the on-premises energy cost of the measured energy.
    pub electricity: Option<crate::cost::ElectricityPrice>,
    pub telemetry: TelemetryConfig,
    /// What the caller knows about the target that the run cannot see (the suite puts the
    /// launcher's facts here: image and digest, command line, pid). Goes into the result's
    /// environment fingerprint.
    #[serde(skip)]
    pub environment: serde_json::Value,
    /// The server is servebench's simulator (the suite knows it of a `kind = "sim"` target):
    /// the result's top-level `simulated` says so.
    #[serde(skip)]
    pub simulated: bool,
}

fn ser_plan<S: serde::Serializer>(plan: &LoadPlan, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&describe_plan(plan))
}

/// Headers as `name: value`, with the value of any auth-like header replaced: a result file
/// or journal header is shared more widely than a shell history.
fn ser_headers<S: serde::Serializer>(h: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(h.len()))?;
    for (k, v) in h {
        let shown = if is_sensitive_header(k) {
            "<redacted>"
        } else {
            v.as_str()
        };
        m.serialize_entry(k, shown)?;
    }
    m.end()
}

/// Whether a header's value is a credential (never written to any output): the standard auth
/// headers and any name that says key, token, secret, password, session or cookie.
pub fn is_sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth", "key", "token", "secret", "password", "cookie", "session",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// One line a person can read: "closed loop, 10 in flight, 100 requests, 2 warmups"; for
/// conversations "closed loop, 10 conversations at once, …" and "open loop, 2 conversations/s
/// poisson, …" (the stop count is requests, i.e. turns, either way).
pub fn describe_plan(plan: &LoadPlan) -> String {
    let (unit, all) = if plan.conversations {
        (
            "conversations/s",
            "open loop, all conversations start at t=0",
        )
    } else {
        ("req/s", "open loop, all requests due at t=0")
    };
    let mode = match &plan.mode {
        LoadMode::Closed { concurrency } if plan.conversations => {
            format!("closed loop, {concurrency} conversations at once")
        }
        LoadMode::Closed { concurrency } => format!("closed loop, {concurrency} in flight"),
        LoadMode::Open {
            pacing,
            max_in_flight,
        } => {
            let pace = match pacing {
                Pacing::AllAtOnce => all.to_string(),
                Pacing::Rate { rate, arrival } => format!("open loop, {rate} {unit} {arrival}"),
                Pacing::Trace(o) => {
                    format!("open loop, a trace's own clock ({} arrivals)", o.len())
                }
                Pacing::Ramp {
                    ramp,
                    arrival,
                    over,
                } => format!(
                    "open loop, {} ramp {}→{} {unit} over {over} arrivals {arrival}",
                    ramp.strategy, ramp.start_rps, ramp.end_rps
                ),
            };
            match max_in_flight {
                Some(n) => format!("{pace}, at most {n} in flight"),
                None => pace,
            }
        }
    };
    let warmups = if plan.conversations {
        "warmup conversations"
    } else {
        "warmups"
    };
    let stop = match plan.stop {
        Stop::Requests(n) => format!("{n} requests"),
        Stop::Duration(d) => format!("{} s", d.as_secs_f64()),
        Stop::RequestsOrDuration(n, d) => format!("{n} requests or {} s", d.as_secs_f64()),
    };
    format!("{mode}, {stop}, {} {warmups}", plan.warmups)
}

fn fraction(field: &str, v: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(bad(
            field,
            v,
            "must be a fraction between 0 and 1, e.g. 0.1",
        ))
    }
}

impl EmbeddedConfig {
    pub fn from_args(a: &EmbeddedArgs) -> Result<EmbeddedConfig, ConfigError> {
        let mut faults = std::collections::BTreeMap::new();
        for item in &a.faults {
            let Some((kind, p)) = item.split_once('=') else {
                return Err(bad(
                    "--fault",
                    item,
                    "expected KIND=FRACTION, e.g. http_500=0.1",
                ));
            };
            if !FaultKind::ALL.iter().any(|k| k.label() == kind) {
                let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.label()).collect();
                return Err(bad(
                    "--fault",
                    item,
                    format!("unknown fault kind; use one of {}", known.join(", ")),
                ));
            }
            let p: f64 = p
                .parse()
                .map_err(|_| bad("--fault", item, "the fraction must be a number, e.g. 0.1"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(
                    "--fault",
                    item,
                    "the fraction must be between 0 and 1, e.g. 0.1",
                ));
            }
            faults.insert(kind.to_string(), p);
        }
        if a.tokens_per_chunk == 0 {
            return Err(bad("--tokens-per-chunk", 0, "must be at least 1"));
        }
        for (field, v) in [
            ("--tokens-per-chunk", a.tokens_per_chunk),
            ("--fault-after-tokens", a.fault_after_tokens),
            ("--reasoning-tokens", a.reasoning.reasoning_tokens),
        ] {
            if v > 0 {
                limits::tokens(field, v)?;
            }
        }
        let cfg = EmbeddedConfig {
            ttft: limits::delay_ms("--ttft-ms", a.ttft_ms)?,
            itl: limits::delay_ms("--itl-ms", a.itl_ms)?,
            tokens_per_chunk: a.tokens_per_chunk,
            faults,
            fault_after_tokens: a.fault_after_tokens,
            fault_stall: limits::delay_ms("--fault-stall-ms", a.fault_stall_ms)?,
            fault_seed: a.fault_seed,
            server_threads: limits::threads("--server-threads", a.server_threads)?,
            reasoning: reasoning(&a.reasoning),
        };
        cfg.fault_config()
            .validate()
            .map_err(|e| bad("--fault", a.faults.join(" "), e.to_string()))?;
        Ok(cfg)
    }
}

/// `--reasoning-tokens` / `--reasoning-field` in the server's terms (0 tokens: none).
pub fn reasoning(a: &crate::cli::ReasoningArgs) -> Option<crate::server::Reasoning> {
    use crate::cli::ReasoningFieldArg;
    use crate::server::ReasoningField;
    (a.reasoning_tokens > 0).then_some(crate::server::Reasoning {
        tokens: a.reasoning_tokens,
        field: match a.reasoning_field {
            ReasoningFieldArg::ReasoningContent => ReasoningField::ReasoningContent,
            ReasoningFieldArg::Reasoning => ReasoningField::Reasoning,
        },
    })
}

/// `inf` or a positive number of requests per second, within [`limits::rate`]'s range.
pub fn parse_rate(s: &str) -> Result<f64, ConfigError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity") {
        return Ok(f64::INFINITY);
    }
    match t.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => limits::rate("--request-rate", v).map_err(|mut e| {
            e.problem.push_str(", or `inf` to send all at once");
            e
        }),
        _ => Err(bad(
            "--request-rate",
            s,
            "must be a positive number of requests per second, or `inf`",
        )),
    }
}

/// `ttft:500 tpot:50 e2el:10000` → objectives in ms (vLLM's `--goodput` syntax).
pub fn parse_goodput(items: &[String]) -> Result<Slo, ConfigError> {
    let mut slo = Slo::default();
    for item in items.iter().flat_map(|s| s.split_whitespace()) {
        let Some((key, value)) = item.split_once(':') else {
            return Err(bad(
                "--goodput",
                item,
                "expected KEY:MS, e.g. ttft:500 (keys: ttft, tpot, e2el)",
            ));
        };
        let ms: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                bad(
                    "--goodput",
                    item,
                    "the objective must be a positive number of ms",
                )
            })?;
        let slot = match key {
            "ttft" => &mut slo.ttft_ms,
            "tpot" => &mut slo.tpot_ms,
            "e2el" => &mut slo.e2el_ms,
            _ => {
                return Err(bad(
                    "--goodput",
                    item,
                    "unknown metric; use ttft, tpot or e2el",
                ))
            }
        };
        *slot = Some(ms);
    }
    Ok(slo)
}

/// `50,90,99` → [50.0, 90.0, 99.0]. Each strictly between 0 and 100 (min and max are always
/// reported); an empty list is refused, since it would silently report no percentile.
pub fn parse_percentiles(s: &str) -> Result<Vec<f64>, ConfigError> {
    let items: Vec<&str> = s.split(',').map(str::trim).collect();
    if items.iter().all(|p| p.is_empty()) {
        return Err(bad(
            "--metric-percentiles",
            s,
            "name at least one percentile between 0 and 100, e.g. 50,90,99",
        ));
    }
    items
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0 && *v < 100.0)
                .ok_or_else(|| {
                    bad(
                        "--metric-percentiles",
                        p,
                        "each percentile must be a number between 0 and 100 exclusive (min and max are always reported), e.g. 50,90,99",
                    )
                })
        })
        .collect()
}

fn parse_arrival(name: &str, burstiness: f64) -> Result<Arrival, ConfigError> {
    use limits::{MAX_BURSTINESS, MIN_BURSTINESS};
    if !(MIN_BURSTINESS..=MAX_BURSTINESS).contains(&burstiness) {
        return Err(bad(
            "--burstiness",
            limits::show(burstiness),
            format!("must be a number from {MIN_BURSTINESS} to {MAX_BURSTINESS} (1 = Poisson)"),
        ));
    }
    match name {
        "poisson" | "gamma" => Ok(Arrival::Gamma { burstiness }),
        "constant" if burstiness == 1.0 => Ok(Arrival::Constant),
        "constant" => Err(bad(
            "--burstiness",
            burstiness,
            "burstiness applies to gamma arrivals; drop it or use --arrival gamma",
        )),
        other => Err(bad("--arrival", other, "use poisson, gamma or constant")),
    }
}

fn nonzero(field: &str, n: usize) -> Result<NonZeroUsize, ConfigError> {
    NonZeroUsize::new(n).ok_or_else(|| bad(field, n, "must be at least 1"))
}

/// The workload flags, validated (shared by `run` and `predict`).
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub spec: Workload,
    /// The tokenizer.json `--tokenizer` resolved to.
    pub tokenizer: Option<PathBuf>,
    /// `--tokenizer` as given.
    pub tokenizer_id: Option<String>,
    pub ignore_eos: bool,
    pub min_tokens: Option<u32>,
    pub seed: u64,
    pub structured: Option<StructuredConfig>,
}

/// A constrained run: what every answer must satisfy, and in which engine's fields to ask.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StructuredConfig {
    pub constraint: crate::structured::Constraint,
    /// `None`: chosen from the target once it is known ([`crate::structured::Dialect::for_engine`]).
    pub dialect: Option<crate::structured::Dialect>,
}

impl StructuredConfig {
    /// The `--structured-output` group of flags, validated. `None` when the run is unconstrained.
    pub fn from_args(a: &WorkloadArgs) -> Result<Option<StructuredConfig>, ConfigError> {
        use crate::structured::{Constraint, Dialect};
        let Some(kind) = a.structured_output.as_deref() else {
            for (flag, given) in [
                ("--json-schema", a.json_schema.is_some()),
                ("--regex", a.regex.is_some()),
                ("--structured-dialect", a.structured_dialect.is_some()),
            ] {
                if given {
                    return Err(bad(
                        flag,
                        "(given)",
                        "only applies to a constrained run; add --structured-output json-schema or regex",
                    ));
                }
            }
            return Ok(None);
        };
        let constraint = match kind {
            "json-schema" => {
                if a.regex.is_some() {
                    return Err(bad("--regex", "(given)", "--structured-output json-schema takes --json-schema; use --structured-output regex for a regex"));
                }
                match &a.json_schema {
                    None => Constraint::JsonSchema(crate::structured::default_schema()),
                    Some(p) => {
                        let text = std::fs::read_to_string(p).map_err(|e| {
                            bad("--json-schema", p.display(), format!("cannot read it: {e}"))
                        })?;
                        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                            bad("--json-schema", p.display(), format!("not JSON: {e}"))
                        })?;
                        Constraint::JsonSchema(v)
                    }
                }
            }
            "regex" => {
                if a.json_schema.is_some() {
                    return Err(bad("--json-schema", "(given)", "--structured-output regex takes --regex; use --structured-output json-schema for a schema"));
                }
                let Some(r) = &a.regex else {
                    return Err(bad(
                        "--regex",
                        "(missing)",
                        "--structured-output regex needs the pattern, e.g. --regex '[0-9]{3}-[0-9]{4}'",
                    ));
                };
                Constraint::Regex(r.clone())
            }
            other => {
                return Err(bad(
                    "--structured-output",
                    other,
                    "use json-schema or regex",
                ))
            }
        };
        // Compile it now: a schema or regex the checker cannot use is a usage error, not a
        // run whose every answer is "invalid".
        crate::structured::Checker::new(&constraint).map_err(|e| {
            match (&constraint, &a.json_schema) {
                (Constraint::Regex(r), _) => bad("--regex", r, e),
                (Constraint::JsonSchema(_), Some(p)) => bad("--json-schema", p.display(), e),
                (Constraint::JsonSchema(_), None) => bad("--json-schema", "(built-in)", e),
            }
        })?;
        if a.ignore_eos {
            return Err(bad(
                "--ignore-eos",
                "(given)",
                "cannot go with --structured-output: the grammar ends the answer with EOS when the \
                 JSON or the regex is complete, and ignoring EOS would run on to max_tokens; drop --ignore-eos",
            ));
        }
        let dialect = match a.structured_dialect.as_deref() {
            None => None,
            Some(d) => {
                let d: Dialect = d.parse().map_err(|e| bad("--structured-dialect", d, e))?;
                crate::structured::body_fields(&constraint, d)
                    .map_err(|e| bad("--structured-dialect", d, e))?;
                Some(d)
            }
        };
        Ok(Some(StructuredConfig {
            constraint,
            dialect,
        }))
    }
}

/// `--tokenizer`: a tokenizer.json, or a local model directory that holds one. A value that
/// is neither, shaped like a Hugging Face hub id, gets the fix (servebench never downloads).
pub fn resolve_tokenizer(p: &std::path::Path) -> Result<PathBuf, ConfigError> {
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    if p.is_dir() {
        let file = p.join("tokenizer.json");
        if file.is_file() {
            return Ok(file);
        }
        return Err(bad(
            "--tokenizer",
            p.display(),
            "this directory has no tokenizer.json (servebench reads the Hugging Face `tokenizers` \
             format only; a model with only a sentencepiece tokenizer.model cannot be read); \
             give a directory or file that has one",
        ));
    }
    let text = p.to_string_lossy();
    let hub_like = !text.starts_with('.')
        && !text.starts_with('/')
        && !text.starts_with('~')
        && text.split('/').count() <= 2
        && !text.ends_with(".json");
    if hub_like {
        return Err(bad(
            "--tokenizer",
            p.display(),
            format!(
                "no such local file or directory, and servebench does not download from the \
                 Hugging Face hub; fetch it yourself (e.g. `huggingface-cli download {text} \
                 tokenizer.json --local-dir ./tok`) and pass --tokenizer ./tok"
            ),
        ));
    }
    Err(bad(
        "--tokenizer",
        p.display(),
        "no such file or directory; give a local tokenizer.json or a model directory holding one",
    ))
}

/// vLLM's datasets that servebench does not have, and what to use instead.
const UNSUPPORTED_DATASETS: &[(&str, &str)] = &[
    ("sonnet", "use random, or custom with your own prompts"),
    (
        "burstgpt",
        "use trace with the BurstGPT lengths and timestamps as JSONL",
    ),
    (
        "hf",
        "use sharegpt or custom with --dataset-path on a downloaded copy",
    ),
    ("random-mm", "use random (servebench sends text only)"),
    (
        "random-rerank",
        "use random (servebench measures generation only)",
    ),
    ("custom_audio", "use custom (servebench sends text only)"),
    ("custom_image", "use custom (servebench sends text only)"),
    ("speed_bench", "use custom with the questions as JSONL"),
    ("spec_bench", "use custom with the questions as JSONL"),
    ("txt-slices", "use custom with the slices as JSONL"),
    (
        "timed_trace",
        "use trace (a JSONL of timestamp, input and output lengths)",
    ),
];

impl WorkloadConfig {
    pub fn from_args(a: &WorkloadArgs) -> Result<WorkloadConfig, ConfigError> {
        // vLLM's general lengths map onto the dataset-specific ones (`vllm bench serve`
        // main_async), so apply them to a copy before anything reads those.
        check_lengths(a)?;
        let mut owned = a.clone();
        if let Some(n) = a.input_len {
            owned.random_input_len = n;
        }
        if let Some(n) = a.output_len {
            owned.random_output_len = n;
            owned.sharegpt_output_len = Some(n);
            owned.custom_output_len = Some(n);
            owned.prefix_repetition_output_len = n;
        }
        let a = &owned;
        if let Some((name, instead)) = UNSUPPORTED_DATASETS
            .iter()
            .find(|(n, _)| *n == a.dataset_name)
        {
            return Err(bad(
                "--dataset-name",
                name,
                format!("this vLLM dataset is not supported by servebench; {instead}"),
            ));
        }
        if a.dataset_name == "random" && a.dataset_path.is_some() {
            return Err(bad(
                "--dataset-path",
                a.dataset_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "the random dataset reads no file (as in vLLM); use --dataset-name sharegpt or custom for it",
            ));
        }
        if a.random_input_len == 0 {
            return Err(bad("--random-input-len", 0, "must be at least 1 token"));
        }
        if a.random_output_len == 0 {
            return Err(bad("--random-output-len", 0, "must be at least 1 token"));
        }
        let input = LengthDist::from_range_ratio(a.random_input_len, a.random_range_ratio)
            .map_err(|p| bad("--random-range-ratio", a.random_range_ratio, p))?;
        let output = LengthDist::from_range_ratio(a.random_output_len, a.random_range_ratio)
            .map_err(|p| bad("--random-range-ratio", a.random_range_ratio, p))?;
        if let Some(m) = a.min_tokens {
            if m > a.random_output_len {
                return Err(bad(
                    "--min-tokens",
                    m,
                    format!(
                        "is more than --random-output-len {}; lower it",
                        a.random_output_len
                    ),
                ));
            }
        }
        let tokenizer = a.tokenizer.as_deref().map(resolve_tokenizer).transpose()?;
        let spec =
            match a.dataset_name.as_str() {
                "random" if a.random_prefix_len > 0 => {
                    // vLLM's fixed prefix: the same random tokens before every prompt's own.
                    // One shared-prefix group is exactly that when the lengths are fixed.
                    if a.random_range_ratio != 0.0 {
                        return Err(bad(
                            "--random-prefix-len",
                            a.random_prefix_len,
                            "cannot go with --random-range-ratio here (the prefixed prompts have fixed lengths); drop one of them",
                        ));
                    }
                    Workload::SharedPrefix(SharedPrefixSpec {
                        groups: 1,
                        // vLLM's default --num-prompts; a given --num-prompts decides.
                        prompts_per_group: 1000,
                        system_prompt_len: a.random_prefix_len,
                        question_len: a.random_input_len,
                        output_len: a.random_output_len,
                    })
                }
                "random" => Workload::Random(RandomSpec { input, output }),
                "prefix_repetition" => {
                    // vLLM's prefix_repetition: N prefixes, each shared by num_prompts / N
                    // requests with suffixes of their own — a shared-prefix workload.
                    for (field, v) in [
                        ("--prefix-repetition-prefix-len", a.prefix_repetition_prefix_len),
                        ("--prefix-repetition-suffix-len", a.prefix_repetition_suffix_len),
                        ("--prefix-repetition-num-prefixes", a.prefix_repetition_num_prefixes),
                        ("--prefix-repetition-output-len", a.prefix_repetition_output_len),
                    ] {
                        if v == 0 {
                            return Err(bad(field, 0, "must be at least 1"));
                        }
                    }
                    Workload::SharedPrefix(SharedPrefixSpec {
                        groups: a.prefix_repetition_num_prefixes,
                        // vLLM's default --num-prompts shared out; a given --num-prompts decides.
                        prompts_per_group: (1000 / a.prefix_repetition_num_prefixes).max(1),
                        system_prompt_len: a.prefix_repetition_prefix_len,
                        question_len: a.prefix_repetition_suffix_len,
                        output_len: a.prefix_repetition_output_len,
                    })
                }
                "generated-shared-prefix" | "shared-prefix" => {
                    for (field, v) in [
                        ("--gsp-num-groups", a.gsp_num_groups),
                        ("--gsp-prompts-per-group", a.gsp_prompts_per_group),
                        ("--gsp-system-prompt-len", a.gsp_system_prompt_len),
                        ("--gsp-question-len", a.gsp_question_len),
                        ("--gsp-output-len", a.gsp_output_len),
                    ] {
                        if v == 0 {
                            return Err(bad(field, 0, "must be at least 1"));
                        }
                    }
                    Workload::SharedPrefix(SharedPrefixSpec {
                        groups: a.gsp_num_groups,
                        prompts_per_group: a.gsp_prompts_per_group,
                        system_prompt_len: a.gsp_system_prompt_len,
                        question_len: a.gsp_question_len,
                        output_len: a.gsp_output_len,
                    })
                }
                name @ ("sharegpt" | "custom") => {
                    let (kind, fixed) = if name == "sharegpt" {
                        (DatasetKind::ShareGpt, a.sharegpt_output_len)
                    } else {
                        (DatasetKind::Custom, a.custom_output_len)
                    };
                    let Some(path) = &a.dataset_path else {
                        return Err(bad(
                            "--dataset-path",
                            "(missing)",
                            format!("--dataset-name {name} reads a local file; give its path"),
                        ));
                    };
                    if fixed == Some(0) {
                        return Err(bad("output length", 0, "must be at least 1 token"));
                    }
                    Workload::Dataset(
                        DatasetSpec::load(kind, path, fixed)
                            .map_err(|e| bad("--dataset-path", path.display(), e))?,
                    )
                }
                "trace" => {
                    let Some(path) = &a.dataset_path else {
                        return Err(bad(
                            "--dataset-path",
                            "(missing)",
                            "--dataset-name trace reads a local JSONL trace; give its path",
                        ));
                    };
                    Workload::Trace(
                        TraceSpec::load(path, a.trace_time_scale)
                            .map_err(|e| bad("--dataset-path", path.display(), e))?,
                    )
                }
                "multi-turn" => Workload::MultiTurn(multi_turn(a)?),
                "sharegpt-multi-turn" => Workload::MultiTurn(sharegpt_multi_turn(a)?),
                other => return Err(bad(
                    "--dataset-name",
                    other,
                    "use random, generated-shared-prefix, prefix_repetition, sharegpt, custom, trace, multi-turn or sharegpt-multi-turn",
                )),
            };
        if a.sharegpt_max_turns.is_some() && a.dataset_name != "sharegpt-multi-turn" {
            return Err(bad(
                "--sharegpt-max-turns",
                a.sharegpt_max_turns.unwrap_or(0),
                "only caps conversations of --dataset-name sharegpt-multi-turn; drop it (use --conversation-turn-mean for synthetic conversations)",
            ));
        }
        if a.sharegpt_context_len.is_some() && a.dataset_name != "sharegpt-multi-turn" {
            return Err(bad(
                "--sharegpt-context-len",
                a.sharegpt_context_len.unwrap_or(0),
                "only cuts conversations of --dataset-name sharegpt-multi-turn; drop it (single-turn sharegpt keeps vLLM's 1024/2048 filter)",
            ));
        }
        Ok(WorkloadConfig {
            spec,
            tokenizer,
            tokenizer_id: a.tokenizer.as_ref().map(|p| p.display().to_string()),
            ignore_eos: a.ignore_eos,
            min_tokens: a.min_tokens,
            seed: a.seed,
            structured: StructuredConfig::from_args(a)?,
        })
    }
}

/// Every token length and count a workload flag gives, within [`limits::MAX_TOKENS`] (the
/// zero checks stay with each dataset, where a 0 means something different).
fn check_lengths(a: &WorkloadArgs) -> Result<(), ConfigError> {
    let lengths = [
        ("--input-len", a.input_len),
        ("--output-len", a.output_len),
        ("--random-input-len", Some(a.random_input_len)),
        ("--random-output-len", Some(a.random_output_len)),
        ("--random-prefix-len", Some(a.random_prefix_len)),
        ("--sharegpt-output-len", a.sharegpt_output_len),
        ("--sharegpt-context-len", a.sharegpt_context_len),
        ("--custom-output-len", a.custom_output_len),
        ("--min-tokens", a.min_tokens),
        (
            "--prefix-repetition-prefix-len",
            Some(a.prefix_repetition_prefix_len),
        ),
        (
            "--prefix-repetition-suffix-len",
            Some(a.prefix_repetition_suffix_len),
        ),
        (
            "--prefix-repetition-output-len",
            Some(a.prefix_repetition_output_len),
        ),
        ("--gsp-system-prompt-len", Some(a.gsp_system_prompt_len)),
        ("--gsp-question-len", Some(a.gsp_question_len)),
        ("--gsp-output-len", Some(a.gsp_output_len)),
        (
            "--conversation-system-prompt-len",
            Some(a.conversation_system_prompt_len),
        ),
        (
            "--conversation-first-input-len",
            Some(a.conversation_first_input_len),
        ),
        ("--conversation-input-len", Some(a.conversation_input_len)),
        ("--conversation-output-len", Some(a.conversation_output_len)),
    ];
    for (field, v) in lengths {
        if let Some(v) = v.filter(|&v| v > 0) {
            limits::tokens(field, v)?;
        }
    }
    // Counts that multiply into the request count: each alone within the run's limit.
    for (field, v) in [
        ("--gsp-num-groups", a.gsp_num_groups),
        ("--gsp-prompts-per-group", a.gsp_prompts_per_group),
        (
            "--prefix-repetition-num-prefixes",
            a.prefix_repetition_num_prefixes,
        ),
        ("--conversation-num", a.conversation_num),
        ("--conversation-turn-mean", a.conversation_turn_mean),
        ("--sharegpt-min-turns", a.sharegpt_min_turns),
        ("--sharegpt-max-turns", a.sharegpt_max_turns.unwrap_or(0)),
    ] {
        if u64::from(v) > limits::MAX_NUM_PROMPTS {
            return Err(bad(
                field,
                v,
                format!(
                    "is above the limit of {} (every request keeps a record in memory until the summary); lower it",
                    limits::MAX_NUM_PROMPTS
                ),
            ));
        }
    }
    // A multiplicative range outside [0, 1] is refused by LengthDist; NaN must be too.
    if !a.random_range_ratio.is_finite() {
        return Err(bad(
            "--random-range-ratio",
            a.random_range_ratio,
            "must be a number from 0 to 1",
        ));
    }
    // Checked whatever the dataset, so a value that would panic a multi-turn run is refused
    // the same way everywhere.
    limits::delay_ms(
        "--conversation-turn-delay-mean",
        a.conversation_turn_delay_mean,
    )?;
    let scale = a.trace_time_scale;
    if !(limits::MIN_TIME_SCALE..=limits::MAX_TIME_SCALE).contains(&scale) {
        return Err(bad(
            "--trace-time-scale",
            limits::show(scale),
            format!(
                "allowed: {}..={} (0.5 replays the trace twice as fast)",
                limits::MIN_TIME_SCALE,
                limits::MAX_TIME_SCALE
            ),
        ));
    }
    Ok(())
}

/// `--dataset-name multi-turn`'s flags, validated.
fn multi_turn(a: &WorkloadArgs) -> Result<MultiTurnSpec, ConfigError> {
    for (field, v) in [
        ("--conversation-num", a.conversation_num),
        ("--conversation-turn-mean", a.conversation_turn_mean),
        (
            "--conversation-first-input-len",
            a.conversation_first_input_len,
        ),
        ("--conversation-input-len", a.conversation_input_len),
        ("--conversation-output-len", a.conversation_output_len),
    ] {
        if v == 0 {
            return Err(bad(field, 0, "must be at least 1"));
        }
    }
    let turns = match LengthDist::from_range_ratio(
        a.conversation_turn_mean,
        a.conversation_turn_range_ratio,
    )
    .map_err(|p| {
        bad(
            "--conversation-turn-range-ratio",
            a.conversation_turn_range_ratio,
            p.replace("--random-range-ratio", "the ratio"),
        )
    })? {
        LengthDist::Fixed { tokens } => TurnCount::Fixed { turns: tokens },
        LengthDist::Uniform { min, max } => TurnCount::Uniform { min, max },
    };
    let (delay, think) = think_time(a)?;
    Ok(MultiTurnSpec::new(
        a.conversation_num,
        turns,
        a.conversation_system_prompt_len,
        a.conversation_first_input_len,
        a.conversation_input_len,
        a.conversation_output_len,
        delay,
        think,
        a.seed,
    ))
}

/// `--conversation-turn-delay-*`, validated: the mean in ms and the distribution.
fn think_time(a: &WorkloadArgs) -> Result<(f64, ThinkTime), ConfigError> {
    let think = match a.conversation_turn_delay_dist.as_str() {
        "fixed" => ThinkTime::Fixed,
        "exponential" => ThinkTime::Exponential,
        other => {
            return Err(bad(
                "--conversation-turn-delay-dist",
                other,
                "use fixed or exponential",
            ))
        }
    };
    let delay = a.conversation_turn_delay_mean;
    limits::delay_ms("--conversation-turn-delay-mean", delay)?;
    Ok((delay, think))
}

/// `--dataset-name sharegpt-multi-turn`: a ShareGPT file's conversations, planned here with
/// the run's token counter (the tokenizer when given), so the run's size is known up front.
fn sharegpt_multi_turn(a: &WorkloadArgs) -> Result<MultiTurnSpec, ConfigError> {
    let Some(path) = &a.dataset_path else {
        return Err(bad(
            "--dataset-path",
            "(missing)",
            "--dataset-name sharegpt-multi-turn replays a local ShareGPT JSON file; give its path",
        ));
    };
    for (field, v) in [
        ("--conversation-num", Some(a.conversation_num)),
        ("--sharegpt-min-turns", Some(a.sharegpt_min_turns)),
        ("--sharegpt-output-len", a.sharegpt_output_len),
        ("--sharegpt-context-len", a.sharegpt_context_len),
        ("--sharegpt-max-turns", a.sharegpt_max_turns),
    ] {
        if v == Some(0) {
            return Err(bad(field, 0, "must be at least 1"));
        }
    }
    if let Some(m) = a.sharegpt_max_turns.filter(|&m| m < a.sharegpt_min_turns) {
        return Err(bad(
            "--sharegpt-max-turns",
            m,
            format!(
                "is below --sharegpt-min-turns {}, so no conversation could be kept; raise it or lower --sharegpt-min-turns",
                a.sharegpt_min_turns
            ),
        ));
    }
    let (delay, think) = think_time(a)?;
    let maker = match &a.tokenizer {
        Some(t) => PromptMaker::with_tokenizer(&resolve_tokenizer(t)?)
            .map_err(|e| bad("--tokenizer", t.display(), e))?,
        None => PromptMaker::approximate(),
    };
    let mut file = ShareGptConversations::load(
        path,
        a.sharegpt_output_len,
        a.sharegpt_context_len,
        a.sharegpt_min_turns,
        a.seed,
    )
    .map_err(|e| bad("--dataset-path", path.display(), e))?;
    file.max_turns = a.sharegpt_max_turns;
    MultiTurnSpec::sharegpt(file, a.conversation_num, delay, think, &maker)
        .map_err(|e| bad("--dataset-path", path.display(), e))
}

/// The load flags, validated: the one place where rate × concurrency becomes a [`LoadMode`].
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub mode: LoadMode,
    pub stop: Stop,
    /// As given (`inf` or a number), for file names and the vLLM-style keys.
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub num_prompts: Option<u64>,
    /// `--ramp-up-strategy` with its rates.
    pub ramp_up: Option<RampUp>,
}

/// `--ramp-up-*`, validated by vLLM's rules: all three or none, and no --request-rate.
fn parse_ramp(a: &LoadArgs, rate: f64) -> Result<Option<RampUp>, ConfigError> {
    let Some(name) = &a.ramp_up_strategy else {
        for (flag, given) in [
            ("--ramp-up-start-rps", a.ramp_up_start_rps),
            ("--ramp-up-end-rps", a.ramp_up_end_rps),
        ] {
            if let Some(v) = given {
                return Err(bad(
                    flag,
                    v,
                    "only applies to a ramp; add --ramp-up-strategy linear or exponential",
                ));
            }
        }
        return Ok(None);
    };
    let strategy = match name.as_str() {
        "linear" => RampStrategy::Linear,
        "exponential" => RampStrategy::Exponential,
        other => {
            return Err(bad(
                "--ramp-up-strategy",
                other,
                "use linear or exponential",
            ))
        }
    };
    if rate.is_finite() {
        return Err(bad(
            "--request-rate",
            rate,
            "a ramp sets the rate (from --ramp-up-start-rps to --ramp-up-end-rps); drop --request-rate",
        ));
    }
    let (Some(start_rps), Some(end_rps)) = (a.ramp_up_start_rps, a.ramp_up_end_rps) else {
        return Err(bad(
            "--ramp-up-strategy",
            name,
            "needs both --ramp-up-start-rps and --ramp-up-end-rps",
        ));
    };
    let ramp = RampUp {
        strategy,
        start_rps,
        end_rps,
    };
    ramp.validate().map_err(|e| {
        bad(
            "--ramp-up-start-rps/--ramp-up-end-rps",
            format!("{start_rps}/{end_rps}"),
            e,
        )
    })?;
    Ok(Some(ramp))
}

impl LoadConfig {
    pub fn from_args(a: &LoadArgs) -> Result<LoadConfig, ConfigError> {
        let request_rate = parse_rate(&a.request_rate)?;
        let arrival = parse_arrival(&a.arrival, a.burstiness)?;
        let duration = a
            .duration
            .map(|d| {
                limits::secs(
                    "--duration",
                    d,
                    limits::MAX_DURATION_S,
                    "30 days; a longer study is a suite of shorter runs",
                )
            })
            .transpose()?;
        if let Some(n) = a.num_prompts {
            limits::requests(n)?;
        }
        let stop = match (a.num_prompts, duration) {
            (Some(0), _) => return Err(bad("--num-prompts", 0, "must be at least 1")),
            (Some(n), Some(d)) => Stop::RequestsOrDuration(n, d),
            (Some(n), None) => Stop::Requests(n),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => Stop::Requests(1000), // vllm bench serve's default
        };
        let cap = a
            .max_concurrency
            .map(|n| {
                let n = nonzero("--max-concurrency", n)?;
                // tokio's semaphore panics above its permit limit (2^61 − 1); the fd limit,
                // checked against the run's whole plan in RunConfig, is far lower anyway.
                if n.get() > tokio::sync::Semaphore::MAX_PERMITS {
                    return Err(bad(
                        "--max-concurrency",
                        n,
                        format!(
                            "is above the limit of {} concurrent requests; lower it",
                            tokio::sync::Semaphore::MAX_PERMITS
                        ),
                    ));
                }
                Ok(n)
            })
            .transpose()?;
        let ramp_up = parse_ramp(a, request_rate)?;
        let mode = match (request_rate.is_finite(), cap) {
            // The ramp's length is the run's request count, known once the workload has
            // sized the run (`paced_by`).
            _ if ramp_up.is_some() => LoadMode::Open {
                pacing: Pacing::Ramp {
                    ramp: ramp_up.unwrap_or(RampUp {
                        strategy: RampStrategy::Linear,
                        start_rps: 1,
                        end_rps: 1,
                    }),
                    arrival,
                    over: 0,
                },
                max_in_flight: cap,
            },
            (false, Some(concurrency)) => LoadMode::Closed { concurrency },
            (false, None) => LoadMode::Open {
                pacing: Pacing::AllAtOnce,
                max_in_flight: None,
            },
            (true, max_in_flight) => LoadMode::Open {
                pacing: Pacing::Rate {
                    rate: request_rate,
                    arrival,
                },
                max_in_flight,
            },
        };
        Ok(LoadConfig {
            mode,
            stop,
            request_rate,
            burstiness: a.burstiness,
            max_concurrency: a.max_concurrency,
            num_prompts: a.num_prompts,
            ramp_up,
        })
    }
}

impl LoadConfig {
    /// A trace sets its own clock: the load becomes an open loop on the trace's offsets (with
    /// --max-concurrency as an in-flight cap). A rate given as well is a contradiction.
    pub fn paced_by(mut self, w: &Workload) -> Result<LoadConfig, ConfigError> {
        if let LoadMode::Open {
            pacing: Pacing::Ramp { over, .. },
            ..
        } = &mut self.mode
        {
            if matches!(w, Workload::Trace(_)) {
                return Err(bad(
                    "--ramp-up-strategy",
                    "(given)",
                    "a trace is replayed on its own clock; drop the ramp (use --trace-time-scale)",
                ));
            }
            *over = match self.stop {
                Stop::Requests(n) | Stop::RequestsOrDuration(n, _) => n,
                Stop::Duration(d) => {
                    return Err(bad(
                        "--duration",
                        d.as_secs_f64(),
                        "a ramp runs over a number of requests (vLLM ramps over --num-prompts); give --num-prompts",
                    ))
                }
            };
        }
        if let Workload::Trace(t) = w {
            if self.request_rate.is_finite() {
                return Err(bad(
                    "--request-rate",
                    self.request_rate,
                    "a trace is replayed on its own clock; drop --request-rate (use --trace-time-scale to speed it up)",
                ));
            }
            self.mode = LoadMode::Open {
                pacing: Pacing::Trace(std::sync::Arc::new(t.offsets())),
                max_in_flight: self.max_concurrency.and_then(NonZeroUsize::new),
            };
        }
        Ok(self)
    }

    /// Without --num-prompts or --duration, a workload with a natural size (groups × prompts
    /// per group) runs that many requests instead of vLLM's default 1000.
    pub fn sized_for(mut self, w: &Workload) -> LoadConfig {
        if self.num_prompts.is_none() && matches!(self.stop, Stop::Requests(_)) {
            if let Some(n) = w.natural_count() {
                self.stop = Stop::Requests(n);
                self.num_prompts = Some(n);
            }
        }
        self
    }
}

/// The metric flags, validated.
#[derive(Debug, Clone)]
pub struct MetricConfig {
    pub slo: Slo,
    pub fail_under_goodput: Option<f64>,
    pub fail_under_success_rate: Option<f64>,
    pub percentiles: Vec<f64>,
    pub percentile_metrics: Option<Vec<String>>,
}

/// The metric names `--percentile-metrics` takes (vLLM's).
pub const PERCENTILE_METRICS: [&str; 6] = [
    "ttft",
    "tpot",
    "itl",
    "e2el",
    "client_queue_time",
    "e2el_including_client_queue",
];

fn parse_percentile_metrics(s: &str) -> Result<Vec<String>, ConfigError> {
    let names: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(bad(
            "--percentile-metrics",
            s,
            format!("name at least one of {}", PERCENTILE_METRICS.join(", ")),
        ));
    }
    if let Some(m) = names
        .iter()
        .find(|m| !PERCENTILE_METRICS.contains(&m.as_str()))
    {
        return Err(bad(
            "--percentile-metrics",
            m,
            format!("unknown metric; use {}", PERCENTILE_METRICS.join(", ")),
        ));
    }
    Ok(names)
}

impl MetricConfig {
    pub fn from_args(a: &MetricArgs) -> Result<MetricConfig, ConfigError> {
        Ok(MetricConfig {
            slo: parse_goodput(&a.goodput)?,
            fail_under_goodput: a
                .fail_under_goodput
                .map(|f| fraction("--fail-under-goodput", f))
                .transpose()?,
            fail_under_success_rate: a
                .fail_under_success_rate
                .map(|f| fraction("--fail-under-success-rate", f))
                .transpose()?,
            percentiles: parse_percentiles(&a.metric_percentiles)?,
            percentile_metrics: a
                .percentile_metrics
                .as_deref()
                .map(parse_percentile_metrics)
                .transpose()?,
        })
    }
}

/// A name that goes into file names, CSV cells and console lines: no newline or other control
/// character (one would split a CSV row or forge a console line). Shown escaped.
pub fn no_control(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.chars().any(char::is_control) {
        return Err(bad(
            field,
            v.escape_debug(),
            "contains a newline or another control character; use printable characters",
        ));
    }
    Ok(())
}

/// The output flags, validated.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub result_dir: PathBuf,
    pub result_filename: Option<String>,
    pub save_detailed: bool,
    pub progress: bool,
    pub metadata: Vec<(String, String)>,
    /// `--electricity-price` and `--pue`; `None`: no energy cost.
    pub electricity: Option<crate::cost::ElectricityPrice>,
}

/// `KEY=VALUE` items (vLLM's `--header` and `--metadata` syntax: split at the first `=`,
/// both sides trimmed).
fn key_values(flag: &str, items: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(bad(
                flag,
                // Only the part before `=` is shown: a header value may be a credential.
                item.split('=').next().unwrap_or_default(),
                "expected KEY=VALUE, e.g. x-team=bench",
            )),
        })
        .collect()
}

impl OutputConfig {
    pub fn from_args(a: &OutputArgs) -> Result<OutputConfig, ConfigError> {
        if let Some(name) = &a.result_filename {
            if name.contains('/') || name.is_empty() {
                return Err(bad(
                    "--result-filename",
                    name,
                    "give a file name without directories (the directory is --result-dir)",
                ));
            }
            no_control("--result-filename", name)?;
        }
        let electricity = match a.electricity_price {
            Some(usd) => Some(crate::cost::ElectricityPrice::new(usd, a.pue).map_err(
                |problem| {
                    bad(
                        "--electricity-price/--pue",
                        format!("{usd}/{}", a.pue),
                        &problem,
                    )
                },
            )?),
            None if a.pue != 1.0 => {
                return Err(bad(
                    "--pue",
                    a.pue.to_string(),
                    "only applies with --electricity-price; give both",
                ))
            }
            None => None,
        };
        Ok(OutputConfig {
            result_dir: a.result_dir.clone(),
            result_filename: a.result_filename.clone(),
            save_detailed: a.save_detailed,
            progress: !a.no_progress,
            metadata: key_values("--metadata", &a.metadata)?,
            electricity,
        })
    }
}

/// The backends of `vllm bench serve` servebench can play, with the endpoint each implies.
const BACKENDS: [(&str, Endpoint); 3] = [
    ("openai", Endpoint::Completions),
    ("vllm", Endpoint::Completions),
    ("openai-chat", Endpoint::ChatCompletions),
];

/// `--backend` and `--endpoint` together: the endpoint (given, or the backend's), and the
/// backend name the result carries (given, or the endpoint's, as servebench always wrote).
fn backend_and_endpoint(a: &RunArgs) -> Result<(String, Endpoint), ConfigError> {
    // vLLM 0.10's deprecated --endpoint-type set the backend; documentation lines give both.
    let name = match (&a.backend, &a.vllm.endpoint_type) {
        (Some(b), Some(e)) if b != e => {
            return Err(bad(
                "--endpoint-type",
                e,
                format!("is vLLM's old name for --backend, which says {b}; give one of them"),
            ))
        }
        (b, e) => b.as_ref().or(e.as_ref()),
    };
    let flag = if a.backend.is_none() && a.vllm.endpoint_type.is_some() {
        "--endpoint-type"
    } else {
        "--backend"
    };
    // The backend first: an endpoint servebench lacks usually comes with a backend it lacks,
    // and the backend is the flag to change.
    let implied = match name {
        None => None,
        Some(name) => match BACKENDS.iter().find(|(n, _)| n == name) {
            Some((_, e)) => Some((name.clone(), *e)),
            None => {
                let allowed: Vec<&str> = BACKENDS.iter().map(|(n, _)| *n).collect();
                let why = if name.contains("audio")
                    || name.contains("embed")
                    || name.contains("rerank")
                    || name.contains("pooling")
                {
                    "servebench measures text generation only"
                } else {
                    "not an API servebench speaks"
                };
                return Err(bad(
                    flag,
                    name,
                    format!("{why}; use one of {}", allowed.join(", ")),
                ));
            }
        },
    };
    let given: Option<Endpoint> = match &a.endpoint {
        None => None,
        Some(e) => Some(e.parse().map_err(|_| {
            bad(
                "--endpoint",
                e,
                "use /v1/completions or /v1/chat/completions",
            )
        })?),
    };
    match (implied, given) {
        (None, given) => {
            let endpoint = given.unwrap_or(Endpoint::Completions);
            let backend = match endpoint {
                Endpoint::Completions => "openai",
                Endpoint::ChatCompletions => "openai-chat",
            };
            Ok((backend.to_string(), endpoint))
        }
        // vLLM itself asserts that the URL fits the request function; servebench says which
        // flag to change.
        (Some((name, implied)), Some(e)) if e != implied => Err(bad(
            "--endpoint",
            e.path(),
            format!(
                "does not fit --backend {name}, which sends {} bodies; use --backend {} or --endpoint {}",
                implied.path(),
                if e == Endpoint::ChatCompletions { "openai-chat" } else { "openai" },
                implied.path()
            ),
        )),
        (Some((name, implied)), _) => Ok((name, implied)),
    }
}

/// The sampling flags, `--logprobs` and `--extra-body` as request-body fields, merged in
/// vLLM's order: sampling parameters, then the extra body over them.
fn body_extra(
    s: &SamplingArgs,
    endpoint: Endpoint,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
    use serde_json::Value;
    let mut m = serde_json::Map::new();
    let floats = [
        ("temperature", "--temperature", s.temperature),
        ("top_p", "--top-p", s.top_p),
        ("min_p", "--min-p", s.min_p),
        (
            "frequency_penalty",
            "--frequency-penalty",
            s.frequency_penalty,
        ),
        ("presence_penalty", "--presence-penalty", s.presence_penalty),
        (
            "repetition_penalty",
            "--repetition-penalty",
            s.repetition_penalty,
        ),
    ];
    for (key, flag, v) in floats {
        if let Some(v) = v {
            let n = serde_json::Number::from_f64(v)
                .ok_or_else(|| bad(flag, v, "must be a finite number"))?;
            m.insert(key.into(), Value::Number(n));
        }
    }
    if let Some(k) = s.top_k {
        m.insert("top_k".into(), Value::from(k));
    }
    if let Some(n) = s.logprobs {
        match endpoint {
            Endpoint::Completions => {
                m.insert("logprobs".into(), Value::from(n));
            }
            Endpoint::ChatCompletions => {
                m.insert("logprobs".into(), Value::from(true));
                m.insert("top_logprobs".into(), Value::from(n));
            }
        }
    }
    if let Some(text) = &s.extra_body {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| bad("--extra-body", text, format!("not JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(bad(
                "--extra-body",
                text,
                "must be a JSON object, e.g. '{\"chat_template_kwargs\":{\"enable_thinking\":false}}'",
            ));
        };
        m.extend(obj);
    }
    Ok(m)
}

/// One note per accepted `vllm bench serve` flag that does nothing here; an error for the
/// flags whose absence would change what is measured.
fn compat_notes(v: &VllmCompatArgs, dataset: &str) -> Result<Vec<String>, ConfigError> {
    if !v.lora_modules.is_empty() || v.lora_assignment.is_some() {
        let (flag, value) = match &v.lora_assignment {
            Some(a) if v.lora_modules.is_empty() => ("--lora-assignment", a.clone()),
            _ => ("--lora-modules", v.lora_modules.join(" ")),
        };
        return Err(bad(
            flag,
            value,
            "servebench sends every request to one model; measure an adapter with --model <adapter name>",
        ));
    }
    if let Some(r) = v.probe_request_rate.filter(|r| *r > 0.0) {
        return Err(bad(
            "--probe-request-rate",
            r,
            "probe requests beside the load are not supported; run a second servebench at that rate instead",
        ));
    }
    if v.self_timed || v.no_self_timed {
        return Err(bad(
            if v.self_timed {
                "--self-timed"
            } else {
                "--no-self-timed"
            },
            "(given)",
            "only applies to vLLM's timed_trace dataset; use --dataset-name trace, which always replays its own clock",
        ));
    }
    let mut notes = Vec::new();
    if v.endpoint_type.is_some() {
        notes.push(
            "note: --endpoint-type is vLLM 0.10's old name for --backend, and is read as --backend"
                .into(),
        );
    }
    let mut note = |given: bool, flag: &str, why: &str| {
        if given {
            notes.push(format!("note: {flag} has no effect here: {why}"));
        }
    };
    note(
        v.save_result,
        "--save-result",
        "servebench always writes the result file",
    );
    note(
        v.append_result,
        "--append-result",
        "servebench writes a new result file per run and appends a row to results.csv",
    );
    note(
        v.tokenizer_mode.is_some(),
        "--tokenizer-mode",
        "tokenizers are read from a local tokenizer.json",
    );
    note(
        v.trust_remote_code,
        "--trust-remote-code",
        "no Python code is run to load a tokenizer",
    );
    note(
        v.skip_tokenizer_init,
        "--skip-tokenizer-init",
        "servebench needs no tokenizer (without --tokenizer, prompt lengths are approximate)",
    );
    note(
        v.use_beam_search,
        "--use-beam-search",
        "vLLM's client does not send it either",
    );
    note(
        v.profile,
        "--profile",
        "start vLLM's profiler yourself (POST /start_profile before, /stop_profile after)",
    );
    note(
        v.insecure,
        "--insecure",
        "TLS certificates are always verified",
    );
    note(
        v.plot_timeline || v.timeline_itl_thresholds.is_some() || v.plot_dataset_stats,
        "--plot-timeline/--plot-dataset-stats",
        "servebench draws its own charts (servebench suite); the journal has every timing",
    );
    note(
        v.chat_template_kwargs.is_some() || v.skip_chat_template,
        "--chat-template-kwargs/--skip-chat-template",
        "servebench never renders a chat template on the client (the server applies its own); pass kwargs for the server with --extra-body",
    );
    note(
        v.no_oversample,
        "--no-oversample",
        "a dataset with fewer usable prompts than --num-prompts is cycled through",
    );
    note(
        v.disable_shuffle,
        "--disable-shuffle",
        "datasets are shuffled by --seed (the same seed gives the same order)",
    );
    note(
        v.random_batch_size.is_some() || v.no_reranker,
        "--random-batch-size/--no-reranker",
        "embeddings and reranking are not benchmarked",
    );
    let dataset_flags = [
        (
            "sonnet",
            v.sonnet_input_len.is_some()
                || v.sonnet_output_len.is_some()
                || v.sonnet_prefix_len.is_some(),
        ),
        (
            "blazedit",
            v.blazedit_min_distance.is_some() || v.blazedit_max_distance.is_some(),
        ),
        (
            "spec_bench",
            v.spec_bench_output_len.is_some() || v.spec_bench_category.is_some(),
        ),
        (
            "hf",
            v.hf_subset.is_some()
                || v.hf_split.is_some()
                || v.hf_name.is_some()
                || v.hf_output_len.is_some(),
        ),
        (
            "random-mm",
            v.random_mm_base_items_per_request.is_some()
                || v.random_mm_num_mm_items_range_ratio.is_some()
                || v.random_mm_limit_mm_per_prompt.is_some()
                || v.random_mm_bucket_config.is_some(),
        ),
        (
            "timed_trace",
            v.timed_trace_chunk_hash_size.is_some() || v.timed_trace_sec_multiplier.is_some(),
        ),
        (
            "speed_bench",
            v.speed_bench_category.is_some() || v.speed_bench_dataset_subset.is_some(),
        ),
        ("bfcl", v.bfcl_categories.is_some()),
    ];
    note(
        v.enable_multimodal_chat || v.custom_ensure_client_side_data,
        "--enable-multimodal-chat/--custom-ensure-client-side-data",
        "servebench sends text only",
    );
    for (name, given) in dataset_flags {
        note(
            given,
            &format!("--{}-*", name.replace('_', "-")),
            &format!("they only apply to vLLM's {name} dataset, and the run uses --dataset-name {dataset}"),
        );
    }
    Ok(notes)
}

/// `--base-url`, or vLLM's `--host`/`--port` (http://HOST:PORT), or neither (the embedded
/// server). Returns the URL and any note about flags it made moot.
fn server_url(a: &RunArgs) -> (Option<String>, Option<String>) {
    let host_port = a.host.is_some() || a.port.is_some();
    match (&a.base_url, host_port) {
        // vLLM's precedence: a base URL wins and host/port are not read.
        (Some(u), true) => (
            Some(u.clone()),
            Some("note: --host/--port have no effect here: --base-url is given, and wins (as in vLLM)".into()),
        ),
        (Some(u), false) => (Some(u.clone()), None),
        (None, true) => {
            let host = a.host.as_deref().unwrap_or("127.0.0.1");
            // vLLM's join_host_port: an IPv6 literal goes in brackets.
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            (Some(format!("http://{host}:{}", a.port.unwrap_or(8000))), None)
        }
        (None, false) => (None, None),
    }
}

/// The run's plan against this machine: its peak connections against the open-file limit, its
/// memory against what is available. Refused up front with the figures, rather than thousands
/// of EMFILE failures or an out-of-memory kill mid-run.
fn check_resources(
    plan: &LoadPlan,
    rate: f64,
    w: &Workload,
    target: &Target,
) -> Result<(), ConfigError> {
    let requests = match plan.stop {
        Stop::Requests(n) | Stop::RequestsOrDuration(n, _) => Some(n),
        // An open loop at a rate sends about rate × duration.
        Stop::Duration(d) if rate.is_finite() => Some((rate * d.as_secs_f64()).ceil() as u64),
        Stop::Duration(_) => None,
    };
    let (field, connections) = match &plan.mode {
        LoadMode::Closed { concurrency } => ("--max-concurrency", Some(concurrency.get() as u64)),
        LoadMode::Open {
            max_in_flight: Some(cap),
            ..
        } => ("--max-concurrency", Some(cap.get() as u64)),
        LoadMode::Open {
            pacing: Pacing::AllAtOnce,
            max_in_flight: None,
        } => ("--num-prompts", requests),
        // An uncapped open loop at a rate: its peak depends on the server's latency.
        LoadMode::Open { .. } => ("--max-concurrency", None),
    };
    if let Some(n) = requests {
        limits::requests(n)?;
    }
    if let Some(c) = connections {
        limits::check_fds(
            field,
            c,
            matches!(target, Target::Embedded(_)),
            limits::fd_limit(),
        )?;
    }
    let requests = requests.unwrap_or(0).saturating_add(plan.warmups);
    limits::MemoryPlan {
        requests,
        max_prompt_tokens: w.max_prompt_tokens(),
        held_prompts: requests.min(limits::PREPARED_AHEAD),
    }
    .check(limits::mem_available())
}

impl RunConfig {
    pub fn from_args(a: &RunArgs) -> Result<RunConfig, ConfigError> {
        let (server, url_note) = server_url(a);
        let url_flag = if a.base_url.is_some() {
            "--base-url"
        } else {
            "--host/--port"
        };
        let target = match &server {
            Some(url) => {
                let u = url.trim_end_matches('/');
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(bad(
                        url_flag,
                        url,
                        "must start with http:// or https://, e.g. http://127.0.0.1:8000",
                    ));
                }
                if u.ends_with("/v1") {
                    return Err(bad(
                        url_flag,
                        url,
                        "give the server root without /v1 (the path comes from --endpoint)",
                    ));
                }
                // Faults are injected by the embedded server; against another server they would
                // silently do nothing, and the run would look healthier than asked for.
                if !a.embedded.faults.is_empty() {
                    return Err(bad(
                        "--fault",
                        a.embedded.faults.join(" "),
                        format!("faults are injected by the embedded server, which {url_flag} replaces; drop --fault, or drop {url_flag} to measure the embedded server"),
                    ));
                }
                // The URL is written to results and error messages; a password in it would be
                // too. Shown here with the credentials taken out.
                if let Ok(mut parsed) = reqwest::Url::parse(u) {
                    if !parsed.username().is_empty() || parsed.password().is_some() {
                        let _ = parsed.set_password(None);
                        let _ = parsed.set_username("");
                        return Err(bad(
                            url_flag,
                            parsed,
                            "must not carry credentials (user:password@ was removed from the value shown); \
                             give the key with --api-key or OPENAI_API_KEY, which no output contains",
                        ));
                    }
                }
                Target::External {
                    base_url: u.to_string(),
                }
            }
            None => Target::Embedded(EmbeddedConfig::from_args(&a.embedded)?),
        };
        let (backend, endpoint) = backend_and_endpoint(a)?;
        if matches!(
            a.workload.dataset_name.as_str(),
            "multi-turn" | "sharegpt-multi-turn"
        ) && endpoint != Endpoint::ChatCompletions
        {
            return Err(bad(
                "--endpoint",
                endpoint.path(),
                "multi-turn conversations are sent as chat messages; use --endpoint /v1/chat/completions",
            ));
        }
        let usage = match a.usage.as_str() {
            "auto" => UsageRequest::Auto,
            "final" => UsageRequest::Final,
            "none" => UsageRequest::None,
            other => return Err(bad("--usage", other, "use auto, final or none")),
        };
        let request_timeout = limits::secs(
            "--request-timeout",
            a.request_timeout,
            limits::MAX_REQUEST_TIMEOUT_S,
            "one week",
        )?;
        if let Some(t) = a.client_threads {
            limits::threads("--client-threads", t)?;
        }
        for (field, v) in [
            ("--label", &a.label),
            ("--model", &a.model),
            ("--served-model-name", &a.served_model_name),
            // Sent as the X-Request-Id header: one with a control character would be dropped.
            ("--request-id-prefix", &a.request_id_prefix),
        ] {
            if let Some(v) = v {
                no_control(field, v)?;
            }
        }
        let w = WorkloadConfig::from_args(&a.workload)?;
        let l = LoadConfig::from_args(&a.load)?
            .sized_for(&w.spec)
            .paced_by(&w.spec)?;
        let m = MetricConfig::from_args(&a.metrics)?;
        let o = OutputConfig::from_args(&a.output)?;
        let headers = key_values("--header", &a.headers)?;
        for (k, v) in &headers {
            // Checked here so a bad header is a usage error, not a failed run.
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                return Err(bad(
                    "--header",
                    k,
                    "not a valid HTTP header name, or its value has control characters",
                ));
            }
        }
        let mut compat_notes: Vec<String> = url_note.into_iter().collect();
        compat_notes.extend(self::compat_notes(&a.vllm, &a.workload.dataset_name)?);
        let warmup_concurrency = l
            .max_concurrency
            .and_then(NonZeroUsize::new)
            .unwrap_or(NonZeroUsize::MIN)
            .min(NonZeroUsize::new(a.num_warmups.max(1) as usize).unwrap_or(NonZeroUsize::MIN));
        for (field, v, max) in [
            (
                "--ready-check-timeout-sec",
                a.ready_check_timeout_sec,
                limits::MAX_READY_CHECK_S,
            ),
            (
                "--telemetry-interval-ms",
                a.telemetry_interval_ms,
                limits::MAX_TELEMETRY_INTERVAL_MS,
            ),
            ("--repeats", u64::from(a.repeats), limits::MAX_REPEATS),
        ] {
            if v > max {
                return Err(limits::out_of_range(
                    field,
                    v,
                    format!("allowed: up to {max}; lower it"),
                ));
            }
        }
        if a.num_warmups > limits::MAX_NUM_PROMPTS {
            return Err(bad(
                "--num-warmups",
                a.num_warmups,
                format!(
                    "is above the limit of {} requests; lower it",
                    limits::MAX_NUM_PROMPTS
                ),
            ));
        }
        let plan = LoadPlan {
            mode: l.mode,
            stop: l.stop,
            warmups: a.num_warmups,
            warmup_concurrency,
            seed: w.seed,
            conversations: matches!(w.spec, Workload::MultiTurn(_)),
        };
        check_resources(&plan, l.request_rate, &w.spec, &target)?;
        Ok(RunConfig {
            target,
            endpoint,
            backend,
            model: a.model.clone(),
            served_model_name: a.served_model_name.clone(),
            headers,
            request_id_prefix: a.request_id_prefix.clone(),
            ready_check_timeout: Duration::from_secs(a.ready_check_timeout_sec),
            body_extra: body_extra(&a.sampling, endpoint)?,
            metadata: o.metadata,
            percentile_metrics: m.percentile_metrics,
            ramp_up: l.ramp_up,
            compat_notes,
            tokenizer_id: w.tokenizer_id,
            api_key: a.api_key.clone().filter(|k| !k.is_empty()),
            request_timeout,
            stream: !a.no_stream,
            usage,
            label: a.label.clone(),
            tokenizer: w.tokenizer,
            workload: w.spec,
            ignore_eos: w.ignore_eos,
            min_tokens: w.min_tokens,
            seed: w.seed,
            structured: w.structured,
            plan,
            request_rate: l.request_rate,
            burstiness: l.burstiness,
            max_concurrency: l.max_concurrency,
            num_prompts: l.num_prompts,
            client_threads: a.client_threads,
            slo: m.slo,
            fail_under_goodput: m.fail_under_goodput,
            fail_under_success_rate: m.fail_under_success_rate,
            percentiles: m.percentiles,
            result_dir: o.result_dir,
            result_filename: o.result_filename,
            save_detailed: o.save_detailed,
            progress: o.progress,
            electricity: o.electricity,
            telemetry: TelemetryConfig {
                interval: (a.telemetry_interval_ms > 0)
                    .then(|| Duration::from_millis(a.telemetry_interval_ms)),
                engine_metrics: true,
                dcgm_url: match &a.dcgm_url {
                    Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                        return Err(bad(
                            "--dcgm-url",
                            u,
                            "must be an http(s) URL, e.g. http://127.0.0.1:9400/metrics",
                        ))
                    }
                    other => other.clone(),
                },
                nvml: !a.no_nvml,
            },
            environment: serde_json::Value::Null,
            simulated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn cfg(args: &[&str]) -> Result<RunConfig, ConfigError> {
        let mut argv = vec!["servebench", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("clap accepts").command {
            Command::Run(a) => RunConfig::from_args(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn rate_and_concurrency_map_to_the_right_loop() {
        let c = cfg(&["--max-concurrency", "10", "--num-prompts", "100"]).unwrap();
        assert!(matches!(c.plan.mode, LoadMode::Closed { concurrency } if concurrency.get() == 10));
        assert_eq!(c.plan.stop, Stop::Requests(100));
        let c = cfg(&["--request-rate", "5", "--max-concurrency", "3"]).unwrap();
        assert!(matches!(
            c.plan.mode,
            LoadMode::Open { pacing: Pacing::Rate { rate, arrival: Arrival::Gamma { burstiness } }, max_in_flight: Some(n) }
                if rate == 5.0 && burstiness == 1.0 && n.get() == 3
        ));
        let c = cfg(&[]).unwrap();
        assert!(matches!(
            c.plan.mode,
            LoadMode::Open {
                pacing: Pacing::AllAtOnce,
                max_in_flight: None
            }
        ));
        let c = cfg(&[
            "--request-rate",
            "9",
            "--arrival",
            "constant",
            "--duration",
            "2",
        ])
        .unwrap();
        assert!(matches!(
            c.plan.mode,
            LoadMode::Open {
                pacing: Pacing::Rate {
                    arrival: Arrival::Constant,
                    ..
                },
                ..
            }
        ));
        assert_eq!(c.plan.stop, Stop::Duration(Duration::from_secs(2)));
    }

    #[test]
    fn bad_values_name_the_field_the_value_and_the_fix() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["--request-rate", "fast"], "--request-rate", "fast"),
            (&["--request-rate", "-3"], "--request-rate", "-3"),
            (
                &["--endpoint", "/v1/embeddings"],
                "--endpoint",
                "/v1/embeddings",
            ),
            (
                &["--base-url", "localhost:8000"],
                "--base-url",
                "localhost:8000",
            ),
            (&["--base-url", "http://h:1/v1"], "--base-url", "/v1"),
            (&["--max-concurrency", "0"], "--max-concurrency", "0"),
            (&["--num-prompts", "0"], "--num-prompts", "0"),
            (&["--goodput", "ttft=5"], "--goodput", "ttft=5"),
            (&["--goodput", "latency:5"], "--goodput", "latency"),
            (&["--goodput", "ttft:-1"], "--goodput", "-1"),
            (
                &["--metric-percentiles", "50,101"],
                "--metric-percentiles",
                "101",
            ),
            (
                &["--random-range-ratio", "1.2"],
                "--random-range-ratio",
                "1.2",
            ),
            (&["--burstiness", "0"], "--burstiness", "0"),
            (
                &["--electricity-price", "-0.1"],
                "--electricity-price/--pue",
                "-0.1",
            ),
            (
                &["--electricity-price", "0.1", "--pue", "0.8"],
                "--electricity-price/--pue",
                "0.8",
            ),
            (&["--pue", "1.4"], "--pue", "1.4"),
            (&["--arrival", "uniform"], "--arrival", "uniform"),
            (&["--duration", "-1"], "--duration", "-1"),
            (&["--request-timeout", "0"], "--request-timeout", "0"),
            (&["--fault", "http_500=2"], "--fault", "http_500=2"),
            (&["--fault", "teapot=0.1"], "--fault", "teapot"),
            (
                &["--fault", "http_500=0.7", "--fault", "disconnect=0.7"],
                "--fault",
                "add up",
            ),
            (
                &["--tokenizer", "/no/such/tokenizer.json"],
                "--tokenizer",
                "/no/such",
            ),
            (&["--usage", "always"], "--usage", "always"),
            (
                &["--dataset-name", "sharegpt-v9"],
                "--dataset-name",
                "sharegpt-v9",
            ),
            (
                &[
                    "--dataset-name",
                    "generated-shared-prefix",
                    "--gsp-num-groups",
                    "0",
                ],
                "--gsp-num-groups",
                "0",
            ),
            (
                &["--min-tokens", "500", "--random-output-len", "10"],
                "--min-tokens",
                "500",
            ),
            (
                &["--result-filename", "a/b.json"],
                "--result-filename",
                "a/b.json",
            ),
            (
                &["--fail-under-goodput", "99"],
                "--fail-under-goodput",
                "99",
            ),
            (
                &["--fail-under-success-rate", "1.5"],
                "--fail-under-success-rate",
                "1.5",
            ),
            (
                &["--dataset-name", "multi-turn"],
                "--endpoint",
                "/v1/completions",
            ),
            (
                &[
                    "--dataset-name",
                    "multi-turn",
                    "--endpoint",
                    "/v1/chat/completions",
                    "--conversation-turn-delay-dist",
                    "normal",
                ],
                "--conversation-turn-delay-dist",
                "normal",
            ),
            (
                &[
                    "--dataset-name",
                    "multi-turn",
                    "--endpoint",
                    "/v1/chat/completions",
                    "--conversation-num",
                    "0",
                ],
                "--conversation-num",
                "0",
            ),
        ];
        for (args, field, value) in cases {
            let e = cfg(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            let msg = e.to_string();
            assert!(msg.contains(field), "{args:?}: {msg}");
            assert!(msg.contains(value), "{args:?}: {msg}");
            assert!(
                msg.len() > field.len() + value.len() + 20,
                "says what to do: {msg}"
            );
        }
    }

    #[test]
    fn sharegpt_multi_turn_flags_are_checked_and_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sg.json");
        let conv = serde_json::json!({"conversations": [
            {"from": "human", "value": "a b"}, {"from": "gpt", "value": "c"},
            {"from": "human", "value": "d"}, {"from": "gpt", "value": "e f"}
        ]});
        std::fs::write(&p, serde_json::json!([conv, conv, conv]).to_string()).unwrap();
        let path = p.to_str().unwrap();
        let chat = ["--endpoint", "/v1/chat/completions"];
        let ok = cfg(&[
            &chat[..],
            &[
                "--dataset-name",
                "sharegpt-multi-turn",
                "--dataset-path",
                path,
                "--conversation-num",
                "2",
            ],
        ]
        .concat())
        .unwrap();
        let Workload::MultiTurn(m) = &ok.workload else {
            panic!("{:?}", ok.workload)
        };
        assert_eq!((m.conversations, m.total_turns()), (2, 4));
        assert_eq!(
            ok.plan.stop,
            Stop::Requests(4),
            "every turn of the chosen conversations"
        );
        for (args, says) in [
            (
                vec!["--dataset-name", "sharegpt-multi-turn"],
                "give its path",
            ),
            (
                vec![
                    "--dataset-name",
                    "sharegpt-multi-turn",
                    "--dataset-path",
                    path,
                    "--sharegpt-min-turns",
                    "3",
                ],
                "lower --sharegpt-min-turns",
            ),
            (
                vec![
                    "--dataset-name",
                    "sharegpt",
                    "--dataset-path",
                    path,
                    "--sharegpt-context-len",
                    "100",
                ],
                "only cuts conversations of --dataset-name sharegpt-multi-turn",
            ),
            (
                vec![
                    "--dataset-name",
                    "sharegpt",
                    "--dataset-path",
                    path,
                    "--sharegpt-max-turns",
                    "3",
                ],
                "only caps conversations of --dataset-name sharegpt-multi-turn",
            ),
            (
                vec![
                    "--dataset-name",
                    "sharegpt-multi-turn",
                    "--dataset-path",
                    path,
                    "--sharegpt-max-turns",
                    "1",
                ],
                "is below --sharegpt-min-turns 2",
            ),
        ] {
            let e = cfg(&[&chat[..], &args].concat()).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
        let e = cfg(&[
            "--dataset-name",
            "sharegpt-multi-turn",
            "--dataset-path",
            path,
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--endpoint /v1/chat/completions"), "{e}");
    }

    #[test]
    fn multi_turn_flags_build_the_workload_and_size_the_run() {
        let c = cfg(&[
            "--dataset-name",
            "multi-turn",
            "--endpoint",
            "/v1/chat/completions",
            "--conversation-num",
            "5",
            "--conversation-turn-mean",
            "3",
            "--conversation-turn-delay-mean",
            "250",
            "--conversation-turn-delay-dist",
            "exponential",
            "--max-concurrency",
            "2",
        ])
        .unwrap();
        let Workload::MultiTurn(m) = &c.workload else {
            panic!("{:?}", c.workload)
        };
        let crate::workload::ConversationSource::Synthetic(syn) = &m.source else {
            panic!("{:?}", m.source)
        };
        assert_eq!(syn.turns, TurnCount::Fixed { turns: 3 });
        assert_eq!(
            (m.think_time_ms, m.think_time),
            (250.0, ThinkTime::Exponential)
        );
        // The default size is every turn of every conversation.
        assert_eq!(c.plan.stop, Stop::Requests(15));
        assert!(matches!(c.plan.mode, LoadMode::Closed { concurrency } if concurrency.get() == 2));
        // The concurrency counts conversations; the stop count is still requests (turns).
        assert_eq!(
            describe_plan(&c.plan),
            "closed loop, 2 conversations at once, 15 requests, 0 warmup conversations"
        );
        let mut open = c.plan.clone();
        open.mode = LoadMode::Open {
            pacing: Pacing::Rate {
                rate: 2.0,
                arrival: crate::arrival::Arrival::POISSON,
            },
            max_in_flight: None,
        };
        assert!(
            describe_plan(&open).starts_with("open loop, 2 conversations/s"),
            "{}",
            describe_plan(&open)
        );
        open.conversations = false;
        assert!(describe_plan(&open).starts_with("open loop, 2 req/s"));
    }

    #[test]
    fn goodput_parses_vllm_syntax() {
        let s = parse_goodput(&["ttft:500".into(), "tpot:50 e2el:1000".into()]).unwrap();
        assert_eq!(s.ttft_ms, Some(500.0));
        assert_eq!(s.tpot_ms, Some(50.0));
        assert_eq!(s.e2el_ms, Some(1000.0));
    }

    #[test]
    fn host_and_port_build_vllms_url_and_a_base_url_wins() {
        let c = cfg(&["--port", "9001"]).unwrap();
        assert!(
            matches!(&c.target, Target::External { base_url } if base_url == "http://127.0.0.1:9001")
        );
        let c = cfg(&["--host", "::1", "--port", "8004"]).unwrap();
        assert!(
            matches!(&c.target, Target::External { base_url } if base_url == "http://[::1]:8004")
        );
        let c = cfg(&["--host", "gpu-box"]).unwrap();
        assert!(
            matches!(&c.target, Target::External { base_url } if base_url == "http://gpu-box:8000")
        );
        let c = cfg(&["--base-url", "http://10.0.0.1:8000", "--port", "9"]).unwrap();
        assert!(
            matches!(&c.target, Target::External { base_url } if base_url == "http://10.0.0.1:8000")
        );
        assert!(
            c.compat_notes[0].contains("--base-url is given, and wins"),
            "{:?}",
            c.compat_notes
        );
        // Neither: the embedded server, as before.
        assert!(matches!(cfg(&[]).unwrap().target, Target::Embedded(_)));
    }

    #[test]
    fn backend_picks_the_endpoint_and_unknown_ones_name_the_allowed() {
        let c = cfg(&["--backend", "openai-chat"]).unwrap();
        assert_eq!(
            (c.backend.as_str(), c.endpoint),
            ("openai-chat", Endpoint::ChatCompletions)
        );
        let c = cfg(&["--backend", "vllm"]).unwrap();
        assert_eq!(
            (c.backend.as_str(), c.endpoint),
            ("vllm", Endpoint::Completions)
        );
        let c = cfg(&["--endpoint", "/v1/chat/completions"]).unwrap();
        assert_eq!(
            c.backend, "openai-chat",
            "no --backend: named after the endpoint"
        );
        for (args, says) in [
            (
                vec!["--backend", "tgi"],
                "use one of openai, vllm, openai-chat",
            ),
            (vec!["--backend", "openai-audio"], "text generation only"),
            (
                vec!["--backend", "openai-embeddings"],
                "text generation only",
            ),
            (
                vec!["--backend", "openai", "--endpoint", "/v1/chat/completions"],
                "use --backend openai-chat",
            ),
            (
                vec!["--backend", "openai-chat", "--endpoint-type", "openai"],
                "old name for --backend",
            ),
        ] {
            let e = cfg(&args).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn sampling_logprobs_and_extra_body_become_body_fields_extra_body_last() {
        let c = cfg(&[
            "--temperature",
            "0",
            "--top-k",
            "-1",
            "--repetition-penalty",
            "1.1",
            "--logprobs",
            "3",
            "--extra-body",
            r#"{"temperature": 0.7, "chat_template_kwargs": {"enable_thinking": false}}"#,
        ])
        .unwrap();
        let b = serde_json::Value::Object(c.body_extra.clone());
        assert_eq!(
            b,
            serde_json::json!({"temperature": 0.7, "top_k": -1, "repetition_penalty": 1.1,
                "logprobs": 3, "chat_template_kwargs": {"enable_thinking": false}})
        );
        let chat = cfg(&["--endpoint", "/v1/chat/completions", "--logprobs", "2"]).unwrap();
        assert_eq!(chat.body_extra["logprobs"], true);
        assert_eq!(chat.body_extra["top_logprobs"], 2);
        assert!(
            cfg(&[]).unwrap().body_extra.is_empty(),
            "nothing sent unless given"
        );
        for (v, says) in [("[1]", "JSON object"), ("{nope", "not JSON")] {
            let e = cfg(&["--extra-body", v]).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn headers_are_parsed_and_auth_like_values_never_serialized() {
        let c = cfg(&[
            "--header",
            "x-team=bench",
            "Authorization=Bearer sk-hidden-1",
            "--header",
            "X-Api-Key = sk-hidden-2",
        ])
        .unwrap();
        assert_eq!(
            c.headers,
            [
                ("x-team".to_string(), "bench".to_string()),
                ("Authorization".into(), "Bearer sk-hidden-1".into()),
                ("X-Api-Key".into(), "sk-hidden-2".into()),
            ]
        );
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"x-team\":\"bench\""), "{json}");
        assert!(!json.contains("sk-hidden"), "{json}");
        let e = cfg(&["--header", "token-only"]).unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
        let e = cfg(&["--header", "bad name=1"]).unwrap_err().to_string();
        assert!(e.contains("not a valid HTTP header"), "{e}");
        // A bad item shows only its name: the value may be a credential.
        let e = cfg(&["--header", "=sk-hidden-3"]).unwrap_err().to_string();
        assert!(!e.contains("sk-hidden-3"), "{e}");
    }

    #[test]
    fn ramp_up_is_an_open_loop_over_the_request_count() {
        let c = cfg(&[
            "--ramp-up-strategy",
            "exponential",
            "--ramp-up-start-rps",
            "2",
            "--ramp-up-end-rps",
            "32",
            "--num-prompts",
            "300",
            "--max-concurrency",
            "64",
        ])
        .unwrap();
        let LoadMode::Open {
            pacing:
                Pacing::Ramp {
                    ramp,
                    arrival,
                    over,
                },
            max_in_flight,
        } = &c.plan.mode
        else {
            panic!("{:?}", c.plan.mode)
        };
        assert_eq!(
            (ramp.strategy, ramp.start_rps, ramp.end_rps, *over),
            (RampStrategy::Exponential, 2, 32, 300)
        );
        assert_eq!(*arrival, Arrival::POISSON);
        assert_eq!(max_in_flight.map(|n| n.get()), Some(64));
        assert!(describe_plan(&c.plan).contains("exponential ramp 2→32 req/s over 300"));
        // A workload's own size is the ramp's length when --num-prompts is not given.
        let c = cfg(&[
            "--dataset-name",
            "generated-shared-prefix",
            "--gsp-num-groups",
            "2",
            "--gsp-prompts-per-group",
            "5",
            "--ramp-up-strategy",
            "linear",
            "--ramp-up-start-rps",
            "0",
            "--ramp-up-end-rps",
            "4",
        ])
        .unwrap();
        assert!(matches!(
            c.plan.mode,
            LoadMode::Open {
                pacing: Pacing::Ramp { over: 10, .. },
                ..
            }
        ));
        let ramp = [
            "--ramp-up-strategy",
            "linear",
            "--ramp-up-start-rps",
            "1",
            "--ramp-up-end-rps",
            "9",
        ];
        for (extra, says) in [
            (vec!["--request-rate", "5"], "drop --request-rate"),
            (vec!["--duration", "30"], "give --num-prompts"),
        ] {
            let e = cfg(&[&ramp[..], &extra].concat()).unwrap_err().to_string();
            assert!(e.contains(says), "{extra:?}: {e}");
        }
        for (args, says) in [
            (vec!["--ramp-up-strategy", "linear"], "needs both"),
            (vec!["--ramp-up-start-rps", "1"], "add --ramp-up-strategy"),
            (
                vec![
                    "--ramp-up-strategy",
                    "step",
                    "--ramp-up-start-rps",
                    "1",
                    "--ramp-up-end-rps",
                    "2",
                ],
                "linear or exponential",
            ),
            (
                vec![
                    "--ramp-up-strategy",
                    "linear",
                    "--ramp-up-start-rps",
                    "9",
                    "--ramp-up-end-rps",
                    "2",
                ],
                "a ramp goes up",
            ),
        ] {
            let e = cfg(&args).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn percentile_metrics_take_vllms_names() {
        let c = cfg(&["--percentile-metrics", "ttft,e2el,client_queue_time"]).unwrap();
        assert_eq!(
            c.percentile_metrics.unwrap(),
            ["ttft", "e2el", "client_queue_time"]
        );
        assert_eq!(cfg(&[]).unwrap().percentile_metrics, None);
        let e = cfg(&["--percentile-metrics", "ttft,latency"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("latency") && e.contains("e2el_including_client_queue"),
            "{e}"
        );
    }

    #[test]
    fn tokenizer_takes_a_file_or_a_model_directory_and_never_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokenizer.json");
        std::fs::write(&file, "{}").unwrap();
        let c = cfg(&["--tokenizer", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(
            c.tokenizer.as_deref(),
            Some(file.as_path()),
            "the directory's tokenizer.json"
        );
        assert_eq!(
            c.tokenizer_id.as_deref(),
            dir.path().to_str(),
            "reported as given"
        );
        let c = cfg(&["--tokenizer", file.to_str().unwrap()]).unwrap();
        assert_eq!(c.tokenizer.as_deref(), Some(file.as_path()));
        let empty = tempfile::tempdir().unwrap();
        let e = cfg(&["--tokenizer", empty.path().to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no tokenizer.json"), "{e}");
        let e = cfg(&["--tokenizer", "meta-llama/Llama-3.1-8B-Instruct"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not download") && e.contains("--local-dir"),
            "{e}"
        );
    }

    #[test]
    fn vllm_datasets_map_or_are_refused_with_what_to_use() {
        let c = cfg(&[
            "--random-prefix-len",
            "25",
            "--random-input-len",
            "300",
            "--random-output-len",
            "40",
        ])
        .unwrap();
        let Workload::SharedPrefix(s) = &c.workload else {
            panic!("{:?}", c.workload)
        };
        assert_eq!(
            (s.groups, s.system_prompt_len, s.question_len, s.output_len),
            (1, 25, 300, 40)
        );
        assert_eq!(c.plan.stop, Stop::Requests(1000), "vLLM's default count");
        let e = cfg(&["--random-prefix-len", "25", "--random-range-ratio", "0.2"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--random-range-ratio"), "{e}");
        for name in [
            "sonnet",
            "hf",
            "burstgpt",
            "random-mm",
            "spec_bench",
            "timed_trace",
        ] {
            let e = cfg(&["--dataset-name", name]).unwrap_err().to_string();
            assert!(
                e.contains("not supported by servebench; use"),
                "{name}: {e}"
            );
        }
        let e = cfg(&["--dataset-path", "x.json"]).unwrap_err().to_string();
        assert!(e.contains("reads no file"), "{e}");
    }

    #[test]
    fn vllm_flags_without_effect_each_leave_one_note_and_lora_is_refused() {
        let c = cfg(&[
            "--save-result",
            "--trust-remote-code",
            "--tokenizer-mode",
            "slow",
            "--disable-shuffle",
            "--sonnet-input-len",
            "550",
        ])
        .unwrap();
        assert_eq!(c.compat_notes.len(), 5, "{:?}", c.compat_notes);
        assert!(c
            .compat_notes
            .iter()
            .all(|n| n.starts_with("note: --") && n.contains("no effect here: ")));
        assert!(cfg(&[]).unwrap().compat_notes.is_empty());
        let e = cfg(&["--lora-modules", "sql-lora", "alpaca"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--model <adapter name>"), "{e}");
        let e = cfg(&["--self-timed"]).unwrap_err().to_string();
        assert!(e.contains("--dataset-name trace"), "{e}");
    }

    /// No flag of the compatibility group is accepted silently: each one given alone leaves a
    /// note (or, for the few that would change what is measured, an error).
    #[test]
    fn every_compatibility_flag_leaves_a_note_or_is_refused() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").expect("run");
        let group: Vec<&clap::Arg> = run
            .get_arguments()
            .filter(|a| {
                a.get_help_heading()
                    .is_some_and(|h| h.starts_with("Accepted for `vllm bench serve`"))
            })
            .collect();
        assert!(group.len() > 40, "{}", group.len());
        for arg in group {
            let flag = format!("--{}", arg.get_long().expect("a long flag"));
            let takes_value = arg.get_action().takes_values();
            let argv: Vec<&str> = if takes_value {
                vec![&flag, "1"]
            } else {
                vec![&flag]
            };
            match cfg(&argv) {
                Ok(c) => assert_eq!(c.compat_notes.len(), 1, "{flag}: {:?}", c.compat_notes),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(&flag[..8]) && e.len() > 60, "{flag}: {e}")
                }
            }
        }
    }

    #[test]
    fn served_model_name_metadata_and_request_ids_are_kept() {
        let c = cfg(&[
            "--model",
            "deepseek-ai/DeepSeek-V3",
            "--served-model-name",
            "dsv3",
            "--metadata",
            "tp=8",
            "version=0.11",
            "--request-id-prefix",
            "run7-",
            "--ready-check-timeout-sec",
            "600",
            "--disable-tqdm",
        ])
        .unwrap();
        assert_eq!(c.served_model_name.as_deref(), Some("dsv3"));
        assert_eq!(
            c.metadata,
            [
                ("tp".to_string(), "8".to_string()),
                ("version".into(), "0.11".into())
            ]
        );
        assert_eq!(c.request_id_prefix.as_deref(), Some("run7-"));
        assert_eq!(c.ready_check_timeout, Duration::from_secs(600));
        assert!(!c.progress);
        let e = cfg(&["--metadata", "novalue"]).unwrap_err().to_string();
        assert!(e.contains("--metadata"), "{e}");
    }

    #[test]
    fn input_len_and_output_len_set_every_dataset_length() {
        let c = cfg(&["--input-len", "64", "--output-len", "8"]).unwrap();
        let Workload::Random(r) = &c.workload else {
            panic!()
        };
        assert_eq!(
            (r.input, r.output),
            (
                LengthDist::Fixed { tokens: 64 },
                LengthDist::Fixed { tokens: 8 }
            )
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "{\"prompt\": \"a b c\"}\n").unwrap();
        let c = cfg(&[
            "--dataset-name",
            "custom",
            "--dataset-path",
            p.to_str().unwrap(),
            "--output-len",
            "9",
        ])
        .unwrap();
        let Workload::Dataset(d) = &c.workload else {
            panic!()
        };
        assert_eq!(d.output_len, Some(9));
    }

    #[test]
    fn api_key_is_never_serialized() {
        let c = cfg(&["--api-key", "sk-secret-123"]).unwrap();
        assert_eq!(c.api_key.as_deref(), Some("sk-secret-123"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("sk-secret-123"));
    }
}
