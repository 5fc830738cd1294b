//! The session driver on the fake sender, on tokio's paused clock: think times and service
//! times pass in virtual time, so the assertions are exact and nothing sleeps.

use super::*;
use crate::arrival::Arrival;
use crate::load::Stop;
use crate::workload::TurnPlan;
use bytes::Bytes;
use std::sync::Mutex;

/// "Serves" each turn in `service` of virtual time and answers `reply-<id>`; fails the
/// requests whose id is in `fail`. Keeps every body it was sent (a test-only lock).
struct FakeSender {
    service: Duration,
    fail: Vec<u64>,
    bodies: Mutex<Vec<(u64, serde_json::Value)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl FakeSender {
    fn new(service_ms: u64, fail: &[u64]) -> Arc<Self> {
        Arc::new(FakeSender {
            service: Duration::from_millis(service_ms),
            fail: fail.to_vec(),
            bodies: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    fn body(&self, id: u64) -> serde_json::Value {
        let bodies = self.bodies.lock().unwrap();
        bodies.iter().find(|(i, _)| *i == id).unwrap().1.clone()
    }
}

impl Sender for FakeSender {
    async fn send(&self, body: Bytes, ctx: SendContext) -> RequestRecord {
        let sent_ns = Clock::Tokio.now_ns(ctx.epoch);
        self.bodies
            .lock()
            .unwrap()
            .push((ctx.id, serde_json::from_slice(&body).unwrap()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.service).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let end = Clock::Tokio.now_ns(ctx.epoch);
        if self.fail.contains(&ctx.id) {
            let mut r = RequestRecord::failed_before_response(
                ctx.id,
                ctx.phase,
                (ctx.scheduled_ns, ctx.slot_ns, sent_ns),
                end,
                FailureKind::Http { status: 500 },
                "injected".into(),
            );
            r.prompt_tokens = ctx.prompt_tokens;
            return r;
        }
        RequestRecord {
            id: ctx.id,
            phase: ctx.phase,
            scheduled_ns: ctx.scheduled_ns,
            slot_ns: ctx.slot_ns,
            first_token_ns: Some(end),
            first_content_ns: Some(end),
            finished_ns: end,
            events: vec![(((end - sent_ns) / 1000) as u32, 2)],
            prompt_tokens: ctx.prompt_tokens,
            max_tokens: ctx.max_tokens,
            output_tokens: 2,
            output_text: Some(format!("reply-{}", ctx.id)),
            ..RequestRecord::test_success(ctx.id, sent_ns)
        }
    }
}

fn conversation(c: usize, turns: usize, think_ms: u64) -> ConversationPlan {
    ConversationPlan {
        system: Some(("be brief".into(), 2)),
        turns: (0..turns)
            .map(|k| TurnPlan {
                user: format!("c{c} question {k}"),
                user_tokens: 3,
                max_tokens: 2,
                think: if k == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(think_ms)
                },
            })
            .collect(),
    }
}

fn work(conversations: usize, turns: usize, think_ms: u64) -> SessionWork {
    SessionWork {
        conversations: (0..conversations)
            .map(|c| conversation(c, turns, think_ms))
            .collect(),
        warmup: Vec::new(),
        body: BodyOptions {
            model: "m".into(),
            ..BodyOptions::default()
        },
        keep_text: false,
    }
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn plan(mode: LoadMode, stop: Stop) -> LoadPlan {
    LoadPlan {
        mode,
        stop,
        warmups: 0,
        warmup_concurrency: nz(1),
        seed: 1,
        conversations: true,
    }
}

fn closed(n: usize) -> LoadMode {
    LoadMode::Closed { concurrency: nz(n) }
}

async fn go(
    plan: LoadPlan,
    sender: Arc<FakeSender>,
    work: SessionWork,
    interrupt: Interrupt,
) -> (LoadReport, Vec<RequestRecord>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let epoch = tokio::time::Instant::now().into_std();
    let report = run_sessions(plan, sender, work, tx, epoch, interrupt, Clock::Tokio).await;
    let mut recs = Vec::new();
    while let Ok(r) = rx.try_recv() {
        recs.push(r);
    }
    recs.sort_by_key(|r| r.id);
    (report, recs)
}

fn turns_of(recs: &[RequestRecord], conv: u64) -> Vec<&RequestRecord> {
    let mut v: Vec<&RequestRecord> = recs
        .iter()
        .filter(|r| r.conversation == Some(conv))
        .collect();
    v.sort_by_key(|r| r.turn);
    v
}

#[tokio::test(start_paused = true)]
async fn each_turn_sends_the_whole_history_with_the_replies() {
    let s = FakeSender::new(10, &[]);
    let (rep, recs) = go(
        plan(closed(1), Stop::Requests(3)),
        Arc::clone(&s),
        work(1, 3, 0),
        Interrupt::default(),
    )
    .await;
    assert_eq!(rep.stop_reason, StopReason::RequestCount);
    assert_eq!(recs.len(), 3);
    let last = s.body(2);
    let roles: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user", "assistant", "user"]
    );
    let contents: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents[2], "reply-0");
    assert_eq!(contents[4], "reply-1");
    assert_eq!(contents[5], "c0 question 2");
    assert_eq!(last["max_tokens"], 2);
    // Planned prompt tokens grow with the history: system 2 + 3 per user + 2 per reply.
    let planned: Vec<u32> = recs.iter().map(|r| r.prompt_tokens).collect();
    assert_eq!(planned, [5, 10, 15]);
    assert_eq!(
        recs.iter().map(|r| r.turn).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)]
    );
    assert!(
        recs.iter().all(|r| r.output_text.is_none()),
        "text taken out"
    );
    let c = rep.conversations.unwrap();
    assert_eq!((c.started, c.completed), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn think_time_separates_a_reply_from_the_next_turn() {
    let s = FakeSender::new(10, &[]);
    let (_, recs) = go(
        plan(closed(2), Stop::Requests(8)),
        s,
        work(2, 4, 500),
        Interrupt::default(),
    )
    .await;
    assert_eq!(recs.len(), 8);
    for conv in 0..2 {
        let t = turns_of(&recs, conv);
        assert_eq!(t.len(), 4);
        for w in t.windows(2) {
            assert_eq!(w[1].scheduled_ns, w[0].finished_ns + 500_000_000);
            assert!(w[1].sent_ns >= w[1].scheduled_ns);
            assert_eq!(
                w[1].slot_ns, w[1].scheduled_ns,
                "no cap: slot is the due time"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_closed_loop_keeps_n_conversations_and_replaces_finished_ones() {
    let s = FakeSender::new(10, &[]);
    let (rep, recs) = go(
        plan(closed(3), Stop::Requests(20)),
        Arc::clone(&s),
        work(10, 2, 0),
        Interrupt::default(),
    )
    .await;
    assert_eq!(recs.len(), 20);
    assert_eq!(s.max_in_flight.load(Ordering::SeqCst), 3);
    let c = rep.conversations.unwrap();
    assert_eq!((c.started, c.completed, c.ended_early), (10, 10, 0));
    // ids are dense and every conversation ran whole, in turn order
    assert!(recs.iter().enumerate().all(|(i, r)| r.id == i as u64));
    for conv in 0..10 {
        assert_eq!(turns_of(&recs, conv).len(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn reaching_the_request_count_ends_conversations_early() {
    let s = FakeSender::new(10, &[]);
    let (rep, recs) = go(
        plan(closed(2), Stop::Requests(7)),
        s,
        work(4, 5, 100),
        Interrupt::default(),
    )
    .await;
    assert_eq!(rep.stop_reason, StopReason::RequestCount);
    assert_eq!(rep.measured_sent, 7);
    assert_eq!(recs.len(), 7);
    let c = rep.conversations.unwrap();
    assert_eq!(c.started, 2, "the other conversations never started");
    assert_eq!(c.ended_early, 2);
    assert_eq!(c.completed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_turn_ends_its_conversation_and_is_counted() {
    // Closed loop of 1: conversation 0 is ids 0..3, conversation 1 starts at id 3; id 4 fails.
    let s = FakeSender::new(10, &[4]);
    let (rep, recs) = go(
        plan(closed(1), Stop::Requests(9)),
        s,
        work(3, 3, 0),
        Interrupt::default(),
    )
    .await;
    let t1 = turns_of(&recs, 1);
    assert_eq!(
        t1.len(),
        2,
        "turn 2 needed the failed reply and was never sent"
    );
    assert!(!t1[1].outcome.is_success());
    assert_eq!(turns_of(&recs, 2).len(), 3);
    let c = rep.conversations.unwrap();
    assert_eq!((c.started, c.completed, c.ended_by_failure), (3, 2, 1));
    // The pass ran out before 9 requests: reported, not hidden.
    assert_eq!(rep.stop_reason, StopReason::WorkloadExhausted);
    assert_eq!(recs.len(), 8);
}

#[tokio::test(start_paused = true)]
async fn conversations_start_on_the_open_loop_schedule_and_the_cap_queues_turns() {
    let s = FakeSender::new(1000, &[]);
    let mode = LoadMode::Open {
        pacing: Pacing::Rate {
            rate: 10.0,
            arrival: Arrival::Constant,
        },
        max_in_flight: Some(nz(2)),
    };
    let (rep, recs) = go(
        plan(mode, Stop::Requests(8)),
        Arc::clone(&s),
        work(4, 2, 0),
        Interrupt::default(),
    )
    .await;
    assert_eq!(recs.len(), 8);
    assert_eq!(s.max_in_flight.load(Ordering::SeqCst), 2);
    for conv in 0..4u64 {
        let first = turns_of(&recs, conv)[0];
        assert_eq!(
            first.scheduled_ns,
            rep.measured_start_ns + conv * 100_000_000
        );
    }
    // Conversations 2 and 3 arrived while two turns were in flight: they waited for a slot.
    let waited = recs.iter().filter(|r| r.slot_ns > r.scheduled_ns).count();
    assert!(waited >= 2, "{waited}");
}

#[tokio::test(start_paused = true)]
async fn duration_stop_sends_no_turn_due_after_the_deadline() {
    let s = FakeSender::new(10, &[]);
    // Each conversation: turn 0 at 0, turn 1 at 10 + 300 ms, turn 2 at 620 ms.
    let (rep, recs) = go(
        plan(closed(2), Stop::Duration(Duration::from_millis(500))),
        s,
        work(2, 3, 300),
        Interrupt::default(),
    )
    .await;
    assert_eq!(rep.stop_reason, StopReason::Duration);
    assert_eq!(recs.len(), 4);
    assert!(recs.iter().all(|r| r.turn.unwrap() < 2));
    assert_eq!(rep.conversations.unwrap().ended_early, 2);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_cancels_turns_in_flight_and_records_the_rest_as_not_sent() {
    let s = FakeSender::new(30_000, &[]);
    let intr = Interrupt::default();
    let i2 = intr.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        i2.trigger();
    });
    let (rep, recs) = go(plan(closed(3), Stop::Requests(10)), s, work(5, 2, 0), intr).await;
    assert_eq!(rep.stop_reason, StopReason::Interrupted);
    assert_eq!(recs.len(), 10, "every request of the count has a record");
    let kind = |r: &RequestRecord| match &r.outcome {
        Outcome::Failed { kind, .. } => *kind,
        Outcome::Success => panic!("nothing finishes in 50 ms"),
    };
    let cancelled = recs
        .iter()
        .filter(|r| kind(r) == FailureKind::Cancelled)
        .count();
    assert_eq!(cancelled, 3);
    assert_eq!(rep.not_sent, 7);
    assert_eq!(rep.conversations.unwrap().ended_early, 3);
}

#[tokio::test(start_paused = true)]
async fn warmup_runs_whole_conversations_before_the_measured_phase() {
    let s = FakeSender::new(10, &[]);
    let mut w = work(2, 2, 0);
    w.warmup = vec![conversation(9, 3, 0)];
    let mut p = plan(closed(2), Stop::Requests(4));
    p.warmups = 1;
    let (rep, recs) = go(p, s, w, Interrupt::default()).await;
    assert_eq!(recs.len(), 7);
    let warm: Vec<&RequestRecord> = recs.iter().filter(|r| r.phase == Phase::Warmup).collect();
    assert_eq!(warm.len(), 3, "the whole warmup conversation");
    assert!(warm.iter().all(|r| r.conversation == Some(0)));
    let last_warm = warm.iter().map(|r| r.finished_ns).max().unwrap();
    let measured: Vec<&RequestRecord> =
        recs.iter().filter(|r| r.phase == Phase::Measured).collect();
    assert!(measured.iter().all(|r| r.sent_ns >= last_warm));
    assert!(measured.iter().all(|r| r.conversation >= Some(1)));
    assert_eq!(rep.conversations.unwrap().completed, 2);
}
