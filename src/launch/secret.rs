//! Keeping tokens out of files, logs and messages.
//!
//! `HF_TOKEN` goes from our environment into the container's and nowhere else. Everything that
//! prints a command line, an environment or a log tail goes through here.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

pub(crate) const REDACTED: &str = "<redacted>";

/// Environment variables whose values are passed on to engines and must never be shown.
pub(crate) const PASSED_SECRETS: &[&str] = &["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"];

/// Environment variables whose values are scrubbed from log tails when they appear there.
const SCRUBBED: &[&str] = &[
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "OPENAI_API_KEY",
    "VLLM_API_KEY",
];

/// Engine flags whose value is a credential.
const SECRET_FLAGS: &[&str] = &["--api-key", "--hf-token", "--token", "--admin-api-key"];

/// Whether an environment variable name looks like it holds a credential.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["TOKEN", "KEY", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|w| k.contains(w))
}

/// `text` with the values of known secret environment variables replaced.
pub(crate) fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for key in SCRUBBED {
        if let Ok(value) = std::env::var(key) {
            // A very short value would blank out ordinary words; such a value is no real token.
            if value.len() >= 8 && out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), REDACTED));
            }
        }
    }
    out
}

/// Bytes of a key at the end of a cut text that count as a fragment of it and are removed
/// (fewer could be any word; the rule is that no 6 characters of a key survive).
const MIN_FRAGMENT: usize = 4;

/// Server text made safe to keep: every occurrence of `secret` replaced, *then* cut to `max`
/// bytes (a cut first could keep all but the last characters of a key that straddles the
/// cut), and a key's beginning left at the end by a cut (this one, or an earlier one that
/// bounded the text's size) removed too. Every string of server text that reaches a record,
/// journal, result, console or log goes through here: error bodies and `event: error`
/// messages, malformed-chunk previews, `not_sse` quotes, answer text.
pub fn redact_cut(text: String, secret: Option<&str>, max: usize) -> String {
    let Some(key) = secret.filter(|k| !k.is_empty()) else {
        return crate::openai::truncate(text, max);
    };
    let mut text = if text.contains(key) {
        text.replace(key, REDACTED)
    } else {
        text
    };
    drop_cut_fragment(&mut text, key);
    let mut text = crate::openai::truncate(text, max);
    drop_cut_fragment(&mut text, key);
    text
}

/// Server text kept whole (an answer), every occurrence of `secret` replaced.
pub fn redact(text: String, secret: Option<&str>) -> String {
    match secret {
        Some(key) if !key.is_empty() && text.contains(key) => text.replace(key, REDACTED),
        _ => text,
    }
}

/// A JSON value from a server with `secret` replaced in every string (keys included).
pub fn redact_json(value: serde_json::Value, secret: Option<&str>) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(redact(s, secret)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| redact_json(v, secret)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (redact(k, secret), redact_json(v, secret)))
                .collect(),
        ),
        other => other,
    }
}

/// Replaces the longest beginning of `key` (at least [`MIN_FRAGMENT`] bytes) that `text` ends
/// with, before a trailing cut mark `…` if there is one.
fn drop_cut_fragment(text: &mut String, key: &str) {
    let end = text.strip_suffix('…').map_or(text.len(), str::len);
    let longest = (MIN_FRAGMENT..key.len())
        .rev()
        .find(|&n| key.is_char_boundary(n) && text[..end].ends_with(&key[..n]));
    if let Some(n) = longest {
        text.replace_range(end - n..end, REDACTED);
    }
}

/// The credential values a process target was given: secret-looking `env` values and the
/// values of credential flags in its command line (`--api-key X`, `--api-key=X`).
pub(crate) fn given_secrets(argv: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = env
        .iter()
        .filter(|(k, _)| is_secret_key(k))
        .map(|(_, v)| v.clone())
        .collect();
    for (i, arg) in argv.iter().enumerate() {
        if SECRET_FLAGS.contains(&arg.as_str()) {
            out.extend(argv.get(i + 1).cloned());
        } else if let Some((k, v)) = arg.split_once('=') {
            if SECRET_FLAGS.contains(&k) {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// Replace every secret (`extra`, and the values of [`SCRUBBED`] environment variables) in a
/// log file that an engine wrote itself, in place. An engine may print its own arguments or
/// environment (vLLM logs its non-default args, the API key among them); the file is kept
/// next to the results, so it must not keep them. Values shorter than 8 bytes are left alone
/// (see [`scrub`]). Best effort: a file that cannot be read or written is left as it is.
pub(crate) fn scrub_file(path: &std::path::Path, extra: &[String]) {
    let Ok(mut bytes) = std::fs::read(path) else {
        return;
    };
    let mut secrets: Vec<String> = extra.to_vec();
    secrets.extend(SCRUBBED.iter().filter_map(|k| std::env::var(k).ok()));
    let mut changed = false;
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        let finder = memchr::memmem::Finder::new(secret.as_bytes());
        if finder.find(&bytes).is_none() {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        while let Some(i) = finder.find(rest) {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(REDACTED.as_bytes());
            rest = &rest[i + secret.len()..];
        }
        out.extend_from_slice(rest);
        bytes = out;
        changed = true;
    }
    if changed {
        let _ = std::fs::write(path, bytes);
    }
}

/// A command line with the values of credential flags (`--api-key X`, `--api-key=X`) and
/// secret-looking `KEY=value` words replaced, for facts, logs and messages.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push(REDACTED.to_string());
            hide_next = false;
            continue;
        }
        if SECRET_FLAGS.contains(&arg.as_str()) {
            hide_next = true;
            out.push(arg.clone());
            continue;
        }
        match arg.split_once('=') {
            Some((k, _))
                if SECRET_FLAGS.contains(&k) || (!k.starts_with('-') && is_secret_key(k)) =>
            {
                out.push(format!("{k}={REDACTED}"))
            }
            _ => out.push(scrub(arg).into_owned()),
        }
    }
    out
}

/// A command line as one string a shell would split back the same way (for log headers).
pub(crate) fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%{}".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Debug for an environment map that shows names and hides secret-looking values.
pub(crate) struct RedactedEnv<'a>(pub &'a BTreeMap<String, String>);

impl fmt::Debug for RedactedEnv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.0 {
            if is_secret_key(k) {
                m.entry(k, &REDACTED);
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_log_loses_the_credentials_the_engine_was_given() {
        let argv = s(&[
            "vllm",
            "serve",
            "--api-key",
            "sk-flag-123456",
            "--hf-token=hf_flag_abcdef",
        ]);
        let env: BTreeMap<String, String> = [("HF_TOKEN", "hf_env_abcdefgh"), ("PORT", "8000")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let given = given_secrets(&argv, &env);
        assert_eq!(
            given,
            s(&["hf_env_abcdefgh", "sk-flag-123456", "hf_flag_abcdef"])
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("engine.log");
        // Not UTF-8 throughout (\xff): the bytes around a secret are kept as they are.
        let text: &[u8] = b"args: {'api_key': ['sk-flag-123456'], 'hf_token': 'hf_flag_abcdef'} \xff HF_TOKEN=hf_env_abcdefgh port 8000\n";
        std::fs::write(&log, text).unwrap();
        scrub_file(&log, &given);
        let after = std::fs::read(&log).unwrap();
        assert_eq!(
            after,
            b"args: {'api_key': ['<redacted>'], 'hf_token': '<redacted>'} \xff HF_TOKEN=<redacted> port 8000\n"
        );
    }

    /// Every window of `len` characters of `key`, as a test sees a leak.
    fn fragments(key: &str, len: usize) -> Vec<&str> {
        (0..=key.len() - len).map(|i| &key[i..i + len]).collect()
    }

    /// Regression (issue 12): an error body echoing the key was cut to 512 characters before the
    /// key was scrubbed, so a key straddling the cut kept `sk-SECRET12…` (11 of 12 characters).
    #[test]
    fn a_key_straddling_the_cut_leaves_no_fragment_at_any_offset() {
        let key = "sk-SECRET1234567";
        for pad in 490..520 {
            let text = format!("{}{key} and more text after it", "x".repeat(pad));
            let cut = redact_cut(text.clone(), Some(key), 512);
            assert!(cut.len() <= 512 + '…'.len_utf8(), "{pad}");
            for f in fragments(key, 6) {
                assert!(!cut.contains(f), "offset {pad}: {f:?} in {cut:?}");
            }
            // An earlier cut (a size bound) that left part of the key at the end.
            for keep in 1..key.len() {
                let pre_cut = crate::openai::truncate(text[..pad + keep].to_string(), 4096);
                let cut = redact_cut(pre_cut, Some(key), 512);
                for f in fragments(key, 6) {
                    assert!(!cut.contains(f), "offset {pad}+{keep}: {f:?} in {cut:?}");
                }
            }
        }
        // Short texts are kept as they are, the key replaced wherever it is.
        assert_eq!(
            redact_cut(format!("bad key {key}!"), Some(key), 512),
            "bad key <redacted>!"
        );
        assert_eq!(redact_cut("sk-SEC".into(), Some(key), 512), "<redacted>");
        assert_eq!(redact_cut("no key".into(), None, 3), "no …");
    }

    #[test]
    fn credential_flags_are_hidden() {
        let got = redact_args(&s(&[
            "--model",
            "m",
            "--api-key",
            "sk-123",
            "--hf-token=hf_abc",
            "HF_TOKEN=hf_abc",
            "--port",
            "8000",
        ]));
        assert_eq!(
            got,
            s(&[
                "--model",
                "m",
                "--api-key",
                REDACTED,
                "--hf-token=<redacted>",
                "HF_TOKEN=<redacted>",
                "--port",
                "8000"
            ])
        );
    }

    #[test]
    fn shell_join_quotes_what_needs_it() {
        assert_eq!(
            shell_join(&s(&["sh", "-c", "echo it's; exit 1", "--port", "8000"])),
            r"sh -c 'echo it'\''s; exit 1' --port 8000"
        );
    }

    #[test]
    fn env_debug_hides_secret_values() {
        let mut env = BTreeMap::new();
        env.insert("HF_TOKEN".to_string(), "hf_supersecret".to_string());
        env.insert("VLLM_HOST_IP".to_string(), "127.0.0.1".to_string());
        let shown = format!("{:?}", RedactedEnv(&env));
        assert!(!shown.contains("hf_supersecret"), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
}
