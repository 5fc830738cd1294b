#!/usr/bin/env python3
"""Checks what can be checked about a `servebench run` against a real vLLM server.

Subcommands (stdlib only, so it runs with any python3):

  run     the summary JSON and the journal of one run: it parses, every request succeeded,
          output tokens equal the server's usage, the timing points are ordered, the first token
          is the first text event (not the role chunk), and the summary agrees with the journal.
  audit   the journal of a run made through sse_proxy.py against the proxy's capture of what the
          server really sent: per request, the journal's text events are the server's text
          events (the role-only, empty and usage-only chunks are not), the tokens equal the
          server's final usage, and, with a role delay, the first token came after the delay.
  metrics the server's own counter: `vllm:generation_tokens_total` grew by at least the output
          tokens the journals report.
  metric  print one metric's value (summed over its labels) from a /metrics scrape.
  suite   the result folder of `servebench suite` against a real engine: every file of the
          seed's appendix (per-cell JSON and journal, combined CSV, report.md/.html, the four
          charts as PNG and SVG, study.json); every cell's journal as `run` checks it; the CSV
          agrees with the journals; the report has no placeholder or blank, is labelled
          measured, and says GPU telemetry was not measured; the server log shows vLLM started;
          and no process of that server is left.
  suite-selftest  `suite` must fail on copies of a result folder, each with one mistake made.
  llamacpp-run    llama.cpp (check_llamacpp.sh): the journal's tokens are the final usage that
          rides on llama.cpp's finish chunk (token_source usage-final), prompt tokens recorded.
  audit-llamacpp  `audit` for llama.cpp's dialect: no running usage, a separate finish chunk
          without text, a `content: null` role chunk that may be missing, usage at the finish.
  llamacpp-keepalive  notes (no checks) on whether llama-server closes a connection right
          after a streamed response although its headers offered keep-alive.
  llamacpp-selftest  the two llama.cpp checks must fail on hand-made mistakes.
  refused the run against a server that refuses some of servebench's own request fields
          (`transformers serve` refuses ignore_eos and min_tokens): the summary lists exactly
          those in `server_refused_fields`, its `stopped_early` is the journal's count of
          successes that ended before max_tokens, the run said so in exactly one line with
          those counts, and (with --capture) no request after the preflight carried them.

Each check prints `ok` or `FAIL` with the numbers behind it; with --tally FILE the counts are
added to FILE so a driver script can print one total. Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

TEXT_SOURCES = {"usage-delta", "usage-final"}
# vllm bench serve's result keys that servebench's summary promises to carry (issue 2, item 6).
VLLM_KEYS = ["duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
             "request_throughput", "request_goodput", "output_throughput",
             "total_token_throughput"] + [
    f"{stat}_{metric}_ms" for metric in ("ttft", "tpot", "itl", "e2el")
    for stat in ("mean", "median", "std", "p99")]
# Keys that may be null: goodput is undefined when no --goodput objective was given.
NULLABLE = {"request_goodput"}


class Checks:
    def __init__(self, title: str):
        self.title = title
        self.passed = 0
        self.failed = 0
        print(f"== {title}")

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok   {what}" + (f" ({detail})" if detail else ""))
        else:
            self.failed += 1
            print(f"  FAIL {what}" + (f": {detail}" if detail else ""))
        return ok

    def note(self, text: str) -> None:
        print(f"  note {text}")

    def finish(self, tally: Path | None) -> int:
        print(f"  -> {self.title}: {self.passed} checks passed, {self.failed} failed")
        if tally:
            p, f = 0, 0
            if tally.exists():
                p, f = (int(x) for x in tally.read_text().split())
            tally.write_text(f"{p + self.passed} {f + self.failed}\n")
        return 1 if self.failed else 0


def load_journal(path: Path) -> tuple[list[dict], list[str]]:
    """Records (lines with an "id"), and the problems met reading it."""
    records, problems = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {n} is not JSON ({e})")
            continue
        if isinstance(obj, dict) and "id" in obj:
            records.append(obj)
    return records, problems


def is_success(rec: dict) -> bool:
    o = rec.get("outcome")
    return o == "success" or (isinstance(o, dict) and o.get("outcome") == "success")


def outcome_label(rec: dict) -> str:
    o = rec.get("outcome")
    if isinstance(o, dict):
        return " ".join(str(o.get(k)) for k in ("outcome", "kind", "status", "message") if k in o)
    return str(o)


def is_measured(rec: dict) -> bool:
    return rec.get("phase", "measured") == "measured"


def completion_tokens(rec: dict) -> int | None:
    u = rec.get("usage")
    return u.get("completion_tokens") if isinstance(u, dict) else None


def first_bad(items, pred, describe) -> str:
    """A short description of the first few items that fail `pred`, or ''."""
    bad = [describe(x) for x in items if not pred(x)]
    if not bad:
        return ""
    more = f" … and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{len(bad)} bad: " + "; ".join(bad[:3]) + more


def first_difference(got: list, want: list) -> str:
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"event {i}: {g} tokens, server's usage says {w}"
    return f"{len(got)} events, server's usage gives {len(want)}"


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def close(a: float, b: float, rel: float = 1e-3, abs_: float = 0.01) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= max(abs_, rel * abs(b))


def record_timing_problems(rec: dict, chat: bool) -> list[str]:
    """Why a successful record's timing points are inconsistent ([] when they are fine)."""
    why = []
    sent, headers, first = rec.get("sent_ns"), rec.get("headers_ns"), rec.get("first_token_ns")
    finished, events = rec.get("finished_ns"), rec.get("events") or []
    if headers is None or first is None:
        return [f"headers_ns={headers} first_token_ns={first}"]
    if not (sent <= headers <= first <= finished):
        why.append(f"order sent {sent} ≤ headers {headers} ≤ first {first} ≤ finished {finished}")
    if chat and not first > headers:
        # vLLM's first chat chunk is role-only and arrives with or after the headers; a first
        # token at the header instant means the role chunk (or the headers) was taken for it.
        why.append(f"first_token_ns {first} not after headers_ns {headers}")
    if events:
        # events[0] is the first text event; first_token_ns must be that event's time
        # (events are µs since sent_ns, truncated).
        ev0 = sent + events[0][0] * 1000
        if not -1000 <= first - ev0 < 2000:
            why.append(f"first_token_ns is {first - sent} ns after send but events[0] is at "
                       f"{events[0][0]} µs")
        evn = sent + events[-1][0] * 1000
        if not -1000 <= finished - evn < 2000:
            why.append(f"finished_ns is {finished - sent} ns after send but the last event is "
                       f"at {events[-1][0]} µs")
        times = [e[0] for e in events]
        if times != sorted(times):
            why.append("event times go backwards")
        if any(e[1] < 0 for e in events):
            why.append("an event with negative tokens")
    return why


# ---------------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    c = Checks(f"run {args.endpoint} ({args.journal.name})")
    chat = "chat" in args.endpoint

    summary = None
    try:
        summary = json.loads(args.summary.read_text(encoding="utf-8"))
        c.check(isinstance(summary, dict), "summary JSON parses to an object", str(args.summary))
    except (OSError, json.JSONDecodeError) as e:
        c.check(False, "summary JSON parses", f"{args.summary}: {e}")
    if not isinstance(summary, dict):
        summary = {}

    missing = [k for k in VLLM_KEYS if k not in summary]
    wrong = [k for k in VLLM_KEYS if k in summary and not (
        isinstance(summary[k], (int, float)) or (summary[k] is None and k in NULLABLE))]
    c.check(not missing and not wrong, "summary has vllm bench serve's keys as numbers",
            f"missing {missing}, not numbers {wrong}" if missing or wrong else
            f"{len(VLLM_KEYS)} keys")
    c.check(summary.get("completed") == args.num_prompts,
            "summary: completed == --num-prompts",
            f"completed={summary.get('completed')}, expected {args.num_prompts}")
    c.check(summary.get("failed") == 0, "summary: failed == 0", f"failed={summary.get('failed')}")

    try:
        records, problems = load_journal(args.journal)
    except OSError as e:
        c.check(False, "journal readable", str(e))
        return c.finish(args.tally)
    c.check(not problems, "every journal line is JSON", "; ".join(problems[:3]))
    measured = [r for r in records if is_measured(r)]
    c.check(len(measured) == args.num_prompts, "journal: one measured record per prompt",
            f"{len(measured)} measured of {len(records)} records, expected {args.num_prompts}")
    ids = [r["id"] for r in records]
    c.check(len(set(ids)) == len(ids), "journal: record ids are unique")

    failed = [r for r in records if not is_success(r)]
    c.check(not failed, "journal: every request succeeded",
            "; ".join(f"id {r['id']}: {outcome_label(r)}" for r in failed[:3]))
    ok = [r for r in records if is_success(r)]

    c.check(bool(ok) and all(isinstance(r.get("usage"), dict) for r in ok),
            "every success has the server's usage",
            first_bad(ok, lambda r: isinstance(r.get("usage"), dict), lambda r: f"id {r['id']}"))
    c.check(bool(ok) and all(r.get("output_tokens") == completion_tokens(r) for r in ok),
            "output_tokens == usage.completion_tokens for every request",
            first_bad(ok, lambda r: r.get("output_tokens") == completion_tokens(r),
                      lambda r: f"id {r['id']}: {r.get('output_tokens')} vs "
                                f"{completion_tokens(r)}"))
    sources = sorted({str(r.get("token_source")) for r in ok})
    c.check(bool(ok) and set(sources) <= TEXT_SOURCES,
            "token_source is the server's usage (usage-delta or usage-final)", ", ".join(sources))
    c.check(bool(ok) and all(sum(e[1] for e in r.get("events") or []) == r.get("output_tokens")
                             for r in ok),
            "the events' tokens add up to output_tokens",
            first_bad(ok, lambda r: sum(e[1] for e in r.get("events") or []) ==
                      r.get("output_tokens"),
                      lambda r: f"id {r['id']}: Σ={sum(e[1] for e in r.get('events') or [])} vs "
                                f"{r.get('output_tokens')}"))
    if args.expect_output_len is not None:
        c.check(bool(ok) and all(completion_tokens(r) == args.expect_output_len for r in ok),
                f"with --ignore-eos every output is {args.expect_output_len} tokens",
                first_bad(ok, lambda r: completion_tokens(r) == args.expect_output_len,
                          lambda r: f"id {r['id']}: {completion_tokens(r)}"))
        c.check(bool(ok) and all(r.get("max_tokens") == args.expect_output_len for r in ok),
                "max_tokens recorded as asked",
                first_bad(ok, lambda r: r.get("max_tokens") == args.expect_output_len,
                          lambda r: f"id {r['id']}: {r.get('max_tokens')}"))
    c.check(bool(ok) and all(not record_timing_problems(r, chat) for r in ok),
            "timing points ordered; first token = first text event"
            + ("; first token after the headers (role chunk not counted)" if chat else ""),
            first_bad(ok, lambda r: not record_timing_problems(r, chat),
                      lambda r: f"id {r['id']}: " + ", ".join(record_timing_problems(r, chat))))

    # Input lengths: exact only if the tokenizer round-trips the synthetic prompt; a note, not a
    # failure, because the chat template adds tokens and BPE may merge across word boundaries.
    if ok and not chat:
        off = [r for r in ok
               if (r.get("usage") or {}).get("prompt_tokens") != r.get("prompt_tokens")]
        c.note(f"prompt tokens: server counted the planned length for {len(ok) - len(off)} of "
               f"{len(ok)} requests" + (f" (e.g. id {off[0]['id']}: planned "
                                         f"{off[0].get('prompt_tokens')}, server "
                                         f"{off[0]['usage'].get('prompt_tokens')})" if off else ""))

    # The summary must be what the journal says (measured successes only).
    m_ok = [r for r in measured if is_success(r)]
    if m_ok and summary:
        out_tokens = sum(r["output_tokens"] for r in m_ok)
        c.check(summary.get("total_output_tokens") == out_tokens,
                "summary total_output_tokens == Σ journal output_tokens",
                f"{summary.get('total_output_tokens')} vs {out_tokens}")
        ttft = mean([(r["first_token_ns"] - r["sent_ns"]) / 1e6 for r in m_ok
                     if r.get("first_token_ns") is not None])
        e2el = mean([(r["finished_ns"] - r["sent_ns"]) / 1e6 for r in m_ok])
        c.check(close(float(summary.get("mean_ttft_ms") or "nan"), ttft),
                "summary mean_ttft_ms == mean(first_token − sent) over the journal",
                f"{summary.get('mean_ttft_ms')} vs {ttft:.3f}")
        c.check(close(float(summary.get("mean_e2el_ms") or "nan"), e2el),
                "summary mean_e2el_ms == mean(finished − sent) over the journal",
                f"{summary.get('mean_e2el_ms')} vs {e2el:.3f}")
        c.note(f"mean TTFT {ttft:.1f} ms, mean E2E {e2el:.1f} ms, "
               f"output {summary.get('output_throughput')} tok/s")
    return c.finish(args.tally)


# ---------------------------------------------------------------------------------------------


def load_capture(path: Path) -> list[dict]:
    caps = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            caps.append(json.loads(line))
    return caps


def server_view(cap: dict) -> dict:
    """What the server sent in one captured stream, reduced to what the journal must match."""
    events = cap.get("events", [])
    kinds = [e.get("kind") for e in events]
    usage = [e["completion_tokens"] for e in events if e.get("completion_tokens") is not None]
    # Expected tokens per text event from the running usage: tokens that arrived in chunks
    # without text (partial UTF-8, special tokens) become visible with the next text event;
    # those after the last text event belong to it.
    per_event, last, pending = [], 0, 0
    for e in events:
        ct = e.get("completion_tokens")
        if e.get("kind") == "text":
            cur = ct if ct is not None else last
            per_event.append(cur - last + pending)
            pending = 0
            last = cur
        elif ct is not None and e.get("kind") in ("empty", "role"):
            pending += ct - last
            last = ct
    if per_event:
        per_event[-1] += pending + max(0, (usage[-1] if usage else last) - last)
    return {
        "kinds": kinds,
        "text_events": kinds.count("text"),
        "role_first": bool(kinds) and kinds[0] == "role",
        "final_tokens": usage[-1] if usage else None,
        "running_usage": sum(1 for e in events if e.get("kind") == "text"
                             and e.get("completion_tokens") is not None) > 0,
        "per_event": per_event,
        "held_ms": events[0].get("held_ms", 0.0) if events else 0.0,
        # When the proxy forwarded each text chunk, ns after it received the request.
        "text_ns": [e.get("t_ns", 0) for e in events if e.get("kind") == "text"],
        "headers_ns": cap.get("headers_ns", 0),
        "request": cap.get("request", {}),
    }


def paired_streams(c, args):
    """Journal records paired with the streams the proxy captured, in send order (the audit run
    sends one at a time), or None after recording why they cannot be paired. A probe the client
    sent before its run (e.g. to learn whether the server accepts continuous usage) has no record;
    it can only come first."""
    try:
        records, problems = load_journal(args.journal)
        captured = load_capture(args.capture)
    except (OSError, json.JSONDecodeError) as e:
        c.check(False, "journal and capture readable", str(e))
        return None
    c.check(not problems, "every journal line is JSON", "; ".join(problems[:3]))
    caps = [x for x in captured
            if x.get("method") == "POST" and x.get("path", "").startswith(args.endpoint)]
    records.sort(key=lambda r: r.get("sent_ns", 0))
    extra = len(caps) - len(records)
    if extra > 0:
        c.note(f"{extra} generation request(s) before the run have no journal record "
               "(probes); pairing the last ones")
        caps = caps[extra:]
    if not c.check(len(caps) == len(records) and records,
                   "one captured stream per journal record",
                   f"{len(caps)} streams, {len(records)} records"):
        return None
    return records, caps


def cmd_audit(args) -> int:
    c = Checks(f"audit {args.endpoint} against the server's own stream ({args.capture.name})")
    chat = "chat" in args.endpoint
    paired = paired_streams(c, args)
    if paired is None:
        return c.finish(args.tally)
    records, caps = paired
    views = [server_view(x) for x in caps]
    pairs = list(zip(records, views))

    c.check(all(v["request"].get("stream") for v in views), "requests were streamed")
    opts = [v["request"].get("stream_options") or {} for v in views]
    c.check(all(o.get("include_usage") for o in opts),
            "requests asked for stream_options.include_usage")
    c.note("continuous_usage_stats requested: "
           f"{sum(1 for o in opts if o.get('continuous_usage_stats'))} of {len(opts)}")
    if chat:
        c.check(all(v["role_first"] for v in views),
                "premise: vLLM's first chat chunk is role-only (no text)",
                first_bad(views, lambda v: v["role_first"], lambda v: f"kinds {v['kinds'][:3]}"))
    c.check(all(is_success(r) for r in records), "every audited request succeeded",
            first_bad(records, is_success, lambda r: f"id {r['id']}: {outcome_label(r)}"))

    def n_events(r):
        return len(r.get("events") or [])

    c.check(all(n_events(r) == v["text_events"] for r, v in pairs),
            "journal events == the server's text-bearing chunks (role/empty/usage chunks excluded)",
            first_bad(pairs, lambda p: n_events(p[0]) == p[1]["text_events"],
                      lambda p: f"id {p[0]['id']}: {n_events(p[0])} events, server sent "
                                f"{p[1]['text_events']} text chunks of {len(p[1]['kinds'])}")
            or f"{sum(v['text_events'] for v in views)} text chunks in "
               f"{sum(len(v['kinds']) for v in views)} events")
    c.check(all(r.get("output_tokens") == v["final_tokens"] for r, v in pairs),
            "output_tokens == the server's final usage.completion_tokens",
            first_bad(pairs, lambda p: p[0].get("output_tokens") == p[1]["final_tokens"],
                      lambda p: f"id {p[0]['id']}: {p[0].get('output_tokens')} vs "
                                f"{p[1]['final_tokens']}"))
    with_deltas = [(r, v) for r, v in pairs if v["running_usage"]
                   and r.get("token_source") == "usage-delta"]
    if with_deltas:
        same = [p for p in with_deltas if [e[1] for e in p[0]["events"]] == p[1]["per_event"]]
        c.check(len(same) == len(with_deltas),
                "per-event tokens == the server's running-usage deltas",
                first_bad(with_deltas,
                          lambda p: [e[1] for e in p[0]["events"]] == p[1]["per_event"],
                          lambda p: f"id {p[0]['id']}: " + first_difference(
                              [e[1] for e in p[0]["events"]], p[1]["per_event"])))
    # Causality, on one clock (both sides read CLOCK_MONOTONIC; durations compare): the client
    # sent before the proxy received, so no event can be seen sooner after `sent_ns` than the
    # proxy forwarded it after receiving. Journal event times are µs, truncated; 1 ms of slack
    # covers that and where exactly each side reads its clock.
    slack_ns = 1_000_000

    def early_events(p):
        r, v = p
        sent = r.get("sent_ns", 0)
        return [k for k, (e, t) in enumerate(zip(r.get("events") or [], v["text_ns"]))
                if e[0] * 1000 + slack_ns < t] + (
            [-1] if r.get("first_token_ns") is not None and v["text_ns"]
            and r["first_token_ns"] - sent + slack_ns < v["text_ns"][0] else [])

    c.check(all(not early_events(p) for p in pairs),
            "no journal event precedes the server's matching text chunk (none taken from an "
            "earlier, textless chunk)",
            first_bad(pairs, lambda p: not early_events(p),
                      lambda p: f"id {p[0]['id']}: events {early_events(p)[:4]} earlier than "
                                "the proxy forwarded them (-1: first_token_ns)"))
    lag = [(r["headers_ns"] - r["sent_ns"] - v["headers_ns"]) / 1e6 for r, v in pairs
           if r.get("headers_ns") is not None]
    if lag:
        c.note(f"client saw the response headers {min(lag):.1f}–{max(lag):.1f} ms after the proxy "
               "forwarded them (request transit plus the client's scheduling on this machine)")

    if chat and args.role_delay_ms > 0:
        hold_ns = args.role_delay_ms * 1e6

        def ttft(r):
            return (r.get("first_token_ns") or 0) - r.get("sent_ns", 0)

        held = [(r, v) for r, v in pairs if v["held_ms"] > 0]
        c.check(len(held) == len(pairs), "the proxy held every stream after its role chunk",
                f"{len(held)} of {len(pairs)}")
        c.check(bool(held) and all(ttft(r) >= hold_ns for r, _ in held),
                f"first token came after the {args.role_delay_ms:.0f} ms hold that followed the "
                "role chunk (TTFT not taken from the role chunk)",
                first_bad(held, lambda p: ttft(p[0]) >= hold_ns,
                          lambda p: f"id {p[0]['id']}: first_token − sent = "
                                    f"{ttft(p[0]) / 1e6:.1f} ms")
                or f"min first_token − sent {min(ttft(r) for r, _ in held) / 1e6:.1f} ms")
    return c.finish(args.tally)


# ---------------------------------------------------------------------------------------------


def metric_value(text: str, name: str) -> float | None:
    """Sum of a Prometheus metric's samples over all label sets; None when absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest[:1] not in ("{", " "):
            continue  # a longer name with the same prefix
        try:
            total += float(rest.rsplit(None, 1)[-1] if "}" not in rest
                           else rest.rsplit("}", 1)[1].split()[0])
            seen = True
        except (ValueError, IndexError):
            continue
    return total if seen else None


def cmd_metric(args) -> int:
    v = metric_value(args.scrape.read_text(encoding="utf-8"), args.name)
    if v is None:
        print(f"error: {args.name} not found in {args.scrape}", file=sys.stderr)
        return 1
    print(int(v) if v == int(v) else v)
    return 0


def cmd_metrics(args) -> int:
    c = Checks("vLLM's own token counter")
    try:
        before = metric_value(args.before.read_text(encoding="utf-8"), args.name)
        after = metric_value(args.after.read_text(encoding="utf-8"), args.name)
    except OSError as e:
        c.check(False, "/metrics scrapes readable", str(e))
        return c.finish(args.tally)
    if not c.check(before is not None and after is not None, f"/metrics has {args.name}",
                   f"before={before} after={after}"):
        return c.finish(args.tally)
    journal_tokens = 0
    for j in args.journal:
        try:
            records, _ = load_journal(j)
        except OSError as e:
            c.check(False, "journal readable", str(e))
            return c.finish(args.tally)
        journal_tokens += sum(completion_tokens(r) or 0 for r in records)
    grew = after - before
    c.check(grew >= journal_tokens,
            f"{args.name} grew by at least the journals' output tokens",
            f"grew {grew:.0f}, journals {journal_tokens}")
    if args.allow_extra is not None:
        # The server also generated for requests outside the journals (servebench's preflight
        # probe); more than that allowance means requests the client sent but did not record.
        c.check(grew <= journal_tokens + args.allow_extra,
                f"and by at most {args.allow_extra} more (no generation the journals miss)",
                f"{grew - journal_tokens:.0f} more")
    elif grew != journal_tokens:
        c.note(f"the server counted {grew - journal_tokens:.0f} more tokens than the journals")
    return c.finish(args.tally)


# ---------------------------------------------------------------------------------------------
# `servebench suite` against a real engine: the study's files, its report, and the teardown.

# Words a filled-in report must not contain: the seed's blanks and numbers that are not numbers.
PLACEHOLDERS = [r"\[VALUE\]", r"\[Framework\]", r"\bTBD\b", r"\bNaN\b", r"\bnan\b", r"\binf\b",
                r"\[[A-Z][A-Z0-9_ ]{2,}\]"]
CHARTS = ["throughput_comparison", "latency_distribution", "cost_comparison",
          "gpu_utilization_heatmap"]
SIMULATED_LABELS = ["Simulated results", "Partly simulated", "(simulated)",
                    "simulated (servebench"]


def parse_workload(text: str) -> tuple[str, int, int]:
    """`Small:10:32` -> ("Small", requests 10, max_tokens 32)."""
    try:
        name, requests, max_tokens = text.rsplit(":", 2)
        return name, int(requests), int(max_tokens)
    except ValueError:
        raise argparse.ArgumentTypeError(f"workload `{text}`: write NAME:REQUESTS:MAX_TOKENS")


def cell_files(target_dir: Path, workload: str) -> list[Path]:
    """`benchmark_<workload>_<YYYYmmdd-HHMMSS>.json` result files (not journals, telemetry)."""
    pat = re.compile(rf"benchmark_{re.escape(workload.lower())}_\d{{8}}-\d{{6}}\.json")
    return sorted(p for p in target_dir.glob("benchmark_*.json") if pat.fullmatch(p.name))


def table_rows(md: str) -> list[list[str]]:
    """The cells of every markdown table row (separator rows excluded)."""
    rows = []
    for line in md.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def placeholder_problems(md: str) -> list[str]:
    """Blanks in a report: the seed's placeholders, NaN/inf, empty table cells, empty `()`."""
    found = []
    for pat in PLACEHOLDERS:
        m = re.search(pat, md)
        if m and f"`{m.group(0)}`" not in found:
            found.append(f"`{m.group(0)}`")
    blank = [cells for cells in table_rows(md) if any(c == "" for c in cells)]
    found += [f"an empty table cell in `| {' | '.join(cells)} |`" for cells in blank[:3]]
    m = re.search(r".{0,30}\(\s*\).{0,10}", md)
    if m:
        found.append(f"empty parentheses in `{m.group(0)}`")
    return found


def processes() -> list[tuple[int, int, str]]:
    """(pid, process group, command line) of every process, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            pgrp = int(stat.rsplit(")", 1)[1].split()[2])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
        out.append((int(d.name), pgrp, cmd.strip()))
    return out


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def cmd_suite(args) -> int:
    root, target = args.result_dir, args.target
    c = Checks(f"suite results in {root} (target `{target}`)")
    tdir = root / target
    workloads = args.workload

    # ---- the files, laid out as the seed's appendix ----
    cells: dict[str, Path] = {}
    for name, _, _ in workloads:
        found = cell_files(tdir, name)
        if c.check(len(found) == 1, f"{target}/benchmark_{name.lower()}_<time>.json exists",
                   ", ".join(p.name for p in found) or "none"):
            cells[name] = found[0]
            journal = found[0].with_suffix(".journal.jsonl")
            c.check(journal.is_file() and journal.stat().st_size > 0,
                    f"and its journal {journal.name}")
    for f in ["benchmark_results_combined.csv", "report.md", "report.html", "study.json"]:
        p = root / f
        c.check(p.is_file() and p.stat().st_size > 0, f"{f} exists")
    for chart in CHARTS:
        png, svg = root / f"{chart}.png", root / f"{chart}.svg"
        c.check(png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                and png.stat().st_size > 10_000, f"{chart}.png is a PNG image",
                f"{png.stat().st_size} bytes" if png.is_file() else "missing")
        text = svg.read_text(encoding="utf-8", errors="replace") if svg.is_file() else ""
        c.check("<svg" in text and "</svg>" in text, f"{chart}.svg is an SVG document",
                f"{len(text)} chars" if text else "missing")

    # ---- every cell: the journal is the server's (delegated to `run`) ----
    journal_sums: dict[str, tuple[int, int]] = {}
    for name, requests, max_tokens in workloads:
        if name not in cells:
            continue
        summary = cells[name]
        journal = summary.with_suffix(".journal.jsonl")
        if not journal.is_file():
            continue
        print(f"  -- {name}:")
        rc = cmd_run(argparse.Namespace(summary=summary, journal=journal,
                                        endpoint=args.endpoint, num_prompts=requests,
                                        expect_output_len=max_tokens, tally=args.tally))
        # `run` tallied its own checks; this one carries its verdict into our exit status.
        c.check(rc == 0, f"{name}: the journal checks above passed")
        records, _ = load_journal(journal)
        ok = [r for r in records if is_measured(r) and is_success(r)]
        journal_sums[name] = (sum(completion_tokens(r) or 0 for r in ok),
                              sum((r.get("usage") or {}).get("prompt_tokens") or 0 for r in ok))
        try:
            res = json.loads(summary.read_text(encoding="utf-8"))
            version = (((res.get("config") or {}).get("server") or {}).get("version") or {})
        except (OSError, json.JSONDecodeError, AttributeError):
            res, version = {}, {}
        c.check(bool(isinstance(version, dict) and version.get("version")),
                f"{summary.name} records the engine's version from /version", str(version))
        c.check(res.get("simulated") is False, f"{summary.name} is not marked simulated",
                f"simulated={res.get('simulated')}")

    # ---- the combined CSV: one row per cell, every request a success, the server's tokens ----
    csv_path = root / "benchmark_results_combined.csv"
    rows: list[dict] = []
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    c.check(len(rows) == len(workloads), "combined CSV: one row per cell",
            f"{len(rows)} rows for {len(workloads)} cells")
    for name, requests, max_tokens in workloads:
        row = next((r for r in rows if r.get("workload") == name), None)
        if not c.check(row is not None, f"combined CSV has the {name} row"):
            continue
        bad_numbers = [k for k, v in row.items() if v in ("NaN", "nan", "-nan")]
        c.check(row.get("label") == target and row.get("simulated") == "false"
                and not bad_numbers,
                f"CSV {name}: label `{target}`, simulated false, no NaN",
                f"label={row.get('label')} simulated={row.get('simulated')} NaN in {bad_numbers}")
        c.check(row.get("completed") == str(requests) and row.get("failed") == "0"
                and row.get("attempted") == str(requests),
                f"CSV {name}: every request succeeded",
                f"attempted={row.get('attempted')} completed={row.get('completed')} "
                f"failed={row.get('failed')}, expected {requests}")
        if name in journal_sums:
            out_tok, in_tok = journal_sums[name]
            c.check(row.get("total_output_tokens") == str(out_tok) == str(requests * max_tokens),
                    f"CSV {name}: output tokens == the server's usage in the journal",
                    f"CSV {row.get('total_output_tokens')}, journal {out_tok}, "
                    f"asked {requests}×{max_tokens}")
            c.check(row.get("total_input_tokens") == str(in_tok),
                    f"CSV {name}: prompt tokens == the server's usage in the journal",
                    f"CSV {row.get('total_input_tokens')}, journal {in_tok}")

    # ---- study.json ----
    study: dict = {}
    try:
        study = json.loads((root / "study.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        c.check(False, "study.json parses", str(e))
    if study:
        scells = study.get("cells") or []
        c.check(study.get("simulated") is False and bool(scells)
                and all(x.get("simulated") is False for x in scells),
                "study.json: not simulated, nor is any cell",
                f"study {study.get('simulated')}, cells {[x.get('simulated') for x in scells]}")
        c.check(sorted(x.get("workload") for x in scells) == sorted(w[0] for w in workloads),
                "study.json: one cell per workload", str([x.get("workload") for x in scells]))
        c.check(bool(scells) and all(x.get("gpu") is None and x.get("gpu_unavailable")
                                     for x in scells),
                "study.json: GPU telemetry marked unavailable in every cell (no GPU here)",
                "; ".join(f"{x.get('workload')}: {x.get('gpu_unavailable')}" for x in scells))
        model = (study.get("environment") or {}).get("model")
        c.check(bool(model), "study.json: the environment names the model served",
                f"model={model!r}")

    # ---- report.md ----
    md = (root / "report.md").read_text(encoding="utf-8") if (root / "report.md").is_file() else ""
    if md:
        found = placeholder_problems(md)
        c.check(not found, "report.md has no placeholder or blank", "; ".join(found))
        labels = [lab for lab in SIMULATED_LABELS if lab in md]
        data = next((r[1] for r in table_rows(md) if len(r) == 2 and r[0] == "Data"), None)
        c.check(not labels and data == "measured",
                "report.md is labelled measured, not simulated",
                f"Data row: {data!r}" + (f"; found {labels}" if labels else ""))
        missing = [name for name, _, _ in workloads
                   if not any(len(r) >= 3 and r[1] == name and r[2].startswith("not measured:")
                              for r in table_rows(md))]
        c.check(not missing, "report.md says GPU telemetry was not measured, per workload "
                "(Table 5.4b)", f"no `not measured:` row for {missing}" if missing else "")
        if "{port}" in md:
            c.note("report.md shows the configured command with `{port}`, not the port used")
    html_path = root / "report.html"
    html = html_path.read_text(encoding="utf-8", errors="replace") if html_path.is_file() else ""
    if html:
        imgs = html.count('src="data:image/')
        external = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//[^"' >]+""", html)
        found = placeholder_problems(re.sub(r"<[^>]+>", " ", html.split("<body", 1)[-1]))
        c.check(imgs >= len(CHARTS) and not external and "Simulated results" not in html,
                "report.html: charts inline, no external resource, not labelled simulated",
                f"{imgs} inline images, external {external[:3]}")
        c.check(not found, "report.html has no placeholder", "; ".join(found))

    # ---- the server: it ran, and it is gone ----
    log = tdir / f"{target}.log"
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    c.check(text.startswith(f"# servebench: target `{target}`"),
            f"server log {target}/{log.name} exists with servebench's header",
            text.splitlines()[0][:160] if text else "missing")
    started = [s for s in ("Starting vLLM server on", "Application startup complete")
               if s in text]
    c.check(len(started) == 2, "the server log shows vLLM started and served",
            f"found {started}")
    if "Shutting down" in text:
        c.note("the server log shows vLLM shutting down (stopped gracefully)")
    pids = sorted({int(p) for p in re.findall(r"\(APIServer pid=(\d+)\)", text)})
    port_m = re.search(r"\(port (\d+)\)", text.splitlines()[0] if text else "")
    procs = processes()
    # An API server for this run's model folder (it may not have logged its pid yet).
    ours = re.compile(r"-m vllm\.entrypoints\S* .*--model " + re.escape(str(args.model_dir))
                      + r"( |$)") if args.model_dir else None
    left = [(pid, cmd[:120]) for pid, pgrp, cmd in procs
            if pgrp in pids or (ours and ours.search(cmd))]
    c.check(bool(pids) and not left,
            "no process of the suite's vLLM is left (its process group, or its command line)",
            f"API server pid {pids}" + (f"; still running: {left[:3]}" if left else ""))
    if port_m:
        port = int(port_m.group(1))
        c.check(not port_open(port), f"nothing listens on the server's port {port} any more")
    others = [pid for pid, _, cmd in procs if "-m vllm.entrypoints" in cmd
              and (pid, cmd[:120]) not in left]
    if others:
        c.note(f"other vLLM servers on this machine (not the suite's): pids {others[:5]}")
    return c.finish(args.tally)


def cmd_suite_selftest(args) -> int:
    """The suite check must fail each mistake it exists to catch: each is made in a copy of a
    good result folder (which must itself pass), one at a time."""
    c = Checks(f"suite checker self-test on copies of {args.result_dir}")
    t = args.target

    def first(folder: Path, pattern: str) -> Path:
        return min((folder / t).glob(pattern))

    def edit(path: Path, old: str, new: str, count: int = 1) -> None:
        text = path.read_text(encoding="utf-8")
        if old not in text:
            raise ValueError(f"{path.name} has no `{old[:40]}` to change")
        path.write_text(text.replace(old, new, count), encoding="utf-8")

    def journal_edit(folder: Path) -> None:
        # A measured record whose tokens are not the server's usage.
        j = first(folder, "benchmark_*.journal.jsonl")
        lines = j.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            obj = json.loads(line)
            if "id" in obj and obj.get("phase", "measured") == "measured":
                obj["output_tokens"] = (obj.get("output_tokens") or 0) + 1
                lines[i] = json.dumps(obj)
                break
        j.write_text("\n".join(lines) + "\n", encoding="utf-8")

    faults = {
        "a placeholder in report.md": lambda d: edit(d / "report.md", "| Data |",
                                                     "| Notes | [VALUE] |\n| Data |"),
        "TBD in report.md": lambda d: edit(d / "report.md", "## 6. Discussion",
                                           "## 6. Discussion\n\nTBD\n"),
        "an empty table cell": lambda d: edit(d / "report.md", "| Data |", "| Owner |  |\n| Data |"),
        "report.md labelled simulated": lambda d: edit(
            d / "report.md", "## Environment", "> **Simulated results.** Not measured.\n\n"
            "## Environment"),
        "a missing chart": lambda d: (d / "cost_comparison.svg").unlink(),
        "a missing result file": lambda d: first(d, "benchmark_medium_*[0-9].json").unlink(),
        "a failed request in the CSV": lambda d: edit(
            d / "benchmark_results_combined.csv", ",false,10,10,0,", ",false,10,9,1,"),
        "journal tokens not the server's": journal_edit,
        "GPU telemetry made up": lambda d: edit(d / "report.md", "| Small | not measured:",
                                                "| Small | 42.0 % | (was: not measured:"),
        "no server log": lambda d: (d / t / f"{t}.log").unlink(),
    }
    base = argparse.Namespace(**vars(args))

    def failures(folder: Path) -> tuple[int, set[str]]:
        base.result_dir, base.tally = folder, None
        with contextlib.redirect_stdout(io.StringIO()) as out:
            rc = cmd_suite(base)
        # Whole lines, details included: a fault may fail a check that already fails, for a
        # new reason (a second placeholder).
        return rc, {x.strip().replace(str(folder), "<dir>") for x in out.getvalue().splitlines()
                    if x.strip().startswith("FAIL")}

    with tempfile.TemporaryDirectory() as tmp:
        good = Path(tmp) / "good"
        shutil.copytree(args.result_dir, good)
        _, known = failures(good)
        if known:
            # Each fault must still add a failure of its own.
            c.note(f"the unchanged copy already fails {len(known)} check(s): "
                   + "; ".join(sorted(known))[:300])
        for what, fault in faults.items():
            d = Path(tmp) / re.sub(r"\W+", "-", what)
            shutil.copytree(good, d)
            try:
                fault(d)
            except (OSError, ValueError, IndexError) as e:
                c.check(False, f"make the fault: {what}", str(e))
                continue
            rc, fails = failures(d)
            new_fails = sorted(fails - known)
            c.check(rc == 1 and bool(new_fails), f"fails on {what}",
                    new_fails[0][:140] if new_fails else "no new failure: the checker let it pass")
    return c.finish(args.tally)


# ---------------------------------------------------------------------------------------------
# llama.cpp's `llama-server` (check_llamacpp.sh): the same journal, a different SSE dialect.
#
# What llama.cpp streams (checked against its source in the llama-cpp-python 0.3.36 sdist and a
# live server): no running usage, ever; on completions the finish is a separate chunk with empty
# `text` that carries `finish_reason` and the final `usage` (with or without include_usage); on
# chat the role chunk `{"role": "assistant", "content": null}` is sent with the first token's
# chunk (so it is missing when no partial result is sent), the finish is a separate chunk with
# `delta: {}`, and with include_usage the usage comes in one more chunk with `choices: []`.
# A non-standard `timings` object rides on the last chunk.


def finish_event(view_events: list[dict]) -> dict | None:
    """The event that carried finish_reason (the last one, if several)."""
    found = [e for e in view_events if e.get("finish_reason")]
    return found[-1] if found else None


def cmd_llamacpp_run(args) -> int:
    """What a llama.cpp journal must show beyond `run`'s checks: the tokens came from the final
    usage (llama.cpp sends no running usage, so per-event deltas would be made up)."""
    c = Checks(f"llama.cpp run {args.endpoint} ({args.journal.name})")
    try:
        records, problems = load_journal(args.journal)
    except OSError as e:
        c.check(False, "journal readable", str(e))
        return c.finish(args.tally)
    ok = [r for r in records if is_success(r)]
    c.check(bool(ok) and not problems, "journal readable, with successful records",
            f"{len(ok)} successes; " + "; ".join(problems[:3]))
    sources = sorted({str(r.get("token_source")) for r in ok})
    c.check(bool(ok) and sources == ["usage-final"],
            "token_source is usage-final (llama.cpp's usage rides on the finish chunk)",
            ", ".join(sources))
    c.check(bool(ok) and all(isinstance((r.get("usage") or {}).get("prompt_tokens"), int)
                             for r in ok),
            "the server's prompt_tokens recorded for every request",
            first_bad(ok, lambda r: isinstance((r.get("usage") or {}).get("prompt_tokens"), int),
                      lambda r: f"id {r['id']}: usage {r.get('usage')}"))
    empty = [r for r in ok if any(e[1] == 0 for e in r.get("events") or [])]
    if empty:
        c.note(f"{len(empty)} record(s) have events with 0 tokens (tokens spread over events)")
    return c.finish(args.tally)


def cmd_audit_llamacpp(args) -> int:
    c = Checks(f"audit {args.endpoint} against llama.cpp's own stream ({args.capture.name})")
    chat = "chat" in args.endpoint
    paired = paired_streams(c, args)
    if paired is None:
        return c.finish(args.tally)
    records, caps = paired
    views = [server_view(x) for x in caps]
    pairs = list(zip(records, views, caps))

    # ---- the premises: this is llama.cpp's dialect (if these fail, llama.cpp changed) ----
    c.check(all(v["request"].get("stream") for v in views), "requests were streamed")
    c.check(not any(v["running_usage"] for v in views),
            "premise: llama.cpp sends no running usage on text chunks")
    fins = [finish_event(cap.get("events", [])) for cap in caps]
    c.check(all(f is not None and f.get("kind") != "text" for f in fins),
            "premise: the finish is a separate chunk without text (finish_reason, empty "
            + ("`delta: {}`)" if chat else "`text`)"),
            first_bad(list(zip(views, fins)), lambda p: p[1] is not None
                      and p[1].get("kind") != "text", lambda p: f"kinds {p[0]['kinds'][-4:]}"))
    on_finish = sum(1 for f in fins if f is not None and f.get("completion_tokens") is not None)
    usage_only = sum(1 for v in views if "usage" in v["kinds"])
    c.note(f"final usage on the finish chunk in {on_finish} of {len(views)} streams, in a "
           f"separate `choices: []` chunk in {usage_only}")
    c.check(all(v["final_tokens"] is not None for v in views),
            "premise: every stream carried a final usage")
    if chat:
        with_role = sum(1 for v in views if v["role_first"])
        c.note(f"role chunk (`content: null`) first in {with_role} of {len(views)} chat streams")

    # ---- the client ----
    c.check(all(is_success(r) for r in records), "every audited request succeeded",
            first_bad(records, is_success, lambda r: f"id {r['id']}: {outcome_label(r)}"))

    def n_events(r):
        return len(r.get("events") or [])

    c.check(all(n_events(r) == v["text_events"] for r, v, _ in pairs),
            "journal events == the server's text chunks (the role chunk, the empty-text finish "
            "chunk and the usage chunk are not token events)",
            first_bad(pairs, lambda p: n_events(p[0]) == p[1]["text_events"],
                      lambda p: f"id {p[0]['id']}: {n_events(p[0])} events, server sent "
                                f"{p[1]['text_events']} text chunks of kinds {p[1]['kinds']}")
            or f"{sum(v['text_events'] for v in views)} text chunks in "
               f"{sum(len(v['kinds']) for v in views)} events")
    c.check(all(r.get("output_tokens") == v["final_tokens"] for r, v, _ in pairs),
            "output_tokens == the usage.completion_tokens llama.cpp sent at the finish",
            first_bad(pairs, lambda p: p[0].get("output_tokens") == p[1]["final_tokens"],
                      lambda p: f"id {p[0]['id']}: {p[0].get('output_tokens')} vs "
                                f"{p[1]['final_tokens']}"))
    sources = sorted({str(r.get("token_source")) for r in records if is_success(r)})
    c.check(sources == ["usage-final"], "token_source is usage-final", ", ".join(sources))
    c.check(all(sum(e[1] for e in r.get("events") or []) == r.get("output_tokens")
                for r, _, _ in pairs),
            "the events' tokens add up to output_tokens",
            first_bad(pairs, lambda p: sum(e[1] for e in p[0].get("events") or [])
                      == p[0].get("output_tokens"), lambda p: f"id {p[0]['id']}"))
    slack_ns = 1_000_000  # journal µs truncation and where each side reads the clock

    def early_events(p):
        r, v, _ = p
        sent = r.get("sent_ns", 0)
        return [k for k, (e, t) in enumerate(zip(r.get("events") or [], v["text_ns"]))
                if e[0] * 1000 + slack_ns < t] + (
            [-1] if r.get("first_token_ns") is not None and v["text_ns"]
            and r["first_token_ns"] - sent + slack_ns < v["text_ns"][0] else [])

    c.check(all(not early_events(p) for p in pairs),
            "no journal event precedes the server's matching text chunk (none taken from the "
            "role chunk or another textless chunk)",
            first_bad(pairs, lambda p: not early_events(p),
                      lambda p: f"id {p[0]['id']}: events {early_events(p)[:4]} earlier than "
                                "the proxy forwarded them (-1: first_token_ns)"))

    if chat and args.role_delay_ms > 0:
        hold_ns = args.role_delay_ms * 1e6

        def ttft(r):
            return (r.get("first_token_ns") or 0) - r.get("sent_ns", 0)

        held = [(r, v) for r, v, _ in pairs if v["held_ms"] > 0]
        c.check(bool(held), "premise: the proxy held at least one stream after its role chunk",
                f"{len(held)} of {len(pairs)}")
        c.check(bool(held) and all(ttft(r) >= hold_ns for r, _ in held),
                f"first token came after the {args.role_delay_ms:.0f} ms hold that followed the "
                "role chunk (TTFT not taken from the role chunk)",
                first_bad(held, lambda p: ttft(p[0]) >= hold_ns,
                          lambda p: f"id {p[0]['id']}: first_token − sent = "
                                    f"{ttft(p[0]) / 1e6:.1f} ms")
                or f"min first_token − sent {min(ttft(r) for r, _ in held) / 1e6:.1f} ms")
    return c.finish(args.tally)


def llamacpp_fixture(n: int, chat: bool, tokens_per_event=(1, 2, 1, 1), role=True,
                     hold_ms=250.0) -> tuple[list[dict], list[dict]]:
    """A correct llama.cpp journal and the proxy's capture of the streams behind it. Chunk i
    carries tokens_per_event[i] tokens (2: a token whose text was held back as partial UTF-8);
    no running usage; a separate finish chunk; the usage on it (completions) or after it (chat).
    A role chunk (chat, if `role`) comes with the first token and the proxy holds it hold_ms."""
    ms = 1_000_000
    records, caps = [], []
    for i in range(n):
        sent = 1_000 * ms + i * 1_000 * ms
        shift = hold_ms * ms if chat and role else 0
        t_text = [int(20 * ms + shift + 3 * ms * k) for k in range(len(tokens_per_event))]
        total = sum(tokens_per_event)
        events: list[dict] = []
        if chat and role:
            events.append({"kind": "role", "t_ns": 20 * ms - 50_000, "held_ms": hold_ms})
        for t in t_text:
            events.append({"kind": "text", "text_len": 3, "t_ns": t - 200_000})
        fin = {"kind": "empty", "text_len": 0, "finish_reason": "length",
               "t_ns": t_text[-1] - 100_000}
        if not chat:
            fin.update(completion_tokens=total, prompt_tokens=32)
        events.append(fin)
        if chat:
            events.append({"kind": "usage", "completion_tokens": total, "prompt_tokens": 40,
                           "t_ns": t_text[-1] - 90_000})
        events.append({"kind": "done", "t_ns": t_text[-1] - 80_000})
        caps.append({"seq": i + 1, "method": "POST",
                     "path": "/v1/chat/completions" if chat else "/v1/completions",
                     "status": 200, "headers_ns": 2 * ms, "sse": True, "events": events,
                     "request": {"stream": True, "max_tokens": total, "ignore_eos": True,
                                 "stream_options": {"include_usage": True,
                                                    "continuous_usage_stats": True}}})
        records.append({
            "id": i, "phase": "measured", "scheduled_ns": sent, "slot_ns": sent,
            "sent_ns": sent, "headers_ns": sent + 3 * ms,
            "first_token_ns": sent + t_text[0], "first_content_ns": sent + t_text[0],
            "finished_ns": sent + t_text[-1] + 50_000,
            "events": [[t // 1000, k] for t, k in zip(t_text, tokens_per_event)],
            "prompt_tokens": 32, "max_tokens": total,
            "usage": {"prompt_tokens": 40 if chat else 32, "completion_tokens": total},
            "output_tokens": total, "token_source": "usage-final",
            "outcome": {"outcome": "success"},
        })
    return records, caps


def cmd_llamacpp_selftest(args) -> int:
    """audit-llamacpp and llamacpp-run must pass a correct client and fail each mistake a
    client can make on llama.cpp's dialect."""
    c = Checks("llama.cpp checker self-test on hand-made journals and captures")
    ms = 1_000_000

    def outcome(fn, records, caps, chat) -> tuple[int, str]:
        with tempfile.TemporaryDirectory() as tmp:
            j, cap = Path(tmp) / "j.jsonl", Path(tmp) / "cap.jsonl"
            j.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            cap.write_text("".join(json.dumps(x) + "\n" for x in caps), encoding="utf-8")
            ns = argparse.Namespace(journal=j, capture=cap, tally=None, role_delay_ms=250.0,
                                    endpoint="/v1/chat/completions" if chat else
                                    "/v1/completions")
            with contextlib.redirect_stdout(io.StringIO()) as out:
                rc = fn(ns)
        return rc, out.getvalue()

    def fails(lines: str) -> list[str]:
        return [x.strip() for x in lines.splitlines() if x.strip().startswith("FAIL")]

    for chat in (False, True):
        kind = "chat" if chat else "completions"
        for fn in (cmd_audit_llamacpp, cmd_llamacpp_run):
            recs, caps = llamacpp_fixture(3, chat)
            rc, out = outcome(fn, recs, caps, chat)
            c.check(rc == 0, f"{fn.__name__} passes a correct client ({kind})",
                    "; ".join(fails(out))[:300])
        if chat:
            recs, caps = llamacpp_fixture(3, chat, role=False, hold_ms=0.0)
            recs[0:0], caps[0:0] = llamacpp_fixture(1, chat)
            rc, out = outcome(cmd_audit_llamacpp, recs, caps, chat)
            c.check(rc == 0, "a chat stream without the role chunk passes",
                    "; ".join(fails(out))[:300])

        def finish_counted(recs, caps):
            # A client that took the finish chunk (empty text) for a token event.
            r = recs[1]
            r["events"][-1][1] -= 1
            r["events"].append([r["events"][-1][0] + 1, 1])

        def role_counted(recs, caps):
            # A client that took the role chunk (content: null) as the first token.
            r = recs[1]
            r["events"].insert(0, [19_000, 0])
            r["first_token_ns"] = r["sent_ns"] + 19 * ms

        def role_time_as_ttft(recs, caps):
            # Events right, but the time to first token read at the role chunk.
            recs[0]["first_token_ns"] = recs[0]["sent_ns"] + 19 * ms

        def chunks_as_tokens(recs, caps):
            # A client that counted chunks instead of taking the server's usage.
            for r in recs:
                r["events"] = [[e[0], 1] for e in r["events"]]
                r["output_tokens"] = len(r["events"])
                r["token_source"] = "events"

        def made_up_deltas(recs, caps):
            for r in recs:
                r["token_source"] = "usage-delta"

        def early_event(recs, caps):
            # An event stamped before the server sent its chunk (taken from a textless chunk).
            recs[2]["events"][1][0] -= 2_500

        faults = {"the finish chunk counted as a token event": finish_counted,
                  "counting chunks instead of the server's usage": chunks_as_tokens,
                  "usage-delta claimed without running usage": made_up_deltas,
                  "an event earlier than its chunk": early_event}
        if chat:
            faults["the role chunk taken as the first token"] = role_counted
            faults["the first token timed at the role chunk"] = role_time_as_ttft
        for what, fault in faults.items():
            recs, caps = llamacpp_fixture(3, chat)
            fault(recs, caps)
            rc, out = outcome(cmd_audit_llamacpp, recs, caps, chat)
            c.check(rc == 1 and bool(fails(out)), f"audit-llamacpp fails on {what} ({kind})",
                    (fails(out) or ["no failure: the checker let it pass"])[0][:160])
        recs, caps = llamacpp_fixture(3, chat)
        made_up_deltas(recs, caps)
        rc, out = outcome(cmd_llamacpp_run, recs, caps, chat)
        c.check(rc == 1, f"llamacpp-run fails on usage-delta without running usage ({kind})")
    return c.finish(args.tally)


def keepalive_probe(host: str, port: int, path: str, body: dict, wait_s: float = 1.0) -> dict:
    """Send one request on a fresh keep-alive connection, read the whole response, then watch
    the idle connection: does the server close it although its headers offered keep-alive?"""
    import select
    import time

    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(head + payload)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                return {"error": "closed before the response headers"}
            buf += data
        raw_head, rest = buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (x.partition(":") for x in lines[1:])}
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = int(headers.get("content-length", "-1"))

        def complete(b: bytes) -> bool:
            return b.endswith(b"0\r\n\r\n") if chunked else len(b) >= length

        while not complete(rest):
            data = s.recv(65536)
            if not data:
                return {"error": "closed inside the response body", "headers": headers}
            rest += data
        t_end = time.monotonic()
        closed_after_ms = None
        while time.monotonic() - t_end < wait_s:
            ready, _, _ = select.select([s], [], [], wait_s)
            if not ready:
                break
            if not s.recv(65536):
                closed_after_ms = (time.monotonic() - t_end) * 1e3
                break
        return {"status": lines[0], "connection": headers.get("connection"),
                "keep_alive": headers.get("keep-alive"), "closed_after_ms": closed_after_ms}


def cmd_llamacpp_keepalive(args) -> int:
    """Notes, not checks: whether llama-server keeps a connection open after a response, for a
    streamed and a non-streamed request. A client that pools connections must survive a server
    that closes right after a stream (the next request on that connection is lost)."""
    c = Checks(f"llama-server connection reuse (keep-alive) at {args.host}:{args.port}")
    for stream in (True, False):
        body = {"model": args.model, "prompt": "The quick brown fox", "max_tokens": 4,
                "stream": stream, "ignore_eos": True}
        try:
            r = keepalive_probe(args.host, args.port, "/v1/completions", body)
        except OSError as e:
            r = {"error": str(e)}
        what = "streamed" if stream else "non-streamed"
        if "error" in r:
            c.note(f"{what}: probe failed: {r['error']}")
            continue
        offered = r["connection"] != "close"
        if r["closed_after_ms"] is not None:
            c.note(f"{what} response ({r['status']}, Connection: {r['connection']}, Keep-Alive: "
                   f"{r['keep_alive']}): the server closed the connection "
                   f"{r['closed_after_ms']:.2f} ms after the response"
                   + (" although it offered keep-alive" if offered else ""))
        else:
            c.note(f"{what} response ({r['status']}, Keep-Alive: {r['keep_alive']}): the "
                   "connection stayed open for reuse")
    return c.finish(args.tally)


def cmd_refused(args) -> int:
    c = Checks(f"refused fields ({args.summary.name})")
    try:
        summary = json.loads(args.summary.read_text(encoding="utf-8"))
        records, problems = load_journal(args.journal)
        output = args.output.read_text(encoding="utf-8", errors="replace")
    except (OSError, json.JSONDecodeError) as e:
        c.check(False, "summary, journal and run output readable", str(e))
        return c.finish(args.tally)
    expect = sorted(args.expect)
    got = summary.get("server_refused_fields")
    c.check(isinstance(got, list) and sorted(got) == expect,
            "summary: server_refused_fields is exactly the fields the server refuses",
            f"{got} vs {expect}")
    ok = [r for r in records if is_measured(r) and is_success(r)]
    early = sum(1 for r in ok if r.get("output_tokens", 0) < r.get("max_tokens", 0))
    c.check(bool(ok) and summary.get("stopped_early") == early,
            "summary: stopped_early == the journal's successes that ended before max_tokens",
            f"{summary.get('stopped_early')} vs {early} of {len(ok)}")
    names = ", ".join(got) if isinstance(got, list) else "?"
    line = (f"this server refuses {names}: output lengths are not forced; "
            f"{early} of {len(ok)} requests stopped early")
    c.check(output.count("this server refuses") == 1 and line in output,
            "the run said so once, with the journal's counts", line)
    if args.capture is not None:
        try:
            caps = [x for x in load_capture(args.capture) if x.get("method") == "POST"]
        except (OSError, json.JSONDecodeError) as e:
            c.check(False, "capture readable", str(e))
            return c.finish(args.tally)
        served = [x for x in caps if 200 <= int(x.get("status", 0)) < 300]
        carried = [x for x in served if any(f in (x.get("request") or {}) for f in expect)]
        refused = [x for x in caps if int(x.get("status", 0)) in (400, 422)]
        c.check(bool(served) and not carried,
                "no request the server served carried a refused field",
                f"{len(carried)} of {len(served)} did")
        c.check(1 <= len(refused) <= 2 * 3 + 2,
                "the server refused only preflight probes (1 to 8)",
                f"{len(refused)} refused of {len(caps)}")
    return c.finish(args.tally)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="check one run's summary and journal")
    r.add_argument("--summary", type=Path, required=True)
    r.add_argument("--journal", type=Path, required=True)
    r.add_argument("--endpoint", required=True)
    r.add_argument("--num-prompts", type=int, required=True)
    r.add_argument("--expect-output-len", type=int,
                   help="with --ignore-eos: the exact output length every request must have")

    a = sub.add_parser("audit", help="compare a journal with sse_proxy.py's capture")
    a.add_argument("--journal", type=Path, required=True)
    a.add_argument("--capture", type=Path, required=True)
    a.add_argument("--endpoint", required=True)
    a.add_argument("--role-delay-ms", type=float, default=0.0)

    m = sub.add_parser("metrics", help="check the server's generated-token counter")
    m.add_argument("--before", type=Path, required=True, help="a /metrics scrape before")
    m.add_argument("--after", type=Path, required=True, help="a /metrics scrape after")
    m.add_argument("--journal", type=Path, action="append", default=[])
    m.add_argument("--name", default="vllm:generation_tokens_total")
    m.add_argument("--allow-extra", type=int,
                   help="fail when the counter grew by more than the journals' tokens plus this")

    suite_parsers = []
    v = sub.add_parser("metric", help="print a metric's value from a /metrics scrape")
    v.add_argument("scrape", type=Path)
    v.add_argument("--name", default="vllm:generation_tokens_total")

    suite_help = {
        "suite": "check a `servebench suite` result folder from a real engine: files, report, "
                 "CSV, journals, teardown",
        "suite-selftest": "the suite check must fail on doctored copies of a good result folder",
    }
    for name, helptext in suite_help.items():
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--result-dir", type=Path, required=True)
        s.add_argument("--target", required=True, help="the target's name in the suite file")
        s.add_argument("--workload", type=parse_workload, action="append", required=True,
                       help="NAME:REQUESTS:MAX_TOKENS, once per workload (ignore_eos assumed)")
        s.add_argument("--endpoint", default="/v1/completions")
        s.add_argument("--model-dir", type=Path,
                       help="the model folder the server was started with (to find leftovers)")
        suite_parsers.append(s)

    lr = sub.add_parser("llamacpp-run", help="llama.cpp: the journal's tokens are its final usage")
    lr.add_argument("--journal", type=Path, required=True)
    lr.add_argument("--endpoint", required=True)
    la = sub.add_parser("audit-llamacpp",
                        help="compare a journal with sse_proxy.py's capture of llama.cpp")
    la.add_argument("--journal", type=Path, required=True)
    la.add_argument("--capture", type=Path, required=True)
    la.add_argument("--endpoint", required=True)
    la.add_argument("--role-delay-ms", type=float, default=0.0)
    lk = sub.add_parser("llamacpp-keepalive",
                        help="note whether llama-server closes connections after a response")
    lk.add_argument("--host", default="127.0.0.1")
    lk.add_argument("--port", type=int, required=True)
    lk.add_argument("--model", default="tiny-llama")
    ls = sub.add_parser("llamacpp-selftest",
                        help="the llama.cpp checks must fail on hand-made mistakes")
    rf = sub.add_parser("refused", help="a run against a server that refuses some fields")
    rf.add_argument("--summary", type=Path, required=True)
    rf.add_argument("--journal", type=Path, required=True)
    rf.add_argument("--output", type=Path, required=True, help="the run's stdout and stderr")
    rf.add_argument("--expect", action="append", required=True,
                    help="a field the server refuses (repeat)")
    rf.add_argument("--capture", type=Path, help="sse_proxy.py's capture of the run")

    for p in (r, a, m, *suite_parsers, lr, la, lk, ls, rf):
        p.add_argument("--tally", type=Path, help="add 'passed failed' counts to this file")
    args = ap.parse_args(argv)
    return {"run": cmd_run, "audit": cmd_audit, "metrics": cmd_metrics,
            "metric": cmd_metric, "suite": cmd_suite,
            "suite-selftest": cmd_suite_selftest, "llamacpp-run": cmd_llamacpp_run,
            "audit-llamacpp": cmd_audit_llamacpp, "llamacpp-keepalive": cmd_llamacpp_keepalive,
            "llamacpp-selftest": cmd_llamacpp_selftest, "refused": cmd_refused}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
