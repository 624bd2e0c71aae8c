"""The multiple-choice CoT chain (FuseEval's extraction + fallback) and the four benchmarks
that use it, on real data and constructed completions."""

import random
import re
import zipfile

import pytest

from harness.benchmarks import BENCHMARKS
from harness.benchmarks.base import Context
from harness.benchmarks.gpqa_diamond import MEMBER
from harness.errors import UsageError
from harness.scoring.multiple_choice import extract_letter, fallback_index, judge_letter, zero_shot_prompt
from harness.types import Completion

DATA = "/work/shared/benchmarks"


def upstream_extract(text):
    """FuseEval's extract_answer / extract_again / extract_final, verbatim regexes."""
    m = re.search(r"answer is \(?([A-J])\)?", text)
    if m:
        return m.group(1)
    m = re.search(r".*[aA]nswer:\s*([A-J])", text)
    if m:
        return m.group(1)
    m = re.search(r"\b[A-J]\b(?!.*\b[A-J]\b)", text, re.DOTALL)
    return m.group(0) if m else None


TABLE = [
    ("## Step 1: ...\nThe best answer is D.", "D", "answer_is"),
    ("so the answer is (B) because", "B", "answer_is"),
    ("The answer is J", "J", "answer_is"),                    # letters up to J
    ("The answer is (K)", None, None),                        # K is beyond the chain
    ("first the answer is C, later the answer is A", "C", "answer_is"),  # FIRST match
    ("Answer: E\nmore text", "E", "answer_colon"),
    ("answer: B and then Answer: C\nAnswer: D", "C", "answer_colon"),    # first line, last on it
    ("x\nAnswer:\n\n  F\nAnswer: G", "F", "answer_colon"),              # \s* crosses lines
    ("Answer:Answer: B", "B", "answer_colon"),                              # overlapping candidates
    ("I think A is wrong, and so is B. Then C.", "C", "last_letter"),  # last standalone letter
    ("Option G seems right\n\nbut maybe H", "H", "last_letter"),
    ("The best answer is [the_answer_letter].", None, None),  # no answer at all
    ("", None, None),
    ("Vitamin ABC is key", None, None),                       # letters inside words do not count
    ("the answer is d", None, None),                          # case-sensitive, as upstream
]


@pytest.mark.parametrize("text,letter,rule", TABLE)
def test_extraction_table(text, letter, rule):
    got = extract_letter(text)
    assert (got.letter, got.rule) == (letter, rule)
    assert got.letter == upstream_extract(text)


def test_linear_chain_agrees_with_upstream_regexes_on_random_texts():
    rng = random.Random(0)
    parts = ["answer:", "Answer: ", "Answer:", "answer is ", "(", ")", "\n", " ", "A", "B", "J", "K", "x", "ans", "\r",
             "\t", "Answer:Answer: C", "An"]
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randrange(0, 25)))
        assert extract_letter(text).letter == upstream_extract(text), repr(text)


def test_fallback_index_is_fuseevals_reseeded_draw():
    assert [fallback_index(k) for k in (3, 4, 5, 6, 7, 8, 9, 10)] == [1, 3, 3, 3, 3, 6, 6, 6]


def test_verdict_strict_vs_fallback():
    v = judge_letter("no letter here", gold_index=3, n_options=4)
    assert v.letter is None and not v.strict and v.with_fallback  # the guess for 4 options is D
    v = judge_letter("no letter here", gold_index=0, n_options=4)
    assert not v.strict and not v.with_fallback
    v = judge_letter("The best answer is A.", gold_index=0, n_options=4)
    assert v.strict and v.with_fallback and v.gold == "A"


def test_prompt_is_fuseevals_zero_shot_layout():
    p = zero_shot_prompt("Q?", ["x", "y "])
    assert p.startswith("Please read the following multiple-choice questions and provide the most likely correct "
                        "answer based on the options given.\nQuestion:\nQ?\nOptions:\nA. x\nB. y \n- For simple")
    assert p.endswith("correct letter choice.\n\nAnswer: Let's think step by step.")


def _bench(name, **options):
    return BENCHMARKS.resolve(name)(options=options, ctx=Context(data_dir=DATA))


def _complete(bench, examples, text_for):
    return {bench.request_id(ex): Completion(texts=[text_for(ex)], finish_reasons=["stop"]) for ex in examples}


def test_mmlu_pro_scores_gold_letters_and_reports_strict_beside_fallback():
    b = _bench("mmlu-pro")
    exs = b.load(limit=28)
    assert len({e.data["category"] for e in exs}) == 14 and b.provenance()["limit_sample"]["method"] == "stratified"
    letters = "ABCDEFGHIJ"
    comps = _complete(b, exs, lambda e: f"The best answer is {letters[e.data['gold']]}." if int(e.id) % 2 else "??")
    scores = b.score(exs, comps)
    m = b.aggregate(scores)
    answered = sum(int(e.id) % 2 for e in exs)
    guessed = sum(1 for e in exs if not int(e.id) % 2 and e.data["gold"] == fallback_index(len(e.data["options"])))
    assert m["strict_accuracy"]["value"] == pytest.approx(100 * answered / 28)
    assert m["accuracy"]["value"] == pytest.approx(100 * (answered + guessed) / 28)
    strict = _bench("mmlu-pro", fallback=False)
    assert strict.aggregate(strict.score(exs, comps))["accuracy"]["value"] == m["strict_accuracy"]["value"]


def test_limit_first_keeps_file_order():
    b = _bench("mmlu-pro", limit_sample="first")
    assert len({e.data["category"] for e in b.load(limit=20)}) == 1


def test_mmlu_redux_reports_ok_rows_and_all_rows():
    b = _bench("mmlu-redux")
    exs = b.load(limit=200)
    comps = _complete(b, exs, lambda e: "Answer: " + "ABCD"[e.data["gold"]])
    m = b.aggregate(b.score(exs, comps))
    n_ok = sum(e.data["error_type"] == "ok" for e in exs)
    assert 0 < n_ok < 200
    assert m["accuracy"]["n"] == n_ok and m["accuracy_all"]["n"] == 200
    assert m["accuracy"]["value"] == 100.0 and m["accuracy_all"]["value"] == 100.0


def test_gpqa_reads_the_zip_in_memory_and_keeps_rows_out_of_scores():
    b = _bench("gpqa-diamond")
    exs = b.load()
    assert len(exs) == 198 and b.public_items is False
    comps = _complete(b, exs, lambda e: "The answer is (A)")
    scores = b.score(exs, comps)
    # ids, letters and verdicts only (never row text; messages must not echo it either)
    allowed = {"id", "category", "gold", "extracted", "rules", "n", "score", "strict", "extracted_rate",
               "finish_reason"}
    assert all(set(s) <= allowed for s in scores), "unexpected per-item fields"
    assert all(s["gold"] in "ABCD" and s["extracted"] == ["A"] for s in scores), "unexpected values"
    assert b.aggregate(scores)["strict_accuracy"]["n"] == 198


def test_gpqa_wrong_password_and_changed_file_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="cannot decrypt.*zip_password"):
        _bench("gpqa-diamond", zip_password="wrong").load()
    (tmp_path / "gpqa_diamond").mkdir()
    with zipfile.ZipFile(tmp_path / "gpqa_diamond" / "gpqa_diamond_fuseeval.zip", "w") as z:
        z.writestr(MEMBER, '{"Question": "q", "options": ["a","b","c","d"], "answer": 0}\n')
    b = BENCHMARKS.resolve("gpqa-diamond")(ctx=Context(data_dir=tmp_path))
    with pytest.raises(UsageError, match="expected b4b47341.*changed"):
        b.load()


def test_leaderboard_drill_down_shows_gpqa_item_ids_only(tmp_path):
    import json
    from types import SimpleNamespace

    from leaderboards.build import HIDDEN, run_texts

    for bench in ("gpqa-diamond", "mmlu"):
        (tmp_path / f"{bench}.jsonl").write_text(json.dumps({"id": "0", "completion": "secret reasoning"}) + "\n")
    run = SimpleNamespace(benchmarks={"gpqa-diamond": {}, "mmlu": {}}, model_fingerprint=None, out_dir=tmp_path)
    texts = run_texts(None, run)
    assert texts["gpqa-diamond"] == {"0": {"prompt": None, "answer": HIDDEN, "extra": []}}
    assert texts["mmlu"]["0"]["answer"] == "secret reasoning"
