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
import json
from pathlib import Path
from typing import Any

import yaml
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
        # `harness merge` in a subprocess, like every other stage: the merge's memory (GiBs of
        # tensors) goes back to the OS when it ends instead of staying in the pipeline process
        # for the rest of the run, and the stage is the command a user would type.
        path = out.parent / "merge.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# written by `harness pipeline`: the stage's mergekit config, recipe names mapped\n"
                        + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        options = [a for k, v in spec.options.items() for a in ("--option", f"{k}={json.dumps(v)}")]
        pipe._harness("merge", "--config", str(path), "--name", name, "--output-dir", str(out), *options)

    pipe.add(Stage(
        name=spec.stage_name, deps=deps,
        spec={"config": cfg, "options": spec.options, "models": lambda: {m: pipe.model_fp(m) for m in external}},
        run=run, outputs=lambda: pipe.candidate_outputs(name),
        describe=f"{cfg.get('merge_method')} merge of {len(model_slots(cfg))} model references -> {name}"))
    pipe.add_candidate(spec.stage_name, name)


register_stage_kind(StageKind("merge", MergeStage, build_merge, "harness merge: a mergekit config -> a candidate",
                               needs_fusion_data=False))
