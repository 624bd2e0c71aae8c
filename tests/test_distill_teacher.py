"""Teacher store: sharded memory-mappable top-k, resume after SIGKILL, corrupt shards recomputed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from harness.textscore import TextScoreRequest  # noqa: E402
from trainers.distill import teacher as T  # noqa: E402

ROWS = [("What is 2 + 3?", "2 + 3 = 5."), ("Name a colour.", "Blue."), ("Say hi.", "Hi there!"),
        ("What is 10 / 2?", "10 / 2 = 5."), ("Capital of France?", "Paris."), ("Spell cat.", "C-A-T.")]


def _requests():
    return [TextScoreRequest(id=f"r{i}", messages=[{"role": "user", "content": q}], response=a)
            for i, (q, a) in enumerate(ROWS)]


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from harness.store import Store
    from trainers.distill import teacher as T
    from tests.test_distill_teacher import _requests
    store = Store(Path(sys.argv[2]))
    put = store.put_text_score
    calls = []
    def put_then_die(*a, **k):
        put(*a, **k)
        calls.append(1)
        if len(calls) == 5:  # first row of the third shard committed, the shard unfinished
            os.kill(os.getpid(), signal.SIGKILL)
    store.put_text_score = put_then_die
    T.capture(T.CaptureJob(sys.argv[1], _requests(), Path(sys.argv[3]), top_k=10, shard_rows=2, backend="hf"),
              store=store)
""")


def test_capture_resumes_after_sigkill_and_recomputes_nothing_finished(embedded_model_dir, tmp_path):
    from harness.store import Store

    db, root = tmp_path / "store.sqlite", tmp_path / "teacher"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(embedded_model_dir), str(db), str(root)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    (d,) = root.iterdir()
    assert sorted(p.name for p in d.glob("shard-?????")) == ["shard-00000", "shard-00001"]
    first = (d / "shard-00000" / "top_ids.npy").stat().st_mtime_ns

    store = Store(db)
    rep = T.capture(T.CaptureJob(str(embedded_model_dir), _requests(), root, top_k=10, shard_rows=2, backend="hf"),
                    store=store)
    assert (rep.shards_reused, rep.shards_written, rep.rows_cached, rep.rows_scored) == (2, 1, 1, 1)
    assert (d / "shard-00000" / "top_ids.npy").stat().st_mtime_ns == first
    assert rep.bytes_per_token == 56  # 4 + 5K + 2 at K = 10: int32 token, 24-bit ids, fp16 log-probs and lse
    arrays = sum((d / f"shard-{i:05d}" / f"{a}.npy").stat().st_size - 128 for i in range(3)
                 for a in ("token_ids", "top_ids", "top_logprobs", "top_lse"))
    assert arrays == 56 * rep.tokens  # what is on disk besides the 128-byte .npy headers

    tf = T.TeacherFile(d)
    row = tf.row("r0")
    assert len(tf) == 6 and row.top_ids.shape == (len(row.token_ids), 10) and row.top_logprobs.dtype == np.float16
    assert np.all(np.diff(row.top_logprobs.astype(np.float32), axis=1) <= 1e-3)  # most likely first
    assert 0 < row.ce < 20
    # the stored log-sum-exp is that of the K kept log-probs: the log of the mass they cover (< 0)
    lse = np.logaddexp.reduce(row.top_logprobs.astype(np.float64), axis=1)
    assert row.top_lse.dtype == np.float16 and np.allclose(row.top_lse, lse, atol=2e-2)
    assert np.all(row.top_lse <= 1e-3) and row.top_ids.dtype == np.int32 and row.top_ids.min() >= 0
    store.close()


def test_corrupt_or_foreign_shards_are_detected_and_recomputed(embedded_model_dir, tmp_path, store):
    root = tmp_path / "teacher"
    job = T.CaptureJob(str(embedded_model_dir), _requests()[:4], root, top_k=4, shard_rows=2, backend="hf")
    T.capture(job, store=store)
    (d,) = root.iterdir()
    good = np.load(d / "shard-00000" / "top_ids.npy").copy()
    arr = d / "shard-00000" / "top_ids.npy"
    arr.write_bytes(arr.read_bytes()[:-8])  # a torn write
    meta = json.loads((d / "shard-00001" / "meta.json").read_text())
    meta["key"]["fingerprint"] = "sha256:another-model"
    (d / "shard-00001" / "meta.json").write_text(json.dumps(meta))
    rep = T.capture(job, store=store)
    assert (rep.shards_invalid, rep.shards_written, rep.rows_cached) == (2, 2, 4)  # from the store, not the model
    assert np.array_equal(np.load(arr), good)
    # another data set or K is another key, hence another directory
    other = T.capture(T.CaptureJob(str(embedded_model_dir), _requests()[:2], root, top_k=4, shard_rows=2,
                                   backend="hf"), store=store)
    assert Path(other.directory) != d


def test_recipe_errors_name_the_key_and_the_fix(tmp_path):
    from harness.errors import UsageError
    from trainers.distill.recipe import load_recipe, requests_from_rows

    p = tmp_path / "r.yaml"
    p.write_text("sources: [{name: g, model: gemma3-270m}]\ndata: d.jsonl\noutput_dir: o\ntop_kk: 3\n")
    with pytest.raises(UsageError, match="top_kk"):
        load_recipe(str(p))
    p.write_text("sources: [{name: g, model: a}, {name: g, model: b}]\ndata: d.jsonl\noutput_dir: o\n")
    with pytest.raises(UsageError, match="unique"):
        load_recipe(str(p))
    recipe, base = load_recipe(str(p), {"sources": [{"name": "g", "model": "a"}]})
    assert recipe.top_k == 10 and base == tmp_path
    reqs, dropped = requests_from_rows([{"prompt": "q", "response": "a"}, {"prompt": "q"}, "junk"])
    assert [r.id for r in reqs] == ["0"] and set(dropped) == {1, 2}


def test_shipped_cpu_recipe_is_valid():
    from trainers.distill.recipe import load_recipe

    recipe, base = load_recipe(str(Path(__file__).resolve().parents[1] / "trainers/recipes/distill_cpu.yaml"))
    assert recipe.sources[0].model == "gemma3-270m" and recipe.top_k == 10
    assert (base / recipe.output_dir).resolve().parent.name == "distill-cpu"
