//! `servebench suite`: a study — targets × workloads × repeats — run one cell at a time, each
//! cell's result written as it completes, then the combined CSV, the charts and the report.
//!
//! Layout (the seed report's appendix B):
//! `results/<framework>/benchmark_<workload>_<time>.json` (+ journal),
//! `results/benchmark_results_combined.csv`, `results/report.md`, `results/report.html`,
//! the four charts as PNG and SVG, and `results/study.json`.

pub mod config;

use crate::app::sim::{parse_engine, SimServer, SimTarget};
use crate::app::{run_benchmark, AppError, ExitStatus};
use crate::cli::{Cli, Command};
use crate::config::RunConfig;
use crate::cost::Price;
use crate::report::study::{write_study, Cell, Environment, Study, WorkloadSpec};
use crate::report::{csv_row, read_result, write_csv};
use crate::sim::catalog::Catalog;
use anyhow::{anyhow, Context};
use clap::Parser;
use config::{SuiteConfig, TargetConfig, WorkloadConfig};
use std::path::{Path, PathBuf};

/// The config `servebench suite` runs when given none.
pub const DEFAULT_CONFIG: &str = "configs/quickstart.toml";

/// A target, started: where to send requests and what to call the model.
enum Started {
    Sim {
        server: SimServer,
        model: String,
    },
    External {
        base_url: String,
        model: Option<String>,
    },
}

impl Started {
    fn base_url(&self) -> &str {
        match self {
            Started::Sim { server, .. } => server.url(),
            Started::External { base_url, .. } => base_url,
        }
    }
    fn model(&self) -> Option<&str> {
        match self {
            Started::Sim { model, .. } => Some(model),
            Started::External { model, .. } => model.as_deref(),
        }
    }
}

fn start(target: &TargetConfig, catalog: &Catalog) -> Result<Started, AppError> {
    match target {
        TargetConfig::Sim {
            name,
            engine,
            gpu,
            model,
            tp,
        } => {
            let t = SimTarget {
                engine: parse_engine(engine).map_err(AppError::usage)?,
                gpu: gpu.clone(),
                model: model.clone(),
                tp: *tp,
                catalog: catalog.clone(),
            };
            t.options()
                .engine(catalog)
                .map_err(|e| AppError::usage(anyhow!("target `{name}`: {e}")))?;
            let server = SimServer::start(&t, model).map_err(AppError::failed)?;
            Ok(Started::Sim {
                server,
                model: model.clone(),
            })
        }
        TargetConfig::External {
            base_url, model, ..
        } => Ok(Started::External {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.clone(),
        }),
    }
}

/// The `run` command line one cell amounts to, so a cell can be rerun by hand exactly.
fn cell_argv(
    suite: &SuiteConfig,
    w: &WorkloadConfig,
    target: &TargetConfig,
    started: &Started,
    dir: &Path,
    file: &str,
    seed: u64,
) -> Vec<String> {
    let d = &suite.defaults;
    let mut v: Vec<String> = vec!["servebench".into(), "run".into()];
    let mut push = |k: &str, val: String| {
        v.push(k.into());
        v.push(val);
    };
    push("--base-url", started.base_url().to_string());
    if let Some(m) = started.model() {
        push("--model", m.to_string());
    }
    push("--label", target.name().to_string());
    push(
        "--endpoint",
        w.endpoint.clone().unwrap_or_else(|| d.endpoint.clone()),
    );
    push("--num-prompts", w.requests.to_string());
    push(
        "--random-input-len",
        w.input_len.unwrap_or(d.input_len).to_string(),
    );
    push("--random-output-len", w.max_tokens.to_string());
    push("--num-warmups", w.warmups.unwrap_or(d.warmups).to_string());
    push("--request-timeout", d.request_timeout.to_string());
    push("--seed", seed.to_string());
    push("--result-dir", dir.display().to_string());
    push("--result-filename", file.to_string());
    if let Some(c) = w.concurrency {
        push("--max-concurrency", c.to_string());
    }
    if let Some(r) = w.request_rate {
        push("--request-rate", r.to_string());
    }
    if d.ignore_eos {
        v.push("--ignore-eos".into());
    }
    v.push("--no-progress".into());
    v
}

fn run_config(argv: &[String]) -> Result<RunConfig, AppError> {
    let cli = Cli::try_parse_from(argv).map_err(|e| AppError::usage(anyhow!(e.to_string())))?;
    match cli.command {
        Command::Run(a) => RunConfig::from_args(&a).map_err(AppError::usage),
        _ => Err(AppError::usage(anyhow!(
            "internal: a cell is a run command"
        ))),
    }
}

/// Options of one suite invocation.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub config: PathBuf,
    /// Rerun cells whose result file already exists.
    pub force: bool,
    pub result_dir: Option<PathBuf>,
}

/// Run a study; returns where its report went.
pub fn run_suite(opts: &SuiteOptions) -> Result<PathBuf, AppError> {
    let suite =
        SuiteConfig::load(&opts.config).map_err(|e| AppError::usage(anyhow::Error::new(e)))?;
    let catalog = Catalog::builtin();
    let price = match (&suite.instance, &suite.price) {
        (Some(i), given) => Some(
            Price::resolve(&catalog, i, given.as_ref())
                .map_err(|e| AppError::usage(anyhow::Error::new(e)))?,
        ),
        (None, Some(_)) => {
            return Err(AppError::usage(anyhow!(
                "{}: `price` needs `instance` (the instance type it is the price of)",
                opts.config.display()
            )))
        }
        (None, None) => None,
    };
    let root = opts
        .result_dir
        .clone()
        .unwrap_or_else(|| suite.result_dir.clone());
    std::fs::create_dir_all(&root)
        .with_context(|| format!("creating {}", root.display()))
        .map_err(AppError::failed)?;
    let rt = crate::app::runtime_pub(None)?;
    let all_sim = suite.targets.iter().all(TargetConfig::is_simulated);
    let mut study = Study::new(
        suite.title.clone(),
        chrono::Utc::now(),
        all_sim,
        environment(&suite, &catalog, price.clone()),
    );
    let mut csv_rows: Vec<Vec<String>> = Vec::new();
    let total = suite.targets.len() * suite.workloads.len() * suite.repeats as usize;
    let mut n = 0;
    for target in &suite.targets {
        let dir = root.join(target.name());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(AppError::failed)?;
        let started = start(target, &catalog)?;
        let simulated = target.is_simulated();
        for w in &suite.workloads {
            for repeat in 0..suite.repeats {
                n += 1;
                let stem = if suite.repeats > 1 {
                    format!("benchmark_{}_r{}", w.name.to_lowercase(), repeat + 1)
                } else {
                    format!("benchmark_{}", w.name.to_lowercase())
                };
                // A cell done before (any time stamp) is kept unless --force: an interrupted
                // study resumes where it stopped.
                let done_before = if opts.force {
                    None
                } else {
                    find_cell(&dir, &stem)
                };
                let file = done_before
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| {
                        format!("{stem}_{}.json", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
                    });
                let path = dir.join(&file);
                let argv = cell_argv(
                    &suite,
                    w,
                    target,
                    &started,
                    &dir,
                    &file,
                    suite.seed + repeat as u64,
                );
                let result = if done_before.is_some() {
                    eprintln!(
                        "[{n}/{total}] {} × {}: done before, kept ({}; --force reruns)",
                        target.name(),
                        w.name,
                        path.display()
                    );
                    read_result(&path).map_err(|e| AppError::failed(anyhow::Error::new(e)))?
                } else {
                    eprintln!("[{n}/{total}] {} × {} …", target.name(), w.name);
                    let cfg = run_config(&argv)?;
                    let outcome = rt.block_on(run_benchmark(&cfg, false))?;
                    eprintln!(
                        "[{n}/{total}] {} × {}: {} ok, {} failed, {:.1} tok/s, mean E2E {:.3} s",
                        target.name(),
                        w.name,
                        outcome.summary.completed,
                        outcome.summary.failed,
                        outcome.summary.output_throughput,
                        outcome.summary.e2el_ms.mean / 1000.0
                    );
                    read_result(&outcome.summary_path)
                        .map_err(|e| AppError::failed(anyhow::Error::new(e)))?
                };
                let mut run = result.run.clone();
                run.simulated = simulated;
                run.workload = Some(w.name.clone());
                csv_rows.push(csv_row(&run, &result.summary));
                let spec = WorkloadSpec {
                    requests: w.requests,
                    max_tokens: u64::from(w.max_tokens),
                    concurrency: w.concurrency.map(|c| c as u64),
                    warmup_requests: w.warmups.unwrap_or(suite.defaults.warmups),
                    request_rate: w.request_rate,
                    prompt: Some(format!(
                        "random, {} tokens",
                        w.input_len.unwrap_or(suite.defaults.input_len)
                    )),
                    structured_output: false,
                };
                let rel = path
                    .strip_prefix(&root)
                    .map(Path::to_path_buf)
                    .unwrap_or(path.clone());
                let mut cell = Cell::new(
                    target.name().to_string(),
                    w.name.clone(),
                    spec,
                    result.summary.clone(),
                    simulated,
                    rel.display().to_string(),
                );
                cell.repeat = repeat;
                cell.gpu_unavailable =
                    Some("GPU telemetry is not wired into the suite yet (see issue 4)".into());
                if let Some(p) = &price {
                    cell = cell.priced(p);
                }
                study.cells.push(cell);
            }
        }
        drop(started);
    }
    write_csv(&root.join("benchmark_results_combined.csv"), &csv_rows)
        .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    let files = write_study(&study, &root).map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    eprintln!(
        "report: {}\nhtml:   {}\ncsv:    {}",
        files.markdown.display(),
        files.html.display(),
        root.join("benchmark_results_combined.csv").display()
    );
    Ok(files.markdown)
}

fn environment(suite: &SuiteConfig, catalog: &Catalog, price: Option<Price>) -> Environment {
    let mut env = Environment {
        instance: suite.instance.clone(),
        servebench_version: env!("CARGO_PKG_VERSION").into(),
        servebench_commit: git_commit(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string()),
        price,
        ..Environment::default()
    };
    for t in &suite.targets {
        match t {
            TargetConfig::Sim {
                name,
                engine,
                gpu,
                model,
                tp,
            } => {
                env.gpu = Some(
                    catalog
                        .gpu(gpu)
                        .map(|g| g.name.clone())
                        .unwrap_or(gpu.clone()),
                );
                env.gpu_count = Some(*tp);
                env.model = model.clone();
                env.engines.insert(
                    name.clone(),
                    format!(
                        "servebench simulator, {engine} profile (v{})",
                        env!("CARGO_PKG_VERSION")
                    ),
                );
            }
            TargetConfig::External {
                name,
                base_url,
                model,
                gpu,
            } => {
                if let Some(g) = gpu {
                    env.gpu = Some(g.clone());
                }
                if let Some(m) = model {
                    env.model = m.clone();
                }
                env.engines
                    .insert(name.clone(), format!("external server at {base_url}"));
            }
        }
    }
    if let Some(p) = &env.price {
        env.region = Some(p.region.clone()).filter(|r| !r.is_empty());
    }
    env
}

/// The newest `<stem>_<time>.json` result in `dir`, if any.
fn find_cell(dir: &Path, stem: &str) -> Option<PathBuf> {
    let prefix = format!("{stem}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                f.starts_with(&prefix)
                    && f.ends_with(".json")
                    && !f.ends_with(".journal.json")
                    && f[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .collect();
    found.sort();
    found.pop()
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(crate) fn command(args: &crate::cli::SuiteArgs) -> Result<ExitStatus, AppError> {
    let config = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    if !config.exists() {
        return Err(AppError::usage(anyhow!(
            "no suite file at {} — give a path (e.g. servebench suite configs/quickstart.toml) or run from the repository root",
            config.display()
        )));
    }
    run_suite(&SuiteOptions {
        config,
        force: args.force,
        result_dir: args.result_dir.clone(),
    })?;
    Ok(ExitStatus::Success)
}
