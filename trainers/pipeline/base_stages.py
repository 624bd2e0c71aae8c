"""The stage kinds the recipe's sections build: the base fusion loop as registry entries.

    specialist    `specialists:`  SFT each specialist source     -> specialist:<name>, candidate <name>
    data          `fusion:`       phase-1 fusion data            -> data
    sft           `sft:`          SFT of the target              -> sft, candidate <name>-sft
    preference    `preference:`   (WRPO: data-target first) the DPO family or WRPO from the SFT candidate
                                                                 -> preference, candidate <name>-<method>
    eval          `evaluate:`     the suite on every source, the target and every candidate -> eval:<model>
    leaderboard   `leaderboard:`  HTML of all of them             -> leaderboard
    gate          `gate:`         the gated candidate vs the target -> gate

`recipe_graph` lists a recipe's stage specs in build order: the section kinds before the
`stages:` entries (which may start from `sft` or `preference`), the entries, then the section
kinds that evaluate, show and gate every candidate made before them. A section kind is in the
graph when its section is in the recipe (not None); each is one `StageKind` with `section` set,
so a `stages:` entry cannot name it. The runner (trainers/pipeline/run.py) builds every spec the
same way and hashes, skips and resumes the stages whatever made them. Stage bodies stay
`Pipeline` methods (they run `harness` subprocesses and are replaced by recorders in tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.pipeline.config import PipelineRecipe, fusion_recipe, trainer_config
from trainers.pipeline.stages import Stage, StageKind, StageSpec, files_hash, register_stage_kind, slug


class SectionStage(StageSpec):
    """The spec of a section kind: everything it needs is in the recipe (`pipe.recipe`)."""


def _sources(r: PipelineRecipe) -> list[dict[str, Any]]:
    return [dict(x) for x in (r.fusion or {}).get("sources", [])]


def _specialist_names(pipe) -> set[str]:
    return {s.name for s in pipe.recipe.specialists}


def _model_dep(pipe, model: str) -> list[str]:
    return [f"specialist:{model}"] if model in _specialist_names(pipe) else []


def _model_fp(pipe, model: str) -> str:
    # A specialist's weights reach the key through the stage's inputs (its outputs).
    return f"<{model} from its stage>" if model in _specialist_names(pipe) else pipe._fingerprint(model)


def build_specialists(pipe, spec: SectionStage) -> None:
    r = pipe.recipe
    for s in r.specialists:
        sdir = pipe.workdir / "specialists" / slug(s.name)
        base_model = s.model or r.target
        cfg = trainer_config(s.train, "sft", pipe.base, model=base_model, data=str(sdir / "sft.jsonl"),
                             output_dir=str(sdir / "model"), name=s.name, where=f"specialists[{s.name}].train")
        pipe.add(Stage(
            name=f"specialist:{s.name}", deps=[],
            spec={"data": s.data.model_dump(), "config": cfg, "base_model": lambda m=base_model: _model_fp(pipe, m)},
            run=lambda resume, s=s, sdir=sdir, cfg=cfg: pipe._run_specialist(s, sdir, cfg, resume),
            outputs=lambda s=s: pipe._candidate_outputs(s.name),
            describe=f"SFT {base_model} -> {s.name}"))


def build_data(pipe, spec: SectionStage) -> None:
    r = pipe.recipe
    sources = _sources(r)
    out = pipe.workdir / "data"
    fusion = fusion_recipe(r, str(out), None, pipe.data_dir, pipe.base)
    pipe.add(Stage(
        name="data", deps=[d for x in sources for d in _model_dep(pipe, x["model"])],
        spec={"fusion": fusion, "sources": lambda: {x["name"]: _model_fp(pipe, x["model"]) for x in sources}},
        run=lambda resume: pipe._run_fusion(fusion, out, needs=pipe._phase1_needs()),
        outputs=lambda: files_hash(out / "sft.jsonl", out / "dpo.jsonl",
                                   *([out / "fuse.jsonl"] if "fuse" in pipe._phase1_needs() else [])),
        describe=f"fusion data: {len(sources)} sources sample and are scored"))


def build_sft(pipe, spec: SectionStage) -> None:
    r = pipe.recipe
    name, stage_dir = f"{r.name}-sft", pipe.workdir / "sft"
    cfg = trainer_config(r.sft, "sft", pipe.base, model=r.target, data=str(pipe.workdir / "data" / "sft.jsonl"),
                         output_dir=str(stage_dir / "model"), name=name, where="sft")
    pipe.add(Stage(
        name="sft", deps=["data"], spec={"config": cfg, "target": lambda: _model_fp(pipe, r.target)},
        run=lambda resume: pipe._train("sft", cfg, stage_dir, resume),
        outputs=lambda: pipe._candidate_outputs(name), describe=f"SFT {r.target} -> {name}"))
    pipe.add_candidate("sft", name)


def build_preference(pipe, spec: SectionStage) -> None:
    """From the SFT candidate: the DPO family on phase-1 pairs, or WRPO on the quadruples of a
    second data phase in which the SFT candidate samples the same prompts."""
    r, wd = pipe.recipe, pipe.workdir
    method, sft_name = r.method, f"{r.name}-sft"
    data, deps = wd / "data" / "dpo.jsonl", ["sft", "data"]
    if r.needs_target_samples:
        out = wd / "data-target"
        fusion = fusion_recipe(r, str(out), sft_name, pipe.data_dir, pipe.base)
        pipe.add(Stage(
            name="data-target", deps=["data", "sft"], spec={"fusion": fusion},
            run=lambda resume: pipe._run_fusion(fusion, out, needs=["wrpo"]),
            outputs=lambda: files_hash(out / "wrpo.jsonl"),
            describe=f"fusion data, phase 2: {sft_name} samples its own y_wt / y_l"))
        data, deps = out / "wrpo.jsonl", ["sft", "data-target"]
    name, stage_dir = f"{r.name}-{method}", wd / method
    cfg = trainer_config(r.preference, method, pipe.base, model=sft_name, data=str(data),
                         output_dir=str(stage_dir / "model"), name=name, where="preference")
    pipe.add(Stage(
        name="preference", deps=deps, spec={"config": cfg},
        run=lambda resume: pipe._train(method, cfg, stage_dir, resume),
        outputs=lambda: pipe._candidate_outputs(name), describe=f"{method} {sft_name} -> {name}"))
    pipe.add_candidate("preference", name)


def _evaluated_sources(r: PipelineRecipe) -> list[dict[str, Any]]:
    """The fusion sources; without a `fusion:` section (a merge-only recipe, FuseO1's shape:
    sources -> merge -> evaluate) the specialists, which are then what the stages fuse."""
    return _sources(r) if r.fusion is not None else [{"name": s.name, "model": s.name} for s in r.specialists]


def build_eval(pipe, spec: SectionStage) -> None:
    """Each distinct model once (the target is often also a source), one leaderboard row per role."""
    r, ev = pipe.recipe, pipe.recipe.evaluate
    rows: list[tuple[str, str, str]] = [(x["name"], x["model"], "source") for x in _evaluated_sources(r)]
    rows.append((f"{r.target} (target)", r.target, "target"))
    rows += [(name, name, "candidate") for _, name in pipe.candidates]
    done: dict[str, Path] = {}
    for label, model, role in rows:
        if model not in done:
            out = done[model] = pipe.workdir / "eval" / slug(model)
            producer = next((k for k, n in pipe.candidates if n == model), None)
            pipe.add(Stage(
                name=f"eval:{model}", deps=[producer] if producer else _model_dep(pipe, model),
                spec={"evaluate": ev.model_dump(), "model": model,
                      "fingerprint": (lambda m=model: _model_fp(pipe, m)) if not producer else None},
                run=lambda resume, m=model, o=out: pipe._run_eval(m, o),
                outputs=lambda o=out: files_hash(o / "results.json"),
                describe=f"{ev.suite} on {model}"))
        pipe.evals.append({"label": label, "model": model, "role": role, "dir": done[model]})


def _eval_dirs(pipe) -> dict[str, Path]:
    """model -> its eval dir, in evaluation order (one per distinct model)."""
    return {e["model"]: e["dir"] for e in pipe.evals}


def build_leaderboard(pipe, spec: SectionStage) -> None:
    r = pipe.recipe
    if not r.leaderboard.enabled:
        return
    out = pipe.workdir / "leaderboard"
    # the stage whose stats.json the leaderboard shows (where the training answers came from)
    stats = ("data-target" if r.needs_target_samples else "data") if r.fusion is not None else None
    pipe.add(Stage(
        name="leaderboard", deps=[*(f"eval:{m}" for m in _eval_dirs(pipe)), *([stats] if stats else [])],
        spec={"leaderboard": r.leaderboard.model_dump(), "skipped": pipe.skipped,
              "evals": [{k: str(v) for k, v in e.items()} for e in pipe.evals]},
        run=lambda resume: pipe._run_leaderboard(out, pipe.workdir / stats if stats else None),
        outputs=lambda: files_hash(out / "index.html", out / "fusion.html"),
        describe="leaderboard: candidates vs target vs sources, and the fusion view"))


def build_gate(pipe, spec: SectionStage) -> None:
    r = pipe.recipe
    if not r.gate.enabled:
        return
    gated = r.gate.candidate or (pipe.candidates[-1][0] if pipe.candidates else None)
    if gated in pipe.skipped:
        pipe.skipped["gate"] = f"its candidate's stage {gated} was skipped"
        return
    if gated is None:  # every `stages:` entry was skipped and no section made a candidate
        pipe.skipped["gate"] = "no candidate was built"
        return
    cand, dirs, gate_file = dict(pipe.candidates)[gated], _eval_dirs(pipe), pipe.workdir / "gate" / "gate.json"
    pipe.add(Stage(
        name="gate", deps=[f"eval:{cand}", f"eval:{r.target}"],
        spec={"gate": r.gate.model_dump(), "candidate": cand, "target": r.target},
        run=lambda resume: pipe._run_gate(dirs[r.target], dirs[cand], gate_file),
        outputs=lambda: files_hash(gate_file),
        describe=f"gate: {cand} vs {r.target}"))


# (kind, recipe section, build), in build order; the `stages:` entries go between BEFORE and AFTER
BEFORE = (("specialist", "specialists", build_specialists), ("data", "fusion", build_data),
          ("sft", "sft", build_sft), ("preference", "preference", build_preference))
AFTER = (("eval", "evaluate", build_eval), ("leaderboard", "leaderboard", build_leaderboard),
         ("gate", "gate", build_gate))
for _kind, _section, _build in (*BEFORE, *AFTER):
    register_stage_kind(StageKind(_kind, SectionStage, _build, f"built by the recipe's `{_section}:` section",
                                  section=_section))


def recipe_graph(recipe: PipelineRecipe) -> list[StageSpec]:
    """Every stage spec of `recipe`, in build order: a section kind when its section is present."""
    def present(kinds) -> list[StageSpec]:
        return [SectionStage(kind=k) for k, section, _ in kinds if getattr(recipe, section) is not None]

    return [*present(BEFORE), *recipe.stage_specs, *present(AFTER)]
