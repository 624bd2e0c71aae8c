"""MMLU-Redux (Gema et al., 2024, "Are We Done with MMLU?"): 5,700 MMLU test questions
(57 subjects x 100) re-annotated for errors.

Data: aryopg/mmlu-redux annotation CSVs (the 1.0 release), merged into
<data dir>/mmlu_redux/test.jsonl (`error_type_norm`: "ok" for 5,330 rows; the others are
bad question clarity, wrong groundtruth, multiple/no correct answers, expert, bad options).
Hub fallback: edinburgh-dawg/mmlu-redux (not read here; the local file is the reference).
Item id: "<subject>/<index>" (index = row order in the subject's CSV).
Protocol: harness.benchmarks.mc_cot (FuseEval's zero-shot CoT prompt; same as `mmlu`). Every
row is generated and scored against the original MMLU answer.
Metrics: `accuracy` = accuracy on the rows annotated "ok" (the Redux protocol, headline);
`accuracy_all` = on all 5,700; `strict_accuracy` / `strict_accuracy_ok` without the fallback;
per-category accuracy as mc_cot. Both are always reported.
`--limit N`: seeded sample stratified by subject.
VERSION 1.
"""

from __future__ import annotations

from typing import Any

from harness.benchmarks.base import Example
from harness.benchmarks.mc_cot import MultipleChoiceCoT
from harness.data import DataSource, load_rows
from harness.stats import mean_metric


class MMLURedux(MultipleChoiceCoT):
    name = "mmlu-redux"
    VERSION = "1"
    source = DataSource("mmlu_redux/test.jsonl")

    def rows(self) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        return [Example(id=f"{r['subject']}/{r['index']}",
                        data={"question": r["question"], "options": list(r["choices"]), "gold": int(r["answer"]),
                              "category": r["subject"], "error_type": r.get("error_type_norm") or "ok"})
                for r in rows]

    def score(self, examples: list[Example], completions) -> list[dict[str, Any]]:
        out = super().score(examples, completions)
        for s, ex in zip(out, examples, strict=True):
            s["error_type"] = ex.data["error_type"]
        return out

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        seed = self.ctx.seed
        ok = [s for s in scores if s["error_type"] == "ok"]
        out = super().aggregate(scores)
        out["accuracy_all"] = out.pop("accuracy")
        out["strict_accuracy_all"] = out.pop("strict_accuracy")
        out["accuracy"] = {**mean_metric([s["score"] for s in ok], seed=seed), "rows": "error_type == ok",
                           "fallback": self.opts.fallback}
        out["strict_accuracy"] = mean_metric([s["strict"] for s in ok], seed=seed)
        return out
