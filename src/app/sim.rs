//! The simulator's two faces on the command line: `sim serve` (the engine model behind the
//! OpenAI-compatible HTTP surface, in real time) and `predict` (the same workload and load
//! definitions as `run`, in virtual time, no HTTP).

use super::{AppError, ExitStatus};
use crate::cli::{PredictArgs, SimServeArgs, SimTargetArgs};
use crate::config::{ConfigError, LoadConfig, MetricConfig, OutputConfig, WorkloadConfig};
use crate::load::{LoadMode, Pacing, Stop};
use crate::metrics::summarize;
use crate::record::OutputCheck;
use crate::report::{self, ResultFile, RunInfo};
use crate::server::{self, ServerOptions};
use crate::sim::catalog::Catalog;
use crate::sim::conversation::{Conversations, Pacing as ConversationPacing, ReplyRule};
use crate::sim::engine::SimRequest;
use crate::sim::predict::{predict, predict_arrivals, PredictOptions, SimLoad};
use crate::sim::profile::EngineKind;
use crate::sim::serve::SimBackend;
use crate::workload::{PromptMaker, Workload};
use anyhow::{anyhow, Context};
use std::sync::Arc;

/// A validated simulator target: which engine, GPU and model, from which catalog.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimTarget {
    pub engine: EngineKind,
    pub gpu: String,
    pub model: String,
    pub tp: u32,
    #[serde(skip)]
    pub catalog: Catalog,
    /// A profile with options applied (a suite's `[targets.launch.options]`); `None`: the
    /// engine's defaults for this GPU. The prediction's result records the profile it used.
    #[serde(skip)]
    pub profile: Option<crate::sim::profile::EngineProfile>,
}

impl SimTarget {
    pub fn from_args(a: &SimTargetArgs) -> Result<SimTarget, AppError> {
        let engine = parse_engine(&a.engine).map_err(AppError::usage)?;
        let mut catalog = Catalog::builtin();
        if let Some(path) = &a.catalog {
            catalog
                .merge_file(path)
                .map_err(|e| AppError::usage(anyhow::Error::new(e)))?;
        }
        if a.tp == 0 {
            return Err(AppError::usage(ConfigError {
                field: "--tp".into(),
                value: "0".into(),
                problem: "tensor-parallel degree must be at least 1".into(),
            }));
        }
        let t = SimTarget {
            engine,
            gpu: a.gpu.clone(),
            model: a.sim_model.clone(),
            tp: a.tp,
            catalog,
            profile: None,
        };
        // Resolve names now, so a typo is a usage error listing the known names.
        t.options()
            .engine(&t.catalog)
            .map_err(|e| AppError::usage(anyhow::Error::new(e)))?;
        Ok(t)
    }

    pub fn options(&self) -> PredictOptions {
        PredictOptions {
            tp: self.tp,
            profile: self.profile.clone(),
            ..PredictOptions::new(self.engine, &self.gpu, &self.model)
        }
    }
}

pub fn parse_engine(s: &str) -> Result<EngineKind, ConfigError> {
    s.parse().map_err(|_| ConfigError {
        field: "--engine".into(),
        value: s.into(),
        problem: "the simulator models vllm and sglang; pick one".into(),
    })
}

pub(super) fn serve_command(args: &SimServeArgs) -> Result<ExitStatus, AppError> {
    let target = SimTarget::from_args(&args.target)?;
    let ip = super::serve::parse_host(&args.host)?;
    let served = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| target.model.clone());
    let engine = target
        .options()
        .engine(&target.catalog)
        .map_err(|e| AppError::usage(anyhow::Error::new(e)))?;
    // One thread: the engine loop and the HTTP server share it, as in `SimServer`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::failed)?;
    rt.block_on(super::serve::serve_until_ctrl_c(ip, args.port, || {
        let backend = SimBackend::spawn(engine, &served);
        let banner = format!(
            "simulating {} on {} ×{} serving `{served}` ({:?})",
            target.engine.as_str(),
            target.gpu,
            target.tp,
            backend.facts()
        );
        let opts = ServerOptions {
            model: served.clone(),
            max_model_len: backend.facts().max_model_len,
            reasoning: crate::config::reasoning(&args.reasoning),
            ..ServerOptions::default()
        };
        (server::app(Arc::new(backend), opts), banner)
    }))?;
    Ok(ExitStatus::Success)
}

/// An open loop in the simulator, with the in-flight cap when there is one.
fn open_load(cap: Option<std::num::NonZeroUsize>) -> SimLoad {
    match cap {
        Some(n) => SimLoad::OpenCapped {
            max_in_flight: n.get(),
        },
        None => SimLoad::Open,
    }
}

pub(super) fn predict_command(args: &PredictArgs) -> Result<ExitStatus, AppError> {
    let target = SimTarget::from_args(&args.target)?;
    predict_to_file(&target, args, PredictStyle::COMMAND, None)?;
    Ok(ExitStatus::Success)
}

/// How a prediction is dated, recorded and shown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PredictStyle {
    /// Date the run at the virtual epoch (the Unix epoch, the simulation's time zero) and leave
    /// the wall time out of the result, so the same prediction gives the same bytes on any
    /// machine at any hour (a suite cell); otherwise the wall clock dates it (`predict`).
    pub virtual_epoch: bool,
    /// Write the per-request records as a journal beside the result, as `run` does.
    pub journal: bool,
    /// Print the result table and energy line on stdout.
    pub print: bool,
}

/// The result's label: the suite's target name, or `sim-<engine>` for `predict`.
fn label_of(target: &SimTarget, label: Option<&str>) -> String {
    label.map_or_else(|| format!("sim-{}", target.engine.as_str()), String::from)
}

impl PredictStyle {
    pub const COMMAND: PredictStyle = PredictStyle {
        virtual_epoch: false,
        journal: false,
        print: true,
    };
    pub const SUITE_CELL: PredictStyle = PredictStyle {
        virtual_epoch: true,
        journal: true,
        print: false,
    };
}

/// What a prediction wrote.
#[derive(Debug)]
pub(crate) struct Predicted {
    pub summary_path: std::path::PathBuf,
    pub summary: crate::metrics::Summary,
}

/// Predict `args`' workload on `target` (its `--engine`/`--gpu`/... are not read) and write
/// the result as `run` writes one.
pub(crate) fn predict_to_file(
    target: &SimTarget,
    args: &PredictArgs,
    style: PredictStyle,
    label: Option<&str>,
) -> Result<Predicted, AppError> {
    let w = WorkloadConfig::from_args(&args.workload).map_err(AppError::usage)?;
    let l = LoadConfig::from_args(&args.load)
        .map_err(AppError::usage)?
        .sized_for(&w.spec)
        .paced_by(&w.spec)
        .map_err(AppError::usage)?;
    let m = MetricConfig::from_args(&args.metrics).map_err(AppError::usage)?;
    let o = OutputConfig::from_args(&args.output).map_err(AppError::usage)?;
    let n = match l.stop {
        Stop::Requests(n) => n,
        _ => {
            return Err(AppError::usage(ConfigError {
                field: "--duration".into(),
                value: "given".into(),
                problem: "predict runs a fixed number of requests; use --num-prompts".into(),
            }))
        }
    };
    crate::config::limits::requests(n).map_err(AppError::usage)?;
    // predict builds every request before it simulates: the whole plan must fit in memory.
    crate::config::limits::MemoryPlan {
        requests: n,
        max_prompt_tokens: w.spec.max_prompt_tokens(),
        held_prompts: n,
    }
    .check(crate::config::limits::mem_available())
    .map_err(AppError::usage)?;
    // More slots than requests changes nothing, and the simulator allocates one per slot
    // (--max-concurrency 4294967295 asked it for 32 GiB).
    let mut l = l;
    let at_most = std::num::NonZeroUsize::new(usize::try_from(n).unwrap_or(usize::MAX))
        .unwrap_or(std::num::NonZeroUsize::MIN);
    match &mut l.mode {
        LoadMode::Closed { concurrency } => *concurrency = (*concurrency).min(at_most),
        LoadMode::Open {
            max_in_flight: Some(cap),
            ..
        } => *cap = (*cap).min(at_most),
        LoadMode::Open { .. } => {}
    }
    let maker = match &w.tokenizer {
        Some(p) => PromptMaker::with_tokenizer(p).map_err(|e| AppError::usage(anyhow!(e)))?,
        None => PromptMaker::approximate(),
    };
    let (source, load) = match &w.spec {
        Workload::MultiTurn(mt) => {
            let plans = mt.conversations(&maker, w.seed);
            let (pacing, load) = conversation_pacing(&l.mode, plans.len(), w.seed)?;
            let rule = ReplyRule {
                constraint: w.structured.as_ref().map(|s| s.constraint.clone()),
                ignore_eos: w.ignore_eos,
                min_tokens: w.min_tokens.unwrap_or(0),
            };
            let c = Conversations::new(plans, pacing, rule, n);
            (Source::Conversations(Box::new(c)), load)
        }
        _ => {
            let (load, offsets) = single_turn_load(&l.mode, w.seed)?;
            let (requests, checks) = requests_of(&w, &maker, offsets, n);
            (Source::Requests(requests, checks), load)
        }
    };
    finish_predict(
        target,
        (&w, &l, &m, &o),
        n,
        (source, load),
        args.explain,
        (style, label_of(target, label)),
    )
}

/// A single-turn load in the simulator and the requests' arrival offsets.
fn single_turn_load(
    mode: &LoadMode,
    seed: u64,
) -> Result<(SimLoad, Box<dyn Iterator<Item = u64>>), AppError> {
    Ok(match mode {
        LoadMode::Closed { concurrency } => (
            SimLoad::Closed {
                in_flight: concurrency.get(),
            },
            Box::new(std::iter::repeat(0)),
        ),
        LoadMode::Open {
            pacing: Pacing::AllAtOnce,
            max_in_flight,
        } => (open_load(*max_in_flight), Box::new(std::iter::repeat(0))),
        LoadMode::Open {
            pacing: pacing @ (Pacing::Rate { .. } | Pacing::Ramp { .. }),
            max_in_flight,
        } => (
            open_load(*max_in_flight),
            Box::new(
                pacing
                    .schedule(seed)
                    .unwrap_or_else(|| Err("not a paced schedule".into()))
                    .map_err(|e| AppError::usage(anyhow!(e)))?,
            ),
        ),
        LoadMode::Open {
            pacing: Pacing::Trace(offsets),
            max_in_flight,
        } => (
            open_load(*max_in_flight),
            Box::new(offsets.as_ref().clone().into_iter()),
        ),
    })
}

/// Where a prediction's requests come from.
enum Source {
    /// The requests, and per request (by id) the verdict its answer will get when the run is
    /// constrained: the simulated answer is a valid instance unless `max_tokens` cuts it.
    Requests(Vec<SimRequest>, Vec<Option<OutputCheck>>),
    Conversations(Box<Conversations>),
}

/// Multi-turn pacing, as the session driver paces conversations: a closed loop of N keeps N
/// conversations going (no slot gate: a conversation thinking between turns holds its place);
/// an open loop starts conversations on the schedule, turns waiting for a slot under a cap.
fn conversation_pacing(
    mode: &LoadMode,
    conversations: usize,
    seed: u64,
) -> Result<(ConversationPacing, SimLoad), AppError> {
    Ok(match mode {
        LoadMode::Closed { concurrency } => {
            (ConversationPacing::Lanes(concurrency.get()), SimLoad::Open)
        }
        LoadMode::Open {
            pacing,
            max_in_flight,
        } => {
            let offsets: Vec<u64> = match pacing {
                Pacing::AllAtOnce => vec![0; conversations],
                Pacing::Rate { .. } | Pacing::Ramp { .. } => pacing
                    .schedule(seed)
                    .unwrap_or_else(|| Err("not a paced schedule".into()))
                    .map_err(|e| AppError::usage(anyhow!(e)))?
                    .take(conversations)
                    .collect(),
                Pacing::Trace(o) => o.iter().copied().take(conversations).collect(),
            };
            (
                ConversationPacing::Starts(offsets),
                open_load(*max_in_flight),
            )
        }
    })
}

/// The single-turn requests: the workload's items on their offsets, `n` of them, with the
/// verdict each answer will get in a constrained run.
fn requests_of(
    w: &WorkloadConfig,
    maker: &PromptMaker,
    offsets: Box<dyn Iterator<Item = u64>>,
    n: u64,
) -> (Vec<SimRequest>, Vec<Option<OutputCheck>>) {
    w.spec
        .items(maker, w.seed)
        .zip(offsets)
        .take(n as usize)
        .enumerate()
        .map(|(i, (item, at))| {
            // A constrained answer ends where its grammar does: the same instance the served
            // simulator would stream for request i, so predict and serve agree on its length.
            let (grammar, answer) = match &w.structured {
                Some(s) => (
                    Some(s.constraint.key()),
                    crate::server::structured_answer(&s.constraint, i as u64)
                        .map(|p| p.len() as u32),
                ),
                None => (None, None),
            };
            let mut r = SimRequest::from_text(
                i as u64,
                at,
                &item.prompt,
                item.prompt_tokens,
                answer.map_or(item.max_tokens, |a| a.clamp(1, item.max_tokens)),
            );
            r.grammar = grammar;
            // What the client's check would say: the served simulator's answer is a valid
            // instance, unless max_tokens cuts it short (then it is not JSON / no match).
            let check = answer.map(|a| {
                if a <= item.max_tokens {
                    OutputCheck::Valid
                } else {
                    OutputCheck::Invalid {
                        reason: format!(
                            "cut off by max_tokens ({} of the answer's {a} tokens)",
                            item.max_tokens
                        ),
                    }
                }
            });
            (r, check)
        })
        .unzip()
}

/// Run the prediction and write its result as `run` writes one.
fn finish_predict(
    target: &SimTarget,
    (w, l, m, o): (&WorkloadConfig, &LoadConfig, &MetricConfig, &OutputConfig),
    n: u64,
    (source, load): (Source, SimLoad),
    explain: bool,
    (style, label): (PredictStyle, String),
) -> Result<Predicted, AppError> {
    let wall = std::time::Instant::now();
    let (prediction, conversations) = match source {
        Source::Requests(requests, checks) => (
            predict(&target.catalog, &target.options(), &requests, load).map(|mut p| {
                for r in p.records.iter_mut().filter(|r| r.outcome.is_success()) {
                    r.output_check = checks.get(r.id as usize).cloned().flatten();
                }
                p
            }),
            None,
        ),
        Source::Conversations(mut c) => (
            predict_arrivals(&target.catalog, &target.options(), c.as_mut(), load),
            Some(c.tally()),
        ),
    };
    let prediction = prediction.map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    let elapsed = wall.elapsed();

    let started = if style.virtual_epoch {
        chrono::DateTime::UNIX_EPOCH
    } else {
        chrono::Utc::now()
    };
    let mut info = RunInfo::new("predict", &target.model, started);
    info.label = Some(label);
    info.engine = Some(target.engine.as_str().to_string());
    info.num_prompts = n;
    info.request_rate = l.request_rate.is_finite().then_some(l.request_rate);
    info.burstiness = l.burstiness;
    info.max_concurrency = l.max_concurrency.map(|c| c as u64);
    info.seed = w.seed;
    info.simulated = true;
    info.metric_percentiles = m.percentiles.clone();
    info.goodput_slo = m.slo;
    info.percentile_metrics = m.percentile_metrics.clone();
    info.metadata = o.metadata.iter().cloned().collect();
    if let Some(r) = &l.ramp_up {
        info.ramp_up_strategy = Some(r.strategy.to_string());
        info.ramp_up_start_rps = Some(r.start_rps);
        info.ramp_up_end_rps = Some(r.end_rps);
    }
    info.config = serde_json::json!({
        "target": target,
        "workload": w.spec,
        "engine_facts": prediction.facts,
        "profile": prediction.profile,
        "steps": prediction.steps,
        "preemptions": prediction.preemptions,
        "step_breakdown": prediction.step_breakdown,
        "conversations": conversations,
        "virtual_duration_s": prediction.duration_ns as f64 / 1e9,
    });
    if !style.virtual_epoch {
        info.config["wall_time_s"] = serde_json::json!(elapsed.as_secs_f64());
    }
    let summary = summarize(&prediction.records, &info.summary_facts());
    std::fs::create_dir_all(&o.result_dir)
        .with_context(|| format!("cannot create --result-dir {}", o.result_dir.display()))
        .map_err(AppError::failed)?;
    let name = o
        .result_filename
        .clone()
        .unwrap_or_else(|| report::default_result_filename(&info));
    let path = o.result_dir.join(name);
    if style.virtual_epoch {
        // The run's id is its file's stem, as `run` names it; here free of the wall clock.
        info.run_id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or(info.run_id);
    }
    let duration_s = prediction.duration_ns as f64 / 1e9;
    let mut telemetry = crate::telemetry::TelemetrySummary::modelled(
        prediction.tp,
        if duration_s > 0.0 {
            prediction.busy_ns / 1e9 / duration_s
        } else {
            0.0
        },
        duration_s,
        prediction.energy_per_gpu_j,
        &format!(
            "the GPU catalog has no tdp_w for {}: add it (datasheet max power) for modelled power",
            prediction.gpu
        ),
    );
    telemetry.set_output_tokens(summary.total_output_tokens);
    // The engine's own prefix-cache counters over the whole prediction (it has no warmup), as
    // the served simulator's /metrics reports them over a run's measured window.
    telemetry.prefix_cache_hit_rate = prediction.gauges.last().and_then(|g| {
        (g.prefix_cache_queries_total > 0)
            .then(|| g.prefix_cache_hits_total as f64 / g.prefix_cache_queries_total as f64)
    });
    let energy_cost = o
        .electricity
        .map(|p| super::run::energy_cost_of(p, &telemetry, summary.total_output_tokens));
    let mut result = ResultFile::new(&info, &summary);
    result.telemetry = Some(telemetry.clone());
    result.energy_cost = energy_cost.clone();
    report::write_result(&path, &result).map_err(|e| AppError::failed(anyhow::Error::new(e)))?;
    if style.journal {
        write_journal(&path, &info, &prediction.records, n)?;
    }
    if style.print {
        println!("{}", report::render_table(&info, &summary));
        println!("{}", report::energy_line(&telemetry, energy_cost.as_ref()));
    }
    if explain {
        println!(
            "Step breakdown (floor: what the GPU must do; engine_*: what the engine adds)\n{}",
            prediction.step_breakdown.render()
        );
    }
    eprintln!(
        "simulated {:.1} s of serving in {:.3} s ({:.0}× real time); result: {}",
        prediction.duration_ns as f64 / 1e9,
        elapsed.as_secs_f64(),
        prediction.duration_ns as f64 / 1e9 / elapsed.as_secs_f64().max(1e-9),
        path.display()
    );
    Ok(Predicted {
        summary_path: path,
        summary,
    })
}

/// The prediction's records as `run`'s journal (`<stem>.journal.jsonl` beside the result):
/// header, one line per request, and a footer saying it is complete.
fn write_journal(
    result: &std::path::Path,
    info: &RunInfo,
    records: &[crate::record::RequestRecord],
    planned: u64,
) -> Result<(), AppError> {
    use crate::journal::{JournalEnd, JournalHeader, JournalWriter};
    let path = result.with_extension("journal.jsonl");
    let mut header = JournalHeader::new(&info.run_id, info.start_time, info.config.clone());
    header.run = Some(info.clone());
    let failed = |e| AppError::failed(anyhow::Error::new(e));
    let journal = JournalWriter::create(&path, Some(&header)).map_err(failed)?;
    for r in records {
        journal.record(r.clone()).map_err(failed)?;
    }
    journal
        .finish_with(JournalEnd {
            complete: true,
            planned: Some(planned),
        })
        .map_err(failed)?;
    Ok(())
}
