"""Any OpenAI-compatible chat server (`vllm serve`, hosted APIs).

Async with bounded concurrency; bounded retries with exponential backoff on 429, 5xx,
timeouts and connection errors. A request that still fails is returned with `error`
set: it is never turned into an answer, and the runner does not cache it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

import httpx

from harness.backends.base import OnResult
from harness.errors import BackendError, UsageError
from harness.textscore import OnScore, TextScore, TextScoreRequest, split_tokens
from harness.types import Completion, Request

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
# Request fields that constrain a chat reply to a regex, by server: vLLM >= 0.10's
# `structured_outputs` (vllm/entrypoints/openai/chat_completion/protocol.py), and the
# `guided_regex` extension of older vLLM servers. Opt in with --judge-backend-option regex_field=...
REGEX_FIELDS = {"structured_outputs": lambda rx: {"structured_outputs": {"regex": rx}},
                "guided_regex": lambda rx: {"guided_regex": rx}}


class OpenAIBackend:
    name = "openai"

    def __init__(self, model, *, concurrency: int = 16, max_retries: int = 5, timeout: float = 600.0,
                 backoff: float = 1.0, api_key: str | None = None, tokenizer: str | None = None,
                 regex_field: str | None = None, **_: Any):
        self.model = model
        if regex_field is not None and regex_field not in REGEX_FIELDS:
            raise UsageError(f"backend option regex_field={regex_field!r}: valid values are "
                             f"{', '.join(REGEX_FIELDS)} (how the server takes a regex-constrained reply)")
        # How SamplingParams.regex (a judge's verdict grammar) reaches the server; None: this
        # server cannot constrain (OpenAI's own API rejects the fields), so regex is never set.
        self.regex_field = regex_field
        self.tokenizer_path = tokenizer  # text scoring tokenizes locally (the span must be known)
        self.base_url = model.base_url
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        key = api_key or os.environ.get("HARNESS_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.headers = {"Authorization": f"Bearer {key}"}
        self._check_reachable()

    def _check_reachable(self) -> None:
        """Fail early and clearly when nothing listens at base_url (after bounded retries)."""
        last: Exception | None = None
        for attempt in range(self.max_retries):
            try:
                r = httpx.get(f"{self.base_url}/models", headers=self.headers, timeout=10)
                if r.status_code < 500:
                    return
                last = RuntimeError(f"HTTP {r.status_code}")
            except httpx.HTTPError as e:
                last = e
            if attempt + 1 < self.max_retries:
                import time

                time.sleep(min(self.backoff * 2 ** attempt, 10))
        raise BackendError(f"server unreachable at {self.base_url} after {self.max_retries} tries "
                           f"({type(last).__name__}: {last}). Is it running? Check the URL in "
                           f"--model openai:<model>@<base_url>.")

    def _payload(self, r: Request) -> dict[str, Any]:
        p = r.params
        body: dict[str, Any] = {"model": self.model.path, "messages": list(r.messages), "n": p.n,
                                "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens}
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None:
            body["seed"] = p.seed
        if p.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = p.logprobs
        if self.model.chat_template:
            body["chat_template"] = self.model.chat_template  # vLLM's server accepts this extension
        if p.regex is not None:
            if self.regex_field is None:
                raise ValueError("regex-constrained request to a server without regex_field "
                                 "(the judge layer only constrains backends that declare it)")
            body.update(REGEX_FIELDS[self.regex_field](p.regex))
        return body

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict) -> tuple[httpx.Response | None, str]:
        """POST with bounded, jittered retries on RETRY_STATUS and transport errors. Returns the
        first response not worth retrying (200 or a client error), else None and the last error."""
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                resp = await client.post(f"{self.base_url}{path}", json=body)
                if resp.status_code not in RETRY_STATUS:
                    return resp, ""
                last = _http_error(resp)
            except (httpx.TimeoutException, httpx.TransportError) as e:
                last = f"{type(e).__name__}: {e}"
            if attempt < self.max_retries:
                await asyncio.sleep(min(self.backoff * 2 ** attempt, 30) * (0.5 + random.random()))
        return None, last

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, r: Request) -> Completion:
        async with sem:
            resp, last = await self._post(client, "/chat/completions", self._payload(r))
        if resp is not None and resp.status_code == 200:
            return _parse(resp.json())
        return Completion(texts=[], finish_reasons=[], error=last or _http_error(resp))

    async def _run(self, requests: list[Request], on_result: OnResult | None) -> list[Completion]:
        sem = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(headers=self.headers, timeout=self.timeout, limits=limits) as client:
            async def run(i: int, r: Request) -> Completion:
                c = await self._one(client, sem, r)
                if on_result is not None:
                    on_result(i, c)
                return c

            return await asyncio.gather(*(run(i, r) for i, r in enumerate(requests)))

    def generate(self, requests: list[Request], on_result: OnResult | None = None) -> list[Completion]:
        return asyncio.run(self._run(requests, on_result))

    def score(self, requests: list[TextScoreRequest], top_k: int = 0,
              on_result: OnScore | None = None) -> list[TextScore]:
        """/v1/completions with the token ids as prompt, echo and logprobs (what lm-eval's
        local-completions does). Tokenized here with the model's own tokenizer, given as
        --backend-option tokenizer=DIR, so the response span is known."""
        tokenizer = self._score_tokenizer()
        spans: list[tuple[list[int], list[int]] | None] = []
        for r in requests:
            try:
                spans.append(split_tokens(tokenizer, r, self.model.chat_template, self.model.name))
            except Exception as e:
                if "chat template" in str(e) or "eos token" in str(e):
                    raise
                spans.append(None)
                log.warning("text %s cannot be tokenized: %s", r.id, e)
        return asyncio.run(self._score_all(requests, spans, top_k, on_result))

    def _score_tokenizer(self):
        if not self.tokenizer_path:
            raise BackendError(f"scoring through the openai backend ({self.base_url}) needs the model's tokenizer "
                               "to find the response tokens: pass --backend-option tokenizer=<local model dir or "
                               "hub id>, or score with --backend vllm / hf on local weights")
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.tokenizer_path)

    async def _score_all(self, requests, spans, top_k: int, on_result: OnScore | None) -> list[TextScore]:
        sem = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(headers=self.headers, timeout=self.timeout) as client:
            async def run(i: int) -> TextScore:
                if spans[i] is None:
                    s = TextScore(id=requests[i].id, error="the tokenizer cannot render this text")
                else:
                    async with sem:
                        s = await self._score_one(client, requests[i].id, *spans[i], top_k)
                if on_result is not None:
                    on_result(i, s)
                return s

            return list(await asyncio.gather(*(run(i) for i in range(len(requests)))))

    async def _score_one(self, client: httpx.AsyncClient, rid: str, context: list[int], response: list[int],
                         top_k: int) -> TextScore:
        body = {"model": self.model.path, "prompt": context + response, "echo": True, "logprobs": max(top_k, 1),
                "max_tokens": 1, "temperature": 0.0, "return_tokens_as_token_ids": True}
        resp, last = await self._post(client, "/completions", body)
        if resp is not None and resp.status_code in (404, 405):
            raise BackendError(
                f"{self.base_url} has no /completions endpoint (HTTP {resp.status_code}); text scoring needs "
                "a completions endpoint that echoes prompt log-probs (e.g. `vllm serve`), or local weights "
                "with --backend vllm / hf. Chat-only APIs cannot score a given text.")
        if resp is not None and resp.status_code == 200:
            return _parse_echo(rid, resp.json(), context, response, top_k, self.base_url)
        return TextScore(id=rid, error=last or _http_error(resp))

    def close(self) -> None:
        pass


def _http_error(resp: httpx.Response) -> str:
    return f"HTTP {resp.status_code}: {resp.text[:300]}"


def _token_id(token: str) -> int | None:
    return int(token[len("token_id:"):]) if isinstance(token, str) and token.startswith("token_id:") else None


def _parse_echo(rid: str, data: dict[str, Any], context: list[int], response: list[int], top_k: int,
                base_url: str) -> TextScore:
    """The response span of an echoed completion. A server that ignores echo (llama.cpp
    returns only the generated token) would give chance-level scores: refuse it."""
    lp = ((data.get("choices") or [{}])[0]).get("logprobs") or {}
    token_lps = lp.get("token_logprobs") or []
    n = len(context) + len(response)
    if len(token_lps) < n:
        return TextScore(id=rid, error=f"{base_url} returned log-probs for {len(token_lps)} tokens, expected the "
                                       f"{n} prompt tokens echoed: the server does not support echo with logprobs "
                                       "(use `vllm serve`, or --backend vllm / hf)")
    tokens = lp.get("tokens") or []
    sent = [_token_id(t) for t in tokens[len(context):n]]
    if any(t is not None for t in sent) and sent != response:
        return TextScore(id=rid, error="the server echoed other token ids than were sent")
    top_ids = top_lps = None
    if top_k:
        tops = (lp.get("top_logprobs") or [])[len(context):n]
        ranked = [sorted(((v, _token_id(t)) for t, v in (d or {}).items()), key=lambda x: -x[0])[:top_k] for d in tops]
        if len(ranked) != len(response) or any(t is None for row in ranked for _, t in row):
            return TextScore(id=rid, error="top-k alternatives need token ids (vLLM's return_tokens_as_token_ids); "
                                           f"{base_url} returned token strings")
        top_ids = [[t for _, t in row] for row in ranked]
        top_lps = [[float(v) for v, _ in row] for row in ranked]
    return TextScore(id=rid, token_ids=list(response), logprobs=[float(x) for x in token_lps[len(context):n]],
                     top_ids=top_ids, top_logprobs=top_lps)


def _parse(data: dict[str, Any]) -> Completion:
    choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
    usage = data.get("usage") or {}
    texts = [(c.get("message") or {}).get("content") or "" for c in choices]
    lps = None
    if any(c.get("logprobs") for c in choices):
        lps = [[{"token": t["token"], "logprob": t["logprob"],
                 "top": {a["token"]: a["logprob"] for a in t.get("top_logprobs") or []}}
                for t in ((c.get("logprobs") or {}).get("content") or [])] for c in choices]
    total = usage.get("completion_tokens") or 0
    # The API reports one total; split it evenly across samples (exact when n == 1).
    per = [total // max(len(choices), 1)] * len(choices)
    return Completion(texts=texts, finish_reasons=[c.get("finish_reason") for c in choices],
                      prompt_tokens=usage.get("prompt_tokens") or 0, completion_tokens=per, logprobs=lps)
