"""MATH-500 (Lightman et al., 2023, "Let's Verify Step by Step"; subset of Hendrycks MATH).

Data: HuggingFaceH4/MATH-500, split test (500 items); offline: <data dir>/math500/test.jsonl.
Item id: `unique_id` (e.g. "test/precalculus/807.json").
Prompt: the problem, then "Please reason step by step, and put your final answer within \\boxed{}."
Generation: greedy, max 2048 tokens.
Metric: accuracy with math-verify (symbolic); the boxed answer is preferred. Bootstrap 95% CI.
"""

from __future__ import annotations

from harness.benchmarks.base import Benchmark, Example, take
from harness.benchmarks.gsm8k import PROMPT, score_math_item
from harness.data import DataSource, load_rows
from harness.stats import mean_metric
from harness.types import Completion, Request, SamplingParams


class MATH500(Benchmark):
    name = "math500"
    VERSION = "1"
    headline = "accuracy"
    default_params = SamplingParams(temperature=0.0, max_tokens=2048)
    source = DataSource("math500/test.jsonl", hub_id="HuggingFaceH4/MATH-500", hub_split="test")

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        examples = [Example(id=r["unique_id"], data={"question": r["problem"], "gold": r["answer"],
                                                     "subject": r.get("subject"), "level": r.get("level")})
                    for r in rows]
        return take(examples, limit)

    def to_requests(self, example: Example) -> list[Request]:
        return [self.chat(example, PROMPT.format(question=example.data["question"]))]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict]:
        return [score_math_item(ex, completions[self.request_id(ex)], ex.data["gold"]) for ex in examples]

    def aggregate(self, scores: list[dict]) -> dict[str, dict]:
        return {"accuracy": mean_metric([s["score"] for s in scores], seed=self.ctx.seed)}
