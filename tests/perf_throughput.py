"""Throughput probes for docs/performance.md, one variant per process (vLLM needs its own
__main__). Prints one JSON line. Driven by tests/bench_throughput.py (pytest-benchmark).

    python tests/perf_throughput.py raw-vllm|harness-vllm|harness-hf|lmeval-hf  N MAX_TOKENS OUTDIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HARNESS_DATA_DIR") or REPO.parent / "shared" / "benchmarks")


def gsm8k_prompts(n: int) -> list[str]:
    from harness.benchmarks.gsm8k import PROMPT
    from harness.data import read_jsonl

    rows = read_jsonl(DATA / "gsm8k" / "test.jsonl")[:n]
    return [PROMPT.format(question=r["question"]) for r in rows]


def raw_vllm(n: int, max_tokens: int, out: Path) -> dict:
    """vLLM's own LLM.generate on the same token ids the harness would send: the floor.

    The engine is built by the harness's VLLMBackend (same engine args, same environment:
    KV-cache size, core binding, dtype, eager, whole-prompt prefill), so the only difference
    measured is LLM.generate vs the harness's stepped, committed, scored path. A hand-built
    LLM(...) with vLLM's defaults failed here to start ("WorkerProc initialization failed")."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from harness.backends.base import render_chat
    from harness.backends.vllm_backend import VLLMBackend
    from harness.models import resolve_model

    model = resolve_model("smollm2-135m-instruct")
    t0 = time.perf_counter()
    backend = VLLMBackend(model, seed=0)
    start = time.perf_counter() - t0
    llm = backend.llm
    ids = [render_chat(backend.tokenizer, [{"role": "user", "content": p}], model.chat_template, model.name)
           for p in gsm8k_prompts(n)]
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids],
                        SamplingParams(temperature=0, max_tokens=max_tokens), use_tqdm=False)
    gen = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    backend.close()
    return {"variant": "raw-vllm", "items": n, "tokens": tokens, "generation_s": gen, "engine_start_s": start,
            "tokens_per_s": tokens / gen, "wall_after_start_s": gen, "engine_args": backend.engine_args,
            "omp_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND")}


def harness_run(backend: str, n: int, max_tokens: int, out: Path) -> dict:
    """The full harness path: store lookups, generation, per-completion commits, scoring,
    results.json. Run twice: the second run is the fully cached re-run."""
    import subprocess

    store = out / f"{backend}.sqlite"
    store.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "harness.cli", "run", "suite", "math", "--benchmarks", "gsm8k", "--limit", str(n),
           "--max-tokens", str(max_tokens), "--backend", backend, "--data-dir", str(DATA), "--store", str(store),
           "--no-progress"]
    res = []
    for i in range(2):
        t0 = time.perf_counter()
        subprocess.run(cmd + ["--out", str(out / f"{backend}-{i}")], check=True, capture_output=True, cwd=REPO)
        wall = time.perf_counter() - t0
        r = json.loads((out / f"{backend}-{i}" / "results.json").read_text())
        res.append((wall, r))
    (w1, r1), (w2, r2) = res
    t = r1["timings"]
    return {"variant": f"harness-{backend}", "items": n, "tokens": t["generated_tokens"],
            "generation_s": t["generation_s"], "engine_start_s": t["engine_start_s"],
            "tokens_per_s": t["generated_tokens"] / t["generation_s"],
            # everything between engine start-up and shutdown: generation + store + scoring + results
            "wall_after_start_s": t["total_s"] - t["engine_start_s"] - t["engine_stop_s"],
            "engine_stop_s": t["engine_stop_s"],
            "process_wall_s": w1, "cached_rerun_process_wall_s": w2, "cached_rerun_total_s": r2["timings"]["total_s"],
            "first_total_s": t["total_s"], "accuracy": r1["benchmarks"]["gsm8k"]["metrics"]["accuracy"]["value"],
            "cached_accuracy": r2["benchmarks"]["gsm8k"]["metrics"]["accuracy"]["value"]}


def lmeval_hf(n: int, max_tokens: int, out: Path) -> dict:
    """lm-evaluation-harness's `hf` model on the same prompts, from a local-file task."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.models import ensure_alias

    path = str(ensure_alias("smollm2-135m-instruct"))
    task_dir = out / "lmeval_task"
    task_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"question": p} for p in gsm8k_prompts(n)]
    (task_dir / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (task_dir / "gsm8k_local.yaml").write_text(f"""task: gsm8k_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {task_dir / 'data.jsonl'}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: ""
generation_kwargs:
  until: []
  do_sample: false
  max_gen_toks: {max_tokens}
metric_list:
  - metric: bypass
""")
    from lm_eval.models.huggingface import HFLM

    t0 = time.perf_counter()
    lm = HFLM(pretrained=path, batch_size=16, dtype="float32", device="cpu")
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=["gsm8k_local"], task_manager=TaskManager(include_path=str(task_dir)),
                                  apply_chat_template=True, log_samples=True, limit=n)
    gen = time.perf_counter() - t0
    tok = lm.tokenizer
    samples = res["samples"]["gsm8k_local"]
    tokens = sum(len(tok(s["resps"][0][0], add_special_tokens=False)["input_ids"]) for s in samples)
    return {"variant": "lmeval-hf", "items": len(samples), "tokens": tokens, "generation_s": gen,
            "engine_start_s": start, "tokens_per_s": tokens / gen, "wall_after_start_s": gen}


if __name__ == "__main__":
    variant, n, max_tokens, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    fn = {"raw-vllm": raw_vllm, "harness-vllm": lambda *a: harness_run("vllm", *a),
          "harness-hf": lambda *a: harness_run("hf", *a), "lmeval-hf": lmeval_hf}[variant]
    print("RESULT " + json.dumps(fn(n, max_tokens, out)))
