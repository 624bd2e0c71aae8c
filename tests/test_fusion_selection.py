"""FuseChat-3.0 / WRPO selection rules on constructed scores (issue 7): gap window,
same-source pairs, all-wrong prompts dropped, deterministic ties, WRPO quadruples, stats."""

from __future__ import annotations

import pytest

from trainers.data import normalize
from trainers.fusion.pools import PromptItem
from trainers.fusion.sampling import Answer
from trainers.fusion.selection import select_dpo, select_sft, select_wrpo, source_stats

SOURCES = ["a", "b"]


def item(i: str, kind: str = "math") -> PromptItem:
    return PromptItem(id=f"p/{i}", pool="p", kind=kind, prompt=f"question {i}?")


def ans(source: str, index: int, text: str, score: float | None, correct: bool | None = None,
        tokens: int = 0, finish: str = "stop") -> Answer:
    return Answer(text=text, source=source, index=index, score=score, correct=correct, tokens=tokens,
                  finish_reason=finish)


def right(source, index, text):
    return ans(source, index, text, 1.0, True)


def wrong(source, index, text):
    return ans(source, index, text, 0.0, False)


# ---- SFT -----------------------------------------------------------------------------------
def test_sft_takes_a_correct_answer_and_drops_all_wrong_prompts():
    items = [item("1"), item("2")]
    answers = {"p/1": [wrong("a", 0, "wrong but short"), right("b", 0, "a correct answer")],
               "p/2": [wrong("a", 0, "x"), wrong("b", 0, "y")]}
    rows, dropped = select_sft(items, answers, SOURCES)
    assert [r["id"] for r in rows] == ["p/1"]
    assert rows[0]["source"] == "b"
    assert rows[0]["messages"] == [{"role": "user", "content": "question 1?"},
                                   {"role": "assistant", "content": "a correct answer"}]
    assert dropped == {"no correct answer": 1}


def test_sft_ties_prefer_shorter_then_source_order_then_sample_index():
    it = [item("1")]
    # Equal scores: the shorter text wins regardless of source.
    rows, _ = select_sft(it, {"p/1": [right("a", 0, "long correct answer"), right("b", 0, "short")]}, SOURCES)
    assert rows[0]["messages"][-1]["content"] == "short"
    # Equal length: the earlier source in the recipe wins, whatever the list order.
    rows, _ = select_sft(it, {"p/1": [right("b", 0, "same1"), right("a", 1, "same2")]}, SOURCES)
    assert rows[0]["source"] == "a"
    # Same source, same length: the lower sample index wins.
    rows, _ = select_sft(it, {"p/1": [right("a", 3, "xxxx3"), right("a", 1, "xxxx1")]}, SOURCES)
    assert rows[0]["messages"][-1]["content"] == "xxxx1"


def test_sft_instruction_ranks_by_score_and_never_picks_unscored():
    it = [item("1", "instruction")]
    answers = {"p/1": [ans("a", 0, "unscored", None), ans("a", 1, "meh", 0.2), ans("b", 0, "good", 0.9)]}
    rows, _ = select_sft(it, answers, SOURCES)
    assert rows[0]["messages"][-1]["content"] == "good"
    rows, dropped = select_sft(it, {"p/1": [ans("a", 0, "unscored", None)]}, SOURCES)
    assert rows == [] and dropped == {"no scored answer": 1}


# ---- DPO -----------------------------------------------------------------------------------
@pytest.mark.parametrize("gap,kept", [(0.005, False), (0.01, True), (0.05, True), (0.1, True), (0.15, False),
                                      (0.0, False)])
def test_dpo_gap_window(gap, kept):
    it = [item("1", "instruction")]
    answers = {"p/1": [ans("a", 0, "best", 0.5 + gap), ans("a", 1, "worst", 0.5)]}
    rows, dropped = select_dpo(it, answers, SOURCES, gap_min=0.01, gap_max=0.1)
    assert (len(rows) == 1) is kept
    if kept:
        assert rows[0]["chosen"] == "best" and rows[0]["rejected"] == "worst"
        assert rows[0]["gap"] == pytest.approx(gap)
    else:
        assert sum(dropped.values()) == 1


def test_dpo_window_is_configurable():
    it = [item("1", "instruction")]
    answers = {"p/1": [ans("a", 0, "best", 0.9), ans("a", 1, "worst", 0.4)]}
    assert select_dpo(it, answers, SOURCES)[0] == []
    rows, _ = select_dpo(it, answers, SOURCES, gap_min=0.1, gap_max=1.0)
    assert len(rows) == 1


def test_dpo_pairs_come_from_the_same_source():
    # Across sources the best/worst gap would be 0.05 (in window); within a source it is 0 or
    # out of window, so no pair may be formed from answers of different sources.
    it = [item("1", "instruction")]
    answers = {"p/1": [ans("a", 0, "a-best", 0.55), ans("a", 1, "a-other", 0.55),
                       ans("b", 0, "b-worst", 0.50), ans("b", 1, "b-other", 0.50)]}
    rows, dropped = select_dpo(it, answers, SOURCES)
    assert rows == []
    assert sum(dropped.values()) == 1
    # And when one source has a pair, both texts are that source's.
    answers["p/1"].append(ans("b", 2, "b-best", 0.53))
    rows, _ = select_dpo(it, answers, SOURCES)
    assert len(rows) == 1 and rows[0]["source"] == "b"
    assert {rows[0]["chosen"], rows[0]["rejected"]} <= {"b-best", "b-worst", "b-other"}


def test_dpo_verified_pairs_correct_vs_incorrect_and_falls_back_to_next_source():
    it = [item("1")]
    # Source a (best overall: shortest correct) has no wrong answer; b has both.
    answers = {"p/1": [right("a", 0, "ok"), right("a", 1, "ok too"), right("b", 0, "b right"), wrong("b", 1, "b bad")]}
    rows, _ = select_dpo(it, answers, SOURCES)
    assert rows[0]["source"] == "b"
    assert rows[0]["chosen"] == "b right" and rows[0]["rejected"] == "b bad"
    # A 0/1 verifier gap is outside [0.01, 0.1]: only dropped when asked to apply the window.
    assert select_dpo(it, answers, SOURCES, gap_on_verified=True)[0] == []


def test_dpo_all_wrong_or_all_right_prompts_are_dropped():
    it = [item("1"), item("2")]
    answers = {"p/1": [wrong("a", 0, "x"), wrong("a", 1, "y")], "p/2": [right("a", 0, "x"), right("a", 1, "y")]}
    rows, dropped = select_dpo(it, answers, SOURCES)
    assert rows == []
    assert dropped == {"no correct and incorrect answer from one source": 2}


# ---- WRPO ----------------------------------------------------------------------------------
def test_wrpo_quadruple_takes_source_best_and_target_correct_and_wrong():
    it = [item("1"), item("2"), item("3")]
    answers = {"p/1": [right("a", 0, "source right"), wrong("b", 0, "source wrong")],
               "p/2": [right("a", 0, "source right")],
               "p/3": [wrong("a", 0, "nobody right")]}
    target = {"p/1": [wrong("target", 0, "target wrong"), right("target", 1, "target right")],
              "p/2": [right("target", 0, "t1"), right("target", 1, "t2")],
              "p/3": [right("target", 0, "t"), wrong("target", 1, "u")]}
    rows, dropped = select_wrpo(it, answers, target, SOURCES)
    assert len(rows) == 1
    r = rows[0]
    assert (r["y_ws"], r["y_wt"], r["y_l"], r["source"]) == ("source right", "target right", "target wrong", "a")
    assert dropped == {"no incorrect target sample": 1, "no source answer to use as y_ws": 1}


def test_wrpo_can_keep_y_ws_as_y_wt_when_the_target_is_never_right():
    it = [item("1"), item("2"), item("3")]
    answers = {"p/1": [right("a", 0, "source right")], "p/2": [right("a", 0, "source right 2")],
               "p/3": [right("a", 0, "source right 3")]}
    target = {"p/1": [wrong("target", 0, "t wrong"), wrong("target", 1, "t wrong, longer")],
              "p/2": [right("target", 0, "t right"), wrong("target", 1, "t wrong")],
              "p/3": [right("target", 0, "t right")]}  # no wrong sample: nothing to reject, either way
    rows, dropped = select_wrpo(it, answers, target, SOURCES)
    assert [r["id"] for r in rows] == ["p/2"] and "y_wt_from" not in rows[0]
    assert dropped == {"no correct target sample": 1, "no incorrect target sample": 1}
    rows, dropped = select_wrpo(it, answers, target, SOURCES, without_correct_target="y_ws")
    assert [r["id"] for r in rows] == ["p/1", "p/2"]
    assert (rows[0]["y_wt"], rows[0]["y_l"], rows[0]["y_wt_from"]) == ("source right", "t wrong, longer", "y_ws")
    assert rows[1]["y_wt"] == "t right" and "y_wt_from" not in rows[1]
    assert dropped == {"no incorrect target sample": 1}


def test_wrpo_instruction_needs_a_strict_target_margin():
    it = [item("1", "instruction")]
    answers = {"p/1": [ans("a", 0, "src", 0.9)]}
    rows, dropped = select_wrpo(it, answers, {"p/1": [ans("target", 0, "t1", 0.3), ans("target", 1, "t2", 0.3)]},
                                SOURCES)
    assert rows == [] and dropped == {"target samples tie": 1}
    rows, _ = select_wrpo(it, answers, {"p/1": [ans("target", 0, "lo", 0.1), ans("target", 1, "hi", 0.3)]}, SOURCES)
    assert (rows[0]["y_wt"], rows[0]["y_l"]) == ("hi", "lo")


def test_rows_are_in_the_trainer_formats():
    it = [item("1")]
    answers = {"p/1": [right("a", 0, "yes"), wrong("a", 1, "no")]}
    target = {"p/1": [right("target", 0, "t yes"), wrong("target", 1, "t no")]}
    sft, _ = select_sft(it, answers, SOURCES)
    dpo, _ = select_dpo(it, answers, SOURCES)
    wrpo, _ = select_wrpo(it, answers, target, SOURCES)
    assert normalize(sft[0], "sft")[1] == {"response": "yes"}
    assert normalize(dpo[0], "pref")[1] == {"chosen": "yes", "rejected": "no"}
    assert normalize(wrpo[0], "wrpo")[1] == {"y_ws": "yes", "y_wt": "t yes", "y_l": "t no"}


def test_source_stats():
    it = [item("1"), item("2")]
    answers = {"p/1": [right("a", 0, "aaaa"), wrong("b", 0, "bbbbbbbb")],
               "p/2": [ans("a", 0, "aa", 0.0, False, tokens=3, finish="length"), right("b", 0, "bb")]}
    sft, _ = select_sft(it, answers, SOURCES)
    st = source_stats(it, answers, SOURCES, sft, [])
    assert st["a"]["chosen_sft"] == 1 and st["b"]["chosen_sft"] == 1
    assert st["a"]["chosen_share"] == pytest.approx(0.5)
    assert st["a"]["correct_rate"] == pytest.approx(0.5) and st["b"]["correct_rate"] == pytest.approx(0.5)
    assert st["a"]["mean_chars"] == pytest.approx(3.0) and st["b"]["mean_chars"] == pytest.approx(5.0)
    assert st["a"]["truncation_rate"] == pytest.approx(0.5) and st["b"]["truncation_rate"] == 0
