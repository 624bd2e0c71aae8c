"""MATH-500 (Lightman et al., 2023, "Let's Verify Step by Step"; subset of Hendrycks MATH).

Data: HuggingFaceH4/MATH-500, split test (500 items); offline: <data dir>/math500/test.jsonl.
Item id: `unique_id` (e.g. "test/precalculus/807.json").
Prompt: the problem, then "Please reason step by step, and put your final answer within \\boxed{}."
Generation: greedy, max 2048 tokens.
Metric: accuracy with math-verify (symbolic); the boxed answer is preferred. Bootstrap 95% CI.
"""

from __future__ import annotations

from harness.benchmarks.base import Example
from harness.benchmarks.gsm8k import SingleAnswerMath
from harness.data import DataSource


class MATH500(SingleAnswerMath):
    name = "math500"
    VERSION = "1"
    source = DataSource("math500/test.jsonl", hub_id="HuggingFaceH4/MATH-500", hub_split="test")

    def example(self, index: int, row: dict) -> Example:
        return Example(id=row["unique_id"], data={"question": row["problem"], "gold": row["answer"],
                                                  "subject": row.get("subject"), "level": row.get("level")})
