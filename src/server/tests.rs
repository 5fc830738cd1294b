//! End-to-end tests of the HTTP surface over loopback, parsing the raw SSE bytes here (no
//! dependency on the project's client).

use super::*;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::task::{Context, Poll};

use futures_util::Stream;
use serde_json::{json, Value};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain HTTP client builds")
}

async fn start(backend: impl Backend, opts: ServerOptions) -> RunningServer {
    spawn_local(Arc::new(backend), opts)
        .await
        .expect("the server binds 127.0.0.1:0")
}

fn fast() -> FixedTiming {
    FixedTiming::as_fast_as_possible()
}

fn with_faults(faults: FaultConfig) -> ServerOptions {
    ServerOptions {
        faults,
        seed: 11,
        ..ServerOptions::default()
    }
}

/// Everything the server sent, and the transport error that ended the body early, if any.
async fn read_body(resp: reqwest::Response) -> (Vec<u8>, Option<String>) {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(e) => return (body, Some(format!("{e:?}"))),
        }
    }
    (body, None)
}

#[derive(Debug, Clone, PartialEq)]
struct Event {
    event: Option<String>,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

fn parse_sse(body: &[u8]) -> Vec<Event> {
    let text = std::str::from_utf8(body).expect("SSE is UTF-8");
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut event = Event {
                event: None,
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.event = Some(name.to_string());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data.push_str(data);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            event
        })
        .collect()
}

async fn post(server: &RunningServer, path: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", server.url()))
        .json(&body)
        .send()
        .await
        .expect("request sent")
}

async fn stream_events(server: &RunningServer, path: &str, body: Value) -> Vec<Event> {
    let resp = post(server, path, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/event-stream; charset=utf-8"
    );
    let (body, err) = read_body(resp).await;
    assert_eq!(err, None);
    parse_sse(&body)
}

fn completion_req(max_tokens: u32, stream: bool) -> Value {
    json!({"model": "servebench-fixed", "prompt": "one two three four", "max_tokens": max_tokens, "stream": stream})
}

fn chat_req(max_tokens: u32, stream: bool) -> Value {
    json!({"model": "servebench-fixed", "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": "say five words here"}]})
}

fn text_of(e: &Value) -> String {
    let c = &e["choices"][0];
    c.get("text")
        .or_else(|| c["delta"].get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn plain_routes_answer() {
    let server = start(fast(), ServerOptions::default()).await;
    let c = http();
    let health = c
        .get(format!("{}/health", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let models: Value = c
        .get(format!("{}/v1/models", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "servebench-fixed");
    assert_eq!(models["data"][0]["max_model_len"], 32768);
    let version: Value = c
        .get(format!("{}/version", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["backend"], "fixed");
    let metrics = c
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("servebench_faults_injected_total{kind=\"http_500\"} 0"));
    let missing = c
        .get(format!("{}/nope", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn completions_stream_like_vllm() {
    let server = start(fast(), ServerOptions::default()).await;
    let events = stream_events(&server, "/v1/completions", completion_req(5, true)).await;
    assert_eq!(events.len(), 6, "{events:?}");
    assert_eq!(events[5].data, "[DONE]");
    let chunks: Vec<Value> = events[..5].iter().map(Event::json).collect();
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["model"], "servebench-fixed");
        assert!(c["usage"].is_null());
        assert_eq!(text_of(c).split_whitespace().count(), 1);
        let finish = &c["choices"][0]["finish_reason"];
        if i < 4 {
            assert!(finish.is_null());
        } else {
            assert_eq!(finish, "length");
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn completions_stream_with_usage_and_continuous_usage() {
    let server = start(fast(), ServerOptions::default()).await;
    let mut req = completion_req(3, true);
    req["stream_options"] = json!({"include_usage": true});
    let events = stream_events(&server, "/v1/completions", req.clone()).await;
    assert_eq!(events.len(), 5);
    let usage = events[3].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 4, "total_tokens": 7, "completion_tokens": 3})
    );
    assert!(events[2].json()["usage"].is_null());

    req["stream_options"]["continuous_usage_stats"] = json!(true);
    let events = stream_events(&server, "/v1/completions", req).await;
    assert_eq!(events.len(), 5);
    for (i, e) in events[..3].iter().enumerate() {
        assert_eq!(e.json()["usage"]["completion_tokens"], i as u64 + 1);
        assert_eq!(e.json()["usage"]["prompt_tokens"], 4);
    }
    assert_eq!(events[3].json()["usage"]["completion_tokens"], 3);
    server.shutdown().await;
}

#[tokio::test]
async fn chat_stream_starts_with_a_role_chunk() {
    let server = start(fast(), ServerOptions::default()).await;
    let events = stream_events(&server, "/v1/chat/completions", chat_req(3, true)).await;
    assert_eq!(events.len(), 5, "{events:?}");
    let role = events[0].json();
    assert_eq!(role["object"], "chat.completion.chunk");
    assert_eq!(
        role["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    for e in &events[1..4] {
        let v = e.json();
        assert!(v["choices"][0]["delta"].get("role").is_none());
        assert_eq!(text_of(&v).split_whitespace().count(), 1);
        assert!(v.get("usage").is_none());
    }
    assert_eq!(events[3].json()["choices"][0]["finish_reason"], "length");
    assert_eq!(events[4].data, "[DONE]");

    let mut req = chat_req(2, true);
    req["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    let events = stream_events(&server, "/v1/chat/completions", req).await;
    assert_eq!(events.len(), 5);
    let completion_tokens: Vec<Value> = events[..4]
        .iter()
        .map(|e| e.json()["usage"]["completion_tokens"].clone())
        .collect();
    assert_eq!(
        completion_tokens,
        vec![json!(0), json!(1), json!(2), json!(2)]
    );
    assert_eq!(events[3].json()["choices"], json!([]));
    assert_eq!(events[3].json()["usage"]["prompt_tokens"], 4);
    server.shutdown().await;
}

#[tokio::test]
async fn multi_token_chunks_carry_their_tokens_in_one_event() {
    let backend = FixedTiming::new(FixedTimingConfig {
        tokens_per_chunk: 4,
        ..Default::default()
    });
    let server = start(backend, ServerOptions::default()).await;
    let mut req = completion_req(10, true);
    req["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    let events = stream_events(&server, "/v1/completions", req).await;
    let words: Vec<usize> = events[..3]
        .iter()
        .map(|e| text_of(&e.json()).split_whitespace().count())
        .collect();
    assert_eq!(words, vec![4, 4, 2]);
    assert_eq!(events[2].json()["usage"]["completion_tokens"], 10);
    server.shutdown().await;
}

#[tokio::test]
async fn non_streaming_responses_carry_text_and_usage() {
    let server = start(fast(), ServerOptions::default()).await;
    let v: Value = post(&server, "/v1/completions", completion_req(6, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"][0]["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        6
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["usage"]["total_tokens"], 10);

    let v: Value = post(&server, "/v1/chat/completions", chat_req(2, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], " the and");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    assert_eq!(server.stats().requests(RequestOutcome::Ok), 2);
    assert_eq!(server.stats().generation_tokens(), 8);
    server.shutdown().await;
}

#[tokio::test]
async fn output_cap_stops_with_stop_and_defaults_apply() {
    let backend = FixedTiming::new(FixedTimingConfig {
        output_cap: Some(3),
        ..Default::default()
    });
    let server = start(backend, ServerOptions::default()).await;
    let v: Value = post(
        &server,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let v: Value = post(
        &server,
        "/v1/completions",
        json!({"prompt": "hi", "max_tokens": 20, "ignore_eos": true}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 20);
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_model_bad_json_and_too_long_are_rejected_like_vllm() {
    let server = start(
        fast(),
        ServerOptions {
            max_model_len: 100,
            ..ServerOptions::default()
        },
    )
    .await;
    let resp = post(
        &server,
        "/v1/completions",
        json!({"model": "gpt-9", "prompt": "x"}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "NotFoundError");
    assert_eq!(v["error"]["code"], 404);
    assert_eq!(v["error"]["message"], "The model `gpt-9` does not exist.");

    let resp = http()
        .post(format!("{}/v1/chat/completions", server.url()))
        .body("{\"messages\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    let resp = post(
        &server,
        "/v1/completions",
        json!({"prompt": "x", "max_tokens": 100}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length is 100"));

    let stats = server.stats();
    assert_eq!(stats.requests(RequestOutcome::NotFound), 1);
    assert_eq!(stats.requests(RequestOutcome::BadRequest), 2);
    // Rejected requests take no arrival index: the first admitted request is index 0.
    let v: Value = post(
        &server,
        "/v1/completions",
        json!({"prompt": "x", "max_tokens": 1}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["id"], "cmpl-0000000000000000");
    server.shutdown().await;
}

#[tokio::test]
async fn http_status_faults_have_openai_bodies_and_retry_after() {
    for (kind, status) in [
        (FaultKind::Http500, 500),
        (FaultKind::Http503, 503),
        (FaultKind::Http429, 429),
    ] {
        let server = start(fast(), with_faults(FaultConfig::default().with(kind, 1.0))).await;
        for stream in [true, false] {
            let resp = post(&server, "/v1/completions", completion_req(4, stream)).await;
            assert_eq!(resp.status(), status);
            if kind == FaultKind::Http429 {
                assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
            }
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], status);
        }
        assert_eq!(server.stats().faults_injected(kind), 2);
        assert_eq!(server.stats().requests(RequestOutcome::Fault), 2);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn mixed_faults_are_counted_exactly_as_the_seed_predicts() {
    let faults = FaultConfig {
        stall_for: Duration::from_millis(1),
        huge_chunk_bytes: 10_000,
        ..FaultConfig::default()
    }
    .with(FaultKind::Http500, 0.1)
    .with(FaultKind::Http503, 0.05)
    .with(FaultKind::Http429, 0.05)
    .with(FaultKind::Disconnect, 0.05)
    .with(FaultKind::Stall, 0.05)
    .with(FaultKind::MalformedChunk, 0.05)
    .with(FaultKind::ErrorEvent, 0.05)
    .with(FaultKind::Error200, 0.05)
    .with(FaultKind::NoDone, 0.05)
    .with(FaultKind::HugeChunk, 0.05)
    .with(FaultKind::Truncated, 0.05)
    .with(FaultKind::NotSse, 0.05);
    let opts = with_faults(faults);
    let expected = FaultPlan::new(&opts.faults, opts.seed).expected_counts(200);
    let server = start(fast(), opts).await;
    let client = http();
    let url = format!("{}/v1/completions", server.url());
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let resp = client.post(url).json(&completion_req(8, true)).send().await;
                if let Ok(resp) = resp {
                    let _ = read_body(resp).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Requests end on the server a moment after the client saw them end.
    wait_for(|| server.stats().in_flight() == 0).await;
    assert_eq!(server.stats().fault_counts(), expected);
    let faulted: u64 = expected.values().sum();
    assert_eq!(server.stats().requests(RequestOutcome::Fault), faulted);
    assert_eq!(server.stats().requests(RequestOutcome::Ok), 200 - faulted);
    let metrics = client
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (kind, n) in &expected {
        let line = format!(
            "servebench_faults_injected_total{{kind=\"{}\"}} {n}\n",
            kind.label()
        );
        assert!(metrics.contains(&line), "missing {line}");
    }
    server.shutdown().await;
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

fn one_fault(kind: FaultKind, after_tokens: u32) -> ServerOptions {
    with_faults(
        FaultConfig {
            after_tokens,
            stall_for: Duration::from_millis(30),
            huge_chunk_bytes: 200_000,
            ..FaultConfig::default()
        }
        .with(kind, 1.0),
    )
}

#[tokio::test]
async fn disconnect_closes_the_connection_mid_stream() {
    let server = start(fast(), one_fault(FaultKind::Disconnect, 3)).await;
    let resp = post(&server, "/v1/completions", completion_req(10, true)).await;
    assert_eq!(resp.status(), 200);
    let (body, err) = read_body(resp).await;
    assert!(err.is_some(), "the body must end in a transport error");
    let events = parse_sse(&body);
    assert_eq!(
        events.len(),
        3,
        "three tokens arrive before the close: {events:?}"
    );
    assert!(events.iter().all(|e| e.data != "[DONE]"));
    // Non-streaming: half a JSON body, then the close.
    let resp = post(&server, "/v1/completions", completion_req(10, false)).await;
    assert_eq!(resp.status(), 200);
    let (body, err) = read_body(resp).await;
    assert!(err.is_some());
    assert!(!body.is_empty() && serde_json::from_slice::<Value>(&body).is_err());
    wait_for(|| server.stats().in_flight() == 0).await;
    assert_eq!(server.stats().faults_injected(FaultKind::Disconnect), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_fault_due_after_the_output_still_lands_before_the_final_chunk() {
    let server = start(fast(), one_fault(FaultKind::Disconnect, 50)).await;
    let (body, err) =
        read_body(post(&server, "/v1/completions", completion_req(4, true)).await).await;
    assert!(err.is_some());
    let events = parse_sse(&body);
    assert_eq!(events.len(), 3, "the final chunk is never sent: {events:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn stall_pauses_then_continues_and_times_out_a_patient_client() {
    let server = start(fast(), one_fault(FaultKind::Stall, 0)).await;
    let sent = Instant::now();
    let events = stream_events(&server, "/v1/completions", completion_req(3, true)).await;
    assert!(sent.elapsed() >= Duration::from_millis(30));
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].data, "[DONE]");
    server.shutdown().await;

    let mut opts = one_fault(FaultKind::Stall, 2);
    opts.faults.stall_for = Duration::from_secs(30);
    let server = start(fast(), opts).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let resp = client
        .post(format!("{}/v1/completions", server.url()))
        .json(&completion_req(5, true))
        .send()
        .await
        .unwrap();
    let (body, err) = read_body(resp).await;
    assert!(err.is_some_and(|e| e.contains("TimedOut") || e.contains("timed out")));
    assert_eq!(parse_sse(&body).len(), 2);
    // The server notices the client left, even mid-stall, and counts the request once.
    wait_for(|| server.stats().in_flight() == 0).await;
    assert_eq!(server.stats().faults_injected(FaultKind::Stall), 1);
    assert_eq!(server.stats().requests(RequestOutcome::Fault), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_chunk_error_frames_no_done_and_huge_chunk() {
    // Malformed: one undecodable data line, the stream otherwise complete.
    let server = start(fast(), one_fault(FaultKind::MalformedChunk, 1)).await;
    let events = stream_events(&server, "/v1/completions", completion_req(3, true)).await;
    let bad: Vec<&Event> = events
        .iter()
        .filter(|e| e.data != "[DONE]" && serde_json::from_str::<Value>(&e.data).is_err())
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(events.len(), 5);
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    server.shutdown().await;

    // event: error, then [DONE], and no finish_reason ever.
    let server = start(fast(), one_fault(FaultKind::ErrorEvent, 1)).await;
    let events = stream_events(&server, "/v1/chat/completions", chat_req(3, true)).await;
    let n = events.len();
    assert_eq!(events[n - 2].event.as_deref(), Some("error"));
    assert_eq!(events[n - 2].json()["error"]["code"], 500);
    assert_eq!(events[n - 1].data, "[DONE]");
    assert!(events
        .iter()
        .all(|e| e.json()["choices"][0]["finish_reason"].is_null()));
    server.shutdown().await;

    // vLLM's in-stream error object under status 200.
    let server = start(fast(), one_fault(FaultKind::Error200, 1)).await;
    let events = stream_events(&server, "/v1/completions", completion_req(3, true)).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[1].event, None);
    assert_eq!(events[1].json()["error"]["type"], "InternalServerError");
    let v: Value = post(&server, "/v1/completions", completion_req(3, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["error"]["code"], 500);
    server.shutdown().await;

    // No [DONE]: usage arrives, the body ends cleanly, [DONE] never does.
    let server = start(fast(), one_fault(FaultKind::NoDone, 1)).await;
    let mut req = completion_req(3, true);
    req["stream_options"] = json!({"include_usage": true});
    let events = stream_events(&server, "/v1/completions", req).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].json()["usage"]["completion_tokens"], 3);
    server.shutdown().await;

    // Huge chunk: one event of 200 kB, counts unchanged.
    let server = start(fast(), one_fault(FaultKind::HugeChunk, 2)).await;
    let mut req = completion_req(4, true);
    req["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    let events = stream_events(&server, "/v1/completions", req).await;
    assert_eq!(events.len(), 6);
    assert!(events[1].data.len() > 200_000);
    assert_eq!(events[1].json()["usage"]["completion_tokens"], 2);
    assert_eq!(events[4].json()["usage"]["completion_tokens"], 4);
    assert_eq!(server.stats().faults_injected(FaultKind::HugeChunk), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn truncated_and_not_sse_faults_and_their_non_streamed_answers() {
    // Truncated after 2 of 5 tokens: content chunks without a finish_reason, no usage chunk,
    // no [DONE], and a body that ends cleanly.
    let server = start(fast(), one_fault(FaultKind::Truncated, 2)).await;
    let mut req = chat_req(5, true);
    req["stream_options"] = json!({"include_usage": true});
    let events = stream_events(&server, "/v1/chat/completions", req).await;
    let texts: Vec<String> = events.iter().map(|e| text_of(&e.json())).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(texts[0], "", "the role chunk");
    assert_eq!(texts[1..].concat().split_whitespace().count(), 2);
    assert!(events.iter().all(|e| e.data != "[DONE]"
        && e.json()["choices"][0]["finish_reason"].is_null()
        && e.json().get("usage").is_none_or(Value::is_null)));
    assert_eq!(server.stats().faults_injected(FaultKind::Truncated), 1);
    // A non-streamed request is answered in full and nothing is counted.
    let v: Value = post(&server, "/v1/completions", completion_req(5, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(server.stats().faults_injected(FaultKind::Truncated), 1);
    server.shutdown().await;

    // not_sse: a page instead of the stream, HTML on even arrival indexes, JSON on odd.
    let server = start(fast(), one_fault(FaultKind::NotSse, 1)).await;
    let resp = post(&server, "/v1/completions", completion_req(3, true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert!(resp.text().await.unwrap().starts_with("<!DOCTYPE html>"));
    let resp = post(&server, "/v1/chat/completions", chat_req(3, true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["object"].as_str(), v.get("choices")),
        (Some("list"), None)
    );
    let v: Value = post(&server, "/v1/completions", completion_req(3, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(server.stats().faults_injected(FaultKind::NotSse), 2);
    server.shutdown().await;
}

/// Wraps a backend to see whether its streams are dropped and how far they got.
struct Probe {
    inner: FixedTiming,
    dropped: Arc<AtomicBool>,
    tokens: Arc<AtomicU32>,
}

struct ProbeStream {
    inner: GenStream,
    dropped: Arc<AtomicBool>,
    tokens: Arc<AtomicU32>,
}

impl Stream for ProbeStream {
    type Item = GenEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GenEvent>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(GenEvent::Tokens { count, .. })) = &polled {
            self.tokens.fetch_add(*count, Ordering::Relaxed);
        }
        polled
    }
}

impl Drop for ProbeStream {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Relaxed);
    }
}

impl Backend for Probe {
    fn generate(&self, req: GenerateRequest) -> GenStream {
        Box::pin(ProbeStream {
            inner: self.inner.generate(req),
            dropped: Arc::clone(&self.dropped),
            tokens: Arc::clone(&self.tokens),
        })
    }
}

#[tokio::test]
async fn generation_stops_when_the_client_goes_away() {
    let dropped = Arc::new(AtomicBool::new(false));
    let tokens = Arc::new(AtomicU32::new(0));
    let probe = Probe {
        inner: FixedTiming::new(FixedTimingConfig {
            itl: Duration::from_millis(1),
            ..Default::default()
        }),
        dropped: Arc::clone(&dropped),
        tokens: Arc::clone(&tokens),
    };
    let server = start(probe, ServerOptions::default()).await;
    let mut req = completion_req(30_000, true);
    req["max_tokens"] = json!(30_000);
    let resp = post(&server, "/v1/completions", req).await;
    let mut body = resp.bytes_stream();
    let mut seen = 0;
    while seen < 3 {
        if body.next().await.is_some() {
            seen += 1;
        }
    }
    drop(body);
    wait_for(|| dropped.load(Ordering::Relaxed)).await;
    assert!(tokens.load(Ordering::Relaxed) < 30_000);
    wait_for(|| server.stats().in_flight() == 0).await;
    assert_eq!(server.stats().requests(RequestOutcome::Cancelled), 1);
    server.shutdown().await;
}

struct Failing;

impl Backend for Failing {
    fn generate(&self, _req: GenerateRequest) -> GenStream {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _ = tx
                .send(GenEvent::Tokens {
                    count: 2,
                    finish: None,
                })
                .await;
            let _ = tx.send(GenEvent::Error("engine fell over".into())).await;
        });
        stream_from_channel(rx)
    }

    fn check(&self, req: &GenerateRequest) -> Result<(), String> {
        if req.prompt_tokens > 10 {
            Err("prompt too long for this engine".into())
        } else {
            Ok(())
        }
    }

    fn metrics(&self) -> Option<String> {
        Some("vllm:num_requests_running 0".into())
    }
}

#[tokio::test]
async fn backend_errors_and_rejections_reach_the_client() {
    let server = start(Failing, ServerOptions::default()).await;
    let events = stream_events(&server, "/v1/completions", completion_req(5, true)).await;
    assert_eq!(events.len(), 3);
    assert_eq!(text_of(&events[0].json()), " the and");
    assert_eq!(events[1].json()["error"]["message"], "engine fell over");
    let resp = post(&server, "/v1/completions", completion_req(5, false)).await;
    assert_eq!(resp.status(), 500);
    let long = json!({"prompt": "a b c d e f g h i j k l", "max_tokens": 2});
    let resp = post(&server, "/v1/completions", long).await;
    assert_eq!(resp.status(), 400);
    wait_for(|| server.stats().in_flight() == 0).await;
    assert_eq!(server.stats().requests(RequestOutcome::BackendError), 2);
    let metrics = http()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.starts_with("vllm:num_requests_running 0\n# HELP servebench_"));
    server.shutdown().await;
}

#[tokio::test]
async fn fixed_timing_is_respected_over_http() {
    let backend = FixedTiming::new(FixedTimingConfig {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(5),
        tokens_per_chunk: 1,
        output_cap: None,
    });
    let server = start(backend, ServerOptions::default()).await;
    let sent = Instant::now();
    let resp = post(&server, "/v1/completions", completion_req(6, true)).await;
    let mut body = resp.bytes_stream();
    let mut arrivals = Vec::new();
    let mut buf = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        buf.extend_from_slice(&chunk);
        let frames = buf.windows(2).filter(|w| w == b"\n\n").count();
        while arrivals.len() < frames {
            arrivals.push(sent.elapsed());
        }
    }
    assert_eq!(arrivals.len(), 7);
    // Lower bounds only: a token never comes before its deadline.
    assert!(arrivals[0] >= Duration::from_millis(20));
    assert!(arrivals[5] >= Duration::from_millis(45));
    assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_cuts_streams_in_progress() {
    let backend = FixedTiming::new(FixedTimingConfig {
        itl: Duration::from_millis(2),
        ..Default::default()
    });
    let server = start(backend, ServerOptions::default()).await;
    let resp = post(&server, "/v1/completions", completion_req(20_000, true)).await;
    let reader = tokio::spawn(read_body(resp));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stats = Arc::clone(server.stats());
    server.shutdown().await;
    let (body, err) = reader.await.unwrap();
    assert!(err.is_some());
    assert!(!body.is_empty());
    assert_eq!(stats.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_runtime_serves_and_stops() {
    let server = spawn_dedicated(Arc::new(fast()), ServerOptions::default(), 1).unwrap();
    let events = stream_events(&server, "/v1/completions", completion_req(64, true)).await;
    assert_eq!(events.len(), 65);
    server.shutdown().await;
}

#[test]
fn invalid_options_are_refused_with_a_reason() {
    let opts = ServerOptions {
        model: " ".into(),
        ..ServerOptions::default()
    };
    assert_eq!(opts.validate(), Err(OptionsError::EmptyModel));
    let opts = with_faults(FaultConfig::default().with(FaultKind::Http500, -0.1));
    assert!(opts
        .validate()
        .unwrap_err()
        .to_string()
        .contains("between 0 and 1"));
}

/// A constrained request streams a valid instance of its schema, ending with `stop`; one
/// whose max_tokens cuts it ends with `length` and its text is not valid JSON.
#[tokio::test]
async fn constrained_requests_stream_a_valid_instance_or_a_truncated_one() {
    use crate::structured::{body_fields, Checker, Constraint, Dialect};
    let server = start(fast(), ServerOptions::default()).await;
    let c = Constraint::JsonSchema(crate::structured::default_schema());
    let checker = Checker::new(&c).unwrap();
    for d in Dialect::ALL {
        for (path, mut body) in [
            ("/v1/completions", completion_req(200, true)),
            ("/v1/chat/completions", chat_req(200, true)),
        ] {
            body.as_object_mut()
                .unwrap()
                .extend(body_fields(&c, d).unwrap());
            let events = stream_events(&server, path, body.clone()).await;
            let chunks: Vec<Value> = events
                .iter()
                .filter(|e| e.data != "[DONE]")
                .map(Event::json)
                .collect();
            let text: String = chunks.iter().map(text_of).collect();
            assert!(checker.check(&text).is_valid(), "{d} {path}: {text}");
            let finish: Vec<&str> = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
                .collect();
            assert_eq!(finish, ["stop"], "{d} {path}");
            // The same request cut short by max_tokens.
            body["max_tokens"] = json!(5);
            let events = stream_events(&server, path, body).await;
            let text: String = events
                .iter()
                .filter(|e| e.data != "[DONE]")
                .map(|e| text_of(&e.json()))
                .collect();
            assert!(!checker.check(&text).is_valid(), "{d} {path}: {text}");
            assert!(events
                .iter()
                .any(|e| e.json()["choices"][0]["finish_reason"] == "length"));
        }
    }
    // Non-streamed: the whole answer in one body, with its token count in usage.
    let mut body = completion_req(200, false);
    body.as_object_mut().unwrap().extend(
        body_fields(
            &Constraint::Regex("[0-9]{3}-[a-z]{2}".into()),
            Dialect::Sglang,
        )
        .unwrap(),
    );
    let v: Value = post(&server, "/v1/completions", body)
        .await
        .json()
        .await
        .unwrap();
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(
        Checker::new(&Constraint::Regex("[0-9]{3}-[a-z]{2}".into()))
            .unwrap()
            .check(text)
            .is_valid(),
        "{text}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"]["completion_tokens"].as_u64(),
        Some(crate::structured::token_pieces(text).len() as u64)
    );
    server.shutdown().await;
}
