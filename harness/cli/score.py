"""`harness score BENCH --completions FILE.jsonl`: score saved generations without a model.

Every line is scored. Lines that repeat an id are further samples of that item: a benchmark
that scores n samples per item (Benchmark.scores_every_sample) gets them as one n-sample
completion and aggregates them as it does for n > 1; any other benchmark is scored in passes,
pass k taking each item's k-th sample, and reports each pass. The summary counts lines,
items, samples and scored samples, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from harness.cli._common import add_judge_backend_option, existing_file, judge_for
from harness.errors import UsageError


class CompletionsFile(BaseModel):
    """A completions file read in order: per item id, its samples from every line."""

    lines: int
    samples: dict[str, list[str]]  # id -> texts, file order
    # id -> {request id -> texts} from rows in a run's own sample-file form ("samples": the
    # request ids of the item), which carries multi-turn follow-ups (MT-Bench's "<id>#t2")
    requests: dict[str, dict[str, list[str]]] = {}

    def counts(self) -> dict:
        per_item = Counter(len(t) for t in self.samples.values())
        return {"lines": self.lines, "items": len(self.samples),
                "samples": sum(len(t) for t in self.samples.values()),
                "samples_per_item": {str(k): v for k, v in sorted(per_item.items())}}


def register(sub, parent) -> None:
    p = sub.add_parser("score", parents=[parent], help="score saved completions (no model needed)")
    p.add_argument("benchmark")
    p.add_argument("--completions", required=True,
                   help='JSONL: {"id": ..., "completion": "..."} per line ("completions": [...] for n samples; '
                        "repeated ids are further samples of the item); a run's own sample file "
                        "(results/<run>/<benchmark>.jsonl) also works, MT-Bench's second turns included")
    p.add_argument("--summary", action="store_true", help="print only the aggregate (JSON) on stdout")
    p.add_argument("--judge", help="judge model for LLM-judged benchmarks (re-judges the completions; "
                                   "judgments already in the store are reused)")
    add_judge_backend_option(p)
    p.set_defaults(func=cmd_score)


def read_completions_file(path: Path) -> CompletionsFile:
    from harness.data import read_jsonl_records

    expected = '{"id": ..., "completion": "..."} per line'
    out: dict[str, list[str]] = {}
    requests: dict[str, dict[str, list[str]]] = {}
    lines = 0
    for n, row in read_jsonl_records(path, expected):
        if "id" not in row or not ("completion" in row or "completions" in row):
            raise UsageError(f"{path}:{n}: expected {expected}")
        texts = row["completions"] if "completions" in row else [row["completion"]]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise UsageError(f"{path}:{n}: completion(s) must be text")
        out.setdefault(str(row["id"]), []).extend(texts)
        if isinstance(row.get("samples"), dict):
            for rid, rtexts in row["samples"].items():
                if not isinstance(rtexts, list) or not all(isinstance(t, str) for t in rtexts):
                    raise UsageError(f"{path}:{n}: samples[{rid!r}] must be a list of texts")
                requests.setdefault(str(row["id"]), {}).setdefault(str(rid), []).extend(rtexts)
        lines += 1
    return CompletionsFile(lines=lines, samples=out, requests=requests)


def score_passes(bench, examples: dict, given: CompletionsFile, judge=None) -> list[tuple[int | None, list[dict]]]:
    """[(pass index or None, per-item scores)]: one pass with n-sample completions when the
    benchmark scores every sample, else one pass per sample index."""
    from harness.types import Completion

    follow_ups = follow_up_requests(bench, examples, given)

    def run(texts_of: dict[str, list[str]], k: int | None) -> list[dict]:
        chosen = [examples[i] for i in texts_of]
        comps = {bench.request_id(examples[i]): Completion(texts=t, finish_reasons=[None] * len(t))
                 for i, t in texts_of.items()}
        for i in texts_of:  # later turns of the same sample (pass k) when the file has them
            for rid, t in follow_ups.get(i, {}).items():
                chosen_texts = t if k is None else t[k:k + 1]
                if chosen_texts:
                    comps[rid] = Completion(texts=chosen_texts, finish_reasons=[None] * len(chosen_texts))
        return bench.score(chosen, comps, judge=judge) if judge is not None else bench.score(chosen, comps)

    if bench.scores_every_sample:
        return [(None, run(given.samples, None))]
    depth = max(len(t) for t in given.samples.values())
    return [(k, run({i: [t[k]] for i, t in given.samples.items() if len(t) > k}, k)) for k in range(depth)]


def follow_up_requests(bench, examples: dict, given: CompletionsFile) -> dict[str, dict[str, list[str]]]:
    """id -> {request id -> texts} of each item's requests after its first (multi-turn), from
    rows in sample-file form; a request id that is not the item's is an error, not ignored."""
    out: dict[str, dict[str, list[str]]] = {}
    for i, reqs in given.requests.items():
        main = bench.request_id(examples[i])
        for rid, texts in reqs.items():
            if rid == main:
                continue
            if not rid.startswith(main + "#"):
                raise UsageError(f"item {i!r}: samples key {rid!r} is not one of its requests "
                                 f"({main!r} or {main}#<turn>)")
            out.setdefault(i, {})[rid] = texts
    return out


def cmd_score(args) -> int:
    from harness.benchmarks import BENCHMARKS
    from harness.benchmarks.base import Context

    cls = BENCHMARKS.resolve(args.benchmark)
    given = read_completions_file(existing_file(args.completions, "--completions file"))
    bench = cls(ctx=Context(data_dir=Path(args.data_dir) if args.data_dir else None))
    examples = {ex.id: ex for ex in bench.load()}
    if not given.samples:
        raise UsageError(f"{args.completions}: no completions in the file")
    unknown = [i for i in given.samples if i not in examples]
    if unknown:
        sample = ", ".join(repr(i) for i in unknown[:5])
        raise UsageError(f"{len(unknown)} id(s) in {args.completions} are not {args.benchmark} items: {sample}. "
                         f"Ids look like {next(iter(examples))!r}.")
    pool, judge = judge_for(bench, args)
    try:
        passes = score_passes(bench, examples, given, judge)
    finally:
        if pool is not None:
            pool.close()
    scored = sum(len(s) for k, s in passes if k is not None) + sum(
        len(given.samples[str(x["id"])]) for k, s in passes if k is None for x in s)
    counts = {**given.counts(), "scored_samples": scored,
              "mode": "n samples per item" if bench.scores_every_sample else "one pass per sample index"}
    summary = {"benchmark": args.benchmark, "version": bench.VERSION, "dataset_revision": bench.dataset_revision,
               "input": counts}
    if len(passes) == 1:
        summary["metrics"] = bench.aggregate(passes[0][1])
    else:
        summary["passes"] = [{"sample": k, "items": len(s), "metrics": bench.aggregate(s)} for k, s in passes]
    if judge is not None:  # who judged, comparability, what it cost (as results.json records it)
        from harness.judges import judge_info

        summary["judge"] = judge_info(judge, bench, judge.stats, summary.get("metrics") or {})
    if args.summary:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for k, scores in passes:
            for s in scores:
                print(json.dumps(s if k is None else {**s, "sample": k}, ensure_ascii=False, default=str))
        print(json.dumps(summary, default=str), file=sys.stderr)
    return 0
