"""The run record: results.json has one schema (harness.results.RunRecord) that round-trips,
that the gate and the leaderboard read runs through, and the store links each run to the
generations it used (no request-id parsing). Scripted backend: unit tests of the runner."""

from __future__ import annotations

import json

import pytest

import harness.backends as backends
from harness.errors import UsageError
from harness.gate import load_run
from harness.models import ResolvedModel
from harness.results import RunRecord
from harness.runner import RunOptions, run_suite
from harness.suites_config import load_suite
from tests.fakes import FakeBackend

MODEL = ResolvedModel(name="fake-model", kind="local", path="/nowhere", fingerprint="sha256:fake", template_hash="t")


@pytest.fixture
def run(tmp_path, store, data_dir, monkeypatch):
    monkeypatch.setattr(backends, "make_backend",
                        lambda name, model, options=None: FakeBackend(respond=lambda r, i: "so \\boxed{18}"))
    f = tmp_path / "suite.yaml"
    f.write_text("name: t\nbenchmarks:\n  - {name: gsm8k, limit: 3, max_tokens: 50}\n"
                 "  - {name: aime24, limit: 2, n: 2}\n")
    res = run_suite(load_suite(str(f)), MODEL, store, RunOptions(data_dir=data_dir, out=tmp_path / "o"))
    return res, tmp_path / "o"


def test_results_json_round_trips_through_the_schema(run):
    res, out = run
    on_disk = json.loads((out / "results.json").read_text())
    record = RunRecord.from_json(on_disk)
    assert record.to_json() == on_disk  # nothing lost, nothing added
    assert RunRecord.from_json(record.to_json()) == record
    g = record.benchmarks["gsm8k"]
    assert g.headline == "accuracy" and g.headline_metric()["value"] == pytest.approx(100 / 3)
    assert g.params["max_tokens"] == 50 and g.judge is None and record.timings.generated_requests == 5
    assert record.out_dir == str(out) and record.model_name == "fake-model"


def test_a_file_that_is_not_a_run_record_names_the_field(tmp_path):
    bad = {"run_id": "x", "suite": "t", "model": {}, "backend": {"name": "vllm"}, "benchmarks": {"g": {"metrics": {}}}}
    with pytest.raises(UsageError, match="benchmarks.g.headline"):
        RunRecord.from_json(bad, where="r.json")


def test_gate_and_leaderboard_read_runs_through_the_schema(run, store):
    from leaderboards.build import build_leaderboard
    from leaderboards.spec import LeaderboardSpec

    res, out = run
    from_store, from_dir = load_run(res["run_id"], store), load_run(str(out))
    for loaded in (from_store, from_dir):
        assert isinstance(loaded.record, RunRecord)
        assert loaded.benchmarks["aime24"].params["n"] == 2
    assert from_store.record == from_dir.record
    lb = build_leaderboard(LeaderboardSpec(name="t", suite="t", models=[{"model": "fake-model", "role": "baseline"}]), store)
    assert lb.rows[0].cells["gsm8k"]["value"] == pytest.approx(100 / 3)
    assert lb.benchmarks[0]["headline"] == "accuracy"


def test_store_links_a_run_to_the_generations_it_used(run, store):
    from harness.gate import load_run as load
    from leaderboards.build import run_texts

    res, _ = run
    rows = store.run_generations(res["run_id"])
    assert {r["item_id"] for r in rows if r["benchmark"] == "gsm8k"} == {"0", "1", "2"}
    assert {r["benchmark"] for r in rows} == {"gsm8k", "aime24"}
    assert sum(r["benchmark"] == "aime24" for r in rows) == 2 * 2  # n=2 samples per item
    texts = run_texts(store, load(res["run_id"], store))
    assert texts["gsm8k"]["0"]["answer"] == "so \\boxed{18}" and texts["gsm8k"]["0"]["prompt"]
    assert [label for label, _ in next(iter(texts["aime24"].values()))["extra"]] == ["sample 1"]
