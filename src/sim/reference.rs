//! The measured floor of a Llama-3.1-8B step on one NVIDIA H200 (`../shared/reference/
//! gpu-floor-h200.md`, 2026-12-04: driver 580.159.04, torch 2.11.0+cu130; whole decode step in
//! one CUDA graph, random bf16 weights, one KV cache per layer of the full context; eager
//! whole-model prefill, logits for the last token only). A real engine's step is this floor plus
//! its own work, so the simulator's step for the same shape must never be shorter.

use super::roofline::StepLoad;

/// The GPU and model the reference was measured with, as the catalog names them.
pub const GPU: &str = "H200";
pub const MODEL: &str = "meta-llama/Llama-3.1-8B";

/// One measured shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasuredStep {
    /// Sequences in the batch.
    pub batch: u64,
    /// Decode: the context each sequence attends to; prefill: the prompt tokens per sequence.
    pub tokens: u64,
    /// Whether this is a decode step (one new token per sequence) or a prefill from empty.
    pub decode: bool,
    /// The measured step, ms.
    pub ms: f64,
}

impl MeasuredStep {
    /// The step's load as the engine would present it to [`super::roofline::Hardware`].
    pub fn load(&self) -> StepLoad {
        let mut load = StepLoad::default();
        for _ in 0..self.batch {
            if self.decode {
                load.add(self.tokens, 1, true);
            } else {
                load.add(0, self.tokens, true);
            }
        }
        load
    }
}

const fn decode(batch: u64, context: u64, ms: f64) -> MeasuredStep {
    MeasuredStep {
        batch,
        tokens: context,
        decode: true,
        ms,
    }
}

const fn prefill(batch: u64, tokens: u64, ms: f64) -> MeasuredStep {
    MeasuredStep {
        batch,
        tokens,
        decode: false,
        ms,
    }
}

/// Every row of the reference that is a floor: the graph-captured decode steps at contexts 512
/// and 2048 (batch 1–256), the long-context decode rows at batch ≥ 16 (at batch < 16 and long
/// contexts PyTorch's SDPA left the GPU mostly idle, so the reference treats those rows as an
/// upper bound, not a floor), and every whole-model prefill.
pub const H200_LLAMA_8B: &[MeasuredStep] = &[
    decode(1, 512, 5.10),
    decode(8, 512, 5.29),
    decode(32, 512, 5.76),
    decode(64, 512, 6.41),
    decode(128, 512, 7.88),
    decode(256, 512, 12.37),
    decode(1, 2048, 5.64),
    decode(8, 2048, 5.84),
    decode(32, 2048, 7.17),
    decode(64, 2048, 9.19),
    decode(128, 2048, 13.70),
    decode(256, 2048, 24.46),
    decode(32, 8192, 12.85),
    decode(64, 8192, 20.57),
    decode(16, 32768, 20.06),
    prefill(1, 512, 13.6),
    prefill(1, 2048, 53.0),
    prefill(4, 2048, 209.7),
    prefill(8, 2048, 423.6),
    prefill(1, 8192, 234.6),
    prefill(1, 16384, 525.3),
    prefill(1, 32768, 1280.8),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::catalog::Catalog;
    use crate::sim::profile::{EngineKind, EngineProfile};
    use crate::sim::roofline::Hardware;

    fn h200() -> Hardware {
        let c = Catalog::builtin();
        Hardware {
            gpu: c.gpu(GPU).unwrap().clone(),
            model: c.model(MODEL).unwrap().clone(),
            tp: 1,
        }
    }

    fn describe(m: &MeasuredStep) -> String {
        let kind = if m.decode { "decode" } else { "prefill" };
        format!("{kind} {}×{}", m.batch, m.tokens)
    }

    /// The judging line of issue 13: for every measured shape the simulated step (each
    /// engine's default profile) is at least the measured floor. The model's own floor (the
    /// roofline at the catalog's efficiencies, no engine terms) comes within 3 % below it at
    /// worst: at batch 1, context 2048 the reference's SDPA decode kernel runs 8 blocks of work
    /// (batch × KV heads) and reads the KV far below bandwidth, which engines' split-KV kernels
    /// avoid; every other row's modelled floor is at or above the measurement.
    #[test]
    fn no_simulated_step_beats_the_measured_h200_floor() {
        let hw = h200();
        for engine in [EngineKind::Vllm, EngineKind::Sglang] {
            let profile = EngineProfile::for_engine(engine, &hw.gpu, 1);
            for m in H200_LLAMA_8B {
                let t = hw.step_time(&m.load(), &profile.overheads);
                let step_ms = t.total_s() * 1e3;
                assert!(
                    step_ms >= m.ms,
                    "{engine} {}: simulated step {step_ms:.2} ms < measured floor {} ms",
                    describe(m),
                    m.ms
                );
                let floor_ms = t.floor_s() * 1e3;
                let low_occupancy = m.decode && m.batch == 1 && m.tokens >= 2048;
                let allowed = if low_occupancy { 0.97 * m.ms } else { m.ms };
                assert!(
                    floor_ms >= allowed,
                    "{engine} {}: modelled floor {floor_ms:.2} ms < measured {} ms",
                    describe(m),
                    m.ms
                );
            }
        }
    }

    /// Decode with the current vLLM profile stays within 1.6× of the measured floor at batch
    /// ≤ 64 (real engines measure 1.3–1.9× above it, the excess growing with batch).
    #[test]
    fn vllm_decode_is_within_1_6x_of_the_floor_up_to_batch_64() {
        let hw = h200();
        let profile = EngineProfile::vllm(&hw.gpu);
        for m in H200_LLAMA_8B.iter().filter(|m| m.decode && m.batch <= 64) {
            let ms = hw.step_time(&m.load(), &profile.overheads).total_s() * 1e3;
            let ratio = ms / m.ms;
            assert!(
                ratio <= 1.6,
                "{}: {ms:.2} ms is {ratio:.2}× the measured {} ms",
                describe(m),
                m.ms
            );
        }
    }

    /// The excess over the floor is itemized: every term is reported, none is negative, they
    /// add up to the step, and the vLLM decode step's engine terms are all present.
    #[test]
    fn the_excess_is_itemized_and_adds_up() {
        let hw = h200();
        let profile = EngineProfile::vllm(&hw.gpu);
        for m in H200_LLAMA_8B {
            let t = hw.step_time(&m.load(), &profile.overheads);
            let terms = t.terms();
            let names: Vec<&str> = terms.iter().map(|(n, _)| *n).collect();
            for want in [
                "matmul",
                "attention",
                "kv_write",
                "paged_attention",
                "sampling",
                "schedule",
                "detokenize",
            ] {
                assert!(names.contains(&want), "{want} missing from {names:?}");
            }
            assert!(terms.iter().all(|(_, s)| *s >= 0.0), "{terms:?}");
            let sum: f64 = terms.iter().map(|(_, s)| s).sum();
            assert!((sum - t.total_s()).abs() < 1e-12);
            let floor: f64 = terms[..crate::sim::roofline::StepTime::FLOOR_TERMS]
                .iter()
                .map(|(_, s)| s)
                .sum();
            assert!((floor - t.floor_s()).abs() < 1e-12);
            assert!(t.kv_write_s > 0.0 && t.sampling_s > 0.0 && t.schedule_s > 0.0);
            if m.decode {
                assert!(t.paged_attention_s > 0.0, "{}", describe(m));
            }
        }
    }

    /// Prints model vs measured for docs/simulator.md.
    #[test]
    #[ignore = "prints the floor table for docs/simulator.md"]
    fn print_floor_table() {
        let hw = h200();
        let v = EngineProfile::vllm(&hw.gpu);
        let s = EngineProfile::sglang(&hw.gpu, 1);
        for m in H200_LLAMA_8B {
            let tv = hw.step_time(&m.load(), &v.overheads);
            let ts = hw.step_time(&m.load(), &s.overheads);
            println!(
                "| {} | {} | {:.2} ({:.2}×) | {:.2} ({:.2}×) | {:.2} ({:.2}×) |",
                describe(m),
                m.ms,
                tv.floor_s() * 1e3,
                tv.floor_s() * 1e3 / m.ms,
                tv.total_s() * 1e3,
                tv.total_s() * 1e3 / m.ms,
                ts.total_s() * 1e3,
                ts.total_s() * 1e3 / m.ms,
            );
        }
    }
}
