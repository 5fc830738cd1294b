//! Validated, typed configuration. Raw flags (`cli`) come in; typed values with every default
//! decided and every cross-flag rule checked come out. Nothing else in the program re-checks
//! flags, and every rejection names the flag, the bad value and what to do instead.

use crate::arrival::Arrival;
use crate::cli::{EmbeddedArgs, LoadArgs, MetricArgs, OutputArgs, RunArgs, WorkloadArgs};
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
    pub model: Option<String>,
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
}

fn ser_plan<S: serde::Serializer>(plan: &LoadPlan, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&describe_plan(plan))
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

fn positive_secs(field: &str, v: f64) -> Result<Duration, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(bad(field, v, "must be a positive number of seconds"))
    }
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

fn millis(field: &str, v: f64) -> Result<Duration, ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v / 1000.0))
    } else {
        Err(bad(field, v, "must be a number of milliseconds ≥ 0"))
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
        let cfg = EmbeddedConfig {
            ttft: millis("--ttft-ms", a.ttft_ms)?,
            itl: millis("--itl-ms", a.itl_ms)?,
            tokens_per_chunk: a.tokens_per_chunk,
            faults,
            fault_after_tokens: a.fault_after_tokens,
            fault_stall: millis("--fault-stall-ms", a.fault_stall_ms)?,
            fault_seed: a.fault_seed,
            server_threads: nonzero("--server-threads", a.server_threads)?.get(),
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

/// `inf` or a positive number of requests per second.
pub fn parse_rate(s: &str) -> Result<f64, ConfigError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity") {
        return Ok(f64::INFINITY);
    }
    match t.parse::<f64>() {
        Ok(v) if v > 0.0 => Ok(v),
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

/// `50,90,99` → [50.0, 90.0, 99.0].
pub fn parse_percentiles(s: &str) -> Result<Vec<f64>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<f64>()
                .ok()
                .filter(|v| (0.0..=100.0).contains(v))
                .ok_or_else(|| {
                    bad(
                        "--metric-percentiles",
                        p,
                        "each percentile must be a number from 0 to 100, e.g. 50,90,99",
                    )
                })
        })
        .collect()
}

fn parse_arrival(name: &str, burstiness: f64) -> Result<Arrival, ConfigError> {
    if !(burstiness.is_finite() && burstiness > 0.0) {
        return Err(bad(
            "--burstiness",
            burstiness,
            "must be a number > 0 (1 = Poisson)",
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
    pub tokenizer: Option<PathBuf>,
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

impl WorkloadConfig {
    pub fn from_args(a: &WorkloadArgs) -> Result<WorkloadConfig, ConfigError> {
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
        if let Some(p) = &a.tokenizer {
            if !p.is_file() {
                return Err(bad(
                    "--tokenizer",
                    p.display(),
                    "no such file; give the path of a local tokenizer.json",
                ));
            }
        }
        let spec =
            match a.dataset_name.as_str() {
                "random" => Workload::Random(RandomSpec { input, output }),
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
                    "use random, generated-shared-prefix, sharegpt, custom, trace, multi-turn or sharegpt-multi-turn",
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
            tokenizer: a.tokenizer.clone(),
            ignore_eos: a.ignore_eos,
            min_tokens: a.min_tokens,
            seed: a.seed,
            structured: StructuredConfig::from_args(a)?,
        })
    }
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
    if !(delay.is_finite() && delay >= 0.0) {
        return Err(bad(
            "--conversation-turn-delay-mean",
            delay,
            "must be a number of milliseconds ≥ 0",
        ));
    }
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
        Some(t) => {
            PromptMaker::with_tokenizer(t).map_err(|e| bad("--tokenizer", t.display(), e))?
        }
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
}

impl LoadConfig {
    pub fn from_args(a: &LoadArgs) -> Result<LoadConfig, ConfigError> {
        let request_rate = parse_rate(&a.request_rate)?;
        let arrival = parse_arrival(&a.arrival, a.burstiness)?;
        let duration = a
            .duration
            .map(|d| positive_secs("--duration", d))
            .transpose()?;
        let stop = match (a.num_prompts, duration) {
            (Some(0), _) => return Err(bad("--num-prompts", 0, "must be at least 1")),
            (Some(n), Some(d)) => Stop::RequestsOrDuration(n, d),
            (Some(n), None) => Stop::Requests(n),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => Stop::Requests(1000), // vllm bench serve's default
        };
        let cap = a
            .max_concurrency
            .map(|n| nonzero("--max-concurrency", n))
            .transpose()?;
        let mode = match (request_rate.is_finite(), cap) {
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
        })
    }
}

impl LoadConfig {
    /// A trace sets its own clock: the load becomes an open loop on the trace's offsets (with
    /// --max-concurrency as an in-flight cap). A rate given as well is a contradiction.
    pub fn paced_by(mut self, w: &Workload) -> Result<LoadConfig, ConfigError> {
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
        })
    }
}

/// The output flags, validated.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub result_dir: PathBuf,
    pub result_filename: Option<String>,
    pub save_detailed: bool,
    pub progress: bool,
    /// `--electricity-price` and `--pue`; `None`: no energy cost.
    pub electricity: Option<crate::cost::ElectricityPrice>,
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
            electricity,
        })
    }
}

impl RunConfig {
    pub fn from_args(a: &RunArgs) -> Result<RunConfig, ConfigError> {
        let target = match &a.base_url {
            Some(url) => {
                let u = url.trim_end_matches('/');
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(bad(
                        "--base-url",
                        url,
                        "must start with http:// or https://, e.g. http://127.0.0.1:8000",
                    ));
                }
                if u.ends_with("/v1") {
                    return Err(bad(
                        "--base-url",
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
                        "faults are injected by the embedded server, which --base-url replaces; drop --fault, or drop --base-url to measure the embedded server",
                    ));
                }
                // The URL is written to results and error messages; a password in it would be
                // too. Shown here with the credentials taken out.
                if let Ok(mut parsed) = reqwest::Url::parse(u) {
                    if !parsed.username().is_empty() || parsed.password().is_some() {
                        let _ = parsed.set_password(None);
                        let _ = parsed.set_username("");
                        return Err(bad(
                            "--base-url",
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
        let endpoint: Endpoint = a.endpoint.parse().map_err(|_| {
            bad(
                "--endpoint",
                &a.endpoint,
                "use /v1/completions or /v1/chat/completions",
            )
        })?;
        if matches!(
            a.workload.dataset_name.as_str(),
            "multi-turn" | "sharegpt-multi-turn"
        ) && endpoint != Endpoint::ChatCompletions
        {
            return Err(bad(
                "--endpoint",
                &a.endpoint,
                "multi-turn conversations are sent as chat messages; use --endpoint /v1/chat/completions",
            ));
        }
        let usage = match a.usage.as_str() {
            "auto" => UsageRequest::Auto,
            "final" => UsageRequest::Final,
            "none" => UsageRequest::None,
            other => return Err(bad("--usage", other, "use auto, final or none")),
        };
        let request_timeout = positive_secs("--request-timeout", a.request_timeout)?;
        if let Some(t) = a.client_threads {
            nonzero("--client-threads", t)?;
        }
        let w = WorkloadConfig::from_args(&a.workload)?;
        let l = LoadConfig::from_args(&a.load)?
            .sized_for(&w.spec)
            .paced_by(&w.spec)?;
        let m = MetricConfig::from_args(&a.metrics)?;
        let o = OutputConfig::from_args(&a.output)?;
        let warmup_concurrency = l
            .max_concurrency
            .and_then(NonZeroUsize::new)
            .unwrap_or(NonZeroUsize::MIN)
            .min(NonZeroUsize::new(a.num_warmups.max(1) as usize).unwrap_or(NonZeroUsize::MIN));
        let plan = LoadPlan {
            mode: l.mode,
            stop: l.stop,
            warmups: a.num_warmups,
            warmup_concurrency,
            seed: w.seed,
            conversations: matches!(w.spec, Workload::MultiTurn(_)),
        };
        Ok(RunConfig {
            target,
            endpoint,
            model: a.model.clone(),
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
    fn api_key_is_never_serialized() {
        let c = cfg(&["--api-key", "sk-secret-123"]).unwrap();
        assert_eq!(c.api_key.as_deref(), Some("sk-secret-123"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("sk-secret-123"));
    }
}
