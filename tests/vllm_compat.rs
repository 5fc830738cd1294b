//! A `vllm bench serve` command line carries over to `servebench run` as it is: real command
//! lines, copied from vLLM's documentation, benchmark scripts and tests (each row names its
//! source file in vllm-project/vllm), go through servebench's own parser with `vllm bench serve`
//! replaced by `servebench run`, and each must mean what it meant to vLLM. Placeholders such as
//! `<your data path>` and shell variables are filled in (with a small ShareGPT file and JSONL
//! file made here, and the scripts' own default values); nothing else is changed.

mod common;

use clap::Parser;
use servebench::arrival::Arrival;
use servebench::cli::{Cli, Command};
use servebench::config::RunConfig;
use servebench::load::{LoadMode, Pacing, Stop};
use servebench::openai::Endpoint;
use servebench::workload::{DatasetKind, LengthDist, Workload};
use std::path::Path;

/// Split a shell command line the way bash would for these lines: whitespace separates words,
/// single and double quotes group, a backslash-newline continues the line.
fn shell_words(line: &str) -> Vec<String> {
    let line = line.replace("\\\n", " ");
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Files the command lines point at, made here.
struct Data {
    _dir: tempfile::TempDir,
    sharegpt: String,
    custom: String,
}

fn data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let sharegpt = dir.path().join("ShareGPT_V3_unfiltered_cleaned_split.json");
    let turn = |from: &str, n: usize| serde_json::json!({"from": from, "value": "word ".repeat(n)});
    let conv = serde_json::json!({"conversations": [turn("human", 12), turn("gpt", 20)]});
    std::fs::write(&sharegpt, serde_json::json!([conv, conv, conv]).to_string()).unwrap();
    let custom = dir.path().join("data.jsonl");
    std::fs::write(
        &custom,
        "{\"prompt\": \"What is the capital of India?\"}\n{\"prompt\": \"What is the capital of Iran?\"}\n",
    )
    .unwrap();
    Data {
        sharegpt: sharegpt.display().to_string(),
        custom: custom.display().to_string(),
        _dir: dir,
    }
}

/// `servebench run …` for a `vllm bench serve …` line, with its placeholders filled in.
fn parse(d: &Data, result_dir: &Path, line: &str) -> Result<RunConfig, String> {
    let line = line
        .replace(
            "<your data path>/ShareGPT_V3_unfiltered_cleaned_split.json",
            &d.sharegpt,
        )
        .replace(
            "benchmarks/ShareGPT_V3_unfiltered_cleaned_split.json",
            &d.sharegpt,
        )
        .replace(
            "/path/to/ShareGPT4V/sharegpt4v_instruct_gpt4-vision_cap100k.json",
            &d.sharegpt,
        )
        .replace(
            "/path/to/ShareGPT4Video/llava_v1_5_mix665k_with_video_chatgpt72k_share4video28k.json",
            &d.sharegpt,
        )
        .replace("<path-to-your-data-jsonl>", &d.custom);
    let words = shell_words(&line);
    let rest = words
        .strip_prefix(&["vllm".to_string(), "bench".into(), "serve".into()])
        .or_else(|| {
            words
                .iter()
                .position(|w| w.ends_with("benchmark_serving.py"))
                .map(|i| &words[i + 1..])
        })
        .expect("a vllm bench serve (or benchmark_serving.py) line");
    // As the binary parses it (the lines give their own --result-dir; nothing is written).
    let _ = result_dir;
    let argv = ["servebench", "run"]
        .into_iter()
        .chain(rest.iter().map(String::as_str));
    match Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .command
    {
        Command::Run(a) => RunConfig::from_args(&a).map_err(|e| e.to_string()),
        _ => unreachable!("the argv starts with `run`"),
    }
}

fn external(c: &RunConfig) -> &str {
    match &c.target {
        servebench::config::Target::External { base_url } => base_url,
        other => panic!("not an external target: {other:?}"),
    }
}

fn random_lengths(c: &RunConfig) -> (LengthDist, LengthDist) {
    match &c.workload {
        Workload::Random(r) => (r.input, r.output),
        other => panic!("not the random dataset: {other:?}"),
    }
}

fn dataset(c: &RunConfig) -> (DatasetKind, Option<u32>) {
    match &c.workload {
        Workload::Dataset(d) => (d.kind, d.output_len),
        other => panic!("not a file dataset: {other:?}"),
    }
}

type Check = fn(&RunConfig);

/// Command lines servebench runs, and what each must mean.
const ACCEPTED: &[(&str, &str, Check)] = &[
    // 1. docs/benchmarking/cli.md, "Online Benchmark"
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
  --backend vllm \\
  --model NousResearch/Hermes-3-Llama-3.1-8B \\
  --endpoint /v1/completions \\
  --dataset-name sharegpt \\
  --dataset-path <your data path>/ShareGPT_V3_unfiltered_cleaned_split.json \\
  --num-prompts 10",
        |c| {
            assert_eq!(c.backend, "vllm");
            assert_eq!(c.endpoint, Endpoint::Completions);
            assert_eq!(c.model.as_deref(), Some("NousResearch/Hermes-3-Llama-3.1-8B"));
            assert_eq!(dataset(c), (DatasetKind::ShareGpt, None));
            assert_eq!(c.plan.stop, Stop::Requests(10));
            // vLLM's default target: 127.0.0.1:8000.
            assert!(matches!(c.target, servebench::config::Target::Embedded(_)));
        },
    ),
    // 2. docs/benchmarking/cli.md, "Results Visualization"
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
    --backend vllm \\
    --model meta-llama/Llama-3.1-8B-Instruct \\
    --endpoint /v1/completions \\
    --dataset-name sharegpt \\
    --dataset-path <your data path>/ShareGPT_V3_unfiltered_cleaned_split.json \\
    --num-prompts 100 \\
    --plot-timeline \\
    --timeline-itl-thresholds 2,5 \\
    --plot-dataset-stats \\
    --save-result",
        |c| {
            assert_eq!(c.plan.stop, Stop::Requests(100));
            let notes = c.compat_notes.join("\n");
            assert!(notes.contains("--plot-timeline"), "{notes}");
            assert!(notes.contains("--save-result"), "{notes}");
        },
    ),
    // 3. docs/benchmarking/cli.md, "Custom Dataset"
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve --port 9001 --save-result --save-detailed \\
  --backend vllm \\
  --model meta-llama/Llama-3.1-8B-Instruct \\
  --endpoint /v1/completions \\
  --dataset-name custom \\
  --dataset-path <path-to-your-data-jsonl> \\
  --skip-chat-template \\
  --num-prompts 80 \\
  --max-concurrency 1 \\
  --temperature=0.3 \\
  --top-p=0.75 \\
  --result-dir \"./log/\"",
        |c| {
            assert_eq!(external(c), "http://127.0.0.1:9001");
            assert!(c.save_detailed);
            assert_eq!(dataset(c).0, DatasetKind::Custom);
            assert!(matches!(c.plan.mode, LoadMode::Closed { concurrency } if concurrency.get() == 1));
            assert_eq!(c.body_extra["temperature"], 0.3);
            assert_eq!(c.body_extra["top_p"], 0.75);
            assert_eq!(c.result_dir, Path::new("./log/"));
        },
    ),
    // 4. docs/contributing/benchmarks.md (vLLM 0.10), "Custom Dataset": the older flag name
    (
        "docs/contributing/benchmarks.md",
        "vllm bench serve --port 9001 --save-result --save-detailed \\
  --backend vllm \\
  --model meta-llama/Llama-3.1-8B-Instruct \\
  --endpoint /v1/completions \\
  --dataset-name custom \\
  --dataset-path <path-to-your-data-jsonl> \\
  --custom-skip-chat-template \\
  --num-prompts 80 \\
  --max-concurrency 1 \\
  --temperature=0.3 \\
  --top-p=0.75 \\
  --result-dir \"./log/\"",
        |c| {
            assert_eq!(dataset(c).0, DatasetKind::Custom);
            assert_eq!(c.plan.stop, Stop::Requests(80));
            assert!(c.compat_notes.iter().any(|n| n.contains("chat template")));
        },
    ),
    // 5. docs/benchmarking/cli.md, "Running With Sampling Parameters"
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
  --backend vllm \\
  --model NousResearch/Hermes-3-Llama-3.1-8B \\
  --endpoint /v1/completions \\
  --dataset-name sharegpt \\
  --dataset-path <your data path>/ShareGPT_V3_unfiltered_cleaned_split.json \\
  --top-k 10 \\
  --top-p 0.9 \\
  --temperature 0.5 \\
  --num-prompts 10",
        |c| {
            assert_eq!(c.body_extra["top_k"], 10);
            assert_eq!(c.body_extra["top_p"], 0.9);
            assert_eq!(c.body_extra["temperature"], 0.5);
            assert_eq!(c.body_extra.len(), 3, "nothing else is sent: {:?}", c.body_extra);
        },
    ),
    // 6. docs/benchmarking/cli.md, "Prefix Repetition Dataset"
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
  --backend openai \\
  --model meta-llama/Llama-2-7b-chat-hf \\
  --dataset-name prefix_repetition \\
  --num-prompts 100 \\
  --prefix-repetition-prefix-len 512 \\
  --prefix-repetition-suffix-len 128 \\
  --prefix-repetition-num-prefixes 5 \\
  --prefix-repetition-output-len 128",
        |c| {
            let Workload::SharedPrefix(s) = &c.workload else {
                panic!("{:?}", c.workload)
            };
            assert_eq!(
                (s.groups, s.system_prompt_len, s.question_len, s.output_len),
                (5, 512, 128, 128)
            );
            assert_eq!(c.plan.stop, Stop::Requests(100));
        },
    ),
    // 7. docs/benchmarking/cli.md, "Images (ShareGPT4V)"
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
  --backend openai-chat \\
  --model Qwen/Qwen2.5-VL-7B-Instruct \\
  --dataset-name sharegpt \\
  --dataset-path /path/to/ShareGPT4V/sharegpt4v_instruct_gpt4-vision_cap100k.json \\
  --num-prompts 100 \\
  --save-result \\
  --result-dir ~/vllm_benchmark_results \\
  --save-detailed \\
  --endpoint /v1/chat/completions",
        |c| {
            assert_eq!(c.backend, "openai-chat");
            assert_eq!(c.endpoint, Endpoint::ChatCompletions);
            assert!(c.save_detailed);
        },
    ),
    // 8. docs/benchmarking/cli.md, "Videos (ShareGPT4Video)"
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
  --backend openai-chat \\
  --model Qwen/Qwen2.5-VL-7B-Instruct \\
  --dataset-name sharegpt \\
  --dataset-path /path/to/ShareGPT4Video/llava_v1_5_mix665k_with_video_chatgpt72k_share4video28k.json \\
  --num-prompts 100 \\
  --save-result \\
  --result-dir ~/vllm_benchmark_results \\
  --save-detailed \\
  --endpoint /v1/chat/completions",
        |c| {
            assert_eq!(c.endpoint, Endpoint::ChatCompletions);
            assert_eq!(c.plan.stop, Stop::Requests(100));
        },
    ),
    // 9. tests/benchmarks/test_serve_cli.py, test_bench_serve (server.host is "localhost")
    (
        "tests/benchmarks/test_serve_cli.py",
        "vllm bench serve --model meta-llama/Llama-3.2-1B-Instruct --host localhost --port 36123 \
         --dataset-name random --random-input-len 32 --random-output-len 4 --num-prompts 5",
        |c| {
            assert_eq!(external(c), "http://localhost:36123");
            assert_eq!(
                random_lengths(c),
                (LengthDist::Fixed { tokens: 32 }, LengthDist::Fixed { tokens: 4 })
            );
            assert_eq!(c.plan.stop, Stop::Requests(5));
            assert_eq!(c.backend, "openai");
        },
    ),
    // 10. tests/benchmarks/test_serve_cli.py, test_bench_serve_chat
    (
        "tests/benchmarks/test_serve_cli.py",
        "vllm bench serve --model meta-llama/Llama-3.2-1B-Instruct --host localhost --port 36123 \
         --dataset-name random --random-input-len 32 --random-output-len 4 --num-prompts 5 \
         --endpoint /v1/chat/completions --backend openai-chat",
        |c| {
            assert_eq!(c.endpoint, Endpoint::ChatCompletions);
            assert_eq!(c.backend, "openai-chat");
        },
    ),
    // 11. benchmarks/auto_tune/auto_tune.sh, the request-rate-inf run ($MODEL, $INPUT_LEN,
    // $OUTPUT_LEN, $MAX_LATENCY_ALLOWED_MS and the prefix length at the script's defaults)
    (
        "benchmarks/auto_tune/auto_tune.sh",
        "vllm bench serve \\
        --backend vllm \\
        --model meta-llama/Llama-3.1-8B-Instruct  \\
        --dataset-name random \\
        --random-input-len 4000 \\
        --random-output-len 16 \\
        --ignore-eos \\
        --disable-tqdm \\
        --request-rate inf \\
        --percentile-metrics ttft,tpot,itl,e2el \\
        --goodput e2el:100000000000 \\
        --num-prompts 1000 \\
        --random-prefix-len 0 \\
        --port 8004",
        |c| {
            assert_eq!(external(c), "http://127.0.0.1:8004");
            assert!(c.ignore_eos);
            assert!(!c.progress, "--disable-tqdm");
            assert!(matches!(
                c.plan.mode,
                LoadMode::Open {
                    pacing: Pacing::AllAtOnce,
                    max_in_flight: None
                }
            ));
            assert_eq!(
                c.percentile_metrics.as_deref(),
                Some(&["ttft", "tpot", "itl", "e2el"].map(String::from)[..])
            );
            assert_eq!(c.slo.e2el_ms, Some(1e11));
            assert_eq!(random_lengths(c).0, LengthDist::Fixed { tokens: 4000 });
        },
    ),
    // 12. benchmarks/auto_tune/auto_tune.sh, the stepped request-rate run
    (
        "benchmarks/auto_tune/auto_tune.sh",
        "vllm bench serve \\
                --backend vllm \\
                --model meta-llama/Llama-3.1-8B-Instruct  \\
                --dataset-name random \\
                --random-input-len 4000 \\
                --random-output-len 16 \\
                --ignore-eos \\
                --disable-tqdm \\
                --request-rate 7 \\
                --percentile-metrics ttft,tpot,itl,e2el \\
                --goodput e2el:100000000000 \\
                --num-prompts 100 \\
                --random-prefix-len 0 \\
                --port 8004",
        |c| {
            assert!(matches!(
                c.plan.mode,
                LoadMode::Open {
                    pacing: Pacing::Rate {
                        rate: 7.0,
                        arrival: Arrival::Gamma { burstiness: 1.0 }
                    },
                    max_in_flight: None
                }
            ));
            assert_eq!(c.plan.stop, Stop::Requests(100));
        },
    ),
    // 13. benchmarks/auto_tune/auto_tune.sh, the final profiling run
    (
        "benchmarks/auto_tune/auto_tune.sh",
        "vllm bench serve \\
        --backend vllm \\
        --model meta-llama/Llama-3.1-8B-Instruct \\
        --dataset-name random \\
        --random-input-len 4000 \\
        --random-output-len 16 \\
        --ignore-eos \\
        --disable-tqdm \\
        --request-rate 7 \\
        --percentile-metrics ttft,tpot,itl,e2el \\
        --goodput e2el:100000000000 \\
        --num-prompts 100 \\
        --random-prefix-len 0 \\
        --port 8004 \\
        --profile",
        |c| {
            assert!(c.compat_notes.iter().any(|n| n.contains("--profile")));
            assert_eq!(c.request_rate, 7.0);
        },
    ),
    // 14. examples/others/lmcache/disagg_prefill_lmcache_v1/disagg_example_nixl.sh
    // ($(date +%s) as a fixed number)
    (
        "examples/others/lmcache/disagg_prefill_lmcache_v1/disagg_example_nixl.sh",
        "vllm bench serve --port 9000 --seed 1733333333 \\
        --model meta-llama/Llama-3.1-8B-Instruct \\
        --dataset-name random --random-input-len 7500 --random-output-len 200 \\
        --num-prompts 30 --burstiness 100 --request-rate 1",
        |c| {
            assert_eq!(c.seed, 1_733_333_333);
            assert!(matches!(
                c.plan.mode,
                LoadMode::Open {
                    pacing: Pacing::Rate {
                        rate: 1.0,
                        arrival: Arrival::Gamma { burstiness: 100.0 }
                    },
                    ..
                }
            ));
            assert_eq!(external(c), "http://127.0.0.1:9000");
        },
    ),
    // 15. docs/benchmarking/sweeps.md, the --bench-cmd of `vllm bench sweep serve`
    (
        "docs/benchmarking/sweeps.md",
        "vllm bench serve --model meta-llama/Llama-2-7b-chat-hf --backend vllm --endpoint /v1/completions --dataset-name sharegpt --dataset-path benchmarks/ShareGPT_V3_unfiltered_cleaned_split.json",
        |c| {
            assert_eq!(dataset(c).0, DatasetKind::ShareGpt);
            // vLLM's default --num-prompts.
            assert_eq!(c.plan.stop, Stop::Requests(1000));
        },
    ),
    // 16. vllm/benchmarks/serve.py (vLLM 0.11.0) module docstring, its placeholders at the
    // defaults it names
    (
        "vllm/benchmarks/serve.py (0.11.0)",
        "vllm bench serve \\
        --backend openai \\
        --label mylabel \\
        --model facebook/opt-125m \\
        --dataset-name random \\
        --request-rate inf \\
        --num-prompts 1000",
        |c| {
            assert_eq!(c.label.as_deref(), Some("mylabel"));
            assert_eq!(c.backend, "openai");
            assert_eq!(c.plan.stop, Stop::Requests(1000));
        },
    ),
    // 17. vllm/benchmarks/serve.py (vLLM 0.10.1) module docstring: --endpoint-type, the
    // deprecated name of --backend
    (
        "vllm/benchmarks/serve.py (0.10.1)",
        "vllm bench serve \\
        --endpoint-type openai-chat \\
        --label mylabel \\
        --model facebook/opt-125m \\
        --dataset-name random \\
        --request-rate inf \\
        --num-prompts 1000",
        |c| {
            assert_eq!(c.backend, "openai-chat");
            // vLLM needs --endpoint too; servebench takes the backend's.
            assert_eq!(c.endpoint, Endpoint::ChatCompletions);
        },
    ),
    // 18. vllm/benchmarks/serve.py (main) module docstring: the general length flags
    (
        "vllm/benchmarks/serve.py (main)",
        "vllm bench serve \\
        --backend openai \\
        --label mylabel \\
        --model facebook/opt-125m \\
        --dataset-name random \\
        --input-len 256 \\
        --output-len 64 \\
        --request-rate inf \\
        --num-prompts 1000",
        |c| {
            assert_eq!(
                random_lengths(c),
                (LengthDist::Fixed { tokens: 256 }, LengthDist::Fixed { tokens: 64 })
            );
        },
    ),
    // 19. benchmarks/README.md (before `vllm bench serve`: the same parser as
    // benchmarks/benchmark_serving.py), "Example - Online Benchmark"
    (
        "benchmarks/README.md",
        "python3 vllm/benchmarks/benchmark_serving.py \\
  --backend vllm \\
  --model NousResearch/Hermes-3-Llama-3.1-8B \\
  --endpoint /v1/completions \\
  --dataset-name sharegpt \\
  --dataset-path <your data path>/ShareGPT_V3_unfiltered_cleaned_split.json \\
  --num-prompts 10",
        |c| {
            assert_eq!(dataset(c).0, DatasetKind::ShareGpt);
            assert_eq!(c.plan.stop, Stop::Requests(10));
        },
    ),
    // 20. benchmarks/README.md, "Custom Dataset"
    (
        "benchmarks/README.md",
        "python3 benchmarks/benchmark_serving.py --port 9001 --save-result --save-detailed \\
  --backend vllm \\
  --model meta-llama/Llama-3.1-8B-Instruct \\
  --endpoint /v1/completions \\
  --dataset-name custom \\
  --dataset-path <path-to-your-data-jsonl> \\
  --custom-skip-chat-template \\
  --num-prompts 80 \\
  --max-concurrency 1 \\
  --temperature=0.3 \\
  --top-p=0.75 \\
  --result-dir \"./log/\"",
        |c| {
            assert_eq!(external(c), "http://127.0.0.1:9001");
            assert_eq!(c.body_extra["temperature"], 0.3);
        },
    ),
    // 21. examples/online_serving/elastic_ep/bench.sh (its variables at their defaults)
    (
        "examples/online_serving/elastic_ep/bench.sh",
        "vllm bench serve \\
    --model deepseek-ai/DeepSeek-V2-Lite \\
    --host localhost \\
    --port 8006 \\
    --num-prompts 20 \\
    --request-rate 5",
        |c| {
            assert_eq!(external(c), "http://localhost:8006");
            assert_eq!(c.request_rate, 5.0);
            assert_eq!(c.plan.stop, Stop::Requests(20));
            assert!(matches!(c.workload, Workload::Random(_)), "vLLM's default dataset");
        },
    ),
    // 22. examples/online_serving/wide_ep/run_benchmark.sh (EXPERIMENT_TAG=dpep16,
    // concurrency 4096, the script's other variables as it sets them)
    (
        "examples/online_serving/wide_ep/run_benchmark.sh",
        "vllm bench serve \\
        --base-url \"http://127.0.0.1:8000\" \\
        --model \"deepseek-ai/DeepSeek-V3-0324\" \\
        --served-model-name \"dsv3\" \\
        --random-input-len \"2\" \\
        --random-output-len \"256\" \\
        --num-prompts \"40960\" \\
        --max-concurrency \"4096\" \\
        --ready-check-timeout-sec 0 \\
        --save-result \\
        --result-dir \"results/dpep16\" \\
        --request-id-prefix \"dpep16\" \\
        --result-filename \"c4096_20260101_000000.json\"",
        |c| {
            assert_eq!(external(c), "http://127.0.0.1:8000");
            assert_eq!(c.model.as_deref(), Some("deepseek-ai/DeepSeek-V3-0324"));
            assert_eq!(c.served_model_name.as_deref(), Some("dsv3"));
            assert_eq!(c.request_id_prefix.as_deref(), Some("dpep16"));
            assert!(c.ready_check_timeout.is_zero());
            assert!(matches!(c.plan.mode, LoadMode::Closed { concurrency } if concurrency.get() == 4096));
            assert_eq!(c.result_filename.as_deref(), Some("c4096_20260101_000000.json"));
            assert_eq!(c.result_dir, Path::new("results/dpep16"));
        },
    ),
    // 23. examples/online_serving/disaggregated_serving_p2p_nccl_xpyd/disagg_example_p2p_nccl_xpyd.sh
    // ($MODEL at its default, $(date +%s) as a fixed number)
    (
        "examples/online_serving/disaggregated_serving_p2p_nccl_xpyd/disagg_example_p2p_nccl_xpyd.sh",
        "vllm bench serve --port 8000 --seed 1733333333 \\
        --model meta-llama/Llama-3.1-8B-Instruct \\
        --dataset-name random --random-input-len 7500 --random-output-len 200 \\
        --num-prompts 1 --burstiness 100 --request-rate 2",
        |c| {
            assert_eq!(external(c), "http://127.0.0.1:8000");
            assert_eq!(c.burstiness, 100.0);
            assert_eq!(random_lengths(c).0, LengthDist::Fixed { tokens: 7500 });
        },
    ),
];

/// Command lines servebench refuses, each with the reason it must give (a dataset or backend
/// it does not have, or a flag whose absence would change what is measured).
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
  --backend openai-chat \\
  --model Qwen/Qwen2-VL-7B-Instruct \\
  --endpoint /v1/chat/completions \\
  --dataset-name hf \\
  --dataset-path lmarena-ai/VisionArena-Chat \\
  --hf-split train \\
  --num-prompts 1000",
        "not supported by servebench",
    ),
    (
        "docs/contributing/benchmarks.md",
        "vllm bench serve \\
  --backend openai-chat \\
  --endpoint-type openai-chat \\
  --model Qwen/Qwen2-VL-7B-Instruct \\
  --endpoint /v1/chat/completions \\
  --dataset-name hf \\
  --dataset-path lmarena-ai/VisionArena-Chat \\
  --hf-split train \\
  --num-prompts 1000",
        "not supported by servebench",
    ),
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
    --model meta-llama/Meta-Llama-3-8B-Instruct \\
    --dataset-name spec_bench \\
    --dataset-path \"<YOUR_DOWNLOADED_PATH>/data/spec_bench/question.jsonl\" \\
    --num-prompts 2048",
        "use custom",
    ),
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
    --backend openai-responses \\
    --endpoint /v1/responses \\
    --model openai/gpt-oss-20b \\
    --dataset-name random \\
    --random-input-len 1024 \\
    --random-output-len 1024 \\
    --num-prompts 200",
        "openai, vllm, openai-chat",
    ),
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
    --model openai/whisper-large-v3-turbo \\
    --backend openai-audio \\
    --dataset-name hf \\
    --dataset-path facebook/voxpopuli --hf-subset en --hf-split test --no-stream --trust-remote-code \\
    --num-prompts 99999999 \\
    --no-oversample \\
    --endpoint /v1/audio/transcriptions \\
    --ready-check-timeout-sec 600 \\
    --save-result \\
    --max-concurrency 512",
        "text generation only",
    ),
    (
        "docs/benchmarking/cli.md",
        "vllm bench serve \\
    --model Qwen/Qwen2.5-VL-3B-Instruct \\
    --backend openai-chat \\
    --endpoint /v1/chat/completions \\
    --dataset-name random \\
    --request-rate 4 \\
    --probe-request-rate 20",
        "--probe-request-rate",
    ),
    (
        "benchmarks/disagg_benchmarks/disagg_overhead_benchmark.sh",
        "python3 ../benchmark_serving.py \\
          --backend vllm \\
          --model meta-llama/Meta-Llama-3.1-8B-Instruct \\
          --dataset-name sonnet \\
          --dataset-path ../sonnet_4x.txt \\
          --sonnet-input-len 2048 \\
          --sonnet-output-len 1 \\
          --sonnet-prefix-len 50 \\
          --num-prompts 10 \\
          --port 8100 \\
          --save-result \\
          --result-dir ./results \\
          --result-filename disagg_prefill_2xtp4.json \\
          --request-rate \"inf\"",
        "not supported by servebench",
    ),
];

#[test]
fn real_vllm_bench_serve_command_lines_parse_with_their_meaning() {
    assert!(ACCEPTED.len() >= 20, "the table holds at least 20 lines");
    let d = data();
    let out = tempfile::tempdir().unwrap();
    for (i, (source, line, check)) in ACCEPTED.iter().enumerate() {
        let c = parse(&d, out.path(), line)
            .unwrap_or_else(|e| panic!("row {} ({source}) refused: {e}\n{line}", i + 1));
        check(&c);
    }
}

#[test]
fn lines_servebench_cannot_run_are_refused_with_the_reason() {
    let d = data();
    let out = tempfile::tempdir().unwrap();
    for (source, line, says) in REFUSED {
        let e = parse(&d, out.path(), line)
            .err()
            .unwrap_or_else(|| panic!("({source}) accepted:\n{line}"));
        assert!(e.contains(says), "({source}) {e}");
    }
}

#[test]
fn the_splitter_handles_the_quoting_these_lines_use() {
    assert_eq!(
        shell_words("a --x=\"./log/\" \\\n  --b '{\"k\": 1}' c"),
        ["a", "--x=./log/", "--b", "{\"k\": 1}", "c"]
    );
}

/// A run with vLLM's flags against the embedded server writes vLLM's result keys with vLLM's
/// meanings.
#[test]
fn a_run_with_vllm_flags_writes_vllms_result_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::run_config(
        dir.path(),
        &[
            "--backend",
            "vllm",
            "--num-prompts",
            "12",
            "--max-concurrency",
            "3",
            "--random-input-len",
            "8",
            "--random-output-len",
            "4",
            "--ttft-ms",
            "1",
            "--itl-ms",
            "1",
            "--save-result",
            "--save-detailed",
            "--percentile-metrics",
            "ttft,e2el",
            "--metric-percentiles",
            "99",
            "--metadata",
            "tp=1",
            "--temperature",
            "0",
            "--request-id-prefix",
            "compat-",
            "--telemetry-interval-ms",
            "0",
        ],
    )
    .unwrap();
    let out = common::rt()
        .block_on(servebench::app::run_benchmark(&cfg, false))
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out.summary_path).unwrap()).unwrap();
    assert_eq!(v["backend"], "vllm");
    assert_eq!(v["completed"], 12);
    assert_eq!(v["rtfx"], 0.0);
    assert_eq!(v["tp"], "1");
    for k in [
        "latencies",
        "queue_times",
        "start_times",
        "ttfts",
        "itls",
        "input_lens",
        "output_lens",
        "errors",
        "generated_texts",
    ] {
        assert_eq!(v[k].as_array().map(Vec::len), Some(12), "{k}");
    }
    let lat = v["latencies"].as_array().unwrap();
    assert!(lat.iter().all(|l| l.as_f64().unwrap() > 0.0), "{lat:?}");
    assert!(v["output_lens"].as_array().unwrap().iter().all(|n| n == 4));
    for k in [
        "mean_ttft_ms",
        "p99_ttft_ms",
        "median_e2el_ms",
        "std_e2el_ms",
    ] {
        assert!(v[k].is_number(), "{k}");
    }
    for k in ["mean_tpot_ms", "p99_itl_ms"] {
        assert!(v.get(k).is_none(), "{k} was not asked for");
    }
    // A result rebuilt from the journal alone has the same arrays.
    let rebuilt = dir.path().join("rebuilt.json");
    let st = common::bin()
        .args(["report", "--journal"])
        .arg(&out.journal_path)
        .arg("--output")
        .arg(&rebuilt)
        .output()
        .unwrap();
    assert_eq!(
        st.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rebuilt).unwrap()).unwrap();
    for k in [
        "latencies",
        "queue_times",
        "start_times",
        "output_lens",
        "rtfx",
        "tp",
    ] {
        assert_eq!(again[k], v[k], "{k}");
    }
}

/// A ramp runs its requests and names its file as vLLM does.
#[test]
fn a_ramped_run_sends_every_request_and_is_named_after_the_ramp() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::run_config(
        dir.path(),
        &[
            "--num-prompts",
            "20",
            "--ramp-up-strategy",
            "linear",
            "--ramp-up-start-rps",
            "50",
            "--ramp-up-end-rps",
            "400",
            "--random-input-len",
            "8",
            "--random-output-len",
            "2",
            "--ttft-ms",
            "1",
            "--itl-ms",
            "1",
            "--telemetry-interval-ms",
            "0",
        ],
    )
    .unwrap();
    let out = common::rt()
        .block_on(servebench::app::run_benchmark(&cfg, false))
        .unwrap();
    assert_eq!(out.summary.completed, 20);
    let name = out
        .summary_path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        name.starts_with("embedded-ramp-up-linear-50qps-400qps-"),
        "{name}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out.summary_path).unwrap()).unwrap();
    assert_eq!(v["ramp_up_strategy"], "linear");
    assert_eq!(v["request_rate"], "inf");
    // One event per whole request/s from 50 to 400, as vLLM writes them.
    let ev = v["rps_change_events"].as_array().unwrap();
    assert_eq!(ev.len(), 351);
    assert_eq!((&ev[0]["rps"], &ev[350]["rps"]), (&50.into(), &400.into()));
}
