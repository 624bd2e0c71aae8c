"""The pipeline's `merge` stage kind: a mergekit config in the recipe, merged into a candidate
that is evaluated, on the leaderboard and gateable like a trained one.

    stages:
      - kind: merge
        name: sce                       # stage name; the candidate is <recipe name>-sce
        config:                         # mergekit's format (docs/fusion.md "Parameter merging")
          merge_method: sce_fuseai
          base_model: target            # target | sft | preference | a stage or specialist name | a model
          models: [{model: smollm2-135m-math}, {model: fuse_sft}]
          parameters: {select_topk: 1.0}
          dtype: float32
        options: {lazy_unpickle: true}  # mergekit MergeOptions, passed through

FuseChat's recipe is pairwise-trained candidates (stages) -> this merge -> evaluate; FuseO1's is
sources (specialists) -> this merge -> evaluate, a recipe without `fusion:` / `sft:` sections
(trainers/recipes/fuseo1_cpu.yaml). The stage is hashed on the config with its model
names mapped, the options, and the fingerprints of the models no stage produces (a produced
model enters through its stage's outputs), so it reruns only when one of them changes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from trainers.merge.config import load_merge_config, model_slots
from trainers.pipeline.stages import Stage, StageKind, StageSpec, register_stage_kind, slug


class MergeStage(StageSpec):
    config: dict[str, Any] | None = Field(None, description="a mergekit config (model names: see above)")
    config_file: str | None = Field(None, description="or a mergekit config YAML, relative to the recipe")
    options: dict[str, Any] = Field(default_factory=dict, description="mergekit MergeOptions fields")

    @model_validator(mode="after")
    def _one_config(self) -> MergeStage:
        if (self.config is None) == (self.config_file is None):
            raise ValueError("give exactly one of `config:` (a mergekit config) or `config_file:` (its YAML)")
        return self


def build_merge(pipe, spec: MergeStage) -> None:
    raw = spec.config if spec.config is not None else load_merge_config(Path(pipe.base) / spec.config_file)
    cfg = copy.deepcopy(raw)
    deps: list[str] = []
    external: list[str] = []  # models no stage produces: their fingerprints go into the key
    for _, holder, key in model_slots(cfg):
        model, dep = pipe.start_model(holder[key])
        holder[key] = model
        deps += [d for d in dep if d not in deps]
        if not dep and model not in external:
            external.append(model)
    name = f"{pipe.recipe.name}-{spec.stage_name}"
    out = pipe.workdir / slug(spec.stage_name) / "model"

    def run(resume: bool) -> None:  # a killed merge left nothing registered: always a full merge
        from trainers.merge.run import run_merge  # torch + mergekit, only when the stage runs

        run_merge(cfg, name=name, out_dir=out, store=pipe.store, options=spec.options)

    pipe.add(Stage(
        name=spec.stage_name, deps=deps,
        spec={"config": cfg, "options": spec.options, "models": lambda: {m: pipe.model_fp(m) for m in external}},
        run=run, outputs=lambda: pipe.candidate_outputs(name),
        describe=f"{cfg.get('merge_method')} merge of {len(model_slots(cfg))} model references -> {name}"))
    pipe.add_candidate(spec.stage_name, name)


register_stage_kind(StageKind("merge", MergeStage, build_merge, "harness merge: a mergekit config -> a candidate",
                               needs_fusion_data=False))
