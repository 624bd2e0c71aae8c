"""`harness fuse data` end to end on the real parts: the embedded SmolLM2 through the real
transformers backend (vLLM's ~1 min start-up would dominate a run this small; the runner
path is the same), the real store, GSM8K train prompts from the shared data, the real
math verifier, the contamination check over every registered benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import harness_cli
from trainers.data import normalize

pytestmark = pytest.mark.e2e


def _jsonl(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def test_fuse_data_on_the_embedded_model_then_fully_cached(tmp_path, data_dir, embedded_model_dir):
    out = tmp_path / "data"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "output_dir": str(out),
        # MBPP in the real sandbox is covered by tests/test_fusion_data.py; here the CPU budget goes
        # to the model (a 2-core CI box shared by every area's e2e tests).
        "pools": [{"name": "gsm8k-train", "kind": "math", "builtin": "gsm8k-train", "limit": 4}],
        "sources": [{"name": "smollm2", "model": "smollm2-135m-instruct", "backend": "hf"}],
        # the target-SFT model is the same model here: its samples are the source's, from the store
        "target": {"model": "smollm2-135m-instruct", "backend": "hf", "n": 2},
        "sampling": {"n": 2, "temperature": 0.8, "top_p": 0.95, "max_tokens": 64, "seed": 0},
    }))
    store = tmp_path / "s.sqlite"
    args = ["fuse", "data", "--recipe", str(recipe), "--store", str(store), "--data-dir", str(data_dir),
            "--no-progress"]
    first = harness_cli(*args)
    assert "pool gsm8k-train: 4/4 prompts" in first.stdout and "wrote" in first.stdout

    report = json.loads((out / "report.json").read_text())
    s = report["sampling"]["smollm2"]
    assert (s["requests"], s["generated"], s["cached"], s["errors"], s["failed"]) == (4, 4, 0, 0, None)
    # the target is sampled only on prompts a source solved (a WRPO row needs a y_ws); same model,
    # same params: those come from the store, no second engine
    solved = sum(any(x["correct"] for x in a["answers"]) for a in _jsonl(out / "answers.jsonl"))
    t = report["sampling"]["target"]
    assert (t["requests"], t["cached"], t["generated"], t["prompts_without_y_ws"]) == (solved, solved, 0, 4 - solved)
    assert report["scorers"]["gsm8k-train"]["type"] == "verifier"
    answers = _jsonl(out / "answers.jsonl")
    assert len(answers) == 4 and all(len(a["answers"]) == 2 for a in answers)
    assert all(x["finish_reason"] in ("stop", "length") and x["tokens"] > 0 for a in answers for x in a["answers"])
    assert all(x["correct"] in (True, False) for a in answers for x in a["answers"])
    assert all(x["gold"] and "extracted" in x for a in answers for x in a["answers"])

    stats = json.loads((out / "stats.json").read_text())["sources"]
    assert stats["smollm2"]["answers"] == 8 and stats["smollm2"]["verified_answers"] == 8
    assert 0 <= stats["smollm2"]["correct_rate"] <= 1 and stats["smollm2"]["mean_tokens"] > 0
    # The files hold exactly what the scores allow, in the trainer's formats.
    n_prompts_with_correct = sum(any(x["correct"] for x in a["answers"]) for a in answers)
    cont = json.loads((out / "contamination.json").read_text())
    assert {"gsm8k", "humaneval", "math500"} <= set(cont["checked"])
    sft = _jsonl(out / "sft.jsonl")
    assert len(sft) == n_prompts_with_correct - len(set(cont["contaminated_prompts"]) & {r["id"] for r in sft})
    for r in sft:
        normalize(r, "sft")
    for r in _jsonl(out / "dpo.jsonl"):
        normalize(r, "pref")
    for r in _jsonl(out / "wrpo.jsonl"):
        normalize(r, "wrpo")

    # Second run: every answer and score comes from the store; the data is identical.
    before = (out / "sft.jsonl").read_text()
    harness_cli(*args)
    report = json.loads((out / "report.json").read_text())
    assert report["sampling"]["smollm2"]["generated"] == 0 and report["sampling"]["smollm2"]["cached"] == 4
    assert (out / "sft.jsonl").read_text() == before


def test_fuse_data_bad_recipe_is_a_clear_error(tmp_path, data_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "o"), "pools": [{"name": "g", "kind": "math", "builtin": "gsm8k-train"}],
        "sources": [{"name": "a", "model": "smollm2-135m-instruc"}]}))
    proc = harness_cli("fuse", "data", "--recipe", str(recipe), "--store", str(tmp_path / "s.sqlite"),
                       "--data-dir", str(data_dir), check=False)
    err = " ".join(proc.stderr.split())  # rich wraps long lines
    assert proc.returncode == 2
    assert "unknown model 'smollm2-135m-instruc'" in err and "Traceback" not in err
    proc = harness_cli("fuse", "data", "--recipe", str(tmp_path / "nope.yaml"), check=False)
    assert proc.returncode == 2 and "does not exist" in " ".join(proc.stderr.split())
