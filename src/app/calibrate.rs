//! `servebench calibrate`: how fast can this machine's client go? Three runs against the
//! embedded server streaming as fast as it can, over loopback, with the same code path as
//! `run` (journal and per-token recording on):
//! 1. token throughput: N streams of long outputs (tokens/s and SSE events/s);
//! 2. request rate: `max_tokens` 1 at high concurrency (requests/s);
//! 3. open-loop precision: Poisson arrivals at a fixed rate (achieved rate, dispatch lag).
//!
//! The numbers are a ceiling for this machine: a server measured below them is not being
//! limited by servebench.

use super::{run::run_benchmark, run_config_from_args, runtime, AppError, ExitStatus};
use crate::cli::CalibrateArgs;
use crate::config::RunConfig;
use crate::metrics::Summary;
use anyhow::{anyhow, Context};
use serde::Serialize;

/// One calibration measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub command: String,
    pub duration_s: f64,
    pub completed: u64,
    pub failed: u64,
    pub output_tokens_per_s: f64,
    pub events_per_s: f64,
    pub requests_per_s: f64,
    pub achieved_send_rate: Option<f64>,
    pub dispatch_lag_p50_ms: f64,
    pub dispatch_lag_p99_ms: f64,
    pub client_cpu_percent: Option<f64>,
    pub client_limited: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub servebench_version: String,
    pub host: String,
    pub cores: usize,
    pub client_threads: usize,
    pub server_threads: usize,
    pub measurements: Vec<Measurement>,
}

fn measurement(name: &str, argv: &[String], s: &Summary) -> Measurement {
    // Events = ICL samples (one per gap) + the first event of each successful request.
    let events = s.icl_ms.count as f64 + s.completed as f64;
    let dur = s.duration_s.max(1e-9);
    let sc = &s.self_check;
    Measurement {
        name: name.to_string(),
        command: format!("run {}", argv.join(" ")),
        duration_s: s.duration_s,
        completed: s.completed,
        failed: s.failed,
        output_tokens_per_s: s.output_throughput,
        events_per_s: events / dur,
        requests_per_s: s.request_throughput,
        achieved_send_rate: sc.achieved_send_rate,
        dispatch_lag_p50_ms: sc.dispatch_lag_p50_ms,
        dispatch_lag_p99_ms: sc.dispatch_lag_p99_ms,
        client_cpu_percent: sc.cpu_percent,
        client_limited: sc.client_limited,
    }
}

pub(super) fn command(args: &CalibrateArgs) -> Result<ExitStatus, AppError> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return Err(AppError::usage(anyhow!(
            "invalid --seconds `{}`: must be a positive number",
            args.seconds
        )));
    }
    let dir = args.result_dir.join("calibrate");
    let common = |extra: &[String]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--ttft-ms",
            "0",
            "--itl-ms",
            "0",
            "--random-input-len",
            "16",
            "--ignore-eos",
            "--no-progress",
            "--server-threads",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(args.server_threads.to_string());
        v.extend(["--duration".into(), args.seconds.to_string()]);
        v.extend(["--result-dir".into(), dir.display().to_string()]);
        v.extend_from_slice(extra);
        v
    };
    let plans: Vec<(&str, Vec<String>)> = vec![
        (
            "token throughput",
            common(&[
                "--max-concurrency".into(),
                args.streams.to_string(),
                "--random-output-len".into(),
                args.output_len.to_string(),
            ]),
        ),
        (
            "request rate",
            common(&[
                "--max-concurrency".into(),
                args.request_concurrency.to_string(),
                "--random-output-len".into(),
                "1".into(),
            ]),
        ),
        (
            "open-loop precision",
            common(&[
                "--request-rate".into(),
                args.rate.to_string(),
                "--random-output-len".into(),
                "16".into(),
            ]),
        ),
    ];
    let configs: Vec<(String, Vec<String>, RunConfig)> = plans
        .into_iter()
        .map(|(n, argv)| run_config_from_args(&argv).map(|c| (n.to_string(), argv, c)))
        .collect::<Result<_, _>>()?;

    crate::config::limits::threads("--client-threads", args.client_threads)
        .map_err(|e| AppError::usage(anyhow::Error::new(e)))?;
    let rt = runtime(Some(args.client_threads), "servebench-client")?;
    let mut out = Calibration {
        servebench_version: env!("CARGO_PKG_VERSION").into(),
        host: super::hostname().unwrap_or_default(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        client_threads: args.client_threads,
        server_threads: args.server_threads,
        measurements: Vec::new(),
    };
    for (name, argv, cfg) in &configs {
        eprintln!("calibrate: {name} ({} s)…", args.seconds);
        let outcome = rt.block_on(run_benchmark(cfg, false))?;
        out.measurements
            .push(measurement(name, argv, &outcome.summary));
    }
    print_table(&out);
    std::fs::create_dir_all(&args.result_dir)
        .with_context(|| format!("creating {}", args.result_dir.display()))
        .map_err(AppError::failed)?;
    let path = args.result_dir.join(format!(
        "calibration-{}.json",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    ));
    let json = serde_json::to_string_pretty(&out).map_err(AppError::failed)?;
    crate::report::write_atomic(&path, json.as_bytes())
        .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    eprintln!("calibration: {}", path.display());
    Ok(ExitStatus::Success)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn print_table(c: &Calibration) {
    println!(
        "client ceiling on {} ({} cores; client {} thread(s), server {} thread(s))",
        c.host, c.cores, c.client_threads, c.server_threads
    );
    println!(
        "{:<20} {:>12} {:>12} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "measurement", "out tok/s", "events/s", "req/s", "sent/s", "lag p99", "cpu %", "failed"
    );
    for m in &c.measurements {
        println!(
            "{:<20} {:>12.0} {:>12.0} {:>10.1} {:>10} {:>10} {:>8} {:>8}",
            m.name,
            m.output_tokens_per_s,
            m.events_per_s,
            m.requests_per_s,
            opt(m.achieved_send_rate, 1),
            format!("{:.3}", m.dispatch_lag_p99_ms),
            opt(m.client_cpu_percent, 0),
            m.failed
        );
    }
}
