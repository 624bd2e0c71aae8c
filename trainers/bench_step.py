"""Throughput and peak memory of one WRPO optimizer step: cached reference log-probs vs. the
reference model run on every step (what the official code does). Same model, same batch, same loss.

    # one mode per process (prints one JSON line with its own peak RSS)
    python -m trainers.bench_step --model smollm2-135m-instruct --mode cached --steps 3
    python -m trainers.bench_step --model smollm2-135m-instruct --mode reference --steps 3
    # peak memory per setting: a fresh process per (mode, checkpointing), A/B interleaved over
    # rounds, load average recorded beside every process (its timings are noisy under load)
    python -m trainers.bench_step --model smollm2-135m-instruct --compare --rounds 2 --steps 3
    # timing, fair under load: both kinds of step alternating in one process (no memory figure)
    python -m trainers.bench_step --model smollm2-135m-instruct --mode both --steps 6
    # where the time goes: reference forward, policy fwd+bwd (+checkpointing), AdamW update
    python -m trainers.bench_step --model smollm2-135m-instruct --breakdown --steps 5
    # the real loop (trainers.loop.train), any objective: seconds per optimizer step, from its metrics
    python -m trainers.bench_step --model smollm2-135m-instruct --loop dpo --steps 7

The per-step reference side follows the official WRPO trainer (`WRPOTrainer.get_batch_loss_metrics`
in FuseAI's WRPO code, on TRL's DPOTrainer): after the policy's `concatenated_forward` over the
y_ws, y_wt and y_l sequences of the micro-batch, the frozen reference runs the same concatenated
batch in one forward under `torch.no_grad()`, in the policy's dtype, every step, and stays in
memory for the whole run. Both sides use the same log-prob reduction (`sequence_logps`: gather -
logsumexp; the official `log_softmax(-1)` + gather materialises one more (N, T, V) tensor, so
the baseline here is if anything faster than the official code, never weaker).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time

KINDS = ("y_ws", "y_wt", "y_l")


def make_batch(tokenizer, batch_size: int, response_tokens: int):
    """A fixed WRPO batch: GSM8K-style prompt, three responses of `response_tokens` tokens each."""
    from trainers.data import tokenize_rows

    filler = " ".join(["so the total is 12 apples and 7 pears"] * (response_tokens // 4))
    rows = [{"prompt": f"Question {i}: Tom has 5 apples and buys 7 more. How many apples does he have?",
             "y_ws": f"5 + 7 = 12. {filler}", "y_wt": f"He has 12 apples. {filler}", "y_l": f"He has 2. {filler}"}
            for i in range(batch_size)]
    exs, _ = tokenize_rows(rows, "wrpo", tokenizer, max_length=10_000, max_prompt_length=10_000)
    for ex in exs:
        for k in ex.responses:
            ex.responses[k] = ex.responses[k][:response_tokens]
    return exs


def prepare(model_path: str, mode: str, batch_size: int, response_tokens: int, gradient_checkpointing: bool = False):
    """(step callable, tokens per step) for one mode; the step is one full optimizer step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.data import collate
    from trainers.loop import adamw_kwargs
    from trainers.losses import sequence_logps, wrpo_loss
    from trainers.reference import compute_logps

    tok = AutoTokenizer.from_pretrained(model_path)
    exs = make_batch(tok, batch_size, response_tokens)
    batch = collate(exs, KINDS, tok.pad_token_id)
    ref_model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    ref_model.requires_grad_(False)
    cached = compute_logps(ref_model, exs, KINDS, tok.pad_token_id, batch_size, "cpu")
    if mode == "cached":  # "both" keeps it, to alternate the two kinds of step in one process
        del ref_model  # what the loop does: the reference is freed before the policy is loaded
        ref_model = None
        gc.collect()
    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if gradient_checkpointing:  # as trainers.loop does it
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        policy.config.use_cache = False
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6, **adamw_kwargs(torch, "cpu"))  # as trainers.loop
    policy.train()
    b = len(exs)
    tokens = int(batch["attention_mask"].sum())

    def step(use_ref: bool = mode != "cached"):
        logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        logps, _ = sequence_logps(logits, batch["input_ids"], batch["loss_mask"])
        del logits
        pol = dict(zip(KINDS, logps.view(3, b)))
        if not use_ref:
            ref = {k: torch.tensor([cached[e.id][k] for e in exs]) for k in KINDS}
        else:  # the official concatenated reference forward over all three kinds, every step
            with torch.no_grad():
                r_logits = ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     use_cache=False).logits
                r, _ = sequence_logps(r_logits, batch["input_ids"], batch["loss_mask"])
                del r_logits
            ref = dict(zip(KINDS, r.view(3, b)))
        out = wrpo_loss(pol["y_ws"], pol["y_wt"], pol["y_l"], ref["y_ws"], ref["y_wt"], ref["y_l"], alpha=0.05,
                        beta=0.01)
        out.losses.mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, tokens


def run(model_path: str, mode: str, steps: int, batch_size: int, response_tokens: int, threads: int | None,
        gradient_checkpointing: bool = False) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    step, tokens = prepare(model_path, mode, batch_size, response_tokens, gradient_checkpointing)
    step()  # warm-up (allocator, optimizer state)
    common = {"model": model_path, "batch_rows": batch_size, "response_tokens": response_tokens,
              "tokens_per_step": tokens, "gradient_checkpointing": gradient_checkpointing,
              "threads": torch.get_num_threads()}
    if mode == "both":
        # Alternate the two kinds of step so that load from other processes hits both alike.
        t = {"cached": [], "reference": []}
        for _ in range(steps):
            for name, use_ref in (("reference", True), ("cached", False)):
                t0 = time.perf_counter()
                step(use_ref)
                t[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in t.items()}
        # each reference step against the cached step right after it: robust to load drifting
        pairs = [r / c for r, c in zip(t["reference"], t["cached"])]
        return {"mode": "both", **common, "step_s": t, "tokens_per_s": {k: tokens / v for k, v in med.items()},
                "speedup_cached_vs_reference": med["reference"] / med["cached"], "speedup_per_pair": pairs,
                "speedup_pair_median": statistics.median(pairs)}
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"mode": mode, **common, "step_s_median": med, "step_s_all": times, "tokens_per_s": tokens / med,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def breakdown(model_path: str, reps: int, batch_size: int, response_tokens: int, threads: int | None) -> dict:
    """Seconds of the parts of a step, each part timed `reps` times in rotation so load hits all
    alike: the reference's no-grad forward; the policy's forward + backward without and with
    gradient checkpointing; the AdamW update (torch's default foreach kernel and the fused one).
    The ceiling of the speed-up is (policy + update + reference) / (policy + update)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.data import collate
    from trainers.losses import sequence_logps

    if threads:
        torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_path)
    batch = collate(make_batch(tok, batch_size, response_tokens), KINDS, tok.pad_token_id)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, foreach=True)  # torch's default implementation
    opt_fused = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)  # what trainers.loop uses

    def logps():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        return sequence_logps(logits, batch["input_ids"], batch["loss_mask"])[0]

    def reference_forward():
        model.eval()
        with torch.no_grad():
            logps()

    def policy(checkpointing: bool):
        def run_once():
            model.train()
            if checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_disable()
            logps().sum().backward()
        return run_once

    def update(o):
        def run_once():
            o.step()  # the grads stay: every update does the same work
        return run_once

    parts = {"reference_forward": reference_forward, "policy_fwd_bwd": policy(False),
             "policy_fwd_bwd_checkpointing": policy(True), "adamw_update_foreach": update(opt),
             "adamw_update_fused": update(opt_fused)}
    for f in parts.values():  # warm-up; also creates the grads and optimizer state the update needs
        f()
    t: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(reps):
        for name, f in parts.items():
            t0 = time.perf_counter()
            f()
            t[name].append(time.perf_counter() - t0)
            if name.startswith("policy"):
                model.zero_grad(set_to_none=False)
    med = {k: statistics.median(v) for k, v in t.items()}
    ceiling = {f"{name}_{adam}": (med[p] + med[f"adamw_update_{adam}"] + med["reference_forward"])
               / (med[p] + med[f"adamw_update_{adam}"])
               for name, p in (("no_checkpointing", "policy_fwd_bwd"), ("checkpointing", "policy_fwd_bwd_checkpointing"))
               for adam in ("foreach", "fused")}
    return {"mode": "breakdown", "model": model_path, "batch_rows": batch_size, "response_tokens": response_tokens,
            "tokens_per_step": int(batch["attention_mask"].sum()), "seconds": t, "median_s": med,
            "policy_over_reference_forward": {k: med[k] / med["reference_forward"]
                                              for k in ("policy_fwd_bwd", "policy_fwd_bwd_checkpointing")},
            "speedup_ceiling": ceiling, "load1": os.getloadavg()[0], "threads": torch.get_num_threads()}


def compare(model: str, rounds: int, steps: int, batch_size: int, response_tokens: int, threads: int | None,
            checkpointing: tuple[bool, ...] = (False, True)) -> dict:
    """Each (mode, checkpointing) in a fresh process, so its ru_maxrss is its own peak; modes
    alternate within a round and the order flips every round, so drifting outside load hits
    both alike. Returns every process's record (with the 1-minute load average before it) and
    per-setting medians, speed-up taken per round (paired) then the median."""
    records = []
    for r in range(rounds):
        for gc_on in checkpointing:
            order = ("reference", "cached") if r % 2 == 0 else ("cached", "reference")
            for mode in order:
                cmd = [sys.executable, "-m", "trainers.bench_step", "--model", model, "--mode", mode,
                       "--steps", str(steps), "--batch-size", str(batch_size),
                       "--response-tokens", str(response_tokens)]
                if threads:
                    cmd += ["--threads", str(threads)]
                if gc_on:
                    cmd.append("--gradient-checkpointing")
                load_before = os.getloadavg()[0]
                p = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rec = json.loads(p.stdout.strip().splitlines()[-1])
                rec.update(round=r, load1_before=load_before, load1_after=os.getloadavg()[0])
                records.append(rec)
                print(json.dumps({k: rec[k] for k in ("round", "mode", "gradient_checkpointing", "step_s_median",
                                                      "tokens_per_s", "peak_rss_mib", "load1_before")}),
                      file=sys.stderr, flush=True)
    summary = {}
    for gc_on in checkpointing:
        sel = {m: [x for x in records if x["mode"] == m and x["gradient_checkpointing"] == gc_on]
               for m in ("cached", "reference")}
        paired = [ref["step_s_median"] / c["step_s_median"] for ref, c in zip(sel["reference"], sel["cached"])]
        summary["checkpointing" if gc_on else "no_checkpointing"] = {
            **{f"{m}_tokens_per_s": statistics.median(x["tokens_per_s"] for x in v) for m, v in sel.items()},
            **{f"{m}_peak_rss_mib": max(x["peak_rss_mib"] for x in v) for m, v in sel.items()},
            "speedup_per_round": paired, "speedup_median": statistics.median(paired),
            "tokens_per_step": sel["cached"][0]["tokens_per_step"]}
    loads = [x["load1_before"] for x in records]
    return {"model": model, "batch_rows": batch_size, "response_tokens": response_tokens, "steps": steps,
            "rounds": rounds, "load1_range": [min(loads), max(loads)], "summary": summary, "records": records}


def loop_steps(model_path: str, method: str, steps: int, batch_size: int, response_tokens: int) -> dict:
    """`trainers.loop.train` for `steps` optimizer steps on a fixed preference/WRPO set; seconds per
    step as tokens/s from metrics.jsonl (the first step, which pays warm-up, excluded)."""
    import tempfile
    from pathlib import Path

    from trainers.config import load_config
    from trainers.loop import train

    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    filler = " ".join(["so the total is 12 apples and 7 pears"] * (response_tokens // 8))
    rows = []
    for i in range(batch_size * steps):
        p = f"Question {i}: Tom has 5 apples and buys 7 more. How many apples does he have?"
        rows.append({"prompt": p, "y_ws": f"5 + 7 = 12. {filler}", "y_wt": f"He has 12 apples. {filler}",
                     "y_l": f"He has 2. {filler}", "chosen": f"5 + 7 = 12. {filler}", "rejected": f"He has 2. {filler}"})
        if method == "infifpo":  # two sources' log-probs in the authors' format: the fusion is precomputed
            rows[-1].update(fuse_chosen_logps=[-40.0, -52.0], fuse_mean_chosen_logps=[-0.625, -0.8125],
                            fuse_rejected_logps=[-70.0, -66.0], fuse_mean_rejected_logps=[-1.09375, -1.03125])
    (tmp / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(None, method, {"model": model_path, "data": str(tmp / "rows.jsonl"), "output_dir": str(tmp / "o"),
                                     "max_steps": steps, "batch_size": batch_size, "logging_steps": 1})
    res = train(cfg, None, progress=False)
    recs = [json.loads(x) for x in res.metrics_file.read_text().splitlines()]
    return {"method": method, "steps": steps,
            "median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in recs[1:]),
            "tokens_per_s": [round(r["tokens_per_s"], 1) for r in recs], "load_avg_1m": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="alias or local HF model dir")
    ap.add_argument("--mode", choices=["cached", "reference", "both"],
                    help="both: alternate the two kinds of step in one process (fair under load; no memory figure)")
    ap.add_argument("--compare", action="store_true",
                    help="fresh process per mode x checkpointing, interleaved over --rounds (timing and peak RSS)")
    ap.add_argument("--breakdown", action="store_true",
                    help="time the parts of a step (reference forward, policy fwd+bwd with/without checkpointing, "
                         "AdamW) in rotation; --steps repetitions")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--response-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--loop", metavar="OBJECTIVE", help="time the real loop (trainers.loop.train) with this objective")
    a = ap.parse_args()
    if not (a.compare or a.breakdown or a.loop) and a.mode is None:
        ap.error("give --mode cached|reference|both, --compare or --breakdown")
    from harness.models import resolve_model

    path = resolve_model(a.model).path
    if a.loop:
        out = loop_steps(path, a.loop, a.steps, a.batch_size, a.response_tokens)
    elif a.breakdown:
        out = breakdown(path, a.steps, a.batch_size, a.response_tokens, a.threads)
    elif a.compare:
        out = compare(path, a.rounds, a.steps, a.batch_size, a.response_tokens, a.threads)
    else:
        out = run(path, a.mode, a.steps, a.batch_size, a.response_tokens, a.threads, a.gradient_checkpointing)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
