"""Any model scores any text: per-token log-probs of a response under that model.

What is scored (the spec):
  * chat (plain=False): the prompt is `messages` rendered with the scoring model's own chat
    template and the generation prompt (exactly as `generate` renders it); the response
    tokens are `tokenizer(response, add_special_tokens=False)` followed by the model's EOS,
    which is how the trainer tokenizes a row (trainers/data.py::tokenize_rows). So the sum
    of the scores equals the sequence log-prob the policy is trained on, and a source model
    scored here is comparable to the policy in InfiFPO.
  * plain (plain=True): raw text, no template; context = messages[-1]["content"]. Split as
    lm-eval does (`_encode_pair`): trailing whitespace of the context moves to the response,
    the whole text is tokenized once and the response is what follows the context's tokens.
    No EOS is appended. The context must not be empty (the first token has no log-prob).

`logprobs[i]` is log p(token_i | everything before it), taken from the model's raw
distribution (no temperature). With top_k > 0, `top_ids[i]` / `top_logprobs[i]` are the k
most likely tokens at that position, most likely first.

Backends do the work (`Backend.score`): vLLM through `prompt_logprobs`, transformers in one
batched forward pass, an OpenAI-compatible server through /v1/completions with echo.
Results are cached in the store (table text_scores; key: model fingerprint, chat-template
hash, messages, response, plain, top_k) and committed one by one as they arrive, so a
crash keeps every finished score. Errors are returned with `error` set and never cached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.backends import make_backend
from harness.backends.base import render_chat
from harness.errors import UsageError
from harness.models import ResolvedModel, resolve_model
from harness.runner import LazyBackend
from harness.types import stable_hash

log = logging.getLogger(__name__)


class TextScoreRequest(BaseModel):
    """One text to score. `messages` are role/content dicts."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    messages: list[dict]
    response: str
    plain: bool = False


class TextScore(BaseModel):
    id: str
    token_ids: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    top_ids: list[list[int]] | None = None
    top_logprobs: list[list[float]] | None = None
    error: str | None = None
    cached: bool = False

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))


OnScore = Callable[[int, TextScore], None]


def check_request(r: TextScoreRequest) -> None:
    """Bad input fails loudly with the request id, before any engine starts."""
    if not r.messages:
        raise UsageError(f"text-score request {r.id!r}: messages is empty; give at least one message")
    for m in r.messages:
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise UsageError(f"text-score request {r.id!r}: every message needs string 'role' and 'content', "
                             f"got {m!r}")
    if r.plain and not r.messages[-1]["content"]:
        raise UsageError(f"text-score request {r.id!r}: plain scoring needs a non-empty context in "
                         "messages[-1].content (the first token of a text has no log-prob)")


def split_tokens(tokenizer, r: TextScoreRequest, template: str | None, model_name: str) -> tuple[list[int], list[int]]:
    """(context ids, response ids) under this tokenizer, as the module docstring specifies."""
    if not r.plain:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise UsageError(f"the tokenizer of {model_name!r} has no eos token; set eos_token in "
                             "tokenizer_config.json")
        prompt = render_chat(tokenizer, r.messages, template, model_name)
        return prompt, list(tokenizer(r.response, add_special_tokens=False)["input_ids"]) + [eos]
    context, response = r.messages[-1]["content"], r.response
    tail = len(context) - len(context.rstrip())
    if tail:
        context, response = context[:-tail], context[-tail:] + response
    whole = list(tokenizer(context + response, add_special_tokens=True)["input_ids"])
    ctx = list(tokenizer(context, add_special_tokens=True)["input_ids"])
    return whole[:len(ctx)], whole[len(ctx):]


def text_score_key(model: ResolvedModel, r: TextScoreRequest, top_k: int) -> str:
    """Cache key; like generations, the request id is not part of it."""
    return stable_hash("text-score", model.fingerprint, model.template_hash, r.messages, r.response, r.plain, top_k)


def score_with(model: ResolvedModel, requests: list[TextScoreRequest], store, engine, *,
               top_k: int = 0) -> list[TextScore]:
    """Scores for `requests` in order: cached ones from the store, the rest from
    `engine.get().score(...)` (engine: runner.LazyBackend, so a cached run starts nothing)."""
    if top_k < 0:
        raise UsageError(f"top_k must be >= 0, got {top_k}")
    for r in requests:
        check_request(r)
    keys = [text_score_key(model, r, top_k) for r in requests]
    hits = store.lookup_text_scores(keys)
    out: list[TextScore | None] = [None] * len(requests)
    todo: dict[str, list[int]] = {}  # key -> request positions sharing it (duplicates score once)
    for i, (r, k) in enumerate(zip(requests, keys)):
        if k in hits:
            out[i] = TextScore(id=r.id, cached=True, **hits[k])
        else:
            todo.setdefault(k, []).append(i)
    if todo:
        unique = [requests[idx[0]] for idx in todo.values()]
        unique_keys = list(todo)
        backend = engine.get()  # started before the clock: the log's tokens/s measures scoring only
        t0 = time.perf_counter()

        def on_result(j: int, s: TextScore) -> None:
            if s.error is None:
                store.put_text_score(unique_keys[j], model.fingerprint, unique[j].id,
                                     s.model_dump(exclude={"id", "error", "cached"}))
            for i in todo[unique_keys[j]]:
                out[i] = s.model_copy(update={"id": requests[i].id})

        backend.score(unique, top_k=top_k, on_result=on_result)
        n_tok = sum(len(s.token_ids) for s in out if s is not None and not s.cached)
        log.info("scored %d texts (%d tokens) in %.1fs; %d cached", len(unique), n_tok,
                 time.perf_counter() - t0, len(requests) - sum(len(v) for v in todo.values()))
    return [s if s is not None else TextScore(id=r.id, error="no result from the backend")
            for s, r in zip(out, requests)]


def score_texts(model: str | ResolvedModel, requests: list[TextScoreRequest], *, store, top_k: int = 0,
                backend: str = "auto", backend_options: dict[str, Any] | None = None,
                chat_template_file: str | None = None) -> list[TextScore]:
    """The contract entry point: resolve the model, start a backend only if something is
    not cached, score, close it."""
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model, store, chat_template_file)
    engine = LazyBackend(lambda: make_backend(backend, resolved, backend_options))
    try:
        return score_with(resolved, requests, store, engine, top_k=top_k)
    finally:
        engine.close()
