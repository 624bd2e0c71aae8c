"""DeepSpeed ZeRO-2/3 on CPU ranks, end to end, for the three ways to start it: `accelerate launch
--use_deepspeed`, DeepSpeed's own launcher with the recipe's `deepspeed` key, and plain `harness
train` with that key (one rank).

Two ranks × micro-batch 1 average their gradients, so after a few steps the weights must equal
a single-process run with micro-batch 2 over the same rows (same order, same loss, same
clipping and AdamW). That checks data sharding, the `auto` batch sizes accelerate fills for
DeepSpeed, gradient reduction and the gathered final save, not merely that the launch exits 0.
Each two-rank launch takes 25-40 s on the 2-core box (one thread per rank)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, _free_port
from tests.trainer_helpers import make_tiny_model

torch = pytest.importorskip("torch")
pytest.importorskip("deepspeed", reason="deepspeed is not installed (extra `train`)")
pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def tiny_model_dir(embedded_model_dir, tmp_path_factory):
    return make_tiny_model(embedded_model_dir, tmp_path_factory.mktemp("tiny") / "model")


def wrpo_rows(n: int):
    return [{"prompt": f"What is {i} + {i}?", "y_ws": f"{i} + {i} = {2 * i}. The answer is {2 * i}.",
             "y_wt": f"The answer is {2 * i}.", "y_l": f"The answer is {2 * i + 1}."} for i in range(n)]


TRAIN = {"max_steps": 3, "max_length": 64, "logging_steps": 1, "learning_rate": 1e-3, "beta": 0.5,
         "lr_scheduler": "constant", "warmup_ratio": 0}


@pytest.fixture(scope="module")
def single_process_run(tiny_model_dir, tmp_path_factory):
    """The comparison run: one process, no DeepSpeed, micro-batch 2."""
    import json

    from trainers.config import load_config
    from trainers.loop import train

    tmp = tmp_path_factory.mktemp("single")
    data = tmp / "w.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in wrpo_rows(8)))
    cfg = load_config(None, "wrpo", {"model": str(tiny_model_dir), "data": str(data),
                                     "output_dir": str(tmp / "out"), "batch_size": 2, **TRAIN})
    res = train(cfg, None, progress=False)
    return data, res.output_dir


def launch_command(launcher: str, zero: str) -> tuple[list[str], int]:
    """(command prefix up to `-m harness.cli`, micro-batch per rank) for each way to start DeepSpeed."""
    port = str(_free_port())
    if launcher == "accelerate":
        return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
                "--use_deepspeed", "--deepspeed_config_file", str(REPO / "trainers" / "deepspeed" / f"{zero}.json"), "-m", "harness.cli"], 1
    if launcher == "deepspeed":  # DeepSpeed's own launcher; the config comes from the `deepspeed` key
        return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--no_local_rank",
                "--master_port", port, "--module", "harness.cli"], 1
    return [sys.executable, "-m", "harness.cli"], 2  # no launcher: one rank takes the whole batch


@pytest.mark.parametrize(("launcher", "zero"), [("accelerate", "zero3"), ("deepspeed", "zero2"), ("none", "zero3")])
def test_deepspeed_cpu_ranks_train_like_one_process_with_the_summed_batch(launcher, zero, tiny_model_dir,
                                                                          single_process_run, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from harness.store import Store

    data, single_dir = single_process_run
    out, store_path = tmp_path / "out", tmp_path / "s.sqlite"
    prefix, micro_batch = launch_command(launcher, zero)
    # CPU ranks even on a GPU machine: this test is about DeepSpeed's CPU path (gloo).
    env = {**os.environ, "DS_BUILD_OPS": "0", "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    keys = [f"model={tiny_model_dir}", f"data={data}", f"batch_size={micro_batch}", "save_steps=2",
            *(f"{k}={v}" for k, v in TRAIN.items())]
    if launcher != "accelerate":  # accelerate passes the config itself
        keys.append(f"deepspeed={REPO / 'trainers' / 'deepspeed' / f'{zero}.json'}")
    cmd = [*prefix, "train", "wrpo", *keys, "--output-dir", str(out), "--name", "ds-cand", "--store", str(store_path),
           "--no-progress"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{launcher} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    log = " ".join((p.stdout + p.stderr).split())
    ranks = 1 if launcher == "none" else 2
    assert f"DistributedType.DEEPSPEED, {ranks} process(es)" in log
    # one summary, from the rank that saved and registered the model (not one per rank)
    assert log.count("optimizer steps in") == 1 and "registered candidate None" not in log

    start = load_file(str(tiny_model_dir / "model.safetensors"))
    single = load_file(str(single_dir / "model.safetensors"))
    trained = load_file(str(out / "model.safetensors"))
    for k in single:
        assert (single[k] - start[k]).abs().max() > 1e-4, f"{k} did not train"
        torch.testing.assert_close(trained[k], single[k], rtol=1e-4, atol=1e-4)
    AutoModelForCausalLM.from_pretrained(out)  # the gathered save is a plain HF directory
    assert not (out / "checkpoints").exists()  # the step-2 checkpoint was written, then dropped at the end
    store = Store(store_path)
    try:
        assert store.get_model("ds-cand").kind == "candidate"  # registered once, by the main rank
    finally:
        store.close()
