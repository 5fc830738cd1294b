//! servebench: which serving engine, on which GPU, gives the throughput, latency and cost you need?
//!
//! See `ARCHITECTURE.md` for the map. Data flows one way:
//! config → workload/arrival → load → client → records → journal → metrics → cost → report.

pub mod app;
pub mod arrival;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod cost;
pub mod journal;
pub mod launch;
pub mod load;
pub mod metrics;
pub mod openai;
pub mod record;
pub mod report;
pub mod server;
pub mod sim;
pub mod structured;
pub mod suite;
pub mod sweep;
pub mod telemetry;
pub mod workload;
