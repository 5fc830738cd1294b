//! How long one engine iteration takes on a GPU: a floor the hardware cannot beat, then what the
//! engine adds to it.
//!
//! The floor: a step runs two groups of kernels one after the other: the matrix products
//! (attention projections, MLP, LM head), which stream the weights once per step whatever the
//! batch size, and the attention itself, which streams each sequence's KV cache. Each group takes
//! `max(FLOPs / achievable FLOP/s, bytes / achievable bandwidth)`; the floor adds both and the
//! tensor-parallel all-reduces. Summing the two maxima instead of taking one max over the whole
//! step keeps a decode step's attention (memory-bound) from hiding under its matrix products
//! (compute-bound at large batches), as happens on the device. With the efficiencies the catalog
//! gives Hopper GPUs, this reproduces a measured whole-model Llama-3.1-8B step on an H200 from
//! above or at (`sim::reference`).
//!
//! The engine's additions are separate, named terms ([`StepTime`], [`EngineOverheads`]):
//! overlap loss, KV write, paged-attention gather, sampling, scheduling, detokenization.

use super::catalog::{GpuSpec, ModelSpec};

/// What one step computes, summed over the batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepLoad {
    /// Tokens whose KV is computed this step (prefill chunk tokens + one per decoding sequence).
    pub new_tokens: u64,
    /// Sequences that sample a token at the end of the step (they run the LM head).
    pub sampled: u64,
    /// Σ over new tokens of the context length each one attends to (itself included).
    pub attended: f64,
    /// KV tokens read from the cache (context before this step's tokens), all sequences.
    pub kv_read_tokens: u64,
    /// Sequences in the batch.
    pub seqs: u64,
}

impl StepLoad {
    /// Add one sequence that computes `new` tokens on top of `context` already-cached ones and
    /// samples (or not) at the end.
    pub fn add(&mut self, context: u64, new: u64, samples: bool) {
        self.new_tokens += new;
        self.sampled += u64::from(samples);
        self.kv_read_tokens += context;
        let c = context as f64;
        let n = new as f64;
        // Token k of the chunk (1-based) attends to context + k positions (causal).
        self.attended += n * c + n * (n + 1.0) / 2.0;
        self.seqs += 1;
    }
}

/// The step's time split by cause, seconds. The first three terms are the **floor**: what the
/// GPU must do (weights, activations, LM head, attention FLOPs, KV reads, all-reduce) at the
/// efficiencies the catalog gives, which on Hopper reproduce a measured whole-model step
/// (`catalogs/gpus.toml`). The others are what a real engine adds on top, each a named
/// mechanism; all are ≥ 0 and add up to the step ([`StepTime::total_s`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepTime {
    /// Floor: attention projections, MLP and LM head, `max(FLOP time, weight + activation
    /// streaming time)`.
    pub matmul_s: f64,
    /// Floor: attention, `max(FLOP time, KV-read time)`.
    pub attention_s: f64,
    /// Floor: tensor-parallel all-reduces.
    pub allreduce_s: f64,
    /// GPU: compute and memory time failing to overlap within a kernel group (the GPU's
    /// `overlap_loss`; 0 where the catalog's efficiencies are a measured whole-model floor).
    pub overlap_loss_s: f64,
    /// GPU: writing the new tokens' K and V into the cache (vLLM `reshape_and_cache`).
    pub kv_write_s: f64,
    /// GPU: gathering KV from paged blocks instead of one contiguous cache.
    pub paged_attention_s: f64,
    /// GPU: sampling and logits processing.
    pub sampling_s: f64,
    /// CPU: scheduling and batch preparation, the part not hidden under the GPU's work.
    pub schedule_s: f64,
    /// CPU: detokenization and streaming, the part not hidden under the GPU's work.
    pub detokenize_s: f64,
    /// CPU: grammar token masks of structured-output requests (set by the engine).
    pub grammar_mask_s: f64,
}

impl StepTime {
    /// The named terms in order, with the names `predict --explain` and the JSON use.
    pub fn terms(&self) -> [(&'static str, f64); 10] {
        [
            ("matmul", self.matmul_s),
            ("attention", self.attention_s),
            ("allreduce", self.allreduce_s),
            ("overlap_loss", self.overlap_loss_s),
            ("kv_write", self.kv_write_s),
            ("paged_attention", self.paged_attention_s),
            ("sampling", self.sampling_s),
            ("schedule", self.schedule_s),
            ("detokenize", self.detokenize_s),
            ("grammar_mask", self.grammar_mask_s),
        ]
    }

    /// How many of [`StepTime::terms`], from the first, make the floor.
    pub const FLOOR_TERMS: usize = 3;

    /// The terms that are CPU work (the rest are GPU work).
    pub const CPU_TERMS: [&'static str; 3] = ["schedule", "detokenize", "grammar_mask"];

    /// The floor: what the GPU must do, no engine additions.
    pub fn floor_s(&self) -> f64 {
        self.matmul_s + self.attention_s + self.allreduce_s
    }

    /// Time the GPU is busy: the floor and the engine's GPU-side additions.
    pub fn gpu_s(&self) -> f64 {
        self.floor_s()
            + self.overlap_loss_s
            + self.kv_write_s
            + self.paged_attention_s
            + self.sampling_s
    }

    pub fn total_s(&self) -> f64 {
        self.terms().iter().map(|(_, t)| t).sum()
    }

    /// Fraction of the step the GPU is busy (what `nvidia-smi` calls utilization).
    pub fn busy_fraction(&self) -> f64 {
        let t = self.total_s();
        if t > 0.0 {
            self.gpu_s() / t
        } else {
            0.0
        }
    }
}

/// What an engine adds to the GPU floor in one step, by mechanism. Each engine profile sets
/// these with its sources (`profile.rs`); legacy calibration profiles carry one fitted CPU
/// lump in `schedule_*` and zero elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineOverheads {
    /// Scheduler and batch preparation (CPU): fixed cost per step, seconds.
    pub schedule_per_step_s: f64,
    /// Scheduler and batch preparation (CPU): cost per sequence in the batch, seconds.
    pub schedule_per_seq_s: f64,
    /// The next batch is prepared while the GPU runs this one (SGLang's overlap scheduler,
    /// vLLM `--async-scheduling`): only what exceeds the GPU time adds to the step.
    pub schedule_overlapped: bool,
    /// Sampling and logits processing (GPU kernels): fixed cost per step, seconds.
    pub sampling_per_step_s: f64,
    /// Sampling and logits processing per sequence that samples, seconds.
    pub sampling_per_seq_s: f64,
    /// Detokenization and streaming per sequence that samples (CPU), seconds.
    pub detokenize_per_seq_s: f64,
    /// Detokenization runs in another process (vLLM V1's API server, SGLang's detokenizer
    /// manager): only what exceeds the GPU time adds to the step.
    pub detokenize_overlapped: bool,
    /// Paged-attention gather, as a fraction of the attention's KV-read time.
    pub paged_attention_fraction: f64,
}

impl EngineOverheads {
    /// One fitted CPU lump (per step + per sequence) with nothing else: how the legacy
    /// calibration profiles were fitted, before the terms were separated.
    pub const fn lump(per_step_s: f64, per_seq_s: f64) -> EngineOverheads {
        EngineOverheads {
            schedule_per_step_s: per_step_s,
            schedule_per_seq_s: per_seq_s,
            schedule_overlapped: false,
            sampling_per_step_s: 0.0,
            sampling_per_seq_s: 0.0,
            detokenize_per_seq_s: 0.0,
            detokenize_overlapped: false,
            paged_attention_fraction: 0.0,
        }
    }

    /// Multi-step scheduling (vLLM 0.6 `--num-scheduler-steps k`): scheduling and output
    /// processing are paid once per round of `k` decode steps; sampling still runs every step.
    pub fn per_round(&self, k: u32) -> EngineOverheads {
        let k = f64::from(k.max(1));
        EngineOverheads {
            schedule_per_step_s: self.schedule_per_step_s / k,
            schedule_per_seq_s: self.schedule_per_seq_s / k,
            detokenize_per_seq_s: self.detokenize_per_seq_s / k,
            ..*self
        }
    }
}

/// One GPU type running one model at a tensor-parallel degree.
#[derive(Debug, Clone)]
pub struct Hardware {
    pub gpu: GpuSpec,
    pub model: ModelSpec,
    pub tp: u32,
}

/// The roofline sides of a step's floor, each alone, seconds (not additive: each kernel group
/// takes the larger of its compute and memory sides). For `predict --explain`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FloorSides {
    /// Streaming all weights once.
    pub weights_s: f64,
    /// Writing and reading the activations around each operator.
    pub activations_s: f64,
    /// FLOPs of the attention projections and MLP.
    pub layers_compute_s: f64,
    /// FLOPs of the LM head for the sequences that sample.
    pub lm_head_compute_s: f64,
    /// Reading the cached KV of every sequence.
    pub kv_read_s: f64,
    /// FLOPs of QKᵀ and AV.
    pub attention_compute_s: f64,
}

/// Fixed latency of one all-reduce call (NCCL launch and synchronisation), seconds. An
/// assumption: small-message NCCL all-reduce latency on NVLink is in the 5–15 µs range.
const ALLREDUCE_LATENCY_S: f64 = 8e-6;

impl Hardware {
    fn tp(&self) -> f64 {
        f64::from(self.tp.max(1))
    }

    fn flops_per_s(&self) -> f64 {
        self.gpu.dense_tflops * 1e12 * self.gpu.matmul_efficiency * self.tp()
    }

    fn bytes_per_s(&self) -> f64 {
        self.gpu.bandwidth_gbps * 1e9 * self.gpu.bandwidth_efficiency * self.tp()
    }

    /// FLOPs of the matrix products and of attention for a load.
    pub fn flops(&self, load: &StepLoad) -> (f64, f64) {
        let m = &self.model;
        let matmul = 2.0 * load.new_tokens as f64 * m.layer_matmul_params() as f64
            + 2.0 * load.sampled as f64 * m.lm_head_params() as f64;
        // QK^T and AV: 2 FLOPs per multiply-add, two products, per head dimension and head.
        let attn =
            4.0 * f64::from(m.layers) * f64::from(m.heads) * f64::from(m.head_dim) * load.attended;
        (matmul, attn)
    }

    /// Bytes of activations written and read around each operator of each layer per token:
    /// an assumption of about 8 hidden-sized and 4 intermediate-sized vectors.
    fn activation_bytes_per_token(&self) -> f64 {
        let m = &self.model;
        f64::from(m.layers)
            * (8.0 * f64::from(m.hidden_size) + 4.0 * f64::from(m.intermediate_size))
            * m.dtype_bytes() as f64
    }

    /// Bytes the matrix products and attention move for a load (KV read and written).
    pub fn bytes(&self, load: &StepLoad) -> (f64, f64) {
        let m = &self.model;
        let matmul =
            m.weight_bytes() as f64 + load.new_tokens as f64 * self.activation_bytes_per_token();
        let kv = (load.kv_read_tokens + load.new_tokens) as f64 * m.kv_bytes_per_token() as f64;
        (matmul, kv)
    }

    /// Each roofline side of the floor alone, at the catalog's efficiencies.
    pub fn floor_sides(&self, load: &StepLoad) -> FloorSides {
        let m = &self.model;
        let flops = self.flops_per_s();
        let bw = self.bytes_per_s();
        let (_, f_attn) = self.flops(load);
        FloorSides {
            weights_s: m.weight_bytes() as f64 / bw,
            activations_s: load.new_tokens as f64 * self.activation_bytes_per_token() / bw,
            layers_compute_s: 2.0 * load.new_tokens as f64 * m.layer_matmul_params() as f64 / flops,
            lm_head_compute_s: 2.0 * load.sampled as f64 * m.lm_head_params() as f64 / flops,
            kv_read_s: load.kv_read_tokens as f64 * m.kv_bytes_per_token() as f64 / bw,
            attention_compute_s: f_attn / flops,
        }
    }

    /// Time of one step with this load: the floor, then each engine addition.
    pub fn step_time(&self, load: &StepLoad, ov: &EngineOverheads) -> StepTime {
        if load.seqs == 0 {
            return StepTime::default();
        }
        let s = self.floor_sides(load);
        let allreduce_s = if self.tp > 1 {
            // Two all-reduces per layer (after attention and after the MLP) of the hidden
            // states; a ring moves 2(tp-1)/tp of the message over each link.
            let msg = load.new_tokens as f64
                * f64::from(self.model.hidden_size)
                * self.model.dtype_bytes() as f64;
            let tp = self.tp();
            let per_call = ALLREDUCE_LATENCY_S
                + 2.0 * (tp - 1.0) / tp * msg / (self.gpu.interconnect_gbps * 1e9);
            2.0 * f64::from(self.model.layers) * per_call
        } else {
            0.0
        };
        let (mm_c, mm_m) = (
            s.layers_compute_s + s.lm_head_compute_s,
            s.weights_s + s.activations_s,
        );
        let (at_c, at_m) = (s.attention_compute_s, s.kv_read_s);
        let mut t = StepTime {
            matmul_s: mm_c.max(mm_m),
            attention_s: at_c.max(at_m),
            allreduce_s,
            overlap_loss_s: self.gpu.overlap_loss * (mm_c.min(mm_m) + at_c.min(at_m)),
            kv_write_s: load.new_tokens as f64 * self.model.kv_bytes_per_token() as f64
                / self.bytes_per_s(),
            paged_attention_s: ov.paged_attention_fraction * s.kv_read_s,
            sampling_s: if load.sampled > 0 {
                ov.sampling_per_step_s + ov.sampling_per_seq_s * load.sampled as f64
            } else {
                0.0
            },
            ..StepTime::default()
        };
        let gpu_s = t.gpu_s();
        let hidden = |cpu: f64, overlapped: bool| {
            if overlapped {
                (cpu - gpu_s).max(0.0)
            } else {
                cpu
            }
        };
        t.schedule_s = hidden(
            ov.schedule_per_step_s + ov.schedule_per_seq_s * load.seqs as f64,
            ov.schedule_overlapped,
        );
        t.detokenize_s = hidden(
            ov.detokenize_per_seq_s * load.sampled as f64,
            ov.detokenize_overlapped,
        );
        t
    }

    /// The fastest this load could possibly run: datasheet peaks, no overhead, everything
    /// overlapped. Used by tests as an upper bound on throughput.
    pub fn roofline_bound_s(&self, load: &StepLoad) -> f64 {
        let (f_mm, f_attn) = self.flops(load);
        let (b_mm, b_kv) = self.bytes(load);
        let flops = self.gpu.dense_tflops * 1e12 * self.tp();
        let bw = self.gpu.bandwidth_gbps * 1e9 * self.tp();
        ((f_mm + f_attn) / flops).max((b_mm + b_kv) / bw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::catalog::Catalog;

    fn hw(gpu: &str, model: &str, tp: u32) -> Hardware {
        let c = Catalog::builtin();
        Hardware {
            gpu: c.gpu(gpu).unwrap().clone(),
            model: c.model(model).unwrap().clone(),
            tp,
        }
    }

    const NO_CPU: EngineOverheads = EngineOverheads::lump(0.0, 0.0);

    #[test]
    fn batch_one_decode_is_bound_by_streaming_the_weights() {
        let h = hw("A100-80GB", "meta-llama/Llama-3.1-8B", 1);
        let mut load = StepLoad::default();
        load.add(100, 1, true);
        let t = h.step_time(&load, &NO_CPU);
        let weights_s = h.model.weight_bytes() as f64 / (2039e9 * 0.81);
        assert!((t.matmul_s - weights_s).abs() / weights_s < 0.02, "{t:?}");
        assert!(t.attention_s < t.matmul_s / 100.0);
    }

    #[test]
    fn a_large_prefill_is_compute_bound() {
        let h = hw("A100-80GB", "meta-llama/Llama-3.1-8B", 1);
        let mut load = StepLoad::default();
        load.add(0, 4096, true);
        let (f_mm, _) = h.flops(&load);
        let t = h.step_time(&load, &NO_CPU);
        let (b_mm, _) = h.bytes(&load);
        let c = f_mm / (312e12 * 0.75);
        let m = b_mm / (2039e9 * 0.81);
        assert!(c > m);
        assert!((t.matmul_s - c).abs() < 1e-9);
        assert!((t.overlap_loss_s - h.gpu.overlap_loss * m).abs() < 1e-12);
    }

    #[test]
    fn the_knee_sits_between_100_and_300_tokens_on_an_a100() {
        // The reference puts the memory/compute knee near 128–256 tokens per step on A100.
        let h = hw("A100-80GB", "meta-llama/Llama-3.1-8B", 1);
        let knee = (1..2048u64)
            .find(|&n| {
                let mut load = StepLoad::default();
                load.add(0, n, true);
                let (f, _) = h.flops(&load);
                let (b, _) = h.bytes(&load);
                f / h.flops_per_s() > b / h.bytes_per_s()
            })
            .unwrap();
        assert!((100..300).contains(&knee), "knee at {knee}");
    }

    #[test]
    fn tensor_parallel_adds_allreduce_and_splits_the_work() {
        let one = hw("H100", "meta-llama/Llama-3.1-70B", 1);
        let four = hw("H100", "meta-llama/Llama-3.1-70B", 4);
        let mut load = StepLoad::default();
        for _ in 0..32 {
            load.add(500, 1, true);
        }
        let t1 = one.step_time(&load, &NO_CPU);
        let t4 = four.step_time(&load, &NO_CPU);
        assert_eq!(t1.allreduce_s, 0.0);
        assert!(t4.allreduce_s > 0.0);
        assert!(t4.total_s() < t1.total_s() / 2.0);
    }

    #[test]
    fn the_modelled_time_is_never_below_the_roofline_bound() {
        let h = hw("A10G", "facebook/opt-125m", 1);
        for (ctx, new, n) in [(0, 2048, 1), (200, 1, 64), (1000, 1, 1), (50, 300, 4)] {
            let mut load = StepLoad::default();
            for _ in 0..n {
                load.add(ctx, new, true);
            }
            assert!(h.step_time(&load, &NO_CPU).total_s() >= h.roofline_bound_s(&load));
        }
    }
}
