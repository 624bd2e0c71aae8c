"""The pipeline's `teacher` stage kind: token-level fusion inside `harness pipeline`.

    stages:
      - kind: teacher
        name: teacher                       # stage name (default: the kind)
        sources:                            # a specialist name, a stage's candidate, or a model
          - {name: math, model: smollm2-135m-math}
          - {name: gemma, model: gemma3-270m}
        top_k: 10
        backend: hf
        train:                              # one distillation candidate per entry, on this signal
          - {method: distill_ce, sources: [gemma]}          # pairwise (FuseChat)
          - {method: distill_ce}                            # unified (FuseLLM)
          - {method: uld, sources: [gemma], objective: {zscore: true}, train: {max_steps: 8}}

The teacher stage runs `harness fuse teacher` on the phase-1 SFT rows (data/sft.jsonl) with the
recipe's target as the pivot; each `train` entry is a `harness train <method>` stage that depends
on it (so new teacher signal retrains them) and registers a candidate that is evaluated, on the
leaderboard and gateable like the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from trainers.pipeline.stages import Stage, StageKind, StageSpec, files_hash, register_stage_kind, slug


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TeacherSource(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    model: str
    backend: str | None = None
    max_context: int | None = Field(None, ge=8, description="tokens it scores at most (teacher recipe's)")


class DistillRun(_Strict):
    method: Literal["distill_ce", "uld", "gld"]
    name: str | None = Field(None, description="stage name (default: <teacher stage>-<method>-<sources>)")
    start: str = Field("target", alias="from")
    sources: list[str] | None = Field(None, description="one = pairwise, none = all sources (unified)")
    objective: dict[str, Any] = Field(default_factory=dict, description="the objective's other options")
    train: dict[str, Any] = Field(default_factory=dict, description="trainer config keys (harness train)")


class TeacherStage(StageSpec):
    sources: list[TeacherSource] = Field(min_length=1)
    top_k: int = Field(10, ge=1)
    shard_rows: int = Field(64, ge=1)
    backend: str = "auto"
    vocab_align: Literal["mined", "exact", "statistics"] = "mined"
    train: list[DistillRun] = Field(default_factory=list)


def build_teacher(pipe, spec: TeacherStage) -> None:
    stage = spec.stage_name
    out = (pipe.workdir / slug(stage)).resolve()
    data = (pipe.workdir / "data" / "sft.jsonl").resolve()
    deps, sources = ["data"], []
    for s in spec.sources:
        model, dep = pipe.start_model(s.model)
        deps += [d for d in dep if d not in deps]
        sources.append({"name": s.name, "model": model, **({"backend": s.backend} if s.backend else {}),
                        **({"max_context": s.max_context} if s.max_context else {})})
    recipe = {"pivot": pipe.recipe.target, "sources": sources, "data": str(data), "top_k": spec.top_k,
              "shard_rows": spec.shard_rows, "backend": spec.backend, "vocab_align": spec.vocab_align,
              **_capture_lengths(pipe, stage, data, spec.train), "output_dir": str(out / "teacher")}

    def run(resume: bool) -> None:  # captures resume by themselves (finished shards are kept)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        pipe._harness("fuse", "teacher", "--recipe", str(out / "recipe.yaml"))

    pipe.add(Stage(name=stage, deps=deps, spec={"recipe": recipe}, run=run,
                   outputs=lambda: files_hash(out / "teacher" / "teacher.json"),
                   describe=f"teacher top-{spec.top_k} of {pipe.recipe.target} + {len(sources)} sources"))
    for r in spec.train:
        _build_run(pipe, stage, out / "teacher", data, r)


def _run_config(pipe, teacher_stage: str, teacher_dir: Path, data: Path, r: DistillRun) -> tuple[str, str, dict]:
    """(stage name, candidate name, trainer config) of one distillation run."""
    stage = r.name or f"{teacher_stage}-{r.method}-{'+'.join(r.sources) if r.sources else 'all'}"
    start, _ = pipe.start_model(r.start)
    name = f"{pipe.recipe.name}-{stage}"
    objective = {**r.objective, "teacher": str(teacher_dir), **({"sources": r.sources} if r.sources else {})}
    cfg = pipe.trainer_config({**r.train, "objective": objective}, r.method, model=start, data=str(data),
                              output_dir=str(pipe.workdir / slug(stage) / "model"), name=name)
    return stage, name, cfg


def _capture_lengths(pipe, teacher_stage: str, data: Path, runs: list[DistillRun]) -> dict[str, int]:
    """The capture cuts rows like the longest of its training runs (a shorter run cuts further at
    read time, trainers/distill/truncate.py); no runs: the recipe's defaults (the trainer's)."""
    cfgs = [_run_config(pipe, teacher_stage, Path("teacher"), data, r)[2] for r in runs]
    if not cfgs:
        return {}
    return {"max_length": max(c["max_length"] for c in cfgs),
            "max_prompt_length": max(c["max_prompt_length"] for c in cfgs)}


def _build_run(pipe, teacher_stage: str, teacher_dir: Path, data: Path, r: DistillRun) -> None:
    stage, name, cfg = _run_config(pipe, teacher_stage, teacher_dir, data, r)
    start, start_dep = pipe.start_model(r.start)
    stage_dir = pipe.workdir / slug(stage)
    pipe.add(Stage(
        name=stage, deps=["data", teacher_stage, *start_dep],
        spec={"config": cfg, "start": (lambda: pipe.model_fp(start)) if not start_dep else None},
        run=lambda resume: pipe.train(r.method, cfg, stage_dir, resume),
        outputs=lambda: pipe.candidate_outputs(name), describe=f"{r.method} {start} -> {name}"))
    pipe.add_candidate(stage, name)


register_stage_kind(StageKind("teacher", TeacherStage, build_teacher,
                              "harness fuse teacher + distill_ce/uld/gld candidates on its signal"))
