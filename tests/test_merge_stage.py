"""The pipeline's `merge` stage kind (trainers/merge/stage.py): recipe model names mapped to the
models stages make, hashed and skipped like every stage, and a real merge from the stage body."""

from __future__ import annotations

import re

import pytest
import yaml

from harness.errors import UsageError
from tests.test_pipeline import RECIPE, Recorder, names, pipeline, write
from trainers.pipeline.config import load_pipeline
from trainers.pipeline.run import Pipeline

MERGE = {"kind": "merge", "name": "sce",
         "config": {"merge_method": "sce_fuseai", "base_model": "target", "dtype": "float32",
                    "models": [{"model": "unit-math"}, {"model": "fuse_sft"}, {"model": "sft"}],
                    "parameters": {"select_topk": 1.0}}}
FUSE_MERGE = {**RECIPE, "stages": [{"kind": "fuse_sft", "train": {"max_steps": 1}}, MERGE],
              "gate": {"candidate": "sce"}}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_merge_stage_maps_recipe_names_to_the_models_stages_make(in_tmp):
    pipe = pipeline(in_tmp, FUSE_MERGE, Recorder())
    stage = next(s for s in pipe.stages if s.name == "sce")
    assert stage.deps == ["specialist:unit-math", "fuse_sft", "sft"]
    cfg = stage.spec["config"]
    assert cfg["base_model"] == "smollm2-135m-instruct"
    assert [m["model"] for m in cfg["models"]] == ["unit-math", "unit-fuse_sft", "unit-sft"]
    assert stage.spec["models"]() == {"smollm2-135m-instruct": "fp-smollm2-135m-instruct"}  # not stage-made
    assert "eval:unit-sce" in [s.name for s in pipe.stages]
    assert next(s for s in pipe.stages if s.name == "gate").deps == ["eval:unit-sce", "eval:smollm2-135m-instruct"]


def test_merge_stage_is_skipped_when_unchanged_and_reruns_when_its_config_changes(in_tmp):
    rec = Recorder()
    pipeline(in_tmp, FUSE_MERGE, rec).run()
    assert "sce" in names(rec)
    rec.ran.clear()
    pipeline(in_tmp, FUSE_MERGE, rec).run()
    assert names(rec) == []
    edited = {**FUSE_MERGE, "stages": [FUSE_MERGE["stages"][0],
                                       {**MERGE, "config": {**MERGE["config"], "parameters": {"select_topk": 0.1}}}]}
    pipeline(in_tmp, edited, rec).run()
    assert names(rec) == ["sce", "eval:unit-sce", "leaderboard", "gate"]


def test_merge_stage_needs_exactly_one_config(in_tmp):
    with pytest.raises(UsageError, match="exactly one of `config:`"):
        load_pipeline(write(in_tmp, {**RECIPE, "stages": [{"kind": "merge", "name": "m"}]}))


def test_merge_stage_body_merges_and_registers_the_candidate(in_tmp):
    pytest.importorskip("mergekit", reason="the `merge` extra (mergekit) is not installed")
    from tests.test_merge import _perturbed, _save_tiny  # here: that module skips without mergekit

    _save_tiny(in_tmp / "base")
    _perturbed(in_tmp / "base", in_tmp / "a", 1, {"model.layers.0.mlp.up_proj.weight": 0.1})
    stage_entry = {"kind": "merge", "name": "tiny", "options": {"copy_tokenizer": False},
                   "config": {"merge_method": "sce", "base_model": str(in_tmp / "base"), "dtype": "float32",
                              "models": [{"model": str(in_tmp / "a")}]}}
    r, base = load_pipeline(write(in_tmp, {**RECIPE, "stages": [stage_entry]}))
    pipe = Pipeline(r, base, str(in_tmp / "store.sqlite"), data_dir=str(in_tmp), progress=False)
    stage = next(s for s in pipe.stages if s.name == "tiny")
    assert stage.outputs() is None
    stage.run(False)
    assert stage.outputs() is not None
    # it ran as the command a user would type, from the config the stage wrote
    written = yaml.safe_load((pipe.workdir / "tiny" / "merge.yaml").read_text())
    assert written["base_model"] == str(in_tmp / "base") and written["merge_method"] == "sce"
    assert [p.parent for p in pipe.store.model_parents("unit-tiny")] == [str(in_tmp / "base"), str(in_tmp / "a")]


# ---- merge-only recipes (FuseO1's shape: sources -> SCE merge -> evaluate, no fusion data) -----
MERGE_ONLY = {"name": "fo", "target": "smollm2-135m-instruct",
              "specialists": [{"name": "fo-a", "data": {"builtin": "gsm8k-gold", "rows": 2}, "train": {"max_steps": 1}},
                              {"name": "fo-b", "data": {"builtin": "gsm8k-gold", "offset": 2, "rows": 2},
                               "train": {"max_steps": 1}}],
              "stages": [{"kind": "merge", "name": "sce",
                          "config": {"merge_method": "sce_fuseai", "base_model": "target", "dtype": "float32",
                                     "models": [{"model": "target"}, {"model": "fo-a"}, {"model": "fo-b"}]}}],
              "evaluate": {"suite": "math", "benchmarks": ["gsm8k"], "limit": 2, "backend": "hf"}}


def test_a_merge_only_recipe_builds_sources_merge_evaluation_leaderboard_and_gate(in_tmp):
    rec = Recorder()
    pipe = pipeline(in_tmp, MERGE_ONLY, rec)
    assert [s.name for s in pipe.stages] == [
        "specialist:fo-a", "specialist:fo-b", "sce", "eval:fo-a", "eval:fo-b", "eval:smollm2-135m-instruct",
        "eval:fo-sce", "leaderboard", "gate"]
    assert next(s for s in pipe.stages if s.name == "sce").deps == ["specialist:fo-a", "specialist:fo-b"]
    assert [(e["model"], e["role"]) for e in pipe.evals] == [  # the merged specialists are the sources
        ("fo-a", "source"), ("fo-b", "source"), ("smollm2-135m-instruct", "target"), ("fo-sce", "candidate")]
    assert set(next(s for s in pipe.stages if s.name == "leaderboard").deps) == {
        "eval:fo-a", "eval:fo-b", "eval:smollm2-135m-instruct", "eval:fo-sce"}  # no fusion data stage
    pipe.run()
    assert names(rec) == [s.name for s in pipe.stages]
    rec.ran.clear()
    pipeline(in_tmp, MERGE_ONLY, rec).run()
    assert names(rec) == []


@pytest.mark.parametrize("edit,message", [
    ({"stages": []}, "the recipe has nothing to fuse: give a `fusion:` section"),
    ({"sft": {"max_steps": 1}}, "`sft:` trains on the fusion data, and the recipe has no `fusion:` section"),
    ({"preference": {"method": "dpo"}}, "`preference:` trains on the fusion data"),
    ({"stages": [{"kind": "fuse_sft"}]}, "stages[0] (kind fuse_sft) trains on the fusion data, and the recipe has no "
                                         "`fusion:` section: add a `fusion:` section (docs/fusion.md) or remove the "
                                         "stage (kinds that need none: merge)"),
    ({"gate": {"candidate": "sft"}}, "gate.candidate must be sft, preference or a `stages` name (sce), got 'sft'"),
])
def test_without_fusion_only_stages_that_need_no_fusion_data_may_run(in_tmp, edit, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        load_pipeline(write(in_tmp, {**MERGE_ONLY, **edit}))


def test_a_fusion_recipe_without_an_sft_section_still_trains_the_sft_candidate(in_tmp):
    recipe = {k: v for k, v in RECIPE.items() if k not in ("sft", "preference")}
    pipe = pipeline(in_tmp, recipe, Recorder())
    assert "sft" in [s.name for s in pipe.stages] and pipe.recipe.sft == {}


def test_the_shipped_fuseo1_recipe_is_valid():
    from tests.conftest import REPO

    r, _ = load_pipeline(REPO / "trainers" / "recipes" / "fuseo1_cpu.yaml")
    assert r.fusion is None and r.sft is None and r.preference is None
    (merge,) = r.stage_specs
    assert merge.kind == "merge" and merge.config["merge_method"] == "sce_fuseai"
    assert [m["model"] for m in merge.config["models"]] == ["target", *(s.name for s in r.specialists)]
