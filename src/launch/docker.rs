//! Engines in Docker containers, through the Docker Engine API (bollard), not the docker CLI.
//!
//! [`plan`] turns a [`DockerSpec`] into the exact container configuration sent to the daemon
//! (a pure function, tested without a daemon); `start` pulls the image when it is missing,
//! records its digest, creates and starts the container, follows its logs into
//! `<log_dir>/<name>.log` and waits for readiness. The port is published on 127.0.0.1 only.
//! `HF_TOKEN` travels from our environment into the container's environment and nowhere else:
//! every Debug and Display here redacts it. Containers carry the label `servebench=1` so that
//! [`remove_leftovers`] can find what a killed run left behind.

use super::logs::LogTail;
use super::process::open_log;
use super::readiness::Readiness;
use super::secret::{self, redact_args, shell_join, RedactedEnv, REDACTED};
use super::{Facts, Inner, LaunchError, Liveness, Running, ERROR_TAIL_LINES};
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// vLLM's OpenAI-compatible server image. v0.30.0 is a published tag (CUDA 13: needs NVIDIA
/// driver 580 or newer); on older drivers use `vllm/vllm-openai:v0.30.0-cu129` (CUDA 12.9).
pub const VLLM_IMAGE: &str = "vllm/vllm-openai:v0.30.0";
/// SGLang's image. v0.5.20 is a published tag (CUDA 13); SGLang's install guide names
/// `lmsysorg/sglang:v0.5.19-cu129` as the last CUDA 12 image, for older drivers.
pub const SGLANG_IMAGE: &str = "lmsysorg/sglang:v0.5.20";

/// Where the Hugging Face cache lives inside the engine images (both run as root).
pub const CONTAINER_HF_CACHE: &str = "/root/.cache/huggingface";
/// The label every servebench container carries.
pub const LABEL: &str = "servebench";

/// Which engine the image holds; decides the command and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `vllm/vllm-openai`: the image's entrypoint is the OpenAI server; we pass its arguments.
    Vllm,
    /// `lmsysorg/sglang`: `python3 -m sglang.launch_server …`.
    Sglang,
    /// Any image; `command` (and `entrypoint`) say how to run it.
    Custom,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Vllm => "vllm",
            Engine::Sglang => "sglang",
            Engine::Custom => "custom",
        }
    }

    pub fn default_image(self) -> Option<&'static str> {
        match self {
            Engine::Vllm => Some(VLLM_IMAGE),
            Engine::Sglang => Some(SGLANG_IMAGE),
            Engine::Custom => None,
        }
    }

    /// The port the engine listens on inside the container (each engine's own default).
    pub fn default_port(self) -> u16 {
        match self {
            Engine::Vllm | Engine::Custom => 8000,
            Engine::Sglang => 30000,
        }
    }
}

/// GPUs given to the container: `"all"`, `"none"` or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GpusRepr", into = "GpusRepr")]
pub enum Gpus {
    None,
    All,
    Count(u32),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum GpusRepr {
    Count(u32),
    Word(String),
}

impl TryFrom<GpusRepr> for Gpus {
    type Error = String;
    fn try_from(r: GpusRepr) -> Result<Gpus, String> {
        match r {
            GpusRepr::Count(0) => Ok(Gpus::None),
            GpusRepr::Count(n) => Ok(Gpus::Count(n)),
            GpusRepr::Word(w) => match w.as_str() {
                "all" => Ok(Gpus::All),
                "none" => Ok(Gpus::None),
                other => Err(format!(
                    "gpus = \"{other}\" is not understood; use \"all\", \"none\" or a count"
                )),
            },
        }
    }
}

impl From<Gpus> for GpusRepr {
    fn from(g: Gpus) -> GpusRepr {
        match g {
            Gpus::None => GpusRepr::Word("none".into()),
            Gpus::All => GpusRepr::Word("all".into()),
            Gpus::Count(n) => GpusRepr::Count(n),
        }
    }
}

/// When to pull the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull only when the image is not present (the default).
    #[default]
    Missing,
    Always,
    Never,
}

/// An engine in a container. `{port}` (the container port) and `{model}` are substituted in
/// `command`, `entrypoint` and `engine_args`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSpec {
    pub engine: Engine,
    /// Pinned `repo:tag`; defaults to [`VLLM_IMAGE`] / [`SGLANG_IMAGE`]; required for `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Hugging Face id or a path inside the container. Required for vllm and sglang.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Appended to the engine's command (`--max-model-len 2048`, `--mem-fraction-static 0.8`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engine_args: Vec<String>,
    /// Replaces the engine's default command (required for `custom` unless the image's own
    /// CMD is wanted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default: all GPUs for vllm and sglang, none for custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Gpus>,
    /// Host port on 127.0.0.1; 0 = one the daemon picks.
    #[serde(default)]
    pub port: u16,
    /// The port the engine listens on inside the container; the engine's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
    /// `/dev/shm` size such as `"16g"` (PyTorch passes tensors between processes through it).
    /// Default: 16g for vllm and sglang, Docker's 64m for custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    /// Host folder bound to the container's Hugging Face cache. Default: `$HF_HOME`, else
    /// `~/.cache/huggingface`, for vllm and sglang; nothing for custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_cache: Option<PathBuf>,
    /// Set false to bind no cache at all.
    #[serde(default = "yes")]
    pub mount_hf_cache: bool,
    /// Extra environment. Never put a token here: `HF_TOKEN` comes from servebench's own
    /// environment (see `pass_hf_token`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Pass `HF_TOKEN` (and `HUGGING_FACE_HUB_TOKEN`) from our environment when set.
    #[serde(default = "yes")]
    pub pass_hf_token: bool,
    #[serde(default)]
    pub pull: PullPolicy,
    /// `docker stop` grace before SIGKILL.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_s: u32,
}

fn yes() -> bool {
    true
}

fn default_stop_timeout() -> u32 {
    30
}

impl fmt::Debug for DockerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerSpec")
            .field("engine", &self.engine)
            .field("image", &self.image)
            .field("model", &self.model)
            .field("engine_args", &redact_args(&self.engine_args))
            .field("command", &self.command.as_deref().map(redact_args))
            .field("entrypoint", &self.entrypoint)
            .field("gpus", &self.gpus)
            .field("port", &self.port)
            .field("container_port", &self.container_port)
            .field("shm_size", &self.shm_size)
            .field("hf_cache", &self.hf_cache)
            .field("mount_hf_cache", &self.mount_hf_cache)
            .field("env", &RedactedEnv(&self.env))
            .field("pass_hf_token", &self.pass_hf_token)
            .field("pull", &self.pull)
            .field("stop_timeout_s", &self.stop_timeout_s)
            .finish()
    }
}

impl DockerSpec {
    /// A spec with every default for `engine`.
    pub fn new(engine: Engine) -> DockerSpec {
        DockerSpec {
            engine,
            image: None,
            model: None,
            engine_args: Vec::new(),
            command: None,
            entrypoint: None,
            gpus: None,
            port: 0,
            container_port: None,
            shm_size: None,
            hf_cache: None,
            mount_hf_cache: true,
            env: BTreeMap::new(),
            pass_hf_token: true,
            pull: PullPolicy::Missing,
            stop_timeout_s: default_stop_timeout(),
        }
    }
}

/// What the host contributes to a plan: kept apart so that [`plan`] stays pure.
#[derive(Clone, Default)]
pub struct HostInputs {
    /// Values of `HF_TOKEN` / `HUGGING_FACE_HUB_TOKEN` from our environment.
    pub tokens: Vec<(String, String)>,
    /// The default cache folder (`$HF_HOME` or `~/.cache/huggingface`), if known.
    pub default_hf_cache: Option<PathBuf>,
    /// Distinguishes this container's name from other runs' (pid and a random number).
    pub unique: String,
    /// This process: its containers are labelled with it, so that [`remove_leftovers`] can
    /// tell a dead run's containers from a live one's.
    pub pid: u32,
}

impl fmt::Debug for HostInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HostInputs")
            .field("tokens", &names)
            .field("default_hf_cache", &self.default_hf_cache)
            .field("unique", &self.unique)
            .field("pid", &self.pid)
            .finish()
    }
}

impl HostInputs {
    /// Read from this process's environment.
    pub fn from_env() -> HostInputs {
        let tokens = secret::PASSED_SECRETS
            .iter()
            .filter_map(|k| {
                std::env::var(k)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (k.to_string(), v))
            })
            .collect();
        let default_hf_cache = std::env::var_os("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/huggingface")));
        HostInputs {
            tokens,
            default_hf_cache,
            unique: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            pid: std::process::id(),
        }
    }
}

/// The container configuration for one target, as it is sent to the daemon.
#[derive(Clone)]
pub struct ContainerPlan {
    pub container_name: String,
    pub image: String,
    pub container_port: u16,
    /// Entrypoint override + command, secrets redacted, for the facts.
    pub command_line: Vec<String>,
    pub body: ContainerCreateBody,
}

impl ContainerPlan {
    /// The body as JSON with every secret environment value redacted (for logs and dry runs).
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut body = self.body.clone();
        if let Some(env) = body.env.as_mut() {
            for kv in env.iter_mut() {
                if let Some((k, _)) = kv.split_once('=') {
                    if secret::is_secret_key(k) {
                        *kv = format!("{k}={REDACTED}");
                    }
                }
            }
        }
        serde_json::to_value(&body).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Debug for ContainerPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerPlan")
            .field("container_name", &self.container_name)
            .field("image", &self.image)
            .field("container_port", &self.container_port)
            .field("body", &self.redacted_json())
            .finish()
    }
}

/// Builds the container configuration for target `name`. Errors are configuration problems,
/// worded as fixes.
pub fn plan(name: &str, spec: &DockerSpec, host: &HostInputs) -> Result<ContainerPlan, String> {
    let engine = spec.engine;
    let image = match (&spec.image, engine.default_image()) {
        (Some(i), _) if !i.trim().is_empty() => i.trim().to_string(),
        (_, Some(d)) => d.to_string(),
        _ => {
            return Err(
                "engine `custom` needs `image`, e.g. image = \"servebench-sim:local\"".into(),
            )
        }
    };
    let model = spec.model.clone().unwrap_or_default();
    if model.is_empty() && engine != Engine::Custom {
        return Err(format!(
            "engine `{}` needs `model` (a Hugging Face id such as \"facebook/opt-125m\")",
            engine.name()
        ));
    }
    if let Some(k) = spec
        .env
        .keys()
        .find(|k| secret::PASSED_SECRETS.contains(&k.as_str()))
    {
        return Err(format!(
            "`{k}` is set in the config's env; never write a token into a file: export {k} in \
             the environment that runs servebench and it is passed to the container"
        ));
    }
    let container_port = spec.container_port.unwrap_or(engine.default_port());
    let subst = |words: &[String]| -> Vec<String> {
        words
            .iter()
            .map(|w| {
                w.replace("{port}", &container_port.to_string())
                    .replace("{model}", &model)
            })
            .collect()
    };
    let mut cmd: Vec<String> = match (&spec.command, engine) {
        (Some(c), _) => subst(c),
        (None, Engine::Vllm) => subst(&words(&[
            "--model", "{model}", "--host", "0.0.0.0", "--port", "{port}",
        ])),
        (None, Engine::Sglang) => subst(&words(&[
            "python3",
            "-m",
            "sglang.launch_server",
            "--model-path",
            "{model}",
            "--host",
            "0.0.0.0",
            "--port",
            "{port}",
        ])),
        (None, Engine::Custom) => Vec::new(),
    };
    cmd.extend(subst(&spec.engine_args));
    let entrypoint = spec.entrypoint.as_deref().map(subst);

    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if spec.pass_hf_token {
        env.extend(host.tokens.iter().map(|(k, v)| format!("{k}={v}")));
    }

    let gpus = spec.gpus.unwrap_or(match engine {
        Engine::Custom => Gpus::None,
        _ => Gpus::All,
    });
    let device_requests = match gpus {
        Gpus::None => None,
        Gpus::All => Some(vec![gpu_request(-1)]),
        Gpus::Count(n) => Some(vec![gpu_request(i64::from(n))]),
    };
    let shm = match (&spec.shm_size, engine) {
        (Some(s), _) => Some(parse_size(s)?),
        (None, Engine::Custom) => None,
        (None, _) => Some(16 * 1024 * 1024 * 1024),
    };
    let cache = match (spec.mount_hf_cache, &spec.hf_cache, engine) {
        (false, _, _) => None,
        (true, Some(dir), _) => Some(dir.clone()),
        (true, None, Engine::Custom) => None,
        (true, None, _) => host.default_hf_cache.clone(),
    };
    if let Some(dir) = &cache {
        if !dir.is_absolute() {
            return Err(format!(
                "hf_cache `{}` is not an absolute path; Docker binds only absolute host paths",
                dir.display()
            ));
        }
    }
    let binds = cache.map(|dir| vec![format!("{}:{CONTAINER_HF_CACHE}", dir.display())]);

    let port_key = format!("{container_port}/tcp");
    let host_port = match spec.port {
        0 => String::new(), // the daemon picks a free one
        p => p.to_string(),
    };
    let port_bindings = HashMap::from([(
        port_key.clone(),
        Some(vec![PortBinding {
            // Loopback only: an engine has no authentication and must not face the network.
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(host_port),
        }]),
    )]);
    let labels = HashMap::from([
        (LABEL.to_string(), "1".to_string()),
        (format!("{LABEL}.target"), name.to_string()),
        (format!("{LABEL}.pid"), host.pid.to_string()),
    ]);
    let mut command_line = entrypoint.clone().unwrap_or_default();
    command_line.extend(cmd.iter().cloned());
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: (!cmd.is_empty()).then_some(cmd),
        entrypoint,
        env: (!env.is_empty()).then_some(env),
        exposed_ports: Some(vec![port_key]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            device_requests,
            shm_size: shm,
            binds,
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    Ok(ContainerPlan {
        container_name: format!("servebench-{name}-{}", host.unique),
        image,
        container_port,
        command_line: redact_args(&command_line),
        body,
    })
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

fn gpu_request(count: i64) -> DeviceRequest {
    DeviceRequest {
        driver: Some("nvidia".into()),
        count: Some(count),
        capabilities: Some(vec![vec!["gpu".into()]]),
        ..DeviceRequest::default()
    }
}

/// `"16g"`, `"512m"`, `"1024k"`, `"1048576"` (Docker's units: powers of 1024) to bytes.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, ' '),
    };
    let shift = match unit {
        ' ' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        't' => 40,
        _ => {
            return Err(format!(
                "shm_size `{s}`: unknown unit; write it like \"16g\" or \"512m\""
            ))
        }
    };
    let n: i64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("shm_size `{s}` is not a size; write it like \"16g\" or \"512m\""))?;
    n.checked_mul(1 << shift)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("shm_size `{s}` is out of range"))
}

/// How this process reaches the daemon, so that teardown in Drop can reconnect from a thread
/// of its own (a client is tied to the runtime that made its connections).
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    version: ClientVersion,
}

impl Endpoint {
    fn from_env() -> Endpoint {
        Endpoint {
            host: std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
            version: *bollard::API_DEFAULT_VERSION,
        }
    }

    fn client(&self) -> Result<Docker, DockerError> {
        const TIMEOUT_S: u64 = 600; // pulls and builds stream for minutes
        if self.host.starts_with("tcp://") || self.host.starts_with("http://") {
            Docker::connect_with_http(&self.host, TIMEOUT_S, &self.version)
        } else {
            Docker::connect_with_socket(&self.host, TIMEOUT_S, &self.version)
        }
    }
}

/// A connection to the local Docker daemon (`DOCKER_HOST`, else `/var/run/docker.sock`), at an
/// API version the daemon accepts, checked with a ping.
pub async fn connect() -> Result<Docker, LaunchError> {
    Ok(connect_endpoint().await?.0)
}

async fn connect_endpoint() -> Result<(Docker, Endpoint), LaunchError> {
    let unavailable = |reason: String| LaunchError::DockerUnavailable { reason };
    let mut endpoint = Endpoint::from_env();
    let docker = endpoint
        .client()
        .map_err(|e| unavailable(format!("cannot reach {}: {e}", endpoint.host)))?;
    let docker = match docker.negotiate_version().await {
        Ok(d) => d,
        // Daemons older than this client reject even the version query at our default API
        // version, naming the newest one they speak; speak that.
        Err(DockerError::DockerResponseServerError { message, .. }) => {
            let Some(v) = max_supported_version(&message) else {
                return Err(unavailable(format!(
                    "{} answered: {message}",
                    endpoint.host
                )));
            };
            endpoint.version = v;
            endpoint
                .client()
                .map_err(|e| unavailable(format!("cannot reach {}: {e}", endpoint.host)))?
        }
        Err(e) => {
            return Err(unavailable(format!(
                "{} does not answer: {e}",
                endpoint.host
            )))
        }
    };
    let version = docker.client_version();
    endpoint.version = version;
    docker
        .ping()
        .await
        .map_err(|e| unavailable(format!("{} does not answer a ping: {e}", endpoint.host)))?;
    Ok((docker, endpoint))
}

/// "client version 1.53 is too new. Maximum supported API version is 1.41" → 1.41.
fn max_supported_version(message: &str) -> Option<ClientVersion> {
    let rest = message.split("Maximum supported API version is ").nth(1)?;
    let v = rest.split_whitespace().next()?;
    let (major, minor) = v.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.trim_end_matches(['.', ',']).parse().ok()?,
    })
}

fn docker_err(name: &str, action: &str, e: &DockerError, image: &str) -> LaunchError {
    let cause = secret::scrub(&e.to_string()).into_owned();
    let lower = cause.to_lowercase();
    let hint = if lower.contains("could not select device driver") || lower.contains("nvidia") {
        "GPUs were requested but Docker cannot provide them: install the NVIDIA Container \
         Toolkit and restart Docker, or set gpus = \"none\""
            .to_string()
    } else if lower.contains("port is already allocated")
        || lower.contains("address already in use")
    {
        "the host port is taken: choose another `port`, or 0 to let Docker pick".to_string()
    } else if action == "pull" {
        format!("check the image name and tag and the network, or pull it yourself: docker pull {image}")
    } else if lower.contains("no such image") {
        format!("the image is not present: build or pull {image}, or set pull = \"missing\"")
    } else {
        "check the Docker daemon's log and the target's configuration".to_string()
    };
    LaunchError::Docker {
        name: name.to_string(),
        action: action.to_string(),
        cause,
        hint,
    }
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `repo@sha256:…` for a pulled image; the image id `sha256:…` for one built locally.
pub async fn image_digest(docker: &Docker, image: &str) -> Result<String, DockerError> {
    let info = docker.inspect_image(image).await?;
    Ok(info
        .repo_digests
        .and_then(|d| d.into_iter().next())
        .or(info.id)
        .unwrap_or_default())
}

async fn ensure_image(
    docker: &Docker,
    name: &str,
    image: &str,
    policy: PullPolicy,
    log: &mut File,
) -> Result<(), LaunchError> {
    let present = match docker.inspect_image(image).await {
        Ok(_) => true,
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(docker_err(name, "image inspect", &e, image)),
    };
    let pull = match policy {
        PullPolicy::Always => true,
        PullPolicy::Missing => !present,
        PullPolicy::Never if present => false,
        PullPolicy::Never => {
            return Err(LaunchError::Docker {
                name: name.into(),
                action: "image inspect".into(),
                cause: format!("image {image} is not present"),
                hint: format!(
                    "pull or build it first (docker pull {image}), or set pull = \"missing\""
                ),
            })
        }
    };
    if !pull {
        return Ok(());
    }
    let _ = writeln!(log, "# servebench: pulling {image}");
    let (repo, tag) = split_tag(image);
    let options = CreateImageOptionsBuilder::default()
        .from_image(repo)
        .tag(tag)
        .build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(item) = progress.next().await {
        match item {
            // Layer progress is noise in a log; keep the status lines.
            Ok(info) => {
                if let (Some(status), None) =
                    (info.status, info.progress_detail.and_then(|p| p.current))
                {
                    let _ = writeln!(log, "# pull: {status}");
                }
            }
            Err(e) => return Err(docker_err(name, "pull", &e, image)),
        }
    }
    Ok(())
}

/// `repo:tag` → (`repo`, `tag`), minding registry ports (`host:5000/repo`) and digests.
fn split_tag(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

pub(crate) async fn start(
    name: &str,
    spec: &DockerSpec,
    readiness: &Readiness,
    log_dir: &Path,
) -> Result<Running, LaunchError> {
    let host = HostInputs::from_env();
    let plan = plan(name, spec, &host).map_err(|problem| LaunchError::Config {
        name: name.to_string(),
        problem,
    })?;
    let (docker, endpoint) = connect_endpoint().await?;
    let (log_path, mut log) = open_log(name, log_dir)?;
    let _ = writeln!(
        log,
        "# servebench: target `{name}`: image {}, command {}",
        plan.image,
        shell_join(&plan.command_line)
    );
    ensure_image(&docker, name, &plan.image, spec.pull, &mut log).await?;
    let digest = image_digest(&docker, &plan.image)
        .await
        .map_err(|e| docker_err(name, "image inspect", &e, &plan.image))?;
    let _ = writeln!(log, "# servebench: image digest {digest}");

    let options = CreateContainerOptionsBuilder::default()
        .name(&plan.container_name)
        .build();
    let created = docker
        .create_container(Some(options), plan.body.clone())
        .await
        .map_err(|e| docker_err(name, "create", &e, &plan.image))?;
    // From here on the handle owns the container: any early return removes it.
    let mut handle = ContainerHandle {
        docker: docker.clone(),
        endpoint,
        id: created.id.clone(),
        stop_timeout: spec.stop_timeout_s,
        log_task: None,
        removed: false,
    };
    let started = Instant::now();
    if let Err(e) = docker.start_container(&created.id, None).await {
        handle.stop().await;
        return Err(docker_err(name, "start", &e, &plan.image));
    }
    handle.log_task = Some(follow_logs(&docker, &created.id, log));
    let base_url = match published_port(&docker, &created.id, plan.container_port).await {
        Ok(port) => format!("http://127.0.0.1:{port}"),
        Err(problem) => {
            // The container may have died before its port was published: say how it ended.
            let status = handle.liveness().await;
            handle.stop().await;
            let tail = LogTail::read(&log_path, ERROR_TAIL_LINES);
            return Err(match status {
                Liveness::Exited { code, detail } => LaunchError::ExitedEarly {
                    name: name.to_string(),
                    status: detail,
                    code,
                    tail: Box::new(tail),
                },
                _ => LaunchError::Docker {
                    name: name.to_string(),
                    action: "inspect".into(),
                    cause: problem,
                    hint: format!("{tail}"),
                },
            });
        }
    };
    let mut facts = Facts::bare(name, "docker", spec.engine.name(), &base_url);
    facts.image = Some(plan.image.clone());
    facts.image_digest = Some(digest);
    facts.command = plan.command_line.clone();
    facts.container_id = Some(created.id.clone());
    facts.log_path = Some(log_path.clone());
    let waited = readiness.wait(&base_url, || handle.liveness()).await;
    match waited {
        Ok(()) => {
            facts.ready_after_s = Some(started.elapsed().as_secs_f64());
            Ok(Running {
                facts,
                inner: Inner::Docker(handle),
            })
        }
        Err(failure) => {
            handle.stop().await;
            let tail = LogTail::read(&log_path, ERROR_TAIL_LINES);
            Err(failure.into_error(name, &base_url, readiness, tail))
        }
    }
}

/// The host port the daemon published `container_port` on.
async fn published_port(docker: &Docker, id: &str, container_port: u16) -> Result<u16, String> {
    let key = format!("{container_port}/tcp");
    // The binding appears once the container runs; a few tries cover the gap.
    for _ in 0..20 {
        let info = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| e.to_string())?;
        let port = info
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|mut p| p.remove(&key))
            .flatten()
            .and_then(|b| b.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse::<u16>().ok());
        if let Some(p) = port {
            return Ok(p);
        }
        let running = info.state.and_then(|s| s.running).unwrap_or(false);
        if !running {
            return Err("the container is not running".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the daemon published no host port for {key}"))
}

/// Copies the container's stdout and stderr into the log file until the container ends.
fn follow_logs(docker: &Docker, id: &str, mut log: File) -> tokio::task::JoinHandle<()> {
    let options = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = docker.logs(id, Some(options));
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = stream.next().await {
            let bytes = chunk.into_bytes();
            let text = String::from_utf8_lossy(&bytes);
            if log.write_all(secret::scrub(&text).as_bytes()).is_err() {
                break;
            }
        }
        let _ = log.flush();
    })
}

/// A created container. Dropping it removes the container (synchronously, best effort).
pub(crate) struct ContainerHandle {
    docker: Docker,
    endpoint: Endpoint,
    id: String,
    stop_timeout: u32,
    log_task: Option<tokio::task::JoinHandle<()>>,
    removed: bool,
}

impl fmt::Debug for ContainerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerHandle")
            .field("id", &self.id)
            .field("removed", &self.removed)
            .finish()
    }
}

impl ContainerHandle {
    pub(crate) async fn liveness(&self) -> Liveness {
        match self
            .docker
            .inspect_container(&self.id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running.unwrap_or(false) {
                    return Liveness::Alive;
                }
                let code = state.exit_code;
                let mut detail = match code {
                    Some(c) => format!("container exited with code {c}"),
                    None => "container stopped".to_string(),
                };
                if state.oom_killed.unwrap_or(false) {
                    detail.push_str(", killed for lack of memory (OOM)");
                }
                if let Some(err) = state.error.filter(|e| !e.is_empty()) {
                    detail.push_str(&format!(": {err}"));
                }
                Liveness::Exited { code, detail }
            }
            Err(e) if is_not_found(&e) => Liveness::Exited {
                code: None,
                detail: "the container is gone".into(),
            },
            Err(e) => Liveness::Unknown(format!("docker inspect failed: {e}")),
        }
    }

    /// `docker stop` (the image's stop signal, then SIGKILL after the grace), then remove.
    pub(crate) async fn stop(&mut self) {
        if self.removed {
            return;
        }
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(self.stop_timeout).unwrap_or(i32::MAX))
            .build();
        let _ = self.docker.stop_container(&self.id, Some(options)).await;
        if let Some(task) = self.log_task.take() {
            // The log stream ends with the container; don't hang on a daemon that lingers.
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let _ = self.docker.remove_container(&self.id, Some(options)).await;
        self.removed = true;
    }
}

impl Drop for ContainerHandle {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Some(task) = self.log_task.take() {
            task.abort();
        }
        // Drop cannot await, and may run inside a runtime (where block_on panics) or during its
        // shutdown: remove the container from a thread with a runtime and client of its own.
        let endpoint = self.endpoint.clone();
        let id = self.id.clone();
        let worker = std::thread::spawn(move || remove_now(&endpoint, &id));
        let _ = worker.join();
        self.removed = true;
    }
}

fn remove_now(endpoint: &Endpoint, id: &str) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok(docker) = endpoint.client() else {
            return;
        };
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            docker.remove_container(id, Some(options)),
        )
        .await;
    });
}

/// Removes the containers that servebench runs left behind: labelled `servebench=1` and made
/// by a process that is gone (a run killed with SIGKILL, or a crash). Containers of runs still
/// going are left alone. Returns the names removed.
pub async fn remove_leftovers() -> Result<Vec<String>, LaunchError> {
    let docker = connect().await?;
    let filters = HashMap::from([("label", vec!["servebench=1"])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let found = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| docker_err("leftovers", "list", &e, ""))?;
    let mut removed = Vec::new();
    for c in found {
        let Some(id) = c.id else { continue };
        let owner = c
            .labels
            .as_ref()
            .and_then(|l| l.get(&format!("{LABEL}.pid")))
            .and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(process_alive) {
            continue;
        }
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if docker.remove_container(&id, Some(options)).await.is_ok() {
            let name = c.names.and_then(|n| n.into_iter().next()).unwrap_or(id);
            removed.push(name.trim_start_matches('/').to_string());
        }
    }
    Ok(removed)
}

/// Whether a process with this id exists on this host (EPERM: it exists, someone else's).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 checks existence only.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests;
