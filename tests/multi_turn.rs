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
use servebench::server::{spawn_local, Backend, ServerOptions};
use servebench::sim::{Catalog, EngineKind, PredictOptions, SimBackend};
use std::sync::Arc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

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
    let catalog = Catalog::builtin();
    let model = "facebook/opt-125m";
    let opts = PredictOptions::new(EngineKind::Vllm, "a10g", model);
    let server_rt = runtime();
    let backend = server_rt
        .block_on(async { Arc::new(SimBackend::spawn(opts.engine(&catalog).unwrap(), model)) });
    let server = server_rt
        .block_on(spawn_local(
            backend.clone(),
            ServerOptions {
                model: model.into(),
                max_model_len: backend.facts().max_model_len,
                ..ServerOptions::default()
            },
        ))
        .unwrap();

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
