"""Per-item outcomes of executed code (issue 3) and the pass@k estimator, shared by the code
benchmarks. A sandbox failure is its own outcome and never a pass."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

OUTCOMES = ("passed", "failed", "timeout", "runtime error", "syntax error", "memory", "output limit",
            "no code found", "sandbox error")

# Sandbox statuses that are not already an outcome name.
_STATUS = {"exited": "runtime error", "done": "passed"}


def outcome_of(status: str) -> str:
    out = _STATUS.get(status, status)
    return out if out in OUTCOMES else "sandbox error"


def outcome_counts(outcomes: Iterable[str]) -> dict[str, int]:
    """Counts for every outcome (zeros included, so reports have stable columns)."""
    c = Counter(outcomes)
    return {o: int(c.get(o, 0)) for o in OUTCOMES}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c correct (Chen et al., 2021):
    1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
