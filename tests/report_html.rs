//! Opens the study's `report.html` in headless Chromium: it renders (a non-blank screenshot),
//! shows its tables and charts, logs no console error and makes no network request.
//!
//! Skipped, with the reason printed, when no Chromium is installed (Debian: `apt-get install
//! chromium`). Network requests are caught by pointing Chromium at a proxy on 127.0.0.1 port 0
//! that this test owns: any http(s) fetch the page attempts arrives there. Negative controls
//! (a page that does fetch and does log an error) prove both detectors work on this Chromium.

use servebench::cost::{cost_summary, Price};
use servebench::metrics::{Distribution, Summary};
use servebench::report::study::{
    write_study, Cell, Environment, GpuSummary, Study, WorkloadSpec, STUDY_SCHEMA_VERSION,
};
use servebench::sim::catalog::Catalog;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a single Chromium run may take before the test kills it.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);

fn chromium() -> Option<PathBuf> {
    let candidates = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for c in candidates {
            let p = dir.join(c);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn dist(n: u64, ms: f64) -> Distribution {
    Distribution {
        count: n,
        mean: ms * 1.1,
        std: ms * 0.2,
        min: ms * 0.7,
        max: ms * 1.7,
        percentiles: vec![
            (50.0, ms),
            (90.0, ms * 1.3),
            (95.0, ms * 1.45),
            (99.0, ms * 1.6),
        ],
    }
}

fn study() -> Study {
    let price =
        Price::from_catalog(&Catalog::builtin(), "g5.xlarge").expect("g5.xlarge is in the catalog");
    let mut cells = Vec::new();
    for (fw, k) in [("vllm", 1.0), ("sglang", 0.9)] {
        for (wl, n, max_tokens, conc, tps, rps, ms) in [
            ("Small", 10, 64, 2, 800.0, 6.3, 300.0),
            ("Medium", 50, 128, 5, 1700.0, 13.5, 460.0),
            ("Large", 100, 256, 10, 3000.0, 11.7, 850.0),
        ] {
            let summary = Summary {
                attempted: n,
                completed: n,
                success_rate: 1.0,
                request_throughput: rps * k,
                output_throughput: tps * k,
                total_token_throughput: tps * k * 1.5,
                e2el_ms: dist(n, ms / k),
                ttft_ms: dist(n, ms / k / 20.0),
                ..Summary::default()
            };
            cells.push(Cell {
                framework: fw.into(),
                workload: wl.into(),
                spec: WorkloadSpec {
                    requests: n,
                    max_tokens,
                    concurrency: Some(conc),
                    warmup_requests: 2,
                    ..WorkloadSpec::default()
                },
                repeat: 0,
                cost: Some(cost_summary(&price, &summary)),
                summary,
                gpu: Some(GpuSummary {
                    util_mean_pct: 30.0 + 5.0 * conc as f64,
                    util_max_pct: 95.0,
                    mem_max_gb: 21.0,
                    source: "simulator".into(),
                    power_mean_w: Some(100.0 + 10.0 * conc as f64),
                    joules_per_output_token: Some(0.2),
                }),
                gpu_unavailable: None,
                prefix_cache_hit_rate: None,
                simulated: true,
                result_file: format!("{fw}/benchmark_{}.json", wl.to_lowercase()),
            });
        }
    }
    Study {
        schema_version: STUDY_SCHEMA_VERSION,
        title: "vLLM vs SGLang on g5.xlarge".into(),
        generated_at: chrono::DateTime::parse_from_rfc3339("2026-11-28T16:00:00Z")
            .expect("valid date")
            .with_timezone(&chrono::Utc),
        simulated: true,
        environment: Environment {
            instance: Some("g5.xlarge".into()),
            gpu: Some("A10G".into()),
            gpu_count: Some(1),
            region: Some("us-east-1".into()),
            model: "facebook/opt-125m".into(),
            servebench_version: env!("CARGO_PKG_VERSION").into(),
            price: Some(price),
            ..Environment::default()
        },
        cells,
        notes: vec![],
    }
}

/// A TCP listener standing in for an HTTP proxy: it records each request line and answers none.
struct Trap {
    port: u16,
    /// First line of each request (`CONNECT host:443 HTTP/1.1`, `GET http://… HTTP/1.1`).
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trap {
    fn new() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 512];
                        let n = conn.read(&mut buf).unwrap_or(0);
                        let line = String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_string();
                        if let Ok(mut v) = r.lock() {
                            v.push(line);
                        }
                        // Dropped: the fetch fails, which is all the page deserves.
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Trap {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Requests the page made: everything the trap saw except Chromium's own background calls
    /// (clock sync, component updater, account check…), which no page causes and no flag fully
    /// turns off. A request is excused only when its host is a Google service domain *and* the
    /// page's source does not name that host, so a page linking Google Fonts or a CDN is still
    /// caught.
    fn page_requests(&self, page_source: &str) -> Vec<String> {
        const CHROMIUM_SERVICE_DOMAINS: [&str; 4] =
            ["google.com", "googleapis.com", "gstatic.com", "gvt1.com"];
        let excused = |line: &str| {
            let Some(host) = request_host(line) else {
                return false;
            };
            let service = CHROMIUM_SERVICE_DOMAINS
                .iter()
                .any(|d| host == *d || host.ends_with(&format!(".{d}")));
            service && !page_source.contains(host)
        };
        self.requests
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|line| !excused(line))
            .collect()
    }
}

/// The host of a proxy request line: `CONNECT host:443 HTTP/1.1` or `GET http://host/… HTTP/1.1`.
fn request_host(line: &str) -> Option<&str> {
    let target = line.split_whitespace().nth(1)?;
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .unwrap_or(target);
    let authority = rest.split('/').next()?;
    authority
        .rsplit_once(':')
        .map_or(Some(authority), |(h, _)| Some(h))
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Run {
    stdout: String,
    stderr: String,
}

/// Run Chromium headless on `page` with `extra` arguments, every request sent to `trap`.
fn run_chromium(bin: &Path, page: &Path, trap: &Trap, profile: &Path, extra: &[String]) -> Run {
    let out_path = profile.join("stdout.txt");
    let err_path = profile.join("stderr.txt");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--no-pings",
        "--disable-extensions",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
    ])
    .arg(format!(
        "--user-data-dir={}",
        profile.join("profile").display()
    ))
    .arg(format!("--proxy-server=http://127.0.0.1:{}", trap.port))
    // Route even loopback through the trap (Chromium bypasses the proxy for it by default).
    .arg("--proxy-bypass-list=<-loopback>")
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out_path).expect("stdout file"))
    .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().expect("start chromium");
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > CHROMIUM_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within {CHROMIUM_DEADLINE:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("waiting for chromium: {e}"),
        }
    }
    Run {
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Console messages at error level, or uncaught exceptions, as Chromium logs them.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                && (l.contains(":ERROR:") || l.contains("Uncaught") || l.contains("Refused"))
        })
        .collect()
}

fn non_blank(png_path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(png_path).expect("screenshot written");
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("screenshot decodes");
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    for px in bytes.chunks(channels) {
        colours.insert(px[..3.min(px.len())].to_vec());
        if colours.len() > 1000 {
            break;
        }
    }
    (info.width, info.height, colours.len())
}

#[test]
fn report_html_renders_offline_in_headless_chromium() {
    let Some(bin) = chromium() else {
        eprintln!("skipped: no chromium on PATH (Debian: apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_study(&study(), dir.path()).expect("write the study");
    let trap = Trap::new();

    // Negative controls: this Chromium does report a fetch and a console error when there is one.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><head>\
         <link rel=\"stylesheet\" href=\"https://fonts.googleapis.com/css?family=Roboto\"></head>\
         <body><img src=\"http://example.invalid/x.png\">\
         <script>console.error('control-error')</script></body></html>",
    )
    .expect("write control page");
    let cprof = tempfile::tempdir().expect("tempdir");
    let run = run_chromium(&bin, &control, &trap, cprof.path(), &["--dump-dom".into()]);
    let errors_seen =
        !console_errors(&run.stderr).is_empty() || run.stderr.contains("control-error");
    assert_eq!(
        {
            let mut seen = trap.page_requests(&std::fs::read_to_string(&control).unwrap_or_default());
            seen.sort();
            seen.dedup();
            seen
        },
        vec![
            "CONNECT fonts.googleapis.com:443 HTTP/1.1".to_string(),
            "GET http://example.invalid/x.png HTTP/1.1".to_string(),
        ],
        "the proxy trap should see exactly the control page's requests (a Google-hosted font too); stderr:\n{}",
        run.stderr
    );
    trap.requests.lock().expect("trap lock").clear();
    let console_checked = errors_seen;
    if !console_checked {
        eprintln!(
            "note: this chromium does not log console messages to stderr; console check skipped"
        );
    } else {
        eprintln!("console check active: the control page's error was seen");
    }

    // The report: DOM.
    let prof = tempfile::tempdir().expect("tempdir");
    let run = run_chromium(
        &bin,
        &files.html,
        &trap,
        prof.path(),
        &["--dump-dom".into()],
    );
    let dom = run.stdout;
    assert!(
        dom.contains("<h1>vLLM vs SGLang on g5.xlarge</h1>"),
        "DOM lacks the title:\n{dom}"
    );
    assert!(
        dom.matches("<table").count() >= 8,
        "too few tables in the DOM"
    );
    assert_eq!(
        dom.matches("<img src=\"data:image/png;base64,").count(),
        4,
        "four inline charts"
    );
    assert!(dom.contains("Simulated results."));
    if console_checked {
        assert_eq!(
            console_errors(&run.stderr),
            Vec::<&str>::new(),
            "console errors"
        );
    }

    // The report: screenshot.
    let shot = prof.path().join("shot.png");
    let run = run_chromium(
        &bin,
        &files.html,
        &trap,
        prof.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".into(),
        ],
    );
    let (w, h, colours) = non_blank(&shot);
    assert!(w >= 1000 && h >= 2000, "screenshot {w}×{h}");
    assert!(colours > 50, "screenshot looks blank ({colours} colours)");
    if console_checked {
        assert_eq!(
            console_errors(&run.stderr),
            Vec::<&str>::new(),
            "console errors"
        );
    }
    assert_eq!(
        trap.page_requests(&std::fs::read_to_string(&files.html).unwrap_or_default()),
        Vec::<String>::new(),
        "report.html made network requests"
    );
}
