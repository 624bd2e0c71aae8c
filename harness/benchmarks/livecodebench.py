"""LiveCodeBench code generation (Jain et al., 2024, "LiveCodeBench: Holistic and Contamination
Free Evaluation of Large Language Models for Code").

Data: livecodebench/code_generation_lite (its jsonl files test.jsonl, test2.jsonl, ... test6.jsonl,
one per release increment). Offline: the same files, unchanged, under
<data dir>/livecodebench/code_generation_lite/. Revision: hash of the files read.
Options (suite `options:`): release_version ("release_v1".."release_v6" = the first N files, as
upstream; "v2" = only test2.jsonl; "v2_v4" = test2..test4; default "release_v5"), start_date /
end_date (inclusive, on contest_date, YYYY-MM-DD; FuseChat-3.0 used 2024-08-01..2024-11-30),
difficulty ("easy" | "medium" | "hard" or a list), timeout_s per test (default 6, upstream's).
Item id: question_id.
Prompt: upstream's generic chat prompt (system message + "### Question: ... ### Format: ...
### Answer:"), starter code for functional (LeetCode) problems, the stdin/stdout format
otherwise. No `###` stop string: replies that start a new section would be cut before the code.
Generation: greedy; max tokens explicit in the suite.
Execution: harness.sandbox, one program per sample running every public and private test;
upstream's import preamble is prepended; stdin programs run once per test with the input on
fd 0; functional problems call Solution().<func_name>(*json args). Outputs are compared in the
harness process (expected outputs never enter the sandbox): stdin = line by line after strip,
numbers compared as Decimals; functional = JSON equality (tuples as lists), as upstream.
Metric: pass@1 over public + private tests; outcome counts; first failing test per item.
VERSION history: 1 = first version.

Private tests upstream are base64(zlib(pickle(json string))). Unpickling untrusted data can run
arbitrary code, so they are decoded with an Unpickler whose find_class refuses every global:
a pickled str needs none, and anything else fails with an error naming the problem.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import zlib
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Benchmark, BenchmarkOptions, Example, take
from harness.benchmarks.code_extract import extract_code
from harness.data import file_revision, resolve_data_dir
from harness.errors import DataNotFoundError, HarnessError, UsageError
from harness.sandbox.plain import PlainValueError, loads_bounded
from harness.types import Completion, Request, SamplingParams

log = logging.getLogger(__name__)

HUB_ID = "livecodebench/code_generation_lite"
LOCAL_DIR = "livecodebench/code_generation_lite"
FILES = ["test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl"]
TIMEOUT_S = 6.0

SYSTEM = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
          "generate a correct Python program that matches the specification and passes all tests.")
WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                "code within delimiters.")
WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
                   "test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
                   "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")
# lcb_runner/evaluation/testing_util.py's preamble: solutions rely on these names being there.
IMPORTS = ("from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
           "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\n"
           "from random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\n"
           "from operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\n"
           "from builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\n"
           "import collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\n"
           "import statistics\nimport itertools\nimport functools\nimport operator\nimport io\nimport sys\n"
           "import json\nsys.setrecursionlimit(50000)\n")


def user_prompt(question: str, starter_code: str) -> str:
    prompt = f"### Question:\n{question}\n\n"
    if starter_code:
        prompt += f"### Format: {WITH_STARTER}\n```python\n{starter_code}\n```\n\n"
    else:
        prompt += f"### Format: {WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "### Answer: (use the provided format with backticks)\n\n"


def files_for(release: str) -> list[str]:
    """Upstream's version tags: release_vN = the first N files; vN = file N; vN_vM = N..M."""
    try:
        if release == "release_latest":
            return FILES
        if release.startswith("release_v"):
            n = int(release.removeprefix("release_v"))
            if 1 <= n <= len(FILES):
                return FILES[:n]
        elif release.startswith("v"):
            parts = [int(p.removeprefix("v")) for p in release.split("_")]
            lo, hi = parts[0], parts[-1]
            if len(parts) <= 2 and 1 <= lo <= hi <= len(FILES):
                return FILES[lo - 1:hi]
    except ValueError:
        pass
    raise UsageError(f"unknown LiveCodeBench release_version {release!r}; use release_v1..release_v{len(FILES)}, "
                     f"release_latest, vN (one increment) or vN_vM")


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ARG002
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from test data")


def decode_tests(raw: Any, problem_id: str, field: str) -> list[dict]:
    """Public tests are a JSON string; private ones JSON or base64(zlib(pickle(JSON string)))."""
    if isinstance(raw, list):
        tests = raw
    else:
        try:
            tests = json.loads(raw)
        except (json.JSONDecodeError, TypeError):
            try:
                blob = zlib.decompress(base64.b64decode(str(raw).encode("utf-8"), validate=False))
                text = _NoGlobals(io.BytesIO(blob)).load()
                if not isinstance(text, (str, bytes)):
                    raise ValueError(f"expected a pickled string, got {type(text).__name__}")
                tests = json.loads(text)
            except Exception as e:
                raise HarnessError(f"LiveCodeBench problem {problem_id!r}: cannot decode {field} "
                                   f"({type(e).__name__}: {e}). Expected JSON, or base64 of zlib of a pickled "
                                   f"JSON string as in {HUB_ID}.") from None
    if not isinstance(tests, list) or not all(
            isinstance(t, dict) and isinstance(t.get("input"), str) and isinstance(t.get("output"), str)
            for t in tests):
        raise HarnessError(f"LiveCodeBench problem {problem_id!r}: {field} must be a list of "
                           '{"input": str, "output": str, "testtype": ...} objects')
    return tests


def _parse_date(value: Any, what: str) -> date:
    try:
        return datetime.fromisoformat(str(value)).date() if not isinstance(value, date) else value
    except ValueError:
        raise UsageError(f"LiveCodeBench {what} {value!r} is not a date; use YYYY-MM-DD") from None


def load_problems(data_dir, release: str) -> tuple[list[dict], str]:
    files = files_for(release)
    root = resolve_data_dir(data_dir)
    looked = []
    if root is not None:
        base = root / LOCAL_DIR
        paths = [base / f for f in files]
        present = [p for p in paths if p.exists()]
        if present:
            if len(present) < len(paths):
                missing = ", ".join(p.name for p in paths if not p.exists())
                log.warning("livecodebench: %s has no %s; %s is read without them", base, missing, release)
            rows = [json.loads(line) for p in present for line in p.read_text(encoding="utf-8").split("\n")
                    if line.strip()]
            rev = "local:" + ",".join(f"{p.name}@{file_revision(p)}" for p in present)
            return rows, rev
        looked.append(f"{base}/{{{','.join(files)}}} (data dir)")
    else:
        looked.append("no data dir set (--data-dir or $HARNESS_DATA_DIR)")
    import os

    if os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            from huggingface_hub import hf_hub_download

            paths = [Path(hf_hub_download(HUB_ID, f, repo_type="dataset")) for f in files]
            rows = [json.loads(line) for p in paths for line in p.read_text(encoding="utf-8").split("\n")
                    if line.strip()]
            return rows, f"hub:{HUB_ID}:" + ",".join(f"{p.name}@{file_revision(p)}" for p in paths)
        except Exception as e:  # offline, not installed, renamed...
            looked.append(f"hub {HUB_ID}: {type(e).__name__}: {e}"[:300])
    else:
        looked.append(f"hub {HUB_ID}: skipped because HF_HUB_OFFLINE=1")
    raise DataNotFoundError("no data for benchmark 'livecodebench'. Looked in: " + "; ".join(looked)
                            + f". Fix: pass --data-dir DIR with the {HUB_ID} jsonl files under DIR/{LOCAL_DIR}/.")


def lines_match(got: str, expected: str) -> bool:
    """Upstream's stdin grading: stripped lines equal, else every whitespace token equal as a
    Decimal (so '2.50' matches '2.5' but 2.5000001 does not)."""
    g = [ln.strip() for ln in got.strip().split("\n")]
    e = [ln.strip() for ln in expected.strip().split("\n")]
    if len(g) != len(e):
        return False
    for a, b in zip(g, e):
        if a == b:
            continue
        ta, tb = a.split(), b.split()
        if len(ta) != len(tb):
            return False
        try:
            if [Decimal(x) for x in ta] != [Decimal(x) for x in tb]:
                return False
        except InvalidOperation:
            return False
    return True


def values_match(got_json: str, expected: str) -> bool:
    """`got_json` was written by the program: parsed with size and depth caps (a 100 000-deep
    list would be a RecursionError in json.loads, ending the whole scoring run)."""
    try:
        return loads_bounded(got_json, max_chars=16 << 20) == json.loads(expected)
    except (PlainValueError, json.JSONDecodeError, TypeError, RecursionError):
        return False


def _short(s: Any, n: int = 300) -> Any:
    return s if not isinstance(s, str) or len(s) <= n else s[:n] + f"... ({len(s)} chars)"


class LiveCodeBenchOptions(BenchmarkOptions):
    """Keys this benchmark reads from `options` (unknown keys are errors at suite load)."""

    release_version: str | None = None
    start_date: Any = None  # YYYY-MM-DD (YAML may give a date)
    end_date: Any = None
    difficulty: Any = None
    timeout_s: float | None = None
    workers: int | None = None


class LiveCodeBench(Benchmark):
    Options = LiveCodeBenchOptions
    scores_every_sample = True
    name = "livecodebench"
    VERSION = "1"
    headline = "pass@1"
    default_params = SamplingParams(temperature=0.0, max_tokens=2048)

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        release = str(self.options.get("release_version", "release_v5"))
        rows, self.dataset_revision = load_problems(self.ctx.data_dir, release)
        start = _parse_date(self.options["start_date"], "start_date") if self.options.get("start_date") else None
        end = _parse_date(self.options["end_date"], "end_date") if self.options.get("end_date") else None
        diff = self.options.get("difficulty")
        diffs = {diff} if isinstance(diff, str) else set(diff or [])
        examples = []
        for r in rows:
            pid = str(r.get("question_id", "?"))
            try:
                when = _parse_date(r["contest_date"], f"contest_date of problem {pid}")
                if (start and when < start) or (end and when > end):
                    continue
                if diffs and r.get("difficulty") not in diffs:
                    continue
                meta = r.get("metadata") or "{}"
                meta = json.loads(meta) if isinstance(meta, str) else meta
                tests = (decode_tests(r["public_test_cases"], pid, "public_test_cases")
                         + decode_tests(r["private_test_cases"], pid, "private_test_cases"))
                examples.append(Example(id=pid, data={
                    "question": r["question_content"], "starter_code": r.get("starter_code") or "",
                    "func_name": meta.get("func_name"), "tests": tests, "difficulty": r.get("difficulty"),
                    "platform": r.get("platform"), "contest_date": when.isoformat()}))
            except (KeyError, json.JSONDecodeError, UsageError) as e:
                raise HarnessError(f"LiveCodeBench problem {pid!r}: malformed row ({type(e).__name__}: {e})") from None
        for ex in examples:
            kinds = {t.get("testtype", "stdin") for t in ex.data["tests"]}
            if "functional" in kinds and not ex.data["func_name"]:
                raise HarnessError(f"LiveCodeBench problem {ex.id!r}: functional tests but no metadata.func_name")
            ex.data["functional"] = "functional" in kinds
        if not examples:
            log.warning("livecodebench: no problems in %s for the window %s..%s, difficulty %s", release, start, end,
                        diff)
        return take(examples, limit)

    def to_requests(self, example: Example) -> list[Request]:
        return [Request(id=self.request_id(example),
                        messages=({"role": "system", "content": SYSTEM},
                                  {"role": "user", "content": user_prompt(example.data["question"],
                                                                          example.data["starter_code"])}),
                        params=self.params)]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict]:
        from harness.benchmarks.humaneval import item_score

        timeout = float(self.options.get("timeout_s", TIMEOUT_S))
        items = []
        meta = {}
        for ex in examples:
            c = completions[self.request_id(ex)]
            meta[ex.id] = c
            for i, t in enumerate(c.texts if not c.error else []):
                items.append(((ex.id, i), ex, t))
        results = check_solutions(items, timeout_s=timeout, workers=self.options.get("workers"))
        scores = []
        for ex in examples:
            c = meta[ex.id]
            per = [results[(ex.id, i)] for i in range(len(c.texts))] if not c.error else []
            s = item_score(ex.id, per, c)
            s.update(difficulty=ex.data["difficulty"], platform=ex.data["platform"],
                     contest_date=ex.data["contest_date"], n_tests=len(ex.data["tests"]))
            scores.append(s)
        self._outcomes = [o for s in scores for o in s["outcomes"]]
        return scores

    def aggregate(self, scores: list[dict]) -> dict[str, dict]:
        from harness.benchmarks.humaneval import aggregate_code
        from harness.stats import mean_metric

        out = aggregate_code(scores, seed=self.ctx.seed)
        for level in ("easy", "medium", "hard"):
            xs = [s["score"] for s in scores if s.get("difficulty") == level]
            if xs:
                out[f"pass@1_{level}"] = mean_metric(xs, seed=self.ctx.seed)
        return out

    def provenance(self) -> dict[str, Any]:
        from harness.sandbox import describe, speed_factor
        from harness.sandbox.outcomes import outcome_counts

        timeout = float(self.options.get("timeout_s", TIMEOUT_S))
        return {**super().provenance(), "sandbox": {**describe(), "timeout_s": timeout,
                                                     "effective_timeout_s": round(timeout * speed_factor(), 2)},
                "outcomes": outcome_counts(getattr(self, "_outcomes", []))}


def check_solutions(items: list[tuple[Any, Example, str]], timeout_s: float = TIMEOUT_S,
                    workers: int | None = None) -> dict[Any, dict]:
    """key -> {outcome, reason, first_failing_test} for (key, example, reply) items."""
    from harness.sandbox import Job, Limits, run_many

    out: dict[Any, dict] = {}
    jobs = []
    for key, ex, reply in items:
        code = extract_code(reply, "Solution" if ex.data["functional"] else None, program=not ex.data["functional"])
        if code is None:
            out[key] = {"outcome": "no code found", "reason": "no code found", "first_failing_test": None}
            continue
        tests = ex.data["tests"]
        n = len(tests)
        lim = Limits(wall_s=(timeout_s + 1) * n + 5, per_test_s=timeout_s)  # upstream's global timeout
        if ex.data["functional"]:
            jobs.append(Job(mode="call", code=code, preamble=IMPORTS, inputs=[t["input"] for t in tests],
                            func_name=ex.data["func_name"], limits=lim, tag=(key, ex)))
        else:
            jobs.append(Job(mode="stdio", code=code, preamble=IMPORTS, inputs=[t["input"] for t in tests],
                            limits=lim, tag=(key, ex)))
    for r in run_many(jobs, workers=workers):
        key, ex = r.tag
        out[key] = grade(ex, r)
    return out


def grade(ex: Example, r) -> dict:
    """Compare a run's outputs with the expected ones, in test order; the first failure decides."""
    from harness.sandbox.outcomes import outcome_of

    tests = ex.data["tests"]
    if r.status == "syntax error" or r.status == "sandbox error":
        return {"outcome": outcome_of(r.status), "reason": r.error, "first_failing_test": None}
    events = {e.get("i"): e for e in r.tests if isinstance(e.get("i"), int)}
    for i, t in enumerate(tests):
        ev = events.get(i)
        failing = {"index": i, "input": _short(t["input"]), "expected": _short(t["output"])}
        if ev is None:  # the program died or ran out of time before finishing this test
            status = r.status if r.status not in ("done", "passed") else "runtime error"
            return {"outcome": outcome_of(status), "reason": r.error, "first_failing_test": failing}
        if not ev.get("ok"):
            return {"outcome": outcome_of(str(ev.get("status"))), "reason": ev.get("error"),
                    "first_failing_test": failing}
        if ex.data["functional"]:
            got = ev.get("out")
            ok = isinstance(got, str) and values_match(got, t["output"])
        else:
            got = r.outputs[i] if i < len(r.outputs) else None
            ok = got is not None and lines_match(got, t["output"])
        if not ok:
            return {"outcome": "failed", "reason": "wrong answer",
                    "first_failing_test": {**failing, "got": _short(got)}}
    if r.output_limit:
        return {"outcome": "output limit", "reason": r.error, "first_failing_test": None}
    return {"outcome": "passed", "reason": None, "first_failing_test": None}
