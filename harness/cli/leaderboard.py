"""`harness leaderboard build NAME --out DIR` and `harness leaderboard list`."""

from __future__ import annotations

from pathlib import Path

from harness.cli._common import console


def register(sub, parent) -> None:
    p = sub.add_parser("leaderboard", help="build an HTML leaderboard: candidates vs their target and sources")
    lsub = p.add_subparsers(dest="leaderboard_command", required=True)
    b = lsub.add_parser("build", parents=[parent], help="write index.html and drill-down pages")
    b.add_argument("name", nargs="?",
                   help="a definition in leaderboards/ (by name) or a YAML file; omit with --suite")
    b.add_argument("--out", required=True, help="output directory (index.html goes here)")
    b.add_argument("--suite", help="without NAME: every model with a finished run of this suite, latest run each")
    b.add_argument("--fusion-stats", action="append", default=[], metavar="FILE",
                   help="a stats.json of `harness fuse data` (or its output directory) to show where the "
                        "training answers came from; repeatable, adds to the definition's fusion_stats")
    b.set_defaults(func=cmd_build)
    ls = lsub.add_parser("list", parents=[parent], help="list the leaderboard definitions shipped in leaderboards/")
    ls.set_defaults(func=cmd_list)


def _auto_spec(args, store):
    """All models that ran --suite, as baselines: a quick look without writing a YAML."""
    from harness.errors import UsageError
    from leaderboards.spec import LeaderboardSpec

    runs = [r for r in store.list_runs() if r["results"] is not None]
    if not runs:
        raise UsageError(f"the store {args.store} has no finished runs, so there is nothing to put on a "
                         f"leaderboard. Run `harness run suite {args.suite} --model MODEL` first.")
    models = list(dict.fromkeys(r["model"] for r in runs if r["suite"] == args.suite))
    if not models:
        suites = sorted({r["suite"] for r in runs})
        raise UsageError(f"no finished run of suite {args.suite!r} in {args.store}; suites with runs: "
                         f"{', '.join(suites)}")
    return LeaderboardSpec(name=args.suite, suite=args.suite,
                           models=[{"model": m, "role": "baseline"} for m in models])


def cmd_build(args) -> int:
    from harness.cli._common import open_store
    from harness.errors import UsageError
    from leaderboards.build import build_leaderboard
    from leaderboards.render import write_site
    from leaderboards.spec import load_spec

    if bool(args.name) == bool(args.suite):
        raise UsageError("give a leaderboard NAME (or YAML file) or --suite SUITE, not both / neither; "
                         "see `harness leaderboard list`")
    store = open_store(args) if (args.suite or Path(args.store).exists()) else None
    if args.suite:
        spec = _auto_spec(args, store)
    else:
        spec = load_spec(args.name)
        if store is None and any(not m.results for m in spec.models):
            raise UsageError(f"the store {args.store} does not exist: run `harness run suite "
                             f"{spec.suite or 'SUITE'} --model MODEL --store {args.store}` first, or pass --store")
    lb = build_leaderboard(spec, store, fusion_stats=args.fusion_stats)
    index = write_site(lb, Path(args.out), store)
    from rich.markup import escape

    fusion = f", fusion data from {len(lb.fusion)} stats.json" if lb.fusion else ""
    console.print(f"wrote {index} ({len(lb.rows)} models x {len(lb.benchmarks)} benchmarks{fusion})",
                  highlight=False)

    for w in lb.warnings:  # params contain brackets: never let rich read them as markup
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    return 0


def cmd_list(args) -> int:
    from leaderboards.spec import HERE, available, load_spec

    for name in available():
        spec = load_spec(str(HERE / f"{name}.yaml"))
        console.print(f"{name}: suite {spec.suite}, {len(spec.models)} models"
                      + (f" - {spec.title}" if spec.title else ""), highlight=False)
    return 0
