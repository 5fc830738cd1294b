//! The recorder end to end: a tiny server on 127.0.0.1:0 serves a /metrics that changes on
//! every scrape; the recorder samples it beside a broken endpoint and NVML, then the timeline
//! is saved, loaded and summarized over a window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use servebench::telemetry::{
    NvmlSampler, PrometheusSampler, Recorder, RecorderConfig, Sampler, Series, TelemetrySource,
    Timeline,
};

/// Scrape `n` (from 1) reports: running n % 5, prefix hits 3n of 4n queries, simulated GPU
/// utilization 50 % on odd scrapes and 60 % on even ones.
async fn metrics(State(scrapes): State<Arc<AtomicU64>>) -> String {
    let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"m\"}} {running}\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"m\"}} 1\n\
         vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"m\"}} 0.{kv}\n\
         # TYPE vllm:prefix_cache_hits_total counter\n\
         vllm:prefix_cache_hits_total{{engine=\"0\",model_name=\"m\"}} {hits}\n\
         # TYPE vllm:prefix_cache_queries_total counter\n\
         vllm:prefix_cache_queries_total{{engine=\"0\",model_name=\"m\"}} {queries}\n\
         # TYPE vllm:time_to_first_token_seconds histogram\n\
         vllm:time_to_first_token_seconds_bucket{{le=\"+Inf\",model_name=\"m\"}} {n}\n\
         vllm:time_to_first_token_seconds_count{{model_name=\"m\"}} {n}\n\
         servebench_sim_gpu_utilization_percent {util}\n\
         servebench_sim_gpu_memory_used_bytes 2.5e9\n\
         weird_gauge NaN\n",
        running = n % 5,
        kv = n % 10,
        hits = 3 * n,
        queries = 4 * n,
        util = if n % 2 == 1 { 50 } else { 60 },
    )
}

async fn broken() -> (StatusCode, &'static str) {
    (StatusCode::INTERNAL_SERVER_ERROR, "no metrics today")
}

async fn serve() -> (String, Arc<AtomicU64>) {
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/broken", get(broken))
        .with_state(scrapes.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), scrapes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_changing_server_beside_failing_samplers_and_summarizes_a_window() {
    let (base, scrapes) = serve().await;
    let epoch = Instant::now();
    let samplers: Vec<Box<dyn Sampler>> = vec![
        // The base URL alone: the sampler adds /metrics.
        Box::new(PrometheusSampler::new("engine", &base).unwrap()),
        Box::new(PrometheusSampler::new("dcgm", &format!("{base}/broken")).unwrap()),
        Box::new(NvmlSampler::with_library_paths(vec![
            "/nonexistent/libnvidia-ml.so.1".into(),
        ])),
    ];
    let config = RecorderConfig {
        interval: Duration::from_millis(20),
        ..RecorderConfig::default()
    };
    let recorder = Recorder::start(epoch, config, samplers);
    // Bounded: stop after 8 scrapes, or give up after 10 s.
    for _ in 0..1000 {
        if scrapes.load(Ordering::SeqCst) >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let timeline = recorder.stop().await;
    let served = scrapes.load(Ordering::SeqCst);
    assert!(served >= 8, "only {served} scrapes in 10 s");

    // Samplers: the engine read every scrape it completed; the broken one counted errors and
    // kept going; NVML said once why it is unavailable.
    let report = |name: &str| timeline.samplers.iter().find(|s| s.name == name).unwrap();
    let engine = report("engine");
    assert!(engine.ok >= 8 && engine.ok <= served, "{engine:?}");
    assert_eq!(engine.errors, 0, "{engine:?}");
    assert_eq!(
        engine.nonfinite_skipped, engine.ok,
        "one NaN gauge per scrape"
    );
    let dcgm = report("dcgm");
    assert_eq!(dcgm.ok, 0);
    assert!(dcgm.errors >= 2, "{dcgm:?}");
    assert!(
        dcgm.last_error.as_deref().unwrap().contains("HTTP 500"),
        "{dcgm:?}"
    );
    let nvml = report("nvml");
    assert_eq!(
        nvml.unavailable.as_deref(),
        Some("libnvidia-ml.so.1 not found: no NVIDIA driver on this machine")
    );

    // Normalized series: one point per successful scrape, in time order, inside the run.
    let running = timeline.series_of(Series::Running).next().unwrap();
    assert_eq!(running.source, TelemetrySource::Engine);
    assert_eq!(running.points.len() as u64, engine.ok);
    assert!(running.points.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(running.points.iter().all(|p| p.0 >= timeline.started_ns));
    assert!(timeline.stopped_ns >= running.points.last().unwrap().0);
    let rates = timeline
        .series_of(Series::PrefixCacheHitRate)
        .next()
        .unwrap();
    assert!(rates.points.iter().all(|p| p.1 == 0.75), "{rates:?}");
    let util = timeline.series_of(Series::GpuUtilPct).next().unwrap();
    assert_eq!(util.source, TelemetrySource::Simulated);
    assert_eq!(util.labels.get("gpu").map(String::as_str), Some("0"));
    // Raw samples are kept under the server's names, histogram parts included.
    assert!(timeline
        .raw
        .iter()
        .any(|r| r.metric == "vllm:time_to_first_token_seconds_bucket"
            && r.labels.get("le").map(String::as_str) == Some("+Inf")));

    // Saved and loaded unchanged.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("telemetry.json");
    timeline.save(&path).unwrap();
    let loaded = Timeline::load(&path).unwrap();
    assert_eq!(loaded, timeline);

    // A window over the 2nd..5th readings: 4 readings, two at 50 % and two at 60 %.
    let start = util.points[1].0;
    let end = util.points[4].0;
    let s = loaded.summarize(start, end);
    assert_eq!(s.source, TelemetrySource::Simulated);
    assert_eq!(s.gpu_samples, 4);
    assert_eq!(s.gpu_util_mean_pct, Some(55.0));
    assert_eq!(s.gpu_util_max_pct, Some(60.0));
    assert_eq!(s.gpu_mem_max_gb, Some(2.5));
    assert_eq!(s.waiting_max, Some(1.0));
    assert_eq!(s.prefix_cache_hit_rate, Some(0.75));
    let in_window: Vec<f64> = running
        .points
        .iter()
        .filter(|p| p.0 >= start && p.0 <= end)
        .map(|p| p.1)
        .collect();
    assert_eq!(s.running_max, in_window.iter().copied().reduce(f64::max));
    assert!(s.kv_usage_max.is_some());
    assert_eq!(s.unavailable_reason, None);
}

#[tokio::test]
async fn a_server_that_is_gone_is_counted_not_fatal() {
    // A port that was bound and released: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sampler =
        PrometheusSampler::new("engine", &format!("http://127.0.0.1:{port}/metrics")).unwrap();
    let config = RecorderConfig {
        interval: Duration::from_millis(10),
        ..RecorderConfig::default()
    };
    let recorder = Recorder::start(Instant::now(), config, vec![Box::new(sampler)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = recorder.stop().await;
    let r = &t.samplers[0];
    assert!(r.errors >= 1, "{r:?}");
    assert_eq!(r.ok, 0);
    let msg = r.last_error.as_deref().unwrap();
    assert!(msg.starts_with("scraping http://127.0.0.1:"), "{msg}");
    let s = t.summarize(0, u64::MAX);
    assert_eq!(s.source, TelemetrySource::Unavailable);
    assert!(
        s.unavailable_reason
            .as_deref()
            .unwrap()
            .starts_with("no GPU reading succeeded (engine: scraping"),
        "{s:?}"
    );
}

/// A server with no /metrics (404, as `transformers serve` answers), one whose metrics go away
/// after two good scrapes, and the changing /metrics above as the clock of the test.
async fn serve_missing_metrics() -> (String, Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let good = Arc::new(AtomicU64::new(0));
    let missing = Arc::new(AtomicU64::new(0));
    let flaky = Arc::new(AtomicU64::new(0));
    let (m, f) = (missing.clone(), flaky.clone());
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/none",
            get(move || {
                let m = m.clone();
                async move {
                    m.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::NOT_FOUND, "{\"detail\":\"Not Found\"}")
                }
            }),
        )
        .route(
            "/gone",
            get(move || {
                let f = f.clone();
                async move {
                    if f.fetch_add(1, Ordering::SeqCst) < 2 {
                        (StatusCode::OK, "vllm:num_requests_running 1\n")
                    } else {
                        (StatusCode::NOT_FOUND, "not found")
                    }
                }
            }),
        )
        .with_state(good.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), good, missing, flaky)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_on_the_first_scrape_turns_the_sampler_off_once_a_later_one_is_an_error() {
    let (base, good, missing, flaky) = serve_missing_metrics().await;
    let samplers: Vec<Box<dyn Sampler>> = vec![
        Box::new(PrometheusSampler::new("engine", &format!("{base}/none")).unwrap()),
        Box::new(PrometheusSampler::new("dcgm", &format!("{base}/gone")).unwrap()),
        Box::new(PrometheusSampler::new("clock", &base).unwrap()),
    ];
    let config = RecorderConfig {
        interval: Duration::from_millis(10),
        ..RecorderConfig::default()
    };
    let recorder = Recorder::start(Instant::now(), config, samplers);
    // Run for at least 10 ticks of the healthy sampler (bounded: 10 s).
    for _ in 0..1000 {
        if good.load(Ordering::SeqCst) >= 10 && flaky.load(Ordering::SeqCst) >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = recorder.stop().await;
    assert!(good.load(Ordering::SeqCst) >= 10);

    // No /metrics at all: asked once, then off, with the reason; not one error counted.
    assert_eq!(
        missing.load(Ordering::SeqCst),
        1,
        "scraped again after a 404"
    );
    let report = |name: &str| t.samplers.iter().find(|s| s.name == name).unwrap();
    let engine = report("engine");
    assert_eq!((engine.ok, engine.errors), (0, 0), "{engine:?}");
    let why = engine.unavailable.as_deref().unwrap();
    assert!(why.contains("/none answered HTTP 404"), "{why}");
    assert!(
        why.contains("engine telemetry is off for this run"),
        "{why}"
    );

    // Metrics that went away mid-run: the 404s after good scrapes are errors, retried.
    let gone = report("dcgm");
    assert_eq!(gone.ok, 2, "{gone:?}");
    assert!(gone.errors >= 2, "{gone:?}");
    assert_eq!(gone.unavailable, None);
    assert!(
        gone.last_error.as_deref().unwrap().contains("HTTP 404"),
        "{gone:?}"
    );

    // The summary carries the reason.
    let s = t.summarize(0, u64::MAX);
    assert_eq!(s.engine_unavailable_reason.as_deref(), Some(why));
}
