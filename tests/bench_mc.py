"""pytest-benchmark: multiple-choice scoring of all 12,032 MMLU-Pro items (FuseEval's
extraction chain + verdicts), from synthetic CoT completions built from the real questions.
The end-to-end figure is `harness score mmlu-pro --completions F` (docs/performance.md).

    pytest tests/bench_mc.py --benchmark-only -q
"""

from __future__ import annotations

import random

from harness.benchmarks.base import Context
from harness.benchmarks.mmlu_pro import MMLUPro
from harness.types import Completion


def _completions(bench, examples):
    rng = random.Random(0)
    out = {}
    for ex in examples:
        letter = chr(65 + rng.randrange(len(ex.data["options"])))
        body = "## Step 1: Restate\n" + ex.data["question"][:600] + "\n## Step 2: Compare\n" + " ".join(
            f"Option {chr(65 + i)}: {o[:80]}." for i, o in enumerate(ex.data["options"]))
        end = rng.choice([f"\n\nThe best answer is {letter}.", f"\nAnswer: {letter}", "\nunsure"])
        out[bench.request_id(ex)] = Completion(texts=[body + end], finish_reasons=["stop"])
    return out


def test_score_all_mmlu_pro(benchmark, data_dir):
    bench = MMLUPro(ctx=Context(data_dir=data_dir))
    examples = bench.load()
    assert len(examples) == 12032
    comps = _completions(bench, examples)
    scores = benchmark.pedantic(bench.score, args=(examples, comps), rounds=3, iterations=1)
    assert len(scores) == 12032 and all(s["n"] == 1 for s in scores)
