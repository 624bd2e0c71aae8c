"""MMLU-Pro (Wang et al., 2024, "MMLU-Pro: A More Robust and Challenging Multi-Task Language
Understanding Benchmark"), as FuseChat-3.0's FuseEval scores it.

Data: TIGER-Lab/MMLU-Pro test (12,032 items, 14 categories, up to 10 options), FuseEval's
vendored copy; offline: <data dir>/mmlu_pro/test.jsonl. Options equal to "N/A" are dropped
(FuseEval's preprocess; this copy has none). Item id: `question_id`.
Protocol: harness.benchmarks.mc_cot (zero-shot CoT, FuseEval's prompt, greedy, 2048 tokens,
stop "Question:", extraction chain + fixed-index fallback, strict accuracy beside it).
Metric: micro accuracy over items (FuseEval: total correct / total).
`--limit N`: seeded sample stratified by category (the file is category-ordered).
VERSION 1.
"""

from __future__ import annotations

from harness.benchmarks.base import Example
from harness.benchmarks.mc_cot import MultipleChoiceCoT
from harness.data import DataSource, load_rows


class MMLUPro(MultipleChoiceCoT):
    name = "mmlu-pro"
    VERSION = "1"
    source = DataSource("mmlu_pro/test.jsonl", hub_id="TIGER-Lab/MMLU-Pro", hub_split="test")

    def rows(self) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        return [Example(id=str(r["question_id"]),
                        data={"question": r["question"], "options": [o for o in r["options"] if o != "N/A"],
                              "gold": int(r["answer_index"]), "category": r["category"]})
                for r in rows]
