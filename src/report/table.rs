//! The console table: `vllm bench serve`'s "Serving Benchmark Result" block, same labels and
//! layout (`{:<40} {:<10}`), with servebench's extras: P50/P90/P95/P99, ICL and queue time,
//! errors by kind, token source, and the client self-check.

use super::RunInfo;
use crate::metrics::{percentile_label, Distribution, Summary};
use std::fmt::Write;

const WIDTH: usize = 50;

/// `text` centered in [`WIDTH`] columns of `fill`, as Python's `"{:=^50}"` (extra fill right).
fn title(out: &mut String, text: &str, fill: char) {
    let pad = WIDTH.saturating_sub(text.chars().count());
    let left = fill.to_string().repeat(pad / 2);
    let right = fill.to_string().repeat(pad - pad / 2);
    let _ = writeln!(out, "{left}{text}{right}");
}

fn row(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{:<40} {:<10}", format!("{label}:"), value);
}

fn ms_section(out: &mut String, header: &str, name: &str, d: &Distribution) {
    title(out, header, '-');
    row(out, &format!("Mean {name} (ms)"), format!("{:.2}", d.mean));
    row(
        out,
        &format!("Median {name} (ms)"),
        format!("{:.2}", d.median()),
    );
    for &(p, v) in &d.percentiles {
        row(
            out,
            &format!("P{} {name} (ms)", percentile_label(p)),
            format!("{v:.2}"),
        );
    }
}

/// The whole block, ready to print.
/// Reasoning and tool calls: the answer's own first token (TTFO) beside TTFT, which counts
/// thinking tokens, and how the tokens divided.
fn reasoning_section(out: &mut String, p: &crate::metrics::OutputPartsSummary) {
    title(out, "Reasoning and Tool Calls", '-');
    if p.requests_with_reasoning > 0 {
        row(out, "Requests that reasoned", p.requests_with_reasoning);
        row(
            out,
            "Reasoning / answer tokens",
            format!("{} / {}", p.reasoning_tokens, p.answer_tokens),
        );
    }
    if p.requests_with_tool_calls > 0 {
        row(
            out,
            "Requests that called tools (events)",
            format!("{} ({})", p.requests_with_tool_calls, p.tool_call_events),
        );
    }
    let line = |out: &mut String, label: &str, d: &Distribution| {
        if d.count > 0 {
            row(
                out,
                label,
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    d.mean,
                    d.median(),
                    d.percentile(99.0).unwrap_or(0.0)
                ),
            );
        }
    };
    line(out, "TTFO, first answer token (ms)", &p.ttfo_ms);
    line(out, "First reasoning token (ms)", &p.ttfr_ms);
    line(out, "Reasoning time (ms)", &p.reasoning_ms);
    line(out, "First tool call (ms)", &p.ttftc_ms);
    let _ = writeln!(out, "{:>51}", "(mean / P50 / P99 ms)");
}

pub fn render_table(run: &RunInfo, s: &Summary) -> String {
    let mut out = String::new();
    title(&mut out, " Serving Benchmark Result ", '=');
    if run.simulated {
        row(
            &mut out,
            "Simulated",
            "yes (servebench's engine model, no server)",
        );
    }
    row(&mut out, "Successful requests", s.completed);
    row(&mut out, "Failed requests", s.failed);
    for (kind, n) in &s.errors_by_kind {
        row(&mut out, &format!("  {kind}"), n);
    }
    if s.streams_without_done > 0 {
        // Complete (a finish_reason, then a clean end), as vLLM counts them; shown because it
        // says how the server frames its streams.
        row(
            &mut out,
            "Streams without [DONE] (successful)",
            format!(
                "{} (ended cleanly after a finish_reason)",
                s.streams_without_done
            ),
        );
    }
    if s.resends > 0 {
        // A request sent again reached the server at most once more (see docs/metrics.md);
        // shown so that a connection problem is never hidden behind a success.
        row(
            &mut out,
            "Resends (requests resent)",
            format!("{} ({})", s.resends, s.requests_resent),
        );
    }
    row(
        &mut out,
        "Success rate (%)",
        format!("{:.2}", s.success_rate * 100.0),
    );
    if let Some(st) = &s.structured {
        // vLLM's structured-output benchmark prints "correct_rate(%)".
        row(
            &mut out,
            "Schema-valid answers (correct_rate %)",
            format!("{:.2} ({} of {})", st.correct_rate, st.valid, st.checked),
        );
    }
    if let Some(c) = run.max_concurrency {
        row(&mut out, "Maximum request concurrency", c);
    }
    if let Some(r) = run.request_rate {
        row(&mut out, "Request rate configured (RPS)", format!("{r:.2}"));
    }
    row(
        &mut out,
        "Benchmark duration (s)",
        format!("{:.2}", s.duration_s),
    );
    row(&mut out, "Total input tokens", s.total_input_tokens);
    row(&mut out, "Total generated tokens", s.total_output_tokens);
    row(
        &mut out,
        "Request throughput (req/s)",
        format!("{:.2}", s.request_throughput),
    );
    if let Some(g) = &s.goodput {
        row(
            &mut out,
            "Request goodput (req/s)",
            format!("{:.2}", g.request_goodput),
        );
    }
    row(
        &mut out,
        "Output token throughput (tok/s)",
        format!("{:.2}", s.output_throughput),
    );
    row(
        &mut out,
        "Peak output token throughput (tok/s)",
        format!("{:.2}", s.max_output_tokens_per_s),
    );
    row(
        &mut out,
        "Peak concurrent requests",
        s.max_concurrent_requests,
    );
    row(
        &mut out,
        "Total Token throughput (tok/s)",
        format!("{:.2}", s.total_token_throughput),
    );
    let t = &s.tokens;
    let sources = t
        .by_source
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    row(
        &mut out,
        "Token source",
        format!("{} ({sources})", t.token_source),
    );
    if t.records_usage_suspect > 0 {
        row(
            &mut out,
            "Server usage not believed (requests)",
            format!(
                "{} (beyond max_tokens; counted from events)",
                t.records_usage_suspect
            ),
        );
    }
    if let (Some(server), Some(client)) = (t.server_completion_tokens, t.client_tokens_where_usage)
    {
        row(
            &mut out,
            "Output tokens server / client",
            format!(
                "{server} / {client} ({} requests differ)",
                t.records_disagreeing
            ),
        );
    }
    ms_section(&mut out, "Time to First Token", "TTFT", &s.ttft_ms);
    ms_section(
        &mut out,
        "Time per Output Token (excl. 1st token)",
        "TPOT",
        &s.tpot_ms,
    );
    ms_section(&mut out, "Inter-token Latency", "ITL", &s.itl_ms);
    ms_section(&mut out, "Inter-chunk Latency", "ICL", &s.icl_ms);
    ms_section(&mut out, "End-to-end Latency", "E2EL", &s.e2el_ms);
    ms_section(&mut out, "Queue Time", "Queue", &s.queue_ms);
    if let Some(p) = &s.output_parts {
        reasoning_section(&mut out, p);
    }
    if !s.turns.is_empty() {
        // Multi-turn: each turn's prompt holds the history, so TTFT by turn shows whether
        // the server's prefix cache pays.
        title(&mut out, "TTFT by Turn", '-');
        for t in &s.turns {
            row(
                &mut out,
                &format!(
                    "Turn {} ({} ok, ~{:.0} input tok)",
                    t.turn, t.completed, t.mean_input_tokens
                ),
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    t.ttft_ms.mean,
                    t.ttft_ms.median(),
                    t.ttft_ms.percentile(99.0).unwrap_or(0.0)
                ),
            );
        }
        let _ = writeln!(out, "{:>51}", "(mean / P50 / P99 ms)");
    }
    title(&mut out, "Client Self-check", '-');
    let c = &s.self_check;
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}"));
    row(
        &mut out,
        "Send rate offered / achieved (req/s)",
        format!("{} / {}", rate(c.offered_rate), rate(c.achieved_send_rate)),
    );
    row(
        &mut out,
        "Dispatch lag P50 / P99 (ms)",
        format!(
            "{:.3} / {:.3}",
            c.dispatch_lag_p50_ms, c.dispatch_lag_p99_ms
        ),
    );
    if let Some(p) = c.cpu_percent {
        row(&mut out, "Client CPU (%)", format!("{p:.1}"));
    }
    let verdict = if c.client_limited {
        format!("YES — {}", c.reasons.join("; "))
    } else {
        "no".to_string()
    };
    row(&mut out, "Client limited", verdict);
    out.push_str(&"=".repeat(WIDTH));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{run_info, summary};

    #[test]
    fn table_has_vllm_lines_and_our_extras() {
        let t = render_table(&run_info(), &summary());
        for needle in [
            "============ Serving Benchmark Result ============",
            "Successful requests:                     2",
            "Failed requests:                         1",
            "  http_500:                              1",
            "Benchmark duration (s):                  0.03",
            "Request goodput (req/s):                 33.33",
            "Mean TTFT (ms):                          15.00",
            "P90 TTFT (ms):                           19.00",
            "P99.9 TTFT (ms):                         19.99",
            "---------------Inter-token Latency----------------",
            "P95 ITL (ms):",
            "Mean ICL (ms):",
            "Token source:                            usage-delta (usage-delta 2)",
            "Output tokens server / client:           8 / 8 (0 requests differ)",
            "Client limited:                          no",
            "Client CPU (%):                          20.0",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
        assert!(t.ends_with(&format!("{}\n", "=".repeat(50))));
        // Rows that only appear when there is something to say.
        assert!(
            !t.contains("[DONE]") && !t.contains("not believed") && !t.contains("Resends"),
            "{t}"
        );
    }

    #[test]
    fn streams_without_done_resends_and_disbelieved_usage_are_shown() {
        let mut s = summary();
        s.streams_without_done = 2;
        s.tokens.records_usage_suspect = 1;
        s.resends = 3;
        s.requests_resent = 2;
        let t = render_table(&run_info(), &s);
        for needle in [
            "Resends (requests resent):               3 (2)",
            "Streams without [DONE] (successful):     2 (ended cleanly after a finish_reason)",
            "Server usage not believed (requests):    1 (beyond max_tokens; counted from events)",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
    }

    #[test]
    fn simulated_and_limited_runs_say_so() {
        let mut run = run_info();
        run.simulated = true;
        let mut s = summary();
        s.self_check.client_limited = true;
        s.self_check.reasons = vec!["dispatch lag P99 3.000 ms > 1 ms".into()];
        let t = render_table(&run, &s);
        assert!(t.contains("Simulated:"), "{t}");
        assert!(t.contains("YES — dispatch lag P99 3.000 ms > 1 ms"), "{t}");
    }
}
