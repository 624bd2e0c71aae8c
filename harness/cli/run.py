"""`harness run suite SUITE --model M`."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from harness.cli._common import add_judge_backend_option, console, metrics_table, open_store, parse_key_values
from harness.cli._console import detect_offline, run_log

log = logging.getLogger(__name__)


def register(sub, parent) -> None:
    run = sub.add_parser("run", help="run benchmarks")
    run_sub = run.add_subparsers(dest="what", required=True)
    p = run_sub.add_parser("suite", parents=[parent], help="run a suite of benchmarks on a model")
    p.add_argument("suite", help="suite name (suites/*.yaml) or path to a suite YAML")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="alias, local dir, hub id or openai:<model>@<base_url> (default: the embedded model)")
    p.add_argument("--backend", default="auto", help="auto | vllm | hf | openai")
    p.add_argument("--backend-option", action="append", metavar="KEY=VALUE",
                   help="passed to the backend, e.g. tensor_parallel_size=2, batch_size=8, concurrency=32")
    p.add_argument("--limit", type=int,
                   help="items per benchmark: the first N, or a stratified sample where a benchmark's data is "
                        "ordered by category (MMLU, MMLU-Pro, GPQA, ...; its option limit_sample); overrides "
                        "a suite entry's limit and ids")
    p.add_argument("--benchmarks", help="comma-separated subset of the suite's benchmarks")
    p.add_argument("--max-tokens", type=int, help="override max new tokens for every benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", metavar="BENCH.KEY=VALUE",
                   help="a benchmark option, e.g. livecodebench.release_version=release_v5")
    p.add_argument("--start-date", help="LiveCodeBench window start (YYYY-MM-DD); = --option livecodebench.start_date=")
    p.add_argument("--end-date", help="LiveCodeBench window end (YYYY-MM-DD); = --option livecodebench.end_date=")
    p.add_argument("--judge", help="judge model for LLM-judged benchmarks (overrides the suite's)")
    add_judge_backend_option(p)
    p.add_argument("--chat-template", help="Jinja chat template file for models without one")
    p.add_argument("--out", help="output directory for results.json (default results/<run id>)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--leaderboard", metavar="DIR",
                   help="after the run, (re)build the suite's leaderboard (every model with a finished run of "
                        "this suite in the store, latest run each) into DIR and print its path")
    p.set_defaults(func=cmd_run_suite)


def bench_options(args) -> dict[str, dict]:
    """--option BENCH.KEY=VALUE (YAML-typed values) plus the LiveCodeBench date shortcuts."""
    from harness.errors import UsageError

    out: dict[str, dict] = {}
    for key, value in parse_key_values(args.option, "--option").items():
        bench, dot, opt = key.partition(".")
        if not dot or not opt:
            raise UsageError(f"bad --option {key!r}: expected BENCH.KEY=VALUE, e.g. livecodebench.start_date=2024-08-01")
        out.setdefault(bench, {})[opt] = value
    for flag, opt in ((args.start_date, "start_date"), (args.end_date, "end_date")):
        if flag:
            out.setdefault("livecodebench", {})[opt] = str(flag)
    return out


def cmd_run_suite(args) -> int:
    from harness.errors import UsageError
    from harness.models import resolve_model
    from harness.runner import new_run_id, run_suite
    from harness.suites_config import load_suite

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    spec = load_suite(args.suite)
    offline = detect_offline()
    if offline:
        log.info("offline: %s; benchmarks use local data only", offline)
    store = open_store(args)
    model = resolve_model(args.model, store=store, chat_template_file=args.chat_template)
    run_id = new_run_id()
    out_dir = Path(args.out) if args.out else Path("results") / run_id
    with run_log(out_dir / "run.log", args.verbose) as log_path:
        results = run_suite(spec, model, store, run_options(args, out_dir, run_id))
    print_run(results, spec.name, model.name, log_path)
    if args.leaderboard:
        index = build_suite_leaderboard(spec.name, store, Path(args.leaderboard))
        console.print(f"leaderboard: {index.resolve()}", highlight=False)
    console.print(one_line_summary(results), highlight=False)
    return 0


def build_suite_leaderboard(suite: str, store, out: Path) -> Path:
    """Rebuilt from the store every time, so a run killed while it was written heals on the next."""
    from leaderboards.build import build_leaderboard
    from leaderboards.render import write_site
    from leaderboards.spec import LeaderboardSpec

    models = list(dict.fromkeys(r["model"] for r in store.list_runs()
                                if r["results"] is not None and r["suite"] == suite))
    spec = LeaderboardSpec(name=suite, suite=suite, models=[{"model": m, "role": "baseline"} for m in models])
    return write_site(build_leaderboard(spec, store), out, store)


def one_line_summary(results: dict) -> str:
    """`suite · model: bench headline ...` with n/a for benchmarks without a value."""
    parts = []
    for name, b in results["benchmarks"].items():
        m = b["metrics"].get(b["headline"]) or {}
        value = m.get("value") if isinstance(m, dict) else None
        flag = "*" if (b.get("judge") or {}).get("comparable") is False else ""
        parts.append(f"{name} {value:.1f}{flag}" if value is not None else f"{name} n/a")
    note = " (* judged by a non-published judge: not comparable)" if "*" in " ".join(parts) else ""
    return f"summary: {results['suite']} · {results['model']['name']}: " + ", ".join(parts) + note


def run_options(args, out_dir: Path, run_id: str):
    from harness.runner import RunOptions

    return RunOptions(
        bench_options=bench_options(args),
        backend=args.backend, backend_options=parse_key_values(args.backend_option, "--backend-option"),
        limit=args.limit, benchmarks=[b.strip() for b in args.benchmarks.split(",")] if args.benchmarks else None,
        max_tokens=args.max_tokens, seed=args.seed, out=out_dir,
        data_dir=Path(args.data_dir) if args.data_dir else None, judge=args.judge,
        judge_backend_options=parse_key_values(args.judge_backend_option, "--judge-backend-option"),
        progress=not args.no_progress, command=shlex.join(["harness", *sys.argv[1:]]), run_id=run_id,
    )


def print_run(results: dict, suite: str, model: str, log_path: Path | None) -> None:
    console.print(metrics_table(results, title=f"{suite} · {model} · run {results['run_id']}"))
    t = results["timings"]
    console.print(f"{t['generated_requests']} generated, {t['cached_requests']} cached, "
                  f"{t['failed_requests']} failed; {t['total_s']:.1f}s total"
                  + (f", {t['generated_tokens_per_s']:.0f} tok/s" if t["generated_tokens_per_s"] else ""))
    for name, b in results["benchmarks"].items():
        if b.get("outcomes"):  # code benchmarks: how programs ended, not only how many passed
            console.print(f"{name} outcomes: " + ", ".join(f"{k} {v}" for k, v in b["outcomes"].items() if v))
    for name, why in (results.get("skipped") or {}).items():
        console.print(f"[yellow]skipped {name} (optional, no data): {why}[/]")
    console.print(f"results: {results['out_dir']}/results.json")
    if log_path is not None:
        console.print(f"engine and library log: {log_path} (-v shows it here)")
    if t["failed_requests"]:
        console.print(f"[yellow]{t['failed_requests']} requests failed; re-run the same command to retry them.[/]")
