"""pytest-benchmark: one WRPO optimizer step with cached reference log-probs vs. running the
reference every step (as the official trainer does), with and without gradient checkpointing, on
the tiny model (fast) -- `pytest tests/bench_trainer.py --benchmark-enable`. The 135M figures in
docs/performance.md come from `python -m trainers.bench_step --compare` (a fresh process per
setting, so peak memory is per setting)."""

from __future__ import annotations

import pytest

from tests.trainer_helpers import make_tiny_model

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model_dir(embedded_model_dir, tmp_path_factory):
    return make_tiny_model(embedded_model_dir, tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.parametrize("checkpointing", [False, True], ids=["no-ckpt", "ckpt"])
@pytest.mark.parametrize("mode", ["cached", "reference"])
def test_wrpo_step_throughput(benchmark, tiny_model_dir, mode, checkpointing):
    from trainers.bench_step import prepare

    step, tokens = prepare(str(tiny_model_dir), mode, batch_size=2, response_tokens=64,
                           gradient_checkpointing=checkpointing)
    step()
    benchmark.extra_info["tokens_per_step"] = tokens
    benchmark.pedantic(step, rounds=3, iterations=1)
