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
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import UsageError, did_you_mean
from harness.types import Completion, Request, SamplingParams

log = logging.getLogger(__name__)


@dataclass
class Example:
    id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class TextScorer:
    """The run's model and its (lazily started) engine, for benchmarks that score given texts
    (lm-eval log-likelihood tasks) on the model under test instead of generating."""

    model: Any  # harness.models.ResolvedModel
    engine: Any  # harness.runner.LazyBackend


@dataclass
class Context:
    """What a benchmark may need beyond its own options: where data lives, the store
    (judges cache there), the run's seed, and the run's text scorer."""

    data_dir: Path | None = None
    store: Any = None  # harness.store.Store
    seed: int = 0
    judge: str | None = None  # a --model spec for judged benchmarks
    text_scorer: TextScorer | None = None  # set by the runner for benchmarks with scores_text


class BenchmarkOptions(BaseModel):
    """A benchmark's `options:` (suite file, `--option BENCH.KEY=VALUE`). Each benchmark
    declares its own subclass; an unknown key is an error with did-you-mean, never ignored."""

    model_config = ConfigDict(extra="forbid")


class JudgedOptions(BenchmarkOptions):
    """Options every LLM-judged benchmark takes (harness.judges reads `judge`)."""

    judge: str | None = None  # a --model spec; --judge on the command line beats it
    published_judge: str | None = None  # the judge the published numbers used (comparability flag)
    judge_max_tokens: int | None = None
    # Constrain the judge's reply to the verdict grammar where its backend can (vLLM); off by
    # default so published judges run their published, unconstrained protocol.
    constrained_verdicts: bool = False


class SampledOptions(BenchmarkOptions):
    """For category-ordered data, where `--limit N` as "the first N rows" is one category."""

    # stratified: a seeded sample spread over categories in proportion to their sizes
    # (seed = the run's --seed); first: the first N rows in file order.
    limit_sample: Literal["stratified", "first"] = "stratified"


def validate_options(bench: str, model: type[BenchmarkOptions], options: dict[str, Any]) -> BenchmarkOptions:
    """Typed options, or a UsageError naming the bad key (with did-you-mean) or value."""
    allowed = list(model.model_fields)
    for key in options:
        if key not in model.model_fields:
            if not allowed:
                raise UsageError(f"{bench}: unknown option {key!r}; {bench} takes no options.")
            raise UsageError(f"{bench}: {did_you_mean('option', key, allowed)}")
    try:
        return model.model_validate(options)
    except ValidationError as e:
        bad = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise UsageError(f"bad option value for {bench}: {bad}") from None


class Benchmark(ABC):
    name: ClassVar[str]
    VERSION: ClassVar[str]
    # Headline metric key in aggregate()'s output, used by leaderboards and gates.
    headline: ClassVar[str] = "accuracy"
    default_params: ClassVar[SamplingParams] = SamplingParams()
    Options: ClassVar[type[BenchmarkOptions]] = BenchmarkOptions
    # False when the data's owners forbid showing items in plain text (GPQA): reports and
    # leaderboards show item ids instead of prompts and answers.
    public_items: ClassVar[bool] = True
    # True when score() scores every sample of a Completion (n > 1); `harness score` then
    # passes an item's repeated lines as one n-sample completion, else it scores them in
    # separate passes (one sample per item each) so no line is ever dropped.
    scores_every_sample: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any] | None = None, ctx: Context | None = None,
                 params: SamplingParams | None = None):
        self.options = dict(options or {})
        self.opts = validate_options(self.name, self.Options, self.options)
        self.sampling: dict[str, Any] | None = None  # how `--limit` chose items, recorded in results
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
        out = {"version": self.VERSION, "dataset_revision": self.dataset_revision,
               "params": self.params.to_dict(), "options": self.options}
        if self.sampling is not None:
            out["limit_sample"] = self.sampling
        return out

    def take_sample(self, examples: list[Example], limit: int | None, seed: int,
                    stratum: Callable[[Example], str]) -> list[Example]:
        """`--limit` for category-ordered data: option `limit_sample` (SampledOptions) picks
        stratified (default) or first-N; what was done is recorded in provenance()."""
        if limit is None or limit >= len(examples):
            return examples
        method = getattr(self.opts, "limit_sample", "first")
        self.sampling = {"method": method, "limit": limit, "seed": seed if method == "stratified" else None}
        if method == "first":
            return examples[:limit]
        return stratified_sample(examples, limit, seed, stratum)


def take(examples: list[Example], limit: int | None, seed: int = 0, shuffle: bool = False) -> list[Example]:
    """First `limit` items (the default: comparable slices across runs), or a seeded sample."""
    if shuffle:
        examples = examples[:]
        random.Random(seed).shuffle(examples)
    return examples if limit is None else examples[:limit]


def stratified_sample(examples: list[Example], limit: int, seed: int,
                      stratum: Callable[[Example], str]) -> list[Example]:
    """`limit` items spread over strata in proportion to their sizes (largest remainder;
    ties and the rows within a stratum drawn with Random(seed)), returned in input order.
    With fewer items than strata, the largest strata (seeded tie-break) get one each."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[stratum(ex)].append(i)
    rng = random.Random(seed)
    names = list(groups)
    rng.shuffle(names)  # seeded tie-break among equal remainders
    exact = {g: limit * len(groups[g]) / len(examples) for g in names}
    quota = {g: int(exact[g]) for g in names}
    by_remainder = sorted(names, key=lambda g: exact[g] - quota[g], reverse=True)  # stable: keeps shuffle order
    for g in by_remainder[:limit - sum(quota.values())]:
        quota[g] += 1
    chosen = sorted(i for g in names for i in rng.sample(groups[g], quota[g]))
    return [examples[i] for i in chosen]


def with_params(params: SamplingParams, **overrides: Any) -> SamplingParams:
    return replace(params, **{k: v for k, v in overrides.items() if v is not None})
