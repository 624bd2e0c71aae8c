"""Over-length rows in token-level fusion: the teacher capture and the trainer cut a row at the same
pivot positions, and both count what they cut (trainers/distill/truncate.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from harness.textscore import TextScore, TextScoreRequest  # noqa: E402
from trainers.distill import teacher as T  # noqa: E402
from trainers.distill.truncate import cut_to_bytes, truncate_requests  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def _gsm8k_rows(data_dir, n=24):
    rows = [json.loads(x) for x in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:n]]
    return [{"prompt": r["question"], "response": r["answer"]} for r in rows]


@pytest.mark.parametrize("max_length,max_prompt_length", [(140, 120), (200, 100), (4096, 4096)])
def test_teacher_cut_gives_the_training_tokens_and_counts(tokenizer, data_dir, max_length, max_prompt_length):
    from trainers.data import tokenize_rows
    from trainers.distill.recipe import requests_from_rows

    rows = _gsm8k_rows(data_dir)
    examples, data_report = tokenize_rows(rows, "sft", tokenizer, max_length=max_length,
                                          max_prompt_length=max_prompt_length)
    requests, _ = requests_from_rows(rows)
    cut, rep, dropped = truncate_requests(requests, tokenizer, max_length=max_length,
                                          max_prompt_length=max_prompt_length, model_name="smollm2")
    assert rep.truncated == data_report.truncated_responses == len(rep.truncated_rows)
    assert rep.dropped == len(dropped) == sum(data_report.dropped.values())
    assert [r.id for r in cut] == [ex.id for ex in examples]
    if max_length == 4096:
        assert rep.truncated == 0 and [r.response for r in cut] == [r.response for r in requests]
    else:
        assert rep.truncated > 0  # the parameters are chosen so that rows are cut
    eos = tokenizer.eos_token_id
    for r, ex in zip(cut, examples):
        ids = tokenizer(r.response, add_special_tokens=False)["input_ids"]
        # what the chat-form capture stores: the cut text's tokens (+ EOS unless the row was cut)
        stored = ids if r.id in rep.truncated_rows else ids + [eos]
        assert stored == ex.responses["response"], r.id


def test_capture_drops_the_eos_of_cut_rows_and_keys_them(embedded_model_dir, tmp_path, store, tokenizer):
    from trainers.distill.recipe import load_recipe, run_teacher

    rows = [{"prompt": "Count.", "response": " ".join(str(i) for i in range(60))},
            {"prompt": "Say hi.", "response": "Hi!"}, {"prompt": "word " * 80, "response": "ok"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.yaml").write_text(f"pivot: {embedded_model_dir}\nsources: [{{name: same, model: {embedded_model_dir}}}]\n"
                                     "data: d.jsonl\ntop_k: 3\nbackend: hf\nmax_length: 64\nmax_prompt_length: 48\n"
                                     "output_dir: out\n")
    recipe, base = load_recipe(str(tmp_path / "r.yaml"))
    manifest, reports = run_teacher(recipe, base, store)
    assert manifest.truncation.truncated_rows == ["0"] and manifest.truncation.dropped == 1
    assert reports["dropped_rows"] == {2: "prompt longer than max_prompt_length=48"}
    assert reports["pivot"]["rows_truncated"] == 1 and manifest.rows == 2
    saved = json.loads((tmp_path / "out" / "teacher.json").read_text())
    assert saved["truncation"]["truncated"] == 1  # the stage's provenance
    tf = T.TeacherFile(manifest.pivot.directory)
    from harness.backends.base import render_chat

    room = 64 - len(render_chat(tokenizer, [{"role": "user", "content": "Count."}], None, "m"))
    full = tokenizer(rows[0]["response"], add_special_tokens=False)["input_ids"]
    assert tf.row("0").token_ids.tolist() == full[:room]  # the trainer's tokens, no EOS
    assert tf.row("1").token_ids[-1] == tokenizer.eos_token_id  # an uncut row keeps it
    # another max_length is another data key: never mixed with this capture
    recipe2, _ = load_recipe(str(tmp_path / "r.yaml"), {"max_length": 80})
    manifest2, _ = run_teacher(recipe2, base, store)
    assert manifest2.pivot.directory != manifest.pivot.directory


def test_without_eos_and_top_lse():
    s = TextScore(id="a", token_ids=[5, 6, 2], logprobs=[-1.0, -2.0, -0.5], top_ids=[[5, 1], [6, 1], [2, 1]],
                  top_logprobs=[[-1.0, -2.0], [-2.0, -3.0], [-0.5, -4.0]])
    cut = T.without_eos(s)
    assert cut.token_ids == [5, 6] and cut.logprobs == [-1.0, -2.0] and cut.top_ids == [[5, 1], [6, 1]]
    arrays = T._top_arrays([cut], 2, 3)
    expect = np.log(np.exp([-1.0, -2.0]).sum()), np.log(np.exp([-2.0, -3.0]).sum())
    assert np.allclose(arrays["top_lse"].astype(np.float64), expect, atol=2e-3)
    assert T.unpack_ids(arrays["top_ids"]).tolist() == [[5, 1, -1], [6, 1, -1]]


def test_pack_ids_round_trips_large_vocabularies_and_rejects_too_large():
    from harness.errors import UsageError

    ids = np.array([[0, 1, 262_143, -1], [65_535, 65_536, T.PAD_ID - 1, -1]])
    packed = T.pack_ids(ids)
    assert packed.dtype == np.uint8 and packed.shape == (2, 4, 3)
    assert np.array_equal(T.unpack_ids(packed), ids)
    with pytest.raises(UsageError, match="24-bit"):
        T.pack_ids(np.array([[T.PAD_ID]]))


def test_cut_to_bytes_keeps_the_tokens_of_the_same_text():
    texts = ["<s>", " The", " weat", "her", " is", " fine", "é"]
    assert cut_to_bytes(texts, [1, 2, 3, 4, 5], len(" The weather")) == 3
    assert cut_to_bytes(texts, [1, 2, 3, 4, 5], len(" The weath")) == 2  # a token that does not fit is out
    assert cut_to_bytes(texts, [1, 6], len(" Theé".encode())) == 2  # bytes, not characters
    assert cut_to_bytes(texts, [1, 2], 1000) == 2


def test_requests_without_room_are_dropped_with_the_trainers_reason(tokenizer):
    reqs = [TextScoreRequest(id="0", messages=[{"role": "user", "content": "hi"}], response="hello")]
    _, rep, dropped = truncate_requests(reqs, tokenizer, max_length=8, max_prompt_length=100, model_name="m")
    assert dropped == {"0": "prompt leaves no room for a response within max_length=8"} and rep.dropped == 1


def test_a_row_cut_shorter_by_training_cuts_the_cross_tokenizer_source_to_the_same_text(tmp_path):
    from tests.test_distill_fuse import _teacher, _Tok
    from trainers.distill import align as A
    from trainers.distill import targets as TG

    bl = [*A._BYTE_CHARS.values()]
    piv_texts = A.vocab_texts(_Tok(bl + ["ĠThe", "Ġweather", "Ġis", "Ġfine"]))  # ids 256..259
    src_pieces = ["<unk>", "▁The", "▁weat", "her", "▁is", "▁fine"]
    lp2 = [[-0.1, -2.5]]
    pivot = _teacher(tmp_path, "pivot", [("0", [256, 257, 258, 259], [[256, 259]] * 4, lp2 * 4)])
    source = _teacher(tmp_path, "src", [("0", [1, 2, 3, 4, 5], [[1, 5]] * 5, [[-0.2, -1.9]] * 5)])
    sig = TG.cross_source("src", source, _Tok(src_pieces), piv_texts, ["0"], vocab_align="mined", pivot=pivot)
    stats = TG.AlignStats()
    ids, _ = TG.fused_targets("0", [256, 257], pivot, [sig], piv_texts, stats=stats)  # training kept " The weather"
    assert ids.shape[0] == 2 and stats.rows_cut == 1 and stats.rows_short == 0
    # the source was cut to " The| weat|her": " The" aligns one-to-one, the end stays aligned (not " is fine")
    assert stats.per_source["src"] == [1, 2]
    stats = TG.AlignStats()
    ids, _ = TG.fused_targets("0", [256, 257, 258, 259, 42], pivot, [sig], piv_texts, stats=stats)
    assert ids.shape[0] == 4 and stats.rows_short == 1  # the 5th position has no teacher signal: CLM only
