"""GSM8K (Cobbe et al., 2021, "Training Verifiers to Solve Math Word Problems").

Data: openai/gsm8k, config "main", split test (1319 items); offline: <data dir>/gsm8k/test.jsonl.
Item id: the 0-based row index of the test split, as a string.
Prompt: zero-shot chain of thought asking for the answer in \\boxed{} (FuseEval style).
Generation: greedy, max 2048 tokens.
Metric: accuracy; the answer is the last \\boxed{} else the last number, checked with
math-verify against the number after '####'. 95% CI by bootstrap over items.
"""

from __future__ import annotations

from harness.benchmarks.base import Benchmark, Example, take
from harness.data import DataSource, load_rows
from harness.scoring.math import extract_answer, gsm8k_gold, is_equivalent
from harness.stats import mean_metric
from harness.types import Completion, Request, SamplingParams

PROMPT = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


class SingleAnswerMath(Benchmark):
    """Greedy, one sample, one gold answer per item: GSM8K and MATH-500 differ only in data."""

    headline = "accuracy"
    scores_every_sample = True
    default_params = SamplingParams(temperature=0.0, max_tokens=2048)
    source: DataSource

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        return take([self.example(i, r) for i, r in enumerate(rows)], limit)

    def example(self, index: int, row: dict) -> Example:
        raise NotImplementedError

    def to_requests(self, example: Example) -> list[Request]:
        return [self.chat(example, PROMPT.format(question=example.data["question"]))]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict]:
        return [score_math_item(ex, completions[self.request_id(ex)], ex.data["gold"]) for ex in examples]

    def aggregate(self, scores: list[dict]) -> dict[str, dict]:
        return {"accuracy": mean_metric([s["score"] for s in scores], seed=self.ctx.seed)}


class GSM8K(SingleAnswerMath):
    name = "gsm8k"
    VERSION = "1"
    source = DataSource("gsm8k/test.jsonl", hub_id="openai/gsm8k", hub_config="main", hub_split="test")

    def example(self, index: int, row: dict) -> Example:
        return Example(id=str(index), data={"question": row["question"], "gold": gsm8k_gold(row["answer"])})


def score_math_item(example: Example, completion: Completion, gold: str) -> dict:
    """Scoring shared by GSM8K and MATH-500: `correct`/`extracted` are the first sample's;
    with n > 1 samples (`harness score` files with repeated ids) `score` is the mean
    correctness over samples and the per-sample lists are added."""
    if completion.error:
        return {"id": example.id, "score": 0.0, "correct": False, "extracted": None, "gold": gold,
                "error": completion.error, "finish_reason": None}
    extracted = [extract_answer(t) for t in completion.texts or [""]]
    correct = [is_equivalent(gold, a) for a in extracted]
    item = {"id": example.id, "score": sum(correct) / len(correct), "correct": correct[0],
            "extracted": extracted[0], "gold": gold,
            "finish_reason": completion.finish_reasons[0] if completion.finish_reasons else None}
    if len(correct) > 1:
        item.update(n=len(correct), correct_per_sample=correct, extracted_per_sample=extracted)
    return item
