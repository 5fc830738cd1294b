//! The suite file: a matrix of targets × workloads (× repeats) in TOML. Unknown keys are
//! rejected, not ignored: a typo in a study config must not silently change the study.

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteConfig {
    pub title: String,
    /// Where results go (relative paths are relative to the current directory).
    #[serde(default = "default_result_dir")]
    pub result_dir: PathBuf,
    /// Instance type whose price (from the catalog) the cost figures use, e.g. `g5.xlarge`.
    #[serde(default)]
    pub instance: Option<String>,
    /// Your own hourly price instead of the catalog's.
    #[serde(default)]
    pub price: Option<crate::cost::PriceOverride>,
    /// `[electricity]`: `usd_per_kwh` and optional `pue` (default 1.0): each cell's on-premises
    /// energy cost per 1M output tokens from its measured GPU energy (`run --electricity-price`).
    #[serde(default)]
    pub electricity: Option<crate::cost::ElectricityPrice>,
    /// A CI gate: every cell whose fraction of succeeded measured requests is below this
    /// (e.g. 0.99) fails it, and the suite exits with status 3 (`run --fail-under-success-rate`).
    #[serde(default)]
    pub fail_under_success_rate: Option<f64>,
    /// Each cell is run this many times; the report shows every repeat.
    #[serde(default = "one")]
    pub repeats: u32,
    #[serde(default)]
    pub seed: u64,
    /// Values every workload inherits unless it sets its own.
    #[serde(default)]
    pub defaults: WorkloadDefaults,
    pub targets: Vec<TargetConfig>,
    pub workloads: Vec<WorkloadConfig>,
}

fn default_result_dir() -> PathBuf {
    PathBuf::from("results")
}

fn one() -> u32 {
    1
}

/// A serving target: `name` labels its results (`results/<name>/…`) and its server log;
/// `[targets.launch]` says how to reach or start it (kind = "sim" | "external" | "process" |
/// "docker"; see `crate::launch`).
pub type TargetConfig = crate::launch::Target;

/// Whether a target's numbers come from the simulator.
pub fn is_simulated(t: &TargetConfig) -> bool {
    matches!(t.launch, crate::launch::LaunchSpec::Sim(_))
}

/// Workload values shared by every workload unless overridden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDefaults {
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Prompt length in tokens.
    #[serde(default = "default_input_len")]
    pub input_len: u32,
    #[serde(default = "default_warmups")]
    pub warmups: u64,
    #[serde(default = "yes")]
    pub ignore_eos: bool,
    /// Seconds before a request counts as timed out.
    #[serde(default = "default_timeout")]
    pub request_timeout: f64,
    /// A local tokenizer.json of the served model, for exact prompt lengths (`run --tokenizer`).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

impl Default for WorkloadDefaults {
    fn default() -> Self {
        WorkloadDefaults {
            endpoint: default_endpoint(),
            input_len: default_input_len(),
            warmups: default_warmups(),
            ignore_eos: true,
            request_timeout: default_timeout(),
            tokenizer: None,
        }
    }
}

fn default_endpoint() -> String {
    "/v1/completions".into()
}
fn default_input_len() -> u32 {
    128
}
fn default_warmups() -> u64 {
    2
}
fn default_timeout() -> f64 {
    600.0
}
fn yes() -> bool {
    true
}

/// One workload of the matrix (the seed's Small/Medium/Large rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadConfig {
    pub name: String,
    /// Measured requests.
    pub requests: u64,
    /// `max_tokens` of each request. For `sharegpt-multi-turn` leave it out to ask for each
    /// turn's reply length in the file (it is then `--sharegpt-output-len` when given).
    #[serde(default)]
    pub max_tokens: u32,
    /// Requests in flight (closed loop).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Open-loop rate, requests/s (with `concurrency` as an in-flight cap).
    #[serde(default)]
    pub request_rate: Option<f64>,
    #[serde(default)]
    pub input_len: Option<u32>,
    #[serde(default)]
    pub warmups: Option<u64>,
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `random` (default), `generated-shared-prefix`: `requests` split into `groups` that
    /// share a `system_prompt_len`-token system prompt, each with its own
    /// `question_len`-token question; or `multi-turn`: `requests` split into conversations of
    /// `turns` turns (chat endpoint), a first message of `input_len` tokens, follow-ups of
    /// `question_len`, an optional shared `system_prompt_len`, `think_time_ms` between turns.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Turns per conversation (`multi-turn`).
    #[serde(default)]
    pub turns: Option<u32>,
    /// `sharegpt-multi-turn`: the ShareGPT file, the most conversations to replay from it
    /// (`requests` still caps the turns sent), the model's context length and the fewest turns
    /// a conversation needs (the `run` flags `--dataset-path`, `--conversation-num`,
    /// `--sharegpt-context-len`, `--sharegpt-min-turns`).
    #[serde(default)]
    pub dataset_path: Option<PathBuf>,
    #[serde(default)]
    pub conversations: Option<u32>,
    #[serde(default)]
    pub context_len: Option<u32>,
    #[serde(default)]
    pub min_turns: Option<u32>,
    /// `sharegpt-multi-turn`: turns kept of each conversation at most.
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// Mean think time between a reply and the next turn, ms (`multi-turn`; default 0).
    #[serde(default)]
    pub think_time_ms: Option<f64>,
    #[serde(default)]
    pub groups: Option<u32>,
    #[serde(default)]
    pub system_prompt_len: Option<u32>,
    #[serde(default)]
    pub question_len: Option<u32>,
    /// Another workload of the suite that is this one without its feature (the same token
    /// counts without a shared prefix, the same prompts without an output constraint): the
    /// report sets the two side by side to show what the feature costs or gains.
    #[serde(default)]
    pub baseline: Option<String>,
    /// Constrain every answer: `json-schema` or `regex` (`run --structured-output`).
    #[serde(default)]
    pub structured_output: Option<String>,
    /// The schema file for `json-schema` (default: the built-in schema).
    #[serde(default)]
    pub json_schema: Option<PathBuf>,
    /// The pattern for `regex`.
    #[serde(default)]
    pub regex: Option<String>,
    /// `openai`, `vllm`, `vllm-guided` or `sglang` (default: by the target's name).
    #[serde(default)]
    pub structured_dialect: Option<String>,
    /// Also run this workload unconstrained, as `<name>-unconstrained` with the same prompts
    /// and seed, and make it this workload's `baseline`.
    #[serde(default)]
    pub unconstrained_baseline: bool,
    /// The workload whose seed this one uses (set for an unconstrained twin, so both send the
    /// same prompts); not a suite-file key.
    #[serde(skip)]
    pub seed_from: Option<String>,
}

impl WorkloadConfig {
    pub fn is_shared_prefix(&self) -> bool {
        matches!(
            self.dataset.as_deref(),
            Some("generated-shared-prefix" | "shared-prefix")
        )
    }

    /// Conversations, synthetic or from a ShareGPT file.
    pub fn is_multi_turn(&self) -> bool {
        matches!(
            self.dataset.as_deref(),
            Some("multi-turn" | "sharegpt-multi-turn")
        )
    }

    pub fn is_sharegpt_multi_turn(&self) -> bool {
        self.dataset.as_deref() == Some("sharegpt-multi-turn")
    }

    /// The endpoint this workload's cells use: its own, else chat for conversations, else the
    /// suite's default.
    pub fn endpoint_or(&self, default: &str) -> String {
        match (&self.endpoint, self.is_multi_turn()) {
            (Some(e), _) => e.clone(),
            (None, true) => "/v1/chat/completions".into(),
            (None, false) => default.to_string(),
        }
    }

    /// The workload asks for structured output.
    pub fn is_structured(&self) -> bool {
        self.structured_output.is_some()
    }

    /// The same workload without its output constraint, named `<name>-unconstrained`.
    pub fn unconstrained_twin(&self) -> WorkloadConfig {
        WorkloadConfig {
            name: format!("{}-unconstrained", self.name),
            baseline: None,
            structured_output: None,
            json_schema: None,
            regex: None,
            structured_dialect: None,
            unconstrained_baseline: false,
            seed_from: Some(self.name.clone()),
            ..self.clone()
        }
    }
}

/// A suite file that could not be used: where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SuiteConfigError {
    #[error("cannot read the suite file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid suite file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid suite file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl SuiteConfig {
    pub fn load(path: &Path) -> Result<SuiteConfig, SuiteConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SuiteConfig::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<SuiteConfig, SuiteConfigError> {
        let mut cfg: SuiteConfig = toml::from_str(text).map_err(|e| SuiteConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.add_unconstrained_twins()
            .map_err(|message| SuiteConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        cfg.validate()
            .map_err(|message| SuiteConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(cfg)
    }

    /// `unconstrained_baseline = true`: add the twin right after its workload and pair them
    /// through the ordinary `baseline` key.
    fn add_unconstrained_twins(&mut self) -> Result<(), String> {
        let mut out = Vec::with_capacity(self.workloads.len());
        for mut w in std::mem::take(&mut self.workloads) {
            if !w.unconstrained_baseline {
                out.push(w);
                continue;
            }
            if !w.is_structured() {
                return Err(format!(
                    "workload `{}`: unconstrained_baseline needs structured_output (\"json-schema\" or \"regex\")",
                    w.name
                ));
            }
            let twin = w.unconstrained_twin();
            match &w.baseline {
                Some(b) if b != &twin.name => {
                    return Err(format!(
                        "workload `{}`: baseline = \"{b}\" and unconstrained_baseline = true name two baselines; keep one",
                        w.name
                    ))
                }
                _ => w.baseline = Some(twin.name.clone()),
            }
            out.push(w);
            out.push(twin);
        }
        self.workloads = out;
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(e) = &self.electricity {
            crate::cost::ElectricityPrice::new(e.usd_per_kwh, e.pue)
                .map_err(|problem| format!("[electricity]: {problem}"))?;
        }
        if self.targets.is_empty() {
            return Err("no [[targets]]: add at least one (kind = \"sim\" | \"external\")".into());
        }
        if self.workloads.is_empty() {
            return Err("no [[workloads]]: add at least one (name, requests, max_tokens)".into());
        }
        if self.repeats == 0 {
            return Err("repeats = 0: use 1 or more".into());
        }
        if let Some(r) = self.fail_under_success_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!(
                    "fail_under_success_rate = {r}: must be a fraction between 0 and 1, e.g. 0.99"
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.targets {
            let name = t.name.as_str();
            if let crate::launch::LaunchSpec::Sim(spec) = &t.launch {
                for (field, v) in [
                    ("engine", &spec.engine),
                    ("gpu", &spec.gpu),
                    ("model", &spec.model),
                ] {
                    if v.is_none() {
                        return Err(format!(
                            "target `{name}` (kind = \"sim\") needs `{field}` in [targets.launch], e.g. engine = \"vllm\", gpu = \"a10g\", model = \"facebook/opt-125m\""
                        ));
                    }
                }
            }
            // Checked here, before anything starts, so a typo in the last target of a long
            // study is an error now rather than a failed cell hours later.
            check_launch(name, &t.launch)?;
            if !names.insert(name) {
                return Err(format!(
                    "target name `{name}` is used twice; names must be unique"
                ));
            }
            if name.is_empty() || name.contains(['/', '\\']) {
                return Err(format!(
                    "target name `{name}` must be non-empty and contain no slash (it names a folder)"
                ));
            }
        }
        check_endpoint("[defaults] endpoint", &self.defaults.endpoint)?;
        let mut wnames = std::collections::HashSet::new();
        for w in &self.workloads {
            if let Some(e) = &w.endpoint {
                check_endpoint(&format!("workload `{}`: endpoint", w.name), e)?;
            }
            if !wnames.insert(&w.name) {
                return Err(format!("workload name `{}` is used twice", w.name));
            }
            if w.requests == 0 || (w.max_tokens == 0 && !w.is_sharegpt_multi_turn()) {
                return Err(format!(
                    "workload `{}`: requests and max_tokens must be at least 1",
                    w.name
                ));
            }
            match w.dataset.as_deref() {
                None | Some("random") => {}
                Some("generated-shared-prefix" | "shared-prefix") => {
                    let g = w.groups.unwrap_or(0);
                    if g == 0 || w.requests % u64::from(g) != 0 {
                        return Err(format!(
                            "workload `{}`: a shared-prefix workload needs `groups` ≥ 1 dividing `requests` ({})",
                            w.name, w.requests
                        ));
                    }
                    if w.system_prompt_len.is_none() || w.question_len.is_none() {
                        return Err(format!(
                            "workload `{}`: a shared-prefix workload needs system_prompt_len and question_len",
                            w.name
                        ));
                    }
                }
                Some("multi-turn") => {
                    let t = w.turns.unwrap_or(0);
                    if t == 0 || w.requests % u64::from(t) != 0 {
                        return Err(format!(
                            "workload `{}`: a multi-turn workload needs `turns` ≥ 1 dividing `requests` ({}); requests / turns conversations are run",
                            w.name, w.requests
                        ));
                    }
                    if w.endpoint.as_deref().is_some_and(|e| e != "/v1/chat/completions") {
                        return Err(format!(
                            "workload `{}`: a multi-turn workload is sent as chat messages; drop `endpoint` or set it to \"/v1/chat/completions\"",
                            w.name
                        ));
                    }
                    if w.think_time_ms.is_some_and(|t| !(t.is_finite() && t >= 0.0)) {
                        return Err(format!(
                            "workload `{}`: think_time_ms must be a number of milliseconds ≥ 0",
                            w.name
                        ));
                    }
                }
                Some("sharegpt-multi-turn") => {
                    if !w.dataset_path.as_ref().is_some_and(|p| p.is_file()) {
                        return Err(format!(
                            "workload `{}`: a sharegpt-multi-turn workload needs dataset_path = \"path/to/sharegpt.json\", a local file",
                            w.name
                        ));
                    }
                    if w.endpoint.as_deref().is_some_and(|e| e != "/v1/chat/completions") {
                        return Err(format!(
                            "workload `{}`: a multi-turn workload is sent as chat messages; drop `endpoint` or set it to \"/v1/chat/completions\"",
                            w.name
                        ));
                    }
                    if [w.conversations, w.context_len, w.min_turns, w.max_turns].contains(&Some(0)) {
                        return Err(format!(
                            "workload `{}`: conversations, context_len, min_turns and max_turns must be at least 1",
                            w.name
                        ));
                    }
                }
                Some(other) => {
                    return Err(format!(
                        "workload `{}`: unknown dataset `{other}`; use random, generated-shared-prefix, multi-turn or sharegpt-multi-turn",
                        w.name
                    ))
                }
            }
            if let Some(b) = &w.baseline {
                if b == &w.name {
                    return Err(format!(
                        "workload `{}`: baseline names the workload itself; name the workload it should be compared with",
                        w.name
                    ));
                }
                if !self.workloads.iter().any(|o| &o.name == b) {
                    return Err(format!(
                        "workload `{}`: baseline `{b}` is not a workload of this suite; add a [[workloads]] named `{b}` or fix the name",
                        w.name
                    ));
                }
            }
            if let Some(kind) = &w.structured_output {
                let need = match kind.as_str() {
                    "json-schema" => w.regex.is_none(),
                    "regex" => w.regex.is_some() && w.json_schema.is_none(),
                    _ => false,
                };
                if !need {
                    return Err(format!(
                        "workload `{}`: structured_output = \"json-schema\" (with json_schema = \"path\" or the built-in schema) or \"regex\" (with regex = \"pattern\"), not {kind:?} with these keys",
                        w.name
                    ));
                }
                if let Some(d) = &w.structured_dialect {
                    d.parse::<crate::structured::Dialect>().map_err(|e| {
                        format!("workload `{}`: structured_dialect {d:?}: {e}", w.name)
                    })?;
                }
                if let Some(p) = &w.json_schema {
                    if !p.is_file() {
                        return Err(format!(
                            "workload `{}`: json_schema {} is not a file; give the path of a JSON schema",
                            w.name,
                            p.display()
                        ));
                    }
                }
            } else if w.json_schema.is_some() || w.regex.is_some() || w.structured_dialect.is_some()
            {
                return Err(format!(
                    "workload `{}`: json_schema, regex and structured_dialect only apply with structured_output",
                    w.name
                ));
            }
            if w.concurrency == Some(0) {
                return Err(format!(
                    "workload `{}`: concurrency must be at least 1",
                    w.name
                ));
            }
            if let Some(r) = w.request_rate {
                if !(r.is_finite() && r > 0.0) {
                    return Err(format!(
                        "workload `{}`: request_rate {r} must be a positive number",
                        w.name
                    ));
                }
            }
            w.check_numbers()
                .map_err(|e| format!("workload `{}`: {}", w.name, suite_key(e)))?;
        }
        self.check_numbers().map_err(suite_key)
    }

    /// The suite-wide numbers within the bounds `run` applies to the same flags
    /// (`config::limits`), so a bad value fails now, not in the cell that reaches it hours in.
    fn check_numbers(&self) -> Result<(), ConfigError> {
        use crate::config::limits;
        let d = &self.defaults;
        limits::secs(
            "request_timeout",
            d.request_timeout,
            limits::MAX_REQUEST_TIMEOUT_S,
            "one week",
        )?;
        limits::tokens("input_len", d.input_len)?;
        max_count("warmups", d.warmups)?;
        if u64::from(self.repeats) > limits::MAX_REPEATS {
            return Err(limits::out_of_range(
                "repeats",
                self.repeats,
                format!("allowed: 1..={}", limits::MAX_REPEATS),
            ));
        }
        Ok(())
    }
}

/// A `run` flag's error in the suite file's terms (`request_timeout`, not `--request-timeout`).
fn suite_key(e: ConfigError) -> String {
    format!(
        "{} = {}: {}",
        e.field.trim_start_matches("--").replace('-', "_"),
        e.value,
        e.problem
    )
}

fn max_count(field: &str, n: u64) -> Result<(), ConfigError> {
    use crate::config::limits::{out_of_range, MAX_NUM_PROMPTS};
    if n > MAX_NUM_PROMPTS {
        return Err(out_of_range(
            field,
            n,
            format!("allowed: up to {MAX_NUM_PROMPTS} (every request keeps a record in memory until the summary)"),
        ));
    }
    Ok(())
}

impl WorkloadConfig {
    /// This workload's numbers within `run`'s bounds.
    fn check_numbers(&self) -> Result<(), ConfigError> {
        use crate::config::limits;
        max_count("requests", self.requests)?;
        if let Some(n) = self.warmups {
            max_count("warmups", n)?;
        }
        for (field, v) in [
            ("max_tokens", Some(self.max_tokens)),
            ("input_len", self.input_len),
            ("context_len", self.context_len),
            ("system_prompt_len", self.system_prompt_len),
            ("question_len", self.question_len),
        ] {
            if let Some(v) = v.filter(|&v| v > 0) {
                limits::tokens(field, v)?;
            }
        }
        for (field, v) in [
            ("turns", self.turns),
            ("groups", self.groups),
            ("conversations", self.conversations),
            ("min_turns", self.min_turns),
            ("max_turns", self.max_turns),
        ] {
            if let Some(v) = v {
                max_count(field, u64::from(v))?;
            }
        }
        if let Some(c) = self.concurrency {
            if c > tokio::sync::Semaphore::MAX_PERMITS {
                return Err(limits::out_of_range(
                    "concurrency",
                    c,
                    format!("allowed: 1..={}", tokio::sync::Semaphore::MAX_PERMITS),
                ));
            }
        }
        if let Some(r) = self.request_rate {
            limits::rate("request_rate", r)?;
        }
        if let Some(t) = self.think_time_ms {
            limits::delay_ms("think_time_ms", t)?;
        }
        Ok(())
    }
}

/// A target's launch values that can be checked without starting anything.
fn check_launch(name: &str, launch: &crate::launch::LaunchSpec) -> Result<(), String> {
    use crate::launch::LaunchSpec;
    match launch {
        LaunchSpec::Sim(spec) => {
            let catalog = crate::sim::catalog::Catalog::builtin();
            let bad = |e: String| format!("target `{name}`: {e}");
            if let Some(e) = &spec.engine {
                e.parse::<crate::sim::profile::EngineKind>().map_err(bad)?;
            }
            if let Some(g) = &spec.gpu {
                catalog.gpu(g).map_err(|e| bad(e.to_string()))?;
            }
            if let Some(m) = &spec.model {
                catalog.model(m).map_err(|e| bad(e.to_string()))?;
            }
        }
        LaunchSpec::External(spec) => {
            let u = spec.base_url.trim();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "target `{name}`: base_url `{u}` is not an http(s) URL; give one such as http://127.0.0.1:8000"
                ));
            }
        }
        LaunchSpec::Process(spec) => {
            if spec.command.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(format!(
                    "target `{name}`: `command` is empty; give the program and its arguments, e.g. command = [\"vllm\", \"serve\", \"MODEL\", \"--port\", \"{{port}}\"]"
                ));
            }
        }
        LaunchSpec::Docker(_) => {}
    }
    Ok(())
}

fn check_endpoint(field: &str, value: &str) -> Result<(), String> {
    value
        .parse::<crate::openai::Endpoint>()
        .map(|_| ())
        .map_err(|_| {
            format!("{field} = \"{value}\": use \"/v1/completions\" or \"/v1/chat/completions\"")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICKSTART: &str = include_str!("../../configs/quickstart.toml");

    #[test]
    fn the_shipped_configs_parse() {
        let c = SuiteConfig::parse(QUICKSTART, Path::new("quickstart.toml")).unwrap();
        assert_eq!(c.targets.len(), 2);
        let names: Vec<&str> = c.workloads.iter().map(|w| w.name.as_str()).collect();
        assert!(names.starts_with(&["Small", "Medium", "Large"]));
        for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                SuiteConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_with_the_place() {
        let base = r#"
title = "t"
[[targets]]
name = "a"
[targets.launch]
kind = "sim"
engine = "vllm"
gpu = "a10g"
model = "facebook/opt-125m"
[[workloads]]
name = "w"
requests = 1
max_tokens = 1
"#;
        assert!(SuiteConfig::parse(base, Path::new("x.toml")).is_ok());
        let typo = base.replace("max_tokens = 1", "max_token = 1");
        let e = SuiteConfig::parse(&typo, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_token") && e.contains("x.toml"), "{e}");
        let bad_kind = base.replace("kind = \"sim\"", "kind = \"cloud\"");
        let e = SuiteConfig::parse(&bad_kind, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cloud"), "{e}");
        let zero = base.replace("requests = 1", "requests = 0");
        let e = SuiteConfig::parse(&zero, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("requests"), "{e}");
        let extra = base.replace("gpu = \"a10g\"", "gpu = \"a10g\"\ncolour = \"red\"");
        assert!(SuiteConfig::parse(&extra, Path::new("x.toml")).is_err());
        // A baseline must name another workload of the suite.
        let paired = format!("{base}baseline = \"plain\"\n[[workloads]]\nname = \"plain\"\nrequests = 1\nmax_tokens = 1\n");
        assert!(SuiteConfig::parse(&paired, Path::new("x.toml")).is_ok());
        let e = SuiteConfig::parse(&format!("{base}baseline = \"nope\"\n"), Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("baseline `nope` is not a workload"), "{e}");
        let e = SuiteConfig::parse(&format!("{base}baseline = \"w\"\n"), Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("names the workload itself"), "{e}");
        let mt = base.replace(
            "requests = 1",
            "requests = 6\ndataset = \"multi-turn\"\nturns = 4",
        );
        let e = SuiteConfig::parse(&mt, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("turns") && e.contains("dividing"), "{e}");
        let mt = mt.replace("turns = 4", "turns = 3\nendpoint = \"/v1/completions\"");
        let e = SuiteConfig::parse(&mt, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("chat"), "{e}");
        let ok = mt.replace("\nendpoint = \"/v1/completions\"", "");
        let c = SuiteConfig::parse(&ok, Path::new("x.toml")).unwrap();
        assert_eq!(
            c.workloads[0].endpoint_or("/v1/completions"),
            "/v1/chat/completions"
        );
    }

    #[test]
    fn a_structured_workload_gets_its_unconstrained_twin_as_baseline() {
        let base = r#"
title = "t"
[[targets]]
name = "a"
[targets.launch]
kind = "sim"
engine = "vllm"
gpu = "a10g"
model = "facebook/opt-125m"
[[workloads]]
name = "J"
requests = 4
max_tokens = 64
"#;
        let c = SuiteConfig::parse(
            &format!("{base}structured_output = \"json-schema\"\nunconstrained_baseline = true\n"),
            Path::new("x.toml"),
        )
        .unwrap();
        let names: Vec<&str> = c.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["J", "J-unconstrained"]);
        assert_eq!(c.workloads[0].baseline.as_deref(), Some("J-unconstrained"));
        let twin = &c.workloads[1];
        assert!(!twin.is_structured() && twin.baseline.is_none());
        assert_eq!(twin.seed_from.as_deref(), Some("J"));
        assert_eq!((twin.requests, twin.max_tokens), (4, 64));

        for (extra, says) in [
            ("unconstrained_baseline = true\n", "needs structured_output"),
            ("structured_output = \"xml\"\n", "json-schema"),
            ("structured_output = \"regex\"\n", "(with regex"),
            ("regex = \"x\"\n", "only apply with structured_output"),
            (
                "structured_output = \"json-schema\"\nstructured_dialect = \"guided\"\n",
                "vllm-guided",
            ),
            (
                "structured_output = \"json-schema\"\njson_schema = \"/no/such.json\"\n",
                "not a file",
            ),
        ] {
            let e = SuiteConfig::parse(&format!("{base}{extra}"), Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{extra}: {e}");
        }
    }
}
