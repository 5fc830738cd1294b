//! The whole `servebench run` path against the embedded server on 127.0.0.1: records,
//! journal, result file, fault accounting and exit statuses. Small, bounded runs; behaviour is
//! asserted, wall-clock speed never is.

use servebench::app::{run_benchmark, ExitStatus};
use servebench::config::RunConfig;
use servebench::journal::read_journal;
use servebench::record::{Outcome, Phase, TokenSource};
use std::path::Path;

mod common;
use common::{bin, rt};

fn config(dir: &Path, args: &[&str]) -> RunConfig {
    common::run_config(dir, args).unwrap()
}

#[test]
fn faults_injected_equal_faults_counted_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--num-prompts",
            "300",
            "--max-concurrency",
            "16",
            "--num-warmups",
            "4",
            "--random-input-len",
            "8",
            "--random-output-len",
            "12",
            "--ignore-eos",
            "--ttft-ms",
            "1",
            "--itl-ms",
            "0.2",
            "--fault",
            "http_500=0.1",
            "--fault",
            "disconnect=0.05",
            "--fault-seed",
            "7",
        ],
    );
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let s = &out.summary;
    let injected = out.faults_injected.clone().unwrap();
    // The server also faults warmup requests; count what the client saw in both phases.
    let journal = read_journal(&out.journal_path).unwrap();
    assert_eq!(
        journal.records.len(),
        304,
        "every request has a journal line"
    );
    let mut seen = std::collections::BTreeMap::<String, u64>::new();
    for r in &journal.records {
        if let Outcome::Failed { kind, .. } = &r.outcome {
            *seen.entry(kind.label()).or_default() += 1;
        }
    }
    assert_eq!(seen.get("http_500"), injected.get("http_500"));
    assert_eq!(seen.get("disconnect"), injected.get("disconnect"));
    assert!(
        injected["http_500"] > 10 && injected["disconnect"] > 3,
        "{injected:?}"
    );
    // The measured summary counts the measured phase exactly.
    assert_eq!(s.attempted, 300);
    assert_eq!(s.completed + s.failed, 300);
    let measured_failed: u64 = journal
        .records
        .iter()
        .filter(|r| r.phase == Phase::Measured && !r.outcome.is_success())
        .count() as u64;
    assert_eq!(s.failed, measured_failed);
    assert_eq!(s.errors_by_kind.values().sum::<u64>(), s.failed);
    assert_eq!(out.status, ExitStatus::Success);
    // Successful requests carry exact token counts from per-chunk usage.
    for r in journal.records.iter().filter(|r| r.outcome.is_success()) {
        assert_eq!(r.output_tokens, 12);
        assert_eq!(r.usage.unwrap().completion_tokens, 12);
        assert_eq!(r.token_source, TokenSource::UsageDelta);
        assert_eq!(r.events.iter().map(|e| e.1).sum::<u32>(), 12);
    }
}

#[test]
fn multi_token_chunks_are_split_into_per_token_itl() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--num-prompts",
            "20",
            "--max-concurrency",
            "4",
            "--random-input-len",
            "8",
            "--random-output-len",
            "16",
            "--ignore-eos",
            "--ttft-ms",
            "5",
            "--itl-ms",
            "5",
            "--tokens-per-chunk",
            "4",
            "--endpoint",
            "/v1/chat/completions",
        ],
    );
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let s = &out.summary;
    assert_eq!(s.completed, 20);
    assert_eq!(s.total_output_tokens, 20 * 16);
    // 4 events of 4 tokens, 20 ms apart: ICL ≈ 20 ms, ITL ≈ 5 ms (loose: a busy machine).
    let ratio = s.icl_ms.mean / s.itl_ms.mean;
    assert!((ratio - 4.0).abs() < 0.5, "icl/itl = {ratio}");
    assert_eq!(
        s.itl_ms.count,
        20 * 12,
        "one ITL sample per token after the first event"
    );
    let journal = read_journal(&out.journal_path).unwrap();
    for r in &journal.records {
        assert_eq!(r.events.len(), 4);
        assert!(r.events.iter().all(|e| e.1 == 4));
        // The role-only first chunk of chat is not the first token.
        assert!(r.first_token_ns.unwrap() > r.headers_ns.unwrap());
    }
}

#[test]
fn usage_none_falls_back_to_counting_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--num-prompts",
            "5",
            "--max-concurrency",
            "5",
            "--random-output-len",
            "6",
            "--ignore-eos",
            "--ttft-ms",
            "1",
            "--itl-ms",
            "1",
            "--usage",
            "none",
        ],
    );
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let journal = read_journal(&out.journal_path).unwrap();
    for r in &journal.records {
        assert_eq!(r.token_source, TokenSource::Events);
        assert_eq!(r.output_tokens, 6);
        assert!(r.usage.is_none());
    }
}

#[test]
fn open_loop_schedules_from_one_start_and_records_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--num-prompts",
            "40",
            "--request-rate",
            "200",
            "--arrival",
            "constant",
            "--random-output-len",
            "4",
            "--ttft-ms",
            "1",
            "--itl-ms",
            "1",
        ],
    );
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    assert_eq!(out.summary.completed, 40);
    let mut recs = read_journal(&out.journal_path).unwrap().records;
    recs.sort_by_key(|r| r.id);
    let t0 = recs[0].scheduled_ns;
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.scheduled_ns - t0, i as u64 * 5_000_000);
    }
}

#[test]
fn exit_statuses_mean_what_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let small = [
        "run",
        "--no-progress",
        "--result-dir",
        d,
        "--num-prompts",
        "6",
        "--max-concurrency",
        "3",
        "--random-output-len",
        "3",
        "--ttft-ms",
        "1",
        "--itl-ms",
        "1",
    ];
    // success
    let st = bin().args(small).output().unwrap();
    assert_eq!(
        st.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // bad usage names the flag and the fix
    let st = bin()
        .args(small)
        .args(["--request-rate", "fast"])
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(2));
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(
        err.contains("--request-rate") && err.contains("fast") && err.contains("inf"),
        "{err}"
    );
    // every request failed
    let st = bin()
        .args(small)
        .args(["--fault", "http_500=1"])
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&st.stderr).contains("every measured request failed"));
    // goodput gate missed: nothing meets a 0.001 ms TTFT
    let st = bin()
        .args(small)
        .args(["--goodput", "ttft:0.001", "--fail-under-goodput", "0.5"])
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(3));
    // unreachable server: a clear error naming the URL
    let st = bin()
        .args(small)
        .args(["--base-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(
        err.contains("127.0.0.1:9") && err.contains("--base-url"),
        "{err}"
    );
}

#[test]
fn report_rebuilds_the_summary_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "--num-prompts",
            "30",
            "--max-concurrency",
            "5",
            "--random-output-len",
            "5",
            "--ttft-ms",
            "1",
            "--itl-ms",
            "1",
            "--fault",
            "http_503=0.2",
        ],
    );
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    let rebuilt = dir.path().join("rebuilt.json");
    let st = bin()
        .args([
            "report",
            "--journal",
            out.journal_path.to_str().unwrap(),
            "--output",
        ])
        .arg(&rebuilt)
        .output()
        .unwrap();
    assert_eq!(
        st.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out.summary_path).unwrap()).unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rebuilt).unwrap()).unwrap();
    for key in [
        "completed",
        "failed",
        "total_output_tokens",
        "mean_ttft_ms",
        "p99_itl_ms",
    ] {
        let (a, b) = (
            original[key].as_f64().unwrap(),
            again[key].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            "{key}: {a} vs {b}"
        );
    }
    assert_eq!(original["errors_by_kind"], again["errors_by_kind"]);
    // A torn last line (a crash mid-write, so before the footer a finished run ends with)
    // loses only that record.
    let text = std::fs::read_to_string(&out.journal_path).unwrap();
    let (records, footer) = text.trim_end().rsplit_once('\n').unwrap();
    assert!(footer.contains("servebench_journal_end"), "{footer}");
    let torn = dir.path().join("torn.journal.jsonl");
    std::fs::write(&torn, &records[..records.len() - 40]).unwrap();
    let j = read_journal(&torn).unwrap();
    assert_eq!(j.records.len(), 29);
    assert_eq!(j.skipped_lines, 1);
}
