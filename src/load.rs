//! Drive a run: decide when each request is sent, hand it to the sender, and pass every
//! resulting record on as it completes.
//!
//! Two loops, as in the literature on load generators:
//! - **closed loop** keeps N requests in flight: a request is scheduled the moment a slot frees,
//!   so the server's speed sets the pace (`--max-concurrency N`, the seed study's model);
//! - **open loop** sends on a schedule whatever the server does (`--request-rate R`), every
//!   send time an absolute offset from one start instant; an optional in-flight cap makes
//!   requests wait, and that wait is recorded as queue time, never hidden.
//!
//! Nothing scheduled is dropped silently: a request that was due but not sent because the run
//! was interrupted becomes a `NotSent` record, and one in flight becomes `Cancelled`.
//!
//! The hot path is one dispatcher (a tokio task, or a dedicated OS thread for rate schedules
//! because `std::thread::sleep` wakes within tens of µs where tokio's timer wheel has 1 ms
//! ticks) that spawns one task per request. Records go to an unbounded channel, so a slow
//! consumer (journal, progress bar) can never delay a send. No lock is taken per request.
//!
//! Multi-turn conversations, whose bodies depend on the replies, have their own driver
//! ([`run_sessions`], in `load/session.rs`) with the same modes, stops and interrupts.

use crate::arrival::{Arrival, Schedule};
use crate::record::{FailureKind, Phase, RequestRecord};
use bytes::Bytes;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};

mod session;
pub use session::{run_sessions, Clock, ConversationReport, SessionWork};

/// One request ready for the wire: the body is serialized before the run, so the hot path
/// never builds JSON.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub body: Bytes,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
}

/// Where a request should be sent and under which identity; filled by the driver.
#[derive(Debug, Clone, Copy)]
pub struct SendContext {
    pub id: u64,
    pub phase: Phase,
    /// The run's epoch: every `*_ns` time is measured from it.
    pub epoch: Instant,
    pub scheduled_ns: u64,
    pub slot_ns: u64,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
}

/// Sends one request and reports what happened. Never fails: failures are records.
///
/// The seam between the driver and the HTTP client, so the driver's scheduling is tested with
/// a fake that "serves" in known time (as hyperfine tests its runner without running anything).
pub trait Sender: Send + Sync + 'static {
    fn send(&self, body: Bytes, ctx: SendContext) -> impl Future<Output = RequestRecord> + Send;
}

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadMode {
    /// Keep `concurrency` requests in flight.
    Closed { concurrency: NonZeroUsize },
    /// Send on a schedule, whatever the server does.
    Open {
        pacing: Pacing,
        /// At most this many in flight; a request over the cap waits (queue time).
        max_in_flight: Option<NonZeroUsize>,
    },
}

/// An open loop's schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Pacing {
    /// Everything is due at t = 0 (`--request-rate inf`).
    AllAtOnce,
    /// `rate` requests per second with the given arrival process.
    Rate { rate: f64, arrival: Arrival },
    /// A recorded trace's own clock: request i is due at `offsets[i]` ns (already scaled).
    Trace(std::sync::Arc<Vec<u64>>),
    /// A rate that ramps over `over` requests (`--ramp-up-strategy`), gaps drawn with
    /// `arrival`'s process at each request's rate.
    Ramp {
        ramp: crate::arrival::RampUp,
        arrival: Arrival,
        over: u64,
    },
}

impl Pacing {
    /// The schedule of a paced open loop: offsets in ns from the start, seeded. `None` for
    /// the pacings that are no schedule of their own (everything at once, a trace).
    pub fn schedule(&self, seed: u64) -> Option<Result<Schedule, String>> {
        match *self {
            Pacing::Rate { rate, arrival } => Some(Schedule::new(rate, arrival, seed)),
            Pacing::Ramp {
                ramp,
                arrival,
                over,
            } => Some(Schedule::ramp(ramp, over, arrival, seed)),
            Pacing::AllAtOnce | Pacing::Trace(_) => None,
        }
    }
}

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many measured requests have been sent (and then completed).
    Requests(u64),
    /// No send after this long; requests in flight then are allowed to finish.
    Duration(Duration),
    /// Whichever comes first.
    RequestsOrDuration(u64, Duration),
}

impl Stop {
    pub fn max_requests(&self) -> Option<u64> {
        match *self {
            Stop::Requests(n) | Stop::RequestsOrDuration(n, _) => Some(n),
            Stop::Duration(_) => None,
        }
    }
    pub fn duration(&self) -> Option<Duration> {
        match *self {
            Stop::Duration(d) | Stop::RequestsOrDuration(_, d) => Some(d),
            Stop::Requests(_) => None,
        }
    }
}

/// A complete plan for one run's load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub mode: LoadMode,
    pub stop: Stop,
    /// Warmup requests sent (closed loop) before the measured phase; marked, kept out of summaries.
    pub warmups: u64,
    /// Warmup concurrency.
    pub warmup_concurrency: NonZeroUsize,
    pub seed: u64,
    /// The plan drives multi-turn conversations (`load::session`): the closed loop's N counts
    /// conversations at once, an open loop's rate is conversation starts per second, the stop
    /// count still counts requests (turns). Only descriptions read it; the driver is chosen
    /// by the workload.
    pub conversations: bool,
}

/// Ask a running load to stop early (a signal, or a journal that can no longer be written).
/// Cheap to clone. The first cause given is kept: it decides the exit status.
#[derive(Clone, Default)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    /// 0 = none yet, else `InterruptCause as u8 + 1`.
    cause: Arc<AtomicU8>,
    notify: Arc<Notify>,
}

/// Why a run was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptCause {
    /// SIGINT (Ctrl-C).
    CtrlC,
    /// SIGTERM: what `timeout`, Docker and CI send.
    Terminate,
    /// SIGHUP: the terminal went away.
    HangUp,
    /// The journal could not be written: measuring on would lose records.
    JournalFailed,
}

impl InterruptCause {
    const ALL: [InterruptCause; 4] = [
        InterruptCause::CtrlC,
        InterruptCause::Terminate,
        InterruptCause::HangUp,
        InterruptCause::JournalFailed,
    ];
}

impl Interrupt {
    /// Interrupt as Ctrl-C does.
    pub fn trigger(&self) {
        self.trigger_because(InterruptCause::CtrlC);
    }
    /// Interrupt for `cause`; a later cause does not replace the first.
    pub fn trigger_because(&self, cause: InterruptCause) {
        let code = InterruptCause::ALL
            .iter()
            .position(|c| *c == cause)
            .map_or(1, |i| i as u8 + 1);
        let _ = self
            .cause
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
    /// The first cause given, once interrupted.
    pub fn cause(&self) -> Option<InterruptCause> {
        let code = self.cause.load(Ordering::SeqCst);
        code.checked_sub(1)
            .and_then(|i| InterruptCause::ALL.get(usize::from(i)).copied())
    }
    /// Resolves once interrupted (at once if already).
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Why the measured phase stopped sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    RequestCount,
    Duration,
    Interrupted,
    /// The workload ran out of requests before the count or duration was reached.
    WorkloadExhausted,
}

/// What the driver knows that the records don't.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    /// When the measured phase's schedule started (ns since epoch).
    pub measured_start_ns: u64,
    /// Measured requests handed to the sender.
    pub measured_sent: u64,
    /// Requests that were due but never sent (recorded as `NotSent`).
    pub not_sent: u64,
    pub stop_reason: StopReason,
    /// How the conversations ended (multi-turn workloads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<ConversationReport>,
}

/// Sends one request, unless the run is interrupted first: the request in flight then becomes
/// a `Cancelled` record at the moment of the interrupt (`now`), never a silent loss.
pub(crate) async fn send_unless_interrupted<S: Sender>(
    sender: &S,
    body: Bytes,
    ctx: SendContext,
    interrupt: &Interrupt,
    now: impl Fn() -> u64,
) -> RequestRecord {
    tokio::select! {
        biased;
        rec = sender.send(body, ctx) => rec,
        _ = interrupt.wait() => {
            let mut r = RequestRecord::failed_before_response(
                ctx.id,
                ctx.phase,
                (ctx.scheduled_ns, ctx.slot_ns, ctx.slot_ns),
                now(),
                FailureKind::Cancelled,
                "run interrupted while this request was in flight".into(),
            );
            r.prompt_tokens = ctx.prompt_tokens;
            r.max_tokens = ctx.max_tokens;
            r
        }
    }
}

fn ns_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Run warmup then the measured phase. Records (warmup and measured) go to `out` as they
/// complete; the function returns when every request it started has produced its record.
pub async fn run<S: Sender>(
    plan: LoadPlan,
    sender: Arc<S>,
    mut requests: mpsc::Receiver<PreparedRequest>,
    out: mpsc::UnboundedSender<RequestRecord>,
    epoch: Instant,
    interrupt: Interrupt,
) -> LoadReport {
    let mut next_id = 0u64;
    if plan.warmups > 0 {
        let warm = Phase::Warmup;
        let (_, _) = closed_loop(
            &sender,
            &mut requests,
            &out,
            epoch,
            &interrupt,
            Shape {
                phase: warm,
                concurrency: plan.warmup_concurrency,
                max_requests: Some(plan.warmups),
                deadline: None,
                first_id: &mut next_id,
            },
        )
        .await;
    }
    let measured_start_ns = ns_since(epoch);
    let first_measured_id = next_id;
    let deadline = plan
        .stop
        .duration()
        .map(|d| measured_start_ns.saturating_add(duration_ns(d)));
    let max_requests = plan.stop.max_requests();
    let shape = Shape {
        phase: Phase::Measured,
        concurrency: NonZeroUsize::MIN,
        max_requests,
        deadline,
        first_id: &mut next_id,
    };
    let (sent, reason) = match plan.mode {
        LoadMode::Closed { concurrency } => {
            closed_loop(
                &sender,
                &mut requests,
                &out,
                epoch,
                &interrupt,
                Shape {
                    concurrency,
                    ..shape
                },
            )
            .await
        }
        LoadMode::Open {
            pacing,
            max_in_flight,
        } => {
            let start_id = *shape.first_id;
            open_loop(
                sender,
                requests,
                out.clone(),
                epoch,
                interrupt.clone(),
                OpenShape {
                    pacing,
                    max_in_flight,
                    max_requests,
                    deadline,
                    start_ns: measured_start_ns,
                    first_id: start_id,
                    seed: plan.seed,
                },
            )
            .await
        }
    };
    // Requests that were due (count mode) but never sent because of an interrupt are recorded.
    let mut not_sent = 0;
    if reason == StopReason::Interrupted {
        if let Some(n) = max_requests {
            let now = ns_since(epoch);
            for i in sent..n {
                let rec = RequestRecord::failed_before_response(
                    first_measured_id + i,
                    Phase::Measured,
                    (now, now, now),
                    now,
                    FailureKind::NotSent,
                    "run interrupted before this request was sent".into(),
                );
                let _ = out.send(rec);
                not_sent += 1;
            }
        }
    }
    LoadReport {
        measured_start_ns,
        measured_sent: sent,
        not_sent,
        stop_reason: reason,
        conversations: None,
    }
}

struct Shape<'a> {
    phase: Phase,
    concurrency: NonZeroUsize,
    max_requests: Option<u64>,
    deadline: Option<u64>,
    first_id: &'a mut u64,
}

/// Spawn one request's task: send (or be cancelled), then emit the record.
fn launch<S: Sender>(
    sender: &Arc<S>,
    req: PreparedRequest,
    ctx: SendContext,
    out: &mpsc::UnboundedSender<RequestRecord>,
    interrupt: &Interrupt,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> tokio::task::JoinHandle<()> {
    let sender = Arc::clone(sender);
    let out = out.clone();
    let interrupt = interrupt.clone();
    tokio::spawn(async move {
        let record =
            send_unless_interrupted(&*sender, req.body, ctx, &interrupt, || ns_since(ctx.epoch))
                .await;
        drop(permit);
        // The receiver only goes away when the whole run is being torn down.
        let _ = out.send(record);
    })
}

/// Closed loop: a request is scheduled the moment one of `concurrency` slots frees.
async fn closed_loop<S: Sender>(
    sender: &Arc<S>,
    requests: &mut mpsc::Receiver<PreparedRequest>,
    out: &mpsc::UnboundedSender<RequestRecord>,
    epoch: Instant,
    interrupt: &Interrupt,
    shape: Shape<'_>,
) -> (u64, StopReason) {
    let slots = Arc::new(Semaphore::new(shape.concurrency.get()));
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    let reason = loop {
        if shape.max_requests.is_some_and(|n| sent >= n) {
            break StopReason::RequestCount;
        }
        let permit = tokio::select! {
            biased;
            _ = interrupt.wait() => break StopReason::Interrupted,
            p = Arc::clone(&slots).acquire_owned() => p.expect("semaphore never closed"),
        };
        let now = ns_since(epoch);
        if shape.deadline.is_some_and(|d| now >= d) {
            break StopReason::Duration;
        }
        let Some(req) = requests.recv().await else {
            break StopReason::WorkloadExhausted;
        };
        let ctx = SendContext {
            id: *shape.first_id,
            phase: shape.phase,
            epoch,
            scheduled_ns: now,
            slot_ns: now,
            prompt_tokens: req.prompt_tokens,
            max_tokens: req.max_tokens,
        };
        *shape.first_id += 1;
        sent += 1;
        tasks.push(launch(sender, req, ctx, out, interrupt, Some(permit)));
        // Keep the handle list from growing without bound on long duration runs.
        if tasks.len() >= 4096 {
            tasks.retain(|t| !t.is_finished());
        }
    };
    for t in tasks {
        let _ = t.await;
    }
    (sent, reason)
}

struct OpenShape {
    pacing: Pacing,
    max_in_flight: Option<NonZeroUsize>,
    max_requests: Option<u64>,
    deadline: Option<u64>,
    start_ns: u64,
    first_id: u64,
    seed: u64,
}

/// Open loop: each request is due at `start + offset`, offsets from the arrival schedule.
///
/// The dispatcher is a dedicated OS thread: it sleeps with `std::thread::sleep` to within
/// ~100 µs of the due time and spins the rest, then spawns the request's task on the runtime.
async fn open_loop<S: Sender>(
    sender: Arc<S>,
    requests: mpsc::Receiver<PreparedRequest>,
    out: mpsc::UnboundedSender<RequestRecord>,
    epoch: Instant,
    interrupt: Interrupt,
    shape: OpenShape,
) -> (u64, StopReason) {
    let handle = tokio::runtime::Handle::current();
    let thread = std::thread::Builder::new()
        .name("servebench-dispatch".into())
        .spawn(move || dispatch_thread(handle, sender, requests, out, epoch, interrupt, shape))
        .expect("spawning the dispatcher thread");
    // Wait for the thread without blocking a runtime worker.
    let (sent, reason, tasks) = tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("dispatcher join task")
        .expect("dispatcher thread panicked");
    for t in tasks {
        let _ = t.await;
    }
    (sent, reason)
}

type DispatchResult = (u64, StopReason, Vec<tokio::task::JoinHandle<()>>);

fn dispatch_thread<S: Sender>(
    handle: tokio::runtime::Handle,
    sender: Arc<S>,
    mut requests: mpsc::Receiver<PreparedRequest>,
    out: mpsc::UnboundedSender<RequestRecord>,
    epoch: Instant,
    interrupt: Interrupt,
    shape: OpenShape,
) -> DispatchResult {
    let cap = shape
        .max_in_flight
        .map(|n| Arc::new(Semaphore::new(n.get())));
    let mut offsets: Box<dyn Iterator<Item = u64>> = match shape.pacing {
        Pacing::AllAtOnce => Box::new(std::iter::repeat(0)),
        Pacing::Trace(ref offsets) => {
            let offsets = std::sync::Arc::clone(offsets);
            Box::new((0..offsets.len()).map(move |i| offsets[i]))
        }
        Pacing::Rate { .. } | Pacing::Ramp { .. } => match shape.pacing.schedule(shape.seed) {
            Some(Ok(s)) => Box::new(s),
            // Config validation rejects such rates; an empty schedule is the safe fallback.
            _ => Box::new(std::iter::empty()),
        },
    };
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    let _guard = handle.enter();
    let reason = loop {
        if shape.max_requests.is_some_and(|n| sent >= n) {
            break StopReason::RequestCount;
        }
        let Some(offset) = offsets.next() else {
            break StopReason::WorkloadExhausted;
        };
        // Saturating: an offset near u64::MAX must mean "never", not wrap around to now.
        let due = shape.start_ns.saturating_add(offset);
        if shape.deadline.is_some_and(|d| due >= d) {
            break StopReason::Duration;
        }
        if !sleep_until_ns(epoch, due, &interrupt) {
            break StopReason::Interrupted;
        }
        let Some(req) = requests.blocking_recv() else {
            break StopReason::WorkloadExhausted;
        };
        let permit = match &cap {
            None => None,
            Some(sem) => {
                let sem = Arc::clone(sem);
                let acquired = handle.block_on(async {
                    tokio::select! {
                        biased;
                        _ = interrupt.wait() => None,
                        p = sem.acquire_owned() => p.ok(),
                    }
                });
                match acquired {
                    Some(p) => Some(p),
                    None => break StopReason::Interrupted,
                }
            }
        };
        let slot_ns = if cap.is_some() { ns_since(epoch) } else { due };
        let ctx = SendContext {
            id: shape.first_id + sent,
            phase: Phase::Measured,
            epoch,
            scheduled_ns: due,
            slot_ns,
            prompt_tokens: req.prompt_tokens,
            max_tokens: req.max_tokens,
        };
        sent += 1;
        tasks.push(launch(&sender, req, ctx, &out, &interrupt, permit));
        if tasks.len() >= 4096 {
            tasks.retain(|t| !t.is_finished());
        }
    };
    (sent, reason, tasks)
}

/// A duration as u64 ns, saturating (`as_nanos() as u64` would truncate the high bits and
/// wrap a long duration to a short one).
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sleep until `epoch + due_ns`; false if interrupted first. Coarse sleeps in slices (so an
/// interrupt is seen within 50 ms), then a spin over the last 200 µs for a precise wake-up.
fn sleep_until_ns(epoch: Instant, due_ns: u64, interrupt: &Interrupt) -> bool {
    const SPIN: Duration = Duration::from_micros(200);
    // An offset past what Instant can hold is as good as never; wait for the interrupt.
    let due = epoch
        .checked_add(Duration::from_nanos(due_ns))
        .unwrap_or_else(|| epoch + Duration::from_secs(u64::from(u32::MAX)));
    loop {
        if interrupt.is_set() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        let left = due - now;
        if left > SPIN {
            std::thread::sleep((left - SPIN).min(Duration::from_millis(50)));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;

    /// "Serves" every request in a fixed time without any network.
    struct FakeSender {
        service: Duration,
        in_flight: std::sync::atomic::AtomicUsize,
        max_seen: std::sync::atomic::AtomicUsize,
    }

    impl FakeSender {
        fn new(service: Duration) -> Arc<Self> {
            Arc::new(FakeSender {
                service,
                in_flight: 0.into(),
                max_seen: 0.into(),
            })
        }
    }

    impl Sender for FakeSender {
        async fn send(&self, _body: Bytes, ctx: SendContext) -> RequestRecord {
            let sent_ns = ns_since(ctx.epoch);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_seen.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.service).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let end = ns_since(ctx.epoch);
            RequestRecord {
                id: ctx.id,
                phase: ctx.phase,
                scheduled_ns: ctx.scheduled_ns,
                slot_ns: ctx.slot_ns,
                first_token_ns: Some(end),
                first_content_ns: Some(end),
                finished_ns: end,
                events: vec![(((end - sent_ns) / 1000) as u32, 1)],
                prompt_tokens: ctx.prompt_tokens,
                max_tokens: ctx.max_tokens,
                output_tokens: 1,
                ..RequestRecord::test_success(ctx.id, sent_ns)
            }
        }
    }

    fn feed(n: usize) -> mpsc::Receiver<PreparedRequest> {
        let (tx, rx) = mpsc::channel(n.max(1));
        for i in 0..n {
            tx.try_send(PreparedRequest {
                body: Bytes::from_static(b"{}"),
                prompt_tokens: i as u32,
                max_tokens: 4,
            })
            .unwrap();
        }
        rx
    }

    async fn collect(
        plan: LoadPlan,
        sender: Arc<FakeSender>,
        n: usize,
        interrupt: Interrupt,
    ) -> (LoadReport, Vec<RequestRecord>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let report = run(plan, sender, feed(n), tx, Instant::now(), interrupt).await;
        let mut recs = Vec::new();
        while let Ok(r) = rx.try_recv() {
            recs.push(r);
        }
        recs.sort_by_key(|r| r.id);
        (report, recs)
    }

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    /// A single-turn plan without warmups (tests set `warmups` where they need them).
    fn plan(mode: LoadMode, stop: Stop) -> LoadPlan {
        LoadPlan {
            mode,
            stop,
            warmups: 0,
            warmup_concurrency: nz(1),
            seed: 1,
            conversations: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_keeps_exactly_n_in_flight_and_sends_every_request() {
        let s = FakeSender::new(Duration::from_millis(5));
        let plan = LoadPlan {
            warmups: 3,
            warmup_concurrency: nz(2),
            ..plan(LoadMode::Closed { concurrency: nz(4) }, Stop::Requests(40))
        };
        let (rep, recs) = collect(plan, Arc::clone(&s), 43, Interrupt::default()).await;
        assert_eq!(rep.measured_sent, 40);
        assert_eq!(rep.stop_reason, StopReason::RequestCount);
        assert_eq!(recs.len(), 43);
        assert_eq!(recs.iter().filter(|r| r.phase == Phase::Warmup).count(), 3);
        assert_eq!(s.max_seen.load(Ordering::SeqCst), 4);
        // ids are unique and dense
        assert!(recs.iter().enumerate().all(|(i, r)| r.id == i as u64));
        // warmup finished before the measured phase started
        let last_warm = recs[..3].iter().map(|r| r.finished_ns).max().unwrap();
        assert!(recs[3..].iter().all(|r| r.sent_ns >= last_warm));
        assert!(recs[3..]
            .iter()
            .all(|r| r.scheduled_ns >= rep.measured_start_ns));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_follows_the_schedule_with_its_own_offsets() {
        let s = FakeSender::new(Duration::from_millis(1));
        let plan = plan(
            LoadMode::Open {
                pacing: Pacing::Rate {
                    rate: 200.0,
                    arrival: Arrival::Constant,
                },
                max_in_flight: None,
            },
            Stop::Requests(20),
        );
        let (rep, recs) = collect(plan, s, 20, Interrupt::default()).await;
        assert_eq!(recs.len(), 20);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.scheduled_ns, rep.measured_start_ns + i as u64 * 5_000_000);
            assert!(r.sent_ns >= r.scheduled_ns);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_flight_cap_turns_into_recorded_queue_time() {
        let s = FakeSender::new(Duration::from_millis(20));
        let plan = plan(
            LoadMode::Open {
                pacing: Pacing::AllAtOnce,
                max_in_flight: Some(nz(2)),
            },
            Stop::Requests(6),
        );
        let (_, recs) = collect(plan, Arc::clone(&s), 6, Interrupt::default()).await;
        assert_eq!(recs.len(), 6);
        assert_eq!(s.max_seen.load(Ordering::SeqCst), 2);
        // all due at once; the last pair waited for two service times
        let last = &recs[5];
        assert!(last.slot_ns - last.scheduled_ns >= 2 * 20_000_000 - 1_000_000);
        assert!(last.sent_ns >= last.slot_ns);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duration_stop_sends_nothing_after_the_deadline() {
        let s = FakeSender::new(Duration::from_millis(2));
        let plan = plan(
            LoadMode::Open {
                pacing: Pacing::Rate {
                    rate: 100.0,
                    arrival: Arrival::Constant,
                },
                max_in_flight: None,
            },
            Stop::Duration(Duration::from_millis(195)),
        );
        let (rep, recs) = collect(plan, s, 100, Interrupt::default()).await;
        assert_eq!(rep.stop_reason, StopReason::Duration);
        assert_eq!(recs.len(), 20); // offsets 0, 10, …, 190 ms
    }

    /// Issue 12: a trace offset near u64::MAX (a timestamp of 1e15 ms, a scale of 1e300) used
    /// to wrap `start + offset` around to "now" and send at once. Saturated, it is past the
    /// deadline: never sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_offset_near_the_end_of_time_is_never_sent_not_wrapped_to_now() {
        let s = FakeSender::new(Duration::from_millis(1));
        let plan = plan(
            LoadMode::Open {
                pacing: Pacing::Trace(Arc::new(vec![0, u64::MAX - 1, u64::MAX])),
                max_in_flight: None,
            },
            Stop::RequestsOrDuration(3, Duration::from_millis(50)),
        );
        let (rep, recs) = collect(plan, s, 3, Interrupt::default()).await;
        assert_eq!(rep.stop_reason, StopReason::Duration);
        assert_eq!(recs.len(), 1, "only the request at offset 0 is sent");
        assert_eq!(duration_ns(Duration::MAX), u64::MAX);
        assert_eq!(duration_ns(Duration::from_nanos(7)), 7);
    }

    #[test]
    fn an_interrupt_keeps_its_first_cause() {
        let i = Interrupt::default();
        assert_eq!(i.cause(), None);
        assert!(!i.is_set());
        i.trigger_because(InterruptCause::Terminate);
        i.trigger_because(InterruptCause::JournalFailed);
        i.trigger();
        assert!(i.is_set());
        assert_eq!(i.clone().cause(), Some(InterruptCause::Terminate));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interrupt_records_in_flight_as_cancelled_and_unsent_as_not_sent() {
        let s = FakeSender::new(Duration::from_secs(30));
        let plan = plan(LoadMode::Closed { concurrency: nz(3) }, Stop::Requests(10));
        let intr = Interrupt::default();
        let i2 = intr.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            i2.trigger();
        });
        let (rep, recs) = collect(plan, s, 10, intr).await;
        assert_eq!(rep.stop_reason, StopReason::Interrupted);
        assert_eq!(recs.len(), 10, "every scheduled request has a record");
        let kinds: Vec<_> = recs
            .iter()
            .map(|r| match &r.outcome {
                Outcome::Failed { kind, .. } => *kind,
                Outcome::Success => panic!("nothing can succeed in 50 ms"),
            })
            .collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == FailureKind::Cancelled)
                .count(),
            3
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == FailureKind::NotSent).count(),
            7
        );
        assert_eq!(rep.not_sent, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn running_out_of_workload_is_reported_not_hidden() {
        let s = FakeSender::new(Duration::from_millis(1));
        let plan = plan(LoadMode::Closed { concurrency: nz(2) }, Stop::Requests(10));
        let (rep, recs) = collect(plan, s, 4, Interrupt::default()).await;
        assert_eq!(rep.stop_reason, StopReason::WorkloadExhausted);
        assert_eq!(recs.len(), 4);
    }
}
