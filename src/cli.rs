//! The raw command line: clap types and help text only. Defaults that need judgement and every
//! cross-flag rule live in `config`, which turns these into validated, typed values.
//!
//! Flag names follow `vllm bench serve` where it has one, so a user can move a command line
//! between the two. Where we differ, the help says so.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "servebench",
    version,
    about = "Benchmark LLM serving engines: honest load, exact metrics, cost and reports",
    long_about = "Benchmark LLM serving engines (vLLM, SGLang, any OpenAI-compatible server).\n\n\
Without --base-url, `servebench run` starts servebench's embedded OpenAI-compatible server on \
127.0.0.1 and measures that, so every command works on a machine with no GPU."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one benchmark against a server (like `vllm bench serve`).
    Run(Box<RunArgs>),
    /// Serve the embedded OpenAI-compatible test server (fixed timing, fault injection).
    Serve(ServeArgs),
    /// Measure this machine's client ceiling against the embedded server over loopback.
    Calibrate(CalibrateArgs),
    /// Rebuild a run's summary from its journal (for example after a crash).
    Report(ReportArgs),
    /// The serving-engine simulator (vLLM or SGLang on a catalog GPU).
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Predict a benchmark on the simulator in virtual time (same flags as `run`).
    Predict(Box<PredictArgs>),
    /// Run a study (targets × workloads) from a TOML file and write its report. Without a
    /// file: configs/quickstart.toml, the seed study on the simulator.
    Suite(SuiteArgs),
    /// Run one deployment at several loads: `sweep --concurrency 1,2,4,8 -- <run flags>`.
    /// With `--dataset-name multi-turn` the concurrency counts conversations at once and a
    /// rate is conversation starts per second.
    Sweep(SweepArgs),
    /// Find the highest request rate whose goodput meets a target:
    /// `capacity --target 0.95 -- <run flags with --goodput ...>`. With `--dataset-name
    /// multi-turn` the rate is conversation starts per second.
    Capacity(CapacityArgs),
    /// Compare two result files and mark the differences larger than the noise.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline result JSON.
    pub a: PathBuf,
    /// The result JSON compared with it.
    pub b: PathBuf,
    /// Relative band within which throughput differences count as noise (single runs have no
    /// spread of their own; set it from repeated runs).
    #[arg(long, default_value_t = 0.05)]
    pub throughput_noise: f64,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Closed-loop concurrencies to run, e.g. 1,2,4,8,16 (conversations at once for a
    /// multi-turn workload).
    #[arg(long)]
    pub concurrency: Option<String>,
    /// Open-loop request rates to run, e.g. 1,2,4,8 (conversation starts per second for a
    /// multi-turn workload).
    #[arg(long)]
    pub rates: Option<String>,
    /// `servebench run` flags for every point (after `--`).
    #[arg(last = true)]
    pub run_args: Vec<String>,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct CapacityArgs {
    /// Fraction of requests that must succeed and meet every --goodput objective.
    #[arg(long, default_value_t = 0.95)]
    pub target: f64,
    /// First rate tried (requests/s; conversation starts/s for a multi-turn workload); the
    /// search doubles it until the target is missed.
    #[arg(long, default_value_t = 1.0)]
    pub start_rate: f64,
    /// Stop when the bracket (highest met, lowest missed) is this tight, relative.
    #[arg(long, default_value_t = 0.1)]
    pub tolerance: f64,
    /// At most this many probes.
    #[arg(long, default_value_t = 14)]
    pub max_probes: usize,
    /// Each probe sends rate × this many seconds of requests (of conversations, each counted
    /// as its mean turns, for a multi-turn workload)…
    #[arg(long, default_value_t = 15.0)]
    pub seconds_per_point: f64,
    /// …and at least this many.
    #[arg(long, default_value_t = 50)]
    pub min_requests: u64,
    /// Price the capacity with this catalog instance (e.g. g5.xlarge).
    #[arg(long)]
    pub instance: Option<String>,
    /// `servebench run` flags for every probe (after `--`), including --goodput.
    #[arg(last = true)]
    pub run_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// The suite file (default: configs/quickstart.toml).
    pub config: Option<PathBuf>,
    /// Rerun cells whose result file already exists (by default they are kept, so an
    /// interrupted study resumes where it stopped).
    #[arg(long)]
    pub force: bool,
    /// Write results here instead of the file's result_dir.
    #[arg(long)]
    pub result_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the simulated engine's OpenAI-compatible API in real time (measure it with `run`).
    Serve(SimServeArgs),
}

/// Which simulated engine, GPU and model.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Simulated target")]
pub struct SimTargetArgs {
    /// Engine profile: vllm or sglang.
    #[arg(long, default_value = "vllm")]
    pub engine: String,
    /// GPU from the catalog (e.g. a10g, t4, l4, a100-80gb, h100-sxm).
    #[arg(long, default_value = "a10g")]
    pub gpu: String,
    /// Model from the catalog (e.g. facebook/opt-125m, meta-llama/Llama-3.1-8B).
    #[arg(long = "sim-model", default_value = "facebook/opt-125m")]
    pub sim_model: String,
    /// Tensor-parallel degree (GPUs per replica).
    #[arg(long, default_value_t = 1)]
    pub tp: u32,
    /// A TOML file of catalog entries that add to or replace the built-in GPUs, models and
    /// instances.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SimServeArgs {
    #[command(flatten)]
    pub target: SimTargetArgs,
    /// Port on 127.0.0.1 (0 = any free port; the URL is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Model name the server answers to (default: the catalog model's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    #[command(flatten)]
    pub reasoning: ReasoningArgs,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct PredictArgs {
    #[command(flatten)]
    pub target: SimTargetArgs,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub metrics: MetricArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Print one representative decode step and one prefill step split into the floor (what
    /// the GPU must do) and each engine term, in ms and % of the step (always in the result
    /// JSON as `config.step_breakdown`).
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub metrics: MetricArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Warmup requests before measuring (marked in the journal, left out of summaries); with
    /// `--dataset-name multi-turn`, whole warmup conversations.
    #[arg(long, default_value_t = 0, help_heading = "Load")]
    pub num_warmups: u64,
    /// Run the benchmark this many times (seed, seed+1, …) and report each figure's mean
    /// with a 95 % confidence interval over the repeats.
    #[arg(long, default_value_t = 1, help_heading = "Load")]
    pub repeats: u32,
    /// Tokio worker threads for the client (default: one per core).
    #[arg(long, help_heading = "Load")]
    pub client_threads: Option<usize>,
    /// Server to benchmark, e.g. http://127.0.0.1:8000. Without it (and without --host or
    /// --port), the embedded server is started on a free loopback port and measured.
    #[arg(long, help_heading = "Target")]
    pub base_url: Option<String>,
    /// Server host, as `vllm bench serve`: with --port, the server is http://HOST:PORT
    /// (default 127.0.0.1 when only --port is given). Cannot go with --base-url.
    #[arg(long, help_heading = "Target")]
    pub host: Option<String>,
    /// Server port, as `vllm bench serve` (default 8000 when only --host is given).
    #[arg(long, help_heading = "Target")]
    pub port: Option<u16>,
    /// API path: /v1/completions or /v1/chat/completions. Default: /v1/completions, or
    /// /v1/chat/completions with `--backend openai-chat`.
    #[arg(long, help_heading = "Target")]
    pub endpoint: Option<String>,
    /// vLLM's request function: `openai` or `vllm` (completions), `openai-chat` (chat
    /// completions). `openai-audio` and `openai-embeddings` are refused: servebench measures
    /// text generation only.
    #[arg(long, help_heading = "Target")]
    pub backend: Option<String>,
    /// Model name sent in requests. Default: the first model the server lists at /v1/models.
    #[arg(long, help_heading = "Target")]
    pub model: Option<String>,
    /// The model name the server answers to when it differs from --model (vLLM's flag): sent
    /// in requests, while the result's `model_id` stays --model.
    #[arg(long, help_heading = "Target")]
    pub served_model_name: Option<String>,
    /// Extra HTTP header on every request, KEY=VALUE, repeatable or several after one flag
    /// (`--header x-a=1 x-b=2`). Values of auth-like headers are never written anywhere.
    #[arg(long = "header", value_name = "KEY=VALUE", num_args = 1.., help_heading = "Target")]
    pub headers: Vec<String>,
    /// Send `X-Request-Id: <PREFIX><n>` with request n (vLLM's flag; vLLM's server then uses
    /// it as the request id in its logs). Default: no request-id header.
    #[arg(long, help_heading = "Target")]
    pub request_id_prefix: Option<String>,
    /// Seconds to wait for the server to answer the preflight (retried every second until
    /// then), e.g. while vLLM is still loading the model. 0: ask once (vLLM's default since
    /// 0.11.1; 0.10 and 0.11.0 waited 600 s by default).
    #[arg(long, default_value_t = 0, help_heading = "Target")]
    pub ready_check_timeout_sec: u64,
    /// Bearer token for the server (read from OPENAI_API_KEY when not given). Never written to
    /// any output.
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        hide_env_values = true,
        help_heading = "Target"
    )]
    pub api_key: Option<String>,
    /// Seconds before one request is abandoned and counted as a timeout.
    #[arg(long, default_value_t = 600.0, help_heading = "Target")]
    pub request_timeout: f64,
    /// Send non-streaming requests (TTFT is then the time to the whole response). Not vLLM's
    /// `--no-stream`, which is about loading Hugging Face datasets (refused here anyway).
    #[arg(long, help_heading = "Target")]
    pub no_stream: bool,
    /// Token usage to ask the server for: `auto` asks for per-chunk usage
    /// (`continuous_usage_stats`, vLLM) and falls back to the final usage if the server rejects
    /// it; `final` asks only for `include_usage`; `none` asks for neither.
    #[arg(long, default_value = "auto", help_heading = "Target")]
    pub usage: String,
    /// Telemetry sampling interval in ms (Prometheus /metrics of the server, NVML GPUs);
    /// 0 turns telemetry off.
    #[arg(long, default_value_t = 500, help_heading = "Telemetry")]
    pub telemetry_interval_ms: u64,
    /// Also scrape an NVIDIA DCGM exporter, e.g. http://127.0.0.1:9400/metrics.
    #[arg(long, help_heading = "Telemetry")]
    pub dcgm_url: Option<String>,
    /// Do not read this machine's GPUs through NVML (for a remote or simulated server).
    #[arg(long, help_heading = "Telemetry")]
    pub no_nvml: bool,
    /// A label for this target in result files (e.g. vllm, sglang). Default: from the server.
    #[arg(long, help_heading = "Target")]
    pub label: Option<String>,

    #[command(flatten)]
    pub sampling: SamplingArgs,

    #[command(flatten)]
    pub vllm: VllmCompatArgs,

    #[command(flatten)]
    pub embedded: EmbeddedArgs,
}

/// Sampling parameters, sent in every request body only when given (as `vllm bench serve`
/// since 0.11.1: the server's defaults apply otherwise).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Sampling parameters (sent only when given)")]
pub struct SamplingArgs {
    #[arg(long)]
    pub temperature: Option<f64>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<i64>,
    #[arg(long)]
    pub min_p: Option<f64>,
    #[arg(long)]
    pub frequency_penalty: Option<f64>,
    #[arg(long)]
    pub presence_penalty: Option<f64>,
    #[arg(long)]
    pub repetition_penalty: Option<f64>,
    /// Log probabilities per token: `logprobs: N` (completions) or `logprobs: true,
    /// top_logprobs: N` (chat).
    #[arg(long)]
    pub logprobs: Option<u32>,
    /// A JSON object merged into every request body last (vLLM's flag), e.g.
    /// '{"chat_template_kwargs":{"enable_thinking":false}}'.
    #[arg(long)]
    pub extra_body: Option<String>,
}

/// Flags of `vllm bench serve` that have no effect on a servebench run. Accepted so a vLLM
/// command line carries over unchanged; each one given prints one line on stderr saying why
/// it has no effect (docs/vllm-compat.md has the whole table).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Accepted for `vllm bench serve` compatibility (no effect)")]
pub struct VllmCompatArgs {
    /// vLLM 0.10's deprecated name for --backend (read as --backend).
    #[arg(long, value_name = "BACKEND")]
    pub endpoint_type: Option<String>,
    /// servebench always writes the result file.
    #[arg(long)]
    pub save_result: bool,
    /// servebench writes a new result file every run (and appends a row to results.csv).
    #[arg(long)]
    pub append_result: bool,
    /// Tokenizers are read from a local tokenizer.json; there is no mode to choose.
    #[arg(long, value_name = "MODE")]
    pub tokenizer_mode: Option<String>,
    /// No Python code is run to load a tokenizer.
    #[arg(long)]
    pub trust_remote_code: bool,
    /// servebench needs no tokenizer (prompts are approximate without one).
    #[arg(long)]
    pub skip_tokenizer_init: bool,
    /// Not sent by vLLM's client either.
    #[arg(long)]
    pub use_beam_search: bool,
    /// vLLM's profiler: start it yourself (POST /start_profile, /stop_profile).
    #[arg(long)]
    pub profile: bool,
    /// Certificates are always verified.
    #[arg(long)]
    pub insecure: bool,
    /// servebench draws its own charts (`servebench suite` reports).
    #[arg(long)]
    pub plot_timeline: bool,
    #[arg(long, value_name = "MS,MS")]
    pub timeline_itl_thresholds: Option<String>,
    #[arg(long)]
    pub plot_dataset_stats: bool,
    /// servebench never renders a chat template on the client.
    #[arg(long, value_name = "JSON")]
    pub chat_template_kwargs: Option<String>,
    #[arg(long, alias = "custom-skip-chat-template")]
    pub skip_chat_template: bool,
    /// Datasets with fewer usable prompts than --num-prompts are cycled through.
    #[arg(long)]
    pub no_oversample: bool,
    /// Datasets are shuffled by --seed.
    #[arg(long)]
    pub disable_shuffle: bool,
    /// Embeddings and reranking are not benchmarked.
    #[arg(long)]
    pub random_batch_size: Option<u32>,
    #[arg(long)]
    pub no_reranker: bool,
    /// Options of vLLM datasets servebench does not have (refused with --dataset-name).
    #[arg(long)]
    pub sonnet_input_len: Option<u32>,
    #[arg(long)]
    pub sonnet_output_len: Option<u32>,
    #[arg(long)]
    pub sonnet_prefix_len: Option<u32>,
    #[arg(long)]
    pub blazedit_min_distance: Option<f64>,
    #[arg(long)]
    pub blazedit_max_distance: Option<f64>,
    #[arg(long)]
    pub spec_bench_output_len: Option<u32>,
    #[arg(long)]
    pub spec_bench_category: Option<String>,
    #[arg(long)]
    pub hf_subset: Option<String>,
    #[arg(long)]
    pub hf_split: Option<String>,
    #[arg(long)]
    pub hf_name: Option<String>,
    #[arg(long)]
    pub hf_output_len: Option<u32>,
    #[arg(long)]
    pub random_mm_base_items_per_request: Option<u32>,
    #[arg(long)]
    pub random_mm_num_mm_items_range_ratio: Option<f64>,
    #[arg(long)]
    pub random_mm_limit_mm_per_prompt: Option<String>,
    #[arg(long)]
    pub random_mm_bucket_config: Option<String>,
    #[arg(long)]
    pub speed_bench_category: Option<String>,
    #[arg(long)]
    pub speed_bench_dataset_subset: Option<String>,
    #[arg(long)]
    pub bfcl_categories: Option<String>,
    /// servebench sends text only.
    #[arg(long)]
    pub enable_multimodal_chat: bool,
    #[arg(long)]
    pub custom_ensure_client_side_data: bool,
    #[arg(long)]
    pub timed_trace_chunk_hash_size: Option<u32>,
    #[arg(long)]
    pub timed_trace_sec_multiplier: Option<f64>,
    /// Refused: these change what is measured, and servebench cannot do it.
    #[arg(long, num_args = 1..)]
    pub lora_modules: Vec<String>,
    #[arg(long)]
    pub lora_assignment: Option<String>,
    #[arg(long)]
    pub probe_request_rate: Option<f64>,
    #[arg(long, overrides_with = "no_self_timed")]
    pub self_timed: bool,
    #[arg(long)]
    pub no_self_timed: bool,
}

/// What to send (shared by `run` and `predict`).
#[derive(Debug, Args, Clone)]
#[command(allow_negative_numbers = true)]
pub struct WorkloadArgs {
    /// Local tokenizer.json (Hugging Face format), or a local model directory holding one, for
    /// exact prompt token lengths. Never downloaded: for a hub id, point at a local copy. Without
    /// it prompts are built from common one-token words (an approximation; the server's usage
    /// is recorded either way).
    #[arg(long, help_heading = "Workload")]
    pub tokenizer: Option<PathBuf>,
    /// The workload: `random` (independent prompts, as vLLM), `generated-shared-prefix`
    /// (groups sharing a system prompt, as SGLang's bench_serving; --gsp-*), `sharegpt` or
    /// `custom` (a local file, --dataset-path), `trace` (a timestamped JSONL of input and
    /// output lengths, replayed on its own clock), `multi-turn` (conversations whose history,
    /// replies included, is sent back each turn; --conversation-*; chat endpoint only), or
    /// `sharegpt-multi-turn` (a ShareGPT file's conversations replayed that way, one request
    /// per human message; --dataset-path, --sharegpt-*, --conversation-num as a cap and
    /// --conversation-turn-delay-* for think times).
    #[arg(long, default_value = "random", help_heading = "Workload")]
    pub dataset_name: String,
    /// A local dataset file for `--dataset-name sharegpt` or `sharegpt-multi-turn` (ShareGPT
    /// JSON) or `custom` (JSONL of
    /// {"prompt": …}). Never downloaded.
    #[arg(long, help_heading = "Workload")]
    pub dataset_path: Option<PathBuf>,
    /// Fixed output length for ShareGPT prompts (default: the reference answer's length; with
    /// `sharegpt-multi-turn`, each turn's reply length in the file).
    #[arg(long, help_heading = "Workload")]
    pub sharegpt_output_len: Option<u32>,
    /// `--dataset-name sharegpt-multi-turn`: the model's context length (SGLang's name). A
    /// conversation ends before the first turn whose history, message and max_tokens would not
    /// fit (history counted with the earlier turns' max_tokens). Default: no limit.
    #[arg(long, help_heading = "Workload")]
    pub sharegpt_context_len: Option<u32>,
    /// `--dataset-name sharegpt-multi-turn`: skip conversations with fewer turns (human
    /// messages answered in the file), counted after the context cut. vLLM's converter counts
    /// messages of both roles for its --min-turns; this counts requests.
    #[arg(long, default_value_t = 2, help_heading = "Workload")]
    pub sharegpt_min_turns: u32,
    /// `--dataset-name sharegpt-multi-turn`: keep at most this many turns of each conversation
    /// (vLLM's converter's --max-turns counts messages of both roles; this counts requests).
    /// Default: every turn.
    #[arg(long, help_heading = "Workload")]
    pub sharegpt_max_turns: Option<u32>,
    /// Output length for custom prompts without their own max_tokens (default 128).
    #[arg(long, help_heading = "Workload")]
    pub custom_output_len: Option<u32>,
    /// `--dataset-name trace`: multiply the trace's arrival offsets by this (0.5 = twice as
    /// fast).
    #[arg(long, default_value_t = 1.0, help_heading = "Workload")]
    pub trace_time_scale: f64,
    /// `--dataset-name multi-turn`: conversations in the workload (AIPerf's name); their
    /// turns summed are the default --num-prompts. With `sharegpt-multi-turn`, at most this
    /// many of the file's conversations (in the seed's order).
    #[arg(long, default_value_t = 16, help_heading = "Workload")]
    pub conversation_num: u32,
    /// Turns (requests) per conversation (AIPerf's name; SGLang bench_multiturn's
    /// --num-rounds).
    #[arg(long, default_value_t = 4, help_heading = "Workload")]
    pub conversation_turn_mean: u32,
    /// Turns are uniform in [mean·(1−r), mean·(1+r)] (as --random-range-ratio; AIPerf draws
    /// from a normal with --conversation-turn-stddev instead).
    #[arg(long, default_value_t = 0.0, help_heading = "Workload")]
    pub conversation_turn_range_ratio: f64,
    /// Mean think time in ms between a reply and the conversation's next turn (AIPerf's name).
    #[arg(long, default_value_t = 0.0, help_heading = "Workload")]
    pub conversation_turn_delay_mean: f64,
    /// Think time distribution: `fixed` (always the mean) or `exponential` (seeded).
    #[arg(long, default_value = "fixed", help_heading = "Workload")]
    pub conversation_turn_delay_dist: String,
    /// Tokens of a system prompt every conversation starts with (0: none).
    #[arg(long, default_value_t = 0, help_heading = "Workload")]
    pub conversation_system_prompt_len: u32,
    /// Tokens of each conversation's first user message.
    #[arg(long, default_value_t = 256, help_heading = "Workload")]
    pub conversation_first_input_len: u32,
    /// Tokens of each follow-up user message.
    #[arg(long, default_value_t = 64, help_heading = "Workload")]
    pub conversation_input_len: u32,
    /// Output tokens (`max_tokens`) of every turn.
    #[arg(long, default_value_t = 128, help_heading = "Workload")]
    pub conversation_output_len: u32,
    /// Shared-prefix groups (`generated-shared-prefix`).
    #[arg(long, default_value_t = 64, help_heading = "Workload")]
    pub gsp_num_groups: u32,
    /// Requests per shared-prefix group; groups × this is the default --num-prompts.
    #[arg(long, default_value_t = 16, help_heading = "Workload")]
    pub gsp_prompts_per_group: u32,
    /// Tokens of each group's shared system prompt.
    #[arg(long, default_value_t = 2048, help_heading = "Workload")]
    pub gsp_system_prompt_len: u32,
    /// Tokens of each request's own question.
    #[arg(long, default_value_t = 128, help_heading = "Workload")]
    pub gsp_question_len: u32,
    /// Output tokens of each shared-prefix request.
    #[arg(long, default_value_t = 256, help_heading = "Workload")]
    pub gsp_output_len: u32,
    /// vLLM's general input length: sets --random-input-len.
    #[arg(long, help_heading = "Workload")]
    pub input_len: Option<u32>,
    /// vLLM's general output length: sets --random-output-len, --sharegpt-output-len and
    /// --custom-output-len.
    #[arg(long, help_heading = "Workload")]
    pub output_len: Option<u32>,
    /// `random`: tokens of one fixed prefix every prompt starts with (vLLM's flag), before its
    /// own --random-input-len tokens.
    #[arg(long, default_value_t = 0, help_heading = "Workload")]
    pub random_prefix_len: u32,
    /// `prefix_repetition` (vLLM's dataset, run as `generated-shared-prefix`): tokens of
    /// each shared prefix.
    #[arg(long, default_value_t = 256, help_heading = "Workload")]
    pub prefix_repetition_prefix_len: u32,
    /// `prefix_repetition`: tokens of each request's own suffix.
    #[arg(long, default_value_t = 256, help_heading = "Workload")]
    pub prefix_repetition_suffix_len: u32,
    /// `prefix_repetition`: distinct prefixes; --num-prompts / this requests share each one.
    #[arg(long, default_value_t = 10, help_heading = "Workload")]
    pub prefix_repetition_num_prefixes: u32,
    /// `prefix_repetition`: output tokens per request.
    #[arg(long, default_value_t = 128, help_heading = "Workload")]
    pub prefix_repetition_output_len: u32,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 1024, help_heading = "Workload")]
    pub random_input_len: u32,
    /// Output length in tokens (`max_tokens`).
    #[arg(long, default_value_t = 128, help_heading = "Workload")]
    pub random_output_len: u32,
    /// Lengths are uniform in [len·(1−r), len·(1+r)].
    #[arg(long, default_value_t = 0.0, help_heading = "Workload")]
    pub random_range_ratio: f64,
    /// Ask the server to ignore end-of-sequence so outputs are exactly max_tokens long.
    #[arg(long, help_heading = "Workload")]
    pub ignore_eos: bool,
    /// Send `min_tokens` (vLLM/SGLang) so outputs are at least this long.
    #[arg(long, help_heading = "Workload")]
    pub min_tokens: Option<u32>,
    /// Seed for prompts and arrival times.
    #[arg(long, default_value_t = 0, help_heading = "Workload")]
    pub seed: u64,
    /// Constrain every answer: `json-schema` (--json-schema, or a small built-in schema) or
    /// `regex` (--regex). Each successful answer is checked; the summary reports the
    /// `correct_rate` (vLLM's structured benchmark's key). Absent: unconstrained.
    #[arg(long, help_heading = "Structured output")]
    pub structured_output: Option<String>,
    /// The JSON schema file for `--structured-output json-schema`.
    #[arg(long, help_heading = "Structured output")]
    pub json_schema: Option<PathBuf>,
    /// The regex for `--structured-output regex` (the whole answer must match).
    #[arg(long, help_heading = "Structured output")]
    pub regex: Option<String>,
    /// Request fields that carry the constraint: `openai` (response_format), `vllm`
    /// (structured_outputs), `vllm-guided` (guided_json/guided_regex, vLLM ≤ 0.10), `sglang`
    /// (response_format / regex). Default: by the target's label (vllm, sglang, else openai;
    /// vllm for the embedded server, which reads them all).
    #[arg(long, help_heading = "Structured output")]
    pub structured_dialect: Option<String>,
}

/// How to pace it (shared by `run` and `predict`).
#[derive(Debug, Args, Clone)]
#[command(allow_negative_numbers = true)]
pub struct LoadArgs {
    /// Number of measured requests (default 1000 when --duration is not given either).
    #[arg(long, help_heading = "Load")]
    pub num_prompts: Option<u64>,
    /// Requests per second (open loop); `inf` sends on the in-flight cap alone.
    #[arg(long, default_value = "inf", help_heading = "Load")]
    pub request_rate: String,
    /// Arrival process for a finite rate: poisson, gamma (shape = --burstiness) or constant.
    #[arg(long, default_value = "poisson", help_heading = "Load")]
    pub arrival: String,
    /// Gamma shape of inter-arrival gaps (1 = Poisson; lower is burstier). Implies gamma
    /// arrivals when not 1.
    #[arg(long, default_value_t = 1.0, help_heading = "Load")]
    pub burstiness: f64,
    /// Most requests in flight. With `--request-rate inf` this is a closed loop of N clients
    /// (each sends its next request when its last one ends).
    #[arg(long, help_heading = "Load")]
    pub max_concurrency: Option<usize>,
    /// Stop sending after this many seconds (with --num-prompts: whichever comes first).
    #[arg(long, help_heading = "Load")]
    pub duration: Option<f64>,
    /// Ramp the request rate over the run, as `vllm bench serve`: `linear` or `exponential`
    /// from --ramp-up-start-rps (first request) to --ramp-up-end-rps (last of --num-prompts);
    /// gaps drawn as for --request-rate (--burstiness, --arrival). Not with --request-rate.
    #[arg(long, help_heading = "Load")]
    pub ramp_up_strategy: Option<String>,
    /// Requests per second at the start of the ramp.
    #[arg(long, help_heading = "Load")]
    pub ramp_up_start_rps: Option<u32>,
    /// Requests per second at the end of the ramp.
    #[arg(long, help_heading = "Load")]
    pub ramp_up_end_rps: Option<u32>,
}

/// What to compute (shared by `run` and `predict`).
#[derive(Debug, Args, Clone)]
#[command(allow_negative_numbers = true)]
pub struct MetricArgs {
    /// Service-level objectives for goodput, e.g. `--goodput ttft:500 tpot:50 e2el:10000` (ms).
    #[arg(long, num_args = 1.., help_heading = "Metrics")]
    pub goodput: Vec<String>,
    /// Exit with status 3 when the fraction of requests that succeeded and met every
    /// --goodput objective is below this (e.g. 0.99): a gate for CI.
    #[arg(long, help_heading = "Metrics")]
    pub fail_under_goodput: Option<f64>,
    /// Exit with status 3 when the fraction of measured requests that succeeded is below this
    /// (e.g. 0.99): a CI gate on failures alone, without goodput objectives.
    #[arg(long, help_heading = "Metrics")]
    pub fail_under_success_rate: Option<f64>,
    /// Comma-separated percentiles to report.
    #[arg(long, default_value = "50,90,95,99", help_heading = "Metrics")]
    pub metric_percentiles: String,
    /// Which metrics get `mean_`/`median_`/`std_`/`p<N>_` keys in the result's top level
    /// (vLLM's flag): any of ttft, tpot, itl, e2el, client_queue_time,
    /// e2el_including_client_queue. Default: every metric servebench measures (vLLM's default
    /// `ttft,tpot,itl` plus the others). The full summary is written either way.
    #[arg(long, help_heading = "Metrics")]
    pub percentile_metrics: Option<String>,
}

/// Where results go (shared by `run` and `predict`).
#[derive(Debug, Args, Clone)]
#[command(allow_negative_numbers = true)]
pub struct OutputArgs {
    /// Directory for the summary JSON, the journal and the CSV.
    #[arg(long, default_value = "results", help_heading = "Output")]
    pub result_dir: PathBuf,
    /// Summary file name (default: `<label>-<rate>qps-<time>.json`).
    #[arg(long, help_heading = "Output")]
    pub result_filename: Option<String>,
    /// Also put per-request arrays (input_lens, output_lens, ttfts, itls, start_times,
    /// generated_texts, errors) into the summary JSON, as vLLM does.
    #[arg(long, help_heading = "Output")]
    pub save_detailed: bool,
    /// No progress bar.
    #[arg(long, alias = "disable-tqdm", help_heading = "Output")]
    pub no_progress: bool,
    /// KEY=VALUE pairs written as top-level keys of the result file (vLLM's flag), e.g.
    /// `--metadata version=0.11 tp=1`.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., help_heading = "Output")]
    pub metadata: Vec<String>,
    /// Electricity price in USD per kWh: adds the on-premises energy cost per 1M output tokens
    /// from the GPUs' measured (or, for the simulator, modelled) energy.
    #[arg(long, value_name = "USD_PER_KWH", help_heading = "Cost")]
    pub electricity_price: Option<f64>,
    /// Power usage effectiveness applied to the GPUs' energy for that cost (facility energy
    /// over IT energy); 1.0 counts the GPUs alone.
    #[arg(long, default_value_t = 1.0, help_heading = "Cost")]
    pub pue: f64,
}

/// The embedded server's behaviour (for `serve`, and for `run` without --base-url).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Embedded server (used by `serve`, and by `run` without --base-url)")]
pub struct EmbeddedArgs {
    /// Time to first token in ms.
    #[arg(long, default_value_t = 50.0)]
    pub ttft_ms: f64,
    /// Time between tokens in ms (0 = as fast as possible).
    #[arg(long, default_value_t = 10.0)]
    pub itl_ms: f64,
    /// Tokens carried by each streamed chunk.
    #[arg(long, default_value_t = 1)]
    pub tokens_per_chunk: u32,
    /// Fault injection: KIND=FRACTION, repeatable. Kinds: http_500, http_503, http_429
    /// (with Retry-After), disconnect (connection dropped mid-stream), stall (silence for
    /// --fault-stall-ms), malformed_chunk, error_event (`event: error` frame), error_200 (an
    /// error object in a 200 response), no_done (stream ends cleanly after its finish chunk,
    /// without `[DONE]`: still a success), huge_chunk, truncated (stream ends cleanly after a
    /// content chunk, no finish_reason), not_sse (a 200 HTML or JSON page to a streaming
    /// request). Example: --fault http_500=0.1 --fault disconnect=0.05
    #[arg(long = "fault", value_name = "KIND=FRACTION")]
    pub faults: Vec<String>,
    /// Mid-stream faults strike after this many tokens.
    #[arg(long, default_value_t = 1)]
    pub fault_after_tokens: u32,
    /// How long a stall lasts, in ms.
    #[arg(long, default_value_t = 60_000.0)]
    pub fault_stall_ms: f64,
    /// Seed for fault selection (which requests get which fault).
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// Worker threads of the embedded server's own runtime (2: a burst of hundreds of new
    /// requests is accepted without delaying the first tokens).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    #[command(flatten)]
    pub reasoning: ReasoningArgs,
}

/// Answer like a reasoning model (embedded server and `sim serve`).
#[derive(Debug, Args, Clone, Default)]
pub struct ReasoningArgs {
    /// Stream the first N tokens of every chat answer as reasoning (thinking), the rest as
    /// the answer, as vLLM and SGLang do with a reasoning parser. 0: plain answers.
    #[arg(long, default_value_t = 0)]
    pub reasoning_tokens: u32,
    /// The delta field the reasoning goes in: reasoning_content (SGLang, older vLLM) or
    /// reasoning (vLLM since late 2025).
    #[arg(long, value_enum, default_value_t = ReasoningFieldArg::ReasoningContent)]
    pub reasoning_field: ReasoningFieldArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReasoningFieldArg {
    #[default]
    #[value(name = "reasoning_content")]
    ReasoningContent,
    #[value(name = "reasoning")]
    Reasoning,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0 = any free port; the URL is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to bind. Loopback by default; the server is a test fixture, not a service.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Model name the server answers to.
    #[arg(long, default_value = "servebench-fixed")]
    pub model: String,
    /// Answer requests holding any of these fields with 422, as `transformers serve` answers
    /// fields outside its schema (e.g. `ignore_eos,min_tokens`; a dotted name is a nested
    /// field, such as `stream_options.continuous_usage_stats`): a strict server to test against.
    #[arg(long, value_delimiter = ',', value_name = "FIELD,...")]
    pub reject_fields: Vec<String>,
    #[command(flatten)]
    pub embedded: EmbeddedArgs,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Streams in flight for the token-throughput measurement.
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    /// Output tokens per request for the token-throughput measurement.
    #[arg(long, default_value_t = 1024)]
    pub output_len: u32,
    /// Requests in flight for the request-rate measurement (max_tokens 1).
    #[arg(long, default_value_t = 256)]
    pub request_concurrency: usize,
    /// Open-loop rate for the dispatch-lag measurement (requests/s).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Client worker threads (1 = the client gets one core, the server the rest).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Server worker threads.
    #[arg(long, default_value_t = 1)]
    pub server_threads: usize,
    /// Where to write the calibration JSON.
    #[arg(long, default_value = "results")]
    pub result_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run's journal (`*.journal.jsonl`).
    #[arg(long)]
    pub journal: PathBuf,
    /// Where to write the rebuilt summary (default: next to the journal).
    #[arg(long)]
    pub output: Option<PathBuf>,
}
