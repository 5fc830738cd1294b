//! `servebench report --journal FILE`: rebuild a run's result file from its journal alone —
//! what is left after a crash or `kill -9`. Only records are needed; the header (when the run
//! got far enough to write it) supplies the run's metadata.

use super::{AppError, ExitStatus};
use crate::cli::ReportArgs;
use crate::journal::summarize_journal;
use crate::report::{self, ResultFile, RunInfo};
use anyhow::Context;

pub(super) fn command(args: &ReportArgs) -> Result<ExitStatus, AppError> {
    // The message already holds its cause; `{:#}` of a chained error would repeat it.
    let (scan, summary) =
        summarize_journal(&args.journal).map_err(|e| AppError::usage(anyhow::anyhow!("{e}")))?;
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
    let mut result = ResultFile::new(&run, &summary);
    // vLLM's per-request arrays, as the run wrote them: `latencies` and `queue_times`, the
    // rest when the run had --save-detailed (its configuration is in the journal's header).
    let detailed = scan
        .header
        .as_ref()
        .and_then(|h| h.config.pointer("/run/save_detailed"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    super::run::add_request_arrays(&mut result, &args.journal, detailed);
    // A journal ends with a footer only when its writer finished; without one the run was cut
    // short (killed, or its disk failed), and the summary covers only what reached the file.
    result.complete = Some(scan.footer.as_ref().is_some_and(|f| f.complete));
    result.planned = scan
        .footer
        .as_ref()
        .and_then(|f| f.planned)
        .or_else(|| (run.num_prompts > 0).then_some(run.num_prompts));
    if result.complete == Some(false) {
        eprintln!(
            "warning: incomplete run: {} of {} planned requests in the journal ({})",
            summary.attempted,
            result
                .planned
                .map_or_else(|| "an unknown number of".to_string(), |p| p.to_string()),
            match &scan.footer {
                Some(_) => "it was interrupted or lost records",
                None => "it has no end mark: the run was killed or its disk failed",
            }
        );
    }
    if scan.duplicates > 0 {
        eprintln!(
            "warning: {} duplicated records (same id and phase as an earlier line) were dropped; each request counts once",
            scan.duplicates
        );
    }
    report::write_result(&out, &result)
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

/// `servebench compare A.json B.json`.
pub(super) fn compare_command(args: &crate::cli::CompareArgs) -> Result<ExitStatus, AppError> {
    // NaN would make every comparison false: "no significant difference", silently.
    if !(0.0..=1.0).contains(&args.throughput_noise) {
        return Err(AppError::usage(crate::config::limits::out_of_range(
            "--throughput-noise",
            args.throughput_noise,
            "allowed: 0 to 1 (a relative band, e.g. 0.05 for ±5 %)",
        )));
    }
    let read = |p: &std::path::Path| {
        report::read_result(p).map_err(|e| AppError::usage(anyhow::Error::new(e)))
    };
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let diffs = crate::compare::compare(&a.summary, &b.summary, args.throughput_noise);
    println!("A: {}\nB: {}", args.a.display(), args.b.display());
    println!(
        "{:<20} {:>12} {:>12} {:>10} {:>26}  verdict",
        "metric", "A", "B", "change", "95 % CI of B − A"
    );
    for d in &diffs {
        let change = d
            .relative
            .map_or("-".to_string(), |r| format!("{:+.1} %", r * 100.0));
        let ci = d
            .ci95
            .map_or("(no spread: single value)".to_string(), |(lo, hi)| {
                format!("[{lo:+.3}, {hi:+.3}]")
            });
        let verdict = match (d.significant, (d.delta > 0.0) == d.higher_is_better) {
            (false, _) => "within noise",
            (true, true) => "better",
            (true, false) => "worse",
        };
        println!(
            "{:<20} {:>12.3} {:>12.3} {:>10} {:>26}  {verdict}",
            d.metric, d.a, d.b, change, ci
        );
    }
    Ok(ExitStatus::Success)
}
