"""MBPP+ (EvalPlus) on the real data and the real sandbox: every canonical solution passes its
base and plus tests, a solution tuned to the base inputs fails plus, v0.2.0's task list,
EvalPlus's input types and oracle, the prefilled prompt and the reply extraction."""

from __future__ import annotations

import os
import random

import pytest

from harness.backends.base import render_chat
from harness.benchmarks.base import Context, Example
from harness.benchmarks.evalplus_mbpp import deserialize_inputs, mbpp_assert_test
from harness.benchmarks.evalplus_prompt import PREFILL
from harness.benchmarks.mbpp_plus import MBPPPlus, program_from_reply
from harness.types import Completion


@pytest.fixture(scope="module")
def smollm_tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


@pytest.fixture(scope="module")
def bench(data_dir):
    return MBPPPlus(ctx=Context(data_dir=data_dir))


def _complete(b, examples, text_for):
    return {b.request_id(e): Completion(texts=[text_for(e)], finish_reasons=["stop"]) for e in examples}


def test_versions(data_dir):
    v1 = MBPPPlus(ctx=Context(data_dir=data_dir)).load()
    v2b = MBPPPlus(ctx=Context(data_dir=data_dir), options={"version": "v0.2.0"})
    v2 = v2b.load()
    assert len(v1) == 399 and len(v2) == 378
    assert {"Mbpp/83", "Mbpp/783"} <= {e.id for e in v1} - {e.id for e in v2}
    p734 = next(e for e in v2 if e.id == "Mbpp/734").data["prompt"]
    assert "geeksforgeeks" not in p734 and "+v0.2.0-edits" in v2b.dataset_revision


def test_inputs_get_evalplus_types():
    assert deserialize_inputs("Mbpp/2", [[[1, 2], [3]]]) == [[(1, 2), (3,)]]
    assert deserialize_inputs("Mbpp/124", [[1, 2]]) == [(1.0, complex(2))]
    assert deserialize_inputs("Mbpp/3", [[7]]) == [[7]]


def test_prompt_has_the_evalplus_prefill(bench, smollm_tokenizer):
    ex = bench.load(limit=1)[0]
    (r,) = bench.to_requests(ex)
    assert r.messages[0]["content"].startswith("Please provide a self-contained Python script")
    assert r.messages[0]["content"].endswith("```\n" + ex.data["prompt"].strip() + "\n```\n")
    assert r.messages[1] == {"role": "assistant", "content": PREFILL}
    assert "\n```" in r.params.stop and "\n#" in r.params.stop and r.params.max_tokens == 2048
    text = smollm_tokenizer.decode(render_chat(smollm_tokenizer, r.messages, None, "smollm"))
    assert text.endswith("<|im_start|>assistant\n" + PREFILL)  # the model continues inside the fence


def test_reply_extraction_continues_the_prefill():
    reply = "def f(x):\n    return x + 1\n\nassert f(1) == 2\n"
    assert program_from_reply(reply, "f", prefilled=True).strip() == "def f(x):\n    return x + 1"
    assert program_from_reply("no code here", "f", prefilled=False) is None


# All 399 take ~6 min of sandbox time on 2 idle cores, so CI checks a seeded sample;
# HARNESS_FULL_CANONICAL=1 checks every task.
FULL = os.environ.get("HARNESS_FULL_CANONICAL") == "1"
# Mbpp/255's plus set asks for 1.66 M tuples of 77 items in one call (over 1 GB as objects, about
# 170 MB encoded), over the sandbox's 4 MiB transport cap: that result crosses as its digest and
# passes by digest equality (harness.sandbox.plain; tests/test_plain_digest.py). The full run
# includes it (about 100 s of it on 2 cores).


def test_canonical_solutions_pass_base_and_plus(bench):
    exs = bench.load()
    if not FULL:
        exs = random.Random(0).sample(exs, 30)
    scores = bench.score(exs, _complete(bench, exs, lambda e: e.data["canonical_solution"].lstrip("\n")))
    failing = [(s["id"], s["outcomes"], s["reason"]) for s in scores if s["score"] != 1.0]
    assert not failing, ([f[0] for f in failing], failing[:5])
    m = bench.aggregate(scores)
    assert m["pass@1"]["value"] == 100.0 and m["pass@1_base"]["value"] == 100.0 and m["pass@1"]["n"] == len(exs)


@pytest.mark.skipif(not FULL, reason="about 150 s on 2 cores: set HARNESS_FULL_CANONICAL=1")
def test_mbpp_255_plus_result_over_the_cap_is_judged_by_digest(bench):
    """Mbpp/255's plus set returns 1.66 M tuples in one call: the canonical solution passes by
    digest equality, one missing the last tuple passes base and fails plus."""
    ex = next(e for e in bench.load() if e.id == "Mbpp/255")
    wrong = ("from itertools import combinations_with_replacement\n"
             "def combinations_colors(l, n):\n    out = list(combinations_with_replacement(l, n))\n"
             "    return out[:-1] if n > 50 else out\n")
    texts = [ex.data["canonical_solution"].lstrip("\n"), wrong]
    (s,) = bench.score([ex], {bench.request_id(ex): Completion(texts=texts, finish_reasons=["stop", "stop"])})
    assert s["outcomes"] == ["passed", "failed"] and s["n_passed_base"] == 2, s


def test_solution_tuned_to_base_inputs_passes_base_and_fails_plus(bench):
    ex = next(e for e in bench.load(limit=3) if e.id == "Mbpp/3")  # is_not_prime; base: 1, 2, 10, 35, 37
    wrong = "def is_not_prime(n):\n    return n in (1, 10, 35)\n"
    right = ex.data["canonical_solution"]
    comps = {bench.request_id(ex): Completion(texts=[wrong, right], finish_reasons=["stop", "stop"])}
    (s,) = bench.score([ex], comps)
    assert s["n_passed_base"] == 2 and s["n_passed"] == 1
    assert s["outcomes"] == ["failed", "passed"] and s["score"] == 0.5 and s["base_score"] == 1.0


def test_oracle_float_tolerance(bench):
    # a float result off by 1e-9 passes (EvalPlus enforces atol 1e-6 for float outputs); off by 1e-3 fails
    ex = Example(id="Mbpp/x", data={"task_id": "Mbpp/1", "entry_point": "half", "atol": 0,
                                    "prompt": "", "canonical_solution": "def half(x):\n    return x / 2\n",
                                    "base_input": [[1.0], [3.0]], "plus_input": [[5.0]]})
    close = "def half(x):\n    return x / 2 + 1e-9\n"
    far = "def half(x):\n    return x / 2 + 1e-3\n"
    comps = {bench.request_id(ex): Completion(texts=[close, far], finish_reasons=["stop", "stop"])}
    (s,) = bench.score([ex], comps)
    assert s["outcomes"] == ["passed", "failed"]


def test_mbpp_assert_test_for_fusion_pools():
    t = mbpp_assert_test(["assert f(1) == 2"], "import math")
    assert t.startswith("import math\n\n") and "def check(candidate):\n    assert f(1) == 2" in t


def test_ground_truth_runs_in_a_budgeted_child(monkeypatch):
    """Expected outputs come from a forked child: literal outputs as their repr, and None (the
    sandboxed test then calls the reference itself) for outputs too large, too slow, too much
    memory, or not literals, without touching the harness process."""
    import harness.benchmarks.evalplus_mbpp as ev

    monkeypatch.setattr(ev, "_expected_cache", {})
    assert ev.expected_outputs("def f(x):\n    return [x, x * 0.5]\n", "f", [(1,), (3,)]) == "[[1, 0.5], [3, 1.5]]"
    assert ev.expected_outputs("def f(x):\n    return object()\n", "f", [(1,)]) is None  # repr not a literal
    monkeypatch.setattr(ev, "EXPECTED_MAX_CHARS", 1000)
    assert ev.expected_outputs("def f(n):\n    return 'x' * n\n", "f", [(10,), (5000,)]) is None
    monkeypatch.setattr(ev, "EXPECTED_MEMORY_BYTES", 256 << 20)
    assert ev.expected_outputs("def f(n):\n    return len(bytearray(n))\n", "f", [(2 << 30,)]) is None
    monkeypatch.setattr(ev, "EXPECTED_TIMEOUT_S", 1)
    assert ev.expected_outputs("def f(n):\n    while True:\n        pass\n", "f", [(1,)]) is None
    assert ev.expected_outputs("def f(n):\n    return n + 1\n", "f", [(1,)]) == "[2]"  # still usable


def test_evalplus_special_oracles_set_eq_and_not_none(tmp_path):
    """Set-valued tasks compare as sets (their references iterate sets, whose order follows the
    string-hash seed); not-None tasks compare bool results with 'exp is not None'."""
    from harness.benchmarks.evalplus_mbpp import oracle_test

    def verdict(entry, out, expected):
        ns: dict = {}
        exec(oracle_test(entry, [("a",)], 0.0, expected), ns)  # noqa: S102 - our own test text
        try:
            ns["check"](lambda *a: out)
            return True
        except AssertionError:
            return False

    assert verdict("similar_elements", ("y", "x"), "[('x', 'y')]")  # order differs: still a match
    assert not verdict("similar_elements", ("x",), "[('x', 'y')]")
    assert not verdict("other_task", ("y", "x"), "[('x', 'y')]")  # elsewhere order matters
    assert verdict("check_str", True, "['match']") and not verdict("check_str", False, "['match']")
    assert verdict("check_str", "m", "['match']") and not verdict("check_str", None, "['match']")
