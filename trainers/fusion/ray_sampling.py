"""The sampling stage on a Ray cluster: `sampling.executor: ray` in a fusion recipe.

Locally one engine samples a model, scaled by vLLM's own tensor/data parallelism. For many
nodes, vLLM's documentation recommends Ray for offline batch inference: one `LLM` replica
per Ray worker (each with its own tensor parallelism, placed on its GPUs), the prompts
streamed through the replicas (their `offline_inference/distributed` example and the Ray
Data LLM API, `ray.data.llm`). This module follows that shape with Ray Core actors rather
than Ray Data, because the fusion stage needs what Ray Data does not give it: each answer
committed to the harness store the moment it exists, cached requests never sent again, and
the harness's own backends (vLLM, transformers, OpenAI-compatible) behind one contract.

How it runs:
* the driver (this process) resolves the model and looks every request up in the store,
  with the runner's cache keys (`harness.store.generation_key`); a fully cached model
  starts no actor and touches no cluster;
* the missing requests, deduplicated and chunked (sampling params mixed) as `generate_all`
  does, are cut into chunks of `ray.chunk` requests and handed out one at a time to
  `ray.actors` actors; each actor builds one backend (`harness.backends.make_backend`)
  for the model and generates whole chunks;
* as each chunk comes back the driver writes its completions into the store (SQLite stays
  on the driver; actors never see it) and gives that actor the next chunk;
* an actor that dies (node lost, engine crash) loses only its chunk in flight; the other
  actors finish the queue, the loss is raised at the end as `IncompleteSampling`, which
  `sample_model` records exactly like a local engine failure, and the next run of the same
  recipe samples only what is missing. No chunk is retried within a run: a prompt that
  crashes engines would otherwise take every actor down in turn.

The result is the local path's: same cache keys, same Completion objects, the same Answers
and SampleReport built from them by `sample_model`. Engines seed per request where they can
(vLLM), so chunking does not change sampled text; transformers seeds per batch, so its
samples depend on how requests were batched unless `batch_size: 1` (tests/test_fusion_ray.py).

Multi-node requirements (not tested here, see docs/fusion.md "Scale-out"): fuse-harness
installed on every node, and model paths every node can read (a shared filesystem or a
hub id); the store path only has to exist on the driver.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections import deque
from typing import Any

from harness.errors import UsageError
from harness.types import Completion, Request

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "fuse-harness[ray]"'


class IncompleteSampling(RuntimeError):
    """Some chunks were lost with their actors; everything else is in the store."""


def check_ray_spec(spec, backend_options: dict[str, Any] | None) -> None:
    """Bad settings fail here, before any cluster is started or anything sampled."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError(f"sampling.executor is 'ray' but Ray is not installed: {INSTALL_HINT} "
                         "(or set sampling.executor: local)")
    opts = backend_options or {}
    gpus_per_engine = int(opts.get("tensor_parallel_size", 1)) * int(opts.get("pipeline_parallel_size", 1))
    if spec.num_gpus_per_actor and gpus_per_engine > spec.num_gpus_per_actor:
        raise UsageError(f"backend_options ask for {gpus_per_engine} GPUs per engine (tensor_parallel_size x "
                         f"pipeline_parallel_size) but sampling.ray.num_gpus_per_actor is "
                         f"{spec.num_gpus_per_actor}; set num_gpus_per_actor: {gpus_per_engine}")


class SamplingWorker:
    """One engine on one Ray worker. Built lazily by `ready()` so the driver can time
    start-up apart from generation, and so a failing start is an ordinary task error."""

    def __init__(self, backend_factory):
        self._factory = backend_factory
        self._backend = None

    def ready(self) -> bool:
        if self._backend is None:
            self._backend = self._factory()
        return True

    def generate(self, requests: list[Request]) -> list[Completion]:
        self.ready()
        return self._backend.generate(requests)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _cause(err: BaseException) -> str:
    """The engine's own error, not Ray's wrapper with a remote traceback."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def generate_on_ray(requests: list[Request], model, store, backend_factory, spec, stats=None,
                    progress: bool = True, description: str = "generating") -> dict[str, Completion]:
    """`harness.runner.generate_all` with the engine calls spread over Ray actors: completions
    for every request, from the store when cached, else from the actors (stored on arrival).
    Raises IncompleteSampling after the queue drains when some chunks were lost."""
    from harness.progress import PhaseProgress
    from harness.runner import GenerationStats, split_cached

    stats = stats if stats is not None else GenerationStats()
    out, todo = split_cached(requests, model, store, stats)
    unique = todo.unique
    if not unique:
        return out

    chunks = deque(todo.chunks(spec.chunk))

    def commit(chunk: list[Request], completions: list[Completion], advance) -> None:
        for r, c in zip(chunk, completions):
            advance(1, todo.commit(r, c, store, model, out, stats))

    import ray

    started = _connect(spec)
    actors: list = []
    try:
        actors = _start_actors(ray, spec, backend_factory)
        lost: list[str] = []  # why each actor stopped
        t0 = time.perf_counter()
        alive = _await_ready(ray, actors, lost)
        stats.engine_start_s += time.perf_counter() - t0
        log.info("%s: %d chunks of up to %d requests on %d Ray actors (%d started)", description, len(chunks),
                 spec.chunk, len(actors), len(alive))
        t0 = time.perf_counter()
        pending: dict[Any, tuple[int, list[Request]]] = {}  # object ref -> (actor, its chunk)
        unsampled = 0

        def submit(a: int) -> None:
            if chunks:
                chunk = chunks.popleft()
                pending[actors[a].generate.remote(chunk)] = (a, chunk)

        with PhaseProgress(progress, description, len(unique)) as advance:
            for a in alive:
                submit(a)
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                a, chunk = pending.pop(ref)
                try:
                    completions = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - actor died or its engine raised: retire it, keep going
                    why = _cause(e)
                    lost.append(f"actor {a}: {why}")
                    log.error("%s: Ray actor %d failed on a chunk of %d requests (%s); the other actors go on",
                              description, a, len(chunk), why)
                    alive.remove(a)
                    ray.kill(actors[a])
                    unsampled += len(chunk)
                    continue
                commit(chunk, completions, advance)
                submit(a)
        stats.seconds += time.perf_counter() - t0
        unsampled += sum(len(c) for c in chunks)  # left in the queue when every actor was gone
        if unsampled:
            raise IncompleteSampling(f"{len(lost)} of {len(actors)} Ray actors failed ({'; '.join(lost)}); "
                                     f"{unsampled} of {len(unique)} requests were not sampled")
        if lost:  # the survivors did all the work: complete, but say what happened
            log.warning("%s: finished on %d of %d Ray actors (%s)", description, len(alive), len(actors),
                        "; ".join(lost))
        return out
    finally:
        _stop_actors(ray, actors)
        if started:
            ray.shutdown()


def _connect(spec) -> bool:
    """Attach to (or start) a cluster; True when this call started it (and so shuts it down).
    An already initialised Ray (a test fixture, a user's script) is used as it is."""
    import ray

    local = spec.address is None and not _env_address()
    if ray.is_initialized():
        _check_resources(ray, spec, local=local)
        return False
    ray.init(address=spec.address, include_dashboard=False)
    try:
        _check_resources(ray, spec, local=local)
    except UsageError:
        ray.shutdown()
        raise
    return True


def _env_address() -> str | None:
    import os

    return os.environ.get("RAY_ADDRESS")


def _check_resources(ray, spec, local: bool) -> None:
    """Actors the cluster can never place would wait forever: a clear error on a local
    cluster, a warning on one named by address (it may autoscale)."""
    have = ray.cluster_resources()
    short = []
    for res, per in (("CPU", spec.num_cpus_per_actor), ("GPU", spec.num_gpus_per_actor)):
        need = per * spec.actors
        if need > have.get(res, 0):
            short.append(f"{spec.actors} actors x {per:g} {res} = {need:g} {res}, the cluster has {have.get(res, 0):g}")
    if not short:
        return
    msg = "sampling.ray asks for more than the Ray cluster has: " + "; ".join(short)
    if local:
        raise UsageError(msg + ". Lower sampling.ray.actors / num_cpus_per_actor / num_gpus_per_actor, or set "
                               "sampling.ray.address to a larger cluster")
    log.warning("%s; actors will wait until the cluster grows", msg)


def _start_actors(ray, spec, backend_factory) -> list:
    worker = ray.remote(SamplingWorker).options(num_cpus=spec.num_cpus_per_actor, num_gpus=spec.num_gpus_per_actor)
    return [worker.remote(backend_factory) for _ in range(spec.actors)]


def _await_ready(ray, actors: list, lost: list[str]) -> list[int]:
    """Build every actor's engine in parallel; the ones that fail are retired with the reason.
    All failing is the same as a local engine that does not start: raise at once."""
    refs = {a.ready.remote(): i for i, a in enumerate(actors)}
    alive = []
    for ref, i in refs.items():
        try:
            ray.get(ref)
            alive.append(i)
        except Exception as e:  # noqa: BLE001 - one bad node must not stop the others
            lost.append(f"actor {i}: {_cause(e)}")
            log.error("Ray actor %d could not start its engine: %s", i, lost[-1])
            ray.kill(actors[i])
    if not alive:
        raise IncompleteSampling(f"no Ray actor could start its engine ({'; '.join(lost)})")
    return alive


def _stop_actors(ray, actors: list) -> None:
    """Close engines politely (vLLM frees GPU memory and its worker processes), then make sure."""
    deadline = time.monotonic() + 120
    for ref in [a.close.remote() for a in actors]:
        try:
            ray.get(ref, timeout=max(deadline - time.monotonic(), 1))
        except Exception as e:  # noqa: BLE001 - a dead actor cannot close; that is not news
            log.debug("closing a Ray actor: %s", e)
    for a in actors:
        try:
            ray.kill(a)
        except Exception as e:  # noqa: BLE001
            log.debug("killing a Ray actor: %s", e)
