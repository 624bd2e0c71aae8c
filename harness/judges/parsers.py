"""Verdict parsers, one per judge protocol, written to match upstream code exactly.

Each returns None for a reply that does not parse; callers count those and keep the raw
text. Nothing here coerces an unclear reply into a verdict.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

# ---- AlpacaEval 2: weighted_alpaca_eval_gpt4_turbo -------------------------------------
# alpaca_eval/completion_parsers.py::logprob_parser with numerator "m", denominators m/M,
# is_binarize=False: preference = 2 - P(m) / (P(m) + P(M)), in [1, 2]; 1 = output_1 better.
ALPACA_NUMERATOR = "m"
ALPACA_TOKENS = ("m", "M")


def alpaca_logprob_preference(logprobs: list[dict] | None) -> float | None:
    """Preference in [1, 2] from the first generated token's top logprobs, or None when
    neither label is among them (upstream returns NaN there)."""
    if not logprobs:
        return None
    top = logprobs[0].get("top") or {}
    found = {t: lp for t, lp in top.items() if t in ALPACA_TOKENS and lp is not None}
    if not found:
        return None
    num = found.get(ALPACA_NUMERATOR, -math.inf)
    m = max(found.values())
    denom = m + math.log(sum(math.exp(v - m) for v in found.values()))
    return 2.0 - math.exp(num - denom)


def alpaca_argmax_preference(text: str | None) -> float | None:
    """The fallback for backends without logprobs: the generated label itself (1 or 2).
    Upstream's `is_binarize` semantics; results flag every item judged this way."""
    if text is None:
        return None
    label = text.strip()
    return {"m": 1.0, "M": 2.0}.get(label)


# ---- Arena-Hard ------------------------------------------------------------------------
# arena-hard-auto v0.1 (gen_judgment.py::get_score with judge_config.yaml's regex): the
# verdict is the label inside [[...]]; the single-bracket form is upstream's second pattern
# (config/arena-hard-v0.1.yaml). Several *different* labels in one reply are ambiguous.
ARENA_PATTERNS = (re.compile(r"\[\[([AB<>=]+)\]\]"), re.compile(r"\[([AB<>=]+)\]"))
ARENA_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")


def arena_verdict(text: str | None) -> str | None:
    if not text:
        return None
    for pattern in ARENA_PATTERNS:
        matches = [m.strip("\n") for m in pattern.findall(text) if m != ""]
        if not matches:
            continue
        if len(set(matches)) != 1:
            return None
        label = matches[0]
        return label if label in ARENA_LABELS else None
    return None


def has_label(text: str | None) -> bool:
    """Whether a reply contains any bracketed label at all (upstream continues those without)."""
    return bool(text) and any(p.search(text) for p in ARENA_PATTERNS)


# ---- MT-Bench --------------------------------------------------------------------------
# FastChat llm_judge/common.py: one_score_pattern, then the backup pattern; literal_eval.
MT_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
MT_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


def mt_bench_rating(text: str | None) -> float | None:
    if not text:
        return None
    match = MT_PATTERN.search(text) or MT_PATTERN_BACKUP.search(text)
    if not match:
        return None
    value: Any = ast.literal_eval(match.groups()[0])
    return float(value)
