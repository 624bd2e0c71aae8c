"""The whole-loop recipe (`harness pipeline RECIPE.yaml`), typed and validated on load.

One file names every stage of implicit model fusion: optional specialist sources trained
first, the fusion data (trainers/fusion), SFT of the target, a preference stage (WRPO or the
DPO family), evaluation of sources / target / candidates, the leaderboard and the gate. The
`fusion:` section (data -> SFT -> preference) is optional: a recipe of specialists and
`stages:` kinds that read no fusion data (a merge: FuseO1's sources -> SCE -> evaluate) runs
without it, and then its specialists are the sources that are evaluated. The
sections reuse the existing recipe formats (a fusion recipe, a trainer config) so nothing has
two spellings; the pipeline only fills in what links the stages (models, data paths, names).

Everything is validated before the first stage starts: a misspelt key in the gate section
must not surface after an hour of sampling and training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import UsageError
from harness.yamlio import load_yaml_mapping
from trainers.objectives import OBJECTIVES
from trainers.pipeline.stages import STAGE_KINDS, StageSpec, TrainStage, parse_stage

# the `preference` section trains from the SFT candidate on pairs (dpo.jsonl) or WRPO quadruples
PREFERENCE_FORMATS = ("pref", "wrpo")
PREFERENCE_METHODS = tuple(sorted((m for m, o in OBJECTIVES.items() if o.row_format in PREFERENCE_FORMATS),
                                  key=lambda m: PREFERENCE_FORMATS.index(OBJECTIVES[m].row_format) * -1))
BUILTIN_STAGES = ("data", "sft", "data-target", "preference", "leaderboard", "gate")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpecialistData(_Strict):
    """SFT rows for a specialist source: GSM8K train gold solutions (in the evaluation's answer
    format, trainers/gsm8k_data.py) or a JSONL file of SFT rows."""

    builtin: Literal["gsm8k-gold"] | None = None
    offset: int = Field(0, ge=0, description="first GSM8K train row")
    rows: int = Field(256, ge=1, description="number of GSM8K train rows")
    path: str | None = Field(None, description="JSONL of SFT rows (relative to the recipe)")

    @model_validator(mode="after")
    def _one(self) -> SpecialistData:
        if bool(self.builtin) == bool(self.path):
            raise ValueError("give exactly one of `builtin: gsm8k-gold` or `path: rows.jsonl`")
        return self


class SpecialistSpec(_Strict):
    """A source made by the SFT trainer before fusion (e.g. a math specialist of the target)."""

    name: str = Field(description="candidate name; fusion sources refer to it as their `model`")
    model: str | None = Field(None, description="model to fine-tune (default: the pipeline's target)")
    data: SpecialistData
    train: dict[str, Any] = Field(default_factory=dict, description="trainer config keys (method sft)")


class EvaluateSpec(_Strict):
    suite: str = Field(description="suite every model is evaluated on (suites/*.yaml or a path)")
    benchmarks: list[str] | None = Field(None, description="subset of the suite's benchmarks")
    limit: int | None = Field(None, ge=1, description="items per benchmark (the first N)")
    backend: str = "auto"
    max_tokens: int | None = Field(None, ge=1)
    args: list[str] = Field(default_factory=list, description="extra `harness run suite` arguments")


class LeaderboardSpec(_Strict):
    enabled: bool = True
    title: str | None = None


class GateSpec(_Strict):
    enabled: bool = True
    candidate: str | None = Field(
        None, description="which candidate is gated against the target: sft, preference or a `stages` name "
                          "(default: the last trained)")
    benchmarks: list[str] | None = None
    alpha: float = Field(0.05, gt=0, lt=1)
    n_boot: int = Field(10_000, ge=1000)
    enforce: bool = Field(False, description="exit 1 when the gate fails (default: report only)")


class PipelineRecipe(_Strict):
    name: str = Field(description="names the candidates (<name>-sft, <name>-<method>) and the work dir")
    workdir: str | None = Field(None, description="default .harness/pipeline/<name> (relative to the cwd)")
    data_dir: str | None = Field(None, description="benchmark data dir (default --data-dir / $HARNESS_DATA_DIR)")
    target: str = Field(description="the target model (--model spec)")
    specialists: list[SpecialistSpec] = Field(default_factory=list)
    fusion: dict[str, Any] | None = Field(None, description="a fusion recipe (docs/fusion.md) without name/"
                                          "output_dir/data_dir; its `target` gives only backend / n for WRPO "
                                          "sampling. Without it: no data / sft / preference stages")
    sft: dict[str, Any] | None = Field(None, description="trainer config keys for the target's SFT on the fusion "
                                                         "data (default: the trainer's defaults)")
    preference: dict[str, Any] | None = Field(None, description="trainer config keys incl. method: wrpo | dpo ...")
    stages: list[dict[str, Any]] = Field(default_factory=list, description="more stages, each {kind: ..., ...} "
                                         "(trainers/pipeline/stages.py: fuse_sft, fuse_po, infifpo, ...)")
    evaluate: EvaluateSpec
    leaderboard: LeaderboardSpec = LeaderboardSpec()
    gate: GateSpec = GateSpec()

    @model_validator(mode="before")
    @classmethod
    def _sft_follows_fusion(cls, data: Any) -> Any:
        """With fusion data the target's SFT always runs (`sft:` only tunes it); without, no SFT."""
        if isinstance(data, dict) and data.get("fusion") is not None and data.get("sft") is None:
            return {**data, "sft": {}}
        return data

    @model_validator(mode="after")
    def _check(self) -> PipelineRecipe:
        names = [s.name for s in self.specialists]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"specialist names must be unique; repeated: {', '.join(dupes)}")
        self._check_fusion_optional()
        for key in ("name", "output_dir", "data_dir"):
            if key in (self.fusion or {}):
                raise ValueError(f"fusion.{key} is set by the pipeline (work dir, data dir); remove it")
        if self.preference is not None and self.preference.get("method") not in PREFERENCE_METHODS:
            raise ValueError(f"preference.method must be one of {', '.join(PREFERENCE_METHODS)}, "
                             f"got {self.preference.get('method')!r}")
        if self.gate.candidate == "preference" and self.preference is None:
            raise ValueError("gate.candidate: preference needs a `preference` section")
        specs = self.stage_specs
        stage_names = [s.stage_name for s in specs]
        for n in stage_names:
            if n in BUILTIN_STAGES or stage_names.count(n) > 1 or n.startswith(("eval:", "specialist:")):
                raise ValueError(f"stages: the name {n!r} is taken (built-in stages: {', '.join(BUILTIN_STAGES)}; "
                                 "stage names must be unique); give the entry another `name:`")
        if self.gate.candidate not in (None, *(["sft"] if self.fusion is not None else []), "preference",
                                       *stage_names):
            raise ValueError(f"gate.candidate must be sft, preference or a `stages` name "
                             f"({', '.join(stage_names) or 'none'}), got {self.gate.candidate!r}")
        return self

    def _check_fusion_optional(self) -> None:
        """Without `fusion:` only the stages that read no fusion data may run, and some must."""
        if self.fusion is not None:
            return
        how = "add a `fusion:` section (docs/fusion.md) or remove"
        for key in ("sft", "preference"):
            if getattr(self, key) is not None:
                raise ValueError(f"`{key}:` trains on the fusion data, and the recipe has no `fusion:` section: "
                                 f"{how} `{key}:`")
        for i, spec in enumerate(self.stage_specs):
            if STAGE_KINDS[spec.kind].needs_fusion_data:
                raise ValueError(f"stages[{i}] (kind {spec.kind}) trains on the fusion data, and the recipe has no "
                                 f"`fusion:` section: {how} the stage (kinds that need none: "
                                 f"{', '.join(sorted(k for k, v in STAGE_KINDS.items() if not v.needs_fusion_data))})")
        if not self.stages:
            raise ValueError("the recipe has nothing to fuse: give a `fusion:` section (data -> sft -> preference) "
                             "or `stages:` entries that need no fusion data, e.g. `{kind: merge, config: ...}` "
                             "(see trainers/recipes/fuseo1_cpu.yaml)")

    @property
    def stage_specs(self) -> list[StageSpec]:
        out = []
        for i, entry in enumerate(self.stages):
            try:
                out.append(parse_stage(entry, f"stages[{i}]"))
            except ValidationError as e:
                msgs = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
                raise ValueError(f"stages[{i}] ({entry.get('kind')}): {msgs}") from None
        return out

    @property
    def method(self) -> str | None:
        return self.preference["method"] if self.preference else None

    @property
    def needs_target_samples(self) -> bool:
        """WRPO's y_wt / y_l are the target-SFT model's own samples: a second data phase."""
        return self.method is not None and OBJECTIVES[self.method].row_format == "wrpo"


def load_pipeline(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[PipelineRecipe, Path]:
    """The validated recipe and the directory its relative paths resolve against. The fusion
    section and every trainer section are validated here too, with their own schemas."""
    from trainers.fusion.config import FusionRecipe, _check_keys, validation_message

    p = Path(path)
    raw = load_yaml_mapping(p, "pipeline recipe", "see trainers/recipes/pipeline_*.yaml for examples")
    raw = {**raw, **(overrides or {})}
    _check_keys(raw, PipelineRecipe, "")
    try:
        recipe = PipelineRecipe(**raw)
    except ValidationError as e:
        raise UsageError(f"invalid pipeline recipe {str(path)!r}: {validation_message(e)}") from e
    base = p.resolve().parent
    if recipe.fusion is not None:
        fusion = fusion_recipe(recipe, output_dir="<workdir>/data", target_model="<target-sft>")
        _check_keys(fusion, FusionRecipe, "fusion.")
        try:
            FusionRecipe(**fusion)
        except ValidationError as e:
            raise UsageError(f"invalid pipeline recipe {str(path)!r}, fusion section: {validation_message(e)}") from e
    _check_evaluation(recipe, base, path)
    for where, cfg, method in _trainer_sections(recipe):
        trainer_config(cfg, method, base, model="<model>", data="<data>", output_dir="<out>", name="<name>",
                       where=f"{path}: {where}")
    return recipe, base


def suite_path(recipe: PipelineRecipe, base: Path) -> str:
    """evaluate.suite as `harness run suite` takes it: a suite name, or a YAML file relative
    to the recipe like every other path in it."""
    suite = recipe.evaluate.suite
    if suite.endswith((".yaml", ".yml")) and not Path(suite).is_absolute() and (base / suite).is_file():
        return str(base / suite)
    return suite


def _check_evaluation(recipe: PipelineRecipe, base: Path, path: str | Path) -> None:
    """The suite and its benchmark subsets, checked now: a typo found at the eval stage
    would cost the whole training run before it."""
    from harness.errors import did_you_mean
    from harness.suites_config import load_suite

    suite = suite_path(recipe, base)
    try:
        names = [b.name for b in load_suite(suite).benchmarks]
    except UsageError as e:
        raise UsageError(f"{path}: evaluate.suite: {e}") from None
    evaluated = recipe.evaluate.benchmarks or names
    for where, wanted, valid, of in (("evaluate.benchmarks", recipe.evaluate.benchmarks, names, f"suite {suite!r}"),
                                     ("gate.benchmarks", recipe.gate.benchmarks, evaluated, "evaluate.benchmarks")):
        for b in wanted or []:
            if b not in valid:
                raise UsageError(f"{path}: {where}: {did_you_mean('benchmark', b, valid)} (from {of})")


def _trainer_sections(recipe: PipelineRecipe) -> list[tuple[str, dict[str, Any], str]]:
    out = [(f"specialists[{i}].train", s.train, "sft") for i, s in enumerate(recipe.specialists)]
    if recipe.sft is not None:
        out.append(("sft", recipe.sft, "sft"))
    if recipe.preference is not None:
        out.append(("preference", recipe.preference, recipe.preference["method"]))
    out += [(f"stages[{s.stage_name}].train", s.train, s.kind) for s in recipe.stage_specs if isinstance(s, TrainStage)]
    return out


def fusion_recipe(recipe: PipelineRecipe, output_dir: str, target_model: str | None,
                  data_dir: str | None = None, base: Path | None = None) -> dict[str, Any]:
    """The fusion recipe for one data phase: phase 1 has no target (SFT / DPO rows), phase 2
    samples the target-SFT model for WRPO (the sources' answers come back from the store)."""
    assert recipe.fusion is not None, "only recipes with a `fusion:` section have data phases"
    raw = {k: v for k, v in recipe.fusion.items() if k != "target"}
    raw.update(name=f"{recipe.name}-data", output_dir=output_dir)
    if base is not None:  # the phase's recipe is written into the work dir: pin pool files to ours
        raw["pools"] = [{**p, "path": str(base / p["path"])} if p.get("path") and not Path(p["path"]).is_absolute()
                        else p for p in raw.get("pools", [])]
    if data_dir:
        raw["data_dir"] = data_dir
    if target_model is not None:
        raw["target"] = {**(recipe.fusion.get("target") or {}), "model": target_model}
    return raw


def trainer_config(section: dict[str, Any], method: str, base: Path, *, model: str, data: str, output_dir: str,
                   name: str, where: str = "") -> dict[str, Any]:
    """A trainer section resolved to a complete config: `config: FILE` (relative to the recipe)
    is read first, the section's keys override it, and the pipeline's links override both."""
    from trainers.config import TrainConfig, load_config

    section = dict(section)
    file = section.pop("config", None)
    path = None
    if file is not None:
        path = Path(file) if Path(file).is_absolute() else base / file
    section.pop("method", None)
    links = {"model": model, "data": data, "output_dir": output_dir, "name": name}
    for k in links:
        if k in section and k != "model":
            raise UsageError(f"{where}: `{k}` is set by the pipeline; remove it")
    if "model" in section:  # an explicit start model for a specialist is allowed, nowhere else
        raise UsageError(f"{where}: `model` is set by the pipeline (the target, or the SFT candidate); remove it")
    try:
        cfg = load_config(str(path) if path else None, method, {**section, **links})
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None
    assert isinstance(cfg, TrainConfig)
    return cfg.model_dump(mode="json")
