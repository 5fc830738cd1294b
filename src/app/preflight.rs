//! Before the clock starts: is the server there, which model does it serve, what is it, and
//! which of the fields servebench adds on its own account (`ignore_eos`, `min_tokens`,
//! per-chunk usage) does it refuse? Each failure here is a clear error, not 1000 failed records.

use crate::openai::{build_body, BodyOptions, Endpoint};
use anyhow::{anyhow, Context};
use std::time::Duration;

/// What the server told us before the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServerFacts {
    /// Models listed at /v1/models.
    pub models: Vec<String>,
    /// The /version body, if the server has one (vLLM and SGLang do).
    pub version: Option<serde_json::Value>,
    /// Whether `stream_options.continuous_usage_stats` is sent (asked for, and not refused).
    pub continuous_usage: bool,
}

/// A client for the preflight: the API key, and `--header`'s extra headers, so a gateway that
/// wants a header of its own answers the preflight as it answers the run.
fn http(
    base_url: &str,
    api_key: Option<&str>,
    timeout: Duration,
    extra: &[(String, String)],
) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in extra {
        let (name, value) = crate::client::extra_header(k, v).ok_or_else(|| {
            anyhow!(
                "--header {k}: not a valid HTTP header (name, or control characters in the value)"
            )
        })?;
        headers.insert(name, value);
    }
    if let Some(k) = api_key {
        let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}"))
            .map_err(|_| anyhow!("the API key is not a valid header value; check --api-key"))?;
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers);
    // As in the client: a proxy from the environment must not sit in front of a local server.
    if reqwest::Url::parse(base_url).is_ok_and(|u| crate::client::is_loopback(&u)) {
        b = b.no_proxy();
    }
    Ok(b.build()?)
}

/// List models and read `/version`, both GETs within `timeout` together (a server that accepts
/// and never answers costs `timeout`, once). Unreachable or silent server → an error naming
/// the URL and the fix. `extra`: `--header`'s headers, sent here too.
pub async fn discover(
    base_url: &str,
    api_key: Option<&str>,
    timeout: Duration,
    extra: &[(String, String)],
) -> anyhow::Result<ServerFacts> {
    let deadline = std::time::Instant::now() + timeout;
    let client = http(base_url, api_key, timeout, extra)?;
    let url = format!("{base_url}/v1/models");
    let resp = client.get(&url).send().await.map_err(|e| {
        if e.is_timeout() {
            anyhow!(
                "the server at {base_url} did not answer GET /v1/models within {:.1} s (--request-timeout, at most 30 s for this check) — is it still loading? retry when it is ready, or raise --request-timeout",
                timeout.as_secs_f64()
            )
        } else {
            anyhow!(
                "cannot reach the server at {base_url}: {} — is it running? check --base-url",
                root_cause(&e)
            )
        }
    })?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(anyhow!(
            "the server at {base_url} refused the API key (HTTP {status}); check --api-key or OPENAI_API_KEY"
        ));
    }
    let mut facts = ServerFacts::default();
    if status.is_success() {
        let body: serde_json::Value = resp
            .json()
            .await
            .with_context(|| format!("{url} did not return JSON"))?;
        if let Some(list) = body.get("data").and_then(|d| d.as_array()) {
            facts.models = list
                .iter()
                .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(String::from))
                .collect();
        }
    }
    // `/version` is optional: it gets what is left of the time, and silence there is no error.
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if !left.is_zero() {
        let version = async {
            let r = client
                .get(format!("{base_url}/version"))
                .timeout(left)
                .send()
                .await
                .ok()?;
            if r.status().is_success() {
                r.json().await.ok()
            } else {
                None
            }
        };
        facts.version = tokio::time::timeout(left, version).await.ok().flatten();
    }
    // Both go into the result file and the console: a server may echo the key in them.
    use crate::launch::secret::{redact, redact_json};
    facts.models = facts
        .models
        .into_iter()
        .map(|m| redact(m, api_key))
        .collect();
    facts.version = facts.version.map(|v| redact_json(v, api_key));
    Ok(facts)
}

/// Pick the model: the one asked for, or the only/first one the server lists.
pub fn choose_model(asked: Option<&str>, facts: &ServerFacts) -> anyhow::Result<String> {
    match asked {
        Some(m) => {
            if !facts.models.is_empty() && !facts.models.iter().any(|x| x == m) {
                return Err(anyhow!(
                    "the server does not serve model `{m}`; it lists: {} — pass one of them to --model",
                    facts.models.join(", ")
                ));
            }
            Ok(m.to_string())
        }
        None => {
            facts.models.first().cloned().ok_or_else(|| {
                anyhow!("the server lists no models at /v1/models; pass --model NAME")
            })
        }
    }
}

/// A field servebench adds to request bodies on its own account, not because the user asked
/// for that field by name: a server that refuses one gets the run without it (and the result
/// says so). Fields the user did ask for (structured output, `BodyOptions::extra`) are never
/// dropped: a refusal there is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OptionalField {
    /// vLLM/SGLang `ignore_eos`: forces each output to `max_tokens`.
    IgnoreEos,
    /// vLLM/SGLang `min_tokens`: postpones the end of sequence.
    MinTokens,
    /// vLLM `stream_options.continuous_usage_stats`: a running usage in every chunk.
    ContinuousUsageStats,
}

impl OptionalField {
    pub const ALL: [OptionalField; 3] = [
        OptionalField::IgnoreEos,
        OptionalField::MinTokens,
        OptionalField::ContinuousUsageStats,
    ];

    /// The field's path in the body (dotted when nested), as the result file records it.
    pub fn name(self) -> &'static str {
        match self {
            OptionalField::IgnoreEos => "ignore_eos",
            OptionalField::MinTokens => "min_tokens",
            OptionalField::ContinuousUsageStats => "stream_options.continuous_usage_stats",
        }
    }

    /// The name a server's error text holds: the last part of the path (pydantic's `loc`,
    /// transformers' set of keys and vLLM's messages all name the key itself).
    fn key(self) -> &'static str {
        match self {
            OptionalField::ContinuousUsageStats => "continuous_usage_stats",
            other => other.name(),
        }
    }

    /// Whether the field forces output lengths, so that without it requests may stop early.
    pub fn forces_length(self) -> bool {
        matches!(self, OptionalField::IgnoreEos | OptionalField::MinTokens)
    }

    fn present(self, o: &BodyOptions) -> bool {
        match self {
            OptionalField::IgnoreEos => o.ignore_eos,
            OptionalField::MinTokens => o.min_tokens.is_some(),
            OptionalField::ContinuousUsageStats => o.stream && o.continuous_usage_stats,
        }
    }

    fn remove(self, o: &mut BodyOptions) {
        match self {
            OptionalField::IgnoreEos => o.ignore_eos = false,
            OptionalField::MinTokens => o.min_tokens = None,
            OptionalField::ContinuousUsageStats => o.continuous_usage_stats = false,
        }
    }
}

/// `opts` without the `refused` fields: what every request of the run is built from.
pub fn without(opts: &BodyOptions, refused: &[OptionalField]) -> BodyOptions {
    let mut o = opts.clone();
    for f in refused {
        f.remove(&mut o);
    }
    o
}

/// A server's answer to one probe request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx, body read to its end.
    Accepted,
    /// 400 or 422: the request was refused; the body's text (which may name the field).
    Refused(String),
    /// 404: the endpoint or model is wrong, which no field can fix.
    NotFound(String),
    /// Another status (5xx, 429): the server's state, not an answer about fields.
    Unanswered(u16),
}

/// Sends one probe body and reports the answer: the preflight's seam, so the field search is
/// tested without a server.
pub trait ProbeSender {
    async fn send(&self, body: bytes::Bytes) -> anyhow::Result<Answer>;
    /// Where probes go, for messages.
    fn url(&self) -> &str;
}

/// Probes over HTTP, each bounded by the run's request timeout (a probe is a request).
pub struct HttpProbe {
    client: reqwest::Client,
    url: String,
    /// Removed from every answer's text before it is kept (a server may echo it).
    api_key: Option<String>,
}

impl HttpProbe {
    pub fn new(
        base_url: &str,
        endpoint: Endpoint,
        api_key: Option<&str>,
        timeout: Duration,
        extra: &[(String, String)],
    ) -> anyhow::Result<HttpProbe> {
        Ok(HttpProbe {
            client: http(base_url, api_key, timeout, extra)?,
            url: format!("{base_url}{}", endpoint.path()),
            api_key: api_key.map(str::to_string),
        })
    }
}

impl ProbeSender for HttpProbe {
    fn url(&self) -> &str {
        &self.url
    }

    async fn send(&self, body: bytes::Bytes) -> anyhow::Result<Answer> {
        let url = &self.url;
        let resp = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow!("probe request to {url} failed: {}", root_cause(&e)))?;
        let status = resp.status();
        // The whole answer, streamed or not, within the timeout: a probe that succeeded
        // streamed to its end.
        let key = self.api_key.as_deref();
        let text = resp
            .text()
            .await
            .map(|t| crate::launch::secret::redact(t, key));
        Ok(match status.as_u16() {
            // Accepted, then broken off (a server cut the stream): it took the fields.
            200..=299 => Answer::Accepted,
            400 | 422 => Answer::Refused(text.unwrap_or_default()),
            404 => Answer::NotFound(text.unwrap_or_default()),
            other => Answer::Unanswered(other),
        })
    }
}

/// `max_tokens` of a probe: enough for a streamed answer to have a token and a finish.
const PROBE_MAX_TOKENS: u32 = 2;

/// The body of one probe: a tiny request built exactly as the run's are, from `opts`.
fn probe_body(endpoint: Endpoint, opts: &BodyOptions) -> bytes::Bytes {
    let mut o = opts.clone();
    // A server checks min_tokens <= max_tokens (vLLM does): the probe asks whether the field
    // is accepted, so its value must fit the probe's own max_tokens.
    if o.min_tokens.is_some() {
        o.min_tokens = Some(1);
    }
    build_body(endpoint, "Hello", PROBE_MAX_TOKENS, &o)
}

/// Learn which [`OptionalField`]s of `opts` the server refuses, with few probes (at most
/// 2 × the fields present + 2; none for a plain OpenAI request), each a tiny request built as
/// the run's are:
/// 1. all of them; on a refusal, drop every field the error text names and try again (one
///    round per named field at most: `transformers serve` names them all at once);
/// 2. when a refusal names none of the fields left, the request without any of them: refused
///    too means the user's own fields (`extra`) or the request itself are at fault — the user's
///    fields are then probed alone, and a refusal there is an error naming them, never a
///    silent drop; otherwise each field left is tried alone.
///
/// A 404 is an error (wrong endpoint or model). Any other status (5xx, 429) says nothing about
/// fields: what is known so far is kept, and the run measures what the server does.
pub async fn refused_fields(
    probe: &impl ProbeSender,
    endpoint: Endpoint,
    opts: &BodyOptions,
) -> anyhow::Result<Vec<OptionalField>> {
    let present: Vec<OptionalField> = OptionalField::ALL
        .into_iter()
        .filter(|f| f.present(opts))
        .collect();
    let mut refused: Vec<OptionalField> = Vec::new();
    if present.is_empty() && opts.extra.is_empty() {
        return Ok(refused); // a plain OpenAI request: nothing to learn
    }
    let ask = |refused: &[OptionalField]| probe.send(probe_body(endpoint, &without(opts, refused)));
    loop {
        match ask(&refused).await? {
            Answer::Accepted => {
                refused.sort();
                return Ok(refused);
            }
            Answer::NotFound(text) => return Err(not_found(probe.url(), &text)),
            Answer::Unanswered(_) => return Ok(refused),
            Answer::Refused(text) => {
                let named: Vec<OptionalField> = present
                    .iter()
                    .copied()
                    .filter(|f| !refused.contains(f) && names(&text, f.key()))
                    .collect();
                if named.is_empty() {
                    break;
                }
                refused.extend(named);
            }
        }
    }
    // The refusal named none of the fields left. Without any of them:
    let left: Vec<OptionalField> = present
        .iter()
        .copied()
        .filter(|f| !refused.contains(f))
        .collect();
    match ask(&present).await? {
        Answer::Accepted => {}
        Answer::NotFound(text) => return Err(not_found(probe.url(), &text)),
        Answer::Unanswered(_) => return Ok(refused),
        Answer::Refused(text) => {
            return match users_fields_refused(probe, endpoint, opts, &text).await? {
                Some(e) => Err(e),
                // Refused whatever it holds: nothing to learn about fields; the run records
                // the server's answer to every request.
                None => Ok(refused),
            };
        }
    }
    for f in left {
        let others: Vec<OptionalField> = present.iter().copied().filter(|g| *g != f).collect();
        if let Answer::Refused(_) = ask(&others).await? {
            refused.push(f);
        }
    }
    refused.sort();
    Ok(refused)
}

/// Whether a refusal of a request without optional fields is the user's own fields' doing:
/// the same request without them is accepted. Then the error names them (those the server's
/// text names, else all of them): they were asked for, so they are not dropped.
async fn users_fields_refused(
    probe: &impl ProbeSender,
    endpoint: Endpoint,
    opts: &BodyOptions,
    text: &str,
) -> anyhow::Result<Option<anyhow::Error>> {
    if opts.extra.is_empty() {
        return Ok(None);
    }
    let bare = BodyOptions {
        extra: serde_json::Map::new(),
        ..without(opts, &OptionalField::ALL)
    };
    if probe.send(probe_body(endpoint, &bare)).await? != Answer::Accepted {
        return Ok(None);
    }
    let mut named: Vec<&str> = opts
        .extra
        .keys()
        .map(String::as_str)
        .filter(|k| names(text, k))
        .collect();
    if named.is_empty() {
        named = opts.extra.keys().map(String::as_str).collect();
    }
    Ok(Some(anyhow!(
        "{} refuses the request field{} {} that this run asks for ({}); servebench does not drop \
         fields you asked for — choose what this server accepts (for structured output, another \
         --structured-dialect)",
        probe.url(),
        if named.len() == 1 { "" } else { "s" },
        named.join(", "),
        shown(text)
    )))
}

/// Whether a server's error text names `key` as a field: the key with no identifier character
/// on either side (so `min_tokens` is not found inside `max_min_tokens`).
fn names(text: &str, key: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(key).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + key.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

fn not_found(url: &str, text: &str) -> anyhow::Error {
    anyhow!(
        "{url} answered 404 ({}) — check --endpoint and --model",
        shown(text)
    )
}

/// A server's error message as an error quotes it: the key was removed from `text` when it
/// was read (`HttpProbe::send`), so cutting it here cannot leave part of it.
fn shown(text: &str) -> String {
    crate::openai::truncate(crate::openai::error_message(text.as_bytes()), 512)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::Mutex;

    /// A server in a closure: each probe body (parsed) → its answer; every body kept.
    struct Fake<F: Fn(&Value) -> Answer> {
        answer: F,
        sent: Mutex<Vec<Value>>,
    }

    impl<F: Fn(&Value) -> Answer> Fake<F> {
        fn new(answer: F) -> Self {
            Fake {
                answer,
                sent: Mutex::new(Vec::new()),
            }
        }
        fn probes(&self) -> usize {
            self.sent.lock().map(|s| s.len()).unwrap_or(usize::MAX)
        }
    }

    impl<F: Fn(&Value) -> Answer> ProbeSender for Fake<F> {
        async fn send(&self, body: bytes::Bytes) -> anyhow::Result<Answer> {
            let v: Value = serde_json::from_slice(&body)?;
            let a = (self.answer)(&v);
            self.sent.lock().map_err(|_| anyhow!("poisoned"))?.push(v);
            Ok(a)
        }
        fn url(&self) -> &str {
            "http://127.0.0.1:1/v1/chat/completions"
        }
    }

    fn all_fields() -> BodyOptions {
        BodyOptions {
            model: "m".into(),
            stream: true,
            ignore_eos: true,
            min_tokens: Some(64),
            continuous_usage_stats: true,
            extra: serde_json::Map::new(),
        }
    }

    fn has(v: &Value, path: &str) -> bool {
        path.split('.').try_fold(v, |v, k| v.get(k)).is_some()
    }

    /// `transformers serve`: any top-level key outside the OpenAI schema, all named at once.
    fn transformers(v: &Value) -> Answer {
        let allowed = [
            "model",
            "messages",
            "prompt",
            "max_tokens",
            "stream",
            "stream_options",
        ];
        let unexpected: Vec<String> = v
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| format!("'{k}'"))
            .collect();
        if unexpected.is_empty() {
            Answer::Accepted
        } else {
            Answer::Refused(
                json!({"detail": format!("Unexpected fields in the request: {{{}}}", unexpected.join(", "))})
                    .to_string(),
            )
        }
    }

    #[tokio::test]
    async fn a_server_that_names_the_fields_costs_two_probes() {
        let fake = Fake::new(transformers);
        let refused = refused_fields(&fake, Endpoint::ChatCompletions, &all_fields())
            .await
            .unwrap();
        assert_eq!(
            refused,
            vec![OptionalField::IgnoreEos, OptionalField::MinTokens]
        );
        assert_eq!(fake.probes(), 2);
        // The first probe carried everything the run would send; the second, what it will.
        let sent = fake.sent.lock().unwrap();
        assert!(has(&sent[0], "ignore_eos") && has(&sent[0], "min_tokens"));
        assert!(!has(&sent[1], "ignore_eos") && !has(&sent[1], "min_tokens"));
        assert!(has(&sent[1], "stream_options.continuous_usage_stats"));
    }

    #[tokio::test]
    async fn a_server_that_accepts_everything_costs_one_probe() {
        let fake = Fake::new(|_| Answer::Accepted);
        let refused = refused_fields(&fake, Endpoint::Completions, &all_fields())
            .await
            .unwrap();
        assert!(refused.is_empty());
        assert_eq!(fake.probes(), 1);
    }

    #[tokio::test]
    async fn nothing_to_learn_sends_no_probe() {
        // No optional field and none of the user's (non-streamed, no ignore_eos): no probe.
        let opts = BodyOptions {
            model: "m".into(),
            ..BodyOptions::default()
        };
        let fake = Fake::new(|_| Answer::Accepted);
        let refused = refused_fields(&fake, Endpoint::Completions, &opts)
            .await
            .unwrap();
        assert!(refused.is_empty());
        assert_eq!(fake.probes(), 0);
    }

    #[tokio::test]
    async fn an_unnamed_refusal_is_found_one_field_at_a_time() {
        // A terse server: "Bad Request" for any body with a nested continuous_usage_stats.
        let fake = Fake::new(|v| {
            if has(v, "stream_options.continuous_usage_stats") {
                Answer::Refused("Bad Request".into())
            } else {
                Answer::Accepted
            }
        });
        let refused = refused_fields(&fake, Endpoint::ChatCompletions, &all_fields())
            .await
            .unwrap();
        assert_eq!(refused, vec![OptionalField::ContinuousUsageStats]);
        // All, none, then each of the three alone.
        assert_eq!(fake.probes(), 5);
    }

    #[tokio::test]
    async fn a_pydantic_extra_forbidden_error_names_the_nested_field() {
        let fake = Fake::new(|v| {
            if has(v, "stream_options.continuous_usage_stats") {
                Answer::Refused(
                    json!({"detail": [{"type": "extra_forbidden",
                        "loc": ["body", "stream_options", "continuous_usage_stats"],
                        "msg": "Extra inputs are not permitted"}]})
                    .to_string(),
                )
            } else {
                Answer::Accepted
            }
        });
        let refused = refused_fields(&fake, Endpoint::ChatCompletions, &all_fields())
            .await
            .unwrap();
        assert_eq!(refused, vec![OptionalField::ContinuousUsageStats]);
        assert_eq!(fake.probes(), 2);
    }

    #[tokio::test]
    async fn the_probe_asks_for_min_tokens_within_its_own_max_tokens() {
        // vLLM refuses min_tokens > max_tokens, naming min_tokens: that is not a refusal of the
        // field, and the probe must not provoke it with the run's min_tokens of 64.
        let fake = Fake::new(|v| {
            let min = v.get("min_tokens").and_then(Value::as_u64).unwrap_or(0);
            let max = v.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
            if min > max {
                Answer::Refused("min_tokens must be less than or equal to max_tokens".into())
            } else {
                Answer::Accepted
            }
        });
        let refused = refused_fields(&fake, Endpoint::Completions, &all_fields())
            .await
            .unwrap();
        assert!(refused.is_empty(), "{refused:?}");
    }

    #[tokio::test]
    async fn a_refused_field_the_user_asked_for_is_an_error_naming_it() {
        let mut opts = all_fields();
        opts.extra
            .insert("guided_json".into(), json!({"type": "object"}));
        let fake = Fake::new(|v| {
            if has(v, "guided_json") {
                Answer::Refused(
                    json!({"detail": "Unexpected fields in the request: {'guided_json'}"})
                        .to_string(),
                )
            } else {
                Answer::Accepted
            }
        });
        let err = refused_fields(&fake, Endpoint::ChatCompletions, &opts)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("guided_json"), "{err}");
        assert!(err.contains("--structured-dialect"), "{err}");
        // all, none of the optional ones (still refused), then without the user's fields too.
        assert_eq!(fake.probes(), 3);
    }

    #[tokio::test]
    async fn a_request_refused_whatever_it_holds_teaches_nothing() {
        let fake = Fake::new(|_| Answer::Refused("{\"detail\": \"no\"}".into()));
        let refused = refused_fields(&fake, Endpoint::ChatCompletions, &all_fields())
            .await
            .unwrap();
        assert!(refused.is_empty());
        assert_eq!(fake.probes(), 2);
    }

    #[tokio::test]
    async fn not_found_is_an_error_and_a_busy_server_is_no_answer() {
        let fake = Fake::new(|_| Answer::NotFound("{\"detail\": \"Not Found\"}".into()));
        let err = refused_fields(&fake, Endpoint::ChatCompletions, &all_fields())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("404") && err.contains("--endpoint"), "{err}");
        let fake = Fake::new(|_| Answer::Unanswered(503));
        let refused = refused_fields(&fake, Endpoint::ChatCompletions, &all_fields())
            .await
            .unwrap();
        assert!(refused.is_empty());
        assert_eq!(fake.probes(), 1);
    }

    #[test]
    fn a_field_is_named_only_as_a_whole_word() {
        assert!(names("Unexpected fields: {'ignore_eos'}", "ignore_eos"));
        assert!(names("[\"body\",\"min_tokens\"]", "min_tokens"));
        assert!(!names("max_min_tokens is bad", "min_tokens"));
        assert!(!names("min_tokens2", "min_tokens"));
        assert!(names("a; min_tokens", "min_tokens"));
    }

    #[test]
    fn without_drops_exactly_the_refused_fields() {
        let o = without(
            &all_fields(),
            &[
                OptionalField::IgnoreEos,
                OptionalField::ContinuousUsageStats,
            ],
        );
        assert!(!o.ignore_eos && !o.continuous_usage_stats);
        assert_eq!(o.min_tokens, Some(64));
    }
}
