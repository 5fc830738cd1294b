//! `predict`: run a workload through the engine model in virtual time and return the records a
//! client would have made, so the ordinary metrics code summarises them.
//!
//! No HTTP, no sleeping: time jumps from one step's end to the next. The client sends at the
//! scheduled instant; requests reach the engine, and tokens reach the client, one
//! `client_latency_ns` later (one SSE event per token). `predict_with` uses an ideal client
//! (latency 0) so its records isolate the engine and the GPU.

use super::catalog::Catalog;
use super::engine::{Engine, EngineFacts, EngineGauges, SimError, SimRequest};
use super::kv::HashMap;
use super::profile::{EngineKind, EngineProfile};
use crate::record::{FailureKind, Outcome, Phase, RequestRecord, TokenSource, Usage};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How requests are offered to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum SimLoad {
    /// Keep `in_flight` requests outstanding: the next one (in the given order) is sent the
    /// instant one finishes; `arrival_ns` is ignored.
    Closed { in_flight: usize },
    /// Send each request at its `arrival_ns`, whatever the engine does.
    Open,
    /// Open loop with at most `max_in_flight` requests outstanding: a request due while the
    /// cap is reached waits for a slot (its queue time is `sent − scheduled`).
    OpenCapped { max_in_flight: usize },
}

impl SimLoad {
    /// Sends are limited by free slots (closed loop or capped open loop).
    fn has_slots(&self) -> bool {
        !matches!(self, SimLoad::Open)
    }
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictOptions {
    pub engine: EngineKind,
    /// GPU catalog name or alias.
    pub gpu: String,
    /// Model catalog name or alias.
    pub model: String,
    /// Tensor-parallel degree (GPUs per replica).
    pub tp: u32,
    /// A complete profile replacing the engine's defaults for this GPU (see
    /// [`EngineProfile::for_engine`] to start from them).
    pub profile: Option<EngineProfile>,
    /// Keep a gauge sample at most this often (0: after every step).
    pub gauge_interval_ns: u64,
    /// One-way client↔engine latency (default [`DEFAULT_CLIENT_LATENCY_NS`]).
    pub client_latency_ns: u64,
}

impl PredictOptions {
    pub fn new(engine: EngineKind, gpu: &str, model: &str) -> PredictOptions {
        PredictOptions {
            engine,
            gpu: gpu.to_string(),
            model: model.to_string(),
            tp: 1,
            profile: None,
            gauge_interval_ns: 0,
            client_latency_ns: DEFAULT_CLIENT_LATENCY_NS,
        }
    }

    /// Build the engine these options describe.
    pub fn engine(&self, catalog: &Catalog) -> Result<Engine, SimError> {
        let gpu = catalog.gpu(&self.gpu)?.clone();
        let model = catalog.model(&self.model)?.clone();
        let profile = match &self.profile {
            Some(p) => p.clone(),
            None => EngineProfile::for_engine(self.engine, &gpu, self.tp),
        };
        if profile.engine != self.engine {
            return Err(SimError::Invalid(format!(
                "the profile is for {}, the options ask for {}",
                profile.engine, self.engine
            )));
        }
        Engine::new(profile, gpu, model, self.tp)
    }
}

/// The result of a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Always true: these numbers come from the model, not a measurement.
    pub simulated: bool,
    pub engine: EngineKind,
    pub gpu: String,
    pub model: String,
    pub tp: u32,
    pub profile: EngineProfile,
    pub facts: EngineFacts,
    /// One record per request, in request order; times are ns of virtual time from 0.
    pub records: Vec<RequestRecord>,
    pub gauges: Vec<EngineGauges>,
    pub steps: u64,
    /// Virtual time from 0 to the last step's end.
    pub duration_ns: u64,
    /// Σ over steps of the datasheet roofline bound (no efficiencies, no overhead), ns: no
    /// schedule can beat it.
    pub roofline_bound_ns: f64,
    /// Σ over steps of the modelled GPU-busy time, ns.
    pub busy_ns: f64,
    pub preemptions: u64,
    /// Modelled energy of one GPU over `duration_ns`, J ([`super::power`]); `None` where the
    /// catalog has no TDP for the GPU. Every rank is modelled equally busy: multiply by `tp`
    /// for the whole engine.
    #[serde(default)]
    pub energy_per_gpu_j: Option<f64>,
    /// A representative decode and prefill step split into the floor and each engine term
    /// (`predict --explain`).
    #[serde(default)]
    pub step_breakdown: super::breakdown::StepBreakdown,
}

/// Simulate `requests` on the engine `opts` describes, offered by `load`.
pub fn predict(
    catalog: &Catalog,
    opts: &PredictOptions,
    requests: &[SimRequest],
    load: SimLoad,
) -> Result<Prediction, SimError> {
    let engine = opts.engine(catalog)?;
    Ok(simulate(
        engine,
        requests,
        load,
        opts.gauge_interval_ns,
        opts.client_latency_ns,
    ))
}

/// Simulate the requests `source` offers (for instance [`super::conversation::Conversations`])
/// on the engine `opts` describes; `load` gates the sends as in [`simulate_arrivals`].
pub fn predict_arrivals(
    catalog: &Catalog,
    opts: &PredictOptions,
    source: &mut dyn Arrivals,
    load: SimLoad,
) -> Result<Prediction, SimError> {
    let engine = opts.engine(catalog)?;
    Ok(simulate_arrivals(
        engine,
        source,
        load,
        opts.gauge_interval_ns,
        opts.client_latency_ns,
    ))
}

/// One request as the client sent it, and what the client saw of it.
struct Trace {
    req: SimRequest,
    /// Records are returned sorted by this ([`Offer::position`]).
    position: u64,
    scheduled_ns: u64,
    /// When the request was sent (a slot was free and it was due).
    sent_ns: u64,
    /// (when the client saw it, tokens in the event).
    emissions: Vec<(u64, u32)>,
    rejected: Option<(u64, String)>,
    done: bool,
    conversation: Option<(u64, u32)>,
}

/// Simulate on an engine built by the caller, with an ideal client (no network latency).
pub fn predict_with(
    engine: Engine,
    requests: &[SimRequest],
    load: SimLoad,
    gauge_interval_ns: u64,
) -> Prediction {
    simulate(engine, requests, load, gauge_interval_ns, 0)
}

/// One-way client↔engine latency `predict` assumes by default: a loopback HTTP hop plus the
/// engine's request parsing and tokenization (an assumption). It matters in closed loops: a
/// request sent when its predecessor's last token arrives reaches the engine after the next step
/// has started, and waits for it, as it does against a real server.
pub const DEFAULT_CLIENT_LATENCY_NS: u64 = 200_000;

/// A request a source hands the client to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The request; its `id` must be unique in the run. `arrival_ns` is overwritten with the
    /// instant it reaches the engine.
    pub req: SimRequest,
    /// When it was due at the client (its record's `scheduled_ns`).
    pub scheduled_ns: u64,
    /// Records come back sorted by this (a list's index, a conversation turn's request id).
    pub position: u64,
    /// (conversation, turn) for a turn of a multi-turn conversation.
    pub conversation: Option<(u64, u32)>,
}

/// Where `simulate` gets its requests: when the next one is due, the request itself once it is
/// sent, and word of each request's end, so a source can make requests due that depend on
/// earlier ones finishing (a conversation's next turn is due at its previous turn's finish plus
/// the think time). Times are the client's clock, ns of virtual time.
///
/// The loop calls [`Arrivals::ended`] in time order and never asks about the past: a request
/// that ends at `t` can make another due at `t` or later.
pub trait Arrivals {
    /// When the next request is due, if one is due as things stand. `None` may change once a
    /// request in flight ends.
    fn next_due(&self) -> Option<u64>;
    /// The request [`Arrivals::next_due`] named, sent at `sent_ns` (≥ its due time; later when
    /// it waited for a slot).
    fn send(&mut self, sent_ns: u64) -> Option<Offer>;
    /// The client saw request `id` end at `at_ns`: its last token (`ok`) or its error.
    fn ended(&mut self, id: u64, at_ns: u64, ok: bool);
}

/// A fixed list of requests: due at their `arrival_ns` in an open loop (sent in that order), or
/// at once, in list order, in a closed loop (the slots pace them).
struct RequestList<'a> {
    requests: &'a [SimRequest],
    order: VecDeque<usize>,
    closed: bool,
}

impl<'a> RequestList<'a> {
    fn new(requests: &'a [SimRequest], load: SimLoad) -> RequestList<'a> {
        let closed = matches!(load, SimLoad::Closed { .. });
        let mut order: Vec<usize> = (0..requests.len()).collect();
        if !closed {
            order.sort_by_key(|&i| (requests[i].arrival_ns, i));
        }
        RequestList {
            requests,
            order: order.into(),
            closed,
        }
    }
}

impl Arrivals for RequestList<'_> {
    fn next_due(&self) -> Option<u64> {
        let &i = self.order.front()?;
        Some(if self.closed {
            0
        } else {
            self.requests[i].arrival_ns
        })
    }

    fn send(&mut self, sent_ns: u64) -> Option<Offer> {
        let i = self.order.pop_front()?;
        let req = self.requests[i].clone();
        Some(Offer {
            // Closed loop: the request was due when its slot freed.
            scheduled_ns: if self.closed { sent_ns } else { req.arrival_ns },
            req,
            position: i as u64,
            conversation: None,
        })
    }

    fn ended(&mut self, _id: u64, _at_ns: u64, _ok: bool) {}
}

/// Simulate on an engine built by the caller. `client_latency_ns` is the one-way latency
/// between client and engine: requests reach the engine that much after they are sent and
/// tokens reach the client that much after the step that produced them.
pub fn simulate(
    engine: Engine,
    requests: &[SimRequest],
    load: SimLoad,
    gauge_interval_ns: u64,
    client_latency_ns: u64,
) -> Prediction {
    let mut list = RequestList::new(requests, load);
    simulate_arrivals(
        engine,
        &mut list,
        load,
        gauge_interval_ns,
        client_latency_ns,
    )
}

/// Simulate requests from `source`. `load` gates the sends: a closed loop or a capped open
/// loop sends a due request only when one of its slots is free (a slot frees when the client
/// sees its request end); an open loop sends each request when it is due.
pub fn simulate_arrivals(
    mut engine: Engine,
    source: &mut dyn Arrivals,
    load: SimLoad,
    gauge_interval_ns: u64,
    client_latency_ns: u64,
) -> Prediction {
    let lat = client_latency_ns;
    let mut traces: Vec<Trace> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::default();

    // Client-side instants at which a slot freed (non-decreasing).
    let mut slots: VecDeque<u64> = match load {
        SimLoad::Closed { in_flight: n } | SimLoad::OpenCapped { max_in_flight: n } => {
            std::iter::repeat_n(0, n.max(1)).collect()
        }
        SimLoad::Open => VecDeque::new(),
    };
    // When the next due request is sent (client clock), if it can be sent at all.
    let next_send = |source: &dyn Arrivals, slots: &VecDeque<u64>| {
        let due = source.next_due()?;
        if load.has_slots() {
            slots.front().map(|&free| free.max(due))
        } else {
            Some(due)
        }
    };

    let mut now = 0u64;
    let mut steps = 0u64;
    let mut bound_ns = 0.0;
    let mut busy_ns = 0.0;
    let mut step_log = super::breakdown::StepLog::default();
    let mut gauges = Vec::new();
    let mut last_gauge: Option<u64> = None;
    let mut end_ns = 0u64;

    // A request ended at the client at `at`: its slot frees, its source hears of it.
    let end = |traces: &mut Vec<Trace>,
               slots: &mut VecDeque<u64>,
               source: &mut dyn Arrivals,
               i: usize,
               at: u64,
               rejected: Option<String>| {
        let t = &mut traces[i];
        let ok = rejected.is_none();
        if let Some(reason) = rejected {
            t.rejected = Some((at, reason));
        }
        t.done = true;
        if load.has_slots() {
            slots.push_back(at);
        }
        source.ended(t.req.id, at, ok);
    };

    loop {
        // Hand the engine what has reached it.
        while let Some(sent) = next_send(source, &slots) {
            if sent + lat > now {
                break;
            }
            let Some(offer) = source.send(sent) else {
                break;
            };
            if load.has_slots() {
                slots.pop_front();
            }
            let mut req = offer.req;
            // The engine's clock starts the request when it arrives (grammar compilation).
            req.arrival_ns = sent + lat;
            let i = traces.len();
            index.insert(req.id, i);
            let submitted = engine.submit(&req);
            traces.push(Trace {
                req,
                position: offer.position,
                scheduled_ns: offer.scheduled_ns,
                sent_ns: sent,
                emissions: Vec::new(),
                rejected: None,
                done: false,
                conversation: offer.conversation,
            });
            if let Err(r) = submitted {
                // The 400 reaches the client one latency later; its slot frees then.
                end(
                    &mut traces,
                    &mut slots,
                    source,
                    i,
                    sent + 2 * lat,
                    Some(r.reason),
                );
            }
        }

        let Some(rep) = engine.step(now) else {
            // Idle: jump to the next arrival at the engine, or stop.
            match next_send(source, &slots) {
                Some(sent) => {
                    now = now.max(sent + lat);
                    continue;
                }
                None => break,
            }
        };
        steps += 1;
        bound_ns += engine.hardware().roofline_bound_s(&rep.load) * 1e9;
        busy_ns += rep.time.gpu_s() * 1e9;
        step_log.push(rep.load, rep.time);
        now = rep.end_ns;
        let seen = rep.end_ns + lat;
        end_ns = end_ns.max(seen);
        for &(id, k) in &rep.emitted {
            if let Some(&i) = index.get(&id) {
                traces[i].emissions.push((seen, k));
            }
        }
        for &id in &rep.finished {
            if let Some(&i) = index.get(&id) {
                end(&mut traces, &mut slots, source, i, seen, None);
            }
        }
        for r in rep.rejected {
            if let Some(&i) = index.get(&r.id) {
                end(&mut traces, &mut slots, source, i, seen, Some(r.reason));
            }
        }
        if last_gauge.is_none_or(|t| now.saturating_sub(t) >= gauge_interval_ns) {
            gauges.push(engine.gauges(now));
            last_gauge = Some(now);
        }
    }

    // The loop ends when nothing more can be sent. Requests still due then (only if the engine
    // stalled with every slot taken, which the current engine never does) are not dropped:
    // each becomes a record that never finished, failed like any request the run could not
    // complete.
    while let Some(due) = source.next_due() {
        let Some(offer) = source.send(due) else {
            break;
        };
        traces.push(Trace {
            req: offer.req,
            position: offer.position,
            scheduled_ns: offer.scheduled_ns,
            sent_ns: due,
            emissions: Vec::new(),
            rejected: None,
            done: false,
            conversation: offer.conversation,
        });
    }
    traces.sort_by_key(|t| t.position);
    let records = traces.iter().map(to_record).collect();
    let g = engine.gauges(end_ns);
    let profile = engine.profile().clone();
    let hw = engine.hardware();
    Prediction {
        simulated: true,
        engine: profile.engine,
        gpu: hw.gpu.name.clone(),
        model: hw.model.name.clone(),
        tp: hw.tp,
        facts: engine.facts(),
        profile,
        records,
        gauges,
        steps,
        duration_ns: end_ns,
        roofline_bound_ns: bound_ns,
        busy_ns,
        preemptions: g.preemptions_total,
        energy_per_gpu_j: super::power::PowerModel::of(&hw.gpu)
            .map(|pm| pm.energy_j(end_ns as f64 / 1e9, busy_ns / 1e9)),
        step_breakdown: step_log.breakdown(hw),
    }
}

/// The record an ideal client would have written for this request.
fn to_record(t: &Trace) -> RequestRecord {
    let sent = t.sent_ns;
    if let Some((at, reason)) = &t.rejected {
        let mut r = RequestRecord::failed_before_response(
            t.req.id,
            Phase::Measured,
            (t.scheduled_ns, sent, sent),
            *at,
            FailureKind::Http { status: 400 },
            reason.clone(),
        );
        r.prompt_tokens = t.req.prompt_tokens;
        r.max_tokens = t.req.max_output_tokens;
        r.conversation = t.conversation.map(|c| c.0);
        r.turn = t.conversation.map(|c| c.1);
        return r;
    }
    let micros = |ns: u64| (ns.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32;
    let out: u32 = t.emissions.iter().map(|e| e.1).sum();
    let outcome = if t.done {
        Outcome::Success
    } else {
        // The run ended with the request unfinished: only possible if the engine stalled.
        Outcome::Failed {
            kind: FailureKind::Disconnect,
            message: "the simulated engine stopped before the request finished".into(),
        }
    };
    RequestRecord {
        id: t.req.id,
        phase: Phase::Measured,
        scheduled_ns: t.scheduled_ns,
        slot_ns: sent,
        sent_ns: sent,
        // The engines send response headers as soon as the request is accepted.
        headers_ns: Some(sent),
        first_token_ns: t.emissions.first().map(|e| e.0),
        first_content_ns: t.emissions.first().map(|e| e.0),
        finished_ns: t.emissions.last().map(|e| e.0).unwrap_or(sent),
        events: t.emissions.iter().map(|&(at, k)| (micros(at), k)).collect(),
        prompt_tokens: t.req.prompt_tokens,
        max_tokens: t.req.max_output_tokens,
        usage: Some(Usage {
            prompt_tokens: t.req.prompt_tokens,
            completion_tokens: out,
        }),
        output_tokens: out,
        token_source: TokenSource::UsageFinal,
        usage_suspect: false,
        done_marker: true,
        resends: 0,
        output_text: None,
        conversation: t.conversation.map(|c| c.0),
        turn: t.conversation.map(|c| c.1),
        output_check: None,
        output_parts: None,
        outcome,
    }
}

/// Requests with the given (prompt, output) lengths, ids 0.., all arriving at 0 (closed loop or
/// an offline batch), no shared prefixes.
pub fn requests_from_lengths(lengths: &[(u32, u32)]) -> Vec<SimRequest> {
    lengths
        .iter()
        .enumerate()
        .map(|(i, &(p, o))| SimRequest {
            id: i as u64,
            arrival_ns: 0,
            prompt_tokens: p,
            max_output_tokens: o,
            prefix: Vec::new(),
            grammar: None,
        })
        .collect()
}

/// Successful requests per second and output tokens per second over the whole prediction
/// (first send to last token), as the benchmarks report them.
pub fn throughput(p: &Prediction) -> (f64, f64) {
    let ok: Vec<&RequestRecord> = p
        .records
        .iter()
        .filter(|r| r.outcome.is_success())
        .collect();
    let start = p.records.iter().map(|r| r.sent_ns).min().unwrap_or(0);
    let end = ok.iter().map(|r| r.finished_ns).max().unwrap_or(start);
    let secs = (end.saturating_sub(start)) as f64 / 1e9;
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    let tokens: u64 = ok.iter().map(|r| u64::from(r.output_tokens)).sum();
    (ok.len() as f64 / secs, tokens as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        PredictOptions::new(EngineKind::Vllm, "a10g", "facebook/opt-125m")
            .engine(&Catalog::builtin())
            .unwrap()
    }

    fn burst(n: u64) -> Vec<SimRequest> {
        (0..n)
            .map(|i| SimRequest {
                id: i,
                arrival_ns: i * 1_000_000,
                prompt_tokens: 100,
                max_output_tokens: 50,
                prefix: Vec::new(),
                grammar: None,
            })
            .collect()
    }

    #[test]
    fn a_capped_open_loop_queues_requests_at_the_client() {
        let reqs = burst(20);
        let p = simulate(
            engine(),
            &reqs,
            SimLoad::OpenCapped { max_in_flight: 2 },
            0,
            0,
        );
        let queued = p
            .records
            .iter()
            .filter(|r| r.sent_ns > r.scheduled_ns)
            .count();
        assert!(queued > 10, "{queued}");
        for r in &p.records {
            assert_eq!(r.scheduled_ns, reqs[r.id as usize].arrival_ns);
            assert!(r.outcome.is_success());
        }
        // Never more than two in flight.
        let mut edges: Vec<(u64, i32)> = p
            .records
            .iter()
            .flat_map(|r| [(r.sent_ns, 1), (r.finished_ns, -1)])
            .collect();
        edges.sort_by_key(|&(t, d)| (t, d));
        let mut live = 0;
        for (_, d) in edges {
            live += d;
            assert!(live <= 2);
        }
        let open = simulate(engine(), &reqs, SimLoad::Open, 0, 0);
        assert!(open.records.iter().all(|r| r.sent_ns == r.scheduled_ns));
    }

    /// `cargo test --release --lib speed -- --ignored --nocapture`: virtual vs wall time of the
    /// seed's Large workload (100 requests, 1024 + 256 tokens, 10 in flight) on vLLM/A10G/opt-125m.
    #[test]
    #[ignore = "prints a speed measurement"]
    fn speed_of_the_large_workload() {
        // Random prompts as text, so the prefix identities are derived as `serve` derives them.
        let reqs: Vec<SimRequest> = (0..100u64)
            .map(|i| {
                let prompt: Vec<String> = (0..1024).map(|w| format!("r{i}w{w}")).collect();
                SimRequest::from_text(i, 0, &prompt.join(" "), 1024, 256)
            })
            .collect();
        let opts = PredictOptions::new(EngineKind::Vllm, "a10g", "facebook/opt-125m");
        let catalog = Catalog::builtin();
        let mut best = f64::MAX;
        let mut virtual_s = 0.0;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let p = predict(&catalog, &opts, &reqs, SimLoad::Closed { in_flight: 10 }).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            virtual_s = p.duration_ns as f64 / 1e9;
        }
        println!(
            "large workload: {virtual_s:.2} s virtual in {:.2} ms wall: {:.0}x real time",
            best * 1e3,
            virtual_s / best
        );
    }

    /// Every catalog GPU with every catalog model, both engines, TP 1 and (where the heads
    /// divide) 8: the engine either refuses to start with a reason or serves every request.
    #[test]
    fn every_catalog_combination_serves_or_explains() {
        let catalog = Catalog::builtin();
        let reqs = crate::sim::predict::requests_from_lengths(
            &crate::sim::sharegpt::sharegpt_like(40, 1, 202.0, 179.0),
        );
        let mut served = 0;
        for gpu in catalog.gpus() {
            for model in catalog.models() {
                for engine in [EngineKind::Vllm, EngineKind::Sglang] {
                    for tp in [1, 8] {
                        let mut opts = PredictOptions::new(engine, &gpu.name, &model.name);
                        opts.tp = tp;
                        match predict(&catalog, &opts, &reqs, SimLoad::Closed { in_flight: 16 }) {
                            Ok(p) => {
                                served += 1;
                                for r in &p.records {
                                    match &r.outcome {
                                        crate::record::Outcome::Success => {}
                                        crate::record::Outcome::Failed { message, .. } => {
                                            // Only requests longer than the context may fail.
                                            assert!(
                                                message.contains("context length"),
                                                "{} {} {engine} tp{tp}: {message}",
                                                gpu.name,
                                                model.name
                                            );
                                        }
                                    }
                                }
                            }
                            Err(e) => {
                                let msg = e.to_string();
                                assert!(
                                    msg.contains("does not fit") || msg.contains("does not divide"),
                                    "{msg}"
                                );
                            }
                        }
                    }
                }
            }
        }
        assert!(served > 100, "{served}");
    }

    #[test]
    fn a_prediction_round_trips_through_json() {
        let p = simulate(engine(), &burst(3), SimLoad::Open, 0, 0);
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("\"simulated\":true"));
        let back: Prediction = serde_json::from_str(&text).unwrap();
        assert_eq!(back.records, p.records);
    }

    #[test]
    fn client_latency_shows_up_in_ttft_once_per_direction() {
        let reqs = burst(1);
        let ideal = simulate(engine(), &reqs, SimLoad::Open, 0, 0);
        let slow = simulate(engine(), &reqs, SimLoad::Open, 0, 1_000_000);
        let ttft = |p: &Prediction| p.records[0].first_token_ns.unwrap() - p.records[0].sent_ns;
        assert_eq!(ttft(&slow), ttft(&ideal) + 2_000_000);
    }
}
