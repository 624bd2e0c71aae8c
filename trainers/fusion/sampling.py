"""k answers per prompt per model, through the harness runner (DESIGN.md §2: one runner,
one store). Every finished completion is committed to the store as it arrives, so a model
that fails half-way keeps its finished answers: they are read back from the store, the
failure is recorded, and the next run of the same recipe asks the engine only for the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from harness.errors import UsageError
from harness.types import Request, SamplingParams

log = logging.getLogger(__name__)


@dataclass
class Answer:
    text: str
    source: str  # the source's name, or "target"
    index: int  # sample index within the prompt's n
    finish_reason: str | None = None
    tokens: int = 0
    # filled in by scoring:
    score: float | None = None  # the ranking score (1/0 for verifiers, reward or judge score otherwise)
    correct: bool | None = None  # verifier verdict; None where there is no verifier (instructions)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "index": self.index, "text": self.text, "finish_reason": self.finish_reason,
                "tokens": self.tokens, "score": self.score, "correct": self.correct, **self.detail}


@dataclass
class SampleReport:
    model: str
    fingerprint: str = ""
    requests: int = 0
    cached: int = 0
    generated: int = 0
    errors: int = 0  # requests whose completion failed (no answers for that prompt)
    missing: int = 0  # requests with no completion at all (the model failed before reaching them)
    failed: str | None = None  # why the model stopped, when it did
    seconds: float = 0.0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_requests(items, n_for, sampling) -> list[Request]:
    """One request per prompt; `n_for(item)` answers each, FuseChat-3.0's T/top_p by default."""
    out = []
    for it in items:
        params = SamplingParams(n=n_for(it), temperature=sampling.temperature, top_p=sampling.top_p,
                                max_tokens=sampling.max_tokens, seed=sampling.seed)
        out.append(Request(id=it.id, messages=it.messages, params=params))
    return out


def cached_completions(requests: list[Request], model, store) -> dict[str, list[dict]]:
    """Request id -> its stored sample rows, for requests whose every sample is stored."""
    from harness.store import generation_key

    keys = {r.id: [generation_key(model.fingerprint, model.template_hash, r, i) for i in range(r.params.n)]
            for r in requests}
    hits = store.lookup_generations([k for ks in keys.values() for k in ks])
    return {rid: [hits[k] for k in ks] for rid, ks in keys.items() if all(k in hits for k in ks)}


def sample_model(label: str, model_spec: str, requests: list[Request], store, backend: str = "auto",
                 backend_options: dict[str, Any] | None = None, progress: bool = True,
                 backend_factory=None, sampling=None) -> tuple[dict[str, list[Answer]], SampleReport]:
    """Answers per request id for one model. Never raises for a model that fails mid-way
    (engine crash, server down, a Ray actor lost): its finished answers are returned and the
    failure is in the report. Bad model specs and bad Ray settings still raise, before
    anything is sampled. `sampling` (the recipe's SamplingSpec) picks the executor: with
    `executor: ray` the engines run as Ray actors (ray_sampling.py), same keys, same answers."""
    from harness.models import resolve_model
    from harness.runner import GenerationStats, LazyBackend, generate_all
    from harness.store import ModelRecord

    ray_spec = sampling.ray if sampling is not None and sampling.executor == "ray" else None
    if ray_spec is not None:
        from trainers.fusion.ray_sampling import check_ray_spec

        check_ray_spec(ray_spec, backend_options)
    model = resolve_model(model_spec, store)
    report = SampleReport(model=model.name, fingerprint=model.fingerprint, requests=len(requests))
    if model.kind != "candidate":  # candidates were registered by the trainer, with their parent
        store.register_model(ModelRecord(name=model.name, fingerprint=model.fingerprint, kind=model.kind,
                                         path=model.path, template_hash=model.template_hash,
                                         info=model.provenance()))
    if backend_factory is None:
        from harness.backends import make_backend, pick_backend

        name = pick_backend(backend, model)
        opts = dict(backend_options or {})
        if name == "vllm":
            opts.setdefault("seed", requests[0].params.seed if requests else 0)

        def backend_factory():
            return make_backend(name, model, opts)

    lazy = LazyBackend(backend_factory)
    stats = GenerationStats()
    answers: dict[str, list[Answer]] = {}
    try:
        if ray_spec is not None:
            from trainers.fusion.ray_sampling import generate_on_ray

            done = generate_on_ray(requests, model, store, backend_factory, ray_spec, stats, progress=progress,
                                   description=f"sampling {label}")
        else:
            done = generate_all(requests, model, store, lazy, stats, progress=progress,
                                description=f"sampling {label}")
        for r in requests:
            c = done.get(r.id)
            if c is None:
                report.missing += 1
            elif c.error:
                report.errors += 1
                log.warning("%s: request %s failed: %s", label, r.id, c.error)
            else:
                answers[r.id] = [Answer(text=t, source=label, index=i, finish_reason=fr,
                                        tokens=c.completion_tokens[i] if i < len(c.completion_tokens) else 0)
                                 for i, (t, fr) in enumerate(zip(c.texts, c.finish_reasons))]
    except UsageError:  # bad settings found late (a Ray cluster too small): the user's to fix, not a crash
        raise
    except Exception as e:  # noqa: BLE001 - any engine failure: keep what finished, record why
        report.failed = f"{type(e).__name__}: {e}"
        log.error("source %s failed after %d of %d prompts: %s; its finished answers are kept and the next run "
                  "resumes from them", label, stats.generated + stats.cached, len(requests), report.failed)
        stored = cached_completions(requests, model, store)
        for r in requests:
            rows = stored.get(r.id)
            if rows is None:
                report.missing += 1
                continue
            answers[r.id] = [Answer(text=x["text"], source=label, index=i, finish_reason=x["finish_reason"],
                                    tokens=x["completion_tokens"] or 0) for i, x in enumerate(rows)]
    finally:
        try:
            lazy.close()
        except Exception as e:  # noqa: BLE001 - a crashed engine may fail to close; that is not news
            log.debug("closing %s's backend: %s", label, e)
    report.cached, report.generated = stats.cached, stats.generated
    report.seconds, report.completion_tokens = round(stats.seconds, 3), stats.completion_tokens
    return answers, report
