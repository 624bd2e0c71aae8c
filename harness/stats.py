"""Confidence intervals shared by every benchmark (DESIGN.md §5)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOTSTRAP = 1000


def bootstrap_ci(values: Sequence[float], *, n_boot: int = N_BOOTSTRAP, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over items for the mean. Vectorised: one (n_boot, n) index draw."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    return (float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2)))


def mean_metric(values: Sequence[float], *, scale: float = 100.0, seed: int = 0) -> dict:
    """{value, ci_low, ci_high, n} for a mean, reported on `scale` (percent by default)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    lo, hi = bootstrap_ci(x, seed=seed)
    return {"value": float(x.mean()) * scale, "ci_low": lo * scale, "ci_high": hi * scale, "n": int(x.size)}
