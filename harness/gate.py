"""`harness gate` and `harness compare`: paired significance between two runs (DESIGN.md §5).

A run is named either by its id in the store (a unique prefix is enough) or by the output
directory of `harness run` (results.json plus one <benchmark>.jsonl per benchmark), so a CI
job can gate against a baseline kept as an artefact without shipping the whole store.

Two runs are only comparable on a benchmark when they ran the same benchmark VERSION on the
same dataset revision with the same sampling params; anything else compares two different
experiments, so it is refused (exit 2) unless the user says --allow-mismatch.
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError, did_you_mean
from harness.paired import N_BOOTSTRAP, PairedResult, compare_runs
from harness.results import BenchmarkResult, RunRecord

log = logging.getLogger(__name__)

# What must be equal for two runs of a benchmark to be comparable.
COMPAT_KEYS = ("version", "dataset_revision", "params")


class MismatchError(HarnessError):
    """Runs that measured different things (exit 2, like any usage error)."""


@dataclass
class LoadedRun:
    """A finished run: its results.json and its per-item scores."""

    ref: str  # what the user typed
    run_id: str
    model: str
    record: RunRecord  # results.json, parsed through its one schema
    scores: dict[str, dict[str, dict]]  # {benchmark: {item_id: score dict}}
    model_fingerprint: str | None = None
    out_dir: Path | None = None  # where <benchmark>.jsonl lives, when known
    started_at: float | None = None

    @property
    def benchmarks(self) -> dict[str, BenchmarkResult]:
        return self.record.benchmarks


def load_run(ref: str, store=None) -> LoadedRun:
    """A run id (or unique prefix) in `store`, or a `harness run` output dir / results.json."""
    p = Path(ref)
    if p.exists():
        return _load_run_dir(ref, p)
    if store is None:
        raise UsageError(f"{ref!r} is neither a run output directory nor a results.json file")
    row = store.get_run(ref)
    if row is None:
        runs = [r["id"] for r in store.list_runs()]
        if not runs:
            raise UsageError(f"no run {ref!r}: the store {store.path} has no runs yet; "
                             "run `harness run suite ...` first")
        import difflib

        close = difflib.get_close_matches(ref, runs, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(f"no run {ref!r} in {store.path} (nor a directory of that name).{hint} "
                         f"Latest runs: {', '.join(runs[-10:])} (see `harness runs`).")
    if row["results"] is None:
        raise UsageError(f"run {row['id']} is {row['status']}: it has no results to compare "
                         "(re-run its command to finish it)")
    record = RunRecord.from_json(row["results"], where=f"run {row['id']} in {store.path}")
    out_dir = record.out_dir
    return LoadedRun(ref=ref, run_id=row["id"], model=row["model"], record=record,
                     scores=store.get_scores(row["id"]), model_fingerprint=row["model_fingerprint"],
                     out_dir=Path(out_dir) if out_dir else None, started_at=row["started_at"])


def _load_run_dir(ref: str, p: Path) -> LoadedRun:
    d = p if p.is_dir() else p.parent
    rfile = d / "results.json"
    if not rfile.exists():
        raise UsageError(f"{ref!r}: no results.json in {d}; pass a run id or a `harness run --out` directory")
    try:
        record = RunRecord.from_json(json.loads(rfile.read_text(encoding="utf-8")), where=str(rfile))
    except json.JSONDecodeError as e:
        raise UsageError(f"{rfile}: not valid JSON ({e.msg} at line {e.lineno})") from None
    scores: dict[str, dict[str, dict]] = {}
    for bench in record.benchmarks:
        f = d / f"{bench}.jsonl"
        if not f.exists():
            raise UsageError(f"{f} is missing: per-item scores are needed for a paired test")
        items = {}
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UsageError(f"{f}:{n}: not JSON ({e.msg})") from None
                items[str(row["id"])] = row
        scores[bench] = items
    return LoadedRun(ref=ref, run_id=record.run_id, model=record.model_name, record=record, scores=scores,
                     model_fingerprint=record.model.get("fingerprint"), out_dir=d)


def mismatches(a: LoadedRun, b: LoadedRun, benchmarks: Sequence[str]) -> list[str]:
    """Human-readable differences in VERSION / dataset revision / sampling params."""
    out = []
    for bench in benchmarks:
        ba, bb = a.benchmarks.get(bench), b.benchmarks.get(bench)
        for key in COMPAT_KEYS:
            va, vb = (ba.compat(key) if ba else None), (bb.compat(key) if bb else None)
            if va != vb:
                if key == "params" and isinstance(va, dict) and isinstance(vb, dict):
                    diff = {k: (va.get(k), vb.get(k)) for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)}
                    detail = ", ".join(f"{k} {x!r} vs {y!r}" for k, (x, y) in diff.items())
                else:
                    detail = f"{va!r} vs {vb!r}"
                out.append(f"{bench}: {key} differs ({detail})")
    return out


def shared_benchmarks(a: LoadedRun, b: LoadedRun, only: Sequence[str] | None = None) -> list[str]:
    names = [n for n in a.benchmarks if n in b.benchmarks]
    if only:
        every = set(a.benchmarks) | set(b.benchmarks)
        for n in only:
            if n not in every:
                raise did_you_mean("benchmark", n, every)
            if n not in names:
                raise UsageError(f"benchmark {n!r} was run by only one of {a.run_id} and {b.run_id}")
        names = [n for n in names if n in only]
    if not names:
        raise UsageError(f"runs {a.run_id} ({', '.join(a.benchmarks) or 'no benchmarks'}) and {b.run_id} "
                         f"({', '.join(b.benchmarks) or 'no benchmarks'}) share no benchmark")
    return names


@dataclass
class GateRow:
    result: PairedResult
    tolerance: float
    status: str  # "regression" | "within tolerance" | "improved" | "no significant change"
    mismatch: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "regression"


@dataclass
class Comparison:
    baseline: LoadedRun
    candidate: LoadedRun
    alpha: float
    rows: list[GateRow]
    mismatches: list[str]
    only_one: list[str]  # benchmarks run by only one of the two (not compared)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.rows)


def compare(baseline: LoadedRun, candidate: LoadedRun, *, alpha: float = 0.05,
            tolerances: Mapping[str, float] | None = None, allow_mismatch: bool = False,
            benchmarks: Sequence[str] | None = None, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> Comparison:
    """Paired tests baseline -> candidate on every shared benchmark, Holm-corrected.

    A benchmark fails the gate when its Holm-adjusted p < alpha AND the candidate is worse
    by more than its tolerance (in points, see harness.paired). A significant drop within
    tolerance passes: tolerances exist for accepted trade-offs."""
    if not 0 < alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    names = shared_benchmarks(baseline, candidate, benchmarks)
    tolerances = dict(tolerances or {})
    for k, v in tolerances.items():
        if k not in names:
            raise did_you_mean("benchmark in --tolerance", k, names)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or math.isnan(v):
            raise UsageError(f"--tolerance {k}={v!r}: expected a number >= 0 (points the metric may drop)")
    problems = mismatches(baseline, candidate, names)
    if problems and not allow_mismatch:
        raise MismatchError(
            f"runs {baseline.run_id} and {candidate.run_id} are not comparable:\n  - " + "\n  - ".join(problems)
            + "\nRe-run both with the same benchmark versions, data and sampling params, "
              "or pass --allow-mismatch to compare anyway.")
    empty = [n for n in names if not set(baseline.scores.get(n, {})) & set(candidate.scores.get(n, {}))]
    if empty:
        raise UsageError(f"runs {baseline.run_id} and {candidate.run_id} share no scored item on "
                         f"{', '.join(empty)} (different --limit slices or failed scoring?)")
    try:
        paired = compare_runs(baseline.scores, candidate.scores, names, alpha=alpha, n_boot=n_boot, seed=seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = []
    for r in paired:
        tol = float(tolerances.get(r.benchmark, 0.0))
        significant = r.p_adjusted is not None and r.p_adjusted < alpha
        if significant and r.delta < -tol:
            status = "regression"
        elif significant and r.delta < 0:
            status = "within tolerance"
        elif significant and r.delta > 0:
            status = "improved"
        else:
            status = "no significant change"
        rows.append(GateRow(r, tol, status, [p for p in problems if p.startswith(r.benchmark + ":")]))
    only_one = sorted(set(baseline.benchmarks) ^ set(candidate.benchmarks))
    for r in rows:
        log.info("%s: %s delta %+.2f %s p=%.3g (Holm %.3g)", r.result.benchmark, r.status, r.result.delta,
                 r.result.unit, r.result.p_value, r.result.p_adjusted)
    return Comparison(baseline, candidate, alpha, rows, problems, only_one)


# ---- reports for CI systems -----------------------------------------------------------
def _fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def table_rows(cmp: Comparison) -> list[list[str]]:
    rows = []
    for g in cmp.rows:
        r = g.result
        rows.append([r.benchmark, r.test, str(r.n), f"{r.mean_a:.2f}", f"{r.mean_b:.2f}",
                     f"{r.delta:+.2f} {r.unit}", f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
                     f"{r.b_only_a}/{r.b_only_b}", _fmt_p(r.p_value), _fmt_p(r.p_adjusted),
                     f"{g.tolerance:g}", g.status])
    return rows


TABLE_HEADER = ["benchmark", "test", "n", "baseline", "candidate", "delta", "95% CI", "worse/better",
                "p", "p (Holm)", "tolerance", "status"]


def to_markdown(cmp: Comparison) -> str:
    verdict = "FAIL: significant regression" if cmp.failed else "PASS"
    lines = [f"### harness gate: {verdict}", "",
             f"baseline `{cmp.baseline.run_id}` ({cmp.baseline.model}) vs candidate `{cmp.candidate.run_id}` "
             f"({cmp.candidate.model}); alpha {cmp.alpha}, Holm-corrected across {len(cmp.rows)} benchmark(s).",
             "", "| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    for row in table_rows(cmp):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    if cmp.mismatches:
        lines += ["", "**Compared despite mismatches (--allow-mismatch):**"] + [f"- {m}" for m in cmp.mismatches]
    if cmp.only_one:
        lines += ["", f"Not compared (run by one side only): {', '.join(cmp.only_one)}"]
    return "\n".join(lines) + "\n"


def to_junit(cmp: Comparison) -> str:
    suite = ET.Element("testsuite", name="harness gate", tests=str(len(cmp.rows)),
                       failures=str(sum(r.failed for r in cmp.rows)), errors="0",
                       skipped=str(len(cmp.only_one)))
    for g in cmp.rows:
        r = g.result
        case = ET.SubElement(suite, "testcase", classname=f"gate.{cmp.candidate.model}", name=r.benchmark)
        msg = (f"{r.benchmark}: delta {r.delta:+.2f} {r.unit} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] "
               f"({r.test}, n={r.n}, p={_fmt_p(r.p_value)}, Holm p={_fmt_p(r.p_adjusted)}, "
               f"tolerance {g.tolerance:g})")
        if g.failed:
            ET.SubElement(case, "failure", message=msg, type="regression").text = msg
        else:
            ET.SubElement(case, "system-out").text = f"{g.status}: {msg}"
    for name in cmp.only_one:
        case = ET.SubElement(suite, "testcase", classname=f"gate.{cmp.candidate.model}", name=name)
        ET.SubElement(case, "skipped", message="run by only one of the two runs")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def to_json(cmp: Comparison, with_items: bool = False) -> dict[str, Any]:
    rows = []
    for g in cmp.rows:
        d = g.result.to_dict()
        if not with_items:
            d.pop("changed")
        rows.append({**d, "tolerance": g.tolerance, "status": g.status})
    return {"baseline": cmp.baseline.run_id, "candidate": cmp.candidate.run_id, "alpha": cmp.alpha,
            "failed": cmp.failed, "benchmarks": rows, "mismatches": cmp.mismatches, "not_compared": cmp.only_one}
