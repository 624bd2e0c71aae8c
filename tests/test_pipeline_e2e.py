"""`harness pipeline` end to end on the real parts (issue 7): the embedded SmolLM2 as both
sources (itself and a math specialist the SFT trainer makes from it) and as the target, the
real transformers backend (vLLM's start-up, paid by ~10 engines here, would dominate a run this
small; the runner path is the same), real training, the real store, real GSM8K test items,
the leaderboard and the gate. Then the same command again: every stage is up to date and no
model is asked for anything.

The prompt pool is four one-step arithmetic questions so that a 135M model, sampling 4 answers
at T 0.8 in 48 tokens, gets some right and some wrong: WRPO needs a correct y_wt and an
incorrect y_l from the target's own samples, which GSM8K prompts at this size never give."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.conftest import harness_cli

pytestmark = pytest.mark.e2e

EASY = [("What is 3 + 4?", "7"), ("What is 10 - 6?", "4"), ("What is 2 times 5?", "10"),
        ("Tom has 3 apples and buys 2 more. How many apples does he have?", "5")]


def _recipe(tmp_path: Path) -> Path:
    pool = tmp_path / "easy.jsonl"
    pool.write_text("".join(json.dumps({"question": f"{q} Put the final answer in \\boxed{{}}.", "answer": a}) + "\n"
                            for q, a in EASY))
    # no warmup: with a few steps, a warmup starting at lr 0 would leave the weights unchanged
    small = {"max_length": 160, "max_prompt_length": 128, "batch_size": 2, "warmup_ratio": 0.0, "learning_rate": 5e-5}
    recipe = {
        "name": "e2e",
        "target": "smollm2-135m-instruct",
        "specialists": [{"name": "e2e-math", "data": {"builtin": "gsm8k-gold", "rows": 2},
                         "train": {**small, "max_steps": 1, "max_length": 256}}],
        "fusion": {
            "pools": [{"name": "easy", "kind": "math", "path": "easy.jsonl", "answer_field": "answer"}],
            "sources": [{"name": "base", "model": "smollm2-135m-instruct", "backend": "hf"},
                        {"name": "math", "model": "e2e-math", "backend": "hf"}],
            "target": {"backend": "hf", "n": 4},
            "sampling": {"n": 4, "temperature": 0.8, "top_p": 0.95, "max_tokens": 48, "seed": 0},
            "contamination": {"benchmarks": ["gsm8k"]},
        },
        "sft": {**small, "max_steps": 1},
        "preference": {**small, "method": "wrpo", "max_steps": 2, "batch_size": 1, "beta": 0.1},
        "evaluate": {"suite": "math", "benchmarks": ["gsm8k"], "limit": 2, "backend": "hf", "max_tokens": 32},
        "gate": {"n_boot": 1000},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _generations(store: Path) -> int:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


def test_pipeline_from_one_command_to_leaderboard_and_gate_then_fully_cached(tmp_path, data_dir,
                                                                             embedded_model_dir):
    recipe, store, work = _recipe(tmp_path), tmp_path / "store.sqlite", tmp_path / "work"
    flags = ["--store", str(store), "--data-dir", str(data_dir), "--no-progress"]
    args = ["pipeline", str(recipe), f"workdir={work}"]
    first = harness_cli(*args, *flags, timeout=3000)
    out = first.stdout
    assert "11 stages ran, 0 up to date" in out, out[-3000:]

    # Phase 1 data from both sources; phase 2: the SFT candidate sampled itself for WRPO.
    stats = json.loads((work / "data-target" / "stats.json").read_text())["sources"]
    assert {"base", "math", "target"} <= set(stats) and stats["base"]["answers"] == 16
    report2 = json.loads((work / "data-target" / "report.json").read_text())
    assert report2["sampling"]["target"]["model"] == "e2e-sft"
    assert report2["sampling"]["base"]["generated"] == 0  # sources' answers came back from the store
    wrpo_rows = [json.loads(x) for x in (work / "data-target" / "wrpo.jsonl").read_text().splitlines()]
    assert wrpo_rows and all({"y_ws", "y_wt", "y_l"} <= set(r) for r in wrpo_rows)

    # Candidates registered with their lineage; every model evaluated on the same GSM8K items.
    with sqlite3.connect(store) as db:
        models = {row[0]: row[1] for row in db.execute("SELECT name, parent FROM models")}
    assert {"e2e-math", "e2e-sft", "e2e-wrpo"} <= set(models)
    assert models["e2e-wrpo"] == "e2e-sft" and models["e2e-sft"] == "smollm2-135m-instruct", models
    for name in ("smollm2-135m-instruct", "e2e-math", "e2e-sft", "e2e-wrpo"):
        scored = [json.loads(x) for x in (work / "eval" / name / "gsm8k.jsonl").read_text().splitlines()]
        assert len(scored) == 2, name
    html = (work / "leaderboard" / "index.html").read_text()
    for label in ("base", "math", "smollm2-135m-instruct (target)", "e2e-sft", "e2e-wrpo"):
        assert label in html
    assert "where the training answers came from" in html  # the fusion data's per-source stats
    gate = json.loads((work / "gate" / "gate.json").read_text())
    row = gate["benchmarks"][0]
    assert row["benchmark"] == "gsm8k" and row["n"] == 2 and isinstance(gate["passed"], bool)
    assert "gate (last candidate vs target)" in out

    # The same command again: nothing runs, no model is asked for anything.
    before = _generations(store)
    again = harness_cli(*args, *flags, timeout=600)
    assert "0 stages ran, 11 up to date" in again.stdout, again.stdout[-3000:]
    assert _generations(store) == before

    # Editing only the gate re-runs only the gate.
    edited = harness_cli(*args, "gate={n_boot: 2000}", *flags, timeout=600)
    assert "1 stages ran, 10 up to date" in edited.stdout and "gate: running" in edited.stdout
