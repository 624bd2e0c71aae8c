"""`harness gate --candidate RUN --baseline RUN`: fail CI on a significant regression.

Exit codes: 0 pass, 1 significant regression beyond tolerance, 2 usage error or runs that
are not comparable (different benchmark VERSION, dataset revision or sampling params).
"""

from __future__ import annotations

from pathlib import Path

from harness.cli._common import console, parse_key_values


def register(sub, parent) -> None:
    p = sub.add_parser("gate", parents=[parent], help="paired-significance regression gate for CI (exit 1 on regression)")
    p.add_argument("--candidate", required=True, help="run id (unique prefix) or `harness run --out` directory")
    p.add_argument("--baseline", required=True, help="run id (unique prefix) or `harness run --out` directory")
    add_stat_options(p)
    p.add_argument("--tolerance", nargs="+", metavar="BENCH=VALUE", action="extend",
                   help="allowed drop per benchmark, in points (percentage points for pass/fail and 0..1 "
                        "scores, raw units otherwise); default 0")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per benchmark)")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--json", metavar="FILE", help="write the full comparison as JSON")
    p.set_defaults(func=cmd_gate)


def add_stat_options(p) -> None:
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise significance level (Holm); default 0.05")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare even if benchmark versions, dataset revisions or sampling params differ")
    p.add_argument("--benchmarks", nargs="+", metavar="BENCH", help="only these benchmarks (default: all shared)")
    p.add_argument("--n-boot", type=int, default=10_000, help="paired bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def print_table(cmp, title: str) -> None:
    from rich.table import Table

    from harness.gate import TABLE_HEADER, table_rows

    t = Table(title=title)
    for h in TABLE_HEADER:
        t.add_column(h, justify="right" if h not in ("benchmark", "test", "status") else "left")
    colour = {"regression": "bold red", "within tolerance": "yellow", "improved": "green"}
    for row, g in zip(table_rows(cmp), cmp.rows):
        t.add_row(*row, style=colour.get(g.status))
    # CI logs are not terminals and rich would squeeze 12 columns into 80: print it wide there
    from rich.console import Console

    (console if console.is_terminal else Console(width=max(console.width, 180))).print(t)
    from rich.markup import escape

    for m in cmp.mismatches:  # params may contain brackets: never let rich read them as markup
        console.print(f"[yellow]mismatch (allowed):[/] {escape(m)}", highlight=False)
    if cmp.only_one:
        console.print(f"not compared (run by one side only): {', '.join(cmp.only_one)}")


def run_comparison(args, baseline_ref: str, candidate_ref: str, tolerances: dict | None = None):
    from harness.cli._common import open_store
    from harness.errors import UsageError
    from harness.gate import compare, load_run

    if args.n_boot < 100:
        raise UsageError(f"--n-boot {args.n_boot} is too few for a p-value; use at least 1000")
    store = None if Path(baseline_ref).exists() and Path(candidate_ref).exists() else open_store(args)
    baseline, candidate = load_run(baseline_ref, store), load_run(candidate_ref, store)
    return compare(baseline, candidate, alpha=args.alpha, tolerances=tolerances,
                   allow_mismatch=args.allow_mismatch, benchmarks=args.benchmarks, n_boot=args.n_boot,
                   seed=args.seed)


def cmd_gate(args) -> int:
    import json

    from harness.gate import to_json, to_junit, to_markdown

    tolerances = parse_key_values(args.tolerance, "--tolerance")
    cmp = run_comparison(args, args.baseline, args.candidate, tolerances)
    print_table(cmp, f"gate: {cmp.candidate.run_id} ({cmp.candidate.model}) vs baseline "
                     f"{cmp.baseline.run_id} ({cmp.baseline.model})")
    if args.junit:
        Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
        Path(args.junit).write_text(to_junit(cmp), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        with open(args.markdown, "a", encoding="utf-8") as f:  # append: $GITHUB_STEP_SUMMARY is shared
            f.write(to_markdown(cmp))
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(cmp), indent=2), encoding="utf-8")
    failed = [g.result.benchmark for g in cmp.rows if g.failed]
    if failed:
        console.print(f"[bold red]FAIL[/]: significant regression on {', '.join(failed)}", highlight=False)
        return 1
    console.print("[bold green]PASS[/]: no significant regression beyond tolerance", highlight=False)
    return 0
