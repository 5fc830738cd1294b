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

Each check prints `ok` or `FAIL` with the numbers behind it; with --tally FILE the counts are
added to FILE so a driver script can print one total. Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
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


def cmd_audit(args) -> int:
    c = Checks(f"audit {args.endpoint} against the server's own stream ({args.capture.name})")
    chat = "chat" in args.endpoint
    try:
        records, problems = load_journal(args.journal)
        captured = load_capture(args.capture)
    except (OSError, json.JSONDecodeError) as e:
        c.check(False, "journal and capture readable", str(e))
        return c.finish(args.tally)
    c.check(not problems, "every journal line is JSON", "; ".join(problems[:3]))
    caps = [x for x in captured
            if x.get("method") == "POST" and x.get("path", "").startswith(args.endpoint)]
    records.sort(key=lambda r: r.get("sent_ns", 0))
    # Requests are paired in send order (the audit run sends one at a time). A probe the client
    # sent before its run (e.g. to learn whether the server accepts continuous usage) has no
    # record; it can only come first.
    extra = len(caps) - len(records)
    if extra > 0:
        c.note(f"{extra} generation request(s) before the run have no journal record "
               "(probes); pairing the last ones")
        caps = caps[extra:]
    if not c.check(len(caps) == len(records) and records,
                   "one captured stream per journal record",
                   f"{len(caps)} streams, {len(records)} records"):
        return c.finish(args.tally)
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

    v = sub.add_parser("metric", help="print a metric's value from a /metrics scrape")
    v.add_argument("scrape", type=Path)
    v.add_argument("--name", default="vllm:generation_tokens_total")

    for p in (r, a, m):
        p.add_argument("--tally", type=Path, help="add 'passed failed' counts to this file")
    args = ap.parse_args(argv)
    return {"run": cmd_run, "audit": cmd_audit, "metrics": cmd_metrics,
            "metric": cmd_metric}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
