"""Token-level distillation losses: hand values, FuseLLM's dense form, TRL 1.16 ULDLoss parity."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from trainers import losses as L  # noqa: E402
from trainers.distill import losses as D  # noqa: E402


def _batch(n=3, t=9, v=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, t, v, generator=g) * 3
    ids = torch.randint(0, v, (n, t), generator=g)
    mask = torch.zeros(n, t, dtype=torch.long)
    for i in range(n):
        mask[i, 2 + i: t - i] = 1  # different prompt lengths and padding per row
    return logits, ids, mask


def _targets(n, t, v, k, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(v, generator=g)[:k] for _ in range(n * (t - 1))]).view(n, t - 1, k)
    probs = torch.softmax(torch.randn(n, t - 1, k, generator=g), -1)
    return ids, probs


def test_distill_ce_with_lm_weight_one_is_sft_exactly():
    logits, ids, mask = _batch()
    tid, tp = _targets(3, 9, 17, 4)
    logps, lens = L.sequence_logps(logits, ids, mask)
    sft = -logps.sum() / lens.sum().clamp(min=1)  # trainers/loop.py's SFT loss
    out = D.distill_ce(logits, ids, mask, tid, tp, lm_weight=1.0)
    assert torch.equal(out.loss, sft)


def test_distill_ce_hand_value_one_position():
    # one row, T = 2 (one predicted position), V = 5; gold token 2; target {1: .75, 3: .25}
    z = torch.tensor([[[0.0, 1.0, 2.0, 0.5, -1.0], [0.0] * 5]])
    ids, mask = torch.tensor([[4, 2]]), torch.tensor([[0, 1]])
    out = D.distill_ce(z, ids, mask, torch.tensor([[[1, 3]]]), torch.tensor([[[0.75, 0.25]]]), lm_weight=0.9)
    lse = math.log(sum(math.exp(x) for x in [0.0, 1.0, 2.0, 0.5, -1.0]))
    clm = lse - 2.0
    soft = -(0.75 * (1.0 - lse) + 0.25 * (0.5 - lse))
    assert out.parts["clm"].item() == pytest.approx(clm, abs=1e-6)
    assert out.parts["distill_ce"].item() == pytest.approx(soft, abs=1e-6)
    assert out.loss.item() == pytest.approx(0.9 * clm + 0.1 * soft, abs=1e-6)


def test_sparse_soft_ce_equals_fusellm_dense_scatter():
    """FuseLLM scatters softmax(top-k logits) into a dense (B, T, V) target and calls
    cross_entropy(logits, target); the sparse form must give the same token mean."""
    logits, ids, mask = _batch(seed=3)
    tid, tp = _targets(3, 9, 17, 5, seed=4)
    dense = torch.zeros(3, 8, 17).scatter_(2, tid, tp)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 17), dense.view(-1, 17),
                                           reduction="none").view(3, 8)
    m = mask[:, 1:].float()
    expected = (ce * m).sum() / m.sum()
    out = D.distill_ce(logits, ids, mask, tid, tp, lm_weight=0.0)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def _log(p):
    return torch.log(torch.tensor(p))


def test_uld_hand_example_unequal_vocabularies():
    # student V = 3, teacher V = 4, two paired positions; sorted L1: 0.2 and 0.4 -> mean 0.3
    s = torch.stack([_log([0.2, 0.5, 0.3]), _log([0.2, 0.6, 0.2]), torch.zeros(3)]).unsqueeze(0)
    ids, mask = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 1]])
    t = torch.stack([_log([0.1, 0.2, 0.3, 0.4]), _log([0.1, 0.7, 0.1, 0.1])]).unsqueeze(0)
    tmask = torch.tensor([[1, 1]])
    out = D.uld(s, ids, mask, t, tmask, top_k=4, lm_weight=1.0)
    assert out.loss.item() == pytest.approx(0.3, abs=1e-6)
    # top-2: |.5-.4| + 0 = .1 and |.6-.7| + |.2-.1| = .2 -> .15
    assert D.uld(s, ids, mask, t, tmask, top_k=2, lm_weight=1.0).loss.item() == pytest.approx(0.15, abs=1e-6)


def _trl_uld():
    gold = pytest.importorskip("trl.experimental.gold.gold_trainer")
    cfg = SimpleNamespace(uld_crossentropy_weight=0.0, uld_distillation_weight=1.0, uld_student_temperature=1.0,
                          uld_teacher_temperature=1.0, uld_skip_student_eos=True, uld_skip_teacher_eos=True,
                          use_extended_uld=False, uld_token_merge_strategy="observed")
    return gold.ULDLoss(cfg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uld_equals_trl_uldloss_on_random_unequal_vocab_batches(seed):
    g = torch.Generator().manual_seed(seed)
    n, ts, tt, vs, vt = 3, 14, 19, 41, 263
    s_logits = torch.randn(n, ts, vs, generator=g) * 2
    t_logits = torch.randn(n, tt, vt, generator=g) * 2
    s_ids = torch.randint(0, vs, (n, ts), generator=g)
    t_ids = torch.randint(0, vt, (n, tt), generator=g)
    s_labels = torch.full((n, ts), -100)
    t_labels = torch.full((n, tt), -100)
    mask = torch.zeros(n, ts, dtype=torch.long)
    tmask = torch.zeros(n, tt, dtype=torch.long)
    for i in range(n):
        a, m = 2 + i, 6 + 2 * i  # student answer: labels [a, a+m), TRL uses logits [a, a+m-1)
        s_labels[i, a:a + m] = s_ids[i, a:a + m]
        mask[i, a + 1:a + m] = 1  # our shifted mask covers logits [a, a+m-1)
        b, r = 3 + 2 * i, 11 - 3 * i
        t_labels[i, b:b + r] = t_ids[i, b:b + r]
        tmask[i, b:b + r - 1] = 1  # stored teacher rows at its answer positions, EOS skipped
    expected = _trl_uld()(s_logits, t_logits, s_labels, t_labels, s_ids, t_ids)
    t_logprobs = torch.log_softmax(t_logits, -1)  # "stored" entries = the whole teacher vocab
    out = D.uld(s_logits, s_ids, mask, t_logprobs, tmask, top_k=max(vs, vt), lm_weight=1.0)
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_uld_topk_equal_to_vocab_is_plain_uld_and_renormalize_changes_it():
    logits, ids, mask = _batch(seed=5)
    t = torch.log_softmax(torch.randn(3, 7, 23), -1)
    tm = torch.ones(3, 7, dtype=torch.long)
    full = D.uld(logits, ids, mask, t, tm, top_k=23, lm_weight=1.0).loss
    assert D.uld(logits, ids, mask, t, tm, top_k=10**6, lm_weight=1.0).loss.item() == pytest.approx(full.item())
    k3 = D.uld(logits, ids, mask, t, tm, top_k=3, lm_weight=1.0).loss
    assert k3.item() < full.item()  # fewer non-negative L1 terms
    assert D.uld(logits, ids, mask, t, tm, top_k=3, renormalize=True, lm_weight=1.0).loss.item() != k3.item()


def test_uld_zscore_is_invariant_to_teacher_logit_shift_and_scale():
    logits, ids, mask = _batch(seed=6)
    t = torch.randn(3, 7, 10)
    tm = torch.ones(3, 7, dtype=torch.long)
    a = D.uld(logits, ids, mask, t, tm, top_k=10, zscore=True, lm_weight=1.0).loss
    b = D.uld(logits, ids, mask, 3 * t - 5, tm, top_k=10, zscore=True, lm_weight=1.0).loss
    assert a.item() == pytest.approx(b.item(), abs=1e-5)


def test_uld_gradient_flows_to_student_logits_only_through_kept_entries():
    logits, ids, mask = _batch(seed=7)
    logits.requires_grad_(True)
    t = torch.log_softmax(torch.randn(3, 7, 30), -1)
    D.uld(logits, ids, mask, t, torch.ones(3, 7), top_k=10, lm_weight=1.0).loss.backward()
    assert logits.grad.abs().sum() > 0
    assert torch.all(logits.grad[:, -1] == 0)  # the last position predicts nothing


def test_sorted_gw_is_zero_for_a_relabelled_graph_and_bounds_brute_force():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(1, 12, 4, generator=g)
    gs = D.co_activation_graph(z, torch.ones(1, 12))
    perm = torch.tensor([2, 0, 3, 1])
    assert D.sorted_gw_distance(gs, gs[:, perm][:, :, perm]).item() == pytest.approx(0.0, abs=1e-10)
    gt = D.co_activation_graph(torch.randn(1, 12, 4, generator=g), torch.ones(1, 12))
    brute = min(((gs[0] - gt[0][list(p)][:, list(p)]) ** 2).mean().item() for p in itertools.permutations(range(4)))
    assert D.sorted_gw_distance(gs, gt).item() >= brute - 1e-9


def test_gld_with_zero_graph_weight_is_uld():
    logits, ids, mask = _batch(seed=9)
    t = torch.log_softmax(torch.randn(3, 7, 30), -1)
    tm = torch.ones(3, 7)
    u = D.uld(logits, ids, mask, t, tm, top_k=10, lm_weight=0.5)
    g0 = D.gld(logits, ids, mask, t, tm, top_k=10, gld_weight=0.0, lm_weight=0.5)
    g1 = D.gld(logits, ids, mask, t, tm, top_k=10, gld_weight=1.0, lm_weight=0.5)
    assert g0.loss.item() == pytest.approx(u.loss.item(), abs=1e-7)
    assert g1.parts["gld"].item() > 0 and g1.loss.item() > g0.loss.item()


def test_uld_with_several_sources_averages_their_terms():
    logits, ids, mask = _batch(seed=10)
    t1 = torch.log_softmax(torch.randn(3, 7, 30), -1)
    t2 = torch.log_softmax(torch.randn(3, 5, 20), -1)
    m1, m2 = torch.ones(3, 7), torch.ones(3, 5)
    u1 = D.uld(logits, ids, mask, t1, m1, top_k=10, lm_weight=1.0).loss
    u2 = D.uld(logits, ids, mask, t2, m2, top_k=10, lm_weight=1.0).loss
    both = torch.full((3, 2, 7, 10), -1e4)
    both[:, 0] = t1.topk(10, -1).values
    both[:, 1, :5] = t2.topk(10, -1).values
    bm = torch.zeros(3, 2, 7)
    bm[:, 0], bm[:, 1, :5] = 1, 1
    u12 = D.uld(logits, ids, mask, both, bm, top_k=10, lm_weight=1.0).loss
    assert u12.item() == pytest.approx((u1.item() + u2.item()) / 2, abs=1e-6)
    g12 = D.gld(logits, ids, mask, both, bm, top_k=10, lm_weight=1.0)
    assert g12.parts["uld"].item() == pytest.approx(u12.item(), abs=1e-6)
