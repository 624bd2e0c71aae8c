"""MMLU (Hendrycks et al., 2021) as cais/mmlu: what FuseChat-3.0's tables call "MMLU-redux".

FuseEval's released loader (General-Eval/MC-Eval `load_mmlu`) reads data/mmlu_no_train "all",
a copy of cais/mmlu without auxiliary_train, for the row its paper labels MMLU-redux; this
benchmark reproduces that row. The real MMLU-Redux is `mmlu-redux`.
Data: cais/mmlu "all" test (14,042 items, 57 subjects, 4 options); offline:
<data dir>/mmlu/test.jsonl (answer = int index). Item id: the 0-based row index.
Protocol: harness.benchmarks.mc_cot (FuseEval's zero-shot CoT prompt, greedy, 2048 tokens,
stop "Question:", extraction chain + fixed-index fallback (4 options -> D), strict accuracy
beside it). Category = subject.
Metric: micro accuracy over items.
`--limit N`: seeded sample stratified by subject.
VERSION 1.
"""

from __future__ import annotations

from harness.benchmarks.base import Example
from harness.benchmarks.mc_cot import MultipleChoiceCoT
from harness.data import DataSource, load_rows


class MMLU(MultipleChoiceCoT):
    name = "mmlu"
    VERSION = "1"
    source = DataSource("mmlu/test.jsonl", hub_id="cais/mmlu", hub_config="all", hub_split="test")

    def rows(self) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        return [Example(id=str(i), data={"question": r["question"], "options": list(r["choices"]),
                                         "gold": int(r["answer"]), "category": r["subject"]})
                for i, r in enumerate(rows)]
