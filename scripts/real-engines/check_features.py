#!/usr/bin/env python3
"""Checks servebench's issue-6 workloads against what a real vLLM did (check_vllm_features.sh).

Subcommands:

  prefix      a shared-prefix run and its unshared baseline: every request succeeded; the
              server's own /metrics counters show prefix-cache hits during the shared run
              (read here from raw scrapes, independently of servebench's parser); servebench's
              reported hit rate is there, nonzero, and agrees with the counters; the baseline's
              hit rate is lower.
  structured  a structured-output run made with --save-detailed: every successful answer is
              validated here against the schema (python `jsonschema`, from vLLM's environment)
              and the count of valid answers must equal servebench's; with --expect-valid the
              rate must be above zero, with --expect-ignored it must be zero (a dialect the
              server silently ignores leaves the answers unconstrained).
  multiturn   a multi-turn run's journal: each conversation's turns went out in order, each
              turn's prompt (the server's usage) is longer than the previous turn's prompt plus
              its reply (the history, replies included, was sent back), and the server's prefix
              cache hit during the run.

Each check prints `ok` or `FAIL` with the numbers behind it; with --tally FILE the counts are
added to FILE (the shell driver prints one total). Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The journal and /metrics readers of the other checker (this folder is on sys.path when a
# script here runs).
from check_vllm_run import is_measured, is_success, load_journal, metric_value

RESULTS: list[bool] = []


def check(ok: bool, what: str) -> bool:
    RESULTS.append(ok)
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    return ok


def metric(path: Path, name: str) -> float | None:
    """A metric's value summed over its label sets, from a Prometheus text scrape file."""
    return metric_value(path.read_text(encoding="utf-8"), name)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def all_succeeded(result: dict, label: str) -> None:
    completed, failed = result.get("completed"), result.get("failed")
    check(failed == 0 and (completed or 0) > 0,
          f"{label}: {completed} requests completed, {failed} failed")


def hit_rate(result: dict) -> float | None:
    return (result.get("telemetry") or {}).get("prefix_cache_hit_rate")


def cmd_prefix(a: argparse.Namespace) -> None:
    base, shared = load(a.baseline), load(a.shared)
    all_succeeded(base, "baseline")
    all_succeeded(shared, "shared prefix")
    hits = [metric(p, "vllm:prefix_cache_hits_total") for p in (a.before, a.mid, a.after)]
    queries = [metric(p, "vllm:prefix_cache_queries_total") for p in (a.before, a.mid, a.after)]
    if not check(None not in hits and None not in queries,
                 "the server's /metrics has vllm:prefix_cache_hits_total and _queries_total"):
        return
    dh, dq = hits[2] - hits[1], queries[2] - queries[1]
    check(dh > 0, f"the server counted prefix-cache hits during the shared-prefix run: "
                  f"{dh:.0f} of {dq:.0f} prompt tokens")
    server_rate = dh / dq if dq else 0.0
    ours = hit_rate(shared)
    if check(ours is not None and ours > 0,
             f"servebench reports a nonzero prefix-cache hit rate: {ours}"):
        # servebench's window is the measured phase; the scrapes here also cover its preflight
        # probe and warmups, so the two agree only roughly.
        check(abs(ours - server_rate) <= a.tolerance,
              f"servebench's hit rate {ours:.3f} agrees with the counters' {server_rate:.3f} "
              f"(within {a.tolerance})")
    base_rate = hit_rate(base)
    check(base_rate is not None and ours is not None and base_rate < ours,
          f"the unshared baseline hit less: {base_rate} < {ours}")


def answers(result: dict) -> list[str | None]:
    """Per measured request, the answer text (None for a failed request)."""
    texts, errors = result.get("generated_texts"), result.get("errors")
    if texts is None or errors is None:
        return []
    return [t if not e else None for t, e in zip(texts, errors)]


def cmd_structured(a: argparse.Namespace) -> None:
    try:
        import jsonschema  # noqa: PLC0415  (vLLM's environment has it; plain python3 may not)
    except ImportError:
        check(False, "python jsonschema is importable (run this with vLLM's environment)")
        return
    result, schema = load(a.summary), load(a.schema)
    validator = jsonschema.Draft202012Validator(schema)
    texts = answers(result)
    if not check(len(texts) > 0, f"the result has generated_texts for {len(texts)} requests"):
        return
    ok_texts = [t for t in texts if t is not None]
    valid = 0
    for t in ok_texts:
        try:
            validator.validate(json.loads(t))
            valid += 1
        except (ValueError, jsonschema.ValidationError):
            pass
    so = result.get("structured_output") or {}
    check(so.get("checked") == len(ok_texts),
          f"servebench checked every successful answer: {so.get('checked')} of {len(ok_texts)}")
    check(so.get("valid") == valid,
          f"servebench's count of schema-valid answers {so.get('valid')} equals this check's {valid}")
    rate = result.get("correct_rate")
    expect = 100.0 * valid / len(ok_texts) if ok_texts else None
    check(rate is not None and expect is not None and abs(rate - expect) < 1e-6,
          f"correct_rate {rate} % is valid/checked ({expect} %)")
    if a.expect_valid:
        check(valid > 0, f"the server returned schema-valid JSON: {valid} of {len(ok_texts)}")
    if a.expect_ignored:
        check(valid == 0, f"a dialect the server ignores gives no valid answer: {valid} of "
                          f"{len(ok_texts)} (servebench shows the constraint was not applied)")


def cmd_multiturn(a: argparse.Namespace) -> None:
    journal, _ = load_journal(a.journal)
    records = [r for r in journal if is_measured(r) and "turn" in r]
    check(len(records) > 0, f"the journal has {len(records)} measured turns")
    by_conv: dict = {}
    for r in records:
        by_conv.setdefault(r.get("conversation"), []).append(r)
    grew, compared, ordered = 0, 0, True
    for turns in by_conv.values():
        turns.sort(key=lambda r: r["turn"])
        for prev, cur in zip(turns, turns[1:]):
            if cur["turn"] != prev["turn"] + 1 or cur["sent_ns"] < prev["finished_ns"]:
                ordered = False
            pu, cu = prev.get("usage") or {}, cur.get("usage") or {}
            if pu and cu and is_success(prev):
                compared += 1
                if cu["prompt_tokens"] > pu["prompt_tokens"] + pu["completion_tokens"]:
                    grew += 1
    check(ordered, "each conversation's turns went out one after another, each after the "
                   "previous reply ended")
    check(compared > 0 and grew == compared,
          f"each turn's prompt is longer than the previous prompt plus its reply "
          f"({grew} of {compared} turn pairs): the history, replies included, was sent back")
    hits = [metric(p, "vllm:prefix_cache_hits_total") for p in (a.before, a.after)]
    if None not in hits:
        check(hits[1] - hits[0] > 0,
              f"the server's prefix cache hit on the resent history: {hits[1] - hits[0]:.0f} tokens")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prefix")
    pr.add_argument("--baseline", type=Path, required=True)
    pr.add_argument("--shared", type=Path, required=True)
    pr.add_argument("--before", type=Path, required=True, help="scrape before the baseline run")
    pr.add_argument("--mid", type=Path, required=True, help="scrape between the two runs")
    pr.add_argument("--after", type=Path, required=True, help="scrape after the shared run")
    pr.add_argument("--tolerance", type=float, default=0.15)
    st = sub.add_parser("structured")
    st.add_argument("--summary", type=Path, required=True)
    st.add_argument("--schema", type=Path, required=True)
    st.add_argument("--expect-valid", action="store_true")
    st.add_argument("--expect-ignored", action="store_true")
    mt = sub.add_parser("multiturn")
    mt.add_argument("--journal", type=Path, required=True)
    mt.add_argument("--before", type=Path, required=True)
    mt.add_argument("--after", type=Path, required=True)
    for s in (pr, st, mt):
        s.add_argument("--tally", type=Path)
    a = p.parse_args(argv)
    {"prefix": cmd_prefix, "structured": cmd_structured, "multiturn": cmd_multiturn}[a.cmd](a)
    if a.tally:
        passed, failed = (int(x) for x in a.tally.read_text().split())
        passed += sum(RESULTS)
        failed += len(RESULTS) - sum(RESULTS)
        a.tally.write_text(f"{passed} {failed}\n")
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
