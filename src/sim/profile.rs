//! Engine profiles: the scheduling and memory mechanisms of vLLM and SGLang, with their defaults.
//!
//! A profile is a set of mechanisms and limits, not a speed factor. Each default below names where
//! it comes from in the engine's code; the only fitted numbers are the CPU overheads
//! ([`CpuOverhead`]), calibrated in `docs/simulator.md`.

use super::catalog::{GpuSpec, ModelSpec};
use super::roofline::CpuOverhead;
use serde::{Deserialize, Serialize};

/// Which engine's mechanisms a profile follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Vllm,
    Sglang,
}

impl EngineKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EngineKind::Vllm => "vllm",
            EngineKind::Sglang => "sglang",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "vllm" => Ok(EngineKind::Vllm),
            "sglang" => Ok(EngineKind::Sglang),
            other => Err(format!(
                "unknown engine {other:?}; the simulator knows: vllm, sglang"
            )),
        }
    }
}

/// The order in which waiting requests are considered for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulePolicy {
    /// First come, first served.
    Fcfs,
    /// SGLang's longest-prefix-match: waiting requests with the longest cached prefix first.
    LongestPrefixMatch,
}

/// How a step's batch is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// vLLM V1: running requests first (decodes and unfinished prefill chunks), then waiting
    /// ones, all in one step under the token budget (chunked prefill).
    Mixed,
    /// vLLM V0 without chunked prefill: a step is either all prefills (when any waiting request
    /// fits) or all decodes.
    PrefillFirst,
    /// SGLang: a prefill ("extend") batch whenever one can be formed, else a decode batch;
    /// admission reserves room for the running requests' future tokens (`new_token_ratio`).
    SglangPrefillFirst,
}

/// Everything that shapes an engine's behaviour in the simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineProfile {
    pub engine: EngineKind,
    /// A label for reports (e.g. "vllm (v1 defaults)").
    pub label: String,
    /// Tokens per KV block (vLLM `block_size`; SGLang `page_size`).
    pub block_size: u32,
    /// Fraction of GPU memory the engine may use (vLLM `gpu_memory_utilization`; SGLang
    /// `mem_fraction_static`).
    pub memory_fraction: f64,
    /// Most requests running at once (vLLM `max_num_seqs`; SGLang `max_running_requests`,
    /// 0 = derived from the KV pool as SGLang does).
    pub max_running: u32,
    /// Tokens per step (vLLM `max_num_batched_tokens`; SGLang `chunked_prefill_size`).
    pub max_batched_tokens: u32,
    /// SGLang `max_prefill_tokens` (vLLM: same as `max_batched_tokens`).
    pub max_prefill_tokens: u32,
    pub chunked_prefill: bool,
    pub batch_mode: BatchMode,
    /// vLLM automatic prefix caching; SGLang radix cache.
    pub prefix_caching: bool,
    pub schedule_policy: SchedulePolicy,
    /// Decode steps run per scheduling round (vLLM 0.6 `--num-scheduler-steps`).
    pub scheduler_steps: u32,
    /// Longest sequence accepted; `None` = the model's context (capped at the KV capacity).
    pub max_model_len: Option<u32>,
    pub cpu: CpuOverhead,
}

/// CPU overhead of vLLM's engine loop (scheduling, input preparation, sampling, detokenizing
/// and streaming), fitted to the calibration points (docs/simulator.md).
pub const VLLM_CPU: CpuOverhead = CpuOverhead {
    per_step_s: 3.0e-3,
    per_seq_s: 20e-6,
};

/// CPU overhead of SGLang's engine loop, fitted to the calibration points (docs/simulator.md).
pub const SGLANG_CPU: CpuOverhead = CpuOverhead {
    per_step_s: 2.0e-3,
    per_seq_s: 15e-6,
};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl EngineProfile {
    /// vLLM's defaults for the OpenAI-compatible server (V1 engine):
    /// - `block_size` 16 (`CacheConfig`, CUDA);
    /// - `gpu_memory_utilization` 0.9 (`CacheConfig`);
    /// - `max_num_batched_tokens` 2048 and `max_num_seqs` 256, or 8192 and 1024 on GPUs with at
    ///   least 70 GiB that are not A100s (`EngineArgs.get_batch_defaults` in
    ///   `vllm/engine/arg_utils.py`, usage context `OPENAI_API_SERVER`);
    /// - chunked prefill and prefix caching on (V1 defaults); preemption by recompute, newest
    ///   running request first (`vllm/v1/core/sched/scheduler.py`: `self.running.pop()`).
    pub fn vllm(gpu: &GpuSpec) -> EngineProfile {
        let big = gpu.memory_gib >= 70.0 && !gpu.name.to_ascii_lowercase().contains("a100");
        let (tokens, seqs) = if big { (8192, 1024) } else { (2048, 256) };
        EngineProfile {
            engine: EngineKind::Vllm,
            label: "vllm (v1 defaults)".into(),
            block_size: 16,
            memory_fraction: 0.9,
            max_running: seqs,
            max_batched_tokens: tokens,
            max_prefill_tokens: tokens,
            chunked_prefill: true,
            batch_mode: BatchMode::Mixed,
            prefix_caching: true,
            schedule_policy: SchedulePolicy::Fcfs,
            scheduler_steps: 1,
            max_model_len: None,
            cpu: VLLM_CPU,
        }
    }

    /// SGLang's defaults (`python/sglang/srt/server_args.py`):
    /// - `mem_fraction_static` 0.88 at TP 1, 0.87 at TP 2, 0.85 at TP 4, 0.81 at TP 8 (the
    ///   v0.3–v0.4 rule; newer releases derive it from a reserved-memory table to similar values);
    /// - `chunked_prefill_size` 2048 below 35 GiB, 8192 below 160 GiB, else 16384;
    /// - `max_prefill_tokens` 16384; `page_size` 1; radix cache on;
    /// - `schedule_policy` "lpm" (the default through v0.4; newer releases default to "fcfs"),
    ///   which falls back to FCFS when more than 128 requests wait (`schedule_policy.py`);
    /// - `max_running_requests` = min(pool tokens / 2, clamp(pool / context × 512, 2048, 4096))
    ///   (`model_runner.py`, `scheduler.py`).
    pub fn sglang(gpu: &GpuSpec, tp: u32) -> EngineProfile {
        let mem_frac = match tp {
            0 | 1 => 0.88,
            2..=3 => 0.87,
            4..=7 => 0.85,
            8..=15 => 0.81,
            _ => 0.79,
        };
        let chunk = if gpu.memory_gib < 35.0 {
            2048
        } else if gpu.memory_gib < 160.0 {
            8192
        } else {
            16384
        };
        EngineProfile {
            engine: EngineKind::Sglang,
            label: "sglang (defaults)".into(),
            block_size: 1,
            memory_fraction: mem_frac,
            max_running: 0,
            max_batched_tokens: chunk,
            max_prefill_tokens: 16384,
            chunked_prefill: true,
            batch_mode: BatchMode::SglangPrefillFirst,
            prefix_caching: true,
            schedule_policy: SchedulePolicy::LongestPrefixMatch,
            scheduler_steps: 1,
            max_model_len: None,
            cpu: SGLANG_CPU,
        }
    }

    /// The default profile of an engine on a GPU.
    pub fn for_engine(engine: EngineKind, gpu: &GpuSpec, tp: u32) -> EngineProfile {
        match engine {
            EngineKind::Vllm => EngineProfile::vllm(gpu),
            EngineKind::Sglang => EngineProfile::sglang(gpu, tp),
        }
    }

    /// Memory (bytes, per GPU) vLLM keeps out of the KV cache besides the weights: the peak
    /// activations of its profiling forward pass (`max_batched_tokens` tokens), the sampler's
    /// fp32 logits for `max_running` sequences, and ~0.5 GiB of CUDA context, graphs and NCCL
    /// buffers. An estimate; SGLang keeps all of this inside `1 - mem_fraction_static`.
    pub fn activation_reserve_bytes(&self, model: &ModelSpec, tp: u32) -> f64 {
        match self.engine {
            EngineKind::Sglang => 0.0,
            EngineKind::Vllm => {
                let tp = f64::from(tp.max(1));
                let elem = model.dtype_bytes() as f64;
                let act = f64::from(self.max_batched_tokens)
                    * (4.0 * f64::from(model.hidden_size)
                        + 2.0 * f64::from(model.intermediate_size) / tp)
                    * elem;
                let logits = f64::from(self.max_running) * f64::from(model.vocab_size) * 8.0;
                act + logits + 0.5 * GIB
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::catalog::Catalog;

    #[test]
    fn vllm_batch_defaults_follow_the_gpu() {
        let c = Catalog::builtin();
        let a10 = EngineProfile::vllm(c.gpu("a10g").unwrap());
        assert_eq!((a10.max_batched_tokens, a10.max_running), (2048, 256));
        let a100 = EngineProfile::vllm(c.gpu("a100-80gb").unwrap());
        assert_eq!((a100.max_batched_tokens, a100.max_running), (2048, 256));
        let h100 = EngineProfile::vllm(c.gpu("h100").unwrap());
        assert_eq!((h100.max_batched_tokens, h100.max_running), (8192, 1024));
        assert_eq!(a10.block_size, 16);
    }

    #[test]
    fn sglang_defaults_follow_memory_and_tp() {
        let c = Catalog::builtin();
        let a10 = EngineProfile::sglang(c.gpu("a10g").unwrap(), 1);
        assert_eq!(a10.max_batched_tokens, 2048);
        assert_eq!(a10.memory_fraction, 0.88);
        let h100 = EngineProfile::sglang(c.gpu("h100").unwrap(), 4);
        assert_eq!(h100.max_batched_tokens, 8192);
        assert_eq!(h100.memory_fraction, 0.85);
        assert_eq!(h100.schedule_policy, SchedulePolicy::LongestPrefixMatch);
    }

    #[test]
    fn engine_names_parse() {
        assert_eq!("vLLM".parse::<EngineKind>().unwrap(), EngineKind::Vllm);
        let err = "tgi".parse::<EngineKind>().unwrap_err();
        assert!(err.contains("vllm, sglang"));
    }
}
