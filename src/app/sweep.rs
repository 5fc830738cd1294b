//! `servebench sweep` and `servebench capacity`: many runs of one deployment at growing load.
//! Each point is an ordinary `run` (its own result file and journal), so any point can be
//! rerun by hand; the sweep adds a table, a JSON of every point and a latency-vs-throughput
//! chart. The capacity search's logic is `crate::sweep::search`.

use super::{run_benchmark_until, runtime, AppError, ExitStatus};
use crate::cli::{CapacityArgs, SweepArgs};
use crate::config::RunConfig;
use crate::load::Interrupt;
use crate::metrics::Summary;
use crate::report::study::{render_latency_throughput, SweepPoint};
use crate::sweep::{search, CapacitySearch};
use crate::workload::Workload;
use anyhow::{anyhow, Context};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One point of a sweep, as written to `sweep.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub load: String,
    pub result_file: PathBuf,
    pub completed: u64,
    pub failed: u64,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub good_fraction: Option<f64>,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub e2el_p50_ms: f64,
    pub e2el_p99_ms: f64,
}

fn row(load: String, path: PathBuf, s: &Summary) -> SweepRow {
    let p = |d: &crate::metrics::Distribution, q: f64| d.percentile(q).unwrap_or(0.0);
    SweepRow {
        load,
        result_file: path,
        completed: s.completed,
        failed: s.failed,
        request_throughput: s.request_throughput,
        output_throughput: s.output_throughput,
        good_fraction: s.goodput.as_ref().map(|g| g.good_fraction),
        ttft_p50_ms: p(&s.ttft_ms, 50.0),
        ttft_p99_ms: p(&s.ttft_ms, 99.0),
        e2el_p50_ms: p(&s.e2el_ms, 50.0),
        e2el_p99_ms: p(&s.e2el_ms, 99.0),
    }
}

/// A `run` configuration from the user's run flags plus the sweep's own.
fn point_config(run_args: &[String], extra: &[String]) -> Result<RunConfig, AppError> {
    let args: Vec<&String> = run_args.iter().chain(extra).collect();
    super::run_config_from_args(&args)
}

/// The flags a sweep sets itself must not also come from the user.
fn refuse(run_args: &[String], owned: &[&str], why: &str) -> Result<(), AppError> {
    for a in run_args {
        let flag = a.split('=').next().unwrap_or(a);
        if owned.contains(&flag) {
            return Err(AppError::usage(anyhow!(
                "{flag} is set by the {why} for each point; remove it from the run flags after --"
            )));
        }
    }
    Ok(())
}

fn parse_list(field: &str, s: &str) -> Result<Vec<f64>, AppError> {
    let v: Result<Vec<f64>, _> = s.split(',').map(|x| x.trim().parse::<f64>()).collect();
    match v {
        Ok(v) if !v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0) => Ok(v),
        _ => Err(AppError::usage(anyhow!(
            "invalid {field} `{s}`: give positive numbers separated by commas, e.g. 1,2,4,8"
        ))),
    }
}

fn write_outputs(
    dir: &Path,
    name: &str,
    rows: &[SweepRow],
    subtitle: &str,
) -> Result<(), AppError> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating {}", dir.display()))
        .map_err(AppError::failed)?;
    let json = serde_json::to_string_pretty(rows).map_err(AppError::failed)?;
    crate::report::write_atomic(&dir.join(format!("{name}.json")), json.as_bytes())
        .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    let mut points = Vec::new();
    for r in rows {
        for (series, y) in [("E2E P50", r.e2el_p50_ms), ("E2E P99", r.e2el_p99_ms)] {
            points.push(SweepPoint {
                series: series.into(),
                label: r.load.clone(),
                x: r.output_throughput,
                y: y / 1000.0,
            });
        }
    }
    let chart = render_latency_throughput(
        "Latency vs throughput",
        subtitle,
        "End-to-end latency (s)",
        &points,
    )
    .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    for (ext, bytes) in [("png", chart.png.as_slice()), ("svg", chart.svg.as_bytes())] {
        crate::report::write_atomic(&dir.join(format!("{name}_{}.{ext}", chart.name)), bytes)
            .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    }
    println!(
        "{:<12} {:>10} {:>12} {:>10} {:>12} {:>12} {:>8}",
        "load", "req/s", "out tok/s", "good %", "TTFT p99 ms", "E2E p99 ms", "failed"
    );
    for r in rows {
        println!(
            "{:<12} {:>10.2} {:>12.1} {:>10} {:>12.1} {:>12.1} {:>8}",
            r.load,
            r.request_throughput,
            r.output_throughput,
            r.good_fraction
                .map_or("-".into(), |g| format!("{:.1}", g * 100.0)),
            r.ttft_p99_ms,
            r.e2el_p99_ms,
            r.failed
        );
    }
    eprintln!("sweep: {}", dir.join(format!("{name}.json")).display());
    Ok(())
}

pub(super) fn sweep_command(args: &SweepArgs) -> Result<ExitStatus, AppError> {
    let (flag, values) = match (&args.concurrency, &args.rates) {
        (Some(c), None) => ("--max-concurrency", parse_list("--concurrency", c)?),
        (None, Some(r)) => ("--request-rate", parse_list("--rates", r)?),
        _ => {
            return Err(AppError::usage(anyhow!(
                "give exactly one of --concurrency 1,2,4 or --rates 1,2,4"
            )))
        }
    };
    refuse(
        &args.run_args,
        &[flag, "--result-filename", "--no-progress"],
        "sweep",
    )?;
    // With conversations, --max-concurrency counts conversations at once and --request-rate
    // is conversation starts per second (as in `run`); the labels say so.
    let conversations = matches!(
        point_config(&args.run_args, &[])?.workload,
        Workload::MultiTurn(_)
    );
    let rt = runtime(None, "servebench-client")?;
    // A signal ends the point in progress as it ends a run (partial summary), then the sweep,
    // with the signal's status and the table of the points done.
    let interrupt = Interrupt::default();
    let _listener = listen(
        &rt,
        &interrupt,
        "finishing the point in progress, then stopping",
    );
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let mut rows = Vec::new();
    let mut dir = PathBuf::from("results");
    let mut stopped = None;
    for v in values {
        let shown = match (flag, conversations) {
            ("--max-concurrency", false) => format!("c={v}"),
            ("--max-concurrency", true) => format!("{v} conversations"),
            (_, false) => format!("{v} req/s"),
            (_, true) => format!("{v} conv/s"),
        };
        let value = if flag == "--max-concurrency" {
            format!("{}", v as usize)
        } else {
            v.to_string()
        };
        let cfg = point_config(
            &args.run_args,
            &[
                flag.into(),
                value.clone(),
                "--result-filename".into(),
                format!(
                    "sweep-{stamp}-{}{value}.json",
                    flag.trim_start_matches("--")
                ),
                "--no-progress".into(),
            ],
        )?;
        dir = cfg.result_dir.clone();
        eprintln!("sweep: {shown} …");
        let out = rt.block_on(run_benchmark_until(&cfg, false, interrupt.clone()))?;
        rows.push(row(shown, out.summary_path.clone(), &out.summary));
        if out.status.is_interrupt() {
            stopped = Some(out.status);
            break;
        }
    }
    write_outputs(
        &dir,
        &format!("sweep-{stamp}"),
        &rows,
        &format!("sweep over {flag}"),
    )?;
    Ok(stopped.unwrap_or(ExitStatus::Success))
}

/// Start listening for SIGINT, SIGTERM, SIGHUP on `rt` (see `app::signals`).
fn listen(
    rt: &tokio::runtime::Runtime,
    interrupt: &Interrupt,
    what: &'static str,
) -> super::signals::Listener {
    let _in_runtime = rt.enter();
    super::signals::Listener::start(interrupt.clone(), what)
}

/// What `capacity` writes: the search and the confirming run.
#[derive(Debug, Serialize)]
struct CapacityReport {
    search: crate::sweep::CapacityResult,
    target_good_fraction: f64,
    confirm: Option<SweepRow>,
    cost: Option<crate::cost::CostSummary>,
}

pub(super) fn capacity_command(args: &CapacityArgs) -> Result<ExitStatus, AppError> {
    refuse(
        &args.run_args,
        &[
            "--request-rate",
            "--num-prompts",
            "--duration",
            "--result-filename",
            "--no-progress",
        ],
        "capacity search",
    )?;
    if !args.run_args.iter().any(|a| a.starts_with("--goodput")) {
        return Err(AppError::usage(anyhow!(
            "a capacity needs objectives: add e.g. `--goodput ttft:500 tpot:50` to the run flags after --"
        )));
    }
    if !(args.target > 0.0 && args.target <= 1.0) {
        return Err(AppError::usage(anyhow!(
            "invalid --target `{}`: a fraction of good requests, e.g. 0.95",
            args.target
        )));
    }
    capacity_numbers(args).map_err(|e| AppError::usage(anyhow::Error::new(e)))?;
    let price = match &args.instance {
        Some(i) => Some(
            crate::cost::Price::from_catalog(&crate::sim::catalog::Catalog::builtin(), i)
                .map_err(|e| AppError::usage(anyhow::Error::new(e)))?,
        ),
        None => None,
    };
    // With conversations the rate is conversation starts per second and the count is
    // requests (turns): a probe of `seconds_per_point` needs rate × seconds × turns per
    // conversation requests, and the pass must hold that many conversations.
    let turns_per_start = match &point_config(&args.run_args, &[])?.workload {
        Workload::MultiTurn(m) => {
            let per = m.total_turns() as f64 / f64::from(m.conversations.max(1));
            eprintln!(
                "capacity: multi-turn workload: rates are conversation starts per second \
                 ({per:.1} turns each on average); each probe starts at most the pass's {} \
                 conversations (--conversation-num)",
                m.conversations
            );
            Some(per)
        }
        _ => None,
    };
    let unit = if turns_per_start.is_some() {
        "conv/s"
    } else {
        "req/s"
    };
    let rt = runtime(None, "servebench-client")?;
    let interrupt = Interrupt::default();
    let _listener = listen(
        &rt,
        &interrupt,
        "finishing the point in progress, then stopping",
    );
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let mut rows: Vec<SweepRow> = Vec::new();
    let mut dir = PathBuf::from("results");
    let mut n = 0usize;
    let mut run_at = |rate: f64, tag: &str| -> Result<(SweepRow, Summary), AppError> {
        n += 1;
        // Enough requests for the rate to be a rate: the seconds asked, at least min_requests.
        let starts = rate * args.seconds_per_point * turns_per_start.unwrap_or(1.0);
        let requests = (starts.ceil() as u64).max(args.min_requests);
        let cfg = point_config(
            &args.run_args,
            &[
                "--request-rate".into(),
                rate.to_string(),
                "--num-prompts".into(),
                requests.to_string(),
                "--result-filename".into(),
                format!("capacity-{stamp}-{n:02}-{tag}.json"),
                "--no-progress".into(),
            ],
        )?;
        dir = cfg.result_dir.clone();
        let out = rt.block_on(run_benchmark_until(&cfg, false, interrupt.clone()))?;
        if out.status.is_interrupt() {
            // A partial point says nothing about capacity: the search stops here.
            return Err(AppError {
                status: out.status,
                error: anyhow::anyhow!(
                    "capacity search stopped at {rate:.3} {unit}; the partial point is at {}",
                    out.summary_path.display()
                ),
            });
        }
        let r = row(
            format!("{rate:.3} {unit}"),
            out.summary_path.clone(),
            &out.summary,
        );
        eprintln!(
            "capacity: {rate:.3} {unit} → {:.1} % good",
            r.good_fraction.unwrap_or(0.0) * 100.0
        );
        Ok((r, out.summary))
    };
    let cfg = CapacitySearch {
        target: args.target,
        start_rate: args.start_rate,
        tolerance: args.tolerance,
        max_probes: args.max_probes,
        ..CapacitySearch::default()
    };
    let result = search(&cfg, |rate| {
        let (r, _) = run_at(rate, "probe")?;
        let g = r.good_fraction.unwrap_or(0.0);
        rows.push(r);
        Ok::<_, AppError>(g)
    })?;
    let (confirm, cost) = if result.capacity > 0.0 {
        let (r, summary) = run_at(result.capacity, "confirm")?;
        let cost = price
            .as_ref()
            .map(|p| crate::cost::cost_summary(p, &summary));
        rows.push(r.clone());
        (Some(r), cost)
    } else {
        (None, None)
    };
    let name = format!("capacity-{stamp}");
    write_outputs(
        &dir,
        &name,
        &rows,
        "capacity search: every probe, then the confirming run",
    )?;
    let report = CapacityReport {
        search: result.clone(),
        target_good_fraction: args.target,
        confirm: confirm.clone(),
        cost,
    };
    let json = serde_json::to_string_pretty(&report).map_err(AppError::failed)?;
    crate::report::write_atomic(&dir.join(format!("{name}-result.json")), json.as_bytes())
        .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    match &confirm {
        Some(c) => {
            let met = c.good_fraction.unwrap_or(0.0) >= args.target;
            println!(
                "capacity: {:.3} req/s ({}converged); confirming run: {:.1} % good ({}), {:.1} output tok/s",
                result.capacity,
                if result.converged { "" } else { "not " },
                c.good_fraction.unwrap_or(0.0) * 100.0,
                if met { "meets the target" } else { "MISSES the target: the capacity is noisy here, rerun with more --seconds-per-point" },
                c.output_throughput
            );
            if let Some(cost) = &report.cost {
                if let Some(usd) = cost.usd_per_1m_output_tokens {
                    println!("cost at capacity: ${usd:.4} per 1M output tokens");
                }
            }
            Ok(if met {
                ExitStatus::Success
            } else {
                ExitStatus::GateMissed
            })
        }
        None => {
            println!(
                "capacity: none — even {:.3} req/s missed the target",
                args.start_rate
            );
            Ok(ExitStatus::GateMissed)
        }
    }
}

/// The search's own numbers within bounds: each probe becomes a `run` whose flags are checked
/// again, but a NaN or 1e300 here would first be multiplied into every probe's size.
fn capacity_numbers(args: &crate::cli::CapacityArgs) -> Result<(), crate::config::ConfigError> {
    use crate::config::limits;
    limits::rate("--start-rate", args.start_rate)?;
    if !(args.tolerance > 0.0 && args.tolerance < 1.0) {
        return Err(limits::out_of_range(
            "--tolerance",
            args.tolerance,
            "allowed: between 0 and 1 exclusive (relative bracket width), e.g. 0.1",
        ));
    }
    limits::secs(
        "--seconds-per-point",
        args.seconds_per_point,
        limits::MAX_DURATION_S,
        "30 days",
    )?;
    if !(1..=1000).contains(&args.max_probes) {
        return Err(limits::out_of_range(
            "--max-probes",
            args.max_probes,
            "allowed: 1..=1000",
        ));
    }
    if args.min_requests > limits::MAX_NUM_PROMPTS {
        return Err(limits::out_of_range(
            "--min-requests",
            args.min_requests,
            format!("allowed: up to {}", limits::MAX_NUM_PROMPTS),
        ));
    }
    Ok(())
}
