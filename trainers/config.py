"""Typed training configuration (DESIGN.md §8.4): YAML is data, validated on load.

Unknown keys are errors that name the key and the valid ones, because a misspelt
`learning_rte` silently falling back to a default wastes a training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import UsageError, did_you_mean
from harness.yamlio import load_yaml_mapping
from trainers.objectives import OBJECTIVES, REFERENCE, Objective, Params, get_objective

# Top-level config keys that are also objective hyper-parameters (recipes predate the registry):
# config key -> the objective's parameter name. Defaults live in the objective's Params (cited).
SHARED_PARAMS = {"beta": "beta", "label_smoothing": "label_smoothing", "alpha_max": "alpha_max",
                 "alpha_schedule": "alpha_schedule", "simpo_gamma_beta_ratio": "gamma_beta_ratio"}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(description="a training objective (trainers/objectives.py)")
    model: str = Field(description="policy start: alias, store candidate, local dir or hub id")
    ref_model: str | None = Field(None, description="reference model (default: `model`, i.e. the SFT checkpoint)")
    data: str = Field(description="JSONL file, or hf:<dataset>[:<split>]")
    data_limit: int | None = Field(None, ge=1, description="use only the first N rows")
    output_dir: str
    name: str | None = Field(None, description="candidate name in the store (default: output dir name)")

    max_length: int = Field(1024, ge=8, description="prompt + response tokens; responses are cut at the end")
    max_prompt_length: int = Field(512, ge=1, description="rows whose prompt is longer are dropped")

    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(2, ge=1, description="rows per micro-batch per device")
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 42

    beta: float | None = Field(None, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    alpha_max: float = Field(0.1, ge=0, le=1, description="WRPO: final weight of the source response")
    alpha_schedule: Literal["linear", "constant"] = "linear"
    simpo_gamma_beta_ratio: float = 0.5
    objective: dict[str, Any] = Field(default_factory=dict, description="the objective's own hyper-parameters "
                                      "(trainers/objectives.py, e.g. fuse_po base_loss, infifpo sources)")

    precompute_ref: bool = Field(True, description="reference log-probs once per dataset (cached beside the data)")
    ref_batch_size: int = Field(8, ge=1)
    bf16: Literal["auto", True, False] = "auto"
    gradient_checkpointing: bool = False
    logging_steps: int = Field(1, ge=1)
    save_steps: int | None = Field(None, ge=1, description="checkpoint every N optimizer steps (default: end only)")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON (trainers/deepspeed/zero2.json, zero3.json)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.method not in OBJECTIVES:
            raise ValueError(str(_unknown(self.method)))
        try:
            hyper = self.hyper
        except ValidationError as e:
            msgs = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ValueError(f"objective options for {self.method}: {msgs}") from None
        if self.ref_model and REFERENCE not in self.objective_spec.needs(hyper):
            raise ValueError(f"ref_model is meaningless for method {self.method}; remove it")
        return self

    @property
    def objective_spec(self) -> Objective:
        return get_objective(self.method)

    @property
    def hyper(self) -> Params:
        """The objective's typed hyper-parameters: its cited defaults, the shared top-level keys
        (beta, label_smoothing, ...) where the objective has them, then `objective:` entries."""
        obj = self.objective_spec
        fields = obj.params.model_fields
        shared = {name: getattr(self, key) for key, name in SHARED_PARAMS.items()
                  if name in fields and getattr(self, key) is not None}
        return obj.hyper({**shared, **self.objective})

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else self.objective_spec.learning_rate

    @property
    def candidate_name(self) -> str:
        return self.name or Path(self.output_dir).name


def load_config(path: str | None, method: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Read a recipe YAML, apply CLI overrides (KEY=VALUE, YAML-typed), validate."""
    raw: dict[str, Any] = {}
    if path:
        raw = load_yaml_mapping(path, "config", "recipes live in trainers/recipes/*.yaml")
    raw = {**raw, **overrides}
    if method is not None:
        if raw.get("method") not in (None, method):
            raise UsageError(f"config {path!r} is for method {raw['method']!r} but you ran `harness train {method}`; "
                             f"run `harness train {raw['method']}` or set method: {method}")
        raw["method"] = method
    valid = list(TrainConfig.model_fields)
    for key in raw:
        if key not in valid:
            raise did_you_mean("config key", key, valid)
    if raw.get("method") not in OBJECTIVES:
        raise _unknown(raw.get("method"))
    _check_objective_options(raw, path)
    try:
        return TrainConfig(**raw)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']} (got {err.get('input')!r})"
                         for err in e.errors())
        raise UsageError(f"invalid training config {path or ''}: {msgs}") from e


def _unknown(method: Any) -> UsageError:
    return did_you_mean("training method", str(method), list(OBJECTIVES))


def _check_objective_options(raw: dict[str, Any], path: str | None) -> None:
    """`objective:` keys checked against the objective's Params now, with did-you-mean."""
    obj = get_objective(raw["method"])
    options = raw.get("objective") or {}
    if not isinstance(options, dict):
        raise UsageError(f"config {path or ''}: `objective` must be a mapping of {obj.name}'s hyper-parameters "
                         f"({', '.join(obj.params.model_fields) or 'it has none'})")
    for key in options:
        if key not in obj.params.model_fields:
            raise did_you_mean(f"{obj.name} objective option", key, list(obj.params.model_fields))
