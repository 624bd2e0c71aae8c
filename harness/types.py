"""The data that crosses the Backend contract (DESIGN.md §3)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": str}


@dataclass(frozen=True)
class SamplingParams:
    """What is sent to the engine, recorded verbatim with every generation.

    temperature == 0 means greedy; backends translate that themselves (e.g. do_sample=False
    for transformers) so that what was *actually* sent is unambiguous.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 2048
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None
    # Structured output: the whole reply must match this regex (judge verdict grammars).
    # Left out of to_dict() when unset, so existing cache keys do not change.
    regex: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        if d["regex"] is None:
            del d["regex"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplingParams:
        d = dict(d)
        d["stop"] = tuple(d.get("stop") or ())
        return cls(**d)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Request:
    """One prompt to generate for. `id` is unique within a run (benchmark/item[/turn])."""

    id: str
    messages: tuple[Message, ...]
    params: SamplingParams

    def messages_json(self) -> str:
        return json.dumps(list(self.messages), sort_keys=True, ensure_ascii=False)


@dataclass
class Completion:
    """n samples for one Request. `error` set means the request failed; texts may be empty."""

    texts: list[str]
    finish_reasons: list[str | None]
    prompt_tokens: int = 0
    completion_tokens: list[int] = field(default_factory=list)
    # per sample: list of {token, logprob, top: {token: logprob}} (only when asked for)
    logprobs: list[Any] | None = None
    error: str | None = None
    cached: bool = False

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


def stable_hash(*parts: Any) -> str:
    """sha256 over a canonical JSON encoding; the building block of every cache key."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
