//! `servebench report --journal FILE`: rebuild a run's result file from its journal alone —
//! what is left after a crash or `kill -9`. Only records are needed; the header (when the run
//! got far enough to write it) supplies the run's metadata.

use super::{AppError, ExitStatus};
use crate::cli::ReportArgs;
use crate::journal::summarize_journal;
use crate::report::{self, ResultFile, RunInfo};
use anyhow::Context;

pub(super) fn command(args: &ReportArgs) -> Result<ExitStatus, AppError> {
    let (scan, summary) =
        summarize_journal(&args.journal).map_err(|e| AppError::usage(anyhow::Error::new(e)))?;
    let run = scan
        .header
        .as_ref()
        .and_then(|h| h.run.clone())
        .unwrap_or_else(|| {
            let started = scan
                .header
                .as_ref()
                .map(|h| h.started_at)
                .unwrap_or_else(chrono::Utc::now);
            RunInfo::new("recovered", "unknown", started)
        });
    let out = args.output.clone().unwrap_or_else(|| {
        let name = args
            .journal
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("run.journal.jsonl")
            .trim_end_matches(".jsonl")
            .trim_end_matches(".journal");
        args.journal
            .with_file_name(format!("{name}.recovered.json"))
    });
    report::write_result(&out, &ResultFile::new(&run, &summary))
        .with_context(|| format!("writing {}", out.display()))
        .map_err(AppError::failed)?;
    println!("{}", report::render_table(&run, &summary));
    eprintln!(
        "rebuilt from {} records ({} lines skipped{}) → {}",
        scan.records,
        scan.skipped_lines,
        if scan.skipped_lines > 0 {
            ", e.g. a line torn by a crash"
        } else {
            ""
        },
        out.display()
    );
    Ok(ExitStatus::Success)
}
