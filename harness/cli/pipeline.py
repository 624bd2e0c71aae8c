"""`harness pipeline RECIPE.yaml`: data -> SFT -> WRPO/DPO -> evaluate -> leaderboard -> gate,
each stage hashed and skipped when its inputs are unchanged. See docs/pipeline.md."""

from __future__ import annotations

from harness.cli._common import console, err_console, open_store, parse_key_values


def register(sub, parent) -> None:
    p = sub.add_parser("pipeline", parents=[parent],
                       help="run the whole fusion loop from one recipe (resumable, stage outputs hashed)")
    p.add_argument("recipe", help="pipeline recipe YAML (trainers/recipes/pipeline_*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override top-level recipe keys, e.g. workdir=/tmp/p (YAML-typed)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="re-run this stage even if it is up to date (repeatable; `all` for every stage)")
    p.add_argument("--dry-run", action="store_true", help="show which stages are up to date and which would run")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args) -> int:
    from rich.markup import escape

    from trainers.pipeline.config import load_pipeline
    from trainers.pipeline.run import Pipeline

    recipe, base = load_pipeline(args.recipe, parse_key_values(args.overrides, "override"))
    open_store(args).close()  # creates the store (and its directory) before any stage needs it
    pipe = Pipeline(recipe, base, args.store, data_dir=args.data_dir, progress=not args.no_progress,
                    say=lambda msg: console.print(escape(msg), highlight=False))
    res = pipe.run(force=tuple(args.force), dry_run=args.dry_run)
    if args.dry_run:
        return 0
    ran = [s for s in res.stages if s.status == "ran"]
    console.print(f"pipeline {recipe.name}: {len(ran)} stages ran, {len(res.stages) - len(ran)} up to date; "
                  f"work dir {res.workdir}", highlight=False)
    if res.leaderboard:
        console.print(f"leaderboard: {res.leaderboard}", highlight=False)
    if res.gate is not None:
        verdict = "PASS" if res.gate["passed"] else "FAIL"
        console.print("gate, paired test on the same items:", highlight=False)
        for row in res.gate.get("benchmarks", []):
            console.print(escape(_fmt_row(row)), highlight=False)
        console.print(f"gate ({recipe.gate.candidate or 'last candidate'} vs target): "
                      f"[bold {'green' if res.gate['passed'] else 'red'}]{verdict}[/]", highlight=False)
        if not res.gate["passed"] and recipe.gate.enforce:
            err_console.print("gate.enforce is set: exiting 1")
            return 1
    return 0


def _fmt_row(r: dict) -> str:
    p = r.get("p_adjusted")
    return (f"  {r['benchmark']}: target {r['mean_a']:.2f} -> candidate {r['mean_b']:.2f} "
            f"({r['delta']:+.2f} {r['unit']}, 95% CI [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], n {r['n']}, "
            f"p (Holm) {'n/a' if p is None else f'{p:.3g}'}): {r['status']}")
