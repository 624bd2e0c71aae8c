"""`harness pipeline RECIPE.yaml`: the whole fusion loop as resumable, hashed stages.

    specialist:<name>  SFT a source before fusion (e.g. a math specialist of the target)
    data               fusion data, phase 1: sources sampled and scored -> SFT rows, DPO pairs
    sft                the target fine-tuned on the SFT rows -> candidate <name>-sft
    data-target        phase 2 (WRPO only): the SFT candidate samples the same prompts -> quadruples
    preference         WRPO / DPO family from the SFT candidate -> candidate <name>-<method>
    <stages[].name>    each `stages:` entry, built by its kind's registry entry (trainers/pipeline/
                       stages.py): fuse_sft, fuse_po, infifpo, ... -> candidate <name>-<stage name>
    eval:<model>       the suite on every source, the target and every candidate
    leaderboard        HTML: candidates vs target vs sources, with the fusion data's source stats
    gate               paired-significance gate, the last candidate vs the target

Why stages are hashed: each stage's key is a hash of what defines it (its resolved config)
and of its inputs' *outputs* (data file hashes, model fingerprints, results.json hashes).
A stage whose key and outputs match its last finished run is skipped, so a re-run after a
kill, or after editing only the gate section, redoes only what changed. Inside a stage,
nothing is lost either: generations and judgments are in the store (data and eval stages
resume from it) and training resumes from its last checkpoint when the key is unchanged.

Why stages run as `harness` subprocesses: vLLM wants its own main process, training memory
is returned to the OS between stages, and each stage is exactly the command a user would
type (printed before it runs), so any stage can be reproduced or debugged by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError
from trainers.pipeline.base_stages import recipe_graph
from trainers.pipeline.config import PipelineRecipe, suite_path, trainer_config
from trainers.pipeline.peak_rss import PR_SET_PDEATHSIG, own_peak_mib, prctl, reset_own_peak, run_measured
from trainers.pipeline.stages import STAGE_KINDS, Stage, data_files_needed, slug

log = logging.getLogger(__name__)


class StageFailed(HarnessError):
    """A stage's command failed; everything it finished is kept and the next run resumes."""


class StageSkipped(HarnessError):
    """A `stages:` entry's prerequisites are missing (a model that no stage makes and that is not
    available here): the entry is left out with this reason, the other families still run."""


@dataclass
class StageRecord:
    name: str
    status: str  # cached | ran | planned
    seconds: float = 0.0
    key: str = ""
    peak_rss_mib: float | None = None  # the stage's largest process (peak_rss.py); None: not measured


@dataclass
class PipelineResult:
    workdir: Path
    stages: list[StageRecord] = field(default_factory=list)
    leaderboard: Path | None = None
    gate: dict[str, Any] | None = None


def _sha_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _die_with_parent() -> None:
    """A stage must not outlive a killed pipeline (a second run would race an orphaned trainer
    for the same output dir): Linux sends it SIGTERM when the pipeline process dies."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # not Linux: Ctrl-C still reaches the process group


def _unavailable(model: str, store) -> str | None:
    """Why `model` (a `from:` / source that no stage makes) cannot be had here, or None. Only the
    cheap checks: an alias whose package is not installed, a name that is no model anywhere."""
    import importlib.util

    from harness.models import ALIASES

    if model in ALIASES:
        pkg = ALIASES[model].package
        return None if importlib.util.find_spec(pkg) else \
            f"model {model!r} needs the package {pkg} (pip install {pkg.replace('_', '-')})"
    if model.startswith("openai:") or Path(model).expanduser().is_dir() or model.count("/") == 1:
        return None
    if store is not None and store.get_model(model) is not None:
        return None
    return f"model {model!r} is not available: no stage makes it (was its stage skipped?) and it is no alias, " \
           "store model or directory"


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Pipeline:
    def __init__(self, recipe: PipelineRecipe, base: Path, store_path: str, data_dir: str | None = None,
                 progress: bool = True, say: Callable[[str], None] | None = None):
        from harness.store import Store

        self.recipe, self.base, self.store_path = recipe, base, store_path
        self.data_dir = recipe.data_dir or data_dir or os.environ.get("HARNESS_DATA_DIR")
        self.workdir = Path(recipe.workdir or f".harness/pipeline/{recipe.name}")
        self.progress = progress
        self.say = say or (lambda msg: log.info("%s", msg))
        self.store = Store(store_path)
        self.status_dir = self.workdir / "stages"
        self.stages: list[Stage] = []
        self.outputs: dict[str, dict[str, str]] = {}
        self._child_peak_mib: float | None = None  # max over the running stage's `harness` subprocesses
        self.evals: list[dict[str, Any]] = []  # {label, model, role, dir}
        self.candidates: list[tuple[str, str]] = []  # (producing stage, candidate name), in training order
        self.skipped: dict[str, str] = {}  # `stages:` entry -> why it was left out (StageSkipped)
        self._build()

    # ---- what stage kinds build with (trainers/pipeline/stages.py) -----------------------------
    def add(self, stage: Stage) -> None:
        self.stages.append(stage)

    def add_candidate(self, stage_name: str, candidate: str) -> None:
        """A model a stage makes: evaluated, on the leaderboard, and gateable by its stage name."""
        self.candidates.append((stage_name, candidate))

    def start_model(self, start: str) -> tuple[str, list[str]]:
        """(model spec, producing stage) for a stage's `from:`: target, sft, another stage or a model."""
        if start == "target":
            return self.recipe.target, []
        produced = dict(self.candidates)
        if start in produced:
            return produced[start], [start]
        if start in {s.name for s in self.recipe.specialists}:
            return start, [f"specialist:{start}"]
        missing = _unavailable(start, self.store)
        if missing:
            raise StageSkipped(missing)
        return start, []

    def model_fp(self, model: str) -> str:
        return self._fingerprint(model)

    def trainer_config(self, section: dict[str, Any], method: str, **links: str) -> dict[str, Any]:
        return trainer_config(section, method, self.base, **links)

    def candidate_outputs(self, name: str) -> dict[str, str] | None:
        return self._candidate_outputs(name)

    def train(self, method: str, cfg: dict[str, Any], stage_dir: Path, resume: bool) -> None:
        self._train(method, cfg, stage_dir, resume)

    # ---- helpers ----------------------------------------------------------------------------
    def _harness(self, *args: str) -> None:
        """Run one `harness` command the way a user would; its failure stops the pipeline."""
        cmd = [sys.executable, "-m", "harness.cli", *args, "--store", self.store_path]
        if self.data_dir:
            cmd += ["--data-dir", str(self.data_dir)]
        if not self.progress and args[0] in ("run", "train", "fuse"):
            cmd.append("--no-progress")
        self.say("$ harness " + " ".join(cmd[3:]))
        self.status_dir.mkdir(parents=True, exist_ok=True)
        rc, peak_mib = run_measured(cmd, self.status_dir / ".peak_kib", preexec_fn=_die_with_parent)
        if peak_mib is not None:
            self._child_peak_mib = max(self._child_peak_mib or 0.0, peak_mib)
        if rc != 0:
            raise StageFailed(f"`harness {' '.join(args[:2])}` exited with {rc}; everything it finished is kept "
                              "(store, checkpoints): run the same `harness pipeline` command again to resume")

    def _fingerprint(self, model_spec: str) -> str:
        """Fingerprint of a model that is not produced by a stage (resolving converts an alias once)."""
        from harness.models import resolve_model

        return resolve_model(model_spec, self.store).fingerprint

    def _candidate_outputs(self, name: str) -> dict[str, str] | None:
        rec = self.store.get_model(name)
        if rec is None or not rec.path or not Path(rec.path).is_dir():
            return None
        return {"fingerprint": rec.fingerprint}

    def _write_trainer_config(self, stage_dir: Path, cfg: dict[str, Any]) -> Path:
        import yaml

        stage_dir.mkdir(parents=True, exist_ok=True)
        path = stage_dir / "config.yaml"
        path.write_text("# written by `harness pipeline`; the stage's resolved trainer config\n"
                        + yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}, sort_keys=False))
        return path

    def _train(self, method: str, cfg: dict[str, Any], stage_dir: Path, resume: bool) -> None:
        from trainers.loop import latest_checkpoint

        path = self._write_trainer_config(stage_dir, cfg)
        can_resume = resume and latest_checkpoint(Path(cfg["output_dir"])) is not None
        self._harness("train", method, "--config", str(path), "--resume" if can_resume else "--overwrite")

    # ---- the stage graph --------------------------------------------------------------------
    def _build(self) -> None:
        """Each spec of the recipe's graph built by its kind's registry entry (base_stages.py: the
        sections' kinds; stages.py: the `stages:` entries' kinds)."""
        for spec in recipe_graph(self.recipe):
            kind = STAGE_KINDS[spec.kind]
            if kind.section:
                kind.build(self, spec)
                continue
            n_stages, n_candidates = len(self.stages), len(self.candidates)
            try:
                kind.build(self, spec)
            except StageSkipped as e:  # leave the whole entry out; the other families still run
                del self.stages[n_stages:], self.candidates[n_candidates:]
                self.skipped[spec.stage_name] = f"{spec.kind}: {e}"
                log.warning("stage %s skipped: %s", spec.stage_name, e)

    def _add(self, stage: Stage) -> None:
        self.add(stage)

    # ---- stage bodies -----------------------------------------------------------------------
    def _run_specialist(self, s, sdir: Path, cfg: dict[str, Any], resume: bool) -> None:
        sdir.mkdir(parents=True, exist_ok=True)
        if s.data.builtin == "gsm8k-gold":
            from trainers import gsm8k_data

            if not self.data_dir:
                raise UsageError(f"specialist {s.name!r} uses GSM8K train: set data_dir in the recipe, --data-dir "
                                 "or $HARNESS_DATA_DIR (the folder holding gsm8k/train.jsonl)")
            rows = gsm8k_data.read_train(Path(self.data_dir))[s.data.offset:s.data.offset + s.data.rows]
            gsm8k_data.write_jsonl(sdir / "sft.jsonl", gsm8k_data.build_sft(rows))
        else:
            src = Path(s.data.path) if Path(s.data.path).is_absolute() else self.base / s.data.path
            if not src.is_file():
                raise UsageError(f"specialist {s.name!r}: data file {src} does not exist")
            (sdir / "sft.jsonl").write_bytes(src.read_bytes())
        self._train("sft", cfg, sdir, resume)

    def _phase1_needs(self) -> list[str]:
        """The phase-1 files a later stage trains on: SFT rows, DPO pairs for the DPO family, and
        whatever the `stages:` entries read (fuse.jsonl for FuseRL)."""
        needs = ["sft"] + (["dpo"] if self.recipe.preference is not None and not self.recipe.needs_target_samples
                           else [])
        return needs + sorted(data_files_needed(self.recipe.stage_specs) - set(needs))

    def _run_fusion(self, fusion: dict[str, Any], out: Path, needs: list[str]) -> None:
        import yaml

        out.mkdir(parents=True, exist_ok=True)
        path = out / "recipe.yaml"
        path.write_text("# written by `harness pipeline`: this phase's fusion recipe\n"
                        + yaml.safe_dump(fusion, sort_keys=False))
        self._harness("fuse", "data", "--recipe", str(path))
        # An empty training set would fail the next stage with a bare "no usable rows" and
        # invite a re-run that selects the same nothing: say why, and what changes it.
        report = json.loads((out / "report.json").read_text())
        for kind in needs:
            if report["counts"].get(kind):
                continue
            drops = report["selection"].get(f"{kind}_dropped") or {}
            why = ", ".join(f"{n} {reason}" for reason, n in drops.items()) or "no prompts"
            more = "fusion.target.n (the SFT candidate's samples per prompt), " if kind == "wrpo" else ""
            raise StageFailed(
                f"fusion data in {out}: 0 {kind.upper()} rows from {report['counts'].get('prompts', 0)} prompts "
                f"({why}). Running again selects the same rows; give the selection more to choose from: "
                f"{more}more prompts (fusion.pools[].limit), more samples (fusion.sampling.n) or longer answers "
                "(fusion.sampling.max_tokens)")

    def _run_eval(self, model: str, out: Path) -> None:
        ev = self.recipe.evaluate
        args = ["run", "suite", suite_path(self.recipe, self.base), "--model", model, "--backend", ev.backend, "--out", str(out)]
        if ev.benchmarks:
            args += ["--benchmarks", ",".join(ev.benchmarks)]
        if ev.limit:
            args += ["--limit", str(ev.limit)]
        if ev.max_tokens:
            args += ["--max-tokens", str(ev.max_tokens)]
        self._harness(*args, *ev.args)

    def _run_leaderboard(self, out: Path, stats_dir: Path | None) -> None:
        from harness.suites_config import load_suite
        from leaderboards.build import build_leaderboard
        from leaderboards.fusion_view import build_fusion_view, index_link, write_fusion_view
        from leaderboards.render import write_site
        from leaderboards.spec import LeaderboardSpec, ModelEntry

        r = self.recipe
        target_label = next(e["label"] for e in self.evals if e["role"] == "target")
        entries = [ModelEntry(results=str(e["dir"]), role=e["role"], label=e["label"],
                              target=target_label if e["role"] == "candidate" else None) for e in self.evals]
        spec = LeaderboardSpec(name=r.name, title=r.leaderboard.title or f"{r.name}: fusion pipeline",
                               suite=load_suite(suite_path(r, self.base)).name, benchmarks=r.evaluate.benchmarks,
                               models=entries,
                               description=f"Written by `harness pipeline` from {self.workdir}." + "".join(
                                   f" Skipped {k}: {v}." for k, v in self.skipped.items()))
        stats = [stats_dir] if stats_dir is not None and (stats_dir / "stats.json").is_file() else []
        lb = build_leaderboard(spec, self.store, fusion_stats=stats)
        wall = {name: self._stage_seconds(stage) for stage, name in self.candidates}
        view = build_fusion_view(lb, self.store, alpha=r.gate.alpha, n_boot=r.gate.n_boot,
                                 wall_s={k: v for k, v in wall.items() if v is not None}, skipped=self.skipped)
        write_site(lb, out, self.store, links=[index_link(view)])
        write_fusion_view(view, out)
        for w in lb.warnings:
            log.warning("leaderboard: %s", w)

    def _stage_seconds(self, stage: str) -> float | None:
        path = self.status_dir / f"{slug(stage)}.json"
        return json.loads(path.read_text()).get("seconds") if path.is_file() else None

    def _run_gate(self, baseline_dir: Path, candidate_dir: Path, gate_file: Path) -> None:
        from harness.gate import compare, load_run, to_json, to_markdown

        g = self.recipe.gate
        cmp = compare(load_run(str(baseline_dir)), load_run(str(candidate_dir)), alpha=g.alpha,
                      benchmarks=g.benchmarks, n_boot=g.n_boot)
        out = to_json(cmp)
        out["passed"] = not any(row.failed for row in cmp.rows)
        gate_file.parent.mkdir(parents=True, exist_ok=True)
        (gate_file.parent / "gate.md").write_text(to_markdown(cmp), encoding="utf-8")
        _write_json(gate_file, out)

    # ---- running ------------------------------------------------------------------------------
    def _stage_peak_mib(self, own_measured: bool) -> float | None:
        """The stage's peak resident memory: its largest `harness` subprocess (each measured on its
        own), or for a stage done in this process (leaderboard, gate), this process since it began."""
        peak = self._child_peak_mib if self._child_peak_mib is not None else \
            own_peak_mib() if own_measured else None
        return None if peak is None else round(peak, 1)

    def _key(self, stage: Stage) -> str:
        spec = {k: (v() if callable(v) else v) for k, v in stage.spec.items()}
        return _sha_json({"stage": stage.name, "spec": spec,
                          "inputs": {d: self.outputs.get(d) for d in stage.deps}})

    def _status_path(self, stage: Stage) -> Path:
        return self.status_dir / f"{slug(stage.name)}.json"

    def run(self, force: tuple[str, ...] = (), dry_run: bool = False) -> PipelineResult:
        unknown = [f for f in force if f != "all" and f not in {s.name for s in self.stages}]
        if unknown:
            from harness.errors import did_you_mean

            raise did_you_mean("stage", unknown[0], [s.name for s in self.stages] + ["all"])
        result = PipelineResult(workdir=self.workdir)
        n = len(self.stages)
        for i, stage in enumerate(self.stages, 1):
            key = self._key(stage)
            path = self._status_path(stage)
            status = json.loads(path.read_text()) if path.is_file() else {}
            forced = "all" in force or stage.name in force
            current = stage.outputs() if status.get("key") == key else None
            if not forced and current is not None and current == status.get("outputs"):
                self.outputs[stage.name] = current
                result.stages.append(StageRecord(stage.name, "cached", key=key))
                self.say(f"[{i}/{n}] {stage.name}: up to date ({stage.describe})")
                continue
            if dry_run:
                result.stages.append(StageRecord(stage.name, "planned", key=key))
                self.say(f"[{i}/{n}] {stage.name}: would run ({stage.describe})")
                for later in self.stages[i:]:
                    result.stages.append(StageRecord(later.name, "planned"))
                    self.say(f"[-/{n}] {later.name}: would run if its inputs change ({later.describe})")
                break
            resume = status.get("pending") == key and not forced
            _write_json(path, {"pending": key, "stage": stage.name, "started_at": time.time()})
            self.say(f"[{i}/{n}] {stage.name}: {'resuming' if resume else 'running'} ({stage.describe})")
            t0, self._child_peak_mib, own_measured = time.perf_counter(), None, reset_own_peak()
            stage.run(resume)
            outs = stage.outputs()
            if outs is None:
                raise StageFailed(f"stage {stage.name} finished but its outputs are missing")
            seconds = time.perf_counter() - t0
            peak = self._stage_peak_mib(own_measured)
            _write_json(path, {"key": key, "stage": stage.name, "outputs": outs, "seconds": round(seconds, 1),
                               "peak_rss_mib": peak, "finished_at": time.time()})
            self.outputs[stage.name] = outs
            result.stages.append(StageRecord(stage.name, "ran", seconds, key, peak))
            rss = "" if peak is None else f", peak RSS {peak / 1024:.2f} GiB"
            self.say(f"[{i}/{n}] {stage.name}: done in {seconds:.0f}s{rss}")
        lb = self.workdir / "leaderboard" / "index.html"
        result.leaderboard = lb if lb.is_file() else None
        gate = self.workdir / "gate" / "gate.json"
        result.gate = json.loads(gate.read_text()) if gate.is_file() and not dry_run else None
        _write_json(self.workdir / "pipeline.json", {
            "recipe": self.recipe.model_dump(), "stages": [s.__dict__ for s in result.stages], "skipped": self.skipped,
            "evals": [{k: str(v) for k, v in e.items()} for e in self.evals]})
        return result
