"""Arena-Hard aggregation on judgment sets whose result is derived by hand, the upstream
JSONL reader, and the CLI."""

from __future__ import annotations

import json
import math

import pytest

from harness.benchmarks.arena_hard import (
    arena_hard_scores,
    battles_from_judgments,
    compute_mle_elo,
    fit_mle_elo,
    judge_messages,
)
from tests.conftest import harness_cli


def _err(proc) -> str:
    """stderr with rich's line wrapping undone."""
    return " ".join(proc.stderr.split())

BASE = "gpt-4-0314"


def _rows(spec, model="m"):
    """spec: list of (game1 label, game2 label, count)."""
    rows = []
    for g1, g2, count in spec:
        for _ in range(count):
            rows.append({"question_id": str(len(rows)), "model": model, "games": [{"score": g1}, {"score": g2}]})
    return rows


def test_score_is_derivable_by_hand():
    # game 1: A = baseline, B = model; game 2: A = model, B = baseline
    rows = _rows([("B>A", "A>B", 10),   # model wins both: 20 wins
                  ("A>B", "B>A", 5),    # loses both: 10 losses
                  ("A=B", "A=B", 4),    # 8 ties
                  ("B>>A", "B>A", 1),   # strong win (x3) + 1 loss
                  ("bogus", None, 2)])  # no verdicts: left out
    wins, losses, ties = 23, 11, 8
    res = arena_hard_scores(rows, BASE)
    assert res["m"]["score"] == round(100 * (wins + ties / 2) / (wins + losses + ties), 2)  # 64.29
    assert res["m"]["battles"] == 42
    assert res["m"]["lower"] < res["m"]["score"] < res["m"]["upper"]


def test_even_record_is_fifty_and_symmetric():
    res = arena_hard_scores(_rows([("B>>A", "A>>B", 3), ("A>>B", "B>>A", 3)]), BASE)
    assert res["m"]["score"] == 50.0
    assert res["m"]["lower"] < 50.0 < res["m"]["upper"]


def test_closed_form_equals_upstream_regression():
    rows = _rows([("B>A", "A>B", 7), ("A>B", "B>A", 3), ("A=B", "B>>A", 2)]) + \
        _rows([("B>A", "A=B", 2), ("A>>B", "B>A", 4)], model="x")
    battles = battles_from_judgments(rows, BASE)
    closed, fitted = compute_mle_elo(battles, BASE), fit_mle_elo(battles, BASE)
    for m in ("m", "x"):
        assert closed[m] == pytest.approx(fitted[m], abs=1e-3)


def test_all_wins_and_bootstrap_floor():
    res = arena_hard_scores(_rows([("B>A", "A>B", 5)]), BASE)
    assert res["m"]["score"] == 100.0
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="100"):
        arena_hard_scores(_rows([("B>A", "A>B", 5)]), BASE, rounds=10)


def test_judge_prompt_is_upstreams(data_dir):
    sys_prompt = (data_dir / "arena_hard" / "config" / "judge_system_prompt_v0.1_and_v2_hard_prompt.txt").read_text()
    msgs = judge_messages("Q {answer_a}", "first", "second")
    assert msgs[0]["content"] == sys_prompt
    import yaml

    tpl = yaml.safe_load((data_dir / "arena_hard" / "v0.1_legacy_format" / "judge_config.yaml").read_text())
    expected = tpl["prompt_template"][0].format(question_1="Q {answer_a}", answer_1="first", answer_2="second")
    assert msgs[1]["content"] == expected


def test_aggregate_cli_upstream_jsonl(tmp_path):
    f = tmp_path / "m.jsonl"
    rows = [{"question_id": r["question_id"], "model": "my-model", "judge": "gpt-4-1106-preview",
             "games": [{"user_prompt": "...", "judgment": "...", "score": r["games"][0]["score"]},
                       {"user_prompt": "...", "judgment": "...", "score": r["games"][1]["score"]}]}
            for r in _rows([("B>A", "A>B", 3), ("A>B", "B>A", 1)])]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = json.loads(harness_cli("aggregate", "arena-hard", "--judgments", str(f), "--json").stdout)
    assert out["models"]["my-model"]["score"]["value"] == 75.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model": "x", "games": [{"score": "A>B"}]}\n')
    proc = harness_cli("aggregate", "arena-hard", "--judgments", str(bad), check=False)
    assert proc.returncode == 2 and "2 games" in _err(proc)


def test_item_score_from_both_games(data_dir, store):
    """score() with a scripted judge: per-item outcomes from the model's seat in each game."""
    from harness.benchmarks.arena_hard import ArenaHard
    from harness.benchmarks.base import Context
    from harness.judges import Judge
    from harness.runner import LazyBackend
    from tests.fakes import FakeBackend

    # the judge prefers whichever answer says MODEL, strongly
    def respond(r, i):
        u = r.messages[-1]["content"]
        a = u.split("<|The Start of Assistant A's Answer|>")[1].split("<|The End")[0]
        return "My final verdict: [[A>>B]]" if "MODEL" in a else "verdict [[B>>A]]"

    ctx = Context(data_dir=data_dir, store=store, judge="s")

    class M:
        name = kind = path = "s"
        fingerprint, template_hash = "fp:s", None

    judge = Judge(model=M(), store=store, backend=LazyBackend(lambda: FakeBackend(respond)))
    b = ArenaHard(ctx=ctx, options={"answers": "gpt-4-0613", "bootstrap_rounds": 100})
    exs = b.load(limit=3)
    assert b.to_requests(exs[0]) == []  # shipped answers: nothing to generate
    for e in exs:
        e.data["answer"] = "MODEL " + e.data["answer"]
    scores = b.score(exs, {}, judge=judge)
    assert all(s["score"] == 1.0 for s in scores)
    assert [g["score"] for g in scores[0]["games"]] == ["B>>A", "A>>B"]
    m = b.aggregate(scores)
    assert m["score"]["value"] == 100.0 and m["judge_errors"]["value"] == 0
    assert b.provenance()["answers_from"] == "gpt-4-0613"
    assert not math.isnan(scores[0]["score"])


def test_versions_and_bad_options(data_dir):
    from harness.benchmarks.arena_hard import ArenaHard
    from harness.benchmarks.base import Context
    from harness.errors import DataNotFoundError, UsageError

    v1 = ArenaHard(ctx=Context(data_dir=data_dir)).load()
    assert len(v1) == 500 and all(e.data["baseline"] for e in v1)
    v2 = ArenaHard(ctx=Context(data_dir=data_dir), options={"version": "v2.0"}).load()
    assert len(v2) == 500 and {e.data["category"] for e in v2} == {"hard_prompt"}
    with pytest.raises(UsageError, match="v0.1, v2.0"):
        ArenaHard(ctx=Context(data_dir=data_dir), options={"version": "v3"}).load()
    with pytest.raises(DataNotFoundError, match="gpt-4-0613"):  # lists what is shipped
        ArenaHard(ctx=Context(data_dir=data_dir), options={"answers": "gpt-5"}).load()


def test_reply_without_label_is_continued_once(data_dir, store):
    from harness.benchmarks.arena_hard import CONTINUE, ArenaHard
    from harness.benchmarks.base import Context
    from harness.judges import Judge
    from harness.runner import LazyBackend
    from tests.fakes import FakeBackend

    def respond(r, i):
        if r.messages[-1]["content"] == CONTINUE:
            return "My final verdict is [[A=B]]" if "Paris" not in r.messages[1]["content"] else "still unsure"
        return "Both answers are long and I need more time"  # no label: upstream asks to continue

    fake = FakeBackend(respond)
    ctx = Context(data_dir=data_dir, store=store, judge="s")

    class M:
        name = kind = path = "s"
        fingerprint, template_hash = "fp:s", None

    judge = Judge(model=M(), store=store, backend=LazyBackend(lambda: fake))
    b = ArenaHard(ctx=ctx, options={"answers": "gpt-4-0613"})
    exs = b.load(limit=2)
    exs[1].data["answer"] = "Paris"
    scores = b.score(exs, {}, judge=judge)
    assert [g["score"] for g in scores[0]["games"]] == ["A=B", "A=B"]
    assert scores[0]["games"][0]["judgment"].endswith("My final verdict is [[A=B]]")
    assert [g["score"] for g in scores[1]["games"]] == [None, None]  # continued once, still none
    assert b.aggregate(scores)["judge_unparseable"]["value"] == 2
    assert fake.generated == 8  # 4 first replies + 4 continuations, no more
