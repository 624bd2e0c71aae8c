"""`harness runs` and `harness show RUN`."""

from __future__ import annotations

import json
import os
import time

from harness.cli._common import console, metrics_table, open_store


def register(sub, parent) -> None:
    p = sub.add_parser("runs", parents=[parent], help="list runs in the store")
    p.set_defaults(func=cmd_runs)
    s = sub.add_parser("show", parents=[parent], help="print a run's metrics")
    s.add_argument("run", help="run id (a unique prefix is enough)")
    s.add_argument("--json", action="store_true", help="print the full results JSON")
    s.set_defaults(func=cmd_show)


def _status(r: dict) -> str:
    """A 'running' row whose process is gone was killed: say so."""
    if r["status"] != "running":
        return r["status"]
    pid = (r.get("config") or {}).get("pid")
    if pid:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "interrupted"
        except PermissionError:
            pass
    return "running"


def cmd_runs(args) -> int:
    from rich.table import Table

    store = open_store(args)
    runs = store.list_runs()
    if not runs:
        console.print(f"no runs in {args.store} yet: try `harness run suite smoke`")
        return 0
    t = Table(title=f"runs in {args.store}")
    # ids are copied into `harness show` and statuses grepped by scripts: never split them
    t.add_column("run", no_wrap=True)
    t.add_column("suite", overflow="fold")
    t.add_column("model", overflow="fold")
    t.add_column("status", no_wrap=True)
    t.add_column("started")
    t.add_column("headline metrics")
    for r in runs:
        full = store.get_run(r["id"])
        heads = []
        for name, b in ((r["results"] or {}).get("benchmarks") or {}).items():
            m = b["metrics"].get(b.get("headline"), {})
            if m.get("value") is not None:
                heads.append(f"{name} {m['value']:.1f}")
        t.add_row(r["id"], r["suite"], r["model"], _status(full), time.strftime("%Y-%m-%d %H:%M",
                  time.localtime(r["started_at"])), ", ".join(heads))
    console.print(t)
    return 0


def cmd_show(args) -> int:
    from harness.errors import UsageError

    store = open_store(args)
    run = store.get_run(args.run)
    if run is None:
        ids = [r["id"] for r in store.list_runs()]
        raise UsageError(f"no run {args.run!r} in {args.store}; runs: {', '.join(ids[-10:]) or 'none'}")
    if run["results"] is None:
        console.print(f"run {run['id']} is {_status(run)}: no results yet (re-run its command to resume)")
        return 0
    if args.json:
        print(json.dumps(run["results"], indent=2))
        return 0
    res = run["results"]
    console.print(metrics_table(res, title=f"{res['suite']} · {res['model']['name']} · run {run['id']}"))
    p = res["provenance"]
    console.print(f"git {p.get('git_sha')} · seed {p.get('seed')} · {res['backend']['name']} · "
                  f"template {res['model'].get('template_hash')} · {p.get('created_at')}")
    # Judged benchmarks: who judged and what it cost (prices from $HARNESS_PRICES, optional).
    from harness.judges.cost import cost_ledger, ledger_table, load_prices

    ledger = cost_ledger(res, load_prices())
    if ledger:
        console.print(ledger_table(ledger))
        for name, b in res["benchmarks"].items():
            if (b.get("judge") or {}).get("warning"):
                console.print(f"[bold yellow]{name}:[/] {b['judge']['warning']}")
    return 0
