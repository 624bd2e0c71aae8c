"""harness gate / compare on constructed runs where the right answer is known."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.cli import main
from harness.errors import UsageError
from harness.gate import MismatchError, compare, load_run
from harness.paired import compare_items, holm_adjust, mcnemar_exact, paired_bootstrap
from tests.test_gate_helpers import PARAMS, binary_items, flip, make_run


# ---- statistics -----------------------------------------------------------------------
@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 0), (3, 9), (10, 10), (25, 7), (0, 40), (123, 150), (2, 31)])
def test_mcnemar_matches_scipy_exact_binomial(b, c):
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError, match="b=-1"):
        mcnemar_exact(-1, 3)


def test_holm_matches_hand_computed_example():
    # sorted p: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06 (monotone), 0.5*1=0.5
    assert holm_adjust([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert holm_adjust([0.9, 0.04]) == pytest.approx([0.9, 0.08])
    assert holm_adjust([0.9, 0.8]) == [1.0, 1.0]  # capped at 1, then kept monotone


def test_paired_bootstrap_detects_shift_and_not_noise():
    rng = np.random.default_rng(1)
    a = rng.normal(5, 2, 300)
    shifted = a + 0.5 + rng.normal(0, 0.3, 300)
    delta, lo, hi, p = paired_bootstrap(a, shifted, n_boot=4000)
    assert 0.4 < delta < 0.6 and lo > 0 and p < 0.001
    noise = a + rng.normal(0, 0.3, 300)
    delta, lo, hi, p = paired_bootstrap(a, noise, n_boot=4000)
    assert lo < 0 < hi and p > 0.05


def test_compare_items_picks_test_by_score_type():
    a = {str(i): {"score": float(i % 2)} for i in range(40)}
    b = {str(i): {"score": 1.0} for i in range(40)}
    r = compare_items("x", a, b)
    assert r.test == "mcnemar" and r.b_only_b == 20 and r.b_only_a == 0
    assert r.p_value == pytest.approx(binomtest(0, 20, 0.5).pvalue)
    assert r.delta == pytest.approx(50.0) and r.unit == "pp"
    judged = compare_items("mt", {str(i): {"score": 5.0 + i % 3} for i in range(40)},
                           {str(i): {"score": 6.5 + i % 3} for i in range(40)})
    assert judged.test == "bootstrap" and judged.unit == "points" and judged.delta == pytest.approx(1.5)
    with pytest.raises(ValueError, match="share no scored item"):
        compare_items("x", {"1": {"score": 1.0}}, {"2": {"score": 1.0}})


# ---- gate on constructed runs ----------------------------------------------------------
@pytest.fixture
def runs(store):
    base = {"gsm8k": binary_items(400, 0.6, 0), "math500": binary_items(300, 0.4, 1)}
    make_run(store, "base", "target", base)
    make_run(store, "same", "cand-same", base)
    # a clear regression: 60 gsm8k items that were right are now wrong
    right = [i for i, s in base["gsm8k"].items() if s == 1.0][:60]
    make_run(store, "worse", "cand-worse", {**base, "gsm8k": flip(base["gsm8k"], right, 0.0)})
    # a small noisy drop: 4 right->wrong and 1 wrong->right on math500 (not significant)
    r = [i for i, s in base["math500"].items() if s == 1.0][:4]
    w = [i for i, s in base["math500"].items() if s == 0.0][:1]
    make_run(store, "noisy", "cand-noisy", {**base, "math500": flip(flip(base["math500"], r, 0.0), w, 1.0)})
    return store, base


def test_identical_runs_pass(runs):
    store, _ = runs
    cmp = compare(load_run("base", store), load_run("same", store), n_boot=1000)
    assert not cmp.failed
    assert [g.status for g in cmp.rows] == ["no significant change"] * 2
    assert all(g.result.p_value == 1.0 and g.result.delta == 0 for g in cmp.rows)


def test_clear_regression_fails_with_right_numbers(runs):
    store, base = runs
    cmp = compare(load_run("base", store), load_run("worse", store), n_boot=1000)
    assert cmp.failed
    g = {g.result.benchmark: g for g in cmp.rows}
    assert g["gsm8k"].status == "regression" and g["math500"].status == "no significant change"
    r = g["gsm8k"].result
    assert r.test == "mcnemar" and (r.b_only_a, r.b_only_b) == (60, 0) and r.n == 400
    assert r.delta == pytest.approx(-15.0)  # 60 of 400 items, in percentage points
    assert r.p_value == pytest.approx(binomtest(60, 60, 0.5).pvalue)
    assert r.p_adjusted == pytest.approx(min(1.0, 2 * r.p_value))  # Holm: smallest p times m=2


def test_large_tolerance_lets_a_significant_drop_pass(runs):
    store, _ = runs
    cmp = compare(load_run("base", store), load_run("worse", store), tolerances={"gsm8k": 20}, n_boot=1000)
    assert not cmp.failed and cmp.rows[0].status == "within tolerance"


def test_small_noisy_drop_passes(runs):
    store, _ = runs
    cmp = compare(load_run("base", store), load_run("noisy", store), tolerances={"math500": 2.0}, n_boot=1000)
    assert not cmp.failed
    r = {g.result.benchmark: g.result for g in cmp.rows}["math500"]
    assert r.delta == pytest.approx(-1.0) and r.p_value > 0.05


def test_mismatched_versions_refuse_unless_allowed(store):
    items = {"gsm8k": binary_items(50, 0.5, 3)}
    make_run(store, "v1", "a", items)
    make_run(store, "v2", "b", items, versions={"gsm8k": "2"})
    make_run(store, "p2", "c", items, params={"gsm8k": {**PARAMS, "max_tokens": 256}})
    with pytest.raises(MismatchError, match=r"gsm8k: version differs \('1' vs '2'\)") as e:
        compare(load_run("v1", store), load_run("v2", store))
    assert e.value.exit_code == 2 and "--allow-mismatch" in str(e.value)
    with pytest.raises(MismatchError, match="max_tokens 2048 vs 256"):
        compare(load_run("v1", store), load_run("p2", store))
    cmp = compare(load_run("v1", store), load_run("v2", store), allow_mismatch=True, n_boot=500)
    assert cmp.mismatches and not cmp.failed


def test_no_shared_items_is_a_clear_error(store):
    make_run(store, "r1", "a", {"gsm8k": {"0": 1.0, "1": 0.0}})
    make_run(store, "r2", "b", {"gsm8k": {"7": 1.0, "8": 0.0}})
    make_run(store, "r3", "c", {"math500": {"0": 1.0}})
    with pytest.raises(UsageError, match="share no scored item on gsm8k"):
        compare(load_run("r1", store), load_run("r2", store))
    with pytest.raises(UsageError, match="share no benchmark"):
        compare(load_run("r1", store), load_run("r3", store))


def test_unknown_run_and_bad_tolerance_are_usage_errors(runs):
    store, _ = runs
    with pytest.raises(UsageError, match=r"no run 'bsae'.*Did you mean .*base.*Latest runs: base, same"):
        load_run("bsae", store)
    with pytest.raises(UsageError, match="unknown benchmark in --tolerance 'gsm8kk'.*Did you mean 'gsm8k'"):
        compare(load_run("base", store), load_run("same", store), tolerances={"gsm8kk": 1})


# ---- the CLI: exit codes and CI reports -------------------------------------------------
def test_cli_gate_exit_codes_and_reports(runs, tmp_path, capsys):
    store, _ = runs
    s = str(store.path)
    assert main(["gate", "--store", s, "--baseline", "base", "--candidate", "same", "--n-boot", "1000"]) == 0
    junit, md = tmp_path / "gate.xml", tmp_path / "gate.md"
    rc = main(["gate", "--store", s, "--baseline", "base", "--candidate", "worse", "--n-boot", "1000",
               "--junit", str(junit), "--markdown", str(md)])
    assert rc == 1
    out = capsys.readouterr().out
    assert "regression" in out and "FAIL" in out
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1" and root.get("tests") == "2"
    failing = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert failing == ["gsm8k"]
    text = md.read_text()
    assert "FAIL" in text and "| gsm8k | mcnemar | 400 |" in text
    assert main(["gate", "--store", s, "--baseline", "base", "--candidate", "worse", "--n-boot", "1000",
                 "--tolerance", "gsm8k=20"]) == 0


def test_cli_usage_errors_exit_2_without_traceback(runs, capsys):
    store, _ = runs
    s = str(store.path)
    assert main(["gate", "--store", s, "--baseline", "base", "--candidate", "nope"]) == 2
    assert main(["gate", "--store", s, "--baseline", "base", "--candidate", "same", "--tolerance", "gsm8k"]) == 2
    assert main(["gate", "--store", s, "--baseline", "base", "--candidate", "same",
                 "--tolerance", "gsm8k=-3"]) == 2
    err = capsys.readouterr().err
    assert "no run 'nope'" in err and "expected KEY=VALUE" in err and "gsm8k=-3" in err
    assert "Traceback" not in err


def test_cli_compare_lists_item_differences(runs, capsys):
    store, _ = runs
    assert main(["compare", "base", "worse", "--store", str(store.path), "--n-boot", "500", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    g = {b["benchmark"]: b for b in data["benchmarks"]}
    assert len(g["gsm8k"]["changed"]) == 60 and g["math500"]["changed"] == []
    assert all(c["score_a"] == 1.0 and c["score_b"] == 0.0 for c in g["gsm8k"]["changed"])
    assert main(["compare", "base", "worse", "--store", str(store.path), "--n-boot", "500", "--items", "3"]) == 0
    out = capsys.readouterr().out
    assert "60 item(s) differ" in out and "57 more" in out


def test_gate_reads_run_output_directories(runs, tmp_path):
    """A baseline kept as a CI artefact (results.json + <bench>.jsonl) gates like a store run."""
    store, base = runs
    for run_id in ("base", "worse"):
        d = tmp_path / run_id
        d.mkdir()
        res = store.get_run(run_id)["results"]
        (d / "results.json").write_text(json.dumps(res))
        for bench, items in store.get_scores(run_id).items():
            (d / f"{bench}.jsonl").write_text("".join(json.dumps({"completion": "", **s}) + "\n"
                                                      for s in items.values()))
    assert main(["gate", "--baseline", str(tmp_path / "base"), "--candidate", str(tmp_path / "worse"),
                 "--n-boot", "500", "--store", str(tmp_path / "unused.sqlite")]) == 1
