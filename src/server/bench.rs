//! Measurements of the embedded server with a bare client (raw TCP keep-alive connections,
//! counting SSE frames as the bytes arrive), so the server is what gets measured. Ignored by
//! default; they print figures and assert only that every token arrived. Run in release:
//!
//! `cargo test --release --lib server::bench -- --ignored --nocapture --test-threads 1`

use super::*;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn request(max_tokens: u32) -> Vec<u8> {
    let body = format!(
        r#"{{"model":"servebench-fixed","prompt":"hello there","max_tokens":{max_tokens},"ignore_eos":true,"stream":true}}"#
    );
    format!(
        "POST /v1/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> io::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Conn {
            tcp,
            buf: vec![0u8; 256 * 1024],
        })
    }

    /// One streamed completion: when it was sent, and when each token frame arrived.
    async fn stream(&mut self, request: &[u8]) -> io::Result<(Instant, Vec<Instant>)> {
        const END: &[u8; 7] = b"\r\n0\r\n\r\n";
        let sent = Instant::now();
        self.tcp.write_all(request).await?;
        let mut arrivals = Vec::new();
        let mut tail = [0u8; 7];
        loop {
            let n = self.tcp.read(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::other("server closed the connection"));
            }
            let now = Instant::now();
            let data = &self.buf[..n];
            let mut last = tail[6];
            for &b in data {
                if b == b'\n' && last == b'\n' {
                    arrivals.push(now);
                }
                last = b;
            }
            if n >= 7 {
                tail.copy_from_slice(&data[n - 7..]);
            } else {
                tail.rotate_left(n);
                tail[7 - n..].copy_from_slice(data);
            }
            if &tail == END {
                break;
            }
        }
        // The last frame is `data: [DONE]`.
        arrivals.pop();
        Ok((sent, arrivals))
    }
}

/// CPU seconds used so far by the threads whose name starts with `prefix`.
fn thread_cpu_secs(prefix: &str) -> f64 {
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut total = 0.0;
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after `(comm) `: state is field 3 of stat(5), utime 14, stime 15.
        let after = stat.rsplit_once(") ").map(|(_, s)| s).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks_per_sec;
    }
    total
}

/// `clients` connections each run `per_client` streamed requests back to back.
async fn run_load(
    addr: SocketAddr,
    clients: usize,
    per_client: usize,
    max_tokens: u32,
    frames: usize,
) -> Vec<(Instant, Vec<Instant>)> {
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(async move {
                let req = request(max_tokens);
                let mut conn = Conn::open(addr).await.expect("connect");
                let mut out = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    out.push(conn.stream(&req).await.expect("stream"));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    for (_, arrivals) in &all {
        assert_eq!(arrivals.len(), frames);
    }
    all
}

/// Server worker threads: `SERVEBENCH_BENCH_SERVER_WORKERS`, default 1.
fn server_workers() -> usize {
    std::env::var("SERVEBENCH_BENCH_SERVER_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

async fn fixed_server(config: FixedTimingConfig) -> RunningServer {
    let workers = server_workers();
    println!("server: {workers} worker thread(s)");
    spawn_dedicated(
        Arc::new(FixedTiming::new(config)),
        ServerOptions::default(),
        workers,
    )
    .expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn bench_fast_stream_throughput() {
    let server = fixed_server(FixedTimingConfig::default()).await;
    for round in 0..3 {
        let cpu0 = thread_cpu_secs("servebench-serv");
        let start = Instant::now();
        let results = run_load(server.addr(), 64, 10, 1024, 1024).await;
        let secs = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_secs("servebench-serv") - cpu0;
        let tokens = results.len() * 1024;
        println!(
            "64 streams x 1024 tokens, 1 per chunk, round {round}: {tokens} tokens in {secs:.3} s = {:.0} tokens/s; server thread {:.2} core",
            tokens as f64 / secs,
            cpu / secs
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn bench_request_rate() {
    let server = fixed_server(FixedTimingConfig::default()).await;
    for round in 0..3 {
        let cpu0 = thread_cpu_secs("servebench-serv");
        let start = Instant::now();
        let results = run_load(server.addr(), 256, 200, 1, 1).await;
        let secs = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_secs("servebench-serv") - cpu0;
        println!(
            "max_tokens 1, 256 in flight, round {round}: {} requests in {secs:.3} s = {:.0} req/s; server thread {:.2} core",
            results.len(),
            results.len() as f64 / secs,
            cpu / secs
        );
    }
    server.shutdown().await;
}

fn timing_summary(label: &str, results: &[(Instant, Vec<Instant>)]) {
    let mut ttft: Vec<f64> = Vec::new();
    let mut icl: Vec<f64> = Vec::new();
    for (sent, arrivals) in results {
        ttft.push((arrivals[0] - *sent).as_secs_f64() * 1e3);
        for pair in arrivals.windows(2) {
            icl.push((pair[1] - pair[0]).as_secs_f64() * 1e3);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let pct = |v: &mut Vec<f64>, p: usize| {
        v.sort_by(f64::total_cmp);
        v[(v.len() - 1) * p / 100]
    };
    let (m_ttft, m_icl) = (mean(&ttft), mean(&icl));
    // Results are grouped by connection, `per_client` in a row: show TTFT by position.
    let per_client = results.len() / 256;
    let by_position: Vec<String> = (0..per_client)
        .map(|k| {
            let v: Vec<f64> = ttft.iter().skip(k).step_by(per_client).copied().collect();
            format!("{:.2}", mean(&v))
        })
        .collect();
    println!("{label}: mean TTFT by request position on its connection: {by_position:?}");
    println!(
        "{label}: {} requests: TTFT mean {m_ttft:.3} ms p50 {:.3} p99 {:.3} max {:.3}; inter-chunk gap mean {m_icl:.4} ms p50 {:.4} p99 {:.4}",
        results.len(),
        pct(&mut ttft, 50),
        pct(&mut ttft, 99),
        pct(&mut ttft, 100),
        pct(&mut icl, 50),
        pct(&mut icl, 99),
    );
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn bench_fixed_timing_accuracy() {
    // Client worker threads: `SERVEBENCH_BENCH_CLIENT_WORKERS`, default 1.
    let client_workers = std::env::var("SERVEBENCH_BENCH_CLIENT_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_workers)
        .enable_all()
        .build()
        .expect("client runtime");
    println!("client: {client_workers} worker thread(s)");
    runtime.block_on(async {
        let mut config = FixedTimingConfig {
            ttft: Duration::from_millis(50),
            itl: Duration::from_millis(10),
            ..Default::default()
        };
        let server = fixed_server(config.clone()).await;
        // 256 connections x 8 requests = 2048 requests of 64 tokens.
        let results = run_load(server.addr(), 256, 8, 64, 64).await;
        timing_summary(
            "TTFT 50 ms, ITL 10 ms, 1 token/chunk, 256 streams",
            &results,
        );
        server.shutdown().await;

        config.tokens_per_chunk = 4;
        let server = fixed_server(config).await;
        let results = run_load(server.addr(), 256, 8, 64, 16).await;
        timing_summary(
            "TTFT 50 ms, ITL 10 ms, 4 tokens/chunk (gap 40 ms), 256 streams",
            &results,
        );
        server.shutdown().await;
    });
}

/// Records, per request, when the server admitted it and when its first event was produced.
struct Recording {
    inner: FixedTiming,
    log: Arc<std::sync::Mutex<Vec<(u64, Instant, Instant)>>>,
}

impl Backend for Recording {
    fn generate(&self, req: GenerateRequest) -> GenStream {
        let index = req.index;
        let received = req.received_at;
        let log = Arc::clone(&self.log);
        let mut first = true;
        Box::pin(self.inner.generate(req).inspect(move |_| {
            if first {
                first = false;
                if let Ok(mut l) = log.lock() {
                    l.push((index, received, Instant::now()));
                }
            }
        }))
    }
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn bench_first_wave_breakdown() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(async {
        for run in 0..2 {
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            let backend = Recording {
                inner: FixedTiming::new(FixedTimingConfig {
                    ttft: Duration::from_millis(50),
                    itl: Duration::from_millis(10),
                    ..Default::default()
                }),
                log: Arc::clone(&log),
            };
            let server = spawn_dedicated(Arc::new(backend), ServerOptions::default(), server_workers())
                .expect("server");
            let start = Instant::now();
            let results = run_load(server.addr(), 256, 4, 64, 64).await;
            server.shutdown().await;
            let log = log.lock().map(|l| l.clone()).unwrap_or_default();
            let wave = |lo: u64, hi: u64| {
                let v: Vec<&(u64, Instant, Instant)> =
                    log.iter().filter(|(i, _, _)| (lo..hi).contains(i)).collect();
                let n = v.len().max(1) as f64;
                let late: f64 = v
                    .iter()
                    .map(|(_, r, f)| (*f - *r).as_secs_f64() * 1e3 - 50.0)
                    .sum::<f64>()
                    / n;
                let arrive_spread = v
                    .iter()
                    .map(|(_, r, _)| (*r - start).as_secs_f64() * 1e3)
                    .fold((f64::MAX, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
                (late, arrive_spread)
            };
            let ttft_first: f64 = results
                .iter()
                .step_by(4)
                .map(|(s, a)| (a[0] - *s).as_secs_f64() * 1e3)
                .sum::<f64>()
                / 256.0;
            let sent_spread = results
                .iter()
                .step_by(4)
                .map(|(s, _)| (*s - start).as_secs_f64() * 1e3)
                .fold((f64::MAX, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
            println!(
                "run {run}: first wave client TTFT mean {ttft_first:.2} ms; sent between {sent_spread:.2?} ms; server: (first-event lateness after received+50ms, received between ms) first wave {:.2?}, later {:.2?}",
                wave(0, 256),
                wave(256, 1024)
            );
        }
    });
}
