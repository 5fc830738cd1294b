#!/usr/bin/env python3
"""check_features.py must fail on the mistakes it is there to catch (stdlib unittest; the
structured case runs only where `jsonschema` imports, as in vLLM's environment)."""

from __future__ import annotations

import importlib.util
import json
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_features", HERE / "check_features.py")
cf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cf)

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
          "additionalProperties": False}


class Base(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        cf.RESULTS.clear()

    def write(self, name: str, obj) -> Path:
        p = self.dir / name
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
        return p

    def run_cmd(self, argv: list[str]) -> bool:
        cf.RESULTS.clear()
        code = cf.main(argv)
        return code == 0


class Prefix(Base):
    def scrape(self, name: str, hits: float, queries: float) -> Path:
        return self.write(name, f'vllm:prefix_cache_hits_total{{engine="0"}} {hits}\n'
                                f'vllm:prefix_cache_queries_total{{engine="0"}} {queries}\n')

    def argv(self, shared_rate, base_rate=0.0, hits_after=900.0) -> list[str]:
        res = lambda rate: {"completed": 16, "failed": 0,  # noqa: E731
                            "telemetry": {"prefix_cache_hit_rate": rate}}
        return ["prefix", "--baseline", str(self.write("b.json", res(base_rate))),
                "--shared", str(self.write("s.json", res(shared_rate))),
                "--before", str(self.scrape("0.prom", 0, 0)),
                "--mid", str(self.scrape("1.prom", 0, 1000)),
                "--after", str(self.scrape("2.prom", hits_after, 2000))]

    def test_good(self):
        self.assertTrue(self.run_cmd(self.argv(0.85)))

    def test_missing_or_wrong_rate_and_no_hits_fail(self):
        self.assertFalse(self.run_cmd(self.argv(None)))
        self.assertFalse(self.run_cmd(self.argv(0.2)))  # the counters say 0.9
        self.assertFalse(self.run_cmd(self.argv(0.85, base_rate=0.9)))
        self.assertFalse(self.run_cmd(self.argv(0.85, hits_after=0.0)))


class MultiTurn(Base):
    def journal(self, second_prompt: int, second_sent: int = 200) -> Path:
        head = {"servebench_journal": 1}
        rec = lambda turn, sent, fin, prompt, out: {  # noqa: E731
            "id": turn, "phase": "measured", "conversation": 0, "turn": turn, "sent_ns": sent,
            "finished_ns": fin, "usage": {"prompt_tokens": prompt, "completion_tokens": out},
            "outcome": {"outcome": "success"}}
        lines = [head, rec(0, 0, 100, 50, 10), rec(1, second_sent, 300, second_prompt, 10)]
        return self.write("j.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")

    def argv(self, journal: Path, hits_after: float = 40.0) -> list[str]:
        before = self.write("a.prom", "vllm:prefix_cache_hits_total 0\n")
        after = self.write("b.prom", f"vllm:prefix_cache_hits_total {hits_after}\n")
        return ["multiturn", "--journal", str(journal), "--before", str(before),
                "--after", str(after)]

    def test_good(self):
        self.assertTrue(self.run_cmd(self.argv(self.journal(second_prompt=70))))

    def test_history_not_sent_back_or_overlapping_turns_or_no_hits_fail(self):
        # 55 < 50 + 10: the reply was not part of the next prompt.
        self.assertFalse(self.run_cmd(self.argv(self.journal(second_prompt=55))))
        # The second turn went out before the first ended.
        self.assertFalse(self.run_cmd(self.argv(self.journal(70, second_sent=50))))
        self.assertFalse(self.run_cmd(self.argv(self.journal(70), hits_after=0.0)))


@unittest.skipUnless(importlib.util.find_spec("jsonschema"), "needs jsonschema (vLLM's env)")
class Structured(Base):
    def argv(self, texts, valid, rate, *flags) -> list[str]:
        result = {"generated_texts": texts, "errors": [""] * len(texts),
                  "structured_output": {"checked": len(texts), "valid": valid},
                  "correct_rate": rate}
        return ["structured", "--summary", str(self.write("r.json", result)),
                "--schema", str(self.write("schema.json", SCHEMA)), *flags]

    def test_good(self):
        texts = ['{"a": 1}', '{"a": "x"}', "{"]
        self.assertTrue(self.run_cmd(self.argv(texts, 1, 100 / 3, "--expect-valid")))
        self.assertTrue(self.run_cmd(self.argv(["free text"], 0, 0.0, "--expect-ignored")))

    def test_a_wrong_count_or_rate_or_expectation_fails(self):
        texts = ['{"a": 1}', '{"a": "x"}']
        self.assertFalse(self.run_cmd(self.argv(texts, 2, 100.0)))  # one is not valid
        self.assertFalse(self.run_cmd(self.argv(texts, 1, 100.0)))  # the rate is 50 %
        self.assertFalse(self.run_cmd(self.argv(['{"b": 1}'], 0, 0.0, "--expect-valid")))
        self.assertFalse(self.run_cmd(self.argv(['{"a": 1}'], 1, 100.0, "--expect-ignored")))


if __name__ == "__main__":
    unittest.main()
