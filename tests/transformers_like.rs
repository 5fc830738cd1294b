//! The whole binary against a server that frames its answers like `transformers serve`: every
//! stream ends cleanly after the finish chunk that carries `usage`, with no `data: [DONE]`, and
//! there is no `/metrics` (404). Issue 10 saw every such request counted as a `disconnect`
//! and an engine-metrics error every 250 ms; now the run is 100 % successful, says how many
//! streams ended without `[DONE]`, and turns the engine sampler off with one note.
//!
//! The server is a few axum routes on 127.0.0.1:0 on a runtime of its own; the run is the real
//! `servebench run` process, so its stderr is what a user sees.

use axum::body::Body;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod common;
use common::{bin, rt};

/// `transformers serve`'s chat stream (see tests/fixtures/sse/transformers_chat_no_done.sse):
/// a role chunk, one chunk per piece, the finish chunk with usage; then the body ends.
fn chat_stream(pieces: &[&str]) -> Vec<String> {
    let chunk = |choice: String, tail: String| {
        format!(
            "data: {{\"id\":\"req_0\",\"choices\":[{choice}],\"created\":1764300000,\"model\":\"tiny\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"\"{tail}}}\n\n"
        )
    };
    let mut frames = vec![chunk(
        r#"{"delta":{"role":"assistant"},"index":0}"#.into(),
        String::new(),
    )];
    for p in pieces {
        frames.push(chunk(
            format!(r#"{{"delta":{{"content":"{p}"}},"index":0}}"#),
            String::new(),
        ));
    }
    let n = pieces.len();
    frames.push(chunk(
        r#"{"delta":{},"finish_reason":"length","index":0}"#.into(),
        format!(
            r#","usage":{{"completion_tokens":{n},"prompt_tokens":9,"total_tokens":{}}}"#,
            9 + n
        ),
    ));
    frames
}

/// Serves `/v1/models` and a streaming `/v1/chat/completions`; everything else is 404. Returns
/// the base URL, the runtime that serves it, and how often `/metrics` was asked for.
fn serve() -> (String, tokio::runtime::Runtime, Arc<AtomicU64>) {
    let runtime = rt();
    let metrics_asked = Arc::new(AtomicU64::new(0));
    let asked = metrics_asked.clone();
    let app = Router::new()
        .route(
            "/v1/models",
            get(|| async {
                Json(json!({"object": "list", "data": [{"id": "tiny", "object": "model"}]}))
            }),
        )
        .route(
            "/v1/chat/completions",
            post(|Json(_body): Json<Value>| async {
                let frames = chat_stream(&[" the", " quick", " brown", " fox"]);
                let body = futures_util::stream::iter(
                    frames
                        .into_iter()
                        .map(|f| Ok::<_, std::convert::Infallible>(f.into_bytes())),
                );
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(body),
                )
                    .into_response()
            }),
        )
        .route(
            "/metrics",
            get(move || {
                asked.fetch_add(1, Ordering::SeqCst);
                async {
                    (
                        axum::http::StatusCode::NOT_FOUND,
                        "{\"detail\":\"Not Found\"}",
                    )
                }
            }),
        );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), runtime, metrics_asked)
}

#[test]
fn a_transformers_serve_like_server_is_fully_successful_and_its_missing_metrics_noted_once() {
    let (url, _server_rt, metrics_asked) = serve();
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "run",
            "--no-progress",
            "--no-nvml",
            "--base-url",
            &url,
            "--endpoint",
            "/v1/chat/completions",
            "--num-prompts",
            "30",
            "--max-concurrency",
            "3",
            "--random-input-len",
            "8",
            "--random-output-len",
            "4",
            // Scraped often, so a sampler that kept asking would show it.
            "--telemetry-interval-ms",
            "10",
            "--result-filename",
            "tf.json",
            "--result-dir",
        ])
        .arg(dir.path())
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    println!("{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    for line in [
        "Successful requests:                     30",
        "Failed requests:                         0",
        "Streams without [DONE] (successful):     30 (ended cleanly after a finish_reason)",
    ] {
        assert!(table.contains(line), "missing {line:?} in\n{table}");
    }

    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("tf.json")).unwrap())
            .unwrap();
    assert_eq!(result["completed"], 30, "{result:#}");
    assert_eq!(result["failed"], 0);
    assert_eq!(result["streams_without_done"], 30);
    assert_eq!(result["total_output_tokens"], 120);
    assert_eq!(result["summary"]["tokens"]["server_completion_tokens"], 120);
    assert_eq!(result["summary"]["tokens"]["records_disagreeing"], 0);

    // /metrics answered 404 once and was not asked again; one note says so.
    assert_eq!(metrics_asked.load(Ordering::SeqCst), 1, "{stderr}");
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("answered HTTP 404"))
        .collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].starts_with("note: ") && notes[0].contains("/metrics answered HTTP 404"),
        "{stderr}"
    );
    let reason = result["telemetry"]["engine_unavailable_reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("engine telemetry is off for this run"),
        "{reason}"
    );
}
