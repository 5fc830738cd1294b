//! The simulator served in real time over HTTP and measured by `servebench run`, against the
//! same workload through `predict` in virtual time. Bounded (the seed's Large workload: 100
//! requests, 256 tokens each, 10 in flight, ~10 s), loopback only. Agreement is asserted loosely
//! (the machine may be busy); the measured numbers are printed (`--nocapture`) and reported in
//! docs/simulator.md.

use clap::Parser;
use servebench::app::run_benchmark;
use servebench::cli::{Cli, Command};
use servebench::config::RunConfig;
use servebench::journal::read_journal;
use servebench::metrics::{summarize, SummaryFacts};
use servebench::record::Phase;
use servebench::sim::{predict, Catalog, EngineKind, PredictOptions, SimLoad, SimRequest};

mod common;
use common::rt as runtime;

#[test]
fn sim_serve_measured_by_run_agrees_with_predict() {
    let catalog = Catalog::builtin();
    let model = "facebook/opt-125m";
    let opts = PredictOptions::new(EngineKind::Vllm, "a10g", model);

    let common::SimServer {
        server,
        backend,
        rt: server_rt,
    } = common::serve_sim(&opts, model);

    let dir = tempfile::tempdir().unwrap();
    let argv = [
        "servebench",
        "run",
        "--no-progress",
        "--result-dir",
        dir.path().to_str().unwrap(),
        "--base-url",
        server.url(),
        "--num-prompts",
        "100",
        "--max-concurrency",
        "10",
        "--random-input-len",
        "1024",
        "--random-output-len",
        "256",
        "--ignore-eos",
    ];
    let cfg = match Cli::try_parse_from(argv).unwrap().command {
        Command::Run(a) => RunConfig::from_args(&a).unwrap(),
        _ => unreachable!(),
    };
    let out = runtime().block_on(run_benchmark(&cfg, false)).unwrap();
    let telemetry = out.telemetry.clone();
    let measured = out.summary;
    assert_eq!(measured.completed, 100);

    // The same requests (prompt lengths as the server counted them) through predict.
    let journal = read_journal(&out.journal_path).unwrap();
    let requests: Vec<SimRequest> = journal
        .records
        .iter()
        .filter(|r| r.phase == Phase::Measured)
        .map(|r| SimRequest {
            id: r.id,
            arrival_ns: 0,
            prompt_tokens: r.input_tokens(),
            max_output_tokens: r.max_tokens,
            prefix: Vec::new(),
            grammar: None,
        })
        .collect();
    let p = predict(
        &catalog,
        &opts,
        &requests,
        SimLoad::Closed { in_flight: 10 },
    )
    .unwrap();
    let predicted = summarize(&p.records, &SummaryFacts::default());

    let ratio = |a: f64, b: f64| a / b - 1.0;
    let tps = ratio(measured.output_throughput, predicted.output_throughput);
    let ttft = ratio(measured.ttft_ms.mean, predicted.ttft_ms.mean);
    let tpot = ratio(measured.tpot_ms.mean, predicted.tpot_ms.mean);
    println!(
        "output tok/s measured {:.1} predicted {:.1} ({:+.1}%); mean TTFT {:.2} vs {:.2} ms \
         ({:+.1}%); mean TPOT {:.3} vs {:.3} ms ({:+.1}%)",
        measured.output_throughput,
        predicted.output_throughput,
        tps * 100.0,
        measured.ttft_ms.mean,
        predicted.ttft_ms.mean,
        ttft * 100.0,
        measured.tpot_ms.mean,
        predicted.tpot_ms.mean,
        tpot * 100.0
    );
    assert!(
        tps.abs() < 0.15,
        "throughput differs by {:.1}%",
        tps * 100.0
    );
    assert!(tpot.abs() < 0.15, "TPOT differs by {:.1}%", tpot * 100.0);

    // Modelled energy: read from the served simulator's energy counter during the run, and
    // computed by predict in virtual time, both labelled simulated; J per output token agree
    // as loosely as the throughputs do (same model, real vs virtual clock).
    use servebench::telemetry::summary::EnergyMethod;
    use servebench::telemetry::{TelemetrySource, TelemetrySummary};
    let g = &telemetry.gpu_power;
    assert_eq!(telemetry.source, TelemetrySource::Simulated);
    assert_eq!(g.energy_method, Some(EnergyMethod::EnergyCounter), "{g:?}");
    let served_jpt = g.joules_per_output_token.unwrap();
    let mut modelled = TelemetrySummary::modelled(
        p.tp,
        p.busy_ns / p.duration_ns as f64,
        p.duration_ns as f64 / 1e9,
        p.energy_per_gpu_j,
        "no TDP",
    );
    modelled.set_output_tokens(predicted.total_output_tokens);
    let predicted_jpt = modelled.gpu_power.joules_per_output_token.unwrap();
    println!(
        "J/output token (simulated): served {served_jpt:.4} predicted {predicted_jpt:.4}; \
         mean power served {:.1} W predicted {:.1} W",
        g.power_mean_w.unwrap_or(f64::NAN),
        modelled.gpu_power.power_mean_w.unwrap_or(f64::NAN)
    );
    let jpt = ratio(served_jpt, predicted_jpt);
    assert!(jpt.abs() < 0.25, "J/token differs by {:.1}%", jpt * 100.0);

    // The engine counted at least the measured tokens (the client's preflight probe may add a
    // few).
    let metrics = backend.render_metrics();
    let generated: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("vllm:generation_tokens_total{model_name=\"facebook/opt-125m\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(generated >= 25600.0, "{metrics}");
    server_rt.block_on(server.shutdown());
}
