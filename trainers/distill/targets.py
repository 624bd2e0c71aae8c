"""From teacher files to the tensors a distillation step reads (the glue between the teacher store,
the alignment, the fusion functions and the losses).

Per training row (its pivot response tokens r_0..r_{n-1}, EOS included, as trainers/data.py makes them):
  * distill_ce: the fused target on the pivot's positions and vocabulary: ids, probs (n, K')
    (the pivot's own top-k competes in MinCE / the weighting; cross-tokenizer sources are aligned
    with `align.align_row`; same-tokenizer sources with identical tokens are used as they are);
  * uld / gld: each source's stored top-k log-probs on its own positions (no alignment).
`collate_targets` places them on the shifted positions of the right-padded batch `data.collate`
builds: response token r sits at input position len(prompt)+r and is predicted at len(prompt)+r-1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import UsageError
from trainers.distill import align as A
from trainers.distill.fuse import RowDist, fuse_row
from trainers.distill.teacher import TeacherFile
from trainers.distill.truncate import cut_to_bytes

log = logging.getLogger(__name__)


@dataclass
class SourceSignal:
    """One source's teacher file and how its ids reach the pivot vocabulary."""

    name: str
    teacher: TeacherFile
    same_tokenizer: bool
    texts: list[str] | None = None  # decoded vocabulary (cross-tokenizer only)
    vocab_map: dict[int, int] = field(default_factory=dict)  # source id -> pivot id (cross only)
    soft: bool = True  # match through vocab_map (MinED / statistics) or exact text only
    rules: str = "fusellm"  # which positions take the source's top-k (align.RULES)


def occurring_ids(teacher: TeacherFile, row_ids: list[str]) -> set[int]:
    """Every source id in the stored top-k and the response tokens of these rows."""
    out: set[int] = set()
    for rid in row_ids:
        r = teacher.row(rid)
        out.update(np.unique(r.top_ids[r.top_ids >= 0]).tolist())
        out.update(np.unique(r.token_ids).tolist())
    return out


def cross_source(name: str, teacher: TeacherFile, source_tokenizer, pivot_texts: list[str], row_ids: list[str], *,
                 vocab_align: str = "mined", pivot: TeacherFile | None = None,
                 cache_dir: Path | None = None, rules: str | None = None) -> SourceSignal:
    """Build the vocabulary map of a cross-tokenizer source for the ids that occur (cached).
    mined: FuseLLM MinED (soft); exact: FuseLLM hard; statistics: FuseChat's co-alignment map over
    these rows (needs the pivot's teacher file), exact matches first, MinED for ids never co-aligned.
    rules: the token alignment rules (align.RULES); default: FuseChat's with its statistics map
    (`--align_type default`), FuseLLM's otherwise, as upstream pairs them."""
    rules = rules or default_rules(vocab_align)
    if rules not in A.RULES:
        raise ValueError(f"unknown token alignment rules {rules!r}; expected one of {A.RULES}")
    texts = A.vocab_texts(source_tokenizer)
    ids = occurring_ids(teacher, row_ids)
    if vocab_align == "exact":
        return SourceSignal(name, teacher, False, texts,
                            {i: j for i, j in A.exact_map(texts, pivot_texts).items() if i in ids}, False, rules)
    mapping = A.mined_map(ids, texts, pivot_texts, cache_dir=cache_dir)
    if vocab_align == "statistics":
        if pivot is None:
            raise ValueError("vocab_align 'statistics' needs the pivot's teacher file")
        rows = [(pivot.row(r).token_ids.tolist(), teacher.row(r).token_ids.tolist()) for r in row_ids]
        exact = A.exact_map(texts, pivot_texts)
        stats = A.statistics_map(A.co_alignment_counts(rows, texts, pivot_texts), texts, pivot_texts)
        mapping = {**mapping, **{i: j for i, j in stats.items() if i not in exact}}
    elif vocab_align != "mined":
        raise ValueError(f"unknown vocab_align {vocab_align!r}; expected mined, exact or statistics")
    return SourceSignal(name, teacher, False, texts, mapping, True, rules)


def default_rules(vocab_align: str) -> str:
    return "fusechat" if vocab_align == "statistics" else "fusellm"


@dataclass
class AlignStats:
    positions: int = 0
    one_to_one: int = 0
    per_source: dict[str, list[int]] = field(default_factory=dict)  # name -> [aligned, total]
    rows_cut: int = 0  # rows the training cut shorter than the capture (sources cut to the same bytes)
    rows_short: int = 0  # rows whose teacher signal ends before the training tokens (CLM only past it)


def _source_dist(sig: SourceSignal, row_id: str, piv_tokens: np.ndarray, pivot_texts: list[str],
                 stats: AlignStats, cut: bool) -> RowDist:
    """`cut`: the pivot row is a prefix of what was captured; the source keeps the tokens that fit
    in the same decoded bytes, so the alignment compares the same text."""
    s = sig.teacher.row(row_id)
    if sig.same_tokenizer and np.array_equal(s.token_ids[:len(piv_tokens)], piv_tokens):
        n = len(piv_tokens)
        return RowDist(s.top_ids[:n].astype(np.int32), s.top_logprobs[:n].astype(np.float32), s.ce)
    texts = sig.texts if sig.texts is not None else pivot_texts
    m = len(s.token_ids)
    if cut:
        m = cut_to_bytes(texts, s.token_ids.tolist(), sum(len(A.text_bytes(pivot_texts[t])) for t in piv_tokens))
    vmap = sig.vocab_map if not sig.same_tokenizer else {i: i for i in range(len(pivot_texts))}
    row = A.align_row(piv_tokens.tolist(), s.token_ids[:m].tolist(), s.top_ids[:m],
                      s.top_logprobs[:m].astype(np.float32), pivot_texts, texts, vocab_map=vmap, soft=sig.soft,
                      rules=sig.rules)
    agg = stats.per_source.setdefault(sig.name, [0, 0])
    agg[0] += row.one_to_one
    agg[1] += len(piv_tokens)
    return RowDist(row.ids, row.logprobs, s.ce)


def fused_targets(row_id: str, response_tokens: list[int], pivot: TeacherFile, sources: list[SourceSignal],
                  pivot_texts: list[str], *, fusion: str = "min_ce", temperature: float = 1.0,
                  stats: AlignStats | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probs) (m, K') for a row whose (possibly truncated) pivot response is `response_tokens`;
    m = len(response_tokens) unless the captured row is shorter (then the positions past it get no
    distillation target; counted in stats.rows_short)."""
    stats = stats if stats is not None else AlignStats()
    p = pivot.row(row_id)
    n = len(response_tokens)
    m = min(n, len(p.token_ids))
    if not np.array_equal(p.token_ids[:m], np.asarray(response_tokens[:m], dtype=np.int32)):
        raise UsageError(f"row {row_id!r}: the pivot's teacher tokens differ from the training tokens; the teacher "
                         "file was captured with another tokenizer or template. Rerun `harness fuse teacher`.")
    stats.rows_short += m < n
    stats.rows_cut += m < len(p.token_ids)
    piv_tokens = p.token_ids[:m]
    pivot_dist = RowDist(p.top_ids[:m].astype(np.int32), p.top_logprobs[:m].astype(np.float32), p.ce)
    dists = [_source_dist(s, row_id, piv_tokens, pivot_texts, stats, m < len(p.token_ids)) for s in sources]
    stats.positions += m
    return fuse_row(fusion, pivot_dist, dists, temperature=temperature)


def source_logprobs(row_id: str, sources: list[SourceSignal], top_k: int) -> list[np.ndarray]:
    """Each source's stored top-k log-probs on its own response positions (uld / gld)."""
    return [s.teacher.row(row_id).top_logprobs[:, :top_k].astype(np.float32) for s in sources]


def collate_targets(prompt_lens: list[int], width: int, fused: list[tuple[np.ndarray, np.ndarray]] | None = None,
                    teachers: list[list[np.ndarray]] | None = None) -> dict:
    """Tensors for one right-padded batch of `width` tokens:
    target_ids, target_probs (B, width-1, K') for distill_ce; teacher_logprobs (B, R, S, K) and
    teacher_mask (B, R, S) for uld / gld."""
    import torch

    out = {}
    b = len(prompt_lens)
    if fused is not None:
        k = max(ids.shape[1] for ids, _ in fused)
        tid = torch.zeros((b, width - 1, k), dtype=torch.long)
        tpr = torch.zeros((b, width - 1, k), dtype=torch.float32)
        for i, ((ids, probs), pl) in enumerate(zip(fused, prompt_lens)):
            n = min(len(ids), width - pl)
            lo = pl - 1
            tid[i, lo:lo + n, :ids.shape[1]] = torch.from_numpy(np.clip(ids[:n], 0, None).astype(np.int64))
            tpr[i, lo:lo + n, :ids.shape[1]] = torch.from_numpy(np.where(ids[:n] >= 0, probs[:n], 0.0))
        out["target_ids"], out["target_probs"] = tid, tpr
    if teachers is not None:
        r = max(len(t) for t in teachers)
        s = max((x.shape[0] for t in teachers for x in t), default=1)
        k = max((x.shape[1] for t in teachers for x in t), default=1)
        tlp = torch.full((b, r, s, k), -1e4, dtype=torch.float32)
        tm = torch.zeros((b, r, s), dtype=torch.float32)
        for i, t in enumerate(teachers):
            for j, x in enumerate(t):
                tlp[i, j, :x.shape[0], :x.shape[1]] = torch.from_numpy(x)
                tm[i, j, :x.shape[0]] = 1
        out["teacher_logprobs"], out["teacher_mask"] = tlp, tm
    return out


def warn_coverage(stats: AlignStats, threshold: float = 0.5) -> dict[str, float]:
    """Warn per source below `threshold` one-to-one coverage; log the rows cut at read time."""
    if stats.rows_cut or stats.rows_short:
        log.warning("teacher signal vs training tokens: %d rows cut shorter by training than at capture (sources cut "
                    "to the same text), %d rows longer in training than captured (no distillation target past "
                    "the capture: train with the recipe's max_length)", stats.rows_cut, stats.rows_short)
    return {name: A.warn_low_coverage(name, a, t, threshold) for name, (a, t) in stats.per_source.items()}
