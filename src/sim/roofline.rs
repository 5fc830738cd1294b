//! How long one engine iteration takes on a GPU: a roofline over the step's FLOPs and bytes.
//!
//! A step runs two groups of kernels one after the other: the matrix products (attention
//! projections, MLP, LM head), which stream the weights once per step whatever the batch size, and
//! the attention itself, which streams each sequence's KV cache. Each group takes
//! `max(FLOPs / achievable FLOP/s, bytes / achievable bandwidth)`; the step adds both, the
//! tensor-parallel all-reduces and the engine's CPU overhead. Summing the two maxima instead of
//! taking one max over the whole step keeps a decode step's attention (memory-bound) from hiding
//! under its matrix products (compute-bound at large batches), as happens on the device.

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

/// The step's time split by cause, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTime {
    pub matmul_s: f64,
    pub attention_s: f64,
    pub allreduce_s: f64,
    pub overhead_s: f64,
}

impl StepTime {
    pub fn total_s(&self) -> f64 {
        self.matmul_s + self.attention_s + self.allreduce_s + self.overhead_s
    }

    /// Fraction of the step the GPU is busy (what `nvidia-smi` calls utilization).
    pub fn busy_fraction(&self) -> f64 {
        let t = self.total_s();
        if t > 0.0 {
            (self.matmul_s + self.attention_s + self.allreduce_s) / t
        } else {
            0.0
        }
    }
}

/// Per-step CPU costs of the engine (scheduling, input preparation, detokenizing and streaming).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuOverhead {
    /// Fixed cost of one iteration, seconds.
    pub per_step_s: f64,
    /// Cost per sequence in the batch, seconds.
    pub per_seq_s: f64,
}

/// One GPU type running one model at a tensor-parallel degree.
#[derive(Debug, Clone)]
pub struct Hardware {
    pub gpu: GpuSpec,
    pub model: ModelSpec,
    pub tp: u32,
}

/// How much of the smaller of a kernel group's compute and memory times fails to hide under
/// the larger: each group takes `max(c, m) + OVERLAP_LOSS × min(c, m)`. The ideal roofline is
/// 0; fitted to the calibration points (docs/simulator.md): 1.0, i.e. the two add. At batch 1
/// the compute term is negligible and decode stays bound by streaming the weights; near the knee,
/// where real kernels fall furthest below the roofline, the penalty is largest.
pub const OVERLAP_LOSS: f64 = 1.0;

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

    /// Bytes the matrix products and attention move for a load.
    pub fn bytes(&self, load: &StepLoad) -> (f64, f64) {
        let m = &self.model;
        let elem = m.dtype_bytes() as f64;
        // Activations written and read around each operator of each layer: an assumption of
        // about 8 hidden-sized and 4 intermediate-sized vectors per token per layer.
        let act_per_token = f64::from(m.layers)
            * (8.0 * f64::from(m.hidden_size) + 4.0 * f64::from(m.intermediate_size))
            * elem;
        let matmul = m.weight_bytes() as f64 + load.new_tokens as f64 * act_per_token;
        let kv = (load.kv_read_tokens + load.new_tokens) as f64 * m.kv_bytes_per_token() as f64;
        (matmul, kv)
    }

    /// Time of one step with this load.
    pub fn step_time(&self, load: &StepLoad, cpu: &CpuOverhead) -> StepTime {
        if load.seqs == 0 {
            return StepTime::default();
        }
        let (f_mm, f_attn) = self.flops(load);
        let (b_mm, b_kv) = self.bytes(load);
        let flops = self.flops_per_s();
        let bw = self.bytes_per_s();
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
        let soft = |c: f64, m: f64| c.max(m) + OVERLAP_LOSS * c.min(m);
        StepTime {
            matmul_s: soft(f_mm / flops, b_mm / bw),
            attention_s: soft(f_attn / flops, b_kv / bw),
            allreduce_s,
            overhead_s: cpu.per_step_s + cpu.per_seq_s * load.seqs as f64,
        }
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

    const NO_CPU: CpuOverhead = CpuOverhead {
        per_step_s: 0.0,
        per_seq_s: 0.0,
    };

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
        assert!((t.matmul_s - (c + OVERLAP_LOSS * m)).abs() < 1e-9);
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
