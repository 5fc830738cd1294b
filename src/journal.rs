//! The per-request journal: one JSON line per [`RequestRecord`], written as requests complete,
//! so a crash loses nothing already measured and `servebench report --journal FILE` can rebuild
//! every summary from it.
//!
//! # Format
//! JSON Lines. The first line may be a [`JournalHeader`] — recognizable by its
//! `servebench_journal` key (the format version), which no record has. Every other line is one
//! `RequestRecord` exactly as serde writes it, warmup records included (their `phase` says so),
//! except the last line of a journal whose writer finished: a [`JournalFooter`]
//! (`servebench_journal_end`), saying how many records were written and whether the run ran to
//! its planned end. A journal without a footer is of a run that was killed or lost its disk.
//!
//! # Writing costs the hot path nothing
//! [`JournalWriter::record`] moves the record into an unbounded `std::sync::mpsc` channel and
//! returns: no serialization, no I/O, no lock held across an await. A dedicated OS thread owns
//! the file, serializes and writes through a 64 KiB `BufWriter`. A thread rather than a tokio
//! task because file writes block: on a runtime worker they would stall request futures, and
//! `tokio::fs` would only move them to the blocking pool with more hand-offs. The channel is
//! unbounded so the load driver never waits for the disk; its backlog is bounded by the run's
//! own records.
//!
//! # Durability
//! The writer flushes its buffer to the kernel (a `write(2)`) at most [`FLUSH_INTERVAL`]
//! (100 ms) after a record arrives — immediately for the first record after a quiet spell — and
//! whenever the 64 KiB buffer fills. Data handed to the kernel survives `kill -9` of servebench,
//! so a killed run loses at most the records of its last 100 ms; each record is serialized whole
//! before it enters the buffer, so the kernel only ever gets whole lines (a truncated final
//! line, from a full disk, is skipped by the reader). A write error stops the writer: the
//! run's consumer sees it at the next record and stops the run (`app::run`), since measuring on
//! would only lose more. `fsync` happens once, on [`JournalWriter::finish`]: power loss is not
//! what a benchmark guards against, and an `fsync` every 100 ms would cost the disk more than
//! the run.

use crate::record::RequestRecord;
use crate::report::RunInfo;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The journal format this build writes and reads.
pub const JOURNAL_FORMAT: u32 = 1;
/// Longest time a written record stays in the process's buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const BUFFER_BYTES: usize = 64 * 1024;
/// Reasons kept for skipped lines (the count is always exact).
const MAX_SKIP_REASONS: usize = 20;

/// The journal's optional first line: what run this is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalHeader {
    /// Format version; its presence is what marks the line as a header.
    pub servebench_journal: u32,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub servebench_version: String,
    /// The run's full configuration, as the caller serialized it.
    pub config: serde_json::Value,
    /// The run metadata the result file needs, so a report can be rebuilt from the journal alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
}

impl JournalHeader {
    pub fn new(
        run_id: impl Into<String>,
        started_at: DateTime<Utc>,
        config: serde_json::Value,
    ) -> Self {
        JournalHeader {
            servebench_journal: JOURNAL_FORMAT,
            run_id: run_id.into(),
            started_at,
            servebench_version: env!("CARGO_PKG_VERSION").to_string(),
            config,
            run: None,
        }
    }
}

/// The journal's last line, written by [`JournalWriter::finish_with`]: its presence says the
/// writer finished (a killed run has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalFooter {
    /// Format version; its presence is what marks the line as a footer.
    pub servebench_journal_end: u32,
    /// Record lines written before this one.
    pub records: u64,
    /// The run ran to its planned stop (not interrupted, nothing lost).
    pub complete: bool,
    /// Measured requests the run planned (`None` for a run bounded by duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<u64>,
}

/// How a run ended, for the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalEnd {
    pub complete: bool,
    pub planned: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the journal {path}: {source}; check that the result directory exists and is writable (--result-dir)")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write the journal {path} after {records} records: {source}; free disk space (or choose another --result-dir) and rerun")]
    Write {
        path: PathBuf,
        /// Records handed to the writer before the error (not all of them reached the file).
        records: u64,
        source: io::Error,
    },
    #[error("the journal writer has stopped after an error; finish() returns that error")]
    Closed,
    #[error("the journal writer thread died unexpectedly; the journal {path} may end early")]
    WriterDied { path: PathBuf },
    #[error("cannot read the journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the journal {path} has format {found}, newer than this servebench reads ({JOURNAL_FORMAT}); use a newer servebench")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("{path} is not a servebench journal: {why}; give the `.journal.jsonl` file a run wrote next to its summary")]
    NotAJournal { path: PathBuf, why: String },
}

/// What the writer did, returned by [`JournalWriter::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    pub records: u64,
    /// Times the buffer was handed to the kernel.
    pub flushes: u64,
}

/// A cheap, cloneable handle for sending records from several tasks.
#[derive(Debug, Clone)]
pub struct JournalSender(mpsc::Sender<RequestRecord>);

impl JournalSender {
    /// Queue one record for writing; never blocks. `Err(Closed)` once the writer stopped after an
    /// I/O error (the run can go on; `finish` reports the cause).
    pub fn record(&self, rec: RequestRecord) -> Result<(), JournalError> {
        self.0.send(rec).map_err(|_| JournalError::Closed)
    }
}

/// Writes the journal on its own thread. Create it before the run, [`record`](Self::record)
/// each request as it completes, [`finish`](Self::finish) at the end (dropping it also flushes,
/// but swallows errors).
#[derive(Debug)]
pub struct JournalWriter {
    sender: Option<JournalSender>,
    thread: Option<JoinHandle<Result<JournalStats, JournalError>>>,
    path: PathBuf,
}

impl JournalWriter {
    /// Create (truncate) `path`, write `header` if given, and start the writer thread.
    pub fn create(path: &Path, header: Option<&JournalHeader>) -> Result<Self, JournalError> {
        let create_err = |source| JournalError::Create {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(create_err)?;
        let mut out = BufWriter::with_capacity(BUFFER_BYTES, file);
        if let Some(h) = header {
            serde_json::to_writer(&mut out, h)
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .map_err(create_err)?;
        }
        let (tx, rx) = mpsc::channel();
        let thread_path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("servebench-journal".into())
            .spawn(move || write_loop(out, rx, &thread_path))
            .map_err(create_err)?;
        Ok(JournalWriter {
            sender: Some(JournalSender(tx)),
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle other tasks can send records through.
    pub fn sender(&self) -> JournalSender {
        // `sender` is only taken by `finish`/`drop`, which consume or end `self`.
        self.sender
            .clone()
            .unwrap_or_else(|| JournalSender(mpsc::channel().0))
    }

    /// Queue one record; never blocks. See [`JournalSender::record`].
    pub fn record(&self, rec: RequestRecord) -> Result<(), JournalError> {
        match &self.sender {
            Some(s) => s.record(rec),
            None => Err(JournalError::Closed),
        }
    }

    /// Write everything queued, `fsync`, and return what was written or the first I/O error.
    /// Waits for clones from [`sender`](Self::sender) to be dropped first.
    pub fn finish(mut self) -> Result<JournalStats, JournalError> {
        self.stop()
    }

    /// [`finish`](Self::finish), then append the [`JournalFooter`] (and `fsync` it): the mark a
    /// reader uses to tell a finished journal from one cut short.
    pub fn finish_with(mut self, end: JournalEnd) -> Result<JournalStats, JournalError> {
        let stats = self.stop()?;
        let footer = JournalFooter {
            servebench_journal_end: JOURNAL_FORMAT,
            records: stats.records,
            complete: end.complete,
            planned: end.planned,
        };
        let write_err = |source| JournalError::Write {
            path: self.path.clone(),
            records: stats.records,
            source,
        };
        let mut line = serde_json::to_vec(&footer).map_err(|e| write_err(e.into()))?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(write_err)?;
        file.write_all(&line).map_err(write_err)?;
        file.sync_data().map_err(write_err)?;
        Ok(stats)
    }

    fn stop(&mut self) -> Result<JournalStats, JournalError> {
        drop(self.sender.take());
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(JournalError::WriterDied {
                    path: self.path.clone(),
                })
            }),
            None => Ok(JournalStats::default()),
        }
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn write_loop(
    mut out: BufWriter<File>,
    rx: mpsc::Receiver<RequestRecord>,
    path: &Path,
) -> Result<JournalStats, JournalError> {
    let mut stats = JournalStats::default();
    let write_err = |records, source| JournalError::Write {
        path: path.to_path_buf(),
        records,
        source,
    };
    let mut dirty = false;
    let mut line = Vec::with_capacity(4096);
    // So that the first record after a quiet spell is flushed at once.
    let mut last_flush = Instant::now() - FLUSH_INTERVAL;
    loop {
        let next = if dirty {
            rx.recv_timeout(FLUSH_INTERVAL.saturating_sub(last_flush.elapsed()))
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match next {
            Ok(rec) => {
                // Serialized whole first, then written with one `write_all`: the buffer only
                // ever holds whole lines, so what reaches the kernel ends at a line's end.
                line.clear();
                serde_json::to_writer(&mut line, &rec)
                    .map_err(io::Error::from)
                    .map_err(|e| write_err(stats.records, e))?;
                line.push(b'\n');
                out.write_all(&line)
                    .map_err(|e| write_err(stats.records, e))?;
                stats.records += 1;
                dirty = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if dirty && last_flush.elapsed() >= FLUSH_INTERVAL {
            out.flush().map_err(|e| write_err(stats.records, e))?;
            stats.flushes += 1;
            dirty = false;
            last_flush = Instant::now();
        }
    }
    out.flush().map_err(|e| write_err(stats.records, e))?;
    stats.flushes += 1;
    out.get_ref()
        .sync_data()
        .map_err(|e| write_err(stats.records, e))?;
    Ok(stats)
}

/// A line the reader could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: u64,
    pub reason: String,
}

/// What [`scan_journal`] found besides the records it handed over.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JournalScan {
    pub header: Option<JournalHeader>,
    /// The last line of a journal whose writer finished; `None` means the run was cut short
    /// (killed, or its disk failed).
    pub footer: Option<JournalFooter>,
    /// Records handed over (duplicates excluded).
    pub records: u64,
    /// Records dropped because a record with the same id and phase came earlier (a journal
    /// concatenated or edited by hand): each request counts once.
    pub duplicates: u64,
    /// Lines skipped (exact count), e.g. the last line of a killed run.
    pub skipped_lines: u64,
    /// The first few skipped lines with why.
    pub skipped: Vec<SkippedLine>,
}

/// A whole journal read into memory: [`read_journal`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Journal {
    pub header: Option<JournalHeader>,
    pub footer: Option<JournalFooter>,
    pub duplicates: u64,
    pub records: Vec<RequestRecord>,
    pub skipped_lines: u64,
    pub skipped: Vec<SkippedLine>,
}

/// Read a journal, handing each record to `each` without keeping them (a 100k-request journal
/// can be summarized through [`crate::metrics::Accumulator`] in bounded memory; only each
/// record's id and phase are kept, to drop duplicates).
///
/// Lines that do not parse are skipped and counted, not fatal: the usual one is the last line
/// of a run that was killed mid-write. Blank lines are ignored. A file with neither a header
/// nor a single record is refused ([`JournalError::NotAJournal`]): summarizing it would report
/// a run of zero requests.
pub fn scan_journal(
    path: &Path,
    mut each: impl FnMut(RequestRecord),
) -> Result<JournalScan, JournalError> {
    let read_err = |source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut input = BufReader::with_capacity(BUFFER_BYTES, File::open(path).map_err(read_err)?);
    let mut scan = JournalScan::default();
    let mut seen = std::collections::HashSet::new();
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).map_err(read_err)? == 0 {
            break;
        }
        n += 1;
        let complete = line.last() == Some(&b'\n');
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        if n == 1 {
            if let Ok(h) = serde_json::from_slice::<JournalHeader>(text) {
                if h.servebench_journal > JOURNAL_FORMAT {
                    return Err(JournalError::NewerFormat {
                        path: path.to_path_buf(),
                        found: h.servebench_journal,
                    });
                }
                scan.header = Some(h);
                continue;
            }
        }
        match serde_json::from_slice::<RequestRecord>(text) {
            Ok(rec) => {
                if !seen.insert((rec.id, rec.phase)) {
                    scan.duplicates += 1;
                    continue;
                }
                scan.records += 1;
                each(rec);
            }
            Err(e) => {
                if let Ok(f) = serde_json::from_slice::<JournalFooter>(text) {
                    scan.footer = Some(f);
                    continue;
                }
                scan.skipped_lines += 1;
                if scan.skipped.len() < MAX_SKIP_REASONS {
                    let reason = if complete {
                        format!("not a request record: {e}")
                    } else {
                        format!("truncated last line (the run was probably killed): {e}")
                    };
                    scan.skipped.push(SkippedLine { line: n, reason });
                }
            }
        }
    }
    if scan.header.is_none() && scan.records == 0 {
        let why = if n == 0 {
            "the file is empty".to_string()
        } else {
            format!("none of its {n} lines is a journal header or a request record")
        };
        return Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
            why,
        });
    }
    Ok(scan)
}

/// Read a whole journal: its header (if any), every record, and what was skipped.
pub fn read_journal(path: &Path) -> Result<Journal, JournalError> {
    let mut records = Vec::new();
    let scan = scan_journal(path, |r| records.push(r))?;
    Ok(Journal {
        header: scan.header,
        footer: scan.footer,
        duplicates: scan.duplicates,
        records,
        skipped_lines: scan.skipped_lines,
        skipped: scan.skipped,
    })
}

/// Rebuild a run's summary from its journal alone, in bounded memory (records are pushed into an
/// [`Accumulator`](crate::metrics::Accumulator) as they are read, never all held). The facts
/// (percentiles, SLOs, offered rate) come from the header's [`RunInfo`] when it has one; the
/// client's CPU use is not in a journal, so the self-check has no CPU line.
pub fn summarize_journal(
    path: &Path,
) -> Result<(JournalScan, crate::metrics::Summary), JournalError> {
    let mut acc = crate::metrics::Accumulator::new();
    let scan = scan_journal(path, |r| acc.push(&r))?;
    let facts = scan
        .header
        .as_ref()
        .and_then(|h| h.run.as_ref())
        .map(RunInfo::summary_facts)
        .unwrap_or_default();
    Ok((scan, acc.finish(&facts)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FailureKind, Phase};

    fn rec(id: u64) -> RequestRecord {
        let mut r = RequestRecord::failed_before_response(
            id,
            Phase::Measured,
            (id, id, id),
            id + 1,
            FailureKind::Timeout,
            "late".into(),
        );
        r.events = vec![(10, 1), (20, 2)];
        r
    }

    fn header() -> JournalHeader {
        let started = DateTime::parse_from_rfc3339("2026-11-28T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        JournalHeader::new("run-1", started, serde_json::json!({"num_prompts": 3}))
    }

    #[test]
    fn writes_header_and_records_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let w = JournalWriter::create(&path, Some(&header())).unwrap();
        let s = w.sender();
        for i in 0..3 {
            s.record(rec(i)).unwrap();
        }
        drop(s);
        let stats = w.finish().unwrap();
        assert_eq!(stats.records, 3);
        let j = read_journal(&path).unwrap();
        assert_eq!(j.header, Some(header()));
        assert_eq!(j.records, (0..3).map(rec).collect::<Vec<_>>());
        assert_eq!(j.skipped_lines, 0);
    }

    #[test]
    fn records_reach_the_file_without_finish() {
        // What a `kill -9` would leave: the writer is still running and never finishes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let w = JournalWriter::create(&path, None).unwrap();
        w.record(rec(7)).unwrap();
        // Poll (bounded) rather than sleep a fixed time: the flush is at most 100 ms away.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            got = read_journal(&path).unwrap().records;
        }
        assert_eq!(got, vec![rec(7)]);
        w.finish().unwrap();
    }

    #[test]
    fn truncated_last_line_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let w = JournalWriter::create(&path, Some(&header())).unwrap();
        w.record(rec(1)).unwrap();
        w.record(rec(2)).unwrap();
        w.finish().unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        let full = serde_json::to_string(&rec(3)).unwrap();
        text.push_str(&full[..full.len() / 2]);
        std::fs::write(&path, text).unwrap();
        let j = read_journal(&path).unwrap();
        assert_eq!(j.records, vec![rec(1), rec(2)]);
        assert_eq!(j.skipped_lines, 1);
        assert_eq!(j.skipped[0].line, 4);
        assert!(j.skipped[0].reason.contains("truncated"), "{:?}", j.skipped);
    }

    #[test]
    fn a_killed_runs_journal_rebuilds_its_summary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut h = header();
        let mut run = RunInfo::new("run-1", "m", h.started_at);
        run.goodput_slo.e2el_ms = Some(1.0);
        h.run = Some(run);
        let w = JournalWriter::create(&path, Some(&h)).unwrap();
        for i in 0..5 {
            w.record(rec(i)).unwrap();
        }
        w.finish().unwrap();
        // Cut the file mid-line, as a kill -9 during a write would.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 7]).unwrap();
        let (scan, summary) = summarize_journal(&path).unwrap();
        assert_eq!((scan.records, scan.skipped_lines), (4, 1));
        assert_eq!(summary.attempted, 4);
        assert_eq!(summary.errors_by_kind.get("timeout"), Some(&4));
        assert!(summary.goodput.is_some(), "SLOs come from the header");
    }

    #[test]
    fn journal_without_header_and_with_garbage_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let line = |id| serde_json::to_string(&rec(id)).unwrap();
        std::fs::write(&path, format!("{}\n\nnot json\n{}\n", line(1), line(2))).unwrap();
        let j = read_journal(&path).unwrap();
        assert_eq!(j.header, None);
        assert_eq!(j.records.len(), 2);
        assert_eq!(j.skipped_lines, 1);
        assert_eq!(j.skipped[0].line, 3);
    }

    #[test]
    fn newer_format_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut h = header();
        h.servebench_journal = JOURNAL_FORMAT + 1;
        std::fs::write(&path, serde_json::to_string(&h).unwrap() + "\n").unwrap();
        let err = read_journal(&path).unwrap_err().to_string();
        assert!(err.contains("newer servebench"), "{err}");
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("j.jsonl");
        let err = JournalWriter::create(&path, None).unwrap_err().to_string();
        assert!(err.contains("--result-dir"), "{err}");
    }

    #[test]
    fn a_finished_journal_ends_with_a_footer_that_the_reader_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let w = JournalWriter::create(&path, Some(&header())).unwrap();
        w.record(rec(0)).unwrap();
        w.record(rec(1)).unwrap();
        w.finish_with(JournalEnd {
            complete: true,
            planned: Some(2),
        })
        .unwrap();
        let j = read_journal(&path).unwrap();
        assert_eq!(j.records.len(), 2);
        assert_eq!(j.skipped_lines, 0, "the footer is not a skipped line");
        assert_eq!(
            j.footer,
            Some(JournalFooter {
                servebench_journal_end: JOURNAL_FORMAT,
                records: 2,
                complete: true,
                planned: Some(2),
            })
        );
        // Without `finish_with` (a killed run) there is no footer.
        let path2 = dir.path().join("k.jsonl");
        let w = JournalWriter::create(&path2, Some(&header())).unwrap();
        w.record(rec(0)).unwrap();
        w.finish().unwrap();
        assert_eq!(read_journal(&path2).unwrap().footer, None);
    }

    #[test]
    fn duplicated_records_are_counted_once_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let line = |r: &RequestRecord| serde_json::to_string(r).unwrap();
        let mut warm = rec(1);
        warm.phase = Phase::Warmup;
        // id 1 measured twice (a journal concatenated with itself), id 1 warmup once: the
        // warmup is a different request.
        let text = [rec(0), rec(1), rec(1), warm]
            .iter()
            .map(line)
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, text + "\n").unwrap();
        let j = read_journal(&path).unwrap();
        assert_eq!(j.duplicates, 1);
        assert_eq!(j.records.len(), 3);
        let (scan, summary) = summarize_journal(&path).unwrap();
        assert_eq!((scan.records, scan.duplicates), (3, 1));
        assert_eq!(summary.attempted, 2, "measured ids 0 and 1, once each");
    }

    #[test]
    fn a_file_with_no_header_and_no_record_is_not_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("e", ""), ("g", "garbage\n{\"a\": 1}\n"), ("b", "\n\n")] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let e = read_journal(&path).unwrap_err();
            assert!(matches!(e, JournalError::NotAJournal { .. }), "{name}: {e}");
        }
        // A header alone is a journal (of a run that measured nothing yet).
        let path = dir.path().join("h");
        JournalWriter::create(&path, Some(&header()))
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(read_journal(&path).unwrap().records.len(), 0);
    }

    #[test]
    fn a_write_error_stops_the_writer_and_finish_names_it() {
        // /dev/full fails every write with ENOSPC: a full disk, without mounting one.
        let path = Path::new("/dev/full");
        if !path.exists() {
            eprintln!("SKIPPED: no /dev/full on this system");
            return;
        }
        let w = JournalWriter::create(path, None).unwrap();
        w.record(rec(0)).unwrap();
        // The first record is flushed at once; the writer then stops and drops its channel,
        // so a later record is refused (bounded wait for the thread to get there).
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.record(rec(1)).is_ok() {
            assert!(Instant::now() < deadline, "the writer never stopped");
            std::thread::sleep(Duration::from_millis(5));
        }
        let e = w
            .finish_with(JournalEnd {
                complete: true,
                planned: None,
            })
            .unwrap_err();
        assert!(matches!(e, JournalError::Write { .. }), "{e}");
        assert!(e.to_string().contains("free disk space"), "{e}");
    }
}
