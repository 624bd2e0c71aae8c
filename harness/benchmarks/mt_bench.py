"""MT-Bench (Zheng et al., 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena";
lm-sys/FastChat llm_judge).

Data: 80 questions x 2 turns, <data dir>/mt_bench/question.jsonl (FastChat); GPT-4
reference answers for math/reasoning/coding, mt_bench/reference_answer/gpt-4.jsonl; judge
prompts mt_bench/judge_prompts.jsonl (read from the data, so they are upstream's bytes).
Item id: the question_id. Turn 2 is request "<id>#t2": it sees the model's own turn-1 answer.
Generation: temperature per category as FastChat (writing/roleplay 0.7, stem/humanities
0.1, others 0; option `temperature_per_category: false` keeps the suite's), max 4096
(FuseEval); sampled turns get the run's seed.
Judge: single-answer grading, temperature 0, max_tokens 2048 (option `judge_max_tokens`):
single-v1 / single-v1-multi-turn, and the reference-guided single-math-v1(-multi-turn) for
math, reasoning and coding. Rating: `[[x]]`, else `[x]` (FastChat's two patterns); no
match = unparseable (FastChat's -1), kept raw, counted and left out.
Metrics: overall (mean over every judged turn, FastChat's "score"), turn 1, turn 2 and
per category, each with a 95% bootstrap CI, on the 1-10 scale. Published judge: gpt-4
(FuseChat-3.0 used gpt-4-0125-preview; set `published_judge` in the suite).
Per item: score = mean of the item's judged turns (NaN when none).
VERSION 1.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from harness.benchmarks.base import Example, JudgedOptions, take, with_params
from harness.data import DataSource, load_rows, read_jsonl, resolve_data_dir
from harness.errors import DataNotFoundError
from harness.judges import Judge, JudgeCall, JudgedBenchmark, missing_judge
from harness.judges.parsers import mt_bench_rating
from harness.stats import mean_metric
from harness.types import Completion, Request, SamplingParams

log = logging.getLogger(__name__)

PUBLISHED_JUDGE = "gpt-4"
PROMPT_VERSION = "fastchat-llm_judge-single-v1"
# FastChat llm_judge/common.py
TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
               "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")


def judge_messages(prompt: dict[str, str], **fields: str) -> tuple[dict[str, str], ...]:
    """FastChat run_judge_single: system prompt + the template filled with str.format."""
    return ({"role": "system", "content": prompt["system_prompt"]},
            {"role": "user", "content": prompt["prompt_template"].format(**fields)})


class MTBenchOptions(JudgedOptions):
    """Keys this benchmark reads from `options` (unknown keys are errors at suite load)."""

    temperature_per_category: bool = True


class MTBench(JudgedBenchmark):
    Options = MTBenchOptions
    name = "mt-bench"
    VERSION = "1"
    headline = "overall"
    default_params = SamplingParams(temperature=0.0, max_tokens=4096)
    PROMPT_VERSION = PROMPT_VERSION
    PUBLISHED_JUDGE = PUBLISHED_JUDGE
    # constrained_verdicts: the reply is the rating line the judge prompt asks for ("Rating: [[5]]")
    VERDICT_REGEX = r"Rating: \[\[([1-9]|10)\]\]"
    source = DataSource("mt_bench/question.jsonl")

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        refs = {str(r["question_id"]): r["choices"][0]["turns"] for r in self._data("reference_answer/gpt-4.jsonl")}
        examples = [Example(id=str(r["question_id"]),
                            data={"category": r["category"], "turns": r["turns"], "reference": refs.get(
                                str(r["question_id"]))}) for r in rows]
        return take(examples, limit)

    def _data(self, rel: str) -> list[dict[str, Any]]:
        root = resolve_data_dir(self.ctx.data_dir)
        path = root / "mt_bench" / rel if root else None
        if path is None or not path.exists():
            raise DataNotFoundError(f"MT-Bench needs <data dir>/mt_bench/{rel}; pass --data-dir ../shared/benchmarks")
        return read_jsonl(path)

    def _params(self, example: Example) -> SamplingParams:
        if not self.options.get("temperature_per_category", True):
            return self.params
        t = TEMPERATURE.get(example.data["category"], 0.7)
        p = with_params(self.params, temperature=t)
        if t > 0 and p.seed is None:
            p = with_params(p, seed=self.ctx.seed)
        return p

    def _messages(self, example: Example, completions: dict[str, Completion]) -> tuple[dict[str, str], ...]:
        q1, q2 = example.data["turns"][:2]
        a1 = completions[self.request_id(example)].text
        return ({"role": "user", "content": q1}, {"role": "assistant", "content": a1},
                {"role": "user", "content": q2})

    def to_requests(self, example: Example) -> list[Request]:
        return [self.chat(example, example.data["turns"][0], params=self._params(example))]

    def next_requests(self, example: Example, completions: dict[str, Completion]) -> list[Request]:
        t1, t2 = self.request_id(example), self.request_id(example, "#t2")
        if t2 in completions or t1 not in completions or completions[t1].error:
            return []
        return [Request(id=t2, messages=self._messages(example, completions), params=self._params(example))]

    def score(self, examples: list[Example], completions: dict[str, Completion],
              judge: Judge | None = None) -> list[dict[str, Any]]:
        if judge is None:
            raise missing_judge(self.name, self.published_judge)
        prompts = {p["name"]: p for p in self._data("judge_prompts.jsonl")}
        params = self.judge_params(judge, SamplingParams(
            temperature=0.0, max_tokens=int(self.options.get("judge_max_tokens") or 2048)))
        items, calls, where = [], [], []
        for ex in examples:
            cat, (q1, q2) = ex.data["category"], ex.data["turns"][:2]
            c1, c2 = completions.get(self.request_id(ex)), completions.get(self.request_id(ex, "#t2"))
            item: dict[str, Any] = {"id": ex.id, "category": cat, "score": math.nan,
                                    "turns": [{"rating": None}, {"rating": None}]}
            items.append(item)
            ref = ex.data["reference"] if cat in NEED_REF_CATS else None
            if cat in NEED_REF_CATS and not ref:
                log.warning("mt-bench %s (%s): no reference answer; judged without one", ex.id, cat)
            for turn, c in ((0, c1), (1, c2)):
                if c is None or c.error:
                    item["turns"][turn]["error"] = f"generation failed: {c.error if c else 'no turn-1 answer'}"
                    continue
                a1 = c1.text
                if turn == 0:
                    name = "single-math-v1" if ref else "single-v1"
                    fields = {"question": q1, "answer": a1, **({"ref_answer_1": ref[0]} if ref else {})}
                else:
                    name = "single-math-v1-multi-turn" if ref else "single-v1-multi-turn"
                    fields = {"question_1": q1, "question_2": q2, "answer_1": a1, "answer_2": c.text,
                              **({"ref_answer_1": ref[0], "ref_answer_2": ref[1]} if ref else {})}
                item["turns"][turn]["judge_prompt"] = name
                calls.append(JudgeCall(id=self.request_id(ex, f"#judge-t{turn + 1}"),
                                       messages=judge_messages(prompts[name], **fields), params=params))
                where.append((item, turn))
        replies = judge.run(calls, self.PROMPT_VERSION)
        for (item, turn), reply in zip(where, replies):
            rec = item["turns"][turn]
            rec["judgment"] = reply.text
            if reply.error:
                rec["judge_error"] = reply.error
                continue
            rec["rating"] = mt_bench_rating(reply.text)
            if rec["rating"] is None:
                rec["unparseable"] = True
        for item in items:
            ratings = [t["rating"] for t in item["turns"] if t["rating"] is not None]
            if ratings:
                item["score"] = sum(ratings) / len(ratings)
        return items

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return mt_bench_metrics(scores, seed=self.ctx.seed)

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["temperature_per_category"] = bool(self.options.get("temperature_per_category", True))
        return out


def mt_bench_metrics(scores: list[dict[str, Any]], seed: int = 0) -> dict[str, dict[str, Any]]:
    """FastChat show_result: the mean rating over every judged (question, turn), per turn,
    and per category; unparseable and errored turns are left out and counted."""
    judged = [(s["category"], i, t["rating"]) for s in scores for i, t in enumerate(s["turns"])
              if t.get("rating") is not None]
    out = {"overall": mean_metric([r for _, _, r in judged], scale=1.0, seed=seed),
           "turn_1": mean_metric([r for _, i, r in judged if i == 0], scale=1.0, seed=seed),
           "turn_2": mean_metric([r for _, i, r in judged if i == 1], scale=1.0, seed=seed)}
    for cat in sorted({s["category"] for s in scores}):
        out[f"category_{cat}"] = mean_metric([r for c, _, r in judged if c == cat], scale=1.0, seed=seed)
    n_turns = sum(len(s["turns"]) for s in scores)
    out["judge_unparseable"] = {"value": sum(bool(t.get("unparseable")) for s in scores for t in s["turns"]),
                                "n": n_turns}
    out["judge_errors"] = {"value": sum("judge_error" in t for s in scores for t in s["turns"]), "n": n_turns}
    return out
