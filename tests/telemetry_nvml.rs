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
    // An idle GPU has 0 bytes in use as nvidia-smi counts it (the driver's reservation apart).
    assert!(summary.gpu_mem_max_gb.is_some_and(|gb| gb >= 0.0));
    assert_eq!(timeline.gpus.len(), gpus.len());

    if let Ok(dir) = std::env::var("SERVEBENCH_TELEMETRY_OUT") {
        let path = std::path::Path::new(&dir).join("telemetry.json");
        timeline.save(&path).unwrap();
        println!("wrote {}", path.display());
    }
}
