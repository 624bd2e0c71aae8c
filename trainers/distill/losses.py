"""Token-level distillation losses as pure functions (FUSION_METHODS.md §1(b)-(d), docs/fusion.md).

Every function takes the student's logits of one forward pass and the teacher signal as the
K entries the teacher store keeps per position; nothing of shape (batch, length, vocab) is ever
built for the *targets* (the student's own logits are the only vocab-wide tensor).

Shapes (N rows, T tokens, V student vocabulary, K stored entries per position):
  logits      (N, T, V)   student logits; position t predicts input_ids[t+1] (as `sequence_logps`)
  input_ids   (N, T)      int64
  loss_mask   (N, T)      1 on response tokens (prompt and padding 0)
  target_ids  (N, T-1, K) int64 pivot-vocabulary ids of the fused target at shifted position t
  target_probs(N, T-1, K) float target probabilities (0 on padding entries; ids may repeat)
  teacher_logprobs (N, S, K) a source's stored top-K log-probs on ITS OWN tokenization, or
                   (N, R, S, K) for R sources at once (the ULD/GLD terms are averaged over them)
  teacher_mask     (N, S) or (N, R, S)  1 on each source's response positions

  distill_ce  λ·CLM + (1-λ)·CE(p_fused, q_student)   FuseLLM / FuseChat (λ = 0.9, T = 1)
  uld         λ·ULD + (1-λ)·CLM, ULD = Σ_k |q↓_k - p↓_k| on top-K sorted probabilities,
              positional alignment, per-row mean, batch mean (TRL 1.16 `ULDLoss`)  InfiFusion
  gld         λ·(ULD + w·GLD) + (1-λ)·CLM, GLD a sorting-based Gromov-Wasserstein distance
              between top-K co-activation graphs                                  InfiGFusion

CLM is the loop's SFT loss computed with the same operations (`trainers.losses.sequence_logps`
then sum / token count), so λ = 1 reproduces plain SFT bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class DistillOutput:
    loss: torch.Tensor  # scalar, differentiable
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> detached scalar


def _shifted(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor):
    """(logits[:, :-1] float32 (N,T-1,V), labels (N,T-1), mask (N,T-1), lse (N,T-1))."""
    lg = logits[:, :-1].float()
    labels = input_ids[:, 1:]
    mask = loss_mask[:, 1:].to(lg.dtype)
    return lg, labels, mask, torch.logsumexp(lg, dim=-1)


def _clm(lg, labels, mask, lse) -> torch.Tensor:
    # the exact op sequence of sequence_logps + the loop's token mean: λ = 1 equals SFT bitwise
    token_logps = torch.gather(lg, 2, labels.unsqueeze(-1)).squeeze(-1) - lse
    logps, lens = (token_logps * mask).sum(-1), mask.sum(-1)
    return -logps.sum() / lens.sum().clamp(min=1)


def distill_ce(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor,
               target_ids: torch.Tensor, target_probs: torch.Tensor, *, lm_weight: float = 0.9) -> DistillOutput:
    """FuseLLM's `lm_loss_weight·CLM + (1-lm_weight)·CE(target, student)`.

    The soft CE is computed sparsely: -Σ_k p_k·log_softmax(z)[id_k], which equals FuseLLM's dense
    scatter + `cross_entropy(logits, target_dist)`. It is token-averaged over response positions
    that carry target mass (a position with an all-zero target contributes nothing; the fusion
    functions always give every aligned position a target, the one-hot fallback included)."""
    lg, labels, mask, lse = _shifted(logits, input_ids, loss_mask)
    clm = _clm(lg, labels, mask, lse)
    if target_ids.shape[:2] != lg.shape[:2]:
        raise ValueError(f"target_ids {tuple(target_ids.shape)} must be (N, T-1, K) for logits {tuple(logits.shape)}")
    probs = target_probs.to(lg.dtype)
    logq = torch.gather(lg, 2, target_ids.clamp(min=0)) - lse.unsqueeze(-1)  # (N, T-1, K)
    soft = -(probs * logq).sum(-1)  # (N, T-1)
    has_target = mask * (probs.sum(-1) > 0).to(lg.dtype)
    distill = (soft * has_target).sum() / has_target.sum().clamp(min=1)
    loss = lm_weight * clm + (1.0 - lm_weight) * distill
    return DistillOutput(loss, {"clm": clm.detach(), "distill_ce": distill.detach()})


def _pack_left(x: torch.Tensor, mask: torch.Tensor):
    """Move the masked positions of each row to the front, keeping order.
    x (N, L, K), mask (N, L) -> (N, L, K), counts (N,)."""
    order = torch.argsort((mask <= 0).to(torch.int8), dim=1, stable=True)
    return torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1])), (mask > 0).sum(1)


def _zscore(v: torch.Tensor) -> torch.Tensor:
    """Standardise the last dim (population std, +1e-6 against constant rows)."""
    return (v - v.mean(-1, keepdim=True)) / (v.std(-1, unbiased=False, keepdim=True) + 1e-6)


def _student_topk(lg, lse, top_k: int, zscore: bool):
    """Sorted top-K of the student: (probs (N,T-1,K'), logits (N,T-1,K')), K' = min(K, V)."""
    vals = lg.topk(min(top_k, lg.shape[-1]), dim=-1).values
    if zscore:
        return torch.softmax(_zscore(vals), dim=-1), vals
    return torch.exp(vals - lse.unsqueeze(-1)), vals


def _teacher_topk(teacher_logprobs, top_k: int, zscore: bool, renormalize: bool):
    """Sorted top-K teacher probabilities (N,S,K') from stored log-probs (any order)."""
    lp = teacher_logprobs.float().sort(dim=-1, descending=True).values[..., :top_k]
    if zscore:
        return torch.softmax(_zscore(lp), dim=-1), lp
    p = torch.exp(lp)
    return (p / p.sum(-1, keepdim=True).clamp(min=1e-12) if renormalize else p), lp


@dataclass(frozen=True)
class _Paired:
    student: torch.Tensor  # (N, P, Ks) student entries at the paired positions
    teacher: torch.Tensor  # (N, P, Kt)
    valid: torch.Tensor    # (N, P) 1 where position p < n_i
    n: torch.Tensor        # (N,) paired positions per row


def _pair_positions(student: torch.Tensor, mask: torch.Tensor, teacher: torch.Tensor,
                    teacher_mask: torch.Tensor) -> _Paired:
    """Positional alignment of ULD: the i-th response position of the student with the i-th of the
    teacher, for the first min(n_student, n_teacher) positions. With R sources (teacher (N,R,S,K))
    the student rows are repeated so every (row, source) pair is one row of the result: N·R rows."""
    if teacher.dim() == 4:
        r = teacher.shape[1]
        student, mask = student.repeat_interleave(r, 0), mask.repeat_interleave(r, 0)
        teacher, teacher_mask = teacher.flatten(0, 1), teacher_mask.flatten(0, 1)
    s, ns = _pack_left(student, mask)
    t, nt = _pack_left(teacher, teacher_mask)
    n = torch.minimum(ns, nt)
    p = int(n.max().item()) if n.numel() else 0
    valid = (torch.arange(p, device=s.device).unsqueeze(0) < n.unsqueeze(1)).to(s.dtype)
    return _Paired(s[:, :p], t[:, :p], valid, n)


def _uld_per_row(ps: torch.Tensor, pt: torch.Tensor, valid: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Σ_positions Σ_k |ps↓ - pt↓| / n per row, widths zero-padded to the larger one. (N,)"""
    width = max(ps.shape[-1], pt.shape[-1])
    ps = torch.nn.functional.pad(ps, (0, width - ps.shape[-1]))
    pt = torch.nn.functional.pad(pt, (0, width - pt.shape[-1]))
    l1 = (ps - pt).abs().sum(-1) * valid  # (N, P)
    return l1.sum(-1) / n.clamp(min=1).to(l1.dtype)


def uld(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor, teacher_logprobs: torch.Tensor,
        teacher_mask: torch.Tensor, *, top_k: int = 10, zscore: bool = False, renormalize: bool = False,
        lm_weight: float = 0.5) -> DistillOutput:
    """InfiFusion's ULD with top-K and optional logit standardisation: λ·ULD + (1-λ)·CLM.

    ULD per row = Σ_{paired positions} Σ_k |q↓_k - p↓_k| / n_paired, then the batch mean (rows
    without paired positions count as 0, as in TRL). q↓: the student's K largest probabilities of
    the full softmax; p↓: the teacher's K stored probabilities, sorted. With `zscore` both sides'
    K logits are standardised and softmaxed over the K entries (the teacher store keeps only K
    values, so the full-vocabulary mean/std is not available; docs/fusion.md). With K >= both
    vocabularies and zscore off this is TRL 1.16's `ULDLoss` (tests/test_distill_losses.py)."""
    lg, labels, mask, lse = _shifted(logits, input_ids, loss_mask)
    clm = _clm(lg, labels, mask, lse)
    ps, _ = _student_topk(lg, lse, top_k, zscore)
    pt, _ = _teacher_topk(teacher_logprobs, top_k, zscore, renormalize)
    pair = _pair_positions(ps, mask, pt, teacher_mask)
    uld_term = _uld_per_row(pair.student, pair.teacher, pair.valid, pair.n).mean()  # over rows x sources
    loss = lm_weight * uld_term + (1.0 - lm_weight) * clm
    return DistillOutput(loss, {"clm": clm.detach(), "uld": uld_term.detach()})


def co_activation_graph(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """InfiGFusion's graph on logits: nodes are the K rank channels, edges Σ_t z_t z_tᵀ averaged
    over the row's valid positions. z (N, P, K) standardised sorted logits, valid (N, P) -> (N, K, K)."""
    zv = z * valid.unsqueeze(-1)
    return zv.transpose(1, 2) @ zv / valid.sum(1).clamp(min=1).view(-1, 1, 1)


def sorted_gw_distance(g_s: torch.Tensor, g_t: torch.Tensor) -> torch.Tensor:
    """Sorting-based Gromov-Wasserstein approximation between graphs of equal node count.

    The coupling is the permutation that matches nodes by sorted weighted degree (O(K log K));
    the GW cost of that coupling with uniform node masses is mean_{ij} (G_s[πs_i,πs_j] - G_t[πt_i,πt_j])².
    A permutation is a feasible plan, so this bounds exact GW from above and equals it when the
    degree order is the optimal matching. g_s, g_t (N, K, K) -> (N,)."""
    def permuted(g):
        order = g.sum(-1).argsort(dim=-1, descending=True)
        g = torch.gather(g, 1, order.unsqueeze(-1).expand_as(g))
        return torch.gather(g, 2, order.unsqueeze(1).expand_as(g))

    return ((permuted(g_s) - permuted(g_t)) ** 2).mean(dim=(-1, -2))


def gld(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor, teacher_logprobs: torch.Tensor,
        teacher_mask: torch.Tensor, *, top_k: int = 10, zscore: bool = False, renormalize: bool = False,
        gld_weight: float = 1.0, lm_weight: float = 0.5) -> DistillOutput:
    """InfiGFusion: λ·(ULD + w·GLD) + (1-λ)·CLM. GLD compares the student's and the teacher's
    top-K co-activation graphs (`co_activation_graph`, built from the K largest logits of each
    paired position, z-scored over K so the two models' logit scales and the teacher store's
    missing log-sum-exp cancel) with `sorted_gw_distance`, per row, then the batch mean.
    The authors never released this loss; every choice is listed in docs/fusion.md."""
    lg, labels, mask, lse = _shifted(logits, input_ids, loss_mask)
    clm = _clm(lg, labels, mask, lse)
    ps, zs = _student_topk(lg, lse, top_k, zscore)
    pt, zt = _teacher_topk(teacher_logprobs, top_k, zscore, renormalize)
    k = min(zs.shape[-1], zt.shape[-1])
    pair = _pair_positions(torch.cat([ps, _zscore(zs[..., :k])], -1), mask,
                           torch.cat([pt, _zscore(zt[..., :k])], -1), teacher_mask)
    ks, kt = ps.shape[-1], pt.shape[-1]
    uld_term = _uld_per_row(pair.student[..., :ks], pair.teacher[..., :kt], pair.valid, pair.n).mean()
    g_s = co_activation_graph(pair.student[..., ks:], pair.valid)
    g_t = co_activation_graph(pair.teacher[..., kt:], pair.valid)
    gld_term = (sorted_gw_distance(g_s, g_t) * (pair.n > 0).to(g_s.dtype)).mean()
    loss = lm_weight * (uld_term + gld_weight * gld_term) + (1.0 - lm_weight) * clm
    return DistillOutput(loss, {"clm": clm.detach(), "uld": uld_term.detach(), "gld": gld_term.detach()})
