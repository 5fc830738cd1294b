//! Shared by the integration tests that drive `run` in-process against the embedded server.

use clap::Parser;
use servebench::cli::{Cli, Command};
use servebench::config::RunConfig;
use std::path::Path;

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
