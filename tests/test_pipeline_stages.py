"""The pipeline's stage-kind registry (issue 11): a recipe's `stages:` list names FuseRL and
InfiFPO training stages; they are built by their registry entry and hashed, skipped and
resumed like the built-in stages. Stage bodies are recorders (unit tests)."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from tests.test_pipeline import RECIPE, Recorder, names, pipeline, with_, write
from trainers.pipeline.config import load_pipeline
from trainers.pipeline.stages import STAGE_KINDS, StageKind, StageSpec, register_stage_kind

STAGES = [{"kind": "fuse_sft", "train": {"max_steps": 1}},
          {"kind": "fuse_po", "from": "sft", "train": {"max_steps": 1, "objective": {"base_loss": "dpo_norm"}}},
          {"kind": "infifpo", "name": "fpo", "from": "sft",
           "train": {"max_steps": 1, "objective": {"sources": ["unit-math"]}}}]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the work dir is relative to the working directory
    return tmp_path


FUSE = {**with_(RECIPE, "preference", {"method": "dpo", "max_steps": 1}), "stages": STAGES}


def test_recipe_stages_are_built_by_their_kind_and_evaluated(in_tmp):
    rec = Recorder()
    pipe = pipeline(in_tmp, FUSE, rec)
    got = [s.name for s in pipe.stages]
    assert got[:6] == ["specialist:unit-math", "data", "sft", "preference", "fuse_sft", "fuse_po"]
    assert "fpo" in got and "data-target" not in got
    deps = {s.name: s.deps for s in pipe.stages}
    assert deps["fuse_sft"] == ["data"] and deps["fuse_po"] == ["data", "sft"] and deps["fpo"] == ["data", "sft"]
    assert {"eval:unit-fuse_sft", "eval:unit-fuse_po", "eval:unit-fpo"} <= set(got)
    assert ("unit-fpo", "candidate") in {(e["label"], e["role"]) for e in pipe.evals}
    assert pipe._phase1_needs() == ["sft", "dpo", "fuse"]
    assert next(s for s in pipe.stages if s.name == "gate").deps == ["eval:unit-fpo", "eval:smollm2-135m-instruct"]


def test_recipe_stages_are_skipped_when_unchanged_and_resumed_after_a_failure(in_tmp):
    rec = Recorder()
    rec.fail = "fuse_po"
    with pytest.raises(Exception, match="fuse_po died"):
        pipeline(in_tmp, FUSE, rec).run()
    rec.ran.clear()
    pipeline(in_tmp, FUSE, rec).run()
    assert rec.ran[0] == ("fuse_po", True) and "fuse_sft" not in names(rec)
    rec.ran.clear()
    edited = with_(FUSE, "stages", [STAGES[0], {**STAGES[1], "train": {"max_steps": 2}}, STAGES[2]])
    pipeline(in_tmp, edited, rec).run()
    assert names(rec) == ["fuse_po", "eval:unit-fuse_po", "leaderboard"]


@pytest.mark.parametrize("stages,message", [
    ([{"kind": "fuse_sf"}], "Did you mean 'fuse_sft'"),
    ([{"kind": "fuse_sft", "name": "sft"}], "the name 'sft' is taken"),
    ([{"kind": "fuse_sft"}, {"kind": "fuse_sft"}], "the name 'fuse_sft' is taken"),
    ([{"kind": "fuse_po", "train": {"objective": {"base_los": "dpo"}}}], "Did you mean 'base_loss'"),
    ([{"kind": "infifpo", "train": {"objective": {"fusion": "maxmargin"}}}], "fusion: Input should be 'mean' or"),
    ([{"kind": "fuse_sft", "trian": {}}], "trian"),
    ([{"kind": "eval", "name": "again"}], "built by the recipe's `evaluate:` section"),
])
def test_bad_stage_entries_are_clear_errors_before_any_stage(in_tmp, stages, message):
    with pytest.raises(UsageError, match=message):
        load_pipeline(write(in_tmp, {**RECIPE, "stages": stages}))


def test_gate_can_name_a_recipe_stage(in_tmp):
    r, _ = load_pipeline(write(in_tmp, {**FUSE, "gate": {"candidate": "fuse_sft"}}))
    assert r.gate.candidate == "fuse_sft"
    with pytest.raises(UsageError, match="gate.candidate must be sft, preference or a `stages` name"):
        load_pipeline(write(in_tmp, {**FUSE, "gate": {"candidate": "best"}}))


def test_a_new_stage_kind_is_one_registry_entry(in_tmp):
    """What the merge / distill helpers do: a spec and a build function, nothing in run.py."""
    from trainers.pipeline.stages import Stage

    class Echo(StageSpec):
        text: str = "hi"

    def build(pipe, spec):
        pipe.add(Stage(name=spec.stage_name, deps=["sft"], spec={"text": spec.text}, run=lambda resume: None,
                       outputs=lambda: {"ok": "1"}))

    register_stage_kind(StageKind("echo_for_test", Echo, build))
    try:
        pipe = pipeline(in_tmp, {**RECIPE, "stages": [{"kind": "echo_for_test", "text": "x"}]}, Recorder())
        assert "echo_for_test" in [s.name for s in pipe.stages]
    finally:
        del STAGE_KINDS["echo_for_test"]


def test_shipped_fusion_objectives_recipe_is_valid():
    from tests.conftest import REPO

    recipe, _ = load_pipeline(REPO / "trainers" / "recipes" / "pipeline_fuse_cpu.yaml")
    assert [s.kind for s in recipe.stage_specs] == ["fuse_sft", "fuse_po", "infifpo"]


def test_the_base_graph_is_built_by_the_section_kinds_of_the_registry(in_tmp):
    """specialists -> data -> sft -> preference -> stages: -> eval -> leaderboard -> gate, each a
    registry entry: replacing one entry changes the graph, and an absent section builds nothing."""
    from trainers.pipeline.base_stages import recipe_graph
    from trainers.pipeline.stages import Stage

    r, _ = load_pipeline(write(in_tmp, FUSE))
    assert [s.kind for s in recipe_graph(r)] == ["specialist", "data", "sft", "preference", "fuse_sft", "fuse_po",
                                                 "infifpo", "eval", "leaderboard", "gate"]
    assert all(STAGE_KINDS[k].section for k in ("specialist", "data", "sft", "preference", "eval", "leaderboard",
                                                 "gate"))
    no_pref = {k: v for k, v in RECIPE.items() if k != "preference"}
    r, _ = load_pipeline(write(in_tmp, no_pref))
    assert "preference" not in [s.kind for s in recipe_graph(r)]
    assert "preference" not in [s.name for s in pipeline(in_tmp, no_pref, Recorder()).stages]

    real = STAGE_KINDS["leaderboard"]

    def build(pipe, spec):
        pipe.add(Stage(name="leaderboard", deps=["sft"], spec={"replaced": True}, run=lambda resume: None,
                       outputs=lambda: {"ok": "1"}))

    STAGE_KINDS["leaderboard"] = StageKind("leaderboard", real.spec, build, section="leaderboard")
    try:
        pipe = pipeline(in_tmp, RECIPE, Recorder())
        assert next(s for s in pipe.stages if s.name == "leaderboard").spec == {"replaced": True}
    finally:
        STAGE_KINDS["leaderboard"] = real
