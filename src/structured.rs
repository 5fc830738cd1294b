//! Structured output: requests constrained by a JSON schema or a regex, in each engine's
//! dialect, and the check of every answer against its constraint.
//!
//! Data flows one way: a [`Constraint`] and a [`Dialect`] give the body fields merged into
//! every request ([`body_fields`]); a [`Checker`] turns an answer's text into an
//! [`OutputCheck`] after the response completed (so it costs the timing nothing); the metrics
//! count the verdicts. The embedded server reads the same fields back ([`from_body`], every
//! dialect) and the simulator answers with a valid instance ([`generate`]).
//!
//! Wire forms, checked against the engines' request models:
//! - `openai`: `response_format: {"type": "json_schema", "json_schema": {"name", "schema",
//!   "strict": true}}` (OpenAI's Structured Outputs). JSON only: OpenAI has no regex.
//! - `vllm`: `structured_outputs: {"json": schema}` or `{"regex": pattern}` — the
//!   `StructuredOutputsParams` of current vLLM (`vllm/sampling_params.py`, 0.32.0 as pinned by
//!   scripts/real-engines; docs "Structured Outputs"). vLLM also maps `response_format`
//!   json_schema onto it.
//! - `vllm-guided`: `guided_json` / `guided_regex`, vLLM up to 0.10. vLLM 0.32 lists them as
//!   removed and IGNORES them with HTTP 200 (`_REMOVED_GUIDED_FIELDS` in
//!   `vllm/entrypoints/serve/engine/protocol.py`): the answers are then unconstrained and the
//!   validity rate shows it.
//! - `sglang`: `response_format` json_schema as OpenAI (SGLang's `ResponseFormat` →
//!   `sampling_params["json_schema"]`), and a top-level `regex` string for regexes
//!   (`CompletionRequest.regex` / `ChatCompletionRequest.regex` in
//!   `python/sglang/srt/entrypoints/openai/protocol.py`; docs "Structured Outputs").

use crate::record::OutputCheck;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;
use std::str::FromStr;

/// What an answer must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Constraint {
    /// The answer is one JSON document valid against this schema.
    JsonSchema(Value),
    /// The whole answer matches this regex (anchored at both ends).
    Regex(String),
}

impl Constraint {
    /// `json-schema` or `regex`, as the `--structured-output` flag spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::JsonSchema(_) => "json-schema",
            Constraint::Regex(_) => "regex",
        }
    }

    /// A stable key of the constraint's content (engines cache compiled grammars by it).
    pub fn key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match self {
            Constraint::JsonSchema(s) => ("json", s.to_string()).hash(&mut h),
            Constraint::Regex(r) => ("regex", r).hash(&mut h),
        }
        h.finish()
    }
}

/// Which engine's request fields carry the constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    OpenAi,
    Vllm,
    VllmGuided,
    Sglang,
}

impl Dialect {
    pub const ALL: [Dialect; 4] = [
        Dialect::OpenAi,
        Dialect::Vllm,
        Dialect::VllmGuided,
        Dialect::Sglang,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Vllm => "vllm",
            Dialect::VllmGuided => "vllm-guided",
            Dialect::Sglang => "sglang",
        }
    }

    /// The dialect a target speaks, from its label or engine name: vLLM → `vllm` (the pinned
    /// 0.32 accepts `structured_outputs` and no longer `guided_*`), SGLang → `sglang`,
    /// anything else (another OpenAI-compatible server) → `openai`.
    pub fn for_engine(engine: &str) -> Dialect {
        let e = engine.to_ascii_lowercase();
        if e.contains("sglang") {
            Dialect::Sglang
        } else if e.contains("vllm") {
            Dialect::Vllm
        } else {
            Dialect::OpenAi
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Dialect, String> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("use {}", Dialect::ALL.map(Dialect::as_str).join(", ")))
    }
}

/// The schema name sent in OpenAI's `json_schema.name` (required there).
pub const SCHEMA_NAME: &str = "servebench_answer";

/// The body fields that ask `dialect` for `constraint`, to merge into every request.
/// `Err` names the combination no engine of that dialect accepts.
pub fn body_fields(
    constraint: &Constraint,
    dialect: Dialect,
) -> Result<Map<String, Value>, String> {
    let response_format = |schema: &Value| {
        json!({"type": "json_schema",
               "json_schema": {"name": SCHEMA_NAME, "schema": schema, "strict": true}})
    };
    let (key, value) = match (dialect, constraint) {
        (Dialect::OpenAi | Dialect::Sglang, Constraint::JsonSchema(s)) => {
            ("response_format", response_format(s))
        }
        (Dialect::OpenAi, Constraint::Regex(_)) => {
            return Err(
                "the openai dialect has no regex constraint (response_format takes JSON \
                        schemas only); use --structured-dialect vllm or sglang, or a JSON schema"
                    .into(),
            )
        }
        (Dialect::Vllm, Constraint::JsonSchema(s)) => ("structured_outputs", json!({"json": s})),
        (Dialect::Vllm, Constraint::Regex(r)) => ("structured_outputs", json!({"regex": r})),
        (Dialect::VllmGuided, Constraint::JsonSchema(s)) => ("guided_json", s.clone()),
        (Dialect::VllmGuided, Constraint::Regex(r)) => ("guided_regex", Value::from(r.as_str())),
        (Dialect::Sglang, Constraint::Regex(r)) => ("regex", Value::from(r.as_str())),
    };
    let mut m = Map::new();
    m.insert(key.into(), value);
    Ok(m)
}

/// The constraint a request body carries, in any dialect (the embedded server's reading).
/// `None`: unconstrained, or a form the simulator does not generate for (`json_object`,
/// `choice`, `grammar`, structural tags).
pub fn from_body(body: &Value) -> Option<Constraint> {
    let schema = |v: &Value| -> Option<Constraint> {
        match v {
            // SGLang's native API and some clients send the schema as a JSON string.
            Value::String(s) => serde_json::from_str(s).ok().map(Constraint::JsonSchema),
            Value::Object(_) | Value::Bool(_) => Some(Constraint::JsonSchema(v.clone())),
            _ => None,
        }
    };
    let regex = |v: &Value| v.as_str().map(|s| Constraint::Regex(s.to_string()));
    if let Some(rf) = body.get("response_format") {
        if rf.get("type").and_then(Value::as_str) == Some("json_schema") {
            let js = rf.get("json_schema");
            // OpenAI nests the schema under json_schema.schema; SGLang also takes a bare
            // `schema` beside `type`.
            if let Some(c) = js
                .and_then(|j| j.get("schema"))
                .or_else(|| rf.get("schema"))
                .and_then(schema)
            {
                return Some(c);
            }
        }
    }
    if let Some(so) = body.get("structured_outputs") {
        if let Some(c) = so.get("json").and_then(schema) {
            return Some(c);
        }
        if let Some(c) = so.get("regex").and_then(regex) {
            return Some(c);
        }
    }
    body.get("guided_json")
        .and_then(schema)
        .or_else(|| body.get("json_schema").and_then(schema))
        .or_else(|| body.get("guided_regex").and_then(regex))
        .or_else(|| body.get("regex").and_then(regex))
}

/// A small schema a model can finish well within 128 tokens: an object of enums, bounded
/// integers, a short string and a short array (about 40 tokens as compact JSON).
pub fn default_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "country_code": {"type": "string", "enum": ["US", "DE", "FR", "JP", "IN", "BR"]},
            "population_millions": {"type": "integer", "minimum": 0, "maximum": 40},
            "is_capital": {"type": "boolean"},
            "climate": {"type": "string", "enum": ["tropical", "dry", "temperate", "continental", "polar"]},
            "landmarks": {
                "type": "array",
                "items": {"type": "string", "maxLength": 20},
                "minItems": 1,
                "maxItems": 3
            }
        },
        "required": ["city", "country_code", "population_millions", "is_capital", "climate", "landmarks"],
        "additionalProperties": false
    })
}

/// Longest reason kept in an `Invalid` verdict, in bytes (cut at a character boundary).
const REASON_BYTES: usize = 200;

/// A compiled constraint that judges answers.
pub struct Checker {
    compiled: Compiled,
}

enum Compiled {
    Json(Box<jsonschema::Validator>),
    Regex(regex::Regex),
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.compiled {
            Compiled::Json(_) => f.write_str("Checker(json-schema)"),
            Compiled::Regex(r) => write!(f, "Checker(regex {})", r.as_str()),
        }
    }
}

impl Checker {
    /// Compile `c`. `Err` says why the schema or regex is unusable.
    pub fn new(c: &Constraint) -> Result<Checker, String> {
        let compiled = match c {
            Constraint::JsonSchema(s) => Compiled::Json(Box::new(
                jsonschema::validator_for(s)
                    .map_err(|e| format!("not a usable JSON schema: {e}"))?,
            )),
            Constraint::Regex(r) => Compiled::Regex(
                // Anchored: the engines constrain the whole answer, so the whole answer must
                // match, not a substring of it.
                regex::Regex::new(&format!(r"\A(?:{r})\z"))
                    .map_err(|e| format!("not a usable regex: {e}"))?,
            ),
        };
        Ok(Checker { compiled })
    }

    /// The verdict on one answer's text.
    pub fn check(&self, text: &str) -> OutputCheck {
        let invalid = |reason: String| OutputCheck::Invalid {
            reason: crate::openai::truncate(reason, REASON_BYTES),
        };
        match &self.compiled {
            Compiled::Json(v) => {
                // Engines may emit whitespace around the document; JSON allows it.
                let doc: Value = match serde_json::from_str(text) {
                    Ok(d) => d,
                    Err(e) if e.is_eof() => {
                        return invalid(format!("not complete JSON (truncated?): {e}"))
                    }
                    Err(e) => return invalid(format!("not JSON: {e}")),
                };
                match v.validate(&doc) {
                    Ok(()) => OutputCheck::Valid,
                    Err(e) => invalid(format!("at '{}': {e}", e.instance_path())),
                }
            }
            Compiled::Regex(r) => {
                if r.is_match(text) {
                    OutputCheck::Valid
                } else {
                    invalid("does not match the regex".into())
                }
            }
        }
    }
}

// ---- generation (the simulator's answers) --------------------------------------------------

/// Deepest nesting the generator follows (a recursive schema would not end).
const MAX_DEPTH: usize = 8;
/// Most array items generated when the schema allows more.
const MAX_ITEMS: u64 = 4;
/// Longest string generated when the schema allows more.
const MAX_STRING: u64 = 12;

/// A text that satisfies `c`, seeded by `rng`. `Err` names the first feature the generator
/// does not handle (the server then answers unconstrained text, which the client's check
/// reports as invalid — never a fake pass).
///
/// JSON schema subset: `const`, `enum`, `type` (one or a list: object, string, integer,
/// number, boolean, array, null), `properties`/`required` (optional properties included at
/// random), `minimum`/`maximum`/`exclusive*`, `minLength`/`maxLength`, `pattern` (through
/// the regex generator), `minItems`/`maxItems`, `items`, `anyOf`/`oneOf` (the first branch),
/// `allOf` of one schema; `true`/`{}` give `null`. Regex subset: everything `regex-syntax`
/// parses except look-around and word boundaries (classes pick printable ASCII when they can).
pub fn generate(c: &Constraint, rng: &mut impl Rng) -> Result<String, String> {
    match c {
        Constraint::JsonSchema(s) => {
            let v = gen_value(s, rng, 0)?;
            serde_json::to_string(&v).map_err(|e| e.to_string())
        }
        Constraint::Regex(r) => gen_regex(r, rng),
    }
}

fn gen_value(s: &Value, rng: &mut impl Rng, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nesting deeper than {MAX_DEPTH}"));
    }
    let obj = match s {
        Value::Bool(true) => return Ok(Value::Null),
        Value::Bool(false) => return Err("the schema `false` has no instance".into()),
        Value::Object(o) => o,
        _ => return Err("a schema must be an object or a boolean".into()),
    };
    if let Some(c) = obj.get("const") {
        return Ok(c.clone());
    }
    if let Some(Value::Array(options)) = obj.get("enum") {
        if options.is_empty() {
            return Err("an empty enum".into());
        }
        return Ok(options[rng.random_range(0..options.len())].clone());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key) {
            let first = branches.first().ok_or(format!("an empty {key}"))?;
            return gen_value(first, rng, depth + 1);
        }
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        if all.len() == 1 {
            return gen_value(&all[0], rng, depth + 1);
        }
        return Err("allOf with more than one schema".into());
    }
    for unsupported in ["$ref", "not", "if", "patternProperties", "dependentSchemas"] {
        if obj.contains_key(unsupported) {
            return Err(format!("the keyword {unsupported}"));
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // A list of types: the first that is not null, so answers carry content.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or_else(|| ts.first().and_then(Value::as_str))
            .unwrap_or("null"),
        Some(_) => return Err("a `type` that is not a string or list".into()),
        None if obj.contains_key("properties") => "object",
        None if obj.contains_key("items") => "array",
        None => "null",
    };
    let num = |k: &str| obj.get(k).and_then(Value::as_f64);
    match ty {
        "null" => Ok(Value::Null),
        "boolean" => Ok(Value::Bool(rng.random())),
        "integer" => {
            let lo = match (
                num("minimum").map(f64::ceil),
                num("exclusiveMinimum").map(|x| x.floor() + 1.0),
            ) {
                (Some(a), Some(b)) => a.max(b),
                (a, b) => a.or(b).unwrap_or(0.0),
            };
            let hi = num("maximum")
                .map(f64::floor)
                .or(num("exclusiveMaximum").map(|x| x.ceil() - 1.0))
                .unwrap_or(lo + 100.0);
            if hi < lo {
                return Err("an integer range with no value".into());
            }
            let (lo, hi) = (lo as i64, hi as i64);
            let mut v = rng.random_range(lo..=hi);
            if let Some(m) = num("multipleOf").filter(|m| *m >= 1.0) {
                let m = m as i64;
                v = (v / m) * m;
                if v < lo {
                    v += m;
                }
                if v > hi {
                    return Err("no multipleOf inside the range".into());
                }
            }
            Ok(Value::from(v))
        }
        "number" => {
            let lo = num("minimum").or(num("exclusiveMinimum")).unwrap_or(0.0);
            let hi = num("maximum")
                .or(num("exclusiveMaximum"))
                .unwrap_or(lo + 100.0);
            if hi <= lo {
                return Ok(Value::from(lo));
            }
            // Two decimals, strictly inside the range (so exclusive bounds hold too).
            let x = lo + (hi - lo) * rng.random_range(0.05..0.95);
            Ok(Value::from((x * 100.0).round() / 100.0))
        }
        "string" => {
            if let Some(p) = obj.get("pattern").and_then(Value::as_str) {
                // JSON schema patterns are unanchored; generating a full match satisfies them.
                return gen_regex(p, rng).map(Value::from);
            }
            if obj.contains_key("format") {
                return Err("string formats".into());
            }
            let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(1);
            let max = obj
                .get("maxLength")
                .and_then(Value::as_u64)
                .unwrap_or(MAX_STRING)
                .min(min.max(1) + MAX_STRING);
            if max < min {
                return Err("maxLength below minLength".into());
            }
            let len = rng.random_range(min..=max.max(min));
            Ok(Value::from(word_text(len as usize, rng)))
        }
        "array" => {
            let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let max = obj
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(MAX_ITEMS)
                .min(min.max(1) + MAX_ITEMS);
            if max < min {
                return Err("maxItems below minItems".into());
            }
            let n = rng.random_range(min.max(1).min(max)..=max);
            let items = obj.get("items").cloned().unwrap_or(Value::Bool(true));
            if obj.get("uniqueItems") == Some(&Value::Bool(true)) && n > 1 {
                return Err("uniqueItems".into());
            }
            (0..n)
                .map(|_| gen_value(&items, rng, depth + 1))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        "object" => {
            let empty = Map::new();
            let props = obj
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            for (name, sub) in props {
                if required.contains(&name.as_str()) || rng.random_bool(0.5) {
                    out.insert(name.clone(), gen_value(sub, rng, depth + 1)?);
                }
            }
            for name in required {
                if !out.contains_key(name) {
                    // Required but not described: any value validates against no schema.
                    out.insert(name.to_string(), Value::Null);
                }
            }
            Ok(Value::Object(out))
        }
        other => Err(format!("the type {other}")),
    }
}

/// `len` characters of lowercase words separated by spaces (no trailing space).
fn word_text(len: usize, rng: &mut impl Rng) -> String {
    const WORDS: [&str; 12] = [
        "river", "stone", "north", "light", "harbor", "maple", "green", "old", "bridge", "park",
        "tower", "market",
    ];
    let mut s = String::with_capacity(len + 8);
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    s.truncate(len);
    // A cut may leave a trailing space, which is fine for a string but looks odd.
    if s.ends_with(' ') {
        s.pop();
        s.push('x');
    }
    s
}

/// A string that `pattern` matches in full.
fn gen_regex(pattern: &str, rng: &mut impl Rng) -> Result<String, String> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .map_err(|e| format!("not a usable regex: {e}"))?;
    let mut out = String::new();
    gen_hir(&hir, rng, &mut out, 0)?;
    Ok(out)
}

fn gen_hir(
    h: &regex_syntax::hir::Hir,
    rng: &mut impl Rng,
    out: &mut String,
    depth: usize,
) -> Result<(), String> {
    use regex_syntax::hir::{Class, HirKind, Look};
    if depth > 64 {
        return Err("a regex nested too deeply".into());
    }
    match h.kind() {
        HirKind::Empty => Ok(()),
        HirKind::Literal(l) => {
            out.push_str(std::str::from_utf8(&l.0).map_err(|_| "a non-UTF-8 literal")?);
            Ok(())
        }
        HirKind::Class(Class::Unicode(c)) => {
            let ranges = c.ranges();
            if ranges.is_empty() {
                return Err("an empty character class".into());
            }
            // Prefer printable ASCII (readable, one byte) when the class has some.
            let printable: Vec<(char, char)> = ranges
                .iter()
                .filter_map(|r| {
                    let (a, b) = (r.start().max(' '), r.end().min('~'));
                    (a <= b).then_some((a, b))
                })
                .collect();
            let (a, b) = if printable.is_empty() {
                let r = ranges[rng.random_range(0..ranges.len())];
                (r.start(), r.end())
            } else {
                printable[rng.random_range(0..printable.len())]
            };
            let span = (b as u32).saturating_sub(a as u32).min(25);
            let c = char::from_u32(a as u32 + rng.random_range(0..=span)).unwrap_or(a);
            out.push(c);
            Ok(())
        }
        HirKind::Class(Class::Bytes(c)) => {
            let r = c.ranges().first().ok_or("an empty byte class")?;
            out.push(char::from(r.start().min(0x7e)));
            Ok(())
        }
        HirKind::Look(Look::Start | Look::End | Look::StartLF | Look::EndLF) => Ok(()),
        HirKind::Look(_) => Err("word boundaries or look-around in a regex".into()),
        HirKind::Repetition(r) => {
            let max = r.max.unwrap_or(r.min + 3).min(r.min + 3);
            let n = rng.random_range(r.min..=max);
            for _ in 0..n {
                gen_hir(&r.sub, rng, out, depth + 1)?;
            }
            Ok(())
        }
        HirKind::Capture(c) => gen_hir(&c.sub, rng, out, depth + 1),
        HirKind::Concat(parts) => {
            for p in parts {
                gen_hir(p, rng, out, depth + 1)?;
            }
            Ok(())
        }
        HirKind::Alternation(alts) => {
            gen_hir(&alts[rng.random_range(0..alts.len())], rng, out, depth + 1)
        }
    }
}

/// Split an answer into the pieces the embedded server streams as tokens: a run of letters or
/// digits up to 4 characters is one token, every other character (punctuation, a space) one
/// more, roughly the granularity of a BPE tokenizer over compact JSON.
pub fn token_pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            if cur.chars().count() == 4 {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(ch);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(ch.to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests;
