//! `run --dataset-name sharegpt-multi-turn` against the embedded server: every conversation of
//! a small ShareGPT file goes out turn by turn, each turn asking for the file's reply length
//! and carrying the history with the model's own replies. Bounded: 3 conversations, 7 turns
//! of at most 6 output tokens, 2 at once.

use servebench::app::run_benchmark;
use servebench::journal::read_journal;
use servebench::record::Phase;
use std::collections::HashMap;

mod common;
use common::{rt, run_config};

/// A file conversation as the test expects it: system prompt words, (user message, reply
/// length in the file) per turn.
type Expected<'a> = (u32, Vec<(&'a str, u32)>);

fn words(s: &str) -> u32 {
    s.split_whitespace().count() as u32
}

#[test]
fn a_sharegpt_file_is_replayed_turn_by_turn_with_its_reply_lengths() {
    let dir = tempfile::tempdir().unwrap();
    // (user message, reply length in the file) per turn; conversation "b" has a system prompt.
    let file = serde_json::json!([
        {"id": "a", "conversations": [
            {"from": "human", "value": "alpha one two"}, {"from": "gpt", "value": "r r r r"},
            {"from": "human", "value": "alpha three"}, {"from": "gpt", "value": "r r"}
        ]},
        {"id": "b", "conversations": [
            {"from": "system", "value": "you are terse"},
            {"from": "human", "value": "beta"}, {"from": "gpt", "value": "r r r r r r"},
            {"from": "human", "value": "beta again here now"}, {"from": "gpt", "value": "r"},
            {"from": "human", "value": "beta last"}, {"from": "gpt", "value": "r r r"}
        ]},
        {"id": "c", "conversations": [
            {"from": "human", "value": "gamma"}, {"from": "gpt", "value": "r r r r r"},
            {"from": "human", "value": "gamma two"}, {"from": "gpt", "value": "r r"}
        ]}
    ]);
    let path = dir.path().join("sharegpt.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let expected: HashMap<&str, Expected> = HashMap::from([
        ("alpha", (0, vec![("alpha one two", 4), ("alpha three", 2)])),
        (
            "beta",
            (
                3,
                vec![("beta", 6), ("beta again here now", 1), ("beta last", 3)],
            ),
        ),
        ("gamma", (0, vec![("gamma", 5), ("gamma two", 2)])),
    ]);

    let cfg = run_config(
        dir.path(),
        &[
            "--endpoint",
            "/v1/chat/completions",
            "--dataset-name",
            "sharegpt-multi-turn",
            "--dataset-path",
            path.to_str().unwrap(),
            "--max-concurrency",
            "2",
            "--save-detailed",
            "--no-nvml",
        ],
    )
    .unwrap();
    let out = rt().block_on(run_benchmark(&cfg, false)).unwrap();
    assert_eq!(out.summary.completed, 7, "{:?}", out.summary.errors_by_kind);
    let c = out.load.conversations.unwrap();
    assert_eq!((c.started, c.completed), (3, 3));

    let journal = read_journal(&out.journal_path).unwrap();
    let measured: Vec<_> = journal
        .records
        .iter()
        .filter(|r| r.phase == Phase::Measured)
        .collect();
    let mut seen = Vec::new();
    for conv in 0..3u64 {
        let mut turns: Vec<_> = measured
            .iter()
            .filter(|r| r.conversation == Some(conv))
            .collect();
        turns.sort_by_key(|r| r.turn);
        // Which file conversation this is: the one whose turn count and reply lengths match.
        let asks: Vec<u32> = turns.iter().map(|r| r.max_tokens).collect();
        let (name, (system, plan)) = expected
            .iter()
            .find(|(_, (_, p))| p.iter().map(|t| t.1).collect::<Vec<_>>() == asks)
            .unwrap_or_else(|| panic!("no conversation of the file asks for {asks:?}"));
        seen.push(*name);
        // The server counts content words: turn k carries the system prompt, every earlier
        // user message of the file and the model's own reply to it, then message k.
        let mut history = *system;
        for (k, (r, (user, _))) in turns.iter().zip(plan).enumerate() {
            assert_eq!(r.turn, Some(k as u32));
            history += words(user);
            let usage = r.usage.as_ref().expect("the embedded server reports usage");
            assert_eq!(usage.prompt_tokens, history, "{name} turn {k}");
            assert_eq!(r.prompt_tokens, history, "planned = sent, {name} turn {k}");
            history += words(
                r.output_text
                    .as_deref()
                    .expect("--save-detailed keeps replies"),
            );
        }
    }
    seen.sort();
    assert_eq!(seen, ["alpha", "beta", "gamma"]);
}
