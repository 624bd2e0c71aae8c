"""TheoremQA's answer extraction and grading, as the dataset's authors score it.

Source read: TIGER-AI-Lab/TheoremQA@acfc9686aa9b49f3c8f189364a9a9ee9c53da039 `utils.py`
(`answer_clean`, `extract_theoremqa_answer`, `compare_answer_with_groundtruth`),
`number_utils.py` (`clean_units`, `number_it`, `within_eps`, `compare_two_numbers`,
`compare_two_list`) and `data_loader.py::load_dataset` (what ground truth is passed); the same
rules live in open-compass/opencompass@a5acc4bba3b658f151617a3b393602110fb7a740
`opencompass/datasets/TheoremQA/{utils,number_utils,main}.py` (TheoremQA_postprocess_v3,
TheoremQAEvaluatorV3). Re-implemented here from those rules, not copied.

Extraction (`extract_answer`, on the completion text):
  1. If a trigger ("The answer is:", "The answer is", "the answer is") occurs more than once,
     keep only the text before the first blank line (the model ran on into another shot).
  2. Split on the triggers; the text after the last one is the answer ("answer_flag"); with no
     trigger the whole text is searched instead. Strip newlines, a trailing "." and "/".
  3. Keyword rules first, on the lower-cased answer: containing "yes" or "true" -> "True";
     else "no" or "false" -> "False" (a substring test: "5 nodes" becomes "False", as
     upstream); else containing "(a)".."(f)" -> kept as written.
  4. Else with a trigger: the text after the last "=", units cleaned (pi -> 3.14, % -> /100,
     $ ¥ ° °C " C" removed), parsed by latex2sympy and evaluated to a Python number; if that
     fails, "<number> <unit>" keeps the number. Without a trigger: the last number in the text.
Grading (`is_correct`): an option gold ("(a)".."(f)") is correct iff it occurs in the answer;
else a case-insensitive string match; else, when the gold has a numeric value: an integer gold
needs round(answer) == gold, a float gold a relative tolerance of 4% (|answer - gold| <=
0.04 |gold|, so a 0 gold needs exactly 0); a list gold needs an answer written as a tuple
"(x, y)", the same length, and every element within those rules after sorting both lists.

Which golds have a numeric value is where the two upstream evaluators differ (`grader`):
  - "tiger_lab" (data_loader.py): integer, float and list golds; a bool gold matches by string
    only ("True"/"False", any case).
  - "opencompass" (TheoremQAEvaluatorV3): integer, float and bool golds (eval("True") is 1, so
    an answer of "1" matches a True gold); a list gold matches by string only. Extraction
    writes a parsed tuple as a Python list ("[1,2,3]" -> "[1, 2, 3]"; 455bb05, 2025-04-21),
    but two ascending numbers parse as an interval and stay as written ("[0,5]" does not
    match "[0, 5]"), and elements must match the gold's digits exactly.

Our reading / deliberate differences:
  - Upstream evaluates the parsed expression with Python `eval` (model output reaching eval);
    here a small arithmetic evaluator gives the same value for numbers, + - * / // % **, unary
    signs, tuples, lists, sets and the names upstream has in scope (sqrt sin cos log exp factorial pi
    e, and E = 2.718: in number_it, and in extraction under "tiger_lab", whose utils.py
    star-imports them), and treats anything else as the failure upstream's NameError is.
    Exponents above 10,000 and factorials above 5,000 count as failures (upstream would hang).
  - The parser is latex2sympy2_extended (math-verify's LaTeX parser; OpenCompass switched to it
    in f66b0b3, 2025-04-02). TIGER-Lab's run.py used the older latex2sympy2, whose antlr pin
    conflicts with math-verify; the two parse some strings differently (latex2sympy2_extended
    reads "[3.33, 1.33]" as a tuple and "[0, 5]" as an interval).
  - OpenCompass bounds the extraction parse at 1 s with SIGALRM; no time bound here.
math-verify itself is not used for the verdict: it has no relative tolerance, integer
rounding, option-substring or yes/no rules, and the benchmark's numbers are defined by these.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

Grader = Literal["tiger_lab", "opencompass"]

TRIGGERS = ("The answer is:", "The answer is", "the answer is")
OPTIONS = ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)")
RELATIVE_TOLERANCE = 0.04  # number_utils.within_eps
_LAST_NUMBER = re.compile(r"-?\d*\.?\d+")
_NUMBER_THEN_WORDS = re.compile(r"-?[\d\.]+\s\D+$")
_NUMBER_THEN_TOKEN = re.compile(r"-?[\d\.]+\s[^\s]+$")

# (pattern, replacement) in upstream's order: pi becomes 3.14 (not math.pi), percent a division.
_PI_RULES = ((re.compile(r"(?<![\d}])\\?π"), "3.14"), (re.compile(r"(\d)(\\?π)"), r"\1*3.14"),
             (re.compile(r"\{(\\?π)\}"), "3.14"), (re.compile(r"\*(\\?π)"), "*3.14"))
_UNIT_REPLACEMENTS = (("%", "/100"), ("$", ""), ("¥", ""), ("°C", ""), (" C", ""), ("°", ""))

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_MAX_EXPONENT = 10_000
_MAX_FACTORIAL = 5_000
_MAX_BITS = 1_000_000


def _factorial(n: Any) -> int:
    if n > _MAX_FACTORIAL:
        raise ValueError(f"factorial({n}) is beyond {_MAX_FACTORIAL}")
    return math.factorial(n)


# The names upstream's number_utils.py has in scope when number_it evaluates a string.
NUMBER_NAMES: Mapping[str, Any] = {
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "log": math.log, "exp": math.exp,
    "factorial": _factorial, "pi": math.pi, "e": math.e, "E": 2.718}


def arithmetic_eval(expr: str, names: Mapping[str, Any] = {}) -> Any:  # noqa: B006 (read only)
    """The value Python's eval gives `expr` for arithmetic on literals, tuples, lists, sets and
    the given names; ValueError for anything else (attribute access, strings, other names)."""
    return _eval_node(ast.parse(expr.strip(), mode="eval").body, names)


def _eval_node(node: ast.AST, names: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex, bool)):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):  # sympy prints a FiniteSet as "{1}"
        items = [_eval_node(n, names) for n in node.elts]
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval_node(node.operand, names))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval_node(node.left, names), _eval_node(node.right, names)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and callable(names.get(node.func.id))
            and not node.keywords):
        return names[node.func.id](*(_eval_node(a, names) for a in node.args))
    raise ValueError(f"not arithmetic: {ast.dump(node)[:80]}")


def _check_power(base: Any, exponent: Any) -> None:
    """Refuse powers that would take minutes or gigabytes (10**10**10); upstream would hang."""
    if isinstance(exponent, (int, float)) and abs(exponent) > _MAX_EXPONENT:
        raise ValueError(f"exponent {exponent} is beyond {_MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and base.bit_length() * abs(exponent) > _MAX_BITS:
        raise ValueError(f"an integer power over {_MAX_BITS} bits")


def _latex2sympy(text: str) -> Any:
    from latex2sympy2_extended import latex2sympy  # heavy (antlr, sympy): loaded on first use

    return latex2sympy(text)


def clean_units(text: str) -> str:
    """Upstream's clean_units: pi to 3.14, percent to /100, currency and degree signs removed."""
    text = text.replace("\\pi", "π")
    for pattern, replacement in _PI_RULES:
        text = pattern.sub(replacement, text)
    for old, new in _UNIT_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def _to_number(value: Any) -> int | float | None:
    """number_utils.floatify: a float of it, as int when integral; None when not a number."""
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return round(f) if f.is_integer() else f


def number_it(answer: Any) -> int | float | None:
    """The answer as a number (upstream number_it): numbers pass; strings are unit-cleaned,
    parsed by latex2sympy and evaluated with NUMBER_NAMES; a tuple or list gives its first."""
    if isinstance(answer, (int, float)):
        return answer
    text = clean_units(answer)
    try:
        text = str(_latex2sympy(text))
    except Exception:  # noqa: BLE001 - upstream keeps the cleaned text on any parse failure
        pass
    if _to_number(text) is not None:
        return _to_number(text)
    try:
        value = arithmetic_eval(text, NUMBER_NAMES)
    except Exception:  # noqa: BLE001 - SyntaxError, ValueError, ZeroDivisionError, OverflowError...
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return _to_number(value)


def _extract_from(answer: str, after_trigger: bool, names: Mapping[str, Any], tuples_as_lists: bool) -> str:
    """upstream extract_theoremqa_answer: keyword rules, then a number."""
    low = answer.lower()
    if "yes" in low or "true" in low:
        return "True"
    if "no" in low or "false" in low:
        return "False"
    if any(opt in low for opt in OPTIONS):
        return answer
    if not after_trigger:
        numbers = _LAST_NUMBER.findall(answer)
        return numbers[-1] if numbers else ""
    answer = clean_units(answer.split("=")[-1].strip())
    try:
        value = arithmetic_eval(str(_latex2sympy(answer)), names)
        return str(list(value)) if tuples_as_lists and isinstance(value, tuple) else str(value)
    except Exception:  # noqa: BLE001 - upstream: any parse or eval failure falls to the regexes
        if _NUMBER_THEN_WORDS.match(answer) or _NUMBER_THEN_TOKEN.match(answer):
            return answer.split(" ")[0]
        return answer


def extract_answer(text: str, grader: Grader = "tiger_lab") -> str:
    """The answer upstream's answer_clean takes from a completion ("" when none). The parsed
    answer is evaluated with the names upstream's module has in scope: TIGER-Lab's utils.py
    star-imports number_utils (sqrt, pi, E...), OpenCompass's utils.py does not; OpenCompass
    writes a tuple value as a list ("(5, 0)" -> "[5, 0]")."""
    text = text.strip("\n")
    if any(text.count(t) > 1 for t in TRIGGERS):
        text = text.split("\n\n")[0]
    parts = re.split("|".join(TRIGGERS), text)
    after_trigger = len(parts) > 1
    answer = parts[-1].strip("\n").rstrip(".").rstrip("/").strip(" ")
    tiger = grader == "tiger_lab"
    return _extract_from(answer, after_trigger, NUMBER_NAMES if tiger else {}, not tiger).rstrip(".").rstrip("/")


def gold_value(answer: Any, answer_type: str, grader: Grader) -> Any:
    """The numeric ground truth the grader compares against, or None for string-only."""
    if answer_type in ("integer", "float"):
        return answer
    if answer_type == "bool":
        return answer if grader == "opencompass" else None
    if answer_type.startswith("list of"):
        return list(answer) if grader == "tiger_lab" else None
    return None


def _numbers_match(pred: Any, gold: Any) -> bool:
    """compare_two_numbers: an integer gold (bools too) needs round(pred) == gold; a float
    gold a relative tolerance; NaN and non-numbers never match."""
    if not isinstance(pred, (int, float)) or math.isnan(pred):
        return False
    if isinstance(gold, int):
        return math.isfinite(pred) and round(pred) == gold
    eps = abs(gold) * RELATIVE_TOLERANCE
    return gold - eps <= pred <= gold + eps  # upstream's form, so edge cases round alike


def _lists_match(pred: list, gold: list) -> bool:
    if len(pred) != len(gold) or not all(isinstance(x, (int, float)) for x in pred):
        return False
    return all(_numbers_match(p, g) for p, g in zip(sorted(pred), sorted(gold), strict=True))


def is_correct(answer: str, gold_text: str, gold_num: Any = None) -> bool:
    """compare_answer_with_groundtruth: `gold_text` is str(Answer), `gold_num` gold_value()."""
    if gold_text.lower() in OPTIONS:
        return gold_text.lower() in answer.lower()
    if answer.lower() == gold_text.lower():
        return True
    if gold_num is None:
        return False
    if isinstance(gold_num, (int, float)):
        return _numbers_match(number_it(answer), gold_num)
    if not (answer.startswith("(") and answer.endswith(")")):
        return False
    try:
        values = [number_it(v) for v in arithmetic_eval(answer)]
    except Exception:  # noqa: BLE001 - upstream: a tuple that does not evaluate is wrong
        return False
    return _lists_match(values, gold_num)
