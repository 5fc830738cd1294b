//! The session driver: multi-turn conversations, each one task that sends its turns in order.
//!
//! A turn's body holds the reply to the turn before, so bodies cannot be prepared ahead as the
//! single-turn path prepares them: each is built (`openai::build_chat_body`) right before its
//! send, from the history the task keeps (system?, user 1, assistant 1, …, user k+1). Between
//! turns the task waits the planned think time. A turn is due at the previous turn's finish
//! plus the think time (`scheduled_ns`), so `sent_ns − scheduled_ns` shows any lag of the
//! client's own, body building included.
//!
//! Pacing follows the single-turn loops, with conversations where those have requests:
//! - closed loop of N: N lanes, each running one conversation after another from the pass, so
//!   N conversations are active at once and a finished one is replaced;
//! - open loop: conversations *start* on the schedule (all at t = 0 for `inf`); an in-flight
//!   cap (`--max-concurrency`) makes a turn wait for a slot, recorded as queue time.
//!
//! Stop conditions count requests (turns). Once the count or the deadline is reached no new
//! turn is sent and conversations end early; a failed turn ends its conversation (its later
//! turns need the reply and were never due). No lock per request: the count, the ids and the
//! conversation tallies are atomics; records go to the same unbounded channel as everywhere.

use super::{Interrupt, LoadMode, LoadPlan, LoadReport, Pacing, SendContext, Sender, StopReason};
use crate::openai::{build_chat_body, BodyOptions, ChatMessage};
use crate::record::{FailureKind, Outcome, Phase, RequestRecord};
use crate::workload::ConversationPlan;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// Where the session driver reads the time and sleeps: the precise timer thread in runs
/// (tokio's 1 ms ticks would add up to 1 ms of lag to every think time), tokio's clock in
/// tests, so they run on its paused clock without sleeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Precise,
    Tokio,
}

impl Clock {
    /// Nanoseconds since `epoch` on this clock.
    pub fn now_ns(self, epoch: Instant) -> u64 {
        match self {
            Clock::Precise => epoch.elapsed().as_nanos() as u64,
            Clock::Tokio => tokio::time::Instant::now()
                .saturating_duration_since(tokio::time::Instant::from_std(epoch))
                .as_nanos() as u64,
        }
    }

    async fn sleep_until_ns(self, epoch: Instant, ns: u64) {
        let at = epoch
            .checked_add(Duration::from_nanos(ns))
            .unwrap_or_else(|| epoch + Duration::from_secs(u64::from(u32::MAX)));
        match self {
            Clock::Precise => crate::server::timer::sleep_until(at).await,
            Clock::Tokio => tokio::time::sleep_until(at.into()).await,
        }
    }
}

/// The conversations of a run, planned before it starts.
#[derive(Debug, Clone)]
pub struct SessionWork {
    /// The measured pass.
    pub conversations: Vec<ConversationPlan>,
    /// Whole warmup conversations, run before the measured phase (`--num-warmups` of them).
    pub warmup: Vec<ConversationPlan>,
    /// Everything in a body but the messages and `max_tokens`.
    pub body: BodyOptions,
    /// Leave each reply's text in its record (`--save-detailed`); otherwise the driver takes
    /// it out once it is in the history, so the journal does not hold every reply.
    pub keep_text: bool,
}

/// How the conversations of the measured phase ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConversationReport {
    /// Conversations that sent at least one turn.
    pub started: u64,
    /// Every turn sent and answered.
    pub completed: u64,
    /// Ended by a failed turn (its later turns were never sent).
    pub ended_by_failure: u64,
    /// Cut short by the request count, the duration or an interrupt.
    pub ended_early: u64,
}

/// Run warmup conversations, then the measured phase, as `plan` says. Records go to `out` as
/// turns complete; returns when every conversation has ended.
pub async fn run_sessions<S: Sender>(
    plan: LoadPlan,
    sender: Arc<S>,
    work: SessionWork,
    out: mpsc::UnboundedSender<RequestRecord>,
    epoch: Instant,
    interrupt: Interrupt,
    clock: Clock,
) -> LoadReport {
    let SessionWork {
        conversations,
        warmup,
        body,
        keep_text,
    } = work;
    let common = Common {
        sender,
        out,
        epoch,
        clock,
        interrupt: interrupt.clone(),
        body,
        keep_text,
    };
    let mut next_id = 0;
    if !warmup.is_empty() {
        let conv_base = 0;
        let d = Driver::new(
            common.clone(),
            Phase::Warmup,
            warmup,
            conv_base,
            0,
            (None, None),
            None,
        );
        let d = drive(
            d,
            LoadMode::Closed {
                concurrency: plan.warmup_concurrency,
            },
            0,
            plan.seed,
        )
        .await;
        // Every reserved id produced exactly one record (sent or never sent).
        next_id = d.reserved.load(Ordering::SeqCst);
    }
    let conv_base = plan.warmups;
    let measured_start_ns = clock.now_ns(epoch);
    let deadline = plan
        .stop
        .duration()
        .map(|t| measured_start_ns.saturating_add(super::duration_ns(t)));
    let max_requests = plan.stop.max_requests();
    let cap = match &plan.mode {
        LoadMode::Open {
            max_in_flight: Some(n),
            ..
        } => Some(Arc::new(Semaphore::new(n.get()))),
        _ => None,
    };
    let d = Driver::new(
        common,
        Phase::Measured,
        conversations,
        conv_base,
        next_id,
        (max_requests, deadline),
        cap,
    );
    let d = drive(d, plan.mode.clone(), measured_start_ns, plan.seed).await;
    let reserved = d.reserved.load(Ordering::SeqCst);
    let reason = if interrupt.is_set() {
        StopReason::Interrupted
    } else if max_requests.is_some_and(|n| reserved >= n) {
        StopReason::RequestCount
    } else if d.hit_deadline.load(Ordering::SeqCst) {
        StopReason::Duration
    } else {
        StopReason::WorkloadExhausted
    };
    // As in the single-turn path: in count mode, requests still due when the run was
    // interrupted are recorded as never sent.
    if reason == StopReason::Interrupted {
        if let Some(n) = max_requests {
            let now = clock.now_ns(epoch);
            for seq in reserved.min(n)..n {
                d.emit_not_sent(seq, now, None);
            }
        }
    }
    let tally = |c: &AtomicU64| c.load(Ordering::SeqCst);
    LoadReport {
        measured_start_ns,
        measured_sent: tally(&d.sent),
        not_sent: tally(&d.not_sent),
        stop_reason: reason,
        conversations: Some(ConversationReport {
            started: tally(&d.started),
            completed: tally(&d.completed),
            ended_by_failure: tally(&d.failed),
            ended_early: tally(&d.cut),
        }),
    }
}

/// What every phase shares.
struct Common<S> {
    sender: Arc<S>,
    out: mpsc::UnboundedSender<RequestRecord>,
    epoch: Instant,
    clock: Clock,
    interrupt: Interrupt,
    body: BodyOptions,
    keep_text: bool,
}

impl<S> Clone for Common<S> {
    fn clone(&self) -> Self {
        Common {
            sender: Arc::clone(&self.sender),
            out: self.out.clone(),
            epoch: self.epoch,
            clock: self.clock,
            interrupt: self.interrupt.clone(),
            body: self.body.clone(),
            keep_text: self.keep_text,
        }
    }
}

/// One phase's state, shared by its conversation tasks (atomics only).
struct Driver<S> {
    c: Common<S>,
    phase: Phase,
    conversations: Vec<ConversationPlan>,
    /// Conversation ids are `conv_base + index in the pass` (warmup ones come first).
    conv_base: u64,
    /// Request ids are `first_id + reservation`.
    first_id: u64,
    max_requests: Option<u64>,
    deadline: Option<u64>,
    cap: Option<Arc<Semaphore>>,
    next_conversation: AtomicUsize,
    /// Turns given a request id (each produces exactly one record).
    reserved: AtomicU64,
    sent: AtomicU64,
    not_sent: AtomicU64,
    hit_deadline: AtomicBool,
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cut: AtomicU64,
}

/// How one conversation ended.
enum End {
    Completed,
    Failed,
    Cut,
}

impl<S: Sender> Driver<S> {
    fn new(
        c: Common<S>,
        phase: Phase,
        conversations: Vec<ConversationPlan>,
        conv_base: u64,
        first_id: u64,
        (max_requests, deadline): (Option<u64>, Option<u64>),
        cap: Option<Arc<Semaphore>>,
    ) -> Driver<S> {
        Driver {
            c,
            phase,
            conversations,
            conv_base,
            first_id,
            max_requests,
            deadline,
            cap,
            next_conversation: AtomicUsize::new(0),
            reserved: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            not_sent: AtomicU64::new(0),
            hit_deadline: AtomicBool::new(false),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.c.clock.now_ns(self.c.epoch)
    }

    /// True once no new turn may be sent.
    fn stopped(&self) -> bool {
        self.c.interrupt.is_set()
            || self
                .max_requests
                .is_some_and(|n| self.reserved.load(Ordering::SeqCst) >= n)
            || self.past_deadline(self.now())
    }

    fn past_deadline(&self, at_ns: u64) -> bool {
        let past = self.deadline.is_some_and(|d| at_ns >= d);
        if past {
            self.hit_deadline.store(true, Ordering::SeqCst);
        }
        past
    }

    /// A request id for the next turn, unless the count is reached.
    fn reserve(&self) -> Option<u64> {
        let seq = self.reserved.fetch_add(1, Ordering::SeqCst);
        if self.max_requests.is_some_and(|n| seq >= n) {
            return None;
        }
        Some(seq)
    }

    /// The next conversation of the pass, unless the pass is done or the phase stopped.
    fn take_conversation(&self) -> Option<usize> {
        if self.stopped() {
            return None;
        }
        let i = self.next_conversation.fetch_add(1, Ordering::SeqCst);
        (i < self.conversations.len()).then_some(i)
    }

    /// Sleep until `due_ns`; false if interrupted first.
    async fn wait_until(&self, due_ns: u64) -> bool {
        if self.now() >= due_ns {
            return !self.c.interrupt.is_set();
        }
        tokio::select! {
            biased;
            _ = self.c.interrupt.wait() => false,
            _ = self.c.clock.sleep_until_ns(self.c.epoch, due_ns) => true,
        }
    }

    fn emit_not_sent(&self, seq: u64, now: u64, at: Option<(u64, u32)>) {
        let mut r = RequestRecord::failed_before_response(
            self.first_id + seq,
            self.phase,
            (now, now, now),
            now,
            FailureKind::NotSent,
            "run interrupted before this request was sent".into(),
        );
        if let Some((conv, turn)) = at {
            r.conversation = Some(conv);
            r.turn = Some(turn);
        }
        self.not_sent.fetch_add(1, Ordering::SeqCst);
        let _ = self.c.out.send(r);
    }
}

/// Run one phase's conversations in the given mode; returns the driver with its tallies once
/// every conversation has ended.
async fn drive<S: Sender>(
    d: Driver<S>,
    mode: LoadMode,
    start_ns: u64,
    seed: u64,
) -> Arc<Driver<S>> {
    let d = Arc::new(d);
    let mut tasks = Vec::new();
    match mode {
        LoadMode::Closed { concurrency } => {
            for _ in 0..lanes(concurrency, d.conversations.len()) {
                let d = Arc::clone(&d);
                tasks.push(tokio::spawn(async move {
                    while let Some(i) = d.take_conversation() {
                        let now = d.now();
                        converse(&d, i, now).await;
                    }
                }));
            }
        }
        LoadMode::Open { pacing, .. } => {
            let offsets: Box<dyn Iterator<Item = u64> + Send> = match pacing {
                Pacing::AllAtOnce => Box::new(std::iter::repeat(0)),
                Pacing::Rate { .. } | Pacing::Ramp { .. } => match pacing.schedule(seed) {
                    Some(Ok(s)) => Box::new(s),
                    // Config validation rejects such rates; an empty schedule is the safe
                    // fallback (the run then reports its workload exhausted).
                    _ => Box::new(std::iter::empty()),
                },
                // Config gives a trace's clock only to a trace workload, never to
                // conversations; were it given, each offset would start one conversation.
                Pacing::Trace(offsets) => Box::new((*offsets).clone().into_iter()),
            };
            for offset in offsets {
                let due = start_ns.saturating_add(offset);
                if d.past_deadline(due) || d.stopped() || !d.wait_until(due).await {
                    break;
                }
                let Some(i) = d.take_conversation() else {
                    break;
                };
                let d = Arc::clone(&d);
                tasks.push(tokio::spawn(async move { converse(&d, i, due).await }));
                if tasks.len() >= 4096 {
                    tasks.retain(|t| !t.is_finished());
                }
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    d
}

fn lanes(concurrency: NonZeroUsize, conversations: usize) -> usize {
    concurrency.get().min(conversations)
}

/// One conversation: its turns in order, each built from the history right before its send.
async fn converse<S: Sender>(d: &Driver<S>, index: usize, first_due_ns: u64) {
    let plan = &d.conversations[index];
    let conv = d.conv_base + index as u64;
    let mut messages: Vec<ChatMessage> = Vec::with_capacity(1 + 2 * plan.turns.len());
    let mut history_tokens = 0u32;
    if let Some((text, tokens)) = &plan.system {
        messages.push(ChatMessage::system(text.clone()));
        history_tokens = *tokens;
    }
    let mut due = first_due_ns;
    let mut end = End::Completed;
    let mut turns_sent = 0u32;
    for (k, turn) in plan.turns.iter().enumerate() {
        let k = k as u32;
        if k > 0 {
            due = due.saturating_add(super::duration_ns(turn.think));
            // A turn due after the deadline, or past the count, is never sent: end now rather
            // than sleep through the think time first.
            if d.past_deadline(due) || d.stopped() || !d.wait_until(due).await {
                end = End::Cut;
                break;
            }
        }
        if d.stopped() {
            end = End::Cut;
            break;
        }
        let Some(seq) = d.reserve() else {
            end = End::Cut;
            break;
        };
        let (permit, slot_ns) = match &d.cap {
            None => (None, due),
            Some(sem) => {
                let acquired = tokio::select! {
                    biased;
                    _ = d.c.interrupt.wait() => None,
                    p = Arc::clone(sem).acquire_owned() => p.ok(),
                };
                match acquired {
                    Some(p) => (Some(p), d.now()),
                    None => {
                        // Due and given an id, but the run was interrupted while it waited.
                        d.emit_not_sent(seq, d.now(), Some((conv, k)));
                        end = End::Cut;
                        break;
                    }
                }
            }
        };
        messages.push(ChatMessage::user(turn.user.clone()));
        history_tokens = history_tokens.saturating_add(turn.user_tokens);
        let ctx = SendContext {
            id: d.first_id + seq,
            phase: d.phase,
            epoch: d.c.epoch,
            scheduled_ns: due,
            slot_ns,
            prompt_tokens: history_tokens,
            max_tokens: turn.max_tokens,
        };
        let body = build_chat_body(&messages, turn.max_tokens, &d.c.body);
        d.sent.fetch_add(1, Ordering::SeqCst);
        turns_sent += 1;
        let mut rec =
            super::send_unless_interrupted(&*d.c.sender, body, ctx, &d.c.interrupt, || d.now())
                .await;
        drop(permit);
        rec.conversation = Some(conv);
        rec.turn = Some(k);
        let reply = if d.c.keep_text {
            rec.output_text.clone()
        } else {
            rec.output_text.take()
        };
        let (outcome, finished_ns, output_tokens) =
            (rec.outcome.clone(), rec.finished_ns, rec.output_tokens);
        // The receiver only goes away when the whole run is being torn down.
        let _ = d.c.out.send(rec);
        match outcome {
            Outcome::Success => {}
            Outcome::Failed {
                kind: FailureKind::Cancelled,
                ..
            } => {
                end = End::Cut;
                break;
            }
            Outcome::Failed { .. } => {
                end = End::Failed;
                break;
            }
        }
        // The client keeps the text whenever it drives conversations (app::run); a reply
        // without text would be sent back as an empty message.
        messages.push(ChatMessage::assistant(reply.unwrap_or_default()));
        history_tokens = history_tokens.saturating_add(output_tokens);
        due = finished_ns;
    }
    if turns_sent == 0 {
        return; // never started: not a conversation of this run
    }
    d.started.fetch_add(1, Ordering::SeqCst);
    let tally = match end {
        End::Completed => &d.completed,
        End::Failed => &d.failed,
        End::Cut => &d.cut,
    };
    tally.fetch_add(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests;
