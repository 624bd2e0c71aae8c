"""Fusion data statistics on the leaderboard: where the training answers came from.

`harness fuse data` writes stats.json (per source: answers, how many of its answers were
chosen for SFT / DPO / WRPO, correctness, score, lengths, truncation; the target's own
samples under "target") and report.json (recipe, pools, sampling, selection drops) beside
the data. A leaderboard can show one or more of them next to the scores, so a reader sees
which source the candidate actually learned from. Sources are matched to leaderboard rows
by model fingerprint (from report.json's sampling record), else by model name, else by the
source's name, so the page can show the row's label for each source.

stats.json is checked on load (a wrong file is a UsageError naming it and what was
expected); report.json is optional and read leniently: it only adds context, so a missing
or unreadable one costs a note on the page, never the build.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import UsageError

if TYPE_CHECKING:
    from leaderboards.build import Row

log = logging.getLogger(__name__)

EXPECTED = ("the stats.json that `harness fuse data` writes beside the data: "
            '{"sources": {NAME: {"answers": ..., "chosen_sft": ..., ...}}, "sft_rows": ..., ...}')


class _Stats(BaseModel):
    """One source's (or the target's) entry; unknown fields are kept out, not refused, so a
    newer stats.json still renders."""

    model_config = ConfigDict(extra="ignore")
    answers: int = Field(ge=0)
    chosen_sft: int | None = Field(None, ge=0)
    chosen_share: float | None = Field(None, ge=0, le=1)
    dpo_pairs: int | None = Field(None, ge=0)
    wrpo_y_ws: int | None = Field(None, ge=0)
    correct_rate: float | None = Field(None, ge=0, le=1)
    verified_answers: int | None = Field(None, ge=0)
    mean_score: float | None = None
    mean_chars: float | None = Field(None, ge=0)
    mean_tokens: float | None = Field(None, ge=0)
    truncation_rate: float | None = Field(None, ge=0, le=1)
    model: str | None = None  # not written today; used for matching when a future stats.json has it
    fingerprint: str | None = None


class _StatsFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sources: dict[str, _Stats] = Field(min_length=1)
    sft_rows: int | None = Field(None, ge=0)
    dpo_rows: int | None = Field(None, ge=0)
    wrpo_rows: int | None = Field(None, ge=0)


@dataclass
class FusionSource:
    name: str  # the source's name in the recipe ("target" for the target)
    stats: dict[str, Any]
    is_target: bool = False
    model: str | None = None  # the recipe's model spec, when report.json (or stats.json) says
    fingerprint: str | None = None
    row: str | None = None  # the leaderboard row it is, when one matches
    role: str | None = None  # that row's role
    matched_by: str | None = None  # "fingerprint" | "model" | "name"


@dataclass
class FusionData:
    path: str  # the stats.json
    sources: list[FusionSource]
    target: FusionSource | None
    rows: dict[str, int | None]  # sft / dpo / wrpo rows written
    recipe: str | None = None
    report_path: str | None = None
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> rows, kept, empty, duplicate
    counts: dict[str, Any] = field(default_factory=dict)  # prompts, sft, dpo, wrpo, contaminated_prompts
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # sft/dpo/wrpo -> reason -> count
    sampling: dict[str, dict[str, Any]] = field(default_factory=dict)  # model name -> requests, cached, ...
    notes: list[str] = field(default_factory=list)

    def total(self) -> dict[str, Any]:
        """Sums over the sources: chosen_sft should equal sft_rows, and the shares 1."""
        def add(key: str) -> float | None:
            vals = [s.stats.get(key) for s in self.sources]
            return None if all(v is None for v in vals) else sum(v or 0 for v in vals)

        return {k: add(k) for k in ("answers", "chosen_sft", "chosen_share", "dpo_pairs", "wrpo_y_ws")}


def _mapping(x: Any) -> dict:
    return x if isinstance(x, dict) else {}


def _resolve(path: str | Path) -> Path:
    """A stats.json, or the `harness fuse data` output directory that holds one."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / "stats.json").is_file():
            raise UsageError(f"fusion stats {str(path)!r} is a directory without a stats.json; expected "
                             f"{EXPECTED} (or the `harness fuse data` output directory holding it)")
        return p / "stats.json"
    if not p.is_file():
        raise UsageError(f"fusion stats {str(path)!r} does not exist; expected {EXPECTED}. "
                         "Run `harness fuse data RECIPE` first, or fix the path")
    return p


def load_fusion_stats(path: str | Path) -> FusionData:
    """Read and check one stats.json (and the report.json beside it, if any)."""
    p = _resolve(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"fusion stats {str(p)!r} is not valid JSON ({e}); expected {EXPECTED}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"fusion stats {str(p)!r} holds a JSON {type(raw).__name__}; expected {EXPECTED}")
    try:
        parsed = _StatsFile.model_validate(raw)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(x) for x in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()]
        raise UsageError(f"fusion stats {str(p)!r} is not a fusion stats.json:\n" + "\n".join(lines)
                         + f"\nExpected {EXPECTED}") from None

    sources, target = [], None
    for name, st in parsed.sources.items():
        # The pipeline strips the selection counts from the target's entry: that, not the key
        # alone, tells the target apart from a source someone named "target".
        s = FusionSource(name, st.model_dump(exclude={"model", "fingerprint"}), model=st.model,
                         fingerprint=st.fingerprint)
        if name == "target" and st.chosen_sft is None:
            s.is_target = True
            target = s
        else:
            sources.append(s)
    fd = FusionData(str(p), sources, target, {"sft": parsed.sft_rows, "dpo": parsed.dpo_rows,
                                              "wrpo": parsed.wrpo_rows})
    _read_report(fd, p.parent / "report.json")
    return fd


def _read_report(fd: FusionData, path: Path) -> None:
    if not path.is_file():
        fd.notes.append("no report.json beside stats.json: pool sizes, sampling and drop counts are not shown")
        return
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report, dict):
            raise ValueError(f"a JSON {type(report).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("fusion report %s is unreadable (%s); showing stats.json only", path, e)
        fd.notes.append(f"report.json beside stats.json could not be read ({e}); only stats.json is shown")
        return
    fd.report_path = str(path)
    recipe = _mapping(report.get("recipe"))
    fd.recipe = recipe.get("name") if isinstance(recipe.get("name"), str) else None
    fd.pools = {str(k): _mapping(v) for k, v in _mapping(report.get("pools")).items()}
    fd.counts = _mapping(report.get("counts"))
    sel = _mapping(report.get("selection"))
    fd.dropped = {k: {str(r): n for r, n in _mapping(sel.get(f"{k}_dropped")).items()} for k in ("sft", "dpo", "wrpo")}
    fd.sampling = {str(k): _mapping(v) for k, v in _mapping(report.get("sampling")).items()}
    failed = _mapping(report.get("failed_models"))
    for k, why in failed.items():
        fd.sampling.setdefault(str(k), {}).setdefault("failed", why)
    models = {s.get("name"): s.get("model") for s in recipe.get("sources") or [] if isinstance(s, dict)}
    target_model = _mapping(recipe.get("target")).get("model")
    for s in [*fd.sources, *([fd.target] if fd.target else [])]:
        rec = fd.sampling.get(s.name, {})
        s.model = s.model or (target_model if s.is_target else models.get(s.name)) or rec.get("model")
        s.fingerprint = s.fingerprint or rec.get("fingerprint")


def match_rows(fd: FusionData, rows: list[Row]) -> None:
    """Point each source (and the target) at the leaderboard row that is the same model:
    the same weights (fingerprint) first, then the same model name, then (sources only) a
    row named like the source. Within a tier a row of the matching role wins."""
    for s in [*fd.sources, *([fd.target] if fd.target else [])]:
        tiers = [("fingerprint", lambda r, s=s: bool(s.fingerprint) and r.run.model_fingerprint == s.fingerprint),
                 ("model", lambda r, s=s: bool(s.model) and s.model in (r.entry.model, r.run.model))]
        if not s.is_target:
            tiers.append(("name", lambda r, s=s: s.name in (r.key, r.entry.model)))
        want = "target" if s.is_target else "source"
        for how, hit in tiers:
            found = [r for r in rows if hit(r)]
            if found:
                best = next((r for r in found if r.entry.role == want), found[0])
                s.row, s.role, s.matched_by = best.key, best.entry.role, how
                break


def load_all(paths: list[str | Path]) -> list[FusionData]:
    """Each stats.json once (the same file named twice, e.g. in the YAML and on the command
    line, is shown once)."""
    out, seen = [], set()
    for path in paths:
        fd = load_fusion_stats(path)
        key = str(Path(fd.path).resolve())
        if key in seen:
            continue
        seen.add(key)
        out.append(fd)
    return out
