"""Store, cache and runner behaviour with a scripted backend (unit level; the real engine is
covered by tests/test_e2e_spine.py)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from harness.models import ResolvedModel
from harness.runner import GenerationStats, LazyBackend, generate_all
from harness.store import Store, generation_key
from harness.types import Request, SamplingParams
from tests.fakes import FakeBackend

MODEL = ResolvedModel(name="m", kind="local", path="/x", fingerprint="fp1", template_hash="t1")


def req(i: int, content: str | None = None, n: int = 1, temperature: float = 0.0) -> Request:
    return Request(id=f"b/{i}", messages=({"role": "user", "content": content or f"question {i}"},),
                   params=SamplingParams(n=n, temperature=temperature, max_tokens=16))


def test_second_pass_is_fully_cached(store):
    fake = FakeBackend()
    reqs = [req(i) for i in range(10)]
    first = generate_all(reqs, MODEL, store, LazyBackend(lambda: fake), progress=False)
    assert fake.generated == 10
    fake2 = FakeBackend(respond=lambda r, i: "DIFFERENT")
    lazy = LazyBackend(lambda: fake2)
    stats = GenerationStats()
    second = generate_all(reqs, MODEL, store, lazy, stats, progress=False)
    assert lazy.backend is None, "a fully cached pass must not even build the backend"
    assert stats.cached == 10 and stats.generated == 0
    assert {k: c.texts for k, c in second.items()} == {k: c.texts for k, c in first.items()}
    assert all(c.cached for c in second.values())


def test_identical_prompts_are_generated_once(store):
    fake = FakeBackend()
    reqs = [req(i, content="same prompt") for i in range(5)]
    out = generate_all(reqs, MODEL, store, LazyBackend(lambda: fake), progress=False)
    assert fake.generated == 1
    assert len(out) == 5 and len({c.text for c in out.values()}) == 1


def test_sampling_params_share_one_backend_call_and_stay_adjacent(store, monkeypatch):
    # one call for a small suite's several params groups lets the engine batch them together
    fake = FakeBackend()
    reqs = [req(i) for i in range(2)] + [req(10 + i, temperature=0.7) for i in range(3)] + [req(2), req(3)]
    out = generate_all(reqs, MODEL, store, LazyBackend(lambda: fake), progress=False)
    assert len(fake.calls) == 1 and len(out) == 7
    temps = [r.params.temperature for r in fake.calls[0]]
    assert temps == [0.0] * 4 + [0.7] * 3  # each request keeps its own params; equal params adjacent
    monkeypatch.setattr("harness.runner.CHUNK", 3)
    fake2 = FakeBackend()
    generate_all([req(20 + i, temperature=0.3) for i in range(7)], MODEL, store, LazyBackend(lambda: fake2),
                 progress=False)
    assert [len(c) for c in fake2.calls] == [3, 3, 1]


def test_cache_key_depends_on_model_template_params_and_sample():
    r = req(1)
    base = generation_key("fp", "tpl", r, 0)
    assert generation_key("fp2", "tpl", r, 0) != base
    assert generation_key("fp", "tpl2", r, 0) != base
    assert generation_key("fp", "tpl", r, 1) != base
    assert generation_key("fp", "tpl", req(1, temperature=0.5), 0) != base
    # the request id is not part of the key: the same prompt is the same generation
    assert generation_key("fp", "tpl", Request("other/9", r.messages, r.params), 0) == base


def test_failed_requests_are_not_cached_and_retry_next_time(store):
    fake = FakeBackend(fail_ids={"b/2"})
    reqs = [req(i) for i in range(4)]
    stats = GenerationStats()
    out = generate_all(reqs, MODEL, store, LazyBackend(lambda: fake), stats, progress=False)
    assert out["b/2"].error and stats.errors == 1
    fake2 = FakeBackend()
    out2 = generate_all(reqs, MODEL, store, LazyBackend(lambda: fake2), progress=False)
    assert fake2.generated == 1 and [r.id for r in fake2.calls[0]] == ["b/2"]
    assert out2["b/2"].error is None


def test_crash_mid_generation_keeps_finished_work(store):
    reqs = [req(i) for i in range(8)]
    crashing = FakeBackend(crash_after=5)
    with pytest.raises(KeyboardInterrupt):
        generate_all(reqs, MODEL, store, LazyBackend(lambda: crashing), progress=False)
    resumed = FakeBackend()
    out = generate_all(reqs, MODEL, store, LazyBackend(lambda: resumed), progress=False)
    assert resumed.generated == 3, "only the three unfinished requests are generated again"
    assert len(out) == 8


def test_n_samples_stored_per_index(store):
    fake = FakeBackend(respond=lambda r, i: f"sample {i}")
    out = generate_all([req(1, n=3, temperature=0.6)], MODEL, store, LazyBackend(lambda: fake), progress=False)
    assert out["b/1"].texts == ["sample 0", "sample 1", "sample 2"]
    again = generate_all([req(1, n=3, temperature=0.6)], MODEL, store, LazyBackend(lambda: FakeBackend()),
                         progress=False)
    assert again["b/1"].texts == ["sample 0", "sample 1", "sample 2"]


def _writer(path: str, worker: int, count: int) -> None:
    s = Store(path)
    for i in range(count):
        r = Request(id=f"w{worker}/{i}", messages=({"role": "user", "content": f"{worker}-{i}"},),
                    params=SamplingParams())
        from harness.types import Completion

        s.put_completion([generation_key("fp", "t", r, 0)], "fp", r,
                         Completion(texts=[f"text {worker} {i}"], finish_reasons=["stop"], completion_tokens=[2]))
        s.put_scores(f"run{worker}", "b", [(str(i), {"id": str(i), "score": 1.0})])
    s.close()


def test_concurrent_writers_do_not_corrupt(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    Store(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 600
    assert con.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 600


def test_runs_and_scores_roundtrip(store):
    store.create_run("r1", "smoke", "m", "fp", {"pid": 1})
    store.put_scores("r1", "gsm8k", [("0", {"id": "0", "score": 1.0}), ("1", {"id": "1", "score": 0.0})])
    store.finish_run("r1", "finished", {"benchmarks": {}})
    assert store.get_run("r")["status"] == "finished"  # unique prefix works
    assert store.get_scores("r1") == {"gsm8k": {"0": {"id": "0", "score": 1.0}, "1": {"id": "1", "score": 0.0}}}
    assert [r["id"] for r in store.list_runs()] == ["r1"]
