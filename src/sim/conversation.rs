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
use crate::server::{GenerateRequest, output_length};
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
                let due = at_ns + next.think.as_nanos() as u64;
                self.make_due(due, i);
            }
            None => {
                self.tally.completed += 1;
                self.finish(i, at_ns);
            }
        }
    }
}
