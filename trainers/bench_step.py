"""Throughput of one WRPO optimizer step: cached reference log-probs vs. the reference model
run on every step (what the official code does). Same model, same batch, same loss.

    python -m trainers.bench_step --model smollm2-135m-instruct --mode cached --steps 3
    python -m trainers.bench_step --model smollm2-135m-instruct --mode reference --steps 3

Each mode runs in its own process so the peak resident memory (ru_maxrss) it prints is its
own; the reference mode holds a second model in memory. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time


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


def prepare(model_path: str, mode: str, batch_size: int, response_tokens: int):
    """(step callable, tokens per step) for one mode; the step is one full optimizer step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainers.data import collate
    from trainers.losses import sequence_logps, wrpo_loss
    from trainers.reference import compute_logps

    kinds = ("y_ws", "y_wt", "y_l")
    tok = AutoTokenizer.from_pretrained(model_path)
    exs = make_batch(tok, batch_size, response_tokens)
    batch = collate(exs, kinds, tok.pad_token_id)
    ref_model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    ref_model.requires_grad_(False)
    cached = compute_logps(ref_model, exs, kinds, tok.pad_token_id, batch_size, "cpu")
    if mode == "cached":  # "both" keeps it, to alternate the two kinds of step in one process
        del ref_model  # what the loop does: the reference is freed before the policy is loaded
        ref_model = None
        gc.collect()
    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    policy.train()
    b = len(exs)
    tokens = int(batch["attention_mask"].sum())

    def step(use_ref: bool = mode != "cached"):
        logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        logps, _ = sequence_logps(logits, batch["input_ids"], batch["loss_mask"])
        del logits
        pol = dict(zip(kinds, logps.view(3, b)))
        if not use_ref:
            ref = {k: torch.tensor([cached[e.id][k] for e in exs]) for k in kinds}
        else:
            with torch.no_grad():
                r_logits = ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     use_cache=False).logits
                r, _ = sequence_logps(r_logits, batch["input_ids"], batch["loss_mask"])
                del r_logits
            ref = dict(zip(kinds, r.view(3, b)))
        out = wrpo_loss(pol["y_ws"], pol["y_wt"], pol["y_l"], ref["y_ws"], ref["y_wt"], ref["y_l"], alpha=0.05,
                        beta=0.01)
        out.losses.mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, tokens


def run(model_path: str, mode: str, steps: int, batch_size: int, response_tokens: int, threads: int | None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    step, tokens = prepare(model_path, mode, batch_size, response_tokens)
    step()  # warm-up (allocator, optimizer state)
    if mode == "both":
        # Alternate the two kinds of step so that load from other processes hits both alike.
        t = {"cached": [], "reference": []}
        for _ in range(steps):
            for name, use_ref in (("reference", True), ("cached", False)):
                t0 = time.perf_counter()
                step(use_ref)
                t[name].append(time.perf_counter() - t0)
        med = {k: sorted(v)[len(v) // 2] for k, v in t.items()}
        return {"mode": "both", "model": model_path, "batch_rows": batch_size, "tokens_per_step": tokens,
                "step_s": t, "tokens_per_s": {k: tokens / v for k, v in med.items()},
                "speedup_cached_vs_reference": med["reference"] / med["cached"],
                "threads": torch.get_num_threads()}
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    return {"mode": mode, "model": model_path, "batch_rows": batch_size, "tokens_per_step": tokens,
            "step_s_median": med, "step_s_all": times, "tokens_per_s": tokens / med,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="alias or local HF model dir")
    ap.add_argument("--mode", choices=["cached", "reference", "both"], required=True,
                    help="both: alternate the two kinds of step in one process (fair under load; no memory figure)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--response-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int)
    a = ap.parse_args()
    from harness.models import resolve_model

    path = resolve_model(a.model).path
    print(json.dumps(run(path, a.mode, a.steps, a.batch_size, a.response_tokens, a.threads)))


if __name__ == "__main__":
    main()
