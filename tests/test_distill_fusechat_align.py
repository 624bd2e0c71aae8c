"""FuseChat's token alignment rules (n-to-1 and 1-to-n before the one-hot fallback), on a constructed
pair and in parity with the authors' `transform_step_logits` on random rows.

The reference below is FuseChat/train/align_token_and_vocab.py (FuseAI@7d9a307, Apache-2.0,
Copyright the FuseAI authors) l.52-97 (`dtw`), l.193-216 (`transform_step_token`) and l.219-365
(`transform_step_logits`), kept verbatim except: `editdistance.eval` is rapidfuzz's Levenshtein
distance (the same metric), the tokenizer-class -> marker table is passed in, and the `hard` /
`soft` branches (FuseLLM's rules, tested in test_distill_align.py) are left out.

Conventions bridged by the test: upstream's step logits at position j are the distribution AFTER
token j; the teacher store's top-k at position t predicts token t. So upstream's step j is our
position j+1 and upstream's output for pivot token i is our pivot position i+1.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from trainers.distill import align as A

# ----------------------------------------------------------------------------------------------
# reference (FuseAI@7d9a307 FuseChat/train/align_token_and_vocab.py), see the module docstring

TOKENIZER_TO_SPECIAL_TOKEN = {}


class _Editdistance:
    eval = staticmethod(Levenshtein.distance)


editdistance = _Editdistance()


def dtw(series_1, series_2, norm_func=np.linalg.norm):
    matrix = np.zeros((len(series_1) + 1, len(series_2) + 1))
    matrix[0, :] = np.inf
    matrix[:, 0] = np.inf
    matrix[0, 0] = 0
    for i, vec1 in enumerate(series_1):
        for j, vec2 in enumerate(series_2):
            cost = norm_func(vec1, vec2)
            matrix[i + 1, j + 1] = cost + min(matrix[i, j + 1], matrix[i + 1, j], matrix[i, j])
    matrix = matrix[1:, 1:]
    i = matrix.shape[0] - 1
    j = matrix.shape[1] - 1
    matches = []
    mappings_series_1 = [list() for v in range(matrix.shape[0])]
    mappings_series_2 = [list() for v in range(matrix.shape[1])]
    while i > 0 or j > 0:
        matches.append((i, j))
        mappings_series_1[i].append(j)
        mappings_series_2[j].append(i)
        option_diag = matrix[i - 1, j - 1] if i > 0 and j > 0 else np.inf
        option_up = matrix[i - 1, j] if i > 0 else np.inf
        option_left = matrix[i, j - 1] if j > 0 else np.inf
        move = np.argmin([option_diag, option_left, option_up])
        if move == 0:
            i -= 1
            j -= 1
        elif move == 1:
            j -= 1
        else:
            i -= 1
    matches.append((0, 0))
    mappings_series_1[0].append(0)
    mappings_series_2[0].append(0)
    matches.reverse()
    for mp in mappings_series_1:
        mp.reverse()
    for mp in mappings_series_2:
        mp.reverse()
    return matches, matrix[-1, -1], mappings_series_1, mappings_series_2, matrix


def transform_step_token(base_model_tokenizer, base_model_input_ids, blending_model_tokenizer, blending_model_input_ids):
    base_model_tokens = [base_model_tokenizer.decode([input_id]) for input_id in base_model_input_ids]
    blending_model_tokens = [blending_model_tokenizer.decode([input_id]) for input_id in blending_model_input_ids]

    base_model_special_token = TOKENIZER_TO_SPECIAL_TOKEN[base_model_tokenizer.__class__]
    blending_model_special_token = TOKENIZER_TO_SPECIAL_TOKEN[blending_model_tokenizer.__class__]

    def dist_fn(a, b):
        aa = a.replace(blending_model_special_token, '')
        bb = b.replace(base_model_special_token, '')

        if len(aa) == 0 or len(bb) == 0:
            aa = a.replace(blending_model_special_token, base_model_special_token)
            bb = b
        w = 1
        dist = editdistance.eval(aa, bb)
        return dist * w
    _, _, _, base_to_blending, _ = dtw(blending_model_tokens, base_model_tokens, norm_func=dist_fn)
    return (base_model_tokens, blending_model_tokens, base_model_special_token, blending_model_special_token,
            base_to_blending)


def transform_step_logits(base_model_tokenizer, blending_model_tokenizer, base_model_vocab, base_model_input_ids,
                          blending_model_input_ids, blending_model_per_step_logits, blending_model_per_step_indices,
                          use_token_alignment_matrix=False, token_alignment_matrix=None, blending_to_base=None,
                          align_type="default", temperature=1.0):
    base_model_tokens, blending_model_tokens, base_model_special_token, blending_model_special_token, base_to_blending\
        = transform_step_token(base_model_tokenizer, base_model_input_ids, blending_model_tokenizer,
                               blending_model_input_ids)
    base_model_labels = base_model_tokenizer.convert_ids_to_tokens(base_model_input_ids)[1:]
    base_model_labels = base_model_labels + [base_model_labels[-1]]
    aligned_blending_model_per_step_logits, aligned_blending_model_per_step_indices = [], []
    for i, blending_idx in enumerate(base_to_blending):
        aligned_blending_model_per_step_logit = []
        aligned_blending_model_per_step_index = []
        if len(blending_idx) == 1:  # one base token map to one blending token
            j = blending_idx[0]
            base_token = base_model_tokens[i]
            blending_token = blending_model_tokens[j].replace(blending_model_special_token, base_model_special_token)
            # (align_type "hard" and "soft" branches left out)
            if blending_token.endswith(base_token) or base_token.endswith(blending_token):  # 1-1 or n-1
                for blending_logit, blending_index in zip(blending_model_per_step_logits[j], blending_model_per_step_indices[j]):
                    blending_t = blending_model_tokenizer.convert_ids_to_tokens([blending_index])[0].replace(blending_model_special_token, base_model_special_token)
                    if blending_t in base_model_vocab:
                        aligned_index = base_model_vocab[blending_t]
                        if aligned_index not in aligned_blending_model_per_step_index:
                            aligned_blending_model_per_step_index.append(aligned_index)
                            aligned_blending_model_per_step_logit.append(blending_logit)
                    else:
                        blending_t = base_model_tokenizer.convert_ids_to_tokens([blending_to_base[blending_index]])[0]
                        aligned_index = base_model_vocab[blending_t]
                        if aligned_index not in aligned_blending_model_per_step_index:
                            aligned_blending_model_per_step_index.append(aligned_index)
                            aligned_blending_model_per_step_logit.append(blending_logit)
            else:
                aligned_blending_model_per_step_index.append(base_model_vocab[base_model_labels[i]])
                aligned_blending_model_per_step_logit.append(1.0)
        elif align_type == "default":
            if not use_token_alignment_matrix:
                aligned_blending_model_per_step_index.append(base_model_vocab[base_model_labels[i]])
                aligned_blending_model_per_step_logit.append(1.0)
            else:
                base_token: str = base_model_tokens[i].replace(base_model_special_token, "")
                blending_tokens = [blending_model_tokens[j].replace(blending_model_special_token, "") for j in blending_idx]
                for j, blending_t in zip(blending_idx, blending_tokens):
                    if base_token != base_model_special_token and (base_token.endswith(blending_t) or blending_t.endswith(base_token)):
                        blending_idx = [j]
                        break
                if len(blending_idx) == 1:
                    j = blending_idx[0]
                    for blending_logit, blending_index in \
                            zip(blending_model_per_step_logits[j], blending_model_per_step_indices[j]):
                        blending_t = blending_model_tokenizer.convert_ids_to_tokens([blending_index])[0].replace(blending_model_special_token, base_model_special_token)
                        if blending_t in base_model_vocab:
                            aligned_index = base_model_vocab[blending_t]
                            if aligned_index not in aligned_blending_model_per_step_index:
                                aligned_blending_model_per_step_index.append(aligned_index)
                                aligned_blending_model_per_step_logit.append(blending_logit)
                        else:
                            blending_t = base_model_tokenizer.convert_ids_to_tokens([blending_to_base[blending_index]])[0]
                            aligned_index = base_model_vocab[blending_t]
                            if aligned_index not in aligned_blending_model_per_step_index:
                                aligned_blending_model_per_step_index.append(aligned_index)
                                aligned_blending_model_per_step_logit.append(blending_logit)
                else:
                    def find_map_idx(s, list_s):
                        indices = []
                        for i in range(len(list_s)):
                            current_substring = list_s[i]
                            if s.startswith(current_substring):
                                indices.append(i)
                                s = s[len(current_substring):]
                        return indices if not s else []

                    mapped_ids = find_map_idx(base_token, blending_tokens)
                    blending_all = "".join(blending_tokens)
                    if len(mapped_ids) > 0 or blending_all.endswith(base_token) or base_token.endswith(blending_all):
                        blending_idx = [blending_idx[m_id] for m_id in mapped_ids]
                        blending_token = "".join([blending_model_tokens[j].replace(blending_model_special_token, "") for j in blending_idx])
                        if base_token == blending_token:
                            blending_id = blending_idx[-1]
                            for blending_logit, blending_index in zip(blending_model_per_step_logits[blending_id], blending_model_per_step_indices[blending_id]):
                                blending_t = blending_model_tokenizer.convert_ids_to_tokens([blending_index])[0].replace(blending_model_special_token, base_model_special_token)
                                if blending_t in base_model_vocab:
                                    aligned_index = base_model_vocab[blending_t]
                                    if aligned_index not in aligned_blending_model_per_step_index:
                                        aligned_blending_model_per_step_index.append(aligned_index)
                                        aligned_blending_model_per_step_logit.append(blending_logit)
                                else:
                                    blending_t = base_model_tokenizer.convert_ids_to_tokens([blending_to_base[blending_index]])[0]
                                    aligned_index = base_model_vocab[blending_t]
                                    if aligned_index not in aligned_blending_model_per_step_index:
                                        aligned_blending_model_per_step_index.append(aligned_index)
                                        aligned_blending_model_per_step_logit.append(blending_logit)
                    else:
                        aligned_blending_model_per_step_index.append(base_model_vocab[base_model_labels[i]])
                        aligned_blending_model_per_step_logit.append(1.0)
        else:
            aligned_blending_model_per_step_index.append(base_model_vocab[base_model_labels[i]])
            aligned_blending_model_per_step_logit.append(1.0)
        aligned_blending_model_per_step_indices.append(aligned_blending_model_per_step_index)
        aligned_blending_model_per_step_logits.append(aligned_blending_model_per_step_logit)
    return aligned_blending_model_per_step_logits, aligned_blending_model_per_step_indices

# ----------------------------------------------------------------------------------------------


class _PieceTok:
    """A tokenizer over a fixed piece list: decode([id]) returns the raw piece (marker included),
    the marker-normalised reading of upstream's string rules."""

    def __init__(self, pieces):
        self.pieces = pieces

    def __len__(self):
        return len(self.pieces)

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)

    def convert_ids_to_tokens(self, ids):
        return [self.pieces[i] for i in ids]


class _BaseTok(_PieceTok):
    pass


class _BlendTok(_PieceTok):
    pass


TOKENIZER_TO_SPECIAL_TOKEN.update({_BaseTok: "Ġ", _BlendTok: "▁"})

# word -> segmentations (without the leading space marker on the first piece)
WORDS = {
    "weather": [["weather"], ["weat", "her"], ["we", "ather"]],
    "today": [["today"], ["to", "day"], ["tod", "ay"]],
    "sunny": [["sunny"], ["sun", "ny"], ["su", "nny"]],
    "is": [["is"]],
    "fine": [["fine"], ["fi", "ne"]],
    "raining": [["raining"], ["rain", "ing"], ["ra", "ining"]],
    "the": [["the"]],
    "outside": [["outside"], ["out", "side"], ["outs", "ide"]],
}


def _vocab(marker: str) -> list[str]:
    pieces = ["<s>", "<END>"] + [f"{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    for segs in WORDS.values():
        for seg in segs:
            for k, p in enumerate(seg):
                pieces.append(marker + p if k == 0 else p)
    return list(dict.fromkeys(pieces))


BASE = _vocab("Ġ")
BLEND = _vocab("▁") + ["▁zz", "qq"]  # two pieces the pivot vocabulary lacks


def _row(rng: random.Random, n_words: int):
    words = [rng.choice(list(WORDS)) for _ in range(n_words)]
    base, blend = [], []
    for w in words:
        for out, marker, vocab in ((base, "Ġ", BASE), (blend, "▁", BLEND)):
            seg = rng.choice(WORDS[w])
            out += [vocab.index(marker + p if k == 0 else p) for k, p in enumerate(seg)]
    return base, blend


BASE_C = BASE + ["Ġun", "believable", "Ġunbelievable"]  # for the constructed pairs only
BLEND_C = BLEND + ["▁un", "believable", "▁unbelievable"]


def _texts():
    return A.vocab_texts(_PieceTok(BASE_C)), A.vocab_texts(_PieceTok(BLEND_C))


def test_constructed_pair_many_to_one_and_one_to_many():
    piv_texts, src_texts = _texts()
    assert piv_texts[BASE_C.index("Ġunbelievable")] == " unbelievable" and src_texts[BLEND_C.index("▁un")] == " un"
    # n-to-1: pivot " un|believable| is" against source " unbelievable| is"
    piv = [BASE_C.index(p) for p in ["Ġun", "believable", "Ġis"]]
    src = [BLEND_C.index(p) for p in ["▁unbelievable", "▁is"]]
    p2s, _ = A.dtw([piv_texts[t] for t in piv], [src_texts[t] for t in src])
    assert p2s == [[0], [0], [1]]  # (costs 10, 2 / 2, 9 / 11, 0; worked by hand)
    choice = A.fusechat_choices(p2s, [piv_texts[t] for t in piv], [src_texts[t] for t in src])
    # position 0: both predict the first token after the prompt -> source 0; after " un" the
    # source has no position ending there: one-hot; "believable" ends where " unbelievable" ends,
    # so the position after it (predicting " is") takes the source's position 1
    assert choice == [0, A.ONE_HOT, 1]
    assert A.fusellm_choices(p2s, piv, src, piv_texts, src_texts, {}, False) == [A.ONE_HOT, A.ONE_HOT, 1]
    # 1-to-n: pivot " unbelievable| is" against source " un|believable| is"
    piv = [BASE_C.index(p) for p in ["Ġunbelievable", "Ġis"]]
    src = [BLEND_C.index(p) for p in ["▁un", "believable", "▁is"]]
    p2s, _ = A.dtw([piv_texts[t] for t in piv], [src_texts[t] for t in src])
    assert p2s == [[0, 1], [2]]
    choice = A.fusechat_choices(p2s, [" unbelievable", " is"], [" un", "believable", " is"])
    assert choice == [0, 2]  # the position predicting " is" takes the source's position predicting " is"
    assert A._fusechat_token_choice(" fine", [" fi", "nest"], [3, 4]) == A.ONE_HOT  # no piece ends it
    assert A._fusechat_token_choice(" today", [" to", "day", " is"], [5, 6, 7]) == 6


def test_align_row_fusechat_fills_from_the_chosen_positions():
    piv_texts, src_texts = _texts()
    piv = [BASE_C.index(p) for p in ["Ġun", "believable", "Ġis"]]
    src = [BLEND_C.index(p) for p in ["▁unbelievable", "▁is"]]
    vmap = A.exact_map(src_texts, piv_texts)
    top = np.array([[BLEND_C.index("▁unbelievable"), BLEND_C.index("▁zz")], [BLEND_C.index("▁is"), BLEND_C.index("▁the")]])
    lps = np.array([[-0.1, -3.0], [-0.2, -2.0]], dtype=np.float32)
    row = A.align_row(piv, src, top, lps, piv_texts, src_texts, vocab_map=vmap, rules="fusechat")
    assert row.ids[0].tolist() == [BASE_C.index("Ġunbelievable"), -1]  # "▁zz" has no pivot id: dropped
    assert row.ids[1].tolist() == [BASE_C.index("believable"), -1]  # one-hot on the pivot token
    assert row.ids[2].tolist() == [BASE_C.index("Ġis"), BASE_C.index("Ġthe")]
    assert row.logprobs[2].tolist() == pytest.approx([-0.2, -2.0])
    assert (row.one_to_one, row.one_hot, row.empty) == (2, 1, 0)
    hard = A.align_row(piv, src, top, lps, piv_texts, src_texts, vocab_map=vmap, rules="fusellm")
    assert (hard.one_to_one, hard.one_hot) == (1, 2)  # FuseLLM's rules: only " is" = " is"
    with pytest.raises(ValueError, match="fusechat"):
        A.align_row(piv, src, top, lps, piv_texts, src_texts, vocab_map=vmap, rules="other")


@pytest.mark.parametrize("seed", range(40))
def test_parity_with_fusechat_transform_step_logits(seed):
    rng = random.Random(seed)
    base_tok, blend_tok = _BaseTok(BASE), _BlendTok(BLEND)
    base_vocab = {p: i for i, p in enumerate(BASE)}
    piv_texts, src_texts = A.vocab_texts(base_tok), A.vocab_texts(blend_tok)
    exact = A.exact_map(src_texts, piv_texts)
    # blending_to_base for ids without an exact match: any pivot id (the statistics map's role)
    blending_to_base = [exact.get(i, rng.randrange(2, len(BASE))) for i in range(len(BLEND))]
    vmap = {i: blending_to_base[i] for i in range(len(BLEND))}
    piv, src = _row(rng, rng.randint(2, 9))
    m, k = len(src), 3
    # our store: top-k at source position t predicts token t
    top = np.array([rng.sample(range(2, len(BLEND)), k) for _ in range(m)])
    lps = np.sort(np.array([[rng.uniform(-6, 0) for _ in range(k)] for _ in range(m)], dtype=np.float32))[:, ::-1]
    ours = A.align_row(piv, src, top, lps.copy(), piv_texts, src_texts, vocab_map=vmap, rules="fusechat")
    # upstream: step j is the distribution after token j = our position j+1; after the last
    # token there is none here, so upstream gets a sentinel there
    end = BLEND.index("<END>")
    step_ids = [top[j + 1].tolist() for j in range(m - 1)] + [[end]]
    step_lps = [lps[j + 1].tolist() for j in range(m - 1)] + [[0.5]]
    blending_to_base[end] = base_vocab["<END>"]
    up_lps, up_ids = transform_step_logits(base_tok, blend_tok, base_vocab, piv, src, step_lps, step_ids,
                                           use_token_alignment_matrix=True, blending_to_base=blending_to_base)
    for i in range(len(piv) - 1):
        got = [x for x in ours.ids[i + 1].tolist() if x >= 0]
        want = up_ids[i]
        if want == [base_vocab["<END>"]]:
            want = [piv[i + 1]]  # upstream chose the source's last token: one-hot here (module docstring)
        if want == [piv[i + 1]] and up_lps[i] in ([1.0], [0.5]):
            assert got == want, (i, piv, src)
            continue
        assert got == want, (i, piv, src)
        assert ours.logprobs[i + 1][:len(got)].tolist() == pytest.approx(up_lps[i], abs=1e-6)
