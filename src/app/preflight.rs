//! Before the clock starts: is the server there, which model does it serve, what is it, and
//! does it accept per-chunk usage? Each failure here is a clear error, not 1000 failed records.

use crate::openai::Endpoint;
use anyhow::{anyhow, Context};
use std::time::Duration;

/// What the server told us before the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServerFacts {
    /// Models listed at /v1/models.
    pub models: Vec<String>,
    /// The /version body, if the server has one (vLLM and SGLang do).
    pub version: Option<serde_json::Value>,
    /// Whether `stream_options.continuous_usage_stats` was accepted.
    pub continuous_usage: bool,
}

fn http(base_url: &str, api_key: Option<&str>) -> anyhow::Result<reqwest::Client> {
    http_with_headers(base_url, api_key, &[])
}

/// [`http`] with `--header`'s extra headers on every request, so a gateway that wants a header
/// of its own answers the preflight as it answers the run.
fn http_with_headers(
    base_url: &str,
    api_key: Option<&str>,
    extra: &[(String, String)],
) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in extra {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| anyhow!("--header {k}: not a valid HTTP header name"))?;
        let mut value = reqwest::header::HeaderValue::from_str(v)
            .map_err(|_| anyhow!("--header {k}: the value has control characters"))?;
        value.set_sensitive(crate::config::is_sensitive_header(k));
        headers.insert(name, value);
    }
    if let Some(k) = api_key {
        let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}"))
            .map_err(|_| anyhow!("the API key is not a valid header value; check --api-key"))?;
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers);
    // As in the client: a proxy from the environment must not sit in front of a local server.
    if reqwest::Url::parse(base_url).is_ok_and(|u| crate::client::is_loopback(&u)) {
        b = b.no_proxy();
    }
    Ok(b.build()?)
}

/// List models and read `/version`. Unreachable server → an error naming the URL and the fix.
/// `extra`: `--header`'s headers, sent here too, so a gateway that wants its own auth header
/// answers the preflight as it answers the run.
pub async fn discover(
    base_url: &str,
    api_key: Option<&str>,
    extra: &[(String, String)],
) -> anyhow::Result<ServerFacts> {
    let client = http_with_headers(base_url, api_key, extra)?;
    let url = format!("{base_url}/v1/models");
    let resp = client.get(&url).send().await.map_err(|e| {
        anyhow!(
            "cannot reach the server at {base_url}: {} — is it running? check --base-url",
            root_cause(&e)
        )
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
    if let Ok(r) = client.get(format!("{base_url}/version")).send().await {
        if r.status().is_success() {
            facts.version = r.json().await.ok();
        }
    }
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

/// Send one tiny streamed request asking for per-chunk usage. `Ok(true)` if accepted,
/// `Ok(false)` if the server rejected the field (HTTP 400/422), an error if the server could
/// not serve a request at all (with its message).
pub async fn probe_continuous_usage(
    base_url: &str,
    endpoint: Endpoint,
    model: &str,
    api_key: Option<&str>,
) -> anyhow::Result<bool> {
    let client = http(base_url, api_key)?;
    let mut body = serde_json::json!({
        "model": model,
        "max_tokens": 2,
        "stream": true,
        "stream_options": {"include_usage": true, "continuous_usage_stats": true},
    });
    match endpoint {
        Endpoint::Completions => body["prompt"] = "Hello".into(),
        Endpoint::ChatCompletions => {
            body["messages"] = serde_json::json!([{"role": "user", "content": "Hello"}])
        }
    }
    let url = format!("{base_url}{}", endpoint.path());
    let resp = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| anyhow!("probe request to {url} failed: {}", root_cause(&e)))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(true);
    }
    if status == reqwest::StatusCode::BAD_REQUEST || status.as_u16() == 422 {
        return Ok(false);
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(anyhow!(
            "{url} answered 404 ({}) — check --endpoint and --model",
            crate::openai::error_message(text.as_bytes())
        ));
    }
    // Other statuses (5xx, 429) are the server's state, not a capability answer: measure anyway.
    Ok(false)
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
