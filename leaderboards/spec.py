"""Leaderboard definitions: typed, validated on load (DESIGN.md §8.4). YAML is data:

    name: fusechat3-llama
    title: FuseChat-3.0, Llama-3.1-8B target      # optional
    suite: fusechat3                              # runs of this suite are used
    benchmarks: [gsm8k, math500]                  # optional: subset and column order
    models:
      - model: google/gemma-2-27b-it              # a model name in the store
        role: source                              # source | target | candidate | baseline
      - model: meta-llama/Llama-3.1-8B-Instruct
        role: target
      - model: my-wrpo-candidate
        role: candidate
        run: 20261122-031500-ab12                 # optional: this run, not the latest finished one
        label: WRPO beta=0.01                     # optional display name (must be unique)
        target: meta-llama/Llama-3.1-8B-Instruct  # optional when there is one target
      - results: results/baseline-run/            # or a `harness run --out` dir instead of the store
        role: baseline
    compare:                                      # optional: pairs for "where they differ" pages
                                                  # (default: each candidate vs its target and the best source)
      - [my-wrpo-candidate, google/gemma-2-27b-it]
    fusion_stats: [data/fusion/stats.json]          # optional: `harness fuse data` statistics shown
                                                  # beside the scores (a stats.json or its directory)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import UsageError, did_you_mean
from harness.yamlio import load_yaml_mapping

HERE = Path(__file__).resolve().parent
Role = Literal["source", "target", "candidate", "baseline"]


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    role: Role
    run: str | None = None
    results: str | None = None
    label: str | None = None
    target: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if self.model is None and self.run is None and self.results is None:
            raise ValueError("each model entry needs `model`, `run` or `results`")
        if self.results is not None and self.run is not None:
            raise ValueError("give either `run` (in the store) or `results` (a directory), not both")
        if self.target is not None and self.role != "candidate":
            raise ValueError(f"`target` only applies to candidates, not a {self.role}")
        return self

    @property
    def key(self) -> str:
        """The row's name: label, else model, else the run or results it came from."""
        return self.label or self.model or self.run or self.results or "?"


class LeaderboardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    title: str | None = None
    suite: str | None = None
    description: str | None = None
    benchmarks: list[str] | None = None
    models: list[ModelEntry] = Field(min_length=1)
    compare: list[tuple[str, str]] = Field(default_factory=list)
    fusion_stats: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> LeaderboardSpec:
        keys = [m.key for m in self.models]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"row name(s) {', '.join(dup)} appear twice; give each entry a distinct `label`")
        targets = [m.key for m in self.models if m.role == "target"]
        for m in self.models:
            if m.role != "candidate":
                continue
            if m.target is not None:
                if m.target not in targets:
                    raise ValueError(f"candidate {m.key!r} names target {m.target!r}, but the targets are: "
                                     f"{', '.join(targets) or 'none'}")
            elif len(targets) > 1:
                raise ValueError(f"candidate {m.key!r} must say which target it has (`target:`): "
                                 f"there are several ({', '.join(targets)})")
        for a, b in self.compare:
            for k in (a, b):
                if k not in keys:
                    raise ValueError(str(did_you_mean("model in compare", k, keys)))
        return self

    def target_of(self, entry: ModelEntry) -> str | None:
        if entry.target:
            return entry.target
        targets = [m.key for m in self.models if m.role == "target"]
        return targets[0] if targets else None

    def compare_pairs(self, best_source: str | None = None) -> list[tuple[str, str]]:
        """Explicit pairs, else each candidate against its target and the best source (the
        caller knows which source is best; one pair per source would multiply the pages)."""
        if self.compare:
            return list(self.compare)
        pairs = []
        for m in self.models:
            if m.role == "candidate":
                t = self.target_of(m)
                pairs += [(t, m.key)] if t else []
                pairs += [(best_source, m.key)] if best_source else []
        return pairs


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def load_spec(name_or_path: str) -> LeaderboardSpec:
    """A definition by name (leaderboards/NAME.yaml) or by path; errors name the file and field."""
    p = Path(name_or_path)
    if not (p.suffix in (".yaml", ".yml") or p.exists()):
        p = HERE / f"{name_or_path}.yaml"
        if not p.exists():
            raise did_you_mean("leaderboard", name_or_path, available())
    data = load_yaml_mapping(p, "leaderboard file", "definitions map name, suite and models")
    data.setdefault("name", p.stem)
    try:
        spec = LeaderboardSpec.model_validate(data)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()]
        raise UsageError(f"{p}: invalid leaderboard definition:\n" + "\n".join(lines)) from None
    base = p.parent
    for m in spec.models:  # relative `results:` paths are relative to the YAML file
        if m.results and not Path(m.results).is_absolute():
            m.results = str((base / m.results).resolve()) if (base / m.results).exists() else m.results
    # fusion_stats always resolve against the YAML file, so a missing one is named by the
    # path that was actually looked for
    spec.fusion_stats = [f if Path(f).expanduser().is_absolute() else str((base / f).resolve())
                         for f in spec.fusion_stats]
    return spec
