//! `servebench run --structured-output` against the embedded server on 127.0.0.1: every
//! answer is checked, the summary and result file carry `correct_rate`, and answers that
//! max_tokens cuts short are counted invalid (and not good for goodput).

use servebench::app::run_benchmark;
use servebench::config::RunConfig;
use servebench::journal::read_journal;
use servebench::record::{OutputCheck, Phase};
use std::path::Path;

mod common;
use common::rt;

fn config(dir: &Path, args: &[&str]) -> Result<RunConfig, String> {
    let mut argv = vec![
        "--num-prompts",
        "40",
        "--max-concurrency",
        "8",
        "--random-input-len",
        "8",
        "--ttft-ms",
        "1",
        "--itl-ms",
        "0.1",
        "--telemetry-interval-ms",
        "0",
        "--no-nvml",
    ];
    argv.extend_from_slice(args);
    common::run_config(dir, &argv)
}

#[test]
fn a_json_schema_run_reports_every_answer_valid() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--structured-output",
            "json-schema",
            "--random-output-len",
            "128",
            "--goodput",
            "e2el:60000",
        ],
    )
    .unwrap();
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let st = out.summary.structured.clone().expect("a constrained run");
    assert_eq!((st.checked, st.valid), (40, 40));
    assert_eq!(st.correct_rate, 100.0);
    assert_eq!(out.summary.goodput.as_ref().unwrap().good, 40);
    // Answers end by EOS well before max_tokens.
    assert!(out.summary.total_output_tokens < 40 * 128);
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out.summary_path).unwrap()).unwrap();
    assert_eq!(result["correct_rate"], 100.0);
    assert_eq!(result["structured_output"]["checked"], 40);
    assert_eq!(result["structured_output"]["valid"], 40);
    // Valid answers keep no text without --save-detailed.
    let j = read_journal(&out.journal_path).unwrap();
    assert!(j
        .records
        .iter()
        .filter(|r| r.phase == Phase::Measured)
        .all(|r| r.output_check == Some(OutputCheck::Valid) && r.output_text.is_none()));
}

#[test]
fn answers_cut_by_max_tokens_are_invalid_and_not_good() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--structured-output",
            "json-schema",
            "--random-output-len",
            "6",
            "--goodput",
            "e2el:60000",
        ],
    )
    .unwrap();
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let st = out.summary.structured.clone().unwrap();
    assert_eq!(st.checked, 40);
    assert!(st.correct_rate < 100.0, "{st:?}");
    assert_eq!(out.summary.goodput.as_ref().unwrap().good, st.valid);
    let j = read_journal(&out.journal_path).unwrap();
    let invalid: Vec<_> = j
        .records
        .iter()
        .filter(|r| matches!(r.output_check, Some(OutputCheck::Invalid { .. })))
        .collect();
    assert_eq!(invalid.len() as u64, st.invalid);
    // Invalid answers keep their (short) text as evidence.
    assert!(invalid.iter().all(|r| r.output_text.is_some()));
}

#[test]
fn a_regex_run_and_the_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--structured-output",
            "regex",
            "--regex",
            "(yes|no), [0-9]{2}",
            "--structured-dialect",
            "sglang",
            "--endpoint",
            "/v1/chat/completions",
        ],
    )
    .unwrap();
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    assert_eq!(out.summary.structured.unwrap().correct_rate, 100.0);

    let bad_schema = dir.path().join("bad-schema.json");
    std::fs::write(&bad_schema, r#"{"type": "objectx"}"#).unwrap();
    let bad_schema = bad_schema.display().to_string();
    for (args, says) in [
        (
            &["--structured-output", "json-schema", "--ignore-eos"][..],
            "EOS",
        ),
        (&["--structured-output", "regex"][..], "--regex"),
        (&["--regex", "x"][..], "--structured-output"),
        (&["--structured-output", "xml"][..], "json-schema or regex"),
        (
            &[
                "--structured-output",
                "regex",
                "--regex",
                "x",
                "--structured-dialect",
                "openai",
            ][..],
            "no regex",
        ),
        (
            &["--structured-output", "regex", "--regex", "("][..],
            "invalid --regex `(`: not a usable regex",
        ),
        (
            &[
                "--structured-output",
                "json-schema",
                "--json-schema",
                &bad_schema,
            ][..],
            "bad-schema.json`: not a usable JSON schema",
        ),
    ] {
        let e = config(dir.path(), args).unwrap_err();
        assert!(e.contains(says), "{args:?}: {e}");
    }
}

/// `predict` gives a constrained workload the verdicts the client's check would give the served
/// simulator's answers: all valid when they fit, the ones max_tokens cuts invalid (and not good).
#[test]
fn predict_reports_the_validity_a_run_would_measure() {
    use clap::Parser;
    use servebench::cli::Cli;
    let dir = tempfile::tempdir().unwrap();
    let predict = |max_tokens: &str, name: &str| -> serde_json::Value {
        let argv = [
            "servebench",
            "predict",
            "--engine",
            "vllm",
            "--gpu",
            "a10g",
            "--sim-model",
            "facebook/opt-125m",
            "--num-prompts",
            "40",
            "--max-concurrency",
            "8",
            "--random-input-len",
            "64",
            "--random-output-len",
            max_tokens,
            "--structured-output",
            "json-schema",
            "--goodput",
            "e2el:60000",
            "--result-dir",
            dir.path().to_str().unwrap(),
            "--result-filename",
            name,
        ];
        let status = servebench::app::main(Cli::try_parse_from(argv).unwrap());
        assert_eq!(status, servebench::app::ExitStatus::Success);
        serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap()
    };
    let roomy = predict("256", "roomy.json");
    assert_eq!(roomy["correct_rate"], 100.0);
    assert_eq!(roomy["structured_output"]["checked"], 40);
    let cut = predict("6", "cut.json");
    let rate = cut["correct_rate"].as_f64().unwrap();
    assert!(rate < 100.0, "{rate}");
    let valid = cut["structured_output"]["valid"].as_u64().unwrap();
    assert_eq!(cut["summary"]["goodput"]["good"].as_u64().unwrap(), valid);
}
