"""The sampling stage on Ray (`sampling.executor: ray`, trainers/fusion/ray_sampling.py).

On a local Ray cluster (2 CPUs): the embedded SmolLM2 through the real transformers backend
in two actors gives exactly the local executor's answers, every answer lands in the store
(written by the driver), and a re-run is fully cached. With scripted engines: an actor that
dies loses only its chunk, the failure is in the report, and the re-run samples only what
is missing. Multi-node clusters and vLLM actors on GPUs are not tested here (docs/fusion.md)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.types import Request, SamplingParams
from tests.fakes import FakeBackend
from trainers.fusion.config import RaySpec, SamplingSpec, load_recipe
from trainers.fusion.sampling import build_requests, sample_model

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install "fuse-harness[ray]")')


@pytest.fixture(scope="module")
def ray_cluster():
    """One small local cluster for the module: starting Ray costs seconds on 2 cores."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2)
    yield ray
    ray.shutdown()


def _ray(**kw) -> SamplingSpec:
    return SamplingSpec(executor="ray", ray=RaySpec(**kw))


def _generations(store, fingerprint: str) -> int:
    """Rows in the store itself, not what the report says was generated."""
    import sqlite3

    with sqlite3.connect(store.path) as conn:
        return conn.execute("SELECT COUNT(*) FROM generations WHERE model_fingerprint = ?", (fingerprint,)).fetchone()[0]


# ---- the real model on a local Ray cluster -----------------------------------------------------
@needs_ray
@pytest.mark.e2e
def test_ray_sampling_matches_local_and_resumes_from_the_store(tmp_path, data_dir, ray_cluster, embedded_model_dir):
    import torch

    from harness.store import Store
    from trainers.fusion.config import PoolSpec
    from trainers.fusion.pools import load_pools

    items, _ = load_pools([PoolSpec(name="gsm", kind="math", builtin="gsm8k-train", limit=4)], data_dir, tmp_path)
    params = SamplingSpec(n=2, temperature=0.8, top_p=0.95, max_tokens=32, seed=0)
    requests = build_requests(items, lambda it: params.n, params)
    # transformers seeds per batch (hf_backend.py): batch_size 1 makes each request's samples
    # independent of how requests are batched, so two actors must reproduce one local engine.
    opts = {"batch_size": 1}
    local_store, ray_store = Store(tmp_path / "local.sqlite"), Store(tmp_path / "ray.sqlite")
    # One thread, as in a Ray actor with num_cpus=1 (Ray sets OMP_NUM_THREADS): the same
    # arithmetic on both sides, and no thread oversubscription on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local, local_rep = sample_model("smollm2", "smollm2-135m-instruct", requests, local_store, "hf", opts,
                                        progress=False)
        got, rep = sample_model("smollm2", "smollm2-135m-instruct", requests, ray_store, "hf", opts, progress=False,
                                sampling=_ray(actors=2, chunk=2))
        assert (rep.requests, rep.generated, rep.cached, rep.errors, rep.missing, rep.failed) == (4, 4, 0, 0, 0, None)
        assert rep.completion_tokens == local_rep.completion_tokens > 0
        assert got == local  # same texts, finish reasons, token counts, sample indices
        assert all(len(a) == 2 and all(x.text for x in a) for a in got.values())
        assert _generations(ray_store, rep.fingerprint) == 8  # every sample, written by the driver

        again, rep2 = sample_model("smollm2", "smollm2-135m-instruct", requests, ray_store, "hf", opts,
                                   progress=False, sampling=_ray(actors=2, chunk=2))
        assert (rep2.generated, rep2.cached, rep2.failed) == (0, 4, None)
        assert _generations(ray_store, rep.fingerprint) == 8 and again == got
    finally:
        torch.set_num_threads(threads)
        local_store.close()
        ray_store.close()


# ---- scripted engines: an actor dies mid-way -----------------------------------------------------
def _model_dir(tmp_path: Path) -> Path:
    """A model directory the resolver accepts; scripted backends never load weights."""
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "name": "ray-test"}))
    return d


def _requests(n: int = 8) -> list[Request]:
    params = SamplingParams(n=2, temperature=0.8, top_p=0.95, max_tokens=16, seed=0)
    return [Request(id=f"p/{i}", messages=({"role": "user", "content": f"question {i}"},), params=params)
            for i in range(n)]


class PoisonedBackend(FakeBackend):
    """Dies on one request, the way a crashed engine or a lost node would."""

    def __init__(self, poison: str, how: str):
        super().__init__()
        self.poison, self.how = poison, how

    def generate(self, requests, on_result=None):
        if any(r.id == self.poison for r in requests):
            if self.how == "exit":
                os._exit(1)  # the actor's process is gone (RayActorError on the driver)
            raise RuntimeError("engine died")  # the engine raised (RayTaskError); the actor is retired
        return super().generate(requests, on_result)


@needs_ray
@pytest.mark.parametrize("how", ["exit", "raise"])
def test_dead_actor_loses_only_its_chunk_and_the_rerun_samples_the_rest(tmp_path, store, ray_cluster, how):
    model = str(_model_dir(tmp_path))
    requests = _requests(8)
    spec = _ray(actors=2, chunk=2)  # 4 chunks; p/5 is in the third
    got, rep = sample_model("src", model, requests, store, progress=False, sampling=spec,
                            backend_factory=lambda: PoisonedBackend("p/5", how))
    assert rep.failed and "IncompleteSampling" in rep.failed and "2 of 8 requests were not sampled" in rep.failed
    if how == "raise":
        assert "RuntimeError: engine died" in rep.failed
    assert (rep.generated, rep.missing, rep.cached) == (6, 2, 0)
    assert sorted(got) == [f"p/{i}" for i in (0, 1, 2, 3, 6, 7)]  # the other actor finished the queue
    assert _generations(store, rep.fingerprint) == 12

    again, rep2 = sample_model("src", model, requests, store, progress=False, sampling=spec,
                               backend_factory=lambda: FakeBackend())
    assert (rep2.generated, rep2.cached, rep2.missing, rep2.failed) == (2, 6, 0, None)
    assert sorted(again) == sorted(r.id for r in requests)
    assert all(again[k] == v for k, v in got.items())  # finished answers came back from the store unchanged

    def boom():
        raise AssertionError("an engine started on a fully cached run")

    _, rep3 = sample_model("src", model, requests, store, progress=False, sampling=spec, backend_factory=boom)
    assert (rep3.generated, rep3.cached, rep3.failed) == (0, 8, None)


@needs_ray
def test_engines_that_cannot_start_fail_the_model_not_the_run(tmp_path, store, ray_cluster):
    def broken():
        raise OSError("no such model on this node")

    got, rep = sample_model("src", str(_model_dir(tmp_path)), _requests(4), store, progress=False,
                            sampling=_ray(actors=2, chunk=2), backend_factory=broken)
    assert got == {} and rep.missing == 4 and "OSError: no such model on this node" in rep.failed


@needs_ray
def test_more_actors_than_the_cluster_has_is_a_clear_error(tmp_path, store, ray_cluster):
    with pytest.raises(UsageError, match=r"3 actors x 1 CPU = 3 CPU, the cluster has 2"):
        sample_model("src", str(_model_dir(tmp_path)), _requests(2), store, progress=False,
                     sampling=_ray(actors=3), backend_factory=FakeBackend)


def _answered_in():
    """A scripted engine whose answers say which process produced them."""
    return FakeBackend(lambda r, i: f"pid {os.getpid()}, sample {i}. The answer is \\boxed{{1}}")


@needs_ray
def test_build_data_routes_sampling_through_ray(tmp_path, store, data_dir, ray_cluster):
    from trainers.fusion.pipeline import build_data

    recipe, base = load_recipe(_recipe(tmp_path, {"n": 2, "max_tokens": 16, "executor": "ray",
                                                  "ray": {"actors": 2, "chunk": 1}},
                                       pools=[{"name": "g", "kind": "math", "builtin": "gsm8k-train", "limit": 3}],
                                       sources=[{"name": "a", "model": str(_model_dir(tmp_path))}],
                                       data_dir=str(data_dir), output_dir=str(tmp_path / "out"),
                                       contamination={"benchmarks": ["gsm8k"]}))
    res = build_data(recipe, base, store, progress=False, backend_factories={"a": _answered_in})
    assert res.failed_models == {} and res.report["sampling"]["a"]["generated"] == 3
    answers = [json.loads(x) for x in (res.output_dir / "answers.jsonl").read_text().splitlines()]
    pids = {a["text"].split(",")[0] for row in answers for a in row["answers"]}
    assert len(answers) == 3 and f"pid {os.getpid()}" not in pids  # every answer came from an actor


# ---- recipe and install checks (no Ray needed) -----------------------------------------------------
def _recipe(tmp_path, sampling, **extra) -> Path:
    import yaml

    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"output_dir": "o", "pools": [{"name": "g", "kind": "math", "builtin": "gsm8k-train"}],
                                 "sources": [{"name": "a", "model": "smollm2-135m-instruct"}], "sampling": sampling,
                                 **extra}))
    return p


def test_recipe_sampling_executor(tmp_path):
    recipe, _ = load_recipe(_recipe(tmp_path, {"n": 2}))
    assert recipe.sampling.executor == "local"
    recipe, _ = load_recipe(_recipe(tmp_path, {"executor": "ray", "ray": {"actors": 4, "num_gpus_per_actor": 2}}))
    assert (recipe.sampling.ray.actors, recipe.sampling.ray.num_gpus_per_actor, recipe.sampling.ray.chunk) == (4, 2, 16)
    with pytest.raises(UsageError, match="sampling.ray is set but sampling.executor is 'local'"):
        load_recipe(_recipe(tmp_path, {"ray": {"actors": 4}}))
    with pytest.raises(UsageError, match="sampling.ray.actors"):
        load_recipe(_recipe(tmp_path, {"executor": "ray", "ray": {"actor": 4}}))
    with pytest.raises(UsageError, match="executor"):
        load_recipe(_recipe(tmp_path, {"executor": "slurm"}))


def test_ray_settings_are_checked_before_sampling(tmp_path, store, monkeypatch):
    from trainers.fusion import ray_sampling

    model = str(_model_dir(tmp_path))
    with pytest.raises(UsageError, match="set num_gpus_per_actor: 4"):
        sample_model("src", model, _requests(2), store, backend_options={"tensor_parallel_size": 4},
                     sampling=_ray(num_gpus_per_actor=2), backend_factory=FakeBackend)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(ray_sampling.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real_find_spec(name, *a))
    with pytest.raises(UsageError, match=r'pip install "fuse-harness\[ray\]"'):
        sample_model("src", model, _requests(2), store, sampling=_ray(), backend_factory=FakeBackend)
