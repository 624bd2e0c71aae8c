"""AMC 2023 (40 problems from AMC 12A/12B 2023), as FuseChat-3.0's FuseEval scores it
(Math-Eval = the Qwen2.5-Math evaluation harness, sh/eval_fuse.sh).

Data: Qwen2.5-Math evaluation/data/amc23/test.jsonl (the same git blob FuseEval vendors);
offline: <data dir>/amc23/test.jsonl. `answer` is a float (27.0); the gold is written as an
integer when integral ("27"). Item id: `id` (0..39).
Prompt (option `prompt_style`): "system" (default) = Qwen2.5-Math's `llama3-math-cot` /
`qwen25-math-cot` prompt types that FuseEval uses for Llama and Qwen: a system turn "Please
reason step by step, and put your final answer within \\boxed{}." and the problem as the user
turn; "user" = `gemma2-math-cot`: the same sentence appended to the problem in the user turn.
Upstream writes those templates by hand; here the model's own chat template renders the same
turns (a tokenizer template may add its own header, e.g. Llama-3.1's date lines).
Generation: greedy (temperature 0, top_p 1), 2048 new tokens (max_tokens_per_call), n 1;
stops are the template's end-of-turn tokens, which the backend applies.
Metric: accuracy; answer = last \\boxed{} (else the stated/last number) checked with
math-verify (harness.scoring.math) where Qwen2.5-Math uses its own `math_equal` grader.
Bootstrap 95% CI over the 40 problems.
VERSION 1.
"""

from __future__ import annotations

from typing import Literal

from harness.benchmarks.base import Benchmark, BenchmarkOptions, Example, take
from harness.benchmarks.gsm8k import score_math_item
from harness.data import DataSource, load_rows
from harness.stats import mean_metric
from harness.types import Completion, Request, SamplingParams

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


class AMC23Options(BenchmarkOptions):
    prompt_style: Literal["system", "user"] = "system"


def gold_text(answer: float | int | str) -> str:
    """27.0 -> "27"; -1.0 -> "-1"; non-integral floats and strings as written."""
    if isinstance(answer, float) and answer.is_integer():
        return str(int(answer))
    return str(answer).strip()


class AMC23(Benchmark):
    name = "amc23"
    VERSION = "1"
    headline = "accuracy"
    Options = AMC23Options
    scores_every_sample = True
    default_params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=2048)
    source = DataSource("amc23/test.jsonl")

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        return take([Example(id=str(r["id"]), data={"question": r["question"], "gold": gold_text(r["answer"])})
                     for r in rows], limit)

    def to_requests(self, example: Example) -> list[Request]:
        q = example.data["question"]
        if self.opts.prompt_style == "user":
            return [self.chat(example, f"{q}\n{INSTRUCTION}")]
        return [Request(id=self.request_id(example), params=self.params,
                        messages=({"role": "system", "content": INSTRUCTION}, {"role": "user", "content": q}))]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict]:
        return [score_math_item(ex, completions[self.request_id(ex)], ex.data["gold"]) for ex in examples]

    def aggregate(self, scores: list[dict]) -> dict[str, dict]:
        return {"accuracy": mean_metric([s["score"] for s in scores], seed=self.ctx.seed)}
