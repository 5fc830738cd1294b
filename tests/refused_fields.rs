//! A strict server (the embedded one with `reject_fields`, answering 422 as Hugging Face
//! `transformers serve` does to fields outside its schema): the preflight learns which of the
//! fields servebench adds on its own account are refused, every request goes without them, and
//! the result says so with exact counts. Fields the user asked for are never dropped.

use servebench::app::run_benchmark;
use servebench::journal::read_journal;
use servebench::record::Phase;
use servebench::server::{
    spawn_local, FixedTiming, FixedTimingConfig, RequestOutcome, RunningServer, ServerOptions,
};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::rt;

/// The model stops on its own after this many tokens unless `ignore_eos` holds it.
const NATURAL_LEN: u32 = 10;

/// The strict server on `rt` (it serves for as long as that runtime lives).
fn strict_server(rt: &tokio::runtime::Runtime, reject: &[&str]) -> RunningServer {
    let backend = FixedTiming::new(FixedTimingConfig {
        ttft: Duration::from_millis(1),
        itl: Duration::ZERO,
        tokens_per_chunk: 1,
        output_cap: Some(NATURAL_LEN),
    });
    rt.block_on(spawn_local(
        Arc::new(backend),
        ServerOptions {
            model: "strict".into(),
            reject_fields: reject.iter().map(|s| s.to_string()).collect(),
            ..ServerOptions::default()
        },
    ))
    .expect("the strict server starts")
}

fn result_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn refused_optional_fields_are_dropped_and_early_stops_counted() {
    let rt = rt();
    let server = strict_server(&rt, &["ignore_eos", "min_tokens"]);
    let dir = tempfile::tempdir().unwrap();
    // Output lengths 12 ± 60 % (5..=19): some above the natural length, some not, so
    // "stopped early" is neither none nor all.
    let cfg = common::run_config(
        dir.path(),
        &[
            "--base-url",
            server.url(),
            "--model",
            "strict",
            "--endpoint",
            "/v1/chat/completions",
            "--num-prompts",
            "30",
            "--max-concurrency",
            "4",
            "--random-input-len",
            "8",
            "--random-output-len",
            "12",
            "--random-range-ratio",
            "0.6",
            "--ignore-eos",
            "--min-tokens",
            "3",
            "--seed",
            "5",
            "--telemetry-interval-ms",
            "0",
            "--no-nvml",
        ],
    )
    .unwrap();
    let out = rt.block_on(run_benchmark(&cfg, false)).unwrap();
    assert_eq!((out.summary.completed, out.summary.failed), (30, 0));

    // What the journal says each request asked for and got: the natural length wins, as the
    // server never saw ignore_eos.
    let journal = read_journal(&out.journal_path).unwrap();
    let measured: Vec<_> = journal
        .records
        .iter()
        .filter(|r| r.phase == Phase::Measured)
        .collect();
    assert_eq!(measured.len(), 30);
    for r in &measured {
        assert_eq!(r.output_tokens, r.max_tokens.min(NATURAL_LEN), "{r:?}");
    }
    let early = measured
        .iter()
        .filter(|r| r.max_tokens > NATURAL_LEN)
        .count() as u64;
    assert!(
        early > 0 && early < 30,
        "the lengths must straddle {NATURAL_LEN}: {early}"
    );

    let result = result_json(&out.summary_path);
    assert_eq!(
        result["server_refused_fields"],
        serde_json::json!(["ignore_eos", "min_tokens"])
    );
    assert_eq!(result["stopped_early"], early);
    // One probe was refused (it named both fields); nothing else was.
    let stats = server.stats();
    assert_eq!(stats.requests(RequestOutcome::BadRequest), 1);
    rt.block_on(server.shutdown());
}

#[test]
fn a_server_that_refuses_nothing_gets_every_field() {
    let rt = rt();
    let server = strict_server(&rt, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::run_config(
        dir.path(),
        &[
            "--base-url",
            server.url(),
            "--model",
            "strict",
            "--num-prompts",
            "12",
            "--random-input-len",
            "8",
            "--random-output-len",
            "16",
            "--ignore-eos",
            "--telemetry-interval-ms",
            "0",
            "--no-nvml",
        ],
    )
    .unwrap();
    let out = rt.block_on(run_benchmark(&cfg, false)).unwrap();
    assert_eq!(out.summary.completed, 12);
    // ignore_eos reached the server: every output is the full 16, past the natural stop.
    assert_eq!(out.summary.total_output_tokens, 12 * 16);
    let result = result_json(&out.summary_path);
    assert_eq!(result["server_refused_fields"], serde_json::json!([]));
    assert_eq!(result["stopped_early"], 0);
}

#[test]
fn a_refused_field_the_user_asked_for_stops_the_run_naming_it() {
    let rt = rt();
    let server = strict_server(&rt, &["structured_outputs"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::run_config(
        dir.path(),
        &[
            "--base-url",
            server.url(),
            "--model",
            "strict",
            "--endpoint",
            "/v1/chat/completions",
            "--num-prompts",
            "4",
            "--structured-output",
            "json-schema",
            "--structured-dialect",
            "vllm",
            "--telemetry-interval-ms",
            "0",
            "--no-nvml",
        ],
    )
    .unwrap();
    let err = rt
        .block_on(run_benchmark(&cfg, false))
        .expect_err("a refused structured-output field is an error, not a silent drop")
        .to_string();
    assert!(err.contains("structured_outputs"), "{err}");
    assert!(err.contains("Unexpected fields in the request"), "{err}");
    // No request of the run was sent: two probes refused, and the one without the user's
    // fields (2 tokens) that showed they were the cause.
    assert_eq!(server.stats().requests(RequestOutcome::BadRequest), 2);
    assert_eq!(server.stats().generation_tokens(), 2);
}

/// `servebench serve --reject-fields` answers exactly as `transformers serve` does, and
/// `servebench run` against it says once what it dropped, with the counts.
#[test]
fn serve_reject_fields_answers_like_transformers_and_run_says_so_once() {
    let (_server, url) = common::spawn_serve(&[
        "--model",
        "strict",
        "--ttft-ms",
        "1",
        "--itl-ms",
        "0",
        "--reject-fields",
        "ignore_eos,min_tokens",
    ]);
    let rt = rt();
    let resp = rt
        .block_on(
            reqwest::Client::new()
                .post(format!("{url}/v1/completions"))
                .header("content-type", "application/json")
                .body(r#"{"model":"strict","prompt":"hi","max_tokens":2,"ignore_eos":true}"#)
                .send(),
        )
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body = rt.block_on(resp.text()).unwrap();
    assert_eq!(
        body,
        r#"{"detail":"Unexpected fields in the request: {'ignore_eos'}"}"#
    );

    let dir = tempfile::tempdir().unwrap();
    let out = common::bin()
        .args([
            "run",
            "--base-url",
            &url,
            "--model",
            "strict",
            "--no-progress",
        ])
        .args(["--num-prompts", "12", "--random-input-len", "8"])
        .args(["--random-output-len", "6", "--ignore-eos"])
        .args(["--telemetry-interval-ms", "0", "--no-nvml", "--result-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = "this server refuses ignore_eos: output lengths are not forced; 0 of 12 requests stopped early";
    assert_eq!(stderr.matches(line).count(), 1, "{stderr}");
}
