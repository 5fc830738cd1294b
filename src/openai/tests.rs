use super::*;
use proptest::prelude::*;

/// An event as the parser dispatched it, owned so tests can compare lists.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Msg { event: String, data: String },
    TooLarge,
}

fn collect_with(parser: &mut SseParser, pieces: &[&[u8]]) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut push = |e: SseEvent<'_>| {
        out.push(match e {
            SseEvent::Message { event, data } => Ev::Msg {
                event: String::from_utf8_lossy(event).into_owned(),
                data: String::from_utf8_lossy(data).into_owned(),
            },
            SseEvent::TooLarge { .. } => Ev::TooLarge,
        })
    };
    for p in pieces {
        parser.feed(p, &mut push);
    }
    parser.finish(&mut push);
    out
}

fn collect(pieces: &[&[u8]]) -> Vec<Ev> {
    collect_with(&mut SseParser::new(), pieces)
}

fn msg(data: &str) -> Ev {
    Ev::Msg {
        event: String::new(),
        data: data.into(),
    }
}

// ---- fixtures: streams as the engines send them -------------------------------------------

/// vLLM /v1/completions with include_usage and continuous_usage_stats.
const VLLM_COMPLETIONS: &str = concat!(
    r#"data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" Hello","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":{"prompt_tokens":5,"total_tokens":6,"completion_tokens":1}}"#,
    "\n\n",
    r#"data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" wörld","logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2}}"#,
    "\n\n",
    r#"data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// vLLM /v1/chat/completions: role chunk with `content: ""`, reasoning, content, usage chunk.
const VLLM_CHAT: &str = concat!(
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"hmm"},"logprobs":null,"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi \u00e9\n"},"logprobs":null,"finish_reason":"length","stop_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// SGLang chat: nulls everywhere, `usage: null` until the usage chunk.
const SGLANG_CHAT: &str = concat!(
    r#"data: {"id":"a1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"a1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":null,"content":"Hi","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"a1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":null,"content":"","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":"length","matched_stop":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"a1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":4,"total_tokens":5,"completion_tokens":1}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// llama.cpp chat: role chunk with `content: null`, a separate finish chunk `delta: {}` that
/// carries the usage and a `timings` object.
const LLAMACPP_CHAT: &str = concat!(
    r#"data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1,"id":"chatcmpl-x","model":"tiny","system_fingerprint":"b1","object":"chat.completion.chunk"}"#,
    "\n\n",
    r#"data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hi"}}],"created":1,"id":"chatcmpl-x","model":"tiny","system_fingerprint":"b1","object":"chat.completion.chunk"}"#,
    "\n\n",
    r#"data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],"created":1,"id":"chatcmpl-x","model":"tiny","system_fingerprint":"b1","object":"chat.completion.chunk","usage":{"completion_tokens":2,"prompt_tokens":3,"total_tokens":5},"timings":{"prompt_n":3,"prompt_ms":1.5,"predicted_n":2,"predicted_ms":3.0,"predicted_per_second":666.6}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// llama.cpp completions: the finish chunk has empty text and the usage, even unasked.
const LLAMACPP_COMPLETIONS: &str = concat!(
    r#"data: {"choices":[{"text":"Hi","index":0,"logprobs":null,"finish_reason":null}],"created":1,"model":"tiny","system_fingerprint":"b1","object":"text_completion","id":"cmpl-x"}"#,
    "\n\n",
    r#"data: {"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}],"created":1,"model":"tiny","system_fingerprint":"b1","object":"text_completion","id":"cmpl-x","usage":{"completion_tokens":1,"prompt_tokens":3,"total_tokens":4},"timings":{"predicted_n":1}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// OpenAI chat: `refusal`, `obfuscation`, `usage: null`, finish `delta: {}`, usage details.
const OPENAI_CHAT: &str = concat!(
    ": keep-alive\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"x1"}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"x2"}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

const ALL_FIXTURES: [&str; 6] = [
    VLLM_COMPLETIONS,
    VLLM_CHAT,
    SGLANG_CHAT,
    LLAMACPP_CHAT,
    LLAMACPP_COMPLETIONS,
    OPENAI_CHAT,
];

fn infos(stream: &str) -> Vec<ChunkInfo> {
    let mut out = Vec::new();
    let mut p = SseParser::new();
    p.feed(stream.as_bytes(), |e| out.push(classify_event(e)));
    p.finish(|e| out.push(classify_event(e)));
    out
}

fn chunk(generated: Generated, finish: bool, usage: Option<(u32, u32)>) -> ChunkInfo {
    ChunkInfo::Chunk {
        generated,
        finish,
        tool_call: false,
        usage: usage.map(|(p, c)| Usage {
            prompt_tokens: p,
            completion_tokens: c,
        }),
    }
}

use Generated::{Content, Nothing, Reasoning};

// ---- endpoints and bodies -----------------------------------------------------------------

#[test]
fn endpoint_round_trips_through_text_and_serde() {
    for e in [Endpoint::Completions, Endpoint::ChatCompletions] {
        assert_eq!(e.to_string().parse::<Endpoint>(), Ok(e));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Endpoint>(&json).unwrap(), e);
    }
    assert_eq!(
        "/v1/chat/completions/".parse(),
        Ok(Endpoint::ChatCompletions)
    );
    let err = "/v1/embeddings".parse::<Endpoint>().unwrap_err();
    assert!(err
        .to_string()
        .contains("/v1/completions or /v1/chat/completions"));
    assert!(serde_json::from_str::<Endpoint>("\"chat\"").is_err());
}

fn opts() -> BodyOptions {
    BodyOptions {
        model: "m".into(),
        stream: true,
        ..BodyOptions::default()
    }
}

fn parse(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn completions_body_asks_for_usage_when_streaming() {
    let body = parse(&build_body(
        Endpoint::Completions,
        "hi \"you\"",
        16,
        &opts(),
    ));
    assert_eq!(
        body,
        serde_json::json!({"model":"m","prompt":"hi \"you\"","max_tokens":16,"stream":true,
            "stream_options":{"include_usage":true}})
    );
}

#[test]
fn chat_body_has_one_user_message_and_optional_fields() {
    let o = BodyOptions {
        ignore_eos: true,
        min_tokens: Some(16),
        continuous_usage_stats: true,
        ..opts()
    };
    let body = parse(&build_body(Endpoint::ChatCompletions, "hi", 16, &o));
    assert_eq!(
        body,
        serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}],
            "max_tokens":16,"stream":true,"ignore_eos":true,"min_tokens":16,
            "stream_options":{"include_usage":true,"continuous_usage_stats":true}})
    );
}

#[test]
fn non_streaming_body_has_no_stream_options_and_extra_wins() {
    let mut o = BodyOptions {
        stream: false,
        continuous_usage_stats: true,
        ..opts()
    };
    o.extra.insert(
        "response_format".into(),
        serde_json::json!({"type": "json_object"}),
    );
    o.extra.insert("max_tokens".into(), Value::from(3));
    let body = parse(&build_body(Endpoint::Completions, "p", 16, &o));
    assert_eq!(
        body,
        serde_json::json!({"model":"m","prompt":"p","max_tokens":3,"stream":false,
            "response_format":{"type":"json_object"}})
    );
}

#[test]
fn chat_body_carries_a_whole_conversation() {
    let msgs = [
        ChatMessage::system("be brief"),
        ChatMessage::user("hi"),
        ChatMessage::assistant("hello"),
        ChatMessage::user("more"),
    ];
    let body = parse(&build_chat_body(&msgs, 8, &opts()));
    let got: Vec<ChatMessage> = serde_json::from_value(body["messages"].clone()).unwrap();
    assert_eq!(got, msgs);
    assert_eq!(body["max_tokens"], 8);
}

// ---- SSE framing ---------------------------------------------------------------------------

#[test]
fn frames_events_with_every_line_ending() {
    for eol in ["\n", "\r\n", "\r"] {
        let s = format!(
            "data: a{eol}{eol}data: b{eol}data:c{eol}{eol}: note{eol}data: [DONE]{eol}{eol}"
        );
        assert_eq!(
            collect(&[s.as_bytes()]),
            vec![msg("a"), msg("b\nc"), msg("[DONE]")],
            "line ending {eol:?}"
        );
    }
}

#[test]
fn event_field_is_reported_and_reset_after_dispatch() {
    let s =
        b"event: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: x\n\nevent: error\n\n";
    let evs = collect(&[s]);
    assert_eq!(
        evs,
        vec![
            Ev::Msg {
                event: "error".into(),
                data: r#"{"error":{"message":"boom"}}"#.into()
            },
            msg("x"),
            Ev::Msg {
                event: "error".into(),
                data: String::new()
            },
        ]
    );
}

#[test]
fn ignores_id_retry_unknown_fields_and_a_bom() {
    let s = b"\xEF\xBB\xBFid: 7\nretry: 10\nfoo\ndata\ndata: x\n\n";
    // `data` without a colon is a data line with an empty value.
    assert_eq!(collect(&[s]), vec![msg("\nx")]);
}

#[test]
fn an_unterminated_last_event_is_still_delivered() {
    assert_eq!(
        collect(&[b"data: a\n\ndata: [DONE]"]),
        vec![msg("a"), msg("[DONE]")]
    );
    assert_eq!(collect(&[b"data: [DONE]\n"]), vec![msg("[DONE]")]);
}

#[test]
fn cr_and_lf_split_across_chunks_make_one_line_ending() {
    assert_eq!(
        collect(&[b"data: a\r", b"\n\r", b"\ndata: b\r", b"\r"]),
        vec![msg("a"), msg("b")]
    );
}

#[test]
fn an_oversized_event_is_reported_once_and_the_rest_ignored() {
    let mut p = SseParser::with_limit(16);
    let evs = collect_with(
        &mut p,
        &[b"data: 0123456789", b"abcdefghij", b"\n\ndata: x\n\n"],
    );
    assert_eq!(evs, vec![Ev::TooLarge]);
    let mut p = SseParser::with_limit(16);
    let evs = collect_with(&mut p, &[b"data: 0123456789\ndata: 0123456789\n\n"]);
    assert_eq!(evs, vec![Ev::TooLarge]);
    assert!(matches!(
        classify_event(SseEvent::TooLarge { limit: 16 }),
        ChunkInfo::Malformed(m) if m.contains("16-byte")
    ));
}

#[test]
fn every_fixture_survives_a_split_at_every_byte() {
    for fixture in ALL_FIXTURES {
        let bytes = fixture.as_bytes();
        let whole = collect(&[bytes]);
        assert!(whole.len() >= 3);
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(collect(&[a, b]), whole, "split at {i}");
        }
        // One byte at a time, through every multi-byte character.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(collect(&singles), whole);
    }
}

/// Serializes events as a server would, with the given line ending.
fn render(events: &[(Option<String>, Vec<String>)], eol: &str) -> String {
    let mut s = String::new();
    for (event, lines) in events {
        if let Some(e) = event {
            s.push_str(&format!("event: {e}{eol}"));
        }
        for l in lines {
            s.push_str(&format!("data: {l}{eol}"));
        }
        s.push_str(eol);
    }
    s
}

proptest! {
    #[test]
    fn random_splits_yield_the_same_events(
        events in prop::collection::vec(
            (prop::option::of("[a-z]{1,6}"), prop::collection::vec("[^\r\n]{0,12}", 1..4)),
            1..8,
        ),
        eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let text = render(&events, eol);
        let bytes = text.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for p in points {
            pieces.push(&bytes[start..p]);
            start = p;
        }
        pieces.push(&bytes[start..]);
        let expected: Vec<Ev> = events
            .iter()
            .map(|(e, lines)| Ev::Msg { event: e.clone().unwrap_or_default(), data: lines.join("\n") })
            .collect();
        prop_assert_eq!(collect(&[bytes]), expected.clone());
        prop_assert_eq!(collect(&pieces), expected);
    }
}

// ---- classification of real engines' chunks ------------------------------------------------

#[test]
fn vllm_completions_with_continuous_usage() {
    assert_eq!(
        infos(VLLM_COMPLETIONS),
        vec![
            chunk(Content, false, Some((5, 1))),
            chunk(Content, true, Some((5, 2))),
            chunk(Nothing, false, Some((5, 2))),
            ChunkInfo::Done,
        ]
    );
}

#[test]
fn vllm_chat_role_chunk_is_not_text_and_reasoning_is_told_apart() {
    assert_eq!(
        infos(VLLM_CHAT),
        vec![
            chunk(Nothing, false, None),
            chunk(Reasoning, false, None),
            chunk(Content, true, None),
            chunk(Nothing, false, Some((7, 2))),
            ChunkInfo::Done,
        ]
    );
}

#[test]
fn sglang_chat_nulls_are_not_text() {
    assert_eq!(
        infos(SGLANG_CHAT),
        vec![
            chunk(Nothing, false, None),
            chunk(Content, false, None),
            chunk(Nothing, true, None),
            chunk(Nothing, false, Some((4, 1))),
            ChunkInfo::Done,
        ]
    );
}

#[test]
fn llamacpp_separate_finish_chunk_carries_usage() {
    assert_eq!(
        infos(LLAMACPP_CHAT),
        vec![
            chunk(Nothing, false, None),
            chunk(Content, false, None),
            chunk(Nothing, true, Some((3, 2))),
            ChunkInfo::Done,
        ]
    );
    assert_eq!(
        infos(LLAMACPP_COMPLETIONS),
        vec![
            chunk(Content, false, None),
            chunk(Nothing, true, Some((3, 1))),
            ChunkInfo::Done,
        ]
    );
}

#[test]
fn openai_chat_chunks() {
    assert_eq!(
        infos(OPENAI_CHAT),
        vec![
            chunk(Nothing, false, None),
            chunk(Content, false, None),
            chunk(Nothing, true, None),
            chunk(Nothing, false, Some((9, 1))),
            ChunkInfo::Done,
        ]
    );
}

#[test]
fn escaped_text_reasoning_field_and_tool_calls_count_as_text() {
    let c = |s: &str| classify_data(s.as_bytes());
    assert_eq!(
        c(r#"{"choices":[{"text":"\n"}]}"#),
        chunk(Content, false, None)
    );
    assert_eq!(
        c(r#"{"choices":[{"text":"\ud83d\ude00"}]}"#),
        chunk(Content, false, None)
    );
    assert_eq!(
        c(r#"{"choices":[{"delta":{"reasoning":"x","content":null}}]}"#),
        chunk(Reasoning, false, None)
    );
    let tool_call = ChunkInfo::Chunk {
        generated: Content,
        finish: false,
        tool_call: true,
        usage: None,
    };
    assert_eq!(
        c(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}"#),
        tool_call
    );
    // A non-streamed answer that is a tool call (`message.tool_calls`), content null.
    assert_eq!(
        classify_response(
            br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}}]}"#
        ),
        tool_call
    );
    // vLLM's empty `tool_calls: []` on a content chunk is not a tool call.
    assert_eq!(
        c(r#"{"choices":[{"delta":{"content":"a","tool_calls":[]}}]}"#),
        chunk(Content, false, None)
    );
    assert_eq!(
        c(r#"{"choices":[{"delta":{"tool_calls":[]}}],"usage":{"prompt_tokens":1}}"#),
        chunk(Nothing, false, None)
    );
    assert_eq!(c(r#"{"choices":null}"#), chunk(Nothing, false, None));
    assert_eq!(c(" [DONE] "), ChunkInfo::Done);
}

#[test]
fn error_objects_in_any_dialect() {
    let c = |s: &str| classify_data(s.as_bytes());
    assert_eq!(
        c(r#"{"error":{"message":"boom","type":"InternalServerError","param":null,"code":500}}"#),
        ChunkInfo::Error("boom (type InternalServerError, code 500)".into())
    );
    assert_eq!(
        c(r#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#),
        ChunkInfo::Error("slow down (type requests, code rate_limit_exceeded)".into())
    );
    assert_eq!(
        c(r#"{"object":"error","message":"bad","type":"BadRequestError","code":400}"#),
        ChunkInfo::Error("bad".into())
    );
    assert_eq!(c(r#"{"error":"plain"}"#), ChunkInfo::Error("plain".into()));
    assert_eq!(
        c(r#"{"error":null,"choices":[]}"#),
        chunk(Nothing, false, None)
    );
    let frame = SseEvent::Message {
        event: b"error",
        data: b"engine died",
    };
    assert_eq!(
        classify_event(frame),
        ChunkInfo::Error("engine died".into())
    );
    let frame = SseEvent::Message {
        event: b"error",
        data: br#"{"error":{"message":"oom"}}"#,
    };
    assert_eq!(classify_event(frame), ChunkInfo::Error("oom".into()));
}

#[test]
fn malformed_payloads_are_reported_with_a_preview() {
    for bad in [
        r#"{"choices":[{"text":"#,
        "hello",
        "[1,2]",
        r#"{"usage":{"completion_tokens":-1}}"#,
    ] {
        match classify_data(bad.as_bytes()) {
            ChunkInfo::Malformed(m) => assert!(m.starts_with("malformed chunk"), "{m}"),
            other => panic!("{bad} gave {other:?}"),
        }
    }
}

#[test]
fn error_message_reads_every_error_body_shape() {
    let m = |s: &str| error_message(s.as_bytes());
    assert_eq!(
        m(r#"{"error":{"message":"nope","type":"x"}}"#),
        "nope (type x)"
    );
    assert_eq!(
        m(
            r#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}"#
        ),
        "The model `x` does not exist."
    );
    assert_eq!(m(r#"{"detail":"Not Found"}"#), "Not Found");
    assert_eq!(
        m(r#"{"detail":[{"loc":["body"]}]}"#),
        r#"[{"loc":["body"]}]"#
    );
    assert_eq!(m("upstream connect error\n"), "upstream connect error");
    assert_eq!(m(""), "");
    // Bounded in size, not cut for display (the client scrubs the key, then cuts).
    let long = "é".repeat(10_000);
    let cut = m(&long);
    assert!(cut.len() <= MAX_SERVER_TEXT + '…'.len_utf8() && cut.ends_with('…'));
    assert!(m(&"é".repeat(1000)).len() == 2000);
}

#[test]
fn non_streamed_responses() {
    let chat = br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","reasoning_content":null},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    assert_eq!(classify_response(chat), chunk(Content, true, Some((3, 4))));
    let full: CompletionResponse<'_> = serde_json::from_slice(chat).unwrap();
    assert_eq!(full.text(), Some("Hi"));
    let cmpl = br#"{"choices":[{"index":0,"text":"a\nb","finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    assert_eq!(classify_response(cmpl), chunk(Content, true, Some((1, 2))));
    let full: CompletionResponse<'_> = serde_json::from_slice(cmpl).unwrap();
    assert_eq!(full.text(), Some("a\nb"));
    assert!(matches!(
        classify_response(b"<html>"),
        ChunkInfo::Malformed(_)
    ));
}

#[test]
fn full_stream_types_read_the_fixtures() {
    let mut texts = String::new();
    let mut p = SseParser::new();
    p.feed(VLLM_CHAT.as_bytes(), |e| {
        if let SseEvent::Message { data, .. } = e {
            if let Ok(c) = serde_json::from_slice::<StreamChunk<'_>>(data) {
                for ch in &c.choices {
                    let d = ch.delta.clone().unwrap_or_default();
                    texts.push_str(d.reasoning_content.as_deref().unwrap_or(""));
                    texts.push_str(d.content.as_deref().unwrap_or(""));
                }
            }
        }
    });
    assert_eq!(texts, "hmmHi é\n");
}
