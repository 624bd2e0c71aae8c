"""`harness aggregate BENCH FILE`: published-style metrics from upstream judge outputs.

    harness aggregate alpaca-eval-2 --annotations annotations.json   (alpaca_eval annotations)
    harness aggregate arena-hard --judgments a.jsonl [b.jsonl ...]   (arena-hard model_judgment rows)
    harness aggregate arena-hard --judgments J.jsonl --style-control --answers model_answer/
    harness aggregate mt-bench --judgments gpt-4_single.jsonl        (FastChat single judgments)

No model and no judge calls: this is how a number is checked against the leaderboard.
"""

from __future__ import annotations

import json

from harness.cli._common import console, existing_file

TARGETS = ("alpaca-eval-2", "arena-hard", "mt-bench")


def register(sub, parent) -> None:
    p = sub.add_parser("aggregate", parents=[parent],
                       help="compute a judged benchmark's metrics from upstream annotation/judgment files")
    p.add_argument("benchmark", help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("--annotations", help="alpaca-eval-2: an alpaca_eval annotations.json")
    p.add_argument("--judgments", nargs="+", help="arena-hard / mt-bench: judgment JSONL file(s)")
    p.add_argument("--baseline", default="gpt-4-0314", help="arena-hard baseline model (default gpt-4-0314)")
    p.add_argument("--rounds", type=int, default=100, help="arena-hard bootstrap rounds (>= 100)")
    p.add_argument("--style-control", action="store_true",
                   help="arena-hard: style-controlled scores (upstream show_result.py --style-control)")
    p.add_argument("--answers", nargs="+", metavar="FILE_OR_DIR",
                   help="arena-hard --style-control: model_answer JSONL file(s) or folder(s) of the judged "
                        "models; the baseline's are taken from the data dir when not given")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_aggregate)


def cmd_aggregate(args) -> int:
    from harness.errors import UsageError, did_you_mean

    if args.benchmark not in TARGETS:
        raise did_you_mean("aggregatable benchmark", args.benchmark, TARGETS)
    if args.benchmark == "alpaca-eval-2":
        if not args.annotations:
            raise UsageError("alpaca-eval-2 needs --annotations FILE (alpaca_eval's annotations.json)")
        from harness.benchmarks.alpaca_eval import alpaca_metrics, read_annotations

        rows = read_annotations(existing_file(args.annotations, "--annotations file"))
        out = {"benchmark": args.benchmark, "model": rows[0].get("generator_2"),
               "metrics": alpaca_metrics(rows, args.data_dir)}
        return _print(args, out, [(out["model"], out["metrics"])])
    if not args.judgments:
        raise UsageError(f"{args.benchmark} needs --judgments FILE [FILE ...]")
    paths = [existing_file(p, "--judgments file") for p in args.judgments]
    if args.benchmark == "arena-hard":
        return _arena_hard(args, paths)
    from harness.benchmarks.mt_bench import mt_bench_metrics

    per_model: dict[str, list[dict]] = {}
    from harness.data import read_jsonl_records

    for p in paths:
        for n, r in read_jsonl_records(p, "FastChat single judgments"):
            if not {"question_id", "model", "score", "turn"} <= set(r):
                raise UsageError(f"{p}:{n}: expected FastChat single judgments (question_id, model, score, turn)")
            turns = [{"rating": None}, {"rating": None}]
            turns[int(r["turn"]) - 1] = {"rating": None if r["score"] == -1 else float(r["score"]),
                                         "unparseable": r["score"] == -1}
            per_model.setdefault(r["model"], []).append({"category": r.get("category", "all"), "turns": turns})
    models = {m: mt_bench_metrics(rows) for m, rows in sorted(per_model.items())}
    return _print(args, {"benchmark": args.benchmark, "models": models}, list(models.items()))


def _arena_hard(args, paths) -> int:
    from harness.benchmarks import arena_hard as ah
    from harness.errors import UsageError

    if args.answers and not args.style_control:
        raise UsageError("--answers is only read with --style-control")
    rows = ah.read_judgments(paths)
    out: dict = {"benchmark": args.benchmark, "baseline": args.baseline, "bootstrap_rounds": args.rounds,
                 "style_control": args.style_control}
    if args.style_control:
        answer_paths = [existing_file(p, "--answers file or folder") for p in args.answers or []]
        answers = ah.read_answers(answer_paths) if answer_paths else {}
        version = next((v for v, info in ah.VERSIONS.items() if info["baseline"] == args.baseline), "v0.1")
        if args.baseline not in answers:  # the shipped baseline answers
            from harness.data import resolve_data_dir

            root = resolve_data_dir(args.data_dir)
            shipped = root / "arena_hard" / version / "model_answer" / f"{args.baseline}.jsonl" if root else None
            if shipped is None or not shipped.exists():
                raise UsageError(f"style control needs the baseline's answers: no {args.baseline} answers in "
                                 f"--answers nor at {shipped or '<no data dir>'}; pass them with --answers or "
                                 "--data-dir ../shared/benchmarks")
            answers.update(ah.read_answers([shipped]))
        counter = ah.token_counter(ah.STYLE_ENCODING[version])
        ah.attach_styles(rows, answers, args.baseline, counter)
        out["token_len"] = counter.name
    res = ah.arena_hard_scores(rows, baseline=args.baseline, rounds=args.rounds, style_control=args.style_control)
    if not res:
        raise UsageError(f"no parseable verdicts against baseline {args.baseline!r} in {', '.join(args.judgments)}")
    if args.style_control:
        out["style_coefficients"] = next(iter(res.values()))["style_coefficients"]
    per_model = {m: {"score": {"value": r["score"], "ci_low": r["lower"], "ci_high": r["upper"],
                               "n": r["battles"]}} for m, r in sorted(res.items())}
    out["models"] = per_model
    return _print(args, out, list(per_model.items()))


def _print(args, out: dict, tables: list[tuple[str, dict]]) -> int:
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return 0
    from rich.table import Table

    from harness.cli._common import fmt_metric

    title = f"{args.benchmark} (aggregated from upstream files{', style-controlled' if out.get('style_control') else ''})"
    t = Table(title=title)
    for c in ("model", "metric", "value [95% CI]", "n"):
        t.add_column(c)
    for model, metrics in tables:
        for i, (k, m) in enumerate(metrics.items()):
            t.add_row(str(model) if i == 0 else "", k, fmt_metric(m), str(m.get("n", "")))
    console.print(t)
    return 0

