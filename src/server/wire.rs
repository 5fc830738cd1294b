//! The OpenAI request fields the server reads, and the JSON bodies it writes (other than the
//! per-token SSE chunks, which [`super::sse`] renders from templates).
//!
//! Unknown request fields are ignored (sampling parameters and the like mean nothing here);
//! fields that are read must have the right type, or the request is rejected with 400 and an
//! OpenAI error body that names the field — as vLLM does.

use serde::Deserialize;
use serde_json::{json, Value};

use super::backend::FinishReason;

/// A request rejected before generation: HTTP status, error type and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
}

impl Rejection {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Rejection {
        Rejection {
            status: 400,
            kind: "BadRequestError",
            message: message.into(),
            param,
        }
    }
}

/// `{"error": {"message", "type", "param", "code"}}` — vLLM's `ErrorResponse` (OpenAI's shape
/// with the HTTP status as `code`).
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: u16) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

/// Which of `names` (top-level fields, or dotted paths into nested objects) the JSON `body`
/// holds, in the order of `names`. A body that is not a JSON object holds none (it is rejected
/// later, as malformed, with its own message).
pub fn present_fields<'a>(body: &[u8], names: &'a [String]) -> Vec<&'a str> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    names
        .iter()
        .filter(|name| {
            name.split('.')
                .try_fold(&value, |v, key| v.as_object().and_then(|o| o.get(key)))
                .is_some()
        })
        .map(String::as_str)
        .collect()
}

/// The 422 body `transformers serve` sends for fields outside its schema (FastAPI's
/// `HTTPException(422, detail=f"Unexpected fields in the request: {unexpected}")`, where
/// `unexpected` is a Python set, hence the quotes and braces).
pub fn unexpected_fields_body(fields: &[&str]) -> Value {
    let set: Vec<String> = fields.iter().map(|f| format!("'{f}'")).collect();
    json!({ "detail": format!("Unexpected fields in the request: {{{}}}", set.join(", ")) })
}

/// Which generation route a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
    continuous_usage_stats: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRequest {
    model: Option<String>,
    prompt: Option<Value>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    min_tokens: Option<u32>,
    ignore_eos: Option<bool>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
    response_format: Option<Value>,
    guided_json: Option<Value>,
    guided_regex: Option<Value>,
    guided_choice: Option<Value>,
    guided_grammar: Option<Value>,
    structured_outputs: Option<Value>,
    /// SGLang's top-level constraint fields.
    json_schema: Option<Value>,
    regex: Option<Value>,
}

/// A generation request as the HTTP layer understood it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    pub model: Option<String>,
    pub prompt: String,
    pub prompt_tokens: u32,
    /// As given; the server applies its default when absent.
    pub max_tokens: Option<u32>,
    pub min_tokens: u32,
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
    pub continuous_usage: bool,
    pub structured: bool,
    /// The JSON schema or regex the answer must satisfy, read from any engine's fields
    /// ([`crate::structured::from_body`]); `None` for forms the server does not generate for.
    pub constraint: Option<crate::structured::Constraint>,
}

/// Parse a request body for `endpoint`.
pub fn parse_request(endpoint: Endpoint, body: &[u8]) -> Result<ParsedRequest, Rejection> {
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| {
        Rejection::bad_request(
            format!("the request body is not valid JSON for this endpoint: {e}"),
            None,
        )
    })?;
    if raw.n.is_some_and(|n| n != 1) {
        return Err(Rejection::bad_request(
            "the embedded server generates one choice per request; send n = 1 or leave it out",
            Some("n"),
        ));
    }
    let (prompt, prompt_tokens) = match endpoint {
        Endpoint::Completions => completion_prompt(raw.prompt.as_ref())?,
        Endpoint::Chat => chat_prompt(raw.messages.as_deref())?,
    };
    let max_tokens = match endpoint {
        Endpoint::Completions => raw.max_tokens,
        Endpoint::Chat => raw.max_completion_tokens.or(raw.max_tokens),
    };
    if max_tokens == Some(0) {
        return Err(Rejection::bad_request(
            "max_tokens must be at least 1, got 0",
            Some("max_tokens"),
        ));
    }
    let stream = raw.stream.unwrap_or(false);
    if raw.stream_options.is_some() && !stream {
        return Err(Rejection::bad_request(
            "stream_options can only be given when stream is true",
            Some("stream_options"),
        ));
    }
    let opts = raw.stream_options.unwrap_or_default();
    let include_usage = opts.include_usage.unwrap_or(false);
    let text_format = |v: &Value| v.get("type").and_then(Value::as_str) == Some("text");
    let structured = raw
        .response_format
        .as_ref()
        .is_some_and(|v| !v.is_null() && !text_format(v))
        || [
            &raw.guided_json,
            &raw.guided_regex,
            &raw.guided_choice,
            &raw.guided_grammar,
            &raw.structured_outputs,
            &raw.json_schema,
            &raw.regex,
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_null()));
    // Parsed a second time only for constrained requests, which are few and not timed here.
    let constraint = if structured {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| crate::structured::from_body(&v))
    } else {
        None
    };
    Ok(ParsedRequest {
        model: raw.model,
        prompt,
        prompt_tokens,
        max_tokens,
        min_tokens: raw.min_tokens.unwrap_or(0),
        ignore_eos: raw.ignore_eos.unwrap_or(false),
        stream,
        include_usage,
        // vLLM sends running usage only together with include_usage.
        continuous_usage: include_usage && opts.continuous_usage_stats.unwrap_or(false),
        structured,
        constraint,
    })
}

/// Token estimate of a text: one per whitespace-separated word (see
/// [`super::GenerateRequest::prompt_tokens`]).
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

fn completion_prompt(prompt: Option<&Value>) -> Result<(String, u32), Rejection> {
    let bad = |m: &str| Rejection::bad_request(m.to_string(), Some("prompt"));
    match prompt {
        None | Some(Value::Null) => Err(bad("prompt is required on /v1/completions")),
        Some(Value::String(s)) => Ok((s.clone(), estimate_tokens(s))),
        Some(Value::Array(items)) => match items.as_slice() {
            [] => Err(bad("prompt is an empty list; send a string or a list of token ids")),
            [Value::String(s)] => Ok((s.clone(), estimate_tokens(s))),
            [Value::String(_), ..] | [Value::Array(_), ..] => Err(bad(
                "batched prompts are not supported by the embedded server; send one prompt per request",
            )),
            ids => token_ids(ids).ok_or_else(|| {
                bad("prompt must be a string, a list with one string, or a list of token ids")
            }),
        },
        Some(_) => Err(bad("prompt must be a string or a list of token ids")),
    }
}

fn token_ids(ids: &[Value]) -> Option<(String, u32)> {
    let mut text = String::with_capacity(ids.len() * 6);
    for (i, id) in ids.iter().enumerate() {
        let id = id.as_u64()?;
        if i > 0 {
            text.push(' ');
        }
        text.push_str(&id.to_string());
    }
    Some((text, u32::try_from(ids.len()).unwrap_or(u32::MAX)))
}

fn chat_prompt(messages: Option<&[Message]>) -> Result<(String, u32), Rejection> {
    let messages = match messages {
        Some(m) if !m.is_empty() => m,
        _ => {
            return Err(Rejection::bad_request(
                "messages is required on /v1/chat/completions and must not be empty",
                Some("messages"),
            ))
        }
    };
    let contents = messages
        .iter()
        .map(|m| message_text(m.content.as_ref()))
        .collect::<Result<Vec<String>, Rejection>>()?;
    Ok(render_chat(messages.iter().zip(&contents).map(|(m, c)| {
        (m.role.as_deref().unwrap_or("user"), c.as_str())
    })))
}

/// Chat messages `(role, content)` as the embedded server renders them into one prompt
/// (ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
/// `<|im_start|>assistant\n`) and its token estimate (the contents' words; the tags are not
/// counted). `predict` renders a conversation's history with this, so its prompts, and the
/// prefix identities derived from them, are the served simulator's.
pub fn render_chat<'a>(messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> (String, u32) {
    let mut prompt = String::new();
    let mut tokens: u32 = 0;
    for (role, content) in messages {
        tokens = tokens.saturating_add(estimate_tokens(content));
        prompt.push_str("<|im_start|>");
        prompt.push_str(role);
        prompt.push('\n');
        prompt.push_str(content);
        prompt.push_str("<|im_end|>\n");
    }
    prompt.push_str("<|im_start|>assistant\n");
    (prompt, tokens)
}

/// A message's text: a string, null, or a list of parts whose `text` fields are joined.
fn message_text(content: Option<&Value>) -> Result<String, Rejection> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                if let Some(t) = part.get("text").and_then(Value::as_str) {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(t);
                }
            }
            Ok(text)
        }
        Some(_) => Err(Rejection::bad_request(
            "message content must be a string or a list of content parts",
            Some("messages"),
        )),
    }
}

/// The usage object, in vLLM's field order.
pub fn usage(prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "total_tokens": u64::from(prompt_tokens) + u64::from(completion_tokens),
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": null,
    })
}

/// Identity of one response: shared by every chunk of a stream.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// A whole (non-streaming) response body.
pub fn full_response(
    endpoint: Endpoint,
    meta: &ResponseMeta,
    text: &str,
    finish: FinishReason,
    prompt_tokens: u32,
    completion_tokens: u32,
) -> Value {
    match endpoint {
        Endpoint::Completions => json!({
            "id": meta.id,
            "object": "text_completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [{
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": finish.as_str(),
                "stop_reason": null,
                "prompt_logprobs": null,
            }],
            "usage": usage(prompt_tokens, completion_tokens),
        }),
        Endpoint::Chat => json!({
            "id": meta.id,
            "object": "chat.completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text, "tool_calls": [] },
                "logprobs": null,
                "finish_reason": finish.as_str(),
                "stop_reason": null,
            }],
            "usage": usage(prompt_tokens, completion_tokens),
            "prompt_logprobs": null,
        }),
    }
}

/// `GET /v1/models`.
pub fn models_list(model: &str, created: u64, max_model_len: u32) -> Value {
    json!({
        "object": "list",
        "data": [{
            "id": model,
            "object": "model",
            "created": created,
            "owned_by": "servebench",
            "root": model,
            "parent": null,
            "max_model_len": max_model_len,
            "permission": [],
        }],
    })
}

/// Cheap deterministic output text: token `i` is `WORDS[i % 16]`, a space and three letters —
/// one word, so the workload's approximate counting sees one token per token.
pub const WORDS: [&str; 16] = [
    " the", " and", " for", " are", " but", " not", " you", " all", " any", " can", " her", " was",
    " one", " our", " out", " day",
];

/// Append the text of tokens `first..first + count` to `out`.
pub fn push_words(out: &mut Vec<u8>, first: u32, count: u32) {
    for i in 0..count {
        let w = WORDS[(first.wrapping_add(i) % 16) as usize];
        out.extend_from_slice(w.as_bytes());
    }
}

/// The text of tokens `first..first + count` plus `pad` extra bytes of words (huge chunks).
pub fn words(first: u32, count: u32, pad: usize) -> String {
    let mut out = Vec::with_capacity(count as usize * 4 + pad);
    push_words(&mut out, first, count);
    push_padding(&mut out, pad);
    // Only ASCII words were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Append pieces `first..first + count` of a structured answer to `out`, escaped for a JSON
/// string. Tokens past the answer's end (`min_tokens`, `ignore_eos`) are spaces, which JSON
/// allows after a document.
pub fn push_pieces(out: &mut Vec<u8>, pieces: &[String], first: u32, count: u32) {
    for i in first..first.saturating_add(count) {
        match pieces.get(i as usize) {
            Some(p) => {
                // The JSON string literal without its own two quotes.
                let quoted = serde_json::to_string(p).unwrap_or_default();
                let inner = quoted
                    .strip_prefix('"')
                    .and_then(|q| q.strip_suffix('"'))
                    .unwrap_or_default();
                out.extend_from_slice(inner.as_bytes());
            }
            None => out.push(b' '),
        }
    }
}

/// The first `count` tokens of a structured answer as plain text.
pub fn answer_text(pieces: &[String], count: u32) -> String {
    let n = (count as usize).min(pieces.len());
    let mut s = pieces[..n].concat();
    s.extend(std::iter::repeat_n(' ', count as usize - n));
    s
}

/// `pad` bytes of ASCII words (no JSON escaping needed).
pub fn push_padding(out: &mut Vec<u8>, pad: usize) {
    let target = out.len() + pad;
    let mut i = 0usize;
    while out.len() + 4 <= target {
        out.extend_from_slice(WORDS[i % 16].as_bytes());
        i += 1;
    }
    while out.len() < target {
        out.push(b'.');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_prompt_forms() {
        let p = parse_request(
            Endpoint::Completions,
            br#"{"prompt":"a b  c","max_tokens":5}"#,
        )
        .unwrap();
        assert_eq!(
            (p.prompt.as_str(), p.prompt_tokens, p.max_tokens),
            ("a b  c", 3, Some(5))
        );
        let p = parse_request(Endpoint::Completions, br#"{"prompt":[1,2,3,4]}"#).unwrap();
        assert_eq!((p.prompt.as_str(), p.prompt_tokens), ("1 2 3 4", 4));
        let p = parse_request(Endpoint::Completions, br#"{"prompt":["x y"]}"#).unwrap();
        assert_eq!(p.prompt_tokens, 2);
        for bad in [
            &br#"{"prompt":["a","b"]}"#[..],
            br#"{"prompt":[[1],[2]]}"#,
            br#"{"prompt":[1,"x"]}"#,
            br#"{"prompt":7}"#,
            br#"{}"#,
        ] {
            let e = parse_request(Endpoint::Completions, bad).unwrap_err();
            assert_eq!((e.status, e.param), (400, Some("prompt")));
        }
    }

    #[test]
    fn chat_prompt_counts_content_words_and_keeps_prefixes() {
        let body = br#"{"messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"one two three"}]}],
            "max_completion_tokens":9,"max_tokens":3}"#;
        let p = parse_request(Endpoint::Chat, body).unwrap();
        assert_eq!(p.prompt_tokens, 5);
        assert_eq!(p.max_tokens, Some(9));
        assert!(p
            .prompt
            .starts_with("<|im_start|>system\nbe brief<|im_end|>\n"));
        assert!(p.prompt.ends_with("<|im_start|>assistant\n"));
        assert!(parse_request(Endpoint::Chat, br#"{"messages":[]}"#).is_err());
    }

    #[test]
    fn stream_options_and_structured_flags() {
        let p = parse_request(
            Endpoint::Completions,
            br#"{"prompt":"x","stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#,
        )
        .unwrap();
        assert!(p.stream && p.include_usage && p.continuous_usage && !p.structured);
        let e = parse_request(
            Endpoint::Completions,
            br#"{"prompt":"x","stream_options":{"include_usage":true}}"#,
        )
        .unwrap_err();
        assert_eq!(e.param, Some("stream_options"));
        let p = parse_request(
            Endpoint::Chat,
            br#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#,
        )
        .unwrap();
        assert!(p.structured);
        let p = parse_request(
            Endpoint::Chat,
            br#"{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"text"}}"#,
        )
        .unwrap();
        assert!(!p.structured);
    }

    #[test]
    fn wrong_types_and_bad_json_are_rejected_with_a_message() {
        let e = parse_request(
            Endpoint::Completions,
            br#"{"prompt":"x","max_tokens":"ten"}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
        assert!(parse_request(Endpoint::Completions, b"{not json").is_err());
        assert!(parse_request(Endpoint::Completions, br#"{"prompt":"x","max_tokens":0}"#).is_err());
        assert!(parse_request(Endpoint::Completions, br#"{"prompt":"x","n":2}"#).is_err());
    }

    #[test]
    fn words_are_one_token_each_and_padding_is_exact() {
        let w = words(14, 4, 0);
        assert_eq!(w, " out day the and");
        assert_eq!(estimate_tokens(&w), 4);
        assert_eq!(words(0, 1, 1003).len(), 4 + 1003);
    }
}
