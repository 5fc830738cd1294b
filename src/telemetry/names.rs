//! Every metric name telemetry understands, in one place, with where it comes from.
//!
//! Checked against the engines' sources: vLLM `vllm/v1/metrics/loggers.py` (v1 engine; the
//! older names are the v0 engine's `vllm/engine/metrics.py`), SGLang
//! `python/sglang/srt/metrics/collector.py`, and NVIDIA dcgm-exporter's default counters
//! (`etc/default-counters.csv`). Counters are matched with their exposition suffix `_total`.

// ---- vLLM ----------------------------------------------------------------------------------

/// Gauge: requests in the running batch.
pub const VLLM_RUNNING: &str = "vllm:num_requests_running";
/// Gauge: requests waiting to be scheduled.
pub const VLLM_WAITING: &str = "vllm:num_requests_waiting";
/// Gauge, 0–1: fraction of KV-cache blocks in use (v1 engine, vLLM ≥ 0.8).
pub const VLLM_KV_USAGE: &str = "vllm:kv_cache_usage_perc";
/// Gauge, 0–1: the same under its v0 name (deprecated in v1, still emitted by some versions).
pub const VLLM_KV_USAGE_V0: &str = "vllm:gpu_cache_usage_perc";
/// Counter: prefix-cache hits, in tokens (v1).
pub const VLLM_PREFIX_HITS: &str = "vllm:prefix_cache_hits_total";
/// Counter: prefix-cache queries, in tokens (v1).
pub const VLLM_PREFIX_QUERIES: &str = "vllm:prefix_cache_queries_total";
/// Counter: the same hits under the transitional `gpu_` name (deprecated).
pub const VLLM_PREFIX_HITS_GPU: &str = "vllm:gpu_prefix_cache_hits_total";
/// Counter: the same queries under the transitional `gpu_` name (deprecated).
pub const VLLM_PREFIX_QUERIES_GPU: &str = "vllm:gpu_prefix_cache_queries_total";
/// Gauge, 0–1: the v0 engine's prefix-cache hit rate.
pub const VLLM_PREFIX_HIT_RATE_V0: &str = "vllm:gpu_prefix_cache_hit_rate";
/// Counter: prompt (prefill) tokens processed.
pub const VLLM_PROMPT_TOKENS: &str = "vllm:prompt_tokens_total";
/// Counter: generated tokens.
pub const VLLM_GENERATION_TOKENS: &str = "vllm:generation_tokens_total";
/// Histogram: time to first token, seconds (kept raw).
pub const VLLM_TTFT_SECONDS: &str = "vllm:time_to_first_token_seconds";

// ---- SGLang --------------------------------------------------------------------------------

/// Gauge: requests in the running batch.
pub const SGLANG_RUNNING: &str = "sglang:num_running_reqs";
/// Gauge: requests in the waiting queue.
pub const SGLANG_WAITING: &str = "sglang:num_queue_reqs";
/// Gauge, 0–1: KV-cache token usage.
pub const SGLANG_TOKEN_USAGE: &str = "sglang:token_usage";
/// Gauge, 0–1: the radix-cache hit rate of the *last prefill batch* (hit tokens over the
/// batch's prompt tokens, set in `log_prefill_stats`), not a cumulative rate: read only when
/// the counters below are missing (SGLang before `cached_tokens_total`).
pub const SGLANG_CACHE_HIT_RATE: &str = "sglang:cache_hit_rate";
/// Counter: prompt tokens served from the cache, labelled `cache_source` (device/host/storage);
/// over `sglang:prompt_tokens_total` it is the hit rate of a window.
pub const SGLANG_CACHED_TOKENS: &str = "sglang:cached_tokens_total";
/// Gauge: generation throughput, tokens/s.
pub const SGLANG_GEN_THROUGHPUT: &str = "sglang:gen_throughput";
/// Counter: prompt tokens.
pub const SGLANG_PROMPT_TOKENS: &str = "sglang:prompt_tokens_total";
/// Counter: generated tokens.
pub const SGLANG_GENERATION_TOKENS: &str = "sglang:generation_tokens_total";

// ---- NVIDIA DCGM exporter ------------------------------------------------------------------

/// Gauge, %: GPU utilization. Labelled `gpu="<index>"`, `UUID`, `modelName`, `Hostname`, ….
pub const DCGM_GPU_UTIL: &str = "DCGM_FI_DEV_GPU_UTIL";
/// Gauge, MiB: framebuffer memory used.
pub const DCGM_FB_USED_MIB: &str = "DCGM_FI_DEV_FB_USED";
/// Gauge, MiB: framebuffer memory free.
pub const DCGM_FB_FREE_MIB: &str = "DCGM_FI_DEV_FB_FREE";
/// Gauge, W: board power draw (DCGM field 155).
pub const DCGM_POWER_W: &str = "DCGM_FI_DEV_POWER_USAGE";
/// Counter, mJ: energy since the driver was loaded (field 156; Volta and newer). The exporter
/// types it a counter but names it without `_total`.
pub const DCGM_TOTAL_ENERGY_MJ: &str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION";
/// Gauge, MHz: SM clock (field 100).
pub const DCGM_SM_CLOCK_MHZ: &str = "DCGM_FI_DEV_SM_CLOCK";
/// Gauge, MHz: memory clock (field 101).
pub const DCGM_MEM_CLOCK_MHZ: &str = "DCGM_FI_DEV_MEM_CLOCK";
/// Gauge, °C: GPU die temperature (field 150).
pub const DCGM_GPU_TEMP_C: &str = "DCGM_FI_DEV_GPU_TEMP";
/// Bitmask: why clocks are below their maximum (field 112), NVML's
/// `nvmlClocksEventReason*` bits. DCGM 3.3 renamed it `..._CLOCKS_EVENT_REASONS`; older
/// exporters emit `..._CLOCK_THROTTLE_REASONS`. Either is read.
pub const DCGM_CLOCKS_EVENT_REASONS: &str = "DCGM_FI_DEV_CLOCKS_EVENT_REASONS";
/// The pre-3.3 name of [`DCGM_CLOCKS_EVENT_REASONS`].
pub const DCGM_CLOCK_THROTTLE_REASONS: &str = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS";
/// The label holding the device index.
pub const DCGM_LABEL_GPU: &str = "gpu";
/// The label holding the device's name (`NVIDIA A10G`).
pub const DCGM_LABEL_MODEL: &str = "modelName";
/// The label holding the driver version, when the exporter adds it.
pub const DCGM_LABEL_DRIVER: &str = "DCGM_FI_DRIVER_VERSION";
/// DCGM reports memory in MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

// ---- servebench's simulator ----------------------------------------------------------------
// Provisional: to be confirmed with the simulator's owner. Change them here only.

/// Gauge, %: the simulated GPU's utilization. An optional `gpu` label names the device.
pub const SIM_GPU_UTIL_PCT: &str = "servebench_sim_gpu_utilization_percent";
/// Gauge, bytes: the simulated GPU's memory in use (weights + KV cache + activations).
pub const SIM_GPU_MEM_USED_BYTES: &str = "servebench_sim_gpu_memory_used_bytes";

/// DCGM reports energy in millijoules.
pub const MJ_PER_J: f64 = 1000.0;

/// The label normalized GPU series carry: the device index.
pub const LABEL_GPU: &str = "gpu";
