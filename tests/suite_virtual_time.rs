//! `servebench suite` on `kind = "sim"` targets runs in virtual time by default: the engine
//! model `servebench predict` runs, no HTTP, no wall clock. The same study run twice — once
//! beside a CPU hog — gives the same combined CSV byte for byte and the same recommendations,
//! and a cell made in real time is never kept as a virtual-time one.

use servebench::report::ResultFile;
use servebench::suite::{run_suite, SuiteOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The quickstart's shape, small: random, shared prefix with its baseline, structured output
/// with its unconstrained twin, and multi-turn, on simulated vLLM and SGLang.
const SUITE: &str = r#"
title = "virtual time"
instance = "g5.xlarge"
seed = 11

[defaults]
input_len = 32
warmups = 2
ignore_eos = true

[[targets]]
name = "vllm"
[targets.launch]
kind = "sim"
engine = "vllm"
gpu = "a10g"
model = "facebook/opt-125m"

[[targets]]
name = "sglang"
[targets.launch]
kind = "sim"
engine = "sglang"
gpu = "a10g"
model = "facebook/opt-125m"

[[workloads]]
name = "Small"
requests = 6
max_tokens = 16
concurrency = 2

[[workloads]]
name = "Medium"
requests = 8
max_tokens = 24
concurrency = 4

[[workloads]]
name = "Large"
requests = 10
max_tokens = 32
concurrency = 5

[[workloads]]
name = "Unshared"
requests = 8
max_tokens = 16
concurrency = 4
input_len = 264

[[workloads]]
name = "SharedPrefix"
dataset = "generated-shared-prefix"
baseline = "Unshared"
requests = 8
groups = 2
system_prompt_len = 256
question_len = 8
max_tokens = 16
concurrency = 4

[[workloads]]
name = "Structured"
requests = 6
max_tokens = 96
concurrency = 3
structured_output = "json-schema"
unconstrained_baseline = true

[[workloads]]
name = "Chat"
dataset = "multi-turn"
requests = 8
turns = 2
input_len = 32
question_len = 8
max_tokens = 8
think_time_ms = 50
concurrency = 2
"#;

fn options(config: &Path, results: &Path) -> SuiteOptions {
    SuiteOptions {
        config: config.to_path_buf(),
        force: false,
        result_dir: Some(results.to_path_buf()),
    }
}

/// The report's recommendation rows (Table 6.4 and the 7.2 list).
fn recommendations(results: &Path) -> Vec<String> {
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    let rows: Vec<String> = md
        .lines()
        .filter(|l| l.contains("Recommend") || l.starts_with("| High throughput"))
        .map(String::from)
        .collect();
    assert!(rows.len() >= 4, "no recommendation rows in\n{md}");
    rows
}

/// Spin on every core but one of this process for at most `limit`, until dropped.
struct Hog {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hog {
    fn start(limit: Duration) -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let until = Instant::now() + limit;
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Hog { stop, threads }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn result_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.ends_with(".json") && !n.ends_with(".telemetry.json")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_simulated_study_gives_the_same_bytes_idle_and_beside_a_cpu_hog() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("suite.toml");
    std::fs::write(&config, SUITE).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));

    let first = run_suite(&options(&config, &a)).unwrap();
    // 2 targets × 8 workloads (7 and the structured twin).
    assert_eq!((first.cells_run, first.cells_skipped), (16, 0));
    let second = {
        let _hog = Hog::start(Duration::from_secs(60));
        run_suite(&options(&config, &b)).unwrap()
    };
    assert_eq!(second.cells_run, 16);

    let csv_a = std::fs::read(a.join("benchmark_results_combined.csv")).unwrap();
    let csv_b = std::fs::read(b.join("benchmark_results_combined.csv")).unwrap();
    assert!(
        csv_a == csv_b,
        "the combined CSVs differ:\n{}\n---\n{}",
        String::from_utf8_lossy(&csv_a),
        String::from_utf8_lossy(&csv_b)
    );
    assert_eq!(recommendations(&a), recommendations(&b));

    // No wall clock in the CSV: every row dated at the virtual epoch, simulated, and named
    // after its cell, not the hour it ran.
    let (header, rows) =
        servebench::report::read_csv(&a.join("benchmark_results_combined.csv")).unwrap();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), 16);
    for r in &rows {
        assert_eq!(r[col("start_time")], "1970-01-01T00:00:00+00:00", "{r:?}");
        assert_eq!(r[col("simulated")], "true", "{r:?}");
        assert!(r[col("run_id")].ends_with("_00000000-000000"), "{r:?}");
        assert!(
            r[col("label")] == "vllm" || r[col("label")] == "sglang",
            "{r:?}"
        );
        assert_eq!(r[col("failed")], "0", "{r:?}");
    }

    // Each cell: a result that says how its time was kept and a complete journal, beside the
    // same file of the other run, byte for byte.
    for fw in ["vllm", "sglang"] {
        let files = result_files(&a.join(fw));
        assert_eq!(files.len(), 8, "{files:?}");
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let other = b.join(fw).join(f.file_name().unwrap());
            assert_eq!(
                text,
                std::fs::read_to_string(&other).unwrap(),
                "{}",
                f.display()
            );
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["simulated"], true, "{}", f.display());
            assert_eq!(v["time_mode"], "virtual-time", "{}", f.display());
            let r: ResultFile = serde_json::from_value(v).unwrap();
            let journal = f.with_extension("journal.jsonl");
            let lines = std::fs::read_to_string(&journal).unwrap();
            // Header, one line per measured request, footer.
            assert_eq!(
                lines.lines().count() as u64,
                r.attempted + 2,
                "{}",
                journal.display()
            );
            assert!(lines.lines().last().unwrap().contains("\"complete\":true"));
        }
    }
    // The shared-prefix cells carry the engine's prefix-cache hit rate, as served ones do.
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(
        !md.contains("| SharedPrefix | not reported"),
        "hit rate missing:\n{md}"
    );
    // The report says which mode ran.
    assert!(md.contains("virtual time"), "{md}");

    // A rerun keeps every virtual-time cell.
    let again = run_suite(&options(&config, &a)).unwrap();
    assert_eq!((again.cells_run, again.cells_kept), (0, 16));
}

#[test]
fn a_real_time_result_is_not_kept_as_a_virtual_time_one() {
    let dir = tempfile::tempdir().unwrap();
    let one = |mode: &str| {
        format!(
            "title = \"t\"\nseed = 2\n[defaults]\ninput_len = 8\nwarmups = 0\n\
             [[targets]]\nname = \"vllm\"\n[targets.launch]\nkind = \"sim\"\nengine = \"vllm\"\n\
             gpu = \"a10g\"\nmodel = \"facebook/opt-125m\"\n{mode}\n\
             [[workloads]]\nname = \"Tiny\"\nrequests = 3\nmax_tokens = 4\nconcurrency = 1\n"
        )
    };
    let results = dir.path().join("r");
    let real = dir.path().join("real.toml");
    std::fs::write(&real, one("mode = \"real-time\"")).unwrap();
    let out = run_suite(&options(&real, &results)).unwrap();
    assert_eq!(out.cells_run, 1);
    let served: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&result_files(&results.join("vllm"))[0]).unwrap(),
    )
    .unwrap();
    assert_eq!(served["time_mode"], "real-time");
    // Served in real time, still simulated: the result says so at the top.
    assert_eq!(served["simulated"], true);
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    assert!(md.contains("include this host's scheduling"), "{md}");

    // The same study in virtual time (the default) runs its cell again instead of keeping
    // the real-time one; switching back keeps the real-time one.
    let virt = dir.path().join("virtual.toml");
    std::fs::write(&virt, one("")).unwrap();
    let out = run_suite(&options(&virt, &results)).unwrap();
    assert_eq!((out.cells_run, out.cells_kept), (1, 0));
    let out = run_suite(&options(&real, &results)).unwrap();
    assert_eq!((out.cells_run, out.cells_kept), (0, 1));
    let out = run_suite(&options(&virt, &results)).unwrap();
    assert_eq!((out.cells_run, out.cells_kept), (0, 1));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, one("mode = \"wall-clock\"")).unwrap();
    let err = format!(
        "{:#}",
        run_suite(&options(&bad, &results)).unwrap_err().error
    );
    assert!(
        err.contains("real-time") && err.contains("virtual-time"),
        "{err}"
    );
}
