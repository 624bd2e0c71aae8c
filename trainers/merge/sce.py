"""SCE (select, calculate, erase) merging: the two semantics this project offers, and the count
of tensors whose "calculate" step fell back to uniform weights.

Spec (../shared/FUSION_METHODS.md §1(a)). For one tensor, K merged models and a base θ_b:

    τ_j = θ_j − θ_b                                          task vectors, stacked [K, ...]
    select:    var = Var_j(τ_j) (population); keep the top int(nnz(var) · select_topk) positions
    calculate: w_j = mean(M ⊙ τ_j)²  (M: the select mask), w ← w / Σ w, or uniform on fallback
    erase:     E_j = sign(τ_j) == sign*(Σ_j τ_j)            (TIES "sum" consensus, sign* = +1 at 0)
    merge:     θ* = θ_b + Σ_j w_j E_j τ_j / Σ_j w_j E_j

The two semantics differ in three places:

| | `sce` (mergekit 0.1.5, built in) | `sce_fuseai` (FuseAI fork, FuseChat/FuseO1 releases) |
|---|---|---|
| select mask applied to | the task vectors themselves (erase and merge see the masked τ) | the weights only (erase and merge use the unmasked τ) |
| uniform fallback when | abs(Σ_j w_j) < 1e-6 | Σ_j w_j == 0 exactly |
| empty divisor | clamp(min=1e-6) | 0 → 1 |

mergekit's 1e-6 threshold matters: for short fine-tunes every tensor's Σ_j mean(τ_j²) is far
below 1e-6 (measured: 273/273 tensors of two 24-step SmolLM2-135M fine-tunes), so SCE's
weighting silently becomes a uniform TIES-style mean. Hence the fallback count in provenance.

`sce` runs mergekit's own code untouched; `sce_fuseai` is registered with mergekit here (same
loader, sharding, tokenizer handling), written from `fanqiwan/FuseAI@7d9a307:FuseChat/mergekit/
mergekit/merge_methods/sce_merging.py` (the weights are Python floats there, as here).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

SCE_METHODS = {
    "sce": "mergekit-0.1.5: select mask on the task vectors; uniform weights when abs(sum w) < 1e-6",
    "sce_fuseai": "FuseAI fork: select mask on the weights only; uniform weights only when sum w == 0",
}
MERGEKIT_FALLBACK_THRESHOLD = 1e-6  # mergekit 0.1.5 sce.py sce_weight


@dataclass
class FallbackCount:
    """Tensors merged by an SCE method during one merge, and how many took uniform weights."""

    tensors: int = 0
    uniform_fallback: int = 0


class _Counter:
    """Counts across mergekit's executor threads; only one merge counts at a time per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: FallbackCount | None = None

    def add(self, fell_back: bool) -> None:
        with self._lock:
            if self.active is not None:
                self.active.tensors += 1
                self.active.uniform_fallback += int(fell_back)


_COUNTER = _Counter()


def variance_mask(deltas: torch.Tensor, select_topk: float) -> torch.Tensor:
    """The FuseAI fork's select mask. deltas: [K, *shape] -> mask [*shape] (deltas' dtype) with
    1 at the int(nnz(var) · select_topk) positions of largest cross-model variance."""
    variance = torch.var(deltas, dim=0, unbiased=False)
    k = int(select_topk * torch.count_nonzero(variance))
    mask = torch.zeros_like(variance)
    if k == 0:
        return mask
    top = torch.topk(variance.abs().view(-1), k=k, largest=True)
    mask.view(-1)[top.indices] = 1
    return mask


def fuseai_weights(deltas: torch.Tensor, select_topk: float) -> tuple[list[float], bool]:
    """Per-model weights w_j [K] as Python floats, and whether the uniform fallback was taken.
    deltas: [K, *shape]. The mask (select_topk < 1) only decides which positions count."""
    if select_topk < 1:
        mask = variance_mask(deltas, select_topk)
        deltas = deltas * mask
    weights = [torch.sum(d**2).item() / d.numel() for d in deltas]
    total = sum(weights)
    if total == 0:
        return [1.0 / len(weights)] * len(weights), True
    return [w / total for w in weights], False


def fuseai_sce(tensors: list[torch.Tensor], base: torch.Tensor, select_topk: float = 1.0) -> torch.Tensor:
    """SCE as the FuseAI fork computes it. tensors: K tensors shaped like base -> merged tensor."""
    if not tensors:
        return base
    deltas = torch.stack([t.to(base.dtype) - base for t in tensors], dim=0)  # [K, *shape]
    weights, fell_back = fuseai_weights(deltas, select_topk)
    _COUNTER.add(fell_back)
    w = torch.tensor(weights, dtype=deltas.dtype, device=deltas.device)
    w = w.view(-1, *([1] * (deltas.dim() - 1)))
    majority = (deltas.sum(dim=0) >= 0).to(base.dtype) * 2 - 1
    erased = w * (deltas.sign().to(base.dtype) == majority)
    merged = (deltas * erased).sum(dim=0)
    divisor = erased.sum(dim=0)
    divisor[divisor == 0] = 1
    return (base + merged / divisor).to(base.dtype)


def mergekit_fell_back(task_vectors: torch.Tensor) -> bool:
    """mergekit 0.1.5's fallback test (sce.py sce_weight) on the task vectors it weighs
    (already masked by select). task_vectors: [K, *shape]."""
    weights = task_vectors.square().reshape(task_vectors.shape[0], -1).mean(dim=1)
    return abs(torch.sum(weights).item()) < MERGEKIT_FALLBACK_THRESHOLD


def register_fuseai_method() -> None:
    """Make `merge_method: sce_fuseai` valid in mergekit configs (idempotent)."""
    from mergekit.merge_methods import registry
    from mergekit.merge_methods.base import BasePolicy, InputContract, TensorGroup
    from mergekit.merge_methods.easy_define import merge_method

    if any(m.spec.name == "sce_fuseai" for m in registry.registered_methods()):
        return

    def sce_fuseai(group: TensorGroup, select_topk: float = 1.0) -> torch.Tensor:
        return fuseai_sce([e.tensor for e in group.non_base], group.base.tensor, select_topk)

    # mergekit reads the annotations to pick group execution; this module's are strings
    sce_fuseai.__annotations__ = {"group": TensorGroup, "select_topk": float, "return": torch.Tensor}
    registry.register(merge_method(sce_fuseai, name="sce_fuseai", pretty_name="SCE (FuseAI fork)",
                                   reference_url="https://github.com/fanqiwan/FuseAI",
                                   contract=InputContract(base=BasePolicy.REQUIRED)))


@contextmanager
def counting_fallbacks() -> Iterator[FallbackCount]:
    """Count SCE fallbacks for the merges run inside. mergekit calls a method with tensors only
    and has no hook for side outputs, so its `sce_weight` is wrapped for the duration: the wrapper
    returns mergekit's own weights unchanged (the output stays bit-identical) and records
    mergekit_fell_back() on the same task vectors."""
    import mergekit.merge_methods.sce as mk_sce

    register_fuseai_method()
    original = mk_sce.sce_weight

    def counted_sce_weight(tvs: torch.Tensor) -> torch.Tensor:
        _COUNTER.add(mergekit_fell_back(tvs))
        return original(tvs)

    count = FallbackCount()
    if _COUNTER.active is not None:
        raise RuntimeError("another merge is already counting SCE fallbacks in this process")
    _COUNTER.active = count
    mk_sce.sce_weight = counted_sce_weight
    try:
        yield count
    finally:
        mk_sce.sce_weight = original
        _COUNTER.active = None
