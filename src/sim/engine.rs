//! The engine model: an iteration-level discrete-event simulation of a serving engine.
//!
//! [`Engine`] holds the scheduler state (waiting and running requests, the KV cache and its prefix
//! cache). Each call to [`Engine::step`] forms one batch the way the profile's engine does, charges
//! it the roofline time of [`Hardware::step_time`], and reports which requests emitted a token and
//! which finished at the step's end. The engine has no clock of its own: the caller passes the
//! step's start time, so the same model runs in virtual time (`predict`) or paced by a real clock
//! (`serve`).

use super::catalog::{CatalogError, GpuSpec, ModelSpec};
use super::kv::HashMap;
use super::kv::{PagedKv, PrefixSegment, RadixKv, RadixSlot, SeqIdentity};
use super::profile::{BatchMode, EngineKind, EngineProfile, SchedulePolicy};
use super::roofline::{Hardware, StepLoad, StepTime};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use thiserror::Error;

/// One request as the engine receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimRequest {
    pub id: u64,
    /// When it reaches the engine, ns of the run's timeline (open loop; closed loop sets it).
    pub arrival_ns: u64,
    pub prompt_tokens: u32,
    /// `max_tokens`; the request generates exactly this many (as benchmarks do with
    /// `ignore_eos`).
    pub max_output_tokens: u32,
    /// Leading content shared with other requests, for the prefix caches: the prompt's, and
    /// the output's when the caller knows it ([`SimRequest::from_text`]).
    #[serde(default)]
    pub prefix: Vec<PrefixSegment>,
    /// The content key of the request's structured-output constraint (grammar), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<u64>,
}

impl SimRequest {
    /// A request for a prompt given as text: its shared prefixes are derived from the words
    /// exactly as the served simulator derives them ([`super::serve::prefix_segments`]), so a
    /// workload predicted and the same workload served hit the prefix caches alike.
    ///
    /// The identities run on through the output: the simulator knows the text it will stream
    /// (token `i` is the server's `i`-th word), so the cached sequence is the prompt followed by
    /// that text. A conversation's next turn, whose prompt is this prompt + this reply + a new
    /// message, then hits the blocks of the reply too, as vLLM's automatic prefix caching (it
    /// hashes generated tokens' blocks) and SGLang's radix cache (it inserts the whole
    /// sequence on finish) do.
    pub fn from_text(
        id: u64,
        arrival_ns: u64,
        prompt: &str,
        prompt_tokens: u32,
        max_output_tokens: u32,
    ) -> SimRequest {
        let mut sequence = String::with_capacity(prompt.len() + 4 * max_output_tokens as usize);
        sequence.push_str(prompt);
        sequence.push_str(&crate::server::output_words(0, max_output_tokens, 0));
        SimRequest {
            id,
            arrival_ns,
            prompt_tokens,
            max_output_tokens,
            prefix: super::serve::prefix_segments(
                &sequence,
                prompt_tokens.saturating_add(max_output_tokens),
            ),
            grammar: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum SimError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(
        "{model} does not fit on {gpu} at tp={tp}: weights take {weights_gib:.1} GiB per GPU of \
         the {budget_gib:.1} GiB the engine may use; use a larger GPU or more tensor parallelism"
    )]
    DoesNotFit {
        model: String,
        gpu: String,
        tp: u32,
        weights_gib: f64,
        budget_gib: f64,
    },
    #[error("invalid simulator setting: {0}")]
    Invalid(String),
}

/// Why the engine refused a request (the real engines answer HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub id: u64,
    pub reason: String,
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepReport {
    pub start_ns: u64,
    pub end_ns: u64,
    pub time: StepTime,
    pub load: StepLoad,
    /// Tokens that reach each request's stream at `end_ns`: (request, tokens). One token per
    /// step, except under multi-step scheduling, where a round's tokens come out together at
    /// the round's end (vLLM 0.6 streamed multi-step outputs that way).
    pub emitted: Vec<(u64, u32)>,
    /// Requests that produced their last token at `end_ns`.
    pub finished: Vec<u64>,
    /// Requests dropped because they can never be scheduled.
    pub rejected: Vec<Rejection>,
    /// Requests preempted (vLLM) or retracted (SGLang) this step.
    pub preempted: Vec<u64>,
}

/// The engine's gauges and counters at an instant, in the shape the engines export them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineGauges {
    pub t_ns: u64,
    pub running: u32,
    pub waiting: u32,
    /// Fraction of KV cache held by requests, 0–1.
    pub kv_usage: f64,
    pub prefix_cache_queries_total: u64,
    pub prefix_cache_hits_total: u64,
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    pub preemptions_total: u64,
    pub requests_finished_total: u64,
    /// Fraction of the last step the GPU was busy.
    pub gpu_busy: f64,
    /// Bytes in use per GPU as the driver (nvidia-smi, NVML, DCGM) reports them: weights,
    /// reserves and the whole KV pool, which both engines allocate at start-up whatever it
    /// holds. The part of the pool holding live tokens is `kv_usage`.
    pub gpu_memory_used_bytes: f64,
}

#[derive(Debug, Clone)]
struct ReqState {
    prompt: u32,
    max_out: u32,
    ident: SeqIdentity,
    output: u32,
    computed: u32,
    blocks: Vec<u32>,
    hashed: u32,
    slot: RadixSlot,
    counted_prompt: bool,
    /// Constrained by a grammar: pays the per-step mask cost.
    constrained: bool,
    /// Not schedulable before this time (its grammar is compiling).
    ready_ns: u64,
}

impl ReqState {
    fn total(&self) -> u32 {
        self.prompt + self.output
    }
    fn in_prefill(&self) -> bool {
        self.computed == 0 || self.computed + 1 < self.total()
    }
}

#[derive(Debug, Clone)]
enum Kv {
    Paged(PagedKv),
    Radix(RadixKv),
}

/// Static facts about a configured engine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EngineFacts {
    pub kv_capacity_tokens: u64,
    pub max_running: u32,
    pub max_model_len: u32,
    pub weights_bytes_per_gpu: f64,
    pub reserve_bytes_per_gpu: f64,
    pub kv_bytes_per_token_per_gpu: f64,
}

/// Why a request of this size can never be served by an engine with these facts and profile
/// (`None` when it can).
pub fn admission_error(
    facts: &EngineFacts,
    profile: &EngineProfile,
    prompt_tokens: u32,
    max_output_tokens: u32,
) -> Option<String> {
    if prompt_tokens == 0 {
        return Some("the prompt is empty".into());
    }
    if max_output_tokens == 0 {
        return Some("max_tokens must be at least 1".into());
    }
    let need = u64::from(prompt_tokens) + u64::from(max_output_tokens);
    if need > u64::from(facts.max_model_len) {
        return Some(format!(
            "this model's maximum context length is {} tokens; the request asks for {} ({} in \
             the prompt, {} to generate)",
            facts.max_model_len, need, prompt_tokens, max_output_tokens
        ));
    }
    if profile.batch_mode == BatchMode::PrefillFirst
        && !profile.chunked_prefill
        && prompt_tokens > profile.max_batched_tokens
    {
        return Some(format!(
            "the prompt ({prompt_tokens} tokens) exceeds max_num_batched_tokens ({}) and \
             chunked prefill is off",
            profile.max_batched_tokens
        ));
    }
    None
}

/// Add `more` (request, tokens) pairs into `into`, one entry per request.
fn merge_tokens(into: &mut Vec<(u64, u32)>, more: Vec<(u64, u32)>) {
    for (id, k) in more {
        match into.iter_mut().find(|(i, _)| *i == id) {
            Some(e) => e.1 += k,
            None => into.push((id, k)),
        }
    }
}

/// SGLang's admission reserve for future tokens starts at 0.7 and decays to 0.7 × 0.14 over 600
/// decode steps (`global_config.py`: default_init_new_token_ratio,
/// default_min_new_token_ratio_factor, default_new_token_ratio_decay_steps).
const SGLANG_INIT_RATIO: f64 = 0.7;
const SGLANG_MIN_RATIO: f64 = 0.7 * 0.14;
const SGLANG_RATIO_DECAY_STEPS: f64 = 600.0;
/// SGLang clips max_new_tokens at 4096 when estimating a request's future need
/// (`CLIP_MAX_NEW_TOKENS_ESTIMATION` in `schedule_policy.py`).
const SGLANG_CLIP_MAX_NEW: u32 = 4096;
/// Above this many waiting requests SGLang's LPM falls back to FCFS (prefix matching every
/// request would cost too much).
const SGLANG_LPM_QUEUE_LIMIT: usize = 128;
/// SGLang's LPM deprioritizes a request with less than 32 cached tokens when another request of
/// the same batch shares at least 32 prefix tokens with it
/// (`IN_BATCH_PREFIX_CACHING_CHECK_THRESHOLD`, `..._DEPRIORITIZE_THRESHOLD` in
/// `schedule_policy.py`).
const SGLANG_IN_BATCH_PREFIX_THRESHOLD: u32 = 32;
/// vLLM V0's block manager keeps 1 % of blocks free when admitting prefills (watermark).
const VLLM_V0_WATERMARK: f64 = 0.01;

/// A simulated serving engine.
#[derive(Debug, Clone)]
pub struct Engine {
    profile: EngineProfile,
    hw: Hardware,
    facts: EngineFacts,
    kv: Kv,
    reqs: HashMap<u64, ReqState>,
    waiting: VecDeque<u64>,
    running: Vec<u64>,
    /// SGLang: the request whose prefill is split over steps.
    chunked: Option<u64>,
    new_token_ratio: f64,
    /// vLLM multi-step: decode steps left in the current round.
    multi_left: u32,
    /// vLLM multi-step: tokens and finishes produced earlier in the current round.
    held_emitted: Vec<(u64, u32)>,
    held_finished: Vec<u64>,
    g: EngineGauges,
    /// Compiled (or compiling) grammars: constraint key → when it is ready.
    grammars: HashMap<u64, u64>,
}

impl Engine {
    pub fn new(
        profile: EngineProfile,
        gpu: GpuSpec,
        model: ModelSpec,
        tp: u32,
    ) -> Result<Engine, SimError> {
        let tp = tp.max(1);
        if profile.block_size == 0 || profile.max_batched_tokens == 0 {
            return Err(SimError::Invalid(
                "block_size and max_batched_tokens must be positive".into(),
            ));
        }
        if !(profile.memory_fraction > 0.0 && profile.memory_fraction <= 1.0) {
            return Err(SimError::Invalid(format!(
                "memory fraction {} must lie in (0, 1]",
                profile.memory_fraction
            )));
        }
        if model.heads % tp != 0 {
            return Err(SimError::Invalid(format!(
                "tp={tp} does not divide the {} attention heads of {}",
                model.heads, model.name
            )));
        }
        let gib = 1024.0 * 1024.0 * 1024.0;
        let budget = gpu.memory_gib * gib * profile.memory_fraction;
        let weights = model.weight_bytes() as f64 / f64::from(tp);
        let reserve = profile.activation_reserve_bytes(&model, tp);
        let kv_bytes = budget - weights - reserve;
        // KV heads are split across tensor-parallel ranks (replicated when fewer than tp).
        let kv_per_token = model.kv_bytes_per_token() as f64 / f64::from(tp.min(model.kv_heads));
        let tokens = if kv_bytes > 0.0 {
            (kv_bytes / kv_per_token).floor() as u64
        } else {
            0
        };
        if tokens < u64::from(profile.block_size) {
            return Err(SimError::DoesNotFit {
                model: model.name.clone(),
                gpu: gpu.name.clone(),
                tp,
                weights_gib: weights / gib,
                budget_gib: budget / gib,
            });
        }
        let bs = u64::from(profile.block_size);
        let blocks = (tokens / bs).min(u64::from(u32::MAX - 1));
        let capacity = blocks * bs;
        let max_model_len = profile
            .max_model_len
            .unwrap_or(model.max_context)
            .min(capacity.min(u64::from(u32::MAX)) as u32);
        let max_running = match (profile.engine, profile.max_running) {
            (EngineKind::Sglang, 0) => {
                let pool = (capacity as f64 / f64::from(model.max_context) * 512.0) as u64;
                (capacity / 2).min(pool.clamp(2048, 4096)) as u32
            }
            (_, n) => n.max(1),
        };
        let kv = match profile.engine {
            EngineKind::Vllm => Kv::Paged(PagedKv::new(
                blocks as u32,
                profile.block_size,
                profile.prefix_caching,
            )),
            EngineKind::Sglang => Kv::Radix(RadixKv::new(capacity, profile.prefix_caching)),
        };
        let facts = EngineFacts {
            kv_capacity_tokens: capacity,
            max_running,
            max_model_len,
            weights_bytes_per_gpu: weights,
            reserve_bytes_per_gpu: reserve,
            kv_bytes_per_token_per_gpu: kv_per_token,
        };
        Ok(Engine {
            profile,
            hw: Hardware { gpu, model, tp },
            facts,
            kv,
            reqs: HashMap::default(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            chunked: None,
            new_token_ratio: SGLANG_INIT_RATIO,
            multi_left: 0,
            held_emitted: Vec::new(),
            held_finished: Vec::new(),
            grammars: HashMap::default(),
            g: EngineGauges::default(),
        })
    }

    pub fn facts(&self) -> EngineFacts {
        self.facts
    }

    pub fn profile(&self) -> &EngineProfile {
        &self.profile
    }

    pub fn hardware(&self) -> &Hardware {
        &self.hw
    }

    /// Nothing waiting or running.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub fn kv_usage(&self) -> f64 {
        match &self.kv {
            Kv::Paged(p) => p.usage(),
            Kv::Radix(r) => r.usage(),
        }
    }

    /// KV tokens held by requests (including blocks' unused tails for paged caches).
    pub fn kv_used_tokens(&self) -> u64 {
        match &self.kv {
            Kv::Paged(p) => (p.total_blocks() - p.free_blocks()) as u64 * u64::from(p.block_size),
            Kv::Radix(r) => r.used(),
        }
    }

    /// The gauges and counters now.
    pub fn gauges(&self, t_ns: u64) -> EngineGauges {
        let mut g = self.g;
        g.t_ns = t_ns;
        g.running = self.running.len() as u32;
        g.waiting = self.waiting.len() as u32;
        g.kv_usage = self.kv_usage();
        g.gpu_memory_used_bytes = self.facts.weights_bytes_per_gpu
            + self.facts.reserve_bytes_per_gpu
            + self.facts.kv_capacity_tokens as f64 * self.facts.kv_bytes_per_token_per_gpu;
        g
    }

    /// Hand a request to the engine. Requests the engine could never serve are refused, as the
    /// real engines refuse them with HTTP 400.
    pub fn submit(&mut self, req: &SimRequest) -> Result<(), Rejection> {
        let reject = |reason: String| Rejection { id: req.id, reason };
        if let Some(reason) = admission_error(
            &self.facts,
            &self.profile,
            req.prompt_tokens,
            req.max_output_tokens,
        ) {
            return Err(reject(reason));
        }
        if self.reqs.contains_key(&req.id) {
            return Err(reject(format!(
                "request id {} is already in flight",
                req.id
            )));
        }
        // A new constraint's grammar compiles once; later requests with it wait only for
        // what is left of that compile.
        let ready_ns = match req.grammar {
            Some(key) => *self.grammars.entry(key).or_insert_with(|| {
                req.arrival_ns + (self.profile.structured.compile_s * 1e9).round() as u64
            }),
            None => 0,
        };
        self.reqs.insert(
            req.id,
            ReqState {
                constrained: req.grammar.is_some(),
                ready_ns,
                prompt: req.prompt_tokens,
                max_out: req.max_output_tokens,
                ident: SeqIdentity::new(
                    req.id,
                    req.prompt_tokens.saturating_add(req.max_output_tokens),
                    &req.prefix,
                ),
                output: 0,
                computed: 0,
                blocks: Vec::new(),
                hashed: 0,
                slot: RadixSlot::default(),
                counted_prompt: false,
            },
        );
        self.waiting.push_back(req.id);
        Ok(())
    }

    /// Drop a request (client went away); frees its memory.
    pub fn abort(&mut self, id: u64) {
        if let Some(mut r) = self.reqs.remove(&id) {
            self.free_kv(&mut r);
            self.waiting.retain(|&w| w != id);
            self.running.retain(|&w| w != id);
            if self.chunked == Some(id) {
                self.chunked = None;
            }
        }
    }

    // ---- KV helpers -------------------------------------------------------------------------

    /// Prefix-cache hit (tokens) for a waiting request, leaving at least one token to compute.
    fn cache_hit(&self, r: &ReqState) -> u32 {
        if r.computed > 0 || !self.profile.prefix_caching {
            return 0;
        }
        let limit = r.total() - 1;
        match &self.kv {
            Kv::Paged(p) => p.lookup(&r.ident, limit / p.block_size).len() as u32 * p.block_size,
            Kv::Radix(x) => x.match_len(&r.ident, limit),
        }
    }

    /// Admit a waiting request's prefix hit and reserve KV for `n` tokens after it. On failure
    /// nothing changes.
    fn admit_kv(&mut self, id: u64, n: u32, watermark_blocks: usize) -> Option<u32> {
        let mut r = self.reqs.remove(&id)?;
        let ok = match &mut self.kv {
            Kv::Paged(p) => {
                let hit = if r.computed == 0 && self.profile.prefix_caching {
                    p.lookup(&r.ident, (r.total() - 1) / p.block_size)
                } else {
                    Vec::new()
                };
                let hit_tokens = hit.len() as u32 * p.block_size;
                let target = hit_tokens.max(r.computed) + n;
                let need = (target.div_ceil(p.block_size) as usize).saturating_sub(hit.len());
                // Cached blocks no one holds sit in the free queue: taking them shrinks it, so
                // acquire first and then check what is left.
                p.acquire(&hit);
                if p.free_blocks() >= need + watermark_blocks {
                    let fresh = p.allocate(need).unwrap_or_default();
                    r.hashed = hit.len() as u32;
                    r.blocks = hit;
                    r.blocks.extend(fresh);
                    r.computed = hit_tokens;
                    Some(hit_tokens)
                } else {
                    p.release(&hit);
                    None
                }
            }
            Kv::Radix(x) => {
                let slot = x.admit(&r.ident, r.total() - 1);
                let mut slot2 = slot;
                if x.grow(&mut slot2, n) {
                    r.slot = slot2;
                    r.computed = slot.cached;
                    Some(slot.cached)
                } else {
                    let mut s = slot;
                    x.release(&mut s);
                    None
                }
            }
        };
        self.reqs.insert(id, r);
        ok
    }

    /// Make room for the running request's KV up to `target` tokens.
    fn grow(&mut self, id: u64, target: u32) -> bool {
        let Some(r) = self.reqs.get_mut(&id) else {
            return false;
        };
        match &mut self.kv {
            Kv::Paged(p) => {
                let need = (target.div_ceil(p.block_size) as usize).saturating_sub(r.blocks.len());
                if need == 0 {
                    return true;
                }
                match p.allocate(need) {
                    Some(b) => {
                        r.blocks.extend(b);
                        true
                    }
                    None => false,
                }
            }
            Kv::Radix(x) => {
                let have = r.slot.cached + r.slot.private;
                target <= have || x.grow(&mut r.slot, target - have)
            }
        }
    }

    fn free_kv(&mut self, r: &mut ReqState) {
        match &mut self.kv {
            Kv::Paged(p) => {
                p.release(&r.blocks);
                r.blocks.clear();
                r.hashed = 0;
            }
            Kv::Radix(x) => x.release(&mut r.slot),
        }
    }

    /// Put a running request back to waiting; it will recompute its prompt and output so far.
    fn preempt(&mut self, id: u64, front: bool, report: &mut StepReport) {
        if let Some(mut r) = self.reqs.remove(&id) {
            self.free_kv(&mut r);
            r.computed = 0;
            self.reqs.insert(id, r);
        }
        self.running.retain(|&x| x != id);
        if self.chunked == Some(id) {
            self.chunked = None;
        }
        if front {
            self.waiting.push_front(id);
        } else {
            self.waiting.push_back(id);
        }
        self.g.preemptions_total += 1;
        report.preempted.push(id);
    }

    fn count_query(&mut self, id: u64, hit: u32) {
        if let Some(r) = self.reqs.get(&id) {
            self.g.prefix_cache_queries_total += u64::from(r.total());
            self.g.prefix_cache_hits_total += u64::from(hit);
        }
    }

    // ---- schedulers -------------------------------------------------------------------------

    /// vLLM V1: running requests first, then waiting ones, under one token budget.
    fn schedule_mixed(&mut self, report: &mut StepReport) -> Vec<(u64, u32)> {
        let mut budget = self.profile.max_batched_tokens;
        let mut batch = Vec::new();
        let mut preempted = false;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let (computed, total) = match self.reqs.get(&id) {
                Some(r) => (r.computed, r.total()),
                None => break,
            };
            let n = (total - computed).min(budget);
            let mut scheduled = false;
            loop {
                if self.grow(id, computed + n) {
                    scheduled = true;
                    break;
                }
                let Some(&victim) = self.running.last() else {
                    break;
                };
                self.preempt(victim, true, report);
                preempted = true;
                if victim == id {
                    break;
                }
            }
            if !scheduled {
                break;
            }
            batch.push((id, n));
            budget -= n;
            i += 1;
        }
        if !preempted {
            self.admit_waiting(&mut batch, &mut budget, 0);
        }
        batch
    }

    /// Admit waiting requests in order while the budget, the sequence limit and the KV allow.
    fn admit_waiting(&mut self, batch: &mut Vec<(u64, u32)>, budget: &mut u32, watermark: usize) {
        while *budget > 0 && (self.running.len() as u32) < self.facts.max_running {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let Some(r) = self.reqs.get(&id) else {
                self.waiting.pop_front();
                continue;
            };
            let hit = self.cache_hit(r);
            let remaining = r.total() - hit.max(r.computed);
            if remaining > *budget && !self.profile.chunked_prefill {
                break;
            }
            let n = remaining.min(*budget);
            let Some(hit) = self.admit_kv(id, n, watermark) else {
                break;
            };
            self.count_query(id, hit);
            self.waiting.pop_front();
            self.running.push(id);
            batch.push((id, n));
            *budget -= n;
        }
    }

    /// vLLM V0 without chunked prefill: an all-prefill step when waiting requests fit, else an
    /// all-decode step (multi-step rounds when `scheduler_steps` > 1).
    fn schedule_prefill_first(&mut self, report: &mut StepReport) -> Vec<(u64, u32)> {
        let mut batch = Vec::new();
        if self.multi_left == 0 && !self.waiting.is_empty() {
            let mut budget = self.profile.max_batched_tokens;
            let watermark = match &self.kv {
                Kv::Paged(p) => (p.total_blocks() as f64 * VLLM_V0_WATERMARK) as usize,
                Kv::Radix(_) => 0,
            };
            self.admit_waiting(&mut batch, &mut budget, watermark);
            if !batch.is_empty() {
                return batch;
            }
        }
        if self.multi_left == 0 {
            self.multi_left = self.profile.scheduler_steps.max(1);
        }
        self.multi_left -= 1;
        let mut i = 0;
        while i < self.running.len() {
            let id = self.running[i];
            let Some(target) = self.reqs.get(&id).map(|r| r.total()) else {
                break;
            };
            let mut scheduled = false;
            loop {
                if self.grow(id, target) {
                    scheduled = true;
                    break;
                }
                let Some(&victim) = self.running.last() else {
                    break;
                };
                self.preempt(victim, true, report);
                // A preemption ends the multi-step round: the next step schedules afresh.
                self.multi_left = 0;
                if victim == id {
                    break;
                }
            }
            if !scheduled {
                break;
            }
            batch.push((id, 1));
            i += 1;
        }
        batch
    }

    /// SGLang: an extend (prefill) batch when one can be formed, else a decode batch.
    fn schedule_sglang(&mut self, report: &mut StepReport) -> Vec<(u64, u32)> {
        if let Some(batch) = self.sglang_prefill() {
            return batch;
        }
        self.sglang_decode(report)
    }

    fn sglang_prefill(&mut self) -> Option<Vec<(u64, u32)>> {
        if self.waiting.is_empty() && self.chunked.is_none() {
            return None;
        }
        let Kv::Radix(kv) = &self.kv else {
            return None;
        };
        // Room left after reserving the running requests' future tokens.
        let reserved: f64 = self
            .running
            .iter()
            .filter(|&&id| Some(id) != self.chunked)
            .filter_map(|id| self.reqs.get(id))
            .map(|r| {
                f64::from((r.max_out - r.output).min(SGLANG_CLIP_MAX_NEW)) * self.new_token_ratio
            })
            .sum();
        let mut rem_total = (kv.available() + kv.evictable()) as f64 - reserved;
        let mut rem_input = i64::from(self.profile.max_prefill_tokens);
        let mut rem_chunk = if self.profile.chunked_prefill {
            i64::from(self.profile.max_batched_tokens)
        } else {
            i64::MAX
        };
        let mut batch = Vec::new();

        if let Some(id) = self.chunked {
            let (computed, total) = self.reqs.get(&id).map(|r| (r.computed, r.total()))?;
            let n = (i64::from(total - computed)).min(rem_chunk) as u32;
            if self.grow(id, computed + n) {
                batch.push((id, n));
                rem_chunk -= i64::from(n);
                rem_input -= i64::from(n);
                rem_total -= f64::from(n);
                if computed + n < total {
                    return Some(batch);
                }
                self.chunked = None;
            } else {
                return None;
            }
        }

        if self.profile.schedule_policy == SchedulePolicy::LongestPrefixMatch
            && self.profile.prefix_caching
            && self.waiting.len() <= SGLANG_LPM_QUEUE_LIMIT
        {
            let mut keyed: Vec<(u32, u64)> = self
                .waiting
                .iter()
                .filter_map(|id| self.reqs.get(id).map(|r| (self.cache_hit(r), *id)))
                .collect();
            // Stable: equal matches keep their arrival order.
            keyed.sort_by_key(|k| std::cmp::Reverse(k.0));
            self.waiting = keyed.into_iter().map(|(_, id)| id).collect();
        }

        let lpm = self.profile.schedule_policy == SchedulePolicy::LongestPrefixMatch
            && self.profile.prefix_caching;
        let mut batch_prefixes: Vec<u64> = Vec::new();
        let mut idx = 0;
        while idx < self.waiting.len()
            && rem_chunk > 0
            && (self.running.len() as u32) < self.facts.max_running
        {
            let id = self.waiting[idx];
            let Some(r) = self.reqs.get(&id) else {
                self.waiting.remove(idx);
                continue;
            };
            let hit = self.cache_hit(r);
            if lpm && hit < SGLANG_IN_BATCH_PREFIX_THRESHOLD {
                // In-batch prefix caching: a request whose prefix another request of this batch
                // is about to compute waits one round and then hits the cache.
                let (lead, end) = r.ident.at(0);
                if end != u32::MAX && end >= SGLANG_IN_BATCH_PREFIX_THRESHOLD {
                    if batch_prefixes.contains(&lead) {
                        idx += 1;
                        continue;
                    }
                    batch_prefixes.push(lead);
                }
            }
            let extend = r.total() - hit;
            let future = (r.max_out - r.output).min(SGLANG_CLIP_MAX_NEW);
            if f64::from(extend + future) > rem_total {
                break;
            }
            if i64::from(extend) > rem_input && !batch.is_empty() {
                break;
            }
            let n = (i64::from(extend)).min(rem_chunk) as u32;
            let Some(hit) = self.admit_kv(id, n, 0) else {
                break;
            };
            self.count_query(id, hit);
            self.waiting.remove(idx);
            self.running.push(id);
            batch.push((id, n));
            rem_total -= f64::from(extend + future);
            rem_input -= i64::from(n);
            rem_chunk -= i64::from(n);
            if n < extend {
                self.chunked = Some(id);
                break;
            }
        }
        if batch.is_empty() {
            None
        } else {
            Some(batch)
        }
    }

    fn sglang_decode(&mut self, report: &mut StepReport) -> Vec<(u64, u32)> {
        let decoding = |e: &Engine| -> Vec<u64> {
            e.running
                .iter()
                .copied()
                .filter(|id| Some(*id) != e.chunked)
                .filter(|id| e.reqs.get(id).is_some_and(|r| !r.in_prefill()))
                .collect()
        };
        let mut ids = decoding(self);
        // Retract until every decoding request has a slot for its next token: the one with the
        // fewest output tokens (then the longest prompt) goes first (`retract_decode`).
        loop {
            let room = match &self.kv {
                Kv::Radix(x) => x.available() + x.evictable(),
                Kv::Paged(p) => p.free_blocks() as u64 * u64::from(p.block_size),
            };
            if room >= ids.len() as u64 || ids.len() <= 1 {
                break;
            }
            let victim = ids
                .iter()
                .copied()
                .filter_map(|id| {
                    self.reqs
                        .get(&id)
                        .map(|r| (r.output, std::cmp::Reverse(r.prompt), id))
                })
                .min()
                .map(|(_, _, id)| id);
            let Some(victim) = victim else {
                break;
            };
            self.preempt(victim, false, report);
            self.new_token_ratio = SGLANG_INIT_RATIO;
            ids = decoding(self);
        }
        let mut batch = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(target) = self.reqs.get(&id).map(|r| r.total()) else {
                continue;
            };
            if self.grow(id, target) {
                batch.push((id, 1));
            }
        }
        if !batch.is_empty() {
            self.new_token_ratio = (self.new_token_ratio
                - (SGLANG_INIT_RATIO - SGLANG_MIN_RATIO) / SGLANG_RATIO_DECAY_STEPS)
                .max(SGLANG_MIN_RATIO);
        }
        batch
    }

    // ---- the step ---------------------------------------------------------------------------

    /// Run one iteration starting at `now_ns`. `None` when there is nothing to do.
    pub fn step(&mut self, now_ns: u64) -> Option<StepReport> {
        if self.is_idle() {
            return None;
        }
        let mut report = StepReport {
            start_ns: now_ns,
            end_ns: now_ns,
            ..StepReport::default()
        };
        let multi_step =
            self.profile.batch_mode == BatchMode::PrefillFirst && self.profile.scheduler_steps > 1;
        // Requests whose grammar is still compiling sit out this step, keeping their place.
        let compiling: Vec<u64> = if self.grammars.is_empty() {
            Vec::new()
        } else {
            let reqs = &self.reqs;
            let (ready, compiling): (VecDeque<u64>, VecDeque<u64>) = self
                .waiting
                .iter()
                .partition(|id| reqs.get(id).is_none_or(|r| r.ready_ns <= now_ns));
            self.waiting = ready;
            compiling.into()
        };
        let mut batch = self.schedule(&mut report);
        if !compiling.is_empty() {
            for &id in compiling.iter().rev() {
                self.waiting.push_front(id);
            }
            if batch.is_empty() {
                // Nothing else to do: idle until the first grammar is ready.
                report.end_ns = compiling
                    .iter()
                    .filter_map(|id| self.reqs.get(id).map(|r| r.ready_ns))
                    .min()
                    .unwrap_or(now_ns)
                    .max(now_ns + 1);
                return Some(report);
            }
        }
        if batch.is_empty() {
            // A round that only preempted; schedule again with the memory it freed.
            batch = self.schedule(&mut report);
        }
        if batch.is_empty() && self.running.len() > 1 {
            // Running requests hold memory but none can advance (e.g. a chunked prefill and a
            // decode each waiting for the other's tokens): free the newest, as vLLM would.
            if let Some(&victim) = self.running.last() {
                self.preempt(victim, true, &mut report);
                batch = self.schedule(&mut report);
            }
        }
        if batch.is_empty() {
            // No progress is possible: drop one request with a reason so the run always ends.
            // (Not expected: a lone request always fits, as max_model_len ≤ the KV capacity.)
            let stuck = if self.running.is_empty() {
                self.waiting.front().copied()
            } else {
                self.running.last().copied()
            };
            if let Some(id) = stuck {
                self.abort(id);
                report.rejected.push(Rejection {
                    id,
                    reason: "the request's KV cache does not fit in the engine's memory".into(),
                });
            }
            return Some(report);
        }

        let mut load = StepLoad::default();
        let mut decode_only = true;
        for &(id, n) in &batch {
            if let Some(r) = self.reqs.get(&id) {
                let samples = r.computed + n >= r.total();
                decode_only &= !r.in_prefill();
                load.add(u64::from(r.computed), u64::from(n), samples);
            }
        }
        let mut ov = self.profile.overheads;
        if multi_step && decode_only {
            // Multi-step scheduling pays the scheduler and output processing once per round.
            ov = ov.per_round(self.profile.scheduler_steps);
        }
        let mut time = self.hw.step_time(&load, &ov);
        // Grammar masks: one per constrained sequence that samples this step.
        let masks = batch
            .iter()
            .filter_map(|&(id, n)| self.reqs.get(&id).map(|r| (r, n)))
            .filter(|(r, n)| r.constrained && r.computed + n >= r.total())
            .count();
        if masks > 0 {
            let sc = self.profile.structured;
            let mask_s = masks as f64 * sc.mask_per_seq_s;
            let gpu_s = time.gpu_s();
            time.grammar_mask_s = if sc.overlapped {
                (mask_s - gpu_s).max(0.0)
            } else {
                mask_s
            };
        }
        let dur_ns = (time.total_s() * 1e9).round().max(1.0) as u64;
        report.end_ns = now_ns + dur_ns;
        report.time = time;
        report.load = load;
        self.g.gpu_busy = time.busy_fraction();
        self.apply(&batch, &mut report);
        if multi_step && decode_only && self.multi_left > 0 && !self.running.is_empty() {
            // Mid-round: outputs are held until the round ends.
            let emitted = std::mem::take(&mut report.emitted);
            merge_tokens(&mut self.held_emitted, emitted);
            self.held_finished.append(&mut report.finished);
        } else if !self.held_emitted.is_empty() || !self.held_finished.is_empty() {
            let mut emitted = std::mem::take(&mut self.held_emitted);
            merge_tokens(&mut emitted, std::mem::take(&mut report.emitted));
            report.emitted = emitted;
            let mut finished = std::mem::take(&mut self.held_finished);
            finished.append(&mut report.finished);
            report.finished = finished;
        }
        Some(report)
    }

    fn schedule(&mut self, report: &mut StepReport) -> Vec<(u64, u32)> {
        match self.profile.batch_mode {
            BatchMode::Mixed => self.schedule_mixed(report),
            BatchMode::PrefillFirst => self.schedule_prefill_first(report),
            BatchMode::SglangPrefillFirst => self.schedule_sglang(report),
        }
    }

    /// Advance the batch's requests: computed tokens, block hashes, sampled tokens, finishes.
    fn apply(&mut self, batch: &[(u64, u32)], report: &mut StepReport) {
        for &(id, n) in batch {
            let Some(mut r) = self.reqs.remove(&id) else {
                continue;
            };
            let was_prefill = r.in_prefill();
            r.computed += n;
            match &mut self.kv {
                Kv::Paged(p) => {
                    let full = (r.computed / p.block_size).min(r.blocks.len() as u32);
                    for b in r.hashed..full {
                        p.register(
                            r.blocks[b as usize],
                            r.ident.block_hash((b + 1) * p.block_size),
                        );
                    }
                    r.hashed = r.hashed.max(full);
                }
                Kv::Radix(x) => {
                    // SGLang caches a request's prefix after each prefill chunk, finished or
                    // not (`cache_unfinished_req`), so later requests can share it at once.
                    let finishing = r.computed >= r.total() && r.output + 1 >= r.max_out;
                    if was_prefill && !finishing {
                        x.insert(&r.ident, r.computed, &mut r.slot, true);
                    }
                }
            }
            if r.computed >= r.total() {
                if !r.counted_prompt {
                    r.counted_prompt = true;
                    self.g.prompt_tokens_total += u64::from(r.prompt);
                }
                r.output += 1;
                self.g.generation_tokens_total += 1;
                report.emitted.push((id, 1));
                if r.output >= r.max_out {
                    report.finished.push(id);
                    self.g.requests_finished_total += 1;
                    if let Kv::Radix(x) = &mut self.kv {
                        x.insert(&r.ident, r.computed, &mut r.slot, false);
                    } else {
                        self.free_kv(&mut r);
                    }
                    self.running.retain(|&x| x != id);
                    continue;
                }
            }
            self.reqs.insert(id, r);
        }
    }

    /// Bookkeeping self-check for tests: memory within capacity, every request in one place.
    pub fn check(&self) -> Result<(), String> {
        if self.kv_used_tokens() > self.facts.kv_capacity_tokens {
            return Err(format!(
                "kv used {} > capacity {}",
                self.kv_used_tokens(),
                self.facts.kv_capacity_tokens
            ));
        }
        if let Kv::Radix(x) = &self.kv {
            x.check()?;
        }
        if self.waiting.len() + self.running.len() != self.reqs.len() {
            return Err(format!(
                "{} waiting + {} running != {} known",
                self.waiting.len(),
                self.running.len(),
                self.reqs.len()
            ));
        }
        if self.running.len() as u32 > self.facts.max_running {
            return Err("more running than the limit".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::catalog::Catalog;
    use crate::sim::predict::{predict_with, requests_from_lengths, SimLoad};
    use crate::sim::sharegpt::sharegpt_like;
    use proptest::prelude::*;

    fn engine(kind: EngineKind, gpu: &str, model: &str) -> Engine {
        let c = Catalog::builtin();
        let g = c.gpu(gpu).unwrap().clone();
        let m = c.model(model).unwrap().clone();
        Engine::new(EngineProfile::for_engine(kind, &g, 1), g, m, 1).unwrap()
    }

    /// Run requests to completion, checking the invariants after every step.
    fn drive(mut e: Engine, reqs: &[SimRequest]) -> (Engine, Vec<u64>, Vec<u64>, u64) {
        let mut finished = Vec::new();
        let mut rejected = Vec::new();
        for r in reqs {
            if let Err(rej) = e.submit(r) {
                assert!(!rej.reason.is_empty());
                rejected.push(rej.id);
            }
        }
        let mut now = 0;
        let mut last_end = 0;
        while let Some(rep) = e.step(now) {
            assert!(rep.end_ns >= rep.start_ns && rep.start_ns >= last_end);
            e.check().unwrap();
            assert!(e.kv_usage() <= 1.0 + 1e-9);
            finished.extend(&rep.finished);
            rejected.extend(rep.rejected.iter().map(|r| r.id));
            last_end = rep.end_ns;
            now = rep.end_ns;
        }
        (e, finished, rejected, now)
    }

    #[test]
    fn memory_pressure_preempts_and_everything_still_finishes() {
        for kind in [EngineKind::Vllm, EngineKind::Sglang] {
            // Llama-7B on an A10G holds ~14k KV tokens: 200 requests of 1.5k tokens overflow it.
            let e = engine(kind, "a10g", "llama-7b");
            let cap = e.facts().kv_capacity_tokens;
            assert!(cap < 20_000, "{cap}");
            let reqs = requests_from_lengths(&vec![(500, 1000); 200]);
            let (e, finished, rejected, _) = drive(e, &reqs);
            assert_eq!(finished.len(), 200, "{kind}");
            assert!(rejected.is_empty());
            assert!(
                e.gauges(0).preemptions_total > 0,
                "{kind}: no preemption under pressure"
            );
            assert!(e.is_idle());
            assert_eq!(e.kv_used_tokens(), 0, "{kind}: memory leaked");
        }
    }

    #[test]
    fn a_nearly_full_cache_with_chunked_prefills_never_stalls() {
        // Llama-7B on a T4 leaves ~800 (vLLM) or ~1,300 (SGLang) KV tokens: each request needs
        // most of them.
        for kind in [EngineKind::Vllm, EngineKind::Sglang] {
            let c = Catalog::builtin();
            let g = c.gpu("t4").unwrap().clone();
            let m = c.model("llama-7b").unwrap().clone();
            let mut p = EngineProfile::for_engine(kind, &g, 1);
            p.apply_option(
                "max_num_batched_tokens",
                &crate::sim::profile::OptionValue::Int(256),
            )
            .unwrap();
            let e = Engine::new(p, g, m, 1).unwrap();
            let cap = e.facts().kv_capacity_tokens;
            assert!(cap < 2000, "{cap}");
            let reqs = requests_from_lengths(&[(300, 350), (400, 250), (150, 500), (500, 150)]);
            let (e, finished, rejected, _) = drive(e, &reqs);
            assert_eq!(finished.len() + rejected.len(), 4, "{kind}");
            assert_eq!(finished.len(), 4, "{kind}: {rejected:?}");
            assert_eq!(e.kv_used_tokens(), 0);
        }
    }

    #[test]
    fn impossible_requests_are_rejected_with_a_reason() {
        let mut e = engine(EngineKind::Vllm, "a10g", "opt-125m");
        let too_long = SimRequest {
            id: 1,
            arrival_ns: 0,
            prompt_tokens: 2000,
            max_output_tokens: 100,
            prefix: Vec::new(),
            grammar: None,
        };
        let err = e.submit(&too_long).unwrap_err();
        assert!(
            err.reason.contains("maximum context length is 2048"),
            "{}",
            err.reason
        );
        let zero = SimRequest {
            max_output_tokens: 0,
            prompt_tokens: 10,
            ..too_long.clone()
        };
        assert!(e.submit(&zero).is_err());
    }

    #[test]
    fn a_model_that_does_not_fit_is_an_error_not_a_panic() {
        let c = Catalog::builtin();
        let g = c.gpu("t4").unwrap().clone();
        let m = c.model("llama-3.1-70b").unwrap().clone();
        let err = Engine::new(EngineProfile::vllm(&g), g, m, 1).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn tokens_are_emitted_once_per_step_and_timestamps_are_monotone() {
        let e = engine(EngineKind::Vllm, "a10g", "opt-125m");
        let reqs = requests_from_lengths(&sharegpt_like(50, 3, 202.0, 179.0));
        let p = predict_with(e, &reqs, SimLoad::Closed { in_flight: 8 }, 0);
        for (r, q) in p.records.iter().zip(&reqs) {
            assert!(r.outcome.is_success());
            assert_eq!(r.output_tokens, q.max_output_tokens);
            assert_eq!(r.events.len() as u32, q.max_output_tokens);
            assert!(r.events.windows(2).all(|w| w[0].0 <= w[1].0));
            assert!(r.first_token_ns.unwrap() > r.sent_ns);
            assert!(r.finished_ns >= r.first_token_ns.unwrap());
        }
    }

    #[test]
    fn multi_step_rounds_stream_their_tokens_together() {
        let c = Catalog::builtin();
        let g = c.gpu("a100-80gb").unwrap().clone();
        let m = c.model("llama-3.1-8b").unwrap().clone();
        let p = crate::sim::calibration::vllm_060_multistep(&EngineProfile::vllm(&g));
        let e = Engine::new(p, g, m, 1).unwrap();
        let reqs = requests_from_lengths(&[(100, 41), (200, 41)]);
        let pred = predict_with(e, &reqs, SimLoad::Open, 0);
        for r in &pred.records {
            assert_eq!(r.output_tokens, 41);
            // The first token comes from the prefill step, then rounds of 10.
            let counts: Vec<u32> = r.events.iter().map(|e| e.1).collect();
            assert_eq!(counts, vec![1, 10, 10, 10, 10], "{counts:?}");
        }
    }

    #[test]
    fn throughput_never_beats_the_roofline_bound() {
        for kind in [EngineKind::Vllm, EngineKind::Sglang] {
            let e = engine(kind, "a100-80gb", "llama-3.1-8b");
            let reqs = requests_from_lengths(&sharegpt_like(300, 5, 202.0, 179.0));
            let p = predict_with(e, &reqs, SimLoad::Open, 0);
            assert!(p.duration_ns as f64 >= p.roofline_bound_ns, "{kind}");
            assert!(p.busy_ns <= p.duration_ns as f64);
        }
    }

    #[test]
    fn the_same_input_gives_the_same_prediction() {
        for kind in [EngineKind::Vllm, EngineKind::Sglang] {
            let reqs = requests_from_lengths(&sharegpt_like(200, 9, 202.0, 179.0));
            let a = predict_with(
                engine(kind, "l4", "llama-3.2-1b"),
                &reqs,
                SimLoad::Closed { in_flight: 32 },
                0,
            );
            let b = predict_with(
                engine(kind, "l4", "llama-3.2-1b"),
                &reqs,
                SimLoad::Closed { in_flight: 32 },
                0,
            );
            assert_eq!(a, b);
        }
    }

    fn shared_prefix_workload(n: usize) -> Vec<SimRequest> {
        // Four system prompts of 1000 tokens, each followed by a unique 100-token question.
        (0..n)
            .map(|i| SimRequest {
                id: i as u64,
                arrival_ns: i as u64 * 50_000_000,
                prompt_tokens: 1100,
                max_output_tokens: 50,
                prefix: vec![PrefixSegment {
                    hash: (i % 4) as u64,
                    tokens: 1000,
                }],
                grammar: None,
            })
            .collect()
    }

    #[test]
    fn both_prefix_caches_hit_on_shared_prefixes() {
        let reqs = shared_prefix_workload(40);
        let mut hit_rates = Vec::new();
        for kind in [EngineKind::Vllm, EngineKind::Sglang] {
            let p = predict_with(
                engine(kind, "a10g", "llama-3.2-1b"),
                &reqs,
                SimLoad::Open,
                0,
            );
            let g = p.gauges.last().unwrap();
            let rate = g.prefix_cache_hits_total as f64 / g.prefix_cache_queries_total as f64;
            // 36 of 40 requests can reuse 1000 of their 1150 tokens.
            assert!(rate > 0.7, "{kind}: hit rate {rate}");
            hit_rates.push((kind, g.prefix_cache_hits_total));
        }
        // vLLM caches whole 16-token blocks only (1000 → 992 tokens per hit); SGLang's radix tree
        // matches to the token.
        let (v, s) = (hit_rates[0].1, hit_rates[1].1);
        assert_eq!(v, 36 * 992, "vllm hits");
        assert_eq!(s, 36 * 1000, "sglang hits");
    }

    #[test]
    fn prefix_hits_make_prefill_cheaper() {
        let reqs = shared_prefix_workload(40);
        let c = Catalog::builtin();
        let g = c.gpu("a10g").unwrap().clone();
        let m = c.model("llama-3.2-1b").unwrap().clone();
        let mut off = EngineProfile::vllm(&g);
        off.prefix_caching = false;
        let with = predict_with(
            engine(EngineKind::Vllm, "a10g", "llama-3.2-1b"),
            &reqs,
            SimLoad::Open,
            0,
        );
        let without = predict_with(Engine::new(off, g, m, 1).unwrap(), &reqs, SimLoad::Open, 0);
        let ttft = |p: &crate::sim::predict::Prediction| -> u64 {
            p.records
                .iter()
                .map(|r| r.first_token_ns.unwrap() - r.sent_ns)
                .sum()
        };
        assert!(ttft(&with) < ttft(&without));
    }

    #[test]
    fn lpm_scheduling_groups_requests_by_prefix() {
        // Everything arrives at once, under the 128-request LPM limit.
        let mut reqs = shared_prefix_workload(60);
        for r in &mut reqs {
            r.arrival_ns = 0;
        }
        let c = Catalog::builtin();
        let g = c.gpu("t4").unwrap().clone();
        let m = c.model("llama-3.2-1b").unwrap().clone();
        let lpm = EngineProfile::sglang(&g, 1);
        let mut fcfs = lpm.clone();
        fcfs.schedule_policy = SchedulePolicy::Fcfs;
        let a = predict_with(
            Engine::new(lpm, g.clone(), m.clone(), 1).unwrap(),
            &reqs,
            SimLoad::Open,
            0,
        );
        let b = predict_with(Engine::new(fcfs, g, m, 1).unwrap(), &reqs, SimLoad::Open, 0);
        assert_ne!(a.records, b.records, "the policy changes the schedule");
        // Request 4 shares request 0's prefix, request 2 does not: LPM serves 4 first once 0's
        // prefix is cached, FCFS keeps arrival order.
        let first = |p: &crate::sim::predict::Prediction, i: usize| p.records[i].first_token_ns;
        assert!(first(&a, 4) < first(&a, 2), "lpm");
        assert!(first(&b, 2) <= first(&b, 4), "fcfs");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_workload_completes_within_capacity(
            lens in proptest::collection::vec((1u32..1500, 1u32..600), 1..60),
            shared in 0u32..800,
            sglang in any::<bool>(),
            concurrency in 1usize..40,
            chunk in 16i64..2048,
        ) {
            let kind = if sglang { EngineKind::Sglang } else { EngineKind::Vllm };
            let c = Catalog::builtin();
            let g = c.gpu("t4").unwrap().clone();
            let m = c.model("llama-7b").unwrap().clone();
            let mut profile = EngineProfile::for_engine(kind, &g, 1);
            profile
                .apply_option("max_num_batched_tokens", &crate::sim::profile::OptionValue::Int(chunk))
                .unwrap();
            let e = Engine::new(profile, g, m, 1).unwrap();
            let reqs: Vec<SimRequest> = lens.iter().enumerate().map(|(i, &(p, o))| SimRequest {
                id: i as u64,
                arrival_ns: 0,
                prompt_tokens: p,
                max_output_tokens: o,
                prefix: vec![PrefixSegment { hash: (i % 3) as u64, tokens: shared }],
                grammar: None,
            }).collect();
            let p = predict_with(e.clone(), &reqs, SimLoad::Closed { in_flight: concurrency }, 0);
            for (r, q) in p.records.iter().zip(&reqs) {
                match &r.outcome {
                    crate::record::Outcome::Success => prop_assert_eq!(r.output_tokens, q.max_output_tokens),
                    crate::record::Outcome::Failed { message, .. } => prop_assert!(!message.is_empty()),
                }
            }
            for g in &p.gauges {
                prop_assert!(g.kv_usage <= 1.0 + 1e-9);
            }
            let (e, finished, rejected, _) = drive(e, &reqs);
            prop_assert_eq!(finished.len() + rejected.len(), reqs.len());
            prop_assert_eq!(e.kv_used_tokens(), 0);
        }
    }
}

#[cfg(test)]
mod structured_tests {
    use super::*;
    use crate::sim::catalog::Catalog;
    use crate::sim::predict::requests_from_lengths;

    fn engine(kind: EngineKind) -> Engine {
        engine_with(kind, "facebook/opt-125m")
    }

    fn engine_with(kind: EngineKind, model: &str) -> Engine {
        let c = Catalog::builtin();
        let g = c.gpu("a10g").unwrap().clone();
        let m = c.model(model).unwrap().clone();
        Engine::new(EngineProfile::for_engine(kind, &g, 1), g, m, 1).unwrap()
    }

    /// (first emission, last finish) in ns, running `reqs` from t = 0.
    fn run(mut e: Engine, reqs: &[SimRequest]) -> (u64, u64) {
        for r in reqs {
            e.submit(r).unwrap();
        }
        let (mut now, mut first, mut last) = (0, None, 0);
        while let Some(rep) = e.step(now) {
            e.check().unwrap();
            if !rep.emitted.is_empty() && first.is_none() {
                first = Some(rep.end_ns);
            }
            if !rep.finished.is_empty() {
                last = rep.end_ns;
            }
            now = rep.end_ns;
        }
        (first.unwrap_or(0), last)
    }

    fn constrained(mut reqs: Vec<SimRequest>, key: u64) -> Vec<SimRequest> {
        for r in &mut reqs {
            r.grammar = Some(key);
        }
        reqs
    }

    #[test]
    fn a_new_grammar_compiles_once_before_its_requests_run() {
        let e = engine(EngineKind::Vllm);
        let compile_ns = (e.profile().structured.compile_s * 1e9) as u64;
        let plain = requests_from_lengths(&[(64, 16); 8]);
        let (first_plain, end_plain) = run(engine(EngineKind::Vllm), &plain);
        let (first_c, end_c) = run(e, &constrained(plain.clone(), 7));
        // The first token waits for the compile; the batch then runs as before, plus masks.
        assert!(
            first_c >= first_plain + compile_ns,
            "{first_c} vs {first_plain}"
        );
        assert!(end_c >= end_plain + compile_ns);
        // Two distinct grammars arriving together compile in parallel, not one after another.
        let mut two = constrained(plain.clone(), 7);
        for r in two.iter_mut().skip(4) {
            r.grammar = Some(8);
        }
        let (first_two, _) = run(engine(EngineKind::Vllm), &two);
        assert!(first_two < first_plain + 2 * compile_ns);
    }

    #[test]
    fn vllm_pays_the_mask_per_step_and_sglang_hides_it_behind_the_gpu() {
        let lens = [(32, 64); 64];
        for (kind, pays) in [(EngineKind::Vllm, true), (EngineKind::Sglang, false)] {
            // A 7B model: its decode step (~25 ms of weights read on an A10G) is longer than
            // 64 masks (2.6 ms), so an overlapped mask is hidden entirely.
            let mut e = engine_with(kind, "llama-7b");
            // Compile out of the way: only the per-step cost is compared.
            e.profile.structured.compile_s = 0.0;
            let mut e_plain = engine_with(kind, "llama-7b");
            e_plain.profile.structured.compile_s = 0.0;
            let plain = requests_from_lengths(&lens);
            let (_, end_plain) = run(e_plain, &plain);
            let (_, end_c) = run(e, &constrained(plain, 1));
            // 64 decode steps of 64 sequences at 40 µs each: ≈ 164 ms more for vLLM.
            let mask_total = 64.0 * 64.0 * 40e-6 * 1e9;
            let extra = end_c as f64 - end_plain as f64;
            if pays {
                assert!(extra >= 0.9 * mask_total, "{kind:?}: {extra}");
            } else {
                assert!(extra < 0.5 * mask_total, "{kind:?}: {extra}");
            }
        }
    }
}
