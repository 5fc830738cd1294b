//! The engine model behind the OpenAI-compatible HTTP layer, in real time.
//!
//! [`SimBackend`] implements [`crate::server::Backend`]. One engine-loop task owns the
//! [`Engine`]: it takes new requests at step boundaries (as the real engines do), runs a step,
//! sleeps until the step's end on the precise timer and then sends each request's tokens to its
//! stream. Step ends are absolute deadlines on one timeline (`epoch + end_ns`), so lateness does
//! not accumulate and a busy engine reproduces `predict`'s virtual timeline.
//!
//! `/metrics` speaks the engine's own Prometheus dialect (`vllm:*` or `sglang:*`) plus simulated
//! GPU gauges named as NVIDIA's DCGM exporter names them (`DCGM_FI_DEV_GPU_UTIL`,
//! `DCGM_FI_DEV_FB_USED`, `DCGM_FI_DEV_FB_FREE`), so the telemetry pipeline can be exercised
//! end to end without a GPU.

use super::engine::{admission_error, Engine, EngineFacts, EngineGauges, SimRequest};
use super::kv::PrefixSegment;
use super::profile::{EngineKind, EngineProfile};
use crate::server::{
    output_length, stream_from_unbounded, Backend, FinishReason, GenEvent, GenStream,
    GenerateRequest,
};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Words per prefix segment when deriving shared-prefix identities from prompt text.
const SEGMENT_WORDS: usize = 16;

/// Lateness beyond which the engine timeline is re-anchored to the wall clock.
const STALL_NS: u64 = 20_000_000;

/// Window over which GPU utilization and generation throughput gauges are averaged.
const RATE_WINDOW_NS: u64 = 1_000_000_000;

struct Submit {
    req: SimRequest,
    finish: FinishReason,
    events: mpsc::UnboundedSender<GenEvent>,
}

/// What `/metrics` reads: the latest gauges and a short history for rates.
#[derive(Default)]
struct MetricsState {
    gauges: EngineGauges,
    /// (t_ns, cumulative GPU-busy ns, cumulative generated tokens) after each step.
    history: VecDeque<(u64, f64, u64)>,
    busy_ns: f64,
}

impl MetricsState {
    fn record(&mut self, g: EngineGauges, busy_ns: f64) {
        self.busy_ns += busy_ns;
        self.gauges = g;
        self.history
            .push_back((g.t_ns, self.busy_ns, g.generation_tokens_total));
        while self
            .history
            .front()
            .is_some_and(|&(t, _, _)| t + 2 * RATE_WINDOW_NS < g.t_ns)
        {
            self.history.pop_front();
        }
    }

    /// (GPU busy fraction, generated tokens per second) over the window ending at `now_ns`.
    fn rates(&self, now_ns: u64) -> (f64, f64) {
        let from = now_ns.saturating_sub(RATE_WINDOW_NS);
        let (busy_now, tok_now) = self
            .history
            .back()
            .map(|&(_, b, t)| (b, t))
            .unwrap_or((0.0, 0));
        let (busy_then, tok_then) = self
            .history
            .iter()
            .rev()
            .find(|&&(t, _, _)| t <= from)
            .map(|&(_, b, t)| (b, t))
            .unwrap_or((0.0, 0));
        let window = now_ns.clamp(1, RATE_WINDOW_NS) as f64;
        let util = ((busy_now - busy_then) / window).clamp(0.0, 1.0);
        let tps = (tok_now - tok_then) as f64 / (window / 1e9);
        (util, tps)
    }
}

/// The simulated engine as a server backend.
pub struct SimBackend {
    tx: mpsc::UnboundedSender<Submit>,
    metrics: Arc<Mutex<MetricsState>>,
    facts: EngineFacts,
    profile: EngineProfile,
    model: String,
    gpu: String,
    gpu_memory_bytes: f64,
    tp: u32,
    /// Modelled power, where the catalog has the GPU's TDP.
    power: Option<super::power::PowerModel>,
    epoch: Instant,
}

impl SimBackend {
    /// Start the engine loop on the current tokio runtime. `served_model` labels the metrics.
    pub fn spawn(engine: Engine, served_model: &str) -> SimBackend {
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(Mutex::new(MetricsState::default()));
        let epoch = Instant::now();
        let hw = engine.hardware();
        let backend = SimBackend {
            tx,
            metrics: metrics.clone(),
            facts: engine.facts(),
            profile: engine.profile().clone(),
            model: served_model.to_string(),
            gpu: hw.gpu.name.clone(),
            gpu_memory_bytes: hw.gpu.memory_gib * 1024.0 * 1024.0 * 1024.0,
            tp: hw.tp,
            power: super::power::PowerModel::of(&hw.gpu),
            epoch,
        };
        tokio::spawn(engine_loop(engine, rx, metrics, epoch));
        backend
    }

    pub fn facts(&self) -> EngineFacts {
        self.facts
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The Prometheus text for the current state.
    pub fn render_metrics(&self) -> String {
        let now = self.now_ns();
        let (g, util, tps, busy_ns) = match self.metrics.lock() {
            Ok(m) => {
                let (u, t) = m.rates(now);
                (m.gauges, u, t, m.busy_ns)
            }
            Err(_) => (EngineGauges::default(), 0.0, 0.0, 0.0),
        };
        let label = format!("model_name=\"{}\"", escape_label(&self.model));
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{{label}}} {value}");
        };
        match self.profile.engine {
            EngineKind::Vllm => {
                metric(
                    "vllm:num_requests_running",
                    "gauge",
                    "Number of requests in model execution batches.",
                    f64::from(g.running),
                );
                metric(
                    "vllm:num_requests_waiting",
                    "gauge",
                    "Number of requests waiting to be processed.",
                    f64::from(g.waiting),
                );
                metric(
                    "vllm:kv_cache_usage_perc",
                    "gauge",
                    "KV-cache usage. 1 means 100 percent usage.",
                    g.kv_usage,
                );
                metric(
                    "vllm:prefix_cache_queries_total",
                    "counter",
                    "Prefix cache queries, in terms of number of queried tokens.",
                    g.prefix_cache_queries_total as f64,
                );
                metric(
                    "vllm:prefix_cache_hits_total",
                    "counter",
                    "Prefix cache hits, in terms of number of cached tokens.",
                    g.prefix_cache_hits_total as f64,
                );
                metric(
                    "vllm:prompt_tokens_total",
                    "counter",
                    "Number of prefill tokens processed.",
                    g.prompt_tokens_total as f64,
                );
                metric(
                    "vllm:generation_tokens_total",
                    "counter",
                    "Number of generation tokens processed.",
                    g.generation_tokens_total as f64,
                );
                metric(
                    "vllm:num_preemptions_total",
                    "counter",
                    "Cumulative number of preemption from the engine.",
                    g.preemptions_total as f64,
                );
            }
            EngineKind::Sglang => {
                let hit_rate = if g.prefix_cache_queries_total > 0 {
                    g.prefix_cache_hits_total as f64 / g.prefix_cache_queries_total as f64
                } else {
                    0.0
                };
                metric(
                    "sglang:num_running_reqs",
                    "gauge",
                    "The number of running requests.",
                    f64::from(g.running),
                );
                metric(
                    "sglang:num_queue_reqs",
                    "gauge",
                    "The number of requests in the waiting queue.",
                    f64::from(g.waiting),
                );
                metric(
                    "sglang:token_usage",
                    "gauge",
                    "The token usage.",
                    g.kv_usage,
                );
                // SGLang's gauge is the last prefill batch's rate; the simulator shows its
                // running rate there and the counters (SGLang ≥ 0.5) give the exact window.
                metric(
                    "sglang:cache_hit_rate",
                    "gauge",
                    "The prefix cache hit rate.",
                    hit_rate,
                );
                metric(
                    "sglang:cached_tokens_total",
                    "counter",
                    "Number of cached prompt tokens.",
                    g.prefix_cache_hits_total as f64,
                );
                metric(
                    "sglang:gen_throughput",
                    "gauge",
                    "The generation throughput (token/s).",
                    tps,
                );
                metric(
                    "sglang:prompt_tokens_total",
                    "counter",
                    "Number of prefill tokens processed.",
                    g.prompt_tokens_total as f64,
                );
                metric(
                    "sglang:generation_tokens_total",
                    "counter",
                    "Number of generation tokens processed.",
                    g.generation_tokens_total as f64,
                );
            }
        }
        // Simulated GPUs, one series per tensor-parallel rank, in DCGM exporter names.
        let used_mib = g.gpu_memory_used_bytes / (1024.0 * 1024.0);
        let total_mib = self.gpu_memory_bytes / (1024.0 * 1024.0);
        let gpu = escape_label(&self.gpu);
        let mut gauge = |name: &str, help: &str, value: f64| {
            // DCGM's exporter types the energy field a counter, every other field a gauge.
            let kind = if name == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for rank in 0..self.tp {
                let _ = writeln!(
                    out,
                    "{name}{{gpu=\"{rank}\",modelName=\"{gpu}\",simulated=\"true\"}} {value}"
                );
            }
        };
        gauge(
            "DCGM_FI_DEV_GPU_UTIL",
            "GPU utilization (in %), simulated.",
            (util * 100.0).round(),
        );
        gauge(
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB), simulated.",
            used_mib.round(),
        );
        gauge(
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB), simulated.",
            (total_mib - used_mib).max(0.0).round(),
        );
        if let Some(pm) = self.power {
            // Modelled (see sim::power): the busy fraction of the last second for the draw,
            // idle × elapsed + (TDP − idle) × busy time since start for the energy counter.
            gauge(
                "DCGM_FI_DEV_POWER_USAGE",
                "Power draw (in W), simulated: idle + (TDP - idle) x busy fraction.",
                (pm.power_w(util) * 10.0).round() / 10.0,
            );
            gauge(
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                "Total energy consumption since the simulator started (in mJ), simulated.",
                (pm.energy_j(now as f64 / 1e9, busy_ns / 1e9) * 1000.0).round(),
            );
        }
        out
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Shared-prefix identities from the prompt text: consecutive runs of 16
/// whitespace-separated words (the server counts one token per word), each named by a hash of
/// its words. Identical leading text gives identical leading segments.
pub fn prefix_segments(prompt: &str, prompt_tokens: u32) -> Vec<PrefixSegment> {
    let words: Vec<&str> = prompt.split_whitespace().collect();
    let mut out = Vec::with_capacity(words.len() / SEGMENT_WORDS + 1);
    let mut covered = 0u32;
    for chunk in words.chunks(SEGMENT_WORDS) {
        if covered >= prompt_tokens {
            break;
        }
        let mut h = DefaultHasher::new();
        chunk.hash(&mut h);
        let tokens = (chunk.len() as u32).min(prompt_tokens - covered);
        out.push(PrefixSegment {
            hash: h.finish(),
            tokens,
        });
        covered += tokens;
    }
    out
}

impl Backend for SimBackend {
    fn check(&self, req: &GenerateRequest) -> Result<(), String> {
        let (len, _) = output_length(req, None);
        match admission_error(&self.facts, &self.profile, req.prompt_tokens.max(1), len) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    fn generate(&self, req: GenerateRequest) -> GenStream {
        let (events, rx) = mpsc::unbounded_channel();
        let (len, finish) = output_length(&req, None);
        let arrival_ns = req
            .received_at
            .checked_duration_since(self.epoch)
            .unwrap_or(Duration::ZERO)
            .as_nanos() as u64;
        let prompt_tokens = req.prompt_tokens.max(1);
        let mut sim = SimRequest::from_text(req.index, arrival_ns, &req.prompt, prompt_tokens, len);
        sim.grammar = req.grammar;
        let submit = Submit {
            req: sim,
            finish,
            events,
        };
        if let Err(mpsc::error::SendError(s)) = self.tx.send(submit) {
            let _ = s
                .events
                .send(GenEvent::Error("the simulated engine has stopped".into()));
        }
        stream_from_unbounded(rx)
    }

    fn metrics(&self) -> Option<String> {
        Some(self.render_metrics())
    }

    fn version(&self) -> serde_json::Value {
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "server": "servebench-sim",
            "engine": self.profile.engine.as_str(),
            "profile": self.profile.label,
            "gpu": self.gpu,
            "tp": self.tp,
            "simulated": true,
        })
    }
}

/// Build and serve a simulator for a launcher `kind = "sim"` target: `engine` (default vllm),
/// `gpu` (default A10G), `model` (default facebook/opt-125m) and `options`: `tp` (or
/// `tensor_parallel_size`, `tp_size`) plus any engine flag [`EngineProfile::apply_option`]
/// understands. Serves on a free 127.0.0.1 port; dropping the returned guard stops it.
/// A launch spec resolved against the catalog: the engine, GPU, model, tensor-parallel degree
/// and the engine's profile with the spec's options applied. `sim serve`-style launches and
/// virtual-time suite cells both start from it, so the two model the same engine.
#[derive(Debug, Clone)]
pub struct ResolvedSpec {
    pub kind: EngineKind,
    pub gpu: super::catalog::GpuSpec,
    pub model: super::catalog::ModelSpec,
    pub tp: u32,
    pub profile: EngineProfile,
}

/// Resolve `spec` (unknown names and bad options are errors naming the known ones).
pub fn resolve_spec(
    catalog: &super::catalog::Catalog,
    spec: &crate::launch::SimSpec,
) -> anyhow::Result<ResolvedSpec> {
    use super::profile::OptionValue;
    let kind: EngineKind = spec
        .engine
        .as_deref()
        .unwrap_or("vllm")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let gpu = catalog.gpu(spec.gpu.as_deref().unwrap_or("A10G"))?.clone();
    let model = catalog
        .model(spec.model.as_deref().unwrap_or("facebook/opt-125m"))?
        .clone();
    let is_tp = |k: &str| {
        matches!(
            k.replace('-', "_").as_str(),
            "tp" | "tensor_parallel_size" | "tp_size"
        )
    };
    let mut tp = 1u32;
    for (k, v) in spec.options.iter().filter(|(k, _)| is_tp(k)) {
        tp = match v {
            toml::Value::Integer(i) if *i >= 1 && *i <= 64 => *i as u32,
            other => anyhow::bail!("sim option {k} must be an integer from 1 to 64, not {other}"),
        };
    }
    let mut profile = EngineProfile::for_engine(kind, &gpu, tp);
    for (k, v) in spec.options.iter().filter(|(k, _)| !is_tp(k)) {
        profile
            .apply_option(k, &OptionValue::from(v))
            .map_err(anyhow::Error::msg)?;
    }
    Ok(ResolvedSpec {
        kind,
        gpu,
        model,
        tp,
        profile,
    })
}

pub fn start(
    catalog: &super::catalog::Catalog,
    spec: &crate::launch::SimSpec,
) -> anyhow::Result<crate::launch::InProcess> {
    let ResolvedSpec {
        kind,
        gpu,
        model,
        tp,
        profile,
    } = resolve_spec(catalog, spec)?;
    let served = spec.model.clone().unwrap_or_else(|| model.name.clone());
    let engine = Engine::new(profile, gpu, model, tp)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("servebench-sim")
        .enable_all()
        .build()?;
    let backend = {
        let _in_runtime = rt.enter();
        Arc::new(SimBackend::spawn(engine, &served))
    };
    let server = crate::server::spawn_dedicated(
        backend.clone(),
        crate::server::ServerOptions {
            model: served,
            max_model_len: backend.facts().max_model_len,
            ..crate::server::ServerOptions::default()
        },
        2,
    )?;
    Ok(crate::launch::InProcess {
        base_url: server.url().to_string(),
        engine: format!("servebench-sim/{kind}"),
        guard: Box::new(SimGuard {
            server: Some(server),
            runtime: Some(rt),
        }),
    })
}

/// A launcher factory over [`start`] with the given catalog (built-in plus the user's file).
pub fn factory(catalog: super::catalog::Catalog) -> crate::launch::SimFactory {
    Arc::new(move |spec: &crate::launch::SimSpec| start(&catalog, spec))
}

/// Stops the HTTP server, then the engine loop's runtime (without blocking, so it may be
/// dropped inside async code).
struct SimGuard {
    server: Option<crate::server::RunningServer>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for SimGuard {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

struct Live {
    events: mpsc::UnboundedSender<GenEvent>,
    finish: FinishReason,
}

/// The engine loop: admit at step boundaries, step, sleep to the step's end, emit.
async fn engine_loop(
    mut engine: Engine,
    mut rx: mpsc::UnboundedReceiver<Submit>,
    metrics: Arc<Mutex<MetricsState>>,
    epoch: Instant,
) {
    let mut live: HashMap<u64, Live> = HashMap::new();
    // The engine's timeline: where the next step starts. It runs ahead of the wall clock by at
    // most one step, so sleeping to `epoch + end` keeps emissions on absolute deadlines.
    let mut vnow = 0u64;
    let mut closed = false;
    loop {
        // Take what has arrived; wait for work when idle.
        loop {
            let next = if engine.is_idle() && !closed {
                match rx.recv().await {
                    Some(s) => Some(s),
                    None => {
                        closed = true;
                        None
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(s) => Some(s),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        None
                    }
                }
            };
            let Some(s) = next else { break };
            if engine.is_idle() {
                // An idle engine starts when the request arrived, not before.
                vnow = vnow.max(s.req.arrival_ns);
            }
            match engine.submit(&s.req) {
                Ok(()) => {
                    live.insert(
                        s.req.id,
                        Live {
                            events: s.events,
                            finish: s.finish,
                        },
                    );
                }
                Err(rej) => {
                    let _ = s.events.send(GenEvent::Error(rej.reason));
                }
            }
        }
        // Clients that went away free their requests.
        let gone: Vec<u64> = live
            .iter()
            .filter(|(_, l)| l.events.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            live.remove(&id);
            engine.abort(id);
        }
        if engine.is_idle() {
            if closed {
                return;
            }
            continue;
        }
        let Some(rep) = engine.step(vnow) else {
            continue;
        };
        crate::server::timer::sleep_until(epoch + Duration::from_nanos(rep.end_ns)).await;
        // Steps follow each other on the engine's timeline; only if the loop fell far behind
        // the wall clock (a stalled runtime) does the next step start from now.
        let wall = epoch.elapsed().as_nanos() as u64;
        vnow = if wall > rep.end_ns + STALL_NS {
            wall
        } else {
            rep.end_ns
        };
        let finished: std::collections::HashSet<u64> = rep.finished.iter().copied().collect();
        for (id, count) in &rep.emitted {
            let done = finished.contains(id);
            if let Some(l) = live.get(id) {
                let event = GenEvent::Tokens {
                    count: *count,
                    finish: done.then_some(l.finish),
                };
                if l.events.send(event).is_err() {
                    engine.abort(*id);
                    live.remove(id);
                    continue;
                }
            }
            if done {
                live.remove(id);
            }
        }
        for r in &rep.rejected {
            if let Some(l) = live.remove(&r.id) {
                let _ = l.events.send(GenEvent::Error(r.reason.clone()));
            }
        }
        let busy_ns = rep.time.gpu_s() * 1e9;
        if let Ok(mut m) = metrics.lock() {
            m.record(engine.gauges(rep.end_ns), busy_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::catalog::Catalog;
    use crate::sim::predict::{predict_with, SimLoad};
    use futures_util::StreamExt;

    fn engine(kind: EngineKind) -> Engine {
        let c = Catalog::builtin();
        let g = c.gpu("a10g").unwrap().clone();
        let m = c.model("facebook/opt-125m").unwrap().clone();
        Engine::new(EngineProfile::for_engine(kind, &g, 1), g, m, 1).unwrap()
    }

    fn request(index: u64, words: usize, max_tokens: u32) -> GenerateRequest {
        let prompt = (0..words)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        GenerateRequest {
            index,
            received_at: Instant::now(),
            prompt,
            prompt_tokens: words as u32,
            max_tokens,
            min_tokens: 0,
            ignore_eos: true,
            chat: false,
            structured: false,
            answer_tokens: None,
            grammar: None,
            stream: true,
        }
    }

    #[tokio::test]
    async fn a_request_streams_one_token_per_event_and_finishes_with_length() {
        let b = SimBackend::spawn(engine(EngineKind::Vllm), "opt");
        let events: Vec<GenEvent> = b.generate(request(0, 20, 5)).collect().await;
        assert_eq!(events.len(), 5);
        for e in &events[..4] {
            assert_eq!(
                *e,
                GenEvent::Tokens {
                    count: 1,
                    finish: None
                }
            );
        }
        assert_eq!(
            events[4],
            GenEvent::Tokens {
                count: 1,
                finish: Some(FinishReason::Length)
            }
        );
    }

    #[tokio::test]
    async fn oversized_requests_are_refused_before_anything_is_sent() {
        let b = SimBackend::spawn(engine(EngineKind::Vllm), "opt");
        let err = b.check(&request(0, 2000, 100)).unwrap_err();
        assert!(err.contains("maximum context length"), "{err}");
        assert!(b.check(&request(1, 10, 10)).is_ok());
    }

    #[tokio::test]
    async fn metrics_speak_each_engines_dialect() {
        for (kind, names) in [
            (
                EngineKind::Vllm,
                &[
                    "vllm:num_requests_running",
                    "vllm:num_requests_waiting",
                    "vllm:kv_cache_usage_perc",
                    "vllm:prefix_cache_hits_total",
                    "vllm:prefix_cache_queries_total",
                    "vllm:prompt_tokens_total",
                    "vllm:generation_tokens_total",
                ][..],
            ),
            (
                EngineKind::Sglang,
                &[
                    "sglang:num_running_reqs",
                    "sglang:num_queue_reqs",
                    "sglang:token_usage",
                    "sglang:cache_hit_rate",
                    "sglang:gen_throughput",
                ][..],
            ),
        ] {
            let b = SimBackend::spawn(engine(kind), "opt");
            let _: Vec<GenEvent> = b.generate(request(0, 40, 8)).collect().await;
            let text = b.metrics().unwrap();
            for n in names {
                assert!(
                    text.contains(&format!("{n}{{model_name=\"opt\"}}")),
                    "{kind}: {n}\n{text}"
                );
            }
            assert!(text.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\""), "{text}");
            assert!(text.contains("DCGM_FI_DEV_FB_USED"), "{text}");
            let gen_line = text
                .lines()
                .find(|l| l.starts_with(&format!("{kind}:generation_tokens_total")))
                .unwrap();
            assert!(gen_line.ends_with(" 8"), "{gen_line}");
        }
    }

    #[tokio::test]
    async fn modelled_power_and_energy_are_exported_as_simulated_dcgm_fields() {
        use crate::telemetry::normalize::{normalize, CounterState};
        use crate::telemetry::prometheus::parse;
        use crate::telemetry::{Metric, Series, TelemetrySource};
        let b = SimBackend::spawn(engine(EngineKind::Vllm), "opt");
        let _: Vec<GenEvent> = b.generate(request(0, 40, 8)).collect().await;
        let read = |text: &str| {
            let mut got = (None, None);
            for s in normalize(&parse(text), &mut CounterState::default()) {
                if let Metric::Normalized { series, source } = s.metric {
                    match series {
                        Series::GpuPowerW | Series::GpuEnergyJ => {
                            assert_eq!(source, TelemetrySource::Simulated, "{series:?}");
                        }
                        _ => continue,
                    }
                    if series == Series::GpuPowerW {
                        got.0 = Some(s.value);
                    } else {
                        got.1 = Some(s.value);
                    }
                }
            }
            got
        };
        let first = b.metrics().unwrap();
        assert!(
            first.contains("# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter"),
            "{first}"
        );
        let (power, e0) = read(&first);
        // A10G: TDP 300 W, idle 45 W.
        let power = power.unwrap();
        assert!((45.0..=300.0).contains(&power), "{power}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (_, e1) = read(&b.metrics().unwrap());
        let (e0, e1) = (e0.unwrap(), e1.unwrap());
        // At least the idle draw accrues between scrapes: 45 W × 20 ms = 0.9 J.
        assert!(e1 - e0 >= 0.9 - 1e-3, "{e0} → {e1}");
        // No TDP in the catalog: no power or energy lines at all (unavailable, not 0 W).
        let c = Catalog::builtin();
        let mut g = c.gpu("a10g").unwrap().clone();
        g.tdp_w = None;
        let m = c.model("facebook/opt-125m").unwrap().clone();
        let e = Engine::new(EngineProfile::for_engine(EngineKind::Vllm, &g, 1), g, m, 1).unwrap();
        let text = SimBackend::spawn(e, "opt").metrics().unwrap();
        assert!(!text.contains("DCGM_FI_DEV_POWER_USAGE"), "{text}");
        assert!(!text.contains("DCGM_FI_DEV_TOTAL_ENERGY"), "{text}");
    }

    #[tokio::test]
    async fn shared_prompt_text_hits_the_prefix_cache() {
        let b = SimBackend::spawn(engine(EngineKind::Vllm), "opt");
        let _: Vec<GenEvent> = b.generate(request(0, 320, 2)).collect().await;
        let _: Vec<GenEvent> = b.generate(request(1, 320, 2)).collect().await;
        let text = b.metrics().unwrap();
        let hits = text
            .lines()
            .find(|l| l.starts_with("vllm:prefix_cache_hits_total{"))
            .unwrap();
        assert!(hits.ends_with(" 304"), "{hits}");
    }

    /// Multi-turn: turn 2's prompt is turn 1's prompt, the reply the simulator streamed and a
    /// new message (ChatML, as the HTTP layer renders chat). The reply's blocks are cached, so
    /// turn 2 hits all 10 whole 16-token blocks of turn 1's 164 tokens (prompt 100 + reply 64);
    /// a cache of the prompt alone would give 6 blocks (96 tokens).
    #[tokio::test]
    async fn a_next_turn_hits_the_previous_reply_in_the_prefix_cache() {
        let user = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| format!(" w{i}"))
                .collect::<String>()
        };
        let turn1 = format!(
            "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
            user(0, 100)
        );
        let reply = crate::server::output_words(0, 64, 0);
        let turn2 = format!(
            "{turn1}{reply}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
            user(100, 20)
        );
        for kind in [EngineKind::Vllm, EngineKind::Sglang] {
            let b = SimBackend::spawn(engine(kind), "opt");
            let hits = |b: &SimBackend| b.metrics.lock().unwrap().gauges.prefix_cache_hits_total;
            let mut r = request(0, 0, 64);
            (r.prompt, r.prompt_tokens) = (turn1.clone(), 100);
            let _: Vec<GenEvent> = b.generate(r).collect().await;
            assert_eq!(hits(&b), 0, "{kind}");
            let mut r = request(1, 0, 8);
            (r.prompt, r.prompt_tokens) = (turn2.clone(), 184);
            let _: Vec<GenEvent> = b.generate(r).collect().await;
            assert_eq!(hits(&b), 160, "{kind}");
        }
    }

    #[test]
    fn the_launcher_factory_serves_the_spec_and_rejects_bad_options() {
        let spec = crate::launch::SimSpec {
            engine: Some("sglang".into()),
            gpu: Some("l4".into()),
            model: Some("meta-llama/Llama-3.2-1B".into()),
            options: [(
                "chunked_prefill_size".to_string(),
                toml::Value::Integer(1024),
            )]
            .into_iter()
            .collect(),
            ..crate::launch::SimSpec::default()
        };
        let running = start(&Catalog::builtin(), &spec).unwrap();
        assert!(running.base_url.starts_with("http://127.0.0.1:"));
        assert_eq!(running.engine, "servebench-sim/sglang");
        drop(running);
        let bad = crate::launch::SimSpec {
            options: [("max_num_sqes".to_string(), toml::Value::Integer(8))]
                .into_iter()
                .collect(),
            ..crate::launch::SimSpec::default()
        };
        let err = start(&Catalog::builtin(), &bad).unwrap_err().to_string();
        assert!(err.contains("max_num_seqs"), "{err}");
        let bad_gpu = crate::launch::SimSpec {
            gpu: Some("b300".into()),
            ..crate::launch::SimSpec::default()
        };
        let err = start(&Catalog::builtin(), &bad_gpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("A10G"), "{err}");
    }

    #[test]
    fn prefix_segments_follow_the_words() {
        let a = prefix_segments("a b c d e f g h i j k l m n o p q r", 18);
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].tokens, a[1].tokens), (16, 2));
        let b = prefix_segments("a b c d e f g h i j k l m n o p x y", 18);
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
    }

    /// The real-time driver follows the same timeline as `predict` (loose bound: this test
    /// must not depend on the machine's timing precision; docs/simulator.md reports the
    /// measured agreement).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_time_serving_tracks_the_prediction() {
        let n = 8u64;
        let reqs: Vec<SimRequest> = (0..n)
            .map(|i| SimRequest {
                id: i,
                arrival_ns: 0,
                prompt_tokens: 50,
                max_output_tokens: 20,
                prefix: Vec::new(),
                grammar: None,
            })
            .collect();
        let predicted = predict_with(engine(EngineKind::Vllm), &reqs, SimLoad::Open, 0);
        let b = Arc::new(SimBackend::spawn(engine(EngineKind::Vllm), "opt"));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..n {
            let mut r = request(i, 50, 20);
            r.received_at = start;
            let stream = b.generate(r);
            tasks.push(tokio::spawn(
                async move { stream.collect::<Vec<_>>().await },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().len(), 20);
        }
        let measured = start.elapsed().as_secs_f64();
        let expected = predicted.duration_ns as f64 / 1e9;
        assert!(
            (measured / expected - 1.0).abs() < 0.5,
            "measured {measured:.4}s vs predicted {expected:.4}s"
        );
    }
}
