//! One step's time split into the floor and each engine term, for `predict --explain` and the
//! prediction's JSON (`step_breakdown`): which step was picked, and every term in ms and as a
//! share of the step.

use super::roofline::{FloorSides, Hardware, StepLoad, StepTime};
use serde::{Deserialize, Serialize};

/// One named term of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTerm {
    pub name: String,
    /// `floor` (what the GPU must do), `engine_gpu` or `engine_cpu` (what the engine adds).
    pub part: String,
    pub ms: f64,
    /// Fraction of the step, 0–1.
    pub share: f64,
}

/// One step explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainedStep {
    /// `decode` or `prefill`.
    pub kind: String,
    /// How this step was picked among the run's steps.
    pub picked: String,
    /// Sequences in the batch.
    pub batch: u64,
    /// Tokens computed in the step (one per decoding sequence plus prefill chunks).
    pub new_tokens: u64,
    /// Mean tokens already cached per sequence before the step.
    pub mean_context: u64,
    pub step_ms: f64,
    pub floor_ms: f64,
    /// The terms, floor first; they add up to `step_ms`.
    pub terms: Vec<StepTerm>,
    /// The roofline sides of the floor alone, ms (not additive: each kernel group takes the
    /// larger of its compute and memory side).
    pub floor_sides_ms: FloorSides,
}

/// A representative decode step and prefill step of a prediction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepBreakdown {
    pub decode: Option<ExplainedStep>,
    pub prefill: Option<ExplainedStep>,
}

/// The steps of a run, kept to pick representative ones at the end.
#[derive(Debug, Default)]
pub struct StepLog {
    decode: Vec<(StepLoad, StepTime)>,
    prefill: Vec<(StepLoad, StepTime)>,
}

impl StepLog {
    pub fn push(&mut self, load: StepLoad, time: StepTime) {
        if load.seqs == 0 {
            return;
        }
        if load.new_tokens == load.seqs {
            self.decode.push((load, time));
        } else {
            self.prefill.push((load, time));
        }
    }

    /// The median decode-only step by batch size (then context), and the median step with
    /// prefill tokens by tokens computed.
    pub fn breakdown(mut self, hw: &Hardware) -> StepBreakdown {
        let n_decode = self.decode.len();
        self.decode.sort_by_key(|(l, _)| (l.seqs, l.kv_read_tokens));
        let n_prefill = self.prefill.len();
        self.prefill
            .sort_by_key(|(l, _)| (l.new_tokens, l.kv_read_tokens));
        StepBreakdown {
            decode: self.decode.get(n_decode / 2).map(|(l, t)| {
                explain(
                    hw,
                    "decode",
                    format!("median of {n_decode} decode-only steps by batch size"),
                    l,
                    t,
                )
            }),
            prefill: self.prefill.get(n_prefill / 2).map(|(l, t)| {
                explain(
                    hw,
                    "prefill",
                    format!(
                        "median of {n_prefill} steps with prompt tokens by tokens computed; \
                         decodes batched with them included"
                    ),
                    l,
                    t,
                )
            }),
        }
    }
}

/// Explain one step.
pub fn explain(
    hw: &Hardware,
    kind: &str,
    picked: String,
    load: &StepLoad,
    time: &StepTime,
) -> ExplainedStep {
    let total = time.total_s();
    let share = |s: f64| if total > 0.0 { s / total } else { 0.0 };
    let terms = time
        .terms()
        .iter()
        .enumerate()
        .map(|(i, (name, s))| StepTerm {
            name: (*name).into(),
            part: if i < StepTime::FLOOR_TERMS {
                "floor"
            } else if StepTime::CPU_TERMS.contains(name) {
                "engine_cpu"
            } else {
                "engine_gpu"
            }
            .into(),
            ms: s * 1e3,
            share: share(*s),
        })
        .collect();
    let s = hw.floor_sides(load);
    ExplainedStep {
        kind: kind.into(),
        picked,
        batch: load.seqs,
        new_tokens: load.new_tokens,
        mean_context: load.kv_read_tokens / load.seqs.max(1),
        step_ms: total * 1e3,
        floor_ms: time.floor_s() * 1e3,
        terms,
        floor_sides_ms: FloorSides {
            weights_s: s.weights_s * 1e3,
            activations_s: s.activations_s * 1e3,
            layers_compute_s: s.layers_compute_s * 1e3,
            lm_head_compute_s: s.lm_head_compute_s * 1e3,
            kv_read_s: s.kv_read_s * 1e3,
            attention_compute_s: s.attention_compute_s * 1e3,
        },
    }
}

impl ExplainedStep {
    /// The console table of `predict --explain`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} step: batch {}, {} new tokens, mean context {} tokens [{}]: {:.3} ms, floor \
             {:.3} ms\n",
            self.kind,
            self.batch,
            self.new_tokens,
            self.mean_context,
            self.picked,
            self.step_ms,
            self.floor_ms
        );
        out.push_str(&format!(
            "  {:<16} {:<11} {:>10} {:>7}\n",
            "term", "part", "ms", "%"
        ));
        for t in &self.terms {
            out.push_str(&format!(
                "  {:<16} {:<11} {:>10.3} {:>6.1}%\n",
                t.name,
                t.part,
                t.ms,
                t.share * 100.0
            ));
        }
        let s = &self.floor_sides_ms;
        out.push_str(&format!(
            "  floor sides (ms, each alone): weights {:.3}, activations {:.3}, layer FLOPs {:.3}, \
             LM head FLOPs {:.3}, KV read {:.3}, attention FLOPs {:.3}\n",
            s.weights_s,
            s.activations_s,
            s.layers_compute_s,
            s.lm_head_compute_s,
            s.kv_read_s,
            s.attention_compute_s
        ));
        out
    }
}

impl StepBreakdown {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in [&self.decode, &self.prefill].into_iter().flatten() {
            out.push_str(&s.render());
        }
        if out.is_empty() {
            out.push_str("no step ran: nothing to explain\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::catalog::Catalog;
    use crate::sim::profile::EngineProfile;

    #[test]
    fn the_median_steps_are_picked_and_their_terms_add_up() {
        let c = Catalog::builtin();
        let hw = Hardware {
            gpu: c.gpu("h200").unwrap().clone(),
            model: c.model("llama-3.1-8b").unwrap().clone(),
            tp: 1,
        };
        let ov = EngineProfile::vllm(&hw.gpu).overheads;
        let mut log = StepLog::default();
        for batch in [1u64, 4, 16] {
            let mut l = StepLoad::default();
            for _ in 0..batch {
                l.add(1000, 1, true);
            }
            log.push(l, hw.step_time(&l, &ov));
        }
        let mut p = StepLoad::default();
        p.add(0, 2048, true);
        log.push(p, hw.step_time(&p, &ov));
        let b = log.breakdown(&hw);
        let d = b.decode.clone().unwrap();
        assert_eq!((d.batch, d.new_tokens, d.mean_context), (4, 4, 1000));
        let sum: f64 = d.terms.iter().map(|t| t.ms).sum();
        assert!((sum - d.step_ms).abs() < 1e-9);
        let shares: f64 = d.terms.iter().map(|t| t.share).sum();
        assert!((shares - 1.0).abs() < 1e-9);
        assert!(d.terms.iter().all(|t| t.ms >= 0.0));
        let pf = b.prefill.clone().unwrap();
        assert_eq!((pf.batch, pf.new_tokens), (1, 2048));
        assert!(pf.floor_ms >= 53.0, "{pf:?}");
        let text = b.render();
        for want in [
            "decode step: batch 4",
            "prefill step: batch 1",
            "schedule",
            "sampling",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
