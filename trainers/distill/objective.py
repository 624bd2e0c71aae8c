"""The token-level objectives' registry plumbing: typed parameters, the step's loss, and the per-row
teacher signal handed to each batch (`Objective.batch_extras`). The losses are
trainers/distill/losses.py; this module stays torch-free at import so the registry is light.

Teacher signal per objective (from the manifest `harness fuse teacher` writes):
  distill_ce  the fused target on the pivot's positions (align + MinCE / weighting, trainers/distill/fuse.py)
  uld, gld    every selected source's stored top-k log-probs on its own positions (no alignment)
`sources` picks the sources of one run: one name = pairwise (FuseChat), all (the default) = unified.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UsageError, did_you_mean
from harness.models import resolve_model
from trainers.distill import align as A
from trainers.distill import targets as TG
from trainers.distill.recipe import TeacherManifest, read_manifest
from trainers.distill.teacher import TeacherFile
from trainers.losses import LossOutput

log = logging.getLogger(__name__)

TEACHER_TOPK = "teacher_topk"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    teacher: str = Field(description="output_dir of `harness fuse teacher` (or its teacher.json)")
    sources: list[str] | None = Field(None, description="sources of this run; one = pairwise, null = all (unified)")


class DistillCEParams(_Params):
    fusion: Literal["min_ce", "weighted"] = Field("min_ce", description="FuseLLM distill_greater_as_gt (MinCE)")
    lm_weight: float = Field(0.9, ge=0, le=1, description="FuseLLM/FuseChat README lm_loss_weight")
    temperature: float = Field(1.0, gt=0, description="FuseLLM distill_teacher_temperature")
    coverage_warning: float = Field(0.5, ge=0, le=1)


class ULDParams(_Params):
    top_k: int = Field(10, ge=1, description="InfiFusion's K is unpublished; the teacher store's k")
    zscore: bool = Field(False, description="InfiFusion 'logits standardization' (over the K kept logits)")
    renormalize: bool = Field(False, description="renormalise the teacher's K probabilities (unpublished)")
    lm_weight: float = Field(0.5, ge=0, le=1, description="weight of the distillation term (DSKD kd_rate 0.5)")


class GLDParams(ULDParams):
    gld_weight: float = Field(1.0, ge=0, description="InfiGFusion README: λ(L_ULD + L_GLD); unpublished weight")


@dataclass
class DistillLossOutput(LossOutput):
    parts: dict | None = None  # name -> float, logged as loss/<name>


def _output(out, n: int) -> DistillLossOutput:
    lo = DistillLossOutput(losses=out.loss.detach().expand(n), loss=out.loss)
    lo.parts = {k: v.item() for k, v in out.parts.items()}
    return lo


def metrics(lo: DistillLossOutput) -> dict[str, float]:
    return {f"loss/{k}": v for k, v in (lo.parts or {}).items()}


def distill_ce_loss(x, hp: DistillCEParams) -> LossOutput:
    from trainers.distill import losses as D

    b = x.batch
    out = D.distill_ce(x.logits, b["input_ids"], b["loss_mask"], b["target_ids"], b["target_probs"],
                       lm_weight=hp.lm_weight)
    return _output(out, b["input_ids"].shape[0])


def uld_loss(x, hp: ULDParams) -> LossOutput:
    from trainers.distill import losses as D

    b = x.batch
    out = D.uld(x.logits, b["input_ids"], b["loss_mask"], b["teacher_logprobs"], b["teacher_mask"], top_k=hp.top_k,
                zscore=hp.zscore, renormalize=hp.renormalize, lm_weight=hp.lm_weight)
    return _output(out, b["input_ids"].shape[0])


def gld_loss(x, hp: GLDParams) -> LossOutput:
    from trainers.distill import losses as D

    b = x.batch
    out = D.gld(x.logits, b["input_ids"], b["loss_mask"], b["teacher_logprobs"], b["teacher_mask"], top_k=hp.top_k,
                zscore=hp.zscore, renormalize=hp.renormalize, gld_weight=hp.gld_weight, lm_weight=hp.lm_weight)
    return _output(out, b["input_ids"].shape[0])


def _selected(manifest: TeacherManifest, names: list[str] | None):
    by_name = {s.name: s for s in manifest.sources}
    for n in names or []:
        if n not in by_name:
            raise did_you_mean("teacher source", n, list(by_name))
    return [by_name[n] for n in names] if names else list(manifest.sources)


def _prompt_lens(batch) -> list[int]:
    m = batch["loss_mask"]
    return [int(row.nonzero()[0].item()) if row.any() else int(row.shape[0]) for row in m]


def _signals(manifest: TeacherManifest, hp, store, pivot_texts: list[str] | None):
    out = []
    for e in _selected(manifest, hp.sources):
        tf = TeacherFile(Path(e.directory))
        if e.same_tokenizer or pivot_texts is None:
            out.append(TG.SourceSignal(e.name, tf, e.same_tokenizer))
            continue
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(resolve_model(e.model, store).path)
        out.append(TG.cross_source(e.name, tf, tok, pivot_texts, tf.ids(), vocab_align=manifest.vocab_align,
                                   pivot=TeacherFile(Path(manifest.pivot.directory)),
                                   cache_dir=Path(manifest.map_cache), rules=manifest.token_rules))
    return out


def distill_ce_extras(hp: DistillCEParams, examples: list, store) -> Callable[[list[str], dict], dict]:
    """Fused targets for every example, computed once before training."""
    from transformers import AutoTokenizer

    manifest = read_manifest(hp.teacher)
    pivot = TeacherFile(Path(manifest.pivot.directory))
    pivot_texts = A.vocab_texts(AutoTokenizer.from_pretrained(resolve_model(manifest.pivot.model, store).path))
    sources = _signals(manifest, hp, store, pivot_texts)
    stats = TG.AlignStats()
    fused = {}
    for ex in examples:
        if ex.id not in pivot:
            raise UsageError(f"row {ex.id} has no teacher signal in {manifest.pivot.directory}; the teacher was "
                             "captured on other data: rerun `harness fuse teacher` on this data")
        fused[ex.id] = TG.fused_targets(ex.id, ex.responses["response"], pivot, sources, pivot_texts,
                                        fusion=hp.fusion, temperature=hp.temperature, stats=stats)
    TG.warn_coverage(stats, hp.coverage_warning)

    def extras(ids: list[str], batch: dict) -> dict:
        t = TG.collate_targets(_prompt_lens(batch), batch["input_ids"].shape[1], fused=[fused[i] for i in ids])
        return {k: v.to(batch["input_ids"].device) for k, v in t.items()}

    return extras


def uld_extras(hp: ULDParams, examples: list, store) -> Callable[[list[str], dict], dict]:
    """Each selected source's stored top-k on its own positions (no vocabulary alignment)."""
    manifest = read_manifest(hp.teacher)
    sources = _signals(manifest, hp, store, None)
    missing = [ex.id for ex in examples if any(ex.id not in s.teacher for s in sources)]
    if missing:
        raise UsageError(f"rows {missing[:5]} have no teacher signal; rerun `harness fuse teacher` on this data")

    def extras(ids: list[str], batch: dict) -> dict:
        t = TG.collate_targets(_prompt_lens(batch), batch["input_ids"].shape[1],
                               teachers=[TG.source_logprobs(i, sources, hp.top_k) for i in ids])
        return {k: v.to(batch["input_ids"].device) for k, v in t.items()}

    return extras
