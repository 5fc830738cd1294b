use super::*;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn reads_help_type_labels_and_values() {
    let exp = parse(
        "# HELP http_requests_total The total number of HTTP requests.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
         http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
         \n\
         # A plain comment\n\
         metric_without_timestamp_and_labels 12.47\n\
         something_weird{problem=\"division by zero\"} +Inf -3982045\n\
         minus_inf -Inf\n\
         not_a_number NaN\n",
    );
    assert!(exp.issues.is_empty(), "{:?}", exp.issues);
    assert_eq!(exp.samples.len(), 6);
    assert_eq!(
        exp.samples[0],
        PromSample {
            name: "http_requests_total".into(),
            labels: labels(&[("method", "post"), ("code", "200")]),
            value: 1027.0,
            timestamp_ms: Some(1395066363000),
        }
    );
    assert_eq!(exp.samples[1].value, 3.0);
    assert_eq!(exp.samples[2].timestamp_ms, None);
    assert_eq!(exp.samples[3].value, f64::INFINITY);
    assert_eq!(exp.samples[3].timestamp_ms, Some(-3982045));
    assert_eq!(exp.samples[4].value, f64::NEG_INFINITY);
    assert!(exp.samples[5].value.is_nan());
    assert_eq!(exp.types["http_requests_total"], MetricType::Counter);
    assert_eq!(
        exp.help["http_requests_total"],
        "The total number of HTTP requests."
    );
    assert_eq!(exp.type_of("http_requests_total"), MetricType::Counter);
    assert_eq!(exp.type_of("unknown"), MetricType::Untyped);
}

#[test]
fn label_values_unescape_and_help_too() {
    let exp = parse(
        "# HELP m A \\\\ path\\nsecond line\n\
         m{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n",
    );
    assert!(exp.issues.is_empty(), "{:?}", exp.issues);
    let s = &exp.samples[0];
    assert_eq!(s.labels["path"], "C:\\DIR\\FILE.TXT");
    assert_eq!(s.labels["error"], "Cannot find file:\n\"FILE.TXT\"");
    assert_eq!(s.value, 1.458255915e9);
    assert_eq!(exp.help["m"], "A \\ path\nsecond line");
}

#[test]
fn tolerates_what_real_exporters_emit() {
    let exp = parse(
        "a{x=\"1\",} 1\r\n\
         b { x = \"1\" , y=\"2\" } 2\n\
         c{} 3\n\
         \td\t4\n\
         e{x=\"odd \\t escape\"} 5\n\
         {\"my.dotted.metric\", code=\"200\"} 6\n\
         f_total 7 # {trace_id=\"abc\"} 1.0\n\
         g 8 1520879607.789\n\
         # EOF\n\
         after_eof 9\n",
    );
    assert!(exp.issues.is_empty(), "{:?}", exp.issues);
    let names: Vec<&str> = exp.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["a", "b", "c", "d", "e", "my.dotted.metric", "f_total", "g"]
    );
    assert_eq!(exp.samples[1].labels, labels(&[("x", "1"), ("y", "2")]));
    assert_eq!(exp.samples[4].labels["x"], "odd \\t escape");
    assert_eq!(exp.samples[5].labels, labels(&[("code", "200")]));
    assert_eq!(exp.samples[6].value, 7.0);
    assert_eq!(exp.samples[7].timestamp_ms, Some(1520879607789));
}

#[test]
fn bad_lines_are_reported_and_the_rest_is_kept() {
    let exp = parse(
        "good 1\n\
         no_value\n\
         bad{x=\"unterminated} 1\n\
         bad2{x=1} 2\n\
         bad3 one\n\
         bad4 1 2 3\n\
         {x=\"y\"} 1\n\
         also_good{a=\"b\"} 2\n",
    );
    assert_eq!(exp.samples.len(), 2);
    assert_eq!(exp.samples[1].name, "also_good");
    let lines: Vec<usize> = exp.issues.iter().map(|i| i.line).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6, 7]);
    assert!(
        exp.issues[0].reason.contains("no value"),
        "{:?}",
        exp.issues[0]
    );
    assert!(
        exp.issues[3].reason.contains("not a number"),
        "{:?}",
        exp.issues[3]
    );
}

#[test]
fn histograms_are_assembled_from_their_parts() {
    let exp = parse(include_str!("../fixtures/vllm_v1.txt"));
    assert!(exp.issues.is_empty(), "{:?}", exp.issues);
    let hs = exp.histograms();
    let ttft: Vec<&Histogram> = hs
        .iter()
        .filter(|h| h.name == "vllm:time_to_first_token_seconds")
        .collect();
    assert_eq!(ttft.len(), 1);
    let h = ttft[0];
    assert_eq!(
        h.labels,
        labels(&[("engine", "0"), ("model_name", "facebook/opt-125m")])
    );
    assert_eq!(h.buckets.len(), 10);
    assert_eq!(h.buckets[0], (0.001, 0.0));
    assert_eq!(h.buckets.last(), Some(&(f64::INFINITY, 42.0)));
    assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    assert_eq!((h.sum, h.count), (Some(2.5), Some(42.0)));
    assert_eq!(
        exp.type_of("vllm:time_to_first_token_seconds_bucket"),
        MetricType::Histogram
    );
    // `_created` is its own gauge family here, not a histogram part.
    assert!(hs.iter().all(|h| !h.name.ends_with("_created")));
}

#[test]
fn every_fixture_parses_cleanly() {
    for (name, text) in [
        ("vllm_v1", include_str!("../fixtures/vllm_v1.txt")),
        ("vllm_v0", include_str!("../fixtures/vllm_v0.txt")),
        ("sglang", include_str!("../fixtures/sglang.txt")),
        ("dcgm", include_str!("../fixtures/dcgm.txt")),
        ("sim", include_str!("../fixtures/sim.txt")),
    ] {
        let exp = parse(text);
        assert!(exp.issues.is_empty(), "{name}: {:?}", exp.issues);
        let lines = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(exp.samples.len(), lines, "{name}");
    }
}

#[test]
fn the_embedded_servers_own_exposition_parses() {
    let text = crate::server::ServerStats::default().prometheus();
    let exp = parse(&text);
    assert!(exp.issues.is_empty(), "{:?}", exp.issues);
    assert!(exp
        .named("servebench_server_requests_in_flight")
        .any(|s| s.value == 0.0));
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,12}"
}

proptest! {
    #[test]
    fn any_label_values_round_trip(
        name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
        pairs in proptest::collection::btree_map(label_name(), any::<String>(), 0..5),
        value in any::<f64>(),
    ) {
        let line = render_sample(&name, &pairs, value);
        let exp = parse(&line);
        prop_assert!(exp.issues.is_empty(), "{:?} from {:?}", exp.issues, line);
        prop_assert_eq!(exp.samples.len(), 1);
        let s = &exp.samples[0];
        prop_assert_eq!(&s.name, &name);
        prop_assert_eq!(&s.labels, &pairs);
        if value.is_nan() {
            prop_assert!(s.value.is_nan());
        } else {
            prop_assert_eq!(s.value, value);
        }
    }

    #[test]
    fn arbitrary_input_never_panics(text in any::<String>()) {
        let exp = parse(&text);
        // Every non-comment, non-blank line is either a sample or an issue (until `# EOF`).
        let _ = exp.histograms();
    }

    #[test]
    fn arbitrary_exposition_shaped_input_never_panics(
        lines in proptest::collection::vec(r#"[a-z_:{}="\\, #\t0-9.+eInfNa-]{0,40}"#, 0..20)
    ) {
        let text = lines.join("\n");
        let exp = parse(&text);
        prop_assert!(exp.samples.len() + exp.issues.len() <= lines.len());
    }
}
