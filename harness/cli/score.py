"""`harness score BENCH --completions FILE.jsonl`: score saved generations without a model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.cli._common import existing_file


def register(sub, parent) -> None:
    p = sub.add_parser("score", parents=[parent], help="score saved completions (no model needed)")
    p.add_argument("benchmark")
    p.add_argument("--completions", required=True,
                   help='JSONL: {"id": ..., "completion": "..."} per line ("completions": [...] for n samples)')
    p.add_argument("--summary", action="store_true", help="print only the aggregate (JSON) on stdout")
    p.set_defaults(func=cmd_score)


def read_completions_file(path: Path) -> dict[str, list[str]]:
    from harness.data import read_jsonl_records
    from harness.errors import UsageError

    expected = '{"id": ..., "completion": "..."} per line'
    out: dict[str, list[str]] = {}
    for n, row in read_jsonl_records(path, expected):
        if "id" not in row or not ("completion" in row or "completions" in row):
            raise UsageError(f"{path}:{n}: expected {expected}")
        texts = row["completions"] if "completions" in row else [row["completion"]]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise UsageError(f"{path}:{n}: completion(s) must be text")
        out[str(row["id"])] = texts
    return out


def cmd_score(args) -> int:
    from harness.benchmarks import BENCHMARKS
    from harness.benchmarks.base import Context
    from harness.errors import UsageError
    from harness.types import Completion

    cls = BENCHMARKS.resolve(args.benchmark)
    given = read_completions_file(existing_file(args.completions, "--completions file"))
    bench = cls(ctx=Context(data_dir=Path(args.data_dir) if args.data_dir else None))
    examples = {ex.id: ex for ex in bench.load()}
    unknown = [i for i in given if i not in examples]
    if unknown:
        sample = ", ".join(repr(i) for i in unknown[:5])
        raise UsageError(f"{len(unknown)} id(s) in {args.completions} are not {args.benchmark} items: {sample}. "
                         f"Ids look like {next(iter(examples))!r}.")
    chosen = [examples[i] for i in given]
    completions = {bench.request_id(examples[i]): Completion(texts=t, finish_reasons=[None] * len(t))
                   for i, t in given.items()}
    scores = bench.score(chosen, completions)
    summary = {"benchmark": args.benchmark, "version": bench.VERSION, "dataset_revision": bench.dataset_revision,
               "metrics": bench.aggregate(scores)}
    if args.summary:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for s in scores:
            print(json.dumps(s, ensure_ascii=False, default=str))
        print(json.dumps(summary, default=str), file=sys.stderr)
    return 0
