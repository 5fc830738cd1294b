//! `servebench sweep` and `servebench capacity` against the simulator served on 127.0.0.1:
//! the capacity search finds a rate that a confirming run at that rate meets (exit 0), and
//! both commands write their table, JSON and chart. Small, bounded runs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_servebench"))
}

/// `servebench sim serve` on a free port; killed on drop.
struct Sim(Child, String);

impl Sim {
    fn start() -> Sim {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = bin()
            .args([
                "sim", "serve", "--engine", "vllm", "--gpu", "a10g", "--port",
            ])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sim serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sim(child, url)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn capacity_found_is_met_by_a_confirming_run() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "capacity",
            "--target",
            "0.9",
            "--start-rate",
            "16",
            "--tolerance",
            "0.25",
            "--seconds-per-point",
            "2",
            "--min-requests",
            "30",
            "--max-probes",
            "8",
            "--instance",
            "g5.xlarge",
            "--",
            "--base-url",
            &sim.1,
            "--random-input-len",
            "512",
            "--random-output-len",
            "128",
            "--ignore-eos",
            "--goodput",
            "ttft:100",
            "--result-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("meets the target"), "{stdout}");
    assert!(stdout.contains("per 1M output tokens"), "{stdout}");
    let result = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with("-result.json"))
        .expect("capacity result json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(result.path()).unwrap()).unwrap();
    let cap = v["search"]["capacity"].as_f64().unwrap();
    assert!(cap > 0.0);
    assert!(v["confirm"]["good_fraction"].as_f64().unwrap() >= 0.9);
    // Every probe above the capacity that missed really missed.
    for p in v["search"]["probes"].as_array().unwrap() {
        if p["rate"].as_f64().unwrap() <= cap {
            continue;
        }
        assert!(!p["met"].as_bool().unwrap() || p["rate"].as_f64().unwrap() <= cap);
    }
}

#[test]
fn sweep_writes_a_row_per_point_and_a_chart() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "sweep",
            "--concurrency",
            "1,4",
            "--",
            "--base-url",
            &sim.1,
            "--num-prompts",
            "8",
        ])
        .args([
            "--random-input-len",
            "32",
            "--random-output-len",
            "16",
            "--result-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("latency_vs_throughput.png")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("latency_vs_throughput.svg")),
        "{names:?}"
    );
    let sweep = names
        .iter()
        .find(|n| n.starts_with("sweep-") && n.ends_with(".json") && !n.contains("concurrency"))
        .unwrap();
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(sweep)).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    // A flag the sweep sets itself is refused when also given.
    let bad = bin()
        .args([
            "sweep",
            "--concurrency",
            "1",
            "--",
            "--max-concurrency",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--max-concurrency"));
}
