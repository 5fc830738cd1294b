//! From what a server exposes to a few series every report understands (pure, with a little
//! counter state for rates).
//!
//! Engine series are aggregated over their label sets (vLLM labels each engine core
//! `engine="0"`, SGLang each data-parallel rank): counts are summed, KV usage takes the fullest
//! cache. GPU series keep one series per device, labelled `gpu="<index>"`.

use serde::{Deserialize, Serialize};

use super::names::*;
use super::prometheus::{Exposition, PromSample};
use super::{GpuInfo, Labels, Sample, TelemetrySource};

/// A normalized series. Units are in the name; ratios are 0–1, percentages 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Series {
    /// Requests in the engine's running batch.
    Running,
    /// Requests waiting in the engine's queue.
    Waiting,
    /// KV-cache usage, 0–1.
    KvUsage,
    /// Prefix-cache hit rate, 0–1: over the last interval when computed from counters, or the
    /// engine's own gauge where it only has that.
    PrefixCacheHitRate,
    /// Counter: prefix-cache hits (tokens), summed over engines.
    PrefixCacheHitsTotal,
    /// Counter: prefix-cache queries (tokens), summed over engines.
    PrefixCacheQueriesTotal,
    /// Counter: prompt tokens processed.
    PromptTokensTotal,
    /// Counter: tokens generated.
    GenerationTokensTotal,
    /// The engine's own generation throughput gauge, tokens/s (SGLang).
    GenThroughputTps,
    /// GPU utilization, % (NVML `utilization.gpu`: the share of time a kernel was running).
    GpuUtilPct,
    /// GPU memory in use, bytes (as `nvidia-smi` counts it: allocations, not the driver's
    /// own reservation).
    GpuMemUsedBytes,
    /// GPU memory free, bytes.
    GpuMemFreeBytes,
    /// GPU memory in total, bytes.
    GpuMemTotalBytes,
    /// GPU memory the driver reserves for itself, bytes (NVML ≥ 510; not in `used`).
    GpuMemReservedBytes,
    /// Board power draw, W (NVML `nvmlDeviceGetPowerUsage`, DCGM `POWER_USAGE`; averaged over
    /// 1 s by the driver on Ampere and newer, except GA100).
    GpuPowerW,
    /// Counter: energy since the driver was loaded, J (NVML `nvmlDeviceGetTotalEnergyConsumption`,
    /// DCGM `TOTAL_ENERGY_CONSUMPTION`; Volta and newer). Goes back to 0 when the driver reloads.
    GpuEnergyJ,
    /// SM clock, MHz.
    GpuSmClockMhz,
    /// Memory clock, MHz.
    GpuMemClockMhz,
    /// GPU die temperature, °C.
    GpuTempC,
    /// Why the clocks are below their maximum: NVML's `nvmlClocksEventReason*` bitmask (see
    /// [`crate::telemetry::nvml::CLOCK_EVENT_REASONS`]), as a number.
    GpuClockEventReasons,
}

impl Series {
    /// The JSON name (`gpu_util_pct`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Series::Running => "running",
            Series::Waiting => "waiting",
            Series::KvUsage => "kv_usage",
            Series::PrefixCacheHitRate => "prefix_cache_hit_rate",
            Series::PrefixCacheHitsTotal => "prefix_cache_hits_total",
            Series::PrefixCacheQueriesTotal => "prefix_cache_queries_total",
            Series::PromptTokensTotal => "prompt_tokens_total",
            Series::GenerationTokensTotal => "generation_tokens_total",
            Series::GenThroughputTps => "gen_throughput_tps",
            Series::GpuUtilPct => "gpu_util_pct",
            Series::GpuMemUsedBytes => "gpu_mem_used_bytes",
            Series::GpuMemFreeBytes => "gpu_mem_free_bytes",
            Series::GpuMemTotalBytes => "gpu_mem_total_bytes",
            Series::GpuMemReservedBytes => "gpu_mem_reserved_bytes",
            Series::GpuPowerW => "gpu_power_w",
            Series::GpuEnergyJ => "gpu_energy_j",
            Series::GpuSmClockMhz => "gpu_sm_clock_mhz",
            Series::GpuMemClockMhz => "gpu_mem_clock_mhz",
            Series::GpuTempC => "gpu_temp_c",
            Series::GpuClockEventReasons => "gpu_clock_event_reasons",
        }
    }

    /// True for the per-device GPU series.
    pub fn is_gpu(self) -> bool {
        matches!(
            self,
            Series::GpuUtilPct
                | Series::GpuMemUsedBytes
                | Series::GpuMemFreeBytes
                | Series::GpuMemTotalBytes
                | Series::GpuMemReservedBytes
                | Series::GpuPowerW
                | Series::GpuEnergyJ
                | Series::GpuSmClockMhz
                | Series::GpuMemClockMhz
                | Series::GpuTempC
                | Series::GpuClockEventReasons
        )
    }
}

/// What normalization remembers between scrapes of one endpoint: the previous prefix-cache
/// counters, to turn totals into a per-interval hit rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterState {
    prefix: Option<(f64, f64)>,
}

/// Map one scrape onto normalized samples. Metrics it does not know are left to the raw
/// samples; `NaN` readings are ignored rather than averaged in.
pub fn normalize(exp: &Exposition, state: &mut CounterState) -> Vec<Sample> {
    let mut out = Vec::new();
    engine_series(exp, state, &mut out);
    gpu_series(
        exp,
        TelemetrySource::Dcgm,
        &[
            (DCGM_GPU_UTIL, Series::GpuUtilPct, 1.0),
            (DCGM_FB_USED_MIB, Series::GpuMemUsedBytes, MIB),
            (DCGM_FB_FREE_MIB, Series::GpuMemFreeBytes, MIB),
            (DCGM_POWER_W, Series::GpuPowerW, 1.0),
            (DCGM_TOTAL_ENERGY_MJ, Series::GpuEnergyJ, 1.0 / MJ_PER_J),
            (DCGM_SM_CLOCK_MHZ, Series::GpuSmClockMhz, 1.0),
            (DCGM_MEM_CLOCK_MHZ, Series::GpuMemClockMhz, 1.0),
            (DCGM_GPU_TEMP_C, Series::GpuTempC, 1.0),
        ],
        &mut out,
    );
    // The reasons bitmask under its current name, else its pre-DCGM-3.3 name (never both: an
    // exporter in transition would otherwise give two readings per tick).
    let reasons = first_present(
        exp,
        &[DCGM_CLOCKS_EVENT_REASONS, DCGM_CLOCK_THROTTLE_REASONS],
    );
    if let Some(name) = reasons {
        gpu_series(
            exp,
            TelemetrySource::Dcgm,
            &[(name, Series::GpuClockEventReasons, 1.0)],
            &mut out,
        );
    }
    gpu_series(
        exp,
        TelemetrySource::Simulated,
        &[
            (SIM_GPU_UTIL_PCT, Series::GpuUtilPct, 1.0),
            (SIM_GPU_MEM_USED_BYTES, Series::GpuMemUsedBytes, 1.0),
        ],
        &mut out,
    );
    out
}

fn engine_series(exp: &Exposition, state: &mut CounterState, out: &mut Vec<Sample>) {
    let mut push = |series, value| {
        out.push(Sample::normalized(
            series,
            TelemetrySource::Engine,
            Labels::new(),
            value,
        ))
    };
    if let Some(v) = sum_any(exp, &[VLLM_RUNNING, SGLANG_RUNNING]) {
        push(Series::Running, v);
    }
    if let Some(v) = sum_any(exp, &[VLLM_WAITING, SGLANG_WAITING]) {
        push(Series::Waiting, v);
    }
    // The first name an engine emits wins: transitional vLLM versions emit both KV names.
    if let Some(v) = first_present(exp, &[VLLM_KV_USAGE, VLLM_KV_USAGE_V0, SGLANG_TOKEN_USAGE])
        .and_then(|name| fold(exp, name, f64::max))
    {
        push(Series::KvUsage, v);
    }
    let counters = [
        (VLLM_PREFIX_HITS, VLLM_PREFIX_QUERIES),
        (VLLM_PREFIX_HITS_GPU, VLLM_PREFIX_QUERIES_GPU),
        // Every cache source counts (device, host, storage): a token the engine did not have
        // to prefill is a hit wherever it was kept.
        (SGLANG_CACHED_TOKENS, SGLANG_PROMPT_TOKENS),
    ]
    .into_iter()
    .find_map(|(h, q)| Some((fold(exp, h, sum)?, fold(exp, q, sum)?)));
    match counters {
        Some((hits, queries)) => {
            push(Series::PrefixCacheHitsTotal, hits);
            push(Series::PrefixCacheQueriesTotal, queries);
            if let Some(rate) = interval_hit_rate(state.prefix, (hits, queries)) {
                push(Series::PrefixCacheHitRate, rate);
            }
            state.prefix = Some((hits, queries));
        }
        None => {
            let gauge = first_present(exp, &[VLLM_PREFIX_HIT_RATE_V0, SGLANG_CACHE_HIT_RATE]);
            if let Some(v) = gauge.and_then(|name| mean(exp, name)) {
                push(Series::PrefixCacheHitRate, v);
            }
        }
    }
    if let Some(v) = sum_any(exp, &[VLLM_PROMPT_TOKENS, SGLANG_PROMPT_TOKENS]) {
        push(Series::PromptTokensTotal, v);
    }
    if let Some(v) = sum_any(exp, &[VLLM_GENERATION_TOKENS, SGLANG_GENERATION_TOKENS]) {
        push(Series::GenerationTokensTotal, v);
    }
    if let Some(v) = fold(exp, SGLANG_GEN_THROUGHPUT, sum) {
        push(Series::GenThroughputTps, v);
    }
}

/// Hits over queries since the previous scrape; `None` when no query arrived in between, or a
/// counter went backwards (the engine restarted), so an idle interval never reads as 0 %.
pub fn interval_hit_rate(prev: Option<(f64, f64)>, now: (f64, f64)) -> Option<f64> {
    let (ph, pq) = prev?;
    let (h, q) = now;
    let (dh, dq) = (h - ph, q - pq);
    if dq > 0.0 && dh >= 0.0 && dh <= dq {
        Some(dh / dq)
    } else {
        None
    }
}

fn gpu_series(
    exp: &Exposition,
    source: TelemetrySource,
    map: &[(&str, Series, f64)],
    out: &mut Vec<Sample>,
) {
    for &(name, series, scale) in map {
        // Several samples for one device (an exporter labelling per pod) fold to the largest.
        let mut per_gpu: Vec<(String, f64)> = Vec::new();
        // servebench's simulator speaks DCGM's names so dashboards work unchanged, but marks
        // its gauges `simulated="true"`: they must never be reported as a measurement.
        let mut source = source;
        for (i, s) in matching(exp, name).enumerate() {
            if s.value.is_nan() {
                continue;
            }
            if s.labels.get("simulated").is_some_and(|v| v == "true") {
                source = TelemetrySource::Simulated;
            }
            let gpu = s
                .labels
                .get(DCGM_LABEL_GPU)
                .cloned()
                .unwrap_or_else(|| i.to_string());
            match per_gpu.iter_mut().find(|(g, _)| *g == gpu) {
                Some((_, v)) => *v = v.max(s.value * scale),
                None => per_gpu.push((gpu, s.value * scale)),
            }
        }
        for (gpu, value) in per_gpu {
            let labels = Labels::from([(LABEL_GPU.to_string(), gpu)]);
            out.push(Sample::normalized(series, source, labels, value));
        }
    }
}

/// The GPUs a DCGM exporter describes in its labels (index, model name, driver).
pub fn gpus_from_dcgm(exp: &Exposition) -> Vec<GpuInfo> {
    let mut gpus: Vec<GpuInfo> = Vec::new();
    for s in matching(exp, DCGM_GPU_UTIL).chain(matching(exp, DCGM_FB_USED_MIB)) {
        let Some(index) = s.labels.get(DCGM_LABEL_GPU) else {
            continue;
        };
        if gpus.iter().any(|g| g.index == *index) {
            continue;
        }
        gpus.push(GpuInfo {
            index: index.clone(),
            name: s.labels.get(DCGM_LABEL_MODEL).cloned(),
            driver_version: s.labels.get(DCGM_LABEL_DRIVER).cloned(),
            memory_total_bytes: None,
            source: TelemetrySource::Dcgm,
        });
    }
    gpus
}

/// Samples named `name`, or `name` without its `_total` (an exporter that names its counter
/// samples after the family).
fn matching<'a>(exp: &'a Exposition, name: &'a str) -> impl Iterator<Item = &'a PromSample> + 'a {
    let bare = name.strip_suffix("_total");
    exp.samples
        .iter()
        .filter(move |s| s.name == name || Some(s.name.as_str()) == bare)
}

fn first_present<'a>(exp: &Exposition, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .copied()
        .find(|n| matching(exp, n).any(|s| !s.value.is_nan()))
}

fn sum(a: f64, b: f64) -> f64 {
    a + b
}

fn fold(exp: &Exposition, name: &str, f: fn(f64, f64) -> f64) -> Option<f64> {
    matching(exp, name)
        .map(|s| s.value)
        .filter(|v| !v.is_nan())
        .reduce(f)
}

fn sum_any(exp: &Exposition, names: &[&str]) -> Option<f64> {
    names.iter().filter_map(|n| fold(exp, n, sum)).reduce(sum)
}

fn mean(exp: &Exposition, name: &str) -> Option<f64> {
    let values: Vec<f64> = matching(exp, name)
        .map(|s| s.value)
        .filter(|v| !v.is_nan())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::prometheus::parse;
    use crate::telemetry::Metric;

    /// `(series, source, gpu label, value)` of every normalized sample, for compact asserts.
    fn norm(
        text: &str,
        state: &mut CounterState,
    ) -> Vec<(Series, TelemetrySource, Option<String>, f64)> {
        normalize(&parse(text), state)
            .into_iter()
            .map(|s| match s.metric {
                Metric::Normalized { series, source } => {
                    (series, source, s.labels.get("gpu").cloned(), s.value)
                }
                Metric::Raw(name) => panic!("normalize returned raw {name}"),
            })
            .collect()
    }

    fn value(v: &[(Series, TelemetrySource, Option<String>, f64)], series: Series) -> Option<f64> {
        v.iter().find(|x| x.0 == series).map(|x| x.3)
    }

    use Series::*;
    use TelemetrySource::*;

    #[test]
    fn vllm_v1() {
        let v = norm(
            include_str!("fixtures/vllm_v1.txt"),
            &mut CounterState::default(),
        );
        assert!(v.iter().all(|x| x.1 == Engine && x.2.is_none()));
        assert_eq!(value(&v, Running), Some(3.0));
        assert_eq!(value(&v, Waiting), Some(2.0));
        assert_eq!(value(&v, KvUsage), Some(0.4125));
        assert_eq!(value(&v, PrefixCacheHitsTotal), Some(250.0));
        assert_eq!(value(&v, PrefixCacheQueriesTotal), Some(1000.0));
        // The first scrape has no previous counters: no rate rather than a made-up one.
        assert_eq!(value(&v, PrefixCacheHitRate), None);
        assert_eq!(value(&v, PromptTokensTotal), Some(50000.0));
        assert_eq!(value(&v, GenerationTokensTotal), Some(12000.0));
        assert_eq!(value(&v, GpuUtilPct), None);
    }

    #[test]
    fn vllm_prefix_hit_rate_comes_from_counter_deltas() {
        let mut state = CounterState::default();
        let scrape = |h: u32, q: u32| {
            format!(
                "vllm:prefix_cache_hits_total{{engine=\"0\"}} {h}\n\
                 vllm:prefix_cache_queries_total{{engine=\"0\"}} {q}\n\
                 vllm:prefix_cache_hits_total{{engine=\"1\"}} {h}\n\
                 vllm:prefix_cache_queries_total{{engine=\"1\"}} {q}\n"
            )
        };
        norm(&scrape(100, 400), &mut state);
        let v = norm(&scrape(175, 500), &mut state);
        assert_eq!(value(&v, PrefixCacheHitRate), Some(0.75));
        assert_eq!(value(&v, PrefixCacheQueriesTotal), Some(1000.0));
        // An idle interval has no rate; a restart (counters back to 0) has none either.
        assert_eq!(
            value(&norm(&scrape(175, 500), &mut state), PrefixCacheHitRate),
            None
        );
        assert_eq!(
            value(&norm(&scrape(0, 0), &mut state), PrefixCacheHitRate),
            None
        );
        assert_eq!(
            value(&norm(&scrape(1, 4), &mut state), PrefixCacheHitRate),
            Some(0.25)
        );
    }

    #[test]
    fn older_vllm_names_still_map() {
        let v = norm(
            include_str!("fixtures/vllm_v0.txt"),
            &mut CounterState::default(),
        );
        assert_eq!(value(&v, Running), Some(7.0));
        assert_eq!(value(&v, Waiting), Some(4.0));
        assert_eq!(value(&v, KvUsage), Some(0.87));
        assert_eq!(value(&v, PrefixCacheHitRate), Some(0.6));
        assert_eq!(value(&v, GenerationTokensTotal), Some(93200.0));
        // The transitional `gpu_` counters, when they are all there is.
        let mut state = CounterState::default();
        let text = |h, q| {
            format!(
                "vllm:gpu_prefix_cache_hits_total {h}\nvllm:gpu_prefix_cache_queries_total {q}\n"
            )
        };
        norm(&text(0, 0), &mut state);
        let v = norm(&text(1, 2), &mut state);
        assert_eq!(value(&v, PrefixCacheHitRate), Some(0.5));
    }

    #[test]
    fn the_new_kv_name_wins_when_both_are_emitted() {
        let v = norm(
            "vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc{engine=\"0\"} 0.25\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.5\n",
            &mut CounterState::default(),
        );
        assert_eq!(value(&v, KvUsage), Some(0.5));
    }

    #[test]
    fn sglang() {
        let v = norm(
            include_str!("fixtures/sglang.txt"),
            &mut CounterState::default(),
        );
        assert_eq!(value(&v, Running), Some(12.0));
        assert_eq!(value(&v, Waiting), Some(5.0));
        assert_eq!(value(&v, KvUsage), Some(0.28));
        assert_eq!(value(&v, PrefixCacheHitRate), Some(0.007507552643049313));
        assert_eq!(value(&v, GenThroughputTps), Some(1423.7));
        assert_eq!(value(&v, PromptTokensTotal), Some(8.128902e6));
        assert_eq!(value(&v, GenerationTokensTotal), Some(7.557572e6));
    }

    #[test]
    fn sglang_cached_token_counters_beat_the_last_batch_gauge() {
        let scrape = |cached: f64, prompt: f64| {
            format!(
                "sglang:cache_hit_rate{{model_name=\"m\"}} 0.01\n\
                 sglang:prompt_tokens_total{{model_name=\"m\"}} {prompt}\n\
                 sglang:cached_tokens_total{{model_name=\"m\",cache_source=\"device\"}} {cached}\n\
                 sglang:cached_tokens_total{{model_name=\"m\",cache_source=\"host\"}} 0\n"
            )
        };
        let mut state = CounterState::default();
        let v = norm(&scrape(300.0, 1000.0), &mut state);
        assert_eq!(value(&v, PrefixCacheHitsTotal), Some(300.0));
        assert_eq!(value(&v, PrefixCacheQueriesTotal), Some(1000.0));
        // The gauge (one prefill batch) is not taken when the counters exist.
        assert_eq!(value(&v, PrefixCacheHitRate), None);
        let v = norm(&scrape(1200.0, 2000.0), &mut state);
        assert_eq!(value(&v, PrefixCacheHitRate), Some(0.9));
    }

    #[test]
    fn dcgm_is_per_device_in_bytes() {
        let exp = parse(include_str!("fixtures/dcgm.txt"));
        let v = norm(
            include_str!("fixtures/dcgm.txt"),
            &mut CounterState::default(),
        );
        let gpu = |series, g: &str| {
            v.iter()
                .find(|x| x.0 == series && x.2.as_deref() == Some(g))
                .map(|x| (x.1, x.3))
        };
        assert_eq!(gpu(GpuUtilPct, "0"), Some((Dcgm, 87.0)));
        // The simulator's DCGM-named gauges carry simulated="true" and are labelled so.
        let sim =
            parse("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",modelName=\"A10G\",simulated=\"true\"} 6\n");
        let samples = normalize(&sim, &mut CounterState::default());
        assert!(samples.iter().any(|s| matches!(
            s.metric,
            Metric::Normalized {
                series: GpuUtilPct,
                source: TelemetrySource::Simulated
            }
        )));
        assert_eq!(gpu(GpuUtilPct, "1"), Some((Dcgm, 3.0)));
        assert_eq!(gpu(GpuMemUsedBytes, "0"), Some((Dcgm, 21064.0 * MIB)));
        assert_eq!(gpu(GpuMemFreeBytes, "1"), Some((Dcgm, 22000.0 * MIB)));
        assert_eq!(value(&v, Running), None);
        let gpus = gpus_from_dcgm(&exp);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name.as_deref(), Some("NVIDIA A10G"));
        assert_eq!(gpus[0].driver_version.as_deref(), Some("580.105.08"));
    }

    #[test]
    fn dcgm_power_energy_clocks_temperature_and_reasons_map_per_device() {
        let v = norm(
            include_str!("fixtures/dcgm_power.txt"),
            &mut CounterState::default(),
        );
        let gpu = |series, g: &str| {
            v.iter()
                .find(|x| x.0 == series && x.2.as_deref() == Some(g))
                .map(|x| (x.1, x.3))
        };
        assert_eq!(gpu(GpuPowerW, "0"), Some((Dcgm, 612.457)));
        assert_eq!(gpu(GpuPowerW, "1"), Some((Dcgm, 98.12)));
        // mJ in the exposition, J in the series.
        let joules = |g| gpu(GpuEnergyJ, g).map(|(src, j)| (src, (j * 1000.0).round()));
        assert_eq!(joules("0"), Some((Dcgm, 734_221_918_311.0)));
        assert_eq!(joules("1"), Some((Dcgm, 512_004_117_020.0)));
        assert_eq!(gpu(GpuSmClockMhz, "0"), Some((Dcgm, 1980.0)));
        assert_eq!(gpu(GpuSmClockMhz, "1"), Some((Dcgm, 1755.0)));
        assert_eq!(gpu(GpuMemClockMhz, "1"), Some((Dcgm, 2619.0)));
        assert_eq!(gpu(GpuTempC, "0"), Some((Dcgm, 61.0)));
        // The pre-3.3 throttle-reasons name is read when the new one is absent.
        assert_eq!(gpu(GpuClockEventReasons, "0"), Some((Dcgm, 4.0)));
        assert_eq!(gpu(GpuClockEventReasons, "1"), Some((Dcgm, 1.0)));
        // With both names present, the current one wins and there is one reading per GPU.
        let both = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS{gpu=\"0\"} 32\n\
                    DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu=\"0\"} 4\n";
        let v = norm(both, &mut CounterState::default());
        let reasons: Vec<_> = v.iter().filter(|x| x.0 == GpuClockEventReasons).collect();
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].3, 32.0);
        // The simulator's modelled power is labelled simulated, never a measurement.
        let sim =
            parse("DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",modelName=\"H100\",simulated=\"true\"} 405\n");
        assert!(normalize(&sim, &mut CounterState::default())
            .iter()
            .all(|s| matches!(
                s.metric,
                Metric::Normalized {
                    series: GpuPowerW,
                    source: TelemetrySource::Simulated
                }
            )));
    }

    #[test]
    fn simulator_gauges_are_labelled_simulated() {
        let v = norm(
            include_str!("fixtures/sim.txt"),
            &mut CounterState::default(),
        );
        assert!(v.contains(&(GpuUtilPct, Simulated, Some("0".into()), 64.5)));
        assert!(v.contains(&(GpuMemUsedBytes, Simulated, Some("0".into()), 2.1474836e10)));
        assert!(v.contains(&(Running, Engine, None, 2.0)));
    }

    #[test]
    fn nan_readings_are_ignored_not_averaged() {
        let v = norm(
            "vllm:num_requests_running{engine=\"0\"} NaN\nvllm:num_requests_running{engine=\"1\"} 2\nsglang:cache_hit_rate NaN\n",
            &mut CounterState::default(),
        );
        assert_eq!(value(&v, Running), Some(2.0));
        assert_eq!(value(&v, PrefixCacheHitRate), None);
    }
}
