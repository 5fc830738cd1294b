//! Shared by the integration tests that drive `run` in-process against the embedded server
//! or the served simulator.
#![allow(dead_code, reason = "each test crate uses a subset of these helpers")]

use clap::Parser;
use servebench::cli::{Cli, Command};
use servebench::config::RunConfig;
use servebench::server::{spawn_local, RunningServer, ServerOptions};
use servebench::sim::{Catalog, PredictOptions, SimBackend};
use std::path::Path;
use std::sync::Arc;

/// `servebench run --no-progress --result-dir DIR ARGS…`, parsed and validated as the binary
/// would; the error is the message the user would see.
pub fn run_config(dir: &Path, args: &[&str]) -> Result<RunConfig, String> {
    let dir = dir.to_str().expect("a UTF-8 temporary directory");
    let mut argv = vec!["servebench", "run", "--no-progress", "--result-dir", dir];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    {
        Command::Run(a) => RunConfig::from_args(&a).map_err(|e| e.to_string()),
        _ => unreachable!("the argv starts with `run`"),
    }
}

/// The multi-threaded runtime the binary runs a benchmark on (two workers, as on CI).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The simulator served over loopback as `sim serve` runs it, on a runtime of its own (never
/// the client's workers). Fields drop in order: the server, then the engine, then the runtime.
pub struct SimServer {
    pub server: RunningServer,
    /// For its `/metrics` and facts.
    pub backend: Arc<SimBackend>,
    pub rt: tokio::runtime::Runtime,
}

/// Serve the engine `opts` describes, answering to `model`.
pub fn serve_sim(opts: &PredictOptions, model: &str) -> SimServer {
    let rt = rt();
    let engine = opts
        .engine(&Catalog::builtin())
        .expect("the built-in catalog has the engine");
    let backend = rt.block_on(async { Arc::new(SimBackend::spawn(engine, model)) });
    let server = rt
        .block_on(spawn_local(
            backend.clone(),
            ServerOptions {
                model: model.into(),
                max_model_len: backend.facts().max_model_len,
                ..ServerOptions::default()
            },
        ))
        .expect("the simulator serves on loopback");
    SimServer {
        server,
        backend,
        rt,
    }
}

/// The `servebench` binary this test crate was built with.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_servebench"))
}

/// A child process killed on drop, so a failing test leaves nothing running.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `servebench serve --port 0 ARGS…` as a process of its own, and the URL it printed first.
pub fn spawn_serve(args: &[&str]) -> (Child, String) {
    use std::io::BufRead;
    let mut server = Child(
        bin()
            .args(["serve", "--port", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("servebench serve starts"),
    );
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("servebench serve prints its URL");
    (server, line.trim().to_string())
}

/// A slow run of the real binary against its embedded server: `requests` requests, 8 in
/// flight, 8 tokens at 5 ms each (2000 take ~10 s if left alone), plus `extra` flags and
/// `env`, into `dir` as `name.json` / `name.journal.jsonl`. Returns the child (killed on drop,
/// stderr piped), the journal's path and the summary's path.
pub fn start_slow_run(
    dir: &Path,
    name: &str,
    requests: u64,
    extra: &[&str],
    env: &[(&str, &Path)],
) -> (Child, std::path::PathBuf, std::path::PathBuf) {
    let mut cmd = bin();
    cmd.args([
        "run",
        "--no-progress",
        "--telemetry-interval-ms",
        "0",
        "--no-nvml",
    ])
    .args([
        "--num-prompts",
        &requests.to_string(),
        "--max-concurrency",
        "8",
    ])
    .args([
        "--random-input-len",
        "8",
        "--random-output-len",
        "8",
        "--ignore-eos",
    ])
    .args(["--ttft-ms", "2", "--itl-ms", "5"])
    .args(extra)
    .args(["--result-filename", &format!("{name}.json"), "--result-dir"])
    .arg(dir)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = Child(cmd.spawn().expect("servebench run starts"));
    (
        child,
        dir.join(format!("{name}.journal.jsonl")),
        dir.join(format!("{name}.json")),
    )
}

/// Complete record lines in a journal so far (the header and end line have no `"outcome"`).
pub fn journal_records(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| {
            t.split_inclusive('\n')
                .filter(|l| l.ends_with('\n') && l.contains("\"outcome\""))
                .count()
        })
        .unwrap_or(0)
}

/// Wait until the journal holds `n` records; the run ending first, or 30 s, fails the test.
pub fn wait_for_records(path: &Path, n: usize, child: &mut Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while journal_records(path) < n {
        if let Some(st) = child.0.try_wait().unwrap() {
            panic!("the run ended ({st}) before {n} records");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached {n} records"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Wait for the child to exit (not within `limit`: a hang, the test fails) and return its
/// status and what it wrote to stderr (when piped).
pub fn wait_exit(
    child: &mut Child,
    limit: std::time::Duration,
) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let deadline = std::time::Instant::now() + limit;
    let st = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the process did not exit: a hang"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(e) = child.0.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    (st, err)
}
