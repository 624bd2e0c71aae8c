"""The fusion view: one row per candidate of a bake-off (docs/bakeoff.md), written as fusion.html.

A row says what the candidate is and what it cost, then how it compares with the target:

* family: the chain of objectives from the target to it (`sft → wrpo`, `fuse_sft → fuse_po`,
  `distill_ce (pairwise: gemma)`), or the merge method (`merge sce_fuseai`), read from the store's
  model records (the trainer's and mergekit's provenance), never from candidate names;
* parents: the store's lineage (a merge has its base and every merged model);
* cost: wall seconds (the pipeline stage's, else the trainer's or merge's own record), training
  tokens (the trainer's count of non-padding tokens seen) and optimizer steps;
* data: the training file and the rows kept out of those read (or the merged models);
* per benchmark: the paired difference to the target with its CI and Holm-adjusted p, computed
  by `harness.gate.compare` itself (same alpha, resamples and seed as `harness gate`, so the two
  agree to the digit: tests/test_bakeoff_view.py checks it), and the fraction of the best
  source's lead over the target the candidate recovered (the leaderboard's own figure).

Stages a pipeline skipped (missing prerequisites) are listed with their reason. No statistics
are computed here: the numbers come from harness/gate.py and leaderboards/build.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from harness.gate import compare
from harness.paired import N_BOOTSTRAP
from leaderboards.build import Leaderboard, Row
from leaderboards.render import PageLink, _env

log = logging.getLogger(__name__)

DISTILL_METHODS = ("distill_ce", "uld", "gld")  # token-level objectives: pairwise or unified
PAGE = "fusion.html"  # beside the leaderboard's index.html, which links to it (index_link)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class BenchDelta(_Frozen):
    """Candidate minus target on one benchmark, in the gate's units (pp for pass/fail items)."""

    benchmark: str
    n: int
    delta: float
    ci_low: float
    ci_high: float
    p_adjusted: float | None
    test: str
    unit: str
    status: str  # the gate's verdict: improved | regression | within tolerance | no significant change
    recovered: float | None  # (candidate - target) / (best source - target) on the headline metric


class TrainingCost(_Frozen):
    wall_s: float | None
    tokens: int | None
    steps: int | None


class ViewRow(_Frozen):
    key: str
    model: str
    family: str
    parents: list[tuple[str, str]]  # (parent, role)
    cost: TrainingCost
    data: str
    deltas: list[BenchDelta]
    note: str | None = None  # why a comparison is missing (e.g. no shared items)


class SkippedStage(_Frozen):
    stage: str
    reason: str


class FusionView(_Frozen):
    title: str
    target: str
    benchmarks: list[str]
    alpha: float
    n_boot: int
    rows: list[ViewRow]
    skipped: list[SkippedStage]

    def row(self, key: str) -> ViewRow:
        return next(r for r in self.rows if r.key == key)


def family_of(store, model: str, _depth: int = 0) -> str:
    """The objectives from the target to `model`, oldest first, from the store's records."""
    rec = store.get_model(model) if store is not None else None
    info = (rec.info or {}) if rec is not None else {}
    if "merge" in info:
        return f"merge {info['merge'].get('method', '?')}"
    method = info.get("method")
    if method is None:
        return "–"
    label = str(method)
    if method in DISTILL_METHODS:
        sources = ((info.get("config") or {}).get("objective") or {}).get("sources")
        label += f" (pairwise: {', '.join(sources)})" if sources and len(sources) == 1 else " (unified)"
    parent = rec.parent if rec is not None else None
    if parent and _depth < 8:
        before = family_of(store, parent, _depth + 1)
        if before != "–":
            return f"{before} → {label}"
    return label


def _cost(store, model: str, wall_s: float | None) -> tuple[TrainingCost, str]:
    rec = store.get_model(model) if store is not None else None
    info = (rec.info or {}) if rec is not None else {}
    if "merge" in info:
        m = info["merge"]
        models = ", ".join(m.get("models") or {}) or "?"
        return TrainingCost(wall_s=wall_s if wall_s is not None else m.get("seconds"), tokens=0, steps=0), \
            f"weights of {models}"
    report = info.get("data_report") or {}
    data = Path(str(info.get("data") or "?")).name
    if report:
        data += f" ({report.get('kept', '?')}/{report.get('total', '?')} rows)"
    return TrainingCost(wall_s=wall_s if wall_s is not None else info.get("train_seconds"),
                        tokens=info.get("train_tokens"), steps=info.get("steps")), data


def _deltas(lb: Leaderboard, target: Row, cand: Row, alpha: float, n_boot: int) -> tuple[list[BenchDelta], str | None]:
    names = [b["name"] for b in lb.benchmarks if target.run.scores.get(b["name"]) and cand.run.scores.get(b["name"])]
    if not names:
        return [], "no benchmark scored in both runs"
    try:
        cmp = compare(target.run, cand.run, alpha=alpha, benchmarks=names, n_boot=n_boot, allow_mismatch=True)
    except Exception as e:  # noqa: BLE001 - shown on the row, the other rows still render
        log.warning("fusion view: %s vs %s: %s", cand.key, target.key, e)
        return [], str(e)
    recovered = {d.benchmark: d.recovered for d in lb.deltas.get(cand.key, [])}
    out = [BenchDelta(benchmark=g.result.benchmark, n=g.result.n, delta=g.result.delta, ci_low=g.result.ci_low,
                      ci_high=g.result.ci_high, p_adjusted=g.result.p_adjusted, test=g.result.test,
                      unit=g.result.unit, status=g.status, recovered=recovered.get(g.result.benchmark))
           for g in cmp.rows]
    note = ("runs differ in " + "; ".join(cmp.mismatches)) if cmp.mismatches else None
    return out, note


def build_fusion_view(lb: Leaderboard, store, *, alpha: float = 0.05, n_boot: int = N_BOOTSTRAP,
                      wall_s: dict[str, float] | None = None,
                      skipped: dict[str, str] | None = None) -> FusionView:
    """The view of `lb`'s candidates against their target. `wall_s`: model name -> seconds of the
    stage that made it (the pipeline's record); `skipped`: stage -> why it did not run."""
    rows = []
    for cand in (r for r in lb.rows if r.entry.role == "candidate"):
        target_key = lb.spec.target_of(cand.entry)
        target = lb.row(target_key) if target_key else None
        cost, data = _cost(store, cand.run.model, (wall_s or {}).get(cand.run.model))
        deltas, note = _deltas(lb, target, cand, alpha, n_boot) if target else ([], "no target on the board")
        rows.append(ViewRow(key=cand.key, model=cand.run.model, family=family_of(store, cand.run.model),
                            parents=lb.lineage.get(cand.key, []), cost=cost, data=data, deltas=deltas, note=note))
    target = next((r.key for r in lb.rows if r.entry.role == "target"), "–")
    return FusionView(title=lb.spec.title or lb.spec.name, target=target,
                      benchmarks=[b["name"] for b in lb.benchmarks], alpha=alpha, n_boot=n_boot, rows=rows,
                      skipped=[SkippedStage(stage=k, reason=v) for k, v in (skipped or {}).items()])


def index_link(view: FusionView) -> PageLink:
    """The link index.html gets to this view (pass it to render.write_site); the view links back."""
    skipped = f"; skipped stages: {len(view.skipped)}" if view.skipped else ""
    return PageLink(href=PAGE, text=f"Fusion view: {len(view.rows)} candidates against the target, "
                                    f"with family, cost and paired statistics{skipped}")


def write_fusion_view(view: FusionView, out_dir: Path) -> Path:
    """fusion.html beside the leaderboard's index.html (same style and sorting script)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / PAGE
    page.write_text(_env().get_template("fusion_view.html.j2").render(view=view), encoding="utf-8")
    log.info("fusion view: %d candidates, %d skipped stages -> %s", len(view.rows), len(view.skipped), page)
    return page
