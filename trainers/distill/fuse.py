"""Fusion functions: which target distribution a pivot row trains on (FUSION_METHODS.md §1(b)).

Input per row: the pivot's own top-k and every source's top-k already on the pivot's positions
and vocabulary (`align.align_row`; same-tokenizer sources need no alignment), each with the
model's sequence cross-entropy on the gold response (mean token NLL, own tokenization).

  min_ce    FuseLLM / FuseChat: the distribution of the model with the lowest sequence CE
            (reward 1/exp(CE), argmax over [pivot, sources...]; ties go to the pivot, which is
            stacked first, as in FuseLLM's trainer.py l.205)
  weighted  FuseLLM's `distill_weighted_as_gt`: softmax over the rewards exp(-CE) mixes the
            distributions; the mixture is kept as concatenated entries (CE is linear in p)

Pairwise (FuseChat: pivot + one source per run) and unified (FuseLLM: all sources at once) are the
same functions called with one or with all sources; `fuse_row` takes the mode by name.
Positions where an aligned source kept no entry (all its top-k ids missing from the pivot
vocabulary) take the pivot's entries, as FuseLLM's collator does ("bad case", data_collator.py l.317).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FUSIONS = ("min_ce", "weighted")
MODES = ("pairwise", "unified")


@dataclass
class RowDist:
    """One model's distribution for one row on pivot positions.
    ids (T, K) int32 pivot ids, -1 padding; logprobs (T, K) float32; ce: sequence CE (nats/token)."""

    ids: np.ndarray
    logprobs: np.ndarray
    ce: float


def target_probs(ids: np.ndarray, logprobs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logprob / T) over each position's kept entries (FuseLLM's collator: softmax of the
    top-k logits / T; the stored log-probs differ from logits by a per-position constant, which
    the softmax removes). Padding gets 0. (T, K) -> (T, K) float32."""
    z = np.where(ids >= 0, logprobs.astype(np.float64) / temperature, -np.inf)
    z = z - np.max(np.where(ids >= 0, z, -np.inf), axis=-1, keepdims=True).clip(min=-1e30)
    e = np.where(ids >= 0, np.exp(z), 0.0)
    return (e / np.clip(e.sum(-1, keepdims=True), 1e-300, None)).astype(np.float32)


def _fill_empty(src: RowDist, pivot: RowDist) -> RowDist:
    empty = (src.ids < 0).all(-1)
    if not empty.any():
        return src
    k = max(src.ids.shape[1], pivot.ids.shape[1])
    ids, lps = _pad(src, k)
    pids, plps = _pad(pivot, k)
    ids[empty], lps[empty] = pids[empty], plps[empty]
    return RowDist(ids, lps, src.ce)


def _pad(d: RowDist, k: int):
    extra = k - d.ids.shape[1]
    return (np.pad(d.ids, ((0, 0), (0, extra)), constant_values=-1),
            np.pad(d.logprobs, ((0, 0), (0, extra)), constant_values=0.0))


def min_ce(pivot: RowDist, sources: list[RowDist], *, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, int]:
    """-> (ids (T,K), probs (T,K), winner): winner 0 is the pivot, i the i-th source.
    A source wins only with a strictly lower CE (ties go to the pivot, then to the earlier source)."""
    cands = [pivot] + [_fill_empty(s, pivot) for s in sources]
    winner = min(range(len(cands)), key=lambda i: (cands[i].ce, i))
    d = cands[winner]
    return d.ids, target_probs(d.ids, d.logprobs, temperature), winner


def weighted(pivot: RowDist, sources: list[RowDist], *, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """-> (ids (T, ΣK), probs (T, ΣK), weights): w = softmax_i(exp(-CE_i)) over [pivot, sources]."""
    cands = [pivot] + [_fill_empty(s, pivot) for s in sources]
    rewards = [math.exp(-c.ce) for c in cands]
    m = max(rewards)
    w = [math.exp(r - m) for r in rewards]
    w = [x / sum(w) for x in w]
    ids = np.concatenate([c.ids for c in cands], axis=1)
    probs = np.concatenate([wi * target_probs(c.ids, c.logprobs, temperature) for wi, c in zip(w, cands)], axis=1)
    return ids, probs.astype(np.float32), w


def fuse_row(fusion: str, pivot: RowDist, sources: list[RowDist], *, temperature: float = 1.0):
    """Dispatch by the recipe's `fusion` name; returns (ids, probs) for `distill_ce`."""
    if fusion == "min_ce":
        ids, probs, _ = min_ce(pivot, sources, temperature=temperature)
    elif fusion == "weighted":
        ids, probs, _ = weighted(pivot, sources, temperature=temperature)
    else:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
    return ids, probs


def runs_for_mode(mode: str, sources: list[str]) -> list[list[str]]:
    """The source groups that each train one candidate: pairwise = one run per source (FuseChat),
    unified = one run with all sources (FuseLLM)."""
    if mode == "pairwise":
        return [[s] for s in sources]
    if mode == "unified":
        return [list(sources)]
    raise ValueError(f"unknown fusion mode {mode!r}; expected one of {MODES}")
