"""FuseRL and InfiFPO end to end on the CPU (issue 11): fusion rows from the real selection code
(`select_fuse` -> fuse.jsonl), `harness train fuse_sft | fuse_po | infifpo` as a user runs it, the
real transformers model and tokenizer (the tiny random Llama with the embedded model's tokenizer
and template), InfiFPO's source log-probs through the real `harness.textscore` (hf backend, cached
in the real store), the candidate registered and evaluated on GSM8K items (hf backend)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import harness_cli
from tests.trainer_helpers import make_tiny_model

pytestmark = pytest.mark.e2e  # trains and evaluates 3 objectives: 55 s on 2 idle cores, so it runs in CI
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model_dir(embedded_model_dir, tmp_path_factory):
    return make_tiny_model(embedded_model_dir, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def other_source_dir(embedded_model_dir, tmp_path_factory):
    return make_tiny_model(embedded_model_dir, tmp_path_factory.mktemp("tiny2") / "model", seed=1)


def fuse_file(tmp_path):
    from trainers.fusion.pools import PromptItem
    from trainers.fusion.sampling import Answer
    from trainers.fusion.selection import select_fuse

    items = [PromptItem(id=f"p/{i}", pool="p", kind="instruction", prompt=f"What is {i} + {i}?") for i in range(3)]
    answers = {it.id: [Answer(f"{i} + {i} = {2 * i}.", "a", 0, score=0.9), Answer(f"It is {2 * i + 1}.", "a", 1,
                                                                                   score=0.85),
                       Answer(f"The answer is {2 * i}.", "b", 0, score=0.8), Answer("No idea.", "b", 1, score=0.75)]
               for i, it in enumerate(items)}
    rows, dropped = select_fuse(items, answers, ["a", "b"])
    assert not dropped and all(len(r["pairs"]) == 2 for r in rows)
    path = tmp_path / "fuse.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pref = tmp_path / "dpo.jsonl"
    pref.write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": r["pairs"][0]["chosen"],
                                        "rejected": r["pairs"][0]["rejected"]}) + "\n" for r in rows))
    return path, pref


@pytest.mark.parametrize("method,extra", [
    ("fuse_sft", ["objective={weighting: softmax, temperature: 0.5}"]),
    ("fuse_po", ["objective={base_loss: dpo_norm}"]),
    ("infifpo", []),
])
def test_new_objective_trains_registers_and_is_evaluated(method, extra, tiny_model_dir, other_source_dir, tmp_path,
                                                         data_dir):
    fuse, pref = fuse_file(tmp_path)
    store = tmp_path / "s.sqlite"
    if method == "infifpo":
        extra = [f"objective={{sources: [{tiny_model_dir}, {other_source_dir}], source_backend: hf}}"]
    p = harness_cli("train", method, f"model={tiny_model_dir}", f"data={pref if method == 'infifpo' else fuse}",
                    "max_steps=2", "batch_size=2", "max_length=128", "warmup_ratio=0", *extra,
                    "--output-dir", str(tmp_path / "cand"), "--name", f"tiny-{method}", "--store", str(store),
                    "--data-dir", str(data_dir), "--no-progress", "--eval-suite", "math", "--eval-limit", "1",
                    "--eval-option=--benchmarks=gsm8k", "--eval-option=--max-tokens=8",
                    "--eval-option=--backend=hf", f"--eval-option=--out={tmp_path / 'eval'}", timeout=900)
    assert f"registered candidate tiny-{method}" in p.stdout
    info = json.loads((tmp_path / "cand" / "train_info.json").read_text())
    assert info["method"] == method and info["steps"] == 2
    metrics = [json.loads(x) for x in (tmp_path / "cand" / "metrics.jsonl").read_text().splitlines()]
    assert all(m["loss"] == m["loss"] and m["lr"] > 0 for m in metrics)  # finite, and trained at lr > 0
    if method != "fuse_sft":
        assert "margins" in metrics[-1]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["model"]["name"] == f"tiny-{method}"
    if method == "infifpo":
        assert info["sources"] == [str(tiny_model_dir), str(other_source_dir)]
        with sqlite3.connect(store) as db:  # every source scored each of 3 rows x 2 responses once
            assert db.execute("SELECT COUNT(*) FROM text_scores").fetchone()[0] == 12
