//! `servebench run`: one benchmark against one server.
//!
//! Order of things: validate → start the target (embedded server if no URL) → preflight →
//! prepare every request body on a producer thread → open the journal → drive the load while a
//! consumer task journals and folds each record as it completes → summarize → write outputs →
//! decide the exit status.

use super::preflight::{self, ServerFacts};
use super::serve::EmbeddedServer;
use super::{runtime, AppError, ExitStatus};
use crate::cli::RunArgs;
use crate::client::{Client, ClientOptions};
use crate::config::{RunConfig, StructuredConfig, Target, TelemetryConfig, UsageRequest};
use crate::journal::{JournalEnd, JournalError, JournalHeader, JournalWriter};
use crate::load::{
    self, Clock, Interrupt, InterruptCause, LoadReport, PreparedRequest, SessionWork, StopReason,
};
use crate::metrics::{Accumulator, ClientCpu, Summary, SummaryFacts};
use crate::openai::{build_body, BodyOptions};
use crate::record::{OutputCheck, Phase, RequestRecord};
use crate::report::{self, default_result_filename, ResultFile, RunInfo};
use crate::structured::{Checker, Dialect};
use crate::telemetry::{
    NvmlSampler, PrometheusSampler, Recorder, RecorderConfig, Sampler, TelemetrySummary, Timeline,
};
use crate::workload::{PromptMaker, Workload};
use anyhow::{anyhow, Context};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: Summary,
    pub load: LoadReport,
    pub summary_path: PathBuf,
    pub journal_path: PathBuf,
    pub status: ExitStatus,
    /// Faults the embedded server injected, by kind (`None` for an external server): the
    /// figure to hold `summary.errors_by_kind` against.
    pub faults_injected: Option<std::collections::BTreeMap<String, u64>>,
    /// GPU and engine telemetry over the measured phase (`source: unavailable` with the
    /// reason when there was none).
    pub telemetry: TelemetrySummary,
}

pub(super) fn command(args: &RunArgs) -> Result<ExitStatus, AppError> {
    let cfg = RunConfig::from_args(args).map_err(AppError::usage)?;
    // One line per `vllm bench serve` flag that was accepted but does nothing here.
    for note in &cfg.compat_notes {
        eprintln!("{note}");
    }
    if args.repeats == 0 {
        return Err(AppError::usage(crate::config::ConfigError {
            field: "--repeats".into(),
            value: "0".into(),
            problem: "must be at least 1".into(),
        }));
    }
    let rt = runtime(cfg.client_threads, "servebench-client")?;
    if args.repeats == 1 {
        let outcome = rt.block_on(run_benchmark(&cfg, true))?;
        return Ok(outcome.status);
    }
    // Repeats: each an ordinary run (its own files), seeds seed, seed+1, …; then each figure's
    // mean with a 95 % interval, so a reader can tell a difference from the noise.
    let mut outcomes = Vec::new();
    for r in 0..args.repeats {
        let mut c = cfg.clone();
        c.seed = cfg.seed + u64::from(r);
        c.plan.seed = c.seed;
        c.result_filename = cfg
            .result_filename
            .as_ref()
            .map(|f| format!("{}-r{}.json", f.trim_end_matches(".json"), r + 1));
        eprintln!("repeat {}/{} (seed {})", r + 1, args.repeats, c.seed);
        let o = rt.block_on(run_benchmark(&c, true))?;
        if o.status.is_interrupt() || o.status == ExitStatus::OutputFailed {
            return Ok(o.status);
        }
        outcomes.push(o);
    }
    let figures: [RepeatFigure; 6] = [
        ("output_throughput (tok/s)", |s| s.output_throughput),
        ("request_throughput (req/s)", |s| s.request_throughput),
        ("mean_ttft_ms", |s| s.ttft_ms.mean),
        ("mean_tpot_ms", |s| s.tpot_ms.mean),
        ("mean_e2el_ms", |s| s.e2el_ms.mean),
        ("success_rate", |s| s.success_rate),
    ];
    let mut table = serde_json::Map::new();
    println!(
        "\nover {} repeats: mean ± 95 % CI (Student's t)",
        outcomes.len()
    );
    for (name, f) in figures {
        let values: Vec<f64> = outcomes.iter().map(|o| f(&o.summary)).collect();
        let (mean, half) = crate::compare::mean_ci95(&values);
        println!(
            "{name:<28} {mean:>12.3} ± {:<10.3} (min {:.3}, max {:.3})",
            half.unwrap_or(0.0),
            values.iter().copied().fold(f64::INFINITY, f64::min),
            values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
        table.insert(
            name.into(),
            serde_json::json!({ "mean": mean, "ci95_half_width": half, "values": values }),
        );
    }
    table.insert(
        "runs".into(),
        outcomes
            .iter()
            .map(|o| serde_json::Value::from(o.summary_path.display().to_string()))
            .collect(),
    );
    let path = cfg.result_dir.join(format!(
        "repeats-{}.json",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    ));
    let json = serde_json::to_string_pretty(&table).map_err(AppError::failed)?;
    report::write_atomic(&path, json.as_bytes())
        .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    eprintln!("repeats: {}", path.display());
    // The worst status of the repeats.
    Ok(outcomes
        .iter()
        .map(|o| o.status)
        .find(|s| *s != ExitStatus::Success)
        .unwrap_or(ExitStatus::Success))
}

/// A figure reported over repeats: its name and how to read it from a summary.
type RepeatFigure = (&'static str, fn(&Summary) -> f64);

/// Run one benchmark as configured. `interactive` enables signal handling (SIGINT, SIGTERM,
/// SIGHUP: see `app::signals`), the progress bar and the console table (tests run with it off).
pub async fn run_benchmark(cfg: &RunConfig, interactive: bool) -> Result<RunOutcome, AppError> {
    let interrupt = Interrupt::default();
    let _listener = interactive.then(|| {
        super::signals::Listener::start(
            interrupt.clone(),
            "finishing the records of requests in flight",
        )
    });
    run_benchmark_until(cfg, interactive, interrupt).await
}

/// [`run_benchmark`], stopped early when `interrupt` is triggered (by the caller's signal
/// handler, e.g. a suite's): the startup check gives up, a running load ends as on Ctrl-C.
pub async fn run_benchmark_until(
    cfg: &RunConfig,
    interactive: bool,
    interrupt: Interrupt,
) -> Result<RunOutcome, AppError> {
    // The embedded server runs on its own runtime threads so it never shares the client's.
    let embedded = match &cfg.target {
        Target::Embedded(e) => Some(
            EmbeddedServer::start(
                e,
                cfg.served_model_name
                    .as_deref()
                    .or(cfg.model.as_deref())
                    .unwrap_or(EMBEDDED_MODEL),
            )
            .map_err(AppError::failed)?,
        ),
        Target::External { .. } => None,
    };
    let base_url = match (&cfg.target, &embedded) {
        (Target::External { base_url }, _) => base_url.clone(),
        (_, Some(server)) => server.url().to_string(),
        _ => unreachable!("embedded target always has a server"),
    };

    // Discovery (both GETs together) within 30 s, or the request timeout when shorter: a
    // server that does not list its models that fast is not ready to be measured.
    let discover_timeout = cfg.request_timeout.min(std::time::Duration::from_secs(30));
    let mut facts = unless_interrupted(
        &interrupt,
        wait_ready(
            &base_url,
            cfg.api_key.as_deref(),
            &cfg.headers,
            discover_timeout,
            cfg.ready_check_timeout,
            READY_RETRY,
        ),
    )
    .await?
    .map_err(AppError::failed)?;
    // vLLM sends --served-model-name when given, and reports --model as the model id.
    let asked = cfg.served_model_name.as_deref().or(cfg.model.as_deref());
    let model = preflight::choose_model(asked, &facts).map_err(AppError::usage)?;
    let continuous_usage = cfg.usage == UsageRequest::Auto && cfg.stream;
    let label = cfg
        .label
        .clone()
        .unwrap_or_else(|| guess_label(&cfg.target, &facts));

    let maker = match &cfg.tokenizer {
        Some(p) => PromptMaker::with_tokenizer(p).map_err(|e| AppError::usage(anyhow!(e)))?,
        None => PromptMaker::approximate(),
    };
    let structured = match &cfg.structured {
        Some(s) => Some(resolve_structured(s, &cfg.target, &label).map_err(AppError::usage)?),
        None => None,
    };
    let mut body_opts = body_options(cfg, &model, continuous_usage);
    if let Some(s) = &structured {
        body_opts.extra.extend(s.fields.clone());
        if interactive {
            eprintln!(
                "structured output: {} in the {} dialect; every answer is checked",
                s.constraint.kind(),
                s.dialect
            );
        }
    }
    // Which of the fields servebench adds on its own account the server refuses: the run goes
    // without them. The embedded server accepts every field.
    let refused = match &cfg.target {
        Target::External { .. } => {
            let probe = preflight::HttpProbe::new(
                &base_url,
                cfg.endpoint,
                cfg.api_key.as_deref(),
                cfg.request_timeout,
                &cfg.headers,
            )
            .map_err(AppError::usage)?;
            unless_interrupted(
                &interrupt,
                preflight::refused_fields(&probe, cfg.endpoint, &body_opts),
            )
            .await?
            .map_err(AppError::failed)?
        }
        Target::Embedded(_) => Vec::new(),
    };
    let body_opts = preflight::without(&body_opts, &refused);
    facts.continuous_usage = body_opts.stream && body_opts.continuous_usage_stats;
    let total = cfg.plan.stop.max_requests().map(|n| n + cfg.plan.warmups);
    let work = match &cfg.workload {
        // Conversations are planned up front (everything but the replies); their bodies are
        // built by the session driver as the replies come.
        Workload::MultiTurn(m) => Work::Sessions(SessionWork {
            conversations: m.conversations(&maker, cfg.seed),
            warmup: m.warmup_conversations(
                u32::try_from(cfg.plan.warmups).unwrap_or(u32::MAX),
                &maker,
                cfg.seed ^ WARMUP_SEED,
            ),
            body: body_opts,
            keep_text: cfg.save_detailed,
        }),
        _ => {
            let (requests, producer) = spawn_producer(cfg, maker, body_opts, total).await;
            Work::Prepared(requests, producer)
        }
    };
    let multi_turn = matches!(work, Work::Sessions(_));

    let client = Client::new(ClientOptions {
        base_url: base_url.clone(),
        endpoint: cfg.endpoint,
        api_key: cfg.api_key.clone(),
        request_timeout: cfg.request_timeout,
        stream: cfg.stream,
        // A conversation's next turn sends the reply back, and a constrained run checks
        // each answer: both need the text.
        keep_text: cfg.save_detailed || multi_turn || structured.is_some(),
    })
    .and_then(|c| c.with_headers(&cfg.headers, cfg.request_id_prefix.clone()))
    .map_err(AppError::usage)?;
    let sender = Checked {
        client,
        checker: structured.map(|s| s.checker),
    };

    std::fs::create_dir_all(&cfg.result_dir)
        .with_context(|| format!("cannot create --result-dir {}", cfg.result_dir.display()))
        .map_err(AppError::failed)?;
    let started = chrono::Utc::now();
    let mut info = run_info(cfg, &label, &model, &base_url, started);
    info.config = serde_json::json!({ "run": cfg, "server": facts });
    let stem = cfg
        .result_filename
        .as_deref()
        .map(|f| f.trim_end_matches(".json").to_string())
        .unwrap_or_else(|| {
            let base = default_result_filename(&info)
                .trim_end_matches(".json")
                .to_string();
            // The default name has one-second resolution: a second run started in the same
            // second would overwrite the first one's journal and summary. Number it instead.
            let taken = |s: &str| {
                cfg.result_dir.join(format!("{s}.json")).exists()
                    || cfg.result_dir.join(format!("{s}.journal.jsonl")).exists()
            };
            (1..)
                .map(|i| {
                    if i == 1 {
                        base.clone()
                    } else {
                        format!("{base}-{i}")
                    }
                })
                .find(|s| !taken(s))
                .unwrap_or(base)
        });
    info.run_id = stem.clone();
    let summary_path = cfg.result_dir.join(format!("{stem}.json"));
    let journal_path = cfg.result_dir.join(format!("{stem}.journal.jsonl"));
    let mut header = JournalHeader::new(&stem, started, info.config.clone());
    header.run = Some(info.clone());
    let journal = JournalWriter::create(&journal_path, Some(&header))
        .map_err(|e| AppError::failed(anyhow::Error::new(e)))?;

    // One idle connection per request that can be in flight at once, opened before the clock.
    let warm_connections = match cfg.plan.mode {
        load::LoadMode::Closed { concurrency } => concurrency.get(),
        load::LoadMode::Open { max_in_flight, .. } => max_in_flight.map_or(64, |n| n.get()),
    }
    .min(1024);
    unless_interrupted(&interrupt, sender.client.prewarm(warm_connections)).await?;

    let (tx, rx) = mpsc::unbounded_channel();
    // The bar counts measured requests only (warmup records do not tick it).
    let progress = Progress::new(interactive, cfg.plan.stop.max_requests());
    let consumer = tokio::spawn(consume(
        rx,
        journal,
        progress,
        cfg.save_detailed,
        interrupt.clone(),
    ));

    let cpu_before = process_cpu_seconds();
    let wall = Instant::now();
    let epoch = Instant::now();
    let recorder = start_telemetry(&cfg.telemetry, &base_url, epoch);
    let (load_report, producer) = match work {
        Work::Prepared(requests, producer) => {
            let r = load::run(
                cfg.plan.clone(),
                Arc::new(sender),
                requests,
                tx,
                epoch,
                interrupt.clone(),
            )
            .await;
            (r, Some(producer))
        }
        Work::Sessions(work) => {
            let r = load::run_sessions(
                cfg.plan.clone(),
                Arc::new(sender),
                work,
                tx,
                epoch,
                interrupt.clone(),
                Clock::Precise,
            )
            .await;
            (r, None)
        }
    };
    let load_end_ns = epoch.elapsed().as_nanos() as u64;
    let timeline = match recorder {
        Some(r) => r.stop().await,
        None => Timeline::unavailable("telemetry turned off (--telemetry-interval-ms 0)"),
    };
    // A sampler of a server's /metrics that turned itself off (no metrics there) says so once.
    for sampler in timeline
        .samplers
        .iter()
        .filter(|s| s.name == "engine" || s.name == "dcgm")
    {
        if let Some(why) = &sampler.unavailable {
            eprintln!("note: {why}");
        }
    }
    let telemetry = timeline.summarize(load_report.measured_start_ns, load_end_ns);
    let telemetry_path = cfg.result_dir.join(format!("{stem}.telemetry.json"));
    if let Err(e) = timeline.save(&telemetry_path) {
        eprintln!("warning: could not save {}: {e}", telemetry_path.display());
    }
    let (acc, lengths, journal, journal_result) =
        consumer.await.map_err(|e| AppError::failed(anyhow!(e)))?;
    if let Some(p) = producer {
        let _ = p.join();
    }
    // The end mark says the journal is whole: written only when the run reached its planned
    // stop and every record reached the file.
    let complete = journal_result.is_ok() && load_report.stop_reason != StopReason::Interrupted;
    let finished = journal.finish_with(JournalEnd {
        complete,
        planned: cfg.plan.stop.max_requests(),
    });
    // The writer's own error names the cause (`record` only saw that it had stopped).
    let journal_result = finished.map(|_| ()).and(journal_result);
    // A journal that failed stopped the run (the consumer interrupted it); the summary of what
    // was measured is still written, from the accumulator, which saw every record.
    let journal_failed = match journal_result {
        Ok(_) => false,
        Err(e) => {
            eprintln!("error: {e}; the run was stopped so that no more records are lost");
            true
        }
    };
    let client_cpu = cpu_before
        .zip(process_cpu_seconds())
        .map(|(a, b)| ClientCpu {
            cpu_seconds: b - a,
            wall_seconds: wall.elapsed().as_secs_f64(),
            cores: cfg.client_threads.map(|t| t as f64).unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
            }),
        });

    let summary = acc.finish(&SummaryFacts {
        client_cpu,
        ..info.summary_facts()
    });
    let mut telemetry = telemetry;
    telemetry.set_output_tokens(summary.total_output_tokens);
    let energy_cost = cfg
        .electricity
        .map(|price| energy_cost_of(price, &telemetry, summary.total_output_tokens));
    let mut result = ResultFile::new(&info, &summary);
    result.server_refused_fields = Some(refused.iter().map(|f| f.name().to_string()).collect());
    result.stopped_early = Some(lengths.stopped_early);
    result.complete = Some(complete);
    result.planned = cfg.plan.stop.max_requests();
    if let Some(note) = refusal_note(&refused, lengths) {
        eprintln!("{note}");
    }
    result.load = Some(load_report);
    result.telemetry = Some(telemetry.clone());
    result.energy_cost = energy_cost.clone();
    result.environment = serde_json::json!({
        "servebench_version": env!("CARGO_PKG_VERSION"),
        "servebench_commit": super::servebench_commit(),
        "host": super::hostname(),
        "server_version": facts.version,
        "gpus": timeline.gpus,
        "target": cfg.environment,
    });
    add_request_arrays(&mut result, &journal_path, cfg.save_detailed);
    let (summary_path, summary_moved) = write_summary(&summary_path, &result);
    let energy = report::EnergyColumns::new(Some(&telemetry), energy_cost.as_ref());
    let csv = cfg.result_dir.join("results.csv");
    if let Err(e) = report::append_csv_row(&csv, &info, &summary, &energy) {
        if journal_failed || summary_moved {
            // The same full disk; the summary already says where the numbers are.
            eprintln!("warning: {e}");
        } else {
            return Err(AppError::failed(anyhow::Error::new(e)));
        }
    }
    if interactive {
        println!("{}", report::render_table(&info, &summary));
        println!("{}", report::energy_line(&telemetry, energy_cost.as_ref()));
        if let Some(c) = load_report.conversations {
            println!(
                "conversations: {} started, {} completed, {} ended by a failed turn, {} cut short by the stop or an interrupt",
                c.started, c.completed, c.ended_by_failure, c.ended_early
            );
        }
        eprintln!(
            "summary: {}\njournal: {}",
            summary_path.display(),
            journal_path.display()
        );
    }
    let status = if journal_failed || summary_moved {
        ExitStatus::OutputFailed
    } else {
        exit_status(cfg, &summary, &load_report, interrupt.cause())
    };
    let faults_injected = embedded.as_ref().map(|e| {
        e.stats()
            .fault_counts()
            .into_iter()
            .map(|(k, n)| (k.label().to_string(), n))
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    if interactive {
        if let Some(f) = faults_injected.as_ref().filter(|f| !f.is_empty()) {
            eprintln!("embedded server injected faults: {f:?}");
        }
    }
    drop(embedded);
    Ok(RunOutcome {
        summary,
        load: load_report,
        summary_path,
        journal_path,
        status,
        faults_injected,
        telemetry,
    })
}

/// The energy cost of the run's GPU energy (all GPUs), or unavailable with the summary's reason.
pub(crate) fn energy_cost_of(
    price: crate::cost::ElectricityPrice,
    t: &TelemetrySummary,
    output_tokens: u64,
) -> crate::cost::EnergyCost {
    let energy = t.gpu_power.energy_j.ok_or_else(|| {
        t.gpu_power
            .unavailable
            .get("energy_j")
            .cloned()
            .unwrap_or_else(|| "no GPU telemetry".into())
    });
    let source = if t.source == crate::telemetry::TelemetrySource::Simulated {
        "simulated"
    } else {
        "measured"
    };
    crate::cost::energy_cost(price, energy, output_tokens, source)
}

/// A constrained run's settings once the target is known.
struct ResolvedStructured {
    constraint: crate::structured::Constraint,
    dialect: Dialect,
    fields: serde_json::Map<String, serde_json::Value>,
    checker: Checker,
}

/// The dialect (given, or by the target's label: the embedded server reads every dialect, so
/// it gets `vllm`, which carries both JSON schemas and regexes), its body fields and the
/// compiled checker.
fn resolve_structured(
    s: &StructuredConfig,
    target: &Target,
    label: &str,
) -> Result<ResolvedStructured, anyhow::Error> {
    let dialect = s.dialect.unwrap_or(match target {
        Target::Embedded(_) => Dialect::Vllm,
        Target::External { .. } => Dialect::for_engine(label),
    });
    let fields = crate::structured::body_fields(&s.constraint, dialect).map_err(|e| {
        anyhow!(
            "--structured-output {} for target `{label}`: {e}",
            s.constraint.kind()
        )
    })?;
    let checker = Checker::new(&s.constraint).map_err(|e| anyhow!("--structured-output: {e}"))?;
    Ok(ResolvedStructured {
        constraint: s.constraint.clone(),
        dialect,
        fields,
        checker,
    })
}

/// Longest answer text kept in the record of an invalid answer (without --save-detailed), in
/// bytes (cut at a character boundary).
const INVALID_TEXT_BYTES: usize = 500;

/// The client, plus the structured-output check of each successful answer. The check runs in
/// the request's task after the response completed, so every timing point of the request is
/// already taken; its CPU is the client's (the self-check's client CPU includes it). What the
/// journal keeps of the text is decided once, by the consumer ([`journal_text`]).
struct Checked {
    client: Client,
    checker: Option<Checker>,
}

impl load::Sender for Checked {
    async fn send(&self, body: bytes::Bytes, ctx: load::SendContext) -> RequestRecord {
        let mut rec = self.client.send(body, ctx).await;
        let Some(checker) = &self.checker else {
            return rec;
        };
        if rec.outcome.is_success() {
            rec.output_check = Some(checker.check(rec.output_text.as_deref().unwrap_or("")));
        }
        rec
    }
}

/// The answer text the journal keeps: all of it with `--save-detailed` (vLLM's
/// `generated_texts`); otherwise only an invalid answer's, truncated, as evidence. The client
/// kept text only because a check or a conversation needed it.
fn journal_text(rec: &mut RequestRecord, save_detailed: bool) {
    if save_detailed {
        return;
    }
    rec.output_text = match &rec.output_check {
        Some(OutputCheck::Invalid { .. }) => rec
            .output_text
            .take()
            .map(|t| crate::openai::truncate(t, INVALID_TEXT_BYTES)),
        _ => None,
    };
}

/// Start sampling the server's `/metrics`, a DCGM exporter and local GPUs, as configured.
/// `None` when telemetry is off. Samplers that cannot work here (no NVIDIA driver) report
/// themselves unavailable; that is data, not an error.
fn start_telemetry(cfg: &TelemetryConfig, base_url: &str, epoch: Instant) -> Option<Recorder> {
    let interval = cfg.interval?;
    let mut samplers: Vec<Box<dyn Sampler>> = Vec::new();
    if cfg.engine_metrics {
        if let Ok(s) = PrometheusSampler::new("engine", base_url) {
            samplers.push(Box::new(s));
        }
    }
    if let Some(url) = &cfg.dcgm_url {
        if let Ok(s) = PrometheusSampler::new("dcgm", url) {
            samplers.push(Box::new(s));
        }
    }
    if cfg.nvml {
        samplers.push(Box::new(NvmlSampler::new()));
    }
    let rc = RecorderConfig {
        interval,
        ..RecorderConfig::default()
    };
    Some(Recorder::start(epoch, rc, samplers))
}

/// vLLM's per-request arrays (`latencies`, `queue_times`; with `--save-detailed` the rest),
/// read back from the journal just written, so the run never holds every record in memory.
pub(super) fn add_request_arrays(
    result: &mut ResultFile,
    journal_path: &std::path::Path,
    detailed: bool,
) {
    // Without --save-detailed only times are needed: each record's events and text are
    // dropped as it is read, so a run of 10^5 long answers is not held in memory whole.
    let mut records = Vec::new();
    let scanned = crate::journal::scan_journal(journal_path, |mut r| {
        if r.phase != Phase::Measured {
            return;
        }
        if !detailed {
            r.events = Vec::new();
            r.output_text = None;
        }
        records.push(r);
    });
    match scanned {
        Ok(_) => result.add_request_arrays(&records, detailed),
        Err(e) => eprintln!(
            "warning: cannot read the journal back for the per-request arrays (latencies, queue_times): {e}"
        ),
    }
}

/// How often an unready server is asked again (`--ready-check-timeout-sec`).
const READY_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The preflight, repeated every `retry` while the server is not ready — unreachable, or
/// listing no model yet — until `timeout` has passed (vLLM's `--ready-check-timeout-sec`,
/// which retries its test request likewise). A zero timeout asks once. After the timeout the
/// last answer stands: an error, or a server that lists no model (then `--model` decides).
/// `each` bounds each discovery GET.
async fn wait_ready(
    base_url: &str,
    api_key: Option<&str>,
    headers: &[(String, String)],
    each: std::time::Duration,
    timeout: std::time::Duration,
    retry: std::time::Duration,
) -> anyhow::Result<ServerFacts> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waited = false;
    loop {
        let answer = preflight::discover(base_url, api_key, each, headers).await;
        let ready = matches!(&answer, Ok(f) if !f.models.is_empty());
        let now = tokio::time::Instant::now();
        if ready || now >= deadline {
            return answer.map_err(|e| {
                if waited {
                    e.context(format!(
                        "the server was not ready within --ready-check-timeout-sec {}",
                        timeout.as_secs()
                    ))
                } else {
                    e
                }
            });
        }
        if !waited {
            eprintln!(
                "waiting up to {} s for the server at {base_url} to be ready…",
                timeout.as_secs()
            );
            waited = true;
        }
        tokio::time::sleep(retry.min(deadline - now)).await;
    }
}

/// What the load driver is given: bodies prepared ahead, or conversations to hold.
enum Work {
    Prepared(mpsc::Receiver<PreparedRequest>, std::thread::JoinHandle<()>),
    Sessions(SessionWork),
}

/// Warmup conversations come from their own seed, so they never repeat a measured one (which
/// would put its history in the server's prefix cache before it is measured).
const WARMUP_SEED: u64 = 0x7761_726d_7570;

/// The model name the embedded server answers to when `--model` is not given.
pub const EMBEDDED_MODEL: &str = "servebench-fixed";

fn run_info(
    cfg: &RunConfig,
    label: &str,
    model: &str,
    base_url: &str,
    started: chrono::DateTime<chrono::Utc>,
) -> RunInfo {
    // With --served-model-name, the name sent differs from the model id vLLM reports.
    let model_id = match (&cfg.served_model_name, &cfg.model) {
        (Some(_), Some(m)) => m.as_str(),
        _ => model,
    };
    let mut info = RunInfo::new(label, model_id, started);
    info.backend = cfg.backend.clone();
    info.endpoint = cfg.endpoint.path().to_string();
    info.base_url = Some(base_url.to_string());
    info.label = Some(label.to_string());
    info.engine = Some(label.to_string());
    if let Some(t) = &cfg.tokenizer_id {
        info.tokenizer_id = t.clone();
    }
    info.percentile_metrics = cfg.percentile_metrics.clone();
    info.metadata = cfg.metadata.iter().cloned().collect();
    info.simulated = cfg.simulated;
    if let Some(r) = &cfg.ramp_up {
        info.ramp_up_strategy = Some(r.strategy.to_string());
        info.ramp_up_start_rps = Some(r.start_rps);
        info.ramp_up_end_rps = Some(r.end_rps);
    }
    // vLLM writes the count the run was asked for, its default 1000 included.
    info.num_prompts = cfg
        .num_prompts
        .or(cfg.plan.stop.max_requests())
        .unwrap_or(0);
    info.request_rate = cfg.request_rate.is_finite().then_some(cfg.request_rate);
    info.burstiness = cfg.burstiness;
    info.max_concurrency = cfg.max_concurrency.map(|c| c as u64);
    info.seed = cfg.seed;
    info.metric_percentiles = cfg.percentiles.clone();
    info.goodput_slo = cfg.slo;
    info
}

fn guess_label(target: &Target, facts: &ServerFacts) -> String {
    if matches!(target, Target::Embedded(_)) {
        return "embedded".into();
    }
    let v = facts
        .version
        .as_ref()
        .map(|v| v.to_string().to_lowercase())
        .unwrap_or_default();
    if v.contains("sglang") {
        "sglang".into()
    } else if v.contains("servebench") {
        "servebench".into()
    } else if facts.version.is_some() {
        "vllm".into()
    } else {
        "openai".into()
    }
}

fn body_options(cfg: &RunConfig, model: &str, continuous_usage: bool) -> BodyOptions {
    let mut extra = serde_json::Map::new();
    if cfg.stream && cfg.usage == UsageRequest::None {
        extra.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": false}),
        );
    }
    // Sampling parameters, --logprobs and --extra-body, after ours so they can override.
    extra.extend(cfg.body_extra.clone());
    BodyOptions {
        model: model.to_string(),
        stream: cfg.stream,
        ignore_eos: cfg.ignore_eos,
        min_tokens: cfg.min_tokens,
        continuous_usage_stats: continuous_usage,
        extra,
    }
}

/// Prepare request bodies on an OS thread, ahead of the dispatcher, so the timed path never
/// builds a prompt or serializes JSON. Returns once the first batch is ready (all of it when
/// the run is small enough), so the clock starts with work waiting.
async fn spawn_producer(
    cfg: &RunConfig,
    maker: PromptMaker,
    opts: BodyOptions,
    total: Option<u64>,
) -> (mpsc::Receiver<PreparedRequest>, std::thread::JoinHandle<()>) {
    const AHEAD: usize = 8192;
    let cap = total.map_or(AHEAD, |t| (t as usize).clamp(1, AHEAD));
    let (tx, rx) = mpsc::channel(cap);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let spec = cfg.workload.clone();
    let endpoint = cfg.endpoint;
    let seed = cfg.seed;
    let handle = std::thread::Builder::new()
        .name("servebench-workload".into())
        .spawn(move || {
            let mut ready = Some(ready_tx);
            let mut made = 0usize;
            for item in spec.items(&maker, seed) {
                if total.is_some_and(|t| made as u64 >= t) {
                    break;
                }
                let req = PreparedRequest {
                    body: build_body(endpoint, &item.prompt, item.max_tokens, &opts),
                    prompt_tokens: item.prompt_tokens,
                    max_tokens: item.max_tokens,
                };
                if tx.blocking_send(req).is_err() {
                    break; // the run ended (duration stop); nothing more is wanted
                }
                made += 1;
                if made == cap {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
            }
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
        })
        .expect("spawning the workload thread");
    let _ = ready_rx.await;
    (rx, handle)
}

/// Output lengths against what was asked, over successful measured requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lengths {
    successful: u64,
    /// Ended before `max_tokens` (an end of sequence, a stop string, a grammar's end).
    stopped_early: u64,
}

impl Lengths {
    fn push(&mut self, rec: &RequestRecord) {
        if rec.phase == Phase::Measured && rec.outcome.is_success() {
            self.successful += 1;
            if rec.output_tokens < rec.max_tokens {
                self.stopped_early += 1;
            }
        }
    }
}

/// The one line saying which fields the server refused and what that did to the run; `None`
/// when it refused none.
fn refusal_note(refused: &[preflight::OptionalField], lengths: Lengths) -> Option<String> {
    if refused.is_empty() {
        return None;
    }
    let names: Vec<&str> = refused.iter().map(|f| f.name()).collect();
    let mut note = format!(
        "this server refuses {}: dropped from every request",
        names.join(", ")
    );
    if refused.iter().any(|f| f.forces_length()) {
        note = format!(
            "this server refuses {}: output lengths are not forced; {} of {} requests stopped early",
            names.join(", "),
            lengths.stopped_early,
            lengths.successful
        );
    }
    Some(note)
}

/// Fold and journal each record as it completes; never blocks a sender.
/// A journal that can no longer be written interrupts the run at once: measuring on would only
/// lose more records (a full disk once cost 1614 of 2000). The writer is handed back unfinished,
/// for the caller to end with the footer once the run's end is known.
async fn consume(
    mut rx: mpsc::UnboundedReceiver<RequestRecord>,
    journal: JournalWriter,
    progress: Progress,
    save_detailed: bool,
    interrupt: Interrupt,
) -> (
    Accumulator,
    Lengths,
    JournalWriter,
    Result<(), JournalError>,
) {
    let mut acc = Accumulator::new();
    let mut lengths = Lengths::default();
    let mut io = Ok(());
    while let Some(mut rec) = rx.recv().await {
        journal_text(&mut rec, save_detailed);
        if rec.phase == Phase::Measured {
            progress.tick(rec.outcome.is_success());
        }
        acc.push(&rec);
        lengths.push(&rec);
        if io.is_ok() {
            io = journal.record(rec);
            if io.is_err() {
                interrupt.trigger_because(InterruptCause::JournalFailed);
            }
        }
    }
    progress.finish();
    (acc, lengths, journal, io)
}

/// A progress bar on stderr, updated by the consumer task (never by a request's task).
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(enabled: bool, total: Option<u64>) -> Progress {
        if !enabled {
            return Progress(None);
        }
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress(Some(bar))
    }
    fn tick(&self, ok: bool) {
        if let Some(b) = &self.0 {
            b.inc(1);
            if !ok {
                b.set_message("(some failed)");
            }
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`); `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI servebench targets.
    Some((utime + stime) / 100.0)
}

/// Race a step of the startup check against the interrupt: a signal during discovery or a
/// probe (a server that accepts and never answers) ends the command at once, with the signal's
/// status; nothing was measured, so nothing is written.
async fn unless_interrupted<T>(
    interrupt: &Interrupt,
    step: impl std::future::Future<Output = T>,
) -> Result<T, AppError> {
    tokio::select! {
        r = step => Ok(r),
        _ = interrupt.wait() => {
            let cause = interrupt.cause().unwrap_or(InterruptCause::CtrlC);
            Err(AppError {
                status: ExitStatus::of_interrupt(cause),
                error: anyhow!(
                    "{} during the startup check, before any request was measured; no summary was written",
                    super::signals::name(cause)
                ),
            })
        }
    }
}

/// Write the result file at `path`; when that fails (a full disk), at the same name in
/// `$TMPDIR`, and failing that as JSON on stderr, so what was measured is never lost. Returns
/// where it went and whether that is somewhere else than asked.
fn write_summary(path: &std::path::Path, result: &ResultFile) -> (PathBuf, bool) {
    let first = match report::write_result(path, result) {
        Ok(()) => return (path.to_path_buf(), false),
        Err(e) => e,
    };
    let fallback =
        std::env::temp_dir().join(path.file_name().unwrap_or("servebench.json".as_ref()));
    match report::write_result(&fallback, result) {
        Ok(()) => {
            eprintln!(
                "error: {first}; the summary of what was measured is at {} instead",
                fallback.display()
            );
            (fallback, true)
        }
        Err(second) => {
            eprintln!(
                "error: {first}; {second}; the summary of what was measured follows on stderr as JSON"
            );
            match serde_json::to_string(result) {
                Ok(json) => eprintln!("{json}"),
                Err(e) => eprintln!("error: cannot serialize the summary: {e}"),
            }
            (path.to_path_buf(), true)
        }
    }
}

fn exit_status(
    cfg: &RunConfig,
    s: &Summary,
    load: &LoadReport,
    cause: Option<InterruptCause>,
) -> ExitStatus {
    if load.stop_reason == StopReason::Interrupted {
        return ExitStatus::of_interrupt(cause.unwrap_or(InterruptCause::CtrlC));
    }
    if s.attempted > 0 && s.completed == 0 {
        eprintln!(
            "error: every measured request failed ({} of {})",
            s.failed, s.attempted
        );
        return ExitStatus::Failed;
    }
    if let Some(min) = cfg.fail_under_goodput {
        let good = s
            .goodput
            .as_ref()
            .map(|g| g.good as f64)
            .unwrap_or(s.completed as f64);
        let frac = if s.attempted > 0 {
            good / s.attempted as f64
        } else {
            0.0
        };
        if frac < min {
            eprintln!(
                "error: goodput gate missed: {:.2}% of requests were good, --fail-under-goodput asks for {:.2}%",
                frac * 100.0,
                min * 100.0
            );
            return ExitStatus::GateMissed;
        }
    }
    if let Some(min) = cfg.fail_under_success_rate {
        let verdict = success_rate_gate(s, min);
        eprintln!("{}", verdict.line);
        if !verdict.pass {
            return ExitStatus::GateMissed;
        }
    }
    ExitStatus::Success
}

/// The `--fail-under-success-rate` verdict and its console line.
struct GateVerdict {
    pass: bool,
    line: String,
}

/// Succeeded / attempted measured requests against `min` (a run that attempted nothing fails
/// the gate: there is no evidence of success).
fn success_rate_gate(s: &Summary, min: f64) -> GateVerdict {
    let frac = if s.attempted > 0 {
        s.completed as f64 / s.attempted as f64
    } else {
        0.0
    };
    let pass = s.attempted > 0 && frac >= min;
    GateVerdict {
        pass,
        line: format!(
            "success-rate gate: {} — {} of {} requests succeeded ({:.4}), --fail-under-success-rate asks for {:.4}",
            if pass { "PASS" } else { "FAIL" },
            s.completed,
            s.attempted,
            frac,
            min
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that lists no model for its first `not_ready` answers to `/v1/models` (as an
    /// engine still loading), then one model. Counts the `/v1/models` requests, and in
    /// `HEADERED` the requests that carried `x-gateway: k` (a `--header`).
    async fn loading_server(not_ready: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    if head.to_lowercase().contains("\r\nx-gateway: k\r\n") {
                        HEADERED.fetch_add(1, Ordering::SeqCst);
                    }
                    let body = if head.starts_with("GET /v1/models") {
                        if seen.fetch_add(1, Ordering::SeqCst) < not_ready {
                            r#"{"data":[]}"#
                        } else {
                            r#"{"data":[{"id":"m"}]}"#
                        }
                    } else {
                        "{}"
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        (url, asked)
    }

    static HEADERED: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn sampling_flags_and_extra_body_reach_every_request_body() {
        use clap::Parser;
        let argv = [
            "servebench",
            "run",
            "--temperature",
            "0",
            "--top-p",
            "0.9",
            "--extra-body",
            r#"{"top_p": 0.5, "seed": 3}"#,
        ];
        let crate::cli::Command::Run(a) = crate::cli::Cli::parse_from(argv).command else {
            unreachable!()
        };
        let cfg = RunConfig::from_args(&a).unwrap();
        let opts = body_options(&cfg, "m", false);
        let body: serde_json::Value = serde_json::from_slice(&build_body(
            crate::openai::Endpoint::Completions,
            "hi",
            4,
            &opts,
        ))
        .unwrap();
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["top_p"], 0.5, "--extra-body wins, as in vLLM");
        assert_eq!(body["seed"], 3);
        assert_eq!(body["max_tokens"], 4);
    }

    #[tokio::test]
    async fn ready_check_retries_until_the_server_lists_a_model() {
        let (url, asked) = loading_server(3).await;
        let facts = wait_ready(
            &url,
            None,
            &[("x-gateway".into(), "k".into())],
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_millis(10),
        )
        .await
        .unwrap();
        assert_eq!(facts.models, ["m"]);
        assert_eq!(
            asked.load(Ordering::SeqCst),
            4,
            "three not-ready answers, then ready"
        );
        assert!(
            HEADERED.load(Ordering::SeqCst) >= 4,
            "the preflight sends --header too"
        );
    }

    #[tokio::test]
    async fn the_field_probes_send_header_too() {
        use preflight::ProbeSender;
        let (url, _) = loading_server(0).await;
        let before = HEADERED.load(Ordering::SeqCst);
        let probe = preflight::HttpProbe::new(
            &url,
            crate::openai::Endpoint::Completions,
            None,
            Duration::from_secs(5),
            &[("x-gateway".into(), "k".into())],
        )
        .unwrap();
        probe.send(bytes::Bytes::from_static(b"{}")).await.unwrap();
        assert!(HEADERED.load(Ordering::SeqCst) > before);
    }

    #[tokio::test]
    async fn without_a_ready_check_the_preflight_asks_once() {
        let (url, asked) = loading_server(3).await;
        let facts = wait_ready(
            &url,
            None,
            &[],
            Duration::from_secs(5),
            Duration::ZERO,
            Duration::from_millis(10),
        )
        .await
        .unwrap();
        assert!(facts.models.is_empty(), "the one answer stands");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_after_the_timeout_naming_the_flag() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = wait_ready(
            &format!("http://127.0.0.1:{port}"),
            None,
            &[],
            Duration::from_secs(5),
            Duration::from_millis(300),
            Duration::from_millis(20),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("--ready-check-timeout-sec"),
            "{e:#}"
        );
    }

    use preflight::OptionalField;

    #[tokio::test]
    async fn a_journal_that_cannot_be_written_interrupts_the_run() {
        // /dev/full fails every write with ENOSPC: the full disk of issue 12, as a seam.
        let path = std::path::Path::new("/dev/full");
        if !path.exists() {
            eprintln!("SKIPPED: no /dev/full on this system");
            return;
        }
        let journal = JournalWriter::create(path, None).unwrap();
        let interrupt = Interrupt::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let consumer = tokio::spawn(consume(
            rx,
            journal,
            Progress::new(false, None),
            false,
            interrupt.clone(),
        ));
        // Records keep coming until the consumer sees the writer stopped (bounded).
        let mut sent = 0u64;
        while !interrupt.is_set() {
            assert!(
                sent < 100_000,
                "the journal failure never interrupted the run"
            );
            let rec = RequestRecord::failed_before_response(
                sent,
                Phase::Measured,
                (0, 0, 0),
                1,
                crate::record::FailureKind::Timeout,
                "x".into(),
            );
            tx.send(rec).unwrap();
            sent += 1;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(interrupt.cause(), Some(InterruptCause::JournalFailed));
        drop(tx);
        let (acc, _, journal, io) = consumer.await.unwrap();
        assert!(io.is_err());
        // The accumulator saw every record, journaled or not: the summary loses nothing.
        let summary = acc.finish(&SummaryFacts::default());
        assert_eq!(summary.attempted, sent);
        let e = journal
            .finish_with(JournalEnd {
                complete: false,
                planned: None,
            })
            .unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
    }

    #[test]
    fn the_success_rate_gate_passes_at_the_threshold_and_fails_below_or_on_nothing() {
        let s = Summary {
            attempted: 10,
            completed: 9,
            ..Summary::default()
        };
        let pass = success_rate_gate(&s, 0.9);
        assert!(pass.pass, "{}", pass.line);
        assert!(pass.line.contains("PASS") && pass.line.contains("9 of 10"));
        let fail = success_rate_gate(&s, 0.95);
        assert!(!fail.pass);
        assert!(fail.line.contains("FAIL") && fail.line.contains("0.9000"));
        let nothing = success_rate_gate(&Summary::default(), 0.0);
        assert!(
            !nothing.pass,
            "no request attempted is no evidence of success"
        );
    }

    #[test]
    fn the_refusal_note_names_the_fields_and_counts_early_stops_only_when_lengths_were_forced() {
        let lengths = Lengths {
            successful: 40,
            stopped_early: 7,
        };
        assert_eq!(refusal_note(&[], lengths), None);
        assert_eq!(
            refusal_note(&[OptionalField::IgnoreEos, OptionalField::MinTokens], lengths).as_deref(),
            Some("this server refuses ignore_eos, min_tokens: output lengths are not forced; 7 of 40 requests stopped early")
        );
        assert_eq!(
            refusal_note(&[OptionalField::ContinuousUsageStats], lengths).as_deref(),
            Some("this server refuses stream_options.continuous_usage_stats: dropped from every request")
        );
    }
}
