//! [`Recorder`]: runs samplers on an interval and collects a [`Timeline`].
//!
//! Each sampler runs in its own Tokio task with its own buffers, so a slow scrape never delays
//! the GPU readings, and nothing is shared with the load driver (no lock, no channel on its
//! path). A reading is stamped with the midpoint of the call, in ns since the run's epoch.
//! Failures are counted and retried on the next tick; an `Unavailable` sampler is recorded
//! once and not asked again; nothing here can end a run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::normalize::Series;
use super::timeline::{
    RawTimeline, SamplerReport, SeriesBuf, SeriesTimeline, Timeline, TIMELINE_FORMAT,
};
use super::{Labels, Metric, Sample, Sampler, TelemetryError, TelemetrySource};

/// How often and how much to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct RecorderConfig {
    /// Time between readings of each sampler (the first is taken at once).
    pub interval: Duration,
    /// A reading that takes longer is abandoned and counted as an error.
    pub sample_timeout: Duration,
    /// Points kept per normalized series before it thins itself (see [`Timeline`]): 8192
    /// points is 68 minutes at 500 ms before any thinning.
    pub max_points_per_series: usize,
    /// Points kept per raw series (an engine has hundreds: every histogram bucket is one).
    pub max_raw_points_per_series: usize,
    /// Raw series kept per sampler; readings of further series are counted, not stored.
    pub max_raw_series: usize,
    /// Store raw samples at all.
    pub keep_raw: bool,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            interval: Duration::from_millis(500),
            sample_timeout: Duration::from_secs(3),
            max_points_per_series: 8192,
            max_raw_points_per_series: 1024,
            max_raw_series: 2048,
            keep_raw: true,
        }
    }
}

/// Sampling in progress. Dropping it stops the tasks (and loses what they held); call
/// [`Recorder::stop`] to get the [`Timeline`].
pub struct Recorder {
    epoch: Instant,
    started_ns: u64,
    interval: Duration,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<(String, JoinHandle<SamplerOutput>)>,
}

impl Recorder {
    /// Start every sampler on its own task. Times are ns since `epoch` (the run's epoch, the
    /// one its request records use). Must be called inside a Tokio runtime.
    pub fn start(epoch: Instant, config: RecorderConfig, samplers: Vec<Box<dyn Sampler>>) -> Self {
        let (stop_tx, stop_rx) = watch::channel(false);
        let started_ns = ns_since(epoch);
        let tasks = samplers
            .into_iter()
            .map(|sampler| {
                let name = sampler.name().to_string();
                let state = SamplerState::new(sampler, &config);
                let handle = tokio::spawn(run(state, epoch, config.clone(), stop_rx.clone()));
                (name, handle)
            })
            .collect();
        Recorder {
            epoch,
            started_ns,
            interval: config.interval,
            stop_tx,
            tasks,
        }
    }

    /// Stop sampling (a reading in progress is abandoned) and assemble the timeline.
    pub async fn stop(self) -> Timeline {
        let _ = self.stop_tx.send(true);
        let mut timeline = Timeline {
            format: TIMELINE_FORMAT,
            interval_ms: self.interval.as_millis() as u64,
            started_ns: self.started_ns,
            stopped_ns: 0,
            samplers: Vec::new(),
            gpus: Vec::new(),
            series: Vec::new(),
            raw: Vec::new(),
        };
        for (name, handle) in self.tasks {
            match handle.await {
                Ok(output) => output.merge_into(&mut timeline),
                Err(e) => timeline.samplers.push(SamplerReport {
                    name,
                    errors: 1,
                    last_error: Some(format!("the sampler's task ended abnormally: {e}")),
                    ..SamplerReport::default()
                }),
            }
        }
        timeline.stopped_ns = ns_since(self.epoch);
        timeline
    }
}

fn ns_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

type SeriesKey = (Series, TelemetrySource, Labels);
type RawKey = (String, Labels);

/// One sampler and what it has recorded; owned by its task alone.
struct SamplerState {
    sampler: Box<dyn Sampler>,
    report: SamplerReport,
    series: BTreeMap<SeriesKey, SeriesBuf>,
    raw: BTreeMap<RawKey, SeriesBuf>,
    cap: usize,
    raw_cap: usize,
    max_raw_series: usize,
    keep_raw: bool,
}

impl SamplerState {
    fn new(sampler: Box<dyn Sampler>, config: &RecorderConfig) -> Self {
        SamplerState {
            report: SamplerReport {
                name: sampler.name().to_string(),
                ..SamplerReport::default()
            },
            sampler,
            series: BTreeMap::new(),
            raw: BTreeMap::new(),
            cap: config.max_points_per_series,
            raw_cap: config.max_raw_points_per_series,
            max_raw_series: config.max_raw_series,
            keep_raw: config.keep_raw,
        }
    }

    fn store(&mut self, t_ns: u64, samples: Vec<Sample>) {
        for Sample {
            metric,
            labels,
            value,
        } in samples
        {
            if !value.is_finite() {
                self.report.nonfinite_skipped += 1;
                continue;
            }
            match metric {
                Metric::Normalized { series, source } => {
                    let cap = self.cap;
                    self.series
                        .entry((series, source, labels))
                        .or_insert_with(|| SeriesBuf::new(cap))
                        .push(t_ns, value);
                }
                Metric::Raw(name) if self.keep_raw => {
                    let key = (name, labels);
                    if let Some(buf) = self.raw.get_mut(&key) {
                        buf.push(t_ns, value);
                    } else if self.raw.len() < self.max_raw_series {
                        let mut buf = SeriesBuf::new(self.raw_cap);
                        buf.push(t_ns, value);
                        self.raw.insert(key, buf);
                    } else {
                        self.report.raw_series_dropped += 1;
                    }
                }
                Metric::Raw(_) => {}
            }
        }
    }

    fn finish(mut self) -> SamplerOutput {
        let name = self.report.name.clone();
        self.report.counters_unavailable = self.sampler.unavailable_counters();
        SamplerOutput {
            gpus: self.sampler.gpus(),
            series: self
                .series
                .into_iter()
                .map(|((series, source, labels), buf)| {
                    let (stride, points) = buf.into_parts();
                    SeriesTimeline {
                        series,
                        source,
                        sampler: name.clone(),
                        labels,
                        stride,
                        points,
                    }
                })
                .collect(),
            raw: self
                .raw
                .into_iter()
                .map(|((metric, labels), buf)| {
                    let (stride, points) = buf.into_parts();
                    RawTimeline {
                        sampler: name.clone(),
                        metric,
                        labels,
                        stride,
                        points,
                    }
                })
                .collect(),
            report: self.report,
        }
    }
}

struct SamplerOutput {
    report: SamplerReport,
    gpus: Vec<super::GpuInfo>,
    series: Vec<SeriesTimeline>,
    raw: Vec<RawTimeline>,
}

impl SamplerOutput {
    fn merge_into(self, t: &mut Timeline) {
        t.samplers.push(self.report);
        for gpu in self.gpus {
            if !t
                .gpus
                .iter()
                .any(|g| g.index == gpu.index && g.source == gpu.source)
            {
                t.gpus.push(gpu);
            }
        }
        t.series.extend(self.series);
        t.raw.extend(self.raw);
    }
}

async fn run(
    mut state: SamplerState,
    epoch: Instant,
    config: RecorderConfig,
    mut stop: watch::Receiver<bool>,
) -> SamplerOutput {
    let mut ticker = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
    // A reading that overran its tick is not made up for with a burst of readings.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        // `changed` also returns (with an error) when the recorder was dropped: stop then too.
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        let reading = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = read(&mut state, epoch, config.sample_timeout) => r,
        };
        if reading == Reading::Unavailable {
            return state.finish();
        }
    }
    // One last reading once the load has ended, so a counter (prefix-cache hits, tokens) is
    // bracketed at both ends of the measured phase even when the run was shorter than one
    // interval; without it a half-second run has no window to take a difference over.
    read(&mut state, epoch, config.sample_timeout).await;
    state.finish()
}

#[derive(Debug, PartialEq)]
enum Reading {
    Done,
    Unavailable,
}

/// One bounded reading, stored at the middle of its span; failures are counted, not raised.
async fn read(state: &mut SamplerState, epoch: Instant, timeout: Duration) -> Reading {
    let before = ns_since(epoch);
    let result = tokio::time::timeout(timeout, state.sampler.sample()).await;
    let after = ns_since(epoch);
    match result {
        Ok(Ok(samples)) => {
            state.report.ok += 1;
            state.store(before + (after - before) / 2, samples);
        }
        Ok(Err(TelemetryError::Unavailable(reason))) => {
            state.report.unavailable = Some(reason);
            return Reading::Unavailable;
        }
        Ok(Err(e)) => {
            state.report.errors += 1;
            state.report.last_error = Some(e.to_string());
        }
        Err(_elapsed) => {
            state.report.errors += 1;
            state.report.last_error = Some(
                TelemetryError::Timeout {
                    timeout_ms: timeout.as_millis() as u64,
                }
                .to_string(),
            );
        }
    }
    Reading::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Fails every other reading; counts its calls.
    struct Flaky {
        calls: Arc<AtomicU64>,
    }

    impl Sampler for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn sample(&mut self) -> BoxFuture<'_, Result<Vec<Sample>, TelemetryError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n % 2 == 1 {
                    return Err(TelemetryError::Other(format!("reading {n} failed")));
                }
                Ok(vec![
                    Sample::normalized(
                        Series::GpuUtilPct,
                        TelemetrySource::Simulated,
                        Labels::from([("gpu".into(), "0".into())]),
                        n as f64,
                    ),
                    Sample::raw("x", Labels::new(), f64::NAN),
                ])
            })
        }
    }

    struct Missing;

    impl Sampler for Missing {
        fn name(&self) -> &str {
            "nvml"
        }
        fn sample(&mut self) -> BoxFuture<'_, Result<Vec<Sample>, TelemetryError>> {
            Box::pin(async { Err(TelemetryError::Unavailable("no driver".into())) })
        }
    }

    /// Never answers; counts its calls.
    #[derive(Default)]
    struct Hung {
        calls: Arc<AtomicU64>,
    }

    impl Sampler for Hung {
        fn name(&self) -> &str {
            "hung"
        }
        fn sample(&mut self) -> BoxFuture<'_, Result<Vec<Sample>, TelemetryError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(futures_util::future::pending())
        }
    }

    fn fast() -> RecorderConfig {
        RecorderConfig {
            interval: Duration::from_millis(10),
            sample_timeout: Duration::from_millis(30),
            ..RecorderConfig::default()
        }
    }

    #[tokio::test]
    async fn errors_are_counted_and_sampling_goes_on() {
        let calls = Arc::new(AtomicU64::new(0));
        let hung_calls = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let rec = Recorder::start(
            epoch,
            fast(),
            vec![
                Box::new(Flaky {
                    calls: calls.clone(),
                }),
                Box::new(Missing),
                Box::new(Hung {
                    calls: hung_calls.clone(),
                }),
            ],
        );
        // Run until the flaky sampler has failed a few times and the hung one has been asked
        // again after a timeout (bounded: the test gives up after 10 s).
        for _ in 0..2000 {
            if calls.load(Ordering::SeqCst) >= 6 && hung_calls.load(Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = rec.stop().await;
        let flaky = &t.samplers[0];
        let n = calls.load(Ordering::SeqCst);
        assert!(n >= 6, "flaky sampled {n} times");
        // A reading started just as the recorder stopped is abandoned, counted neither way.
        assert!(flaky.ok + flaky.errors == n || flaky.ok + flaky.errors + 1 == n);
        assert!(flaky.ok >= 3 && flaky.errors >= 2, "{flaky:?}");
        assert!(flaky.last_error.as_deref().unwrap().contains("failed"));
        assert_eq!(flaky.nonfinite_skipped, flaky.ok);
        let util = t.series_of(Series::GpuUtilPct).next().unwrap();
        assert_eq!(util.points.len() as u64, flaky.ok);
        assert!(util.points.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(util.points.iter().all(|p| p.1 as u64 % 2 == 0));

        let missing = &t.samplers[1];
        assert_eq!(missing.unavailable.as_deref(), Some("no driver"));
        assert_eq!((missing.ok, missing.errors), (0, 0));

        let hung = &t.samplers[2];
        assert!(hung.errors >= 1);
        assert!(hung
            .last_error
            .as_deref()
            .unwrap()
            .contains("longer than 30 ms"));
        assert!(t.stopped_ns >= t.started_ns);
    }

    #[tokio::test]
    async fn a_run_shorter_than_one_interval_is_read_at_both_ends() {
        let calls = Arc::new(AtomicU64::new(0));
        let config = RecorderConfig {
            interval: Duration::from_secs(3600),
            ..fast()
        };
        let rec = Recorder::start(
            Instant::now(),
            config,
            vec![Box::new(Flaky {
                calls: calls.clone(),
            })],
        );
        // The first reading is taken at once; wait for it (bounded), then stop long before the
        // next tick: the stop itself takes the closing reading.
        for _ in 0..2000 {
            if calls.load(Ordering::SeqCst) >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = rec.stop().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Flaky fails its second reading: the closing one was made and counted.
        assert_eq!((t.samplers[0].ok, t.samplers[0].errors), (1, 1));
    }

    #[tokio::test]
    async fn stopping_with_no_sampler_gives_an_empty_timeline() {
        let t = Recorder::start(Instant::now(), fast(), vec![]).stop().await;
        assert!(t.samplers.is_empty() && t.series.is_empty());
        let s = t.summarize(0, u64::MAX);
        assert_eq!(s.source, TelemetrySource::Unavailable);
        assert!(s.unavailable_reason.is_some());
    }

    #[test]
    fn raw_series_beyond_the_cap_are_counted_not_stored() {
        let config = RecorderConfig {
            max_raw_series: 2,
            ..RecorderConfig::default()
        };
        let mut state = SamplerState::new(Box::<Hung>::default(), &config);
        let raw = |n: &str| Sample::raw(n, Labels::new(), 1.0);
        state.store(1, vec![raw("a"), raw("b"), raw("c")]);
        state.store(2, vec![raw("a"), raw("b"), raw("c")]);
        let out = state.finish();
        assert_eq!(out.raw.len(), 2);
        assert_eq!(out.raw[0].points, vec![(1, 1.0), (2, 1.0)]);
        assert_eq!(out.report.raw_series_dropped, 2);
    }
}
