//! [`PrometheusSampler`]: scrape a `/metrics` endpoint (an engine, a DCGM exporter, the
//! simulator) and turn it into normalized and raw samples.
//!
//! A server without metrics (`transformers serve`, many gateways) answers 404 (or 405, 501)
//! there. When that is the answer before any scrape has succeeded, the sampler reports itself
//! [`TelemetryError::Unavailable`] once and the recorder stops asking, instead of counting an
//! error every interval for the whole run. The same status after successful scrapes is a
//! failure of a server that did have metrics: an error sample, retried.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::normalize::{gpus_from_dcgm, normalize, CounterState};
use super::prometheus::{parse, Exposition};
use super::{GpuInfo, Sample, Sampler, TelemetryError};

/// Scrapes shorter than the default interval, so a slow server skips a tick rather than piling up.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// A `/metrics` body larger than this is cut off and reported: a real engine's is 10–200 KiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Scrapes Prometheus text from one URL.
pub struct PrometheusSampler {
    name: String,
    url: String,
    client: reqwest::Client,
    state: CounterState,
    keep_raw: bool,
    gpus: Vec<GpuInfo>,
    /// Some scrape has succeeded: from then on a 404 is an error, not a missing endpoint.
    scraped_ok: bool,
}

/// Statuses that say the URL has no metrics at all (rather than that the server failed).
const NO_METRICS_STATUSES: [u16; 3] = [404, 405, 501];

impl PrometheusSampler {
    /// A sampler named `name` (`engine`, `dcgm`, …) for `url`. A URL without a path
    /// (`http://127.0.0.1:8000`) gets `/metrics`; any other path is used as given. Loopback
    /// URLs bypass any configured proxy.
    pub fn new(name: impl Into<String>, url: &str) -> Result<Self, TelemetryError> {
        Self::with_timeout(name, url, DEFAULT_SCRAPE_TIMEOUT)
    }

    /// [`PrometheusSampler::new`] with another per-scrape timeout.
    pub fn with_timeout(
        name: impl Into<String>,
        url: &str,
        timeout: Duration,
    ) -> Result<Self, TelemetryError> {
        let url = metrics_url(url)?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        if crate::client::is_loopback(&url) {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| {
            TelemetryError::Other(format!("cannot build an HTTP client for {url}: {e}"))
        })?;
        Ok(PrometheusSampler {
            name: name.into(),
            url: url.to_string(),
            client,
            state: CounterState::default(),
            keep_raw: true,
            gpus: Vec::new(),
            scraped_ok: false,
        })
    }

    /// Keep (default) or drop the raw samples; normalized series are always produced.
    pub fn keep_raw(mut self, keep: bool) -> Self {
        self.keep_raw = keep;
        self
    }

    /// The URL scraped.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn fetch(&self) -> Result<String, TelemetryError> {
        let scrape_err = |reason: String| TelemetryError::Scrape {
            url: self.url.clone(),
            reason,
        };
        let mut resp = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "text/plain;version=0.0.4")
            .send()
            .await
            .map_err(|e| scrape_err(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(TelemetryError::HttpStatus {
                url: self.url.clone(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| scrape_err(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(scrape_err(format!(
                    "body larger than {MAX_BODY_BYTES} bytes; is this a metrics endpoint?"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Normalized samples (and raw ones when kept) from one exposition.
    pub fn samples_from(&mut self, exp: &Exposition) -> Vec<Sample> {
        let mut out = normalize(exp, &mut self.state);
        let dcgm = gpus_from_dcgm(exp);
        if !dcgm.is_empty() {
            self.gpus = dcgm;
        }
        if self.keep_raw {
            out.extend(
                exp.samples
                    .iter()
                    .map(|s| Sample::raw(s.name.clone(), s.labels.clone(), s.value)),
            );
        }
        out
    }
}

impl Sampler for PrometheusSampler {
    fn name(&self) -> &str {
        &self.name
    }

    fn sample(&mut self) -> BoxFuture<'_, Result<Vec<Sample>, TelemetryError>> {
        Box::pin(async move {
            let text = match self.fetch().await {
                Ok(text) => text,
                Err(TelemetryError::HttpStatus { url, status })
                    if !self.scraped_ok && NO_METRICS_STATUSES.contains(&status) =>
                {
                    return Err(TelemetryError::Unavailable(format!(
                        "{url} answered HTTP {status}: this server serves no Prometheus metrics \
                         there, so {} telemetry is off for this run",
                        self.name
                    )));
                }
                Err(e) => return Err(e),
            };
            self.scraped_ok = true;
            let exp = parse(&text);
            if exp.samples.is_empty() && !exp.issues.is_empty() {
                return Err(TelemetryError::Scrape {
                    url: self.url.clone(),
                    reason: format!(
                        "no readable sample ({} unreadable lines, first: line {}: {})",
                        exp.issues.len(),
                        exp.issues[0].line,
                        exp.issues[0].reason
                    ),
                });
            }
            Ok(self.samples_from(&exp))
        })
    }

    fn gpus(&self) -> Vec<GpuInfo> {
        self.gpus.clone()
    }
}

fn metrics_url(url: &str) -> Result<reqwest::Url, TelemetryError> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| {
        TelemetryError::Other(format!(
            "metrics URL {url:?} is not a URL ({e}); give one like http://127.0.0.1:8000/metrics"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TelemetryError::Other(format!(
            "metrics URL {url:?} must be http or https"
        )));
    }
    if parsed.path().is_empty() || parsed.path() == "/" {
        parsed.set_path("/metrics");
    }
    Ok(parsed)
}

/// The error and its sources on one line (reqwest's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_base_url_gets_the_metrics_path() {
        assert_eq!(
            metrics_url("http://127.0.0.1:8000").unwrap().as_str(),
            "http://127.0.0.1:8000/metrics"
        );
        assert_eq!(
            metrics_url("http://h:9400/custom").unwrap().as_str(),
            "http://h:9400/custom"
        );
        assert!(metrics_url("127.0.0.1:8000").is_err());
        assert!(metrics_url("ftp://h/metrics").is_err());
    }

    #[test]
    fn loopback_is_recognized() {
        for (u, want) in [
            ("http://127.0.0.1:1/metrics", true),
            ("http://localhost:1/", true),
            ("http://[::1]:1/", true),
            ("http://10.0.0.2:1/", false),
            ("http://example.com/", false),
        ] {
            assert_eq!(
                crate::client::is_loopback(&reqwest::Url::parse(u).unwrap()),
                want,
                "{u}"
            );
        }
    }
}
