//! What to send: prompts of planned token lengths and the output lengths to ask for.
//!
//! Everything here runs before (or beside) the timed path: prompts are built and, when a
//! tokenizer is given, checked to the exact token length up front, so the client never
//! tokenizes while it measures. This module never sends anything.
//!
//! Prompt lengths:
//! - with `--tokenizer tokenizer.json` (Hugging Face `tokenizers` format) prompts are made of
//!   whole vocabulary words and re-encoded until they are exactly the planned length;
//! - without one, prompts are made of common English words that are one token each in the
//!   GPT-2, OPT, Llama and Mistral vocabularies, so the word count is the token count to within
//!   a few percent; the server's `usage.prompt_tokens` (recorded per request) is the truth.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tokenizers::Tokenizer;

/// How long a prompt or an output should be, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LengthDist {
    Fixed {
        tokens: u32,
    },
    /// Uniform over `min..=max`.
    Uniform {
        min: u32,
        max: u32,
    },
}

impl LengthDist {
    /// `vllm bench serve`'s `--random-*-len L --random-range-ratio r`: uniform over
    /// `[L·(1−r), L·(1+r)]`, fixed when r = 0.
    pub fn from_range_ratio(len: u32, ratio: f64) -> Result<LengthDist, String> {
        if !(0.0..1.0).contains(&ratio) {
            return Err(format!(
                "--random-range-ratio must be in [0, 1), got {ratio}"
            ));
        }
        if ratio == 0.0 {
            return Ok(LengthDist::Fixed { tokens: len });
        }
        let min = ((len as f64) * (1.0 - ratio)).floor().max(1.0) as u32;
        let max = ((len as f64) * (1.0 + ratio)).ceil() as u32;
        Ok(LengthDist::Uniform { min, max })
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        match *self {
            LengthDist::Fixed { tokens } => tokens,
            LengthDist::Uniform { min, max } => rng.random_range(min..=max),
        }
    }

    pub fn mean(&self) -> f64 {
        match *self {
            LengthDist::Fixed { tokens } => tokens as f64,
            LengthDist::Uniform { min, max } => (min as f64 + max as f64) / 2.0,
        }
    }
}

/// One request's content, before it is put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    pub prompt: String,
    /// Planned prompt tokens (exact with a tokenizer, approximate without).
    pub prompt_tokens: u32,
    pub max_tokens: u32,
}

/// The synthetic random workload of `vllm bench serve --dataset-name random`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomSpec {
    pub input: LengthDist,
    pub output: LengthDist,
}

/// Groups of requests that share a long system prompt, so prefix caching (vLLM's automatic
/// prefix caching, SGLang's radix cache) shows. SGLang's `bench_serving
/// --dataset-name generated-shared-prefix` and its `--gsp-*` parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SharedPrefixSpec {
    pub groups: u32,
    pub prompts_per_group: u32,
    /// Tokens of each group's shared system prompt.
    pub system_prompt_len: u32,
    /// Tokens of each request's own question, after the shared part.
    pub question_len: u32,
    pub output_len: u32,
}

/// What to send: the kinds of workload.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "dataset")]
pub enum Workload {
    /// Independent random prompts (`vllm bench serve --dataset-name random`).
    Random(RandomSpec),
    /// Groups sharing a system prompt (SGLang's `generated-shared-prefix`).
    SharedPrefix(SharedPrefixSpec),
    /// Prompts from a local file: ShareGPT JSON or a JSONL of prompts.
    Dataset(DatasetSpec),
    /// A timestamped trace of (arrival, input length, output length), replayed on its clock.
    Trace(TraceSpec),
    /// Conversations whose history (the model's own replies included) is sent back each turn.
    MultiTurn(MultiTurnSpec),
}

/// One request of a trace.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceEntry {
    /// Arrival, ns after the trace's first request (already multiplied by the time scale).
    pub offset_ns: u64,
    pub input_len: u32,
    pub output_len: u32,
}

/// A trace file: JSONL lines `{"timestamp": ms, "input_length": n, "output_length": m}` (the
/// Mooncake / Azure LLM trace layout; `offset_s`, `input_len`, `output_len` also accepted),
/// replayed from its first request, in file order sorted by time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceSpec {
    pub path: std::path::PathBuf,
    /// Offsets are multiplied by this (0.5 replays the trace twice as fast).
    pub time_scale: f64,
    #[serde(skip)]
    pub entries: std::sync::Arc<Vec<TraceEntry>>,
    pub requests: usize,
}

impl TraceSpec {
    pub fn load(path: &Path, time_scale: f64) -> Result<TraceSpec, String> {
        if !(time_scale.is_finite() && time_scale > 0.0) {
            return Err(format!(
                "time scale must be a positive number, got {time_scale}"
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the trace {}: {e}", path.display()))?;
        let mut raw: Vec<(f64, u32, u32)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let shape = "each line must be like {\"timestamp\": 1200, \"input_length\": 512, \"output_length\": 128} (timestamp in ms)";
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                format!("{} line {}: not JSON ({e}); {shape}", path.display(), i + 1)
            })?;
            let num = |keys: &[&str]| keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_f64()));
            let at_s = num(&["timestamp"])
                .map(|ms| ms / 1000.0)
                .or_else(|| num(&["offset_s"]));
            let (Some(at), Some(inp), Some(out)) = (
                at_s,
                num(&["input_length", "input_len"]),
                num(&["output_length", "output_len"]),
            ) else {
                return Err(format!(
                    "{} line {}: missing a field; {shape}",
                    path.display(),
                    i + 1
                ));
            };
            if !(at.is_finite() && at >= 0.0 && inp >= 1.0 && out >= 1.0) {
                return Err(format!(
                    "{} line {}: time must be ≥ 0 and lengths ≥ 1; {shape}",
                    path.display(),
                    i + 1
                ));
            }
            // `as u32` would saturate 2^32 silently (and plan a 128 GiB prompt).
            let max = f64::from(crate::config::limits::MAX_TOKENS);
            if inp > max || out > max {
                return Err(format!(
                    "{} line {}: input_length {inp} / output_length {out} is above the limit of {max} tokens; fix the trace",
                    path.display(),
                    i + 1
                ));
            }
            raw.push((at, inp as u32, out as u32));
        }
        if raw.is_empty() {
            return Err(format!("the trace {} has no request", path.display()));
        }
        raw.sort_by(|a, b| a.0.total_cmp(&b.0));
        let t0 = raw[0].0;
        // The replayed span must fit a run (and u64 ns): a timestamp of 1e15 ms, or a scale of
        // 1e300, used to saturate every offset and send everything at t = 0.
        let span_s = (raw[raw.len() - 1].0 - t0) * time_scale;
        let max_s = crate::config::limits::MAX_DURATION_S;
        if !(span_s.is_finite() && span_s <= max_s) {
            return Err(format!(
                "the trace {} spans {span_s:.3e} s after --trace-time-scale {time_scale}, above the limit of {max_s} s (30 days); check its timestamps (ms) or lower the scale",
                path.display()
            ));
        }
        let entries: Vec<TraceEntry> = raw
            .into_iter()
            .map(|(at, i, o)| TraceEntry {
                offset_ns: ((at - t0) * time_scale * 1e9).round() as u64,
                input_len: i,
                output_len: o,
            })
            .collect();
        Ok(TraceSpec {
            path: path.to_path_buf(),
            time_scale,
            requests: entries.len(),
            entries: std::sync::Arc::new(entries),
        })
    }

    /// The arrival offsets, for the load driver.
    pub fn offsets(&self) -> Vec<u64> {
        self.entries.iter().map(|e| e.offset_ns).collect()
    }

    /// One random prompt per trace entry, of its input length, in trace order; then the end.
    pub fn items<'a>(
        &'a self,
        maker: &'a PromptMaker,
        seed: u64,
    ) -> impl Iterator<Item = WorkItem> + Send + 'a {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.entries.iter().map(move |e| {
            let (prompt, prompt_tokens) = maker.make(e.input_len, &mut rng);
            WorkItem {
                prompt,
                prompt_tokens,
                max_tokens: e.output_len,
            }
        })
    }
}

/// A dataset file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// `[{"conversations": [{"from": "human", "value": …}, {"from": "gpt", "value": …}, …]}]`:
    /// the first human turn is the prompt, the reply after it sets the output length.
    ShareGpt,
    /// One JSON object per line: `{"prompt": "…"}` (or `"text"`), optional `"max_tokens"`.
    Custom,
}

/// One entry of a dataset file, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEntry {
    pub prompt: String,
    /// The reference answer (ShareGPT), whose length is the output length asked for.
    pub completion: Option<String>,
    pub max_tokens: Option<u32>,
}

/// A dataset read from a local file (never downloaded).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetSpec {
    pub kind: DatasetKind,
    pub path: std::path::PathBuf,
    /// A fixed output length instead of the reference answer's (`--sharegpt-output-len`,
    /// `--custom-output-len`).
    pub output_len: Option<u32>,
    /// Entries read; kept out of result files (only their count is written).
    #[serde(skip)]
    pub entries: std::sync::Arc<Vec<DatasetEntry>>,
    pub entries_read: usize,
}

impl DatasetSpec {
    /// Read a dataset file. Errors name the file, the line or entry, and what was expected.
    pub fn load(
        kind: DatasetKind,
        path: &Path,
        output_len: Option<u32>,
    ) -> Result<DatasetSpec, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the dataset {}: {e}", path.display()))?;
        let entries = match kind {
            DatasetKind::ShareGpt => parse_sharegpt(&text, path)?,
            DatasetKind::Custom => parse_custom(&text, path)?,
        };
        if entries.is_empty() {
            return Err(format!(
                "the dataset {} has no usable entry",
                path.display()
            ));
        }
        Ok(DatasetSpec {
            kind,
            path: path.to_path_buf(),
            output_len,
            entries_read: entries.len(),
            entries: std::sync::Arc::new(entries),
        })
    }

    /// Entries in a seeded order, filtered as `vllm bench serve` filters ShareGPT (prompt and
    /// output at least 4 tokens, prompt at most 1024, both at most 2048) unless the output
    /// length is fixed; a new order every pass. Ends if no entry passes the filter.
    pub fn items<'a>(
        &'a self,
        maker: &'a PromptMaker,
        seed: u64,
    ) -> impl Iterator<Item = WorkItem> + Send + 'a {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = Vec::new();
        let mut yielded_this_pass = true;
        std::iter::from_fn(move || loop {
            if order.is_empty() {
                if !yielded_this_pass {
                    return None;
                }
                yielded_this_pass = false;
                order = (0..self.entries.len()).collect();
                order.shuffle(&mut rng);
            }
            let e = &self.entries[order.pop()?];
            let prompt_tokens = maker.count(&e.prompt).max(1);
            let output = match (self.output_len, e.max_tokens, &e.completion) {
                (Some(n), _, _) | (None, Some(n), _) => n,
                (None, None, Some(c)) => {
                    let n = maker.count(c);
                    if prompt_tokens < 4
                        || n < 4
                        || prompt_tokens > 1024
                        || prompt_tokens + n > 2048
                    {
                        continue;
                    }
                    n
                }
                (None, None, None) => 128,
            };
            yielded_this_pass = true;
            return Some(WorkItem {
                prompt: e.prompt.clone(),
                prompt_tokens,
                max_tokens: output.max(1),
            });
        })
    }
}

fn text_of(t: &serde_json::Value) -> Option<&str> {
    t.get("value").and_then(|v| v.as_str())
}

fn role_of(t: &serde_json::Value) -> Option<&str> {
    t.get("from").and_then(|v| v.as_str())
}

/// The `conversations` message lists of a ShareGPT file, in file order (entries without one
/// are skipped).
fn sharegpt_message_lists(text: &str, path: &Path) -> Result<Vec<Vec<serde_json::Value>>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "the dataset {} is not ShareGPT JSON: {e} (expected a JSON array of {{\"conversations\": [{{\"from\": \"human\", \"value\": \"…\"}}, …]}})",
            path.display()
        )
    })?;
    let serde_json::Value::Array(list) = v else {
        return Err(format!(
            "the dataset {} is not a JSON array of conversations",
            path.display()
        ));
    };
    Ok(list
        .into_iter()
        .filter_map(
            |mut conv| match conv.get_mut("conversations").map(serde_json::Value::take) {
                Some(serde_json::Value::Array(messages)) => Some(messages),
                _ => None,
            },
        )
        .collect())
}

fn parse_sharegpt(text: &str, path: &Path) -> Result<Vec<DatasetEntry>, String> {
    let mut out = Vec::new();
    for turns in sharegpt_message_lists(text, path)? {
        // The first human turn and the reply right after it (vLLM's rule: entries with fewer
        // than two turns are skipped).
        if turns.len() < 2 || role_of(&turns[0]) != Some("human") {
            continue;
        }
        if let (Some(p), Some(c)) = (text_of(&turns[0]), text_of(&turns[1])) {
            out.push(DatasetEntry {
                prompt: p.to_string(),
                completion: Some(c.to_string()),
                max_tokens: None,
            });
        }
    }
    Ok(out)
}

fn parse_custom(text: &str, path: &Path) -> Result<Vec<DatasetEntry>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            format!(
                "{} line {}: not JSON ({e}); each line must be an object like {{\"prompt\": \"…\"}}",
                path.display(),
                i + 1
            )
        })?;
        let prompt = v
            .get("prompt")
            .or_else(|| v.get("text"))
            .and_then(|p| p.as_str())
            .ok_or_else(|| {
                format!(
                    "{} line {}: no \"prompt\" string; each line must be an object like {{\"prompt\": \"…\"}}",
                    path.display(),
                    i + 1
                )
            })?;
        out.push(DatasetEntry {
            prompt: prompt.to_string(),
            completion: None,
            max_tokens: v
                .get("max_tokens")
                .or_else(|| v.get("output_len"))
                .and_then(|m| m.as_u64())
                .map(|m| m.min(u64::from(u32::MAX)) as u32),
        });
    }
    Ok(out)
}

impl Workload {
    /// Requests in one pass over the workload (`None`: as many as asked).
    pub fn natural_count(&self) -> Option<u64> {
        match self {
            Workload::Random(_) => None,
            Workload::SharedPrefix(s) => Some(u64::from(s.groups) * u64::from(s.prompts_per_group)),
            Workload::Dataset(_) => None,
            Workload::Trace(t) => Some(t.requests as u64),
            Workload::MultiTurn(m) => Some(m.total_turns()),
        }
    }

    /// The longest prompt a request of this workload can carry, in tokens, for the memory plan
    /// (a multi-turn prompt grows with the history: every turn's message and reply). A file's
    /// prompts are already in memory, so a dataset counts 0 here.
    pub fn max_prompt_tokens(&self) -> u64 {
        let dist_max = |d: &LengthDist| match *d {
            LengthDist::Fixed { tokens } => u64::from(tokens),
            LengthDist::Uniform { max, .. } => u64::from(max),
        };
        match self {
            Workload::Random(r) => dist_max(&r.input),
            Workload::SharedPrefix(s) => u64::from(s.system_prompt_len) + u64::from(s.question_len),
            Workload::Dataset(_) => 0,
            Workload::Trace(t) => t
                .entries
                .iter()
                .map(|e| u64::from(e.input_len))
                .max()
                .unwrap_or(0),
            Workload::MultiTurn(m) => match &m.source {
                ConversationSource::Synthetic(s) => {
                    let turns = u64::from(match s.turns {
                        TurnCount::Fixed { turns } => turns,
                        TurnCount::Uniform { max, .. } => max,
                    });
                    u64::from(s.system_prompt_len)
                        .saturating_add(u64::from(s.first_input_len))
                        .saturating_add(
                            turns.saturating_mul(u64::from(s.input_len) + u64::from(s.output_len)),
                        )
                }
                ConversationSource::ShareGpt(_) => 0,
            },
        }
    }

    /// Mean output tokens asked per request.
    pub fn mean_output(&self) -> f64 {
        match self {
            Workload::Random(r) => r.output.mean(),
            Workload::SharedPrefix(s) => f64::from(s.output_len),
            Workload::Dataset(d) => d.output_len.map_or(128.0, f64::from),
            Workload::Trace(t) => {
                t.entries
                    .iter()
                    .map(|e| f64::from(e.output_len))
                    .sum::<f64>()
                    / t.entries.len().max(1) as f64
            }
            Workload::MultiTurn(m) => m.mean_output(),
        }
    }

    /// An endless, seeded stream of work items (independent requests). A multi-turn workload
    /// has none: its turns are built from the replies as they come
    /// ([`MultiTurnSpec::conversations`], driven by `load::session`); callers branch on
    /// [`Workload::MultiTurn`] before asking for items.
    pub fn items<'a>(
        &'a self,
        maker: &'a PromptMaker,
        seed: u64,
    ) -> Box<dyn Iterator<Item = WorkItem> + Send + 'a> {
        match self {
            Workload::Random(r) => Box::new(r.items(maker, seed)),
            Workload::SharedPrefix(s) => Box::new(s.items(maker, seed)),
            Workload::Dataset(d) => Box::new(d.items(maker, seed)),
            Workload::Trace(t) => Box::new(t.items(maker, seed)),
            Workload::MultiTurn(_) => Box::new(std::iter::empty()),
        }
    }
}

/// How long a simulated user thinks between reading a reply and sending the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThinkTime {
    /// Always the mean.
    Fixed,
    /// Exponentially distributed with the mean (memoryless users, as Poisson arrivals).
    Exponential,
}

/// Multi-turn conversations: every turn sends the whole history back, the model's own replies
/// included. What the user says comes from a [`ConversationSource`]: synthetic messages of
/// planned lengths (AIPerf's `--conversation-*` workload; SGLang's `bench_multiturn` has the
/// same shape with `--num-rounds`), or a ShareGPT file's real conversations (vLLM's
/// `benchmarks/multi_turn` replays them the same way).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MultiTurnSpec {
    /// Conversations in one pass of the workload (`--conversation-num`; for a file, at most).
    pub conversations: u32,
    #[serde(flatten)]
    pub source: ConversationSource,
    /// Mean think time between a reply and the next turn, ms.
    pub think_time_ms: f64,
    pub think_time: ThinkTime,
    /// Turns of each conversation of the pass, known before the run starts (so its size is);
    /// kept out of result files.
    #[serde(skip)]
    pub turn_counts: std::sync::Arc<Vec<u32>>,
}

/// Where a conversation's user messages come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "source")]
pub enum ConversationSource {
    /// Messages of planned token lengths (`--dataset-name multi-turn`).
    Synthetic(SyntheticTurns),
    /// A ShareGPT file's conversations (`--dataset-name sharegpt-multi-turn`).
    ShareGpt(ShareGptConversations),
}

/// The shape of synthetic conversations.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticTurns {
    /// Turns (requests) per conversation.
    pub turns: TurnCount,
    /// Tokens of the system prompt every conversation starts with (0: none).
    pub system_prompt_len: u32,
    /// Tokens of each conversation's first user message.
    pub first_input_len: u32,
    /// Tokens of each follow-up user message.
    pub input_len: u32,
    /// `max_tokens` of every turn.
    pub output_len: u32,
}

/// Turns per conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TurnCount {
    Fixed {
        turns: u32,
    },
    /// Uniform over `min..=max`.
    Uniform {
        min: u32,
        max: u32,
    },
}

/// One conversation, planned before the run: everything except the replies.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationPlan {
    /// The system prompt and its planned tokens.
    pub system: Option<(String, u32)>,
    pub turns: Vec<TurnPlan>,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnPlan {
    /// The user message of this turn.
    pub user: String,
    pub user_tokens: u32,
    pub max_tokens: u32,
    /// Wait between the previous reply's end and this turn's send (0 for the first turn).
    pub think: std::time::Duration,
}

impl MultiTurnSpec {
    /// A synthetic spec with its turn counts drawn from `seed`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one value per flag, named at the call"
    )]
    pub fn new(
        conversations: u32,
        turns: TurnCount,
        system_prompt_len: u32,
        first_input_len: u32,
        input_len: u32,
        output_len: u32,
        think_time_ms: f64,
        think_time: ThinkTime,
        seed: u64,
    ) -> MultiTurnSpec {
        // Its own stream, so the turn counts do not depend on the prompt lengths.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7475_726e_735f_7631);
        let turn_counts = (0..conversations)
            .map(|_| match turns {
                TurnCount::Fixed { turns } => turns,
                TurnCount::Uniform { min, max } => rng.random_range(min..=max),
            })
            .collect();
        MultiTurnSpec {
            conversations,
            source: ConversationSource::Synthetic(SyntheticTurns {
                turns,
                system_prompt_len,
                first_input_len,
                input_len,
                output_len,
            }),
            think_time_ms,
            think_time,
            turn_counts: std::sync::Arc::new(turn_counts),
        }
    }

    /// A ShareGPT file replayed as conversations: at most `conversations` of them, chosen in
    /// the order `seed` shuffles the file into and planned with `maker`'s token counts.
    pub fn sharegpt(
        file: ShareGptConversations,
        conversations: u32,
        think_time_ms: f64,
        think_time: ThinkTime,
        maker: &PromptMaker,
    ) -> Result<MultiTurnSpec, String> {
        let (plans, next) = file.walk(file.start, conversations as usize, maker);
        if plans.is_empty() {
            return Err(file.nothing_usable());
        }
        let turn_counts: Vec<u32> = plans.iter().map(|p| p.turns.len() as u32).collect();
        let asked: u64 = plans
            .iter()
            .flat_map(|p| p.turns.iter().map(|t| u64::from(t.max_tokens)))
            .sum();
        let mean_max_tokens = asked as f64 / turn_counts.iter().sum::<u32>().max(1) as f64;
        Ok(MultiTurnSpec {
            conversations: plans.len() as u32,
            source: ConversationSource::ShareGpt(ShareGptConversations {
                next,
                mean_max_tokens,
                ..file
            }),
            think_time_ms,
            think_time,
            turn_counts: std::sync::Arc::new(turn_counts),
        })
    }

    /// Mean `max_tokens` per turn of the pass.
    pub fn mean_output(&self) -> f64 {
        match &self.source {
            ConversationSource::Synthetic(s) => f64::from(s.output_len),
            ConversationSource::ShareGpt(f) => f.mean_max_tokens,
        }
    }

    /// `n` warmup conversations of the same kind, never one of the measured pass (its history
    /// would be in the server's prefix cache before it is measured): synthetic ones from
    /// `seed`; from a file, the conversations that follow the pass in its seeded order (fewer
    /// when the file runs out).
    pub fn warmup_conversations(
        &self,
        n: u32,
        maker: &PromptMaker,
        seed: u64,
    ) -> Vec<ConversationPlan> {
        match &self.source {
            ConversationSource::Synthetic(s) => MultiTurnSpec::new(
                n,
                s.turns,
                s.system_prompt_len,
                s.first_input_len,
                s.input_len,
                s.output_len,
                self.think_time_ms,
                self.think_time,
                seed,
            )
            .conversations(maker, seed),
            ConversationSource::ShareGpt(f) => {
                let (plans, _) = f.walk(f.next, n as usize, maker);
                self.with_think_times(plans, seed)
            }
        }
    }

    /// Requests in one pass: the sum of every conversation's turns.
    pub fn total_turns(&self) -> u64 {
        self.turn_counts.iter().map(|&t| u64::from(t)).sum()
    }

    /// The pass's conversations, deterministic for `seed`. Synthetic: one system prompt shared
    /// by all, then each conversation's own messages (no two conversations share more than the
    /// system prompt, so any other cache hit comes from a conversation's own history). From a
    /// file: the conversations chosen when the spec was made; `seed` draws the think times.
    pub fn conversations(&self, maker: &PromptMaker, seed: u64) -> Vec<ConversationPlan> {
        let s = match &self.source {
            ConversationSource::Synthetic(s) => s,
            ConversationSource::ShareGpt(f) => {
                let (plans, _) = f.walk(f.start, self.conversations as usize, maker);
                return self.with_think_times(plans, seed);
            }
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let system = (s.system_prompt_len > 0).then(|| maker.make(s.system_prompt_len, &mut rng));
        self.turn_counts
            .iter()
            .map(|&n| {
                let turns = (0..n)
                    .map(|k| {
                        let len = if k == 0 {
                            s.first_input_len
                        } else {
                            s.input_len
                        };
                        let (user, user_tokens) = maker.make(len.max(1), &mut rng);
                        TurnPlan {
                            user,
                            user_tokens,
                            max_tokens: s.output_len.max(1),
                            think: self.think(k, &mut rng),
                        }
                    })
                    .collect();
                ConversationPlan {
                    system: system.clone(),
                    turns,
                }
            })
            .collect()
    }

    /// The wait before turn `k` (none before the first).
    fn think(&self, k: u32, rng: &mut impl Rng) -> std::time::Duration {
        let mean_s = self.think_time_ms.max(0.0) / 1000.0;
        let think_s = match (k, self.think_time) {
            (0, _) => 0.0,
            (_, ThinkTime::Fixed) => mean_s,
            // Inverse transform: −mean·ln(1 − u), u in [0, 1).
            (_, ThinkTime::Exponential) => -mean_s * (1.0 - rng.random::<f64>()).ln(),
        };
        // The mean is bounded by the config (one hour); an exponential draw has no upper bound
        // in theory, so an out-of-range draw saturates rather than panics.
        std::time::Duration::try_from_secs_f64(think_s.max(0.0)).unwrap_or(std::time::Duration::MAX)
    }

    fn with_think_times(
        &self,
        mut plans: Vec<ConversationPlan>,
        seed: u64,
    ) -> Vec<ConversationPlan> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for p in &mut plans {
            for (k, t) in p.turns.iter_mut().enumerate() {
                t.think = self.think(k as u32, &mut rng);
            }
        }
        plans
    }
}

/// A ShareGPT file's conversations, replayed turn by turn (`--dataset-name
/// sharegpt-multi-turn`). Each human message is a user turn, in order; the file's own replies
/// are never sent (the model's are, as in the synthetic workload) but set each turn's
/// `max_tokens`, as single-turn ShareGPT does, unless `output_len` fixes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShareGptConversations {
    pub path: std::path::PathBuf,
    /// A fixed `max_tokens` for every turn instead of the file's reply length
    /// (`--sharegpt-output-len`).
    pub output_len: Option<u32>,
    /// The model's context (`--sharegpt-context-len`, SGLang's name): a conversation ends
    /// before the first turn whose history + message + `max_tokens` would not fit.
    pub context_len: Option<u32>,
    /// Conversations with fewer turns (after the context cut) are skipped
    /// (`--sharegpt-min-turns`).
    pub min_turns: u32,
    /// Turns kept of each conversation at most (`--sharegpt-max-turns`; vLLM's converter has
    /// `--max-turns`, which counts messages of both roles: this counts requests).
    pub max_turns: Option<u32>,
    /// Conversations of a usable shape in the file (a human message answered at least once).
    pub conversations_read: usize,
    /// Mean `max_tokens` of the chosen conversations' turns.
    pub mean_max_tokens: f64,
    /// Those conversations in the seeded order; kept out of result files.
    #[serde(skip)]
    pub order: std::sync::Arc<Vec<SharedConversation>>,
    /// Where the measured pass starts in `order`, and where the one after it (warmups) does.
    #[serde(skip)]
    pub start: usize,
    #[serde(skip)]
    pub next: usize,
}

/// One conversation as the file has it, before token counting.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedConversation {
    pub system: Option<String>,
    /// (the human message, the reply the file gives it)
    pub exchanges: Vec<(String, String)>,
}

impl ShareGptConversations {
    /// Read a ShareGPT file and put its conversations in `seed`'s order. Token counting is
    /// left to [`MultiTurnSpec::sharegpt`], which stops once it has enough conversations, so
    /// a large file costs one parse, not a tokenization of every message.
    pub fn load(
        path: &Path,
        output_len: Option<u32>,
        context_len: Option<u32>,
        min_turns: u32,
        seed: u64,
    ) -> Result<ShareGptConversations, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the dataset {}: {e}", path.display()))?;
        let mut order = parse_sharegpt_conversations(&text, path)?;
        if order.is_empty() {
            return Err(format!(
                "the dataset {} has no conversation that starts with a human message answered by the model (`from`: human/user, then gpt/assistant)",
                path.display()
            ));
        }
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        Ok(ShareGptConversations {
            path: path.to_path_buf(),
            output_len,
            context_len,
            min_turns: min_turns.max(1),
            max_turns: None,
            conversations_read: order.len(),
            mean_max_tokens: 0.0,
            order: std::sync::Arc::new(order),
            start: 0,
            next: 0,
        })
    }

    /// Up to `n` usable conversations from `order[from..]`, and the index after the last one
    /// looked at.
    fn walk(&self, from: usize, n: usize, maker: &PromptMaker) -> (Vec<ConversationPlan>, usize) {
        let mut out = Vec::new();
        let mut i = from;
        while out.len() < n && i < self.order.len() {
            if let Some(p) = self.plan(&self.order[i], maker) {
                out.push(p);
            }
            i += 1;
        }
        (out, i)
    }

    /// One conversation's turns, cut before the first that would not fit the context and after
    /// `max_turns`; `None` when fewer than `min_turns` remain. Think times are filled in later.
    fn plan(&self, c: &SharedConversation, maker: &PromptMaker) -> Option<ConversationPlan> {
        let system = c.system.as_ref().map(|s| (s.clone(), maker.count(s)));
        // The history is counted with each earlier turn's max_tokens: the model's reply, which
        // is what is sent back, is at most that long.
        let mut history = u64::from(system.as_ref().map_or(0, |s| s.1));
        let mut turns = Vec::new();
        for (user, reply) in &c.exchanges {
            if self.max_turns.is_some_and(|m| turns.len() >= m as usize) {
                break;
            }
            let user_tokens = maker.count(user);
            let max_tokens = self.output_len.unwrap_or_else(|| maker.count(reply)).max(1);
            let needed = history + u64::from(user_tokens) + u64::from(max_tokens);
            if self.context_len.is_some_and(|c| needed > u64::from(c)) {
                break;
            }
            history = needed;
            turns.push(TurnPlan {
                user: user.clone(),
                user_tokens,
                max_tokens,
                think: std::time::Duration::ZERO,
            });
        }
        (turns.len() >= self.min_turns as usize).then_some(ConversationPlan { system, turns })
    }

    /// Why no conversation was usable, and what to change.
    fn nothing_usable(&self) -> String {
        let cap = match self.context_len {
            Some(c) => format!(" within --sharegpt-context-len {c}"),
            None => String::new(),
        };
        format!(
            "none of the {} conversations of {} has at least {} turns{cap}; lower --sharegpt-min-turns{}",
            self.conversations_read,
            self.path.display(),
            self.min_turns,
            if self.context_len.is_some() {
                " or raise --sharegpt-context-len"
            } else {
                ""
            }
        )
    }
}

/// Roles as ShareGPT files spell them (vLLM's `convert_sharegpt_to_openai.py` accepts the
/// same names).
fn sharegpt_role(from: &str) -> Option<&'static str> {
    match from {
        "human" | "user" => Some("user"),
        "gpt" | "chatgpt" | "bing" | "bard" | "assistant" | "model" => Some("assistant"),
        "system" => Some("system"),
        _ => None,
    }
}

/// Every conversation as (system?, [(human, reply)]): a leading system message is kept,
/// leading model messages are skipped (a conversation continued from an earlier one, as vLLM
/// skips them), and the conversation ends at the first message that breaks the human/model
/// alternation, has an unknown role or no text, or is a human message without a reply.
fn parse_sharegpt_conversations(
    text: &str,
    path: &Path,
) -> Result<Vec<SharedConversation>, String> {
    let mut out = Vec::new();
    for messages in sharegpt_message_lists(text, path)? {
        let mut msgs = messages
            .iter()
            .map_while(|m| Some((sharegpt_role(role_of(m)?)?, text_of(m)?)))
            .peekable();
        let system = msgs
            .next_if(|(r, _)| *r == "system")
            .map(|(_, t)| t.to_string());
        while msgs.next_if(|(r, _)| *r == "assistant").is_some() {}
        let mut exchanges = Vec::new();
        while let (Some(("user", u)), Some(("assistant", a))) = (msgs.next(), msgs.next()) {
            exchanges.push((u.to_string(), a.to_string()));
        }
        if !exchanges.is_empty() {
            out.push(SharedConversation { system, exchanges });
        }
    }
    Ok(out)
}

impl SharedPrefixSpec {
    /// Every group's system prompt is made once; each request is its group's system prompt
    /// followed by a question of its own. Requests go round the groups in an order shuffled
    /// afresh for every round (so a group's requests are spread over the run, not back to
    /// back), and every question is new, so no two requests are identical.
    pub fn items<'a>(
        &'a self,
        maker: &'a PromptMaker,
        seed: u64,
    ) -> impl Iterator<Item = WorkItem> + Send + 'a {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let groups = self.groups.max(1) as usize;
        let systems: Vec<(String, u32)> = (0..groups)
            .map(|_| maker.make(self.system_prompt_len.max(1), &mut rng))
            .collect();
        let mut order: Vec<usize> = Vec::new();
        std::iter::from_fn(move || {
            if order.is_empty() {
                order = (0..groups).collect();
                order.shuffle(&mut rng);
            }
            let g = order.pop().unwrap_or(0);
            let (system, system_tokens) = &systems[g];
            let (question, question_tokens) = maker.make(self.question_len.max(1), &mut rng);
            Some(WorkItem {
                prompt: format!("{system}{question}"),
                prompt_tokens: system_tokens + question_tokens,
                max_tokens: self.output_len.max(1),
            })
        })
    }
}

/// Builds prompts of planned token lengths. Cheap to clone the vocabulary it draws from.
pub struct PromptMaker {
    words: Vec<String>,
    tokenizer: Option<Tokenizer>,
}

/// Common English words that are a single token (with their leading space) in the GPT-2/OPT,
/// Llama and Mistral vocabularies.
const COMMON_WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "out",
    "up",
    "into",
    "than",
    "them",
    "only",
    "time",
    "some",
    "could",
    "new",
    "these",
    "two",
    "may",
    "first",
    "then",
    "do",
    "any",
    "like",
    "my",
    "now",
    "over",
    "such",
    "our",
    "man",
    "me",
    "even",
    "most",
    "made",
    "after",
    "also",
    "did",
    "many",
    "off",
    "before",
    "must",
    "well",
    "back",
    "through",
    "years",
    "much",
    "where",
    "your",
    "way",
    "down",
    "should",
    "because",
    "long",
    "each",
    "just",
    "state",
    "people",
    "those",
    "too",
    "how",
    "little",
    "good",
    "world",
    "make",
    "very",
    "year",
    "still",
    "see",
    "own",
    "work",
    "men",
    "day",
    "get",
    "here",
    "between",
    "both",
    "life",
    "being",
    "under",
    "never",
    "same",
    "another",
    "know",
    "while",
    "last",
    "might",
    "great",
    "old",
    "year",
    "off",
    "come",
    "since",
    "against",
    "go",
    "came",
    "right",
    "used",
    "take",
    "three",
    "house",
    "use",
    "during",
    "without",
    "again",
    "place",
    "around",
    "however",
    "home",
    "small",
    "found",
    "thought",
    "went",
    "say",
    "part",
    "once",
    "general",
    "high",
    "upon",
    "school",
    "every",
    "does",
    "got",
    "united",
    "left",
    "number",
    "course",
    "war",
    "until",
    "always",
    "away",
    "something",
    "fact",
    "water",
    "though",
    "less",
    "public",
    "put",
    "think",
    "almost",
    "hand",
    "enough",
    "far",
    "took",
    "head",
    "yet",
    "government",
    "system",
    "better",
    "set",
    "told",
    "nothing",
    "night",
    "end",
    "why",
    "called",
    "didn",
    "eyes",
    "find",
    "going",
    "look",
    "asked",
    "later",
    "knew",
    "point",
    "next",
    "program",
    "city",
    "business",
    "give",
    "group",
    "toward",
    "young",
    "days",
    "let",
    "room",
    "president",
    "side",
    "social",
    "given",
    "present",
    "several",
    "order",
    "national",
];

impl PromptMaker {
    /// Without a tokenizer: common words, about one token each.
    pub fn approximate() -> PromptMaker {
        PromptMaker {
            words: COMMON_WORDS.iter().map(|w| format!(" {w}")).collect(),
            tokenizer: None,
        }
    }

    /// With a local `tokenizer.json`: whole-word vocabulary entries, lengths made exact.
    pub fn with_tokenizer(path: &Path) -> Result<PromptMaker, String> {
        let tok = Tokenizer::from_file(path).map_err(|e| {
            format!(
                "cannot load tokenizer {}: {e} (pass a Hugging Face tokenizer.json file)",
                path.display()
            )
        })?;
        let mut words: Vec<String> = Vec::new();
        let vocab = tok.get_vocab(false);
        let mut ids: Vec<u32> = vocab.values().copied().collect();
        ids.sort_unstable(); // HashMap order is random; the seed must decide the prompts
        for id in ids {
            let Ok(text) = tok.decode(&[id], false) else {
                continue;
            };
            let w = text.trim_start();
            if (2..=12).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase()) {
                words.push(format!(" {w}"));
            }
        }
        if words.len() < 16 {
            return Err(format!(
                "tokenizer {} has too few plain-word tokens ({}) to build prompts from",
                path.display(),
                words.len()
            ));
        }
        Ok(PromptMaker {
            words,
            tokenizer: Some(tok),
        })
    }

    pub fn is_exact(&self) -> bool {
        self.tokenizer.is_some()
    }

    /// Token count of a text: exact with a tokenizer, the word count otherwise.
    pub fn count(&self, text: &str) -> u32 {
        match &self.tokenizer {
            Some(t) => t
                .encode(text, false)
                .map(|e| e.len() as u32)
                .unwrap_or_else(|_| text.split_whitespace().count() as u32),
            None => text.split_whitespace().count() as u32,
        }
    }

    /// A prompt of `tokens` tokens drawn from `rng`. Returns the text and its token count
    /// (equal to `tokens` with a tokenizer, except for pathological vocabularies).
    pub fn make(&self, tokens: u32, rng: &mut impl Rng) -> (String, u32) {
        let mut words: Vec<&str> = (0..tokens)
            .map(|_| self.words.choose(rng).map(String::as_str).unwrap_or(" the"))
            .collect();
        if self.tokenizer.is_none() {
            return (words.concat(), tokens);
        }
        // Re-encode and adjust: whole-word tokens almost always map 1:1, but merges across
        // word boundaries or normalizers can shift the count by a few.
        let mut best = (words.concat(), self.count(&words.concat()));
        for _ in 0..16 {
            let text = words.concat();
            let n = self.count(&text);
            if n.abs_diff(tokens) < best.1.abs_diff(tokens) || n == tokens {
                best = (text, n);
            }
            if n == tokens {
                break;
            }
            if n > tokens {
                let drop = ((n - tokens) as usize)
                    .min(words.len().saturating_sub(1))
                    .max(1);
                words.truncate(words.len().saturating_sub(drop));
            } else {
                for _ in 0..(tokens - n) {
                    words.push(self.words.choose(rng).map(String::as_str).unwrap_or(" the"));
                }
            }
        }
        best
    }
}

impl RandomSpec {
    /// `n` work items, deterministic for `seed`. Prompts start with different random words, so
    /// no two share a prefix by accident (which would flatter an engine's prefix cache).
    pub fn items<'a>(
        &'a self,
        maker: &'a PromptMaker,
        seed: u64,
    ) -> impl Iterator<Item = WorkItem> + Send + 'a {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        std::iter::from_fn(move || {
            let input = self.input.sample(&mut rng).max(1);
            let max_tokens = self.output.sample(&mut rng).max(1);
            let (prompt, prompt_tokens) = maker.make(input, &mut rng);
            Some(WorkItem {
                prompt,
                prompt_tokens,
                max_tokens,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ratio_matches_vllm_convention() {
        assert_eq!(
            LengthDist::from_range_ratio(100, 0.0).unwrap(),
            LengthDist::Fixed { tokens: 100 }
        );
        assert_eq!(
            LengthDist::from_range_ratio(100, 0.5).unwrap(),
            LengthDist::Uniform { min: 50, max: 150 }
        );
        assert!(LengthDist::from_range_ratio(100, 1.5)
            .unwrap_err()
            .contains("1.5"));
    }

    #[test]
    fn approximate_prompts_have_planned_word_counts_and_are_seeded() {
        let maker = PromptMaker::approximate();
        let spec = RandomSpec {
            input: LengthDist::Uniform { min: 10, max: 20 },
            output: LengthDist::Fixed { tokens: 7 },
        };
        let a: Vec<WorkItem> = spec.items(&maker, 5).take(50).collect();
        let b: Vec<WorkItem> = spec.items(&maker, 5).take(50).collect();
        assert_eq!(a, b);
        for it in &a {
            assert_eq!(
                it.prompt.split_whitespace().count() as u32,
                it.prompt_tokens
            );
            assert!((10..=20).contains(&it.prompt_tokens));
            assert_eq!(it.max_tokens, 7);
        }
        // No accidental shared prefixes: first three words differ across most prompts.
        let firsts: std::collections::HashSet<String> = a
            .iter()
            .map(|i| {
                i.prompt
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert!(firsts.len() > 45);
    }

    /// A tiny word-level tokenizer.json written by the test itself (no download).
    fn tiny_tokenizer(dir: &Path) -> std::path::PathBuf {
        let mut vocab = serde_json::Map::new();
        vocab.insert("[UNK]".into(), 0.into());
        for (i, w) in COMMON_WORDS.iter().enumerate() {
            vocab.entry(w.to_string()).or_insert((i as u64 + 1).into());
        }
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
        });
        let p = dir.join("tokenizer.json");
        std::fs::write(&p, serde_json::to_vec(&json).unwrap()).unwrap();
        p
    }

    #[test]
    fn shared_prefix_groups_share_their_system_prompt_and_nothing_else() {
        let maker = PromptMaker::approximate();
        let spec = SharedPrefixSpec {
            groups: 4,
            prompts_per_group: 8,
            system_prompt_len: 50,
            question_len: 10,
            output_len: 7,
        };
        let w = Workload::SharedPrefix(spec.clone());
        assert_eq!(w.natural_count(), Some(32));
        let items: Vec<WorkItem> = w.items(&maker, 9).take(32).collect();
        let prefix = |i: &WorkItem| {
            i.prompt
                .split_whitespace()
                .take(50)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let groups: std::collections::HashMap<String, usize> =
            items.iter().fold(Default::default(), |mut m, i| {
                *m.entry(prefix(i)).or_default() += 1;
                m
            });
        assert_eq!(groups.len(), 4);
        assert!(groups.values().all(|&n| n == 8), "{groups:?}");
        let whole: std::collections::HashSet<&str> =
            items.iter().map(|i| i.prompt.as_str()).collect();
        assert_eq!(whole.len(), 32, "no two requests are identical");
        assert!(items
            .iter()
            .all(|i| i.prompt_tokens == 60 && i.max_tokens == 7));
        // Each round visits every group once.
        let first_round: std::collections::HashSet<String> =
            items[..4].iter().map(prefix).collect();
        assert_eq!(first_round.len(), 4);
    }

    #[test]
    fn sharegpt_and_custom_datasets_load_filter_and_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let long = "word ".repeat(10);
        let sg = serde_json::json!([
            {"id": "a", "conversations": [{"from": "human", "value": long}, {"from": "gpt", "value": long}]},
            {"id": "b", "conversations": [{"from": "human", "value": "too short"}, {"from": "gpt", "value": long}]},
            {"id": "c", "conversations": [{"from": "human", "value": long}]},
            {"id": "d", "conversations": [{"from": "gpt", "value": long}, {"from": "human", "value": long}]}
        ]);
        let p = dir.path().join("sg.json");
        std::fs::write(&p, sg.to_string()).unwrap();
        let spec = DatasetSpec::load(DatasetKind::ShareGpt, &p, None).unwrap();
        assert_eq!(
            spec.entries_read, 2,
            "one-turn and gpt-first conversations are skipped"
        );
        let maker = PromptMaker::approximate();
        let items: Vec<WorkItem> = spec.items(&maker, 1).take(5).collect();
        assert_eq!(items.len(), 5, "the one usable entry cycles");
        assert!(items
            .iter()
            .all(|i| i.prompt_tokens == 10 && i.max_tokens == 10));

        let jl = dir.path().join("p.jsonl");
        std::fs::write(
            &jl,
            "{\"prompt\": \"hello there\", \"max_tokens\": 7}\n\n{\"text\": \"a b c\"}\n",
        )
        .unwrap();
        let spec = DatasetSpec::load(DatasetKind::Custom, &jl, None).unwrap();
        let items: Vec<WorkItem> = spec.items(&maker, 1).take(2).collect();
        let mut lens: Vec<u32> = items.iter().map(|i| i.max_tokens).collect();
        lens.sort();
        assert_eq!(lens, vec![7, 128]);

        std::fs::write(&jl, "{\"prompt\": 3}\n").unwrap();
        let e = DatasetSpec::load(DatasetKind::Custom, &jl, None).unwrap_err();
        assert!(e.contains("line 1") && e.contains("prompt"), "{e}");
        // Nothing passes the filter: the stream ends instead of spinning.
        let only_short = serde_json::json!([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}]);
        std::fs::write(&p, only_short.to_string()).unwrap();
        let spec = DatasetSpec::load(DatasetKind::ShareGpt, &p, None).unwrap();
        assert_eq!(spec.items(&maker, 1).take(3).count(), 0);
    }

    #[test]
    fn a_trace_keeps_its_clock_scaled_and_its_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(
            &p,
            "{\"timestamp\": 2000, \"input_length\": 5, \"output_length\": 3}\n\
             {\"timestamp\": 1000, \"input_length\": 8, \"output_length\": 2}\n\
             {\"offset_s\": 4.5, \"input_len\": 1, \"output_len\": 1}\n",
        )
        .unwrap();
        let t = TraceSpec::load(&p, 0.5).unwrap();
        assert_eq!(t.offsets(), vec![0, 500_000_000, 1_750_000_000]);
        let maker = PromptMaker::approximate();
        let items: Vec<WorkItem> = t.items(&maker, 1).collect();
        assert_eq!(items.len(), 3, "a trace ends");
        assert_eq!((items[0].prompt_tokens, items[0].max_tokens), (8, 2));
        std::fs::write(&p, "{\"timestamp\": 1}\n").unwrap();
        let e = TraceSpec::load(&p, 1.0).unwrap_err();
        assert!(e.contains("line 1") && e.contains("input_length"), "{e}");
        assert!(TraceSpec::load(&p, 0.0).unwrap_err().contains("time scale"));
    }

    fn multi_turn(turns: TurnCount, think: ThinkTime) -> MultiTurnSpec {
        MultiTurnSpec::new(20, turns, 30, 12, 5, 9, 200.0, think, 3)
    }

    #[test]
    fn multi_turn_conversations_are_seeded_with_planned_lengths() {
        let maker = PromptMaker::approximate();
        let spec = multi_turn(TurnCount::Uniform { min: 2, max: 5 }, ThinkTime::Fixed);
        assert_eq!(spec.turn_counts.len(), 20);
        assert!(spec.turn_counts.iter().all(|t| (2..=5).contains(t)));
        assert!(spec.turn_counts.iter().any(|&t| t != spec.turn_counts[0]));
        let w = Workload::MultiTurn(spec.clone());
        assert_eq!(w.natural_count(), Some(spec.total_turns()));
        let a = spec.conversations(&maker, 7);
        assert_eq!(a, spec.conversations(&maker, 7));
        assert_ne!(a, spec.conversations(&maker, 8));
        let system = a[0].system.clone().unwrap();
        assert_eq!(system.1, 30);
        for (c, &n) in a.iter().zip(spec.turn_counts.iter()) {
            assert_eq!(
                c.system.as_ref(),
                Some(&system),
                "one system prompt for all"
            );
            assert_eq!(c.turns.len() as u32, n);
            assert_eq!(c.turns[0].user_tokens, 12);
            assert_eq!(c.turns[0].think, std::time::Duration::ZERO);
            for t in &c.turns[1..] {
                assert_eq!(t.user.split_whitespace().count(), 5);
                assert_eq!(t.think, std::time::Duration::from_millis(200));
            }
            assert!(c.turns.iter().all(|t| t.max_tokens == 9));
        }
        // Fixed turns; no system prompt when its length is 0.
        let fixed = MultiTurnSpec::new(
            4,
            TurnCount::Fixed { turns: 3 },
            0,
            8,
            4,
            2,
            0.0,
            ThinkTime::Fixed,
            1,
        );
        assert_eq!(fixed.total_turns(), 12);
        assert!(fixed
            .conversations(&maker, 1)
            .iter()
            .all(|c| c.system.is_none()));
    }

    /// A ShareGPT file of four conversations, words as tokens (no tokenizer).
    fn sharegpt_fixture(dir: &Path) -> std::path::PathBuf {
        let sg = serde_json::json!([
            {"id": "long", "conversations": [
                {"from": "system", "value": "be brief"},
                {"from": "human", "value": "one two three"},
                {"from": "gpt", "value": "a b c d e"},
                {"from": "human", "value": "four five"},
                {"from": "gpt", "value": "f g"},
                {"from": "human", "value": "six"},
                {"from": "gpt", "value": "h i j k l m n"}
            ]},
            {"id": "cont", "conversations": [
                {"from": "gpt", "value": "continued from before"},
                {"from": "human", "value": "q1"},
                {"from": "gpt", "value": "r r r"},
                {"from": "human", "value": "q2 q2"},
                {"from": "gpt", "value": "r"},
                {"from": "human", "value": "unanswered"}
            ]},
            {"id": "one", "conversations": [
                {"from": "human", "value": "just once"},
                {"from": "gpt", "value": "ok"}
            ]},
            {"id": "broken", "conversations": [
                {"from": "human", "value": "x"},
                {"from": "gpt", "value": "y y"},
                {"from": "human", "value": "w"},
                {"from": "gpt", "value": "v"},
                {"from": "human", "value": "z"},
                {"from": "human", "value": "twice in a row"},
                {"from": "gpt", "value": "never reached"}
            ]}
        ]);
        let p = dir.join("sg.json");
        std::fs::write(&p, sg.to_string()).unwrap();
        p
    }

    fn sharegpt_spec(
        p: &Path,
        output_len: Option<u32>,
        context_len: Option<u32>,
        min_turns: u32,
        n: u32,
        seed: u64,
    ) -> Result<MultiTurnSpec, String> {
        let f = ShareGptConversations::load(p, output_len, context_len, min_turns, seed)?;
        MultiTurnSpec::sharegpt(f, n, 100.0, ThinkTime::Fixed, &PromptMaker::approximate())
    }

    fn by_first_message(
        plans: &[ConversationPlan],
    ) -> std::collections::HashMap<String, &ConversationPlan> {
        plans.iter().map(|p| (p.turns[0].user.clone(), p)).collect()
    }

    #[test]
    fn sharegpt_conversations_become_turns_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = sharegpt_fixture(dir.path());
        let maker = PromptMaker::approximate();
        let spec = sharegpt_spec(&p, None, None, 2, 10, 1).unwrap();
        let ConversationSource::ShareGpt(f) = &spec.source else {
            panic!()
        };
        assert_eq!(
            f.conversations_read, 4,
            "every conversation with an answered human message"
        );
        // "one" has a single turn: below the default minimum of 2.
        assert_eq!(spec.conversations, 3);
        let plans = spec.conversations(&maker, 1);
        let by = by_first_message(&plans);
        let long = by["one two three"];
        assert_eq!(
            long.system,
            Some(("be brief".to_string(), 2)),
            "the system prompt is kept"
        );
        let users: Vec<&str> = long.turns.iter().map(|t| t.user.as_str()).collect();
        assert_eq!(
            users,
            ["one two three", "four five", "six"],
            "human messages, in order"
        );
        let asks: Vec<u32> = long.turns.iter().map(|t| t.max_tokens).collect();
        assert_eq!(
            asks,
            [5, 2, 7],
            "each turn asks for its reply's length in the file"
        );
        assert_eq!(long.turns[0].user_tokens, 3);
        assert_eq!(long.turns[0].think, std::time::Duration::ZERO);
        assert!(long.turns[1..]
            .iter()
            .all(|t| t.think == std::time::Duration::from_millis(100)));
        // Leading model message skipped; the unanswered last message dropped.
        let cont = by["q1"];
        assert_eq!(cont.system, None);
        assert_eq!(
            cont.turns.iter().map(|t| t.max_tokens).collect::<Vec<_>>(),
            [3, 1]
        );
        // Two human messages in a row end the conversation there (the first is unanswered).
        assert_eq!(by["x"].turns.len(), 2);
        assert_eq!(spec.total_turns(), 7);
        assert_eq!(Workload::MultiTurn(spec.clone()).natural_count(), Some(7));
        assert!((spec.mean_output() - 21.0 / 7.0).abs() < 1e-9);

        // A fixed output length overrides every reply length.
        let fixed = sharegpt_spec(&p, Some(9), None, 1, 10, 1).unwrap();
        assert_eq!(
            fixed.conversations, 4,
            "min turns 1 keeps the one-turn conversation"
        );
        assert!(fixed
            .conversations(&maker, 1)
            .iter()
            .flat_map(|c| &c.turns)
            .all(|t| t.max_tokens == 9));
    }

    #[test]
    fn sharegpt_conversations_are_cut_at_the_context_and_seeded() {
        let dir = tempfile::tempdir().unwrap();
        let p = sharegpt_fixture(dir.path());
        let maker = PromptMaker::approximate();
        // "long": system 2 + (3 + 5) = 10, + (2 + 2) = 14, + (1 + 7) = 22.
        let spec = sharegpt_spec(&p, None, Some(14), 2, 10, 1).unwrap();
        let plans = spec.conversations(&maker, 1);
        assert_eq!(by_first_message(&plans)["one two three"].turns.len(), 2);
        // At 13 only one turn fits: below the minimum, the conversation goes.
        let spec = sharegpt_spec(&p, None, Some(13), 2, 10, 1).unwrap();
        assert!(!by_first_message(&spec.conversations(&maker, 1)).contains_key("one two three"));

        // --conversation-num caps; the seed decides which and in what order.
        let firsts = |seed| {
            sharegpt_spec(&p, None, None, 1, 2, seed)
                .unwrap()
                .conversations(&maker, seed)
                .iter()
                .map(|c| c.turns[0].user.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(firsts(3).len(), 2);
        assert_eq!(firsts(3), firsts(3));
        assert!(
            (0..20).any(|s| firsts(s) != firsts(3)),
            "another seed, another choice"
        );
        // Warmups come after the measured pass: never a measured conversation.
        let spec = sharegpt_spec(&p, None, None, 1, 2, 3).unwrap();
        let measured = firsts(3);
        let warm = spec.warmup_conversations(5, &maker, 9);
        assert_eq!(warm.len(), 2, "the file has two more, and no more");
        assert!(warm.iter().all(|c| !measured.contains(&c.turns[0].user)));
    }

    #[test]
    fn sharegpt_conversations_are_capped_at_max_turns() {
        let dir = tempfile::tempdir().unwrap();
        let p = sharegpt_fixture(dir.path());
        let maker = PromptMaker::approximate();
        let turns = |max_turns: Option<u32>| {
            let mut f = ShareGptConversations::load(&p, None, None, 1, 1).unwrap();
            f.max_turns = max_turns;
            let spec = MultiTurnSpec::sharegpt(f, 10, 0.0, ThinkTime::Fixed, &maker).unwrap();
            spec.conversations(&maker, 1)
                .iter()
                .map(|c| c.turns.len())
                .max()
                .unwrap()
        };
        // "long" has three turns; the cap keeps the first two, in order.
        assert_eq!(turns(None), 3);
        assert_eq!(turns(Some(2)), 2);
        assert_eq!(turns(Some(1)), 1);
    }

    #[test]
    fn sharegpt_files_without_usable_conversations_say_what_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = sharegpt_fixture(dir.path());
        let e = sharegpt_spec(&p, None, Some(3), 2, 10, 1).unwrap_err();
        assert!(
            e.contains("--sharegpt-context-len") && e.contains("--sharegpt-min-turns"),
            "{e}"
        );
        let e = sharegpt_spec(&p, None, None, 4, 10, 1).unwrap_err();
        assert!(
            e.contains("at least 4 turns") && !e.contains("context"),
            "{e}"
        );
        let q = dir.path().join("none.json");
        std::fs::write(
            &q,
            r#"[{"conversations": [{"from": "gpt", "value": "hi"}]}, {"x": 1}]"#,
        )
        .unwrap();
        let e = sharegpt_spec(&q, None, None, 1, 10, 1).unwrap_err();
        assert!(e.contains("no conversation") && e.contains("human"), "{e}");
        std::fs::write(&q, r#"{"conversations": []}"#).unwrap();
        assert!(sharegpt_spec(&q, None, None, 1, 10, 1)
            .unwrap_err()
            .contains("JSON array"));
    }

    #[test]
    fn exponential_think_times_have_the_mean_and_vary() {
        let maker = PromptMaker::approximate();
        let spec = MultiTurnSpec::new(
            400,
            TurnCount::Fixed { turns: 6 },
            0,
            2,
            2,
            2,
            200.0,
            ThinkTime::Exponential,
            5,
        );
        let thinks: Vec<f64> = spec
            .conversations(&maker, 5)
            .iter()
            .flat_map(|c| {
                c.turns[1..]
                    .iter()
                    .map(|t| t.think.as_secs_f64() * 1000.0)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(thinks.len(), 2000);
        let mean = thinks.iter().sum::<f64>() / thinks.len() as f64;
        // 2000 exponential samples: the standard error of the mean is 200/√2000 ≈ 4.5 ms.
        assert!((mean - 200.0).abs() < 25.0, "mean {mean}");
        let below_mean = thinks.iter().filter(|&&t| t < 200.0).count() as f64 / 2000.0;
        // P(X < mean) = 1 − 1/e ≈ 0.632 for an exponential; a fixed time would give 0.
        assert!((below_mean - 0.632).abs() < 0.05, "{below_mean}");
    }

    #[test]
    fn tokenizer_prompts_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let maker = PromptMaker::with_tokenizer(&tiny_tokenizer(dir.path())).unwrap();
        assert!(maker.is_exact());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for n in [1, 5, 64, 300] {
            let (text, count) = maker.make(n, &mut rng);
            assert_eq!(count, n);
            assert_eq!(maker.count(&text), n);
        }
    }

    #[test]
    fn missing_tokenizer_file_names_the_path_and_the_fix() {
        let e = PromptMaker::with_tokenizer(Path::new("/nonexistent/tok.json"))
            .err()
            .unwrap();
        assert!(
            e.contains("/nonexistent/tok.json") && e.contains("tokenizer.json"),
            "{e}"
        );
    }
}
