//! The report's text: the seed report's results sections (5–7) filled from a [`Study`], as a
//! [`Block`] list both renderers share. Every sentence is built from the numbers; where the data
//! cannot say something, the text says so and why.

use super::analysis::{
    join_and, percent_more, recommendations, Analysis, Better, Choice, Recommendation, Stats,
    TIE_FRACTION,
};
use super::charts;
use super::doc::{b, code, em, t, Block, Figure, Inline, Table};
use super::model::{framework_label, Study};
use crate::cost::trim_price;

/// Seconds, with enough digits for sub-second latencies.
pub fn fmt_s(v: f64) -> String {
    if v.abs() < 0.1 {
        format!("{v:.4}")
    } else {
        format!("{v:.3}")
    }
}

pub fn fmt_tps(v: f64) -> String {
    format!("{v:.1}")
}

pub fn fmt_rps(v: f64) -> String {
    if v.abs() < 0.1 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

pub fn fmt_usd(v: f64) -> String {
    format!("${v:.4}")
}

/// `+12.3` (% change from `before` to `now`), or `—` when there is nothing to compare with.
fn pct_change(now: f64, before: f64) -> String {
    if before > 0.0 {
        format!("{:+.1}", (now / before - 1.0) * 100.0)
    } else {
        "—".into()
    }
}

/// A table's column names.
fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Milliseconds, for TTFTs that are usually tens to hundreds of ms.
fn fmt_ms(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn fmt_pct(v: f64) -> String {
    format!("{v:.1}")
}

fn or_na(v: Option<f64>, f: impl Fn(f64) -> String, why: &str) -> String {
    v.map(f).unwrap_or_else(|| format!("not measured: {why}"))
}

/// `" (simulated)"` for a simulated row or table; empty otherwise.
fn sim_tag(simulated: bool) -> &'static str {
    if simulated {
        " (simulated)"
    } else {
        ""
    }
}

fn fw_cell(s: &Stats, mixed: bool) -> String {
    // In a study that mixes simulated and measured rows, each simulated row says so.
    format!(
        "{}{}",
        framework_label(&s.framework),
        if mixed { sim_tag(s.simulated) } else { "" }
    )
}

fn caption(number: &str, what: &str, study: &Study) -> Vec<Inline> {
    vec![
        b(format!("Table {number}{}.", sim_tag(study.any_simulated()))),
        t(format!(" {what}")),
    ]
}

fn figure(name: &str, n: usize, what: &str, study: &Study) -> Block {
    Block::Figure(Figure {
        png: format!("{name}.png"),
        svg: format!("{name}.svg"),
        alt: what.to_string(),
        caption: vec![em(format!(
            "Figure {n}{}: {what}.",
            sim_tag(study.any_simulated())
        ))],
    })
}

fn gpu_name(study: &Study) -> String {
    let env = &study.environment;
    env.gpu
        .clone()
        .or_else(|| {
            env.price
                .as_ref()
                .map(|p| p.gpu.clone())
                .filter(|g| !g.is_empty())
        })
        .unwrap_or_else(|| "GPU not recorded".into())
}

fn load_model(s: &Stats) -> String {
    match (s.spec.request_rate, s.spec.concurrency) {
        (Some(r), Some(c)) => format!("open loop, {r} req/s, at most {c} in flight"),
        (Some(r), None) => format!("open loop, {r} req/s"),
        (None, Some(c)) => format!("closed loop, {c} in flight"),
        (None, None) => "all at once, no cap".into(),
    }
}

/// The whole report, top to bottom.
pub fn build(study: &Study, a: &Analysis) -> Vec<Block> {
    let mut out = Vec::new();
    out.push(Block::Heading(1, study.title.clone()));
    banner(study, &mut out);
    intro(study, &mut out);
    environment(study, a, &mut out);
    methodology(study, a, &mut out);
    out.push(Block::Heading(2, "5. Results".into()));
    throughput(study, a, &mut out);
    latency(study, a, &mut out);
    cost(study, a, &mut out);
    gpu(study, a, &mut out);
    prefix_sharing(study, a, &mut out);
    structured_output(study, a, &mut out);
    multi_turn(study, a, &mut out);
    let recs = recommendations(a, &gpu_name(study));
    discussion(study, a, &recs, &mut out);
    conclusion(study, a, &recs, &mut out);
    appendix(study, a, &mut out);
    out
}

fn banner(study: &Study, out: &mut Vec<Block>) {
    if study.all_simulated() {
        out.push(Block::Banner(vec![
            b("Simulated results."),
            t(" Every number, table and chart in this report was produced by servebench's embedded \
               simulator (a model of each serving engine on the named GPU), not measured on real \
               hardware. Read them as predictions of what the real study would show, not as measurements."),
        ]));
    } else if study.any_simulated() {
        out.push(Block::Banner(vec![
            b("Partly simulated results."),
            t(" Rows marked \"(simulated)\" come from servebench's embedded simulator, not from real \
               hardware; the other rows were measured."),
        ]));
    }
}

fn intro(study: &Study, out: &mut Vec<Block>) {
    let env = &study.environment;
    let mut s = format!(
        "Generated {} by servebench {}",
        study.generated_at.format("%Y-%m-%d %H:%M UTC"),
        env.servebench_version
    );
    if let Some(c) = &env.servebench_commit {
        s.push_str(&format!(" (commit {c})"));
    }
    s.push_str(". This report fills the results sections (5–7) of the seed study from the data; the rules behind every recommendation are written next to it.");
    out.push(Block::Para(vec![t(s)]));
}

fn environment(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    let env = &study.environment;
    out.push(Block::Heading(2, "Environment".into()));
    let mut rows: Vec<Vec<String>> = Vec::new();
    let unknown = || "not recorded".to_string();
    rows.push(vec![
        "Instance type".into(),
        env.instance.clone().unwrap_or_else(unknown),
    ]);
    let gpu = match (env.gpu.clone(), env.gpu_count) {
        (Some(g), Some(n)) if n > 1 => format!("{n}× {g}"),
        (Some(g), _) => g,
        (None, _) => unknown(),
    };
    rows.push(vec!["GPU".into(), gpu]);
    rows.push(vec![
        "Region".into(),
        env.region.clone().unwrap_or_else(unknown),
    ]);
    rows.push(vec!["Model".into(), env.model.clone()]);
    for f in &a.frameworks {
        let v = env.engines.get(f).cloned().unwrap_or_else(unknown);
        rows.push(vec![format!("{} engine", framework_label(f)), v]);
    }
    rows.push(vec![
        "Hourly price".into(),
        env.price
            .as_ref()
            .map(|p| p.describe())
            .unwrap_or_else(|| "not given: cost figures are not computed".into()),
    ]);
    if let Some(h) = &env.host {
        rows.push(vec!["Benchmark client host".into(), h.clone()]);
    }
    rows.push(vec![
        "Data".into(),
        if study.all_simulated() {
            "simulated (servebench's embedded simulator)".into()
        } else if study.any_simulated() {
            "partly simulated".into()
        } else {
            "measured".into()
        },
    ]);
    out.push(Block::Table(Table {
        caption: caption("E.1", "Where the study ran.", study),
        header: vec!["Parameter".into(), "Value".into()],
        rows,
        numeric: vec![false, false],
    }));
}

fn methodology(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    out.push(Block::Heading(2, "Methodology".into()));
    out.push(Block::Heading(3, "Workloads".into()));
    let mut rows = Vec::new();
    for w in &a.workloads {
        let Some(s) = a.stats.iter().find(|s| &s.workload == w) else {
            continue;
        };
        let repeats = a
            .stats
            .iter()
            .filter(|x| &x.workload == w)
            .map(|x| x.repeats)
            .max()
            .unwrap_or(1);
        rows.push(vec![
            w.clone(),
            s.spec.requests.to_string(),
            // 0: each request's limit came from its dataset (a ShareGPT reply's length).
            match s.spec.max_tokens {
                0 => "per the dataset".into(),
                n => n.to_string(),
            },
            s.spec
                .concurrency
                .map_or("no cap".into(), |c| c.to_string()),
            s.spec.warmup_requests.to_string(),
            load_model(s),
            s.spec
                .prompt
                .clone()
                .unwrap_or_else(|| "not recorded".into()),
            repeats.to_string(),
        ]);
    }
    out.push(Block::Table(Table {
        caption: caption(
            "4.1",
            "Workload configurations (measured requests exclude warmup).",
            study,
        ),
        header: cols(&[
            "Workload",
            "Requests",
            "Max Tokens",
            "Concurrency",
            "Warmup",
            "Load model",
            "Prompts",
            "Repeats",
        ]),
        rows,
        numeric: vec![false, true, true, true, true, false, false, true],
    }));
    let mut steps = vec![
        vec![t("Start the inference server and wait until it reports ready (health and model list).")],
        vec![t("Send the warmup requests; they are recorded but left out of every number below.")],
        vec![t(
            "Run the measured requests under the workload's load model: closed loop keeps the given number \
             of requests in flight, sending the next as soon as one finishes.",
        )],
        vec![t("Compute the metrics from the request records of the measured phase; save the raw results.")],
        vec![t(
            "Repeat for each framework and workload; where a combination ran more than once, tables and charts \
             show the mean over repeats.",
        )],
    ];
    if study.all_simulated() {
        steps.push(vec![t(
            "Here the server is servebench's simulator, which answers over the same OpenAI-compatible HTTP API, \
             so the load and the metrics are computed exactly as they would be against a real engine.",
        )]);
    }
    out.push(Block::List {
        ordered: true,
        items: steps,
    });
    if !study.notes.is_empty() {
        out.push(Block::List {
            ordered: false,
            items: study.notes.iter().map(|n| vec![t(n.clone())]).collect(),
        });
    }
    out.push(Block::Heading(3, "Metric definitions".into()));
    out.push(Block::List {
        ordered: false,
        items: vec![
            vec![b("Duration:"), t(" first request sent → last token received, measured phase only.")],
            vec![b("Throughput (TPS):"), t(" output tokens of successful requests / duration (tok/s).")],
            vec![b("Throughput (RPS):"), t(" successful requests / duration (req/s).")],
            vec![b("End-to-end latency:"), t(" last token received − request sent, per successful request.")],
            vec![b("TTFT:"), t(" first token received − request sent (a role-only first chunk does not count).")],
            vec![
                b("Percentiles:"),
                t(" P50/P90/P95/P99 with linear interpolation between closest ranks (numpy's default). With few \
                   requests, P99 is close to the maximum."),
            ],
            vec![b("Success rate:"), t(" successful / attempted requests (failed and never-sent requests count as attempted).")],
            vec![
                b("Cost per 1M tokens:"),
                t(" hourly price / (tok/s × 3600) × 1,000,000, for output tokens and for prompt + output tokens."),
            ],
            vec![
                b("Cost per 1000 good requests:"),
                t(" hourly price / (good requests/s × 3600) × 1000; a good request succeeded and met every SLO \
                   given, or simply succeeded when no SLO was given."),
            ],
            vec![
                b("GPU utilization / memory:"),
                t(" mean and max of the sampled utilization, and max of the sampled used memory, over the measured phase."),
            ],
        ],
    });
}

fn throughput(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    let mixed = study.partly_simulated();
    out.push(Block::Heading(3, "5.1 Throughput Comparison".into()));
    out.push(figure(
        charts::THROUGHPUT,
        1,
        "output token throughput and request throughput by framework and workload",
        study,
    ));
    let rows = a
        .stats
        .iter()
        .map(|s| {
            vec![
                fw_cell(s, mixed),
                s.workload.clone(),
                fmt_tps(s.output_tps),
                fmt_rps(s.rps),
                fmt_tps(s.total_tps),
                format!("{:.1} %", s.success_rate * 100.0),
            ]
        })
        .collect();
    out.push(Block::Table(Table {
        caption: caption("5.1", "Output token throughput (TPS), request throughput (RPS), prompt + output token throughput and success rate.", study),
        header: cols(&["Framework", "Workload", "Throughput (TPS)", "Throughput (RPS)", "Total tok/s", "Success rate"]),
        rows,
        numeric: vec![false, false, true, true, true, true],
    }));
}

fn latency(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    let mixed = study.partly_simulated();
    out.push(Block::Heading(3, "5.2 Latency Distribution".into()));
    out.push(figure(
        charts::LATENCY,
        2,
        "end-to-end latency and time to first token per framework and workload as percentile ladders \
         (dark box P50–P90, light box P90–P99, thick line P50, whiskers min and max, circle mean)",
        study,
    ));
    let none = "no successful request";
    let rows = a
        .frameworks
        .iter()
        .map(|f| {
            let p = |g: fn(&Stats) -> f64| a.framework_mean(f, |s| (s.e2e.count > 0).then(|| g(s)));
            vec![
                framework_label(f),
                or_na(p(|s| s.e2e.mean), fmt_s, none),
                or_na(p(|s| s.e2e.p50), fmt_s, none),
                or_na(p(|s| s.e2e.p95), fmt_s, none),
                or_na(p(|s| s.e2e.p99), fmt_s, none),
            ]
        })
        .collect();
    out.push(Block::Table(Table {
        caption: caption(
            "5.2",
            &format!(
                "End-to-end latency per framework over {}, in seconds: each column is the mean, over these \
                 workloads (equally weighted), of the per-workload figure in Table 5.2b. Percentiles of \
                 different workloads cannot be pooled without the raw samples, and weighting the average by \
                 request count would let the largest workload dominate it.",
                a.basis_text()
            ),
            study,
        ),
        header: cols(&["Framework", "Avg Latency (s)", "P50 (s)", "P95 (s)", "P99 (s)"]),
        rows,
        numeric: vec![false, true, true, true, true],
    }));
    let rows = a
        .stats
        .iter()
        .map(|s| {
            let l = s.e2e;
            if l.count == 0 {
                let mut r = vec![fw_cell(s, mixed), s.workload.clone(), "0".into()];
                r.extend((0..9).map(|_| format!("not measured: {none}")));
                return r;
            }
            vec![
                fw_cell(s, mixed),
                s.workload.clone(),
                l.count.to_string(),
                fmt_s(l.mean),
                fmt_s(l.min),
                fmt_s(l.p50),
                fmt_s(l.p90),
                fmt_s(l.p95),
                fmt_s(l.p99),
                fmt_s(l.max),
                fmt_s(s.ttft.p50),
                fmt_s(s.ttft.p99),
            ]
        })
        .collect();
    out.push(Block::Table(Table {
        caption: caption(
            "5.2b",
            "Latency per framework and workload, in seconds (E2E unless marked TTFT).",
            study,
        ),
        header: cols(&[
            "Framework",
            "Workload",
            "Requests",
            "Avg",
            "Min",
            "P50",
            "P90",
            "P95",
            "P99",
            "Max",
            "TTFT P50",
            "TTFT P99",
        ]),
        rows,
        numeric: vec![
            false, false, true, true, true, true, true, true, true, true, true, true,
        ],
    }));
}

fn no_price_reason(study: &Study) -> &'static str {
    if study.environment.price.is_none() {
        "no hourly price given"
    } else {
        "no output tokens"
    }
}

fn cost(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    let mixed = study.partly_simulated();
    out.push(Block::Heading(3, "5.3 Cost Efficiency".into()));
    out.push(figure(
        charts::COST,
        3,
        "cost per 1M output tokens by framework and workload",
        study,
    ));
    let why = no_price_reason(study);
    let rows = a
        .frameworks
        .iter()
        .map(|f| {
            let tps = a.framework_mean(f, |s| Some(s.output_tps));
            let hourly = a.framework_mean(f, |s| s.usd_per_hour);
            let per_m = a.framework_cost_per_1m(f);
            vec![
                framework_label(f),
                or_na(tps, fmt_tps, "no cell"),
                or_na(hourly, |h| format!("${}", trim_price(h)), why),
                or_na(per_m, fmt_usd, why),
            ]
        })
        .collect();
    out.push(Block::Table(Table {
        caption: caption(
            "5.3",
            &format!(
                "Cost per 1M output tokens per framework at its mean output throughput over {} \
                 (hourly price / (Avg TPS × 3600) × 1,000,000).",
                a.basis_text()
            ),
            study,
        ),
        header: cols(&["Framework", "Avg TPS", "Cost/Hour", "Cost per 1M Tokens"]),
        rows,
        numeric: vec![false, true, true, true],
    }));
    let basis = a
        .stats
        .first()
        .map(|_| {
            study
                .cells
                .iter()
                .find_map(|c| c.cost.as_ref().map(|c| c.good_basis.describe()))
                .unwrap_or("successful requests")
        })
        .unwrap_or("successful requests");
    let rows = a
        .stats
        .iter()
        .map(|s| {
            vec![
                fw_cell(s, mixed),
                s.workload.clone(),
                fmt_tps(s.output_tps),
                or_na(s.usd_per_1m_output, fmt_usd, why),
                or_na(s.usd_per_1m_total, fmt_usd, why),
                or_na(s.usd_per_1k_good, fmt_usd, why),
            ]
        })
        .collect();
    out.push(Block::Table(Table {
        caption: caption(
            "5.3b",
            &format!("Cost per framework and workload. Good requests: {basis}."),
            study,
        ),
        header: cols(&[
            "Framework",
            "Workload",
            "TPS",
            "Cost per 1M output tokens",
            "Cost per 1M total tokens",
            "Cost per 1000 good requests",
        ]),
        rows,
        numeric: vec![false, false, true, true, true, true],
    }));
}

fn gpu(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    let mixed = study.partly_simulated();
    out.push(Block::Heading(3, "5.4 GPU Utilization".into()));
    out.push(figure(
        charts::GPU,
        4,
        "mean GPU utilization per framework and workload, with peak utilization and peak memory",
        study,
    ));
    let rows = a
        .frameworks
        .iter()
        .map(|f| {
            let basis = a.basis(f);
            let why = basis
                .iter()
                .find_map(|s| s.gpu_unavailable.clone())
                .unwrap_or_default();
            let util = a.framework_mean(f, |s| s.gpu.as_ref().map(|g| g.util_mean_pct));
            let mem = if basis.iter().all(|s| s.gpu.is_some()) && !basis.is_empty() {
                Some(
                    basis
                        .iter()
                        .filter_map(|s| s.gpu.as_ref())
                        .map(|g| g.mem_max_gb)
                        .fold(0.0, f64::max),
                )
            } else {
                None
            };
            vec![
                framework_label(f),
                or_na(util, fmt_pct, &why),
                or_na(mem, |m| format!("{m:.2}"), &why),
            ]
        })
        .collect();
    out.push(Block::Table(Table {
        caption: caption(
            "5.4",
            &format!(
                "GPU utilization per framework: the mean over {} of each workload's mean utilization, and the \
                 peak memory used in any of them.",
                a.basis_text()
            ),
            study,
        ),
        header: cols(&["Framework", "GPU Utilization (%)", "Memory Usage (GB)"]),
        rows,
        numeric: vec![false, true, true],
    }));
    let rows = a
        .stats
        .iter()
        .map(|s| match &s.gpu {
            Some(g) => vec![
                fw_cell(s, mixed),
                s.workload.clone(),
                fmt_pct(g.util_mean_pct),
                fmt_pct(g.util_max_pct),
                format!("{:.2}", g.mem_max_gb),
                g.power_mean_w
                    .map_or("not measured".into(), |w| format!("{w:.0}")),
                g.joules_per_output_token
                    .map_or("not measured".into(), |j| format!("{j:.3}")),
                g.source.clone(),
            ],
            None => {
                let why = format!(
                    "not measured: {}",
                    s.gpu_unavailable.clone().unwrap_or_default()
                );
                vec![
                    fw_cell(s, mixed),
                    s.workload.clone(),
                    why.clone(),
                    why.clone(),
                    why.clone(),
                    why.clone(),
                    why,
                    "—".into(),
                ]
            }
        })
        .collect();
    out.push(Block::Table(Table {
        caption: caption(
            "5.4b",
            "GPU telemetry per framework and workload over the measured phase; power is all GPUs \
             together, energy per output token from the GPUs' energy counter (or their power \
             readings), modelled where the source is the simulator.",
            study,
        ),
        header: cols(&[
            "Framework",
            "Workload",
            "Util mean (%)",
            "Util max (%)",
            "Memory max (GB)",
            "Power mean (W)",
            "J / output token",
            "Source",
        ]),
        rows,
        numeric: vec![false, false, true, true, true, true, true, false],
    }));
}

/// 5.5: for each shared-prefix workload, the hit rate the server reported beside what the cache
/// bought: TTFT and throughput against the workload's baseline (the same token counts without
/// sharing), when the study has one.
fn prefix_sharing(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    let shared: Vec<&Stats> = a.stats.iter().filter(|s| s.spec.shared_prefix).collect();
    if shared.is_empty() {
        return;
    }
    let mixed = study.partly_simulated();
    out.push(Block::Heading(3, "5.5 Prefix Sharing".into()));
    let hit = |s: &Stats| {
        s.prefix_cache_hit_rate
            .map_or("not reported by the server".to_string(), |r| {
                fmt_pct(r * 100.0)
            })
    };
    let mut notes = Vec::new();
    let rows = shared
        .iter()
        .map(|s| {
            let base = a.baseline_of(s);
            let ttft_ms = s.ttft.mean * 1000.0;
            if let (Some(b), Some(r)) = (base, s.prefix_cache_hit_rate) {
                notes.push(format!(
                    "{} on {}: {} % of prompt tokens came from the prefix cache and mean TTFT changed by {} % \
                     against {} ({} → {} ms).",
                    framework_label(&s.framework),
                    s.workload,
                    fmt_pct(r * 100.0),
                    pct_change(ttft_ms, b.ttft.mean * 1000.0),
                    b.workload,
                    fmt_ms(b.ttft.mean * 1000.0),
                    fmt_ms(ttft_ms),
                ));
            }
            vec![
                fw_cell(s, mixed),
                s.workload.clone(),
                hit(s),
                fmt_ms(ttft_ms),
                fmt_tps(s.output_tps),
                base.map_or("no baseline".into(), |b| b.workload.clone()),
                base.map_or("—".into(), hit),
                base.map_or("—".into(), |b| fmt_ms(b.ttft.mean * 1000.0)),
                base.map_or("—".into(), |b| pct_change(ttft_ms, b.ttft.mean * 1000.0)),
                base.map_or("—".into(), |b| pct_change(s.output_tps, b.output_tps)),
            ]
        })
        .collect();
    out.push(Block::Para(vec![t(
        "Requests in groups that share a long system prompt let an engine reuse the prompt's KV cache \
         (vLLM's automatic prefix caching, SGLang's radix cache). The hit rate is the server's own: the \
         share of prompt tokens it served from its prefix cache over the measured phase, from its \
         /metrics counters. The baseline is the workload the suite names as the same token counts \
         without sharing, on the same framework; a negative TTFT change is the cache's gain.",
    )]));
    out.push(Block::Table(Table {
        caption: caption(
            "5.5",
            "Prefix-cache hit rate beside the latency and throughput it bought, per framework and shared-prefix workload.",
            study,
        ),
        header: cols(&[
            "Framework",
            "Workload",
            "Prefix-cache hit rate (%)",
            "TTFT mean (ms)",
            "Output (tok/s)",
            "Baseline",
            "Baseline hit rate (%)",
            "Baseline TTFT mean (ms)",
            "TTFT change (%)",
            "Output change (%)",
        ]),
        rows,
        numeric: vec![false, false, true, true, true, false, true, true, true, true],
    }));
    if !notes.is_empty() {
        out.push(Block::List {
            ordered: false,
            items: notes.into_iter().map(|n| vec![t(n)]).collect(),
        });
    }
}

/// 5.7: conversations. Each turn's prompt holds the history before it, replies included, so
/// TTFT by turn shows whether the engine's prefix cache carries the history (flat or falling)
/// or recomputes it (rising with the history's length).
fn multi_turn(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    let mixed = study.partly_simulated();
    let mut rows = Vec::new();
    for s in a.stats.iter().filter(|s| s.spec.multi_turn) {
        let cells: Vec<_> = study
            .cells
            .iter()
            .filter(|c| c.framework == s.framework && c.workload == s.workload)
            .collect();
        let turns = cells
            .iter()
            .flat_map(|c| c.summary.turns.iter().map(|t| t.turn))
            .max();
        for turn in 0..=turns.unwrap_or(0) {
            // Mean over the repeats that had this turn.
            let at: Vec<_> = cells
                .iter()
                .filter_map(|c| c.summary.turns.iter().find(|t| t.turn == turn))
                .collect();
            if at.is_empty() {
                continue;
            }
            let n = at.len() as f64;
            let mean = |f: &dyn Fn(&crate::metrics::TurnSummary) -> f64| {
                at.iter().map(|t| f(t)).sum::<f64>() / n
            };
            rows.push(vec![
                fw_cell(s, mixed),
                s.workload.clone(),
                (turn + 1).to_string(),
                at.iter().map(|t| t.completed).sum::<u64>().to_string(),
                format!("{:.0}", mean(&|t| t.mean_input_tokens)),
                fmt_ms(mean(&|t| t.ttft_ms.mean)),
                fmt_ms(mean(&|t| t.ttft_ms.percentile(50.0).unwrap_or(0.0))),
                fmt_ms(mean(&|t| t.ttft_ms.percentile(99.0).unwrap_or(0.0))),
                if turn == 0 {
                    s.prefix_cache_hit_rate
                        .map_or("not reported".into(), |r| fmt_pct(r * 100.0))
                } else {
                    String::new()
                },
            ]);
        }
    }
    if rows.is_empty() {
        return;
    }
    out.push(Block::Heading(3, "5.7 Multi-turn Conversations".into()));
    out.push(Block::Para(vec![t(
        "Each conversation sends its whole history back every turn, the model's own replies \
         included, after a think time. The prompt grows turn by turn; an engine whose prefix cache \
         keeps the history (vLLM's automatic prefix caching, SGLang's radix cache) prefills only the \
         new message, so its TTFT stays flat or falls, while one that recomputes the history sees TTFT \
         rise with the prompt. The hit rate is the server's, over the whole workload.",
    )]));
    out.push(Block::Table(Table {
        caption: caption(
            "5.7",
            "TTFT by turn per framework and multi-turn workload (successful requests; means over repeats).",
            study,
        ),
        header: cols(&[
            "Framework",
            "Workload",
            "Turn",
            "Requests",
            "Prompt tokens (mean)",
            "TTFT mean (ms)",
            "TTFT P50 (ms)",
            "TTFT P99 (ms)",
            "Prefix-cache hit rate (%)",
        ]),
        rows,
        numeric: vec![false, false, true, true, true, true, true, true, true],
    }));
}

/// 5.6: for each structured-output workload, how often answers were schema-valid and what the
/// constraint cost against the same workload unconstrained (its `baseline`), when the study has
/// one. Per-token figures (TPOT), TTFT and throughput are compared, not end-to-end latency:
/// a constrained answer ends when its JSON is complete, an unconstrained one runs to max_tokens.
fn structured_output(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    let rows_of: Vec<&Stats> = a
        .stats
        .iter()
        .filter(|s| s.spec.structured_output)
        .collect();
    if rows_of.is_empty() {
        return;
    }
    let mixed = study.partly_simulated();
    out.push(Block::Heading(3, "5.6 Structured Output".into()));
    let rows = rows_of
        .iter()
        .map(|s| {
            let base = a.baseline_of(s);
            let (valid, checked) = s.structured.unwrap_or((0, 0));
            vec![
                fw_cell(s, mixed),
                s.workload.clone(),
                s.correct_rate().map_or("not checked".into(), |r| {
                    format!("{} ({valid}/{checked})", fmt_pct(r))
                }),
                fmt_ms(s.ttft.mean * 1000.0),
                fmt_ms(s.tpot_mean * 1000.0),
                fmt_tps(s.output_tps),
                base.map_or("no baseline".into(), |b| b.workload.clone()),
                base.map_or("—".into(), |b| fmt_ms(b.ttft.mean * 1000.0)),
                base.map_or("—".into(), |b| fmt_ms(b.tpot_mean * 1000.0)),
                base.map_or("—".into(), |b| fmt_tps(b.output_tps)),
                base.map_or("—".into(), |b| pct_change(s.tpot_mean, b.tpot_mean)),
                base.map_or("—".into(), |b| pct_change(s.output_tps, b.output_tps)),
            ]
        })
        .collect();
    out.push(Block::Para(vec![t(format!(
        "Requests constrained by a JSON schema or a regex (vLLM's structured_outputs, SGLang's \
         response_format/regex, OpenAI's response_format). Every successful answer was checked against \
         its constraint; the validity rate is valid answers over checked ones (vLLM's correct_rate), and \
         an invalid answer never counts as good for goodput. The baseline is the same workload with the \
         same prompts and seed but no constraint, on the same framework. A constrained answer ends when \
         its JSON is complete while an unconstrained one runs to max_tokens, so the cost of the \
         constraint is read from TPOT (time per output token), TTFT (which includes compiling the \
         grammar) and output throughput, not from end-to-end latency. The recommendation asks for a \
         validity rate of at least {:.0} % before it compares speed.",
        super::analysis::MIN_CORRECT_RATE
    ))]));
    out.push(Block::Table(Table {
        caption: caption(
            "5.6",
            "Schema-valid answers and the cost of the output constraint against the same workload unconstrained.",
            study,
        ),
        header: cols(&[
            "Framework",
            "Workload",
            "Valid (%)",
            "TTFT mean (ms)",
            "TPOT mean (ms)",
            "Output (tok/s)",
            "Baseline",
            "Baseline TTFT mean (ms)",
            "Baseline TPOT mean (ms)",
            "Baseline output (tok/s)",
            "TPOT change (%)",
            "Output change (%)",
        ]),
        rows,
        numeric: vec![
            false, false, true, true, true, true, false, true, true, true, true, true,
        ],
    }));
}

/// "vLLM 123.4 tok/s vs SGLang 100.0 tok/s (23.4 % higher)" style comparison of the best two.
fn compare(vals: &[(String, f64)], better: Better, unit: &dyn Fn(f64) -> String) -> Option<String> {
    let mut v: Vec<&(String, f64)> = vals.iter().collect();
    v.sort_by(|a, b| match better {
        Better::Higher => b.1.total_cmp(&a.1),
        Better::Lower => a.1.total_cmp(&b.1),
    });
    let (best, runner) = (v.first()?, v.get(1)?);
    let diff = percent_more(best.1, runner.1)?.abs();
    let word = match better {
        Better::Higher => "higher",
        Better::Lower => "lower",
    };
    let diff_rel = (best.1 - runner.1).abs() / best.1.abs().max(f64::MIN_POSITIVE);
    let verdict = if diff_rel <= TIE_FRACTION {
        format!("a tie by this report's {:.0} % rule", TIE_FRACTION * 100.0)
    } else {
        format!("{diff:.1} % {word}")
    };
    Some(format!(
        "{} {} vs {} {} ({verdict})",
        framework_label(&best.0),
        unit(best.1),
        framework_label(&runner.0),
        unit(runner.1)
    ))
}

fn per_framework(a: &Analysis, f: impl Fn(&Analysis, &str) -> Option<f64>) -> Vec<(String, f64)> {
    a.frameworks
        .iter()
        .filter_map(|fw| f(a, fw).map(|v| (fw.clone(), v)))
        .collect()
}

/// Per workload, who led on `metric`: "vLLM led on Small and Large; SGLang on Medium".
fn leaders(a: &Analysis, better: Better, metric: impl Fn(&Stats) -> Option<f64>) -> String {
    let mut by: Vec<(String, Vec<String>)> = Vec::new();
    for w in &a.common_workloads {
        let vals: Vec<(String, f64)> = a
            .frameworks
            .iter()
            .filter_map(|f| a.get(f, w).and_then(&metric).map(|v| (f.clone(), v)))
            .collect();
        let who = match super::analysis::pick(&vals, better) {
            Some(Choice::Winner(f)) => framework_label(&f),
            Some(Choice::Tie(fs)) => {
                // Name the tied frameworks in the study's order, not by rank.
                let names: Vec<String> = a
                    .frameworks
                    .iter()
                    .filter(|f| fs.contains(f))
                    .map(|f| framework_label(f))
                    .collect();
                format!("a tie between {}", join_and(&names))
            }
            _ => continue,
        };
        match by.iter_mut().find(|(k, _)| *k == who) {
            Some((_, ws)) => ws.push(w.clone()),
            None => by.push((who, vec![w.clone()])),
        }
    }
    by.iter()
        .map(|(who, ws)| format!("{who} on {}", join_and(ws)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn discussion(study: &Study, a: &Analysis, recs: &[Recommendation], out: &mut Vec<Block>) {
    out.push(Block::Heading(2, "6. Discussion".into()));
    out.push(Block::Heading(3, "6.1 Performance Analysis".into()));
    let tps = per_framework(a, |a, f| a.framework_mean(f, |s| Some(s.output_tps)));
    let mut items = Vec::new();
    match compare(&tps, Better::Higher, &|v| format!("{v:.1} tok/s")) {
        Some(c) => items.push(vec![t(format!(
            "Mean output throughput over {}: {c}.",
            a.basis_text()
        ))]),
        None => items.push(vec![t(match tps.first() {
            Some((f, v)) => format!(
                "Only {} was measured: mean output throughput {v:.1} tok/s; there is nothing to compare it with.",
                framework_label(f)
            ),
            None => "No throughput was measured.".into(),
        })]),
    }
    let led = leaders(a, Better::Higher, |s| Some(s.output_tps));
    if !led.is_empty() && a.frameworks.len() > 1 {
        items.push(vec![t(format!(
            "Highest output throughput per workload (ties within {:.0} %): {led}.",
            TIE_FRACTION * 100.0
        ))]);
    }
    items.push(vec![t(if a.stats.iter().any(|s| s.spec.shared_prefix) {
        "These runs measure each engine end to end; they do not isolate PagedAttention (vLLM) or \
         RadixAttention (SGLang), so the differences above are not attributed to either mechanism. The \
         workloads above have distinct prompts, so prefix reuse has little to work on there; section 5.5 \
         measures it on shared prefixes, with the servers' own cache hit rates."
    } else {
        "These runs measure each engine end to end; they do not isolate PagedAttention (vLLM) or \
         RadixAttention (SGLang), so the differences above are not attributed to either mechanism. With \
         distinct prompts and no shared prefixes, RadixAttention's prefix reuse has little to work on."
    })]);
    out.push(Block::Para(vec![b("Throughput:")]));
    out.push(Block::List {
        ordered: false,
        items,
    });

    let mut items = Vec::new();
    let p95 = per_framework(a, |a, f| {
        a.framework_mean(f, |s| (s.e2e.count > 0).then_some(s.e2e.p95))
    });
    if let Some(c) = compare(&p95, Better::Lower, &|v| format!("{} s", fmt_s(v))) {
        items.push(vec![t(format!(
            "Mean P95 end-to-end latency over {}: {c}.",
            a.basis_text()
        ))]);
    }
    let mean_lat = per_framework(a, |a, f| {
        a.framework_mean(f, |s| (s.e2e.count > 0).then_some(s.e2e.mean))
    });
    if let Some(c) = compare(&mean_lat, Better::Lower, &|v| format!("{} s", fmt_s(v))) {
        items.push(vec![t(format!(
            "Average end-to-end latency (mean over workloads): {c}."
        ))]);
    }
    let ttft = per_framework(a, |a, f| {
        a.framework_mean(f, |s| (s.ttft.count > 0).then_some(s.ttft.p50))
    });
    if let Some(c) = compare(&ttft, Better::Lower, &|v| format!("{} s", fmt_s(v))) {
        items.push(vec![t(format!(
            "Median time to first token (mean over workloads): {c}."
        ))]);
    }
    // Tail spread: P99 / P50 per cell.
    let tails: Vec<(&Stats, f64)> = a
        .compared()
        .filter(|s| s.e2e.count > 0 && s.e2e.p50 > 0.0)
        .map(|s| (s, s.e2e.p99 / s.e2e.p50))
        .collect();
    if let Some((range, _, hi)) = spread(&tails, |v| format!("{v:.2}×"), "cell") {
        let longest = tails
            .iter()
            .max_by(|x, y| x.0.e2e.p99.total_cmp(&y.0.e2e.p99))
            .unwrap_or(&hi);
        items.push(vec![t(format!(
            "Tail spread (P99 / P50 of end-to-end latency) {range}; the longest tail in seconds was {} on {} \
             (P99 {} s against P50 {} s). A ratio near 1 means requests finish in near-constant time; a high ratio \
             means some users wait much longer than the typical one.",
            framework_label(&longest.0.framework),
            longest.0.workload,
            fmt_s(longest.0.e2e.p99),
            fmt_s(longest.0.e2e.p50)
        ))]);
    }
    if let Some(small) = a
        .compared()
        .filter(|s| s.e2e.count > 0)
        .min_by_key(|s| s.e2e.count)
    {
        if small.e2e.count < 100 {
            items.push(vec![t(format!(
                "The smallest sample is {} requests ({} on {}); with fewer than 100 requests P99 lies between the \
                 two slowest requests, so tail figures of small workloads rest on one or two requests.",
                small.e2e.count,
                framework_label(&small.framework),
                small.workload
            ))]);
        }
    }
    if items.is_empty() {
        items.push(vec![t(
            "No successful request, so no latency was measured.",
        )]);
    }
    out.push(Block::Para(vec![b("Latency:")]));
    out.push(Block::List {
        ordered: false,
        items,
    });

    out.push(Block::Heading(3, "6.2 Cost-Performance Trade-offs".into()));
    let mut items = Vec::new();
    let costed: Vec<&Stats> = a
        .compared()
        .filter(|s| s.usd_per_1m_output.is_some())
        .collect();
    let cheapest = costed.iter().min_by(|x, y| {
        x.usd_per_1m_output
            .unwrap_or(f64::MAX)
            .total_cmp(&y.usd_per_1m_output.unwrap_or(f64::MAX))
    });
    let dearest = costed.iter().max_by(|x, y| {
        x.usd_per_1m_output
            .unwrap_or(0.0)
            .total_cmp(&y.usd_per_1m_output.unwrap_or(0.0))
    });
    match (cheapest, dearest) {
        (Some(lo), Some(hi)) => {
            let price = study
                .environment
                .price
                .as_ref()
                .map(|p| format!(" at ${}/h ({})", trim_price(p.usd_per_hour), p.instance))
                .unwrap_or_default();
            let lo_c = lo.usd_per_1m_output.unwrap_or(0.0);
            let hi_c = hi.usd_per_1m_output.unwrap_or(0.0);
            items.push(vec![t(format!(
                "Cost per 1M output tokens{price} ranged from {} ({} on {}) to {} ({} on {}).",
                fmt_usd(lo_c),
                framework_label(&lo.framework),
                lo.workload,
                fmt_usd(hi_c),
                framework_label(&hi.framework),
                hi.workload
            ))]);
            let cost_vals = per_framework(a, |a, f| a.framework_cost_per_1m(f));
            if let Some(c) = compare(&cost_vals, Better::Lower, &fmt_usd_owned) {
                items.push(vec![t(format!(
                    "Cost per 1M output tokens at each framework's mean output throughput over {} (Table 5.3): \
                     {c}. With one hourly price for every framework, this ranks the frameworks as throughput does.",
                    a.basis_text()
                ))]);
            }
            if lo_c > 0.0 {
                items.push(vec![t(format!(
                    "On a budget of $100, the cheapest configuration ({} on {}) would generate about {:.0} M output \
                     tokens; the most expensive about {:.0} M. Since the instance is paid by the hour whatever the load, \
                     the cost per token falls as the GPU is kept busier: batch work and higher concurrency pay off when \
                     latency allows.",
                    framework_label(&lo.framework),
                    lo.workload,
                    100.0 / lo_c,
                    if hi_c > 0.0 { 100.0 / hi_c } else { 0.0 }
                ))]);
            }
        }
        _ => items.push(vec![t(format!(
            "Not measured: {} — no cost per token can be given.",
            no_price_reason(study)
        ))]),
    }
    out.push(Block::List {
        ordered: false,
        items,
    });

    out.push(Block::Heading(3, "6.3 Scalability Considerations".into()));
    out.push(Block::List {
        ordered: false,
        items: scalability(a),
    });

    out.push(Block::Heading(3, "6.4 Best GPU-Model Combinations".into()));
    out.push(Block::Para(vec![t(format!(
        "Each row is decided by the rule in its last column, applied to the numbers above. Only one GPU ({}) and \
         one model ({}) were measured, so the GPU column names that GPU; the study cannot rank GPUs.",
        gpu_name(study),
        study.environment.model
    ))]));
    out.push(Block::Table(Table {
        caption: caption(
            "6.4",
            "Recommended framework per use case, with the rule that chose it.",
            study,
        ),
        header: cols(&[
            "Use Case",
            "Recommended Framework",
            "GPU",
            "Rule",
            "Numbers compared",
        ]),
        rows: recs
            .iter()
            .map(|r| {
                vec![
                    r.use_case.to_string(),
                    r.choice.label(),
                    r.gpu.clone(),
                    r.rule.clone(),
                    if r.evidence.is_empty() {
                        "—".into()
                    } else {
                        r.evidence.clone()
                    },
                ]
            })
            .collect(),
        numeric: vec![false; 5],
    }));

    out.push(Block::Heading(3, "6.5 Limitations".into()));
    let mut items = vec![vec![t(format!(
        "One model ({}) on one GPU ({}); larger models, other GPUs and multi-GPU serving were not measured.",
        study.environment.model,
        gpu_name(study)
    ))]];
    let max_repeats = a.stats.iter().map(|s| s.repeats).max().unwrap_or(0);
    if max_repeats <= 1 {
        items.push(vec![t(
            "Each combination ran once, so run-to-run variation is not measured; differences within a few percent \
             may not repeat.",
        )]);
    } else {
        items.push(vec![t(format!(
            "Each combination ran up to {max_repeats} times; figures are means over repeats."
        ))]);
    }
    if study.any_simulated() {
        items.push(vec![t(
            "The numbers come from a simulator: they follow from its model of the engines and the GPU, and carry \
             its errors. Confirm any decision on real hardware (the same suite runs against real engines).",
        )]);
    }
    if a.stats.iter().any(|s| s.gpu.is_none()) {
        items.push(vec![t(
            "GPU utilization and memory are missing where telemetry was unavailable (see 5.4).",
        )]);
    }
    if !a.stats.iter().any(|s| s.spec.structured_output) {
        items.push(vec![t("No structured-output workload was run, so SGLang's constrained decoding was not exercised.")]);
    }
    out.push(Block::List {
        ordered: false,
        items,
    });
}

/// "ranged from X (vLLM on Small) to Y (SGLang on Large)", or "was X in every UNIT" when the
/// values are (to display precision) the same; with the lowest and highest entries. `None`
/// when empty.
type Entry<'s> = (&'s Stats, f64);

fn spread<'s>(
    values: &[Entry<'s>],
    show: impl Fn(f64) -> String,
    unit: &str,
) -> Option<(String, Entry<'s>, Entry<'s>)> {
    let lo = *values.iter().min_by(|x, y| x.1.total_cmp(&y.1))?;
    let hi = *values.iter().max_by(|x, y| x.1.total_cmp(&y.1))?;
    let range = if hi.1 - lo.1 < 0.005 {
        format!("was {} in every {unit}", show(hi.1))
    } else {
        format!(
            "ranged from {} ({} on {}) to {} ({} on {})",
            show(lo.1),
            framework_label(&lo.0.framework),
            lo.0.workload,
            show(hi.1),
            framework_label(&hi.0.framework),
            hi.0.workload
        )
    };
    Some((range, lo, hi))
}

fn fmt_usd_owned(v: f64) -> String {
    fmt_usd(v)
}

fn scalability(a: &Analysis) -> Vec<Vec<Inline>> {
    let mut items = Vec::new();
    for f in &a.frameworks {
        let mut runs: Vec<&Stats> = a
            .workloads_by_load()
            .into_iter()
            .filter(|s| &s.framework == f)
            .collect();
        runs.retain(|s| s.spec.concurrency.is_some());
        let (Some(lo), Some(hi)) = (runs.first(), runs.last()) else {
            continue;
        };
        let (Some(c_lo), Some(c_hi)) = (lo.spec.concurrency, hi.spec.concurrency) else {
            continue;
        };
        if c_lo == c_hi || lo.output_tps <= 0.0 {
            continue;
        }
        let conc = c_hi as f64 / c_lo as f64;
        let tps = hi.output_tps / lo.output_tps;
        let lat = if lo.e2e.mean > 0.0 {
            format!(
                ", while its mean end-to-end latency changed {:.2}×",
                hi.e2e.mean / lo.e2e.mean
            )
        } else {
            String::new()
        };
        items.push(vec![t(format!(
            "{}: from concurrency {c_lo} ({}) to {c_hi} ({}), output throughput grew {tps:.2}× for {conc:.1}× the \
             concurrency ({:.0} % scaling efficiency){lat}.{}",
            framework_label(f),
            lo.workload,
            hi.workload,
            tps / conc * 100.0,
            if lo.spec.max_tokens != hi.spec.max_tokens {
                format!(
                    " Max tokens also changed ({} → {}), so longer generations contribute to both figures.",
                    lo.spec.max_tokens, hi.spec.max_tokens
                )
            } else {
                String::new()
            }
        ))]);
    }
    if items.is_empty() {
        items.push(vec![t(
            "Not measured: the study has no two workloads with different concurrency.",
        )]);
    }
    let mems: Vec<(&Stats, f64)> = a
        .compared()
        .filter_map(|s| s.gpu.as_ref().map(|g| (s, g.mem_max_gb)))
        .collect();
    if let Some((range, (_, lo), (_, hi))) = spread(&mems, |v| format!("{v:.2} GB"), "run") {
        // Engines that reserve their KV cache at start-up (vLLM's --gpu-memory-utilization,
        // SGLang's --mem-fraction-static) show flat peaks; say so only when the data is flat.
        let flat = if hi > 0.0 && (hi - lo) / hi < 0.10 {
            " Peak memory barely changes with load, as expected from engines that reserve their KV cache when \
             they start rather than as requests arrive."
        } else {
            ""
        };
        items.push(vec![t(format!(
            "Memory under load: peak GPU memory {range}.{flat}"
        ))]);
    } else {
        let why = a
            .stats
            .iter()
            .find_map(|s| s.gpu_unavailable.clone())
            .unwrap_or_else(|| "no GPU telemetry".into());
        items.push(vec![t(format!(
            "Memory efficiency under load: not measured: {why}."
        ))]);
    }
    items
}

fn conclusion(study: &Study, a: &Analysis, recs: &[Recommendation], out: &mut Vec<Block>) {
    out.push(Block::Heading(2, "7. Conclusion".into()));
    out.push(Block::Heading(3, "7.1 Key Findings".into()));
    let sim = if study.all_simulated() {
        " (simulated)"
    } else {
        ""
    };
    let find = |use_case: &str| recs.iter().find(|r| r.use_case == use_case);
    let line = |r: Option<&Recommendation>, metric: &str| -> String {
        match r {
            Some(r) => match &r.choice {
                Choice::Winner(f) => format!(
                    "{} leads on {metric}{sim}: {}.",
                    framework_label(f),
                    r.evidence
                ),
                Choice::Tie(fs) => format!(
                    "{} are within {:.0} % of each other on {metric}{sim}: {}.",
                    join_and(&fs.iter().map(|f| framework_label(f)).collect::<Vec<_>>()),
                    TIE_FRACTION * 100.0,
                    r.evidence
                ),
                Choice::NotMeasured(why) => format!("{metric}: not measured ({why})."),
            },
            None => format!("{metric}: not measured."),
        }
    };
    let reliability = a
        .compared()
        .map(|s| s.success_rate)
        .fold(None, |acc: Option<(f64, f64)>, v| {
            Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
        });
    let reliability = match reliability {
        Some((lo, _)) if lo >= 1.0 => "every measured request succeeded in every run.".to_string(),
        Some((lo, hi)) => format!(
            "success rates ranged from {:.1} % to {:.1} % (Table 5.1).",
            lo * 100.0,
            hi * 100.0
        ),
        None => "no request was measured.".into(),
    };
    out.push(Block::List {
        ordered: true,
        items: vec![
            vec![
                b("Throughput:"),
                t(format!(
                    " {}",
                    line(find("High throughput"), "mean output throughput")
                )),
            ],
            vec![
                b("Latency:"),
                t(format!(
                    " {}",
                    line(find("Low latency"), "mean P95 end-to-end latency")
                )),
            ],
            vec![
                b("Cost Efficiency:"),
                t(format!(
                    " {}",
                    line(
                        find("Cost sensitive"),
                        "cost per 1M output tokens at mean throughput"
                    )
                )),
            ],
            vec![b("Reliability:"), t(format!(" {reliability}"))],
        ],
    });
    out.push(Block::Heading(3, "7.2 Recommendations".into()));
    out.push(Block::Para(vec![t(format!(
        "For production deployments on {}{}:",
        gpu_name(study),
        if study.all_simulated() {
            ", as far as the simulation predicts"
        } else {
            ""
        }
    ))]));
    let scen = [
        ("High throughput", "High-throughput scenarios"),
        ("Low latency", "Latency-sensitive applications"),
        ("Cost sensitive", "Cost-optimized deployments"),
        ("Structured generation", "Structured generation"),
        ("Prefix sharing", "Shared-prompt workloads (prefix caching)"),
    ];
    let items = scen
        .iter()
        .filter_map(|(key, title)| {
            let r = find(key)?;
            let what = match &r.choice {
                Choice::NotMeasured(why) => format!(" No recommendation: not measured ({why})."),
                c => format!(" Recommend {}.", c.label()),
            };
            Some(vec![
                b(format!("{title}:")),
                t(what),
                t(" "),
                em(format!("Rule: {}.", r.rule)),
            ])
        })
        .collect();
    out.push(Block::List {
        ordered: false,
        items,
    });
}

fn appendix(study: &Study, a: &Analysis, out: &mut Vec<Block>) {
    out.push(Block::Heading(2, "Appendix B: Raw Data".into()));
    let mut items: Vec<Vec<Inline>> = a
        .stats
        .iter()
        .flat_map(|s| {
            s.result_files.iter().map(move |f| {
                vec![
                    t(format!(
                        "{} / {}{}: ",
                        framework_label(&s.framework),
                        s.workload,
                        sim_tag(s.simulated)
                    )),
                    code(f.clone()),
                ]
            })
        })
        .collect();
    items.push(vec![
        t("The study itself (every number above, machine-readable): "),
        code(super::STUDY_JSON),
    ]);
    out.push(Block::List {
        ordered: false,
        items,
    });
    out.push(Block::Rule);
    out.push(Block::Para(vec![em(format!(
        "Report generated: {} by servebench {}{}.",
        study.generated_at.format("%Y-%m-%d %H:%M UTC"),
        study.environment.servebench_version,
        if study.any_simulated() {
            " — simulated results"
        } else {
            ""
        }
    ))]));
}
