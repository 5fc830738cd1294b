//! `run --dataset-name multi-turn` against the simulator served over loopback: every
//! conversation runs whole, the result breaks TTFT down by turn, and the simulated vLLM's
//! prefix cache is hit by each turn's history (its previous replies included). Bounded: 8
//! conversations × 4 turns of 32 output tokens, 4 at once, a few seconds at most.

use clap::Parser;
use servebench::app::run_benchmark;
use servebench::cli::{Cli, Command};
use servebench::config::RunConfig;
use servebench::journal::read_journal;
use servebench::record::Phase;
use servebench::server::Backend;
use servebench::sim::{EngineKind, PredictOptions};

mod common;
use common::rt as runtime;

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
}

#[test]
fn conversations_on_the_simulator_hit_their_history_and_report_ttft_by_turn() {
    let model = "facebook/opt-125m";
    let opts = PredictOptions::new(EngineKind::Vllm, "a10g", model);
    let common::SimServer {
        server,
        backend,
        rt: _server_rt,
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
        "--endpoint",
        "/v1/chat/completions",
        "--dataset-name",
        "multi-turn",
        "--conversation-num",
        "8",
        "--conversation-turn-mean",
        "4",
        "--conversation-first-input-len",
        "256",
        "--conversation-input-len",
        "32",
        "--conversation-output-len",
        "32",
        "--conversation-turn-delay-mean",
        "5",
        "--max-concurrency",
        "4",
        "--ignore-eos",
        "--no-nvml",
    ];
    let cfg = match Cli::try_parse_from(argv).unwrap().command {
        Command::Run(a) => RunConfig::from_args(&a).unwrap(),
        _ => unreachable!(),
    };
    let out = runtime().block_on(run_benchmark(&cfg, false)).unwrap();
    assert_eq!(
        out.summary.completed, 32,
        "{:?}",
        out.summary.errors_by_kind
    );
    let c = out.load.conversations.unwrap();
    assert_eq!((c.started, c.completed), (8, 8));

    // The result file carries the per-turn table: history grows by 32 + 32 tokens a turn.
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out.summary_path).unwrap()).unwrap();
    let turns = result["summary"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 4);
    for (k, t) in turns.iter().enumerate() {
        assert_eq!(t["turn"], k);
        assert_eq!(t["completed"], 8);
        assert_eq!(t["ttft_ms"]["count"], 8);
        assert!(t["ttft_ms"]["mean"].as_f64().unwrap() > 0.0);
        assert_eq!(
            t["mean_input_tokens"].as_f64().unwrap(),
            256.0 + 64.0 * k as f64
        );
    }
    assert_eq!(result["load"]["conversations"]["completed"], 8);

    // Records name their conversation and turn; each conversation's turns are in order.
    let journal = read_journal(&out.journal_path).unwrap();
    let measured: Vec<_> = journal
        .records
        .iter()
        .filter(|r| r.phase == Phase::Measured)
        .collect();
    for conv in 0..8u64 {
        let mut t: Vec<_> = measured
            .iter()
            .filter(|r| r.conversation == Some(conv))
            .collect();
        t.sort_by_key(|r| r.turn);
        assert_eq!(t.len(), 4);
        for w in t.windows(2) {
            assert!(w[1].scheduled_ns >= w[0].finished_ns + 5_000_000);
        }
    }

    // Turn k (k ≥ 1) repeats turn k−1's prompt and reply (ChatML as the server renders it):
    // the sim hits every whole 16-token block of that sequence but the one at its end, at
    // least. Without the replies in the history (or in the cache) the hits would stop at the
    // previous prompt.
    let metrics = backend.metrics().unwrap();
    let hits = counter(&metrics, "vllm:prefix_cache_hits_total");
    let queries = counter(&metrics, "vllm:prefix_cache_queries_total");
    eprintln!("prefix cache: {hits} of {queries} queried tokens hit");
    for t in turns {
        eprintln!(
            "turn {}: {} input tokens, TTFT mean {:.2} ms",
            t["turn"], t["mean_input_tokens"], t["ttft_ms"]["mean"]
        );
    }
    let per_conversation: f64 = (1..4)
        .map(|k| {
            let previous = 256 + 64 * (k - 1) + 32;
            f64::from((previous / 16 - 1) * 16)
        })
        .sum();
    assert!(
        hits >= 8.0 * per_conversation,
        "hits {hits} < {}",
        8.0 * per_conversation
    );
    drop(server);
}

/// `predict` simulates the same conversations in virtual time: each turn due at the previous
/// turn's finish plus the think time, the history rendered as the server renders it (so the
/// prefix cache hits alike). It must agree with the served simulator measured by `run` on
/// mean TTFT by turn and on output throughput. Tolerance: 15 % on throughput (as the
/// single-turn agreement test), and 25 % or 1 ms, whichever is larger, on each turn's mean
/// TTFT (a few ms each, where the loopback and timer jitter of a busy machine weigh more).
/// Think times are exponential (seeded, the same in both): with fixed ones the 8
/// conversations of predict finish their turns in the same step and send their next turns at
/// the same instant, batched into one prefill, while a real client's jitter spreads them over
/// two steps; that lockstep is a property of the deterministic model, not what is compared.
/// Bounded: 16 conversations × 4 turns, 8 at once, about a second of serving.
#[test]
fn predict_agrees_with_sim_serve_on_conversations() {
    let model = "facebook/opt-125m";
    let opts = PredictOptions::new(EngineKind::Vllm, "a10g", model);
    let common::SimServer {
        server,
        backend: _,
        rt: _server_rt,
    } = common::serve_sim(&opts, model);
    let dir = tempfile::tempdir().unwrap();
    let workload = [
        "--dataset-name",
        "multi-turn",
        "--conversation-num",
        "16",
        "--conversation-turn-mean",
        "4",
        "--conversation-system-prompt-len",
        "64",
        "--conversation-first-input-len",
        "512",
        "--conversation-input-len",
        "64",
        "--conversation-output-len",
        "64",
        "--conversation-turn-delay-mean",
        "20",
        "--conversation-turn-delay-dist",
        "exponential",
        "--max-concurrency",
        "8",
        "--ignore-eos",
        "--result-dir",
        dir.path().to_str().unwrap(),
    ];
    let mut argv = vec![
        "servebench",
        "run",
        "--no-progress",
        "--no-nvml",
        "--base-url",
        server.url(),
        "--endpoint",
        "/v1/chat/completions",
    ];
    argv.extend(workload);
    let cfg = match Cli::try_parse_from(argv).unwrap().command {
        Command::Run(a) => RunConfig::from_args(&a).unwrap(),
        _ => unreachable!(),
    };
    let out = runtime().block_on(run_benchmark(&cfg, false)).unwrap();
    assert_eq!(
        out.summary.completed, 64,
        "{:?}",
        out.summary.errors_by_kind
    );
    let measured: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out.summary_path).unwrap()).unwrap();
    drop(server);

    let mut argv = vec![
        "servebench",
        "predict",
        "--engine",
        "vllm",
        "--gpu",
        "a10g",
        "--sim-model",
        model,
        "--result-filename",
        "predicted.json",
    ];
    argv.extend(workload);
    let status = servebench::app::main(Cli::try_parse_from(argv).unwrap());
    assert_eq!(status, servebench::app::ExitStatus::Success);
    let predicted: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("predicted.json")).unwrap()).unwrap();

    let (m, p) = (&measured["summary"], &predicted["summary"]);
    assert_eq!(p["completed"], 64);
    let tps = |s: &serde_json::Value| s["output_throughput"].as_f64().unwrap();
    let off = tps(m) / tps(p) - 1.0;
    eprintln!(
        "output tok/s measured {:.1} predicted {:.1} ({:+.1} %)",
        tps(m),
        tps(p),
        off * 100.0
    );
    let (mt, pt) = (
        m["turns"].as_array().unwrap(),
        p["turns"].as_array().unwrap(),
    );
    assert_eq!((mt.len(), pt.len()), (4, 4));
    let mut misses = Vec::new();
    for (a, b) in mt.iter().zip(pt) {
        assert_eq!(a["turn"], b["turn"]);
        // The same prompts: the history grows by the same reply and message each turn.
        assert_eq!(a["mean_input_tokens"], b["mean_input_tokens"]);
        let (x, y) = (
            a["ttft_ms"]["mean"].as_f64().unwrap(),
            b["ttft_ms"]["mean"].as_f64().unwrap(),
        );
        eprintln!(
            "turn {}: mean TTFT measured {x:.2} ms, predicted {y:.2} ms",
            a["turn"]
        );
        if (x - y).abs() > (0.25 * y).max(1.0) {
            misses.push(format!("turn {}: {x:.2} vs {y:.2} ms", a["turn"]));
        }
    }
    assert!(
        off.abs() < 0.15,
        "throughput differs by {:.1} %",
        off * 100.0
    );
    assert!(misses.is_empty(), "mean TTFT by turn differs: {misses:?}");
}
