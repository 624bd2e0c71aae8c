"""The runner: requests -> cache lookup -> batched generation -> store -> scores -> results.

One runner serves evaluation and fusion-data construction (DESIGN.md §2). Requests are
deduplicated (same messages + params = one generation) and sent to the backend in large
chunks, sampling params mixed; each finished completion is committed to the store
the moment the backend reports it. The backend is created lazily: a fully cached re-run
never starts an engine.
"""

from __future__ import annotations

import difflib
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.lazy import LazyBackend
from harness.benchmarks import BENCHMARKS
from harness.benchmarks.base import Benchmark, Context, Example, TextScorer, with_params
from harness.errors import DataNotFoundError, UsageError
from harness.judges import JudgedBenchmark, JudgePool, judge_info, missing_judge, snapshot, stats_delta
from harness.models import ResolvedModel
from harness.progress import PhaseProgress
from harness.results import ScoredBenchmark, build_results, write_outputs
from harness.store import ModelRecord, Store, generation_key
from harness.types import Completion, Request, SamplingParams

log = logging.getLogger(__name__)

CHUNK = 512  # requests per backend call: bounds memory, not batching (the engine batches)


@dataclass
class GenerationStats:
    requests: int = 0
    cached: int = 0
    generated: int = 0
    errors: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0  # generation only
    engine_start_s: float = 0.0


@dataclass
class Pending:
    """What the store could not answer: one representative request per distinct cache key
    (duplicates generate once) and the request ids waiting on each."""

    keys: dict[str, list[str]]  # request id -> its per-sample cache keys
    unique: dict[str, Request]  # first key -> representative request
    waiting: dict[str, list[str]]  # first key -> request ids that share it

    def commit(self, r: Request, c: Completion, store: Store, model: ResolvedModel, out: dict[str, Completion],
               stats: GenerationStats) -> int:
        """Store one finished completion and hand it to every request sharing its key; returns
        its token count (for progress)."""
        store.put_completion(self.keys[r.id], model.fingerprint, r, c)
        for rid in self.waiting[self.keys[r.id][0]]:
            out[rid] = c
        stats.generated += 1
        stats.errors += c.error is not None
        tokens = sum(c.completion_tokens)
        stats.completion_tokens += tokens
        return tokens

    def chunks(self, size: int) -> list[list[Request]]:
        """The unique requests in backend calls of at most `size`, sampling params mixed: every
        backend honours each request's own params, and one call lets the engine batch a small
        suite's groups together (one call per group decoded 1-3 sequences at a time). Requests
        with equal params stay adjacent, so a backend that batches per params (hf) still can."""
        order: dict[SamplingParams, list[Request]] = {}
        for r in self.unique.values():
            order.setdefault(r.params, []).append(r)
        flat = [r for reqs in order.values() for r in reqs]
        return [flat[i:i + size] for i in range(0, len(flat), size)]


def split_cached(requests: list[Request], model: ResolvedModel, store: Store,
                 stats: GenerationStats) -> tuple[dict[str, Completion], Pending]:
    """Completions the store already holds (every sample cached), and what is left to generate."""
    keys = {r.id: [generation_key(model.fingerprint, model.template_hash, r, i) for i in range(r.params.n)]
            for r in requests}
    hits = store.lookup_generations([k for ks in keys.values() for k in ks])
    out: dict[str, Completion] = {}
    pending = Pending(keys=keys, unique={}, waiting={})
    for r in requests:
        ks = keys[r.id]
        if all(k in hits for k in ks):
            rows = [hits[k] for k in ks]
            out[r.id] = Completion(texts=[x["text"] for x in rows], finish_reasons=[x["finish_reason"] for x in rows],
                                   prompt_tokens=rows[0]["prompt_tokens"] or 0,
                                   completion_tokens=[x["completion_tokens"] or 0 for x in rows],
                                   logprobs=[_json(x["logprobs"]) for x in rows] if rows[0]["logprobs"] else None,
                                   cached=True)
            stats.cached += 1
        else:
            pending.unique.setdefault(ks[0], r)
            pending.waiting.setdefault(ks[0], []).append(r.id)
    stats.requests += len(requests)
    return out, pending


def generate_all(requests: list[Request], model: ResolvedModel, store: Store, backend: LazyBackend,
                 stats: GenerationStats | None = None, progress: bool = True,
                 description: str = "generating") -> dict[str, Completion]:
    """Completions for every request, from the store when cached, else from the backend."""
    stats = stats if stats is not None else GenerationStats()
    out, pending = split_cached(requests, model, store, stats)
    unique = pending.unique
    if not unique:
        return out

    t_start = time.perf_counter()
    engine = backend.get()  # started before the clock: tokens/s measures generation, not start-up
    t0 = time.perf_counter()
    stats.engine_start_s += t0 - t_start
    with PhaseProgress(progress, description, len(unique)) as advance:
        for chunk in pending.chunks(CHUNK):
            def on_result(i: int, c: Completion, chunk: list[Request] = chunk) -> None:
                advance(1, pending.commit(chunk[i], c, store, model, out, stats))

            engine.generate(chunk, on_result=on_result)
    stats.seconds += time.perf_counter() - t0
    return out


def _json(s: str | None):
    import json

    return json.loads(s) if s else None


# ---- suites ------------------------------------------------------------------------------
@dataclass
class RunOptions:
    backend: str = "auto"
    backend_options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    benchmarks: list[str] | None = None
    # per-benchmark option overrides from the CLI: {benchmark: {key: value}}
    bench_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_tokens: int | None = None
    seed: int = 0
    out: Path | None = None
    data_dir: Path | None = None
    judge: str | None = None
    # options of the judges' backends (e.g. regex_field for a vLLM server judging over HTTP)
    judge_backend_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    command: str | None = None
    run_id: str | None = None  # chosen by the caller when it needs the results folder up front


@dataclass(frozen=True)
class PlannedBenchmark:
    """One suite entry, instantiated: which items to load (a limit or pinned ids) and whether
    missing data skips it."""

    bench: Benchmark
    limit: int | None
    ids: tuple[str, ...] | None
    optional: bool


def build_benchmarks(spec, opts: RunOptions, ctx: Context) -> list[PlannedBenchmark]:
    """Instantiate the suite's benchmarks with params = benchmark defaults < suite defaults
    < suite entry < CLI overrides."""
    wanted = opts.benchmarks
    if wanted:
        for w in wanted:
            BENCHMARKS.check(w)
        names_in_suite = {e.name for e in spec.benchmarks}
        missing = [w for w in wanted if w not in names_in_suite]
        if missing:
            raise UsageError(f"benchmark(s) {', '.join(missing)} are not in suite {spec.name!r}; "
                             f"it has: {', '.join(sorted(names_in_suite))}")
    out = []
    for entry in spec.benchmarks:
        if wanted and entry.name not in wanted:
            continue
        cls = BENCHMARKS.resolve(entry.name)
        params = cls.default_params
        for layer in (spec.defaults, entry):
            params = with_params(params, n=layer.n, temperature=layer.temperature, top_p=layer.top_p,
                                 max_tokens=layer.max_tokens, seed=layer.seed,
                                 stop=tuple(layer.stop) if layer.stop is not None else None)
        params = with_params(params, max_tokens=opts.max_tokens)
        if params.seed is not None or not params.greedy:
            params = with_params(params, seed=opts.seed if params.seed is None else params.seed + opts.seed)
        # --limit on the command line wins over the entry's pinned ids and limit
        ids = tuple(entry.ids) if entry.ids and opts.limit is None else None
        limit = opts.limit if opts.limit is not None else entry.limit
        options = {**entry.options, **opts.bench_options.get(entry.name, {})}
        # a benchmark named explicitly on the command line is never silently skipped
        optional = entry.optional and not (wanted and entry.name in wanted)
        out.append(PlannedBenchmark(cls(options=options, ctx=ctx, params=params), limit, ids, optional))
    unknown = set(opts.bench_options) - {p.bench.name for p in out}
    if unknown:
        raise UsageError(f"--option names benchmark(s) not in this run: {', '.join(sorted(unknown))}; "
                         f"the run has: {', '.join(p.bench.name for p in out)}")
    return out


def select_ids(bench: Benchmark, examples: list[Example], ids: tuple[str, ...]) -> list[Example]:
    """The pinned items, in the suite's order; every unknown id is named (with the nearest
    known ones) rather than silently dropped. Recorded in provenance like a --limit sample."""
    by_id = {ex.id: ex for ex in examples}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(by_id), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise UsageError(f"{bench.name}: id(s) not in its data ({len(by_id)} items): "
                         f"{', '.join(map(repr, unknown))}{hint} Fix the suite's `ids:` list.")
    bench.sampling = {"method": "ids", "ids": list(ids)}
    return [by_id[i] for i in ids]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def load_benchmarks(planned: list[PlannedBenchmark], seed: int
                    ) -> tuple[list[tuple[Benchmark, list[Example]]], dict[str, str]]:
    """Each benchmark's examples; optional ones without data are skipped (and why)."""
    loaded: list[tuple[Benchmark, list[Example]]] = []
    skipped: dict[str, str] = {}
    for p in planned:
        try:
            if p.ids:
                loaded.append((p.bench, select_ids(p.bench, p.bench.load(limit=None, seed=seed), p.ids)))
            else:
                loaded.append((p.bench, p.bench.load(limit=p.limit, seed=seed)))
        except DataNotFoundError as e:
            if not p.optional:
                raise
            skipped[p.bench.name] = str(e)
            log.warning("skipping optional benchmark %s: %s", p.bench.name, e)
    if not loaded:
        raise UsageError("no benchmark of the suite has data: " + "; ".join(skipped.values()))
    return loaded, skipped


def judge_specs(loaded: list[tuple[Benchmark, list[Example]]], spec, opts: RunOptions) -> dict[str, str | None]:
    """benchmark name -> the judge model spec of each judged benchmark of the run."""
    return {b.name: b.judge_spec(spec.judge, opts.judge) for b, _ in loaded if isinstance(b, JudgedBenchmark)}


def score_benchmarks(loaded, completions: dict[str, Completion], judge_for: dict[str, str | None],
                     pool: JudgePool, store: Store, run_id: str) -> dict[str, ScoredBenchmark]:
    """Score every benchmark; judged ones get their judge from the run's pool, and what the
    judge did (who, cost, comparability) is recorded beside the metrics."""
    out = {}
    for bench, exs in loaded:
        t0 = time.perf_counter()
        info = None
        if isinstance(bench, JudgedBenchmark):
            judge_model = judge_for[bench.name]
            if not judge_model:
                raise missing_judge(bench.name, bench.published_judge)
            judge = pool.get(judge_model)
            before = snapshot(judge)
            scores = bench.score(exs, completions, judge=judge)
            metrics = bench.aggregate(scores)
            info = judge_info(judge, bench, stats_delta(before, snapshot(judge)), metrics)
        else:
            scores = bench.score(exs, completions)
            metrics = bench.aggregate(scores)
        store.put_scores(run_id, bench.name, [(s["id"], s) for s in scores])
        out[bench.name] = ScoredBenchmark(bench=bench, examples=exs, scores=scores, metrics=metrics,
                                          scoring_s=time.perf_counter() - t0, judge=info)
    return out


def owned(batches: list[tuple[Benchmark, Example, list[Request]]], owner: dict[str, tuple[str, str]]
          ) -> list[Request]:
    """The requests of (benchmark, example, requests) triples, noting each one's owner."""
    out = []
    for bench, ex, reqs in batches:
        for r in reqs:
            owner[r.id] = (bench.name, ex.id)
            out.append(r)
    return out


def link_run(store: Store, run_id: str, model: ResolvedModel, requests: list[Request],
             owner: dict[str, tuple[str, str]]) -> None:
    """Record in the store which generations (cached or new) this run used, per benchmark and item."""
    store.link_run_generations(run_id, [
        (*owner[r.id], r.id, i, generation_key(model.fingerprint, model.template_hash, r, i))
        for r in requests for i in range(r.params.n)])


def run_suite(spec, model: ResolvedModel, store: Store, opts: RunOptions) -> dict[str, Any]:
    from harness.backends import make_backend, pick_backend

    t_start = time.perf_counter()
    backend_name = pick_backend(opts.backend, model)
    ctx = Context(data_dir=opts.data_dir, store=store, seed=opts.seed)
    loaded, skipped = load_benchmarks(build_benchmarks(spec, opts, ctx), opts.seed)
    judge_for = judge_specs(loaded, spec, opts)

    run_id = opts.run_id or new_run_id()
    config = {"suite": spec.model_dump(), "options": {k: (str(v) if isinstance(v, Path) else v)
                                                      for k, v in opts.__dict__.items()},
              "backend": backend_name, "pid": os.getpid()}
    if model.kind != "candidate":  # candidates are registered by the trainer, with their parent
        store.register_model(ModelRecord(name=model.name, fingerprint=model.fingerprint, kind=model.kind,
                                         path=model.path, template_hash=model.template_hash,
                                         info=model.provenance()))
    store.create_run(run_id, spec.name, model.name, model.fingerprint, config)
    lazy = LazyBackend(lambda: make_backend(backend_name, model, {**_default_backend_options(backend_name, opts),
                                                                   **opts.backend_options}))
    ctx.text_scorer = TextScorer(model, lazy)  # lm-eval log-likelihood tasks score texts on this engine
    stats = GenerationStats()
    # When the model also judges (offline smoke runs), its judge reuses this engine instead of
    # starting a second copy of the same weights: keep it open through scoring.
    model_judges = model.name in judge_for.values()
    # local judges run on the candidate's backend (an HTTP candidate says nothing about them)
    pool = JudgePool(store, seed=opts.seed, backend=backend_name if backend_name != "openai" else "auto",
                     backend_options=opts.judge_backend_options,
                     shared={model.fingerprint: (backend_name, lazy)} if model_judges else None)
    try:
        completions: dict[str, Completion] = {}
        owner: dict[str, tuple[str, str]] = {}  # request id -> (benchmark, item id)
        pending = [(b, ex) for b, exs in loaded for ex in exs]
        requests = owned([(b, ex, b.to_requests(ex)) for b, ex in pending], owner)
        while requests:  # more than one pass only for multi-turn benchmarks
            completions.update(generate_all(requests, model, store, lazy, stats, progress=opts.progress))
            link_run(store, run_id, model, requests, owner)
            requests = owned([(b, ex, b.next_requests(ex, completions)) for b, ex in pending], owner)
        if not model_judges and not any(getattr(b, "scores_text", False) for b, _ in loaded):
            lazy.close()  # free the engine before a judge engine may start
        scored = score_benchmarks(loaded, completions, judge_for, pool, store, run_id)
        out_dir = opts.out or Path("results") / run_id
        record = build_results(run_id, spec, model, backend_name, lazy, scored, completions, owner, stats,
                               opts, time.perf_counter() - t_start, skipped=skipped, out_dir=out_dir)
        results = record.to_json()
        _warn_truncation(results)
        write_outputs(out_dir, record, scored, completions, owner)
        store.finish_run(run_id, "finished", results)
        return results
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted", None)
        raise
    except BaseException:
        store.finish_run(run_id, "failed", None)
        raise
    finally:
        pool.close()
        lazy.close()


TRUNCATION_WARN = 0.25  # share of answers cut at max_tokens above which the user is told


def _warn_truncation(results: dict[str, Any]) -> None:
    for name, b in results["benchmarks"].items():
        rate = b.get("truncation_rate")
        if rate is not None and rate >= TRUNCATION_WARN:
            log.warning("%s: %.0f%% of answers stopped at max_tokens=%s, so its score mostly measures the cut; "
                        "raise max_tokens (suite entry or --max-tokens)", name, 100 * rate,
                        b.get("params", {}).get("max_tokens"))


def _default_backend_options(name: str, opts: RunOptions) -> dict[str, Any]:
    return {"seed": opts.seed} if name == "vllm" else {}
