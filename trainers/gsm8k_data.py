"""SFT rows and WRPO quadruples from GSM8K train, for the CPU recipe (docs/training.md).

An honest stand-in until the fusion pipeline exists:
  * y_ws ("source" answer): the human gold solution from gsm8k/train.jsonl, rewritten into
    the evaluation's answer format (calculator annotations `<<..>>` removed, `#### N`
    replaced by `\\boxed{N}`), i.e. the answer of a strong "source".
  * y_wt / y_l: the target model's own samples (through the harness runner, so they are
    cached in the store), ranked by `answer_reward` (1 if the GSM8K checker accepts the
    answer, else minus the relative error of the number): y_wt = best, y_l = worst; prompts
    whose samples all tie are dropped and counted. A 135M model is rarely correct, so most
    y_wt are "closer" rather than correct answers; the counts say how many were correct.
SFT rows use other prompts than the WRPO rows, and all come from the train split, so the
candidate is evaluated on GSM8K test items it never saw.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from harness.benchmarks.gsm8k import PROMPT
from harness.benchmarks.math_answers import extract_answer, gsm8k_gold, is_equivalent
from harness.errors import UsageError

log = logging.getLogger(__name__)

_CALC = re.compile(r"<<[^>]*>>")


def gold_solution(answer_field: str) -> str:
    """'... <<48/2=24>>24 ...\\n#### 72' -> '... 24 ...\\nThe final answer is \\boxed{72}.'"""
    body, _, final = answer_field.rpartition("####")
    body = _CALC.sub("", body).strip()
    return f"{body}\nThe final answer is \\boxed{{{final.strip()}}}."


def read_train(data_dir: Path) -> list[dict[str, Any]]:
    path = Path(data_dir) / "gsm8k" / "train.jsonl"
    if not path.is_file():
        raise UsageError(f"GSM8K train data not found at {path}; pass --data-dir pointing at the shared benchmarks")
    return [json.loads(line) for line in path.open() if line.strip()]


def build_sft(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": PROMPT.format(question=r["question"])},
                          {"role": "assistant", "content": gold_solution(r["answer"])}],
             "source": "gsm8k-train-gold"} for r in rows]


def answer_reward(gold: str, text: str) -> float:
    """1 for a correct final answer; otherwise minus the relative error of the extracted number
    (capped at 1), and -1 when no number can be extracted. Ranks a small model's answers even
    when none is correct, the way a reward model ranks WRPO's y_wt over y_l."""
    pred = extract_answer(text)
    if is_equivalent(gold, pred):
        return 1.0
    try:
        p, g = float(str(pred).replace(",", "")), float(gold.replace(",", ""))
    except (TypeError, ValueError):
        return -1.0
    return -min(1.0, abs(p - g) / max(abs(g), 1.0))


def build_wrpo(rows: list[dict[str, Any]], samples: list[list[str]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """rows[i] with the target's samples[i] -> WRPO quadruples, plus counts of what was kept.
    y_wt = the best-rewarded sample, y_l = the worst; kept when their rewards differ."""
    out, counts = [], {"prompts": len(rows), "kept": 0, "not_sampled": 0, "no_reward_gap": 0, "samples": 0,
                       "correct_samples": 0, "kept_with_correct_y_wt": 0}
    for r, texts in zip(rows, samples):
        texts = [t for t in texts if t.strip()]
        if not texts:
            counts["not_sampled"] += 1
            continue
        gold = gsm8k_gold(r["answer"])
        scored = sorted(((answer_reward(gold, t), -len(t), t) for t in texts), reverse=True)
        counts["samples"] += len(texts)
        counts["correct_samples"] += sum(1 for s in scored if s[0] == 1.0)
        best, worst = scored[0], scored[-1]
        if best[0] <= worst[0]:
            counts["no_reward_gap"] += 1
            continue
        counts["kept_with_correct_y_wt"] += best[0] == 1.0
        out.append({"prompt": PROMPT.format(question=r["question"]), "y_ws": gold_solution(r["answer"]),
                    "y_wt": best[2], "y_l": worst[2], "gold": gold, "reward_y_wt": best[0], "reward_y_l": worst[0]})
    counts["kept"] = len(out)
    return out, counts


def sample_target(rows: list[dict[str, Any]], model, store, *, n: int, temperature: float, top_p: float,
                  max_tokens: int, seed: int | None, backend: str = "auto", progress: bool = True,
                  cached_only: bool = False) -> list[list[str]]:
    """n samples per question from the target through the runner (cached in the store)."""
    from harness.backends import make_backend
    from harness.runner import LazyBackend, generate_all
    from harness.types import Request, SamplingParams

    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    reqs = [Request(id=f"gsm8k-train-{i}", messages=({"role": "user", "content": PROMPT.format(question=r["question"])},),
                    params=params) for i, r in enumerate(rows)]
    if cached_only:  # only what the store already holds (e.g. a sampling run stopped early)
        from harness.store import generation_key

        out = []
        for r in reqs:
            keys = [generation_key(model.fingerprint, model.template_hash, r, i) for i in range(n)]
            hits = store.lookup_generations(keys)
            out.append([hits[k]["text"] for k in keys] if all(k in hits for k in keys) else [])
        return out
    lazy = LazyBackend(lambda: make_backend(backend, model))
    try:
        done = generate_all(reqs, model, store, lazy, progress=progress, description="sampling target answers")
    finally:
        lazy.close()
    return [done[r.id].texts if not done[r.id].error else [] for r in reqs]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
