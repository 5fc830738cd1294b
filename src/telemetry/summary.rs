//! [`TelemetrySummary`]: a timeline's figures over the measured phase (pure).
//!
//! Rules, stated once:
//! - GPU figures come from one source, the best present in the window: NVML, then DCGM, then
//!   the simulator. Sources are never mixed.
//! - Gauges count only the readings taken inside `[start, end]`. A window with no reading in
//!   it has no figure (`None`, with the reason), never one borrowed from outside.
//! - Utilization mean and max are over every reading of every device in the window; memory is
//!   the largest reading of any one device, in GB (10^9 bytes).
//! - The prefix-cache hit rate comes from the engine's counters read at the samples bracketing
//!   the window (the last at or before `start`, the first at or after `end`): hits over
//!   queries of the whole phase. Where an engine only has a gauge, its mean in the window.

use serde::{Deserialize, Serialize};

use super::normalize::Series;
use super::timeline::{SeriesTimeline, Timeline};
use super::TelemetrySource;

/// Telemetry figures over one window. `None` means not measured, never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySummary {
    pub gpu_util_mean_pct: Option<f64>,
    pub gpu_util_max_pct: Option<f64>,
    /// Largest memory in use on any one GPU, GB (10^9 bytes).
    pub gpu_mem_max_gb: Option<f64>,
    /// Largest KV-cache usage, 0–1.
    pub kv_usage_max: Option<f64>,
    /// Prefix-cache hit rate over the window, 0–1.
    pub prefix_cache_hit_rate: Option<f64>,
    pub running_max: Option<f64>,
    pub waiting_max: Option<f64>,
    /// Where the GPU figures came from; `engine` when only engine gauges were read;
    /// `unavailable` when nothing was.
    pub source: TelemetrySource,
    /// Why the GPU figures are missing, when they are.
    pub unavailable_reason: Option<String>,
    /// Why the engine's own metrics (`running`, `waiting`, KV cache, prefix cache) are
    /// missing, when its sampler turned itself off: e.g. the server answered 404 at `/metrics`
    /// on the first scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_unavailable_reason: Option<String>,
    /// GPU utilization readings behind the mean (all devices).
    pub gpu_samples: u64,
}

/// The order GPU sources are preferred in by [`summarize`]: measured before modelled.
pub const GPU_SOURCE_ORDER: [TelemetrySource; 3] = [
    TelemetrySource::Nvml,
    TelemetrySource::Dcgm,
    TelemetrySource::Simulated,
];

/// See the module docs for the rules; GPU sources in [`GPU_SOURCE_ORDER`].
pub fn summarize(t: &Timeline, start_ns: u64, end_ns: u64) -> TelemetrySummary {
    summarize_with_order(t, start_ns, end_ns, &GPU_SOURCE_ORDER)
}

/// [`summarize`] with GPU sources tried in `order`, and only those: a simulated target run on
/// a GPU machine passes `[Simulated]` so the idle real GPU does not stand in for the model.
pub fn summarize_with_order(
    t: &Timeline,
    start_ns: u64,
    end_ns: u64,
    order: &[TelemetrySource],
) -> TelemetrySummary {
    let inside = |p: &&(u64, f64)| p.0 >= start_ns && p.0 <= end_ns;
    let window_values = |series: Series, source: TelemetrySource| -> Vec<f64> {
        t.series
            .iter()
            .filter(|s| s.series == series && s.source == source)
            .flat_map(|s| s.points.iter().filter(inside).map(|p| p.1))
            .collect()
    };

    let gpu_source = order.iter().copied().find(|&src| {
        !window_values(Series::GpuUtilPct, src).is_empty()
            || !window_values(Series::GpuMemUsedBytes, src).is_empty()
    });

    let (util_mean, util_max, mem_max, gpu_samples) = match gpu_source {
        Some(src) => {
            let util = window_values(Series::GpuUtilPct, src);
            let mem = window_values(Series::GpuMemUsedBytes, src);
            (
                mean(&util),
                max(&util),
                max(&mem).map(|b| b / 1e9),
                util.len() as u64,
            )
        }
        None => (None, None, None, 0),
    };

    let engine = TelemetrySource::Engine;
    let running_max = max(&window_values(Series::Running, engine));
    let waiting_max = max(&window_values(Series::Waiting, engine));
    let kv_usage_max = max(&window_values(Series::KvUsage, engine));
    let prefix_cache_hit_rate = counter_hit_rate(t, start_ns, end_ns)
        .or_else(|| mean(&window_values(Series::PrefixCacheHitRate, engine)));
    let engine_seen = [
        running_max,
        waiting_max,
        kv_usage_max,
        prefix_cache_hit_rate,
    ]
    .iter()
    .any(Option::is_some);

    let source = match gpu_source {
        Some(src) => src,
        None if engine_seen => TelemetrySource::Engine,
        None => TelemetrySource::Unavailable,
    };
    let unavailable_reason = gpu_source
        .is_none()
        .then(|| gpu_unavailable_reason(t, start_ns, end_ns));
    let engine_unavailable_reason = t
        .samplers
        .iter()
        .find(|s| s.name == "engine")
        .and_then(|s| s.unavailable.clone());

    TelemetrySummary {
        gpu_util_mean_pct: util_mean,
        gpu_util_max_pct: util_max,
        gpu_mem_max_gb: mem_max,
        kv_usage_max,
        prefix_cache_hit_rate,
        running_max,
        waiting_max,
        source,
        unavailable_reason,
        engine_unavailable_reason,
        gpu_samples,
    }
}

/// Hits over queries between the readings bracketing the window, per sampler; the first
/// sampler with a positive query count wins.
fn counter_hit_rate(t: &Timeline, start_ns: u64, end_ns: u64) -> Option<f64> {
    let find = |sampler: &str, series: Series| -> Option<&SeriesTimeline> {
        t.series
            .iter()
            .find(|s| s.sampler == sampler && s.series == series)
    };
    t.series
        .iter()
        .filter(|s| s.series == Series::PrefixCacheQueriesTotal)
        .find_map(|queries| {
            let hits = find(&queries.sampler, Series::PrefixCacheHitsTotal)?;
            let (q0, q1) = bracket(&queries.points, start_ns, end_ns)?;
            let (h0, h1) = bracket(&hits.points, start_ns, end_ns)?;
            let (dq, dh) = (q1 - q0, h1 - h0);
            (dq > 0.0 && dh >= 0.0 && dh <= dq).then(|| dh / dq)
        })
}

/// Counter values at the start and end of a window: the last reading at or before `start`
/// (else the first inside), and the first at or after `end` (else the last inside).
fn bracket(points: &[(u64, f64)], start_ns: u64, end_ns: u64) -> Option<(f64, f64)> {
    let before = points.iter().rev().find(|p| p.0 <= start_ns);
    let first_inside = points.iter().find(|p| p.0 >= start_ns && p.0 <= end_ns);
    let after = points.iter().find(|p| p.0 >= end_ns);
    let last_inside = points
        .iter()
        .rev()
        .find(|p| p.0 >= start_ns && p.0 <= end_ns);
    let a = before.or(first_inside)?;
    let b = after.or(last_inside)?;
    (b.0 > a.0).then_some((a.1, b.1))
}

fn gpu_unavailable_reason(t: &Timeline, start_ns: u64, end_ns: u64) -> String {
    let unavailable: Vec<String> = t
        .samplers
        .iter()
        .filter_map(|s| Some(format!("{}: {}", s.name, s.unavailable.as_ref()?)))
        .collect();
    if !unavailable.is_empty() {
        return unavailable.join("; ");
    }
    if t.series.iter().any(|s| s.series.is_gpu()) {
        return format!(
            "no GPU reading fell inside the measured window ({:.0} ms long; sampling every {} ms)",
            end_ns.saturating_sub(start_ns) as f64 / 1e6,
            t.interval_ms
        );
    }
    let failing: Vec<String> = t
        .samplers
        .iter()
        .filter(|s| s.ok == 0)
        .filter_map(|s| Some(format!("{}: {}", s.name, s.last_error.as_ref()?)))
        .collect();
    if !failing.is_empty() {
        return format!("no GPU reading succeeded ({})", failing.join("; "));
    }
    "no GPU telemetry source was sampled (no NVML, DCGM exporter or simulator gauges)".into()
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::timeline::{SamplerReport, TIMELINE_FORMAT};
    use crate::telemetry::Labels;

    fn series(
        series: Series,
        source: TelemetrySource,
        gpu: Option<&str>,
        points: &[(u64, f64)],
    ) -> SeriesTimeline {
        SeriesTimeline {
            series,
            source,
            sampler: match source {
                TelemetrySource::Nvml => "nvml".into(),
                _ => "engine".into(),
            },
            labels: gpu
                .map(|g| Labels::from([("gpu".into(), g.into())]))
                .unwrap_or_default(),
            stride: 1,
            points: points.to_vec(),
        }
    }

    fn timeline(series: Vec<SeriesTimeline>, samplers: Vec<SamplerReport>) -> Timeline {
        Timeline {
            format: TIMELINE_FORMAT,
            interval_ms: 500,
            started_ns: 0,
            stopped_ns: 100,
            samplers,
            gpus: vec![],
            series,
            raw: vec![],
        }
    }

    use TelemetrySource::*;

    #[test]
    fn gauges_count_only_readings_inside_the_window() {
        let t = timeline(
            vec![
                series(
                    Series::GpuUtilPct,
                    Nvml,
                    Some("0"),
                    &[(5, 100.0), (10, 20.0), (20, 40.0), (30, 60.0), (50, 100.0)],
                ),
                series(Series::GpuUtilPct, Nvml, Some("1"), &[(20, 80.0)]),
                series(
                    Series::GpuMemUsedBytes,
                    Nvml,
                    Some("0"),
                    &[(10, 20e9), (30, 21e9), (50, 23e9)],
                ),
                series(Series::GpuMemUsedBytes, Nvml, Some("1"), &[(20, 22e9)]),
                series(
                    Series::Running,
                    Engine,
                    None,
                    &[(10, 3.0), (20, 8.0), (60, 9.0)],
                ),
                series(Series::KvUsage, Engine, None, &[(10, 0.25), (30, 0.5)]),
            ],
            vec![],
        );
        let s = t.summarize(10, 30);
        assert_eq!(s.gpu_util_mean_pct, Some(50.0)); // 20, 40, 60, 80
        assert_eq!(s.gpu_util_max_pct, Some(80.0));
        assert_eq!(s.gpu_mem_max_gb, Some(22.0));
        assert_eq!(s.gpu_samples, 4);
        assert_eq!(s.running_max, Some(8.0));
        assert_eq!(s.kv_usage_max, Some(0.5));
        assert_eq!(s.waiting_max, None);
        assert_eq!(s.prefix_cache_hit_rate, None);
        assert_eq!(s.source, Nvml);
        assert_eq!(s.unavailable_reason, None);
    }

    #[test]
    fn nvml_wins_over_the_simulator_and_sources_are_not_mixed() {
        let t = timeline(
            vec![
                series(Series::GpuUtilPct, Simulated, Some("0"), &[(10, 99.0)]),
                series(Series::GpuUtilPct, Nvml, Some("0"), &[(10, 10.0)]),
            ],
            vec![],
        );
        let s = t.summarize(0, 100);
        assert_eq!((s.source, s.gpu_util_max_pct), (Nvml, Some(10.0)));
        let t = timeline(
            vec![series(Series::GpuUtilPct, Dcgm, Some("0"), &[(10, 30.0)])],
            vec![],
        );
        assert_eq!(t.summarize(0, 100).source, Dcgm);
    }

    #[test]
    fn a_simulated_target_can_ignore_the_real_gpu() {
        let t = timeline(
            vec![
                series(Series::GpuUtilPct, Nvml, Some("0"), &[(10, 0.0)]),
                series(Series::GpuUtilPct, Simulated, Some("0"), &[(10, 70.0)]),
            ],
            vec![],
        );
        let s = summarize_with_order(&t, 0, 100, &[Simulated]);
        assert_eq!((s.source, s.gpu_util_mean_pct), (Simulated, Some(70.0)));
    }

    #[test]
    fn prefix_hit_rate_comes_from_counters_bracketing_the_window() {
        let t = timeline(
            vec![
                // Warmup before 10: 100 queries, 0 hits. Measured 10..30: 300 queries, 150 hits.
                series(
                    Series::PrefixCacheQueriesTotal,
                    Engine,
                    None,
                    &[(0, 0.0), (8, 100.0), (20, 250.0), (32, 400.0)],
                ),
                series(
                    Series::PrefixCacheHitsTotal,
                    Engine,
                    None,
                    &[(0, 0.0), (8, 0.0), (20, 50.0), (32, 150.0)],
                ),
                // The per-interval rate series is ignored when counters exist.
                series(Series::PrefixCacheHitRate, Engine, None, &[(20, 0.9)]),
            ],
            vec![],
        );
        let s = t.summarize(10, 30);
        assert_eq!(s.prefix_cache_hit_rate, Some(0.5));
        assert_eq!(s.source, Engine);
        assert!(s.unavailable_reason.is_some());
    }

    #[test]
    fn a_gauge_hit_rate_is_averaged_when_there_are_no_counters() {
        let t = timeline(
            vec![series(
                Series::PrefixCacheHitRate,
                Engine,
                None,
                &[(10, 0.2), (20, 0.4), (90, 1.0)],
            )],
            vec![],
        );
        let got = t.summarize(0, 50).prefix_cache_hit_rate.unwrap();
        assert!((got - 0.3).abs() < 1e-12, "{got}");
    }

    #[test]
    fn nothing_sampled_is_unavailable_with_the_samplers_reason_not_zero() {
        let t = timeline(
            vec![],
            vec![SamplerReport {
                name: "nvml".into(),
                unavailable: Some(
                    "libnvidia-ml.so.1 not found: no NVIDIA driver on this machine".into(),
                ),
                ..SamplerReport::default()
            }],
        );
        let s = t.summarize(0, 100);
        assert_eq!(s.source, Unavailable);
        assert_eq!(s.gpu_util_mean_pct, None);
        assert_eq!(s.gpu_mem_max_gb, None);
        assert_eq!(s.gpu_samples, 0);
        assert_eq!(
            s.unavailable_reason.as_deref(),
            Some("nvml: libnvidia-ml.so.1 not found: no NVIDIA driver on this machine")
        );
    }

    #[test]
    fn a_window_between_readings_says_so() {
        let t = timeline(
            vec![series(
                Series::GpuUtilPct,
                Nvml,
                Some("0"),
                &[(0, 10.0), (500_000_000, 20.0)],
            )],
            vec![],
        );
        let s = t.summarize(100_000_000, 300_000_000);
        assert_eq!(s.gpu_util_mean_pct, None);
        let reason = s.unavailable_reason.unwrap();
        assert!(reason.contains("no GPU reading fell inside"), "{reason}");
        assert!(reason.contains("200 ms long"), "{reason}");
    }

    #[test]
    fn failing_samplers_are_named_in_the_reason() {
        let t = timeline(
            vec![],
            vec![SamplerReport {
                name: "dcgm".into(),
                errors: 3,
                last_error: Some("scraping http://127.0.0.1:9400/metrics failed".into()),
                ..SamplerReport::default()
            }],
        );
        let reason = t.summarize(0, 10).unavailable_reason.unwrap();
        assert!(
            reason.starts_with("no GPU reading succeeded (dcgm: scraping"),
            "{reason}"
        );
    }
}
