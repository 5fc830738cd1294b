//! Fault matrix through the whole run path: for every fault kind the embedded server can
//! inject, what it injected equals what servebench counted (by the kind the client maps it
//! to), nothing hangs, and every completed request is kept. Also: the server killed mid-run
//! (a `servebench serve` child, SIGKILL) and a server that refuses connections at start.
//!
//! Bounded: a few dozen requests per kind, short timeouts, loopback only. Run with
//! `--nocapture` to see the table of injected vs counted faults.

use servebench::app::{run_benchmark, ExitStatus};
use servebench::config::RunConfig;
use servebench::journal::{read_journal, summarize_journal};
use servebench::record::{Outcome, Phase};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{bin, rt, spawn_serve, Child};

fn config(dir: &Path, args: &[&str]) -> RunConfig {
    let quiet = ["--telemetry-interval-ms", "0", "--no-nvml"];
    common::run_config(dir, &[&quiet[..], args].concat()).unwrap()
}

/// The failure kind the client must count for each injected fault kind (`None`: the request
/// must succeed).
fn counted_as(fault: &str) -> Option<&'static str> {
    match fault {
        "http_500" => Some("http_500"),
        "http_503" => Some("http_503"),
        "http_429" => Some("http_429"),
        "disconnect" => Some("disconnect"),
        "stall" => Some("timeout"),
        "malformed_chunk" => Some("parse"),
        "error_event" => Some("server_error"),
        "error_200" => Some("server_error"),
        // A clean end after the finish chunk is complete, [DONE] or not (as vLLM counts it).
        "no_done" => None,
        "huge_chunk" => None,
        "truncated" => Some("truncated"),
        "not_sse" => Some("not_sse"),
        other => panic!("unknown fault kind {other}"),
    }
}

const KINDS: [&str; 12] = [
    "http_500",
    "http_503",
    "http_429",
    "disconnect",
    "stall",
    "malformed_chunk",
    "error_event",
    "error_200",
    "no_done",
    "huge_chunk",
    "truncated",
    "not_sse",
];

/// Kinds that exist only for streamed answers (the server neither injects nor counts them on
/// a non-streamed request).
const STREAMING_ONLY: [&str; 3] = ["no_done", "truncated", "not_sse"];

struct Row {
    kind: &'static str,
    mode: &'static str,
    counted_as: &'static str,
    injected: u64,
    counted: u64,
    completed: u64,
    attempted: u64,
}

/// One run with one fault kind at probability 0.3; returns the row for the table after
/// asserting everything a row claims.
fn one_kind(kind: &'static str, stream: bool) -> Row {
    const N: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let fault = format!("{kind}=0.3");
    let n = N.to_string();
    // A different seed per kind, so the rows are independent draws.
    let seed = (11 + KINDS.iter().position(|k| *k == kind).unwrap()).to_string();
    let mut args = vec![
        "--num-prompts",
        &n,
        "--max-concurrency",
        "8",
        "--random-input-len",
        "8",
        "--random-output-len",
        "6",
        "--ignore-eos",
        "--ttft-ms",
        "1",
        "--itl-ms",
        "1",
        "--fault",
        &fault,
        "--fault-seed",
        &seed,
        "--fault-after-tokens",
        "2",
        // A stall outlasts the request timeout, so it becomes a timeout.
        "--fault-stall-ms",
        "3000",
        "--request-timeout",
        "0.5",
    ];
    if !stream {
        args.push("--no-stream");
    }
    let cfg = config(dir.path(), &args);
    let started = Instant::now();
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    // Bounded: even every request timing out at 0.5 s in waves of 8 is ~3 s.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{kind}: the run took {:?}",
        started.elapsed()
    );
    let injected_map = out.faults_injected.clone().unwrap();
    let injected = injected_map.get(kind).copied().unwrap_or(0);
    // Only the kind asked for was injected.
    assert!(
        injected_map.keys().all(|k| k == kind),
        "{kind}: {injected_map:?}"
    );
    let s = &out.summary;
    let journal = read_journal(&out.journal_path).unwrap();
    assert_eq!(
        journal.records.len() as u64,
        N,
        "{kind}: a journal line each"
    );
    assert_eq!(journal.skipped_lines, 0);
    assert_eq!(s.attempted, N, "{kind}");
    assert_eq!(s.completed + s.failed, N, "{kind}: nothing lost");
    assert_eq!(s.errors_by_kind.values().sum::<u64>(), s.failed, "{kind}");
    let mut by_kind = BTreeMap::<String, u64>::new();
    for r in &journal.records {
        assert_eq!(r.phase, Phase::Measured);
        if let Outcome::Failed { kind, .. } = &r.outcome {
            *by_kind.entry(kind.label()).or_default() += 1;
        }
    }
    assert_eq!(
        by_kind, s.errors_by_kind,
        "{kind}: journal and summary agree"
    );
    // `servebench report --journal` rebuilds the same counts from the records alone.
    let (_, rebuilt) = summarize_journal(&out.journal_path).unwrap();
    assert_eq!(rebuilt.errors_by_kind, s.errors_by_kind, "{kind}");
    assert_eq!(
        (rebuilt.completed, rebuilt.streams_without_done),
        (s.completed, s.streams_without_done),
        "{kind}"
    );
    // Only `no_done` streams end without [DONE]; each is one success.
    let without_done = journal.records.iter().filter(|r| !r.done_marker).count() as u64;
    assert_eq!(s.streams_without_done, without_done, "{kind}");
    let label = counted_as(kind);
    let counted = match label {
        Some(l) => {
            // Every failure is of the mapped kind, and there are exactly as many as injected.
            assert_eq!(
                by_kind.keys().collect::<Vec<_>>(),
                if injected > 0 { vec![l] } else { vec![] },
                "{kind}: {by_kind:?}"
            );
            let c = by_kind.get(l).copied().unwrap_or(0);
            assert_eq!(c, injected, "{kind}: injected {injected}, counted {c}");
            c
        }
        None => {
            // huge_chunk, no_done: the requests that carried it still succeed with exact tokens.
            assert!(by_kind.is_empty(), "{kind}: {by_kind:?}");
            injected
        }
    };
    let expect_without_done = if kind == "no_done" { injected } else { 0 };
    assert_eq!(s.streams_without_done, expect_without_done, "{kind}");
    assert!(
        journal
            .records
            .iter()
            .all(|r| r.done_marker || r.outcome.is_success()),
        "{kind}: only complete streams say done_marker: false"
    );
    assert!(injected > 0, "{kind}: the seed must inject some");
    // Completed requests are kept with their measurements.
    assert_eq!(s.completed, N - if label.is_some() { injected } else { 0 });
    for r in journal.records.iter().filter(|r| r.outcome.is_success()) {
        assert_eq!(r.output_tokens, 6, "{kind}");
        assert!(r.first_token_ns.is_some());
    }
    assert_eq!(out.status, ExitStatus::Success, "{kind}");
    Row {
        kind,
        mode: if stream { "stream" } else { "no-stream" },
        counted_as: label.unwrap_or("(success)"),
        injected,
        counted,
        completed: s.completed,
        attempted: s.attempted,
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| fault kind | mode | counted as | injected | counted | completed / attempted |");
    println!("| --- | --- | --- | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} / {} |",
            r.kind, r.mode, r.counted_as, r.injected, r.counted, r.completed, r.attempted
        );
    }
}

#[test]
fn every_fault_kind_is_counted_exactly_streaming() {
    let rows: Vec<Row> = KINDS.iter().map(|k| one_kind(k, true)).collect();
    print_table(&rows);
}

#[test]
fn every_fault_kind_is_counted_exactly_non_streaming() {
    let rows: Vec<Row> = KINDS
        .iter()
        .filter(|k| !STREAMING_ONLY.contains(k))
        .map(|k| one_kind(k, false))
        .collect();
    print_table(&rows);
}

#[test]
fn all_kinds_at_once_are_each_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let faults: Vec<String> = KINDS.iter().map(|k| format!("{k}=0.06")).collect();
    let mut args = vec![
        "--num-prompts",
        "150",
        "--max-concurrency",
        "16",
        "--num-warmups",
        "3",
        "--random-input-len",
        "8",
        "--random-output-len",
        "5",
        "--ignore-eos",
        "--ttft-ms",
        "1",
        "--itl-ms",
        "1",
        "--fault-seed",
        "5",
        "--fault-stall-ms",
        "3000",
        "--request-timeout",
        "0.5",
    ];
    for f in &faults {
        args.push("--fault");
        args.push(f);
    }
    let cfg = config(dir.path(), &args);
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let injected = out.faults_injected.clone().unwrap();
    let journal = read_journal(&out.journal_path).unwrap();
    assert_eq!(journal.records.len(), 153);
    // Warmups are faulted too: compare over both phases.
    let mut seen = BTreeMap::<String, u64>::new();
    for r in &journal.records {
        if let Outcome::Failed { kind, .. } = &r.outcome {
            *seen.entry(kind.label()).or_default() += 1;
        }
    }
    let mut expected = BTreeMap::<String, u64>::new();
    for (k, n) in &injected {
        if let Some(l) = counted_as(k) {
            *expected.entry(l.to_string()).or_default() += n;
        }
    }
    println!("\nall kinds at once: injected {injected:?}\n                   counted  {seen:?}");
    assert_eq!(seen, expected);
    assert!(injected.len() >= 10, "most kinds were drawn: {injected:?}");
    // Streams without [DONE] (warmups included, like the faults): exactly the no_done ones.
    let without_done = journal.records.iter().filter(|r| !r.done_marker).count() as u64;
    assert_eq!(without_done, injected.get("no_done").copied().unwrap_or(0));
    let s = &out.summary;
    assert_eq!(s.completed + s.failed, 150);
}

#[test]
fn server_killed_mid_run_becomes_counted_failures_and_keeps_what_completed() {
    let (server, url) = spawn_serve(&["--ttft-ms", "2", "--itl-ms", "2"]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--base-url",
            &url,
            "--num-prompts",
            "300",
            "--max-concurrency",
            "4",
            "--random-input-len",
            "8",
            "--random-output-len",
            "10",
            "--request-timeout",
            "5",
            "--result-filename",
            "killed.json",
        ],
    );
    let journal_path = dir.path().join("killed.journal.jsonl");
    let pid = server.0.id() as i32;
    // Kill the server once 30 requests are in the journal.
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let n = std::fs::read_to_string(&journal_path)
                .map(|t| t.lines().filter(|l| l.contains("\"outcome\"")).count())
                .unwrap_or(0);
            if n >= 30 {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return n;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the run never reached 30 records");
    });
    let started = Instant::now();
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let at_kill = watcher.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(25));
    let s = &out.summary;
    let journal = read_journal(&out.journal_path).unwrap();
    assert_eq!(journal.records.len(), 300, "every request has a record");
    assert_eq!(s.completed + s.failed, 300);
    assert!(
        s.completed >= at_kill as u64,
        "completed {} < {at_kill} seen before the kill",
        s.completed
    );
    assert!(s.failed > 0, "requests after the kill fail");
    for k in s.errors_by_kind.keys() {
        // reset_after_send: a request the server had read when it died (never sent again).
        assert!(
            k == "connect" || k == "disconnect" || k == "reset_after_send",
            "a dead server means connect/disconnect/reset_after_send failures, got {:?}",
            s.errors_by_kind
        );
    }
    // Failures come after the successes: nothing that completed was lost or re-labelled.
    let last_ok = journal
        .records
        .iter()
        .filter(|r| r.outcome.is_success())
        .map(|r| r.finished_ns)
        .max()
        .unwrap();
    let first_connect = journal
        .records
        .iter()
        .filter(|r| matches!(&r.outcome, Outcome::Failed { kind, .. } if kind.label() == "connect"))
        .map(|r| r.sent_ns)
        .min();
    if let Some(fc) = first_connect {
        assert!(fc <= last_ok + 5_000_000_000);
    }
    assert_eq!(out.status, ExitStatus::Success, "some requests completed");
    println!(
        "\nserver killed after {at_kill} records: completed {}, failed {} {:?}",
        s.completed, s.failed, s.errors_by_kind
    );
}

#[test]
fn server_dead_from_the_start_of_the_measured_phase_exits_1() {
    // Every request fails once the server is gone: status 1 and every record kept. The server
    // answers preflight, then is killed before the load (a tiny --num-prompts after a kill).
    let (mut server, url) = spawn_serve(&["--ttft-ms", "1", "--itl-ms", "1"]);
    let dir = tempfile::tempdir().unwrap();
    // The whole binary: preflight succeeds against a live server, then the server dies.
    let mut run = Child(
        bin()
            .args([
                "run",
                "--no-progress",
                "--telemetry-interval-ms",
                "0",
                "--no-nvml",
                "--base-url",
                &url,
                "--num-prompts",
                "40",
                "--request-rate",
                "20",
                "--arrival",
                "constant",
                "--random-input-len",
                "8",
                "--random-output-len",
                "4",
                "--request-timeout",
                "2",
                "--result-filename",
                "dead.json",
                "--result-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait for the journal (created after preflight), then kill the server at once.
    let journal = dir.path().join("dead.journal.jsonl");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !journal.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(journal.exists());
    server.0.kill().unwrap();
    let _ = server.0.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = run.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the run hung after the server died"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let j = read_journal(&journal).unwrap();
    assert_eq!(j.records.len(), 40, "every scheduled request has a record");
    let ok = j.records.iter().filter(|r| r.outcome.is_success()).count();
    let code = status.code();
    // The run (2 s at 20 req/s) may have completed a first request before the kill landed.
    if ok == 0 {
        assert_eq!(code, Some(1));
        let mut err = String::new();
        std::io::Read::read_to_string(run.0.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(err.contains("every measured request failed"), "{err}");
    } else {
        assert_eq!(code, Some(0));
    }
    println!("\nserver dead before load: {ok} of 40 completed, exit {code:?}");
}

#[test]
fn connection_refused_at_start_names_the_url_and_exits_1() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = bin()
        .args([
            "run",
            "--no-progress",
            "--base-url",
            &url,
            "--num-prompts",
            "5",
            "--result-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("--base-url"), "names the flag to fix: {err}");
    println!("\nconnection refused: exit 1, stderr: {}", err.trim());
}

#[test]
fn a_server_that_never_sends_done_is_fully_successful_and_one_that_cuts_is_truncated() {
    // Every stream framed like `transformers serve` (finish chunk, clean end, no [DONE]), then
    // every stream cut after its second token: exact counts in the summary and result file.
    for (fault, completed, truncated, without_done) in
        [("no_done=1", 24u64, 0u64, 24u64), ("truncated=1", 0, 24, 0)]
    {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            &[
                "--num-prompts",
                "24",
                "--max-concurrency",
                "6",
                "--random-input-len",
                "8",
                "--random-output-len",
                "5",
                "--ignore-eos",
                "--ttft-ms",
                "1",
                "--itl-ms",
                "1",
                "--fault",
                fault,
                "--fault-after-tokens",
                "2",
                "--endpoint",
                "/v1/chat/completions",
            ],
        );
        let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
        let s = &out.summary;
        assert_eq!(s.completed, completed, "{fault}");
        assert_eq!(
            s.errors_by_kind.get("truncated").copied().unwrap_or(0),
            truncated,
            "{fault}"
        );
        assert_eq!(s.failed, truncated, "{fault}: nothing else failed");
        assert_eq!(s.streams_without_done, without_done, "{fault}");
        if completed > 0 {
            assert_eq!(s.total_output_tokens, 5 * completed, "{fault}");
            assert_eq!(s.tokens.server_completion_tokens, Some(5 * completed));
            assert_eq!(s.tokens.records_disagreeing, 0);
        }
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out.summary_path).unwrap()).unwrap();
        assert_eq!(result["streams_without_done"], without_done, "{fault}");
        assert_eq!(result["completed"], completed, "{fault}");
        let expected_status = if completed > 0 {
            ExitStatus::Success
        } else {
            ExitStatus::Failed
        };
        assert_eq!(out.status, expected_status, "{fault}");
    }
}
