"""run_suite with a scripted backend: suite layering, optional entries, CLI options, results
layout. (The same path on the real engine is tests/test_e2e_spine.py.)"""

from __future__ import annotations

import json

import pytest

import harness.backends as backends
from harness.errors import DataNotFoundError, UsageError
from harness.models import ResolvedModel
from harness.runner import RunOptions, run_suite
from harness.suites_config import load_suite
from tests.fakes import FakeBackend

MODEL = ResolvedModel(name="fake-model", kind="local", path="/nowhere", fingerprint="sha256:fake", template_hash="t")


@pytest.fixture
def fake(monkeypatch):
    made = []

    def make(name, model, options=None):
        b = FakeBackend(respond=lambda r, i: "so the answer is \\boxed{18}")
        made.append((name, options, b))
        return b

    monkeypatch.setattr(backends, "make_backend", make)
    return made


def _suite(tmp_path, text):
    f = tmp_path / "suite.yaml"
    f.write_text(text)
    return load_suite(str(f))


def test_layering_and_results(tmp_path, store, data_dir, fake):
    spec = _suite(tmp_path, "name: t\ndefaults: {max_tokens: 100}\nbenchmarks:\n"
                            "  - {name: gsm8k, limit: 3, max_tokens: 50}\n  - {name: aime24, limit: 2, n: 3}\n")
    res = run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, out=tmp_path / "o", max_tokens=None, seed=7))
    g, a = res["benchmarks"]["gsm8k"], res["benchmarks"]["aime24"]
    assert g["params"]["max_tokens"] == 50 and a["params"]["max_tokens"] == 100  # entry < defaults
    assert a["params"]["n"] == 3 and a["params"]["temperature"] == 0.6 and a["params"]["seed"] == 7
    assert g["metrics"]["accuracy"]["value"] == pytest.approx(100 / 3)  # item 0's gold is 18
    assert g["n_items"] == 3 and a["metrics"]["avg@n"]["samples"] == 3
    assert res["timings"]["generated_requests"] == 5
    on_disk = json.loads((tmp_path / "o" / "results.json").read_text())
    assert on_disk["run_id"] == res["run_id"]
    lines = (tmp_path / "o" / "gsm8k.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["0", "1", "2"]
    assert store.get_run(res["run_id"])["status"] == "finished"
    assert set(store.get_scores(res["run_id"])) == {"gsm8k", "aime24"}


def test_cli_max_tokens_wins(tmp_path, store, data_dir, fake):
    spec = _suite(tmp_path, "name: t\nbenchmarks:\n  - {name: gsm8k, limit: 1, max_tokens: 50}\n")
    res = run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, out=tmp_path / "o", max_tokens=20))
    assert res["benchmarks"]["gsm8k"]["params"]["max_tokens"] == 20


def test_optional_entry_without_data_is_skipped_and_reported(tmp_path, store, data_dir, fake):
    spec = _suite(tmp_path, "name: t\nbenchmarks:\n  - {name: gsm8k, limit: 1}\n"
                            "  - {name: livecodebench, limit: 1, optional: true}\n")
    res = run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, out=tmp_path / "o"))
    assert set(res["benchmarks"]) == {"gsm8k"}
    assert "livecodebench" in res["skipped"] and "Looked in" in res["skipped"]["livecodebench"]
    # named explicitly, it is not optional any more: the missing data is an error
    with pytest.raises(DataNotFoundError):
        run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, out=tmp_path / "p",
                                                 benchmarks=["livecodebench"]))


def test_non_optional_missing_data_fails_and_run_marked(tmp_path, store, fake):
    spec = _suite(tmp_path, "name: t\nbenchmarks:\n  - {name: gsm8k, limit: 1}\n")
    with pytest.raises(DataNotFoundError):
        run_suite(spec, MODEL, store, RunOptions(data_dir=tmp_path / "empty", out=tmp_path / "o"))


def test_option_for_benchmark_not_in_run(tmp_path, store, data_dir, fake):
    spec = _suite(tmp_path, "name: t\nbenchmarks:\n  - {name: gsm8k, limit: 1}\n")
    with pytest.raises(UsageError, match="livecodebench"):
        run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, bench_options={"livecodebench": {"x": 1}}))


def test_benchmark_filter_must_be_in_suite(tmp_path, store, data_dir, fake):
    spec = _suite(tmp_path, "name: t\nbenchmarks:\n  - {name: gsm8k, limit: 1}\n")
    with pytest.raises(UsageError, match="not in suite"):
        run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, benchmarks=["math500"]))


def test_cli_option_parsing():
    import argparse

    from harness.cli.run import bench_options

    ns = argparse.Namespace(option=["livecodebench.release_version=release_v5", "humaneval.plus=true"],
                            start_date="2024-08-01", end_date=None)
    assert bench_options(ns) == {"livecodebench": {"release_version": "release_v5", "start_date": "2024-08-01"},
                                 "humaneval": {"plus": True}}
    with pytest.raises(UsageError, match="BENCH.KEY=VALUE"):
        bench_options(argparse.Namespace(option=["plus=true"], start_date=None, end_date=None))


def test_pinned_ids_run_exactly_those_items_in_order(tmp_path, store, data_dir, fake):
    spec = _suite(tmp_path, "name: t\nbenchmarks:\n  - {name: gsm8k, ids: ['5', '2'], limit: 1}\n")
    res = run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, out=tmp_path / "o"))
    lines = (tmp_path / "o" / "gsm8k.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["5", "2"]  # ids win over the entry's limit
    assert res["benchmarks"]["gsm8k"]["limit_sample"] == {"method": "ids", "ids": ["5", "2"]}
    # --limit on the command line still wins (a quick smaller run of a pinned suite)
    res = run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, out=tmp_path / "p", limit=1))
    assert res["benchmarks"]["gsm8k"]["n_items"] == 1


def test_unknown_pinned_id_is_named_with_the_fix(tmp_path, store, data_dir, fake):
    spec = _suite(tmp_path, "name: t\nbenchmarks:\n  - {name: gsm8k, ids: ['3', '99999']}\n")
    with pytest.raises(UsageError, match=r"gsm8k: id\(s\) not in its data .*'99999'.*ids:"):
        run_suite(spec, MODEL, store, RunOptions(data_dir=data_dir, out=tmp_path / "o"))
