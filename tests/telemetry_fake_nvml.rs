//! The NVML sampler against a fake `libnvidia-ml.so.1` (tests/fixtures/fake_nvml/fake_nvml.c),
//! loaded through the sampler's real `dlopen` path: every counter, a counter the GPU does not
//! support, functions an older library lacks, and an energy counter that restarts.
//!
//! Each test compiles its own copy of the fake with `cc -shared -fPIC` into its own temporary
//! directory, with its config file's path baked in, so tests in parallel threads share nothing.
//! Without a C compiler the tests say so and pass without running (install gcc or clang).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use servebench::telemetry::summary::EnergyMethod;
use servebench::telemetry::{
    Metric, NvmlSampler, Recorder, RecorderConfig, Sample, Sampler, Series, TelemetrySource,
};

const SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fake_nvml/fake_nvml.c"
);

/// A built fake: its directory (kept alive), library and config paths.
struct Fake {
    _dir: tempfile::TempDir,
    lib: PathBuf,
    config: PathBuf,
}

impl Fake {
    /// Build the fake with `-D` flags; `None` (with a message) where no C compiler exists.
    fn build(defines: &[&str]) -> Option<Fake> {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libnvidia-ml.so.1");
        let config = dir.path().join("nvml.conf");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let mut cmd = Command::new(&cc);
        cmd.args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&lib)
            .arg(SOURCE)
            .arg(format!("-DFAKE_NVML_CONFIG=\"{}\"", config.display()));
        for d in defines {
            cmd.arg(format!("-D{d}"));
        }
        match cmd.output() {
            Err(e) => {
                eprintln!("SKIPPED: no C compiler ({cc}: {e}); install gcc or clang to run the fake-NVML tests");
                None
            }
            Ok(out) => {
                assert!(
                    out.status.success(),
                    "building the fake NVML failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Some(Fake {
                    _dir: dir,
                    lib,
                    config,
                })
            }
        }
    }

    fn write(&self, text: &str) {
        // Written whole then renamed, so a reading never sees half a file.
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    fn sampler(&self) -> NvmlSampler {
        NvmlSampler::with_library_paths(vec![self.lib.display().to_string()])
    }

    /// How many times the fake was asked for `key` on `gpu`.
    fn calls(&self, gpu: u32, key: &str) -> usize {
        let log = calls_path(&self.config);
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let want = format!("{gpu} {key}");
        text.lines().filter(|l| *l == want).count()
    }
}

fn calls_path(config: &Path) -> PathBuf {
    let mut p = config.as_os_str().to_owned();
    p.push(".calls");
    PathBuf::from(p)
}

/// Two GPUs with every counter set.
const TWO_GPUS: &str = "count 2
0 util 87
0 mem_total 85899345920
0 mem_used 42949672960
0 power_mw 612457
0 energy_mj 734221918311
0 sm_mhz 1980
0 mem_mhz 2619
0 temp_c 64
0 reasons 5
1 util 3
1 mem_total 85899345920
1 mem_used 1073741824
1 power_mw 98120
1 energy_mj 512004117020
1 sm_mhz 345
1 mem_mhz 2619
1 temp_c 41
1 reasons 1
";

/// The value of `series` on `gpu` in one reading, if present.
fn value(samples: &[Sample], series: Series, gpu: &str) -> Option<f64> {
    samples.iter().find_map(|s| match s.metric {
        Metric::Normalized {
            series: got,
            source: TelemetrySource::Nvml,
        } if got == series && s.labels.get("gpu").map(String::as_str) == Some(gpu) => Some(s.value),
        _ => None,
    })
}

#[tokio::test]
async fn every_counter_is_read_per_gpu_in_the_series_units() {
    let Some(fake) = Fake::build(&[]) else { return };
    fake.write(TWO_GPUS);
    let mut sampler = fake.sampler();
    let samples = sampler.sample().await.expect("the fake NVML should load");
    let v = |series, gpu| value(&samples, series, gpu);
    assert_eq!(v(Series::GpuUtilPct, "0"), Some(87.0));
    assert_eq!(v(Series::GpuMemUsedBytes, "1"), Some(1073741824.0));
    // mW → W, mJ → J, MHz and °C as they are, the reasons bitmask as a number.
    assert_eq!(v(Series::GpuPowerW, "0"), Some(612.457));
    assert_eq!(v(Series::GpuPowerW, "1"), Some(98.12));
    let joules = v(Series::GpuEnergyJ, "0").unwrap();
    assert!((joules - 734_221_918.311).abs() < 1e-3, "{joules}");
    assert_eq!(v(Series::GpuSmClockMhz, "0"), Some(1980.0));
    assert_eq!(v(Series::GpuSmClockMhz, "1"), Some(345.0));
    assert_eq!(v(Series::GpuMemClockMhz, "1"), Some(2619.0));
    assert_eq!(v(Series::GpuTempC, "0"), Some(64.0));
    assert_eq!(v(Series::GpuTempC, "1"), Some(41.0));
    assert_eq!(v(Series::GpuClockEventReasons, "0"), Some(5.0));
    assert!(sampler.unavailable_counters().is_empty());
    // The current call is used where the library has it, not the deprecated one.
    assert_eq!(fake.calls(0, "reasons"), 1);
    assert_eq!(fake.calls(0, "throttle_reasons"), 0);
    let gpus = sampler.gpus();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[1].name.as_deref(), Some("Fake GPU 1"));
    assert_eq!(gpus[0].driver_version.as_deref(), Some("999.01.02-fake"));
}

#[tokio::test]
async fn not_supported_is_unavailable_once_per_gpu_never_zero() {
    let Some(fake) = Fake::build(&[]) else { return };
    // GPU 1 has no energy counter (pre-Volta); GPU 0 reports no temperature.
    fake.write(&format!("{TWO_GPUS}1 energy_mj_rc 3\n0 temp_c_rc 3\n"));
    let mut sampler = fake.sampler();
    for _ in 0..3 {
        let samples = sampler.sample().await.unwrap();
        assert_eq!(value(&samples, Series::GpuEnergyJ, "1"), None);
        assert_eq!(value(&samples, Series::GpuTempC, "0"), None);
        assert!(value(&samples, Series::GpuEnergyJ, "0").is_some());
        assert_eq!(value(&samples, Series::GpuTempC, "1"), Some(41.0));
    }
    let mut gone = sampler.unavailable_counters();
    gone.sort_by(|a, b| a.gpu.cmp(&b.gpu));
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert_eq!(
        (gone[0].gpu.as_str(), gone[0].series),
        ("0", Series::GpuTempC)
    );
    assert_eq!(
        (gone[1].gpu.as_str(), gone[1].series),
        ("1", Series::GpuEnergyJ)
    );
    assert!(
        gone[1]
            .reason
            .contains("nvmlDeviceGetTotalEnergyConsumption answers Not Supported (code 3)"),
        "{}",
        gone[1].reason
    );
    // Asked once, then left alone; the supported counters are asked every time.
    assert_eq!(fake.calls(1, "energy_mj"), 1);
    assert_eq!(fake.calls(0, "temp_c"), 1);
    assert_eq!(fake.calls(0, "energy_mj"), 3);
}

#[tokio::test]
async fn functions_an_older_library_lacks_are_unavailable_and_older_names_are_used() {
    let Some(fake) = Fake::build(&[
        "FAKE_NVML_NO_ENERGY",
        "FAKE_NVML_NO_POWER",
        "FAKE_NVML_NO_CLOCKS_EVENT_REASONS",
        "FAKE_NVML_NO_TEMPERATURE",
    ]) else {
        return;
    };
    fake.write(TWO_GPUS);
    let mut sampler = fake.sampler();
    let samples = sampler.sample().await.unwrap();
    for gpu in ["0", "1"] {
        assert_eq!(value(&samples, Series::GpuEnergyJ, gpu), None);
        assert_eq!(value(&samples, Series::GpuPowerW, gpu), None);
    }
    // Driver < 535: the reasons come from nvmlDeviceGetCurrentClocksThrottleReasons.
    assert_eq!(
        value(&samples, Series::GpuClockEventReasons, "0"),
        Some(5.0)
    );
    assert_eq!(fake.calls(0, "throttle_reasons"), 1);
    // A library without the deprecated temperature call: nvmlDeviceGetTemperatureV.
    assert_eq!(value(&samples, Series::GpuTempC, "1"), Some(41.0));
    let gone = sampler.unavailable_counters();
    assert_eq!(gone.len(), 4, "{gone:?}");
    let energy = gone
        .iter()
        .find(|u| u.gpu == "0" && u.series == Series::GpuEnergyJ)
        .unwrap();
    assert!(
        energy
            .reason
            .contains("has no nvmlDeviceGetTotalEnergyConsumption"),
        "{}",
        energy.reason
    );
}

/// Sample through the recorder until the fake has been asked for `key` at least `n` more times
/// (bounded: 10 s).
async fn wait_for_calls(fake: &Fake, key: &str, n: usize) {
    let target = fake.calls(0, key) + n;
    for _ in 0..1000 {
        if fake.calls(0, key) >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the recorder read {key} fewer than {n} times in 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_recorder_energy_comes_from_the_counter_and_a_reset_falls_back_to_power() {
    let Some(fake) = Fake::build(&[]) else { return };
    let one_gpu = |energy_mj: u64, reasons: u64| {
        format!(
            "count 1\n0 util 90\n0 mem_total 100\n0 mem_used 50\n0 power_mw 300000\n\
             0 energy_mj {energy_mj}\n0 sm_mhz 1800\n0 mem_mhz 2600\n0 temp_c 70\n0 reasons {reasons}\n"
        )
    };
    let config = RecorderConfig {
        interval: Duration::from_millis(10),
        ..RecorderConfig::default()
    };
    // Increasing counter: 1000 J, then 1500 J. The window is the span of the readings, so
    // the counter's difference is exactly 500 J.
    fake.write(&one_gpu(1_000_000, 4));
    let recorder = Recorder::start(
        Instant::now(),
        config.clone(),
        vec![Box::new(fake.sampler())],
    );
    wait_for_calls(&fake, "energy_mj", 3).await;
    fake.write(&one_gpu(1_500_000, 0));
    wait_for_calls(&fake, "energy_mj", 3).await;
    let timeline = recorder.stop().await;
    let (first, last) = {
        let e = timeline.series_of(Series::GpuEnergyJ).next().unwrap();
        (e.points[0].0, e.points[e.points.len() - 1].0)
    };
    let mut s = timeline.summarize(first, last);
    s.set_output_tokens(250);
    let all = &s.gpu_power;
    assert_eq!(all.energy_method, Some(EnergyMethod::EnergyCounter));
    assert!((all.energy_j.unwrap() - 500.0).abs() < 1e-9, "{all:?}");
    assert!((all.joules_per_output_token.unwrap() - 2.0).abs() < 1e-9);
    assert_eq!(all.power_mean_w, Some(300.0));
    assert_eq!(all.sm_clock_mean_mhz, Some(1800.0));
    assert_eq!(all.temp_max_c, Some(70.0));
    let power_cap = all.clock_event_reasons["sw_power_cap"];
    assert!(power_cap > 0.0 && power_cap < 1.0, "{power_cap}");
    assert_eq!(s.source, TelemetrySource::Nvml);

    // The driver reloads mid-run: the counter restarts near 0. Not believed; energy is the
    // power integral (300 W over the window) and the reason is kept.
    let fake2 = Fake::build(&[]).unwrap();
    fake2.write(&one_gpu(9_000_000, 0));
    let recorder = Recorder::start(Instant::now(), config, vec![Box::new(fake2.sampler())]);
    wait_for_calls(&fake2, "energy_mj", 3).await;
    fake2.write(&one_gpu(20_000, 0));
    wait_for_calls(&fake2, "energy_mj", 3).await;
    let timeline = recorder.stop().await;
    let power = timeline.series_of(Series::GpuPowerW).next().unwrap();
    let (first, last) = (power.points[0].0, power.points[power.points.len() - 1].0);
    let s = timeline.summarize(first, last);
    let g = &s.gpu_power_per_gpu[0];
    assert_eq!(g.energy_method, Some(EnergyMethod::PowerIntegral));
    let expected = 300.0 * (last - first) as f64 / 1e9;
    assert!((g.energy_j.unwrap() - expected).abs() < 1e-6, "{g:?}");
    assert!(g.unavailable["energy_counter"].contains("went backwards"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_keeps_each_unavailable_counter_once_with_its_reason() {
    let Some(fake) = Fake::build(&["FAKE_NVML_NO_ENERGY"]) else {
        return;
    };
    fake.write(&format!("{TWO_GPUS}0 power_mw_rc 3\n"));
    let config = RecorderConfig {
        interval: Duration::from_millis(10),
        ..RecorderConfig::default()
    };
    let recorder = Recorder::start(Instant::now(), config, vec![Box::new(fake.sampler())]);
    wait_for_calls(&fake, "sm_mhz", 4).await;
    let timeline = recorder.stop().await;
    let report = &timeline.samplers[0];
    assert_eq!(report.errors, 0, "{report:?}");
    // Energy on both GPUs (function missing), power on GPU 0 (not supported): three entries.
    assert_eq!(report.counters_unavailable.len(), 3, "{report:?}");
    let s = timeline.summarize(timeline.started_ns, timeline.stopped_ns);
    // GPU 0 has neither counter nor power: energy unavailable with both reasons; GPU 1
    // integrates its power. The total is unavailable (GPU 0's part is missing), not GPU 1's.
    let g0 = &s.gpu_power_per_gpu[0];
    assert_eq!(g0.energy_j, None);
    assert!(g0.unavailable["energy_j"].contains("has no nvmlDeviceGetTotalEnergyConsumption"));
    assert!(g0.unavailable["power_w"].contains("Not Supported"));
    assert_eq!(
        s.gpu_power_per_gpu[1].energy_method,
        Some(EnergyMethod::PowerIntegral)
    );
    assert_eq!(s.gpu_power.energy_j, None);
    assert!(s.gpu_power.unavailable["energy_j"].starts_with("GPU 0: "));
    let json = serde_json::to_value(&timeline).unwrap();
    assert_eq!(
        json["samplers"][0]["counters_unavailable"][0]["series"],
        "gpu_energy_j"
    );
}
