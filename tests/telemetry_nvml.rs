//! NVML on a real GPU. Ignored by default: machines without an NVIDIA driver (CI, most
//! laptops) cannot run it. On a GPU machine:
//!
//! ```text
//! cargo test --test telemetry_nvml -- --ignored --nocapture
//! ```
//!
//! `SERVEBENCH_TELEMETRY_OUT=<dir>` also writes the timeline there as `telemetry.json`.

use std::time::{Duration, Instant};

use servebench::telemetry::{
    NvmlSampler, Recorder, RecorderConfig, Sampler, Series, TelemetrySource,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an NVIDIA GPU and driver"]
async fn nvml_reads_every_gpu_on_this_machine() {
    let gpus = NvmlSampler::probe().expect("NVML should load on a GPU machine");
    println!("gpus: {gpus:#?}");
    assert!(!gpus.is_empty());
    assert!(gpus
        .iter()
        .all(|g| g.name.is_some() && g.driver_version.is_some()));

    let epoch = Instant::now();
    let config = RecorderConfig {
        interval: Duration::from_millis(100),
        ..RecorderConfig::default()
    };
    let samplers: Vec<Box<dyn Sampler>> = vec![Box::new(NvmlSampler::new())];
    let recorder = Recorder::start(epoch, config, samplers);
    let secs: u64 = std::env::var("SERVEBENCH_NVML_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let timeline = recorder.stop().await;
    println!("samplers: {:?}", timeline.samplers);
    let nvml = &timeline.samplers[0];
    assert_eq!(nvml.unavailable, None);
    assert!(nvml.ok >= 5, "{nvml:?}");
    assert_eq!(nvml.errors, 0, "{nvml:?}");

    let util: Vec<_> = timeline.series_of(Series::GpuUtilPct).collect();
    assert_eq!(util.len(), gpus.len(), "one utilization series per GPU");
    for s in &util {
        assert!(s.points.iter().all(|p| (0.0..=100.0).contains(&p.1)));
    }
    let mem = timeline.series_of(Series::GpuMemUsedBytes).next().unwrap();
    let total = timeline.series_of(Series::GpuMemTotalBytes).next().unwrap();
    assert!(mem.points[0].1 <= total.points[0].1);

    let summary = timeline.summarize(timeline.started_ns, timeline.stopped_ns);
    println!("summary: {summary:#?}");
    println!(
        "util points (gpu 0): {:?}",
        util[0].points.iter().map(|p| p.1).collect::<Vec<_>>()
    );
    let reserved = timeline.series_of(Series::GpuMemReservedBytes).next();
    println!(
        "memory (gpu 0): used {:.0} MiB, reserved {:?} MiB, total {:.0} MiB (compare nvidia-smi memory.used)",
        mem.points.last().unwrap().1 / 1048576.0,
        reserved.map(|r| r.points[0].1 / 1048576.0),
        total.points[0].1 / 1048576.0
    );
    assert_eq!(summary.source, TelemetrySource::Nvml);
    assert!(summary.gpu_util_mean_pct.is_some());

    // Power, energy, clocks, temperature, clock-event reasons: a value in a plausible range
    // for every GPU, or the reason it is unavailable (never a silent 0). Compare with
    // `nvidia-smi --query-gpu=power.draw,clocks.sm,clocks.mem,temperature.gpu,clocks_event_reasons.active --format=csv`.
    println!("counters unavailable: {:#?}", nvml.counters_unavailable);
    let ranges = [
        (Series::GpuPowerW, 1.0, 2000.0),
        (Series::GpuSmClockMhz, 1.0, 5000.0),
        (Series::GpuMemClockMhz, 1.0, 20000.0),
        (Series::GpuTempC, 1.0, 120.0),
        (Series::GpuClockEventReasons, 0.0, 1e12),
    ];
    for g in &gpus {
        for (series, lo, hi) in ranges {
            let told = nvml
                .counters_unavailable
                .iter()
                .find(|u| u.gpu == g.index && u.series == series);
            let read = timeline
                .series_of(series)
                .find(|s| s.labels.get("gpu") == Some(&g.index));
            match (read, told) {
                (Some(s), None) => {
                    let last = s.points.last().unwrap().1;
                    println!("gpu {} {}: {last}", g.index, series.as_str());
                    assert!(
                        s.points.iter().all(|p| (lo..=hi).contains(&p.1)),
                        "{}: {:?}",
                        series.as_str(),
                        s.points
                    );
                }
                (None, Some(u)) => println!(
                    "gpu {} {}: unavailable: {}",
                    g.index,
                    series.as_str(),
                    u.reason
                ),
                other => panic!(
                    "gpu {} {}: read and unavailable at once, or neither: {other:?}",
                    g.index,
                    series.as_str()
                ),
            }
        }
        // The energy counter never goes backwards during the test.
        if let Some(e) = timeline
            .series_of(Series::GpuEnergyJ)
            .find(|s| s.labels.get("gpu") == Some(&g.index))
        {
            assert!(
                e.points.windows(2).all(|w| w[1].1 >= w[0].1),
                "{:?}",
                e.points
            );
            println!(
                "gpu {} energy counter: {:.3} J over the test",
                g.index,
                e.points.last().unwrap().1 - e.points[0].1
            );
        }
    }
    println!("power figures (all GPUs): {:#?}", summary.gpu_power);
    let p = &summary.gpu_power;
    assert!(
        p.energy_j.is_some() || p.unavailable.contains_key("energy_j"),
        "{p:?}"
    );
    if let (Some(e), Some(w)) = (p.energy_j, p.power_mean_w) {
        // Energy over the window agrees with mean power × its length within 25 % (the driver
        // averages power over 1 s on Ampere and newer, so short tests wobble).
        let secs = (timeline.stopped_ns - timeline.started_ns) as f64 / 1e9;
        println!("energy {e:.1} J vs mean power × time {:.1} J", w * secs);
        assert!(
            (e / (w * secs) - 1.0).abs() < 0.25,
            "{e} J vs {w} W × {secs} s"
        );
    }
    // An idle GPU has 0 bytes in use as nvidia-smi counts it (the driver's reservation apart).
    assert!(summary.gpu_mem_max_gb.is_some_and(|gb| gb >= 0.0));
    assert_eq!(timeline.gpus.len(), gpus.len());

    if let Ok(dir) = std::env::var("SERVEBENCH_TELEMETRY_OUT") {
        let path = std::path::Path::new(&dir).join("telemetry.json");
        timeline.save(&path).unwrap();
        println!("wrote {}", path.display());
    }
}
