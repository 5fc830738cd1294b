//! `servebench suite` with a structured-output workload against simulated vLLM and SGLang:
//! the constrained cells check every answer, the twin runs the same prompts unconstrained,
//! and the report fills its "Structured generation" row and table from the data.

use servebench::report::study::find_placeholders;
use servebench::report::ResultFile;
use servebench::suite::{run_suite, SuiteOptions};

const SUITE: &str = r#"
title = "structured output on the simulator"
instance = "g5.xlarge"
seed = 5

[defaults]
input_len = 16
warmups = 1

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
name = "Json"
requests = 8
max_tokens = 96
concurrency = 4
structured_output = "json-schema"
unconstrained_baseline = true
"#;

fn result(dir: &std::path::Path, prefix: &str) -> ResultFile {
    let f = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.ends_with(".json") && !n.ends_with(".telemetry.json")
        })
        .unwrap_or_else(|| panic!("no {prefix}*.json in {}", dir.display()));
    serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()
}

#[test]
fn a_structured_workload_and_its_twin_fill_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("suite.toml");
    std::fs::write(&config, SUITE).unwrap();
    let results = dir.path().join("results");
    let out = run_suite(&SuiteOptions {
        config,
        force: false,
        result_dir: Some(results.clone()),
    })
    .unwrap();
    assert_eq!(
        out.cells_run, 4,
        "Json and Json-unconstrained on two targets"
    );
    for fw in ["vllm", "sglang"] {
        let json = result(&results.join(fw), "benchmark_json_");
        assert_eq!(json.correct_rate, Some(100.0), "{fw}");
        let twin = result(&results.join(fw), "benchmark_json-unconstrained_");
        assert_eq!(twin.correct_rate, None);
        // The twin ran to max_tokens (ignore_eos); the constrained answers ended at their EOS.
        assert_eq!(twin.total_output_tokens, 8 * 96);
        assert!(json.total_output_tokens < 8 * 96, "{fw}");
        // Same prompts: same planned input tokens.
        assert_eq!(json.total_input_tokens, twin.total_input_tokens, "{fw}");
    }
    let md = std::fs::read_to_string(results.join("report.md")).unwrap();
    assert!(
        find_placeholders(&md).is_empty(),
        "{:?}",
        find_placeholders(&md)
    );
    assert!(md.contains("### 5.6 Structured Output"), "{md}");
    assert!(md.contains("| Json | 100.0 (8/8) |"), "{md}");
    assert!(
        !md.contains("| Structured generation | not measured"),
        "{md}"
    );
}
