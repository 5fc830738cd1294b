//! `servebench serve`, and the embedded server that `run` starts when no URL is given.

use super::{AppError, ExitStatus};
use crate::cli::ServeArgs;
use crate::config::{ConfigError, EmbeddedConfig};
use crate::server::{self, FixedTiming, RunningServer, ServerOptions};
use anyhow::Context;
use std::sync::Arc;

/// The embedded fixed-timing server on a free 127.0.0.1 port, on its own runtime thread(s) so
/// its work never queues behind the client's. Stops when dropped.
pub struct EmbeddedServer {
    running: RunningServer,
}

impl EmbeddedServer {
    pub fn start(cfg: &EmbeddedConfig, model: &str) -> anyhow::Result<EmbeddedServer> {
        let backend = Arc::new(FixedTiming::new(cfg.timing()));
        let running = server::spawn_dedicated(backend, options(cfg, model), cfg.server_threads)
            .context("starting the embedded server")?;
        Ok(EmbeddedServer { running })
    }

    pub fn url(&self) -> &str {
        self.running.url()
    }

    pub fn stats(&self) -> &Arc<server::ServerStats> {
        self.running.stats()
    }
}

fn options(cfg: &EmbeddedConfig, model: &str) -> ServerOptions {
    ServerOptions {
        model: model.to_string(),
        faults: cfg.fault_config(),
        seed: cfg.fault_seed,
        reasoning: cfg.reasoning,
        ..ServerOptions::default()
    }
}

/// `--reject-fields`, each name checked: empty names (a stray comma) would match nothing and
/// hide a typo.
fn reject_fields(names: &[String]) -> Result<Vec<String>, AppError> {
    names
        .iter()
        .map(|n| {
            let n = n.trim();
            if n.is_empty() || n.split('.').any(str::is_empty) {
                return Err(AppError::usage(ConfigError {
                    field: "--reject-fields".into(),
                    value: names.join(","),
                    problem: "a field name is empty; give names such as ignore_eos,min_tokens"
                        .into(),
                }));
            }
            Ok(n.to_string())
        })
        .collect()
}

/// `--host`, as an address.
pub(super) fn parse_host(host: &str) -> Result<std::net::IpAddr, AppError> {
    host.parse().map_err(|_| {
        AppError::usage(ConfigError {
            field: "--host".into(),
            value: host.to_string(),
            problem: "not an IP address; use 127.0.0.1 (or ::1)".into(),
        })
    })
}

/// Bind `ip:port`, print the URL on stdout (scripts read it) and `banner(url)` on stderr, and
/// serve `router` until Ctrl-C. Runs inside a runtime (`build_router` may spawn tasks on it).
pub(super) async fn serve_until_ctrl_c(
    ip: std::net::IpAddr,
    port: u16,
    build_router: impl FnOnce() -> (axum::Router, String),
) -> Result<(), AppError> {
    let listener = tokio::net::TcpListener::bind((ip, port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {ip}:{port}; is the port in use? pick another with --port (0 = any)"
            )
        })
        .map_err(AppError::failed)?;
    let addr = listener.local_addr().map_err(AppError::failed)?;
    let (router, banner) = build_router();
    println!("http://{addr}");
    eprintln!("{banner} at http://{addr}; Ctrl-C stops");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server::serve_until(listener, router, stop)
        .await
        .map_err(AppError::failed)
}

pub(super) fn command(args: &ServeArgs) -> Result<ExitStatus, AppError> {
    let cfg = EmbeddedConfig::from_args(&args.embedded).map_err(AppError::usage)?;
    let mut opts = options(&cfg, &args.model);
    opts.reject_fields = reject_fields(&args.reject_fields)?;
    opts.validate().map_err(AppError::usage)?;
    let ip = parse_host(&args.host)?;
    let rt = super::runtime(Some(cfg.server_threads), "servebench-server")?;
    rt.block_on(async move {
        let mut stats = None;
        serve_until_ctrl_c(ip, args.port, || {
            let backend = Arc::new(FixedTiming::new(cfg.timing()));
            let (router, control) = server::app_with_control(backend, opts);
            stats = Some(Arc::clone(control.stats()));
            let mut banner = format!(
                "serving model `{}` (ttft {:?}, itl {:?}, {} tokens/chunk)",
                args.model, cfg.ttft, cfg.itl, cfg.tokens_per_chunk
            );
            if !args.reject_fields.is_empty() {
                banner.push_str(&format!(
                    "; answering 422 to {}",
                    args.reject_fields.join(", ")
                ));
            }
            (router, banner)
        })
        .await?;
        if let Some(stats) = stats {
            let faults: Vec<String> = stats
                .fault_counts()
                .iter()
                .map(|(k, n)| format!("{}={n}", k.label()))
                .collect();
            eprintln!(
                "stopped: {} output tokens served; faults injected: {}",
                stats.generation_tokens(),
                if faults.is_empty() {
                    "none".to_string()
                } else {
                    faults.join(" ")
                }
            );
        }
        Ok(ExitStatus::Success)
    })
}
