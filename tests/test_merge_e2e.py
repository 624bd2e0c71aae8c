"""End to end on the CPU: two SmolLM2-135M fine-tunes SCE-merged onto SmolLM2-135M-Instruct with
`harness merge`, registered with every parent, evaluated (HF backend, 2 GSM8K items) and shown on
the leaderboard with its lineage.

The two "fine-tunes" are the embedded model plus seeded Gaussian deltas of 1 % of each tensor's
standard deviation (cheap, deterministic; the size FUSION_METHODS.md §1(a) measured), not SFT runs:
what this test proves is the merge/registry/evaluation plumbing at real size, not merge quality.

The second test is FuseO1's loop from one `harness pipeline` recipe (trainers/recipes/fuseo1_cpu.yaml):
sources that the pipeline fine-tunes (1 SFT step each) -> SCE merge -> evaluate -> leaderboard -> gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import harness_cli

torch = pytest.importorskip("torch")
pytest.importorskip("mergekit", reason="the `merge` extra (mergekit) is not installed")

from harness.store import ModelParent, ModelRecord, Store  # noqa: E402
from trainers.merge.bench import perturbed_copy  # noqa: E402

pytestmark = pytest.mark.e2e


def mergekit_fallbacks(base: Path, models: list[Path]) -> tuple[int, int]:
    """(tensors, tensors with Σ_j mean(τ_j²) < 1e-6), counted independently of the merge."""
    from safetensors import safe_open

    handles = [safe_open(str(p / "model.safetensors"), framework="pt") for p in (base, *models)]
    keys = list(handles[0].keys())
    low = 0
    for k in keys:
        b = handles[0].get_tensor(k)
        low += sum((h.get_tensor(k) - b).square().mean().item() for h in handles[1:]) < 1e-6
    return len(keys), low


def test_sce_merge_of_two_finetunes_is_registered_evaluated_and_on_the_leaderboard(embedded_model_dir, tmp_path):
    import yaml

    store_path = tmp_path / "store.sqlite"
    store = Store(store_path)
    tunes = {"math-specialist": perturbed_copy(embedded_model_dir, tmp_path / "math-specialist", 1),
             "chat-tune": perturbed_copy(embedded_model_dir, tmp_path / "chat-tune", 2)}
    for name, d in tunes.items():
        store.register_model(ModelRecord(name, f"fp-{name}", "candidate", path=str(d),
                                         parent="smollm2-135m-instruct"))
    cfg = tmp_path / "sce.yaml"
    cfg.write_text(yaml.safe_dump({"merge_method": "sce", "base_model": "smollm2-135m-instruct", "dtype": "float32",
                                   "parameters": {"select_topk": 1.0},
                                   "models": [{"model": n} for n in tunes]}))
    s = ["--store", str(store_path)]
    out = harness_cli("merge", *s, "--config", str(cfg), "--name", "sce-merge").stdout
    assert "registered candidate 'sce-merge'" in out

    assert store.model_parents("sce-merge") == [ModelParent("smollm2-135m-instruct", "base"),
                                                ModelParent("math-specialist", "merged"),
                                                ModelParent("chat-tune", "merged")]
    merge = store.get_model("sce-merge").info["merge"]
    tensors, low = mergekit_fallbacks(embedded_model_dir, list(tunes.values()))
    assert (merge["sce_tensors"], merge["uniform_fallback_tensors"]) == (tensors, low)
    merged_dir = Path(store.get_model("sce-merge").path)
    assert (merged_dir / "tokenizer.json").exists()
    listing = harness_cli("models", *s, env={"COLUMNS": "400"}).stdout
    assert "math-specialist (merged)" in listing and f"{low}/{tensors} tensors uniform" in listing

    run = ["run", "suite", "math", "--benchmarks", "gsm8k", "--limit", "2", "--max-tokens", "48", "--backend", "hf",
           "--no-progress", *s]
    for model in ("smollm2-135m-instruct", "sce-merge"):
        harness_cli(*run, "--model", model, "--out", str(tmp_path / "runs" / model))
    board = tmp_path / "board.yaml"
    board.write_text(yaml.safe_dump({"name": "merge-e2e", "suite": "math", "models": [
        {"model": "smollm2-135m-instruct", "role": "target"}, {"model": "sce-merge", "role": "candidate"}]}))
    harness_cli("leaderboard", "build", str(board), "--out", str(tmp_path / "lb"), *s)
    html = (tmp_path / "lb" / "index.html").read_text()
    assert "parents: smollm2-135m-instruct (base), math-specialist (merged), chat-tune (merged)" in html
    results = json.loads((tmp_path / "runs" / "sce-merge" / "results.json").read_text())
    assert results["benchmarks"]["gsm8k"]["metrics"]


def test_fuseo1_recipe_sources_sce_merge_evaluate_from_one_pipeline_command(tmp_path, data_dir, embedded_model_dir):
    """trainers/recipes/fuseo1_cpu.yaml as shipped (its merge stage and options) with the sources'
    training and the evaluation shrunk: two 1-step SFT fine-tunes of SmolLM2-135M-Instruct, merged
    with sce_fuseai onto it, then every model evaluated on 2 GSM8K items, the leaderboard and the
    gate. Then the same command again: every stage is up to date."""
    import sqlite3

    from tests.conftest import REPO

    store_path, work = tmp_path / "store.sqlite", tmp_path / "work"
    # no warmup: one step from lr 0 would leave the weights unchanged (as tests/test_pipeline_e2e.py)
    tiny = {"max_steps": 1, "batch_size": 2, "max_length": 256, "max_prompt_length": 128, "warmup_ratio": 0.0,
            "learning_rate": 5e-5}
    specialists = [{"name": "fuseo1-math-a", "data": {"builtin": "gsm8k-gold", "rows": 2}, "train": tiny},
                   {"name": "fuseo1-math-b", "data": {"builtin": "gsm8k-gold", "offset": 2, "rows": 2},
                    "train": {**tiny, "seed": 7}}]
    evaluate = {"suite": "math", "benchmarks": ["gsm8k"], "limit": 2, "backend": "hf", "max_tokens": 32}
    args = ["pipeline", str(REPO / "trainers" / "recipes" / "fuseo1_cpu.yaml"), f"workdir={work}",
            f"specialists={json.dumps(specialists)}", f"evaluate={json.dumps(evaluate)}",
            "gate={candidate: sce, n_boot: 1000}", "--store", str(store_path), "--data-dir", str(data_dir),
            "--no-progress"]
    out = harness_cli(*args, timeout=900).stdout
    assert "9 stages ran, 0 up to date" in out, out[-3000:]

    store = Store(store_path)
    assert store.model_parents("fuseo1-cpu-sce") == [ModelParent("smollm2-135m-instruct", "base"),
                                                     ModelParent("fuseo1-math-a", "merged"),
                                                     ModelParent("fuseo1-math-b", "merged")]
    rec = store.get_model("fuseo1-cpu-sce")
    merge = rec.info["merge"]
    assert merge["method"] == "sce_fuseai" and merge["sce_tensors"] > 0
    assert merge["options"] == {"out_shard_size": 100_000_000}  # the recipe's mergekit option reached mergekit
    assert len(list(Path(rec.path).glob("model-*.safetensors"))) > 1
    with sqlite3.connect(store_path) as db:  # the sources were trained by the pipeline, from the target
        parents = dict(db.execute("SELECT name, parent FROM models WHERE name LIKE 'fuseo1-math-%'").fetchall())
    assert parents == {"fuseo1-math-a": "smollm2-135m-instruct", "fuseo1-math-b": "smollm2-135m-instruct"}

    for model in ("fuseo1-math-a", "fuseo1-math-b", "smollm2-135m-instruct", "fuseo1-cpu-sce"):
        scored = (work / "eval" / model / "gsm8k.jsonl").read_text().splitlines()
        assert len(scored) == 2, model
    html = (work / "leaderboard" / "index.html").read_text()
    assert "parents: smollm2-135m-instruct (base), fuseo1-math-a (merged), fuseo1-math-b (merged)" in html
    assert "smollm2-135m-instruct (target)" in html
    gate = json.loads((work / "gate" / "gate.json").read_text())
    assert isinstance(gate["passed"], bool) and "gate (sce vs target)" in out
    assert gate["benchmarks"][0]["benchmark"] == "gsm8k" and gate["benchmarks"][0]["n"] == 2

    again = harness_cli(*args, timeout=300).stdout
    assert "0 stages ran, 9 up to date" in again, again[-3000:]
