//! One CSV row per run, for tables that combine runs (e.g. `results/benchmark_results_combined.csv`).
//!
//! The columns are [`CSV_COLUMNS`], fixed so rows from many runs line up: run identity, outcome
//! counts, throughputs, mean and P50/P90/P95/P99 of TTFT, TPOT, ITL and E2E (ms), mean and P99 of
//! ICL and queue time (ms), and the token-source and self-check facts. Numbers are written in
//! Rust's shortest round-trip form (reading one back gives the same `f64`); a missing value
//! (`request_goodput` without SLOs, an unknown engine) is an empty field; `errors_by_kind` is
//! `kind=count` pairs joined by `;`. Quoting follows RFC 4180.

use super::{EnergyColumns, ReportError, RunInfo};
use crate::metrics::{Distribution, Summary};
use std::io::Write;
use std::path::Path;

/// The columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "run_id",
    "start_time",
    "label",
    "engine",
    "workload",
    "backend",
    "model_id",
    "num_prompts",
    "request_rate",
    "max_concurrency",
    "burstiness",
    "seed",
    "simulated",
    "attempted",
    "completed",
    "failed",
    "success_rate",
    "errors_by_kind",
    "duration_s",
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "total_token_throughput",
    "max_output_tokens_per_s",
    "total_input_tokens",
    "total_output_tokens",
    "mean_ttft_ms",
    "p50_ttft_ms",
    "p90_ttft_ms",
    "p95_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "p50_tpot_ms",
    "p90_tpot_ms",
    "p95_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "p50_itl_ms",
    "p90_itl_ms",
    "p95_itl_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "p50_e2el_ms",
    "p90_e2el_ms",
    "p95_e2el_ms",
    "p99_e2el_ms",
    "mean_icl_ms",
    "p99_icl_ms",
    "mean_queue_ms",
    "p99_queue_ms",
    "token_source",
    "client_limited",
    "dispatch_lag_p99_ms",
    "achieved_send_rate",
    "client_cpu_percent",
    "schema_version",
    // The energy columns: super::energy::ENERGY_COLUMNS, spelled out so the header stays one
    // constant.
    "gpu_energy_j",
    "gpu_energy_method",
    "joules_per_output_token",
    "gpu_power_mean_w",
    "gpu_power_max_w",
    "energy_usd_per_1m_output_tokens",
];

fn num(v: f64) -> String {
    format!("{v}")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn dist(d: &Distribution, ps: &[f64]) -> impl Iterator<Item = String> {
    std::iter::once(num(d.mean)).chain(
        ps.iter()
            .map(|&p| num(d.percentile(p).unwrap_or(0.0)))
            .collect::<Vec<_>>(),
    )
}

/// The row's fields, in [`CSV_COLUMNS`] order (unquoted).
pub fn csv_row(run: &RunInfo, s: &Summary, energy: &EnergyColumns) -> Vec<String> {
    let std4 = [50.0, 90.0, 95.0, 99.0];
    let errors = s
        .errors_by_kind
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let mut row = vec![
        run.run_id.clone(),
        run.start_time.to_rfc3339(),
        run.label.clone().unwrap_or_default(),
        run.engine.clone().unwrap_or_default(),
        run.workload.clone().unwrap_or_default(),
        run.backend.clone(),
        run.model_id.clone(),
        run.num_prompts.to_string(),
        run.request_rate.map_or_else(|| "inf".into(), num),
        opt(run.max_concurrency),
        num(run.burstiness),
        run.seed.to_string(),
        run.simulated.to_string(),
        s.attempted.to_string(),
        s.completed.to_string(),
        s.failed.to_string(),
        num(s.success_rate),
        errors,
        num(s.duration_s),
        num(s.request_throughput),
        opt(s.goodput.as_ref().map(|g| num(g.request_goodput))),
        num(s.output_throughput),
        num(s.total_token_throughput),
        num(s.max_output_tokens_per_s),
        s.total_input_tokens.to_string(),
        s.total_output_tokens.to_string(),
    ];
    for d in [&s.ttft_ms, &s.tpot_ms, &s.itl_ms, &s.e2el_ms] {
        row.extend(dist(d, &std4));
    }
    for d in [&s.icl_ms, &s.queue_ms] {
        row.extend(dist(d, &[99.0]));
    }
    let c = &s.self_check;
    row.extend([
        s.tokens.token_source.clone(),
        c.client_limited.to_string(),
        num(c.dispatch_lag_p99_ms),
        opt(c.achieved_send_rate.map(num)),
        opt(c.cpu_percent.map(num)),
        s.schema_version.to_string(),
    ]);
    row.extend(energy.fields());
    row
}

/// One CSV line (with `\n`), quoting fields that need it.
fn line(fields: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let mut out = fields
        .into_iter()
        .map(|f| {
            let f = f.as_ref();
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    out
}

/// Append this run's row to `path`, writing the header first when the file is new or empty.
/// An existing file with other columns is left alone and reported.
pub fn append_csv_row(
    path: &Path,
    run: &RunInfo,
    s: &Summary,
    energy: &EnergyColumns,
) -> Result<(), ReportError> {
    let write_err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let header = line(CSV_COLUMNS);
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ReportError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut text = String::new();
    if existing.trim().is_empty() {
        text.push_str(&header);
    } else {
        let found = existing.lines().next().unwrap_or_default();
        if found != header.trim_end() {
            return Err(ReportError::CsvHeaderMismatch {
                path: path.to_path_buf(),
                found: found.to_string(),
                expected: header.trim_end().to_string(),
            });
        }
        if !existing.ends_with('\n') {
            text.push('\n');
        }
    }
    text.push_str(&line(csv_row(run, s, energy)));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(write_err)?;
    // One write call, so a concurrent reader sees whole lines.
    f.write_all(text.as_bytes()).map_err(write_err)
}

/// Write a whole CSV file (header + rows from [`csv_row`]) atomically, replacing any old one:
/// the suite's combined CSV, rebuilt from every cell's result each time.
pub fn write_csv(path: &Path, rows: &[Vec<String>]) -> Result<(), ReportError> {
    let mut text = line(CSV_COLUMNS);
    for r in rows {
        text.push_str(&line(r));
    }
    super::write_atomic(path, text.as_bytes())
}

/// Read a CSV file written by [`append_csv_row`]: the header and the rows.
pub fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut records = parse(&text).into_iter();
    let header = records.next().unwrap_or_default();
    Ok((header, records.collect()))
}

/// RFC 4180 records (quoted fields may hold commas, quotes and newlines).
fn parse(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{run_info, summary};

    #[test]
    fn row_matches_columns_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("combined.csv");
        let (run, s) = (run_info(), summary());
        let energy = EnergyColumns {
            energy_j: Some(1500.25),
            method: Some("counter".into()),
            joules_per_output_token: Some(0.75),
            ..EnergyColumns::default()
        };
        assert_eq!(csv_row(&run, &s, &energy).len(), CSV_COLUMNS.len());
        append_csv_row(&path, &run, &s, &energy).unwrap();
        let mut run2 = run.clone();
        run2.label = Some("a, \"quoted\"\nlabel".into());
        let none = EnergyColumns::default();
        append_csv_row(&path, &run2, &s, &none).unwrap();
        let (header, rows) = read_csv(&path).unwrap();
        assert_eq!(header, CSV_COLUMNS);
        assert_eq!(
            rows,
            vec![csv_row(&run, &s, &energy), csv_row(&run2, &s, &none)]
        );
        let get = |col: &str| {
            let i = CSV_COLUMNS.iter().position(|c| *c == col).unwrap();
            rows[0][i].clone()
        };
        assert_eq!(get("completed"), "2");
        assert_eq!(get("errors_by_kind"), "http_500=1");
        assert_eq!(get("engine"), "vllm");
        assert_eq!(get("gpu_energy_j"), "1500.25");
        assert_eq!(get("gpu_energy_method"), "counter");
        assert_eq!(get("joules_per_output_token"), "0.75");
        // Unavailable is an empty field, never 0.
        assert_eq!(get("gpu_power_mean_w"), "");
        assert_eq!(
            &CSV_COLUMNS[CSV_COLUMNS.len() - crate::report::energy::ENERGY_COLUMNS.len()..],
            crate::report::energy::ENERGY_COLUMNS
        );
        assert_eq!(get("request_rate"), "10");
        assert_eq!(get("mean_ttft_ms").parse::<f64>().unwrap(), s.ttft_ms.mean);
        assert_eq!(
            get("p99_itl_ms").parse::<f64>().unwrap(),
            s.itl_ms.percentile(99.0).unwrap()
        );
        assert_eq!(
            get("request_throughput").parse::<f64>().unwrap(),
            s.request_throughput
        );
    }

    #[test]
    fn other_header_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let err =
            append_csv_row(&path, &run_info(), &summary(), &EnergyColumns::default()).unwrap_err();
        assert!(matches!(err, ReportError::CsvHeaderMismatch { .. }));
        assert!(err.to_string().contains("new file"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\n1,2\n");
    }
}
