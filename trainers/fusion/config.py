"""The fusion-data recipe (`harness fuse data --recipe R.yaml`), typed and validated on load.

Unknown keys anywhere in the recipe are errors naming the key and the valid ones: a misspelt
`temprature` silently falling back to a default would waste hours of sampling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import UsageError, did_you_mean
from harness.yamlio import load_yaml_mapping

# Built-in pools: name -> what they read from the data dir.
BUILTIN_POOLS = ("gsm8k-train", "mbpp")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RaySpec(_Strict):
    """Where and how wide the Ray sampling stage runs (trainers/fusion/ray_sampling.py)."""

    address: str | None = Field(None, description=(
        "Ray cluster to attach to (`auto`, `ray://head:10001`); null: $RAY_ADDRESS, else start a local cluster"))
    actors: int = Field(2, ge=1, description="engines per model: one backend (e.g. a vLLM engine) per actor")
    num_cpus_per_actor: float = Field(1, ge=0)
    num_gpus_per_actor: float = Field(0, ge=0, description=(
        "GPUs per engine: tensor_parallel_size x pipeline_parallel_size for vLLM sources"))
    chunk: int = Field(16, ge=1, description=(
        "requests per task: the most a dead actor loses, and the batch one engine sees at a time"))


class SamplingSpec(_Strict):
    """FuseChat-3.0 sampled 5 answers per source (8 for code) at T 0.8, top_p 0.95."""

    n: int = Field(5, ge=1, description="answers per prompt per source")
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(2048, ge=1)
    seed: int = 0
    # How sampling runs, not what it produces: cache keys and answers are the same either way.
    executor: Literal["local", "ray"] = Field("local", description=(
        "local: one engine in this process (vLLM's own tensor/data parallelism via backend_options); "
        "ray: `ray.actors` engines on a Ray cluster, answers committed to the store by this process"))
    ray: RaySpec = RaySpec()

    @model_validator(mode="after")
    def _ray_only_with_ray(self) -> SamplingSpec:
        if "ray" in self.model_fields_set and self.executor != "ray":
            raise ValueError("sampling.ray is set but sampling.executor is 'local', so it would be ignored; "
                             "add `executor: ray` to the sampling section (or remove `ray`)")
        return self


class PoolSpec(_Strict):
    """One prompt pool. Exactly one of `builtin`, `path`, `hf`."""

    name: str
    kind: Literal["math", "code", "instruction"] = Field(
        description="how answers are scored: math = answer check, code = tests, instruction = reward model/judge")
    builtin: Literal["gsm8k-train", "mbpp"] | None = None
    path: str | None = Field(None, description="JSONL with a prompt/question/text field (relative to the recipe)")
    hf: str | None = Field(None, description="hub dataset <name>[:<split>] (online users)")
    field: str | None = Field(None, description="prompt field (default: the first of prompt, question, text)")
    answer_field: str | None = Field(None, description="math pools from files: the gold-answer field")
    offset: int = Field(0, ge=0, description="skip the first N rows")
    limit: int | None = Field(None, ge=1, description="use at most N rows (after offset)")
    n: int | None = Field(None, ge=1, description="answers per prompt per source for this pool (default sampling.n)")

    @model_validator(mode="after")
    def _one_source(self) -> PoolSpec:
        given = [k for k in ("builtin", "path", "hf") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"pool {self.name!r} needs exactly one of builtin, path, hf (got {given or 'none'})")
        if self.builtin == "gsm8k-train" and self.kind != "math":
            raise ValueError(f"pool {self.name!r}: builtin gsm8k-train is a math pool; set kind: math")
        if self.builtin == "mbpp" and self.kind != "code":
            raise ValueError(f"pool {self.name!r}: builtin mbpp is a code pool; set kind: code")
        if self.kind == "code" and not self.builtin:
            raise ValueError(f"pool {self.name!r}: code pools need tests; only builtin: mbpp is supported")
        if self.kind == "math" and not self.builtin and not self.answer_field:
            raise ValueError(f"pool {self.name!r}: a math pool from a file needs answer_field (the gold answer)")
        return self


class SourceSpec(_Strict):
    name: str = Field(description="label used in the data and statistics")
    model: str = Field(description="--model spec: alias, store candidate, local dir, hub id, openai:...")
    backend: str = "auto"
    backend_options: dict[str, Any] = Field(default_factory=dict)


class ScoringSpec(_Strict):
    """Instruction pools need exactly one ranker; math and code pools use their verifiers."""

    reward_model: str | None = Field(None, description="sequence-classification reward model (transformers)")
    reward_batch_size: int = Field(4, ge=1)
    judge: str | None = Field(None, description="--model spec of a judge that rates answers 1-10")
    judge_backend: str = "auto"
    code_timeout_s: float = Field(3.0, gt=0)


class SelectionSpec(_Strict):
    gap_min: float = Field(0.01, ge=0, description="FuseChat-3.0 DPO reward-gap window, lower end")
    gap_max: float = Field(0.1, gt=0, description="upper end")
    gap_on_verified: bool = Field(False, description=(
        "apply the gap window to math/code pairs too (their 0/1 verifier gap is always 1, so by default "
        "the window applies to reward-model-scored pools only)"))
    wrpo_without_correct_target: Literal["drop", "y_ws"] = Field("drop", description=(
        "verified pools, a prompt where the target has no correct sample of its own: drop it (WRPO as "
        "published), or use y_ws as y_wt too, which makes that row's WRPO term DPO(y_ws > y_l), the alpha = 1 "
        "end of WRPO's mix; for weak targets that rarely solve the pool"))

    @model_validator(mode="after")
    def _window(self) -> SelectionSpec:
        if self.gap_min > self.gap_max:
            raise ValueError(f"gap_min {self.gap_min} is above gap_max {self.gap_max}")
        return self


class TargetSpec(_Strict):
    """The target-SFT model whose own samples give WRPO's y_wt and y_l."""

    model: str
    backend: str = "auto"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    n: int | None = Field(None, ge=2, description="samples per prompt (default sampling.n)")


class ContaminationSpec(_Strict):
    n: int = Field(13, ge=1, description="n-gram length in words")
    drop: bool = Field(True, description="drop rows that overlap a benchmark (else only report them)")
    benchmarks: list[str] | None = Field(None, description="benchmarks to check (default: every registered one)")
    hub: bool = Field(False, description="download benchmarks missing from the data dir (default: skip them)")


class FusionRecipe(_Strict):
    name: str = "fusion"
    output_dir: str = Field(description="where the data files are written (relative to the working directory)")
    data_dir: str | None = Field(None, description="benchmark data dir (default: --data-dir / $HARNESS_DATA_DIR)")
    pools: list[PoolSpec] = Field(min_length=1)
    sources: list[SourceSpec] = Field(min_length=1)
    target: TargetSpec | None = Field(None, description="target-SFT model for WRPO quadruples (none: no WRPO)")
    sampling: SamplingSpec = SamplingSpec()
    scoring: ScoringSpec = ScoringSpec()
    selection: SelectionSpec = SelectionSpec()
    contamination: ContaminationSpec = ContaminationSpec()

    @model_validator(mode="after")
    def _check(self) -> FusionRecipe:
        for what, names in (("pool", [p.name for p in self.pools]), ("source", [s.name for s in self.sources])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")
        if "target" in [s.name for s in self.sources]:  # stats.json and answers.jsonl key the target so
            raise ValueError("source name 'target' is reserved for the target-SFT model's samples; rename the source")
        if any(p.kind == "instruction" for p in self.pools):
            s = self.scoring
            if bool(s.reward_model) == bool(s.judge):
                raise ValueError("instruction pools need exactly one of scoring.reward_model or scoring.judge "
                                 f"(got reward_model={s.reward_model!r}, judge={s.judge!r})")
        return self


def _check_keys(raw: Any, model: type[BaseModel], where: str) -> None:
    """Unknown keys at any depth -> 'did you mean', before pydantic's terser message."""
    if not isinstance(raw, dict):
        return
    valid = list(model.model_fields)
    for key, value in raw.items():
        if key not in valid:
            err = did_you_mean("recipe key", f"{where}{key}", [f"{where}{v}" for v in valid])
            raise UsageError(str(err))
        ann = model.model_fields[key].annotation
        sub = _submodel(ann)
        if sub is None:
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_keys(item, sub, f"{where}{key}[{i}].")
        else:
            _check_keys(value, sub, f"{where}{key}.")


def _submodel(ann: Any) -> type[BaseModel] | None:
    import typing

    for a in (ann, *typing.get_args(ann)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        for b in typing.get_args(a):
            if isinstance(b, type) and issubclass(b, BaseModel):
                return b
    return None


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[FusionRecipe, Path]:
    """The validated recipe and the directory relative paths in it are resolved against."""
    p = Path(path)
    raw = load_yaml_mapping(p, "recipe", "see trainers/recipes/fusion_*.yaml for examples")
    raw = {**raw, **(overrides or {})}
    _check_keys(raw, FusionRecipe, "")
    try:
        recipe = FusionRecipe(**raw)
    except ValidationError as e:
        raise UsageError(f"invalid fusion recipe {str(path)!r}: {validation_message(e)}") from e
    return recipe, p.resolve().parent


def validation_message(e: ValidationError) -> str:
    """pydantic's errors as `dotted.key: message (got value)`, one clause each."""
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'recipe'}: {err['msg']}"
                     + (f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else "")
                     for err in e.errors())
