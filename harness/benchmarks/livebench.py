"""LiveBench (White et al., 2024, "LiveBench: A Challenging, Contamination-Free LLM
Benchmark"), release 2024-08-31 ("LiveBench-0831") as FuseChat-3.0's FuseEval runs it
(General-Eval/LiveBench, a fork of LiveBench/LiveBench).

Data: hub only. Questions come from the datasets livebench/<category> (split test) for the six
categories math, reasoning, coding, language, data_analysis, instruction_following; a local
copy at <data dir>/livebench/<category>.jsonl (the hub rows as JSON lines) takes precedence.
Offline without that copy the data is missing: in a suite, mark the entry `optional: true`
so the run skips it with the places it looked (that is what `fusechat3` and `smoke` do).
Release set (option `release`, default "2024-08-31"): every question with
livebench_release_date <= release, minus those whose livebench_removal_date <= release
(LiveBench's load_questions).
Item id: `question_id`.
Prompt: the question's first turn as the user message, through the model's chat template.
Generation: greedy, 4096 new tokens (FuseEval's vLLM script).
Scoring: LiveBench's own ground-truth scorers (a dozen task-specific ones: math contests,
AMPS-Hard, zebra puzzles, connections, table reformatting, LCB-style coding tests, IFEval for
instruction following...), imported from the `livebench` package
(pip install git+https://github.com/LiveBench/LiveBench; not on PyPI): they are used, not
ported. <think>...</think> spans are removed first, as upstream does.
Metrics: per task mean -> per category mean of its task means -> `average` = mean of the
category means (show_livebench_result.py), on the 0-100 scale; per-category values reported.
VERSION 1.
"""

from __future__ import annotations

import re
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from harness.benchmarks.base import Benchmark, BenchmarkOptions, Example, take
from harness.data import DataSource, load_rows
from harness.errors import UsageError
from harness.stats import mean_metric
from harness.types import Completion, Request, SamplingParams

CATEGORIES = ("math", "reasoning", "coding", "language", "data_analysis", "instruction_following")
INSTALL = "pip install git+https://github.com/LiveBench/LiveBench"


class LiveBenchOptions(BenchmarkOptions):
    release: str = "2024-08-31"
    categories: list[str] = list(CATEGORIES)


def in_release(row: dict[str, Any], release: str) -> bool:
    """LiveBench's release filter (dates compared as YYYY-MM-DD text)."""
    released = str(row.get("livebench_release_date", ""))[:10]
    removed = row.get("livebench_removal_date")
    removed = str(removed)[:10] if removed else ""
    return bool(released) and released <= release and not (removed and removed <= release)


def average_of_categories(scores: list[dict[str, Any]]) -> tuple[float | None, dict[str, float]]:
    """show_livebench_result: task means, category means of task means, mean of categories."""
    tasks: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in scores:
        if s.get("score") is not None:
            tasks[(s["category"], s["task"])].append(float(s["score"]))
    cats: dict[str, list[float]] = defaultdict(list)
    for (cat, _), vals in tasks.items():
        cats[cat].append(sum(vals) / len(vals))
    means = {c: 100.0 * sum(v) / len(v) for c, v in sorted(cats.items())}
    return (sum(means.values()) / len(means) if means else None), means


def _scorers():
    try:
        from livebench.gen_ground_truth_judgment import play_a_match_gt
        from livebench.process_results.instruction_following.utils import (
            instruction_following_process_results,
        )
    except ImportError as e:
        raise UsageError(f"scoring LiveBench needs LiveBench's own scorers ({e}). Fix: {INSTALL}") from None
    return play_a_match_gt, instruction_following_process_results


class LiveBench(Benchmark):
    name = "livebench"
    VERSION = "1"
    headline = "average"
    Options = LiveBenchOptions
    default_params = SamplingParams(temperature=0.0, max_tokens=4096)

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        unknown = set(self.opts.categories) - set(CATEGORIES)
        if unknown:
            raise UsageError(f"livebench: unknown categories {sorted(unknown)}; valid: {', '.join(CATEGORIES)}")
        examples, revisions = [], []
        for cat in self.opts.categories:
            rows, rev = load_rows(self.name, DataSource(f"livebench/{cat}.jsonl", hub_id=f"livebench/{cat}",
                                                        hub_split="test"), self.ctx.data_dir)
            revisions.append(rev)
            examples += [Example(id=str(r["question_id"]), data=r) for r in rows if in_release(r, self.opts.release)]
        self.dataset_revision = ";".join(revisions)
        return take(examples, limit)

    def to_requests(self, example: Example) -> list[Request]:
        return [self.chat(example, example.data["turns"][0])]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict[str, Any]]:
        play_a_match_gt, if_results = _scorers()
        out, by_if_task = [], defaultdict(list)
        for ex in examples:
            c = completions[self.request_id(ex)]
            q = ex.data
            item = {"id": ex.id, "category": q["category"], "task": q["task"], "score": None}
            out.append(item)
            if c.error:
                item["error"] = c.error
                continue
            answer = re.sub(r"<think>.*?</think>", "", c.text, flags=re.DOTALL)
            if q["category"] == "instruction_following":
                by_if_task[q["task"]].append((item, q, answer))
                continue
            match = SimpleNamespace(question=q, model="candidate", answer={"choices": [{"turns": [answer]}]})
            try:
                item["score"] = float(play_a_match_gt(match, output_file=None)["score"])
            except Exception as e:  # recorded, never turned into a score
                item["error"] = f"{type(e).__name__}: {e}"[:300]
        for task, group in by_if_task.items():
            answers = {"candidate": {q["question_id"]: {"choices": [{"turns": [a.strip()]}]} for _, q, a in group}}
            got = {str(r["question_id"]): r["score"] for r in if_results([q for _, q, _ in group], answers, task,
                                                                         "candidate", False)}
            for item, _, _ in group:
                item["score"] = got.get(item["id"])
        return out

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        avg, cats = average_of_categories(scores)
        scored = [s for s in scores if s.get("score") is not None]
        return {"average": {"value": avg, "n": len(scored), "categories": cats},
                "item_mean": mean_metric([s["score"] for s in scored], seed=self.ctx.seed),
                "unscored": {"value": len(scores) - len(scored), "n": len(scores)}}
