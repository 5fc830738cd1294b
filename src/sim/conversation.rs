//! Multi-turn conversations in virtual time: the [`Arrivals`] source `predict` uses for a
//! multi-turn workload, so conversations are simulated by the same loop as everything else.
//!
//! It follows the session driver (`load::session`) turn for turn:
//! - turn k+1 is due at turn k's finish (the client saw its last token) plus the planned think
//!   time; a failed turn ends its conversation;
//! - each turn's prompt is the history rendered exactly as the embedded server renders chat
//!   ([`crate::server::render_chat`]: system?, user 1, the simulator's reply 1, …, user k+1),
//!   and the reply is the text the served simulator streams, so the prefix cache hits the same
//!   blocks as in `sim serve` + `run`;
//! - [`Pacing::Lanes`]: N conversations at once, a finished one replaced by the next (closed
//!   loop of N); [`Pacing::Starts`]: conversation i starts at its offset (open loop);
//! - a request count stops it: once that many turns are sent, nothing more is due, and
//!   conversations with turns left are cut short.

use super::engine::SimRequest;
use super::predict::{Arrivals, Offer};
use crate::server::{output_length, GenerateRequest};
use crate::structured::Constraint;
use crate::workload::ConversationPlan;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// How conversations are started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pacing {
    /// Closed loop: this many conversations at once; when one ends the next starts then.
    Lanes(usize),
    /// Open loop: conversation i starts at `offsets[i]` (ns); conversations without an offset
    /// never start.
    Starts(Vec<u64>),
}

/// What decides a reply's length and text, as the server decides them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplyRule {
    /// The structured-output constraint every turn carries, if any.
    pub constraint: Option<Constraint>,
    pub ignore_eos: bool,
    pub min_tokens: u32,
}

/// How the conversations ended (the keys of `run`'s `load.conversations`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationTally {
    /// Conversations that sent at least one turn.
    pub started: u64,
    /// Every turn sent and answered.
    pub completed: u64,
    /// Ended by a failed turn.
    pub ended_by_failure: u64,
    /// Cut short by the request count.
    pub ended_early: u64,
}

/// One started conversation's state.
struct Live {
    /// (role, content) so far, the turn in flight's user message included.
    messages: Vec<(&'static str, String)>,
    /// The next turn to send.
    next_turn: usize,
    /// The reply the turn in flight will get (the served simulator's text for it).
    reply: String,
}

/// The source of conversation turns (see the module docs).
pub struct Conversations {
    plans: Vec<ConversationPlan>,
    pacing: Pacing,
    rule: ReplyRule,
    max_requests: u64,
    /// Due turns: (due ns, tie-break, conversation). A conversation has at most one.
    due: BinaryHeap<Reverse<(u64, u64, usize)>>,
    ties: u64,
    /// Lanes: the next conversation of the pass to start.
    next_conversation: usize,
    live: HashMap<usize, Live>,
    /// Request id → conversation, for the turns in flight.
    in_flight: HashMap<u64, usize>,
    /// Turns sent (request ids are 0..sent, in sending order, as the session driver numbers
    /// them).
    sent: u64,
    tally: ConversationTally,
}

impl Conversations {
    /// Conversations `plans`, started as `pacing` says, at most `max_requests` turns in all.
    pub fn new(
        plans: Vec<ConversationPlan>,
        pacing: Pacing,
        rule: ReplyRule,
        max_requests: u64,
    ) -> Conversations {
        let mut c = Conversations {
            plans,
            pacing,
            rule,
            max_requests,
            due: BinaryHeap::new(),
            ties: 0,
            next_conversation: 0,
            live: HashMap::new(),
            in_flight: HashMap::new(),
            sent: 0,
            tally: ConversationTally::default(),
        };
        match &c.pacing {
            Pacing::Lanes(n) => {
                for _ in 0..(*n).min(c.plans.len()) {
                    c.start_next(0);
                }
            }
            Pacing::Starts(offsets) => {
                let starts: Vec<(usize, u64)> = offsets
                    .iter()
                    .take(c.plans.len())
                    .copied()
                    .enumerate()
                    .collect();
                for (i, at) in starts {
                    c.make_due(at, i);
                }
            }
        }
        c
    }

    /// How the conversations ended; call after the simulation. Conversations started but
    /// neither completed nor failed were cut short.
    pub fn tally(&self) -> ConversationTally {
        let mut t = self.tally;
        t.ended_early = t.started - t.completed - t.ended_by_failure;
        t
    }

    fn make_due(&mut self, at: u64, conversation: usize) {
        self.due.push(Reverse((at, self.ties, conversation)));
        self.ties += 1;
    }

    /// Lanes: start the next conversation of the pass at `at`, if any is left.
    fn start_next(&mut self, at: u64) {
        if matches!(self.pacing, Pacing::Lanes(_)) && self.next_conversation < self.plans.len() {
            let i = self.next_conversation;
            self.next_conversation += 1;
            self.make_due(at, i);
        }
    }

    /// The conversation `i` ended at `at` (completed or failed): its lane moves on.
    fn finish(&mut self, i: usize, at: u64) {
        self.live.remove(&i);
        self.start_next(at);
    }

    fn stopped(&self) -> bool {
        self.sent >= self.max_requests
    }

    /// The reply's length and text for a turn with `max_tokens`, sent as request `index`.
    fn reply(&self, index: u64, max_tokens: u32) -> (u32, String, Option<u64>) {
        let answer = self
            .rule
            .constraint
            .as_ref()
            .and_then(|c| crate::server::structured_answer(c, index));
        let req = GenerateRequest {
            index,
            received_at: std::time::Instant::now(),
            prompt: String::new(),
            prompt_tokens: 0,
            max_tokens,
            min_tokens: self.rule.min_tokens.min(max_tokens),
            ignore_eos: self.rule.ignore_eos,
            chat: true,
            structured: self.rule.constraint.is_some(),
            answer_tokens: answer.as_ref().map(|p| p.len() as u32),
            grammar: self.rule.constraint.as_ref().map(|c| c.key()),
            stream: true,
        };
        let (len, _) = output_length(&req, None);
        let text = match &answer {
            Some(pieces) => crate::server::answer_text(pieces, len),
            None => crate::server::output_words(0, len, 0),
        };
        (len, text, req.grammar)
    }
}

impl Arrivals for Conversations {
    fn next_due(&self) -> Option<u64> {
        if self.stopped() {
            return None;
        }
        self.due.peek().map(|Reverse((at, _, _))| *at)
    }

    fn send(&mut self, _sent_ns: u64) -> Option<Offer> {
        if self.stopped() {
            return None;
        }
        let Reverse((due, _, i)) = self.due.pop()?;
        let plan = &self.plans[i];
        let live = self.live.entry(i).or_insert_with(|| Live {
            messages: plan
                .system
                .iter()
                .map(|(text, _)| ("system", text.clone()))
                .collect(),
            next_turn: 0,
            reply: String::new(),
        });
        let k = live.next_turn;
        let turn = &plan.turns[k];
        live.messages.push(("user", turn.user.clone()));
        live.next_turn += 1;
        let (prompt, prompt_tokens) =
            crate::server::render_chat(live.messages.iter().map(|(r, c)| (*r, c.as_str())));
        let id = self.sent;
        let max_tokens = turn.max_tokens;
        let (len, text, grammar) = self.reply(id, max_tokens);
        if let Some(live) = self.live.get_mut(&i) {
            live.reply = text;
        }
        if k == 0 {
            self.tally.started += 1;
        }
        self.sent += 1;
        self.in_flight.insert(id, i);
        // As the server: an empty prompt counts one token.
        let mut req = SimRequest::from_text(id, 0, &prompt, prompt_tokens.max(1), len);
        req.grammar = grammar;
        Some(Offer {
            req,
            scheduled_ns: due,
            position: id,
            conversation: Some((i as u64, k as u32)),
        })
    }

    fn ended(&mut self, id: u64, at_ns: u64, ok: bool) {
        let Some(i) = self.in_flight.remove(&id) else {
            return;
        };
        if !ok {
            self.tally.ended_by_failure += 1;
            self.finish(i, at_ns);
            return;
        }
        let plan = &self.plans[i];
        let Some(live) = self.live.get_mut(&i) else {
            return;
        };
        let reply = std::mem::take(&mut live.reply);
        live.messages.push(("assistant", reply));
        match plan.turns.get(live.next_turn) {
            Some(next) => {
                let due = at_ns.saturating_add(crate::load::duration_ns(next.think));
                self.make_due(due, i);
            }
            None => {
                self.tally.completed += 1;
                self.finish(i, at_ns);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FailureKind, Outcome, RequestRecord};
    use crate::sim::predict::{simulate_arrivals, PredictOptions, Prediction, SimLoad};
    use crate::sim::{Catalog, EngineKind};
    use crate::workload::{MultiTurnSpec, PromptMaker, ThinkTime, TurnCount};

    /// `n` conversations of `turns` turns: user messages of `input` words, replies of `output`
    /// tokens, 10 ms think times.
    fn plans(n: u32, turns: u32, input: u32, output: u32) -> Vec<ConversationPlan> {
        MultiTurnSpec::new(
            n,
            TurnCount::Fixed { turns },
            16,
            input,
            input,
            output,
            10.0,
            ThinkTime::Fixed,
            7,
        )
        .conversations(&PromptMaker::approximate(), 7)
    }

    fn run(plans: Vec<ConversationPlan>, pacing: Pacing, max: u64) -> (Prediction, Conversations) {
        let engine = PredictOptions::new(EngineKind::Vllm, "a10g", "facebook/opt-125m")
            .engine(&Catalog::builtin())
            .unwrap();
        let mut c = Conversations::new(plans, pacing, ReplyRule::default(), max);
        let p = simulate_arrivals(engine, &mut c, SimLoad::Open, 0, 200_000);
        (p, c)
    }

    fn of(p: &Prediction, conv: u64) -> Vec<&RequestRecord> {
        let mut t: Vec<_> = p
            .records
            .iter()
            .filter(|r| r.conversation == Some(conv))
            .collect();
        t.sort_by_key(|r| r.turn);
        t
    }

    #[test]
    fn each_turn_is_due_at_the_previous_finish_plus_the_think_time() {
        let (p, c) = run(plans(3, 3, 40, 20), Pacing::Lanes(3), 100);
        assert_eq!(p.records.len(), 9);
        for conv in 0..3 {
            let t = of(&p, conv);
            assert_eq!(t.len(), 3);
            assert_eq!(t[0].scheduled_ns, 0);
            for (k, w) in t.windows(2).enumerate() {
                assert_eq!(w[1].turn, Some(k as u32 + 1));
                assert_eq!(w[1].scheduled_ns, w[0].finished_ns + 10_000_000);
                assert_eq!(w[1].sent_ns, w[1].scheduled_ns);
                // The history grows by the reply and the new message (the server's count:
                // the system prompt's and messages' words).
                assert_eq!(w[1].prompt_tokens, w[0].prompt_tokens + 20 + 40);
            }
        }
        assert_eq!(
            c.tally(),
            ConversationTally {
                started: 3,
                completed: 3,
                ended_by_failure: 0,
                ended_early: 0
            }
        );
        // Turns 1 and 2 find their history (prompt and reply) in the prefix cache: every whole
        // 16-token block of the previous turn's sequence but the last, at least.
        let hits = p.gauges.last().unwrap().prefix_cache_hits_total;
        let per_conversation: u64 = [16 + 40 + 20, 16 + 2 * 40 + 2 * 20]
            .iter()
            .map(|&n| (n / 16 - 1) * 16)
            .sum();
        assert!(
            hits >= 3 * per_conversation,
            "{hits} < {}",
            3 * per_conversation
        );
    }

    #[test]
    fn lanes_replace_a_finished_conversation_at_its_finish() {
        let (p, _) = run(plans(5, 2, 30, 10), Pacing::Lanes(2), 100);
        assert_eq!(p.records.len(), 10);
        // Conversations 0 and 1 start at once; each later one starts when one ends.
        let ends: Vec<u64> = (0..5).map(|c| of(&p, c)[1].finished_ns).collect();
        for conv in 2..5u64 {
            let start = of(&p, conv)[0].scheduled_ns;
            assert!(ends[..conv as usize].contains(&start), "{conv}: {start}");
        }
        // Never more than two conversations between their first send and last finish.
        let mut edges: Vec<(u64, i32)> = (0..5)
            .flat_map(|c| [(of(&p, c)[0].sent_ns, 1), (ends[c as usize], -1)])
            .collect();
        edges.sort();
        let mut live = 0;
        for (_, d) in edges {
            live += d;
            assert!(live <= 2);
        }
    }

    #[test]
    fn starts_follow_the_offsets() {
        let offsets = vec![0, 50_000_000, 400_000_000];
        let (p, _) = run(plans(3, 2, 30, 10), Pacing::Starts(offsets.clone()), 100);
        for (conv, &at) in offsets.iter().enumerate() {
            assert_eq!(of(&p, conv as u64)[0].scheduled_ns, at);
        }
        // Request ids are in sending order.
        let mut by_send: Vec<&RequestRecord> = p.records.iter().collect();
        by_send.sort_by_key(|r| (r.sent_ns, r.id));
        assert!(by_send.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn the_request_count_cuts_conversations_short() {
        let (p, c) = run(plans(3, 4, 30, 10), Pacing::Lanes(3), 7);
        assert_eq!(p.records.len(), 7);
        assert!(p.records.iter().all(|r| r.outcome.is_success()));
        let t = c.tally();
        assert_eq!((t.started, t.completed, t.ended_early), (3, 0, 3));
    }

    #[test]
    fn a_failed_turn_ends_its_conversation() {
        // opt-125m's context is 2048 tokens: the third turn's history (3 × 700 words and two
        // replies) does not fit, so the engine refuses it (HTTP 400) and the conversation
        // ends; the lane starts the next conversation then.
        let (p, c) = run(plans(2, 4, 700, 8), Pacing::Lanes(1), 100);
        for conv in 0..2 {
            let t = of(&p, conv);
            assert_eq!(t.len(), 3, "turns after the failed one are never sent");
            assert!(t[0].outcome.is_success() && t[1].outcome.is_success());
            assert!(matches!(
                t[2].outcome,
                Outcome::Failed {
                    kind: FailureKind::Http { status: 400 },
                    ..
                }
            ));
        }
        assert!(of(&p, 1)[0].scheduled_ns >= of(&p, 0)[2].finished_ns);
        let t = c.tally();
        assert_eq!((t.started, t.ended_by_failure, t.completed), (2, 2, 0));
    }
}
