//! Reasoning-model timing end to end: the embedded server (and the served simulator) stream
//! thinking in `delta.reasoning_content` / `delta.reasoning`, then the answer; `run` records
//! each request's parts and the summary reports TTFO, the first reasoning token, the reasoning
//! time and the token split. Counts are asserted exactly; times only as orderings.

use servebench::app::run_benchmark;
use servebench::journal::read_journal;
use servebench::report::read_result;
use std::io::BufRead;

mod common;
use common::{bin, rt, Child};

const ARGS: &[&str] = &[
    "--endpoint",
    "/v1/chat/completions",
    "--num-prompts",
    "24",
    "--max-concurrency",
    "4",
    "--random-input-len",
    "16",
    "--random-output-len",
    "12",
    "--ignore-eos",
];

#[test]
fn the_embedded_servers_reasoning_is_timed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ARGS.to_vec();
    args.extend([
        "--ttft-ms",
        "2",
        "--itl-ms",
        "1",
        "--tokens-per-chunk",
        "2",
        "--reasoning-tokens",
        "5",
    ]);
    let cfg = common::run_config(dir.path(), &args).unwrap();
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let s = &out.summary;
    assert_eq!((s.completed, s.failed), (24, 0));
    assert_eq!(s.total_output_tokens, 24 * 12);
    let p = s.output_parts.as_ref().expect("the answers had reasoning");
    assert_eq!(p.requests_with_reasoning, 24);
    // 5 thinking tokens each: chunks of 2 split at the boundary into 2 + 2 + 1 | 1 + 2 + …
    assert_eq!(p.reasoning_tokens, 24 * 5);
    assert_eq!(p.answer_tokens, 24 * 7);
    assert_eq!(
        (p.ttfo_ms.count, p.ttfr_ms.count, p.reasoning_ms.count),
        (24, 24, 24)
    );
    assert_eq!(p.requests_with_tool_calls, 0);
    assert_eq!(p.ttftc_ms.count, 0);
    // TTFT is the first thinking token; the answer starts two chunks (2 ms apart) later.
    // Two chunks can arrive in one socket read on a busy host, so only the mean is ordered.
    assert_eq!(p.ttfr_ms.mean, s.ttft_ms.mean);
    assert!(p.ttfo_ms.mean > s.ttft_ms.mean, "{p:?}");
    assert!(
        p.reasoning_ms.mean > 0.0 && p.reasoning_ms.min >= 0.0,
        "{p:?}"
    );

    for r in read_journal(&out.journal_path).unwrap().records {
        let parts = r.output_parts.expect("every answer reasoned");
        assert_eq!(parts.reasoning_tokens, 5);
        assert_eq!(parts.first_reasoning_ns, r.first_token_ns);
        assert!(r.first_content_ns >= r.first_token_ns);
    }
    let result = read_result(&out.summary_path).unwrap();
    assert_eq!(result.stats["mean_ttfo_ms"], p.ttfo_ms.mean);
    assert_eq!(
        result.stats["p99_reasoning_ms"],
        p.reasoning_ms.percentile(99.0).unwrap()
    );
    assert!(!result.stats.contains_key("mean_ttftc_ms") || p.ttftc_ms.count == 0);
}

/// Without reasoning nothing changes: no parts, no TTFO keys.
#[test]
fn plain_answers_have_no_reasoning_section() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ARGS.to_vec();
    args.extend(["--ttft-ms", "1", "--itl-ms", "0"]);
    let cfg = common::run_config(dir.path(), &args).unwrap();
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    assert_eq!(out.summary.completed, 24);
    assert_eq!(out.summary.output_parts, None);
    let result = read_result(&out.summary_path).unwrap();
    assert!(!result.stats.contains_key("mean_ttfo_ms"));
}

/// `sim serve --reasoning-tokens 4 --reasoning-field reasoning` (current vLLM's field) measured
/// by the `servebench run` binary: the console shows the reasoning section, the result the split.
#[test]
fn the_served_simulator_reasons_in_vllms_newer_field() {
    let mut server = Child(
        bin()
            .args(["sim", "serve", "--port", "0", "--reasoning-tokens", "4"])
            .args(["--reasoning-field", "reasoning"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("servebench sim serve starts"),
    );
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("sim serve prints its URL");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL on the first line")
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["run", "--no-progress", "--base-url", &url])
        .args(["--result-dir", dir.path().to_str().unwrap()])
        .args(["--result-filename", "r.json"])
        .args(ARGS)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Reasoning and Tool Calls"), "{stdout}");
    let result = read_result(&dir.path().join("r.json")).unwrap();
    let p = result.summary.output_parts.expect("the simulator reasoned");
    assert_eq!(p.requests_with_reasoning, 24);
    assert_eq!(p.reasoning_tokens, 24 * 4);
    assert_eq!(p.answer_tokens, 24 * 8);
}
