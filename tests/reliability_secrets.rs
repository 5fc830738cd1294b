//! Secrets stay secret: an API key (flag or `OPENAI_API_KEY`) and a Hugging Face token
//! (`HF_TOKEN` in the environment, in a target's `env`, or an engine's `--api-key` flag) never
//! appear in any file a run or a suite writes — results, journals, CSV, telemetry, reports,
//! server logs — nor on stdout or stderr, failures included.
//!
//! Everything runs on 127.0.0.1 against servebench's embedded server (which ignores auth).

use std::path::{Path, PathBuf};
use std::process::Command as Proc;

const CLI_KEY: &str = "sk-SECRET-cli-4f1c9a7e2b";
const ENV_KEY: &str = "sk-SECRET-env-8d2e6b0c91";
const HF_ENV: &str = "hf_SECRETenvQ7w2Lr9xYp";
const HF_TOML: &str = "hf_SECRETtomlZ3k8Vn1mQs";
const ENGINE_KEY: &str = "sk-SECRET-engine-5a9d3c";

fn bin() -> Proc {
    let mut p = Proc::new(env!("CARGO_BIN_EXE_servebench"));
    // Nothing of the test runner's own environment leaks in or out.
    p.env_remove("OPENAI_API_KEY").env_remove("HF_TOKEN");
    p
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every file under `dir` (bytes, so binary files such as PNGs are scanned too) and the given
/// texts; returns where a secret was found. Also searches for a secret's distinctive tail, so a
/// partially printed or truncated token is caught as well.
fn scan(dir: &Path, texts: &[(&str, &str)], secrets: &[&str]) -> (usize, usize, Vec<String>) {
    let mut files = Vec::new();
    all_files(dir, &mut files);
    let mut found = Vec::new();
    let mut bytes = 0;
    let needles: Vec<&str> = secrets
        .iter()
        .flat_map(|s| [*s, &s[s.len() - 8..]])
        .collect();
    let mut check = |what: &str, hay: &[u8]| {
        for n in &needles {
            if memmem(hay, n.as_bytes()) {
                found.push(format!("{n} in {what}"));
            }
        }
    };
    for f in &files {
        let b = std::fs::read(f).unwrap();
        bytes += b.len();
        check(&f.display().to_string(), &b);
    }
    for (what, t) in texts {
        check(what, t.as_bytes());
    }
    (files.len(), bytes, found)
}

fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn api_keys_never_reach_results_journals_or_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = [
        "run",
        "--no-progress",
        "--result-dir",
        d,
        "--num-prompts",
        "60",
        "--max-concurrency",
        "6",
        "--num-warmups",
        "2",
        "--random-input-len",
        "8",
        "--random-output-len",
        "6",
        "--ttft-ms",
        "1",
        "--itl-ms",
        "1",
        "--save-detailed",
        "--telemetry-interval-ms",
        "50",
        "--fault",
        "http_500=0.1",
        "--fault",
        "http_429=0.1",
        "--fault",
        "error_event=0.1",
        "--fault",
        "malformed_chunk=0.1",
        "--fault",
        "disconnect=0.1",
        "--fault",
        "stall=0.05",
        "--fault-stall-ms",
        "2000",
        "--request-timeout",
        "0.3",
    ];
    let mut texts = Vec::new();
    // 1. Key on the command line, another in the environment; failures of every kind.
    let out = bin()
        .args(base)
        .args(["--api-key", CLI_KEY])
        .env("OPENAI_API_KEY", ENV_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    texts.push((
        "run 1 stdout",
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ));
    texts.push((
        "run 1 stderr",
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ));
    // 2. Key from the environment only; every request fails.
    let out = bin()
        .args(base)
        .args(["--fault", "http_503=0.45", "--fault-seed", "1"])
        .env("OPENAI_API_KEY", ENV_KEY)
        .output()
        .unwrap();
    texts.push((
        "run 2 stderr",
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ));
    // 3. Connection refused at start, with both keys set.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bin()
        .args([
            "run",
            "--no-progress",
            "--result-dir",
            d,
            "--num-prompts",
            "3",
        ])
        .args(["--base-url", &format!("http://127.0.0.1:{port}")])
        .args(["--api-key", CLI_KEY])
        .env("OPENAI_API_KEY", ENV_KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    texts.push((
        "refused stderr",
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ));
    // 4. A key that is not a valid header value: the error must not echo it.
    let bad = format!("{CLI_KEY}\n");
    let out = bin()
        .args([
            "run",
            "--no-progress",
            "--result-dir",
            d,
            "--num-prompts",
            "3",
        ])
        .args(["--api-key", &bad])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("--api-key"), "names the flag: {err}");
    texts.push(("bad-key stderr", err));
    // 5. A password inside --base-url is refused (usage), and not echoed.
    let out = bin()
        .args([
            "run",
            "--no-progress",
            "--result-dir",
            d,
            "--num-prompts",
            "3",
        ])
        .args([
            "--base-url",
            &format!("http://user:{CLI_KEY}@127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("--base-url") && err.contains("credentials"),
        "{err}"
    );
    texts.push(("url-password stderr", err));
    // 6. `report` on the journals.
    let mut files = Vec::new();
    all_files(dir.path(), &mut files);
    for j in files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".journal.jsonl"))
    {
        let out = bin().args(["report", "--journal"]).arg(j).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        texts.push((
            "report stdout",
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
        texts.push((
            "report stderr",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let texts: Vec<(&str, &str)> = texts.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let (n, bytes, found) = scan(dir.path(), &texts, &[CLI_KEY, ENV_KEY]);
    println!(
        "\nsecrets scan (run): {n} files, {bytes} bytes, {} console texts: {} found {found:?}",
        texts.len(),
        found.len()
    );
    assert!(n >= 8, "the runs wrote their files ({n})");
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn tokens_never_reach_suite_results_reports_or_server_logs() {
    let dir = tempfile::tempdir().unwrap();
    let bin_path = env!("CARGO_BIN_EXE_servebench");
    // The engine is servebench's own server behind `sh -c`, so its command line can carry a
    // credential flag (`--api-key`, as vLLM's does) that sh passes as $0/$1 and ignores.
    let text = format!(
        r#"
title = "secrets"
seed = 1

[defaults]
input_len = 8
warmups = 1
request_timeout = 5

[[targets]]
name = "fixed"
[targets.launch]
kind = "process"
command = ["sh", "-c", "exec {bin_path} serve --port {{port}} --ttft-ms 1 --itl-ms 1 --fault http_500=0.2", "--api-key", "{ENGINE_KEY}"]
env = {{ HF_TOKEN = "{HF_TOML}", HUGGING_FACE_HUB_TOKEN = "{HF_TOML}" }}

[[targets]]
name = "sim"
[targets.launch]
kind = "sim"
engine = "vllm"
gpu = "a10g"
model = "facebook/opt-125m"

[[workloads]]
name = "Small"
requests = 10
max_tokens = 6
concurrency = 2
"#
    );
    let cfg = dir.path().join("suite.toml");
    std::fs::write(&cfg, text).unwrap();
    let results = dir.path().join("results");
    let out = bin()
        .arg("suite")
        .arg(&cfg)
        .arg("--result-dir")
        .arg(&results)
        .env("HF_TOKEN", HF_ENV)
        .env("OPENAI_API_KEY", ENV_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mut files = Vec::new();
    all_files(&results, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "log")),
        "the server log is kept: {files:?}"
    );
    let (n, bytes, found) = scan(
        &results,
        &[("suite stdout", &stdout), ("suite stderr", &stderr)],
        &[HF_ENV, HF_TOML, ENGINE_KEY, ENV_KEY],
    );
    println!(
        "\nsecrets scan (suite): {n} files, {bytes} bytes: {} found {found:?}",
        found.len()
    );
    assert!(found.is_empty(), "{found:?}");
}

/// An engine that prints its credentials on its own stdout (vLLM logs its non-default args,
/// `api_key` included): the child writes straight into the saved log, so the launcher scrubs
/// the file when it stops the engine. Covers a token from our environment, one from the
/// target's `env`, and an `--api-key` flag value.
#[test]
fn an_engine_that_prints_its_token_does_not_leak_it_into_the_saved_log() {
    let dir = tempfile::tempdir().unwrap();
    let bin_path = env!("CARGO_BIN_EXE_servebench");
    let text = format!(
        r#"
title = "echo"
[defaults]
input_len = 8
warmups = 0
[[targets]]
name = "fixed"
[targets.launch]
kind = "process"
command = ["sh", "-c", "echo engine args: token=$HF_TOKEN hub=$HUGGING_FACE_HUB_TOKEN key=$1; exec {bin_path} serve --port {{port}} --ttft-ms 1 --itl-ms 1", "--api-key", "{ENGINE_KEY}"]
env = {{ HUGGING_FACE_HUB_TOKEN = "{HF_TOML}" }}
[[workloads]]
name = "S"
requests = 3
max_tokens = 3
concurrency = 1
"#
    );
    let cfg = dir.path().join("suite.toml");
    std::fs::write(&cfg, text).unwrap();
    let results = dir.path().join("results");
    let out = bin()
        .arg("suite")
        .arg(&cfg)
        .arg("--result-dir")
        .arg(&results)
        .env("HF_TOKEN", HF_ENV)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    // The engine did print them, and the log shows where.
    let log = std::fs::read_to_string(results.join("fixed").join("fixed.log")).unwrap();
    assert!(
        log.contains("token=<redacted> hub=<redacted> key=<redacted>"),
        "{log}"
    );
    let (n, _, found) = scan(&results, &[], &[HF_ENV, HF_TOML, ENGINE_KEY]);
    println!(
        "\nsecrets scan (engine that prints its tokens): {n} files: {} found {found:?}",
        found.len()
    );
    assert!(found.is_empty(), "{found:?}");
}
