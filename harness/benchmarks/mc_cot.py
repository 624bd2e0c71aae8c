"""The zero-shot multiple-choice CoT protocol that FuseEval runs for MMLU-Pro, MMLU and
GPQA-Diamond (General-Eval/MC-Eval/evaluate_from_local.py); MMLU-Redux reuses it.

Prompt, extraction chain and fallback: harness.scoring.multiple_choice (its docstring cites
the source). One user message through the model's chat template. Difference from FuseEval:
for Qwen2.5 FuseEval cuts the template's default system turn out of the rendered prompt;
here the model's template is used as is.
Generation: greedy, max 2048 new tokens, stop "Question:" (FuseEval).
Per item: `score` = correct with FuseEval's fallback for unextracted answers (option
`fallback: false` makes it strict); `strict` always recorded. With n samples per item
(`harness score` files with repeated ids) `score` is the mean over samples.
Metrics: `accuracy` (micro over items, the headline), `strict_accuracy` (unextracted =
wrong), `extracted_rate`, and per-category accuracy (`by_category`).
`--limit N`: a seeded sample stratified by category (option `limit_sample`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.benchmarks.base import Benchmark, Example, SampledOptions
from harness.scoring.multiple_choice import STOP, judge_letter, zero_shot_prompt
from harness.stats import mean_metric
from harness.types import Completion, Request, SamplingParams


class MCOptions(SampledOptions):
    # FuseEval's fixed-index guess for answers the chain cannot extract (strict accuracy is
    # reported either way)
    fallback: bool = True


class MultipleChoiceCoT(Benchmark):
    """Subclasses provide rows() -> list of Example with data {question, options (list of
    str), gold (int index), category}."""

    headline = "accuracy"
    default_params = SamplingParams(temperature=0.0, max_tokens=2048, stop=STOP)
    Options = MCOptions
    scores_every_sample = True

    def rows(self) -> list[Example]:
        raise NotImplementedError

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        return self.take_sample(self.rows(), limit, seed, lambda ex: ex.data["category"])

    def to_requests(self, example: Example) -> list[Request]:
        return [self.chat(example, zero_shot_prompt(example.data["question"], example.data["options"]))]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict[str, Any]]:
        return [self.score_item(ex, completions[self.request_id(ex)]) for ex in examples]

    def score_item(self, ex: Example, c: Completion) -> dict[str, Any]:
        item: dict[str, Any] = {"id": ex.id, "category": ex.data["category"], "gold": None}
        if c.error or not c.texts:
            return {**item, "score": 0.0, "strict": 0.0, "extracted": [], "rules": [],
                    "error": c.error or "no completion", "n": 0}
        verdicts = [judge_letter(t, ex.data["gold"], len(ex.data["options"])) for t in c.texts]
        fallback = self.opts.fallback
        counted = [v.with_fallback if fallback else v.strict for v in verdicts]
        n = len(verdicts)
        return {**item, "gold": verdicts[0].gold, "extracted": [v.letter for v in verdicts],
                "rules": [v.rule for v in verdicts], "n": n,
                "score": sum(counted) / n, "strict": sum(v.strict for v in verdicts) / n,
                "extracted_rate": sum(v.letter is not None for v in verdicts) / n,
                "finish_reason": c.finish_reasons[0] if c.finish_reasons else None}

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        seed = self.ctx.seed
        by_cat: dict[str, list[float]] = defaultdict(list)
        for s in scores:
            by_cat[s["category"]].append(s["score"])
        return {
            "accuracy": {**mean_metric([s["score"] for s in scores], seed=seed), "fallback": self.opts.fallback},
            "strict_accuracy": mean_metric([s["strict"] for s in scores], seed=seed),
            "extracted_rate": {"value": 100.0 * sum(s.get("extracted_rate", 0.0) for s in scores)
                               / max(len(scores), 1), "n": len(scores)},
            "errors": {"value": sum(1 for s in scores if s.get("error")), "n": len(scores)},
            "by_category": {"value": None, "n": len(scores), "categories": {
                k: {"value": 100.0 * sum(v) / len(v), "n": len(v)} for k, v in sorted(by_cat.items())}},
        }
