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
//! - Power figures ([`GpuPowerFigures`], per GPU and for all GPUs together) come from the same
//!   GPU source. Energy over the window is the energy counter's increase, read at `start` and
//!   `end` by linear interpolation between the readings bracketing each (an edge with no reading
//!   beyond it is extrapolated at the counter's mean rate inside the window); where the counter
//!   is missing, has a single reading or went backwards (the driver reloaded), it is the
//!   integral of the power readings (trapezoids; the first and last reading held to the window's
//!   edges), and `energy_method` says which. Power, clock and temperature figures count the
//!   readings inside the window, like every gauge. A figure that cannot be had is `None` with
//!   its reason in `unavailable`, never 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::normalize::Series;
use super::nvml::decode_clock_event_reasons;
use super::timeline::{SeriesTimeline, Timeline};
use super::TelemetrySource;

/// How an energy figure was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyMethod {
    /// The difference of the GPU's cumulative energy counter (exact to the driver's metering).
    EnergyCounter,
    /// The time integral of the power readings (as good as the sampling interval).
    PowerIntegral,
    /// The simulator's power model over virtual time (`predict`): no readings at all.
    Modelled,
}

/// The key under which [`GpuPowerFigures`] for all GPUs together is reported.
pub const ALL_GPUS: &str = "all";

/// Power, energy, clocks, temperature and clock-event reasons over the window, for one GPU or
/// for all of them together (`gpu: "all"`: energy and power summed, clocks averaged over every
/// reading, temperature the hottest, reason fractions over every reading).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GpuPowerFigures {
    /// The device index, or [`ALL_GPUS`].
    pub gpu: String,
    /// Energy used over the window, J.
    pub energy_j: Option<f64>,
    pub energy_method: Option<EnergyMethod>,
    /// `energy_j` over the window's output tokens (see
    /// [`TelemetrySummary::set_output_tokens`]); for one GPU, its share.
    pub joules_per_output_token: Option<f64>,
    pub power_mean_w: Option<f64>,
    /// For all GPUs: the largest sum of simultaneous readings.
    pub power_max_w: Option<f64>,
    pub sm_clock_mean_mhz: Option<f64>,
    pub mem_clock_mean_mhz: Option<f64>,
    pub temp_max_c: Option<f64>,
    /// Clock-event reason (`sw_power_cap`, …) → fraction of readings in which it was set; only
    /// reasons seen at least once.
    pub clock_event_reasons: BTreeMap<String, f64>,
    /// Clock-event readings behind those fractions.
    pub clock_event_samples: u64,
    /// Figure (`energy_j`, `power_w`, `sm_clock_mhz`, `mem_clock_mhz`, `temp_c`,
    /// `clock_event_reasons`, `joules_per_output_token`, `energy_counter`) → why it is missing
    /// (for `energy_counter`: why the power integral was used instead).
    pub unavailable: BTreeMap<String, String>,
}

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
    /// Power, energy, clocks, temperature and clock-event reasons, all GPUs together (from the
    /// same source as the figures above).
    #[serde(default)]
    pub gpu_power: GpuPowerFigures,
    /// The same per GPU, by device index.
    #[serde(default)]
    pub gpu_power_per_gpu: Vec<GpuPowerFigures>,
}

impl TelemetrySummary {
    /// What the simulator's power model gives for a virtual-time prediction (`predict`), which
    /// has no readings: utilization from the busy fraction, and per GPU (each of `gpus` ranks
    /// modelled equally busy) the modelled energy and mean power over `duration_s`; `None`
    /// energy (no TDP in the catalog) leaves them unavailable with `why_none`. Source: simulated.
    pub fn modelled(
        gpus: u32,
        busy_fraction: f64,
        duration_s: f64,
        energy_per_gpu_j: Option<f64>,
        why_none: &str,
    ) -> TelemetrySummary {
        let not_modelled = "the simulator models power and energy only";
        let rank = |gpu: String| match energy_per_gpu_j {
            Some(e) => {
                let mut f = GpuPowerFigures::unavailable(&gpu, not_modelled);
                for k in ["energy_j", "power_w", "joules_per_output_token"] {
                    f.unavailable.remove(k);
                }
                f.energy_j = Some(e);
                f.energy_method = Some(EnergyMethod::Modelled);
                f.power_mean_w = (duration_s > 0.0).then(|| e / duration_s);
                f
            }
            None => GpuPowerFigures::unavailable(&gpu, why_none),
        };
        let per_gpu: Vec<GpuPowerFigures> = (0..gpus.max(1)).map(|g| rank(g.to_string())).collect();
        let mut all = rank(ALL_GPUS.into());
        let n = per_gpu.len() as f64;
        all.energy_j = all.energy_j.map(|e| e * n);
        all.power_mean_w = all.power_mean_w.map(|w| w * n);
        let util = (busy_fraction.clamp(0.0, 1.0) * 100.0 * 10.0).round() / 10.0;
        TelemetrySummary {
            gpu_util_mean_pct: Some(util),
            gpu_util_max_pct: None,
            gpu_mem_max_gb: None,
            kv_usage_max: None,
            prefix_cache_hit_rate: None,
            running_max: None,
            waiting_max: None,
            source: TelemetrySource::Simulated,
            unavailable_reason: None,
            engine_unavailable_reason: None,
            gpu_samples: 0,
            gpu_power: all,
            gpu_power_per_gpu: per_gpu,
        }
    }

    /// Fill in joules per output token from the window's output tokens (the run's summary
    /// knows them; telemetry does not).
    pub fn set_output_tokens(&mut self, output_tokens: u64) {
        for f in std::iter::once(&mut self.gpu_power).chain(self.gpu_power_per_gpu.iter_mut()) {
            f.joules_per_output_token = None;
            let why = match f.energy_j {
                None => "no energy figure".to_string(),
                Some(_) if output_tokens == 0 => "no output tokens in the window".to_string(),
                Some(e) => {
                    f.joules_per_output_token = Some(e / output_tokens as f64);
                    f.unavailable.remove("joules_per_output_token");
                    continue;
                }
            };
            f.unavailable.insert("joules_per_output_token".into(), why);
        }
    }
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

    // A source counts when any of its GPU series has a reading in the window (a DCGM exporter
    // may be configured to export power but not utilization).
    let gpu_source = order.iter().copied().find(|&src| {
        t.series
            .iter()
            .any(|s| s.series.is_gpu() && s.source == src && s.points.iter().any(|p| inside(&p)))
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
    let (gpu_power, gpu_power_per_gpu) = match gpu_source {
        Some(src) => power_figures(t, src, start_ns, end_ns),
        None => {
            let why = unavailable_reason.clone().unwrap_or_default();
            (GpuPowerFigures::unavailable(ALL_GPUS, &why), Vec::new())
        }
    };

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
        gpu_power,
        gpu_power_per_gpu,
    }
}

/// The figure names of [`GpuPowerFigures::unavailable`], with the series behind each.
const POWER_FIGURES: [(&str, Series); 6] = [
    ("energy_j", Series::GpuEnergyJ),
    ("power_w", Series::GpuPowerW),
    ("sm_clock_mhz", Series::GpuSmClockMhz),
    ("mem_clock_mhz", Series::GpuMemClockMhz),
    ("temp_c", Series::GpuTempC),
    ("clock_event_reasons", Series::GpuClockEventReasons),
];

impl GpuPowerFigures {
    /// Every figure missing for one reason.
    fn unavailable(gpu: &str, why: &str) -> Self {
        GpuPowerFigures {
            gpu: gpu.into(),
            unavailable: POWER_FIGURES
                .iter()
                .map(|(name, _)| (name.to_string(), why.to_string()))
                .chain(std::iter::once((
                    "joules_per_output_token".to_string(),
                    why.to_string(),
                )))
                .collect(),
            ..GpuPowerFigures::default()
        }
    }
}

/// Per-GPU and all-GPU power figures of `source` over the window (see the module docs).
fn power_figures(
    t: &Timeline,
    source: TelemetrySource,
    start_ns: u64,
    end_ns: u64,
) -> (GpuPowerFigures, Vec<GpuPowerFigures>) {
    let of_source: Vec<&SeriesTimeline> = t
        .series
        .iter()
        .filter(|s| s.source == source && s.series.is_gpu())
        .collect();
    let mut gpus: Vec<String> = of_source
        .iter()
        .filter_map(|s| s.labels.get(super::names::LABEL_GPU).cloned())
        .collect();
    gpus.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    gpus.dedup();
    let points = |gpu: &str, series: Series| -> &[(u64, f64)] {
        of_source
            .iter()
            .find(|s| {
                s.series == series
                    && s.labels.get(super::names::LABEL_GPU).map(String::as_str) == Some(gpu)
            })
            .map_or(&[], |s| s.points.as_slice())
    };
    // Why a series is missing on one GPU: the sampler's own reason when it gave one.
    let missing = |gpu: &str, series: Series| -> String {
        let told = t.samplers.iter().find_map(|r| {
            r.counters_unavailable
                .iter()
                .find(|u| u.gpu == gpu && u.series == series)
                .filter(|_| of_source.iter().any(|s| s.sampler == r.name))
                .map(|u| format!("{}: {}", r.name, u.reason))
        });
        told.unwrap_or_else(|| {
            if points(gpu, series).is_empty() {
                format!("{source} reported no {} for GPU {gpu}", series.as_str())
            } else {
                format!("no {} reading inside the measured window", series.as_str())
            }
        })
    };
    let inside =
        |pts: &[(u64, f64)]| -> Vec<f64> { window(pts, start_ns, end_ns).map(|p| p.1).collect() };

    let mut per_gpu = Vec::new();
    for gpu in &gpus {
        let mut f = GpuPowerFigures {
            gpu: gpu.clone(),
            ..GpuPowerFigures::default()
        };
        let power = points(gpu, Series::GpuPowerW);
        match counter_energy(points(gpu, Series::GpuEnergyJ), start_ns, end_ns) {
            Ok(e) => {
                f.energy_j = Some(e);
                f.energy_method = Some(EnergyMethod::EnergyCounter);
            }
            Err(counter_problem) => {
                let counter_problem =
                    counter_problem.unwrap_or_else(|| missing(gpu, Series::GpuEnergyJ));
                match power_integral(power, start_ns, end_ns) {
                    Some(e) => {
                        f.energy_j = Some(e);
                        f.energy_method = Some(EnergyMethod::PowerIntegral);
                        f.unavailable
                            .insert("energy_counter".into(), counter_problem);
                    }
                    None => {
                        f.unavailable.insert(
                            "energy_j".into(),
                            format!(
                                "{counter_problem}; and no power reading to integrate ({})",
                                missing(gpu, Series::GpuPowerW)
                            ),
                        );
                    }
                }
            }
        }
        let p = inside(power);
        f.power_mean_w = mean(&p);
        f.power_max_w = max(&p);
        f.sm_clock_mean_mhz = mean(&inside(points(gpu, Series::GpuSmClockMhz)));
        f.mem_clock_mean_mhz = mean(&inside(points(gpu, Series::GpuMemClockMhz)));
        f.temp_max_c = max(&inside(points(gpu, Series::GpuTempC)));
        let masks = inside(points(gpu, Series::GpuClockEventReasons));
        (f.clock_event_reasons, f.clock_event_samples) = reason_fractions(&masks);
        for (name, series, have) in [
            ("power_w", Series::GpuPowerW, f.power_mean_w.is_some()),
            (
                "sm_clock_mhz",
                Series::GpuSmClockMhz,
                f.sm_clock_mean_mhz.is_some(),
            ),
            (
                "mem_clock_mhz",
                Series::GpuMemClockMhz,
                f.mem_clock_mean_mhz.is_some(),
            ),
            ("temp_c", Series::GpuTempC, f.temp_max_c.is_some()),
            (
                "clock_event_reasons",
                Series::GpuClockEventReasons,
                !masks.is_empty(),
            ),
        ] {
            if !have {
                f.unavailable.insert(name.into(), missing(gpu, series));
            }
        }
        per_gpu.push(f);
    }
    let all = all_gpus(&per_gpu, &gpus, &points, start_ns, end_ns);
    (all, per_gpu)
}

/// One GPU's readings of one series (`(gpu, series) → points`).
type PointsOf<'a> = dyn Fn(&str, Series) -> &'a [(u64, f64)] + 'a;

/// The all-GPU figures from the per-GPU ones (see [`GpuPowerFigures`]).
fn all_gpus<'a>(
    per_gpu: &[GpuPowerFigures],
    gpus: &[String],
    points: &PointsOf<'a>,
    start_ns: u64,
    end_ns: u64,
) -> GpuPowerFigures {
    if per_gpu.is_empty() {
        return GpuPowerFigures::unavailable(ALL_GPUS, "no GPU reported power figures");
    }
    let mut all = GpuPowerFigures {
        gpu: ALL_GPUS.into(),
        ..GpuPowerFigures::default()
    };
    // A sum over GPUs is only a total when every GPU has its part.
    let sum_all = |figure: &str, get: fn(&GpuPowerFigures) -> Option<f64>| {
        let mut total = 0.0;
        for f in per_gpu {
            match get(f) {
                Some(v) => total += v,
                None => {
                    return Err(format!(
                        "GPU {}: {}",
                        f.gpu,
                        f.unavailable.get(figure).cloned().unwrap_or_default()
                    ))
                }
            }
        }
        Ok(total)
    };
    match sum_all("energy_j", |f| f.energy_j) {
        Ok(e) => {
            all.energy_j = Some(e);
            // The less exact method governs the total.
            all.energy_method = if per_gpu
                .iter()
                .all(|f| f.energy_method == Some(EnergyMethod::EnergyCounter))
            {
                Some(EnergyMethod::EnergyCounter)
            } else {
                Some(EnergyMethod::PowerIntegral)
            };
        }
        Err(why) => {
            all.unavailable.insert("energy_j".into(), why);
        }
    }
    match sum_all("power_w", |f| f.power_mean_w) {
        Ok(p) => all.power_mean_w = Some(p),
        Err(why) => {
            all.unavailable.insert("power_w".into(), why);
        }
    }
    // Peak: the largest sum of readings taken at the same instant on every GPU (one sampler
    // reads all devices in one call, so their stamps agree).
    let mut at: BTreeMap<u64, (usize, f64)> = BTreeMap::new();
    for gpu in gpus {
        for &(t_ns, w) in window(points(gpu, Series::GpuPowerW), start_ns, end_ns) {
            let e = at.entry(t_ns).or_insert((0, 0.0));
            *e = (e.0 + 1, e.1 + w);
        }
    }
    all.power_max_w = at
        .values()
        .filter(|(n, _)| *n == gpus.len())
        .map(|&(_, w)| w)
        .reduce(f64::max)
        .filter(|_| all.power_mean_w.is_some());
    let every = |series: Series| -> Vec<f64> {
        gpus.iter()
            .flat_map(|g| window(points(g, series), start_ns, end_ns).map(|p| p.1))
            .collect()
    };
    all.sm_clock_mean_mhz = mean(&every(Series::GpuSmClockMhz));
    all.mem_clock_mean_mhz = mean(&every(Series::GpuMemClockMhz));
    all.temp_max_c = max(&every(Series::GpuTempC));
    (all.clock_event_reasons, all.clock_event_samples) =
        reason_fractions(&every(Series::GpuClockEventReasons));
    for (name, have) in [
        ("sm_clock_mhz", all.sm_clock_mean_mhz.is_some()),
        ("mem_clock_mhz", all.mem_clock_mean_mhz.is_some()),
        ("temp_c", all.temp_max_c.is_some()),
        ("clock_event_reasons", all.clock_event_samples > 0),
    ] {
        if !have {
            let why = per_gpu
                .iter()
                .find_map(|f| {
                    f.unavailable
                        .get(name)
                        .map(|w| format!("GPU {}: {w}", f.gpu))
                })
                .unwrap_or_default();
            all.unavailable.insert(name.into(), why);
        }
    }
    all
}

fn window(points: &[(u64, f64)], start_ns: u64, end_ns: u64) -> impl Iterator<Item = &(u64, f64)> {
    points
        .iter()
        .filter(move |p| p.0 >= start_ns && p.0 <= end_ns)
}

/// Reason → fraction of the readings in which it was set, and the number of readings.
fn reason_fractions(masks: &[f64]) -> (BTreeMap<String, f64>, u64) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for &m in masks {
        // Masks are stored as f64; every defined bit is far below 2^53, so this is exact.
        for name in decode_clock_event_reasons(m as u64) {
            *counts.entry(name.to_string()).or_default() += 1;
        }
    }
    let n = masks.len() as u64;
    let fractions = counts
        .into_iter()
        .map(|(k, c)| (k, c as f64 / n as f64))
        .collect();
    (fractions, n)
}

/// A series' value at `t_ns` by linear interpolation between the readings either side (or a
/// reading exactly at `t_ns`); `None` when `t_ns` is not between two readings.
fn interpolate(points: &[(u64, f64)], t_ns: u64) -> Option<f64> {
    let after = points.iter().position(|p| p.0 >= t_ns)?;
    let (ta, va) = points[after];
    if ta == t_ns {
        return Some(va);
    }
    let (tb, vb) = *points.get(after.checked_sub(1)?)?;
    let f = (t_ns - tb) as f64 / (ta - tb) as f64;
    Some(vb + (va - vb) * f)
}

/// The energy counter's increase over the window, J. `Err(None)`: there is no counter;
/// `Err(Some(why))`: there is one but it cannot be used (went backwards inside the window: the
/// driver reloaded and the count restarted; or too few readings to span the window).
///
/// Each edge is interpolated between the readings either side of it. An edge with no reading
/// beyond it (the first reading comes a moment after the run's start, while NVML initializes)
/// is extrapolated at the counter's own mean rate between its readings inside the window.
fn counter_energy(
    points: &[(u64, f64)],
    start_ns: u64,
    end_ns: u64,
) -> Result<f64, Option<String>> {
    if points.is_empty() {
        return Err(None);
    }
    let from = points
        .iter()
        .rposition(|p| p.0 <= start_ns)
        .or_else(|| points.iter().position(|p| p.0 >= start_ns && p.0 <= end_ns));
    let to = points.iter().position(|p| p.0 >= end_ns).or_else(|| {
        points
            .iter()
            .rposition(|p| p.0 >= start_ns && p.0 <= end_ns)
    });
    let (Some(from), Some(to)) = (from, to) else {
        return Err(Some(
            "no energy counter reading inside the measured window".into(),
        ));
    };
    let used = &points[from..=to.max(from)];
    if used.windows(2).any(|w| w[1].1 < w[0].1) {
        return Err(Some(
            "the energy counter went backwards in the window (driver reloaded or counter reset)"
                .into(),
        ));
    }
    let (first, last) = (used[0], used[used.len() - 1]);
    let rate = || -> Result<f64, Option<String>> {
        if last.0 > first.0 {
            Ok((last.1 - first.1) / (last.0 - first.0) as f64)
        } else {
            Err(Some(
                "one energy counter reading is not enough to span the measured window".into(),
            ))
        }
    };
    let e0 = match interpolate(used, start_ns) {
        Some(e) => e,
        None => first.1 - rate()? * first.0.saturating_sub(start_ns) as f64,
    };
    let e1 = match interpolate(used, end_ns) {
        Some(e) => e,
        None => last.1 + rate()? * end_ns.saturating_sub(last.0) as f64,
    };
    Ok(e1 - e0)
}

/// The integral of power readings over the window, J: trapezoids between readings, the first
/// and last reading inside the window held back to `start` and forward to `end` unless a reading
/// outside brackets the edge (then interpolated). `None` when no reading falls in the window.
fn power_integral(points: &[(u64, f64)], start_ns: u64, end_ns: u64) -> Option<f64> {
    let inside: Vec<(u64, f64)> = window(points, start_ns, end_ns).copied().collect();
    let (first, last) = (*inside.first()?, *inside.last()?);
    let at_start = interpolate(points, start_ns).unwrap_or(first.1);
    let at_end = interpolate(points, end_ns).unwrap_or(last.1);
    let mut curve = vec![(start_ns, at_start)];
    curve.extend(
        inside
            .into_iter()
            .filter(|p| p.0 > start_ns && p.0 < end_ns),
    );
    curve.push((end_ns, at_end));
    let joules = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) as f64 / 1e9 * (w[0].1 + w[1].1) / 2.0)
        .sum();
    Some(joules)
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

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn energy_comes_from_the_counter_interpolated_at_the_window_edges() {
        // GPU 0's counter: 100 J/s throughout (readings every 2 s, window 1 s..7 s).
        // GPU 1's counter: 50 J/s. Power readings agree; the counter is what is used.
        let t = timeline(
            vec![
                series(
                    Series::GpuEnergyJ,
                    Nvml,
                    Some("0"),
                    &[
                        (0, 1000.0),
                        (2 * S, 1200.0),
                        (4 * S, 1400.0),
                        (6 * S, 1600.0),
                        (8 * S, 1800.0),
                    ],
                ),
                series(
                    Series::GpuEnergyJ,
                    Nvml,
                    Some("1"),
                    &[(0, 10.0), (4 * S, 210.0), (8 * S, 410.0)],
                ),
                series(
                    Series::GpuPowerW,
                    Nvml,
                    Some("0"),
                    &[
                        (0, 90.0),
                        (2 * S, 100.0),
                        (4 * S, 120.0),
                        (6 * S, 80.0),
                        (8 * S, 100.0),
                    ],
                ),
                series(
                    Series::GpuPowerW,
                    Nvml,
                    Some("1"),
                    &[(2 * S, 40.0), (4 * S, 60.0), (6 * S, 50.0)],
                ),
                series(
                    Series::GpuSmClockMhz,
                    Nvml,
                    Some("0"),
                    &[(2 * S, 1980.0), (4 * S, 1500.0)],
                ),
                series(Series::GpuSmClockMhz, Nvml, Some("1"), &[(2 * S, 1200.0)]),
                series(
                    Series::GpuTempC,
                    Nvml,
                    Some("0"),
                    &[(2 * S, 60.0), (4 * S, 71.0), (9 * S, 90.0)],
                ),
                series(Series::GpuTempC, Nvml, Some("1"), &[(2 * S, 55.0)]),
                // 0x4 sw_power_cap in 1 of 3 readings, 0x1 gpu_idle in 2 of 3 on GPU 0.
                series(
                    Series::GpuClockEventReasons,
                    Nvml,
                    Some("0"),
                    &[(2 * S, 4.0), (4 * S, 1.0), (6 * S, 1.0)],
                ),
                series(
                    Series::GpuClockEventReasons,
                    Nvml,
                    Some("1"),
                    &[(2 * S, 0.0)],
                ),
            ],
            vec![],
        );
        let mut s = t.summarize(S, 7 * S);
        s.set_output_tokens(1000);
        let g0 = &s.gpu_power_per_gpu[0];
        assert_eq!(g0.gpu, "0");
        assert_eq!(g0.energy_method, Some(EnergyMethod::EnergyCounter));
        assert!(close(g0.energy_j, 600.0), "{:?}", g0.energy_j);
        assert!(close(g0.joules_per_output_token, 0.6));
        assert!(close(g0.power_mean_w, 100.0)); // 100, 120, 80
        assert_eq!(g0.power_max_w, Some(120.0));
        assert!(close(g0.sm_clock_mean_mhz, 1740.0));
        assert_eq!(g0.temp_max_c, Some(71.0)); // 90 °C at 9 s is outside
        assert_eq!(g0.clock_event_samples, 3);
        assert!(close(
            g0.clock_event_reasons.get("gpu_idle").copied(),
            2.0 / 3.0
        ));
        assert!(close(
            g0.clock_event_reasons.get("sw_power_cap").copied(),
            1.0 / 3.0
        ));
        assert_eq!(g0.clock_event_reasons.len(), 2);
        // Never measured: unavailable with a reason, never 0.
        assert_eq!(g0.mem_clock_mean_mhz, None);
        assert!(g0.unavailable["mem_clock_mhz"].contains("gpu_mem_clock_mhz"));
        let g1 = &s.gpu_power_per_gpu[1];
        assert!(close(g1.energy_j, 300.0), "{:?}", g1.energy_j);
        // A window that starts before the first reading and ends after the last (NVML's first
        // reading comes a moment after the run starts): extrapolated at the counter's own rate.
        let wide = t.summarize(0, 10 * S);
        assert!(close(wide.gpu_power_per_gpu[0].energy_j, 1000.0));
        let late = timeline(
            vec![series(
                Series::GpuEnergyJ,
                Nvml,
                Some("0"),
                &[(2 * S, 100.0), (4 * S, 300.0)],
            )],
            vec![],
        );
        assert!(close(
            late.summarize(S, 5 * S).gpu_power_per_gpu[0].energy_j,
            400.0
        ));
        let all = &s.gpu_power;
        assert_eq!(all.gpu, ALL_GPUS);
        assert_eq!(all.energy_method, Some(EnergyMethod::EnergyCounter));
        assert!(close(all.energy_j, 900.0));
        assert!(close(all.joules_per_output_token, 0.9));
        assert!(close(all.power_mean_w, 150.0)); // 100 + 50
        assert_eq!(all.power_max_w, Some(180.0)); // at 4 s: 120 + 60
        assert!(close(
            all.sm_clock_mean_mhz,
            (1980.0 + 1500.0 + 1200.0) / 3.0
        ));
        assert_eq!(all.temp_max_c, Some(71.0));
        assert_eq!(all.clock_event_samples, 4);
        assert!(close(all.clock_event_reasons.get("gpu_idle").copied(), 0.5));
    }

    #[test]
    fn without_a_counter_energy_is_the_power_integral_and_says_so() {
        let mut r = SamplerReport {
            name: "nvml".into(),
            ..SamplerReport::default()
        };
        r.counters_unavailable
            .push(crate::telemetry::CounterUnavailable {
                gpu: "0".into(),
                series: Series::GpuEnergyJ,
                reason: "nvmlDeviceGetTotalEnergyConsumption answers Not Supported (code 3)".into(),
            });
        // 100 W from 0 to 2 s, then 200 W at 4 s: window 1..4 s = 100 + (100+200)/2 × 2 = 400 J.
        let t = timeline(
            vec![series(
                Series::GpuPowerW,
                Nvml,
                Some("0"),
                &[(0, 100.0), (2 * S, 100.0), (4 * S, 200.0)],
            )],
            vec![r],
        );
        let mut s = t.summarize(S, 4 * S);
        s.set_output_tokens(0);
        let g = &s.gpu_power_per_gpu[0];
        assert_eq!(g.energy_method, Some(EnergyMethod::PowerIntegral));
        assert!(close(g.energy_j, 400.0), "{:?}", g.energy_j);
        assert!(g.unavailable["energy_counter"].contains("Not Supported"));
        assert_eq!(g.joules_per_output_token, None);
        assert_eq!(
            g.unavailable["joules_per_output_token"],
            "no output tokens in the window"
        );
        assert_eq!(s.gpu_power.energy_method, Some(EnergyMethod::PowerIntegral));
    }

    #[test]
    fn a_counter_that_goes_backwards_is_not_believed() {
        // The driver reloaded at ~3 s: the counter restarts from 0.
        let t = timeline(
            vec![
                series(
                    Series::GpuEnergyJ,
                    Nvml,
                    Some("0"),
                    &[(0, 5000.0), (2 * S, 5200.0), (4 * S, 50.0), (6 * S, 250.0)],
                ),
                series(
                    Series::GpuPowerW,
                    Nvml,
                    Some("0"),
                    &[(0, 100.0), (2 * S, 100.0), (4 * S, 100.0), (6 * S, 100.0)],
                ),
            ],
            vec![],
        );
        let g = &t.summarize(0, 6 * S).gpu_power_per_gpu[0];
        assert_eq!(g.energy_method, Some(EnergyMethod::PowerIntegral));
        assert!(close(g.energy_j, 600.0), "{:?}", g.energy_j);
        assert!(g.unavailable["energy_counter"].contains("went backwards"));
        // Without power readings either, energy is unavailable with both reasons.
        let t = timeline(
            vec![
                series(
                    Series::GpuEnergyJ,
                    Nvml,
                    Some("0"),
                    &[(0, 5000.0), (4 * S, 50.0)],
                ),
                series(Series::GpuUtilPct, Nvml, Some("0"), &[(S, 50.0)]),
            ],
            vec![],
        );
        let s = t.summarize(0, 4 * S);
        let g = &s.gpu_power_per_gpu[0];
        assert_eq!(g.energy_j, None);
        let why = &g.unavailable["energy_j"];
        assert!(
            why.contains("went backwards") && why.contains("no power"),
            "{why}"
        );
        assert_eq!(s.gpu_power.energy_j, None);
        assert!(s.gpu_power.unavailable["energy_j"].starts_with("GPU 0: "));
    }

    #[test]
    fn a_modelled_prediction_sums_its_ranks_and_is_labelled_simulated() {
        let mut s = TelemetrySummary::modelled(2, 0.4, 10.0, Some(3430.0), "no TDP");
        s.set_output_tokens(686);
        assert_eq!(s.source, Simulated);
        assert_eq!(s.gpu_util_mean_pct, Some(40.0));
        assert_eq!(s.gpu_power_per_gpu.len(), 2);
        assert_eq!(s.gpu_power_per_gpu[1].energy_j, Some(3430.0));
        assert_eq!(s.gpu_power.energy_j, Some(6860.0));
        assert_eq!(s.gpu_power.energy_method, Some(EnergyMethod::Modelled));
        assert_eq!(s.gpu_power.power_mean_w, Some(686.0));
        assert_eq!(s.gpu_power.joules_per_output_token, Some(10.0));
        assert_eq!(s.gpu_power.temp_max_c, None);
        assert!(s.gpu_power.unavailable.contains_key("temp_c"));
        let s = TelemetrySummary::modelled(1, 0.4, 10.0, None, "the catalog has no tdp_w for X");
        assert_eq!(s.gpu_power.energy_j, None);
        assert_eq!(
            s.gpu_power.unavailable["energy_j"],
            "the catalog has no tdp_w for X"
        );
    }

    #[test]
    fn no_gpu_source_leaves_every_power_figure_unavailable_with_the_reason() {
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
        let mut s = t.summarize(0, 100);
        s.set_output_tokens(10);
        assert!(s.gpu_power_per_gpu.is_empty());
        assert_eq!(s.gpu_power.energy_j, None);
        assert_eq!(s.gpu_power.power_mean_w, None);
        assert!(s.gpu_power.unavailable["power_w"].contains("libnvidia-ml.so.1 not found"));
        assert_eq!(
            s.gpu_power.unavailable["joules_per_output_token"],
            "no energy figure"
        );
        // The JSON says null, not 0.
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["gpu_power"]["energy_j"].is_null());
    }
}
