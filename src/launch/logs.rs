//! Server logs: the file next to the results, and its last lines for error messages.

use super::secret;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Read at most this much from the end of a log to find its last lines: engines log a line per
/// request, and a tail must not read a gigabyte.
const TAIL_WINDOW: u64 = 256 * 1024;

/// The last lines of a server's log, for an error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    pub path: Option<PathBuf>,
    pub lines: Vec<String>,
}

impl LogTail {
    pub(crate) fn none() -> LogTail {
        LogTail {
            path: None,
            lines: Vec::new(),
        }
    }

    pub(crate) fn read(path: &Path, n: usize) -> LogTail {
        LogTail {
            path: Some(path.to_path_buf()),
            lines: tail_lines(path, n),
        }
    }
}

impl fmt::Display for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.lines.is_empty()) {
            (None, _) => f.write_str("no log (the server is not ours)"),
            (Some(p), true) => write!(f, "the log {} is empty", p.display()),
            (Some(p), false) => {
                write!(f, "last {} log lines ({}):", self.lines.len(), p.display())?;
                for line in &self.lines {
                    write!(f, "\n  | {line}")?;
                }
                Ok(())
            }
        }
    }
}

/// The last `n` lines of the file (fewer if it is shorter; none if it cannot be read), with
/// secrets from the environment scrubbed and invalid UTF-8 replaced.
pub(crate) fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let Ok(bytes) = read_end(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = secret::scrub(&text);
    let mut lines: Vec<&str> = text.lines().collect();
    // A window that starts mid-file starts mid-line: drop the fragment.
    if bytes.len() as u64 == TAIL_WINDOW && lines.len() > 1 {
        lines.remove(0);
    }
    // Engines draw progress bars with carriage returns; keep what a terminal would show.
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| l.rsplit('\r').next().unwrap_or("").to_string())
        .collect()
}

fn read_end(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(TAIL_WINDOW);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    f.take(TAIL_WINDOW).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn last_lines_of_short_and_long_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, "one\ntwo\nthree\n").unwrap();
        assert_eq!(tail_lines(&p, 2), vec!["two", "three"]);
        assert_eq!(tail_lines(&p, 10).len(), 3);
        assert!(tail_lines(&dir.path().join("missing.log"), 5).is_empty());

        let mut f = File::create(&p).unwrap();
        for i in 0..100_000 {
            writeln!(f, "line {i}").unwrap();
        }
        drop(f);
        assert_eq!(tail_lines(&p, 2), vec!["line 99998", "line 99999"]);
    }

    #[test]
    fn progress_bars_show_their_last_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, "Loading 10%\rLoading 50%\rLoading 100%\ndone\n").unwrap();
        assert_eq!(tail_lines(&p, 5), vec!["Loading 100%", "done"]);
    }

    #[test]
    fn display_shows_path_and_lines() {
        let t = LogTail {
            path: Some("/r/vllm.log".into()),
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            t.to_string(),
            "last 2 log lines (/r/vllm.log):\n  | a\n  | b"
        );
    }
}
