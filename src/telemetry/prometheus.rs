//! A tolerant parser of the Prometheus text exposition format (version 0.0.4), pure.
//!
//! It reads what real engines emit — Python `prometheus_client` (vLLM, SGLang), Go exporters
//! (DCGM) and servebench's own server — and also the OpenMetrics spellings they sometimes use
//! (`# EOF`, exemplars after ` # `, float-second timestamps), plus the quoted metric names of
//! Prometheus 3 (`{"my.metric", a="b"} 1`). A line it cannot read is reported in
//! [`Exposition::issues`] and skipped: one odd line never loses the rest of a scrape.

use std::collections::BTreeMap;

use super::Labels;

/// The declared type of a metric family (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl MetricType {
    fn parse(s: &str) -> MetricType {
        match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" | "gaugehistogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            _ => MetricType::Untyped,
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The sample's own name (`x_bucket`, `x_sum`, … for histograms).
    pub name: String,
    pub labels: Labels,
    /// `NaN` and `±Inf` are kept as such.
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the line carries a timestamp (OpenMetrics'
    /// float seconds are converted).
    pub timestamp_ms: Option<i64>,
}

/// A line that could not be read, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseIssue {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// One histogram series assembled from its `_bucket`, `_sum` and `_count` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// The family name, without suffix.
    pub name: String,
    /// The series' labels without `le`.
    pub labels: Labels,
    /// `(upper bound, cumulative count)`, sorted by bound; the last bound is `+Inf` when present.
    pub buckets: Vec<(f64, f64)>,
    pub sum: Option<f64>,
    pub count: Option<f64>,
}

/// Everything one scrape said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<PromSample>,
    /// Family name → declared type.
    pub types: BTreeMap<String, MetricType>,
    /// Family name → help text (unescaped).
    pub help: BTreeMap<String, String>,
    pub issues: Vec<ParseIssue>,
}

impl Exposition {
    /// The declared type of the family a sample belongs to, looking through the histogram and
    /// summary suffixes (`x_bucket` → `x`) and the counter suffix (`x_total` → `x`, as
    /// OpenMetrics declares counters).
    pub fn type_of(&self, sample_name: &str) -> MetricType {
        if let Some(t) = self.types.get(sample_name) {
            return *t;
        }
        for suffix in [
            "_bucket", "_sum", "_count", "_total", "_created", "_gcount", "_gsum",
        ] {
            if let Some(family) = sample_name.strip_suffix(suffix) {
                if let Some(t) = self.types.get(family) {
                    return *t;
                }
            }
        }
        MetricType::Untyped
    }

    /// Samples with exactly this name.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a PromSample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Every histogram series (families declared `histogram`, or any name with `_bucket`
    /// samples carrying `le`), assembled.
    pub fn histograms(&self) -> Vec<Histogram> {
        let mut out: BTreeMap<(String, Vec<(String, String)>), Histogram> = BTreeMap::new();
        for s in &self.samples {
            let (family, part) = if let Some(f) = s.name.strip_suffix("_bucket") {
                (f, Part::Bucket)
            } else if let Some(f) = s.name.strip_suffix("_sum") {
                (f, Part::Sum)
            } else if let Some(f) = s.name.strip_suffix("_count") {
                (f, Part::Count)
            } else {
                continue;
            };
            let declared = self.types.get(family) == Some(&MetricType::Histogram);
            let looks_like_one = part == Part::Bucket && s.labels.contains_key("le");
            if !(declared || looks_like_one) {
                continue;
            }
            let mut labels = s.labels.clone();
            let le = labels.remove("le");
            let key = (
                family.to_string(),
                labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            );
            let h = out.entry(key).or_insert_with(|| Histogram {
                name: family.to_string(),
                labels,
                buckets: Vec::new(),
                sum: None,
                count: None,
            });
            match part {
                Part::Bucket => {
                    if let Some(bound) = le.as_deref().and_then(parse_value) {
                        h.buckets.push((bound, s.value));
                    }
                }
                Part::Sum => h.sum = Some(s.value),
                Part::Count => h.count = Some(s.value),
            }
        }
        out.into_values()
            .filter(|h| !h.buckets.is_empty() || h.count.is_some())
            .map(|mut h| {
                h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                h
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Bucket,
    Sum,
    Count,
}

/// Parse a whole exposition. Never fails: unreadable lines become [`ParseIssue`]s.
pub fn parse(text: &str) -> Exposition {
    let mut exp = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment.trim() == "EOF" {
                break;
            }
            read_comment(comment, &mut exp);
            continue;
        }
        match parse_sample_line(line) {
            Ok(s) => exp.samples.push(s),
            Err(reason) => exp.issues.push(ParseIssue {
                line: i + 1,
                reason,
            }),
        }
    }
    exp
}

/// `# HELP name text` and `# TYPE name type`; any other comment is ignored.
fn read_comment(comment: &str, exp: &mut Exposition) {
    let comment = comment.trim_start();
    let (keyword, rest) = match comment.split_once([' ', '\t']) {
        Some(pair) => pair,
        None => return,
    };
    let rest = rest.trim_start();
    let (name, tail) = match rest.split_once([' ', '\t']) {
        Some((n, t)) => (n, t.trim_start()),
        None => (rest, ""),
    };
    if name.is_empty() {
        return;
    }
    match keyword {
        "TYPE" => {
            exp.types
                .insert(name.to_string(), MetricType::parse(tail.trim()));
        }
        "HELP" => {
            exp.help.insert(name.to_string(), unescape_help(tail));
        }
        _ => {}
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A cursor over one sample line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (metric names; label names are the same without `:`, and
    /// being lenient there costs nothing).
    fn name(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| {
                !(c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
            })
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(&rest[..len])
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes; other escapes are kept as
    /// written (tolerance: some exporters emit `\t` or a lone backslash).
    fn quoted(&mut self) -> Result<String, String> {
        if !self.eat('"') {
            return Err("expected '\"' to open a label value".into());
        }
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err("label value is not closed by '\"'".into()),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('\\') => out.push('\\'),
                    Some('"') => out.push('"'),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => return Err("label value ends in a lone backslash".into()),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

fn parse_sample_line(line: &str) -> Result<PromSample, String> {
    let mut cur = Cursor { s: line, pos: 0 };
    let mut name = cur.name().map(str::to_string);
    let mut labels = Labels::new();
    cur.skip_ws();
    if cur.eat('{') {
        read_labels(&mut cur, &mut name, &mut labels)?;
    }
    let name = name.ok_or_else(|| format!("no metric name at the start of {:?}", clip(line)))?;
    cur.skip_ws();
    let rest = cur.rest();
    // OpenMetrics exemplars follow the value/timestamp after " # ".
    let rest = match rest.find(" #") {
        Some(i) => &rest[..i],
        None => rest,
    };
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| format!("{name}: no value after the name and labels"))?;
    let value = parse_value(value_text)
        .ok_or_else(|| format!("{name}: value {value_text:?} is not a number"))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(
            parse_timestamp(t).ok_or_else(|| format!("{name}: timestamp {t:?} is not a number"))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("{name}: unexpected {extra:?} after the timestamp"));
    }
    Ok(PromSample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Reads `a="x", b="y"}` (the opening brace already eaten). A quoted string standing alone is
/// the metric name (Prometheus 3's UTF-8 names).
fn read_labels(
    cur: &mut Cursor<'_>,
    name: &mut Option<String>,
    labels: &mut Labels,
) -> Result<(), String> {
    loop {
        cur.skip_ws();
        if cur.eat('}') {
            return Ok(());
        }
        let key = if cur.peek() == Some('"') {
            let quoted = cur.quoted()?;
            cur.skip_ws();
            if cur.peek() != Some('=') {
                if name.is_some() {
                    return Err(format!("a second metric name {quoted:?} inside the labels"));
                }
                *name = Some(quoted);
                cur.skip_ws();
                if !cur.eat(',') && cur.peek() != Some('}') {
                    return Err("expected ',' or '}' after the quoted metric name".into());
                }
                continue;
            }
            quoted
        } else {
            cur.name()
                .ok_or_else(|| format!("expected a label name at {:?}", clip(cur.rest())))?
                .to_string()
        };
        cur.skip_ws();
        if !cur.eat('=') {
            return Err(format!("expected '=' after label {key:?}"));
        }
        cur.skip_ws();
        let value = cur.quoted()?;
        labels.insert(key, value);
        cur.skip_ws();
        if cur.eat(',') {
            continue;
        }
        if cur.eat('}') {
            return Ok(());
        }
        return Err(format!(
            "expected ',' or '}}' after a label value, found {:?}",
            clip(cur.rest())
        ));
    }
}

/// A sample value as Prometheus writes it: decimal or exponent notation, `NaN`, `+Inf`, `-Inf`
/// (Rust's float parser also accepts `inf`/`nan` in any case, as Go's does).
pub fn parse_value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    // OpenMetrics writes seconds as a float.
    let secs = s.parse::<f64>().ok().filter(|v| v.is_finite())?;
    Some((secs * 1000.0).round() as i64)
}

/// Escape a label value for the text format (`\` → `\\`, `"` → `\"`, newline → `\n`).
pub fn escape_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Write one sample line in the text format (the inverse of the parser, for tests and fakes).
pub fn render_sample(name: &str, labels: &Labels, value: f64) -> String {
    let mut out = String::from(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            out.push_str(&escape_label_value(v));
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&render_value(value));
    out
}

fn render_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // `{:?}` prints the shortest representation that parses back to the same f64.
        format!("{v:?}")
    }
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests;
