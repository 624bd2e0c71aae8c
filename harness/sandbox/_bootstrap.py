"""The first Python code that runs inside the sandbox, before any model-written code.

Stdlib only, and passed to the interpreter with `-c` (not as a file path) so it needs nothing
from the harness's own install: the sandbox hides HOME and the temp root, where a venv or a
checkout may live. It reads the job the parent wrote (job.json in its working directory),
applies the resource limits, drops root, then runs the program in one of three modes:

  script  run code, then the benchmark's test code, then `check(entry_point)` (HumanEval).
          Success is a final line carrying a nonce the parent chose; the line is written
          through a file descriptor and function captured *before* the model's code ran, and
          the tests run against a snapshot of builtins taken before it ran, so patching
          builtins, the test helpers or this module's functions does not fake a pass.
  stdio   run code once per test input with that input on fd 0 and fd 1 going to a per-test
          file (LiveCodeBench stdin problems). The parent compares the outputs; the expected
          outputs never enter the sandbox, so the program cannot fake a match.
  call    exec code, then per test call `Solution().<func>(*args)` and report the JSON of the
          result (LiveCodeBench functional problems); the parent compares.

Events go, one JSON object per line, to result.jsonl; the parent trusts only what it can
check (the nonce; its own comparison of outputs) and treats a missing final line as a failure.
"""

import builtins
import json
import os
import resource
import signal
import sys
import types


class _Timeout(BaseException):
    """BaseException so a model's `except Exception:` cannot swallow the per-test timer."""


def _limits(lim):
    def setr(which, value):
        if value is None:
            return
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            soft, hard = resource.getrlimit(which)
            resource.setrlimit(which, (min(value, hard) if hard != resource.RLIM_INFINITY else value, hard))

    setr(resource.RLIMIT_CORE, 0)
    setr(resource.RLIMIT_AS, lim.get("memory_bytes"))
    setr(resource.RLIMIT_CPU, lim.get("cpu_s"))
    setr(resource.RLIMIT_FSIZE, lim.get("file_size_bytes"))
    setr(resource.RLIMIT_NOFILE, lim.get("open_files"))
    setr(resource.RLIMIT_NPROC, lim.get("processes"))


def _block_network():
    """Fallback when no network namespace is available: refuse socket use at the audit layer.
    Audit hooks cannot be removed from Python code once installed."""
    blocked = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyaddr", "socket.__new__"}

    def hook(event, args):
        if event in blocked:
            raise PermissionError(f"network access is disabled in the sandbox ({event})")

    sys.addaudithook(hook)


class _NotCTyped(AssertionError):
    pass


def _c_typed_results(candidate, type=type, any=any, all=all, isinstance=isinstance, vars=vars,
                     py_kinds=(types.FunctionType, classmethod, staticmethod, property),
                     mro_of=type.__dict__["__mro__"].__get__):
    """Wrap the function under test so that what it returns to the tests is built only from
    types implemented in C (builtins, numpy...). A class written in Python could define
    `__eq__` to always answer True and pass every `assert candidate(x) == y`. The builtins it
    uses are bound when this module loads, before model code could replace them."""
    plain = (int, float, complex, str, bytes, bool, type(None))
    py_defined = {}

    def c_type(t):
        if t not in py_defined:
            # A metaclass could lie about __mro__, so only plain `type` classes qualify, and the
            # MRO is read through type's own descriptor.
            py_defined[t] = type(t) is not type or any(
                isinstance(v, py_kinds) for c in mro_of(t) for v in vars(c).values())
        return not py_defined[t]

    def ok(x, depth=0):
        t = type(x)
        if t in plain:
            return True
        if depth > 50 or not c_type(t):
            return False
        if t in (list, tuple, set, frozenset):
            return all(ok(y, depth + 1) for y in x)
        if t is dict:
            return all(ok(k, depth + 1) and ok(v, depth + 1) for k, v in x.items())
        return True

    def guarded(*args, **kwargs):
        out = candidate(*args, **kwargs)
        if not ok(out):
            raise _NotCTyped(f"returned a {type(out).__name__} built from classes defined in Python code; "
                             "results must be plain values")
        return out

    return guarded


def main(job_path):
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    os.unlink(job_path)  # the nonce lives only in this frame from here on
    nonce = job.get("nonce", "")
    sys.path.extend(job.get("sys_path") or [])
    _write, _dumps, _exit, _monotonic = os.write, json.dumps, os._exit, __import__("time").monotonic
    result_fd = os.open("result.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def emit(**event):
        try:
            _write(result_fd, (_dumps(event, default=repr) + "\n").encode())
        except OSError:
            pass

    drop = job.get("drop_to")
    if drop is not None and os.getuid() == 0:
        # Root would bypass RLIMIT_NPROC and file permissions; a dedicated uid does not.
        os.setgroups([])
        os.setgid(drop)
        os.setuid(drop)
    _limits(job.get("limits", {}))
    if job.get("block_network"):
        _block_network()
    if job.get("fork_guard"):
        # Without a pid namespace our parent would be the harness itself; an extra process in
        # between means os.kill(os.getppid(), 9) only ends this sandbox.
        pid = os.fork()
        if pid:
            _, status = os.waitpid(pid, 0)
            _exit(os.waitstatus_to_exitcode(status) & 0xFF)
    emit(event="started", pid=os.getpid())
    mode = job["mode"]
    code = job["code"]
    per_test = float(job.get("per_test_timeout_s") or 0)

    def on_alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)

    def arm():
        if per_test > 0:
            signal.setitimer(signal.ITIMER_REAL, per_test)

    def disarm():
        signal.setitimer(signal.ITIMER_REAL, 0)

    # Builtins bound now: model code may replace them later, and a wrong category is misleading.
    def classify(e, isinstance=isinstance, getattr=getattr, MemoryError=MemoryError, OSError=OSError):
        if isinstance(e, _Timeout):
            return "timeout"
        if isinstance(e, MemoryError):
            return "memory"
        if isinstance(e, AssertionError):
            return "failed"
        if isinstance(e, OSError) and getattr(e, "errno", None) == 27:  # EFBIG: RLIMIT_FSIZE
            return "output limit"
        return "runtime error"

    def describe(e, str=str, type=type):
        try:
            msg = str(e)
        except BaseException:  # noqa: B036 - a model-defined exception whose __str__ fails
            msg = "?"
        return (type(e).__name__ + (": " + msg[:500] if msg else ""))

    def where(e):
        """Last line reached in the tests and in the solution, to name the failing test."""
        out = {}
        tb = e.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_code.co_filename
            if name in ("<tests>", "<solution>"):
                out[name.strip("<>")] = tb.tb_lineno
            tb = tb.tb_next
        return out

    try:
        compiled = compile(code, "<solution>", "exec")
        # A trusted preamble (LiveCodeBench's imports) is compiled apart so that line numbers
        # in errors are the solution's own.
        preamble = compile(job.get("preamble") or "", "<preamble>", "exec")
    except (SyntaxError, ValueError, MemoryError) as e:
        emit(event="final", status="syntax error", error=describe(e))
        return

    safe_builtins = dict(builtins.__dict__)  # snapshot before any model code runs
    if mode == "script":
        test_code = job.get("test", "")
        entry = job.get("entry_point")
        ns = {"__name__": "__sandbox__", "__builtins__": builtins}
        phase = "program"
        try:
            arm()
            exec(compiled, ns)
            phase = "tests"
            test_ns = dict(ns)
            test_ns["__builtins__"] = safe_builtins
            exec(compile(test_code, "<tests>", "exec"), test_ns)
            check = test_ns.get("check")
            if entry is not None:
                candidate = ns.get(entry)
                if candidate is None:
                    disarm()
                    emit(event="final", status="failed", error=f"the code defines no function {entry!r}")
                    return
                check(_c_typed_results(candidate) if job.get("c_typed_results") else candidate)
            disarm()
        except BaseException as e:  # noqa: B036 - SystemExit before/within the tests is a failure too
            disarm()
            emit(event="final", status=classify(e), error=describe(e), phase=phase, where=where(e))
            return
        emit(event="final", status="passed", nonce=nonce)
        return

    inputs = job.get("inputs", [])
    if mode == "call":
        ns = {"__name__": "__sandbox__", "__builtins__": builtins}
        try:
            arm()
            exec(preamble, ns)
            exec(compiled, ns)
            disarm()
        except BaseException as e:  # noqa: B036
            disarm()
            emit(event="final", status=classify(e), error=describe(e), phase="program")
            return
        cls = ns.get("Solution")
        if cls is None:
            emit(event="final", status="failed", error="the code defines no class Solution")
            return
        func = job["func_name"]
        for i, raw in enumerate(inputs):
            try:
                args = [json.loads(line) for line in raw.split("\n") if line.strip()]
                t0 = _monotonic()
                arm()
                out = getattr(cls(), func)(*args)
                disarm()
                emit(event="test", i=i, ok=True, out=_dumps(out), s=round(_monotonic() - t0, 4))
            except BaseException as e:  # noqa: B036
                disarm()
                emit(event="test", i=i, ok=False, status=classify(e), error=describe(e))
                emit(event="final", status=classify(e), error=describe(e), test=i)
                return
        emit(event="final", status="done")
        return

    # stdio
    import threading

    for i in range(len(inputs)):
        try:
            # A program's open(0) closes fd 0 when collected, so the next os.open may *be* fd 0 or 1.
            fd_in = os.open(f"in/{i}", os.O_RDONLY | os.O_NOFOLLOW)
            if fd_in != 0:
                os.dup2(fd_in, 0)
                os.close(fd_in)
            fd_out = os.open(f"out/{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            if fd_out != 1:
                os.dup2(fd_out, 1)
                os.close(fd_out)
            sys.stdin = open(0, encoding="utf-8", closefd=False)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
            t0 = _monotonic()
            arm()
            try:
                g = {"__name__": "__main__", "__builtins__": builtins}
                exec(preamble, g)
                exec(compiled, g)
            except SystemExit as e:  # exit() at the end of a stdin program is normal
                if e.code not in (None, 0):
                    raise
            for t in threading.enumerate():  # programs that run main() in a big-stack thread
                if t is not threading.current_thread() and not t.daemon:
                    t.join()
            disarm()
            sys.stdout.flush()
            emit(event="test", i=i, ok=True, s=round(_monotonic() - t0, 4))
        except BaseException as e:  # noqa: B036
            disarm()
            try:
                sys.stdout.flush()
            except BaseException:  # noqa: B036
                pass
            emit(event="test", i=i, ok=False, status=classify(e), error=describe(e))
            emit(event="final", status=classify(e), error=describe(e), test=i)
            return
    emit(event="final", status="done")


def zygote(uid):
    """A warm, already isolated interpreter that forks one child per program (bwrap mode).

    Starting Python inside a new bwrap costs ~50 ms; a fork costs ~2 ms. Each child still gets
    a fresh process group (setsid), its own temp dir as cwd, fd 0 on /dev/null and fds 1/2 on
    capped files, its own rlimits and uid `uid`; nothing else is inherited from earlier programs
    because they ran in other children. Protocol on stdin/stdout, one JSON object per line:
    {"dir": job dir, "wall_s": limit} -> {"rc": exit code, "timed_out": bool}. After every
    program every process of `uid` in this pid namespace is SIGKILLed (daemons, fork bombs),
    so the next program starts alone. The program cannot signal this process (other uid).
    """
    import select
    import time

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def sweep():
        for _ in range(50):
            found = False
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    if os.stat(f"/proc/{d}").st_uid == uid:
                        found = True
                        os.kill(int(d), signal.SIGKILL)
                except OSError:
                    pass
            if not found:
                return
            time.sleep(0.002)

    while True:
        line = stdin.readline()
        if not line:
            return
        req = json.loads(line)
        stdout.flush()
        pid = os.fork()
        if pid == 0:  # the program's process
            code = 70
            try:
                os.setsid()
                os.chdir(req["dir"])
                os.environ["HOME"] = os.environ["TMPDIR"] = req["dir"]  # the program's own dir
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(os.open(".stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
                os.dup2(os.open(".stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
                os.closerange(3, 1 << 16)
                main(os.path.join(req["dir"], "job.json"))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:  # noqa: B036
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                for f in (sys.stdout, sys.stderr):
                    try:
                        f.flush()
                    except BaseException:  # noqa: B036
                        pass
                os._exit(code)
        t0 = time.monotonic()
        deadline = t0 + float(req["wall_s"])
        timed_out = False
        fd = os.pidfd_open(pid)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            r, _, _ = select.select([fd], [], [], left)
            if r:
                break
        if timed_out:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        sweep()
        try:
            stdout.write((json.dumps({"rc": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
                                      "wall_s": time.monotonic() - t0}) + "\n").encode())
            stdout.flush()
        except OSError:  # the harness is gone
            return


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote(int(sys.argv[2]))
    else:
        main(sys.argv[1])
