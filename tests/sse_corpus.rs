//! SSE conformance corpus: streams in the dialects of vLLM, SGLang, llama.cpp, TGI, OpenAI and
//! `transformers serve` (`tests/fixtures/sse/*.sse`, each citing its source in SSE comment lines
//! at the top), with the outcome, timing points and token counts servebench must take from each.
//! A stream need not end with `[DONE]` (`transformers serve` never sends it); one cut without a
//! finish_reason is `truncated`. `*.page` fixtures are answers to a streaming request that are
//! not SSE at all (a JSON completion, an HTML error page): their comment lines cite the source
//! and are not sent; the body after the first blank line is, under the content type given.
//!
//! Every fixture is replayed twice:
//! - through the real client (`Client::send`) from a tiny raw-TCP HTTP/1.1 server on
//!   127.0.0.1:0 that sends one SSE frame per HTTP chunk, `GAP` apart, so the frame that
//!   became the first token is visible in the timing;
//! - through the parser alone (`SseParser` + `classify_event`), whole, one byte at a time, and
//!   cut once at every byte boundary: the same events every time.

use bytes::Bytes;
use servebench::client::{Client, ClientOptions, SendContext};
use servebench::openai::{classify_event, ChunkInfo, Endpoint, SseEvent, SseParser};
use servebench::record::{FailureKind, Outcome, Phase, TokenSource, Usage};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Pause before each `data:` frame.
const GAP: Duration = Duration::from_millis(30);

/// What servebench must make of one fixture.
struct Expect {
    file: &'static str,
    endpoint: Endpoint,
    /// Index (among `data:` frames) of the first frame with generated text: the first token.
    first_text_frame: usize,
    /// Index of the first frame with answer content (not reasoning).
    first_content_frame: usize,
    /// Index of the last frame with generated text: where the request finished.
    last_text_frame: usize,
    /// Frames with generated text (= token events).
    text_frames: usize,
    /// Tokens per event when the server says exactly (`usage-delta`, or one per event).
    tokens: Option<&'static [u32]>,
    output_tokens: u32,
    source: TokenSource,
    usage: Option<(u32, u32)>,
    /// How the request ends: `None` a success, else the failure kind.
    failure: Option<FailureKind>,
    /// The stream ends with `data: [DONE]` (the record's `done_marker` for a success).
    done: bool,
}

/// The fixtures whose answers have parts (reasoning tokens, tool-call events); every other
/// fixture's record must have none.
const PARTS: &[(&str, u32, u32)] = &[
    ("vllm_chat_continuous_usage.sse", 2, 0),
    ("vllm_chat_reasoning_field.sse", 6, 0),
    ("vllm_chat_tool_call.sse", 0, 4),
];

/// What the default fields of most fixtures are: a success ending with `[DONE]`.
const OK: (Option<FailureKind>, bool) = (None, true);

/// A `*.page` fixture: a body that is not SSE, sent under `content_type`.
struct Page {
    file: &'static str,
    endpoint: Endpoint,
    content_type: &'static str,
    /// `None`: read as a non-streamed answer with these (events, tokens, source).
    failure: Option<(FailureKind, &'static str)>,
    tokens: u32,
}

const PAGES: &[Page] = &[
    // A whole JSON completion under text/event-stream: one event at the complete body.
    Page {
        file: "json_completion_on_stream.page",
        endpoint: Endpoint::Completions,
        content_type: "text/event-stream",
        failure: None,
        tokens: 5,
    },
    Page {
        file: "nginx_502_html_on_stream.page",
        endpoint: Endpoint::ChatCompletions,
        content_type: "text/html",
        failure: Some((
            FailureKind::NotSse,
            r#"the answer to a streaming request is not an SSE stream (text/html); it begins: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n""#,
        )),
        tokens: 0,
    },
];

const CORPUS: &[Expect] = &[
    // Recorded from the real vLLM (CPU) here: running usage on every chunk.
    Expect {
        file: "vllm_recorded_completions_continuous.sse",
        endpoint: Endpoint::Completions,
        first_text_frame: 0,
        first_content_frame: 0,
        last_text_frame: 5,
        text_frames: 6,
        tokens: Some(&[1, 1, 1, 1, 1, 1]),
        output_tokens: 6,
        source: TokenSource::UsageDelta,
        usage: Some((10, 6)),
        failure: OK.0,
        done: OK.1,
    },
    // Recorded: role-only first chunk, an empty-content chunk that is not a token event, the
    // final usage (6) spread over the 5 text events.
    Expect {
        file: "vllm_recorded_chat_include_usage.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 6,
        text_frames: 5,
        tokens: None,
        output_tokens: 6,
        source: TokenSource::UsageFinal,
        usage: Some((23, 6)),
        failure: OK.0,
        done: OK.1,
    },
    // Recorded from a real llama-server here: role chunk with `content: null`, a lone U+FFFD
    // chunk (a split UTF-8 character is still a token event), a separate finish chunk with an
    // empty delta, usage in its own `choices: []` chunk.
    Expect {
        file: "llamacpp_recorded_chat.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 6,
        text_frames: 6,
        tokens: Some(&[1, 1, 1, 1, 1, 1]),
        output_tokens: 6,
        source: TokenSource::UsageFinal,
        usage: Some((21, 6)),
        failure: OK.0,
        done: OK.1,
    },
    // Recorded: usage rides on the finish chunk, whose text is empty.
    Expect {
        file: "llamacpp_recorded_completions.sse",
        endpoint: Endpoint::Completions,
        first_text_frame: 0,
        first_content_frame: 0,
        last_text_frame: 5,
        text_frames: 6,
        tokens: Some(&[1, 1, 1, 1, 1, 1]),
        output_tokens: 6,
        source: TokenSource::UsageFinal,
        usage: Some((7, 6)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "vllm_completions_continuous_usage.sse",
        endpoint: Endpoint::Completions,
        first_text_frame: 0,
        first_content_frame: 0,
        last_text_frame: 4,
        text_frames: 5,
        tokens: Some(&[1, 1, 2, 1, 1]),
        output_tokens: 6,
        source: TokenSource::UsageDelta,
        usage: Some((6, 6)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "vllm_chat_include_usage.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 4,
        text_frames: 4,
        tokens: Some(&[1, 1, 1, 1]),
        output_tokens: 4,
        source: TokenSource::UsageFinal,
        usage: Some((11, 4)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "vllm_chat_continuous_usage.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 3,
        last_text_frame: 4,
        text_frames: 4,
        tokens: Some(&[1, 1, 1, 1]),
        output_tokens: 4,
        source: TokenSource::UsageDelta,
        usage: Some((11, 4)),
        failure: OK.0,
        done: OK.1,
    },
    // Current vLLM's `reasoning` field, an empty delta where the parser ate `</think>`.
    Expect {
        file: "vllm_chat_reasoning_field.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 5,
        last_text_frame: 5,
        text_frames: 4,
        tokens: None,
        output_tokens: 8,
        source: TokenSource::UsageFinal,
        usage: Some((15, 8)),
        failure: OK.0,
        done: OK.1,
    },
    // A streamed function call: every arguments fragment is an answer event.
    Expect {
        file: "vllm_chat_tool_call.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 4,
        text_frames: 4,
        tokens: None,
        output_tokens: 16,
        source: TokenSource::UsageFinal,
        usage: Some((210, 16)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "sglang_chat_include_usage.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 3,
        text_frames: 3,
        tokens: Some(&[1, 1, 1]),
        output_tokens: 3,
        source: TokenSource::UsageFinal,
        usage: Some((14, 3)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "sglang_completions_include_usage.sse",
        endpoint: Endpoint::Completions,
        first_text_frame: 0,
        first_content_frame: 0,
        last_text_frame: 3,
        text_frames: 4,
        tokens: Some(&[1, 1, 1, 1]),
        output_tokens: 4,
        source: TokenSource::UsageFinal,
        usage: Some((5, 4)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "llamacpp_chat_b6097.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 3,
        text_frames: 3,
        tokens: Some(&[1, 1, 1]),
        output_tokens: 3,
        source: TokenSource::UsageFinal,
        usage: Some((12, 3)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "llamacpp_chat_usage_chunk_b6497.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 0,
        first_content_frame: 0,
        last_text_frame: 2,
        text_frames: 3,
        tokens: Some(&[1, 1, 1]),
        output_tokens: 3,
        source: TokenSource::UsageFinal,
        usage: Some((12, 3)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "llamacpp_completions.sse",
        endpoint: Endpoint::Completions,
        first_text_frame: 0,
        first_content_frame: 0,
        last_text_frame: 3,
        text_frames: 4,
        tokens: Some(&[1, 1, 1, 1]),
        output_tokens: 4,
        source: TokenSource::UsageFinal,
        usage: Some((3, 4)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "tgi_chat_include_usage.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 0,
        first_content_frame: 0,
        last_text_frame: 9,
        text_frames: 10,
        tokens: Some(&[1; 10]),
        output_tokens: 10,
        source: TokenSource::UsageFinal,
        usage: Some((40, 10)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "openai_chat_include_usage.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 4,
        text_frames: 4,
        // 5 tokens over 4 text events: spread, so no exact list.
        tokens: None,
        output_tokens: 5,
        source: TokenSource::UsageFinal,
        usage: Some((23, 5)),
        failure: OK.0,
        done: OK.1,
    },
    Expect {
        file: "openai_chat_no_usage.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 2,
        text_frames: 2,
        tokens: Some(&[1, 1]),
        output_tokens: 2,
        source: TokenSource::Events,
        usage: None,
        failure: OK.0,
        done: OK.1,
    },
    // `transformers serve`: the finish chunk carries usage, then the body ends: complete
    // without [DONE] (what made every streamed request a "disconnect" before).
    Expect {
        file: "transformers_chat_no_done.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 5,
        text_frames: 5,
        tokens: Some(&[1, 1, 1, 1, 1]),
        output_tokens: 5,
        source: TokenSource::UsageFinal,
        usage: Some((9, 5)),
        failure: None,
        done: false,
    },
    Expect {
        file: "transformers_completions_no_done.sse",
        endpoint: Endpoint::Completions,
        first_text_frame: 0,
        first_content_frame: 0,
        last_text_frame: 5,
        text_frames: 6,
        tokens: Some(&[1, 1, 1, 1, 1, 1]),
        output_tokens: 6,
        source: TokenSource::UsageFinal,
        usage: Some((7, 6)),
        failure: None,
        done: false,
    },
    // Recorded from a real `transformers serve` here: role chunk, five text chunks for the
    // final usage's six tokens, a finish chunk, a usage chunk, a clean end without [DONE].
    Expect {
        file: "transformers_recorded_chat.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 5,
        text_frames: 5,
        tokens: None,
        output_tokens: 6,
        source: TokenSource::UsageFinal,
        usage: Some((21, 6)),
        failure: None,
        done: false,
    },
    // Recorded through LiteLLM's proxy in front of vLLM: vLLM's running usage stripped, so the
    // tokens are the final usage, which rides on a chunk with one empty delta (no text: not an
    // event, not the finish); one token per text chunk here.
    Expect {
        file: "litellm_recorded_chat.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 6,
        text_frames: 6,
        tokens: Some(&[1, 1, 1, 1, 1, 1]),
        output_tokens: 6,
        source: TokenSource::UsageFinal,
        usage: Some((21, 6)),
        failure: OK.0,
        done: OK.1,
    },
    // Cut after a content chunk: no finish_reason, no usage, no [DONE]. What arrived is kept.
    Expect {
        file: "truncated_chat_after_content.sse",
        endpoint: Endpoint::ChatCompletions,
        first_text_frame: 1,
        first_content_frame: 1,
        last_text_frame: 3,
        text_frames: 3,
        tokens: Some(&[1, 1, 1]),
        output_tokens: 3,
        source: TokenSource::Events,
        usage: None,
        failure: Some(FailureKind::Truncated),
        done: false,
    },
];

fn fixture(name: &str) -> Vec<u8> {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "sse", name]
        .iter()
        .collect();
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The stream cut into frames, each with its terminating blank line. The first piece is the
/// comment block that cites the source (sent with the headers).
fn frames(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut pieces: Vec<Vec<u8>> = text
        .split_inclusive("\n\n")
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let comments = pieces.remove(0);
    assert!(
        comments.starts_with(b": "),
        "a fixture starts with its source"
    );
    assert!(pieces.iter().all(|p| p.starts_with(b"data: ")));
    (comments, pieces)
}

/// The classification of every event, feeding the stream in the pieces given.
fn classify_pieces(pieces: &[&[u8]]) -> Vec<ChunkInfo> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    let mut on = |e: SseEvent<'_>| out.push(classify_event(e));
    for p in pieces {
        parser.feed(p, &mut on);
    }
    parser.finish(&mut on);
    out
}

fn is_text(c: &ChunkInfo) -> bool {
    matches!(c, ChunkInfo::Chunk { generated, .. } if generated.is_text())
}

#[test]
fn every_fixture_parses_the_same_however_it_is_split() {
    let mut cuts = 0usize;
    for e in CORPUS {
        let bytes = fixture(e.file);
        let whole = classify_pieces(&[&bytes]);
        let n_frames = frames(&bytes).1.len();
        assert_eq!(
            whole.len(),
            n_frames,
            "{}: one event per data frame",
            e.file
        );
        // `[DONE]` last, or not at all.
        let dones = whole.iter().filter(|c| **c == ChunkInfo::Done).count();
        assert_eq!(dones, usize::from(e.done), "{}", e.file);
        if e.done {
            assert_eq!(whole.last(), Some(&ChunkInfo::Done), "{}", e.file);
        }
        // Complete without [DONE] means some chunk carried a finish_reason; truncated, none did.
        let finished = whole
            .iter()
            .any(|c| matches!(c, ChunkInfo::Chunk { finish: true, .. }));
        assert_eq!(
            finished,
            e.failure != Some(FailureKind::Truncated),
            "{}",
            e.file
        );
        // Which frames carry text: exactly as the expectation says.
        let text: Vec<usize> = (0..whole.len()).filter(|&i| is_text(&whole[i])).collect();
        assert_eq!(text.len(), e.text_frames, "{}: {whole:?}", e.file);
        assert_eq!(text.first(), Some(&e.first_text_frame), "{}", e.file);
        assert_eq!(text.last(), Some(&e.last_text_frame), "{}", e.file);
        assert!(
            !whole
                .iter()
                .any(|c| matches!(c, ChunkInfo::Malformed(_) | ChunkInfo::Error(_))),
            "{}: {whole:?}",
            e.file
        );
        // One byte at a time: every boundary at once.
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            classify_pieces(&bytewise),
            whole,
            "{}: byte by byte",
            e.file
        );
        // Cut once at every byte boundary.
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(classify_pieces(&[a, b]), whole, "{}: cut at {cut}", e.file);
            cuts += 1;
        }
        // CRLF line endings (as some proxies rewrite them) mean the same.
        let crlf = String::from_utf8(bytes.clone())
            .unwrap()
            .replace('\n', "\r\n");
        assert_eq!(
            classify_pieces(&[crlf.as_bytes()]),
            whole,
            "{}: CRLF",
            e.file
        );
    }
    println!(
        "\n{} fixtures, {cuts} single cuts + byte-by-byte + CRLF: identical",
        CORPUS.len()
    );
}

/// Serves one request on a fresh listener: the head and the comment block at once, then each
/// frame `GAP` after the previous one, as one HTTP chunk each; then the end of the body.
async fn replay_server(bytes: Vec<u8>) -> std::net::SocketAddr {
    let (comments, frames) = frames(&bytes);
    serve_once("text/event-stream", Some(comments), frames).await
}

/// Serves one request: the head with `content_type` (and `first` as a chunk, when given) at
/// once, then each piece `GAP` after the previous one as its own HTTP chunk, then the end of the
/// body (a clean end: the terminating zero-length chunk).
async fn serve_once(
    content_type: &'static str,
    first_chunk: Option<Vec<u8>>,
    pieces: Vec<Vec<u8>>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        sock.set_nodelay(true).unwrap();
        // Read the request: head, then content-length bytes of body.
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let chunk = |b: &[u8]| {
            let mut framed = format!("{:x}\r\n", b.len()).into_bytes();
            framed.extend_from_slice(b);
            framed.extend_from_slice(b"\r\n");
            framed
        };
        let mut first = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n").into_bytes();
        if let Some(c) = first_chunk {
            first.extend(chunk(&c));
        }
        if sock.write_all(&first).await.is_err() {
            return;
        }
        for f in pieces {
            tokio::time::sleep(GAP).await;
            if sock.write_all(&chunk(&f)).await.is_err() {
                return;
            }
        }
        let _ = sock.write_all(b"0\r\n\r\n").await;
        // Hold the connection until the client is done with it.
        let _ = sock.read(&mut tmp).await;
    });
    addr
}

async fn replay(e: &'static Expect) -> (&'static Expect, servebench::record::RequestRecord) {
    let addr = replay_server(fixture(e.file)).await;
    (e, send(addr, e.endpoint).await)
}

async fn send(addr: std::net::SocketAddr, endpoint: Endpoint) -> servebench::record::RequestRecord {
    let client = Client::new(ClientOptions {
        base_url: format!("http://{addr}"),
        endpoint,
        api_key: None,
        request_timeout: Duration::from_secs(10),
        stream: true,
        // The text-keeping parse runs over every corpus stream too (it must never fail a request).
        keep_text: true,
    })
    .unwrap();
    let ctx = SendContext {
        id: 1,
        phase: Phase::Measured,
        epoch: Instant::now(),
        scheduled_ns: 0,
        slot_ns: 0,
        prompt_tokens: 8,
        max_tokens: 64,
    };
    client.send(Bytes::from_static(b"{}"), ctx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_through_the_client_gives_the_expected_timing_points_and_tokens() {
    let runs = futures_util::future::join_all(CORPUS.iter().map(replay)).await;
    let gap = GAP.as_nanos() as u64;
    println!(
        "\n| fixture | outcome | [DONE] | first token frame | ttft ≥ | events | tokens | source | usage |"
    );
    println!("| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |");
    for (e, r) in runs {
        match e.failure {
            None => assert_eq!(r.outcome, Outcome::Success, "{}: {:?}", e.file, r.outcome),
            Some(kind) => assert!(
                matches!(&r.outcome, Outcome::Failed { kind: k, .. } if *k == kind),
                "{}: {:?}",
                e.file,
                r.outcome
            ),
        }
        // `done_marker: false` only for a complete stream without [DONE].
        assert_eq!(r.done_marker, e.done || e.failure.is_some(), "{}", e.file);
        // Frame i was sent (i + 1) gaps after the request arrived: the first token can be no
        // earlier than its frame, so a role chunk counted as a token would show up as early.
        let ttft = r.first_token_ns.unwrap() - r.sent_ns;
        assert!(
            ttft >= (e.first_text_frame as u64 + 1) * gap,
            "{}: first token after {ttft} ns, before frame {}",
            e.file,
            e.first_text_frame
        );
        let tfc = r.first_content_ns.unwrap() - r.sent_ns;
        assert!(
            tfc >= (e.first_content_frame as u64 + 1) * gap,
            "{}",
            e.file
        );
        assert!(r.first_content_ns >= r.first_token_ns);
        // Reasoning and tool calls: exactly the parts the fixture has, or none.
        let parts = r
            .output_parts
            .map(|p| (p.reasoning_tokens, p.tool_call_events));
        let want = PARTS
            .iter()
            .find(|(f, ..)| *f == e.file)
            .map(|&(_, reasoning, tools)| (reasoning, tools));
        assert_eq!(parts, want, "{}", e.file);
        if let Some(p) = r.output_parts {
            assert_eq!(
                p.first_reasoning_ns.is_some(),
                e.first_text_frame < e.first_content_frame,
                "{}",
                e.file
            );
        }
        // The end is the last text frame; later finish/usage chunks and [DONE] do not move it.
        // (A failure ends when it was seen: here, at the end of the body.)
        let last_us = r.events.last().unwrap().0 as u64;
        assert!(
            e.failure.is_some() || r.finished_ns.abs_diff(r.sent_ns + last_us * 1000) < 1000,
            "{}: finished at the last text event",
            e.file
        );
        assert!(r.finished_ns - r.sent_ns >= (e.last_text_frame as u64 + 1) * gap);
        // Events arrive one per text frame, in order, each no earlier than its frame was sent.
        assert_eq!(r.events.len(), e.text_frames, "{}: {:?}", e.file, r.events);
        let parsed = classify_pieces(&[&fixture(e.file)]);
        let text_idx: Vec<usize> = (0..parsed.len()).filter(|&i| is_text(&parsed[i])).collect();
        for (ev, frame) in r.events.iter().zip(&text_idx) {
            assert!(
                ev.0 as u64 * 1000 + 1000 >= (*frame as u64 + 1) * gap,
                "{}: {:?}",
                e.file,
                r.events
            );
        }
        assert!(r.events.windows(2).all(|w| w[1].0 >= w[0].0));
        let tokens: Vec<u32> = r.events.iter().map(|ev| ev.1).collect();
        match e.tokens {
            Some(t) => assert_eq!(tokens, t, "{}", e.file),
            None => {
                // Spread evenly: every event at least one token, none more than one above another.
                let (lo, hi) = (tokens.iter().min().unwrap(), tokens.iter().max().unwrap());
                assert!(*lo >= 1 && hi - lo <= 1, "{}: {tokens:?}", e.file);
            }
        }
        assert_eq!(tokens.iter().sum::<u32>(), e.output_tokens, "{}", e.file);
        assert_eq!(r.output_tokens, e.output_tokens, "{}", e.file);
        assert_eq!(r.token_source, e.source, "{}", e.file);
        assert_eq!(
            r.usage,
            e.usage.map(|(p, c)| Usage {
                prompt_tokens: p,
                completion_tokens: c
            }),
            "{}",
            e.file
        );
        let outcome = match &r.outcome {
            Outcome::Success => "success".to_string(),
            Outcome::Failed { kind, .. } => kind.label(),
        };
        println!(
            "| {} | {outcome} | {} | {} | {:.0} ms | {} | {tokens:?} | {:?} | {:?} |",
            e.file,
            if e.done { "yes" } else { "no" },
            e.first_text_frame,
            ttft as f64 / 1e6,
            r.events.len(),
            r.token_source,
            e.usage
        );
    }
}

/// The body of a `*.page` fixture: everything after its comment block.
fn page_body(name: &str) -> Vec<u8> {
    let bytes = fixture(name);
    let text = std::str::from_utf8(&bytes).unwrap();
    let (comments, body) = text.split_once("\n\n").unwrap();
    assert!(
        comments.lines().all(|l| l.starts_with(": ")),
        "{name} starts with its source"
    );
    body.as_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fixture_is_classified_by_what_it_is() {
    for p in PAGES {
        let addr = serve_once(p.content_type, None, vec![page_body(p.file)]).await;
        let r = send(addr, p.endpoint).await;
        match p.failure {
            None => {
                assert_eq!(r.outcome, Outcome::Success, "{}: {:?}", p.file, r.outcome);
                // One event at the complete body, its tokens from the final usage.
                assert_eq!(r.events.len(), 1, "{}", p.file);
                assert_eq!(r.events[0].1, p.tokens, "{}", p.file);
                assert_eq!(
                    (r.output_tokens, r.token_source),
                    (p.tokens, TokenSource::UsageFinal),
                    "{}",
                    p.file
                );
                assert_eq!(r.first_token_ns, Some(r.finished_ns), "{}", p.file);
                // The body came one gap after the headers: it is the first token.
                assert!(r.first_token_ns.unwrap() - r.sent_ns >= GAP.as_nanos() as u64);
            }
            Some((kind, message)) => {
                assert_eq!(
                    r.outcome,
                    Outcome::Failed {
                        kind,
                        message: message.into()
                    },
                    "{}",
                    p.file
                );
                assert!(r.events.is_empty() && r.first_token_ns.is_none());
                assert_eq!(r.output_tokens, p.tokens);
            }
        }
        assert!(
            r.done_marker,
            "{}: done_marker is about complete streams",
            p.file
        );
        println!("{}: {:?}, {} tokens", p.file, r.outcome, r.output_tokens);
    }
}
