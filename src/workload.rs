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
}

impl Workload {
    /// Requests in one pass over the workload (`None`: as many as asked).
    pub fn natural_count(&self) -> Option<u64> {
        match self {
            Workload::Random(_) => None,
            Workload::SharedPrefix(s) => Some(u64::from(s.groups) * u64::from(s.prompts_per_group)),
        }
    }

    /// Mean output tokens asked per request.
    pub fn mean_output(&self) -> f64 {
        match self {
            Workload::Random(r) => r.output.mean(),
            Workload::SharedPrefix(s) => f64::from(s.output_len),
        }
    }

    /// An endless, seeded stream of work items.
    pub fn items<'a>(
        &'a self,
        maker: &'a PromptMaker,
        seed: u64,
    ) -> Box<dyn Iterator<Item = WorkItem> + Send + 'a> {
        match self {
            Workload::Random(r) => Box::new(r.items(maker, seed)),
            Workload::SharedPrefix(s) => Box::new(s.items(maker, seed)),
        }
    }
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
