"""Generation throughput, side by side (docs/performance.md). Not part of the test run:

    pytest tests/bench_throughput.py --benchmark-enable -s

Each variant runs once in its own process on the first 64 GSM8K test items (greedy, max 256
new tokens); pytest-benchmark records the wall time, and extra_info carries tokens/s
measured after engine start-up, which is what the table in docs/performance.md reports.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, requires_vllm

N, MAX_TOKENS = 64, 256


def _probe(variant: str, out) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "perf_throughput.py"), variant, str(N),
                           str(MAX_TOKENS), str(out)], capture_output=True, text=True, cwd=REPO, timeout=3600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, proc.stderr[-3000:]
    return json.loads(line[len("RESULT "):])


def _run(benchmark, variant, tmp_path):
    result = {}
    benchmark.pedantic(lambda: result.update(_probe(variant, tmp_path)), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(json.dumps(result))
    assert result["tokens"] > 0


@requires_vllm
def test_raw_vllm(benchmark, tmp_path, embedded_model_dir):
    _run(benchmark, "raw-vllm", tmp_path)


@requires_vllm
def test_harness_vllm(benchmark, tmp_path, embedded_model_dir):
    _run(benchmark, "harness-vllm", tmp_path)


def test_harness_hf(benchmark, tmp_path, embedded_model_dir):
    _run(benchmark, "harness-hf", tmp_path)


def test_lmeval_hf(benchmark, tmp_path, embedded_model_dir):
    pytest.importorskip("lm_eval")
    _run(benchmark, "lmeval-hf", tmp_path)
