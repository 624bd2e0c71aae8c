"""TheoremQA: real data, OpenCompass's 5-shot chat prompt, TIGER-Lab's grading rules.

The grading table is hand-made from upstream's rules (TIGER-AI-Lab/TheoremQA@acfc968 utils.py
and number_utils.py, read in harness/scoring/theoremqa.py's docstring): each row is a
completion, the gold as the data file holds it, and the verdict those rules give."""

from __future__ import annotations

import json
import sqlite3

import pytest

from harness.benchmarks.base import Context, Example
from harness.benchmarks.theoremqa import FEW_SHOT, HEADER, STOPS, TheoremQA, score_item
from harness.errors import UsageError
from harness.scoring.theoremqa import arithmetic_eval, extract_answer, gold_value, is_correct
from harness.types import Completion
from tests.conftest import harness_cli, requires_vllm

# (completion, gold Answer, Answer_type, correct under tiger_lab, correct under opencompass)
GRADING = [
    # integer: round(answer) == gold
    ("So the count is 11760.\nThe answer is 11760", 11760, "integer", True, True),
    ("The answer is 11760.4", 11760, "integer", True, True),
    ("The answer is 11761", 11760, "integer", False, False),
    ("The answer is 11,760", 11760, "integer", True, True),
    ("The answer is $11760$ ways.", 11760, "integer", True, True),
    ("The answer is 5 nodes", 5, "integer", False, False),  # "no" in "nodes": extracted as False
    ("We try 3, then 11760", 11760, "integer", True, True),  # no trigger: the last number
    ("", 11760, "integer", False, False),
    # float: |answer - gold| <= 4% of |gold|
    ("The answer is 1.47", 1.42, "float", True, True),
    ("The answer is 1.48", 1.42, "float", False, False),
    ("The answer is 1.37", 1.42, "float", True, True),
    ("The answer is 1.36", 1.42, "float", False, False),
    ("The answer is 1.42 m/s.", 1.42, "float", True, True),
    ("The answer is 142%", 1.42, "float", True, True),
    ("The answer is \\frac{71}{50}", 1.42, "float", True, True),
    ("v = 1.42 m/s, so the answer is 2.0", 1.42, "float", False, False),
    # list: a tuple is compared numerically (tiger_lab only), order-free; else strings
    ("The answer is [0, 5]", [0, 5], "list of integer", True, True),
    ("The answer is (5, 0)", [0, 5], "list of integer", True, False),
    ("The answer is (0, 5, 7)", [0, 5], "list of integer", False, False),
    ("The answer is (0,5)", [0, 5], "list of integer", True, False),  # opencompass: an interval, kept
    ("The answer is [1,2,3]", [1, 2, 3], "list of integer", True, True),  # opencompass: "[1, 2, 3]"
    ("The answer is [0.33, 0.25]", [0.333, 0.25], "list of float", True, False),
    ("The answer is [0.30, 0.25]", [0.333, 0.25], "list of float", False, False),
    # bool: yes/true and no/false wording
    ("The answer is True", True, "bool", True, True),
    ("The answer is yes.", True, "bool", True, True),
    ("The answer is False", True, "bool", False, False),
    ("The answer is: the graph is not planar", False, "bool", True, True),
    ("The answer is 1", True, "bool", False, True),  # opencompass: eval("True") == 1
    # option: the gold letter in parentheses anywhere in the answer
    ("The answer is (c)", "(c)", "option", True, True),
    ("The answer is (C) $J_g = 2J_f$", "(c)", "option", True, True),
    ("The answer is (b)", "(c)", "option", False, False),
    ("The answer is c", "(c)", "option", False, False),
]


@pytest.mark.parametrize("grader", ["tiger_lab", "opencompass"])
def test_grading_table(grader):
    wrong = []
    for text, answer, answer_type, tiger, opencompass in GRADING:
        extracted = extract_answer(text, grader)
        got = is_correct(extracted, str(answer), gold_value(answer, answer_type, grader))
        if got != (tiger if grader == "tiger_lab" else opencompass):
            wrong.append((text, answer, extracted, got))
    assert not wrong


def test_tolerance_edges_and_zero():
    assert is_correct("104", "100.0", 100.0) and is_correct("96", "100.0", 100.0)
    assert not is_correct("104.01", "100.0", 100.0) and not is_correct("95.99", "100.0", 100.0)
    assert is_correct("-1.01", "-1.047", -1.047) and not is_correct("-1.0", "-1.047", -1.047)  # eps 0.04188
    assert is_correct("0", "0.0", 0.0) and not is_correct("0.001", "0.0", 0.0)
    assert not is_correct("nan", "1.5", 1.5) and not is_correct("1e400", "5", 5)


def test_extraction_rules():
    # several triggers: the model ran into another shot; only the first block counts
    assert extract_answer("The answer is 429\n\nProblem:\nx\nSolution:\nThe answer is 12") == "429"
    assert extract_answer("The answer is 2\\sqrt{2}", "tiger_lab").startswith("2.828")
    assert extract_answer("The answer is 2\\sqrt{2}", "opencompass") == "2\\sqrt{2}"  # no names in scope
    assert extract_answer("The answer is 3\\pi") == "9.42"  # upstream's pi is 3.14


def test_model_output_is_never_executed():
    for code in ("__import__('os').getcwd()", "(1).__class__", "'a' * 3", "open('x')"):
        with pytest.raises(ValueError):
            arithmetic_eval(code)
    with pytest.raises(ValueError):
        arithmetic_eval("10**10**10")
    assert not is_correct("(__import__('os').getcwd(), 1)", "[0, 1]", [0, 1])
    assert arithmetic_eval("(1/2, 2**3, -3 % 2)") == (0.5, 8, 1)


def test_loader_counts_and_image_items(data_dir):
    b = TheoremQA(ctx=Context(data_dir=data_dir))
    exs = b.load()
    assert len(exs) == 747 and b.image_items == {"total": 53, "skipped": 53}
    assert not any(ex.data["picture"] for ex in exs)
    assert b.provenance()["image_items"] == {"total": 53, "skipped": 53}
    every = TheoremQA(ctx=Context(data_dir=data_dir), options={"include_image_items": True})
    assert len(every.load()) == 800 and every.image_items == {"total": 53, "skipped": 0}
    assert len(b.load(limit=3)) == 3 and exs[0].id == "jianyu_xu/Lah_number_6.json"


def test_prompt_is_opencompass_five_shot_chat(data_dir):
    b = TheoremQA(ctx=Context(data_dir=data_dir))
    ex = b.load(limit=1)[0]
    [req] = b.to_requests(ex)
    roles = [m["role"] for m in req.messages]
    assert roles == ["user", "assistant"] * 5 + ["user"]
    assert req.messages[0]["content"] == HEADER + "Problem:\n" + FEW_SHOT[0][0] + "\nSolution:"
    assert req.messages[-1]["content"] == f"Problem:\n{ex.data['question']}\nSolution:"
    assert all(a.endswith(f"The answer is {g}") for (_, a), g in zip(FEW_SHOT, ["833.33", "0.157", "[3.33, 1.33]",
                                                                             "True", "(a)"], strict=True))
    assert req.params.stop == STOPS and req.params.max_tokens == 1024 and req.params.greedy
    [bare] = TheoremQA(ctx=Context(data_dir=data_dir), options={"shots": 0}).to_requests(ex)
    assert len(bare.messages) == 1 and not bare.messages[0]["content"].startswith(HEADER)


def test_bad_options_name_the_fix():
    with pytest.raises(UsageError, match="grader"):
        TheoremQA(options={"grader": "wolfram"})
    with pytest.raises(UsageError, match="shots"):
        TheoremQA(options={"shots": 6})
    with pytest.raises(UsageError, match="include_image_items"):
        TheoremQA(options={"include_images": True})


def test_scores_errors_samples_and_aggregate(data_dir):
    b = TheoremQA(ctx=Context(data_dir=data_dir))
    exs = [Example(id="i", data={"answer": 11760, "answer_type": "integer"}),
           Example(id="f", data={"answer": 1.42, "answer_type": "float"}),
           Example(id="e", data={"answer": True, "answer_type": "bool"})]
    comps = {"theoremqa/i": Completion(texts=["The answer is 11760", "no idea"], finish_reasons=["stop", "stop"]),
             "theoremqa/f": Completion(texts=[""], finish_reasons=["length"]),
             "theoremqa/e": Completion(texts=[], finish_reasons=[], error="engine died")}
    scores = b.score(exs, comps)
    assert scores[0]["score"] == 0.5 and scores[0]["correct_per_sample"] == [True, False]
    assert scores[1]["extracted"] == "" and scores[1]["score"] == 0.0
    assert scores[2]["error"] == "engine died" and scores[2]["extracted"] is None
    metrics = b.aggregate(scores)
    assert metrics["accuracy"]["n"] == 3 and metrics["accuracy"]["empty_answers"] == 1
    assert metrics["accuracy_integer"]["value"] == 50.0 and metrics["accuracy_float"]["value"] == 0.0
    assert "accuracy_option" not in metrics
    assert score_item(exs[0], comps["theoremqa/i"], "opencompass")["gold"] == "11760"


SUITE = """
name: theoremqa-tiny
benchmarks:
  - name: theoremqa
    limit: 2
    max_tokens: 48
"""


@pytest.mark.e2e
@requires_vllm
def test_two_items_end_to_end_on_the_embedded_model(tmp_path, data_dir, vllm_server):
    """Two items through `harness run suite` on the session's vLLM server: 5-shot chat prompts
    generated, graded, stored; a second run is served from the cache."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    store = tmp_path / "s.sqlite"
    args = ("run", "suite", str(suite), "--model", f"openai:smollm2@{vllm_server}", "--data-dir", str(data_dir),
            "--store", str(store), "--no-progress")
    harness_cli(*args, "--out", str(tmp_path / "o1"))
    res = json.loads((tmp_path / "o1" / "results.json").read_text())
    bench = res["benchmarks"]["theoremqa"]
    assert bench["n_items"] == 2 and bench["errors"] == 0 and bench["image_items"] == {"total": 53, "skipped": 53}
    assert bench["metrics"]["accuracy"]["n"] == 2 and bench["metrics"]["accuracy"]["image_items_skipped"] == 53
    lines = [json.loads(x) for x in (tmp_path / "o1" / "theoremqa.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["jianyu_xu/Lah_number_6.json", "mingyin/inversion-theorem1.json"]
    assert all(line["completion"] for line in lines)
    stored = dict(sqlite3.connect(store).execute("SELECT item_id, score FROM scores").fetchall())
    assert set(stored) == {line["id"] for line in lines}
    assert all("extracted" in json.loads(v) for v in stored.values())
    harness_cli(*args, "--out", str(tmp_path / "o2"))
    again = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert again["timings"]["cached_requests"] == 2 and again["timings"]["generated_requests"] == 0
    assert again["benchmarks"]["theoremqa"]["metrics"]["accuracy"]["value"] == bench["metrics"]["accuracy"]["value"]
