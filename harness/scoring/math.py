"""Answer extraction and checking shared by the math benchmarks and the fusion verifier.

The order of preference avoids the traps listed in DESIGN.md §4:
  1. the LAST \\boxed{...} (balanced braces, so nested \\frac{}{} survive);
  2. the last "The (final) answer is X" / "Answer: X" / "#### X" statement;
  3. the last number in the text.
Equivalence is decided by math-verify (symbolic), never by string equality.
"""

from __future__ import annotations

import re
from collections import Counter

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE
)
_HASHES = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, with nested braces balanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            return text[start:i - 1].strip()
    return None


def last_number(text: str) -> str | None:
    nums = _NUMBER.findall(text)
    if not nums:
        return None
    return nums[-1].replace("$", "").replace(",", "").rstrip(".")


def extract_answer(text: str) -> str | None:
    """The model's final answer as a string, or None when there is none."""
    boxed = last_boxed(text)
    if boxed:
        return boxed
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip()
    stated = _ANSWER_IS.findall(text)
    if stated:
        ans = stated[-1].strip().strip("$").strip()
        num = last_number(ans)
        # "The answer is 42 apples" -> 42; "The answer is \frac{1}{2}" stays symbolic
        return num if num is not None and not re.search(r"\\[a-z]+", ans) else ans
    return last_number(text)


def gsm8k_gold(answer_field: str) -> str:
    """GSM8K's reference: the number after '####' on the last line, commas removed."""
    return answer_field.split("####")[-1].strip().replace(",", "")


# math-verify's 5 s default bounds pathological expressions, but on a loaded box the
# first parse (grammar build, sympy import) alone can exceed it and a correct answer was
# scored wrong; 20 s still bounds the pathological case.
_VERIFY_TIMEOUT_S = 20


def _parse(s: str):
    from math_verify import parse

    s = s.strip()
    if not s.startswith("$"):
        s = f"${s}$"
    return parse(s, parsing_timeout=_VERIFY_TIMEOUT_S)


def is_equivalent(gold: str, predicted: str | None) -> bool:
    """Symbolic equivalence by math-verify; numbers with thousands separators, units,
    percent and degree signs are normalised by its LaTeX normaliser."""
    if predicted is None or not predicted.strip():
        return False
    from math_verify import verify

    g, p = _parse(gold), _parse(predicted.replace("\\!", ""))
    if not g or not p:
        return gold.strip() == predicted.strip()
    return bool(verify(g, p, timeout_seconds=_VERIFY_TIMEOUT_S))


def majority(answers: list[str | None]) -> str | None:
    """Most common non-empty answer (ties: the earliest), the 'cons@n' vote."""
    valid = [a for a in answers if a]
    if not valid:
        return None
    counts = Counter(valid)
    best = max(counts.values())
    return next(a for a in valid if counts[a] == best)
