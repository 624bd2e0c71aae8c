"""AIME 2024 and AIME 2025 (30 problems each; integer answers 0-999).

Data: AIME 2024 = the AI-MO/aimo-validation-aime problems (Qwen2.5-Math copy), AIME 2025 =
MathArena's transcription; offline: <data dir>/aime24/test.jsonl and aime25/test.jsonl
(normalised: `id` like "2024-I-1", `answer` a string integer). Item id: `id`.
Hub: HuggingFaceH4/aime_2024 and opencompass/AIME2025 are read for online users.
Prompt: as GSM8K (step by step, answer in \\boxed{}).
Generation: temperature 0.6, top_p 0.95, n samples (default 8; 32 for reasoning models),
max tokens large (reasoning models need 32k; set it in the suite).
Metrics: avg@n (the mean of per-sample correctness = pass@1 estimate) and cons@n (majority
vote over the n extracted answers). Both with bootstrap CIs over problems.
"""

from __future__ import annotations

from harness.benchmarks.base import Benchmark, Example, take
from harness.benchmarks.gsm8k import PROMPT
from harness.data import DataSource, load_rows
from harness.scoring.math import extract_answer, is_equivalent, majority
from harness.stats import mean_metric
from harness.types import Completion, Request, SamplingParams


class _AIME(Benchmark):
    VERSION = "1"
    headline = "avg@n"
    scores_every_sample = True
    default_params = SamplingParams(n=8, temperature=0.6, top_p=0.95, max_tokens=8192, seed=0)
    source: DataSource

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        # Hub copies name fields differently ("question" vs "problem", no id): normalise here.
        examples = [Example(id=str(r.get("id", i)),
                            data={"question": r.get("problem") or r.get("question"),
                                  "gold": str(r["answer"]).strip().lstrip("0") or "0"})
                    for i, r in enumerate(rows)]
        return take(examples, limit)

    def to_requests(self, example: Example) -> list[Request]:
        return [self.chat(example, PROMPT.format(question=example.data["question"]))]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict]:
        out = []
        for ex in examples:
            c = completions[self.request_id(ex)]
            gold = ex.data["gold"]
            extracted = [extract_answer(t) for t in c.texts] if not c.error else []
            correct = [is_equivalent(gold, a) for a in extracted]
            vote = majority(extracted)
            out.append({
                "id": ex.id, "gold": gold, "extracted": extracted, "correct_per_sample": correct,
                "n": len(correct), "score": sum(correct) / len(correct) if correct else 0.0,
                "cons_correct": bool(vote is not None and is_equivalent(gold, vote)), "vote": vote,
                "correct": bool(vote is not None and is_equivalent(gold, vote)),
                "finish_reason": c.finish_reasons[0] if c.finish_reasons else None, "error": c.error,
            })
        return out

    def aggregate(self, scores: list[dict]) -> dict[str, dict]:
        n = max((s["n"] for s in scores), default=0)
        return {
            "avg@n": {**mean_metric([s["score"] for s in scores], seed=self.ctx.seed), "samples": n},
            "cons@n": {**mean_metric([float(s["cons_correct"]) for s in scores], seed=self.ctx.seed), "samples": n},
        }


class AIME24(_AIME):
    name = "aime24"
    source = DataSource("aime24/test.jsonl", hub_id="HuggingFaceH4/aime_2024", hub_split="train")


class AIME25(_AIME):
    name = "aime25"
    source = DataSource("aime25/test.jsonl", hub_id="opencompass/AIME2025", hub_config="AIME2025-I",
                        hub_split="test")
