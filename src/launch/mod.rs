//! Start and stop the server under test behind one interface.
//!
//! A [`Target`] names a server and says how to get one ([`LaunchSpec`]: an existing URL, a local
//! process, a Docker container, or the embedded simulator) and when it counts as up
//! ([`Readiness`]). [`Launcher::start`] returns a [`Running`] handle: its base URL, the facts a
//! report needs (engine, image and digest, command line, pid or container id), the log tail, and
//! teardown: [`Running::stop`] stops gracefully, and dropping the handle tears down as well
//! (synchronously, best effort) so an error or Ctrl-C never leaves a container or process behind.
//!
//! Every launched server writes its output to `<log_dir>/<name>.log`, next to the results.
//! Failures are values: a server that exits before it is ready, or never becomes ready, is an
//! error carrying its exit status and the last log lines.

pub mod docker;
mod logs;
pub mod process;
mod readiness;
pub mod secret;

pub use docker::{DockerSpec, Engine, Gpus, PullPolicy};
pub use logs::LogTail;
pub use process::ProcessSpec;
pub use readiness::Readiness;
pub use secret::redact_args;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How many log lines an error carries.
pub const ERROR_TAIL_LINES: usize = 20;

/// A named server under test: how to get it and when it is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Names the log file (`<log_dir>/<name>.log`) and the container; letters, digits, `-_.`.
    pub name: String,
    pub launch: LaunchSpec,
    /// Defaults depend on the kind ([`LaunchSpec::default_readiness`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
}

impl Target {
    pub fn new(name: impl Into<String>, launch: LaunchSpec) -> Target {
        Target {
            name: name.into(),
            launch,
            readiness: None,
        }
    }

    /// The readiness rule in force: the configured one, else the kind's default.
    pub fn effective_readiness(&self) -> Readiness {
        self.readiness
            .clone()
            .unwrap_or_else(|| self.launch.default_readiness())
    }
}

/// How to get a server. In TOML: `kind = "external" | "process" | "docker" | "sim"` plus that
/// kind's fields; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LaunchSpec {
    /// A server someone else runs: nothing to start or stop; readiness is still checked.
    External(ExternalSpec),
    /// A locally installed engine started as a child process in its own process group.
    Process(ProcessSpec),
    /// An engine in a Docker container, through the Docker Engine API.
    Docker(DockerSpec),
    /// The embedded simulator, started in-process by the factory given to [`Launcher::with_sim`].
    Sim(SimSpec),
}

impl LaunchSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            LaunchSpec::External(_) => "external",
            LaunchSpec::Process(_) => "process",
            LaunchSpec::Docker(_) => "docker",
            LaunchSpec::Sim(_) => "sim",
        }
    }

    /// Startup budgets by kind: an engine in a container may download a model and capture CUDA
    /// graphs (many minutes); a local process imports torch (vLLM on CPU: 40-110 s here); the
    /// simulator and an existing server answer at once.
    pub fn default_readiness(&self) -> Readiness {
        let timeout = match self {
            LaunchSpec::External(_) | LaunchSpec::Sim(_) => Duration::from_secs(30),
            LaunchSpec::Process(_) => Duration::from_secs(300),
            LaunchSpec::Docker(_) => Duration::from_secs(1200),
        };
        Readiness {
            timeout,
            ..Readiness::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    /// For example `http://127.0.0.1:8000` (no `/v1`).
    pub base_url: String,
    /// What runs there, for the report (`vllm`, `sglang`, ...). Unknown when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// The embedded simulator. The launcher does not know how to build one (that is `sim`'s and the
/// suite's business); it calls the factory given to [`Launcher::with_sim`] with this spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Which engine the simulator imitates (`vllm`, `sglang`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Anything else the simulator factory understands.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, toml::Value>,
    /// How a suite runs its cells: `virtual-time` (default: the engine model in virtual time,
    /// as `servebench predict`; no HTTP, the same bytes on any host) or `real-time` (the
    /// simulator served over HTTP and measured by the real client, so its timings include this
    /// host's scheduling).
    #[serde(default, skip_serializing_if = "SimMode::is_default")]
    pub mode: SimMode,
}

/// See [`SimSpec::mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimMode {
    #[default]
    VirtualTime,
    RealTime,
}

impl SimMode {
    fn is_default(&self) -> bool {
        *self == SimMode::default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SimMode::VirtualTime => "virtual-time",
            SimMode::RealTime => "real-time",
        }
    }
}

/// A server started in this process, as the sim factory returns it. Dropping `guard` must stop
/// the server (the embedded server's handle does).
pub struct InProcess {
    pub base_url: String,
    /// For the report, e.g. `servebench-sim`.
    pub engine: String,
    pub guard: Box<dyn Send + Sync>,
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess")
            .field("base_url", &self.base_url)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// Builds the embedded simulator for a [`SimSpec`].
pub type SimFactory = Arc<dyn Fn(&SimSpec) -> anyhow::Result<InProcess> + Send + Sync>;

/// What a report needs to know about the server that was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub name: String,
    /// `external`, `process`, `docker`, `sim`.
    pub kind: String,
    /// `vllm`, `sglang`, `custom`, `servebench-sim`, or what an external spec says; `unknown`.
    pub engine: String,
    pub base_url: String,
    /// Image reference as configured (`vllm/vllm-openai:v0.30.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `repo@sha256:…` when the image came from a registry, else the image id `sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The command line that was run, secrets redacted. For a container: entrypoint + cmd as
    /// configured (an image's own entrypoint is not repeated).
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_path: Option<PathBuf>,
    /// From start to the readiness check passing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_after_s: Option<f64>,
}

/// Whether a started server is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// The process or container ended; `code` is its exit code when it had one.
    Exited {
        code: Option<i64>,
        detail: String,
    },
    /// Could not tell (the Docker daemon did not answer, say).
    Unknown(String),
}

impl Liveness {
    pub fn is_alive(&self) -> bool {
        matches!(self, Liveness::Alive)
    }
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Liveness::Alive => f.write_str("running"),
            Liveness::Exited { detail, .. } => f.write_str(detail),
            Liveness::Unknown(why) => write!(f, "state unknown: {why}"),
        }
    }
}

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("target `{name}`: {problem}")]
    Config { name: String, problem: String },
    #[error("target `{name}`: cannot create the log file {}: {cause}; check that the results folder is writable", path.display())]
    LogFile {
        name: String,
        path: PathBuf,
        cause: String,
    },
    #[error("target `{name}`: cannot start `{program}`: {cause}; check that it is installed and on PATH, or give its full path in `command`")]
    Spawn {
        name: String,
        program: String,
        cause: String,
    },
    #[error("target `{name}`: the server exited before it became ready ({status}); {tail}")]
    ExitedEarly {
        name: String,
        status: String,
        code: Option<i64>,
        /// Boxed: keeps `Result<_, LaunchError>` small on the success path.
        tail: Box<LogTail>,
    },
    #[error("target `{name}`: {url} not ready after {:.1} s (last check: {last}); {tail}\nfix: read the log for the cause; if the server was still loading (model download, CUDA graph capture), raise readiness.timeout_s", timeout.as_secs_f64())]
    NotReady {
        name: String,
        url: String,
        timeout: Duration,
        last: String,
        /// Boxed: keeps `Result<_, LaunchError>` small on the success path.
        tail: Box<LogTail>,
    },
    #[error("docker is not available: {reason}; start the Docker daemon (or set DOCKER_HOST), or use a `process` or `external` target")]
    DockerUnavailable { reason: String },
    #[error("target `{name}`: docker {action} failed: {cause}; {hint}")]
    Docker {
        name: String,
        action: String,
        cause: String,
        hint: String,
    },
    #[error("target `{name}`: kind `sim` needs the embedded simulator, which this launcher was not given; build the launcher with Launcher::with_sim")]
    SimUnavailable { name: String },
    #[error("target `{name}`: the embedded simulator did not start: {cause}")]
    Sim { name: String, cause: String },
}

/// Starts targets. Holds what the kinds share: the simulator factory.
#[derive(Clone, Default)]
pub struct Launcher {
    sim: Option<SimFactory>,
}

impl fmt::Debug for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launcher")
            .field("sim", &self.sim.as_ref().map(|_| "factory"))
            .finish()
    }
}

impl Launcher {
    pub fn new() -> Launcher {
        Launcher::default()
    }

    /// A launcher that can start `sim` targets with `factory`.
    pub fn with_sim(factory: SimFactory) -> Launcher {
        Launcher { sim: Some(factory) }
    }

    /// Starts `target`, writing its output to `<log_dir>/<name>.log`, and waits until it is
    /// ready. On any error nothing is left running.
    pub async fn start(&self, target: &Target, log_dir: &Path) -> Result<Running, LaunchError> {
        check_name(&target.name)?;
        let readiness = target.effective_readiness();
        readiness.validate(&target.name)?;
        match &target.launch {
            LaunchSpec::External(spec) => start_external(&target.name, spec, &readiness).await,
            LaunchSpec::Process(spec) => {
                process::start(&target.name, spec, &readiness, log_dir).await
            }
            LaunchSpec::Docker(spec) => {
                docker::start(&target.name, spec, &readiness, log_dir).await
            }
            LaunchSpec::Sim(spec) => self.start_sim(&target.name, spec, &readiness).await,
        }
    }

    async fn start_sim(
        &self,
        name: &str,
        spec: &SimSpec,
        readiness: &Readiness,
    ) -> Result<Running, LaunchError> {
        let factory = self
            .sim
            .as_ref()
            .ok_or_else(|| LaunchError::SimUnavailable {
                name: name.to_string(),
            })?;
        let started = std::time::Instant::now();
        let server = factory(spec).map_err(|e| LaunchError::Sim {
            name: name.to_string(),
            cause: format!("{e:#}"),
        })?;
        let base_url = server.base_url.trim_end_matches('/').to_string();
        let waited = readiness
            .wait(&base_url, || async { Liveness::Alive })
            .await;
        let mut facts = Facts::bare(name, "sim", &server.engine, &base_url);
        match waited {
            Ok(()) => {
                facts.ready_after_s = Some(started.elapsed().as_secs_f64());
                Ok(Running {
                    facts,
                    inner: Inner::InProcess(Some(server)),
                })
            }
            Err(failure) => Err(failure.into_error(name, &base_url, readiness, LogTail::none())),
        }
    }
}

async fn start_external(
    name: &str,
    spec: &ExternalSpec,
    readiness: &Readiness,
) -> Result<Running, LaunchError> {
    let base_url = spec.base_url.trim_end_matches('/').to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(LaunchError::Config {
            name: name.to_string(),
            problem: format!(
                "base_url `{base_url}` is not an http(s) URL; give one such as http://127.0.0.1:8000"
            ),
        });
    }
    let started = std::time::Instant::now();
    readiness
        .wait(&base_url, || async { Liveness::Alive })
        .await
        .map_err(|f| f.into_error(name, &base_url, readiness, LogTail::none()))?;
    let engine = spec.engine.as_deref().unwrap_or("unknown");
    let mut facts = Facts::bare(name, "external", engine, &base_url);
    facts.ready_after_s = Some(started.elapsed().as_secs_f64());
    Ok(Running {
        facts,
        inner: Inner::External,
    })
}

/// Names become file names and container names: keep them plain.
fn check_name(name: &str) -> Result<(), LaunchError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(LaunchError::Config {
            name: name.to_string(),
            problem: "the target name must be 1-64 letters, digits, `-`, `_` or `.` (it names the log file and the container)".into(),
        })
    }
}

impl Facts {
    fn bare(name: &str, kind: &str, engine: &str, base_url: &str) -> Facts {
        Facts {
            name: name.to_string(),
            kind: kind.to_string(),
            engine: engine.to_string(),
            base_url: base_url.to_string(),
            image: None,
            image_digest: None,
            command: Vec::new(),
            pid: None,
            container_id: None,
            log_path: None,
            ready_after_s: None,
        }
    }
}

/// A started server. [`Running::stop`] tears it down gracefully; dropping it tears it down too
/// (synchronously, best effort).
#[derive(Debug)]
pub struct Running {
    facts: Facts,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    External,
    Process(process::ProcessHandle),
    Docker(docker::ContainerHandle),
    /// `Option` so that `stop` can drop the server at a known point.
    InProcess(Option<InProcess>),
}

impl Running {
    /// `http://host:port`, without `/v1`.
    pub fn base_url(&self) -> &str {
        &self.facts.base_url
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.facts.log_path.as_deref()
    }

    /// The last `n` lines of the server's log (none for external and in-process servers).
    pub fn logs_tail(&self, n: usize) -> Vec<String> {
        match &self.facts.log_path {
            Some(path) => logs::tail_lines(path, n),
            None => Vec::new(),
        }
    }

    /// Whether the process or container still runs, so that "the server died mid-run" can be
    /// told from "the server is slow". External and in-process servers count as alive.
    pub async fn liveness(&self) -> Liveness {
        match &self.inner {
            Inner::External | Inner::InProcess(_) => Liveness::Alive,
            Inner::Process(p) => p.liveness(),
            Inner::Docker(c) => c.liveness().await,
        }
    }

    pub async fn is_alive(&self) -> bool {
        self.liveness().await.is_alive()
    }

    /// Stops the server gracefully (SIGTERM / `docker stop`, then force) and waits until it is
    /// gone. A container is removed.
    pub async fn stop(mut self) {
        match &mut self.inner {
            Inner::External => {}
            Inner::Process(p) => p.stop().await,
            Inner::Docker(c) => c.stop().await,
            Inner::InProcess(server) => drop(server.take()),
        }
    }
}
