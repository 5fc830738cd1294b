//! Fixed records → hand-computed numbers, plus properties of the incremental path.

use super::*;
use crate::record::{FailureKind, Outcome, Phase, RequestRecord, TokenSource, Usage};
use proptest::prelude::*;

const MS: u64 = 1_000_000;

/// A successful streamed request: times in ms since the epoch, events as (ms after send, tokens).
fn ok(id: u64, sched_ms: u64, sent_ms: u64, events_ms: &[(u32, u32)]) -> RequestRecord {
    let events: Vec<(u32, u32)> = events_ms.iter().map(|&(t, k)| (t * 1000, k)).collect();
    let sent_ns = sent_ms * MS;
    let first = events.first().map(|e| sent_ns + u64::from(e.0) * 1000);
    let last = events
        .last()
        .map_or(sent_ns, |e| sent_ns + u64::from(e.0) * 1000);
    RequestRecord {
        id,
        scheduled_ns: sched_ms * MS,
        slot_ns: sched_ms * MS,
        sent_ns,
        headers_ns: Some(sent_ns),
        first_token_ns: first,
        first_content_ns: first,
        finished_ns: last,
        output_tokens: events.iter().map(|e| e.1).sum(),
        events,
        prompt_tokens: 100,
        max_tokens: 16,
        ..RequestRecord::test_success(id, sent_ns)
    }
}

fn failed(id: u64, at_ms: u64, kind: FailureKind) -> RequestRecord {
    let t = at_ms * MS;
    RequestRecord::failed_before_response(id, Phase::Measured, (t, t, t), t + MS, kind, "x".into())
}

/// The fixture every hand computation below refers to.
fn fixture() -> Vec<RequestRecord> {
    // R1: scheduled 0, sent 1 ms (1 ms queue and dispatch lag), tokens at +10, +12, +16 (2 tokens).
    //     TTFT 10, E2E 16, TPOT (16−10)/3 = 2, ITL 2 | 2, 2; ICL 2, 4.
    let mut r1 = ok(1, 0, 1, &[(10, 1), (12, 1), (16, 2)]);
    r1.slot_ns = 0;
    r1.usage = Some(Usage {
        prompt_tokens: 100,
        completion_tokens: 4,
    });
    r1.token_source = TokenSource::UsageDelta;
    // R2: scheduled = sent = 2 ms, tokens at +20, +29 (3 tokens). TTFT 20, E2E 29, TPOT 3,
    //     ITL 3, 3, 3; ICL 9. The server says 5 tokens (a disagreement), prompt 50.
    let mut r2 = ok(2, 2, 2, &[(20, 1), (29, 3)]);
    r2.usage = Some(Usage {
        prompt_tokens: 50,
        completion_tokens: 5,
    });
    r2.token_source = TokenSource::UsageFinal;
    // R3: HTTP 500 sent at 4 ms, seen at 5 ms. R4: never sent (run interrupted).
    let r3 = failed(3, 4, FailureKind::Http { status: 500 });
    let r4 = failed(4, 6, FailureKind::NotSent);
    // A warmup request far away in time: must change nothing but the warmup count.
    let mut w = ok(9, 0, 500_000, &[(1, 1), (900, 1)]);
    w.phase = Phase::Warmup;
    vec![w, r1, r2, r3, r4]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {
        assert!(
            close($a, $b),
            "{} = {} but expected {}",
            stringify!($a),
            $a,
            $b
        )
    };
}

#[test]
fn fixture_counts_and_throughput() {
    let s = summarize(fixture(), &SummaryFacts::default());
    assert_eq!(s.schema_version, SUMMARY_SCHEMA_VERSION);
    assert_eq!(
        (s.warmup_records, s.attempted, s.completed, s.failed),
        (1, 4, 2, 2)
    );
    assert_close!(s.success_rate, 0.5);
    assert_close!(s.error_rate, 0.5);
    let errors: Vec<(&str, u64)> = s
        .errors_by_kind
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(errors, [("http_500", 1), ("not_sent", 1)]);
    // First send 1 ms (R1; R4 was never sent) → last finish 31 ms (R2).
    assert_close!(s.duration_s, 0.030);
    assert_close!(s.request_throughput, 2.0 / 0.030);
    assert_eq!((s.total_input_tokens, s.total_output_tokens), (150, 8));
    assert_close!(s.output_throughput, 8.0 / 0.030);
    assert_close!(s.total_token_throughput, 158.0 / 0.030);
    assert_eq!(s.goodput, None);
    assert_close!(s.max_output_tokens_per_s, 8.0);
    assert_eq!(s.max_concurrent_requests, 2);
}

#[test]
fn fixture_latency_distributions() {
    let s = summarize(fixture(), &SummaryFacts::default());
    // TTFT [10, 20]
    assert_eq!(s.ttft_ms.count, 2);
    assert_close!(s.ttft_ms.mean, 15.0);
    assert_close!(s.ttft_ms.std, 5.0);
    assert_close!(s.ttft_ms.median(), 15.0);
    assert_close!(s.ttft_ms.percentile(90.0).unwrap(), 19.0);
    assert_close!(s.ttft_ms.percentile(99.0).unwrap(), 19.9);
    // TPOT [2, 3]
    assert_close!(s.tpot_ms.mean, 2.5);
    // ITL per token [2, 2, 2, 3, 3, 3]: rank h = 5·p/100.
    assert_eq!(s.itl_ms.count, 6);
    assert_close!(s.itl_ms.mean, 2.5);
    assert_close!(s.itl_ms.std, 0.5);
    assert_close!(s.itl_ms.median(), 2.5);
    assert_close!(s.itl_ms.percentile(90.0).unwrap(), 3.0);
    assert_close!(s.itl_ms.min, 2.0);
    assert_close!(s.itl_ms.max, 3.0);
    // ICL per event [2, 4, 9]
    assert_eq!(s.icl_ms.count, 3);
    assert_close!(s.icl_ms.mean, 5.0);
    assert_close!(s.icl_ms.median(), 4.0);
    assert_close!(s.icl_ms.percentile(95.0).unwrap(), 4.0 + 0.9 * 5.0);
    // E2E [16, 29]; with queue [17, 29].
    assert_close!(s.e2el_ms.mean, 22.5);
    assert_close!(s.e2el_with_queue_ms.mean, 23.0);
    // Queue over the three sent requests [0, 0, 1].
    assert_eq!(s.queue_ms.count, 3);
    assert_close!(s.queue_ms.mean, 1.0 / 3.0);
    assert_close!(s.queue_ms.max, 1.0);
}

#[test]
fn fixture_tokens_and_self_check() {
    let facts = SummaryFacts {
        offered_rate: Some(500.0),
        client_cpu: Some(ClientCpu {
            cpu_seconds: 0.5,
            wall_seconds: 1.0,
            cores: 1.0,
        }),
        ..Default::default()
    };
    let s = summarize(fixture(), &facts);
    let t = &s.tokens;
    assert_eq!(t.token_source, "mixed");
    assert_eq!(t.by_source.get("usage-delta"), Some(&1));
    assert_eq!(t.by_source.get("usage-final"), Some(&1));
    assert_eq!(t.server_completion_tokens, Some(9));
    assert_eq!(t.client_tokens_where_usage, Some(8));
    assert_eq!((t.records_with_usage, t.records_disagreeing), (2, 1));

    let c = &s.self_check;
    // Scheduled 0, 2, 4, 6 ms → 3 gaps over 6 ms; sent 1, 2, 4 ms → 2 gaps over 3 ms.
    assert_close!(c.scheduled_rate.unwrap(), 500.0);
    assert_close!(c.achieved_send_rate.unwrap(), 2.0 / 0.003);
    // Lag [0, 0, 1] ms: P99 at rank 1.98 → 0.98 ms, under the 1 ms limit.
    assert_close!(c.dispatch_lag_p99_ms, 0.98);
    assert_close!(c.dispatch_lag_p50_ms, 0.0);
    assert_close!(c.cpu_percent.unwrap(), 50.0);
    assert_eq!(c.cap_waited, 0);
    assert!(!c.client_limited, "{:?}", c.reasons);
}

#[test]
fn client_limited_rules_each_fire() {
    // Lag: one request sent 5 ms after its slot.
    let mut recs = fixture();
    recs[1].sent_ns = recs[1].slot_ns + 5 * MS;
    let s = summarize(&recs, &SummaryFacts::default());
    assert!(s.self_check.client_limited);
    assert!(s.self_check.reasons[0].contains("dispatch lag"));

    // Rate: schedule 1 request per ms, sends 2 ms apart.
    let recs: Vec<RequestRecord> = (0..10)
        .map(|i| {
            // No cap (slot = scheduled): the loop itself fell behind, so lag fires too.
            ok(i, i, 2 * i, &[(1, 1)])
        })
        .collect();
    let mut facts = SummaryFacts {
        offered_rate: Some(1000.0),
        ..Default::default()
    };
    let s = summarize(&recs, &facts);
    assert!(s.self_check.reasons.iter().any(|r| r.contains("send rate")));
    // Closed loop: no offered rate, no rate rule.
    facts.offered_rate = None;
    let closed = summarize(&recs, &facts).self_check;
    assert!(!closed.reasons.iter().any(|r| r.contains("send rate")));
    // A cap that made requests wait is the server's limit, not the client's.
    let capped: Vec<RequestRecord> = recs
        .iter()
        .map(|r| RequestRecord {
            slot_ns: r.sent_ns,
            ..r.clone()
        })
        .collect();
    facts.offered_rate = Some(1000.0);
    let capped = summarize(&capped, &facts).self_check;
    assert_eq!(capped.cap_waited, 9);
    assert!(!capped.client_limited, "{:?}", capped.reasons);

    // CPU: 0.95 s of CPU in 1 s on one core.
    let facts = SummaryFacts {
        client_cpu: Some(ClientCpu {
            cpu_seconds: 0.95,
            wall_seconds: 1.0,
            cores: 1.0,
        }),
        ..Default::default()
    };
    let s = summarize(fixture(), &facts);
    assert!(s.self_check.reasons.iter().any(|r| r.contains("CPU")));
}

#[test]
fn goodput_counts_only_successes_meeting_every_slo() {
    let facts = |slo| SummaryFacts {
        slo,
        ..Default::default()
    };
    let g = summarize(
        fixture(),
        &facts(Slo {
            ttft_ms: Some(15.0),
            ..Default::default()
        }),
    )
    .goodput
    .unwrap();
    assert_eq!(g.good, 1);
    assert_close!(g.request_goodput, 1.0 / 0.030);
    assert_close!(g.good_fraction, 0.25);
    // Both meet TTFT 20 and TPOT 3 (≤ is good); E2E 20 leaves only R1.
    let slo = Slo {
        ttft_ms: Some(20.0),
        tpot_ms: Some(3.0),
        e2el_ms: None,
    };
    assert_eq!(summarize(fixture(), &facts(slo)).goodput.unwrap().good, 2);
    let slo = Slo {
        e2el_ms: Some(20.0),
        ..slo
    };
    assert_eq!(summarize(fixture(), &facts(slo)).goodput.unwrap().good, 1);
}

#[test]
fn asked_percentiles_join_the_standard_ones() {
    let facts = SummaryFacts {
        percentiles: vec![99.9, 25.0, 99.0, 150.0],
        ..Default::default()
    };
    let s = summarize(fixture(), &facts);
    let ps: Vec<f64> = s.ttft_ms.percentiles.iter().map(|p| p.0).collect();
    assert_eq!(ps, [25.0, 50.0, 90.0, 95.0, 99.0, 99.9]);
    assert_eq!(percentile_label(99.9), "99.9");
    assert_eq!(percentile_label(50.0), "50");
}

#[test]
fn multi_token_first_event_contributes_no_itl() {
    // First event carries 4 tokens; one more token 8 ms later.
    let s = summarize([ok(1, 0, 0, &[(5, 4), (13, 1)])], &SummaryFacts::default());
    assert_eq!(s.itl_ms.count, 1);
    assert_close!(s.itl_ms.mean, 8.0);
    // TPOT spreads the same 8 ms over the 4 tokens after the first.
    assert_close!(s.tpot_ms.mean, 2.0);
}

#[test]
fn zero_token_event_gap_is_carried_into_itl() {
    // Events at 10 (1 tok), 14 (0 tok), 20 (2 tok): ICL [4, 6]; ITL gap 10 ms over 2 tokens.
    let s = summarize(
        [ok(1, 0, 0, &[(10, 1), (14, 0), (20, 2)])],
        &SummaryFacts::default(),
    );
    assert_eq!(s.icl_ms.count, 2);
    assert_close!(s.icl_ms.mean, 5.0);
    assert_eq!(s.itl_ms.count, 2);
    assert_close!(s.itl_ms.mean, 5.0);
    assert_close!(s.itl_ms.std, 0.0);
}

#[test]
fn four_tokens_per_chunk_keeps_itl_per_token() {
    // The accuracy scenario in miniature: 10 ms per token, 4 tokens per chunk.
    let events: Vec<(u32, u32)> = (0..16).map(|i| (50 + 40 * i, 4)).collect();
    let s = summarize([ok(1, 0, 0, &events)], &SummaryFacts::default());
    assert_close!(s.itl_ms.mean, 10.0);
    assert_close!(s.itl_ms.percentile(99.0).unwrap(), 10.0);
    assert_close!(s.icl_ms.mean, 40.0);
    assert_close!(s.ttft_ms.mean, 50.0);
    assert_eq!(s.itl_ms.count, 60);
}

#[test]
fn nothing_measured_gives_zeros_not_nan() {
    let s = summarize(Vec::<RequestRecord>::new(), &SummaryFacts::default());
    assert_eq!(s.attempted, 0);
    assert_eq!(s.success_rate, 0.0);
    assert_eq!(s.ttft_ms, Distribution::default());
    assert_eq!(s.tokens.token_source, "none");
    let json = serde_json::to_string(&s).unwrap();
    // serde_json writes NaN as null, which would not read back as f64: the round trip checks it.
    let back: Summary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn summary_round_trips_through_json() {
    let facts = SummaryFacts {
        slo: Slo {
            ttft_ms: Some(15.0),
            ..Default::default()
        },
        offered_rate: Some(500.0),
        ..Default::default()
    };
    let s = summarize(fixture(), &facts);
    let back: Summary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn hundred_thousand_requests_of_64_tokens_stay_compact() {
    let mut acc = Accumulator::new();
    acc.reserve(100_000, 64);
    let events: Vec<(u32, u32)> = (0..64).map(|i| (20_000 + 1_000 * i, 1)).collect();
    let mut rec = ok(0, 0, 0, &[]);
    rec.events = events;
    rec.output_tokens = 64;
    for i in 0..100_000u64 {
        rec.id = i;
        rec.sent_ns = i * MS / 10;
        rec.scheduled_ns = rec.sent_ns;
        rec.slot_ns = rec.sent_ns;
        rec.first_token_ns = Some(rec.sent_ns + 20 * MS);
        rec.finished_ns = rec.sent_ns + 83 * MS;
        acc.push(&rec);
    }
    let bytes = acc.heap_bytes();
    eprintln!("accumulator for 100k x 64 tokens: {bytes} bytes");
    // 6.3M events × 8 B + 100k × ~90 B ≈ 60 MB; whole records would be well over 100 MB.
    assert!(bytes < 64 << 20, "accumulator holds {bytes} bytes");
    let s = acc.finish(&SummaryFacts::default());
    assert_eq!(s.itl_ms.count, 6_300_000);
    assert_close!(s.itl_ms.mean, 1.0);
    assert_eq!(s.total_output_tokens, 6_400_000);
}

fn arb_record() -> impl Strategy<Value = RequestRecord> {
    (
        0u64..1_000,
        0u64..5,
        prop::collection::vec((1u32..5_000, 0u32..4), 0..12),
        prop::bool::weighted(0.8),
        prop::bool::ANY,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(sched, lag, gaps, success, warm, no_done, suspect)| {
            let mut t = 0;
            let events: Vec<(u32, u32)> = gaps
                .iter()
                .map(|&(g, k)| {
                    t += g;
                    (t, k.max(u32::from(t == g)))
                })
                .collect();
            let sent = sched * MS + lag * 100_000;
            let mut r = ok(0, 0, 0, &[]);
            r.scheduled_ns = sched * MS;
            r.slot_ns = sched * MS;
            r.sent_ns = sent;
            r.first_token_ns = events.first().map(|e| sent + u64::from(e.0) * 1000);
            r.finished_ns = sent + events.last().map_or(0, |e| u64::from(e.0) * 1000);
            r.output_tokens = events.iter().map(|e| e.1).sum();
            r.events = events;
            if !success {
                r.outcome = Outcome::Failed {
                    kind: FailureKind::Timeout,
                    message: String::new(),
                };
            }
            if warm {
                r.phase = Phase::Warmup;
            }
            r.done_marker = !(no_done && success);
            r.usage_suspect = suspect;
            r
        })
}

fn same(a: &Summary, b: &Summary) -> bool {
    // Sums in another order may differ in the last bits; compare the JSON numbers closely.
    fn walk(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value::*;
        match (a, b) {
            (Number(x), Number(y)) => close(x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0)),
            (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| walk(a, b)),
            (Object(x), Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| walk(v, w)))
            }
            _ => a == b,
        }
    }
    walk(
        &serde_json::to_value(a).unwrap(),
        &serde_json::to_value(b).unwrap(),
    )
}

proptest! {
    #[test]
    fn order_and_merging_do_not_change_the_summary(
        recs in prop::collection::vec(arb_record(), 0..40),
        split in 0usize..40,
    ) {
        let facts = SummaryFacts {
            slo: Slo { ttft_ms: Some(2.0), ..Default::default() },
            offered_rate: Some(100.0),
            ..Default::default()
        };
        let whole = summarize(&recs, &facts);
        let reversed = summarize(recs.iter().rev(), &facts);
        prop_assert!(same(&whole, &reversed), "{:?}\n{:?}", whole, reversed);
        let split = split.min(recs.len());
        let mut a = Accumulator::new();
        let mut b = Accumulator::new();
        recs[..split].iter().for_each(|r| a.push(r));
        recs[split..].iter().for_each(|r| b.push(r));
        a.merge(b);
        prop_assert!(same(&whole, &a.finish(&facts)));
    }

    #[test]
    fn itl_samples_equal_tokens_after_the_first_event(recs in prop::collection::vec(arb_record(), 1..20)) {
        let s = summarize(&recs, &SummaryFacts::default());
        let want: u64 = recs
            .iter()
            .filter(|r| r.phase == Phase::Measured && r.outcome.is_success())
            .map(|r| r.events.iter().skip(1).map(|e| u64::from(e.1)).sum::<u64>())
            .sum();
        prop_assert_eq!(s.itl_ms.count, want);
        prop_assert!(s.itl_ms.min <= s.itl_ms.median() && s.itl_ms.median() <= s.itl_ms.max);
    }
}

#[test]
fn streams_without_done_and_disbelieved_usage_are_counted_over_measured_successes() {
    let no_done = |id| RequestRecord {
        done_marker: false,
        ..ok(id, 0, 0, &[(5, 1), (6, 1)])
    };
    let suspect = RequestRecord {
        usage_suspect: true,
        usage: Some(Usage {
            prompt_tokens: 100,
            completion_tokens: 4_000_000_000,
        }),
        ..ok(3, 0, 0, &[(5, 1)])
    };
    let mut warm = no_done(4);
    warm.phase = Phase::Warmup;
    let recs = vec![
        no_done(1),
        no_done(2),
        suspect,
        warm,
        ok(5, 0, 0, &[(5, 1)]),
        failed(6, 1, FailureKind::Truncated),
        failed(7, 1, FailureKind::NotSse),
    ];
    let s = summarize(&recs, &SummaryFacts::default());
    assert_eq!((s.completed, s.failed), (4, 2));
    assert_eq!(s.streams_without_done, 2);
    assert_eq!(s.tokens.records_usage_suspect, 1);
    assert_eq!(s.errors_by_kind.get("truncated"), Some(&1));
    assert_eq!(s.errors_by_kind.get("not_sse"), Some(&1));
    // The counts survive a JSON round trip; a summary written before them reads as zero.
    let mut v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["streams_without_done"], 2);
    assert_eq!(v["tokens"]["records_usage_suspect"], 1);
    v.as_object_mut().unwrap().remove("streams_without_done");
    v["tokens"]
        .as_object_mut()
        .unwrap()
        .remove("records_usage_suspect");
    let old: Summary = serde_json::from_value(v).unwrap();
    assert_eq!(
        (old.streams_without_done, old.tokens.records_usage_suspect),
        (0, 0)
    );
}

#[test]
fn multi_turn_records_are_broken_down_by_turn() {
    let turn = |mut r: RequestRecord, conv: u64, t: u32, prompt: u32| {
        r.conversation = Some(conv);
        r.turn = Some(t);
        r.prompt_tokens = prompt;
        r
    };
    let recs = vec![
        turn(ok(0, 0, 0, &[(40, 1), (41, 1)]), 0, 0, 100),
        turn(ok(1, 0, 0, &[(60, 1)]), 1, 0, 100),
        turn(ok(2, 100, 100, &[(10, 1), (11, 1)]), 0, 1, 300),
        turn(failed(3, 100, FailureKind::Timeout), 1, 1, 0),
        ok(4, 0, 0, &[(5, 1)]), // a record without a turn is in the totals only
    ];
    let s = summarize(&recs, &SummaryFacts::default());
    assert_eq!(s.attempted, 5);
    assert_eq!(s.turns.len(), 2);
    let (t0, t1) = (&s.turns[0], &s.turns[1]);
    assert_eq!((t0.turn, t0.attempted, t0.completed), (0, 2, 2));
    assert!(close(t0.ttft_ms.mean, 50.0), "{}", t0.ttft_ms.mean);
    assert!(close(t0.mean_input_tokens, 100.0));
    assert_eq!((t1.turn, t1.attempted, t1.completed), (1, 2, 1));
    assert!(close(t1.ttft_ms.median(), 10.0));
    assert!(close(t1.mean_input_tokens, 300.0));
    // Single-turn runs carry no breakdown, and the JSON has no `turns` key.
    let single = summarize(&recs[4..], &SummaryFacts::default());
    assert!(single.turns.is_empty());
    assert!(!serde_json::to_string(&single)
        .unwrap()
        .contains("\"turns\""));
}

#[test]
fn structured_verdicts_give_the_correct_rate_and_invalid_answers_are_not_good() {
    use crate::record::OutputCheck;
    let mut recs = fixture();
    let ok: Vec<usize> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.outcome.is_success() && r.phase == Phase::Measured)
        .map(|(i, _)| i)
        .collect();
    assert!(ok.len() >= 2, "the fixture needs two successes");
    for (n, &i) in ok.iter().enumerate() {
        recs[i].output_check = Some(if n == 0 {
            OutputCheck::Invalid {
                reason: "not JSON".into(),
            }
        } else {
            OutputCheck::Valid
        });
    }
    let slo = Slo {
        e2el_ms: Some(1e9),
        ..Default::default()
    };
    let s = summarize(
        recs,
        &SummaryFacts {
            slo,
            ..Default::default()
        },
    );
    let st = s.structured.expect("verdicts were recorded");
    assert_eq!(
        (st.checked, st.valid, st.invalid),
        (ok.len() as u64, ok.len() as u64 - 1, 1)
    );
    let want = (ok.len() - 1) as f64 / ok.len() as f64 * 100.0;
    assert!((st.correct_rate - want).abs() < 1e-9);
    // Every success meets the loose SLO; the invalid one is still not good.
    assert_eq!(s.goodput.unwrap().good, ok.len() as u64 - 1);
    // An unconstrained run has no structured block.
    assert!(summarize(fixture(), &SummaryFacts::default())
        .structured
        .is_none());
}
