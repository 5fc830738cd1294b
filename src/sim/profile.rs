//! Engine profiles: the scheduling and memory mechanisms of vLLM and SGLang, with their defaults.
//!
//! A profile is a set of mechanisms and limits, not a speed factor. Each default below names where
//! it comes from in the engine's code. What an engine adds to the GPU floor per step is a set of
//! named terms ([`EngineOverheads`]), each with its source or marked as an assumption
//! (`docs/simulator.md`).

use super::catalog::{GpuSpec, ModelSpec};
use super::roofline::EngineOverheads;
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
    /// What the engine adds to the GPU floor each step, by mechanism.
    pub overheads: EngineOverheads,
    /// What a structured-output (grammar-constrained) request costs.
    #[serde(default = "StructuredCost::xgrammar")]
    pub structured: StructuredCost,
}

/// The cost model of grammar-constrained decoding (both engines default to XGrammar).
/// Numbers are assumptions drawn from public sources (docs/simulator.md, "Structured output").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructuredCost {
    /// Compiling a schema's or regex's grammar, once per distinct constraint (engines cache
    /// compiled grammars): requests of a new constraint wait this long before they may be
    /// scheduled, as vLLM and SGLang hold them while compiling in the background.
    pub compile_s: f64,
    /// Filling one constrained sequence's token mask, per step in which it samples.
    pub mask_per_seq_s: f64,
    /// The mask is filled while the GPU runs the step (SGLang's overlap scheduler), so only
    /// the part longer than the GPU's work adds to the step; otherwise (vLLM) it adds in full.
    pub overlapped: bool,
}

impl StructuredCost {
    /// XGrammar without overlap: vLLM's default backend.
    pub fn xgrammar() -> StructuredCost {
        StructuredCost {
            compile_s: 0.05,
            mask_per_seq_s: 40e-6,
            overlapped: false,
        }
    }

    /// XGrammar with the mask filled during the GPU step: SGLang's default.
    pub fn xgrammar_overlapped() -> StructuredCost {
        StructuredCost {
            overlapped: true,
            ..StructuredCost::xgrammar()
        }
    }
}

/// What vLLM's current engine (V1, 0.10) adds to the GPU floor per step, by mechanism.
/// - Scheduling and batch preparation: 1 ms per step + 5 µs per sequence, **not overlapped**
///   (`--async-scheduling`, which overlaps it, is opt-in in 0.10). An assumption: V1's
///   persistent batch updates only what changed between steps (vLLM V1 blog, Jan 2025); the
///   reference's measured H200 floor leaves room for 1.3–1.9× real decode steps, and this is the
///   part a CUDA-graph floor cannot contain.
/// - Sampling and logits processing: 0.15 ms per step + 1 µs per sampled sequence (GPU: the
///   fp32 logits, temperature/top-k/top-p kernels of `vllm/v1/sample/sampler.py`). An assumption.
/// - Detokenization and streaming: 10 µs per sampled sequence, **overlapped**: V1 detokenizes
///   in the API-server process (`vllm/v1/engine/output_processor.py`) while the engine core
///   runs the next step. An assumption for the per-token incremental detokenize cost.
/// - Paged-attention gather: 10 % of the KV-read time. An assumption: the PagedAttention paper
///   measured its first paged kernel 20–26 % slower than a contiguous one (Kwon et al., SOSP
///   2023, §7.4 / Fig. 18a); today's paged FlashAttention kernels close most of that gap.
/// - KV write: modelled from bytes in the roofline (`reshape_and_cache`).
pub const VLLM_OVERHEADS: EngineOverheads = EngineOverheads {
    schedule_per_step_s: 1.0e-3,
    schedule_per_seq_s: 5e-6,
    schedule_overlapped: false,
    sampling_per_step_s: 0.15e-3,
    sampling_per_seq_s: 1e-6,
    detokenize_per_seq_s: 10e-6,
    detokenize_overlapped: true,
    paged_attention_fraction: 0.10,
};

/// What SGLang adds to the GPU floor per step. The totals are the earlier lump (2 ms per step +
/// 15 µs per sequence, checked by calibration point 1), now split by mechanism; SGLang 0.3 ran
/// its scheduler inline (the overlap scheduler came with 0.4), so scheduling is not overlapped
/// here; engine versions are a separate profile matter.
/// - Scheduling and batch preparation: 1.75 ms + 5 µs per sequence (assumption: the lump less
///   the terms below).
/// - Sampling: 0.25 ms per step (assumption; SGLang samples with FlashInfer kernels).
/// - Detokenization: 10 µs per sampled sequence, not overlapped in the lump it replaces
///   (SGLang's `DetokenizerManager` is a separate process; the lump was fitted with it inline).
/// - Paged-attention gather: 0 (token-granular pages; FlashInfer's paged kernels; inside the
///   A100's fitted overlap loss in the calibration).
pub const SGLANG_OVERHEADS: EngineOverheads = EngineOverheads {
    schedule_per_step_s: 1.75e-3,
    schedule_per_seq_s: 5e-6,
    schedule_overlapped: false,
    sampling_per_step_s: 0.25e-3,
    sampling_per_seq_s: 0.0,
    detokenize_per_seq_s: 10e-6,
    detokenize_overlapped: false,
    paged_attention_fraction: 0.0,
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
            overheads: VLLM_OVERHEADS,
            structured: StructuredCost::xgrammar(),
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
            overheads: SGLANG_OVERHEADS,
            structured: StructuredCost::xgrammar_overlapped(),
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

/// The engine flags [`EngineProfile::apply_option`] understands, vLLM and SGLang spellings.
pub const OPTION_NAMES: &[&str] = &[
    "max_num_seqs",
    "max_running_requests",
    "max_num_batched_tokens",
    "chunked_prefill_size",
    "max_prefill_tokens",
    "gpu_memory_utilization",
    "mem_fraction_static",
    "block_size",
    "page_size",
    "enable_prefix_caching",
    "disable_radix_cache",
    "enable_chunked_prefill",
    "schedule_policy",
    "num_scheduler_steps",
    "max_model_len",
    "context_length",
];

/// A value given for an engine flag, from a TOML file or the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl OptionValue {
    fn as_u32(&self, name: &str) -> Result<u32, String> {
        match self {
            OptionValue::Int(i) if *i > 0 && *i <= i64::from(u32::MAX) => Ok(*i as u32),
            OptionValue::Str(s) => s
                .parse::<u32>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("{name} must be a positive integer, not {s:?}")),
            other => Err(format!("{name} must be a positive integer, not {other:?}")),
        }
    }

    fn as_fraction(&self, name: &str) -> Result<f64, String> {
        let v = match self {
            OptionValue::Float(f) => *f,
            OptionValue::Int(i) => *i as f64,
            OptionValue::Str(s) => s
                .parse::<f64>()
                .map_err(|_| format!("{name} must be a number in (0, 1], not {s:?}"))?,
            OptionValue::Bool(b) => return Err(format!("{name} must be a number, not {b}")),
        };
        if v > 0.0 && v <= 1.0 {
            Ok(v)
        } else {
            Err(format!("{name} must lie in (0, 1], not {v}"))
        }
    }

    fn as_bool(&self, name: &str) -> Result<bool, String> {
        match self {
            OptionValue::Bool(b) => Ok(*b),
            OptionValue::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(format!("{name} must be true or false, not {s:?}")),
            },
            other => Err(format!("{name} must be true or false, not {other:?}")),
        }
    }
}

impl From<&toml::Value> for OptionValue {
    fn from(v: &toml::Value) -> Self {
        match v {
            toml::Value::Integer(i) => OptionValue::Int(*i),
            toml::Value::Float(f) => OptionValue::Float(*f),
            toml::Value::Boolean(b) => OptionValue::Bool(*b),
            toml::Value::String(s) => OptionValue::Str(s.clone()),
            other => OptionValue::Str(other.to_string()),
        }
    }
}

impl EngineProfile {
    /// Set one engine flag by its vLLM or SGLang name (`-` or `_`). The error names the flag
    /// and, for an unknown one, lists those understood.
    pub fn apply_option(&mut self, name: &str, value: &OptionValue) -> Result<(), String> {
        let key = name.trim_start_matches('-').replace('-', "_");
        match key.as_str() {
            "max_num_seqs" | "max_running_requests" => self.max_running = value.as_u32(&key)?,
            "max_num_batched_tokens" | "chunked_prefill_size" => {
                self.max_batched_tokens = value.as_u32(&key)?;
                if self.engine == EngineKind::Vllm {
                    self.max_prefill_tokens = self.max_batched_tokens;
                }
            }
            "max_prefill_tokens" => self.max_prefill_tokens = value.as_u32(&key)?,
            "gpu_memory_utilization" | "mem_fraction_static" => {
                self.memory_fraction = value.as_fraction(&key)?
            }
            "block_size" | "page_size" => self.block_size = value.as_u32(&key)?,
            "enable_prefix_caching" => self.prefix_caching = value.as_bool(&key)?,
            "disable_radix_cache" => self.prefix_caching = !value.as_bool(&key)?,
            "enable_chunked_prefill" => {
                self.chunked_prefill = value.as_bool(&key)?;
                if self.engine == EngineKind::Vllm {
                    self.batch_mode = if self.chunked_prefill {
                        BatchMode::Mixed
                    } else {
                        BatchMode::PrefillFirst
                    };
                }
            }
            "schedule_policy" => {
                self.schedule_policy = match value {
                    OptionValue::Str(s) if s.eq_ignore_ascii_case("lpm") => {
                        SchedulePolicy::LongestPrefixMatch
                    }
                    OptionValue::Str(s) if s.eq_ignore_ascii_case("fcfs") => SchedulePolicy::Fcfs,
                    other => {
                        return Err(format!(
                            "schedule_policy must be \"lpm\" or \"fcfs\", not {other:?}"
                        ))
                    }
                }
            }
            "num_scheduler_steps" => {
                self.scheduler_steps = value.as_u32(&key)?;
                if self.scheduler_steps > 1 && self.engine == EngineKind::Vllm {
                    // Multi-step scheduling ran only with the V0 prefill-first scheduler.
                    self.batch_mode = BatchMode::PrefillFirst;
                    self.chunked_prefill = false;
                }
            }
            "max_model_len" | "context_length" => self.max_model_len = Some(value.as_u32(&key)?),
            _ => {
                return Err(format!(
                    "unknown engine option {name:?}; the simulator understands: {}",
                    OPTION_NAMES.join(", ")
                ))
            }
        }
        Ok(())
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
    fn options_set_mechanisms_by_either_engines_name() {
        let c = Catalog::builtin();
        let mut p = EngineProfile::vllm(c.gpu("a10g").unwrap());
        p.apply_option("--max-num-seqs", &OptionValue::Int(64))
            .unwrap();
        p.apply_option("gpu_memory_utilization", &OptionValue::Float(0.8))
            .unwrap();
        p.apply_option("enable_prefix_caching", &OptionValue::Bool(false))
            .unwrap();
        p.apply_option("num_scheduler_steps", &OptionValue::Int(10))
            .unwrap();
        assert_eq!(p.max_running, 64);
        assert_eq!(p.memory_fraction, 0.8);
        assert!(!p.prefix_caching);
        assert_eq!(p.batch_mode, BatchMode::PrefillFirst);
        let mut s = EngineProfile::sglang(c.gpu("a10g").unwrap(), 1);
        s.apply_option("schedule-policy", &OptionValue::Str("fcfs".into()))
            .unwrap();
        s.apply_option("disable_radix_cache", &OptionValue::Str("true".into()))
            .unwrap();
        assert_eq!(s.schedule_policy, SchedulePolicy::Fcfs);
        assert!(!s.prefix_caching);
        let err = s
            .apply_option("max_num_sqes", &OptionValue::Int(1))
            .unwrap_err();
        assert!(err.contains("max_num_seqs"), "{err}");
        let err = s
            .apply_option("mem_fraction_static", &OptionValue::Float(1.5))
            .unwrap_err();
        assert!(err.contains("(0, 1]"), "{err}");
    }

    #[test]
    fn engine_names_parse() {
        assert_eq!("vLLM".parse::<EngineKind>().unwrap(), EngineKind::Vllm);
        let err = "tgi".parse::<EngineKind>().unwrap_err();
        assert!(err.contains("vllm, sglang"));
    }
}
