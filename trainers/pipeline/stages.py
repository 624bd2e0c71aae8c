"""Pipeline stage kinds: one registry entry per kind builds that kind's stages from the recipe.

The recipe's sections name stages (`specialists`, `fusion` -> data, `sft`, `preference`,
`evaluate`, `leaderboard`, `gate`: registry entries with `section` set, trainers/pipeline/
base_stages.py), and its `stages:` list names more, one entry per stage, `kind:` picking the
registry entry:

    stages:
      - {kind: fuse_sft}                                    # FuseSFT from the target
      - {kind: fuse_po, from: sft, train: {objective: {base_loss: dpo_norm}}}
      - {kind: infifpo, from: sft, train: {objective: {sources: [smollm2-135m-math]}}}

Every training objective of trainers/objectives.py whose rows the fusion data stage writes is a
stage kind (`TrainStage`). Another kind (merge, teacher, distill) is one `register_stage_kind`
call: a pydantic spec for its recipe entry and a `build(pipe, spec)` that adds its `Stage`s with
`pipe.add` and, when it makes a model, `pipe.add_candidate(stage_name, candidate)` so it is
evaluated, shown on the leaderboard and can be gated. Stages are hashed, skipped and resumed by
the runner (trainers/pipeline/run.py) whatever their kind.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import did_you_mean
from trainers.objectives import OBJECTIVES


@dataclass
class Stage:
    name: str
    spec: dict[str, Any]  # what defines the stage, besides its inputs
    deps: list[str]  # stages whose outputs are this stage's inputs
    run: Callable[[bool], None]  # argument: resume (an interrupted run with the same key left state)
    outputs: Callable[[], dict[str, str] | None]  # hashes of what it produced; None when missing
    describe: str = ""


def sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_hash(*paths: Path) -> dict[str, str] | None:
    if not all(p.is_file() for p in paths):
        return None
    return {p.name: sha_file(p) for p in paths}


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "model"


class StageSpec(BaseModel):
    """Base of a `stages:` entry: `kind` picks the registry entry, `name` the stage (default: kind)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    kind: str
    name: str | None = Field(None, description="stage name and candidate suffix (default: the kind)")

    @property
    def stage_name(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class StageKind:
    name: str
    spec: type[StageSpec]
    build: Callable[[Any, Any], None]  # (Pipeline, validated spec) -> adds stages
    summary: str = ""
    section: str = ""  # the recipe section that builds it (trainers/pipeline/base_stages.py); "" for `stages:` kinds
    # Whether its stages read the `fusion:` section's data (workdir/data). A recipe without
    # `fusion:` may only hold kinds that do not (e.g. merge: FuseO1's sources -> merge -> evaluate).
    needs_fusion_data: bool = True


STAGE_KINDS: dict[str, StageKind] = {}


def register_stage_kind(kind: StageKind) -> StageKind:
    if kind.name in STAGE_KINDS:
        raise ValueError(f"stage kind {kind.name!r} is registered twice")
    STAGE_KINDS[kind.name] = kind
    return kind


def parse_stage(entry: Any, where: str) -> StageSpec:
    """A `stages:` entry validated against its kind's spec (did-you-mean for unknown kinds)."""
    kinds = [k for k, v in STAGE_KINDS.items() if not v.section]
    if not isinstance(entry, dict) or "kind" not in entry:
        raise ValueError(f"{where}: each stage needs `kind:` (one of {', '.join(sorted(kinds))})")
    section = STAGE_KINDS[entry["kind"]].section if entry["kind"] in STAGE_KINDS else ""
    if section:
        raise ValueError(f"{where}: the {entry['kind']!r} stage is built by the recipe's `{section}:` section, "
                         "not a `stages:` entry; move its settings there")
    if entry["kind"] not in kinds:
        raise ValueError(f"{where}: {did_you_mean('stage kind', str(entry['kind']), kinds)}")
    return STAGE_KINDS[entry["kind"]].spec.model_validate(entry)


# ---- training stages: one per objective the fusion data stage feeds -------------------------
# row format -> the phase-1 data file its rows are in (trainers/fusion/pipeline.py writes them)
DATA_FILES = {"sft": "sft.jsonl", "pref": "dpo.jsonl", "fuse_sft": "fuse.jsonl", "fuse_pref": "fuse.jsonl"}


class TrainStage(StageSpec):
    start: str = Field("target", alias="from", description="start model: target, sft (the SFT candidate), "
                                                            "another stage's name, or a model spec")
    train: dict[str, Any] = Field(default_factory=dict, description="trainer config keys (harness train)")


def build_train(pipe, spec: TrainStage) -> None:
    """`harness train <kind>` on the phase-1 fusion data its objective reads, from `from:`."""
    method = spec.kind
    data_file = pipe.workdir / "data" / DATA_FILES[OBJECTIVES[method].row_format]
    start, start_dep = pipe.start_model(spec.start)
    name = f"{pipe.recipe.name}-{spec.stage_name}"
    stage_dir = pipe.workdir / slug(spec.stage_name)
    cfg = pipe.trainer_config(spec.train, method, model=start, data=str(data_file),
                              output_dir=str(stage_dir / "model"), name=name, where=f"stages[{spec.stage_name}]")
    pipe.add(Stage(
        name=spec.stage_name, deps=["data", *start_dep],
        spec={"config": cfg, "start": (lambda: pipe.model_fp(start)) if not start_dep else None},
        run=lambda resume: pipe.train(method, cfg, stage_dir, resume),
        outputs=lambda: pipe.candidate_outputs(name), describe=f"{method} {start} -> {name}"))
    pipe.add_candidate(spec.stage_name, name)


for _m, _obj in OBJECTIVES.items():
    if _obj.row_format in DATA_FILES and _m != "sft":  # sft has its own section; wrpo needs phase 2
        register_stage_kind(StageKind(_m, TrainStage, build_train, f"harness train {_m} on fusion data"))


def data_files_needed(stages: list[StageSpec]) -> set[str]:
    """The phase-1 files the `stages:` entries train on (so the data stage hashes them)."""
    return {DATA_FILES[OBJECTIVES[s.kind].row_format].removesuffix(".jsonl") for s in stages
            if isinstance(s, TrainStage) and s.kind in OBJECTIVES}


# Stage kinds owned by other packages register themselves on import (light modules: no torch).
import trainers.distill.stage  # noqa: E402,F401  (the `teacher` kind)
import trainers.merge.stage  # noqa: E402,F401  (the `merge` kind)
