//! Telemetry: GPU and server metrics sampled on an interval, on the same timeline as the requests.
//!
//! Every sample is timestamped in nanoseconds since the run's epoch (the one `Instant` that also
//! anchors [`crate::record::RequestRecord`]), so a report can lay GPU utilization, KV-cache usage
//! and the engine's queue next to TTFT and throughput.
//!
//! The parts, in the order data flows:
//! - [`prometheus`]: a pure parser of the Prometheus text exposition format;
//! - [`names`]: the metric names real engines, DCGM and servebench's simulator emit, in one place;
//! - [`normalize`]: maps those metrics onto a few normalized [`Series`] (`running`, `kv_usage`,
//!   `gpu_util_pct`, …), keeping counter state for rates such as the prefix-cache hit rate;
//! - samplers behind the [`Sampler`] trait: [`PrometheusSampler`] (an engine's `/metrics`, a DCGM
//!   exporter, the simulator) and [`NvmlSampler`] (NVML loaded at run time);
//! - [`Recorder`]: runs the samplers on an interval, each in its own task, and returns a
//!   [`Timeline`] that is saved as `telemetry.json` and summarized over the measured window.
//!
//! Telemetry never aborts a run: a sampler that fails is counted and retried, a sampler that is
//! unavailable (no NVIDIA driver) says why once and is left alone.

pub mod names;
pub mod normalize;
pub mod nvml;
pub mod prometheus;
pub mod recorder;
pub mod scrape;
pub mod summary;
pub mod timeline;

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use normalize::{CounterState, Series};
pub use nvml::{CounterUnavailable, NvmlSampler};
pub use recorder::{Recorder, RecorderConfig};
pub use scrape::PrometheusSampler;
pub use summary::TelemetrySummary;
pub use timeline::{GpuInfo, RawTimeline, SamplerReport, SeriesTimeline, Timeline};

/// Label name → value. Sorted, so equal label sets compare and serialize equally.
pub type Labels = BTreeMap<String, String>;

/// Where a number came from. Samples carry one of the first four; a summary says
/// [`TelemetrySource::Unavailable`] when nothing was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelemetrySource {
    /// NVIDIA's management library, read in-process.
    Nvml,
    /// An NVIDIA DCGM exporter's `/metrics`.
    Dcgm,
    /// The serving engine's own `/metrics` (vLLM, SGLang).
    Engine,
    /// servebench's simulator: modelled, not measured.
    Simulated,
    /// Nothing was sampled (see the summary's `unavailable_reason`).
    Unavailable,
}

impl TelemetrySource {
    /// The stable lowercase label used in JSON and reports (`nvml`, `dcgm`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TelemetrySource::Nvml => "nvml",
            TelemetrySource::Dcgm => "dcgm",
            TelemetrySource::Engine => "engine",
            TelemetrySource::Simulated => "simulated",
            TelemetrySource::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for TelemetrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one reading is: a point of a normalized series, or a metric kept as the server named it.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A normalized series (`gpu_util_pct`, `running`, …) and where its number came from.
    Normalized {
        series: Series,
        source: TelemetrySource,
    },
    /// A scraped sample under its own name (`vllm:num_requests_running`,
    /// `vllm:time_to_first_token_seconds_bucket`, …).
    Raw(String),
}

/// One reading from a sampler, not yet timestamped (the recorder does that).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: Metric,
    /// For normalized GPU series only `gpu` (the device index); engine series are aggregated
    /// over their label sets and carry none; raw samples keep the server's labels.
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    /// A normalized reading.
    pub fn normalized(series: Series, source: TelemetrySource, labels: Labels, value: f64) -> Self {
        Sample {
            metric: Metric::Normalized { series, source },
            labels,
            value,
        }
    }

    /// A raw reading under the server's own metric name.
    pub fn raw(name: impl Into<String>, labels: Labels, value: f64) -> Self {
        Sample {
            metric: Metric::Raw(name.into()),
            labels,
            value,
        }
    }
}

/// Why a sampler produced nothing this time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TelemetryError {
    /// The source cannot exist on this machine (no NVIDIA driver, no NVML symbol). Permanent:
    /// the recorder records the reason once and stops asking.
    #[error("{0}")]
    Unavailable(String),
    /// The scrape did not complete (connection refused, timeout, body cut off).
    #[error("scraping {url} failed: {reason}; check that the server is up and serves Prometheus text there")]
    Scrape { url: String, reason: String },
    /// The server answered with a non-success status.
    #[error(
        "scraping {url} got HTTP {status}; check the metrics URL (engines serve it at /metrics)"
    )]
    HttpStatus { url: String, status: u16 },
    /// An NVML call returned an error code.
    #[error("nvml {call} failed: {message} (code {code})")]
    Nvml {
        call: &'static str,
        code: i32,
        message: String,
    },
    /// The sampler took longer than the recorder's per-sample timeout.
    #[error("sampler took longer than {timeout_ms} ms; it is retried on the next tick")]
    Timeout { timeout_ms: u64 },
    /// A sampler broke in a way that is not one of the above.
    #[error("{0}")]
    Other(String),
}

/// A source of readings the [`Recorder`] polls on its interval.
///
/// `sample` returns a boxed future so samplers of different kinds share one recorder (and tests
/// can pass fakes). A failure is a value; a sampler must never panic on what a server sends.
pub trait Sampler: Send {
    /// A short stable name (`nvml`, `engine`, `dcgm`), used in the timeline and error counts.
    fn name(&self) -> &str;

    /// Take one reading.
    fn sample(&mut self) -> BoxFuture<'_, Result<Vec<Sample>, TelemetryError>>;

    /// The GPUs this sampler has seen (name, driver, memory), for the run's fingerprint.
    fn gpus(&self) -> Vec<GpuInfo> {
        Vec::new()
    }

    /// Counters this sampler found it cannot read on some GPU, each with the reason (recorded
    /// once; the sampler stops asking for them). Those figures are then unavailable, not zero.
    fn unavailable_counters(&self) -> Vec<CounterUnavailable> {
        Vec::new()
    }
}
