"""SFT rows and WRPO quadruples from GSM8K train, for the CPU recipe (docs/training.md).

An honest stand-in until the fusion pipeline exists:
  * y_ws ("source" answer): the human gold solution from gsm8k/train.jsonl, rewritten into
    the evaluation's answer format (calculator annotations `<<..>>` removed, `#### N`
    replaced by `\\boxed{N}`), i.e. the answer of a strong "source".
  * y_wt / y_l: the target model's own samples (through the harness runner, so they are
    cached in the store), ranked by the GSM8K answer checker: y_wt = a correct sample,
    y_l = an incorrect one. Prompts without both are dropped and counted.
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


def build_wrpo(rows: list[dict[str, Any]], samples: list[list[str]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """rows[i] with the target's samples[i] -> WRPO quadruples, plus counts of what was kept."""
    out, counts = [], {"prompts": len(rows), "kept": 0, "no_correct_sample": 0, "no_incorrect_sample": 0,
                       "samples": 0, "correct_samples": 0}
    for r, texts in zip(rows, samples):
        gold = gsm8k_gold(r["answer"])
        correct = [t for t in texts if t.strip() and is_equivalent(gold, extract_answer(t))]
        wrong = [t for t in texts if t.strip() and not is_equivalent(gold, extract_answer(t))]
        counts["samples"] += len(texts)
        counts["correct_samples"] += len(correct)
        if not correct:
            counts["no_correct_sample"] += 1
            continue
        if not wrong:
            counts["no_incorrect_sample"] += 1
            continue
        out.append({"prompt": PROMPT.format(question=r["question"]), "y_ws": gold_solution(r["answer"]),
                    "y_wt": min(correct, key=len), "y_l": wrong[0], "gold": gold})
    counts["kept"] = len(out)
    return out, counts


def sample_target(rows: list[dict[str, Any]], model, store, *, n: int, temperature: float, top_p: float,
                  max_tokens: int, seed: int | None, backend: str = "auto", progress: bool = True) -> list[list[str]]:
    """n samples per question from the target through the runner (cached in the store)."""
    from harness.backends import make_backend
    from harness.runner import LazyBackend, generate_all
    from harness.types import Request, SamplingParams

    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    reqs = [Request(id=f"gsm8k-train-{i}", messages=({"role": "user", "content": PROMPT.format(question=r["question"])},),
                    params=params) for i, r in enumerate(rows)]
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
