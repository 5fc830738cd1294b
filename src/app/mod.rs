//! Orchestration of each subcommand: start what is needed, run, write results, decide the exit
//! status. No timing math and no statistics live here — only the order of things.

mod preflight;
mod run;
pub(crate) mod signals;

pub use run::{run_benchmark, run_benchmark_until, RunOutcome};

use crate::cli::{Cli, Command};
use std::fmt;

/// The process exit status, one variant per documented meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// Every measured request failed, or the run could not be done.
    Failed,
    /// Bad flags, config or input file.
    Usage,
    /// A `--fail-under-goodput` or `--fail-under-success-rate` gate was missed.
    GateMissed,
    /// The journal (or the summary) could not be written where asked, e.g. a full disk: the
    /// run was stopped at once and the summary of what was measured went to a fallback place.
    OutputFailed,
    /// SIGINT (Ctrl-C): a partial summary was written.
    Interrupted,
    /// SIGTERM (`timeout`, Docker, CI): a partial summary was written.
    Terminated,
    /// SIGHUP: a partial summary was written.
    HungUp,
}

impl ExitStatus {
    /// Ended by a signal (the run or study is partial).
    pub fn is_interrupt(self) -> bool {
        matches!(
            self,
            ExitStatus::Interrupted | ExitStatus::Terminated | ExitStatus::HungUp
        )
    }

    /// The status of a run interrupted for `cause`.
    pub fn of_interrupt(cause: crate::load::InterruptCause) -> ExitStatus {
        use crate::load::InterruptCause;
        match cause {
            InterruptCause::CtrlC => ExitStatus::Interrupted,
            InterruptCause::Terminate => ExitStatus::Terminated,
            InterruptCause::HangUp => ExitStatus::HungUp,
            InterruptCause::JournalFailed => ExitStatus::OutputFailed,
        }
    }
}

impl From<ExitStatus> for i32 {
    fn from(s: ExitStatus) -> i32 {
        match s {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::GateMissed => 3,
            ExitStatus::OutputFailed => 4,
            ExitStatus::Interrupted => signals::status_of(crate::load::InterruptCause::CtrlC),
            ExitStatus::Terminated => signals::status_of(crate::load::InterruptCause::Terminate),
            ExitStatus::HungUp => signals::status_of(crate::load::InterruptCause::HangUp),
        }
    }
}

/// An error that ends a command, with the exit status it maps to.
#[derive(Debug)]
pub struct AppError {
    pub status: ExitStatus,
    pub error: anyhow::Error,
}

impl AppError {
    pub fn usage(e: impl Into<anyhow::Error>) -> AppError {
        AppError {
            status: ExitStatus::Usage,
            error: e.into(),
        }
    }
    pub fn failed(e: impl Into<anyhow::Error>) -> AppError {
        AppError {
            status: ExitStatus::Failed,
            error: e.into(),
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Run a parsed command line to completion; returns the exit status. Errors are printed here.
pub fn main(cli: Cli) -> ExitStatus {
    // Before any config is checked against it: the soft open-file limit up to the hard one.
    crate::config::limits::raise_fd_limit();
    let result = match cli.command {
        Command::Run(args) => run::command(&args),
        Command::Serve(args) => crate::app::serve::command(&args),
        Command::Calibrate(args) => crate::app::calibrate::command(&args),
        Command::Report(args) => crate::app::report::command(&args),
        Command::Sim {
            command: crate::cli::SimCommand::Serve(args),
        } => sim::serve_command(&args),
        Command::Predict(args) => sim::predict_command(&args),
        Command::Suite(args) => crate::suite::command(&args),
        Command::Sweep(args) => sweep::sweep_command(&args),
        Command::Capacity(args) => sweep::capacity_command(&args),
        Command::Compare(args) => report::compare_command(&args),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            eprintln!("error: {e}");
            e.status
        }
    }
}

mod calibrate;
mod report;
mod serve;
pub mod sim;
mod sweep;

/// A `servebench run` command line (without the program and subcommand) as a validated
/// configuration: how calibrate, suite cells and sweep points express a run, so each is a run
/// a user could type, validated by the same code.
pub fn run_config_from_args<S: AsRef<str>>(
    args: &[S],
) -> Result<crate::config::RunConfig, AppError> {
    use clap::Parser;
    let argv = ["servebench", "run"]
        .into_iter()
        .chain(args.iter().map(AsRef::as_ref));
    let cli =
        Cli::try_parse_from(argv).map_err(|e| AppError::usage(anyhow::anyhow!(e.to_string())))?;
    match cli.command {
        Command::Run(a) => crate::config::RunConfig::from_args(&a).map_err(AppError::usage),
        _ => unreachable!("the command line starts with `run`"),
    }
}

/// The git commit servebench was built from, when it runs beside its source tree.
pub fn servebench_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// This machine's name, for result fingerprints.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

/// The client runtime, for orchestration outside this module (the suite).
pub fn runtime_pub(threads: Option<usize>) -> Result<tokio::runtime::Runtime, AppError> {
    runtime(threads, "servebench-client")
}

/// A multi-threaded tokio runtime with `threads` workers (default: one per core).
pub(crate) fn runtime(
    threads: Option<usize>,
    name: &str,
) -> Result<tokio::runtime::Runtime, AppError> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name(name);
    if let Some(n) = threads {
        b.worker_threads(n.max(1));
    }
    b.build()
        .map_err(|e| AppError::failed(anyhow::anyhow!("cannot start the async runtime: {e}")))
}
