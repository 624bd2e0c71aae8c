"""Contamination check: word n-gram overlap (13-gram by default, as in the GPT-3 and
FuseChat-3.0 decontamination) between fusion data and every registered benchmark.

The index holds the n-grams of every string in every benchmark example (questions, gold
answers, references, tests: whatever the benchmark's `load()` puts in `Example.data`), so
a prompt that paraphrases a test question only around a copied 13-word stretch is still
caught. Text is lower-cased and split into \\w+ words, so punctuation and spacing changes
do not hide an overlap; n-grams made only of numbers are ignored. Benchmarks whose data is not available are skipped and listed with
the reason: a check that silently covered fewer benchmarks would be worse than none.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterator[str]:
    """Word n-grams, except all-number ones: a list like `[1, 2, ..., 13]` in an MBPP test
    and a HumanEval example is a shared counting sequence, not a leaked item."""
    w = words(text)
    for i in range(len(w) - n + 1):
        gram = w[i:i + n]
        if not all(t.isdigit() for t in gram):
            yield " ".join(gram)


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)


@dataclass
class NgramIndex:
    n: int
    grams: dict[str, tuple[str, str]] = field(default_factory=dict)  # n-gram -> (benchmark, item id)
    loaded: dict[str, int] = field(default_factory=dict)  # benchmark -> examples indexed
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why

    def add(self, benchmark: str, item_id: str, text: str) -> None:
        for g in ngrams(text, self.n):
            self.grams.setdefault(g, (benchmark, item_id))

    def find(self, text: str) -> tuple[str, str, str] | None:
        """The first overlapping n-gram and where it comes from, or None."""
        for g in ngrams(text, self.n):
            hit = self.grams.get(g)
            if hit is not None:
                return hit[0], hit[1], g
        return None


@contextmanager
def _offline(enabled: bool):
    """Without `hub`, benchmarks missing from the data dir are skipped rather than downloaded."""
    if not enabled:
        yield
        return
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_index(data_dir: Path | None, n: int = 13, benchmarks: list[str] | None = None,
                hub: bool = False) -> NgramIndex:
    from harness.benchmarks import BENCHMARKS
    from harness.benchmarks.base import Context

    names = benchmarks if benchmarks is not None else BENCHMARKS.names()
    for name in names:
        BENCHMARKS.check(name)  # a typo in the recipe is an error, not a silently skipped benchmark
    index = NgramIndex(n=n)
    with _offline(not hub):
        for name in names:
            try:
                bench = BENCHMARKS.resolve(name)(ctx=Context(data_dir=data_dir))
                examples = bench.load(limit=None)
            except Exception as e:  # noqa: BLE001 - missing data, missing optional package: skip and say so
                index.skipped[name] = f"{type(e).__name__}: {e}"[:400]
                log.warning("contamination check: skipping benchmark %s (%s)", name, index.skipped[name][:200])
                continue
            for ex in examples:
                for s in strings_in(ex.data):
                    index.add(name, str(ex.id), s)
            index.loaded[name] = len(examples)
    log.info("contamination index: %d %d-grams from %s", len(index.grams), n,
             ", ".join(f"{k} ({v})" for k, v in index.loaded.items()))
    return index


def check_texts(texts: list[tuple[str, str, str]], index: NgramIndex) -> list[dict[str, str]]:
    """texts: (row id, field name, text) -> one hit per (row id, field) that overlaps."""
    hits = []
    for rid, fname, text in texts:
        h = index.find(text)
        if h is not None:
            hits.append({"id": rid, "field": fname, "benchmark": h[0], "benchmark_item": h[1], "ngram": h[2]})
    return hits
