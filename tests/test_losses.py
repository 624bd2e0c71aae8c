"""Preference losses against hand-computed values, and DPO parity with TRL's DPOTrainer."""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")

from tests.trainer_helpers import make_tiny_model  # noqa: E402
from trainers import losses as L  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model_dir(embedded_model_dir, tmp_path_factory):
    return make_tiny_model(embedded_model_dir, tmp_path_factory.mktemp("tiny") / "model")


def t(*v):
    return torch.tensor(v, dtype=torch.float64)


def nls(z):  # -log sigmoid(z), by hand
    return math.log1p(math.exp(-z))


def test_dpo_matches_hand_computed_value_rewards_and_margin():
    out = L.dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), beta=0.1)
    # logits = 0.1 * ((-10 + 11) - (-12 + 11)) = 0.2
    assert out.losses.item() == pytest.approx(nls(0.2))
    assert out.rewards["chosen"].item() == pytest.approx(0.1)
    assert out.rewards["rejected"].item() == pytest.approx(-0.1)
    assert out.margins.item() == pytest.approx(0.2)


def test_label_smoothing_mixes_in_the_flipped_preference():
    out = L.dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), beta=0.1, label_smoothing=0.2)
    assert out.losses.item() == pytest.approx(0.8 * nls(0.2) + 0.2 * nls(-0.2))


def test_dpo_norm_divides_log_ratios_by_response_lengths():
    out = L.dpo_norm_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), t(4.0), t(2.0), beta=10.0)
    # per-token ratios: chosen 1/4, rejected -1/2 -> logits 10 * 0.75
    assert out.losses.item() == pytest.approx(nls(7.5))
    assert out.rewards["chosen"].item() == pytest.approx(2.5)


def test_ipo_is_squared_distance_to_half_inverse_beta():
    out = L.ipo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), t(1.0), t(1.0), beta=0.1)
    assert out.losses.item() == pytest.approx((2.0 - 5.0) ** 2)


def test_simpo_is_reference_free_with_a_margin():
    out = L.simpo_loss(t(-10.0), t(-12.0), t(5.0), t(4.0), beta=2.0, gamma_beta_ratio=0.5)
    # avg chosen -2, avg rejected -3 -> 2 * (1 - 0.5)
    assert out.losses.item() == pytest.approx(nls(1.0))


def test_wrpo_weights_source_and_target_by_alpha():
    ws, wt, lo = t(-20.0), t(-10.0), t(-12.0)
    rws, rwt, rlo = t(-22.0), t(-11.0), t(-11.0)
    out = L.wrpo_loss(ws, wt, lo, rws, rwt, rlo, alpha=0.25, beta=0.5)
    # Δws = 2, Δwt = 1, Δl = -1: 0.5 * (0.25*2 + 0.75*1 + 1) = 1.125
    assert out.losses.item() == pytest.approx(nls(1.125))
    assert out.rewards["y_ws"].item() == pytest.approx(1.0)
    assert out.rewards["y_l"].item() == pytest.approx(-0.5)
    # α = 0 is DPO on (y_wt, y_l); α = 1 is DPO on (y_ws, y_l)
    assert L.wrpo_loss(ws, wt, lo, rws, rwt, rlo, alpha=0.0, beta=0.5).losses.item() == pytest.approx(
        L.dpo_loss(wt, lo, rwt, rlo, beta=0.5).losses.item())
    assert L.wrpo_loss(ws, wt, lo, rws, rwt, rlo, alpha=1.0, beta=0.5).losses.item() == pytest.approx(
        L.dpo_loss(ws, lo, rws, rlo, beta=0.5).losses.item())


def test_gradients_push_chosen_up_and_rejected_down():
    pc, pr = t(-10.0).requires_grad_(), t(-12.0).requires_grad_()
    L.dpo_loss(pc, pr, t(-11.0), t(-11.0), beta=0.1).losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()
    # d/dpc of -log σ(β x) = -β σ(-β x)
    assert pc.grad.item() == pytest.approx(-0.1 / (1 + math.exp(0.2)))


def test_alpha_schedule_rises_linearly_to_alpha_max():
    assert [L.wrpo_alpha(s, 5, 0.1) for s in range(5)] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])
    assert L.wrpo_alpha(3, 5, 0.1, "constant") == 0.1


def test_sequence_logps_counts_only_masked_tokens():
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]])
    s, n = L.sequence_logps(logits, ids, mask)
    lp = torch.log_softmax(logits, -1)
    want0 = lp[0, 1, ids[0, 2]] + lp[0, 2, ids[0, 3]]
    assert s[0].item() == pytest.approx(want0.item(), rel=1e-5)
    assert n.tolist() == [2.0, 4.0]


def test_dispatch_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown preference method"):
        L.preference_loss("kto", {}, {}, {}, beta=0.1)


# ---- parity with TRL ---------------------------------------------------------------------
def test_dpo_loss_rewards_and_gradients_equal_trl_dpotrainer(tiny_model_dir, tmp_path):
    """Same tiny model, same tokenized batch: our loop's log-probs + `dpo_loss` give TRL's loss,
    rewards and parameter gradients."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from trainers.data import Example, collate

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():  # a reference that differs from the policy, so the log-ratios are not zero
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ours = copy.deepcopy(policy)
    rows = [{"prompt": [{"role": "user", "content": "What is 2+3?"}],
             "chosen": [{"role": "assistant", "content": "2+3 = 5. The answer is 5."}],
             "rejected": [{"role": "assistant", "content": "It is 6."}]},
            {"prompt": [{"role": "user", "content": "Name a colour."}],
             "chosen": [{"role": "assistant", "content": "Blue."}],
             "rejected": [{"role": "assistant", "content": "I cannot answer that question, sorry."}]}]
    args = DPOConfig(output_dir=str(tmp_path / "trl"), report_to=[], beta=0.1, loss_type=["sigmoid"],
                     per_device_train_batch_size=2, use_cpu=True, bf16=False, max_length=None,
                     precompute_ref_log_probs=False, dataset_num_proc=None)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok)
    feats = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(feats)
    trainer.model.train()
    trl_loss = trainer.compute_loss(trainer.model, batch)
    trl_loss.backward()
    m = trainer._metrics["train"]

    exs = [Example(str(i), f["prompt_ids"], {"chosen": f["chosen_ids"], "rejected": f["rejected_ids"]})
           for i, f in enumerate(feats)]
    b = collate(exs, ("chosen", "rejected"), tok.pad_token_id)
    ours.train()
    logps, _ = L.sequence_logps(ours(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                b["input_ids"], b["loss_mask"])
    with torch.no_grad():
        ref_logps, _ = L.sequence_logps(ref(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                        b["input_ids"], b["loss_mask"])
    out = L.dpo_loss(logps[:2], logps[2:], ref_logps[:2], ref_logps[2:], beta=0.1)
    out.losses.mean().backward()

    assert out.losses.mean().item() == pytest.approx(trl_loss.item(), rel=1e-4, abs=1e-6)
    assert out.rewards["chosen"].mean().item() == pytest.approx(m["rewards/chosen"][-1], rel=1e-3, abs=1e-6)
    assert out.rewards["rejected"].mean().item() == pytest.approx(m["rewards/rejected"][-1], rel=1e-3, abs=1e-6)
    assert out.margins.mean().item() == pytest.approx(m["rewards/margins"][-1], rel=1e-3, abs=1e-6)
    trl_params = dict(trainer.accelerator.unwrap_model(trainer.model).named_parameters())
    compared = 0
    for name, p in ours.named_parameters():
        g_trl = trl_params[name].grad
        assert g_trl is not None and p.grad is not None, name
        torch.testing.assert_close(p.grad, g_trl, rtol=1e-3, atol=1e-6, msg=lambda s, n=name: f"{n}: {s}")
        compared += 1
    assert compared > 5
