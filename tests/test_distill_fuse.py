"""Fusion functions: MinCE selection and its tie rule, FuseLLM's reward-softmax weighting, modes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainers.distill import fuse as F


def _dist(ids, lps, ce):
    return F.RowDist(np.array(ids, dtype=np.int32), np.array(lps, dtype=np.float32), ce)


def test_target_probs_softmax_over_kept_entries_with_temperature():
    p = F.target_probs(np.array([[3, 5, -1]]), np.log(np.array([[0.6, 0.2, 0.9]])))
    assert p.tolist()[0] == pytest.approx([0.75, 0.25, 0.0])
    hot = F.target_probs(np.array([[7, -1]]), np.array([[0.0, 0.0]]))
    assert hot.tolist()[0] == [1.0, 0.0]
    t2 = F.target_probs(np.array([[3, 5]]), np.log(np.array([[0.6, 0.2]])), temperature=2.0)
    assert t2[0, 0] == pytest.approx(math.sqrt(0.6) / (math.sqrt(0.6) + math.sqrt(0.2)), rel=1e-6)


def test_min_ce_picks_lowest_ce_and_ties_go_to_the_pivot():
    piv = _dist([[1, 2]], [[-0.1, -2.0]], ce=1.5)
    a = _dist([[3, 4]], [[-0.2, -1.0]], ce=1.2)
    b = _dist([[5, -1]], [[-0.3, 0.0]], ce=1.2)
    ids, _, winner = F.min_ce(piv, [a, b])
    assert winner == 1 and ids.tolist() == [[3, 4]]  # a and b tie: the earlier source
    _, _, winner = F.min_ce(_dist([[1, 2]], [[-0.1, -2.0]], ce=1.2), [a, b])
    assert winner == 0  # a tie with the pivot goes to the pivot
    _, _, winner = F.min_ce(piv, [_dist([[3, 4]], [[-0.2, -1.0]], ce=1.6)])
    assert winner == 0


def test_empty_aligned_positions_take_the_pivot_entries():
    piv = _dist([[1, 2], [3, 4]], [[-0.1, -2.0], [-0.5, -0.9]], ce=2.0)
    src = _dist([[-1], [9]], [[0.0], [-0.1]], ce=1.0)
    ids, probs, winner = F.min_ce(piv, [src])
    assert winner == 1 and ids.tolist() == [[1, 2], [9, -1]]
    assert probs[1].tolist() == pytest.approx([1.0, 0.0])


def test_weighted_mixes_by_softmax_of_rewards():
    piv = _dist([[1, 2]], np.log([[0.5, 0.5]]), ce=1.0)
    src = _dist([[2, 3]], np.log([[0.25, 0.75]]), ce=2.0)
    ids, probs, w = F.weighted(piv, [src])
    r = [math.exp(-1.0), math.exp(-2.0)]
    w_exp = [math.exp(x) / sum(math.exp(y) for y in r) for x in r]
    assert w == pytest.approx(w_exp)
    assert ids.tolist() == [[1, 2, 2, 3]]
    assert probs[0].tolist() == pytest.approx([w_exp[0] * 0.5, w_exp[0] * 0.5, w_exp[1] * 0.25, w_exp[1] * 0.75])
    assert probs.sum() == pytest.approx(1.0)


def test_modes_and_bad_names():
    assert F.runs_for_mode("pairwise", ["a", "b"]) == [["a"], ["b"]]
    assert F.runs_for_mode("unified", ["a", "b"]) == [["a", "b"]]
    with pytest.raises(ValueError, match="pairwise"):
        F.runs_for_mode("pair", ["a"])
    with pytest.raises(ValueError, match="min_ce"):
        F.fuse_row("mince", _dist([[1]], [[0.0]], 1.0), [])


def test_collate_targets_places_response_targets_on_the_predicting_positions():
    torch = pytest.importorskip("torch")
    from trainers.distill.targets import collate_targets

    fused = [(np.array([[5, 6], [7, -1]], dtype=np.int32), np.array([[0.75, 0.25], [1.0, 0.0]], dtype=np.float32)),
             (np.array([[9], [8], [4]], dtype=np.int32), np.ones((3, 1), dtype=np.float32))]
    teachers = [[np.log(np.full((2, 3), 0.2, dtype=np.float32))], [np.zeros((4, 3), dtype=np.float32)]]
    t = collate_targets([3, 2], 6, fused=fused, teachers=teachers)
    # row 0: prompt 3 tokens, response tokens at 3, 4 -> predicted at shifted positions 2, 3
    assert t["target_ids"].shape == (2, 5, 2)
    assert t["target_ids"][0, 2].tolist() == [5, 6] and t["target_probs"][0, 2].tolist() == [0.75, 0.25]
    assert t["target_ids"][0, 3].tolist() == [7, 0] and t["target_probs"][0, 3].tolist() == [1.0, 0.0]
    assert t["target_probs"][0, :2].sum() == 0 and t["target_probs"][0, 4:].sum() == 0
    assert t["target_ids"][1, 1:4, 0].tolist() == [9, 8, 4]
    assert t["teacher_logprobs"].shape == (2, 1, 4, 3)
    assert t["teacher_mask"][0, 0].tolist() == [1, 1, 0, 0] and t["teacher_mask"][1, 0].tolist() == [1, 1, 1, 1]
    assert torch.isfinite(t["teacher_logprobs"]).all()


class _Tok:
    """The two methods of a transformers tokenizer that vocab_texts uses."""

    def __init__(self, pieces):
        self.pieces = pieces

    def __len__(self):
        return len(self.pieces)

    def convert_ids_to_tokens(self, ids):
        return [self.pieces[i] for i in ids]


def _teacher(tmp_path, name, rows):
    from harness.textscore import TextScore
    from trainers.distill.teacher import TeacherFile, TeacherKey, _write_shard

    key = TeacherKey(source=name, fingerprint=name, template_hash=None, data_hash="d", top_k=2, plain=False)
    scores = [TextScore(id=rid, token_ids=t, logprobs=[-1.0] * len(t), top_ids=ids, top_logprobs=lps)
              for rid, t, ids, lps in rows]
    _write_shard(tmp_path / name / "shard-00000", key, 0, len(rows), scores, 2)
    return TeacherFile(tmp_path / name)


def test_fused_targets_align_a_cross_tokenizer_source_and_pick_by_min_ce(tmp_path):
    from trainers.distill import align as A
    from trainers.distill import targets as TG

    bl = [*A._BYTE_CHARS.values()]
    piv_pieces = bl + ["ĠThe", "Ġweather", "Ġis", "Ġwea"]  # ids 256..259
    src_pieces = ["<unk>", "▁The", "▁weat", "her", "▁is", "▁wea", "▁a", "▁b", "▁c"]
    piv_texts = A.vocab_texts(_Tok(piv_pieces))
    lp = [[-0.1, -2.5]] * 3
    pivot = _teacher(tmp_path, "pivot", [("0", [256, 258, 257], [[256, 259], [258, 256], [257, 259]], lp)])
    # the source is better (lower CE), splits " weather" into " weat|her"
    src_rows = [("0", [1, 4, 2, 3], [[1, 5], [4, 1], [2, 5], [3, 1]], [[-0.2, -1.9]] * 4)]
    source = _teacher(tmp_path, "src", src_rows)
    source._shards[0]["ce"] = np.array([0.5])  # pivot CE 1.0 from its log-probs
    for how in ("mined", "exact", "statistics"):
        sig = TG.cross_source("src", source, _Tok(src_pieces), piv_texts, ["0"], vocab_align=how, pivot=pivot)
        assert sig.vocab_map[1] == 256 and sig.vocab_map[4] == 258
        stats = TG.AlignStats()
        ids, probs = TG.fused_targets("0", [256, 258, 257], pivot, [sig], piv_texts, stats=stats)
        # " The" and " is" align 1-1 and take the source's re-indexed top-2
        assert ids[0].tolist() == [256, 259] and ids[1].tolist() == [258, 256]
        if how != "statistics":  # FuseLLM's rules: " weather" (1-to-2 with " weat|her") is one-hot
            assert ids[2].tolist() == [257, -1] and probs[2].tolist() == [1.0, 0.0]
            assert stats.per_source["src"] == [2, 3]
        else:  # FuseChat's: " weather" follows " is" as " weat" does -> the source's position 2
            assert ids[2].tolist() == [259, -1] and sig.rules == "fusechat"  # " weat", " wea" -> " wea"
            assert stats.per_source["src"] == [3, 3]
    # same tokenizer as the pivot with identical tokens: used without alignment
    same = TG.SourceSignal("same", pivot, True)
    ids, _ = TG.fused_targets("0", [256, 258], pivot, [same], piv_texts)
    assert ids.tolist() == [[256, 259], [258, 256]]
