//! Crash safety of the whole binary: `kill -9` of a running `servebench run` loses nothing that
//! reached the journal (`servebench report --journal` rebuilds a summary of exactly those
//! records, a torn last line tolerated), and Ctrl-C (SIGINT) ends a run with status 130, a
//! partial summary and a journal line for every scheduled request.
//!
//! Each run is bounded (a few thousand short requests against the embedded server on
//! 127.0.0.1) and every child is killed on drop.

use servebench::journal::read_journal;
use servebench::record::{FailureKind, Outcome, Phase};
use std::time::{Duration, Instant};

mod common;
use common::{bin, start_slow_run, wait_exit, wait_for_records};

/// Some failures among the records, so the rebuilt counts are checked on both kinds.
const FAULTS: &[&str] = &["--fault", "http_500=0.05"];

#[test]
fn kill_9_then_report_rebuilds_every_journaled_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = Vec::new();
    for (i, at) in [50usize, 200, 600].into_iter().enumerate() {
        let name = format!("killed{i}");
        let (mut child, journal, summary) = start_slow_run(dir.path(), &name, 2000, FAULTS, &[]);
        wait_for_records(&journal, at, &mut child);
        unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) };
        let (st, _) = wait_exit(&mut child, Duration::from_secs(10));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL)
        );
        assert!(!summary.exists(), "a killed run wrote no summary");

        // What is on disk, read independently of `report`.
        let j = read_journal(&journal).unwrap();
        assert!(j.skipped_lines <= 1, "only a torn last line may be lost");
        assert!(j.records.len() >= at, "{} < {at}", j.records.len());
        assert!(j.header.is_some(), "the header survived");
        let measured: Vec<_> = j
            .records
            .iter()
            .filter(|r| r.phase == Phase::Measured)
            .collect();
        let ok = measured.iter().filter(|r| r.outcome.is_success()).count() as u64;
        let failed = measured.len() as u64 - ok;
        let tokens: u64 = measured
            .iter()
            .filter(|r| r.outcome.is_success())
            .map(|r| r.output_tokens as u64)
            .sum();

        // Also a deliberately torn copy: a crash in the middle of a line.
        let text = std::fs::read_to_string(&journal).unwrap();
        let torn = dir.path().join(format!("{name}.torn.journal.jsonl"));
        std::fs::write(&torn, &text[..text.trim_end().len() - 7]).unwrap();

        for (path, expect_n) in [(&journal, measured.len() as u64), (&torn, 0)] {
            let out = dir.path().join(format!(
                "{name}-{}.recovered.json",
                path.file_name().unwrap().len()
            ));
            let st = bin()
                .args(["report", "--journal"])
                .arg(path)
                .arg("--output")
                .arg(&out)
                .output()
                .unwrap();
            assert_eq!(
                st.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&st.stderr)
            );
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
            let completed = v["completed"].as_u64().unwrap();
            let fails = v["failed"].as_u64().unwrap();
            if expect_n > 0 {
                // The real journal: exactly what is on disk.
                assert_eq!(completed, ok, "completed");
                assert_eq!(fails, failed, "failed");
                assert_eq!(v["total_output_tokens"].as_u64().unwrap(), tokens);
                let by_kind: u64 = v["errors_by_kind"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|n| n.as_u64().unwrap())
                    .sum();
                assert_eq!(by_kind, failed);
            } else {
                // The torn copy: exactly one record fewer, the torn line reported.
                assert_eq!(completed + fails, measured.len() as u64 - 1);
                let err = String::from_utf8_lossy(&st.stderr);
                assert!(err.contains("1 lines skipped"), "{err}");
            }
        }
        table.push((at, j.records.len(), ok, failed, j.skipped_lines));
    }
    println!(
        "\n| killed after ≥ | records on disk | rebuilt completed | rebuilt failed | torn lines |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for (at, n, ok, failed, torn) in table {
        println!("| {at} | {n} | {ok} | {failed} | {torn} |");
    }
}

#[test]
fn ctrl_c_writes_a_partial_summary_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    const N: u64 = 2000;
    let (mut child, journal, summary) = start_slow_run(dir.path(), "interrupted", N, FAULTS, &[]);
    // The Ctrl-C handler is installed before the load starts; records prove the load started.
    wait_for_records(&journal, 40, &mut child);
    let sent_at = Instant::now();
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let (st, err) = wait_exit(&mut child, Duration::from_secs(20));
    let took = sent_at.elapsed();
    assert_eq!(st.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");

    // Every scheduled request has exactly one journal line.
    let j = read_journal(&journal).unwrap();
    assert_eq!(j.skipped_lines, 0, "a clean shutdown tears nothing");
    assert_eq!(j.records.len() as u64, N);
    let mut ids: Vec<u64> = j.records.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, N, "one record per request id");
    let count = |k: FailureKind| {
        j.records
            .iter()
            .filter(|r| matches!(&r.outcome, Outcome::Failed { kind, .. } if *kind == k))
            .count() as u64
    };
    let cancelled = count(FailureKind::Cancelled);
    let not_sent = count(FailureKind::NotSent);
    let ok = j.records.iter().filter(|r| r.outcome.is_success()).count() as u64;
    assert!(ok >= 30, "completed requests kept: {ok}");
    assert!(not_sent > 0 && not_sent < N, "{not_sent}");
    assert!(
        cancelled <= 8,
        "at most the in-flight requests: {cancelled}"
    );

    // The partial summary was written and counts the same records.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(v["completed"].as_u64().unwrap(), ok);
    assert_eq!(
        v["completed"].as_u64().unwrap() + v["failed"].as_u64().unwrap(),
        N
    );
    assert_eq!(v["errors_by_kind"]["not_sent"].as_u64().unwrap(), not_sent);
    assert_eq!(
        v["errors_by_kind"]["cancelled"].as_u64().unwrap_or(0),
        cancelled
    );
    println!(
        "\nSIGINT after ≥40 records: exit 130 after {took:?}; {N} journal lines: {ok} completed, \
         {cancelled} cancelled, {not_sent} not sent, {} other failures",
        N - ok - cancelled - not_sent
    );
}

#[test]
fn back_to_back_runs_with_default_names_never_overwrite_each_other() {
    // Default result names have one-second resolution; three quick runs into one directory
    // must leave three journals and three summaries (they used to overwrite each other).
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let st = bin()
            .args([
                "run",
                "--no-progress",
                "--telemetry-interval-ms",
                "0",
                "--no-nvml",
                "--num-prompts",
                "2",
                "--random-output-len",
                "2",
                "--ttft-ms",
                "1",
                "--itl-ms",
                "1",
                "--result-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(st.status.code(), Some(0));
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let journals = names
        .iter()
        .filter(|n| n.ends_with(".journal.jsonl"))
        .count();
    let summaries = names
        .iter()
        .filter(|n| n.ends_with(".json") && !n.ends_with(".telemetry.json"))
        .count();
    assert_eq!((journals, summaries), (3, 3), "{names:?}");
    // The CSV has a row per run.
    let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
}
