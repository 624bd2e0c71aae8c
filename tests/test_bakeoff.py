"""The fusion bake-off recipes (trainers/recipes/bakeoff_cpu.yaml, bakeoff_tiny.yaml): they validate,
build one candidate per fusion family, each evaluated and on the leaderboard; a family whose
prerequisites are missing is left out with its reason while the others still run (stage bodies
replaced by the Recorder of tests/test_pipeline.py: no model is loaded here)."""

from __future__ import annotations

import json

import pytest

from harness.models import ALIASES, Alias
from tests.conftest import REPO
from tests.test_pipeline import Recorder, names
from trainers.pipeline.config import load_pipeline
from trainers.pipeline.run import Pipeline

RECIPES = REPO / "trainers" / "recipes"
# stage name -> the family it stands for (issue 17's list)
FAMILIES = {"sft": "SFT", "preference": "SFT→WRPO", "dpo": "SFT→DPO", "fuse_sft": "FuseSFT",
            "fuse_po": "FuseSFT→FusePO", "infifpo": "SFT→InfiFPO", "distill-unified": "distill_ce unified",
            "distill-pair-math": "distill_ce pairwise", "distill-pair-gemma": "distill_ce pairwise",
            "uld": "ULD", "gld": "GLD", "sce-pairwise": "pairwise distill_ce + SCE",
            "sce-sources": "SCE merge of the sources"}


def _pipe(recipe: str, tmp_path, rec: Recorder) -> Pipeline:
    r, base = load_pipeline(RECIPES / recipe, {"workdir": str(tmp_path / "work")})
    return rec.install(Pipeline(r, base, str(tmp_path / "store.sqlite"), data_dir=str(tmp_path), progress=False))


@pytest.mark.parametrize("recipe", ["bakeoff_cpu.yaml", "bakeoff_tiny.yaml"])
def test_bakeoff_recipe_validates_and_builds_every_family(recipe, tmp_path):
    pipe = _pipe(recipe, tmp_path, Recorder())
    assert [stage for stage, _ in pipe.candidates] == list(FAMILIES)
    assert pipe.skipped == {}
    stages = {s.name: s for s in pipe.stages}
    evaluated = {e["model"] for e in pipe.evals}
    for _, cand in pipe.candidates:  # every candidate is evaluated and on the leaderboard
        assert f"eval:{cand}" in stages and cand in evaluated
    assert {"specialist:smollm2-135m-math", "data", "data-target", "distill", "leaderboard", "gate"} <= set(stages)
    assert stages["fuse_po"].deps == ["data", "fuse_sft"]  # FuseSFT -> FusePO
    assert stages["sce-pairwise"].deps == ["distill-pair-math", "distill-pair-gemma"]
    # FuseO1 style: two specialists, neither the target (the target's task vector is zero, so a
    # merge with it returned the other model unchanged)
    assert stages["sce-sources"].deps == ["specialist:smollm2-135m-math", "specialist:smollm2-135m-math-b"]
    teacher = stages["distill"].spec["recipe"]
    assert [s["model"] for s in teacher["sources"]] == ["smollm2-135m-math", "gemma3-270m"]  # cross-tokenizer
    assert pipe.recipe.evaluate.benchmarks == ["gsm8k", "mbpp-plus"]


def test_a_family_with_missing_prerequisites_is_skipped_with_its_reason(tmp_path, monkeypatch):
    """No cross-tokenizer source installed: the teacher stage (and the merge of its pairwise
    candidates) is left out, said in pipeline.json and on the leaderboard; the rest runs."""
    monkeypatch.setitem(ALIASES, "gemma3-270m", Alias(package="no_such_gemma_package", gguf_file="x.gguf",
                                                       description="missing for the test", chat=False))
    rec = Recorder()
    pipe = _pipe("bakeoff_tiny.yaml", tmp_path, rec)
    assert set(pipe.skipped) == {"distill", "sce-pairwise"}
    assert "no_such_gemma_package" in pipe.skipped["distill"] and pipe.skipped["distill"].startswith("teacher: ")
    assert "distill-pair-math" in pipe.skipped["sce-pairwise"]
    kept = [stage for stage, _ in pipe.candidates]
    assert kept == [s for s in FAMILIES if not s.startswith(("distill", "uld", "gld", "sce-pairwise"))]
    assert not any(s.name.startswith(("distill", "eval:bakeoff-tiny-distill")) for s in pipe.stages)
    pipe.run()
    assert "leaderboard" in names(rec) and "sce-sources" in names(rec)
    record = json.loads((tmp_path / "work" / "pipeline.json").read_text())
    assert record["skipped"] == pipe.skipped
    leaderboard = next(s for s in pipe.stages if s.name == "leaderboard")
    assert leaderboard.spec["skipped"] == pipe.skipped  # a change in what was skipped rebuilds the page


def test_gate_on_a_skipped_candidate_is_skipped_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setitem(ALIASES, "gemma3-270m", Alias(package="no_such_gemma_package", gguf_file="x.gguf",
                                                       description="missing for the test", chat=False))
    r, base = load_pipeline(RECIPES / "bakeoff_tiny.yaml", {"workdir": str(tmp_path / "work"),
                                                            "gate": {"candidate": "sce-pairwise"}})
    pipe = Recorder().install(Pipeline(r, base, str(tmp_path / "store.sqlite"), data_dir=str(tmp_path),
                                       progress=False))
    assert "gate" not in {s.name for s in pipe.stages}
    assert pipe.skipped["gate"] == "its candidate's stage sce-pairwise was skipped"


def test_trained_candidates_record_their_tokens_and_seconds(embedded_model_dir, tmp_path, store):
    """The fusion view's cost columns: the loop records the non-padding tokens it trained on
    (the sum of the batches' attention masks, the same count tokens_per_s is made of)."""
    from tests.test_trainer import cfg_for, write_jsonl, wrpo_rows
    from tests.trainer_helpers import make_tiny_model
    from trainers.loop import train

    model = make_tiny_model(embedded_model_dir, tmp_path / "tiny")
    data = write_jsonl(tmp_path / "w.jsonl", wrpo_rows(4))
    res = train(cfg_for(tmp_path, model, data, max_steps=2, name="tiny-cost"), store, progress=False)
    info = store.get_model("tiny-cost").info
    assert info["steps"] == 2 and info["train_seconds"] >= 0
    # 2 steps x batch 2 WRPO rows, each row's three responses with their prompt: at least 4 x 3 x 8 tokens
    assert 4 * 3 * 8 < info["train_tokens"] <= 2 * 2 * 3 * 128
    assert json.loads((res.output_dir / "train_info.json").read_text())["train_tokens"] == info["train_tokens"]


def test_the_leaderboard_stage_writes_the_fusion_view_with_costs_and_skipped_stages(tmp_path, monkeypatch):
    """The real leaderboard stage body on constructed runs (one per evaluated model, as
    `harness run --out` writes them): fusion.html has every candidate that was built, the
    stage's seconds as its wall time, and the skipped stages with their reasons."""
    from tests.test_gate_helpers import binary_items, make_run

    monkeypatch.setitem(ALIASES, "gemma3-270m", Alias(package="no_such_gemma_package", gguf_file="x.gguf",
                                                       description="missing for the test", chat=False))
    pipe = _pipe("bakeoff_tiny.yaml", tmp_path, Recorder())
    for seed, e in enumerate({e["model"]: e for e in pipe.evals}.values()):
        results = make_run(pipe.store, f"run-{seed}", e["model"], {"gsm8k": binary_items(3, 0.5, seed),
                                                                   "mbpp-plus": binary_items(3, 0.5, seed + 50)})
        e["dir"].mkdir(parents=True, exist_ok=True)
        (e["dir"] / "results.json").write_text(json.dumps(results))
        for bench, items in pipe.store.get_scores(f"run-{seed}").items():
            (e["dir"] / f"{bench}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in items.values()))
    pipe.status_dir.mkdir(parents=True)
    (pipe.status_dir / "fuse_po.json").write_text(json.dumps({"key": "k", "seconds": 12.5}))
    out = tmp_path / "work" / "leaderboard"
    pipe._run_leaderboard(out, tmp_path / "work" / "data")
    page = (out / "fusion.html").read_text()
    assert page.count("<tr data-candidate=") == len(pipe.candidates) == 7
    fuse_po = page.split('data-candidate="bakeoff-tiny-fuse_po"')[1].split("</tr>")[0]
    assert 'data-sort="12.5"' in fuse_po
    assert 'data-stage="distill"' in page and "no_such_gemma_package" in page
    index = (out / "index.html").read_text()
    assert "Skipped distill: teacher: " in index
    # the two pages link each other: the index's header names the view, the view links back
    assert '<a href="fusion.html">Fusion view: 7 candidates' in index
    assert f"skipped stages: {len(pipe.skipped)}" in index
    assert '<a href="index.html">' in page
