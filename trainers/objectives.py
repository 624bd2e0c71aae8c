"""Training objectives as one registry: what each method trains on, needs and minimises.

An `Objective` declares
  * `row_format`  the data rows it reads (trainers/data.py: sft, pref, wrpo, fuse_sft, fuse_pref)
    and `kinds`, the responses each training example carries, in the order the loop stacks them;
  * `params`      its typed hyper-parameters, defaults from the authors' code (cited per field);
    `learning_rate` is the default lr, cited in `lr_source`;
  * `needs`       what is precomputed before training: "reference" (the SFT reference's summed
    log-probs, trainers/reference.py), "source_logps" (every source model's log-probs of each
    response under its own tokenizer, harness.textscore); later "teacher_topk";
  * `inputs`      what the step hands the loss besides per-sequence sums: "sequence" (sums and
    lengths only), "token_logps" (per-token log-probs and mask) or "logits" (the policy's raw
    logits; the loop then keeps them alive), so token-level objectives need no loop edit;
  * `loss`        a pure function (StepInputs, params) -> LossOutput over the functions in
    trainers/losses.py (which keep their hand-computed and TRL-parity tests).

Adding an objective is one `register(Objective(...))` plus its tests (docs/training.md).
Config validation, the data loader, the loop and the pipeline ask this registry; no other module
tests a method name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import did_you_mean
from trainers import losses as L
from trainers.distill import objective as DX

if TYPE_CHECKING:
    import torch

REFERENCE = "reference"
SOURCE_LOGPS = "source_logps"


@dataclass
class StepInputs:
    """What one micro-batch hands an objective. B rows, K kinds, N = K·B sequences."""

    policy: dict[str, torch.Tensor]  # kind -> (B,) summed response log-probs of the policy
    lengths: dict[str, torch.Tensor]  # kind -> (B,) response token counts
    ref: dict[str, torch.Tensor] | None = None  # kind -> (B,) reference sums ("reference")
    sources: dict[str, torch.Tensor] | None = None  # kind -> (B, S) source sums ("source_logps")
    source_lengths: dict[str, torch.Tensor] | None = None  # kind -> (B, S) source token counts
    weights: torch.Tensor | None = None  # (B,) per-row weights; None = all 1
    token_logps: torch.Tensor | None = None  # (N, T-1) masked per-token log-probs ("token_logps")
    token_mask: torch.Tensor | None = None  # (N, T-1) response-token mask
    logits: torch.Tensor | None = None  # (N, T, V) policy logits ("logits")
    batch: dict[str, Any] = field(default_factory=dict)  # the collated batch (input_ids, loss_mask, idx)
    alpha: float = 0.0  # the objective's scheduled α this step (WRPO)


class Params(BaseModel):
    """Base of every objective's hyper-parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SFTParams(Params):
    pass


class _Beta(Params):
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative-DPO ε")


class DPOParams(_Beta):
    beta: float = Field(0.1, gt=0, description="DPO paper / TRL default")


class DPONormParams(_Beta):
    beta: float = Field(10.0, gt=0, description="FuseChat-3.0 Llama-3.1-8B setting")


class IPOParams(Params):
    beta: float = Field(0.1, gt=0, description="TRL default")


class SimPOParams(_Beta):
    beta: float = Field(2.0, gt=0, description="SimPO official (Llama-3-8B-Instruct: 2.5; Mistral: 2.0)")
    gamma_beta_ratio: float = Field(0.5, description="SimPO official γ/β")


class WRPOParams(_Beta):
    beta: float = Field(0.01, gt=0, description="WRPO official run script")
    alpha_max: float = Field(0.1, ge=0, le=1, description="WRPO official: final weight of y_ws")
    alpha_schedule: Literal["linear", "constant"] = "linear"


class _Weighted(Params):
    weighting: Literal["softmax", "normalized", "uniform", "given"] = Field(
        "softmax", description="FuseRL's weight function is unpublished: softmax(score/τ) per prompt is our "
                               "reading; `given` uses each answer's `weight` field")
    temperature: float = Field(1.0, gt=0, description="τ of the softmax weighting")


class FuseSFTParams(_Weighted):
    pass


class FusePOParams(_Weighted):
    base_loss: Literal["dpo", "dpo_norm", "simpo"] = "dpo"
    beta: float | None = Field(None, gt=0, description="default: the base loss's β")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    gamma_beta_ratio: float = Field(0.5, description="SimPO base loss only")


class InfiFPOParams(Params):
    sources: list[str] = Field(default_factory=list, description="source models whose log-probs are fused into "
                               "the reference; empty: the rows bring them (fuse_*_logps, InfiFPO's format)")
    beta: float = Field(2.5, gt=0, description="InfiFPO run.sh with USE_LN=True (0.1 without)")
    ref_offset: float = Field(5.0, gt=0, description="InfiFPO run.sh with USE_LN=True (300 without); our "
                                                     "reading: the half-width of the clip band around the pivot")
    length_normalize: bool = Field(True, description="run.sh USE_LN")
    fusion: Literal["mean", "max_margin"] = Field("mean", description="run.sh fusion_type mean")
    clip: Literal["band", "none"] = "band"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    source_backend: str = Field("auto", description="harness.textscore backend for the source models")


@dataclass(frozen=True)
class Objective:
    name: str
    summary: str
    row_format: str
    kinds: tuple[str, ...]
    params: type[Params]
    learning_rate: float
    lr_source: str
    loss: Callable[[StepInputs, Any], L.LossOutput]
    needs: Callable[[Any], frozenset[str]] = lambda hp: frozenset()
    inputs: Literal["sequence", "token_logps", "logits"] = "sequence"
    alpha: Callable[[int, int, Any], float] | None = None  # α for optimizer step (step, total, params)
    metrics: Callable[[L.LossOutput], dict[str, float]] | None = None  # extra per-step metrics
    row_weights: Callable[[Any], Callable[[list[float]], list[float]] | None] | None = None  # scores -> weights
    # per-row signals too large for `needs` caches (token-level teacher top-k): called once before
    # training as (params, examples, store) -> fn(row ids, batch) -> extra batch tensors for the loss
    batch_extras: Callable[[Any, list, Any], Callable[[list[str], dict], dict]] | None = None

    def hyper(self, options: dict[str, Any]) -> Params:
        return self.params(**options)

    @property
    def beta_default(self) -> float | None:
        f = self.params.model_fields.get("beta")
        return f.default if f is not None and f.default is not None else None


OBJECTIVES: dict[str, Objective] = {}


def register(obj: Objective) -> Objective:
    if obj.name in OBJECTIVES:
        raise ValueError(f"objective {obj.name!r} is registered twice")
    OBJECTIVES[obj.name] = obj
    return obj


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise did_you_mean("training objective", str(name), list(OBJECTIVES))
    return OBJECTIVES[name]


def _always(*needs: str) -> Callable[[Any], frozenset[str]]:
    return lambda hp: frozenset(needs)


def _pair(x: StepInputs) -> tuple:
    return x.policy["chosen"], x.policy["rejected"]


def _ref(x: StepInputs) -> tuple:
    return x.ref["chosen"], x.ref["rejected"]


def _lens(x: StepInputs) -> tuple:
    return x.lengths["chosen"], x.lengths["rejected"]


def _base_po(x: StepInputs, name: str, beta: float, label_smoothing: float, gamma_beta_ratio: float) -> L.LossOutput:
    if name == "dpo":
        return L.dpo_loss(*_pair(x), *_ref(x), beta=beta, label_smoothing=label_smoothing)
    if name == "dpo_norm":
        return L.dpo_norm_loss(*_pair(x), *_ref(x), *_lens(x), beta=beta, label_smoothing=label_smoothing)
    return L.simpo_loss(*_pair(x), *_lens(x), beta=beta, gamma_beta_ratio=gamma_beta_ratio,
                        label_smoothing=label_smoothing)


register(Objective(
    name="sft", summary="token-mean NLL on the final assistant turn", row_format="sft", kinds=("response",),
    params=SFTParams, learning_rate=1e-5, lr_source="FuseChat-3.0 SFT stage (Llama-3.1-8B: 5e-6 to 1e-5)",
    loss=lambda x, hp: L.sft_loss(x.policy["response"], x.lengths["response"], x.weights)))
register(Objective(
    name="dpo", summary="-log σ(β[(π_c-ref_c) - (π_r-ref_r)]), summed log-probs", row_format="pref",
    kinds=("chosen", "rejected"), params=DPOParams, learning_rate=5e-7, lr_source="DPO / TRL examples",
    needs=_always(REFERENCE),
    loss=lambda x, hp: L.dpo_loss(*_pair(x), *_ref(x), beta=hp.beta, label_smoothing=hp.label_smoothing)))
register(Objective(
    name="dpo_norm", summary="DPO on per-token averages (TRL sigmoid_norm)", row_format="pref",
    kinds=("chosen", "rejected"), params=DPONormParams, learning_rate=8e-7, lr_source="FuseChat-3.0 Llama setting",
    needs=_always(REFERENCE),
    loss=lambda x, hp: L.dpo_norm_loss(*_pair(x), *_ref(x), *_lens(x), beta=hp.beta,
                                       label_smoothing=hp.label_smoothing)))
register(Objective(
    name="ipo", summary="((Δ_c/|c| - Δ_r/|r|) - 1/(2β))²", row_format="pref", kinds=("chosen", "rejected"),
    params=IPOParams, learning_rate=5e-7, lr_source="TRL examples", needs=_always(REFERENCE),
    loss=lambda x, hp: L.ipo_loss(*_pair(x), *_ref(x), *_lens(x), beta=hp.beta)))
register(Objective(
    name="simpo", summary="-log σ(β(avg_c - avg_r) - γ), reference-free", row_format="pref",
    kinds=("chosen", "rejected"), params=SimPOParams, learning_rate=5e-7, lr_source="SimPO official",
    loss=lambda x, hp: L.simpo_loss(*_pair(x), *_lens(x), beta=hp.beta, gamma_beta_ratio=hp.gamma_beta_ratio,
                                    label_smoothing=hp.label_smoothing)))
register(Objective(
    name="wrpo", summary="-log σ(β[α·Δ(y_ws) + (1-α)·Δ(y_wt) - Δ(y_l)])", row_format="wrpo",
    kinds=("y_ws", "y_wt", "y_l"), params=WRPOParams, learning_rate=3e-7, lr_source="WRPO official run script",
    needs=_always(REFERENCE),
    loss=lambda x, hp: L.wrpo_loss(x.policy["y_ws"], x.policy["y_wt"], x.policy["y_l"], x.ref["y_ws"],
                                   x.ref["y_wt"], x.ref["y_l"], alpha=x.alpha, beta=hp.beta,
                                   label_smoothing=hp.label_smoothing),
    alpha=lambda step, total, hp: L.wrpo_alpha(step, total, hp.alpha_max, hp.alpha_schedule),
    metrics=lambda lo: {"accuracies/y_wt_vs_y_l": (lo.rewards["y_wt"] > lo.rewards["y_l"]).float().mean().item()}))


def _weights_fn(hp: _Weighted) -> Callable[[list[float]], list[float]] | None:
    if hp.weighting == "given":
        return None  # the rows' own `weight` fields
    return lambda scores: L.fusion_weights(scores, hp.weighting, hp.temperature)


register(Objective(
    name="fuse_sft", summary="FuseRL FuseSFT: Σ w·(-log π) / Σ w·|y| over every source's answers",
    row_format="fuse_sft", kinds=("response",), params=FuseSFTParams, learning_rate=1e-5,
    lr_source="same as sft (FuseRL's is unpublished)",
    loss=lambda x, hp: L.sft_loss(x.policy["response"], x.lengths["response"], x.weights),
    row_weights=_weights_fn))


def _fuse_po_beta(hp: FusePOParams) -> float:
    return hp.beta if hp.beta is not None else OBJECTIVES[hp.base_loss].beta_default


register(Objective(
    name="fuse_po", summary="FuseRL FusePO: Σ w·L_PO over one pair per source (base loss dpo, dpo_norm, simpo)",
    row_format="fuse_pref", kinds=("chosen", "rejected"), params=FusePOParams, learning_rate=5e-7,
    lr_source="DPO / SimPO official (FuseRL's is unpublished)",
    needs=lambda hp: frozenset() if hp.base_loss == "simpo" else frozenset({REFERENCE}),
    loss=lambda x, hp: _base_po(x, hp.base_loss, _fuse_po_beta(hp), hp.label_smoothing, hp.gamma_beta_ratio),
    row_weights=_weights_fn))


def _infifpo(x: StepInputs, hp: InfiFPOParams) -> L.LossOutput:
    return L.infifpo_loss(*_pair(x), *_ref(x), *_lens(x), x.sources["chosen"], x.sources["rejected"],
                          x.source_lengths["chosen"], x.source_lengths["rejected"], beta=hp.beta,
                          ref_offset=hp.ref_offset, fusion=hp.fusion, clip=hp.clip,
                          length_normalize=hp.length_normalize, label_smoothing=hp.label_smoothing)


register(Objective(
    name="infifpo", summary="DPO against a fusion of source models' length-normalised log-probs (InfiFPO Eq. 13)",
    row_format="pref", kinds=("chosen", "rejected"), params=InfiFPOParams, learning_rate=1e-7,
    lr_source="InfiFPO run.sh", needs=_always(REFERENCE, SOURCE_LOGPS), loss=_infifpo))


register(Objective(
    name="distill_ce", summary="FuseLLM/FuseChat: λ·CLM + (1-λ)·CE(fused top-k target), MinCE over pivot + sources",
    row_format="sft", kinds=("response",), params=DX.DistillCEParams, learning_rate=1e-5,
    lr_source="FuseLLM README (FuseChat: 5e-6)", inputs="logits", loss=DX.distill_ce_loss,
    needs=_always(DX.TEACHER_TOPK), batch_extras=DX.distill_ce_extras, metrics=DX.metrics))
register(Objective(
    name="uld", summary="InfiFusion: λ·ULD (sorted top-K probabilities, L1) + (1-λ)·SFT, no vocabulary map",
    row_format="sft", kinds=("response",), params=DX.ULDParams, learning_rate=1e-5,
    lr_source="same as sft (InfiFusion's is unpublished)", inputs="logits", loss=DX.uld_loss,
    needs=_always(DX.TEACHER_TOPK), batch_extras=DX.uld_extras, metrics=DX.metrics))
register(Objective(
    name="gld", summary="InfiGFusion: λ·(ULD + GLD graph-on-logits) + (1-λ)·SFT (paper reading, no released code)",
    row_format="sft", kinds=("response",), params=DX.GLDParams, learning_rate=1e-5,
    lr_source="same as sft (InfiGFusion's is unpublished)", inputs="logits", loss=DX.gld_loss,
    needs=_always(DX.TEACHER_TOPK), batch_extras=DX.uld_extras, metrics=DX.metrics))


def reduce_loss(lo: L.LossOutput, weights) -> torch.Tensor:
    """The scalar to backpropagate: the objective's own reduction, else the (weighted) row mean."""
    return lo.loss if lo.loss is not None else L.weighted_mean(lo.losses, weights)
