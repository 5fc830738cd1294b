//! The study report: a matrix of frameworks × workloads rendered as the seed report's results
//! sections — `report.md`, a self-contained `report.html`, four charts as PNG and SVG, and the
//! study itself as `study.json`.
//!
//! Pure: a [`Study`] in (built by the suite from result summaries), files out. No network, no
//! clock (the caller gives `generated_at`), no metric computed here beyond means over repeats
//! and workloads, each stated where it is shown.

mod analysis;
mod charts;
mod content;
mod doc;
mod model;

#[cfg(test)]
mod tests;

pub use analysis::{
    pick, recommendations, Analysis, Better, Choice, Ladder, Recommendation, Stats, TIE_FRACTION,
};
pub use charts::{
    render_latency_throughput, RenderedChart, SweepPoint, COST, GPU, LATENCY, SIZE as CHART_SIZE,
    THROUGHPUT,
};
pub use doc::CONTENT_SECURITY_POLICY;
pub use model::{
    framework_label, Cell, Environment, GpuSummary, Study, WorkloadSpec, STUDY_SCHEMA_VERSION,
};

use super::{write_atomic, ReportError};
use base64::Engine as _;
use std::path::{Path, PathBuf};

pub const REPORT_MD: &str = "report.md";
pub const REPORT_HTML: &str = "report.html";
pub const STUDY_JSON: &str = "study.json";

/// The four chart stems in report order (each written as `<stem>.png` and `<stem>.svg`).
pub const CHARTS: [&str; 4] = [THROUGHPUT, LATENCY, COST, GPU];

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("cannot draw chart {chart}: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
    #[error("the chart font embedded in servebench could not be loaded; this is a build defect, please report it")]
    Font,
    #[error("cannot serialize the study: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Paths of one chart's files.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartFiles {
    pub name: &'static str,
    pub png: PathBuf,
    pub svg: PathBuf,
}

/// Everything [`write_study`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyFiles {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub json: PathBuf,
    pub charts: Vec<ChartFiles>,
}

impl StudyFiles {
    /// Every path, report first.
    pub fn all(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = vec![&self.markdown, &self.html, &self.json];
        for c in &self.charts {
            v.push(&c.png);
            v.push(&c.svg);
        }
        v
    }
}

/// `report.md`'s text.
pub fn render_markdown(study: &Study) -> String {
    let a = Analysis::of(study);
    doc::to_markdown(&content::build(study, &a))
}

/// The four charts, rendered in memory.
pub fn render_charts(study: &Study) -> Result<Vec<RenderedChart>, StudyError> {
    charts::render_all(study, &Analysis::of(study))
}

/// `report.html`'s text, with `charts` inlined as PNG data URIs (a chart missing from the list
/// shows its description instead).
pub fn render_html(study: &Study, charts: &[RenderedChart]) -> String {
    let a = Analysis::of(study);
    let blocks = content::build(study, &a);
    let image = |fig: &doc::Figure| {
        charts
            .iter()
            .find(|c| format!("{}.png", c.name) == fig.png)
            .map(|c| {
                format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(&c.png)
                )
            })
    };
    doc::to_html(&study.title, &blocks, &image)
}

/// Write `report.md`, `report.html`, `study.json` and the charts (PNG and SVG) into `dir`
/// (created if needed); each file is replaced atomically.
pub fn write_study(study: &Study, dir: &Path) -> Result<StudyFiles, StudyError> {
    let charts = render_charts(study)?;
    let mut chart_files = Vec::new();
    for c in &charts {
        let png = dir.join(format!("{}.png", c.name));
        let svg = dir.join(format!("{}.svg", c.name));
        write_atomic(&png, &c.png)?;
        write_atomic(&svg, c.svg.as_bytes())?;
        chart_files.push(ChartFiles {
            name: c.name,
            png,
            svg,
        });
    }
    let markdown = dir.join(REPORT_MD);
    write_atomic(&markdown, render_markdown(study).as_bytes())?;
    let html = dir.join(REPORT_HTML);
    write_atomic(&html, render_html(study, &charts).as_bytes())?;
    let json = dir.join(STUDY_JSON);
    write_atomic(&json, serde_json::to_string_pretty(study)?.as_bytes())?;
    Ok(StudyFiles {
        markdown,
        html,
        json,
        charts: chart_files,
    })
}

/// Placeholders of the seed report (and their usual cousins) found in `text`: a report with
/// any of these is not finished. Also catches numbers that are not numbers (`NaN`, `inf`).
pub fn find_placeholders(text: &str) -> Vec<String> {
    const MARKERS: [&str; 10] = [
        "[VALUE]",
        "[Framework]",
        "[GPU]",
        "[INSERT",
        "[Insert",
        "[Your",
        "[Summary",
        "[Analysis",
        "TBD",
        "TODO",
    ];
    let mut found: Vec<String> = MARKERS
        .iter()
        .filter(|m| text.contains(*m))
        .map(|m| m.to_string())
        .collect();
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        if matches!(word, "NaN" | "inf" | "Infinity") && !found.iter().any(|f| f == word) {
            found.push(word.to_string());
        }
    }
    found
}
