"""Suite files: typed, validated on load, errors point at file:line (DESIGN.md §8.4).

A suite is data, never logic:

    name: math
    description: ...
    defaults: {max_tokens: 2048}          # generation defaults for every benchmark
    benchmarks:
      - gsm8k                             # a bare name takes the benchmark's defaults
      - name: aime24
        n: 8
        temperature: 0.6
        limit: 10                         # optional per-benchmark item limit
        options: {...}                    # benchmark-specific settings
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import UsageError, did_you_mean
from harness.yamlio import yaml_error

SUITE_ENV = "HARNESS_SUITES_DIR"


class GenerationOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: list[str] | None = None


class BenchmarkEntry(GenerationOverrides):
    name: str
    limit: int | None = Field(None, ge=1)
    # ids: run exactly these items, in this order (a pinned slice: e.g. the demo's items, or a
    # regression set); `limit` then does not apply. Unknown ids are an error naming them.
    ids: list[str] | None = Field(None, min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    # optional: when its data is missing the run skips it with a warning (recorded in results)
    # instead of failing. For smoke suites whose data is not available offline (LiveCodeBench).
    optional: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from harness.benchmarks import BENCHMARKS

        if v not in BENCHMARKS:
            raise ValueError(str(did_you_mean("benchmark", v, BENCHMARKS.names())))
        return v


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    defaults: GenerationOverrides = Field(default_factory=GenerationOverrides)
    judge: str | None = None  # a --model spec used by judged benchmarks
    benchmarks: list[BenchmarkEntry]

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _bare_names(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": b} if isinstance(b, str) else b for b in v]
        return v


def suites_dir() -> Path:
    """suites/ in a source checkout; harness/suites inside an installed wheel."""
    env = os.environ.get(SUITE_ENV)
    if env:
        return Path(env)
    import harness.suites  # mapped from the repo's suites/ by pyproject

    return Path(harness.suites.__file__).parent


def available_suites() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.yaml"))


def _line_of(node: yaml.Node, loc: tuple) -> int | None:
    """1-based line of the YAML node at a pydantic error location, walking the composed tree."""
    line = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == key), None)
            if nxt is None:
                nxt = next((k for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def load_suite(name_or_path: str) -> SuiteSpec:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = suites_dir() / f"{name_or_path}.yaml"
        if not path.exists():
            raise did_you_mean("suite", name_or_path, available_suites())
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise yaml_error(path, e, "suite") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}:1: a suite must be a mapping with 'name' and 'benchmarks'")
    data.setdefault("name", path.stem)
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            # pydantic reports the bare-name list entries with the field name appended
            line = _line_of(node, loc) if node is not None else None
            key = ".".join(str(p) for p in loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key; allowed keys: " + ", ".join(
                    _allowed_keys(loc[:-1]))
            lines.append(f"{path}:{line}: {key}: {msg}")
        raise UsageError("invalid suite\n  " + "\n  ".join(lines)) from None
    _check_options(spec, path, node)
    return spec


def _check_options(spec: SuiteSpec, path: Path, node: yaml.Node | None) -> None:
    """Each entry's `options` against its benchmark's typed Options (did-you-mean at file:line)."""
    from harness.benchmarks import BENCHMARKS
    from harness.benchmarks.base import validate_options

    for i, entry in enumerate(spec.benchmarks):
        cls = BENCHMARKS.resolve(entry.name)
        try:
            validate_options(entry.name, cls.Options, entry.options)
        except UsageError as e:
            bad = next((k for k in entry.options if k not in cls.Options.model_fields), None)
            loc = ("benchmarks", i, "options") + ((bad,) if bad else ())
            line = _line_of(node, loc) if node is not None else None
            raise UsageError(f"{path}:{line}: benchmarks.{i}.options: {e}") from None


def _allowed_keys(parent: tuple) -> list[str]:
    if not parent:
        return sorted(SuiteSpec.model_fields)
    if parent[0] == "defaults":
        return sorted(GenerationOverrides.model_fields)
    return sorted(BenchmarkEntry.model_fields)
