"""Leaderboard data from the store (or run output directories), then HTML.

Numbers come straight from each run's results.json (headline metric with its 95% CI), so
the page and `harness show` can never disagree. On top of them, for each candidate:
  - delta vs its target and vs the best source on each benchmark,
  - the fraction of the best source's gain recovered, (candidate - target) / (best source
    - target), defined only where the best source beats the target (otherwise there is no
    gain to recover and the ratio would flip sign meaninglessly),
  - a paired test vs the target on the shared items (harness.paired, Holm across benchmarks).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.benchmarks import BENCHMARKS
from harness.errors import UsageError
from harness.gate import LoadedRun, load_run
from harness.paired import compare_items, holm_adjust
from leaderboards.fusion import FusionData, load_all, load_fusion_stats, match_rows
from leaderboards.spec import LeaderboardSpec, ModelEntry

log = logging.getLogger(__name__)

# Resamples for the leaderboard's paired tests: enough for p-values to 3 decimals, and cheap
# enough that a 10-model x 8-benchmark page builds in seconds.
N_BOOT = 2000


@dataclass
class Row:
    entry: ModelEntry
    run: LoadedRun
    cells: dict[str, dict | None]  # benchmark -> {value, ci_low, ci_high, n} of the headline metric
    average: float | None
    slug: str

    @property
    def key(self) -> str:
        return self.entry.key


@dataclass
class CandidateDelta:
    benchmark: str
    vs_target: float | None
    best_source: str | None
    vs_best_source: float | None
    recovered: float | None
    p_vs_target: float | None = None  # Holm-adjusted paired p
    test: str | None = None


@dataclass
class Leaderboard:
    spec: LeaderboardSpec
    benchmarks: list[dict[str, Any]]  # {name, headline, version, dataset_revision, params, judge}
    rows: list[Row]
    deltas: dict[str, list[CandidateDelta]]  # candidate key -> per benchmark (+ "average")
    warnings: list[str]
    store_path: str | None
    built_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    fusion: list[FusionData] = field(default_factory=list)  # `harness fuse data` stats, rows matched
    lineage: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # row key -> (parent, role)

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    def best_source(self) -> str | None:
        """The source with the best suite average (else the first source)."""
        sources = [r for r in self.rows if r.entry.role == "source"]
        if not sources:
            return None
        ranked = sorted((r for r in sources if r.average is not None), key=lambda r: r.average, reverse=True)
        return (ranked[0] if ranked else sources[0]).key

    def pairs(self) -> list[tuple[str, str]]:
        return self.spec.compare_pairs(self.best_source())

    def attach_fusion_stats(self, path: str | Path) -> FusionData:
        """Show one more `harness fuse data` stats.json (or its output directory) on the page,
        sources matched to this board's rows; the same as passing it to build_leaderboard.
        A file already shown is not added twice. Raises UsageError for a wrong file."""
        fd = load_fusion_stats(path)
        for have in self.fusion:
            if Path(have.path).resolve() == Path(fd.path).resolve():
                return have
        match_rows(fd, self.rows)
        self.fusion.append(fd)
        return fd


def slugify(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "model"


# ---- resolving runs ---------------------------------------------------------------------
def _finished_runs(store) -> list[dict]:
    return [r for r in store.list_runs() if r["results"] is not None]


def resolve_entry(entry: ModelEntry, spec: LeaderboardSpec, store, finished: list[dict]) -> LoadedRun:
    if entry.results:
        if not Path(entry.results).exists():
            raise UsageError(f"leaderboard {spec.name!r}: results {entry.results!r} (for {entry.key!r}) does not exist")
        return load_run(entry.results)
    if store is None:
        raise UsageError(f"leaderboard {spec.name!r}: {entry.key!r} needs a store (--store) or `results:`")
    if entry.run:
        run = load_run(entry.run, store)
        if entry.model and run.model != entry.model:
            raise UsageError(f"leaderboard {spec.name!r}: run {run.run_id} is of model {run.model!r}, "
                             f"not {entry.model!r}")
        return run
    of_suite = [r for r in finished if spec.suite is None or r["suite"] == spec.suite]
    mine = [r for r in of_suite if r["model"] == entry.model]
    if not mine:
        models = sorted({r["model"] for r in of_suite})
        other = sorted({r["suite"] for r in finished if r["model"] == entry.model})
        hint = f" It has finished runs of suite(s) {', '.join(other)}." if other else ""
        where = f"suite {spec.suite!r}" if spec.suite else "any suite"
        raise UsageError(f"leaderboard {spec.name!r}: model {entry.model!r} has no finished run of {where} in "
                         f"{store.path}.{hint} Models with finished runs of {where}: "
                         f"{', '.join(models) or 'none'}.")
    return load_run(mine[-1]["id"], store)  # list_runs is ordered by start time: the latest


def _headline(run: LoadedRun, bench: str) -> dict | None:
    b = run.benchmarks.get(bench)
    return b.headline_metric() if b is not None else None


def _columns(spec: LeaderboardSpec, runs: list[LoadedRun]) -> list[str]:
    present: list[str] = []
    for r in runs:
        present += [b for b in r.benchmarks if b not in present]
    if spec.benchmarks:
        missing = [b for b in spec.benchmarks if b not in present]
        if missing:
            raise UsageError(f"leaderboard {spec.name!r}: benchmark(s) {', '.join(missing)} appear in none of its "
                             f"runs; the runs have: {', '.join(present) or 'none'}")
        return list(spec.benchmarks)
    return present


def _consistency_warnings(columns: list[str], rows: list[Row]) -> list[str]:
    """Rows measured with different benchmark versions / data / params are flagged on the
    page: the leaderboard still shows them (a researcher may want that), the gate would not."""
    out = []
    for bench in columns:
        for key in ("version", "dataset_revision", "params"):
            seen: dict[str, list[str]] = {}
            for r in rows:
                b = r.run.benchmarks.get(bench)
                if b is not None:
                    seen.setdefault(json.dumps(b.compat(key), sort_keys=True), []).append(r.key)
            if len(seen) > 1:
                parts = "; ".join(f"{', '.join(who)}: {v}" for v, who in seen.items())
                out.append(f"{bench}: {key} differs between rows ({parts})")
    return out


def build_leaderboard(spec: LeaderboardSpec, store=None,
                      fusion_stats: Sequence[str | Path] = ()) -> Leaderboard:
    """The leaderboard of `spec`'s models. `fusion_stats` (stats.json files of `harness fuse
    data`, or the directories holding them) add to the spec's own `fusion_stats:`; they are
    read first, so a wrong path fails before any run is loaded."""
    fusion = load_all([*spec.fusion_stats, *fusion_stats])
    finished = _finished_runs(store) if store is not None else []
    if store is not None and not finished and any(not m.results for m in spec.models):
        raise UsageError(f"the store {store.path} has no finished runs, so there is nothing to put on a "
                         f"leaderboard. Run `harness run suite {spec.suite or 'SUITE'} --model MODEL "
                         f"--store {store.path}` for each model first.")
    runs = [resolve_entry(m, spec, store, finished) for m in spec.models]
    columns = _columns(spec, runs)
    rows = []
    slugs: set[str] = set()
    for m, run in zip(spec.models, runs):
        cells = {b: _headline(run, b) for b in columns}
        vals = [c["value"] for c in cells.values() if c is not None]
        avg = sum(vals) / len(vals) if len(vals) == len(columns) and vals else None
        slug = slugify(m.key)
        while slug in slugs:
            slug += "_"
        slugs.add(slug)
        rows.append(Row(m, run, cells, avg, slug))
    bench_info = []
    for b in columns:
        first = next(r.run.benchmarks[b] for r in rows if b in r.run.benchmarks)
        judges = sorted({r.run.record.provenance.judge for r in rows
                         if b in r.run.benchmarks and r.run.record.provenance.judge})
        bench_info.append({"name": b, "headline": first.headline, "version": first.version,
                           "dataset_revision": first.dataset_revision, "params": first.params,
                           "judges": judges, "sandbox": _sandbox_modes(r.run.benchmarks.get(b) for r in rows)})
    lb = Leaderboard(spec, bench_info, rows, {}, _consistency_warnings(columns, rows),
                     str(store.path) if store is not None else None, fusion=fusion)
    for fd in fusion:
        match_rows(fd, rows)
    lb.deltas = {r.key: candidate_deltas(lb, r) for r in rows if r.entry.role == "candidate"}
    if store is not None:  # parents from the store (a merge has the base and every merged model)
        parents = {r.key: store.model_parents(r.run.model) for r in rows if r.run.model}
        lb.lineage = {key: [(p.parent, p.role) for p in ps] for key, ps in parents.items() if ps}
    return lb


def _sandbox_modes(results) -> list[str]:
    """How model-written code ran for a code benchmark, over the runs on the board ('bwrap',
    'unshare', 'none (unsafe)'); empty for benchmarks that run no code."""
    modes = set()
    for res in results:
        box = getattr(res, "sandbox", None) if res is not None else None
        if isinstance(box, dict) and box.get("isolation"):
            modes.add(box["isolation"] + (" (unsafe)" if box.get("unsafe") else ""))
    return sorted(modes)


def candidate_deltas(lb: Leaderboard, cand: Row) -> list[CandidateDelta]:
    target_key = lb.spec.target_of(cand.entry)
    target = lb.row(target_key) if target_key else None
    sources = [r for r in lb.rows if r.entry.role == "source"]
    out = []
    for b in [*[c["name"] for c in lb.benchmarks], "average"]:
        def val(r: Row | None, b: str = b) -> float | None:
            if r is None:
                return None
            if b == "average":
                return r.average
            c = r.cells.get(b)
            return c["value"] if c else None

        c, t = val(cand), val(target)
        src = [(val(s), s.key) for s in sources if val(s) is not None]
        best_v, best_k = max(src) if src else (None, None)
        d = CandidateDelta(benchmark=b, vs_target=c - t if c is not None and t is not None else None,
                           best_source=best_k, vs_best_source=c - best_v if c is not None and best_v is not None
                           else None, recovered=None)
        if c is not None and t is not None and best_v is not None and best_v > t:
            d.recovered = (c - t) / (best_v - t)
        out.append(d)
    if target is not None:  # paired tests vs the target, Holm across the benchmarks tested
        tested = []
        for d in out[:-1]:
            a, bb = target.run.scores.get(d.benchmark, {}), cand.run.scores.get(d.benchmark, {})
            if a and bb and set(a) & set(bb):
                try:
                    r = compare_items(d.benchmark, a, bb, n_boot=N_BOOT, keep_changed=False)
                except ValueError as e:  # a non-numeric score: show the numbers, skip the test
                    log.warning("%s vs %s: no paired test on %s: %s", cand.key, target.key, d.benchmark, e)
                    continue
                d.test = r.test
                tested.append((d, r.p_value))
        for (d, _), adj in zip(tested, holm_adjust([p for _, p in tested])):
            d.p_vs_target = adj
    return out


# ---- item-level data for the drill-down pages ----------------------------------------------
def _texts_from_links(rows: list[dict], out: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Fill `out` from store.run_generations rows: an item's main request is the first one
    (lowest request id: "<bench>/<item>" sorts before its "#suffix" follow-ups)."""
    for r in rows:
        if r["benchmark"] not in out:
            continue
        rec = out[r["benchmark"]].setdefault(r["item_id"], {"prompt": None, "answer": None, "extra": [],
                                                            "_main": r["request_id"]})
        sample = f" sample {r['sample_index']}" if r["sample_index"] else ""
        if r["request_id"] == rec["_main"] and rec["answer"] is None:
            rec["prompt"], rec["answer"] = json.loads(r["messages"]), r["text"]
        elif r["request_id"] == rec["_main"]:
            rec["extra"].append((sample.strip(), r["text"]))
        else:
            rec["extra"].append((r["request_id"] + sample, r["text"]))
    for items in out.values():
        for rec in items.values():
            rec.pop("_main", None)


def run_texts(store, run: LoadedRun) -> dict[str, dict[str, dict[str, Any]]]:
    """{benchmark: {item_id: {"prompt": [messages], "answer": str, "extra": [(label, text)]}}}.

    Generations are keyed by a hash that includes the messages, so they are found by the
    run's model fingerprint and the request ids "<bench>/<item>[#suffix]" instead, keeping
    the rows generated with the benchmark's sampling params when there are several. One
    query per run, on the (model_fingerprint, request_id) index. Falls back to the run's <bench>.jsonl (answers only) for the rest."""
    out: dict[str, dict[str, dict[str, Any]]] = {b: {} for b in run.benchmarks}
    linked = store.run_generations(run.run_id) if store is not None else []
    if linked:  # the runner recorded which generations this run used, per benchmark and item
        _texts_from_links(linked, out)
    elif store is not None and run.model_fingerprint:  # runs recorded before the link table
        benches = list(out)
        # filtered by benchmark in SQL: a model used for fusion data may have many more rows
        rows = store.generations_for(run.model_fingerprint, benches)
        by_req: dict[str, list[dict]] = {}
        for r in rows:
            by_req.setdefault(r["request_id"], []).append(r)
        parsed: dict[str, Any] = {}  # params JSON text -> dict, parsed once

        def params_of(r: dict) -> Any:
            if r["params"] not in parsed:
                parsed[r["params"]] = json.loads(r["params"])
            return parsed[r["params"]]

        for rid, rs in by_req.items():
            bench, _, rest = rid.partition("/")
            if bench not in out or not rest:
                continue
            params = run.benchmarks[bench].params
            matching = [r for r in rs if params is not None and params_of(r) == params]
            rs = sorted(matching or rs, key=lambda r: r["sample_index"])
            item, _, suffix = rest.partition("#")
            rec = out[bench].setdefault(item, {"prompt": None, "answer": None, "extra": []})
            if not suffix:
                rec["prompt"] = json.loads(rs[0]["messages"])
                rec["answer"] = rs[0]["text"]
                rec["extra"] += [(f"sample {r['sample_index']}", r["text"]) for r in rs[1:] if r["sample_index"]]
            else:
                rec["extra"] += [(f"#{suffix}" + (f" sample {r['sample_index']}" if r["sample_index"] else ""),
                                  r["text"]) for r in rs]
    for bench, items in out.items():
        f = run.out_dir / f"{bench}.jsonl" if run.out_dir is not None else None
        if f is None or not f.exists() or (items and all(r["answer"] is not None for r in items.values())):
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rec = items.setdefault(str(row.get("id")), {"prompt": None, "answer": None, "extra": []})
                if rec["answer"] is None:
                    rec["answer"] = row.get("completion")
    for bench, items in out.items():  # GPQA: its authors forbid plain-text examples online
        if bench in BENCHMARKS and not BENCHMARKS.resolve(bench).public_items:
            out[bench] = {i: {"prompt": None, "answer": HIDDEN, "extra": []} for i in items}
    return out


HIDDEN = "(not shown: this benchmark's items must not be published in plain text; item id only)"


def fmt(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"
