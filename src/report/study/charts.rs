//! The study's four charts, drawn with plotters into PNG bytes and SVG text.
//!
//! Text is drawn with DejaVu Sans shipped in `assets/fonts/` and embedded in the binary, so
//! rendering needs no system font (headless servers, containers). Each chart is one drawing
//! function generic over the backend, run once for the bitmap and once for the SVG.

use super::analysis::{Analysis, Ladder, Stats};
use super::model::{framework_label, Study};
use super::StudyError;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::sync::OnceLock;

const FONT_REGULAR: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
const FONT_BOLD: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf");
/// The family name charts ask for; the SVG files name it too, so viewers substitute their own
/// sans-serif face.
const FAMILY: &str = "sans-serif";

/// Register the embedded fonts once per process.
fn fonts() -> Result<(), StudyError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_REGULAR).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT_BOLD).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(StudyError::Font)
    }
}

/// Chart file stems, in the order the report shows them.
pub const THROUGHPUT: &str = "throughput_comparison";
pub const LATENCY: &str = "latency_distribution";
pub const COST: &str = "cost_comparison";
pub const GPU: &str = "gpu_utilization_heatmap";

/// One chart, rendered both ways.
#[derive(Debug, Clone)]
pub struct RenderedChart {
    pub name: &'static str,
    pub png: Vec<u8>,
    pub svg: String,
}

// Okabe–Ito: distinct for the common forms of colour blindness, and in print.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
];
const INK: RGBColor = RGBColor(31, 35, 40);
const MUTED: RGBColor = RGBColor(87, 96, 106);
const GRID: RGBColor = RGBColor(225, 228, 232);
const NA_FILL: RGBColor = RGBColor(238, 238, 238);

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `c` mixed toward white by `f` (0: unchanged, 1: white).
fn tint(c: RGBColor, f: f64) -> RGBColor {
    let m = |v: u8| (f64::from(v) + (255.0 - f64::from(v)) * f).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&INK)
}

fn bold(size: f64) -> TextStyle<'static> {
    // `FontDesc::style` keeps the regular face's data; only `new` looks the bold face up.
    FontDesc::new(FontFamily::Name(FAMILY), size, FontStyle::Bold).color(&INK)
}

fn anchored(style: TextStyle<'static>, h: HPos, v: VPos) -> TextStyle<'static> {
    style.pos(Pos::new(h, v))
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Title, subtitle and a legend row; returns the area below them.
fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    legend: &[(String, RGBColor)],
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, _) = root.dim_in_pixel();
    let cx = (w / 2) as i32;
    root.draw(&Text::new(
        title.to_string(),
        (cx, 18),
        anchored(bold(30.0), HPos::Center, VPos::Top),
    ))?;
    root.draw(&Text::new(
        subtitle.to_string(),
        (cx, 60),
        anchored(font(19.0).color(&MUTED), HPos::Center, VPos::Top),
    ))?;
    let mut used = 92;
    if !legend.is_empty() {
        // Centre the row: measure every entry first.
        let entries: Vec<(String, RGBColor, i32)> = legend
            .iter()
            .map(|(l, c)| {
                let width = root
                    .estimate_text_size(l, &font(20.0))
                    .map(|(w, _)| w as i32)
                    .unwrap_or(10 * l.len() as i32);
                (l.clone(), *c, width)
            })
            .collect();
        let total: i32 = entries
            .iter()
            .map(|(_, _, tw)| 22 + 8 + tw + 30)
            .sum::<i32>()
            - 30;
        let mut x = cx - total / 2;
        let y = used + 6;
        for (label, c, tw) in entries {
            root.draw(&Rectangle::new([(x, y), (x + 22, y + 22)], c.filled()))?;
            root.draw(&Text::new(
                label,
                (x + 30, y + 11),
                anchored(font(20.0), HPos::Left, VPos::Center),
            ))?;
            x += 22 + 8 + tw + 30;
        }
        used += 40;
    }
    Ok(root.split_vertically(used).1)
}

fn legend_of(frameworks: &[String]) -> Vec<(String, RGBColor)> {
    frameworks
        .iter()
        .enumerate()
        .map(|(i, f)| (framework_label(f), colour(i)))
        .collect()
}

/// A short note at the bottom of a chart (what n/a means, which price was used).
fn footnote<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, h) = area.dim_in_pixel();
    if text.is_empty() {
        return Ok(area.clone());
    }
    let (top, bottom) = area.split_vertically(h.saturating_sub(34));
    bottom.draw(&Text::new(
        text.to_string(),
        ((w / 2) as i32, 10),
        anchored(font(16.0).color(&MUTED), HPos::Center, VPos::Top),
    ))?;
    Ok(top)
}

/// A panel of grouped bars: one group per workload, one bar per framework.
struct Bars<'a> {
    title: &'a str,
    y_desc: &'a str,
    workloads: &'a [String],
    /// Second line under each group label (`10 req, conc. 2`).
    workload_notes: Vec<String>,
    /// `[framework][workload]`.
    values: Vec<Vec<Option<f64>>>,
    label: &'a dyn Fn(f64) -> String,
    /// Tick labels of the value axis.
    /// Put before each axis label (`$`); the decimals follow the axis range.
    y_prefix: &'a str,
}

/// Tick labels with enough decimals to tell ticks apart on an axis from 0 to `top`
/// (about eight ticks): `0.25` steps need 2 decimals, `0.005` steps need 3.
fn axis_format(top: f64) -> impl Fn(&f64) -> String {
    let step = (top / 8.0).max(f64::MIN_POSITIVE);
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    move |v: &f64| format!("{v:.decimals$}")
}

fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    // Headroom for the value labels above the tallest bar.
    v * 1.18
}

fn draw_bars<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Bars<'_>) -> DrawResult<DB> {
    let groups = p.workloads.len().max(1);
    let series = p.values.len().max(1);
    let top = p
        .values
        .iter()
        .flatten()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max);
    // Decimals from the range, so small costs ($0.01–0.03) do not print one label thrice.
    let y_fmt = axis_format(nice_max(top));
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, bold(22.0))
        .margin(14)
        .margin_right(24)
        .x_label_area_size(70)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..groups as f64, 0f64..nice_max(top))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_label_formatter(&|v| format!("{}{}", p.y_prefix, y_fmt(v)))
        .y_desc(p.y_desc)
        .label_style(font(17.0))
        .axis_desc_style(font(19.0))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(INK)
        .draw()?;
    // Bars take 80 % of a group, split evenly; a small gap between neighbours.
    let slot = 0.8 / series as f64;
    let base = chart.plotting_area().get_base_pixel();
    let rel = |c: (i32, i32)| (c.0 - base.0, c.1 - base.1);
    let area_base = area.get_base_pixel();
    for (fi, row) in p.values.iter().enumerate() {
        let c = colour(fi);
        for (wi, v) in row.iter().enumerate() {
            let x0 = wi as f64 + 0.1 + fi as f64 * slot + slot * 0.06;
            let x1 = x0 + slot * 0.88;
            match v {
                Some(v) => {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x1, *v)],
                        c.filled(),
                    )))?;
                    let (px, py) = rel(chart.backend_coord(&((x0 + x1) / 2.0, *v)));
                    chart.plotting_area().strip_coord_spec().draw(&Text::new(
                        (p.label)(*v),
                        (px, py - 6),
                        anchored(font(16.0), HPos::Center, VPos::Bottom),
                    ))?;
                }
                None => {
                    let (px, py) = rel(chart.backend_coord(&((x0 + x1) / 2.0, 0.0)));
                    chart.plotting_area().strip_coord_spec().draw(&Text::new(
                        "n/a",
                        (px, py - 6),
                        anchored(font(16.0).color(&MUTED), HPos::Center, VPos::Bottom),
                    ))?;
                }
            }
        }
    }
    // Group labels under the axis, drawn on the panel (the plotting area would clip them).
    for (wi, w) in p.workloads.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(wi as f64 + 0.5, 0.0));
        let at = (px - area_base.0, py - area_base.1);
        area.draw(&Text::new(
            w.clone(),
            (at.0, at.1 + 12),
            anchored(bold(19.0), HPos::Center, VPos::Top),
        ))?;
        if let Some(note) = p.workload_notes.get(wi) {
            area.draw(&Text::new(
                note.clone(),
                (at.0, at.1 + 38),
                anchored(font(16.0).color(&MUTED), HPos::Center, VPos::Top),
            ))?;
        }
    }
    Ok(())
}

fn workload_notes(a: &Analysis) -> Vec<String> {
    // Beyond four groups a panel has no room for the request count under each label (the
    // tables carry it); the concurrency alone still tells the groups' load apart.
    let roomy = a.workloads.len() <= 4;
    a.workloads
        .iter()
        .map(|w| {
            let s = a.stats.iter().find(|s| &s.workload == w);
            match s {
                Some(s) => {
                    let conc = s
                        .spec
                        .concurrency
                        .map_or("no cap".to_string(), |c| format!("conc. {c}"));
                    if roomy {
                        format!("{} req, {}", s.spec.requests, conc)
                    } else {
                        conc
                    }
                }
                None => String::new(),
            }
        })
        .collect()
}

fn matrix(a: &Analysis, f: impl Fn(&Stats) -> Option<f64>) -> Vec<Vec<Option<f64>>> {
    a.frameworks
        .iter()
        .map(|fw| {
            a.workloads
                .iter()
                .map(|w| a.get(fw, w).and_then(&f))
                .collect()
        })
        .collect()
}

fn suffix(study: &Study) -> &'static str {
    if study.all_simulated() {
        " (simulated)"
    } else if study.any_simulated() {
        " (partly simulated)"
    } else {
        ""
    }
}

fn context(study: &Study) -> String {
    let env = &study.environment;
    let mut parts = vec![env.model.clone()];
    if let Some(g) = &env.gpu {
        parts.push(g.clone());
    }
    if let Some(i) = &env.instance {
        parts.push(i.clone());
    }
    parts.join(" · ")
}

fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        text.to_string(),
        ((w / 2) as i32, (h / 2) as i32),
        anchored(font(22.0).color(&MUTED), HPos::Center, VPos::Center),
    ))
}

fn draw_throughput<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    study: &Study,
    a: &Analysis,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let body = header(
        root,
        &format!("Throughput by framework and workload{}", suffix(study)),
        &format!(
            "{} — mean over repeats, measured phase only",
            context(study)
        ),
        &legend_of(&a.frameworks),
    )?;
    if a.stats.is_empty() {
        return no_data(&body, "no results in this study");
    }
    let (left, right) = body.split_horizontally(body.dim_in_pixel().0 / 2);
    let tok = |v: f64| format!("{v:.0}");
    let req = |v: f64| format!("{v:.2}");
    draw_bars(
        &left,
        &Bars {
            title: "Output token throughput",
            y_desc: "Output tokens per second (tok/s)",
            workloads: &a.workloads,
            workload_notes: workload_notes(a),
            values: matrix(a, |s| Some(s.output_tps)),
            label: &tok,
            y_prefix: "",
        },
    )?;
    draw_bars(
        &right,
        &Bars {
            title: "Request throughput",
            y_desc: "Successful requests per second (req/s)",
            workloads: &a.workloads,
            workload_notes: workload_notes(a),
            values: matrix(a, |s| Some(s.rps)),
            label: &req,
            y_prefix: "",
        },
    )
}

fn draw_cost<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    study: &Study,
    a: &Analysis,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let price = study
        .environment
        .price
        .as_ref()
        .map(|p| {
            format!(
                "${}/h for {} ({}, {})",
                crate::cost::trim_price(p.usd_per_hour),
                p.instance,
                match p.origin {
                    crate::cost::PriceOrigin::Catalog => "catalog price",
                    crate::cost::PriceOrigin::Override => "user's price",
                },
                p.date
            )
        })
        .unwrap_or_else(|| "price per cell as recorded".into());
    let body = header(
        root,
        &format!("Cost per 1M output tokens{}", suffix(study)),
        &format!("{} — {price}; lower is better", context(study)),
        &legend_of(&a.frameworks),
    )?;
    let values = matrix(a, |s| s.usd_per_1m_output);
    if values.iter().flatten().all(|v| v.is_none()) {
        return no_data(
            &body,
            "not measured: no price was given for this study, or no output tokens",
        );
    }
    let body = footnote(
        &body,
        "cost per 1M output tokens = hourly price / (output tok/s × 3600) × 1,000,000; n/a: no price or no output",
    )?;
    let usd = |v: f64| format!("${v:.3}");
    draw_bars(
        &body,
        &Bars {
            title: "",
            y_desc: "US dollars per 1M output tokens ($)",
            workloads: &a.workloads,
            workload_notes: workload_notes(a),
            values,
            label: &usd,
            y_prefix: "$",
        },
    )
}

/// One percentile ladder: whisker min–max, box P50–P90 (dark) and P90–P99 (light),
/// a line at P50 and a dot at the mean.
fn draw_ladders<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    a: &Analysis,
    pick: impl Fn(&Stats) -> Ladder,
) -> DrawResult<DB> {
    let groups = a.workloads.len().max(1);
    let series = a.frameworks.len().max(1);
    let top = a.stats.iter().map(|s| pick(s).max).fold(0.0_f64, f64::max);
    let y_fmt = axis_format(nice_max(top));
    let mut chart = ChartBuilder::on(area)
        .caption(title, bold(22.0))
        .margin(14)
        .margin_right(24)
        .x_label_area_size(70)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..groups as f64, 0f64..nice_max(top))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .y_desc(y_desc)
        .y_label_formatter(&y_fmt)
        .label_style(font(17.0))
        .axis_desc_style(font(19.0))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(INK)
        .draw()?;
    let slot = 0.8 / series as f64;
    for (fi, fw) in a.frameworks.iter().enumerate() {
        let c = colour(fi);
        for (wi, w) in a.workloads.iter().enumerate() {
            let Some(s) = a.get(fw, w) else { continue };
            let l = pick(s);
            if l.count == 0 {
                continue;
            }
            let mid = wi as f64 + 0.1 + (fi as f64 + 0.5) * slot;
            let half = slot * 0.32;
            let cap = slot * 0.15;
            let ink = ShapeStyle::from(&INK).stroke_width(2);
            chart.draw_series([
                PathElement::new(vec![(mid, l.min), (mid, l.max)], ink),
                PathElement::new(vec![(mid - cap, l.min), (mid + cap, l.min)], ink),
                PathElement::new(vec![(mid - cap, l.max), (mid + cap, l.max)], ink),
            ])?;
            chart.draw_series([
                Rectangle::new(
                    [(mid - half, l.p90), (mid + half, l.p99)],
                    tint(c, 0.55).filled(),
                ),
                Rectangle::new([(mid - half, l.p50), (mid + half, l.p90)], c.filled()),
                Rectangle::new(
                    [(mid - half, l.p50), (mid + half, l.p99)],
                    ShapeStyle::from(&INK).stroke_width(1),
                ),
            ])?;
            chart.draw_series([PathElement::new(
                vec![(mid - half, l.p50), (mid + half, l.p50)],
                ShapeStyle::from(&INK).stroke_width(4),
            )])?;
            chart.draw_series([Circle::new(
                (mid, l.mean),
                6,
                ShapeStyle::from(&WHITE).filled(),
            )])?;
            chart.draw_series([Circle::new(
                (mid, l.mean),
                6,
                ShapeStyle::from(&INK).stroke_width(2),
            )])?;
        }
    }
    let area_base = area.get_base_pixel();
    let notes = workload_notes(a);
    for (wi, w) in a.workloads.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(wi as f64 + 0.5, 0.0));
        let at = (px - area_base.0, py - area_base.1);
        area.draw(&Text::new(
            w.clone(),
            (at.0, at.1 + 12),
            anchored(bold(19.0), HPos::Center, VPos::Top),
        ))?;
        if let Some(note) = notes.get(wi) {
            area.draw(&Text::new(
                note.clone(),
                (at.0, at.1 + 38),
                anchored(font(16.0).color(&MUTED), HPos::Center, VPos::Top),
            ))?;
        }
    }
    Ok(())
}

fn draw_latency<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    study: &Study,
    a: &Analysis,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let body = header(
        root,
        &format!(
            "Latency distribution by framework and workload{}",
            suffix(study)
        ),
        &format!(
            "{} — successful requests of the measured phase",
            context(study)
        ),
        &legend_of(&a.frameworks),
    )?;
    if a.stats.iter().all(|s| s.e2e.count == 0) {
        return no_data(&body, "no successful request, so no latency was measured");
    }
    let body = footnote(
        &body,
        "dark box: P50–P90 · light box: P90–P99 · thick line: P50 (median) · whiskers: min and max · circle: mean",
    )?;
    let (left, right) = body.split_horizontally(body.dim_in_pixel().0 / 2);
    draw_ladders(
        &left,
        "End-to-end latency",
        "End-to-end latency (s)",
        a,
        |s| s.e2e,
    )?;
    draw_ladders(
        &right,
        "Time to first token",
        // TTFT is tens of milliseconds where E2E is seconds: its own unit keeps the axis legible.
        "Time to first token (ms)",
        a,
        |s| s.ttft.scaled(1000.0),
    )
}

/// Light yellow → dark blue: higher utilization reads darker.
fn heat(pct: f64) -> RGBColor {
    const STOPS: [(f64, (f64, f64, f64)); 5] = [
        (0.0, (255.0, 255.0, 217.0)),
        (25.0, (199.0, 233.0, 180.0)),
        (50.0, (65.0, 182.0, 196.0)),
        (75.0, (34.0, 94.0, 168.0)),
        (100.0, (8.0, 29.0, 88.0)),
    ];
    let p = pct.clamp(0.0, 100.0);
    let i = STOPS
        .iter()
        .rposition(|(s, _)| *s <= p)
        .unwrap_or(0)
        .min(STOPS.len() - 2);
    let (s0, c0) = STOPS[i];
    let (s1, c1) = STOPS[i + 1];
    let f = (p - s0) / (s1 - s0);
    let m = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(m(c0.0, c1.0), m(c0.1, c1.1), m(c0.2, c1.2))
}

fn draw_gpu<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    study: &Study,
    a: &Analysis,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let body = header(
        root,
        &format!(
            "Mean GPU utilization by framework and workload{}",
            suffix(study)
        ),
        &format!("{} — sampled over the measured phase", context(study)),
        &[],
    )?;
    if a.stats.is_empty() {
        return no_data(&body, "no results in this study");
    }
    let reasons: Vec<String> = {
        let mut r: Vec<String> = Vec::new();
        for s in &a.stats {
            if let Some(why) = &s.gpu_unavailable {
                if !r.contains(why) {
                    r.push(why.clone());
                }
            }
        }
        r
    };
    let note = if reasons.is_empty() {
        "cell: mean utilization; below it: peak utilization and peak memory".to_string()
    } else {
        format!("n/a: not measured ({})", reasons.join("; "))
    };
    let body = footnote(&body, &note)?;
    let (w, h) = body.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let left = 190;
    let right = 170;
    let top = 20;
    let bottom = 60;
    let cols = a.workloads.len().max(1) as i32;
    let rows = a.frameworks.len().max(1) as i32;
    let cw = (w - left - right) / cols;
    let ch = ((h - top - bottom) / rows).min(HEAT_ROW);
    let grid_h = ch * rows;
    for (fi, fw) in a.frameworks.iter().enumerate() {
        let y0 = top + fi as i32 * ch;
        body.draw(&Text::new(
            framework_label(fw),
            (left - 16, y0 + ch / 2),
            anchored(bold(20.0), HPos::Right, VPos::Center),
        ))?;
        for (wi, wl) in a.workloads.iter().enumerate() {
            let x0 = left + wi as i32 * cw;
            let cell = [(x0 + 2, y0 + 2), (x0 + cw - 2, y0 + ch - 2)];
            let (cx, cy) = (x0 + cw / 2, y0 + ch / 2);
            match a.get(fw, wl).and_then(|s| s.gpu.as_ref()) {
                Some(g) => {
                    let fill = heat(g.util_mean_pct);
                    let text_colour: &'static RGBColor =
                        if g.util_mean_pct > 55.0 { &WHITE } else { &INK };
                    body.draw(&Rectangle::new(cell, fill.filled()))?;
                    body.draw(&Text::new(
                        format!("{:.1} %", g.util_mean_pct),
                        (cx, cy - 12),
                        anchored(bold(26.0).color(text_colour), HPos::Center, VPos::Center),
                    ))?;
                    body.draw(&Text::new(
                        format!("max {:.0} % · {:.2} GB", g.util_max_pct, g.mem_max_gb),
                        (cx, cy + 22),
                        anchored(font(16.0).color(text_colour), HPos::Center, VPos::Center),
                    ))?;
                }
                None => {
                    body.draw(&Rectangle::new(cell, NA_FILL.filled()))?;
                    let label = if a.get(fw, wl).is_some() {
                        "n/a"
                    } else {
                        "not run"
                    };
                    body.draw(&Text::new(
                        label,
                        (cx, cy),
                        anchored(bold(24.0).color(&MUTED), HPos::Center, VPos::Center),
                    ))?;
                }
            }
        }
    }
    for (wi, wl) in a.workloads.iter().enumerate() {
        let cx = left + wi as i32 * cw + cw / 2;
        body.draw(&Text::new(
            wl.clone(),
            (cx, top + grid_h + 12),
            anchored(bold(19.0), HPos::Center, VPos::Top),
        ))?;
    }
    body.draw(&Text::new(
        "Workload",
        (left + cw * cols / 2, top + grid_h + 40),
        anchored(font(18.0).color(&MUTED), HPos::Center, VPos::Top),
    ))?;
    // Colour bar: 0–100 %.
    let bx = w - right + 40;
    let bw = 28;
    let steps = 100;
    for i in 0..steps {
        let y1 = top + grid_h - i * grid_h / steps;
        let y0 = top + grid_h - (i + 1) * grid_h / steps;
        body.draw(&Rectangle::new(
            [(bx, y0), (bx + bw, y1)],
            heat(f64::from(i) + 0.5).filled(),
        ))?;
    }
    body.draw(&Rectangle::new(
        [(bx, top), (bx + bw, top + grid_h)],
        ShapeStyle::from(&MUTED),
    ))?;
    for pct in [0, 25, 50, 75, 100] {
        let y = top + grid_h - pct * grid_h / 100;
        body.draw(&Text::new(
            format!("{pct} %"),
            (bx + bw + 8, y),
            anchored(font(16.0), HPos::Left, VPos::Center),
        ))?;
    }
    body.draw(&Text::new(
        "GPU util.",
        (bx + bw / 2, top + grid_h + 12),
        anchored(font(16.0).color(&MUTED), HPos::Center, VPos::Top),
    ))?;
    Ok(())
}

/// Pixel size of the bar and latency charts (PNG); the SVG has the same user units.
pub const SIZE: (u32, u32) = (1500, 820);
/// Heatmap row height, px; the heatmap is as tall as its rows need.
const HEAT_ROW: i32 = 150;

fn size_of(name: &str, a: &Analysis) -> (u32, u32) {
    if name == GPU {
        let rows = a.frameworks.len().clamp(1, 8) as u32;
        // header 92 + top 20 + rows + labels 60 + footnote 34 + slack
        (SIZE.0, 92 + 20 + rows * HEAT_ROW as u32 + 60 + 34 + 24)
    } else {
        SIZE
    }
}

fn draw<DB: DrawingBackend>(
    name: &str,
    root: &DrawingArea<DB, Shift>,
    study: &Study,
    a: &Analysis,
) -> DrawResult<DB> {
    match name {
        THROUGHPUT => draw_throughput(root, study, a),
        LATENCY => draw_latency(root, study, a),
        COST => draw_cost(root, study, a),
        _ => draw_gpu(root, study, a),
    }
}

fn render_one(
    name: &'static str,
    study: &Study,
    a: &Analysis,
) -> Result<RenderedChart, StudyError> {
    let err = |e: &dyn std::fmt::Display| StudyError::Chart {
        chart: name,
        message: e.to_string(),
    };
    let (w, h) = size_of(name, a);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(name, &root, study, a).map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    let png = encode_png(&rgb, w, h).map_err(|e| err(&e))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        draw(name, &root, study, a).map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(RenderedChart { name, png, svg })
}

/// One point of a sweep, for [`render_latency_throughput`].
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// The series (a target, or "P50"/"P99" of one).
    pub series: String,
    /// The load it ran at, as written beside the point ("c=8", "4 req/s").
    pub label: String,
    /// Output tokens/s.
    pub x: f64,
    /// Latency, seconds.
    pub y: f64,
}

/// The latency-vs-throughput curve of a sweep: one line per series, each point labelled with
/// its load. `latency_vs_throughput` as PNG and SVG.
pub fn render_latency_throughput(
    title: &str,
    subtitle: &str,
    y_desc: &str,
    points: &[SweepPoint],
) -> Result<RenderedChart, StudyError> {
    const NAME: &str = "latency_vs_throughput";
    fonts()?;
    let err = |e: &dyn std::fmt::Display| StudyError::Chart {
        chart: NAME,
        message: e.to_string(),
    };
    let mut series: Vec<&str> = Vec::new();
    for p in points {
        if !series.contains(&p.series.as_str()) {
            series.push(&p.series);
        }
    }
    let (w, h) = (1400u32, 820u32);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw_sweep(&root, title, subtitle, y_desc, points, &series).map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    let png = encode_png(&rgb, w, h).map_err(|e| err(&e))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        draw_sweep(&root, title, subtitle, y_desc, points, &series).map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(RenderedChart {
        name: NAME,
        png,
        svg,
    })
}

fn draw_sweep<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
    y_desc: &str,
    points: &[SweepPoint],
    series: &[&str],
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let legend: Vec<(String, RGBColor)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.to_string(), colour(i)))
        .collect();
    let body = header(root, title, subtitle, &legend)?;
    let xmax = nice_max(points.iter().map(|p| p.x).fold(0.0, f64::max));
    let ymax = nice_max(points.iter().map(|p| p.y).fold(0.0, f64::max));
    let (xf, yf) = (axis_format(xmax), axis_format(ymax));
    let mut chart = ChartBuilder::on(&body)
        .margin(20)
        .margin_right(40)
        .x_label_area_size(70)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("Output tokens per second (tok/s)")
        .y_desc(y_desc)
        .x_label_formatter(&|v| xf(v))
        .y_label_formatter(&|v| yf(v))
        .label_style(font(17.0))
        .axis_desc_style(font(19.0))
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(INK)
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let mut pts: Vec<&SweepPoint> = points.iter().filter(|p| p.series == *s).collect();
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        let c = colour(i);
        chart.draw_series(std::iter::once(PathElement::new(
            pts.iter().map(|p| (p.x, p.y)).collect::<Vec<_>>(),
            c.stroke_width(3),
        )))?;
        chart.draw_series(pts.iter().map(|p| Circle::new((p.x, p.y), 6, c.filled())))?;
        chart.draw_series(pts.iter().map(|p| {
            Text::new(
                p.label.clone(),
                (p.x, p.y),
                anchored(font(14.0).color(&MUTED), HPos::Left, VPos::Bottom),
            )
        }))?;
    }
    Ok(())
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

/// All four charts, in report order.
pub fn render_all(study: &Study, a: &Analysis) -> Result<Vec<RenderedChart>, StudyError> {
    fonts()?;
    Ok(vec![
        render_one(THROUGHPUT, study, a)?,
        render_one(LATENCY, study, a)?,
        render_one(COST, study, a)?,
        render_one(GPU, study, a)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_fonts_load() {
        fonts().unwrap();
    }

    #[test]
    fn axis_labels_have_enough_decimals() {
        let f = axis_format(0.012);
        assert_eq!(f(&0.002), "0.002");
        let f = axis_format(1.2);
        assert_eq!(f(&0.2), "0.2");
        let f = axis_format(3500.0);
        assert_eq!(f(&500.0), "500");
    }

    #[test]
    fn heat_runs_light_to_dark() {
        let lum = |c: RGBColor| u32::from(c.0) + u32::from(c.1) + u32::from(c.2);
        assert!(lum(heat(0.0)) > lum(heat(50.0)));
        assert!(lum(heat(50.0)) > lum(heat(100.0)));
        assert_eq!(heat(-5.0), heat(0.0));
        assert_eq!(heat(250.0), heat(100.0));
    }
}
