"""The Judge layer (DESIGN.md §3): a Backend + a prompt template + a verdict parser, cached.

Why a layer of its own: the judged benchmarks (AlpacaEval 2, Arena-Hard, MT-Bench) make
thousands of judge calls that cost money or CPU time, so every call is cached in the
store's `judgments` table the moment it finishes, keyed by (judge fingerprint, chat
template, prompt version, judge messages, sampling params). The messages already encode
the answers and their order, so the same pair judged in the other order is another key.
A re-run, or a run killed half-way, asks the backend only for what is missing.

The backend is built lazily (harness.backends.lazy.LazyBackend), so a fully cached
re-judge never starts an engine or opens a connection. The runner owns the judges: it
builds one `JudgePool` per run, hands each judged benchmark its judge in `score()`, and
closes the pool when the run ends; one judge engine serves every benchmark of the run.

Errors are never verdicts: a call that still fails after the backend's bounded retries
is stored with its error (the store does not return errored rows as hits, so the next
run retries it) and reported to the benchmark, which counts it and leaves it out of the
metric. A reply that does not parse is kept raw and counted by the benchmark.
"""

from __future__ import annotations

import json
import logging
import time
from abc import abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import harness.backends as backends
from harness.backends.lazy import LazyBackend
from harness.benchmarks.base import Benchmark, Example
from harness.errors import HarnessError, UsageError
from harness.models import resolve_model
from harness.progress import PhaseProgress
from harness.store import ModelRecord
from harness.types import Completion, Request, SamplingParams, stable_hash

log = logging.getLogger(__name__)

# The embedded model: fine for proving the pipeline runs, useless as a judge of quality.
EMBEDDED_JUDGE = "smollm2-135m-instruct"
# Backends that enforce SamplingParams.regex. The openai backend does only when told how its
# server takes a regex (backend option regex_field, e.g. a vLLM server's structured_outputs):
# OpenAI's own API rejects the fields, so it is never assumed.
CONSTRAINING_BACKENDS = ("vllm",)


def backend_constrains(backend_name: str, options: dict[str, Any]) -> bool:
    return backend_name in CONSTRAINING_BACKENDS or (backend_name == "openai" and bool(options.get("regex_field")))


@dataclass(frozen=True)
class JudgeCall:
    """One judge request. `id` is for logs and per-item records; it is not in the cache key."""

    id: str
    messages: tuple[dict[str, str], ...]
    params: SamplingParams


@dataclass
class JudgeReply:
    text: str | None
    logprobs: list[Any] | None = None  # per generated token: {token, logprob, top: {token: logprob}}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    cached: bool = False
    key: str = ""


@dataclass
class JudgeStats:
    calls: int = 0  # judge calls asked for (cached or not)
    cached: int = 0
    backend_calls: int = 0  # requests actually sent to the backend
    errors: int = 0
    prompt_tokens: int = 0  # tokens of the calls made in this run (what this run cost)
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # tokens of the reused calls (what they cost when first made)
    cached_completion_tokens: int = 0
    seconds: float = 0.0  # wall time generating judgments (engine start excluded)
    start_seconds: float = 0.0  # wall time building the backend (engine start)
    constrained_calls: int = 0  # calls made under a verdict grammar (cached or not)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["seconds"], d["start_seconds"] = round(self.seconds, 3), round(self.start_seconds, 3)
        d["judgments_per_s"] = round(self.backend_calls / self.seconds, 3) if self.seconds else None
        return d


@dataclass
class Judge:
    """A judge model bound to a store. `run()` is the only way to call it."""

    model: Any  # harness.models.ResolvedModel
    store: Any  # harness.store.Store
    backend: LazyBackend
    stats: JudgeStats = field(default_factory=JudgeStats)
    # whether the backend enforces SamplingParams.regex (vLLM's structured outputs)
    can_constrain: bool = False
    _warned: bool = False

    def constrain(self, params: SamplingParams, regex: str) -> SamplingParams:
        """`params` with the verdict grammar, or unchanged (one warning) when the backend
        cannot enforce it: the run goes on unconstrained, and results say so."""
        if self.can_constrain:
            return replace(params, regex=regex)
        if not self._warned:
            self._warned = True
            log.warning("judge %s: its backend cannot constrain output; verdicts are unconstrained",
                        self.model.name)
        return params

    @property
    def model_id(self) -> str:
        """The id a published number names: the served model name for HTTP judges."""
        return self.model.path if self.model.kind == "openai" else self.model.name

    def key(self, call: JudgeCall, prompt_version: str) -> str:
        return stable_hash("judge", self.model.fingerprint, self.model.template_hash, prompt_version,
                           list(call.messages), call.params.to_dict())

    def run(self, calls: list[JudgeCall], prompt_version: str) -> list[JudgeReply]:
        """Replies in the order of `calls`: cached ones from the store, the rest from the backend,
        each stored as soon as it arrives."""
        keys = [self.key(c, prompt_version) for c in calls]
        hits = self.store.lookup_judgments(keys)
        out: list[JudgeReply | None] = [None] * len(calls)
        todo: dict[str, list[int]] = {}  # key -> positions (identical calls are made once)
        for i, k in enumerate(keys):
            self.stats.calls += 1
            self.stats.constrained_calls += calls[i].params.regex is not None
            if k in hits:
                row = hits[k]
                out[i] = JudgeReply(text=row["text"], logprobs=json.loads(row["logprobs"]) if row["logprobs"] else None,
                                    prompt_tokens=row["prompt_tokens"] or 0,
                                    completion_tokens=row["completion_tokens"] or 0, cached=True, key=k)
                self.stats.cached += 1
                self.stats.cached_prompt_tokens += out[i].prompt_tokens
                self.stats.cached_completion_tokens += out[i].completion_tokens
            else:
                todo.setdefault(k, []).append(i)
        if not todo:
            return out  # type: ignore[return-value]
        reqs = [Request(id=calls[pos[0]].id, messages=calls[pos[0]].messages, params=calls[pos[0]].params)
                for pos in todo.values()]
        todo_keys = list(todo)

        def on_result(j: int, c: Completion) -> None:
            k = todo_keys[j]
            reply = _reply(c, k)
            self.store.put_judgment(k, self.model.name, prompt_version, list(reqs[j].messages), reply.text,
                                    logprobs=reply.logprobs, prompt_tokens=reply.prompt_tokens,
                                    completion_tokens=reply.completion_tokens, error=reply.error)
            self.stats.backend_calls += 1
            self.stats.prompt_tokens += reply.prompt_tokens
            self.stats.completion_tokens += reply.completion_tokens
            for pos in todo[k]:
                out[pos] = reply
                self.stats.errors += reply.error is not None

        log.info("judge %s: %d calls, %d cached, %d to make", self.model.name, len(calls),
                 len(calls) - sum(len(p) for p in todo.values()), len(reqs))
        t0 = time.perf_counter()
        try:
            backend = self.backend.get()
            self.stats.start_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            with PhaseProgress(True, f"judging ({self.model.name})", len(reqs)) as advance:
                def on_result_shown(j: int, c: Completion) -> None:
                    on_result(j, c)
                    advance(1, sum(c.completion_tokens))

                backend.generate(reqs, on_result=on_result_shown)
        except HarnessError as e:
            # Endpoint down after the backend's own bounded retries, engine that cannot start:
            # every unfinished call becomes a recorded judge error, never a verdict.
            log.error("judge %s failed: %s", self.model.name, e)
            for j, k in enumerate(todo_keys):
                if out[todo[k][0]] is None:
                    on_result(j, Completion(texts=[], finish_reasons=[], error=f"{type(e).__name__}: {e}"))
        finally:
            self.stats.seconds += time.perf_counter() - t0
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.backend.close()


def _reply(c: Completion, key: str) -> JudgeReply:
    if c.error is not None:
        return JudgeReply(text=None, error=c.error, key=key)
    return JudgeReply(text=c.text, logprobs=c.logprobs[0] if c.logprobs else None, prompt_tokens=c.prompt_tokens,
                      completion_tokens=sum(c.completion_tokens), key=key)


class JudgePool:
    """The judges of one run, one per judge model spec, shared by every judged benchmark.

    The runner (or the fusion pipeline, or `harness score --judge`) builds one, passes
    `get(spec)` to each judged benchmark's `score()`, and closes it when the run ends.
    `shared` maps a model fingerprint to (backend name, LazyBackend) of an engine its owner
    keeps open (the candidate judging itself in an offline smoke run): a judge of that model
    reuses it instead of starting a second copy of the same weights, and does not close it."""

    def __init__(self, store, *, seed: int = 0, backend: str = "auto", backend_options: dict | None = None,
                 shared: dict[str, tuple[str, LazyBackend]] | None = None):
        self.store, self.seed = store, seed
        self.backend, self.backend_options = backend, dict(backend_options or {})
        self.shared = dict(shared or {})
        self.judges: dict[str, Judge] = {}
        self._owned: list[Judge] = []

    def get(self, spec: str) -> Judge:
        if spec in self.judges:
            return self.judges[spec]
        model = resolve_model(spec, self.store)
        # the pool's backend is the candidate's, for local judges; a judge served over HTTP
        # (the published GPT-4 judges) always goes through the openai backend
        backend_name = "openai" if model.kind == "openai" else backends.pick_backend(self.backend, model)
        options = dict(self.backend_options)
        if backend_name == "vllm":
            options.setdefault("seed", self.seed)
        self.store.register_model(ModelRecord(name=model.name, fingerprint=model.fingerprint, kind=model.kind,
                                              path=model.path, template_hash=model.template_hash,
                                              info=model.provenance()))
        shared = self.shared.get(model.fingerprint)
        if shared is not None and shared[0] == backend_name:
            judge = Judge(model=model, store=self.store, backend=shared[1])  # its owner closes it
        else:
            judge = Judge(model=model, store=self.store,
                          backend=LazyBackend(lambda: backends.make_backend(backend_name, model, options)))
            self._owned.append(judge)
        judge.can_constrain = backend_constrains(backend_name, options)
        self.judges[spec] = judge
        return judge

    def close(self) -> None:
        """Free every judge engine this pool started (idempotent)."""
        for judge in self._owned:
            judge.close()


def missing_judge(benchmark: str, published: str) -> UsageError:
    return UsageError(f"benchmark {benchmark!r} needs a judge model: pass --judge "
                      f"openai:{published}@<base_url> for numbers comparable to published ones, "
                      f"or --judge {EMBEDDED_JUDGE} for an offline smoke run (or set `judge:` in the suite)")


class JudgedBenchmark(Benchmark):
    """A benchmark scored by an LLM judge. It declares its judge protocol here; the runner
    builds the judge (`JudgePool`) and passes it to `score(..., judge=)`, then records
    `judge_info` beside the benchmark's results."""

    PROMPT_VERSION: ClassVar[str]
    PUBLISHED_JUDGE: ClassVar[str]
    # The verdict grammar (a regex over the whole reply) for backends that can constrain
    # output; used only when the suite asks for `constrained_verdicts: true`.
    VERDICT_REGEX: ClassVar[str | None] = None

    @property
    def published_judge(self) -> str:
        """The judge the published numbers used (the comparability flag)."""
        return self.options.get("published_judge") or self.PUBLISHED_JUDGE

    def judge_spec(self, run_judge: str | None, override: str | None = None) -> str | None:
        """Which judge scores this benchmark: an explicit --judge (`override`) beats the suite
        entry's `options.judge`, which beats the suite's `judge:` (`run_judge`)."""
        return override or self.options.get("judge") or run_judge

    def judge_params(self, judge: Judge, params: SamplingParams) -> SamplingParams:
        """The verdict call's params: with the verdict grammar when the suite asks for
        `constrained_verdicts` and the judge's backend can enforce it."""
        if not self.options.get("constrained_verdicts") or self.VERDICT_REGEX is None:
            return params
        return judge.constrain(params, self.VERDICT_REGEX)

    @abstractmethod
    def score(self, examples: list[Example], completions: dict[str, Completion],
              judge: Judge | None = None) -> list[dict[str, Any]]:
        """As Benchmark.score; `judge` is None only when no judge was configured (an error)."""


def judge_info(judge: Judge, bench: JudgedBenchmark, stats: JudgeStats, metrics: dict[str, Any]) -> dict:
    """What results.json records about a benchmark's judge: who judged, with which prompt,
    whether that is the published judge, what it cost and what went wrong."""
    published = bench.published_judge
    comparable = judge.model_id == published
    counts = {k: (metrics.get(m) or {}).get("value", 0) for k, m in
              (("judge_errors", "judge_errors"), ("unparseable", "judge_unparseable"),
               ("argmax_fallback", "argmax_fallback")) if m in metrics}
    info = {"model": judge.model.name, "model_id": judge.model_id, "fingerprint": judge.model.fingerprint,
            "prompt_version": bench.PROMPT_VERSION, "published_judge": published, "comparable": comparable,
            # verdicts generated under the benchmark's verdict grammar (structured decoding)
            "constrained": stats.constrained_calls > 0, **stats.to_dict(), **counts}
    if not comparable:
        info["warning"] = (f"judge {judge.model_id!r} is not the published judge {published!r}: "
                           "these numbers are NOT comparable to published ones")
        log.warning("%s", info["warning"])
    return info


def stats_delta(before: JudgeStats, after: JudgeStats) -> JudgeStats:
    """The share of a shared judge's counters that one benchmark used."""
    return JudgeStats(**{k: getattr(after, k) - getattr(before, k) for k in before.__dict__})


def snapshot(judge: Judge) -> JudgeStats:
    return JudgeStats(**judge.stats.__dict__)
