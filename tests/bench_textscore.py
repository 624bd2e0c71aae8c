"""Text-scoring throughput, vLLM vs transformers, on the embedded model (issue 11 item 3).

256 GSM8K train answers (chat prompt = the question, response = the reference answer), scored
by `harness score-text` on each backend in one run with a fresh store each. Tokens/s counts
scored response tokens over scoring time (engine start-up excluded; textscore logs both).

    flock /tmp/heavy.lock .tox/test/bin/python -m pytest tests/bench_textscore.py --benchmark-enable -s
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import harness_cli, requires_vllm

N_ROWS = 256


def _score(tmp_path, data, backend: str) -> dict:
    proc = harness_cli("score-text", "--data", str(data), "--backend", backend, "-v",
                       "--store", str(tmp_path / f"{backend}.sqlite"), timeout=3600)
    text = " ".join(proc.stderr.split())
    m = re.search(r"scored (\d+) texts \((\d+) tokens\) in ([\d.]+)s", text)
    assert m, f"no timing line in stderr: {text[-2000:]}"
    texts, tokens, seconds = int(m[1]), int(m[2]), float(m[3])
    assert texts == N_ROWS
    return {"texts": texts, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


@pytest.mark.e2e
@requires_vllm
def test_scoring_throughput_vllm_vs_hf(benchmark, tmp_path, data_dir):
    lines = (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:N_ROWS]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "prompt": r["question"], "response": r["answer"]}) + "\n"
                            for i, r in enumerate(map(json.loads, lines))))
    figures: dict[str, dict] = {}

    def both():
        for backend in ("vllm", "hf"):
            figures[backend] = _score(tmp_path, data, backend)

    benchmark.pedantic(both, rounds=1, iterations=1)
    ratio = figures["vllm"]["tokens_per_s"] / figures["hf"]["tokens_per_s"]
    benchmark.extra_info.update({**{f"{b}_{k}": v for b, f in figures.items() for k, v in f.items()},
                                 "vllm_over_hf": ratio})
    print(f"\nscoring {N_ROWS} GSM8K answers: vllm {figures['vllm']['tokens_per_s']:.0f} tok/s, "
          f"hf {figures['hf']['tokens_per_s']:.0f} tok/s, ratio {ratio:.2f}x")
