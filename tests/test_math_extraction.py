"""Answer extraction and equivalence on the tricky cases of DESIGN.md §4."""

import pytest

from harness.scoring.math import extract_answer, gsm8k_gold, is_equivalent, last_boxed, majority

EXTRACT_CASES = [
    # (model text, expected extracted string)
    ("So the total is \\boxed{18}.", "18"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("nested: \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
    ("first \\boxed{3} then corrected \\boxed{5}", "5"),  # several boxed: the last wins
    ("We pay $5 then $7. The answer is 12.", "12"),
    ("Answer: 7\nWait, recompute. Answer: 9", "9"),  # the last 'Answer:' line, not the first
    ("blah\n#### 1,234", "1,234"),
    ("It costs $1,234.50 in total", "1234.50"),
    ("The temperature dropped to -15 degrees", "-15"),
    ("no digits at all", None),
    ("\\boxed {42}", "42"),
    ("\\fbox{7}", "7"),
    ("The final answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("The answer is 18 dollars.", "18"),
]


@pytest.mark.parametrize("text,expected", EXTRACT_CASES)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


EQUIV_CASES = [
    ("18", "18", True),
    ("1000", "1,000", True),  # thousands separator
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac{1}{2}", "0.5", True),
    ("-3", "-3", True),
    ("-3", "3", False),  # sign matters
    ("18", "18 \\text{ dollars}", True),  # units
    ("10", "10\\text{ cm}", True),
    ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("5", "6", False),
    ("18", None, False),
    ("18", "", False),
    ("\\sqrt{2}", "2^{1/2}", True),
]


@pytest.mark.parametrize("gold,pred,ok", EQUIV_CASES)
def test_is_equivalent(gold, pred, ok):
    assert is_equivalent(gold, pred) is ok


def test_unbalanced_boxed_is_ignored():
    assert last_boxed("\\boxed{3} and \\boxed{4") == "3"


def test_gsm8k_gold_strips_separators():
    assert gsm8k_gold("She pays <<2*3=6>>6.\n#### 1,200") == "1200"


def test_majority_ties_take_earliest_and_skip_empty():
    assert majority(["3", None, "4", "4", "3"]) == "3"
    assert majority([None, ""]) is None
    assert majority(["7", "8", "8"]) == "8"
