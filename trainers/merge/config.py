"""Reading mergekit configs: the file, and where in it models are named. Light (no torch, no
mergekit), so the pipeline can map its model names into a config without loading either."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.yamlio import load_yaml_mapping


def load_merge_config(path: str | Path) -> dict[str, Any]:
    return load_yaml_mapping(path, "merge config", hint="see trainers/recipes/merge_*.yaml")


def model_slots(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(role, mapping, key) for every model reference written as a string in a mergekit config:
    `base_model`, `models[*].model` and `slices[*].sources[*].model`; role is base or merged."""
    slots: list[tuple[str, dict[str, Any], str]] = []
    if isinstance(cfg.get("base_model"), str):
        slots.append(("base", cfg, "base_model"))
    for m in cfg.get("models") or []:
        if isinstance(m, dict) and isinstance(m.get("model"), str):
            slots.append(("merged", m, "model"))
    for sl in cfg.get("slices") or []:
        for src in (sl or {}).get("sources") or []:
            if isinstance(src, dict) and isinstance(src.get("model"), str):
                slots.append(("merged", src, "model"))
    return slots
