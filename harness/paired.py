"""Paired statistics for two runs scored on the same items (DESIGN.md §5).

Why paired: two models answer the *same* questions, so most of the run-to-run variance is
the items' difficulty, shared by both. Testing the per-item differences removes it; an
unpaired test on two accuracies (two bootstrap CIs that overlap) misses real regressions.

- pass/fail items (every per-item `score` is 0 or 1): exact McNemar test, i.e. a two-sided
  exact binomial test on the discordant pairs (b = A right & B wrong, c = A wrong & B right)
  with p = 1/2 under H0. Exact rather than chi-square because CI slices are small.
- anything else (judge scores, win values): paired bootstrap over items of the mean
  difference; the p-value is the share of null-centred bootstrap means at least as far
  from 0 as the observed one (Koehn 2004; Berg-Kirkpatrick et al. 2012).
- several benchmarks: Holm's step-down correction keeps the family-wise error at alpha
  without assuming independence between benchmarks.

Deltas are reported as B - A, in "points": percentage points when every per-item score lies
in [0, 1] (the scale the headline metrics use), raw score units otherwise (e.g. MT-Bench 1-10).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

N_BOOTSTRAP = 10_000


@dataclass
class PairedResult:
    """One benchmark, run A (baseline) vs run B (candidate), on their shared items."""

    benchmark: str
    test: str  # "mcnemar" | "bootstrap"
    n: int  # shared items
    mean_a: float  # in points (see module doc)
    mean_b: float
    delta: float  # mean_b - mean_a, in points
    ci_low: float  # 95% (1 - alpha) paired bootstrap CI of delta, in points
    ci_high: float
    p_value: float
    unit: str  # "pp" (percentage points) or "points"
    b_only_a: int = 0  # discordant items: A better than B (for pass/fail: A pass, B fail)
    b_only_b: int = 0  # B better than A
    only_in_a: int = 0  # items scored in one run only (not compared)
    only_in_b: int = 0
    p_adjusted: float | None = None  # Holm-adjusted, filled in by holm_adjust()
    changed: list[dict] = field(default_factory=list)  # item-level differences

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs.

    Equals scipy.stats.binomtest(b, b + c, 0.5).pvalue: with p = 1/2 the binomial is
    symmetric, so the two-sided p is twice the smaller tail, capped at 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binom

    return float(min(1.0, 2.0 * binom.cdf(min(b, c), n, 0.5)))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n_boot: int = N_BOOTSTRAP, alpha: float = 0.05,
                     seed: int = 0) -> tuple[float, float, float, float]:
    """(delta, ci_low, ci_high, p) for mean(b - a) by resampling items with replacement.

    Vectorised in chunks so 10k resamples of a few thousand items stay in a few MB.
    """
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.size == 0:
        raise ValueError("paired_bootstrap needs at least one shared item")
    delta = float(d.mean())
    if np.all(d == d[0]):  # no variation: the bootstrap distribution is a point
        return delta, delta, delta, (1.0 if delta == 0 else 0.0)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // d.size)
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        means[start:start + k] = d[rng.integers(0, d.size, size=(k, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # Shift the bootstrap distribution to H0 (mean 0) and count how often it is as extreme.
    extreme = np.count_nonzero(np.abs(means - delta) >= abs(delta) - 1e-12)
    p = (extreme + 1) / (n_boot + 1)
    return delta, float(lo), float(hi), float(min(1.0, p))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given); reject where adjusted <= alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def _score(item: Mapping, where: str) -> float:
    s = item.get("score")
    if isinstance(s, bool) or not isinstance(s, (int, float)) or math.isnan(float(s)):
        raise ValueError(f"{where}: per-item 'score' must be a number, got {s!r}")
    return float(s)


def compare_items(benchmark: str, items_a: Mapping[str, Mapping], items_b: Mapping[str, Mapping], *,
                  alpha: float = 0.05, n_boot: int = N_BOOTSTRAP, seed: int = 0,
                  keep_changed: bool = True) -> PairedResult:
    """Paired comparison of per-item score dicts ({item_id: {"score": float, ...}}).

    Raises ValueError when the runs share no item (the caller turns it into a usage error
    naming the runs)."""
    shared = [i for i in items_a if i in items_b]
    if not shared:
        raise ValueError(f"{benchmark}: the two runs share no scored item")
    a = np.array([_score(items_a[i], f"{benchmark}/{i} (A)") for i in shared])
    b = np.array([_score(items_b[i], f"{benchmark}/{i} (B)") for i in shared])
    scale, unit = (100.0, "pp") if np.all((a >= 0) & (a <= 1)) and np.all((b >= 0) & (b <= 1)) else (1.0, "points")
    a_better = int(np.count_nonzero(a > b))
    b_better = int(np.count_nonzero(b > a))
    delta, lo, hi, p_boot = paired_bootstrap(a, b, n_boot=n_boot, alpha=alpha, seed=seed)
    if is_binary(a.tolist()) and is_binary(b.tolist()):
        test, p = "mcnemar", mcnemar_exact(a_better, b_better)
    else:
        test, p = "bootstrap", p_boot
    changed = []
    if keep_changed:
        changed = [{"id": i, "score_a": float(x), "score_b": float(y)}
                   for i, x, y in zip(shared, a, b) if x != y]
    return PairedResult(benchmark=benchmark, test=test, n=len(shared), mean_a=float(a.mean()) * scale,
                        mean_b=float(b.mean()) * scale, delta=delta * scale, ci_low=lo * scale,
                        ci_high=hi * scale, p_value=p, unit=unit, b_only_a=a_better, b_only_b=b_better,
                        only_in_a=len(items_a) - len(shared), only_in_b=len(items_b) - len(shared),
                        changed=changed)


def compare_runs(scores_a: Mapping[str, Mapping[str, Mapping]], scores_b: Mapping[str, Mapping[str, Mapping]],
                 benchmarks: Sequence[str], *, alpha: float = 0.05, n_boot: int = N_BOOTSTRAP,
                 seed: int = 0) -> list[PairedResult]:
    """compare_items per benchmark, then Holm across them."""
    results = [compare_items(bn, scores_a.get(bn, {}), scores_b.get(bn, {}), alpha=alpha, n_boot=n_boot,
                             seed=seed) for bn in benchmarks]
    for r, adj in zip(results, holm_adjust([r.p_value for r in results])):
        r.p_adjusted = adj
    return results
