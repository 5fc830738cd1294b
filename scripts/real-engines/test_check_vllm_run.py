#!/usr/bin/env python3
"""Self-test of check_vllm_run.py on hand-made journals: it must pass a correct run and fail
each mistake it exists to catch (role chunk taken as the first token, tokens that are not the
server's usage, events that are not text chunks, a summary that is not the journal's).

Run: python3 scripts/real-engines/test_check_vllm_run.py   (stdlib only)
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import sys
import tempfile
import unittest
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_vllm_run as cv  # noqa: E402

MS = 1_000_000


def record(i: int, chat: bool, n_tokens: int = 4, tokens_per_event=None) -> dict:
    """A correct successful record: headers at +5 ms, (chat: role chunk at +6 ms), text events
    from +20 ms every 2 ms."""
    sent = 1_000 * MS + i * 100 * MS
    tpe = tokens_per_event or [1] * n_tokens
    events = [(20_000 + 2_000 * k, t) for k, t in enumerate(tpe)]
    return {
        "id": i, "phase": "measured", "scheduled_ns": sent, "slot_ns": sent, "sent_ns": sent,
        "headers_ns": sent + 5 * MS,
        "first_token_ns": sent + events[0][0] * 1000 + 250,
        "first_content_ns": sent + events[0][0] * 1000 + 250,
        "finished_ns": sent + events[-1][0] * 1000 + 100,
        "events": [list(e) for e in events],
        "prompt_tokens": 64, "max_tokens": sum(tpe),
        "usage": {"prompt_tokens": 64 if not chat else 80, "completion_tokens": sum(tpe)},
        "output_tokens": sum(tpe), "token_source": "usage-delta",
        "outcome": {"outcome": "success"},
    }


def summary_for(records: list[dict]) -> dict:
    s = {k: 1.0 for k in cv.VLLM_KEYS}
    s.update(completed=len(records), failed=0, request_goodput=None,
             total_output_tokens=sum(r["output_tokens"] for r in records),
             mean_ttft_ms=cv.mean([(r["first_token_ns"] - r["sent_ns"]) / MS for r in records]),
             mean_e2el_ms=cv.mean([(r["finished_ns"] - r["sent_ns"]) / MS for r in records]))
    return s


def capture_for(rec: dict, chat: bool, extra_kinds=(), held_ms=250.0) -> dict:
    """What vLLM streamed for `rec`: (role,) text chunks with running usage, usage, done."""
    events, ct = [], 0
    if chat:
        events.append({"kind": "role", "completion_tokens": 0, "t_ns": 10 * MS,
                       "held_ms": held_ms})
    for us, t in rec["events"]:
        for kind in extra_kinds:
            ct += 1
            events.append({"kind": kind, "completion_tokens": ct})
            t -= 1
        ct += t
        # The proxy forwarded it a little before the client read it.
        events.append({"kind": "text", "completion_tokens": ct, "t_ns": us * 1000 - 200_000})
    events += [{"kind": "usage", "completion_tokens": ct}, {"kind": "done"}]
    return {"method": "POST", "path": "/v1/chat/completions" if chat else "/v1/completions",
            "status": 200, "events": events,
            "headers_ns": rec["headers_ns"] - rec["sent_ns"] - 100_000,
            "request": {"stream": True, "stream_options": {"include_usage": True,
                                                           "continuous_usage_stats": True}}}


class Tmp:
    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name)

    def write_jsonl(self, name: str, rows: list[dict], header: bool = True) -> Path:
        p = self.path / name
        lines = [json.dumps({"type": "header", "version": 1})] if header else []
        p.write_text("\n".join(lines + [json.dumps(r) for r in rows]) + "\n")
        return p

    def write_json(self, name: str, obj: dict) -> Path:
        p = self.path / name
        p.write_text(json.dumps(obj))
        return p


class Base(unittest.TestCase):
    def setUp(self):
        self.t = Tmp()
        self.addCleanup(self.t.dir.cleanup)


def run_checker(fn, **kw) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = fn(Namespace(tally=None, **kw))
    return rc, out.getvalue()


class RunChecks(Base):
    def check_run(self, records, summary=None, chat=False, n=None):
        t = self.t
        j = t.write_jsonl("r.journal.jsonl", records)
        s = t.write_json("r.json", summary if summary is not None else summary_for(records))
        return run_checker(cv.cmd_run, summary=s, journal=j,
                           endpoint="/v1/chat/completions" if chat else "/v1/completions",
                           num_prompts=n if n is not None else len(records),
                           expect_output_len=4)

    def test_a_correct_run_passes(self):
        for chat in (False, True):
            rc, out = self.check_run([record(i, chat) for i in range(5)], chat=chat)
            self.assertEqual(rc, 0, out)
            self.assertNotIn("FAIL", out)

    def test_merged_chunks_pass_when_tokens_add_up(self):
        recs = [record(i, True, tokens_per_event=[2, 1, 1]) for i in range(3)]
        rc, out = self.check_run(recs, chat=True)
        self.assertEqual(rc, 0, out)

    def test_role_chunk_taken_as_first_token_fails(self):
        recs = [record(i, True) for i in range(3)]
        bad = recs[1]
        bad["first_token_ns"] = bad["headers_ns"]  # role chunk arrived with the headers
        rc, out = self.check_run(recs, chat=True)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL timing points", out)

    def test_first_token_not_the_first_event_fails(self):
        recs = [record(i, False) for i in range(3)]
        recs[0]["first_token_ns"] -= 3 * MS  # e.g. taken from an earlier, empty chunk
        rc, out = self.check_run(recs, summary=summary_for(recs))
        self.assertEqual(rc, 1)
        self.assertIn("events[0]", out)

    def test_counting_chunks_instead_of_usage_fails(self):
        recs = [record(i, False) for i in range(3)]
        recs[2]["output_tokens"] = 3
        recs[2]["token_source"] = "events"
        rc, out = self.check_run(recs)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL output_tokens == usage.completion_tokens", out)
        self.assertIn("FAIL token_source", out)

    def test_events_that_lose_tokens_fail(self):
        recs = [record(i, False) for i in range(2)]
        recs[0]["events"][-1][1] = 0  # the last token's count dropped
        rc, out = self.check_run(recs)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL the events' tokens add up", out)

    def test_failures_and_missing_records_fail(self):
        recs = [record(i, False) for i in range(3)]
        recs[1]["outcome"] = {"outcome": "failed", "kind": "http", "status": 500, "message": "x"}
        rc, out = self.check_run(recs, n=4)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL journal: every request succeeded", out)
        self.assertIn("FAIL journal: one measured record per prompt", out)

    def test_summary_that_is_not_the_journal_fails(self):
        recs = [record(i, False) for i in range(3)]
        s = summary_for(recs)
        s["mean_ttft_ms"] += 5
        del s["p99_itl_ms"]
        s["failed"] = 1
        rc, out = self.check_run(recs, summary=s)
        self.assertEqual(rc, 1)
        for what in ("mean_ttft_ms", "keys as numbers", "failed == 0"):
            self.assertIn(what, "".join(line for line in out.splitlines(True) if "FAIL" in line))

    def test_unparsable_summary_fails(self):
        t = self.t
        j = t.write_jsonl("r.journal.jsonl", [record(0, False)])
        s = t.path / "r.json"
        s.write_text("{not json")
        rc, out = run_checker(cv.cmd_run, summary=s, journal=j, endpoint="/v1/completions",
                              num_prompts=1, expect_output_len=None)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL summary JSON parses", out)


class AuditChecks(Base):
    def audit(self, records, captures, chat=True, delay=250.0):
        t = self.t
        j = t.write_jsonl("a.journal.jsonl", records)
        c = t.write_jsonl("cap.jsonl", captures, header=False)
        return run_checker(cv.cmd_audit, journal=j, capture=c,
                           endpoint="/v1/chat/completions" if chat else "/v1/completions",
                           role_delay_ms=delay)

    def held(self, rec):
        """The record as a correct client sees a stream held 250 ms after the role chunk."""
        r = copy.deepcopy(rec)
        shift = 300 * MS
        r["events"] = [[e[0] + shift // 1000, e[1]] for e in r["events"]]
        r["first_token_ns"] += shift
        r["first_content_ns"] += shift
        r["finished_ns"] += shift
        return r

    def test_a_correct_client_passes(self):
        recs = [self.held(record(i, True)) for i in range(3)]
        rc, out = self.audit(recs, [capture_for(r, True) for r in recs])
        self.assertEqual(rc, 0, out)

    def test_empty_chunks_carry_tokens_to_the_next_text_event(self):
        recs = [self.held(record(i, True, tokens_per_event=[1, 2, 1])) for i in range(2)]
        caps = []
        for r in recs:
            cap = capture_for(r, True)
            # Turn the 2-token text event into an empty chunk (partial UTF-8) + a text chunk.
            ev = cap["events"]
            i = next(k for k, e in enumerate(ev) if e.get("completion_tokens") == 3)
            ev.insert(i, {"kind": "empty", "completion_tokens": 2})
            caps.append(cap)
        rc, out = self.audit(recs, caps)
        self.assertEqual(rc, 0, out)

    def test_a_trailing_empty_chunk_belongs_to_the_last_text_event(self):
        recs = [self.held(record(i, True, tokens_per_event=[1, 1, 2])) for i in range(2)]
        caps = []
        for r in recs:
            cap = capture_for(r, True)
            # vLLM's last token was partial UTF-8: an empty chunk after the last text chunk.
            ev = cap["events"]
            i = next(k for k, e in enumerate(ev) if e.get("kind") == "usage")
            ev[i - 1]["completion_tokens"] = 3
            ev.insert(i, {"kind": "empty", "completion_tokens": 4})
            caps.append(cap)
        rc, out = self.audit(recs, caps)
        self.assertEqual(rc, 0, out)
        recs[0]["events"][-1][1] = 1  # a client that dropped that token
        recs[0]["output_tokens"] = 3
        rc, out = self.audit(recs, caps)
        self.assertEqual(rc, 1)
        self.assertIn("event 2: 1 tokens, server's usage says 2", out)

    def test_counting_the_role_chunk_as_an_event_fails(self):
        recs = [self.held(record(i, True)) for i in range(2)]
        caps = [capture_for(r, True) for r in recs]
        recs[0]["events"].insert(0, [6_000, 0])
        rc, out = self.audit(recs, caps)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL journal events == the server's text-bearing chunks", out)

    def test_a_first_token_before_the_hold_fails(self):
        recs = [self.held(record(i, True)) for i in range(2)]
        caps = [capture_for(r, True) for r in recs]
        recs[1]["first_token_ns"] = recs[1]["headers_ns"] + MS  # the role chunk's time
        rc, out = self.audit(recs, caps)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL first token came after the 250 ms hold", out)
        self.assertIn("FAIL no journal event precedes", out)

    def test_an_event_taken_from_a_textless_chunk_fails_even_when_counts_match(self):
        recs = [record(i, False, tokens_per_event=[1, 1, 1]) for i in range(2)]
        caps = [capture_for(r, False) for r in recs]
        # The client stamped its second event at an empty chunk 5 ms before the text came.
        recs[1]["events"][1][0] -= 5_000
        rc, out = self.audit(recs, caps, chat=False, delay=0)
        self.assertEqual(rc, 1)
        self.assertIn("id 1: events [1]", out)

    def test_tokens_not_from_the_server_fail(self):
        recs = [self.held(record(i, True)) for i in range(2)]
        caps = [capture_for(r, True) for r in recs]
        caps[0]["events"][-2]["completion_tokens"] = 5
        rc, out = self.audit(recs, caps)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL output_tokens == the server's final", out)

    def test_a_probe_before_the_run_is_skipped(self):
        recs = [record(i, False) for i in range(2)]
        caps = [capture_for(recs[0], False)] + [capture_for(r, False) for r in recs]
        rc, out = self.audit(recs, caps, chat=False, delay=0)
        self.assertEqual(rc, 0, out)
        self.assertIn("probes", out)


class RefusedChecks(Base):
    """A run against a server that refused ignore_eos: 5 requests, 2 of them ended early."""

    def files(self, stopped=2, line=None, fields=("ignore_eos",), carried=False, refused=1):
        t = self.t
        recs = [record(i, True) for i in range(5)]
        for r in recs[:2]:
            r["max_tokens"] = 16  # asked for 16, got 4: stopped early
        summary = summary_for(recs)
        summary.update(server_refused_fields=list(fields), stopped_early=stopped)
        if line is None:
            line = ("this server refuses ignore_eos: output lengths are not forced; "
                    "2 of 5 requests stopped early")
        out = t.path / "run.out"
        out.write_text(f"some table\n{line}\nsummary: x\n")
        caps = [{"method": "POST", "status": 422, "request": {"ignore_eos": True}}] * refused
        caps += [{"method": "POST", "status": 200,
                  "request": {"stream": True, **({"ignore_eos": True} if carried else {})}}] * 5
        return dict(summary=t.write_json("r.json", summary),
                    journal=t.write_jsonl("r.journal.jsonl", recs), output=out,
                    expect=["ignore_eos"], capture=t.write_jsonl("cap.jsonl", caps))

    def test_a_correct_run_passes(self):
        rc, out = run_checker(cv.cmd_refused, **self.files())
        self.assertEqual(rc, 0, out)

    def test_each_mistake_fails(self):
        mistakes = {
            "wrong early count": dict(stopped=0),
            "no line": dict(line="nothing said"),
            "line with other counts": dict(
                line="this server refuses ignore_eos: output lengths are not forced; "
                     "0 of 5 requests stopped early"),
            "fields not listed": dict(fields=()),
            "field still sent": dict(carried=True),
            "requests of the run refused": dict(refused=9),
        }
        for what, kw in mistakes.items():
            rc, out = run_checker(cv.cmd_refused, **self.files(**kw))
            self.assertEqual(rc, 1, f"{what}: {out}")


class Metrics(Base):
    SCRAPE = """# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="tiny-llama"} 120.0
vllm:generation_tokens_total{engine="1",model_name="tiny-llama"} 8.0
vllm:generation_tokens_created{engine="0",model_name="tiny-llama"} 1.7e9
vllm:generation_tokens_total_other 99
"""

    def test_a_metric_is_summed_over_labels_and_prefixes_do_not_match(self):
        self.assertEqual(cv.metric_value(self.SCRAPE, "vllm:generation_tokens_total"), 128.0)
        self.assertIsNone(cv.metric_value(self.SCRAPE, "vllm:nothing"))

    def test_the_counter_must_grow_by_the_journals_tokens(self):
        t = self.t
        before = t.path / "b.txt"
        before.write_text(self.SCRAPE)
        after = t.path / "a.txt"
        j = t.write_jsonl("j.jsonl", [record(i, False) for i in range(3)])  # 12 tokens
        for grown, extra, want in ((12, None, 0), (20, None, 0), (11, None, 1),
                                   (16, 4, 0), (17, 4, 1)):
            after.write_text(self.SCRAPE.replace("120.0", str(120 + grown)))
            rc, out = run_checker(cv.cmd_metrics, before=before, after=after, journal=[j],
                                  name="vllm:generation_tokens_total", allow_extra=extra)
            self.assertEqual(rc, want, out)


if __name__ == "__main__":
    unittest.main(verbosity=1)
