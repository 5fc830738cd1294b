//! `predict --explain`: the console shows one decode and one prefill step split into the floor
//! and each engine term, and the result JSON carries the same breakdown.

use std::process::Command;

fn predict(dir: &std::path::Path, in_flight: &str, extra: &[&str]) -> (String, serde_json::Value) {
    let mut args = vec![
        "predict",
        "--engine",
        "vllm",
        "--gpu",
        "h200",
        "--sim-model",
        "meta-llama/Llama-3.1-8B",
        "--dataset-name",
        "random",
        "--random-input-len",
        "2048",
        "--random-output-len",
        "64",
        "--num-prompts",
        "32",
        "--max-concurrency",
        in_flight,
        "--result-filename",
        "p.json",
        "--result-dir",
    ];
    let d = dir.to_str().unwrap();
    args.push(d);
    args.extend(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_servebench"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("p.json")).unwrap()).unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), json)
}

#[test]
fn explain_prints_the_breakdown_and_the_json_carries_it() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, json) = predict(dir.path(), "8", &["--explain"]);
    let b = &json["config"]["step_breakdown"];
    for kind in ["decode", "prefill"] {
        let s = &b[kind];
        assert!(s.is_object(), "{kind} missing: {b}");
        let step = s["step_ms"].as_f64().unwrap();
        let terms = s["terms"].as_array().unwrap();
        let names: Vec<&str> = terms.iter().map(|t| t["name"].as_str().unwrap()).collect();
        for want in [
            "matmul",
            "attention",
            "kv_write",
            "paged_attention",
            "sampling",
            "schedule",
            "detokenize",
        ] {
            assert!(names.contains(&want), "{kind}: {want} not in {names:?}");
        }
        let sum: f64 = terms.iter().map(|t| t["ms"].as_f64().unwrap()).sum();
        assert!(
            (sum - step).abs() < 1e-6 * step.max(1.0),
            "{kind}: {sum} vs {step}"
        );
        assert!(terms.iter().all(|t| t["ms"].as_f64().unwrap() >= 0.0));
        assert!(s["floor_ms"].as_f64().unwrap() <= step);
        // The console names the same step with the same batch and total.
        let line = format!("{kind} step: batch {}", s["batch"]);
        assert!(stdout.contains(&line), "{line:?} not in\n{stdout}");
        assert!(stdout.contains(&format!("{step:.3} ms")), "{stdout}");
    }
    // A step with at least one whole 2048-token prompt is never faster than the measured H200
    // floor of a 2048-token prefill (53.0 ms).
    let prefill = &b["prefill"];
    assert!(prefill["new_tokens"].as_u64().unwrap() >= 2048, "{prefill}");
    assert!(prefill["floor_ms"].as_f64().unwrap() >= 53.0, "{prefill}");
    // Up to 8 in flight: the median decode step decodes at most 8 sequences.
    let batch = b["decode"]["batch"].as_u64().unwrap();
    assert!((1..=8).contains(&batch), "{batch}");
    assert!(stdout.contains("schedule") && stdout.contains("engine_cpu"));

    // Without the flag the console has no breakdown; the JSON still does.
    let dir = tempfile::tempdir().unwrap();
    let (stdout, json) = predict(dir.path(), "8", &[]);
    assert!(!stdout.contains("Step breakdown"), "{stdout}");
    assert!(json["config"]["step_breakdown"]["decode"].is_object());
}

/// The TTFT of a lone 2048-token prompt on an H200 is at least the measured floor (53.0 ms).
#[test]
fn a_lone_2048_token_prompt_is_not_faster_than_the_h200_floor() {
    let dir = tempfile::tempdir().unwrap();
    let (_, json) = predict(dir.path(), "1", &[]);
    let ttft = json["summary"]["ttft_ms"]["min"].as_f64();
    let ttft = ttft.or_else(|| json["summary"]["min_ttft_ms"].as_f64());
    let ttft = ttft.unwrap_or_else(|| panic!("no min TTFT in {}", json["summary"]));
    assert!(ttft >= 53.0, "TTFT {ttft} ms");
}
