"""Leaderboard data and HTML from constructed runs in a real Store (unit tests)."""

from __future__ import annotations

import re

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.types import Completion, Request, SamplingParams
from leaderboards import build_leaderboard, load_spec
from leaderboards.render import write_site
from leaderboards.spec import LeaderboardSpec
from tests.test_gate_helpers import PARAMS, binary_items, make_run

SPEC = """
name: t
suite: math
models:
  - {model: src-a, role: source}
  - {model: src-b, role: source}
  - {model: tgt, role: target}
  - {model: cand, role: candidate}
"""


@pytest.fixture
def board(store, tmp_path):
    res = {
        "src-a": make_run(store, "ra", "src-a", {"gsm8k": binary_items(100, 0.8, 0), "math500": binary_items(60, 0.4, 1)}),
        "src-b": make_run(store, "rb", "src-b", {"gsm8k": binary_items(100, 0.6, 2), "math500": binary_items(60, 0.7, 3)}),
        "tgt": make_run(store, "rt", "tgt", {"gsm8k": binary_items(100, 0.3, 4), "math500": binary_items(60, 0.2, 5)}),
        "cand": make_run(store, "rc", "cand", {"gsm8k": binary_items(100, 0.6, 6), "math500": binary_items(60, 0.5, 7)}),
    }
    (tmp_path / "lb.yaml").write_text(SPEC)
    return store, tmp_path / "lb.yaml", res


def _headline(results, bench):
    return results["benchmarks"][bench]["metrics"]["accuracy"]


def test_numbers_match_results_json(board):
    store, path, res = board
    lb = build_leaderboard(load_spec(str(path)), store)
    assert [r.key for r in lb.rows] == ["src-a", "src-b", "tgt", "cand"]
    assert [b["name"] for b in lb.benchmarks] == ["gsm8k", "math500"]
    for r in lb.rows:
        for b in ("gsm8k", "math500"):
            assert r.cells[b] == _headline(res[r.key], b)
        assert r.average == pytest.approx((_headline(res[r.key], "gsm8k")["value"]
                                           + _headline(res[r.key], "math500")["value"]) / 2)
    d = {x.benchmark: x for x in lb.deltas["cand"]}
    for b in ("gsm8k", "math500"):
        c, t = _headline(res["cand"], b)["value"], _headline(res["tgt"], b)["value"]
        best_key = max(("src-a", "src-b"), key=lambda k: _headline(res[k], b)["value"])
        best = _headline(res[best_key], b)["value"]
        assert d[b].best_source == best_key
        assert d[b].vs_target == pytest.approx(c - t)
        assert d[b].vs_best_source == pytest.approx(c - best)
        assert d[b].recovered == pytest.approx((c - t) / (best - t))
        assert d[b].test == "mcnemar" and 0 <= d[b].p_vs_target <= 1
    assert d["gsm8k"].best_source == "src-a" and d["math500"].best_source == "src-b"


def test_recovered_is_undefined_when_no_source_beats_the_target(store):
    make_run(store, "s", "s", {"gsm8k": {"0": 0.0, "1": 0.0}})
    make_run(store, "t", "t", {"gsm8k": {"0": 1.0, "1": 0.0}})
    make_run(store, "c", "c", {"gsm8k": {"0": 1.0, "1": 1.0}})
    spec = LeaderboardSpec(name="x", suite="math", models=[{"model": "s", "role": "source"},
                           {"model": "t", "role": "target"}, {"model": "c", "role": "candidate"}])
    d = build_leaderboard(spec, store).deltas["c"][0]
    assert d.vs_target == pytest.approx(50.0) and d.recovered is None


def test_html_is_self_contained_escaped_and_links_drilldowns(store, tmp_path):
    evil = "<script>window.__pwned = 1</script><img src=x onerror=alert(1)>"
    params = SamplingParams.from_dict(PARAMS)
    make_run(store, "r1", "m1", {"gsm8k": {"0": 1.0, "1": 0.0}},
             extra={"gsm8k": {"0": {"judge_text": "judge says <b>fine</b>", "verdict": "A>B"}}})
    make_run(store, "r2", "m2", {"gsm8k": {"0": 0.0, "1": 0.0}})
    # answers live in the generations table, keyed by the run's model fingerprint
    for fp, text in (("fp-m1", evil), ("fp-m2", "plain answer")):
        for item in ("0", "1"):
            req = Request(id=f"gsm8k/{item}", messages=({"role": "user", "content": f"Question {item} & <b>"},),
                          params=params)
            store.put_completion([f"{fp}-{item}"], fp, req, Completion(texts=[text], finish_reasons=["stop"]))
    spec = LeaderboardSpec(name="esc", suite="math", models=[{"model": "m1", "role": "target"},
                           {"model": "m2", "role": "candidate"}])
    index = write_site(build_leaderboard(spec, store), tmp_path / "site", store)
    html = index.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "index must not fetch anything"
    assert 'href="items/m1/gsm8k.html"' in html and 'href="diff/m1--m2/gsm8k.html"' in html
    items = (tmp_path / "site/items/m1/gsm8k.html").read_text()
    assert evil not in items and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in items
    assert "Question 0 &amp; &lt;b&gt;" in items and "judge says &lt;b&gt;fine&lt;/b&gt;" in items
    assert items.count("<script>") == 1  # only the page's own sort script
    diff = (tmp_path / "site/diff/m1--m2/gsm8k.html").read_text()
    assert 'data-item="0"' in diff and 'data-item="1"' not in diff  # only the item that differs
    assert "plain answer" in diff


def test_mismatched_rows_are_flagged_on_the_page(store, tmp_path):
    make_run(store, "r1", "m1", {"gsm8k": {"0": 1.0}})
    make_run(store, "r2", "m1", {"gsm8k": {"0": 0.0}}, params={"gsm8k": {**PARAMS, "max_tokens": 64}})
    spec = LeaderboardSpec(name="w", suite="math", models=[{"model": "m1", "run": "r1", "role": "baseline",
                                                            "label": "long"},
                                                           {"model": "m1", "run": "r2", "role": "baseline",
                                                            "label": "short"}])
    lb = build_leaderboard(spec, store)
    assert len(lb.warnings) == 1 and "gsm8k: params differ" in lb.warnings[0] and "short" in lb.warnings[0]
    assert 'id="warnings"' in write_site(lb, tmp_path / "s", store).read_text()


def test_latest_finished_run_of_the_suite_is_used(store):
    make_run(store, "old", "m", {"gsm8k": {"0": 0.0}})
    make_run(store, "other-suite", "m", {"gsm8k": {"0": 0.0}}, suite="smoke")
    store.create_run("unfinished", "math", "m", "fp-m", {})
    make_run(store, "new", "m", {"gsm8k": {"0": 1.0}})
    spec = LeaderboardSpec(name="l", suite="math", models=[{"model": "m", "role": "baseline"}])
    assert build_leaderboard(spec, store).rows[0].run.run_id == "new"


# ---- bad input ---------------------------------------------------------------------------
def test_unknown_model_names_it_and_what_exists(board, tmp_path):
    store, _, _ = board
    p = tmp_path / "bad.yaml"
    p.write_text(SPEC.replace("{model: tgt, role: target}", "{model: tgtt, role: target}"))
    with pytest.raises(UsageError, match=r"model 'tgtt' has no finished run of suite 'math'.*"
                                         r"Models with finished runs of suite 'math': cand, src-a, src-b, tgt"):
        build_leaderboard(load_spec(str(p)), store)
    p.write_text(SPEC.replace("{model: tgt, role: target}", "{model: tgt, role: target, run: nope}"))
    with pytest.raises(UsageError, match="no run 'nope'.*Latest runs: ra, rb, rt, rc"):
        build_leaderboard(load_spec(str(p)), store)


def test_model_with_runs_of_another_suite_says_so(store):
    make_run(store, "r", "m", {"gsm8k": {"0": 1.0}}, suite="smoke")
    spec = LeaderboardSpec(name="l", suite="math", models=[{"model": "m", "role": "baseline"}])
    with pytest.raises(UsageError, match="It has finished runs of suite\\(s\\) smoke"):
        build_leaderboard(spec, store)


def test_empty_store_is_a_clear_message(store, tmp_path, capsys):
    (tmp_path / "lb.yaml").write_text(SPEC)
    with pytest.raises(UsageError, match="has no finished runs, so there is nothing to put on a leaderboard"):
        build_leaderboard(load_spec(str(tmp_path / "lb.yaml")), store)
    out = tmp_path / "site"
    assert main(["leaderboard", "build", str(tmp_path / "lb.yaml"), "--store", str(store.path),
                 "--out", str(out)]) == 2
    assert "nothing to put on a leaderboard" in " ".join(capsys.readouterr().err.split())
    assert not (out / "index.html").exists()


@pytest.mark.parametrize("text,msg", [
    ("name: x\nmodels: []\n", "models: List should have at least 1 item"),
    ("name: x\nmodels:\n  - {model: a, role: teacher}\n", "models.0.role"),
    ("name: x\nmodels:\n  - {model: a, role: source}\n  - {model: a, role: target}\n", "appear twice"),
    ("name: x\nmodels:\n  - {model: a, role: target}\n  - {model: b, role: target}\n  - {model: c, role: candidate}\n",
     "must say which target"),
    ("name: x\nmodels:\n  - {model: a, role: target}\ncompare: [[a, bb]]\n", "unknown model in compare 'bb'"),
    ("name: x\nmodles: []\n", "modles"),
])
def test_bad_definitions_point_at_the_field(tmp_path, text, msg):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(UsageError, match=re.escape(msg)):
        load_spec(str(p))


def test_unknown_leaderboard_name_suggests(tmp_path):
    with pytest.raises(UsageError, match="unknown leaderboard 'fusechat'.*Did you mean 'fusechat3'"):
        load_spec("fusechat")


def test_shipped_definitions_validate():
    spec = load_spec("fusechat3")
    assert spec.suite == "fusechat3" and [m.role for m in spec.models].count("source") == 4
    assert spec.compare_pairs()[0] == ("Llama-3.1-8B (target)", "FuseChat-Llama-3.1-8B")


def test_cli_build_and_auto_suite(board, tmp_path, capsys):
    store, path, _ = board
    assert main(["leaderboard", "build", str(path), "--store", str(store.path), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a/index.html").exists() and (tmp_path / "a/items/cand/math500.html").exists()
    assert main(["leaderboard", "build", "--suite", "math", "--store", str(store.path),
                 "--out", str(tmp_path / "b")]) == 0
    assert 'data-model="src-b"' in (tmp_path / "b/index.html").read_text()
    assert main(["leaderboard", "build", "--suite", "nope", "--store", str(store.path),
                 "--out", str(tmp_path / "c")]) == 2
    assert "suites with runs: math" in " ".join(capsys.readouterr().err.split())  # rich wraps lines


def test_rows_from_run_output_directories(store, tmp_path):
    """`results:` entries read results.json + <bench>.jsonl (answers included) instead of the store."""
    import json

    res = make_run(store, "r1", "m1", {"gsm8k": {"0": 1.0, "1": 0.0}})
    d = tmp_path / "out"
    d.mkdir()
    (d / "results.json").write_text(json.dumps(res))
    (d / "gsm8k.jsonl").write_text("".join(json.dumps({"id": i, "completion": f"answer <{i}>", "score": s}) + "\n"
                                           for i, s in (("0", 1.0), ("1", 0.0))))
    (tmp_path / "lb.yaml").write_text("name: files\nmodels:\n  - {results: out, role: baseline, label: from-files}\n")
    lb = build_leaderboard(load_spec(str(tmp_path / "lb.yaml")))
    assert lb.rows[0].cells["gsm8k"] == res["benchmarks"]["gsm8k"]["metrics"]["accuracy"]
    write_site(lb, tmp_path / "site")
    assert "answer &lt;1&gt;" in (tmp_path / "site/items/from-files/gsm8k.html").read_text()
    (tmp_path / "lb2.yaml").write_text("name: files\nmodels:\n  - {results: nowhere, role: baseline}\n")
    with pytest.raises(UsageError, match="results 'nowhere' .* does not exist"):
        build_leaderboard(load_spec(str(tmp_path / "lb2.yaml")))


def test_provenance_shows_how_model_code_ran(store, tmp_path):
    """Issue 18: the isolation mode each code benchmark ran under is on the page (results.json
    records it per benchmark as `sandbox`)."""
    for run_id, model, mode, unsafe in (("r1", "m1", "bwrap", False), ("r2", "m2", "none", True)):
        res = make_run(store, run_id, model, {"humaneval": {"0": 1.0, "1": 0.0}, "gsm8k": {"0": 1.0}})
        res["benchmarks"]["humaneval"]["sandbox"] = {"isolation": mode, "unsafe": unsafe}
        store.finish_run(run_id, "finished", res)
    spec = LeaderboardSpec(name="sb", suite="math", models=[{"model": "m1", "role": "target"},
                                                           {"model": "m2", "role": "candidate"}])
    lb = build_leaderboard(spec, store)
    modes = {b["name"]: b["sandbox"] for b in lb.benchmarks}
    assert modes == {"humaneval": ["bwrap", "none (unsafe)"], "gsm8k": []}
    html = write_site(lb, tmp_path / "site", store).read_text()
    assert "<th class=\"name\">code sandbox</th>" in html and "bwrap, none (unsafe)" in html
