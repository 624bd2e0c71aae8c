"""Builders for constructed runs (unit tests only): rows written straight into a real Store,
with a results dict shaped like harness/results.py builds it. Imported by the gate and
leaderboard tests; holds no tests itself."""

from __future__ import annotations

import numpy as np

from harness.stats import mean_metric
from harness.store import ModelRecord
from harness.types import SamplingParams

PARAMS = SamplingParams(temperature=0.0, max_tokens=2048).to_dict()


def bench_results(scores: dict[str, float], *, version: str = "1", revision: str = "local-sha256:abc",
                  params: dict | None = None, headline: str = "accuracy") -> dict:
    return {"headline": headline, "metrics": {headline: mean_metric(list(scores.values()))},
            "n_items": len(scores), "truncation_rate": 0.0, "errors": 0, "generated_tokens": 0,
            "scoring_s": 0.0, "version": version, "dataset_revision": revision,
            "params": dict(params or PARAMS), "options": {}}


def make_run(store, run_id: str, model: str, benches: dict[str, dict[str, float]], *, suite: str = "math",
             versions: dict[str, str] | None = None, params: dict[str, dict] | None = None,
             extra: dict[str, dict[str, dict]] | None = None, judge: str | None = None) -> dict:
    """A finished run of `model` with per-item scores {bench: {item_id: score}}.

    `extra` adds fields to item score dicts (e.g. a judge's text)."""
    fp = f"fp-{model}"
    if store.get_model(model) is None:
        store.register_model(ModelRecord(name=model, fingerprint=fp, kind="local", path=f"/models/{model}"))
    store.create_run(run_id, suite, model, fp, {"suite": {"name": suite}})
    results = {"run_id": run_id, "suite": suite,
               "model": {"name": model, "fingerprint": fp, "template_hash": "t" * 8},
               "backend": {"name": "vllm"}, "benchmarks": {},
               "provenance": {"harness_version": "0.1.0", "git_sha": "deadbeef", "created_at": "2026-11-22T03:00:00",
                              "judge": judge, "seed": 0, "packages": {}},
               "timings": {"total_s": 1.0}}
    for bench, items in benches.items():
        p = (params or {}).get(bench)
        results["benchmarks"][bench] = bench_results(items, version=(versions or {}).get(bench, "1"), params=p)
        rows = [(i, {"id": i, "score": float(s), **((extra or {}).get(bench, {}).get(i, {}))})
                for i, s in items.items()]
        store.put_scores(run_id, bench, rows)
    store.finish_run(run_id, "finished", results)
    return results


def binary_items(n: int, accuracy: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {str(i): float(x) for i, x in enumerate(rng.random(n) < accuracy)}


def flip(items: dict[str, float], ids, to: float) -> dict[str, float]:
    out = dict(items)
    for i in ids:
        out[str(i)] = to
    return out
