//! `servebench suite` end to end on this machine: a simulated target and a real server
//! started as a local process through the launch module (servebench's own embedded server,
//! standing in for an engine), small workloads, every output file, resume and --force.

use servebench::report::read_csv;
use servebench::report::study::find_placeholders;
use servebench::suite::{run_suite, SuiteOptions};
use std::path::Path;

fn write_config(dir: &Path) -> std::path::PathBuf {
    let bin = env!("CARGO_BIN_EXE_servebench");
    let text = format!(
        r#"
title = "suite test: simulator and a local process"
instance = "g5.xlarge"
seed = 3

[defaults]
input_len = 16
warmups = 1

# The served simulator in real time (the client and HTTP path; virtual time is the default
# and has its own test, tests/suite_virtual_time.rs).
[[targets]]
name = "vllm"
[targets.launch]
kind = "sim"
engine = "vllm"
gpu = "a10g"
model = "facebook/opt-125m"
mode = "real-time"

[[targets]]
name = "fixed"
[targets.launch]
kind = "process"
command = ["{bin}", "serve", "--port", "{{port}}", "--ttft-ms", "2", "--itl-ms", "1"]

[[workloads]]
name = "Small"
requests = 6
max_tokens = 8
concurrency = 2

[[workloads]]
name = "Medium"
requests = 8
max_tokens = 12
concurrency = 4
"#
    );
    let p = dir.join("suite.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_suite_writes_every_file_resumes_and_reruns_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let opts = SuiteOptions {
        config: write_config(dir.path()),
        force: false,
        result_dir: Some(results.clone()),
    };
    let out = run_suite(&opts).unwrap();
    assert_eq!(
        (out.cells_run, out.cells_kept, out.cells_skipped),
        (4, 0, 0)
    );

    for fw in ["vllm", "fixed"] {
        for w in ["small", "medium"] {
            let found: Vec<_> = std::fs::read_dir(results.join(fw))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| f.starts_with(&format!("benchmark_{w}_")))
                .collect();
            for ext in [".json", ".journal.jsonl", ".telemetry.json"] {
                assert!(
                    found
                        .iter()
                        .any(|f| f.ends_with(ext)
                            && (ext != ".json" || !f.ends_with(".telemetry.json"))),
                    "{fw}/{w}: no {ext} in {found:?}"
                );
            }
        }
    }
    // The process target's log is kept next to its results.
    let log = std::fs::read_to_string(results.join("fixed").join("fixed.log")).unwrap();
    assert!(log.contains("serving model"), "{log}");

    let (header, rows) = read_csv(&results.join("benchmark_results_combined.csv")).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(header.iter().any(|h| h == "output_throughput"));
    for name in [
        "throughput_comparison",
        "latency_distribution",
        "cost_comparison",
        "gpu_utilization_heatmap",
    ] {
        assert!(results.join(format!("{name}.png")).is_file(), "{name}.png");
        assert!(results.join(format!("{name}.svg")).is_file(), "{name}.svg");
    }
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    assert!(
        find_placeholders(&md).is_empty(),
        "{:?}",
        find_placeholders(&md)
    );
    // A mixed study: the simulated rows say so, the measured ones do not pretend to be.
    assert!(md.contains("imulated"));
    assert!(std::fs::read_to_string(results.join("report.html"))
        .unwrap()
        .contains("<table"));

    // Rerun: everything is kept.
    let again = run_suite(&opts).unwrap();
    assert_eq!((again.cells_run, again.cells_kept), (0, 4));
    // --force reruns every cell.
    let forced = run_suite(&SuiteOptions {
        force: true,
        ..opts.clone()
    })
    .unwrap();
    assert_eq!(forced.cells_run, 4);
}

#[test]
fn a_target_that_cannot_start_is_reported_and_the_suite_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
title = "one broken target"
[defaults]
input_len = 8
warmups = 0

[[targets]]
name = "broken"
[targets.launch]
kind = "process"
command = ["/bin/sh", "-c", "echo 'no such engine' >&2; exit 3"]

[[targets]]
name = "sglang"
[targets.launch]
kind = "sim"
engine = "sglang"
gpu = "a10g"
model = "facebook/opt-125m"

[[workloads]]
name = "Small"
requests = 3
max_tokens = 4
concurrency = 1
"#;
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, text).unwrap();
    let results = dir.path().join("r");
    let out = run_suite(&SuiteOptions {
        config: cfg,
        force: false,
        result_dir: Some(results.clone()),
    })
    .unwrap();
    assert_eq!((out.cells_run, out.cells_skipped), (1, 1));
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    assert!(
        md.contains("broken"),
        "the report names the target that failed"
    );
    assert!(find_placeholders(&md).is_empty());
}
