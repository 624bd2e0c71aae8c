"""Checks run before mergekit sees the models, so bad input fails in seconds with names.

mergekit's own errors for these cases come late and without the model names (a torch.stack
size error deep in its executor, or "Unimplemented..." / a contract error for a missing base);
here they are stated with both models and the first tensor that differs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from harness.errors import UsageError, did_you_mean

log = logging.getLogger(__name__)


def tensor_shapes(model_dir: Path) -> dict[str, tuple[int, ...]] | None:
    """name -> shape from the safetensors headers (no weights read); None without safetensors."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():
                shapes[key] = tuple(fh.get_slice(key).get_shape())
    return shapes


def _architectures(model_dir: Path) -> list[str]:
    cfg = model_dir / "config.json"
    if not cfg.exists():
        return []
    return json.loads(cfg.read_text()).get("architectures") or []


def check_same_shapes(base: tuple[str, Path], others: list[tuple[str, Path]]) -> None:
    """Every model has the base's architecture and exactly its tensors and shapes.
    Raises UsageError naming both models and the first mismatching tensor (sorted by name)."""
    base_name, base_dir = base
    base_arch = _architectures(base_dir)
    base_shapes = tensor_shapes(base_dir)
    for name, d in others:
        arch = _architectures(d)
        if base_arch and arch and arch != base_arch:
            raise UsageError(f"cannot merge {name!r} with {base_name!r}: architectures differ "
                             f"({', '.join(arch)} vs {', '.join(base_arch)}). Merging needs models of one "
                             "architecture and size.")
        shapes = tensor_shapes(d)
        if base_shapes is None or shapes is None:
            log.info("no safetensors in %s or %s: shape check left to mergekit", d, base_dir)
            continue
        for key in sorted(base_shapes.keys() | shapes.keys()):
            a, b = shapes.get(key), base_shapes.get(key)
            if a != b:
                raise UsageError(
                    f"cannot merge {name!r} with {base_name!r}: first mismatching tensor {key!r} is "
                    f"{_shape(a)} in {name!r} but {_shape(b)} in {base_name!r}. Merging needs models of one "
                    "architecture and size (same tensors, same shapes).")


def _shape(s: tuple[int, ...] | None) -> str:
    return "absent" if s is None else "shape [" + ", ".join(map(str, s)) + "]"


def check_base_present(method: str, base_model: str | None) -> None:
    """A method whose mergekit contract requires a base must have `base_model:`."""
    from mergekit.merge_methods import registry
    from mergekit.merge_methods.base import BasePolicy

    names = [m.spec.name for m in registry.registered_methods()]
    if method not in names:
        raise did_you_mean("merge_method", method, names)
    if base_model is None and registry.get(method).spec.contract.base == BasePolicy.REQUIRED:
        raise UsageError(f"merge_method {method!r} needs a base model (the task vectors are differences "
                         "from it): add `base_model: NAME` to the merge config, e.g. the pivot/target model "
                         "the merged models were fine-tuned from.")
