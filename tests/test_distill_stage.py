"""The pipeline's `teacher` stage kind builds the teacher stage and its distillation candidates
(stage bodies replaced by recorders, as tests/test_pipeline.py does)."""

from __future__ import annotations

import pytest

from tests.test_pipeline import RECIPE, Recorder, names, pipeline, with_

STAGES = [{"kind": "teacher", "sources": [{"name": "math", "model": "unit-math"}, {"name": "gemma", "model": "gemma3-270m"}],
           "backend": "hf", "train": [{"method": "distill_ce", "sources": ["gemma"], "train": {"max_steps": 1}},
                                      {"method": "uld", "objective": {"zscore": True}}]}]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_teacher_stage_and_distillation_candidates_are_built_in_order(in_tmp):
    rec = Recorder()
    pipe = pipeline(in_tmp, with_(RECIPE, "stages", STAGES), rec)
    by_name = {s.name: s for s in pipe.stages}
    assert by_name["teacher"].deps == ["data", "specialist:unit-math"]  # a specialist as a source
    run = by_name["teacher-distill_ce-gemma"]
    assert "teacher" in run.deps and "data" in run.deps
    cfg = run.spec["config"]
    assert cfg["method"] == "distill_ce" and cfg["objective"]["sources"] == ["gemma"]
    assert cfg["objective"]["teacher"].endswith("teacher/teacher") and cfg["max_steps"] == 1
    assert by_name["teacher-uld-all"].spec["config"]["objective"]["zscore"] is True
    recipe = by_name["teacher"].spec["recipe"]  # the capture cuts rows like its (longest) training run
    assert (recipe["max_length"], recipe["max_prompt_length"]) == (cfg["max_length"], cfg["max_prompt_length"])
    assert ("teacher-distill_ce-gemma", "unit-teacher-distill_ce-gemma") in pipe.candidates
    pipe.run()
    ran = names(rec)
    assert ran.index("data") < ran.index("teacher") < ran.index("teacher-distill_ce-gemma")
    assert "eval:unit-teacher-uld-all" in ran  # evaluated like every other candidate
    rec.ran.clear()
    pipe.run()
    assert [n for n in names(rec) if n.startswith("teacher")] == []  # nothing changed: all cached


def test_teacher_stage_recipe_errors(in_tmp):
    from harness.errors import UsageError

    bad = [{**STAGES[0], "train": [{"method": "dpo"}]}]
    with pytest.raises((UsageError, ValueError), match="distill_ce"):
        pipeline(in_tmp, with_(RECIPE, "stages", bad), Recorder())
