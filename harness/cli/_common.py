"""Helpers shared by CLI commands."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from harness.errors import UsageError

console = Console()
err_console = Console(stderr=True)


def open_store(args):
    from harness.store import Store

    return Store(args.store)


def fmt_metric(m: dict) -> str:
    if m.get("value") is None:
        return "n/a"
    if m.get("ci_low") is None:
        return f"{m['value']:.2f}"
    return f"{m['value']:.2f} [{m['ci_low']:.2f}, {m['ci_high']:.2f}]"


def metrics_table(results: dict, title: str | None = None):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("benchmark", no_wrap=True)
    t.add_column("metric", overflow="fold")
    t.add_column("value [95% CI]")
    for col in ("n", "truncated", "errors"):
        t.add_column(col)
    for name, b in results["benchmarks"].items():
        trunc = b.get("truncation_rate")
        for i, (metric, m) in enumerate(b["metrics"].items()):
            if not isinstance(m, dict) or "value" not in m:
                continue
            t.add_row(name if i == 0 else "", metric + (" *" if metric == b.get("headline") else ""),
                      fmt_metric(m), str(m.get("n", "")),
                      (f"{100 * trunc:.1f}%" if trunc is not None else "") if i == 0 else "",
                      str(b.get("errors", "")) if i == 0 else "")
    return t


def parse_key_values(items: list[str] | None, what: str) -> dict:
    """KEY=VALUE pairs with YAML-typed values (so 2 is an int and true a bool)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"bad {what} {item!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {path!r} does not exist")
    return p


def judge_for(bench, args):
    """(pool, judge) for `harness score` of a judged benchmark, else (None, None). Judgments
    are cached in the store, so re-judging the same completions with the same judge is free."""
    from harness.judges import JudgedBenchmark, JudgePool, missing_judge

    if not isinstance(bench, JudgedBenchmark):
        if getattr(args, "judge", None):
            raise UsageError(f"--judge: {bench.name} is not an LLM-judged benchmark")
        return None, None
    spec = bench.judge_spec(None, getattr(args, "judge", None))
    if not spec:
        raise missing_judge(bench.name, bench.published_judge)
    pool = JudgePool(open_store(args), seed=getattr(args, "seed", 0) or 0,
                     backend_options=parse_key_values(getattr(args, "judge_backend_option", None),
                                                      "--judge-backend-option"))
    return pool, pool.get(spec)


def add_judge_backend_option(p) -> None:
    p.add_argument("--judge-backend-option", action="append", metavar="KEY=VALUE",
                   help="passed to the judge's backend, e.g. regex_field=structured_outputs so a judge "
                        "served by `vllm serve` gets constrained verdicts")
