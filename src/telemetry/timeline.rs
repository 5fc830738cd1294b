//! [`Timeline`]: everything a recorder sampled, serializable as `telemetry.json`.
//!
//! Memory is bounded per series: each keeps at most a fixed number of points. When a series
//! is full it drops every other point and from then on keeps every second reading (then every
//! fourth, …), so a long run keeps an evenly spaced, coarser picture of the whole run rather
//! than only its start or its end. `stride` says how many readings each kept point stands for.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::normalize::Series;
use super::summary::{summarize, summarize_with_order, TelemetrySummary};
use super::{Labels, TelemetrySource};

/// The `format` written into `telemetry.json`; bumped when the layout changes incompatibly.
pub const TIMELINE_FORMAT: u32 = 1;

/// What one device is, as a sampler saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// The device index as the source numbers it (`"0"`).
    pub index: String,
    /// `NVIDIA A10G`, when known.
    pub name: Option<String>,
    /// The driver version (`580.105.08`), when known.
    pub driver_version: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub source: TelemetrySource,
}

/// How one sampler fared over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplerReport {
    pub name: String,
    /// Readings that succeeded.
    pub ok: u64,
    /// Readings that failed (timeouts included); each was retried on the next tick.
    pub errors: u64,
    /// The most recent failure's message.
    pub last_error: Option<String>,
    /// Set when the source cannot exist here; the sampler was not asked again.
    pub unavailable: Option<String>,
    /// Readings with a `NaN`/`Inf` value, which JSON cannot carry: not stored.
    pub nonfinite_skipped: u64,
    /// Raw series not stored because the cap on raw series was reached.
    pub raw_series_dropped: u64,
    /// Counters the sampler could not read on some GPU (not supported, or a function an older
    /// driver lacks), each with the reason; the figures built on them are unavailable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters_unavailable: Vec<super::CounterUnavailable>,
}

/// One normalized series of one sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesTimeline {
    pub series: Series,
    pub source: TelemetrySource,
    /// The sampler that produced it.
    pub sampler: String,
    pub labels: Labels,
    /// Readings per kept point (1 until the series' cap forced thinning).
    pub stride: u64,
    /// `(ns since the run's epoch, value)`, in time order.
    pub points: Vec<(u64, f64)>,
}

/// One raw metric series of one sampler, under the server's own name and labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawTimeline {
    pub sampler: String,
    pub metric: String,
    pub labels: Labels,
    pub stride: u64,
    pub points: Vec<(u64, f64)>,
}

/// Everything sampled during one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub format: u32,
    /// The sampling interval asked for.
    pub interval_ms: u64,
    /// When sampling started and stopped, ns since the run's epoch.
    pub started_ns: u64,
    pub stopped_ns: u64,
    pub samplers: Vec<SamplerReport>,
    pub gpus: Vec<GpuInfo>,
    pub series: Vec<SeriesTimeline>,
    pub raw: Vec<RawTimeline>,
}

impl Timeline {
    /// A timeline with nothing in it, saying why (for runs where telemetry was not started).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Timeline {
            format: TIMELINE_FORMAT,
            interval_ms: 0,
            started_ns: 0,
            stopped_ns: 0,
            samplers: vec![SamplerReport {
                name: "telemetry".into(),
                unavailable: Some(reason.into()),
                ..SamplerReport::default()
            }],
            gpus: Vec::new(),
            series: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// The normalized series named `series`, from every sampler and source.
    pub fn series_of(&self, series: Series) -> impl Iterator<Item = &SeriesTimeline> {
        self.series.iter().filter(move |s| s.series == series)
    }

    /// Figures over `[start_ns, end_ns]` (the measured phase), see [`TelemetrySummary`].
    pub fn summarize(&self, start_ns: u64, end_ns: u64) -> TelemetrySummary {
        summarize(self, start_ns, end_ns)
    }

    /// [`Timeline::summarize`] with GPU sources tried in `order` only (see
    /// [`summarize_with_order`]).
    pub fn summarize_with_order(
        &self,
        start_ns: u64,
        end_ns: u64,
        order: &[TelemetrySource],
    ) -> TelemetrySummary {
        summarize_with_order(self, start_ns, end_ns, order)
    }

    /// Write as JSON (`telemetry.json` beside the run's results).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut w, self).map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut w)
    }

    /// Read a saved timeline.
    pub fn load(path: &Path) -> std::io::Result<Timeline> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is not a servebench telemetry timeline: {e}",
                    path.display()
                ),
            )
        })
    }
}

/// A bounded series buffer that thins itself evenly when full (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct SeriesBuf {
    points: Vec<(u64, f64)>,
    stride: u64,
    offered: u64,
    cap: usize,
}

impl SeriesBuf {
    /// `cap` is raised to 2, the least that thinning can work with.
    pub(crate) fn new(cap: usize) -> Self {
        SeriesBuf {
            points: Vec::new(),
            stride: 1,
            offered: 0,
            cap: cap.max(2),
        }
    }

    /// Offer the next reading; it is kept when its index is a multiple of the stride.
    pub(crate) fn push(&mut self, t_ns: u64, value: f64) {
        let index = self.offered;
        self.offered += 1;
        if index % self.stride != 0 {
            return;
        }
        if self.points.len() >= self.cap {
            // Kept points sit at indices 0, s, 2s, …: keeping every other one leaves 0, 2s, 4s, ….
            let mut position = 0usize;
            self.points.retain(|_| {
                let keep = position % 2 == 0;
                position += 1;
                keep
            });
            self.stride *= 2;
            if index % self.stride != 0 {
                return;
            }
        }
        self.points.push((t_ns, value));
    }

    pub(crate) fn into_parts(self) -> (u64, Vec<(u64, f64)>) {
        (self.stride, self.points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_full_series_thins_evenly_and_keeps_its_start() {
        let mut b = SeriesBuf::new(4);
        for i in 0..10u64 {
            b.push(i, i as f64);
        }
        let (stride, points) = b.into_parts();
        assert_eq!(stride, 4);
        assert_eq!(points, vec![(0, 0.0), (4, 4.0), (8, 8.0)]);
    }

    proptest! {
        #[test]
        fn thinning_is_bounded_ordered_and_evenly_strided(cap in 2usize..64, n in 0u64..2000) {
            let mut b = SeriesBuf::new(cap);
            for i in 0..n {
                b.push(i * 10, i as f64);
            }
            let (stride, points) = b.into_parts();
            prop_assert!(points.len() <= cap);
            prop_assert!(stride.is_power_of_two());
            if n > 0 {
                prop_assert_eq!(points[0], (0, 0.0));
            }
            for (k, &(t, v)) in points.iter().enumerate() {
                prop_assert_eq!(t, k as u64 * stride * 10);
                prop_assert_eq!(v, (k as u64 * stride) as f64);
            }
            // Nothing older than one stride is missing at the end.
            if let Some(&(last, _)) = points.last() {
                prop_assert!(n == 0 || (n - 1) * 10 - last < stride * 10);
            }
        }
    }

    #[test]
    fn a_timeline_survives_a_json_round_trip() {
        let t = Timeline {
            format: TIMELINE_FORMAT,
            interval_ms: 500,
            started_ns: 1,
            stopped_ns: 9,
            samplers: vec![SamplerReport {
                name: "nvml".into(),
                unavailable: Some("x".into()),
                ..SamplerReport::default()
            }],
            gpus: vec![GpuInfo {
                index: "0".into(),
                name: Some("NVIDIA A10G".into()),
                driver_version: None,
                memory_total_bytes: Some(24 << 30),
                source: TelemetrySource::Nvml,
            }],
            series: vec![SeriesTimeline {
                series: Series::GpuUtilPct,
                source: TelemetrySource::Nvml,
                sampler: "nvml".into(),
                labels: Labels::from([("gpu".into(), "0".into())]),
                stride: 1,
                points: vec![(2, 50.0), (3, 75.5)],
            }],
            raw: vec![RawTimeline {
                sampler: "engine".into(),
                metric: "vllm:num_requests_running".into(),
                labels: Labels::new(),
                stride: 1,
                points: vec![(2, 1.0)],
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telemetry.json");
        t.save(&path).unwrap();
        assert_eq!(Timeline::load(&path).unwrap(), t);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["series"][0]["series"], "gpu_util_pct");
        assert_eq!(json["series"][0]["source"], "nvml");
        assert_eq!(json["series"][0]["points"][1], serde_json::json!([3, 75.5]));
    }
}
