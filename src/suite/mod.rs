//! `servebench suite`: a study — targets × workloads × repeats — run one cell at a time, each
//! cell's result written as it completes, then the combined CSV, the charts and the report.
//!
//! Layout (the seed report's appendix B):
//! `results/<framework>/benchmark_<workload>_<time>.json` (+ journal, telemetry, server log),
//! `results/benchmark_results_combined.csv`, `results/report.md`, `results/report.html`,
//! the four charts as PNG and SVG, and `results/study.json`.
//!
//! Targets start through `crate::launch` (simulator, local process, Docker container, or an
//! existing URL). A cell whose result file exists is kept (resume) unless `--force`. A target
//! that fails to start or dies is restarted once; if that fails its remaining cells are
//! skipped and the report says why — the suite goes on with the next target.

pub mod config;

use crate::app::{run_benchmark, AppError, ExitStatus};
use crate::cost::Price;
use crate::launch::{LaunchSpec, Launcher, Running, SimMode};
use crate::load::{Interrupt, InterruptCause};
use crate::report::study::{write_study, Cell, Environment, GpuSummary, Study, WorkloadSpec};
use crate::report::{csv_row, read_result, write_csv, ResultFile};
use crate::sim::catalog::Catalog;
use anyhow::{anyhow, Context};
use config::{is_simulated, SuiteConfig, TargetConfig, WorkloadConfig};
use std::path::{Path, PathBuf};

/// The config `servebench suite` runs when given none.
pub const DEFAULT_CONFIG: &str = "configs/quickstart.toml";

/// Options of one suite invocation.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub config: PathBuf,
    /// Rerun cells whose result file already exists.
    pub force: bool,
    pub result_dir: Option<PathBuf>,
}

/// What a suite produced.
#[derive(Debug)]
pub struct SuiteOutcome {
    pub report: PathBuf,
    pub cells_run: usize,
    pub cells_kept: usize,
    pub cells_skipped: usize,
    /// Cells (run now or kept) in which every measured request failed.
    pub cells_all_failed: usize,
    /// Cells run now that missed a `fail_under_success_rate` gate.
    pub cells_gate_missed: usize,
    /// Cells run now whose journal or summary could not be written where asked.
    pub cells_output_failed: usize,
    /// The signal that stopped the study, if one did.
    pub interrupted: Option<InterruptCause>,
}

/// The model a target's requests name (`None`: the first at /v1/models).
fn target_model(t: &TargetConfig) -> Option<String> {
    match &t.launch {
        LaunchSpec::Sim(s) => s.model.clone(),
        LaunchSpec::Docker(d) => d.model.clone(),
        LaunchSpec::External(_) | LaunchSpec::Process(_) => None,
    }
}

/// The `run` flags one cell amounts to (`servebench run <these>`), so a cell can be rerun by
/// hand exactly.
fn cell_argv(
    suite: &SuiteConfig,
    w: &WorkloadConfig,
    target: &TargetConfig,
    base_url: &str,
    dir: &Path,
    file: &str,
    seed: u64,
) -> Vec<String> {
    let d = &suite.defaults;
    let mut v: Vec<String> = Vec::new();
    let mut push = |k: &str, val: String| {
        v.push(k.into());
        v.push(val);
    };
    push("--base-url", base_url.to_string());
    if let Some(m) = target_model(target) {
        push("--model", m);
    }
    push("--label", target.name.clone());
    push("--endpoint", w.endpoint_or(&d.endpoint));
    push("--num-prompts", w.requests.to_string());
    if w.is_sharegpt_multi_turn() {
        push("--dataset-name", "sharegpt-multi-turn".into());
        if let Some(p) = &w.dataset_path {
            push("--dataset-path", p.display().to_string());
        }
        if let Some(n) = w.conversations {
            push("--conversation-num", n.to_string());
        }
        if w.max_tokens > 0 {
            push("--sharegpt-output-len", w.max_tokens.to_string());
        }
        if let Some(c) = w.context_len {
            push("--sharegpt-context-len", c.to_string());
        }
        if let Some(m) = w.min_turns {
            push("--sharegpt-min-turns", m.to_string());
        }
        if let Some(m) = w.max_turns {
            push("--sharegpt-max-turns", m.to_string());
        }
        push(
            "--conversation-turn-delay-mean",
            w.think_time_ms.unwrap_or(0.0).to_string(),
        );
    } else if w.is_multi_turn() {
        let turns = w.turns.unwrap_or(1).max(1);
        push("--dataset-name", "multi-turn".into());
        push(
            "--conversation-num",
            (w.requests / u64::from(turns)).to_string(),
        );
        push("--conversation-turn-mean", turns.to_string());
        push(
            "--conversation-system-prompt-len",
            w.system_prompt_len.unwrap_or(0).to_string(),
        );
        push(
            "--conversation-first-input-len",
            w.input_len.unwrap_or(d.input_len).to_string(),
        );
        push(
            "--conversation-input-len",
            w.question_len.unwrap_or(32).to_string(),
        );
        push("--conversation-output-len", w.max_tokens.to_string());
        push(
            "--conversation-turn-delay-mean",
            w.think_time_ms.unwrap_or(0.0).to_string(),
        );
    } else if w.is_shared_prefix() {
        let groups = w.groups.unwrap_or(1).max(1);
        push("--dataset-name", "generated-shared-prefix".into());
        push("--gsp-num-groups", groups.to_string());
        push(
            "--gsp-prompts-per-group",
            (w.requests / u64::from(groups)).to_string(),
        );
        push(
            "--gsp-system-prompt-len",
            w.system_prompt_len.unwrap_or(d.input_len).to_string(),
        );
        push(
            "--gsp-question-len",
            w.question_len.unwrap_or(32).to_string(),
        );
        push("--gsp-output-len", w.max_tokens.to_string());
    } else {
        push(
            "--random-input-len",
            w.input_len.unwrap_or(d.input_len).to_string(),
        );
        push("--random-output-len", w.max_tokens.to_string());
    }
    push("--num-warmups", w.warmups.unwrap_or(d.warmups).to_string());
    push("--request-timeout", d.request_timeout.to_string());
    if let Some(r) = suite.fail_under_success_rate {
        push("--fail-under-success-rate", r.to_string());
    }
    push("--seed", seed.to_string());
    push("--result-dir", dir.display().to_string());
    push("--result-filename", file.to_string());
    // Short cells still get several samples inside the measured window.
    push("--telemetry-interval-ms", "100".into());
    if let Some(e) = &suite.electricity {
        push("--electricity-price", e.usd_per_kwh.to_string());
        push("--pue", e.pue.to_string());
    }
    if let Some(c) = w.concurrency {
        push("--max-concurrency", c.to_string());
    }
    if let Some(r) = w.request_rate {
        push("--request-rate", r.to_string());
    }
    if let Some(kind) = &w.structured_output {
        push("--structured-output", kind.clone());
        if let Some(p) = &w.json_schema {
            push("--json-schema", p.display().to_string());
        }
        if let Some(r) = &w.regex {
            push("--regex", r.clone());
        }
        if let Some(d) = &w.structured_dialect {
            push("--structured-dialect", d.clone());
        }
    }
    if let Some(t) = &d.tokenizer {
        v.push("--tokenizer".into());
        v.push(t.display().to_string());
    }
    // A constrained answer ends with EOS when its grammar is complete: never --ignore-eos.
    if d.ignore_eos && !w.is_structured() {
        v.push("--ignore-eos".into());
    }
    if is_simulated(target) {
        // The machine's own GPU (if any) has nothing to do with a simulated one.
        v.push("--no-nvml".into());
    }
    v.push("--no-progress".into());
    v
}

/// The time part of a virtual-time cell's file name: the virtual epoch, so the name (and the
/// run id made from it, which the combined CSV carries) is the same on every machine.
const VIRTUAL_STAMP: &str = "00000000-000000";

/// The `run` flags of a cell that `predict` has no use for: the HTTP target, the client, the
/// warmups (a virtual-time cell starts a fresh engine and measures only its own requests) and
/// host telemetry. Each is followed by a value except the `--no-*` switches.
const RUN_ONLY_FLAGS: &[(&str, bool)] = &[
    ("--base-url", true),
    ("--model", true),
    ("--label", true),
    ("--endpoint", true),
    ("--num-warmups", true),
    ("--request-timeout", true),
    ("--telemetry-interval-ms", true),
    ("--no-nvml", false),
];

/// A cell's `run` flags as `predict` flags: the run-only ones dropped.
fn predict_argv(run_argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(run_argv.len());
    let mut it = run_argv.iter();
    while let Some(a) = it.next() {
        match RUN_ONLY_FLAGS.iter().find(|(f, _)| f == a) {
            Some((_, true)) => {
                it.next();
            }
            Some((_, false)) => {}
            None => out.push(a.clone()),
        }
    }
    out
}

/// Why a virtual-time cell went otherwise.
enum VirtualCell {
    /// `predict` cannot model what the cell asks (the reason); the cell runs in real time.
    Cannot(String),
    /// The prediction failed.
    Failed(AppError),
}

/// Run one cell through the engine model in virtual time (`servebench predict`'s path).
fn predict_cell(
    target: &crate::app::sim::SimTarget,
    label: &str,
    run_argv: &[String],
) -> Result<crate::app::sim::Predicted, VirtualCell> {
    use crate::cli::{Cli, Command};
    use clap::Parser;
    let mut argv = vec!["servebench".to_string(), "predict".to_string()];
    argv.extend(predict_argv(run_argv));
    argv.extend(["--metadata".into(), "time_mode=virtual-time".into()]);
    let args = match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Predict(a),
            ..
        }) => a,
        Ok(_) => unreachable!("the command line starts with `predict`"),
        Err(e) => return Err(VirtualCell::Cannot(first_line(&e.to_string()))),
    };
    crate::app::sim::predict_to_file(
        target,
        &args,
        crate::app::sim::PredictStyle::SUITE_CELL,
        Some(label),
    )
    .map_err(|e| match e.status {
        ExitStatus::Usage => VirtualCell::Cannot(first_line(&format!("{:#}", e.error))),
        _ => VirtualCell::Failed(e),
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// The virtual-time model of a sim target, or `None` when the target runs in real time.
fn virtual_target(
    target: &TargetConfig,
    catalog: &Catalog,
) -> Option<anyhow::Result<crate::app::sim::SimTarget>> {
    let LaunchSpec::Sim(spec) = &target.launch else {
        return None;
    };
    if spec.mode != SimMode::VirtualTime {
        return None;
    }
    Some(
        crate::sim::serve::resolve_spec(catalog, spec).map(|r| crate::app::sim::SimTarget {
            engine: r.kind,
            gpu: spec.gpu.clone().unwrap_or_else(|| r.gpu.name.clone()),
            model: spec.model.clone().unwrap_or_else(|| r.model.name.clone()),
            tp: r.tp,
            catalog: catalog.clone(),
            profile: Some(r.profile),
        }),
    )
}

/// One cell of the matrix, planned.
struct PlannedCell<'a> {
    workload: &'a WorkloadConfig,
    repeat: u32,
    /// The cell's workload seed: the same for every target (each framework sees the same
    /// prompts), different for every workload and repeat — one target's server serves all its
    /// workloads in turn, and repeated prompts would be served from its prefix cache.
    seed: u64,
    stem: String,
    /// Its result from an earlier invocation (resume), unless `--force`.
    done_before: Option<PathBuf>,
}

/// Run a study; returns where its report went.
pub fn run_suite(opts: &SuiteOptions) -> Result<SuiteOutcome, AppError> {
    let suite =
        SuiteConfig::load(&opts.config).map_err(|e| AppError::usage(anyhow::Error::new(e)))?;
    let catalog = Catalog::builtin();
    let price = match (&suite.instance, &suite.price) {
        (Some(i), given) => Some(
            // The message already holds its cause; `{:#}` of a chained error would repeat it.
            Price::resolve(&catalog, i, given.as_ref())
                .map_err(|e| AppError::usage(anyhow!("{}: {e}", opts.config.display())))?,
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
    let launcher = Launcher::with_sim(crate::sim::serve::factory(catalog.clone()));
    let mut study = Study::new(
        suite.title.clone(),
        chrono::Utc::now(),
        suite.targets.iter().all(is_simulated),
        environment(&suite, &catalog, price.clone()),
    );
    let mut rows: Vec<Vec<String>> = Vec::new();
    let total = suite.targets.len() * suite.workloads.len() * suite.repeats as usize;
    let mut out = SuiteOutcome {
        report: PathBuf::new(),
        cells_run: 0,
        cells_kept: 0,
        cells_skipped: 0,
        cells_all_failed: 0,
        cells_gate_missed: 0,
        cells_output_failed: 0,
        interrupted: None,
    };
    // SIGINT, SIGTERM or SIGHUP stop the study after the cell in progress is dropped (its
    // partial result is not kept, so a resume reruns it); a second signal exits at once.
    let interrupt = Interrupt::default();
    let _listener = {
        let _in_runtime = rt.enter();
        crate::app::signals::Listener::start(
            interrupt.clone(),
            "stopping the cell in progress and writing the report of the cells done",
        )
    };
    let mut n = 0;
    'targets: for target in &suite.targets {
        let dir = root.join(&target.name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(AppError::failed)?;
        let vt = virtual_target(target, &catalog);
        let plan = plan_cells(&suite, &dir, opts.force, vt.is_some());
        let mut running: Option<Running> = None;
        let mut given_up: Option<String> = None;
        let vt = match vt {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                let why = format!("`{}` could not be modelled: {e:#}", target.name);
                given_up = Some(why.clone());
                study
                    .notes
                    .push(format!("{why}; its remaining cells were not run."));
                None
            }
            None => None,
        };
        'cells: for cell in plan {
            n += 1;
            let tag = format!("[{n}/{total}] {} × {}", target.name, cell.workload.name);
            let path = match &cell.done_before {
                Some(p) => {
                    eprintln!("{tag}: done before, kept ({}; --force reruns)", p.display());
                    out.cells_kept += 1;
                    p.clone()
                }
                None => 'cell: {
                    if let Some(why) = &given_up {
                        eprintln!("{tag}: skipped — {why}");
                        out.cells_skipped += 1;
                        continue 'cells;
                    }
                    // A virtual-time cell: the engine model, no server, no wall clock.
                    let mut fallback: Option<String> = None;
                    if let Some(t) = &vt {
                        if let Some(cause) = interrupt.cause() {
                            out.interrupted = Some(cause);
                            study.notes.push(format!(
                                "The study was {}; cells not run are missing.",
                                crate::app::signals::name(cause)
                            ));
                            break 'targets;
                        }
                        let file = format!("{}_{VIRTUAL_STAMP}.json", cell.stem);
                        let argv =
                            cell_argv(&suite, cell.workload, target, "", &dir, &file, cell.seed);
                        eprintln!("{tag} … (virtual time)");
                        match predict_cell(t, &target.name, &argv) {
                            Ok(p) => {
                                let s = &p.summary;
                                eprintln!(
                                    "{tag}: {} ok, {} failed, {:.1} tok/s, mean E2E {:.3} s (virtual time)",
                                    s.completed,
                                    s.failed,
                                    s.output_throughput,
                                    s.e2el_ms.mean / 1000.0
                                );
                                out.cells_run += 1;
                                break 'cell p.summary_path;
                            }
                            Err(VirtualCell::Failed(e)) => {
                                eprintln!("{tag}: failed: {:#}", e.error);
                                study.notes.push(format!(
                                    "{} × {}: the prediction could not be done: {:#}",
                                    target.name, cell.workload.name, e.error
                                ));
                                out.cells_skipped += 1;
                                continue 'cells;
                            }
                            Err(VirtualCell::Cannot(why)) => {
                                eprintln!(
                                    "{tag}: the engine model cannot run this cell in virtual time ({why}); running it in real time"
                                );
                                study.notes.push(format!(
                                    "{} × {} ran in real time, not virtual time: the engine model cannot run it ({why}); its timings include this host's scheduling.",
                                    target.name, cell.workload.name
                                ));
                                fallback = Some(why);
                            }
                        }
                    }
                    // (Re)start the target when it is not running (first cell, or it died).
                    let alive = match &running {
                        Some(r) => rt.block_on(r.is_alive()),
                        None => false,
                    };
                    if !alive {
                        if running.is_some() {
                            eprintln!("{tag}: the server of `{}` died; restarting it", target.name);
                            study.notes.push(format!(
                                "The `{}` server died during the study and was restarted before the {} workload.",
                                target.name, cell.workload.name
                            ));
                        }
                        drop(running.take());
                        match rt.block_on(launcher.start(target, &dir)) {
                            Ok(r) => {
                                // What actually ran (the port filled in, the image's digest).
                                let f = r.facts();
                                let what = match (&f.image, &f.image_digest) {
                                    (Some(i), Some(d)) => format!("Docker image {i} ({d})"),
                                    (Some(i), None) => format!("Docker image {i}"),
                                    _ if !f.command.is_empty() => {
                                        format!("{}: {}", f.kind, f.command.join(" "))
                                    }
                                    _ => f.engine.clone(),
                                };
                                if f.kind != "sim" {
                                    study.environment.engines.insert(target.name.clone(), what);
                                }
                                running = Some(r)
                            }
                            Err(e) => {
                                let why = format!("`{}` could not be started: {e}", target.name);
                                eprintln!("{tag}: {why}");
                                study
                                    .notes
                                    .push(format!("{why}; its remaining cells were not run."));
                                given_up = Some(why);
                                out.cells_skipped += 1;
                                continue 'cells;
                            }
                        }
                    }
                    let base_url = running
                        .as_ref()
                        .map(|r| r.base_url().to_string())
                        .unwrap_or_default();
                    let file = format!(
                        "{}_{}.json",
                        cell.stem,
                        chrono::Utc::now().format("%Y%m%d-%H%M%S")
                    );
                    let mut argv = cell_argv(
                        &suite,
                        cell.workload,
                        target,
                        &base_url,
                        &dir,
                        &file,
                        cell.seed,
                    );
                    eprintln!("{tag} …");
                    if is_simulated(target) {
                        // Say in the result how its time was kept, and why when it fell back.
                        let mut mode = "time_mode=real-time".to_string();
                        if let Some(why) = &fallback {
                            mode.push_str(&format!(
                                " (fallback: the engine model cannot run this cell in virtual time: {why})"
                            ));
                        }
                        argv.extend(["--metadata".into(), mode]);
                    }
                    let mut cfg = crate::app::run_config_from_args(&argv)?;
                    cfg.simulated = is_simulated(target);
                    if let Some(r) = &running {
                        cfg.environment = serde_json::to_value(r.facts()).unwrap_or_default();
                    }
                    let result = rt.block_on(async {
                        tokio::select! {
                            r = run_benchmark(&cfg, false) => Some(r),
                            _ = interrupt.wait() => None,
                        }
                    });
                    let outcome = match result {
                        None => {
                            eprintln!(
                                "stopping `{}` and writing the report of the cells done",
                                target.name
                            );
                            if let Some(r) = running.take() {
                                rt.block_on(r.stop());
                            }
                            let cause = interrupt.cause().unwrap_or(InterruptCause::CtrlC);
                            out.interrupted = Some(cause);
                            study.notes.push(format!(
                                "The study was {}; cells not run are missing.",
                                crate::app::signals::name(cause)
                            ));
                            break 'targets;
                        }
                        Some(Err(e)) => {
                            eprintln!("{tag}: failed: {e}");
                            study.notes.push(format!(
                                "{} × {}: the run could not be done: {e}",
                                target.name, cell.workload.name
                            ));
                            out.cells_skipped += 1;
                            continue 'cells;
                        }
                        Some(Ok(o)) => o,
                    };
                    match outcome.status {
                        ExitStatus::GateMissed => out.cells_gate_missed += 1,
                        ExitStatus::OutputFailed => out.cells_output_failed += 1,
                        _ => {}
                    }
                    let s = &outcome.summary;
                    eprintln!(
                        "{tag}: {} ok, {} failed, {:.1} tok/s, mean E2E {:.3} s",
                        s.completed,
                        s.failed,
                        s.output_throughput,
                        s.e2el_ms.mean / 1000.0
                    );
                    out.cells_run += 1;
                    outcome.summary_path
                }
            };
            let result = read_result(&path).map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
            if result.attempted > 0 && result.completed == 0 {
                out.cells_all_failed += 1;
                study.notes.push(format!(
                    "{} × {}: every one of its {} measured requests failed ({:?}).",
                    target.name, cell.workload.name, result.attempted, result.errors_by_kind
                ));
            }
            // Process and external targets learn their model from the server (/v1/models).
            if study.environment.model.is_empty() {
                study.environment.model = result.run.model_id.clone();
            }
            // Real targets: the GPU as NVML saw it, or say plainly that none was seen.
            if study.environment.gpu.is_none() && !is_simulated(target) {
                let gpus = result.environment.get("gpus").and_then(|g| g.as_array());
                study.environment.gpu = match gpus.and_then(|g| g.first()) {
                    Some(g) => g.get("name").and_then(|n| n.as_str()).map(String::from),
                    None => Some("none detected (no NVIDIA driver on the benchmark host)".into()),
                };
            }
            let (row, c) = to_cell(&suite, target, &cell, &result, &path, &root, price.as_ref());
            rows.push(row);
            study.cells.push(c);
        }
        if let Some(r) = running.take() {
            if let Some(log) = r.log_path() {
                eprintln!("server log of `{}`: {}", target.name, log.display());
            }
            rt.block_on(r.stop());
        }
    }
    write_csv(&root.join("benchmark_results_combined.csv"), &rows)
        .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    let files = write_study(&study, &root).map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    eprintln!(
        "report: {}\nhtml:   {}\ncsv:    {}",
        files.markdown.display(),
        files.html.display(),
        root.join("benchmark_results_combined.csv").display()
    );
    out.report = files.markdown;
    Ok(out)
}

fn plan_cells<'a>(
    suite: &'a SuiteConfig,
    dir: &Path,
    force: bool,
    virtual_time: bool,
) -> Vec<PlannedCell<'a>> {
    let mut cells = Vec::new();
    for (wi, w) in suite.workloads.iter().enumerate() {
        for repeat in 0..suite.repeats {
            let stem = if suite.repeats > 1 {
                format!("benchmark_{}_r{}", w.name.to_lowercase(), repeat + 1)
            } else {
                format!("benchmark_{}", w.name.to_lowercase())
            };
            let done_before = if force {
                None
            } else {
                find_cell(dir, &stem, virtual_time)
            };
            cells.push(PlannedCell {
                workload: w,
                repeat,
                seed: suite
                    .seed
                    .wrapping_add((seed_index(suite, w, wi) as u64) << 32)
                    .wrapping_add(u64::from(repeat)),
                stem,
                done_before,
            });
        }
    }
    cells
}

/// The index a workload's seed derives from: its own, or (an unconstrained twin) that of the
/// workload it copies, so both send the same prompts.
fn seed_index(suite: &SuiteConfig, w: &WorkloadConfig, own: usize) -> usize {
    w.seed_from
        .as_ref()
        .and_then(|name| suite.workloads.iter().position(|o| &o.name == name))
        .unwrap_or(own)
}

/// The study cell and the CSV row of one result file.
fn to_cell(
    suite: &SuiteConfig,
    target: &TargetConfig,
    cell: &PlannedCell<'_>,
    result: &ResultFile,
    path: &Path,
    root: &Path,
    price: Option<&Price>,
) -> (Vec<String>, Cell) {
    let w = cell.workload;
    let simulated = is_simulated(target);
    let mut run = result.run.clone();
    run.simulated = simulated;
    run.workload = Some(w.name.clone());
    let energy =
        crate::report::EnergyColumns::new(result.telemetry.as_ref(), result.energy_cost.as_ref());
    let row = csv_row(&run, &result.summary, &energy);
    let spec = WorkloadSpec {
        requests: w.requests,
        max_tokens: u64::from(w.max_tokens),
        concurrency: w.concurrency.map(|c| c as u64),
        warmup_requests: w.warmups.unwrap_or(suite.defaults.warmups),
        request_rate: w.request_rate,
        prompt: Some(if w.is_sharegpt_multi_turn() {
            format!(
                "ShareGPT conversations from {}, replayed turn by turn, history sent back each turn",
                w.dataset_path
                    .as_deref()
                    .map_or("(no file)".into(), |p| p.display().to_string())
            )
        } else if w.is_multi_turn() {
            format!(
                "multi-turn: {} conversations × {} turns, {}-token first message, {}-token follow-ups, history sent back each turn",
                w.requests / u64::from(w.turns.unwrap_or(1).max(1)),
                w.turns.unwrap_or(1),
                w.input_len.unwrap_or(suite.defaults.input_len),
                w.question_len.unwrap_or(32)
            )
        } else if w.is_shared_prefix() {
            format!(
                "shared prefix: {} groups, {}-token system prompt + {}-token question",
                w.groups.unwrap_or(1),
                w.system_prompt_len.unwrap_or(0),
                w.question_len.unwrap_or(0)
            )
        } else {
            format!(
                "random, {} tokens",
                w.input_len.unwrap_or(suite.defaults.input_len)
            )
        }),
        structured_output: w.is_structured(),
        shared_prefix: w.is_shared_prefix(),
        multi_turn: w.is_multi_turn(),
        baseline: w.baseline.clone(),
    };
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut c = Cell::new(
        target.name.clone(),
        w.name.clone(),
        spec,
        result.summary.clone(),
        simulated,
        rel.display().to_string(),
    );
    c.repeat = cell.repeat;
    c.prefix_cache_hit_rate = result
        .telemetry
        .as_ref()
        .and_then(|t| t.prefix_cache_hit_rate);
    match result.telemetry.clone() {
        Some(t) => match (t.gpu_util_mean_pct, t.gpu_util_max_pct) {
            (Some(mean), Some(max)) => {
                c.gpu = Some(GpuSummary {
                    util_mean_pct: mean,
                    util_max_pct: max,
                    mem_max_gb: t.gpu_mem_max_gb.unwrap_or(0.0),
                    source: t.source.to_string(),
                    power_mean_w: t.gpu_power.power_mean_w,
                    joules_per_output_token: t.gpu_power.joules_per_output_token,
                })
            }
            _ => {
                c.gpu_unavailable = Some(
                    t.unavailable_reason
                        .unwrap_or_else(|| format!("no GPU reading ({})", t.source)),
                )
            }
        },
        None => c.gpu_unavailable = Some("the result file has no telemetry".into()),
    }
    if let Some(p) = price {
        c = c.priced(p);
    }
    (row, c)
}

fn environment(suite: &SuiteConfig, catalog: &Catalog, price: Option<Price>) -> Environment {
    let mut env = Environment {
        instance: suite.instance.clone(),
        servebench_version: env!("CARGO_PKG_VERSION").into(),
        servebench_commit: crate::app::servebench_commit(),
        host: crate::app::hostname(),
        ..Environment::default()
    };
    if let Some(p) = &price {
        env.gpu = Some(p.gpu.clone()).filter(|g| !g.is_empty());
        env.gpu_count = Some(p.gpu_count);
        env.region = Some(p.region.clone()).filter(|r| !r.is_empty());
    }
    env.price = price;
    for t in &suite.targets {
        let engine = match &t.launch {
            LaunchSpec::Sim(s) => {
                let how = match s.mode {
                    SimMode::VirtualTime => {
                        "virtual time: the engine model as `servebench predict` runs it, no HTTP; \
                         the same numbers on any host under any load"
                    }
                    SimMode::RealTime => {
                        "real time: served over HTTP and measured by the client; timings include \
                         this host's scheduling"
                    }
                };
                if let Some(g) = &s.gpu {
                    env.gpu = Some(catalog.gpu(g).map(|g| g.name.clone()).unwrap_or(g.clone()));
                }
                if let Some(m) = &s.model {
                    env.model = m.clone();
                }
                format!(
                    "servebench simulator, {} profile (v{}), {how}",
                    s.engine.as_deref().unwrap_or("?"),
                    env!("CARGO_PKG_VERSION")
                )
            }
            LaunchSpec::Docker(d) => {
                if let Some(m) = &d.model {
                    env.model = m.clone();
                }
                format!(
                    "Docker image {}",
                    d.image
                        .clone()
                        .or_else(|| d.engine.default_image().map(String::from))
                        .unwrap_or_else(|| "(custom, no image given)".into())
                )
            }
            LaunchSpec::Process(p) => format!("local process: {}", p.command.join(" ")),
            LaunchSpec::External(e) => format!("external server at {}", e.base_url),
        };
        env.engines.insert(t.name.clone(), engine);
    }
    env
}

/// The newest `<stem>_<time>.json` result in `dir`, if any: for a virtual-time target only
/// its virtual-time result (`<stem>_<VIRTUAL_STAMP>.json`), for any other only a wall-clock
/// one, so a result made in the other mode is never kept as this one's.
fn find_cell(dir: &Path, stem: &str, virtual_time: bool) -> Option<PathBuf> {
    let prefix = format!("{stem}_");
    let virtual_name = format!("{prefix}{VIRTUAL_STAMP}.json");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                f.starts_with(&prefix)
                    && f.ends_with(".json")
                    && !f.ends_with(".telemetry.json")
                    && f[prefix.len()..].starts_with(|c: char| c.is_ascii_digit())
                    && (f == virtual_name) == virtual_time
            })
        })
        .collect();
    found.sort();
    found.pop()
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
    let out = run_suite(&SuiteOptions {
        config,
        force: args.force,
        result_dir: args.result_dir.clone(),
    })?;
    if let Some(cause) = out.interrupted {
        return Ok(ExitStatus::of_interrupt(cause));
    }
    if out.cells_skipped > 0 {
        // The report is written and says which cells are missing and why; the status says the
        // study is incomplete, so a script does not take it for a full one.
        eprintln!(
            "error: {} of {} cells could not be run (see the notes in {})",
            out.cells_skipped,
            out.cells_run + out.cells_kept + out.cells_skipped,
            out.report.display()
        );
        return Ok(ExitStatus::Failed);
    }
    if out.cells_output_failed > 0 {
        eprintln!(
            "error: {} cells could not write their journal or summary where asked (see above for where their numbers went)",
            out.cells_output_failed
        );
        return Ok(ExitStatus::OutputFailed);
    }
    if out.cells_all_failed > 0 {
        // A study of servers that answered nothing is not a success, whatever it printed.
        eprintln!(
            "error: in {} cells every measured request failed (see the notes in {})",
            out.cells_all_failed,
            out.report.display()
        );
        return Ok(ExitStatus::Failed);
    }
    if out.cells_gate_missed > 0 {
        eprintln!(
            "error: {} cells missed the fail_under_success_rate gate",
            out.cells_gate_missed
        );
        return Ok(ExitStatus::GateMissed);
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// `[electricity]` reaches every cell as `--electricity-price`/`--pue`, and a bad PUE is
    /// refused when the suite is read.
    #[test]
    fn the_electricity_price_becomes_each_cells_run_flags() {
        let toml = |table: &str| {
            format!(
                "title = \"t\"\n{table}\n[[targets]]\nname = \"a\"\n[targets.launch]\nkind = \"sim\"\n\
                 engine = \"vllm\"\ngpu = \"a10g\"\nmodel = \"facebook/opt-125m\"\n\
                 [[workloads]]\nname = \"S\"\nrequests = 4\nmax_tokens = 8\n"
            )
        };
        let suite = SuiteConfig::parse(
            &toml("[electricity]\nusd_per_kwh = 0.12\npue = 1.3"),
            Path::new("x.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let argv = cell_argv(
            &suite,
            &suite.workloads[0],
            &suite.targets[0],
            "http://127.0.0.1:1",
            dir.path(),
            "c.json",
            1,
        );
        let line = argv.join(" ");
        assert!(
            line.contains("--electricity-price 0.12 --pue 1.3"),
            "{line}"
        );
        let mut full = vec!["servebench".to_string(), "run".to_string()];
        full.extend(argv);
        let Command::Run(a) = Cli::try_parse_from(full).unwrap().command else {
            unreachable!()
        };
        let cfg = crate::config::RunConfig::from_args(&a).unwrap();
        assert_eq!(
            cfg.electricity,
            Some(crate::cost::ElectricityPrice::new(0.12, 1.3).unwrap())
        );
        let err = SuiteConfig::parse(
            &toml("[electricity]\nusd_per_kwh = 0.12\npue = 0.5"),
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("[electricity]") && err.contains("at least 1.0"),
            "{err}"
        );
        // Without the table, no flag.
        let suite = SuiteConfig::parse(&toml(""), Path::new("x.toml")).unwrap();
        let argv = cell_argv(
            &suite,
            &suite.workloads[0],
            &suite.targets[0],
            "u",
            dir.path(),
            "c.json",
            1,
        );
        assert!(!argv.iter().any(|a| a == "--electricity-price"));
    }

    /// A cell's `run` line becomes a `predict` line that parses (every run-only flag and its
    /// value dropped), and what `predict` cannot model is a reason to run in real time, not
    /// a failure.
    #[test]
    fn a_cell_predict_cannot_model_falls_back_with_the_reason() {
        let suite = SuiteConfig::parse(
            "title = \"t\"\n[[targets]]\nname = \"a\"\n[targets.launch]\nkind = \"sim\"\n\
             engine = \"sglang\"\ngpu = \"a10g\"\nmodel = \"facebook/opt-125m\"\n\
             [[workloads]]\nname = \"S\"\nrequests = 4\nmax_tokens = 8\nconcurrency = 2\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let argv = cell_argv(
            &suite,
            &suite.workloads[0],
            &suite.targets[0],
            "http://127.0.0.1:1",
            dir.path(),
            "c.json",
            1,
        );
        let p = predict_argv(&argv);
        for gone in [
            "--base-url",
            "--label",
            "--num-warmups",
            "--no-nvml",
            "http://127.0.0.1:1",
        ] {
            assert!(!p.iter().any(|a| a == gone), "{gone} in {p:?}");
        }
        let t = virtual_target(&suite.targets[0], &Catalog::builtin())
            .unwrap()
            .unwrap();
        let done = predict_cell(&t, "a", &argv).unwrap_or_else(|_| panic!("{p:?}"));
        assert_eq!(done.summary.completed, 4);
        let r = read_result(&done.summary_path).unwrap();
        assert_eq!(r.run.label.as_deref(), Some("a"));
        // A run for a duration is not something predict models.
        let mut timed = argv.clone();
        timed.extend(["--duration".into(), "5".into()]);
        match predict_cell(&t, "a", &timed) {
            Err(VirtualCell::Cannot(why)) => assert!(why.contains("--duration"), "{why}"),
            Err(VirtualCell::Failed(e)) => panic!("failed, not a fallback: {:#}", e.error),
            Ok(_) => panic!("predict ran a --duration cell"),
        }
        // A real-time target has no virtual model.
        let mut real = suite.targets[0].clone();
        if let LaunchSpec::Sim(s) = &mut real.launch {
            s.mode = SimMode::RealTime;
        }
        assert!(virtual_target(&real, &Catalog::builtin()).is_none());
    }

    /// A sharegpt-multi-turn workload's cell is a `run` command line that replays the file:
    /// the suite keys become the run flags, and the line validates as `run` would.
    #[test]
    fn a_sharegpt_multi_turn_cell_is_a_run_line_that_replays_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sg.json");
        let conv = |n: usize| {
            let mut m = Vec::new();
            for k in 0..n {
                m.push(serde_json::json!({"from": "human", "value": format!("q{k} a b")}));
                m.push(serde_json::json!({"from": "gpt", "value": "r r r r"}));
            }
            serde_json::json!({"conversations": m})
        };
        let list: Vec<_> = (0..6).map(|i| conv(2 + i % 3)).collect();
        std::fs::write(&file, serde_json::Value::Array(list).to_string()).unwrap();
        let toml = format!(
            r#"
title = "t"
[[targets]]
name = "a"
[targets.launch]
kind = "sim"
engine = "vllm"
gpu = "a10g"
model = "facebook/opt-125m"
[[workloads]]
name = "S"
dataset = "sharegpt-multi-turn"
dataset_path = "{}"
requests = 100
conversations = 4
context_len = 20
min_turns = 2
max_turns = 6
think_time_ms = 50
"#,
            file.display()
        );
        let suite = SuiteConfig::parse(&toml, Path::new("x.toml")).unwrap();
        let w = &suite.workloads[0];
        assert_eq!(w.endpoint_or("/v1/completions"), "/v1/chat/completions");
        let argv = cell_argv(
            &suite,
            w,
            &suite.targets[0],
            "http://127.0.0.1:1",
            dir.path(),
            "c.json",
            7,
        );
        let line = argv.join(" ");
        for part in [
            "--dataset-name sharegpt-multi-turn",
            "--conversation-num 4",
            "--sharegpt-context-len 20",
            "--sharegpt-min-turns 2",
            "--sharegpt-max-turns 6",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
        assert!(
            !line.contains("--sharegpt-output-len"),
            "reply lengths from the file: {line}"
        );
        let mut full = vec!["servebench".to_string(), "run".to_string()];
        full.extend(argv);
        let Command::Run(a) = Cli::try_parse_from(full).unwrap().command else {
            unreachable!()
        };
        let cfg = crate::config::RunConfig::from_args(&a).unwrap();
        let crate::workload::Workload::MultiTurn(m) = &cfg.workload else {
            panic!("{:?}", cfg.workload)
        };
        assert_eq!(m.conversations, 4);
        // 7 tokens a turn (3 sent + 4 asked): the context of 20 cuts every conversation at 2.
        assert!(m.turn_counts.iter().all(|&t| t == 2), "{:?}", m.turn_counts);

        let missing = toml.replace(&format!("dataset_path = \"{}\"\n", file.display()), "");
        let e = SuiteConfig::parse(&missing, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dataset_path"), "{e}");
    }
}
