"""The Benchmark contract (DESIGN.md §3).

A benchmark turns data into Requests and Completions into per-item scores. Per-item
scores are plain dicts with at least:
    id       the item id (str)
    score    a float: 0/1 for pass/fail benchmarks, a judge score or win value otherwise
and anything else worth keeping (extracted answer, gold, outcome, verdicts...). The
`score` key is what `harness gate` pairs across runs, so keep its meaning stable per VERSION.
"""

from __future__ import annotations

import logging
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from harness.types import Completion, Request, SamplingParams

log = logging.getLogger(__name__)


@dataclass
class Example:
    id: str
    data: dict[str, Any]


@dataclass
class Context:
    """What a benchmark may need beyond its own options: where data lives, the store
    (judges cache there), the run's seed, and a way to build a judge backend."""

    data_dir: Path | None = None
    store: Any = None  # harness.store.Store
    seed: int = 0
    judge: str | None = None  # a --model spec for judged benchmarks
    extra: dict[str, Any] = field(default_factory=dict)


class Benchmark(ABC):
    name: ClassVar[str]
    VERSION: ClassVar[str]
    # Headline metric key in aggregate()'s output, used by leaderboards and gates.
    headline: ClassVar[str] = "accuracy"
    default_params: ClassVar[SamplingParams] = SamplingParams()

    def __init__(self, options: dict[str, Any] | None = None, ctx: Context | None = None,
                 params: SamplingParams | None = None):
        self.options = dict(options or {})
        self.ctx = ctx or Context()
        self.params = params or self.default_params
        self.dataset_revision: str | None = None

    @abstractmethod
    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        """Examples in a stable order; `limit` takes the first N (documented per benchmark)."""

    @abstractmethod
    def to_requests(self, example: Example) -> list[Request]:
        ...

    @abstractmethod
    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict[str, Any]]:
        """completions maps Request.id -> Completion for every request of these examples."""

    @abstractmethod
    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """{metric: {value, ci_low, ci_high, n, ...}} with the headline metric among them."""

    # Optional hook for multi-turn benchmarks (MT-Bench): requests that depend on earlier
    # completions. The runner calls it until it returns nothing.
    def next_requests(self, example: Example, completions: dict[str, Completion]) -> list[Request]:
        return []

    # ---- helpers ---------------------------------------------------------------------
    def request_id(self, example: Example, suffix: str = "") -> str:
        return f"{self.name}/{example.id}{suffix}"

    def chat(self, example: Example, content: str, params: SamplingParams | None = None,
             suffix: str = "") -> Request:
        return Request(id=self.request_id(example, suffix), messages=({"role": "user", "content": content},),
                       params=params or self.params)

    def provenance(self) -> dict[str, Any]:
        return {"version": self.VERSION, "dataset_revision": self.dataset_revision,
                "params": self.params.to_dict(), "options": self.options}


def take(examples: list[Example], limit: int | None, seed: int = 0, shuffle: bool = False) -> list[Example]:
    """First `limit` items (the default: comparable slices across runs), or a seeded sample."""
    if shuffle:
        examples = examples[:]
        random.Random(seed).shuffle(examples)
    return examples if limit is None else examples[:limit]


def with_params(params: SamplingParams, **overrides: Any) -> SamplingParams:
    return replace(params, **{k: v for k, v in overrides.items() if v is not None})
