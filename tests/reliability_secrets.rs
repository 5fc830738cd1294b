//! Secrets stay secret: an API key (flag or `OPENAI_API_KEY`) and a Hugging Face token
//! (`HF_TOKEN` in the environment, in a target's `env`, or an engine's `--api-key` flag) never
//! appear in any file a run or a suite writes — results, journals, CSV, telemetry, reports,
//! server logs — nor on stdout or stderr, failures included.
//!
//! A leak is any 6 characters of a secret in a row (a cut key is still a leak).
//!
//! Everything runs on 127.0.0.1: against servebench's embedded server (which ignores auth), and
//! against a raw server that echoes the API key back in every way a server can.

use std::path::{Path, PathBuf};
use std::process::Command as Proc;

const CLI_KEY: &str = "sk-SECRET-cli-4f1c9a7e2b";
const ENV_KEY: &str = "sk-SECRET-env-8d2e6b0c91";
const HF_ENV: &str = "hf_SECRETenvQ7w2Lr9xYp";
const HF_TOML: &str = "hf_SECRETtomlZ3k8Vn1mQs";
// No ordinary word inside a key: every 6-character window of it must be absent from outputs.
const ENGINE_KEY: &str = "sk-SECRET-eng-5a9d3c7f";
/// Shorter than any window of a secret that counts as a leak.
const FRAGMENT: usize = 6;

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
/// texts; returns where a secret was found. Searches for every [`FRAGMENT`]-character window of
/// each secret, so a partially printed or cut token is caught as well.
fn scan(dir: &Path, texts: &[(&str, &str)], secrets: &[&str]) -> (usize, usize, Vec<String>) {
    let mut files = Vec::new();
    all_files(dir, &mut files);
    let mut found = Vec::new();
    let mut bytes = 0;
    let needles: Vec<&str> = secrets
        .iter()
        .flat_map(|s| (0..=s.len() - FRAGMENT).map(move |i| &s[i..i + FRAGMENT]))
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

// ---- a server that echoes the key in everything it says ---------------------------------------

/// How the echoing server answers a measured request.
#[derive(Clone, Copy, Debug)]
enum Echo {
    /// HTTP 500 with a long JSON error whose message holds the key past byte 500 (it straddles
    /// the 512-byte cut of a record's message).
    Http500,
    /// A 200 stream whose `event: error` frame holds the key across the 512-byte cut.
    ErrorEvent,
    /// A 200 stream whose answer text holds the key, split over two text events.
    Answer,
    /// A 200 HTML page (not SSE) with the key in its body and in its content type.
    Html,
    /// A malformed chunk with the key where a short preview would be cut.
    Malformed,
    /// A redirect whose `location` holds the key.
    Redirect,
}

/// Reads one request (head and `content-length` body) from a blocking socket.
fn read_request(sock: &mut std::net::TcpStream) -> Option<(String, String)> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return Some((head, body));
            }
        }
        let n = sock.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn sse(events: &[String]) -> String {
    events.concat()
}

fn text_event(text: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"choices": [{"index": 0, "text": text}]})
    )
}

/// The response to one request: status line and extra headers, content type, body.
fn echo_response(key: &str, head: &str, echo: Echo) -> (String, String, String) {
    let ok = "200 OK".to_string();
    let sse_type = "text/event-stream".to_string();
    let json = "application/json".to_string();
    if head.starts_with("GET /v1/models") {
        let models = [
            serde_json::json!({"id": "m"}),
            serde_json::json!({"id": format!("m-{key}")}),
        ];
        let list = serde_json::json!({"object": "list", "data": models});
        return (ok, json, list.to_string());
    }
    if head.starts_with("GET /version") {
        let version = serde_json::json!({"version": format!("1.0 ({key})")});
        return (ok, json, version.to_string());
    }
    if head.starts_with("GET ") {
        let body = format!("nothing here for the key {key}");
        return ("404 Not Found".into(), "text/plain".into(), body);
    }
    let answer = || {
        sse(&[
            text_event(&format!("your key is {}", &key[..7])),
            text_event(&format!("{} — keep it safe", &key[7..])),
            format!(
                "data: {}\n\n",
                serde_json::json!({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
            ),
            "data: [DONE]\n\n".into(),
        ])
    };
    match echo {
        Echo::Http500 => {
            let message = format!("{} {key} was rejected", "x".repeat(500));
            let body =
                serde_json::json!({"error": {"message": message, "type": "InternalServerError"}});
            ("500 Internal Server Error".into(), json, body.to_string())
        }
        Echo::ErrorEvent => {
            let message = format!("{} {key} is not allowed", "y".repeat(495));
            let frame = serde_json::json!({"error": {"message": message}});
            (ok, sse_type, format!("event: error\ndata: {frame}\n\n"))
        }
        Echo::Answer => (ok, sse_type, answer()),
        Echo::Html => (
            ok,
            format!("text/html; charset=utf-8; k={key}"),
            format!(
                "<!DOCTYPE html><html><body>{} {key}</body></html>",
                "z".repeat(180)
            ),
        ),
        Echo::Malformed => (
            ok,
            sse_type,
            format!("data: {{\"choices\": [{} {key} oops\n\n", "w".repeat(100)),
        ),
        Echo::Redirect => (
            format!(
                "307 Temporary Redirect\r\nlocation: http://127.0.0.1:1/v1/completions?k={key}"
            ),
            "text/plain".into(),
            String::new(),
        ),
    }
}

/// A server on 127.0.0.1 that answers measured requests with `plan` in turn and puts the
/// Bearer key it was sent into everything: bodies, events, answer text and headers.
fn echo_server(plan: Vec<Echo>) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { return };
            let plan = plan.clone();
            let served = std::sync::Arc::clone(&served);
            std::thread::spawn(move || {
                while let Some((head, _body)) = read_request(&mut sock) {
                    let key = head
                        .lines()
                        .find_map(|l| l.strip_prefix("authorization: Bearer "))
                        .unwrap_or("no-key")
                        .to_string();
                    // The startup probe gets its turn too: any answer to it lets the run go on.
                    let echo = if head.starts_with("POST") {
                        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        plan[n % plan.len()]
                    } else {
                        Echo::Answer
                    };
                    let (status, ctype, body) = echo_response(&key, &head, echo);
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\nx-echo-key: {key}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Regression (issue 12): an error body or `event: error` echoing the key was cut to 512
/// characters before the key was scrubbed (the journal kept `sk-SECRET12…`), and answer text
/// (`output_text`) was never scrubbed (a full key in 4 of 20 records of a failed structured
/// check). A server that echoes the key in a 500 body, an `event: error`, a 200 answer's text
/// (with `--save-detailed`, and with a structured-output check that fails), a response header,
/// a redirect, a malformed chunk, a not-SSE HTML page, a model name and `/version`: no 6
/// characters of it anywhere.
#[test]
fn a_server_echoing_the_key_in_every_way_leaks_no_fragment_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let every_way = vec![
        Echo::Http500,
        Echo::ErrorEvent,
        Echo::Answer,
        Echo::Html,
        Echo::Malformed,
        Echo::Redirect,
    ];
    let runs: [(&str, Vec<Echo>, &[&str]); 2] = [
        ("every-way", every_way, &["--save-detailed"]),
        (
            "structured",
            vec![Echo::Answer],
            &["--structured-output", "json-schema"],
        ),
    ];
    let mut texts = Vec::new();
    let mut journals = 0;
    for (name, plan, extra) in runs {
        let port = echo_server(plan);
        let out = bin()
            .args([
                "run",
                "--no-progress",
                "--result-dir",
                d,
                "--result-filename",
                &format!("{name}.json"),
                "--base-url",
                &format!("http://127.0.0.1:{port}"),
                "--endpoint",
                "/v1/completions",
                "--model",
                "m",
                "--num-prompts",
                "12",
                "--max-concurrency",
                "2",
                "--num-warmups",
                "0",
                "--random-input-len",
                "8",
                "--random-output-len",
                "6",
                "--request-timeout",
                "10",
                "--telemetry-interval-ms",
                "50",
                "--api-key",
                CLI_KEY,
            ])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{name}: {stderr}"
        );
        let journal = dir.path().join(format!("{name}.journal.jsonl"));
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        let records = text.lines().filter(|l| l.contains("\"outcome\"")).count();
        assert_eq!(records, 12, "{name}: {stderr}");
        journals += 1;
        // The key was echoed and scrubbed, not avoided: the records say where it was.
        assert!(text.contains("<redacted>"), "{name}: {text}");
        texts.push((
            format!("{name} stdout"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
        texts.push((format!("{name} stderr"), stderr));
        let report = bin()
            .args(["report", "--journal"])
            .arg(&journal)
            .output()
            .unwrap();
        texts.push((
            format!("{name} report"),
            String::from_utf8_lossy(&report.stdout).into_owned(),
        ));
    }
    let every = std::fs::read_to_string(dir.path().join("every-way.journal.jsonl")).unwrap();
    for kind in [
        r#""kind":"http","status":500"#,
        r#""kind":"http","status":307"#,
        r#""kind":"server_error""#,
        r#""kind":"not_sse""#,
        r#""kind":"parse""#,
        r#""outcome":"success"},"output_text":"your key is <redacted>"#,
    ] {
        assert!(every.contains(kind), "{kind} missing: {every}");
    }
    // What discovery learned is kept (journal header, result file), scrubbed.
    assert!(
        every.contains("m-<redacted>") && every.contains("1.0 (<redacted>)"),
        "{every}"
    );
    let structured = std::fs::read_to_string(dir.path().join("structured.journal.jsonl")).unwrap();
    assert!(structured.contains("\"invalid\""), "{structured}");
    let texts: Vec<(&str, &str)> = texts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let (n, bytes, found) = scan(dir.path(), &texts, &[CLI_KEY]);
    println!(
        "\nsecrets scan (echoing server): {n} files, {bytes} bytes, {journals} journals, {} texts: {} found {found:?}",
        texts.len(),
        found.len()
    );
    assert!(found.is_empty(), "{found:?}");
}
