"""`harness compare RUN_A RUN_B`: the gate's paired statistics without gating, plus the
items where the two runs differ (A is the reference, deltas are B - A)."""

from __future__ import annotations

from harness.cli._common import console


def register(sub, parent) -> None:
    from harness.cli.gate import add_stat_options

    p = sub.add_parser("compare", parents=[parent], help="paired comparison of two runs with item-level differences")
    p.add_argument("run_a", help="reference run: id (unique prefix) or `harness run --out` directory")
    p.add_argument("run_b", help="other run")
    add_stat_options(p)
    p.add_argument("--items", type=int, default=20, metavar="N",
                   help="item-level differences to list per benchmark (default 20; 0 for none, -1 for all)")
    p.add_argument("--json", action="store_true", help="print the comparison (with every changed item) as JSON")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    import json

    from harness.cli.gate import print_table, run_comparison
    from harness.gate import to_json

    cmp = run_comparison(args, args.run_a, args.run_b)
    if args.json:
        print(json.dumps(to_json(cmp, with_items=True), indent=2))
        return 0
    print_table(cmp, f"compare: A {cmp.baseline.run_id} ({cmp.baseline.model}) -> "
                     f"B {cmp.candidate.run_id} ({cmp.candidate.model})")
    if args.items == 0:
        return 0
    from rich.markup import escape
    from rich.table import Table

    for g in cmp.rows:
        r = g.result
        if not r.changed:
            continue
        shown = r.changed if args.items < 0 else r.changed[:args.items]
        console.print(f"\n{r.benchmark}: {len(r.changed)} item(s) differ "
                      f"({r.b_only_a} worse in B, {r.b_only_b} better)", highlight=False)
        t = Table()
        for c in ("item", "A", "B"):
            t.add_column(c)
        for ch in shown:
            t.add_row(escape(ch["id"]), f"{ch['score_a']:g}", f"{ch['score_b']:g}",
                      style="red" if ch["score_b"] < ch["score_a"] else "green")
        console.print(t)
        if len(shown) < len(r.changed):
            console.print(f"... {len(r.changed) - len(shown)} more (--items -1 for all)")
    return 0
