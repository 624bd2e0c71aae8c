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
from harness.errors import BackendError
from harness.types import Completion, Request

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend:
    name = "openai"

    def __init__(self, model, *, concurrency: int = 16, max_retries: int = 5, timeout: float = 600.0,
                 backoff: float = 1.0, api_key: str | None = None, **_: Any):
        self.model = model
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
        return body

    async def _one(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, r: Request) -> Completion:
        last = ""
        async with sem:
            for attempt in range(self.max_retries + 1):
                try:
                    resp = await client.post(f"{self.base_url}/chat/completions", json=self._payload(r))
                    if resp.status_code == 200:
                        return _parse(resp.json())
                    last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    if resp.status_code not in RETRY_STATUS:
                        break
                except (httpx.TimeoutException, httpx.TransportError) as e:
                    last = f"{type(e).__name__}: {e}"
                if attempt < self.max_retries:
                    await asyncio.sleep(min(self.backoff * 2 ** attempt, 30) * (0.5 + random.random()))
        return Completion(texts=[], finish_reasons=[], error=last)

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

    def close(self) -> None:
        pass


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
