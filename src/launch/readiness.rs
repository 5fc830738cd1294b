//! Readiness as a value: which paths must answer 2xx, within what time, polled how often.

use super::{LaunchError, Liveness, LogTail};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// A server is ready when each path, in order, has answered a 2xx (vLLM and SGLang: `/health`
/// answers once the engine is up, `/v1/models` once the API is served). A path that answers
/// 404 and is not the last is taken as "this server has no such endpoint" and skipped, so an
/// OpenAI-compatible server without `/health` still becomes ready through `/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    #[serde(rename = "timeout_s", with = "secs_f64")]
    pub timeout: Duration,
    #[serde(rename = "interval_ms", with = "millis", default = "default_interval")]
    pub interval: Duration,
}

fn default_paths() -> Vec<String> {
    vec!["/health".into(), "/v1/models".into()]
}

fn default_interval() -> Duration {
    Duration::from_millis(250)
}

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness {
            paths: default_paths(),
            timeout: Duration::from_secs(60),
            interval: default_interval(),
        }
    }
}

/// Why waiting for readiness stopped without success.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ReadyFailure {
    Exited(Liveness),
    Timeout { last: String },
}

impl ReadyFailure {
    pub(crate) fn into_error(
        self,
        name: &str,
        base_url: &str,
        readiness: &Readiness,
        tail: LogTail,
    ) -> LaunchError {
        match self {
            ReadyFailure::Exited(l) => {
                let code = match &l {
                    Liveness::Exited { code, .. } => *code,
                    _ => None,
                };
                LaunchError::ExitedEarly {
                    name: name.to_string(),
                    status: l.to_string(),
                    code,
                    tail: Box::new(tail),
                }
            }
            ReadyFailure::Timeout { last } => LaunchError::NotReady {
                name: name.to_string(),
                url: base_url.to_string(),
                timeout: readiness.timeout,
                last,
                tail: Box::new(tail),
            },
        }
    }
}

impl Readiness {
    pub(crate) fn validate(&self, name: &str) -> Result<(), LaunchError> {
        let problem = if self.paths.is_empty() {
            Some("readiness.paths is empty; give at least one, such as \"/v1/models\"".to_string())
        } else if let Some(p) = self.paths.iter().find(|p| !p.starts_with('/')) {
            Some(format!(
                "readiness path `{p}` does not start with `/`; write it as \"/{p}\""
            ))
        } else if self.timeout.is_zero() {
            Some("readiness.timeout_s is 0; give the startup budget in seconds".into())
        } else if self.interval.is_zero() {
            Some("readiness.interval_ms is 0; give a polling interval such as 250".into())
        } else {
            None
        };
        match problem {
            Some(problem) => Err(LaunchError::Config {
                name: name.to_string(),
                problem,
            }),
            None => Ok(()),
        }
    }

    /// Polls until every path has answered 2xx, the server exits (`probe` says so), or the
    /// timeout passes. `probe` runs before each poll.
    pub(crate) async fn wait<F, Fut>(
        &self,
        base_url: &str,
        mut probe: F,
    ) -> Result<(), ReadyFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Liveness>,
    {
        let deadline = Instant::now() + self.timeout;
        let client = match loopback_client() {
            Ok(c) => c,
            Err(e) => {
                return Err(ReadyFailure::Timeout {
                    last: format!("cannot build an HTTP client: {e}"),
                })
            }
        };
        let mut index = 0;
        loop {
            let live = probe().await;
            if let Liveness::Exited { .. } = live {
                return Err(ReadyFailure::Exited(live));
            }
            let Some(path) = self.paths.get(index) else {
                return Ok(());
            };
            let url = format!("{base_url}{path}");
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(100), Duration::from_secs(5));
            let last = match client.get(&url).timeout(budget).send().await {
                Ok(resp) if resp.status().is_success() => {
                    index += 1;
                    if index == self.paths.len() {
                        return Ok(());
                    }
                    continue;
                }
                Ok(resp)
                    if resp.status() == reqwest::StatusCode::NOT_FOUND
                        && index + 1 < self.paths.len() =>
                {
                    index += 1;
                    continue;
                }
                Ok(resp) => format!("GET {path}: HTTP {}", resp.status()),
                Err(e) => format!("GET {path}: {}", innermost(&e)),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadyFailure::Timeout { last });
            }
            tokio::time::sleep(self.interval.min(left)).await;
        }
    }
}

/// A client that never goes through a proxy: readiness targets are on this machine (a proxy
/// from the environment would answer for a server that is not there).
pub(crate) fn loopback_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .build()
}

/// The most specific cause ("Connection refused (os error 111)") rather than reqwest's generic
/// "error sending request".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

mod secs_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!(
                "{secs} is not a duration in seconds; give a positive number"
            ))
        })
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_defaults_and_unknown_keys() {
        let r: Readiness = toml::from_str("timeout_s = 2.5").unwrap();
        assert_eq!(r.timeout, Duration::from_millis(2500));
        assert_eq!(r.paths, vec!["/health", "/v1/models"]);
        assert_eq!(r.interval, Duration::from_millis(250));
        assert!(toml::from_str::<Readiness>("timeout_s = 1\ntimeout = 3").is_err());
        assert!(toml::from_str::<Readiness>("timeout_s = -1").is_err());
    }

    #[test]
    fn validation_names_the_fix() {
        let r = Readiness {
            paths: vec!["health".into()],
            ..Readiness::default()
        };
        let e = r.validate("t").unwrap_err().to_string();
        assert!(e.contains("\"/health\""), "{e}");
    }

    #[tokio::test]
    async fn nothing_listening_times_out_with_the_cause() {
        // Bind and drop to get a port where nothing listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Readiness {
            timeout: Duration::from_millis(300),
            interval: Duration::from_millis(50),
            ..Readiness::default()
        };
        let got = r
            .wait(&format!("http://127.0.0.1:{port}"), || async {
                Liveness::Alive
            })
            .await;
        match got {
            Err(ReadyFailure::Timeout { last }) => {
                assert!(last.starts_with("GET /health"), "{last}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    fn quick() -> Readiness {
        Readiness {
            timeout: Duration::from_millis(400),
            interval: Duration::from_millis(20),
            ..Readiness::default()
        }
    }

    #[tokio::test]
    async fn a_server_without_health_is_ready_through_models() {
        use axum::routing::get;
        let url = serve(axum::Router::new().route("/v1/models", get(|| async { "{}" }))).await;
        assert_eq!(
            quick().wait(&url, || async { Liveness::Alive }).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_loading_server_is_not_ready() {
        use axum::http::StatusCode;
        use axum::routing::get;
        // llama.cpp answers 503 on /health while it loads the model.
        let router = axum::Router::new()
            .route("/health", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .route("/v1/models", get(|| async { "{}" }));
        let url = serve(router).await;
        let got = quick().wait(&url, || async { Liveness::Alive }).await;
        match got {
            Err(ReadyFailure::Timeout { last }) => assert!(last.contains("HTTP 503"), "{last}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_exit_ends_the_wait_at_once() {
        let r = Readiness {
            timeout: Duration::from_secs(600),
            ..Readiness::default()
        };
        let gone = Liveness::Exited {
            code: Some(3),
            detail: "exited with code 3".into(),
        };
        let got = r
            .wait("http://127.0.0.1:9", || {
                let g = gone.clone();
                async move { g }
            })
            .await;
        assert_eq!(got, Err(ReadyFailure::Exited(gone)));
    }
}
