//! Bad input through the binary: every invalid flag, value, combination and suite file gets
//! the documented exit status (2: bad usage) and a message naming the field, the bad value and
//! a fix. Plus property-based fuzzing of the SSE parser / chunk classifier and the suite config
//! loader: they never panic, stay within their memory cap, and errors name the file.
//!
//! Run with `--nocapture` to see every case and its message.

use proptest::prelude::*;
use servebench::openai::{classify_event, ChunkInfo, SseEvent, SseParser};
use servebench::suite::config::SuiteConfig;
use std::path::Path;
use std::process::Command as Proc;

fn bin() -> Proc {
    let mut p = Proc::new(env!("CARGO_BIN_EXE_servebench"));
    p.env_remove("OPENAI_API_KEY");
    p
}

/// One bad command line: the arguments, the exit status it must get, and words its stderr
/// must contain (the field, the bad value, the fix).
struct Case {
    args: &'static [&'static str],
    status: i32,
    must_say: &'static [&'static str],
}

const fn c(args: &'static [&'static str], status: i32, must_say: &'static [&'static str]) -> Case {
    Case {
        args,
        status,
        must_say,
    }
}

/// Flags and values of `run`, `serve`, `predict`, `sim serve`, `report` and the top level.
const FLAG_CASES: &[Case] = &[
    // run: load
    c(
        &["run", "--request-rate", "fast"],
        2,
        &["--request-rate", "fast", "inf"],
    ),
    c(
        &["run", "--request-rate", "-1"],
        2,
        &["--request-rate", "-1", "positive"],
    ),
    c(
        &["run", "--num-prompts", "0"],
        2,
        &["--num-prompts", "0", "at least 1"],
    ),
    c(
        &["run", "--num-prompts", "abc"],
        2,
        &["--num-prompts", "abc"],
    ),
    c(
        &["run", "--max-concurrency", "0"],
        2,
        &["--max-concurrency", "0", "at least 1"],
    ),
    c(
        &["run", "--arrival", "lumpy"],
        2,
        &["--arrival", "lumpy", "poisson, gamma or constant"],
    ),
    c(
        &["run", "--burstiness", "0"],
        2,
        &["--burstiness", "0", "from 0.001 to 1000"],
    ),
    c(
        &["run", "--duration", "-1"],
        2,
        &["--duration", "-1", "positive"],
    ),
    c(
        &["run", "--client-threads", "0"],
        2,
        &["--client-threads", "0", "at least 1"],
    ),
    // run: workload
    c(
        &["run", "--random-input-len", "0"],
        2,
        &["--random-input-len", "0", "at least 1"],
    ),
    c(
        &["run", "--random-input-len", "-5"],
        2,
        &["--random-input-len", "-5"],
    ),
    c(
        &["run", "--random-output-len", "0"],
        2,
        &["--random-output-len", "0", "at least 1"],
    ),
    c(
        &["run", "--random-range-ratio", "1.5"],
        2,
        &["--random-range-ratio", "1.5", "[0, 1)"],
    ),
    c(
        &["run", "--min-tokens", "500", "--random-output-len", "10"],
        2,
        &["--min-tokens", "500", "--random-output-len", "lower it"],
    ),
    c(
        &["run", "--tokenizer", "/nonexistent/tokenizer.json"],
        2,
        &["--tokenizer", "/nonexistent/tokenizer.json", "no such file"],
    ),
    // run: metrics
    c(
        &["run", "--goodput", "ttft"],
        2,
        &["--goodput", "ttft", "KEY:MS"],
    ),
    c(
        &["run", "--goodput", "foo:10"],
        2,
        &["--goodput", "foo:10", "ttft, tpot or e2el"],
    ),
    c(
        &["run", "--goodput", "ttft:-3"],
        2,
        &["--goodput", "ttft:-3", "positive"],
    ),
    c(
        &["run", "--fail-under-goodput", "2"],
        2,
        &["--fail-under-goodput", "2", "between 0 and 1"],
    ),
    c(
        &["run", "--metric-percentiles", "50,101"],
        2,
        &["--metric-percentiles", "101", "between 0 and 100"],
    ),
    // run: target
    c(
        &["run", "--endpoint", "/v1/embeddings"],
        2,
        &["--endpoint", "/v1/embeddings", "/v1/completions"],
    ),
    c(
        &["run", "--usage", "sometimes"],
        2,
        &["--usage", "sometimes", "auto, final or none"],
    ),
    c(
        &["run", "--request-timeout", "0"],
        2,
        &["--request-timeout", "0", "positive"],
    ),
    c(
        &["run", "--base-url", "ftp://x"],
        2,
        &["--base-url", "ftp://x", "http://"],
    ),
    c(
        &["run", "--base-url", "http://127.0.0.1:8000/v1"],
        2,
        &["--base-url", "/v1", "without /v1"],
    ),
    c(
        &["run", "--base-url", "http://u:pw-secret@127.0.0.1:8000"],
        2,
        &["--base-url", "credentials", "--api-key"],
    ),
    c(
        &["run", "--result-filename", "../../etc/x.json"],
        2,
        &[
            "--result-filename",
            "../../etc/x.json",
            "without directories",
        ],
    ),
    // run: embedded server and faults
    c(
        &["run", "--fault", "http_600=0.1"],
        2,
        &["--fault", "http_600=0.1", "http_500"],
    ),
    c(
        &["run", "--fault", "http_500=1.5"],
        2,
        &["--fault", "http_500=1.5", "between 0 and 1"],
    ),
    c(
        &["run", "--fault", "http_500"],
        2,
        &["--fault", "http_500", "KIND=FRACTION"],
    ),
    c(
        &[
            "run",
            "--fault",
            "http_500=0.7",
            "--fault",
            "disconnect=0.7",
        ],
        2,
        &["--fault", "1.4", "at or below 1"],
    ),
    c(
        &[
            "run",
            "--base-url",
            "http://127.0.0.1:9",
            "--fault",
            "http_500=0.1",
        ],
        2,
        &["--fault", "http_500=0.1", "embedded server", "--base-url"],
    ),
    c(
        &["run", "--itl-ms", "-1"],
        2,
        &["--itl-ms", "-1", "from 0 to 3600000"],
    ),
    c(
        &["run", "--ttft-ms", "nan"],
        2,
        &["--ttft-ms", "NaN", "from 0 to 3600000"],
    ),
    c(
        &["run", "--tokens-per-chunk", "0"],
        2,
        &["--tokens-per-chunk", "0", "at least 1"],
    ),
    c(
        &["run", "--server-threads", "0"],
        2,
        &["--server-threads", "0", "at least 1"],
    ),
    c(
        &["run", "--fault-stall-ms", "-5"],
        2,
        &["--fault-stall-ms", "-5", "from 0 to 3600000"],
    ),
    c(&["run", "--no-such-flag"], 2, &["--no-such-flag", "Usage"]),
    // run: runtime problems the user fixes (status 1: the run could not be done)
    c(
        &["run", "--base-url", "http://127.0.0.1:9"],
        1,
        &["127.0.0.1:9", "--base-url", "running"],
    ),
    // serve
    c(
        &["serve", "--port", "70000"],
        2,
        &["--port", "70000", "0..=65535"],
    ),
    c(
        &["serve", "--host", "example.com"],
        2,
        &["--host", "example.com", "127.0.0.1"],
    ),
    c(
        &["serve", "--fault", "stall=2"],
        2,
        &["--fault", "stall=2", "between 0 and 1"],
    ),
    c(
        &["serve", "--itl-ms", "-2"],
        2,
        &["--itl-ms", "-2", "from 0 to 3600000"],
    ),
    c(
        &["serve", "--tokens-per-chunk", "0"],
        2,
        &["--tokens-per-chunk", "0", "at least 1"],
    ),
    c(&["serve", "--bogus"], 2, &["--bogus", "Usage"]),
    // predict and sim serve: the simulated target
    c(
        &["predict", "--engine", "tgi"],
        2,
        &["--engine", "tgi", "vllm and sglang"],
    ),
    c(&["predict", "--gpu", "h900"], 2, &["gpu", "h900", "A10G"]),
    c(
        &["predict", "--sim-model", "meta/nope"],
        2,
        &["model", "meta/nope", "facebook/opt-125m"],
    ),
    c(
        &["predict", "--request-rate", "zero"],
        2,
        &["--request-rate", "zero", "inf"],
    ),
    c(
        &["predict", "--num-prompts", "0"],
        2,
        &["--num-prompts", "0", "at least 1"],
    ),
    c(
        &["predict", "--max-concurrency", "0"],
        2,
        &["--max-concurrency", "0", "at least 1"],
    ),
    c(
        &["predict", "--tokenizer", "/nope.json"],
        2,
        &["--tokenizer", "/nope.json", "no such file"],
    ),
    c(
        &["sim", "serve", "--engine", "foo"],
        2,
        &["--engine", "foo", "vllm and sglang"],
    ),
    c(
        &["sim", "serve", "--gpu", "foo"],
        2,
        &["gpu", "foo", "A10G"],
    ),
    // report and the top level
    c(
        &["report", "--journal", "/nonexistent.jsonl"],
        2,
        &["journal", "/nonexistent.jsonl", "No such file"],
    ),
    c(&["report"], 2, &["--journal", "required"]),
    c(
        &["suite", "/nonexistent.toml"],
        2,
        &["/nonexistent.toml", "give a path"],
    ),
    c(&["frobnicate"], 2, &["frobnicate", "subcommand"]),
];

fn run_case(args: &[&str], extra: &[&str]) -> (Option<i32>, String) {
    let out = bin().args(args).args(extra).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn first_line(err: &str) -> String {
    err.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

#[test]
fn every_bad_flag_gets_its_status_and_a_message_naming_field_value_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut failures = Vec::new();
    println!("\n| command line | exit | message |\n| --- | ---: | --- |");
    for case in FLAG_CASES {
        // Runs that would start never get far: nothing here may measure anything for long.
        let mut extra: Vec<&str> = Vec::new();
        if matches!(case.args[0], "run" | "predict") {
            extra.extend(["--result-dir", d]);
            if !case.args.contains(&"--num-prompts") {
                extra.extend(["--num-prompts", "2"]);
            }
        }
        let (code, err) = run_case(case.args, &extra);
        let msg = first_line(&err);
        println!(
            "| `{}` | {} | {} |",
            case.args.join(" "),
            code.unwrap_or(-1),
            msg
        );
        if code != Some(case.status) {
            failures.push(format!(
                "{:?}: exit {code:?}, want {}: {err}",
                case.args, case.status
            ));
        }
        for w in case.must_say {
            if !err.contains(w) {
                failures.push(format!("{:?}: stderr lacks {w:?}: {err}", case.args));
            }
        }
        assert!(!err.contains("panicked"), "{:?}: {err}", case.args);
    }
    println!("{} flag cases", FLAG_CASES.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const GOOD_SUITE: &str = r#"title = "t"
[[targets]]
name = "a"
[targets.launch]
kind = "sim"
engine = "vllm"
gpu = "a10g"
model = "facebook/opt-125m"
[[workloads]]
name = "W"
requests = 4
max_tokens = 4
concurrency = 1
"#;

/// A suite file mutation: (what it tests, the file text, words stderr must contain).
fn suite_cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let sub = |from: &str, to: &str| {
        assert!(GOOD_SUITE.contains(from), "{from}");
        GOOD_SUITE.replacen(from, to, 1)
    };
    vec![
        ("bad TOML", "title = \"t\n".into(), vec!["line 1", "expected"]),
        ("unknown top-level key", format!("colour = 1\n{GOOD_SUITE}"), vec!["colour", "unknown field", "title"]),
        ("typo in a workload key", sub("concurrency = 1", "concurency = 1"), vec!["concurency", "unknown field", "concurrency"]),
        ("unknown [defaults] key", format!("{GOOD_SUITE}[defaults]\nwarmup = 3\n"), vec!["warmup", "unknown field", "warmups"]),
        ("wrong type", sub("requests = 4", "requests = \"four\""), vec!["requests", "four", "expected u64"]),
        ("negative count", sub("requests = 4", "requests = -4"), vec!["requests", "-4", "expected u64"]),
        ("zero requests", sub("requests = 4", "requests = 0"), vec!["`W`", "requests", "at least 1"]),
        ("missing title", sub("title = \"t\"", ""), vec!["title", "missing field"]),
        ("target kind that does not exist", sub("kind = \"sim\"", "kind = \"kubernetes\""), vec!["kind", "kubernetes", "external", "docker"]),
        ("unknown sim engine", sub("engine = \"vllm\"", "engine = \"tgi\""), vec!["`a`", "tgi", "vllm, sglang"]),
        ("unknown sim gpu", sub("gpu = \"a10g\"", "gpu = \"h900\""), vec!["`a`", "h900", "A10G"]),
        ("unknown sim model", sub("model = \"facebook/opt-125m\"", "model = \"x/y\""), vec!["`a`", "x/y", "facebook/opt-125m"]),
        ("sim target without gpu", sub("gpu = \"a10g\"\n", ""), vec!["`a`", "gpu", "a10g"]),
        ("unknown key in [targets.launch]", sub("gpu = \"a10g\"", "gpu = \"a10g\"\ngpus = 2"), vec!["gpus", "unknown field"]),
        ("duplicate target names", format!("{GOOD_SUITE}[[targets]]\nname = \"a\"\n[targets.launch]\nkind = \"sim\"\nengine = \"vllm\"\ngpu = \"a10g\"\nmodel = \"facebook/opt-125m\"\n"), vec!["`a`", "used twice", "unique"]),
        ("target name with a slash", sub("name = \"a\"", "name = \"a/../b\""), vec!["a/../b", "no slash"]),
        ("bad endpoint in [defaults]", format!("{GOOD_SUITE}[defaults]\nendpoint = \"/v1/embed\"\n"), vec!["endpoint", "/v1/embed", "/v1/completions"]),
        ("bad endpoint in a workload", sub("concurrency = 1", "concurrency = 1\nendpoint = \"/v2/x\""), vec!["`W`", "endpoint", "/v2/x", "/v1/chat/completions"]),
        ("negative request rate", sub("concurrency = 1", "request_rate = -3.0"), vec!["`W`", "request_rate", "-3", "positive"]),
        ("zero concurrency", sub("concurrency = 1", "concurrency = 0"), vec!["`W`", "concurrency", "at least 1"]),
        ("unknown dataset", sub("concurrency = 1", "concurrency = 1\ndataset = \"sharegpt\""), vec!["`W`", "sharegpt", "random"]),
        ("repeats = 0", format!("repeats = 0\n{GOOD_SUITE}"), vec!["repeats", "0", "1 or more"]),
        ("no workloads", "title = \"t\"\nworkloads = []\n[[targets]]\nname = \"a\"\n[targets.launch]\nkind = \"sim\"\nengine = \"vllm\"\ngpu = \"a10g\"\nmodel = \"facebook/opt-125m\"\n".into(), vec!["[[workloads]]", "add at least one"]),
        ("unknown instance", format!("instance = \"p9.mega\"\n{GOOD_SUITE}"), vec!["p9.mega", "g5.xlarge", "price"]),
        ("external target with a bad URL", sub("kind = \"sim\"\nengine = \"vllm\"\ngpu = \"a10g\"\nmodel = \"facebook/opt-125m\"", "kind = \"external\"\nbase_url = \"ftp://x\""), vec!["`a`", "ftp://x", "http://127.0.0.1:8000"]),
        ("process target with an empty command", sub("kind = \"sim\"\nengine = \"vllm\"\ngpu = \"a10g\"\nmodel = \"facebook/opt-125m\"", "kind = \"process\"\ncommand = []"), vec!["`a`", "command", "empty", "program"]),
    ]
}

#[test]
fn every_bad_suite_file_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let cases = suite_cases();
    println!("\n| suite file problem | exit | message (first line) |\n| --- | ---: | --- |");
    for (i, (what, text, words)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let results = dir.path().join(format!("results{i}"));
        let out = bin()
            .arg("suite")
            .arg(&file)
            .arg("--result-dir")
            .arg(&results)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let msg = first_line(&err).replace(dir.path().to_str().unwrap(), "…");
        // Multi-line TOML diagnostics: show the line that says what is wrong too.
        let detail = err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains('|'))
            .nth(1)
            .map(|l| format!(" — {}", l.trim()))
            .unwrap_or_default();
        println!(
            "| {what} | {} | {msg}{detail} |",
            out.status.code().unwrap_or(-1)
        );
        if out.status.code() != Some(2) {
            failures.push(format!(
                "{what}: exit {:?}, want 2: {err}",
                out.status.code()
            ));
        }
        // Nothing ran: a bad file is refused before any target starts.
        if results.exists() {
            failures.push(format!("{what}: results were written: {err}"));
        }
        let names_file = format!("case{i}.toml");
        let mut want: Vec<&str> = words.clone();
        want.push(&names_file);
        for w in want {
            if !err.contains(w) {
                failures.push(format!("{what}: stderr lacks {w:?}: {err}"));
            }
        }
    }
    println!("{} suite-file cases", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_shipped_suite_configs_pass_the_stricter_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            SuiteConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3);
}

// ------------------------------------------------------------------------------------------
// Fuzzing (property tests). Case counts are fixed so the run is bounded and reported.
// ------------------------------------------------------------------------------------------

const SSE_LIMIT: usize = 2048;

/// Feed `bytes` in pieces cut at `cuts`; classify every event. Returns the events' payloads
/// (event name, data) and checks the memory cap on each.
fn parse_split(bytes: &[u8], cuts: &[usize]) -> Vec<(Vec<u8>, Vec<u8>, String)> {
    let mut p = SseParser::with_limit(SSE_LIMIT);
    let mut out = Vec::new();
    let mut on = |e: SseEvent<'_>| {
        if let SseEvent::Message { event, data } = e {
            assert!(
                data.len() <= SSE_LIMIT,
                "data beyond the cap: {}",
                data.len()
            );
            out.push((event.to_vec(), data.to_vec(), kind(&classify_event(e))));
        } else {
            out.push((b"!too-large".to_vec(), Vec::new(), kind(&classify_event(e))));
        }
    };
    let mut last = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts {
        p.feed(&bytes[last..c], &mut on);
        last = c;
    }
    p.feed(&bytes[last..], &mut on);
    p.finish(&mut on);
    out
}

fn kind(c: &ChunkInfo) -> String {
    match c {
        ChunkInfo::Chunk {
            generated,
            finish,
            usage,
            tool_call,
        } => format!("chunk {generated:?} {finish} {usage:?} {tool_call}"),
        ChunkInfo::Done => "done".into(),
        ChunkInfo::Error(_) => "error".into(),
        ChunkInfo::Malformed(_) => "malformed".into(),
    }
}

/// Pieces SSE streams are made of, including the awkward ones.
fn sse_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"data: {\"choices\":[{\"index\":0,\"text\":\"h\\u00e9llo\",\"finish_reason\":null}]}\n\n".to_vec()),
        Just(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\r\n\r\n".to_vec()),
        Just("data: {\"choices\":[{\"delta\":{\"content\":\"caf\u{e9} \u{1F600}\"}}]}\r\r".as_bytes().to_vec()),
        Just(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7}}\n\n".to_vec()),
        Just(b"event: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\n".to_vec()),
        Just(b"data: {\"error\":{\"message\":\"mid-stream\",\"code\":500}}\n\n".to_vec()),
        Just(b": keep-alive\n\n".to_vec()),
        Just(b"id: 7\nretry: 100\n".to_vec()),
        Just(b"data: {\"choices\":[{\"text\":\"tr".to_vec()),
        Just(b"data: [DONE]\n\n".to_vec()),
        Just(b"data:no-space\n\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' ')], 0..64),
        // An oversized line: the parser must poison itself, not grow.
        Just(vec![b'x'; SSE_LIMIT + 10]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Random bytes, random splits: never panics, never holds more than the cap, and the split
    /// never changes what is parsed.
    #[test]
    fn sse_parser_survives_any_bytes_split_anywhere(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = parse_split(&bytes, &[]);
        let split = parse_split(&bytes, &cuts);
        prop_assert_eq!(whole, split);
    }

    /// Streams built from real and awkward SSE pieces, split at random points (inside CRLF,
    /// inside a UTF-8 character, inside `data:`): the same events as the unsplit stream.
    #[test]
    fn sse_streams_of_real_pieces_parse_the_same_however_split(
        pieces in proptest::collection::vec(sse_piece(), 0..24),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let bytes: Vec<u8> = pieces.concat();
        let whole = parse_split(&bytes, &[]);
        let split = parse_split(&bytes, &cuts);
        prop_assert_eq!(whole, split);
    }
}

/// A fragment of TOML close to a suite file: keys it knows, keys it doesn't, values of every type.
fn toml_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("title"),
        Just("result_dir"),
        Just("instance"),
        Just("repeats"),
        Just("seed"),
        Just("name"),
        Just("kind"),
        Just("engine"),
        Just("gpu"),
        Just("model"),
        Just("requests"),
        Just("max_tokens"),
        Just("concurrency"),
        Just("request_rate"),
        Just("input_len"),
        Just("warmups"),
        Just("endpoint"),
        Just("command"),
        Just("base_url"),
        Just("port"),
        Just("image"),
        Just("dataset"),
        Just("groups"),
        Just("bogus"),
        Just("env"),
        Just("price"),
        Just("readiness"),
        Just("timeout_s"),
    ];
    let value = prop_oneof![
        Just("\"vllm\"".to_string()),
        Just("\"sim\"".to_string()),
        Just("\"process\"".to_string()),
        Just("\"docker\"".to_string()),
        Just("\"external\"".to_string()),
        Just("\"a10g\"".to_string()),
        Just("\"facebook/opt-125m\"".to_string()),
        Just("\"/v1/completions\"".to_string()),
        Just("[\"sh\", \"-c\", \"true\"]".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("inf".to_string()),
        Just("nan".to_string()),
        Just("-1".to_string()),
        Just("1e309".to_string()),
        Just("18446744073709551616".to_string()),
        Just("true".to_string()),
        Just("\"\"".to_string()),
        Just("{ HF_TOKEN = \"x\" }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
    ];
    prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[[targets]]".to_string()),
        Just("[targets.launch]".to_string()),
        Just("[[workloads]]".to_string()),
        Just("[defaults]".to_string()),
        Just("[price]".to_string()),
        Just("[targets.readiness]".to_string()),
        "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Suite-ish TOML: the loader never panics, and every error names the file.
    #[test]
    fn suite_config_loader_never_panics_and_errors_name_the_file(
        lines in proptest::collection::vec(toml_line(), 0..30),
    ) {
        let text = lines.join("\n");
        if let Err(e) = SuiteConfig::parse(&text, Path::new("fuzz-suite.toml")) {
            prop_assert!(e.to_string().contains("fuzz-suite.toml"), "{}", e);
        }
    }

    /// A valid suite file with one byte replaced, inserted or deleted.
    #[test]
    fn suite_config_with_one_byte_changed(pos in any::<usize>(), byte in any::<u8>(), op in 0u8..3) {
        let mut b = GOOD_SUITE.as_bytes().to_vec();
        let i = pos % b.len();
        match op {
            0 => b[i] = byte,
            1 => b.insert(i, byte),
            _ => { b.remove(i); }
        }
        let text = String::from_utf8_lossy(&b);
        if let Err(e) = SuiteConfig::parse(&text, Path::new("fuzz-suite.toml")) {
            prop_assert!(e.to_string().contains("fuzz-suite.toml"), "{}", e);
        }
    }
}

/// Two splits the fuzzer found that changed what was parsed (both fixed in `SseParser::feed`).
#[test]
fn sse_fuzz_findings_stay_fixed() {
    // 1. A UTF-8 BOM split across reads used to become part of the first field name, losing
    //    the first event.
    let stream = b"\xEF\xBB\xBFdata: {\"choices\":[{\"text\":\"a\"}]}\n\n";
    for cut in 0..=stream.len() {
        let got = parse_split(stream, &[cut]);
        assert_eq!(got.len(), 1, "cut {cut}: {got:?}");
        assert!(got[0].2.starts_with("chunk Content"), "cut {cut}: {got:?}");
    }
    // 2. A line over the cap poisoned the stream only when it arrived split; whole, it passed.
    let mut stream = b"data: [DONE]\n\n".to_vec();
    stream.splice(0..0, vec![b'x'; SSE_LIMIT + 5].into_iter().chain(*b"\n"));
    let whole = parse_split(&stream, &[]);
    for cut in [1, 100, SSE_LIMIT, SSE_LIMIT + 5, SSE_LIMIT + 6] {
        assert_eq!(parse_split(&stream, &[cut]), whole, "cut {cut}");
    }
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].2, "malformed", "{whole:?}");
}
