use super::*;
use crate::cost::{cost_summary, Price};
use crate::metrics::{Distribution, Summary};
use crate::sim::catalog::Catalog;
use chrono::{DateTime, Utc};

fn dist(count: u64, mean: f64, min: f64, p: [f64; 4], max: f64) -> Distribution {
    Distribution {
        count,
        mean,
        std: 0.0,
        min,
        max,
        percentiles: vec![(50.0, p[0]), (90.0, p[1]), (95.0, p[2]), (99.0, p[3])],
    }
}

/// A run with `n` requests at `tps` output tok/s; latencies in ms scale with `lat`.
fn summary(n: u64, tps: f64, rps: f64, lat: f64) -> Summary {
    Summary {
        schema_version: crate::metrics::SUMMARY_SCHEMA_VERSION,
        attempted: n,
        completed: n,
        success_rate: 1.0,
        duration_s: n as f64 / rps,
        request_throughput: rps,
        output_throughput: tps,
        total_token_throughput: tps * 1.5,
        e2el_ms: dist(
            n,
            lat * 1.1,
            lat * 0.7,
            [lat, lat * 1.3, lat * 1.45, lat * 1.6],
            lat * 1.7,
        ),
        ttft_ms: dist(
            n,
            lat * 0.05,
            lat * 0.02,
            [lat * 0.04, lat * 0.08, lat * 0.09, lat * 0.1],
            lat * 0.11,
        ),
        ..Summary::default()
    }
}

fn when() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T16:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn price() -> Price {
    Price::from_catalog(&Catalog::builtin(), "g5.xlarge").unwrap()
}

fn cell(fw: &str, wl: &str, spec: (u64, u64, u64), s: Summary, simulated: bool, gpu: bool) -> Cell {
    Cell {
        framework: fw.into(),
        workload: wl.into(),
        spec: WorkloadSpec {
            requests: spec.0,
            max_tokens: spec.1,
            concurrency: Some(spec.2),
            warmup_requests: 2,
            request_rate: None,
            prompt: Some("synthetic, 32 tokens".into()),
            structured_output: false,
            shared_prefix: false,
            multi_turn: false,
            baseline: None,
        },
        repeat: 0,
        cost: Some(cost_summary(&price(), &s)),
        summary: s,
        gpu: gpu.then(|| GpuSummary {
            util_mean_pct: 40.0 + spec.2 as f64 * 4.0,
            util_max_pct: 90.0,
            mem_max_gb: 20.5,
            source: "simulator".into(),
            // Small has no power figure: the table says so rather than printing 0.
            power_mean_w: (spec.1 > 64).then_some(150.0 + spec.1 as f64 / 10.0),
            joules_per_output_token: (spec.1 > 64).then_some(0.25),
        }),
        gpu_unavailable: (!gpu).then(|| "NVML not available on this host".into()),
        prefix_cache_hit_rate: None,
        simulated,
        result_file: format!("{fw}/benchmark_{}_20261128T160000Z.json", wl.to_lowercase()),
    }
}

/// The seed study: vLLM and SGLang × Small/Medium/Large.
fn seed(simulated: bool, gpu: bool) -> Study {
    let w = [
        ("Small", (10, 64, 2)),
        ("Medium", (50, 128, 5)),
        ("Large", (100, 256, 10)),
    ];
    let mut cells = Vec::new();
    // vLLM: 812.3 / 1734.6 / 2998.0 tok/s; SGLang a little slower except on Small.
    let v = [
        (812.3, 6.35, 300.0),
        (1734.6, 13.55, 460.0),
        (2998.0, 11.71, 850.0),
    ];
    let s = [
        (830.0, 6.48, 290.0),
        (1500.0, 11.72, 520.0),
        (2600.0, 10.16, 990.0),
    ];
    for ((name, spec), x) in w.iter().zip(v) {
        cells.push(cell(
            "vllm",
            name,
            *spec,
            summary(spec.0, x.0, x.1, x.2),
            simulated,
            gpu,
        ));
    }
    for ((name, spec), x) in w.iter().zip(s) {
        cells.push(cell(
            "sglang",
            name,
            *spec,
            summary(spec.0, x.0, x.1, x.2),
            simulated,
            gpu,
        ));
    }
    Study {
        schema_version: STUDY_SCHEMA_VERSION,
        title: "Benchmarking vLLM and SGLang on an AWS g5.xlarge".into(),
        generated_at: when(),
        simulated,
        environment: Environment {
            instance: Some("g5.xlarge".into()),
            gpu: Some("A10G".into()),
            gpu_count: Some(1),
            region: Some("us-east-1".into()),
            model: "facebook/opt-125m".into(),
            engines: [
                ("vllm".to_string(), "sim profile vllm".to_string()),
                ("sglang".to_string(), "sim profile sglang".to_string()),
            ]
            .into_iter()
            .collect(),
            servebench_version: "0.1.0".into(),
            servebench_commit: None,
            host: None,
            price: Some(price()),
        },
        cells,
        notes: vec![],
    }
}

#[test]
fn writes_every_file_with_the_right_format() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_study(&seed(true, true), dir.path()).unwrap();
    assert_eq!(files.charts.len(), 4);
    for p in files.all() {
        let meta = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(meta.len() > 500, "{} is too small", p.display());
    }
    let names: Vec<&str> = files.charts.iter().map(|c| c.name).collect();
    assert_eq!(names, CHARTS);
    for c in &files.charts {
        let png = std::fs::read(&c.png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(&c.svg).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("(simulated)"),
            "{} title lacks (simulated)",
            c.name
        );
    }
    assert_eq!(files.markdown.file_name().unwrap(), REPORT_MD);
    // serde_json may round the last bit of a float, so compare what a reader cares about.
    let back: Study = serde_json::from_slice(&std::fs::read(&files.json).unwrap()).unwrap();
    assert_eq!(back.schema_version, STUDY_SCHEMA_VERSION);
    assert_eq!(back.cells.len(), 6);
    assert_eq!(back.environment, seed(true, true).environment);
    assert_eq!(back.cells[2].summary.output_throughput, 2998.0);
}

#[test]
fn the_markdown_has_no_placeholder_and_states_its_rules() {
    let md = render_markdown(&seed(true, true));
    assert_eq!(find_placeholders(&md), Vec::<String>::new(), "{md}");
    for needle in [
        "the framework with the highest mean output throughput (tok/s) over Small, Medium and Large; a difference under 5 % is reported as a tie",
        "the framework with the lowest mean P95 end-to-end latency over Small, Medium and Large",
        "the framework with the lowest cost per 1M output tokens at its mean output throughput",
        "not measured: no structured-output workload in this study",
    ] {
        assert!(md.contains(needle), "missing {needle:?}\n{md}");
    }
    for section in [
        "### 5.1 Throughput Comparison",
        "### 5.2 Latency Distribution",
        "### 5.3 Cost Efficiency",
        "### 5.4 GPU Utilization",
        "### 6.1 Performance Analysis",
        "### 6.4 Best GPU-Model Combinations",
        "### 7.1 Key Findings",
        "### 7.2 Recommendations",
        "![",
        "(throughput_comparison.png)",
        "(latency_distribution.png)",
        "(cost_comparison.png)",
        "(gpu_utilization_heatmap.png)",
    ] {
        assert!(md.contains(section), "missing {section:?}");
    }
}

#[test]
fn simulated_results_are_labelled_everywhere() {
    let md = render_markdown(&seed(true, true));
    assert!(
        md.starts_with(
            "# Benchmarking vLLM and SGLang on an AWS g5.xlarge\n\n> **Simulated results.**"
        ),
        "{md}"
    );
    assert!(md.contains("**Table 5.1 (simulated).**"));
    assert!(md.contains("**Table 5.3 (simulated).**"));
    assert!(md.contains("*Figure 1 (simulated):"));
    let real = render_markdown(&seed(false, true));
    assert!(!real.contains("imulated results"), "{real}");
    assert!(real.contains("**Table 5.1.**"));
    assert_eq!(find_placeholders(&real), Vec::<String>::new());
}

#[test]
fn tables_carry_the_numbers() {
    let md = render_markdown(&seed(true, true));
    // Table 5.1, exactly.
    assert!(
        md.contains(
            "| Framework | Workload | Throughput (TPS) | Throughput (RPS) | Total tok/s | Success rate |\n\
             | --- | --- | ---: | ---: | ---: | ---: |\n\
             | vLLM | Small | 812.3 | 6.35 | 1218.4 | 100.0 % |\n"
        ),
        "{md}"
    );
    assert!(md.contains("| SGLang | Large | 2600.0 | 10.16 | 3900.0 | 100.0 % |"));
    // Cost by hand: vLLM Large at $1.006/h and 2998 tok/s = 1.006 / (2998 × 3600) × 1e6 = 0.093211…
    assert!(md.contains("| vLLM | Large | 2998.0 | $0.0932 |"), "{md}");
    // Table 5.3: mean TPS of vLLM = (812.3 + 1734.6 + 2998.0) / 3 = 1848.3; $/1M = 0.15119…
    assert!(md.contains("| vLLM | 1848.3 | $1.006 | $0.1512 |"), "{md}");
    // Latency (ms → s): vLLM Large P50 850 ms, P99 1360 ms.
    assert!(md.contains("| vLLM | Large | 100 | 0.935 | 0.595 | 0.850 | 1.105 | 1.232 | 1.360 | 1.445 | 0.0340 | 0.0850 |"), "{md}");
    // GPU: util 40 + 4 × concurrency; power 150 + max_tokens / 10 W.
    assert!(
        md.contains("| vLLM | Large | 80.0 | 90.0 | 20.50 | 176 | 0.250 | simulator |"),
        "{md}"
    );
}

#[test]
fn recommendations_follow_the_numbers() {
    let md = render_markdown(&seed(true, true));
    // vLLM: higher mean TPS (1848.3 vs 1643.3, 12.5 % higher) and lower P95 latency.
    assert!(md.contains("| High throughput | vLLM | A10G |"), "{md}");
    assert!(md.contains("| Low latency | vLLM | A10G |"), "{md}");
    assert!(md.contains("| Cost sensitive | vLLM | A10G |"), "{md}");
    assert!(md.contains("| Structured generation | not measured: no structured-output workload in this study | — |"), "{md}");
    assert!(
        md.contains(
            "| Prefix sharing | not measured: no shared-prefix workload in this study | — |"
        ),
        "{md}"
    );
    assert!(
        md.contains("vLLM 1848.3 tok/s vs SGLang 1643.3 tok/s (12.5 % higher)"),
        "{md}"
    );
    assert!(md.contains("- **High-throughput scenarios:** Recommend vLLM. *Rule: the framework with the highest mean output throughput"), "{md}");
    // SGLang leads on Small only.
    assert!(
        md.contains("SGLang on Small; vLLM on Medium and Large"),
        "{md}"
    );
}

#[test]
fn close_results_are_a_tie() {
    let mut study = seed(true, true);
    for c in &mut study.cells {
        c.summary.output_throughput = if c.framework == "vllm" { 1000.0 } else { 980.0 };
    }
    let md = render_markdown(&study);
    assert!(
        md.contains("| High throughput | vLLM or SGLang (tie, within 5 %) |"),
        "{md}"
    );
}

#[test]
fn gpu_power_and_energy_per_token_sit_beside_utilization() {
    let md = render_markdown(&seed(true, true));
    assert!(md.contains("| Power mean (W) | J / output token |"), "{md}");
    assert!(md.contains("| 0.250 |"), "{md}");
    assert!(md.contains("| not measured | not measured |"), "{md}");
}

#[test]
fn missing_gpu_telemetry_and_price_are_said_not_faked() {
    let mut study = seed(false, false);
    study.environment.price = None;
    for c in &mut study.cells {
        c.cost = None;
    }
    let md = render_markdown(&study);
    assert_eq!(find_placeholders(&md), Vec::<String>::new(), "{md}");
    assert!(md.contains("| vLLM | not measured: NVML not available on this host | not measured: NVML not available on this host |"), "{md}");
    assert!(md.contains("| vLLM | 1848.3 | not measured: no hourly price given | not measured: no hourly price given |"), "{md}");
    assert!(md.contains("| Cost sensitive | not measured:"), "{md}");
    let dir = tempfile::tempdir().unwrap();
    write_study(&study, dir.path()).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("gpu_utilization_heatmap.svg")).unwrap();
    assert!(svg.contains("n/a"));
    let svg = std::fs::read_to_string(dir.path().join("cost_comparison.svg")).unwrap();
    assert!(svg.contains("not measured"));
}

#[test]
fn html_is_self_contained() {
    let study = seed(true, true);
    let charts = render_charts(&study).unwrap();
    let html = render_html(&study, &charts);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(CONTENT_SECURITY_POLICY));
    assert_eq!(html.matches("<img src=\"data:image/png;base64,").count(), 4);
    assert!(html.matches("<table>").count() >= 8);
    assert!(
        html.contains("<div class=\"banner\" role=\"note\"><strong>Simulated results.</strong>")
    );
    for bad in ["http://", "https://", "src=\"/", "href=", "@import", "url("] {
        assert!(!html.contains(bad), "html holds {bad:?}");
    }
    // The base64 of the charts is not text; look for placeholders in the rest.
    let mut parts = html.split("data:image/png;base64,");
    let mut text = parts.next().unwrap_or_default().to_string();
    for part in parts {
        text.push_str(part.split_once('"').map_or("", |(_, rest)| rest));
    }
    assert_eq!(find_placeholders(&text), Vec::<String>::new());
}

#[test]
fn an_empty_or_single_framework_study_still_renders() {
    let mut study = seed(true, true);
    study.cells.clear();
    let dir = tempfile::tempdir().unwrap();
    write_study(&study, dir.path()).unwrap();
    let md = std::fs::read_to_string(dir.path().join(REPORT_MD)).unwrap();
    assert_eq!(find_placeholders(&md), Vec::<String>::new(), "{md}");

    let mut study = seed(true, true);
    study.cells.retain(|c| c.framework == "vllm");
    let md = render_markdown(&study);
    assert!(md.contains("Only vLLM was measured"), "{md}");
    assert_eq!(find_placeholders(&md), Vec::<String>::new(), "{md}");
}

#[test]
fn repeats_are_averaged() {
    let mut study = seed(true, true);
    let mut again = study.cells[0].clone();
    again.repeat = 1;
    again.summary.output_throughput = 1187.7; // mean with 812.3 is 1000.0
    study.cells.push(again);
    let a = Analysis::of(&study);
    let s = a.get("vllm", "Small").unwrap();
    assert_eq!(s.repeats, 2);
    assert!((s.output_tps - 1000.0).abs() < 1e-9, "{}", s.output_tps);
}

#[test]
fn placeholders_are_found() {
    assert_eq!(find_placeholders("| vLLM | [VALUE] |"), vec!["[VALUE]"]);
    assert_eq!(
        find_placeholders("Recommend [Framework], TBD"),
        vec!["[Framework]", "TBD"]
    );
    assert_eq!(find_placeholders("cost NaN and inf"), vec!["NaN", "inf"]);
    assert!(find_placeholders("information infinite").is_empty());
}

/// `SERVEBENCH_STUDY_PREVIEW=dir cargo test --lib report::study::tests::preview` writes the
/// seed study there, to look at the charts.
#[test]
fn preview() {
    if let Ok(dir) = std::env::var("SERVEBENCH_STUDY_PREVIEW") {
        write_study(&seed(true, true), std::path::Path::new(&dir)).unwrap();
        write_study(
            &seed(false, false),
            &std::path::Path::new(&dir).join("nogpu"),
        )
        .unwrap();
    }
}

#[test]
fn a_framework_that_skipped_a_workload_is_compared_on_the_common_ones() {
    let mut study = seed(true, true);
    study
        .cells
        .retain(|c| !(c.framework == "sglang" && c.workload == "Large"));
    let a = Analysis::of(&study);
    assert_eq!(a.common_workloads, vec!["Small", "Medium"]);
    let md = render_markdown(&study);
    assert!(md.contains("over Small and Medium"), "{md}");
    assert_eq!(find_placeholders(&md), Vec::<String>::new(), "{md}");
    let dir = tempfile::tempdir().unwrap();
    write_study(&study, dir.path()).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("gpu_utilization_heatmap.svg")).unwrap();
    assert!(svg.contains("not run"));
}

#[test]
fn a_run_where_every_request_failed_has_no_fake_numbers() {
    let mut study = seed(false, false);
    let failed = Summary {
        attempted: 10,
        failed: 10,
        error_rate: 1.0,
        ..Summary::default()
    };
    study.cells[0] = Cell::new(
        "vllm",
        "Small",
        study.cells[0].spec.clone(),
        failed,
        false,
        "vllm/benchmark_small.json",
    )
    .priced(&price());
    let md = render_markdown(&study);
    assert_eq!(find_placeholders(&md), Vec::<String>::new(), "{md}");
    assert!(
        md.contains("| vLLM | Small | 0.0 | 0.0000 | 0.0 | 0.0 % |"),
        "{md}"
    );
    assert!(
        md.contains("| vLLM | Small | 0.0 | not measured: no output tokens |"),
        "{md}"
    );
    assert!(
        md.contains("success rates ranged from 0.0 % to 100.0 %"),
        "{md}"
    );
    let dir = tempfile::tempdir().unwrap();
    write_study(&study, dir.path()).unwrap();
}

#[test]
fn cell_new_and_priced_fill_the_cost() {
    let s = summary(10, 1000.0, 2.0, 100.0);
    let c = Cell::new("vllm", "Small", WorkloadSpec::default(), s, true, "x.json").priced(&price());
    let cost = c.cost.unwrap();
    assert!((cost.usd_per_1m_output_tokens.unwrap() - 0.279_444_444).abs() < 1e-6);
    let study = Study::new("t", when(), true, Environment::default());
    assert_eq!(study.schema_version, STUDY_SCHEMA_VERSION);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever the numbers (zeros included), the report holds no placeholder, NaN or inf.
        #[test]
        fn any_numbers_render_without_placeholders(
            tps in proptest::collection::vec(0.0f64..5000.0, 6),
            lat in proptest::collection::vec(0.0f64..5000.0, 6),
            zero in 0usize..6,
            priced in any::<bool>(),
        ) {
            let mut study = seed(true, priced);
            if !priced {
                study.environment.price = None;
            }
            for (i, c) in study.cells.iter_mut().enumerate() {
                let t = if i == zero { 0.0 } else { tps[i] };
                c.summary = summary(c.spec.requests, t, t / 100.0, lat[i]);
                c.cost = priced.then(|| cost_summary(&price(), &c.summary));
            }
            let md = render_markdown(&study);
            prop_assert_eq!(find_placeholders(&md), Vec::<String>::new());
        }
    }
}

/// The seed study plus a shared-prefix workload and its unshared baseline on both frameworks.
fn with_prefix_sharing() -> Study {
    let mut study = seed(true, true);
    for (fw, hit, base_hit, ttft_lat) in [("vllm", 0.62, 0.0, 200.0), ("sglang", 0.81, 0.01, 150.0)]
    {
        let mut base = cell(
            fw,
            "Unshared",
            (64, 64, 8),
            summary(64, 900.0, 14.0, 400.0),
            true,
            true,
        );
        base.prefix_cache_hit_rate = Some(base_hit);
        let mut shared = cell(
            fw,
            "SharedPrefix",
            (64, 64, 8),
            summary(64, 1100.0, 17.0, ttft_lat),
            true,
            true,
        );
        shared.spec.shared_prefix = true;
        shared.spec.baseline = Some("Unshared".into());
        shared.prefix_cache_hit_rate = Some(hit);
        study.cells.push(base);
        study.cells.push(shared);
    }
    study
}

#[test]
fn prefix_sharing_shows_the_hit_rate_beside_the_latency_gain() {
    let study = with_prefix_sharing();
    let md = render_markdown(&study);
    assert!(md.contains("### 5.5 Prefix Sharing"), "{md}");
    // vLLM: 62 % hits, TTFT mean 0.05·200 = 10 ms against 0.05·400 = 20 ms: −50 %.
    assert!(
        md.contains("| vLLM | SharedPrefix | 62.0 | 10.0 | 1100.0 | Unshared | 0.0 | 20.0 | -50.0 | +22.2 |"),
        "{md}"
    );
    assert!(
        md.contains("| SGLang | SharedPrefix | 81.0 | 7.50 |"),
        "{md}"
    );
    assert!(
        md.contains("mean TTFT changed by -50.0 % against Unshared (20.0 → 10.0 ms)"),
        "{md}"
    );
    // The recommendation's evidence carries the hit rate beside the throughput.
    assert!(
        md.contains("vLLM 1100.0 tok/s (62.0 % prefix-cache hits), SGLang 1100.0 tok/s (81.0 % prefix-cache hits)"),
        "{md}"
    );
    // Feature workloads and their baselines stay out of the discussion's ranges and spreads,
    // which point to 5.5 instead.
    let discussion = &md[md.find("## 6. Discussion").unwrap()..md.find("### 6.4").unwrap()];
    assert!(
        !discussion.contains("on SharedPrefix") && !discussion.contains("on Unshared"),
        "{discussion}"
    );
    assert!(
        discussion.contains("section 5.5 measures it on shared prefixes"),
        "{discussion}"
    );
    // Feature workloads and their baselines stay out of the seed's cross-framework tables.
    let a = Analysis::of(&study);
    assert_eq!(a.common_workloads, vec!["Small", "Medium", "Large"]);
    // A study without a shared-prefix workload has no such section.
    assert!(!render_markdown(&seed(true, true)).contains("5.5 Prefix Sharing"));
}

#[test]
fn a_shared_prefix_workload_without_baseline_or_metrics_says_so() {
    let mut study = seed(true, true);
    let mut shared = cell(
        "vllm",
        "SharedPrefix",
        (64, 64, 8),
        summary(64, 1100.0, 17.0, 200.0),
        true,
        true,
    );
    shared.spec.shared_prefix = true;
    study.cells.push(shared);
    let md = render_markdown(&study);
    assert!(
        md.contains("| SharedPrefix | not reported by the server | 10.0 | 1100.0 | no baseline | — | — | — | — |"),
        "{md}"
    );
}

/// The seed study plus a structured-output workload and its unconstrained twin on both
/// frameworks: vLLM faster, SGLang valid more often.
fn with_structured(vllm_valid: u64, sglang_valid: u64) -> Study {
    use crate::metrics::StructuredOutput;
    let mut study = seed(true, true);
    for (fw, valid, tps, tpot, base_tps, base_tpot) in [
        ("vllm", vllm_valid, 1200.0, 12.0, 1300.0, 10.0),
        ("sglang", sglang_valid, 1000.0, 11.0, 1050.0, 10.0),
    ] {
        let mut s = summary(100, base_tps, 14.0, 300.0);
        s.tpot_ms.mean = base_tpot;
        let base = cell(fw, "Json-unconstrained", (100, 128, 8), s, true, true);
        let mut s = summary(100, tps, 14.0, 300.0);
        s.tpot_ms.mean = tpot;
        s.structured = Some(StructuredOutput {
            checked: 100,
            valid,
            invalid: 100 - valid,
            correct_rate: valid as f64,
        });
        let mut json = cell(fw, "Json", (100, 128, 8), s, true, true);
        json.spec.structured_output = true;
        json.spec.baseline = Some("Json-unconstrained".into());
        study.cells.push(base);
        study.cells.push(json);
    }
    study
}

#[test]
fn structured_generation_asks_for_validity_before_speed() {
    // vLLM is faster but only 95 % valid: SGLang (100 %) is recommended.
    let md = render_markdown(&with_structured(95, 100));
    assert!(
        md.contains("| Structured generation | SGLang | A10G |"),
        "{md}"
    );
    assert!(
        md.contains("vLLM 1200.0 tok/s at 95.0 % valid, SGLang 1000.0 tok/s at 100.0 % valid"),
        "{md}"
    );
    // Both valid enough: the faster one.
    let md = render_markdown(&with_structured(100, 99));
    assert!(
        md.contains("| Structured generation | vLLM | A10G |"),
        "{md}"
    );
    // Neither reaches 99 %: the more valid one.
    let md = render_markdown(&with_structured(90, 97));
    assert!(
        md.contains("| Structured generation | SGLang | A10G |"),
        "{md}"
    );
}

#[test]
fn the_structured_output_table_sets_each_workload_beside_its_twin() {
    let md = render_markdown(&with_structured(95, 100));
    assert!(md.contains("### 5.6 Structured Output"), "{md}");
    // vLLM: 95 % valid, TTFT 0.05·300 = 15 ms, TPOT 12 vs 10 ms (+20 %), 1200 vs 1300 tok/s.
    assert!(
        md.contains("| vLLM | Json | 95.0 (95/100) | 15.0 | 12.0 | 1200.0 | Json-unconstrained | 15.0 | 10.0 | 1300.0 | +20.0 | -7.7 |"),
        "{md}"
    );
    assert!(md.contains("not from end-to-end latency"), "{md}");
    // Feature workloads and their twins stay out of the seed's cross-framework tables.
    assert_eq!(
        Analysis::of(&with_structured(95, 100)).common_workloads,
        vec!["Small", "Medium", "Large"]
    );
    assert!(!render_markdown(&seed(true, true)).contains("5.6 Structured Output"));
}

#[test]
fn multi_turn_workloads_show_ttft_by_turn_and_leave_the_seed_tables() {
    let mut study = seed(true, true);
    let mut s = summary(96, 900.0, 14.0, 300.0);
    s.turns = (0..3u32)
        .map(|t| crate::metrics::TurnSummary {
            turn: t,
            attempted: 32,
            completed: 32,
            mean_input_tokens: 256.0 + 96.0 * f64::from(t),
            // 20 ms at the first turn, 8 ms once the history is cached.
            ttft_ms: dist(
                32,
                if t == 0 { 20.0 } else { 8.0 },
                5.0,
                [18.0, 25.0, 27.0, 30.0],
                31.0,
            ),
        })
        .collect();
    let mut c = cell("sglang", "Chat", (96, 64, 8), s, true, true);
    c.spec.multi_turn = true;
    c.prefix_cache_hit_rate = Some(0.72);
    study.cells.push(c);
    let md = render_markdown(&study);
    assert!(md.contains("### 5.7 Multi-turn Conversations"), "{md}");
    assert!(
        md.contains("| SGLang | Chat | 1 | 32 | 256 | 20.0 | 18.0 | 30.0 | 72.0 |"),
        "{md}"
    );
    assert!(
        md.contains("| SGLang | Chat | 3 | 32 | 448 | 8.00 | 18.0 | 30.0 |  |"),
        "{md}"
    );
    assert_eq!(
        Analysis::of(&study).common_workloads,
        vec!["Small", "Medium", "Large"]
    );
    assert!(!render_markdown(&seed(true, true)).contains("5.7 Multi-turn"));
}
