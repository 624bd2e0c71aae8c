"""The objective registry (issue 11): entries, config validation, and the FuseRL and InfiFPO
losses against hand-computed values and their exact reductions to sft / dpo / dpo_norm."""

from __future__ import annotations

import math

import pytest

from harness.errors import UsageError
from trainers import losses as L
from trainers.objectives import OBJECTIVES, REFERENCE, SOURCE_LOGPS, StepInputs, get_objective, reduce_loss

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def t(*v):
    return torch.tensor(v, dtype=torch.float64)


def nls(z):  # -log sigmoid(z), by hand
    return math.log1p(math.exp(-z))


def base(method, **kw):
    from trainers.config import load_config

    return load_config(None, method, {"model": "m", "data": "d", "output_dir": "o", **kw})


# ---- the registry ---------------------------------------------------------------------------
def test_every_method_is_one_entry_with_cited_defaults():
    assert {"sft", "dpo", "dpo_norm", "ipo", "simpo", "wrpo", "fuse_sft", "fuse_po", "infifpo"} <= set(OBJECTIVES)
    for obj in OBJECTIVES.values():
        assert obj.learning_rate > 0 and obj.lr_source
        assert len(obj.kinds) >= 1
    assert base("wrpo").hyper.beta == 0.01 and base("wrpo").lr == 3e-7
    assert base("dpo_norm").hyper.beta == 10.0
    assert base("infifpo", objective={"sources": ["s"]}).hyper.beta == 2.5
    assert base("infifpo", objective={"sources": ["s"]}).hyper.ref_offset == 5.0
    assert base("simpo", simpo_gamma_beta_ratio=0.3).hyper.gamma_beta_ratio == 0.3


def test_needs_follow_the_objective_and_its_options():
    assert get_objective("sft").needs(None) == frozenset()
    assert REFERENCE in get_objective("dpo").needs(None)
    assert base("fuse_po", objective={"base_loss": "simpo"}).objective_spec.needs(
        base("fuse_po", objective={"base_loss": "simpo"}).hyper) == frozenset()
    assert get_objective("infifpo").needs(None) == {REFERENCE, SOURCE_LOGPS}


def test_unknown_objective_and_option_are_did_you_mean_errors():
    with pytest.raises(UsageError, match="Did you mean 'fuse_sft'"):
        get_objective("fuse_sf")
    with pytest.raises(UsageError, match="Did you mean 'fuse_po'"):
        base("fuse_p")
    with pytest.raises(UsageError, match="Did you mean 'base_loss'"):
        base("fuse_po", objective={"base_los": "dpo"})
    with pytest.raises(UsageError, match="ref_model is meaningless for method simpo"):
        base("simpo", ref_model="x")


# ---- FuseRL: FuseSFT ------------------------------------------------------------------------
def test_fuse_sft_is_the_weighted_token_mean_nll():
    # Σ w·(-log π) / Σ w·|y| = (0.25·4 + 0.75·6) / (0.25·2 + 0.75·3) = 5.5 / 2.75
    x = StepInputs(policy={"response": t(-4.0, -6.0)}, lengths={"response": t(2.0, 3.0)}, weights=t(0.25, 0.75))
    lo = get_objective("fuse_sft").loss(x, base("fuse_sft").hyper)
    assert reduce_loss(lo, x.weights).item() == pytest.approx(2.0)


def test_fuse_sft_with_weight_one_is_exactly_sft():
    logps, lens = torch.randn(5, dtype=torch.float64) * 10, t(3.0, 7.0, 1.0, 4.0, 9.0)
    plain = StepInputs(policy={"response": logps}, lengths={"response": lens})
    weighted = StepInputs(policy={"response": logps}, lengths={"response": lens}, weights=torch.ones(5))
    a = reduce_loss(get_objective("sft").loss(plain, base("sft").hyper), None)
    b = reduce_loss(get_objective("fuse_sft").loss(weighted, base("fuse_sft").hyper), weighted.weights)
    assert a.item() == b.item()


# ---- FuseRL: FusePO -------------------------------------------------------------------------
def test_fuse_po_is_the_weighted_sum_of_per_source_dpo_losses():
    # pair 1: logits 0.1·((−10+11) − (−12+11)) = 0.2; pair 2: 0.1·((−5+5) − (−5+4)) = 0.1
    x = StepInputs(policy={"chosen": t(-10.0, -5.0), "rejected": t(-12.0, -5.0)},
                   lengths={"chosen": t(1.0, 1.0), "rejected": t(1.0, 1.0)},
                   ref={"chosen": t(-11.0, -5.0), "rejected": t(-11.0, -4.0)}, weights=t(0.2, 0.8))
    hp = base("fuse_po").hyper
    lo = get_objective("fuse_po").loss(x, hp)
    assert reduce_loss(lo, x.weights).item() == pytest.approx(0.2 * nls(0.2) + 0.8 * nls(0.1))


def test_fuse_po_with_one_source_of_weight_one_is_exactly_its_base_loss():
    pc, pr, rc, rr = (torch.randn(4, dtype=torch.float64) * 5 - 20 for _ in range(4))
    lc, lr = t(3.0, 5.0, 8.0, 2.0), t(4.0, 4.0, 6.0, 9.0)
    x = StepInputs(policy={"chosen": pc, "rejected": pr}, lengths={"chosen": lc, "rejected": lr},
                   ref={"chosen": rc, "rejected": rr}, weights=torch.ones(4))
    dpo = L.dpo_loss(pc, pr, rc, rr, beta=0.1).losses.mean()
    got = reduce_loss(get_objective("fuse_po").loss(x, base("fuse_po").hyper), x.weights)
    assert got.item() == dpo.item()
    norm = L.dpo_norm_loss(pc, pr, rc, rr, lc, lr, beta=10.0).losses.mean()
    hp = base("fuse_po", objective={"base_loss": "dpo_norm"}).hyper
    assert reduce_loss(get_objective("fuse_po").loss(x, hp), x.weights).item() == norm.item()


def test_fusion_weights_softmax_normalized_and_uniform_by_hand():
    e = [math.exp(1.0), math.exp(0.0)]
    assert L.fusion_weights([0.5, 0.0], "softmax", 0.5) == pytest.approx([e[0] / sum(e), e[1] / sum(e)])
    assert L.fusion_weights([3.0, 1.0], "normalized") == pytest.approx([0.75, 0.25])
    assert L.fusion_weights([3.0, 1.0, 7.0], "uniform") == pytest.approx([1 / 3] * 3)
    assert all(math.isnan(w) for w in L.fusion_weights([1.0, math.nan], "softmax"))


def fuse_row(i, answers, pairs=()):
    return {"id": f"p/{i}", "pool": "p", "prompt": f"What is {i} + {i}?", "verified": False,
            "answers": [{"source": s, "text": text, "score": score, **({"weight": w} if w is not None else {})}
                        for s, text, score, w in answers],
            "pairs": [{"source": s, "chosen": c, "rejected": r, "chosen_score": cs, "rejected_score": 0.0}
                      for s, c, r, cs in pairs]}


def test_fuse_rows_become_weighted_examples_and_bad_weights_are_dropped_per_row(tokenizer):
    from trainers.data import tokenize_rows

    rows = [fuse_row(0, [("a", "two", 1.0, None), ("b", "four", 1.0, None)]),
            fuse_row(1, [("a", "x", 1.0, -1.0), ("b", "y", 1.0, 2.0)]),      # negative given weight
            fuse_row(2, [("a", "x", 0.0, 0.0), ("b", "y", 0.0, 0.0)]),       # all zero
            fuse_row(3, [("a", "x", None, math.nan)]),                        # NaN
            fuse_row(4, [("a", "only", 0.3, 1.0)])]
    ex, rep = tokenize_rows(rows, "fuse_sft", tokenizer, max_length=64, max_prompt_length=48,
                            weigh=lambda s: L.fusion_weights(s, "softmax", 1.0))
    assert [e.id for e in ex] == ["0.0", "0.1", "1.0", "1.1", "2.0", "2.1", "4.0"]
    assert [e.weight for e in ex[:2]] == pytest.approx([0.5, 0.5])  # equal scores: equal weights
    assert ex[-1].weight == 1.0 and ex[-1].texts == {"response": "only"}
    assert rep.dropped == {"weights: NaN or missing": 1} and rep.kept == 4
    ex, rep = tokenize_rows(rows, "fuse_sft", tokenizer, max_length=64, max_prompt_length=48, weigh=None)
    # `weighting: given` with no weight field (row 0) is missing, not 1
    assert rep.dropped == {"weights: negative": 1, "weights: all zero": 1, "weights: NaN or missing": 2}
    assert rep.examples["weights: negative"] == [1] and rep.kept == 1
    ex, rep = tokenize_rows(rows, "fuse_pref", tokenizer, max_length=64, max_prompt_length=48, weigh=None)
    assert ex == [] and rep.dropped == {"no pairs": 5}


def test_select_fuse_keeps_every_usable_answer_and_one_pair_per_source():
    from trainers.fusion.pools import PromptItem
    from trainers.fusion.sampling import Answer
    from trainers.fusion.selection import FuseRow, select_fuse

    it = [PromptItem(id="p/1", pool="p", kind="math", prompt="q?"), PromptItem(id="p/2", pool="p", kind="math",
                                                                               prompt="r?")]
    a = {"p/1": [Answer("right a", "a", 0, score=1.0, correct=True), Answer("wrong a", "a", 1, score=0.0,
                                                                            correct=False),
                 Answer("right b", "b", 0, score=1.0, correct=True)],
         "p/2": [Answer("wrong", "a", 0, score=0.0, correct=False)]}
    rows, dropped = select_fuse(it, a, ["a", "b"])
    row = FuseRow.model_validate(rows[0])
    assert [x.text for x in row.answers] == ["right a", "right b"]
    assert [(p.source, p.chosen, p.rejected) for p in row.pairs] == [("a", "right a", "wrong a")]
    assert dropped == {"no correct answer and no pair": 1}


# ---- InfiFPO --------------------------------------------------------------------------------
def _infi(src_c, src_r, src_lc, src_lr, **kw):
    return L.infifpo_loss(t(-8.0), t(-12.0), t(-10.0), t(-10.0), t(4.0), t(4.0), src_c, src_r, src_lc, src_lr, **kw)


def test_infifpo_with_the_pivot_as_its_only_source_is_exactly_dpo_norm():
    pc, pr, rc, rr = (torch.randn(3, dtype=torch.float64) * 5 - 20 for _ in range(4))
    lc, lr = t(3.0, 5.0, 8.0), t(4.0, 6.0, 9.0)
    want = L.dpo_norm_loss(pc, pr, rc, rr, lc, lr, beta=2.5)
    for clip in ("band", "none"):
        for fusion in ("mean", "max_margin"):
            got = L.infifpo_loss(pc, pr, rc, rr, lc, lr, rc[:, None], rr[:, None], lc[:, None], lr[:, None],
                                 beta=2.5, clip=clip, fusion=fusion)
            # equal up to float64 rounding: π/n − ref/n here, (π − ref)/n in dpo_norm
            torch.testing.assert_close(got.losses, want.losses, rtol=0, atol=1e-12)


def test_infifpo_hand_values_mean_clip_and_max_margin():
    # policy per token: c -2, r -3; pivot per token: c -2.5, r -2.5
    # sources (per token): c [-2.0, -4.0], r [-1.0, -10.0]
    src_c, src_r = torch.tensor([[-6.0, -20.0]], dtype=torch.float64), torch.tensor([[-2.0, -30.0]],
                                                                                      dtype=torch.float64)
    lc, lr = torch.tensor([[3.0, 5.0]], dtype=torch.float64), torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    # no clip, mean: ref c -3, r -5.5 -> z = 1·((-2+3) - (-3+5.5)) = -1.5
    assert _infi(src_c, src_r, lc, lr, beta=1.0, clip="none").losses.item() == pytest.approx(nls(-1.5))
    # band ±1 around the pivot: c [-2.0, -3.5] -> -2.75; r [-1.5, -3.5] -> -2.5; z = 0.75 - (-0.5) = 1.25
    assert _infi(src_c, src_r, lc, lr, beta=1.0, ref_offset=1.0).losses.item() == pytest.approx(nls(1.25))
    # max-margin, no clip: c picks -4 (|−1.5| > |0.5|), r picks -10; z = (−2+4) − (−3+10) = −5
    got = _infi(src_c, src_r, lc, lr, beta=1.0, clip="none", fusion="max_margin")
    assert got.losses.item() == pytest.approx(nls(-5.0))
    # without length normalisation the sums are used as they are: z = (−8+13) − (−12+16) = 1
    got = _infi(src_c, src_r, lc, lr, beta=1.0, clip="none", length_normalize=False)
    assert got.losses.item() == pytest.approx(nls(1.0))


def test_source_logps_drop_rows_a_source_cannot_score():
    from harness.textscore import TextScore
    from trainers.data import Example
    from trainers.reference import source_logps

    exs = [Example(id=str(i), prompt_ids=[1], responses={"chosen": [2], "rejected": [3]},
                   prompt_messages=[{"role": "user", "content": f"q{i}"}],
                   texts={"chosen": f"c{i}", "rejected": f"r{i}"}) for i in range(3)]

    def fake(model, requests, *, store, backend):  # unit test only: the scorer's contract, no model
        return [TextScore(id=r.id, token_ids=[1, 2], logprobs=[-1.0, -0.5] if model == "s1" else [-2.0],
                          error="cannot render" if model == "s2" and r.id.startswith("1") else None)
                for r in requests]

    got, bad = source_logps(exs, ("chosen", "rejected"), ["s1", "s2"], None, score=fake)
    assert set(got) == {"0", "2"} and got["0"]["chosen"] == [[-1.5, 2.0], [-2.0, 1.0]]
    assert bad == {"1": "source s2 could not score it: cannot render"}


def test_adding_an_objective_is_one_entry(monkeypatch):
    """The docs/training.md example: one registry entry and the config, loss and pipeline follow."""
    from pydantic import Field

    from trainers import objectives as O

    class HingeParams(O.Params):
        beta: float = Field(0.1, gt=0)

    monkeypatch.setitem(O.OBJECTIVES, "hinge", O.Objective(
        name="hinge", summary="hinge", row_format="pref", kinds=("chosen", "rejected"), params=HingeParams,
        learning_rate=5e-7, lr_source="SLiC-HF", needs=lambda hp: frozenset({REFERENCE}),
        loss=lambda x, hp: L.LossOutput((1 - hp.beta * ((x.policy["chosen"] - x.ref["chosen"])
                                         - (x.policy["rejected"] - x.ref["rejected"]))).clamp(min=0))))
    cfg = base("hinge", beta=2.0)
    x = StepInputs(policy={"chosen": t(-1.0), "rejected": t(-2.0)}, lengths={}, ref={"chosen": t(-1.0),
                                                                                     "rejected": t(-1.0)})
    # 1 - 2·(0 - (-1)) = -1 -> clamped to 0
    assert reduce_loss(cfg.objective_spec.loss(x, cfg.hyper), None).item() == 0.0
    assert cfg.lr == 5e-7


def test_rows_in_infifpo_format_bring_their_source_logps(tokenizer):
    from trainers.data import tokenize_rows

    good = {"prompt": "q?", "chosen": "yes", "rejected": "no", "fuse_chosen_logps": [-67.3, -10.0],
            "fuse_mean_chosen_logps": [-0.2378, -2.0], "fuse_rejected_logps": [-4.0, -9.0],
            "fuse_mean_rejected_logps": [-1.0, -3.0]}
    bad = {**good, "fuse_mean_rejected_logps": [-1.0]}
    ex, rep = tokenize_rows([good, bad, {"prompt": "q?", "chosen": "a", "rejected": "b"}], "pref", tokenizer,
                            max_length=64, max_prompt_length=48)
    assert ex[0].source_logps["chosen"][1] == [-10.0, 5.0]
    assert ex[0].source_logps["chosen"][0][1] == pytest.approx(283.0, abs=0.1)  # the README's 283 tokens
    assert ex[1].source_logps is None  # a plain row: scored by the named sources instead
    assert list(rep.dropped) == ["bad fuse_rejected_logps / fuse_mean_rejected_logps (equal-length lists of "
                                 "finite log-probs, means < 0)"]


def test_infifpo_trains_from_rows_that_bring_source_logps(embedded_model_dir, tmp_path):
    import json

    from tests.trainer_helpers import make_tiny_model
    from trainers.loop import train

    model = make_tiny_model(embedded_model_dir, tmp_path / "tiny")
    rows = [{"prompt": f"What is {i} + {i}?", "chosen": f"It is {2 * i}.", "rejected": f"It is {2 * i + 1}.",
             "fuse_chosen_logps": [-40.0, -50.0], "fuse_mean_chosen_logps": [-8.0, -10.0],
             "fuse_rejected_logps": [-45.0, -40.0], "fuse_mean_rejected_logps": [-9.0, -8.0]} for i in range(4)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = train(base("infifpo", model=str(model), data=str(data), output_dir=str(tmp_path / "o"), max_steps=2,
                     batch_size=2, max_length=64, warmup_ratio=0.0, objective={"fusion": "max_margin"}),
                None, progress=False)
    assert res.steps == 2 and math.isfinite(res.last_metrics["loss"]) and "margins" in res.last_metrics
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for r in rows))
    with pytest.raises(UsageError, match="name the source models"):
        train(base("infifpo", model=str(model), data=str(plain), output_dir=str(tmp_path / "p")), None,
              progress=False)
