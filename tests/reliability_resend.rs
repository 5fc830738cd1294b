//! Resends, through the binary: a request is sent again only when it provably never reached
//! the server, every resend is in the summary, the result file and the console table, and a
//! reset after the request was written is the failure `reset_after_send` (issue 12: a server
//! that read each request and then reset got 20 requests as 80 POSTs, and with every other
//! request reset the summary showed 19 ok / 1 failed while 18 resets happened).
//!
//! The servers are raw sockets on 127.0.0.1, so each test controls when a connection closes.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const N: usize = 20;
/// `--random-output-len` of the runs: tells a measured POST from a startup probe.
const MAX_TOKENS: &str = "\"max_tokens\":6";

#[derive(Clone, Copy)]
enum Pattern {
    /// Read the whole request, then reset (SO_LINGER 0) without answering: every other
    /// measured request.
    ResetEveryOther,
    /// Answer each request, then shut the connection down as the next request arrives,
    /// unread: llama.cpp's server after every stream (it says `Keep-Alive` and closes).
    CloseAfterEachAnswer,
}

/// What the server saw: measured POSTs it read.
#[derive(Default)]
struct Seen {
    posts: AtomicUsize,
}

fn answer(head: &str) -> Vec<u8> {
    if head.starts_with("GET /v1/models") {
        let body = r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#;
        return format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
    }
    if head.starts_with("GET ") {
        return b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec();
    }
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for event in [
        "data: {\"choices\":[{\"index\":0,\"text\":\"a\"}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"text\":\"b\",\"finish_reason\":\"length\"}]}\n\n",
        "data: [DONE]\n\n",
    ] {
        out.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Reads one request (head and `content-length` body): (head, body).
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String)> {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                buf.drain(..end + 4 + len);
                return Some((head, body));
            }
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn connection(mut sock: TcpStream, pattern: Pattern, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    while let Some((head, body)) = read_request(&mut sock, &mut buf).await {
        let measured = head.starts_with("POST") && body.contains(MAX_TOKENS);
        let n = if measured {
            seen.posts.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            0
        };
        match pattern {
            Pattern::ResetEveryOther if measured && n % 2 == 0 => {
                let _ = sock.set_zero_linger();
                return;
            }
            Pattern::CloseAfterEachAnswer if head.starts_with("POST") => {
                if sock.write_all(&answer(&head)).await.is_err() {
                    return;
                }
                let _ = sock.readable().await;
                let _ = sock.shutdown().await;
                // Hold the socket a while (closing it with unread data would reset it).
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
            _ => {
                if sock.write_all(&answer(&head)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Starts the server on its own runtime thread; returns its address and what it saw.
fn server(pattern: Pattern) -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let seen2 = Arc::clone(&seen);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(connection(sock, pattern, Arc::clone(&seen2)));
            }
        });
    });
    (rx.recv().unwrap(), seen)
}

/// One run of N requests, one at a time; returns (result JSON, console output).
fn run(addr: SocketAddr, dir: &std::path::Path) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_servebench"))
        .args(["run", "--no-progress", "--base-url"])
        .arg(format!("http://{addr}"))
        .args(["--endpoint", "/v1/completions", "--model", "m"])
        .args(["--num-prompts", &N.to_string(), "--max-concurrency", "1"])
        .args(["--num-warmups", "0", "--random-input-len", "8"])
        .args(["--random-output-len", "6", "--request-timeout", "10"])
        .args(["--result-filename", "r.json", "--result-dir"])
        .arg(dir)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("r.json")).unwrap_or_else(|e| {
        panic!(
            "no result file ({e}); exit {:?}:\n{console}",
            out.status.code()
        )
    });
    (serde_json::from_str(&text).unwrap(), console)
}

#[test]
fn a_server_that_resets_after_reading_gets_each_request_once_and_every_reset_is_counted() {
    let (addr, seen) = server(Pattern::ResetEveryOther);
    let dir = tempfile::tempdir().unwrap();
    let (r, console) = run(addr, dir.path());
    assert_eq!(
        seen.posts.load(Ordering::SeqCst),
        N,
        "no request was sent twice"
    );
    assert_eq!(r["completed"], N / 2, "{console}");
    assert_eq!(r["failed"], N / 2, "{console}");
    assert_eq!(r["errors_by_kind"]["reset_after_send"], N / 2, "{console}");
    assert_eq!(
        (r["resends"].as_u64(), r["requests_resent"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(console.contains("reset_after_send"), "{console}");
    assert!(!console.contains("Resends"), "{console}");
}

#[test]
fn a_server_that_closes_each_connection_after_answering_loses_nothing_and_the_resend_shows() {
    let (addr, seen) = server(Pattern::CloseAfterEachAnswer);
    let dir = tempfile::tempdir().unwrap();
    let (r, console) = run(addr, dir.path());
    assert_eq!(r["completed"], N, "{console}");
    // The first request that met a closing connection went again; then none was reused.
    assert_eq!(
        (r["resends"].as_u64(), r["requests_resent"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        seen.posts.load(Ordering::SeqCst),
        N,
        "each request read once"
    );
    assert!(
        console.contains("Resends (requests resent):               1 (1)"),
        "{console}"
    );
}
