//! A locally installed engine as a child process (`python -m vllm.entrypoints.openai.api_server
//! …`, `python -m sglang.launch_server …`, `llama-server …`).
//!
//! The child leads its own process group, so that the workers an engine forks (vLLM's engine
//! core, tokenizer pools) are signalled with it: SIGTERM to the group, a grace period, then
//! SIGKILL. Its stdout and stderr go to `<log_dir>/<name>.log`.

use super::logs::LogTail;
use super::readiness::Readiness;
use super::secret::{given_secrets, redact_args, shell_join, RedactedEnv};
use super::{Facts, Inner, LaunchError, Liveness, Running, ERROR_TAIL_LINES};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How to run an engine locally. `{port}` in `command` and in `env` values becomes the port.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Program and arguments, e.g. `["python", "-m", "vllm.entrypoints.openai.api_server",
    /// "--model", "/models/tiny", "--host", "127.0.0.1", "--port", "{port}"]`.
    pub command: Vec<String>,
    /// Added to (and overriding) servebench's own environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The port the engine listens on, on 127.0.0.1; 0 = a free one chosen by servebench.
    #[serde(default)]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// For the report; guessed from the command when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Grace between SIGTERM and SIGKILL.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_s: u64,
}

fn default_stop_timeout() -> u64 {
    10
}

impl fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("command", &redact_args(&self.command))
            .field("env", &RedactedEnv(&self.env))
            .field("port", &self.port)
            .field("workdir", &self.workdir)
            .field("engine", &self.engine)
            .field("stop_timeout_s", &self.stop_timeout_s)
            .finish()
    }
}

impl ProcessSpec {
    /// A spec with defaults for everything but the command.
    pub fn new(command: Vec<String>) -> ProcessSpec {
        ProcessSpec {
            command,
            env: BTreeMap::new(),
            port: 0,
            workdir: None,
            engine: None,
            stop_timeout_s: default_stop_timeout(),
        }
    }

    fn engine_name(&self) -> String {
        if let Some(e) = &self.engine {
            return e.clone();
        }
        let joined = self.command.join(" ");
        ["vllm", "sglang", "llama-server", "mistralrs", "servebench"]
            .iter()
            .find(|e| joined.contains(*e))
            .map(|e| match *e {
                "llama-server" => "llama.cpp".to_string(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "custom".to_string())
    }
}

/// `{port}` replaced in every word.
pub(crate) fn substitute(words: &[String], port: u16) -> Vec<String> {
    words
        .iter()
        .map(|w| w.replace("{port}", &port.to_string()))
        .collect()
}

/// A port nothing listens on right now. Another program could take it before the engine binds
/// it; the engine then fails to start and says so in its log, which the error shows.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn open_log(name: &str, log_dir: &Path) -> Result<(PathBuf, File), LaunchError> {
    let path = log_dir.join(format!("{name}.log"));
    let err = |e: std::io::Error| LaunchError::LogFile {
        name: name.to_string(),
        path: path.clone(),
        cause: e.to_string(),
    };
    std::fs::create_dir_all(log_dir).map_err(err)?;
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(err)?;
    Ok((path, file))
}

pub(crate) async fn start(
    name: &str,
    spec: &ProcessSpec,
    readiness: &Readiness,
    log_dir: &Path,
) -> Result<Running, LaunchError> {
    let config = |problem: String| LaunchError::Config {
        name: name.to_string(),
        problem,
    };
    if spec.command.is_empty() {
        return Err(config(
            "`command` is empty; give the program and its arguments".into(),
        ));
    }
    let port = match spec.port {
        0 => free_port().map_err(|e| config(format!("cannot find a free port: {e}")))?,
        // Something already listening there would pass the readiness check in the engine's
        // place (a forgotten server from an earlier run, say).
        p if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() => {
            return Err(config(format!(
                "port {p} is already in use on 127.0.0.1; stop what listens there, or set port = 0 to let servebench pick one"
            )))
        }
        p => p,
    };
    let argv = substitute(&spec.command, port);
    let env: BTreeMap<String, String> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.replace("{port}", &port.to_string())))
        .collect();
    let (log_path, mut log) = open_log(name, log_dir)?;
    // The header is ours; the engine's output follows through the shared file offset.
    let _ = writeln!(
        log,
        "# servebench: target `{name}`: {} (port {port})",
        shell_join(&redact_args(&argv))
    );
    let child = spawn(name, &argv, &env, spec.workdir.as_deref(), &log)?;
    let started = Instant::now();
    let mut handle = ProcessHandle {
        pgid: child.id(),
        child: Mutex::new(child),
        grace: Duration::from_secs(spec.stop_timeout_s),
        stopped: false,
        log: Some((log_path.clone(), given_secrets(&argv, &env))),
    };
    let mut facts = Facts::bare(
        name,
        "process",
        &spec.engine_name(),
        &format!("http://127.0.0.1:{port}"),
    );
    facts.command = redact_args(&argv);
    facts.pid = Some(handle.pgid);
    facts.log_path = Some(log_path.clone());
    let waited = readiness
        .wait(&facts.base_url, || std::future::ready(handle.liveness()))
        .await;
    match waited {
        Ok(()) => {
            facts.ready_after_s = Some(started.elapsed().as_secs_f64());
            Ok(Running {
                facts,
                inner: Inner::Process(handle),
            })
        }
        Err(failure) => {
            handle.stop().await;
            let tail = LogTail::read(&log_path, ERROR_TAIL_LINES);
            Err(failure.into_error(name, &facts.base_url, readiness, tail))
        }
    }
}

fn spawn(
    name: &str,
    argv: &[String],
    env: &BTreeMap<String, String>,
    workdir: Option<&Path>,
    log: &File,
) -> Result<Child, LaunchError> {
    let spawn_err = |e: std::io::Error| LaunchError::Spawn {
        name: name.to_string(),
        program: argv[0].clone(),
        cause: e.to_string(),
    };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(spawn_err)?)
        .stderr(log.try_clone().map_err(spawn_err)?)
        // Its own group: the engine's workers get the signals too, and a Ctrl-C at our
        // terminal does not reach the engine before we can stop it in order.
        .process_group(0);
    if let Some(dir) = workdir {
        cmd.current_dir(dir);
    }
    // If servebench dies without running its destructors (SIGKILL, an abort), the engine gets
    // SIGTERM from the kernel instead of running on, holding memory and the port. Linux sends
    // it when the *thread* that spawned the child ends: start targets from async tasks on the
    // runtime (whose worker threads live as long as it does), not from spawn_blocking.
    // SAFETY: the closure runs between fork and exec and calls only prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().map_err(spawn_err)
}

/// A started child process group. Dropping it kills the group.
pub(crate) struct ProcessHandle {
    pgid: u32,
    child: Mutex<Child>,
    grace: Duration,
    stopped: bool,
    /// The log the engine writes itself, and the credentials it was given: scrubbed from the
    /// log once the engine is stopped (it may have printed them).
    log: Option<(PathBuf, Vec<String>)>,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pgid", &self.pgid)
            .field("stopped", &self.stopped)
            .finish()
    }
}

/// "exited with code 1" / "killed by signal 9".
pub(crate) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => format!("ended: {status}"),
    }
}

impl ProcessHandle {
    pub(crate) fn liveness(&self) -> Liveness {
        let Ok(mut child) = self.child.lock() else {
            return Liveness::Unknown("process handle poisoned".into());
        };
        match child.try_wait() {
            Ok(None) => Liveness::Alive,
            Ok(Some(status)) => Liveness::Exited {
                code: status.code().map(i64::from),
                detail: describe(status),
            },
            Err(e) => Liveness::Unknown(format!("cannot query process {}: {e}", self.pgid)),
        }
    }

    fn leader_exited(&self) -> bool {
        !matches!(self.liveness(), Liveness::Alive)
    }

    /// SIGTERM to the group; after the grace period, SIGKILL to whatever is left of it.
    pub(crate) async fn stop(&mut self) {
        if self.stopped {
            return;
        }
        signal_group(self.pgid, libc::SIGTERM);
        let deadline = Instant::now() + self.grace;
        // Wait for the whole group, not just the leader: an engine's workers may outlive it.
        while Instant::now() < deadline && (!self.leader_exited() || group_exists(self.pgid)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal_group(self.pgid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !self.leader_exited() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stopped = true;
        self.scrub_log();
    }

    fn scrub_log(&mut self) {
        if let Some((path, secrets)) = self.log.take() {
            super::secret::scrub_file(&path, &secrets);
        }
    }

    /// Synchronous and quick, for Drop: SIGKILL the group and reap the leader.
    fn kill_now(&mut self) {
        signal_group(self.pgid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !self.leader_exited() {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stopped = true;
        self.scrub_log();
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if !self.stopped {
            self.kill_now();
        }
    }
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // never signal "every process" or init's group
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Whether any process of the group is left (zombies included: they still hold the id).
pub fn group_exists(pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_placeholder_is_substituted_everywhere() {
        let got = substitute(
            &[
                "x".into(),
                "--port".into(),
                "{port}".into(),
                "u=:{port}/".into(),
            ],
            8123,
        );
        assert_eq!(got, vec!["x", "--port", "8123", "u=:8123/"]);
    }

    #[test]
    fn engine_is_guessed_from_the_command() {
        let spec = ProcessSpec::new(vec![
            "python".into(),
            "-m".into(),
            "vllm.entrypoints.openai.api_server".into(),
        ]);
        assert_eq!(spec.engine_name(), "vllm");
        assert_eq!(ProcessSpec::new(vec!["foo".into()]).engine_name(), "custom");
    }

    #[test]
    fn toml_rejects_unknown_keys() {
        let ok: ProcessSpec = toml::from_str("command = [\"a\"]\nport = 0").unwrap();
        assert_eq!(ok.stop_timeout_s, 10);
        assert!(toml::from_str::<ProcessSpec>("command = [\"a\"]\nports = 1").is_err());
    }

    #[test]
    fn debug_hides_secret_env_values() {
        let mut spec = ProcessSpec::new(vec!["x".into(), "--api-key".into(), "sk-live".into()]);
        spec.env.insert("HF_TOKEN".into(), "hf_abcdefgh".into());
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("hf_abcdefgh") && !shown.contains("sk-live"),
            "{shown}"
        );
    }
}
