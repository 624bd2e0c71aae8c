"""`harness merge` and the pipeline's merge stage: a mergekit config -> a registered candidate.

The config is mergekit's own YAML format, passed through unchanged except that model names
(store candidates, built-in aliases) are replaced by their local directories. The merged model
is written to a temporary sibling directory and renamed into place only when complete; it is
registered last, with every merged model and the base as parents, so a merge killed halfway
registers nothing and the next run redoes it.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import HarnessError, UsageError, did_you_mean
from harness.models import directory_fingerprint, read_chat_template, resolve_model, template_hash
from harness.store import ModelParent, ModelRecord
from trainers.merge.checks import check_base_present, check_same_shapes
from trainers.merge.config import load_merge_config, model_slots
from trainers.merge.sce import SCE_METHODS, counting_fallbacks, register_fuseai_method

log = logging.getLogger(__name__)

PROVENANCE_FILE = "harness_merge.json"


class MergeError(HarnessError):
    """mergekit failed on input that passed our checks; its message is kept."""


class MergeProvenance(BaseModel):
    """What produced a merged candidate; stored as the candidate's info["merge"]."""

    model_config = ConfigDict(frozen=True)
    method: str
    sce_semantics: str | None  # SCE_METHODS[method] for sce / sce_fuseai, else None
    select_topk: float | None
    sce_tensors: int | None  # tensors merged by the SCE method (None for other methods)
    uniform_fallback_tensors: int | None  # of those, how many took uniform weights
    config: dict[str, Any]  # the mergekit config as run (model names resolved to directories)
    models: dict[str, str]  # name as written in the config -> directory merged
    options: dict[str, Any]  # mergekit MergeOptions given (the rest are mergekit's defaults)
    mergekit_version: str
    seconds: float


class MergeResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    path: str
    fingerprint: str
    parents: list[tuple[str, str]]  # (model, role) in order: base first
    provenance: MergeProvenance


def resolve_models(cfg: dict[str, Any], store) -> tuple[dict[str, Any], dict[str, str], list[ModelParent]]:
    """A copy of `cfg` with store names and aliases replaced by local directories, the mapping
    name -> directory, and the lineage (the base first, then each merged model once)."""
    cfg = copy.deepcopy(cfg)
    dirs: dict[str, str] = {}
    parents: list[ModelParent] = []
    for role, holder, key in model_slots(cfg):
        spec = holder[key]
        if spec not in dirs:
            m = resolve_model(spec, store)
            if m.kind == "openai":
                raise UsageError(f"cannot merge {spec!r}: merging needs the weights (a local or hub model)")
            dirs[spec] = m.path if m.kind != "hub" else spec  # hub ids: mergekit downloads them itself
        holder[key] = dirs[spec]
        if all(p.parent != spec for p in parents):
            parents.append(ModelParent(spec, role))
    parents.sort(key=lambda p: p.role != "base")  # stable: base first, merged models in config order
    if not parents:
        raise UsageError("the merge config names no models: give `models: [{model: NAME}, ...]` "
                         "(and `base_model:` for methods that need one)")
    return cfg, dirs, parents


def _options(options: dict[str, Any] | None):
    from mergekit.options import MergeOptions

    options = dict(options or {})
    for key in options:
        if key not in MergeOptions.model_fields:
            raise did_you_mean("mergekit option", key, MergeOptions.model_fields)
    try:
        return MergeOptions(**options)
    except ValidationError as e:
        raise UsageError(f"bad mergekit option: {e}") from None


def _validated(cfg: dict[str, Any]):
    from mergekit.config import MergeConfiguration

    try:
        return MergeConfiguration.model_validate(cfg)
    except ValidationError as e:
        raise UsageError(f"not a valid mergekit config: {e}") from None


def _precheck(cfg: dict[str, Any], dirs: dict[str, str], parents: list[ModelParent]) -> None:
    check_base_present(str(cfg.get("merge_method")), cfg.get("base_model"))
    if cfg.get("slices"):
        return  # layer ranges: shapes are compared per slice by mergekit itself
    local = [(p.parent, Path(dirs[p.parent])) for p in parents if Path(dirs[p.parent]).is_dir()]
    if len(local) > 1:
        check_same_shapes(local[0], local[1:])


def _clear_stale_partials(out: Path) -> None:
    """Remove temp dirs left by merges that were killed (their process is gone)."""
    for d in out.parent.glob(f".{out.name}.partial-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by a merge that did not finish", d)
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished merge into place; an older merge at `out` is replaced."""
    old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _mergekit_merge(cfg: dict[str, Any], tmp: Path, options: dict[str, Any]):
    """Run mergekit into `tmp`; returns the fallback count. mergekit's failures become MergeError
    with the models named (our checks catch the common ones earlier, with better messages)."""
    from mergekit.merge import run_merge as mergekit_run_merge

    merge_config, merge_options = _validated(cfg), _options(options)
    with counting_fallbacks() as count:
        try:
            mergekit_run_merge(merge_config, str(tmp), merge_options)
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            names = ", ".join(sorted({h[k] for _, h, k in model_slots(cfg)}))
            raise MergeError(f"mergekit could not merge {names}: {type(e).__name__}: {e}") from e
    return count


def run_merge(config: dict[str, Any] | str | Path, *, name: str, out_dir: str | Path, store,
              options: dict[str, Any] | None = None) -> MergeResult:
    """Merge with mergekit and register the result in `store` as candidate `name`.

    `config` is a mergekit config (a mapping or a YAML path); `options` are mergekit
    MergeOptions fields (lazy_unpickle, low_cpu_memory, out_shard_size, ...), passed through."""
    register_fuseai_method()  # before any check: `merge_method: sce_fuseai` must be known to mergekit
    raw = load_merge_config(config) if isinstance(config, (str, Path)) else dict(config)
    cfg, dirs, parents = resolve_models(raw, store)
    _precheck(cfg, dirs, parents)
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_partials(out)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        count = _mergekit_merge(cfg, tmp, options or {})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # Ctrl-C / errors: nothing half-written stays
        raise
    method = str(cfg["merge_method"])
    is_sce = method in SCE_METHODS
    prov = MergeProvenance(
        method=method, sce_semantics=SCE_METHODS.get(method),
        select_topk=float((cfg.get("parameters") or {}).get("select_topk", 1.0)) if is_sce else None,
        sce_tensors=count.tensors if is_sce else None,
        uniform_fallback_tensors=count.uniform_fallback if is_sce else None,
        config=cfg, models=dirs, options=dict(options or {}), mergekit_version=version("mergekit"),
        seconds=time.perf_counter() - t0)
    (tmp / PROVENANCE_FILE).write_text(prov.model_dump_json(indent=2))
    _publish(tmp, out)
    return _register(store, name, out, parents, prov)


def _register(store, name: str, out: Path, parents: list[ModelParent], prov: MergeProvenance) -> MergeResult:
    fp = directory_fingerprint(out)
    base = next((p.parent for p in parents if p.role == "base"), None)
    store.register_model(ModelRecord(name=name, fingerprint=fp, kind="candidate", path=str(out),
                                     template_hash=template_hash(read_chat_template(out)), parent=base,
                                     info={"merge": prov.model_dump(mode="json")}), parents=parents)
    if prov.uniform_fallback_tensors:
        log.warning("%s: %d of %d tensors took SCE's uniform-weight fallback (%s)", name,
                    prov.uniform_fallback_tensors, prov.sce_tensors, prov.sce_semantics)
    log.info("registered merged candidate %r (parents %s) -> %s", name,
             ", ".join(f"{p.parent} [{p.role}]" for p in parents), out)
    return MergeResult(name=name, path=str(out), fingerprint=fp,
                       parents=[(p.parent, p.role) for p in parents], provenance=prov)
