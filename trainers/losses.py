"""Preference losses as pure functions over sequence log-probs (DESIGN.md §3, §6).

Every function takes per-example tensors of shape (B,) and returns a `LossOutput` with the
per-example losses (B,) and the implicit rewards per response kind (B,), detached. Callers
average `losses` themselves, so gradient accumulation and distributed reduction stay the
loop's business.

Conventions (they follow the official code of each method, not the papers' notation):
  * `*_logps` are log-probs *summed* over response tokens (prompt tokens excluded).
  * length-normalised variants divide those sums by the response token counts `*_len`.
  * label smoothing is the "conservative DPO" form: (1-ε)·(-log σ(z)) + ε·(-log σ(-z)).

  dpo        -log σ(β[(π_c-ref_c) - (π_r-ref_r)])                         (Rafailov et al., 2023)
  dpo_norm   same over per-token averages (FuseChat-3.0's Llama setting; TRL `sigmoid_norm`)
  ipo        ((Δ_c/|c| - Δ_r/|r|) - 1/(2β))²   (TRL's length-normalised IPO, agreed with the authors)
  simpo      -log σ(β(π_c/|c| - π_r/|r|) - γ), γ = β·gamma_beta_ratio; no reference (Meng et al., 2024)
  wrpo       -log σ(β[α·Δ(y_ws) + (1-α)·Δ(y_wt) - Δ(y_l)]), Δ summed (Yang et al., ICLR 2025)
  sft        token-mean NLL; with per-row weights w: Σ w·(-log π) / Σ w·|y|  (FuseRL's FuseSFT)
  infifpo    dpo_norm with the reference replaced by a fusion of source models' per-token
             log-probs, each clipped to a band of ±ref_offset around the pivot's (InfiFPO Eq. 13;
             the clip rule and the max-margin choice are our reading, docs/training.md)

The objective registry (`trainers.objectives`) names these functions; nothing here dispatches
on a method name except the legacy `preference_loss`, kept for callers outside the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch stays a local import so `import trainers` is light
    import torch

PREFERENCE_METHODS = ("dpo", "dpo_norm", "ipo", "simpo", "wrpo")  # what `preference_loss` dispatches
# Which response kinds each row format carries; the loop concatenates them in this order.
KINDS = {"sft": ("response",), "pref": ("chosen", "rejected"), "wrpo": ("y_ws", "y_wt", "y_l")}


@dataclass
class LossOutput:
    losses: torch.Tensor  # (B,)
    rewards: dict[str, torch.Tensor] = field(default_factory=dict)  # kind -> (B,), detached
    margins: torch.Tensor | None = None  # (B,) chosen-side reward minus rejected reward, detached
    loss: torch.Tensor | None = None  # scalar, when the objective reduces itself (token-mean SFT)


def _smoothed(z: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    import torch.nn.functional as F

    return -F.logsigmoid(z) * (1 - label_smoothing) - F.logsigmoid(-z) * label_smoothing


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, *,
             beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    """Sigmoid DPO on summed log-probs. Rewards are β·(π - ref) per response."""
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    losses = _smoothed(beta * (chosen - rejected), label_smoothing)
    rc, rr = beta * chosen.detach(), beta * rejected.detach()
    return LossOutput(losses, {"chosen": rc, "rejected": rr}, rc - rr)


def dpo_norm_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                  chosen_len, rejected_len, *, beta: float = 10.0, label_smoothing: float = 0.0) -> LossOutput:
    """Length-normalised DPO: the log-ratios are averaged per response token before the
    sigmoid, so long answers are not favoured (FuseChat-3.0 trains Llama-3.1-8B this way
    with β = 10). Rewards are reported on the same per-token scale."""
    chosen = (policy_chosen_logps - ref_chosen_logps) / chosen_len.clamp(min=1)
    rejected = (policy_rejected_logps - ref_rejected_logps) / rejected_len.clamp(min=1)
    losses = _smoothed(beta * (chosen - rejected), label_smoothing)
    rc, rr = beta * chosen.detach(), beta * rejected.detach()
    return LossOutput(losses, {"chosen": rc, "rejected": rr}, rc - rr)


def ipo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             chosen_len, rejected_len, *, beta: float = 0.1) -> LossOutput:
    """IPO (Azar et al., 2023, eq. 17) on per-token-averaged log-ratios, as TRL does: the
    squared loss would otherwise grow with response length. No label smoothing (the loss
    is a regression to a fixed margin, not a likelihood)."""
    chosen = (policy_chosen_logps - ref_chosen_logps) / chosen_len.clamp(min=1)
    rejected = (policy_rejected_logps - ref_rejected_logps) / rejected_len.clamp(min=1)
    losses = (chosen - rejected - 1 / (2 * beta)) ** 2
    rc, rr = beta * chosen.detach(), beta * rejected.detach()
    return LossOutput(losses, {"chosen": rc, "rejected": rr}, rc - rr)


def simpo_loss(policy_chosen_logps, policy_rejected_logps, chosen_len, rejected_len, *, beta: float = 2.0,
               gamma_beta_ratio: float = 0.5, label_smoothing: float = 0.0) -> LossOutput:
    """SimPO as in the official code: logits = (avg_c - avg_r) - γ/β, loss on β·logits.
    Reference-free, so the loop never loads or caches a reference for it."""
    avg_c = policy_chosen_logps / chosen_len.clamp(min=1)
    avg_r = policy_rejected_logps / rejected_len.clamp(min=1)
    losses = _smoothed(beta * (avg_c - avg_r - gamma_beta_ratio), label_smoothing)
    rc, rr = beta * avg_c.detach(), beta * avg_r.detach()
    return LossOutput(losses, {"chosen": rc, "rejected": rr}, rc - rr)


def wrpo_loss(policy_ws_logps, policy_wt_logps, policy_l_logps, ref_ws_logps, ref_wt_logps, ref_l_logps, *,
              alpha: float, beta: float = 0.01, label_smoothing: float = 0.0) -> LossOutput:
    """WRPO (official code): the preferred side is a weighted sum of the summed log-ratios
    of the source's response y_ws (weight α) and the target's own response y_wt (1-α);
    y_l is the rejected response. α is scheduled by the caller (0 -> α_max)."""
    d_ws = policy_ws_logps - ref_ws_logps
    d_wt = policy_wt_logps - ref_wt_logps
    d_l = policy_l_logps - ref_l_logps
    chosen = alpha * d_ws + (1 - alpha) * d_wt
    losses = _smoothed(beta * (chosen - d_l), label_smoothing)
    rewards = {"y_ws": beta * d_ws.detach(), "y_wt": beta * d_wt.detach(), "y_l": beta * d_l.detach()}
    return LossOutput(losses, rewards, beta * (chosen.detach() - d_l.detach()))


def preference_loss(method: str, policy: dict, ref: dict | None, lengths: dict, *, beta: float,
                    label_smoothing: float = 0.0, alpha: float = 0.0, gamma_beta_ratio: float = 0.5) -> LossOutput:
    """Dispatch by method name over dicts kind -> (B,) tensors (kinds from `KINDS`). Legacy: the
    loop asks `trainers.objectives` instead; kept for scripts that call the losses directly."""
    if method == "dpo":
        return dpo_loss(policy["chosen"], policy["rejected"], ref["chosen"], ref["rejected"], beta=beta,
                        label_smoothing=label_smoothing)
    if method == "dpo_norm":
        return dpo_norm_loss(policy["chosen"], policy["rejected"], ref["chosen"], ref["rejected"],
                             lengths["chosen"], lengths["rejected"], beta=beta, label_smoothing=label_smoothing)
    if method == "ipo":
        return ipo_loss(policy["chosen"], policy["rejected"], ref["chosen"], ref["rejected"],
                        lengths["chosen"], lengths["rejected"], beta=beta)
    if method == "simpo":
        return simpo_loss(policy["chosen"], policy["rejected"], lengths["chosen"], lengths["rejected"], beta=beta,
                          gamma_beta_ratio=gamma_beta_ratio, label_smoothing=label_smoothing)
    if method == "wrpo":
        return wrpo_loss(policy["y_ws"], policy["y_wt"], policy["y_l"], ref["y_ws"], ref["y_wt"], ref["y_l"],
                         alpha=alpha, beta=beta, label_smoothing=label_smoothing)
    raise ValueError(f"unknown preference method {method!r}; expected one of {PREFERENCE_METHODS}")


def sft_loss(policy_logps, lengths, weights=None) -> LossOutput:
    """Token-mean NLL over the batch's response tokens: -Σ log π / Σ |y|. With per-row weights
    (B,) it is Σ w·(-log π) / Σ w·|y|, so w = 1 everywhere is exactly the unweighted loss.
    `losses` holds the per-row token-mean NLL (for logging); the loss is `LossOutput.loss`."""
    if weights is None:
        loss = -policy_logps.sum() / lengths.sum().clamp(min=1)
    else:
        weights = weights.to(policy_logps.dtype)
        loss = -(weights * policy_logps).sum() / (weights * lengths).sum().clamp(min=1e-12)
    return LossOutput(-policy_logps.detach() / lengths.clamp(min=1), loss=loss)


def weighted_mean(losses, weights=None):
    """mean(losses) without weights; Σ w·L / Σ w with per-row weights (B,)."""
    if weights is None:
        return losses.mean()
    weights = weights.to(losses.dtype)
    return (weights * losses).sum() / weights.sum().clamp(min=1e-12)


def infifpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                 chosen_len, rejected_len, source_chosen_logps, source_rejected_logps, source_chosen_len,
                 source_rejected_len, *, beta: float = 2.5, ref_offset: float = 5.0, fusion: str = "mean",
                 clip: str = "band", length_normalize: bool = True, label_smoothing: float = 0.0) -> LossOutput:
    """InfiFPO (Eq. 13): DPO whose reference is a fusion of S source models.

    policy/ref (pivot) tensors are (B,) sums over the pivot tokenizer's response tokens with
    lengths chosen_len/rejected_len (B,); source_* are (B, S) sums and token counts under
    each source's own tokenizer. With `length_normalize` (the authors' USE_LN) every log-prob
    is divided by its own token count. Each source value is clipped to [pivot - ref_offset,
    pivot + ref_offset] (`clip="band"`) or left as is (`"none"`), then fused: `"mean"`
    (γ_i = 1/S) or `"max_margin"` (γ = 1 for the source furthest from the pivot, per response).
    With the pivot as its only source this is exactly `dpo_norm_loss`."""
    import torch

    def norm(x, n):
        return x / n.clamp(min=1) if length_normalize else x

    def fused(src, src_len, pivot):  # src (B, S), pivot (B,) -> (B,)
        s = norm(src, src_len)
        p = pivot.unsqueeze(-1)
        if clip == "band":
            s = torch.minimum(torch.maximum(s, p - ref_offset), p + ref_offset)
        elif clip != "none":
            raise ValueError(f"unknown InfiFPO clip {clip!r}; expected 'band' or 'none'")
        if fusion == "mean":
            return s.mean(-1)
        if fusion == "max_margin":
            pick = (s - p).abs().argmax(-1, keepdim=True)
            return s.gather(-1, pick).squeeze(-1)
        raise ValueError(f"unknown InfiFPO fusion {fusion!r}; expected 'mean' or 'max_margin'")

    pivot_c, pivot_r = norm(ref_chosen_logps, chosen_len), norm(ref_rejected_logps, rejected_len)
    chosen = norm(policy_chosen_logps, chosen_len) - fused(source_chosen_logps, source_chosen_len, pivot_c)
    rejected = norm(policy_rejected_logps, rejected_len) - fused(source_rejected_logps, source_rejected_len, pivot_r)
    losses = _smoothed(beta * (chosen - rejected), label_smoothing)
    rc, rr = beta * chosen.detach(), beta * rejected.detach()
    return LossOutput(losses, {"chosen": rc, "rejected": rr}, rc - rr)


def fusion_weights(scores: list[float], how: str = "softmax", temperature: float = 1.0) -> list[float]:
    """Per-prompt weights from the answers' scores (FuseRL; the paper's function is not public).

    softmax     exp(s_i/τ) / Σ exp(s_j/τ)       (any real scores; τ > 0)
    normalized  s_i / Σ s_j                      (scores must be ≥ 0 and not all 0)
    uniform     1/n
    Returns plain floats; NaN, negative or all-zero results are the caller's to reject."""
    n = len(scores)
    if how == "uniform":
        return [1.0 / n] * n
    if how == "normalized":
        total = sum(scores)
        return [s / total if total else 0.0 for s in scores]
    if how == "softmax":
        if any(math.isnan(s) for s in scores):
            return [math.nan] * n
        top = max(scores)
        e = [math.exp((s - top) / temperature) for s in scores]
        return [x / sum(e) for x in e]
    raise ValueError(f"unknown weight function {how!r}; expected softmax, normalized or uniform")


def wrpo_alpha(step: int, total_steps: int, alpha_max: float, schedule: str = "linear") -> float:
    """α for optimizer step `step` (0-based): linear from 0 at the first step to α_max at
    the last one, as the official code ramps it; or constant α_max."""
    if schedule == "constant":
        return alpha_max
    if total_steps <= 1:
        return alpha_max
    return alpha_max * min(1.0, step / (total_steps - 1))


def sequence_logps(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor):
    """Summed log-probs of the masked tokens, and their counts.

    logits (N, T, V) predict input_ids shifted by one; input_ids, loss_mask (N, T) with
    loss_mask 1 on response tokens. Returns (sum_logps (N,), n_tokens (N,)). The
    log-softmax is taken as gather - logsumexp in float32 so bf16 logits do not lose the
    small differences DPO-style losses live on."""
    import torch

    logits = logits[:, :-1].float()
    labels = input_ids[:, 1:]
    mask = loss_mask[:, 1:].to(logits.dtype)
    token_logps = torch.gather(logits, 2, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def token_logps(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor):
    """Per-token log-probs (N, T-1) of input_ids[:, 1:] and the response mask (N, T-1), for
    objectives that declare `inputs="token_logps"` (the sums are `(lp * mask).sum(-1)`)."""
    import torch

    logits = logits[:, :-1].float()
    labels = input_ids[:, 1:]
    mask = loss_mask[:, 1:].to(logits.dtype)
    lp = torch.gather(logits, 2, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return lp * mask, mask
