"""Config, data validation, reference cache, the training loop and the `harness train` CLI.

The loop tests run a tiny random Llama (real transformers model, the embedded model's real
tokenizer and chat template) so a few optimizer steps take seconds on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import UsageError
from tests.conftest import harness_cli, requires_vllm
from tests.trainer_helpers import make_tiny_model

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model_dir(embedded_model_dir, tmp_path_factory):
    return make_tiny_model(embedded_model_dir, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def wrpo_rows(n=6):
    return [{"prompt": f"What is {i} + {i}?", "y_ws": f"{i} + {i} = {2 * i}. The answer is \\boxed{{{2 * i}}}.",
             "y_wt": f"The answer is \\boxed{{{2 * i}}}.", "y_l": f"The answer is \\boxed{{{2 * i + 1}}}."}
            for i in range(n)]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def cfg_for(tmp_path, model_dir, data, method="wrpo", **kw):
    from trainers.config import load_config

    base = {"model": str(model_dir), "data": str(data), "output_dir": str(tmp_path / "out"), "max_steps": 3,
            "batch_size": 2, "max_length": 128, "learning_rate": 1e-3, "beta": 0.5, "logging_steps": 1}
    return load_config(None, method, {**base, **kw})


# ---- config ---------------------------------------------------------------------------------
def test_unknown_config_key_is_named_with_a_suggestion(tmp_path):
    from trainers.config import load_config

    rec = tmp_path / "r.yaml"
    rec.write_text("method: wrpo\nmodel: m\ndata: d\noutput_dir: o\nlearning_rte: 1e-6\n")
    with pytest.raises(UsageError, match=r"unknown config key 'learning_rte'.*Did you mean 'learning_rate'"):
        load_config(str(rec), "wrpo", {})


def test_config_method_mismatch_and_bad_values_are_usage_errors(tmp_path):
    from trainers.config import load_config

    rec = tmp_path / "r.yaml"
    rec.write_text("method: sft\nmodel: m\ndata: d\noutput_dir: o\n")
    with pytest.raises(UsageError, match="is for method 'sft'"):
        load_config(str(rec), "wrpo", {})
    with pytest.raises(UsageError, match="alpha_max"):
        load_config(str(rec), "sft", {"alpha_max": 2})


def test_recipes_in_the_repo_validate():
    from trainers.config import load_config

    d = Path(__file__).parent.parent / "trainers" / "recipes"
    recipes = [d / f for f in ("gsm8k_sft_cpu.yaml", "gsm8k_wrpo_cpu.yaml", "wrpo_official.yaml",
                               "dpo_norm_fusechat.yaml")]
    for r in recipes:
        cfg = load_config(str(r), None, {})
        assert cfg.method in ("sft", "wrpo", "dpo_norm")


# ---- data --------------------------------------------------------------------------------------
def test_validation_drops_bad_rows_with_reasons_and_counts(tokenizer):
    from trainers.data import tokenize_rows

    rows = [*wrpo_rows(2), None, {"prompt": "q", "y_ws": "a", "y_wt": "b"}, {"prompt": "q", "y_ws": " ", "y_wt": "b",
            "y_l": "c"}, {"prompt": "long " * 300, "y_ws": "a", "y_wt": "b", "y_l": "c"},
            {"prompt": "q", "y_ws": "a", "y_wt": "same", "y_l": "same"}, {"prompt": 3, "y_ws": "a", "y_wt": "b", "y_l": "c"}]
    exs, rep = tokenize_rows(rows, "wrpo", tokenizer, max_length=256, max_prompt_length=64)
    assert rep.total == 8 and rep.kept == 2 and len(exs) == 2
    assert rep.dropped == {"not a JSON object": 1, "missing field 'y_l'": 1, "empty y_ws": 1,
                           "prompt longer than max_prompt_length=64": 1, "y_wt equals y_l": 1,
                           "bad prompt (expected a string or a list of {role, content} messages)": 1}
    assert rep.examples["missing field 'y_l'"] == [3]


def test_tokenization_uses_the_chat_template_and_appends_eos_and_truncates(tokenizer):
    from harness.backends.base import render_chat
    from trainers.data import tokenize_rows

    prompt = render_chat(tokenizer, [{"role": "user", "content": "hi"}], None, "m")
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello " * 100}]}
    exs, rep = tokenize_rows([row, {"messages": [{"role": "user", "content": "hi"},
                                                 {"role": "assistant", "content": "ok"}]}],
                             "sft", tokenizer, max_length=len(prompt) + 10, max_prompt_length=len(prompt))
    assert exs[0].prompt_ids == prompt
    assert len(exs[0].prompt_ids) + len(exs[0].responses["response"]) == len(prompt) + 10
    assert exs[1].responses["response"][-1] == tokenizer.eos_token_id
    assert exs[0].responses["response"][-1] != tokenizer.eos_token_id
    assert rep.truncated_responses == 1


def test_conversational_preference_rows_take_prompt_from_the_conversation(tokenizer):
    from trainers.data import tokenize_rows

    row = {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
           "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}
    exs, rep = tokenize_rows([row], "pref", tokenizer, max_length=64, max_prompt_length=32)
    assert rep.kept == 1
    assert tokenizer.decode(exs[0].responses["chosen"][:-1]) == "good"


def test_collate_stacks_kinds_and_masks_only_responses():
    from trainers.data import Example, collate

    b = collate([Example("0", [5, 6], {"a": [7], "b": [8, 9]}), Example("1", [5], {"a": [7, 7, 7], "b": [1]})],
                ("a", "b"), pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 0], [5, 7, 7, 7], [5, 6, 8, 9], [5, 1, 0, 0]]
    assert b["loss_mask"].tolist() == [[0, 0, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 0, 0]]
    assert b["attention_mask"].sum().item() == 3 + 4 + 4 + 2


def test_gsm8k_gold_solution_matches_the_eval_answer_format():
    from harness.benchmarks.math_answers import extract_answer, is_equivalent
    from trainers.gsm8k_data import build_wrpo, gold_solution

    text = gold_solution("She sold 48/2 = <<48/2=24>>24 clips.\nTotal 48+24 = <<48+24=72>>72\n#### 72")
    assert "<<" not in text and is_equivalent("72", extract_answer(text))
    rows = [{"question": "q1", "answer": "x\n#### 30"}, {"question": "q2", "answer": "y\n#### 4"},
            {"question": "q3", "answer": "z\n#### 10"}]
    samples = [["\\boxed{30}", "\\boxed{50}", "so 30", "no idea"], ["\\boxed{7}"], ["\\boxed{11}", "\\boxed{90}"]]
    quads, counts = build_wrpo(rows, samples)
    # correct beats wrong (shorter correct first); with none correct the closer answer is y_wt
    assert [(q["y_wt"], q["y_l"]) for q in quads] == [("so 30", "no idea"), ("\\boxed{11}", "\\boxed{90}")]
    assert counts == {"prompts": 3, "kept": 2, "not_sampled": 0, "no_reward_gap": 1, "samples": 7,
                      "correct_samples": 2, "kept_with_correct_y_wt": 1}


# ---- reference cache ---------------------------------------------------------------------------
def test_reference_cache_is_reused_and_invalidated_when_data_changes(tiny_model_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from trainers.data import tokenize_rows
    from trainers.reference import cache_path, compute_logps, load_or_compute

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    data = str(tmp_path / "d.jsonl")
    kinds = ("y_ws", "y_wt", "y_l")
    exs, _ = tokenize_rows(wrpo_rows(3), "wrpo", tokenizer, max_length=128, max_prompt_length=64)
    calls = []

    def compute(e=exs):
        calls.append(1)
        return compute_logps(model, e, kinds, tokenizer.pad_token_id, 2, "cpu")

    p = cache_path(data, "fp-1", exs, kinds, "no")
    first, hit1 = load_or_compute(p, compute)
    second, hit2 = load_or_compute(p, compute)
    assert (hit1, hit2, len(calls)) == (False, True, 1) and first == second
    # one-at-a-time forward gives the same numbers as the padded batch
    single = compute_logps(model, exs[:1], kinds, tokenizer.pad_token_id, 1, "cpu")
    assert single["0"]["y_l"] == pytest.approx(first["0"]["y_l"], rel=1e-4)
    changed, _ = tokenize_rows(wrpo_rows(4), "wrpo", tokenizer, max_length=128, max_prompt_length=64)
    assert cache_path(data, "fp-1", changed, kinds, "no") != p
    assert cache_path(data, "fp-2", exs, kinds, "no") != p


# ---- the loop ----------------------------------------------------------------------------------
def test_wrpo_loop_logs_metrics_ramps_alpha_and_registers_a_loadable_candidate(tiny_model_dir, tmp_path, store):
    from transformers import AutoModelForCausalLM

    from harness.models import resolve_model
    from trainers.loop import train

    data = write_jsonl(tmp_path / "w.jsonl", [*wrpo_rows(6), "{broken"])
    cfg = cfg_for(tmp_path, tiny_model_dir, data, max_steps=4, name="tiny-wrpo")
    res = train(cfg, store, progress=False)
    recs = [json.loads(x) for x in res.metrics_file.read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert [r["alpha"] for r in recs] == pytest.approx([0.0, 0.1 / 3, 0.2 / 3, 0.1])
    for key in ("loss", "rewards/y_ws", "rewards/y_wt", "rewards/y_l", "margins", "accuracies", "tokens_per_s"):
        assert key in recs[0]
    assert recs[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1
    assert recs[-1]["margins"] > recs[0]["margins"]
    assert res.report.dropped == {"not a JSON object": 1}
    m = resolve_model("tiny-wrpo", store=store)
    assert m.kind == "candidate" and Path(m.path) == (tmp_path / "out").resolve()
    rec = store.get_model("tiny-wrpo")
    assert rec.parent == str(tiny_model_dir) and rec.info["data_hash"].startswith("sha256:")
    assert rec.info["config"]["method"] == "wrpo"
    AutoModelForCausalLM.from_pretrained(m.path)  # a plain HF directory
    assert (Path(m.path) / "chat_template.jinja").exists() and (Path(m.path) / "tokenizer.json").exists()
    # the second run reuses the reference log-probs cached beside the data
    res2 = train(cfg_for(tmp_path, tiny_model_dir, data, max_steps=1), None, overwrite=True, progress=False)
    assert res2.ref_cache == res.ref_cache and res2.ref_cache_hit is True


def test_precomputed_reference_gives_the_same_loss_as_running_the_reference(tiny_model_dir, tmp_path):
    from trainers.loop import train

    data = write_jsonl(tmp_path / "w.jsonl", wrpo_rows(4))
    a = train(cfg_for(tmp_path / "a", tiny_model_dir, data, max_steps=2), None, progress=False)
    b = train(cfg_for(tmp_path / "b", tiny_model_dir, data, max_steps=2, precompute_ref=False), None, progress=False)
    for key in ("loss", "margins", "rewards/y_ws"):
        assert a.last_metrics[key] == pytest.approx(b.last_metrics[key], rel=1e-4, abs=1e-6)


def test_cached_reference_follows_example_ids_when_rows_are_dropped(tiny_model_dir, tmp_path):
    """Dropped rows shift positions: the cache is keyed by row id, the batch by position (the
    loop once looked the cache up by position, so every row after a drop got another's reference)."""
    from trainers.loop import train

    data = write_jsonl(tmp_path / "w.jsonl", ["not json", {"prompt": "x"}, *wrpo_rows(4)])
    a = train(cfg_for(tmp_path / "a", tiny_model_dir, data, max_steps=2), None, progress=False)
    b = train(cfg_for(tmp_path / "b", tiny_model_dir, data, max_steps=2, precompute_ref=False), None, progress=False)
    assert a.report.kept == 4
    for key in ("loss", "margins", "rewards/y_ws"):
        assert a.last_metrics[key] == pytest.approx(b.last_metrics[key], rel=1e-4, abs=1e-6)


def test_warmup_never_takes_every_step():
    from trainers.loop import warmup_steps

    assert [warmup_steps(0.1, n) for n in (1, 2, 10, 11, 100)] == [0, 1, 1, 2, 10]  # ceil, as transformers
    assert warmup_steps(1.0, 4) == 3 and warmup_steps(0.0, 1) == 0


def test_a_one_step_run_changes_the_weights(tiny_model_dir, tmp_path):
    """One WRPO quadruple, one step, cosine with warmup: the step used to run at lr 0, and the
    pipeline registered a 'WRPO candidate' identical to its SFT parent."""
    from safetensors.torch import load_file

    from trainers.loop import train

    data = write_jsonl(tmp_path / "w.jsonl", wrpo_rows(1))
    res = train(cfg_for(tmp_path, tiny_model_dir, data, max_steps=None, epochs=1, lr_scheduler="cosine",
                        warmup_ratio=0.1), None, progress=False)
    assert res.steps == 1 and res.last_metrics["lr"] > 0
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(res.output_dir / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("method", ["sft", "dpo", "dpo_norm", "ipo", "simpo"])
def test_every_method_trains_and_lowers_its_loss(method, tiny_model_dir, tmp_path):
    from trainers.loop import train

    if method == "sft":
        rows = [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["y_ws"]}]}
                for r in wrpo_rows(4)]
    else:
        rows = [{"prompt": r["prompt"], "chosen": r["y_ws"], "rejected": r["y_l"]} for r in wrpo_rows(4)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    res = train(cfg_for(tmp_path, tiny_model_dir, data, method=method, max_steps=3, batch_size=2, data_limit=2,
                        lr_scheduler="constant", warmup_ratio=0), None, progress=False)
    assert res.steps == 3
    assert res.last_metrics["loss"] < res.first_metrics["loss"]


def test_existing_output_dir_is_refused_and_resume_reproduces_an_uninterrupted_run(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    from safetensors.torch import load_file

    import trainers.loop as loop

    data = write_jsonl(tmp_path / "w.jsonl", wrpo_rows(6))
    full = loop.train(cfg_for(tmp_path / "full", tiny_model_dir, data, max_steps=3, lr_scheduler="linear"), None,
                      progress=False)
    cfg = cfg_for(tmp_path / "crash", tiny_model_dir, data, max_steps=3, save_steps=2, lr_scheduler="linear")
    real_save = loop._save_checkpoint

    def save_then_crash(*a, **k):
        real_save(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        loop.train(cfg, None, progress=False)
    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    with pytest.raises(UsageError, match="exists and is not empty; pass --overwrite"):
        loop.train(cfg, None, progress=False)
    resumed = loop.train(cfg, None, resume=True, progress=False)
    assert resumed.steps == 3 and resumed.last_metrics["step"] == 3
    w_full = load_file(str(full.output_dir / "model.safetensors"))
    w_res = load_file(str(resumed.output_dir / "model.safetensors"))
    for k in w_full:
        torch.testing.assert_close(w_res[k], w_full[k], rtol=1e-4, atol=1e-6)
    assert not (resumed.output_dir / "checkpoints").exists()


def test_resume_without_checkpoint_is_a_usage_error(tiny_model_dir, tmp_path):
    from trainers.loop import train

    data = write_jsonl(tmp_path / "w.jsonl", wrpo_rows(2))
    with pytest.raises(UsageError, match="no checkpoint"):
        train(cfg_for(tmp_path, tiny_model_dir, data), None, resume=True, progress=False)


# ---- CLI ----------------------------------------------------------------------------------------
def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    p = harness_cli("train", "wrpo", "model=m", "data=d", "output_dir=o", "learning_rte=1", check=False)
    assert p.returncode == 2 and "learning_rte" in p.stderr and "Traceback" not in p.stderr
    p = harness_cli("train", "sft", "--config", str(tmp_path / "nope.yaml"), check=False)
    assert p.returncode == 2 and "does not exist" in " ".join(p.stderr.split())  # rich wraps lines


@pytest.mark.e2e
@requires_vllm
def test_cli_trains_registers_and_evaluates_the_candidate(tiny_model_dir, tmp_path, data_dir):
    """`harness train wrpo ... --eval-suite math` end to end: the candidate loads in vLLM and is scored."""
    data = write_jsonl(tmp_path / "w.jsonl", wrpo_rows(4))
    store = tmp_path / "s.sqlite"
    p = harness_cli("train", "wrpo", f"model={tiny_model_dir}", f"data={data}", "max_steps=2", "batch_size=2",
                    "max_length=128", "--output-dir", str(tmp_path / "cand"), "--name", "tiny-cand",
                    "--store", str(store), "--data-dir", str(data_dir), "--no-progress",
                    "--eval-suite", "math", "--eval-limit", "2",
                    "--eval-option=--benchmarks=gsm8k", "--eval-option=--max-tokens=8",
                    f"--eval-option=--out={tmp_path / 'eval'}", timeout=600)
    assert "registered candidate" in p.stdout
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["benchmarks"]["gsm8k"]["metrics"]["accuracy"]["n"] == 2
    assert results["model"]["name"] == "tiny-cand"
    p2 = harness_cli("train", "wrpo", f"model={tiny_model_dir}", f"data={data}", "--output-dir",
                     str(tmp_path / "cand"), "--store", str(store), check=False)
    assert p2.returncode == 2 and "--overwrite" in p2.stderr
