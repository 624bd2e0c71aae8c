"""Multiple-choice CoT prompt, letter extraction and FuseEval's fallback.

Shared by MMLU-Pro, MMLU, MMLU-Redux and GPQA-Diamond (and by fusion data that wants MC
verdicts). Source: FuseChat-3.0 FuseEval General-Eval/MC-Eval/evaluate_from_local.py
(read at 18907305772/FuseAI@e9cc974), itself adapted from TIGER-AI-Lab/MMLU-Pro.

Extraction chain (FuseEval's, = TIGER's compute_accuracy level 2), on the completion only:
  1. the FIRST `answer is \\(?([A-J])\\)?`  ("The best answer is D", "the answer is (B)");
  2. else the first line matching `.*[aA]nswer:\\s*([A-J])` (the last "Answer: X" on that line);
  3. else the LAST standalone letter `\\b[A-J]\\b` anywhere in the text.
Letters A-J are accepted whatever the option count, as upstream (an "E" on a 4-option item
is extracted and simply wrong). Nothing found: None.

Fallback for unextracted answers (FuseEval `save_res`): `random.seed(12345)` is re-seeded
before every draw, so the "guess" is a fixed index per option count (4 options -> D). The
item counts as correct iff the gold index equals it. Strict accuracy (no fallback) is
always reported beside it.
"""

from __future__ import annotations

import random
import re
from functools import cache

from pydantic import BaseModel, ConfigDict

LETTERS = "ABCDEFGHIJKLMNOP"  # FuseEval's `choices`; options beyond J cannot be extracted

INSTRUCTION = ("Please read the following multiple-choice questions and provide the most likely correct answer "
               "based on the options given.\n")
# Meta's Llama-3.1-8B-Instruct-evals zero-shot CoT block, as FuseEval copies it (byte for byte).
COT_SUFFIX = ("- For simple problems:\nDirectly provide the answer with minimal explanation.\n\n- For complex "
              "problems:\nUse this step-by-step format:\n## Step 1: [Concise description]\n[Brief explanation]\n"
              "## Step 2: [Concise description]\n[Brief explanation]\n\nRegardless of the approach, always "
              "conclude with:\nThe best answer is [the_answer_letter].\nwhere the [the_answer_letter] is the "
              "correct letter choice.\n\nAnswer: Let's think step by step.")
STOP = ("Question:",)

_ANSWER_IS = re.compile(r"answer is \(?([A-J])\)?")
# zero-width, so overlapping candidates ("Answer:Answer: B") are all seen, as upstream's `.*` sees them
_ANSWER_COLON = re.compile(r"(?=[aA]nswer:\s*([A-J]))")
_LETTER = re.compile(r"\b[A-J]\b")


class Extraction(BaseModel):
    """What the chain found in one completion: the letter (None when nothing matched) and
    which step matched ("answer_is", "answer_colon", "last_letter", or None)."""

    model_config = ConfigDict(frozen=True)
    letter: str | None
    rule: str | None


def zero_shot_prompt(question: str, options: list[str]) -> str:
    """FuseEval's zero-shot CoT user message (options written "X. text" with no strip)."""
    lines = "".join(f"{LETTERS[i]}. {opt}\n" for i, opt in enumerate(options))
    return f"{INSTRUCTION}Question:\n{question}\nOptions:\n{lines}{COT_SUFFIX}"


def extract_letter(text: str) -> Extraction:
    """FuseEval's three-step chain, in linear time: upstream's step-2 `.*` prefix and step-3
    look-ahead `\\b[A-J]\\b(?!.*\\b[A-J]\\b)` are quadratic on long completions; the forms
    here pick the same letters (tests compare them with upstream's regexes)."""
    m = _ANSWER_IS.search(text)
    if m:
        return Extraction(letter=m.group(1), rule="answer_is")
    colon = _answer_colon(text)
    if colon:
        return Extraction(letter=colon, rule="answer_colon")
    letters = _LETTER.findall(text)
    if letters:
        return Extraction(letter=letters[-1], rule="last_letter")
    return Extraction(letter=None, rule=None)


def _answer_colon(text: str) -> str | None:
    """Upstream's `re.search(r'.*[aA]nswer:\\s*([A-J])', text)` without its quadratic scan:
    the search succeeds on the first line holding an "answer:" match (`.` stops at newlines,
    `\\s*` may cross them), and greedy `.*` picks the last match starting on that line."""
    found = None
    line_end = -1
    for m in _ANSWER_COLON.finditer(text):
        if found is None:
            line_end = text.find("\n", m.start())
            line_end = len(text) if line_end < 0 else line_end
        elif m.start() > line_end:
            break
        found = m.group(1)
    return found


@cache
def fallback_index(n_options: int) -> int:
    """FuseEval's guess for an unextracted answer: random.seed(12345); randint(0, n-1)."""
    return random.Random(12345).randint(0, n_options - 1)


class Verdict(BaseModel):
    """One completion's verdict. `strict` counts unextracted as wrong; `with_fallback` applies
    FuseEval's fixed-index guess to unextracted answers."""

    model_config = ConfigDict(frozen=True)
    letter: str | None
    rule: str | None
    gold: str
    strict: bool
    with_fallback: bool


def judge_letter(text: str, gold_index: int, n_options: int) -> Verdict:
    got = extract_letter(text)
    gold = LETTERS[gold_index]
    strict = got.letter == gold
    fallback = strict if got.letter else fallback_index(n_options) == gold_index
    return Verdict(letter=got.letter, rule=got.rule, gold=gold, strict=strict, with_fallback=fallback)
