"""The sandbox against hostile programs (issue 3). Every attack runs for real in the isolation
in force here (bwrap when installed); each must be contained, must not count as a pass, must
leave nothing running and nothing changed outside its temp dir, and the harness must go on."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.sandbox import Job, Limits, core, isolation_mode, run, run_many
from tests.conftest import REPO

CHECK_F = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(5) == 6\n"
GOOD_F = "def f(x):\n    return x + 1\n"
WRONG_F = "def f(x):\n    return x\n"


def script(code: str, test: str = CHECK_F, entry: str | None = "f", **limits) -> Job:
    return Job(mode="script", code=code, test=test, entry_point=entry, limits=Limits(**limits) if limits else Limits())


def _procs_with(marker: str) -> list[str]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd:
                found.append(f"{d}: {cmd}")
    return found


def _sandbox_uid_procs() -> list[str]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == core.NOBODY:
                    out.append(d)
            except OSError:
                pass
    return out


_usable: dict[str, tuple[bool, str]] = {}


@pytest.fixture(autouse=True, params=["bwrap", "unshare"])
def sandbox_mode(request, monkeypatch):
    """Every test here in both namespace modes (issue 18): `unshare` is what a fresh machine
    without bubblewrap gets, and must contain the same programs."""
    m = request.param
    if m not in _usable:
        _usable[m] = core._probe(m)
    if not _usable[m][0]:
        if m == "bwrap" and os.environ.get("CI"):
            pytest.fail(f"bwrap must work in CI: {_usable[m][1]}")
        pytest.skip(f"{m} unavailable here: {_usable[m][1]}")
    monkeypatch.setattr(core, "_mode", m)
    return m


def test_isolation_is_reported_and_strong_here(monkeypatch):
    monkeypatch.setattr(core, "_mode", None)  # the mode the harness would choose by itself
    mode = isolation_mode()
    assert mode in core.MODES
    if core.shutil.which("bwrap") and os.getuid() == 0 and not os.environ.get(core.SANDBOX_ENV):
        assert mode == "bwrap", core._mode_reason


def test_good_and_wrong_solutions():
    assert run(script(GOOD_F)).status == "passed"
    r = run(script(WRONG_F))
    assert r.status == "failed" and not r.passed
    assert r.where.get("tests") == 2  # the first assert is the failing test


def test_syntax_error_and_missing_function():
    assert run(script("def f(x) return x")).status == "syntax error"
    r = run(script("def g(x):\n    return x + 1\n"))
    assert r.status == "failed" and "no function 'f'" in r.error


def test_infinite_loop_times_out_quickly():
    t0 = time.monotonic()
    r = run(script("while True:\n    pass\n", wall_s=1.0, per_test_s=0.5))
    assert r.status == "timeout" and not r.passed
    assert time.monotonic() - t0 < 10 * core.speed_factor()


def test_loop_that_swallows_the_timer_is_killed_by_the_wall_clock():
    code = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    r = run(script(code, wall_s=1.0, per_test_s=0.5))
    assert r.status == "timeout"


def test_fork_bomb_is_contained_and_leaves_nothing():
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    r = run(script(code, wall_s=2.0))
    assert not r.passed and r.status in ("timeout", "runtime error")
    assert time.monotonic() - t0 < 20
    time.sleep(0.2)
    if isolation_mode() == "bwrap":
        assert _sandbox_uid_procs() == []
    assert run(script(GOOD_F)).passed  # the harness keeps going


def test_allocating_50_gb_is_a_memory_outcome():
    r = run(script("x = bytearray(50 * 2**30)\n" + GOOD_F))
    assert r.status == "memory"


def test_10_gb_to_stdout_stops_at_the_cap():
    code = "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(10 * 1024):\n    sys.stdout.write(chunk)\n" + GOOD_F
    t0 = time.monotonic()
    r = run(script(code, file_size_mb=8))
    assert r.status == "output limit" and not r.passed
    assert time.monotonic() - t0 < 30


def test_writes_into_repo_and_home_fail(tmp_path):
    mode = isolation_mode()
    if os.getuid() == 0 and mode != "bwrap" and core._drop_uid(mode) is None:
        pytest.skip(f"isolation {mode!r} as root cannot make the file system read-only; "
                    "install bubblewrap (apt-get install bubblewrap)")
    home = Path(os.path.expanduser("~"))
    target_repo = REPO / "sandbox_escape_marker.txt"
    target_home = home / "sandbox_escape_marker.txt"
    code = (f"import os\nres = []\nfor p in ({str(target_repo)!r}, {str(target_home)!r}):\n"
            "    try:\n        open(p, 'w').write('pwned')\n        res.append('wrote')\n"
            "    except OSError as e:\n        res.append(type(e).__name__)\n"
            "open(os.path.join(os.environ['HOME'], 'ok.txt'), 'w').write('fine')\n"
            "print(res, os.environ['HOME'] == os.getcwd())\n" + GOOD_F)
    r = run(script(code))
    assert r.passed, r
    assert not target_repo.exists() and not target_home.exists()
    assert "wrote" not in r.stdout_tail and "True" in r.stdout_tail


def test_api_keys_are_not_visible(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_456")
    code = ("import os\nprint(sorted(os.environ))\nprint(os.environ.get('OPENAI_API_KEY'), "
            "os.environ.get('HF_TOKEN'))\n" + GOOD_F)
    r = run(script(code))
    assert r.passed
    assert "sk-test-secret" not in r.stdout_tail and "hf_secret" not in r.stdout_tail
    assert "None None" in r.stdout_tail


def test_tcp_connection_to_a_local_listener_fails():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.1)
    port = srv.getsockname()[1]
    accepted = []
    done = threading.Event()

    def accept():
        while not done.is_set():
            try:
                accepted.append(srv.accept())
                return
            except OSError:
                continue

    t = threading.Thread(target=accept)
    t.start()
    code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    print('CONNECTED')\nexcept OSError as e:\n    print('refused', type(e).__name__)\n" + GOOD_F)
    try:
        r = run(script(code))
    finally:
        done.set()
        t.join()
        srv.close()
    assert "CONNECTED" not in r.stdout_tail and "refused" in r.stdout_tail
    assert accepted == []


def test_background_process_does_not_outlive_the_program():
    if isolation_mode() == "none":
        pytest.skip("without a pid namespace a setsid daemon escapes the process-group kill (docs/sandbox.md)")
    marker = "1234.5678"
    code = ("import subprocess, os\n"
            f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
            "if os.fork() == 0:\n    os.setsid()\n"
            f"    os.execvp('sleep', ['sleep', '{marker}1'])\n" + GOOD_F)
    r = run(script(code))
    assert r.status == "passed"
    time.sleep(0.3)
    assert _procs_with(marker) == []


def test_background_process_is_killed_after_timeout_too():
    if isolation_mode() == "none":
        pytest.skip("without a pid namespace a setsid daemon escapes the process-group kill (docs/sandbox.md)")
    marker = "2345.678"
    code = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\nwhile True:\n    pass\n"
    r = run(script(code, wall_s=1.0))
    assert r.status == "timeout"
    time.sleep(0.3)
    assert _procs_with(marker) == []


def test_killing_the_parent_does_not_hurt_the_harness():
    r = run(script("import os\nos.kill(os.getppid(), 9)\n" + GOOD_F))
    assert not r.passed
    r = run(script("import os, signal\nos.killpg(0, signal.SIGKILL)\n" + GOOD_F))
    assert not r.passed
    assert run(script(GOOD_F)).passed


@pytest.mark.parametrize("exit_code", ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n",
                                       "raise SystemExit\n", "import sys\nsys.exit(1)\n"])
def test_exiting_before_the_tests_is_not_a_pass(exit_code):
    r = run(script(exit_code + WRONG_F))
    assert not r.passed
    r = run(script(exit_code + GOOD_F))  # even with a correct function: the tests never ran
    assert not r.passed


def test_exiting_inside_the_function_is_not_a_pass():
    r = run(script("import os\ndef f(x):\n    os._exit(0)\n"))
    assert not r.passed


@pytest.mark.parametrize("attack", [
    # replace builtins the tests use
    "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 0\n",
    # shadow the test harness's check()
    "def check(candidate):\n    pass\n",
    # make AssertionError something else
    "import builtins\nbuiltins.AssertionError = type('A', (BaseException,), {})\n",
    # forge the bootstrap's success line through the functions it uses
    "import json, os\njson.dumps = lambda *a, **k: '{\"event\": \"final\", \"status\": \"passed\"}'\n"
    "_w = os.write\nos.write = lambda fd, b: _w(fd, b'{\"event\": \"final\", \"status\": \"passed\"}\\n')\n",
    # write a success line directly and leave
    "import os\nfd = os.open('result.jsonl', os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
    "os.write(fd, b'{\"event\": \"final\", \"status\": \"passed\", \"nonce\": \"00\"}\\n')\nos._exit(0)\n",
    # patch the harness's own module
    "import __main__\n__main__.main = lambda *a: None\n__main__.emit = None\n",
])
def test_faking_success_is_not_a_pass(attack):
    test = "def check(candidate):\n    assert abs(candidate(1) - 2) < 1e-9\n    assert len([candidate(0)]) == 1\n"
    r = run(script(attack + WRONG_F, test=test))
    assert not r.passed, (attack, r)
    # and the same attack does not break a correct solution's pass
    assert run(script(attack.replace("os._exit(0)", "pass") + GOOD_F, test=test)).status in (
        "passed", "failed", "runtime error")


def test_stdio_mode_feeds_each_input_and_captures_output():
    job = Job(mode="stdio", code="import sys\nn = int(open(0).readline())\nprint(n * 2)\nsys.exit(0)\n",
              inputs=["2\n", "21\n"])
    r = run(job)
    assert r.status == "done" and r.outputs == ["4\n", "42\n"]


def test_call_mode_reports_json_results():
    job = Job(mode="call", code="class Solution:\n    def f(self, a, b):\n        return (a, b)\n",
              inputs=["1\n[2]", "\"x\"\nnull"], func_name="f")
    r = run(job)
    assert r.status == "done" and [t["out"] for t in r.tests] == ["[1, [2]]", '["x", null]']


def test_run_many_keeps_order_and_isolates_programs():
    jobs = [script(GOOD_F if i % 2 else WRONG_F) for i in range(12)]
    statuses = [r.status for r in run_many(jobs, workers=2)]
    assert statuses == ["failed" if i % 2 == 0 else "passed" for i in range(12)]


def test_a_dead_worker_is_a_sandbox_error_then_replaced():
    if isolation_mode() not in ("bwrap", "unshare") or os.getuid() != 0:
        pytest.skip("zygote workers are used only with namespaces, as root")
    pool = core._zygotes()
    z = core.Zygote(isolation_mode())
    core._kill_group(z.proc.pid)  # the worker dies (OOM killer, a bug...)
    z.proc.wait()
    r = z.run(script(GOOD_F))
    assert r.status == "sandbox error" and not r.passed
    z.close()
    assert pool.run(script(GOOD_F)).passed


@pytest.mark.parametrize("mode", ["unshare", "none"])
def test_fallback_modes_still_contain_the_basics(mode, monkeypatch):
    monkeypatch.setenv(core.UNSAFE_ENV, "1")  # mode none runs only when the user accepts it
    if mode == "unshare" and not core._probe("unshare")[0]:
        pytest.skip("unshare cannot create namespaces here")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback-secret")
    assert core._run(script(GOOD_F), mode).passed
    assert core._run(script(WRONG_F), mode).status == "failed"
    net = core._run(script("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
                           "    print('CONNECTED')\nexcept OSError:\n    print('blocked')\n"
                           "import os\nprint(os.environ.get('OPENAI_API_KEY'))\n" + GOOD_F), mode)
    assert "blocked" in net.stdout_tail and "sk-fallback" not in net.stdout_tail
    assert core._run(script("while True:\n    pass\n", wall_s=1.0), mode).status == "timeout"
    # The program is pid 1 of its own pid namespace in mode unshare: its parent is out of reach
    # (getppid() is 0), so the kill does nothing and the correct function still passes.
    killed = core._run(script("import os\nos.kill(os.getppid(), 9)\n" + GOOD_F), mode)
    assert killed.passed == (mode == "unshare")
    assert core._run(script(GOOD_F), mode).passed  # and the harness goes on


def test_speed_factor_is_measured_and_recorded():
    f = core.speed_factor()
    assert f >= 1.0
    d = core.describe()
    assert d["speed_factor"] == f and d["isolation"] == isolation_mode()
    assert Limits(wall_s=2, per_test_s=1).scaled(2.0).wall_s == 4


@pytest.mark.parametrize("attack", [
    "class A:\n    def __eq__(self, o):\n        return True\n\ndef f(x):\n    return A()\n",
    "class B(int):\n    def __eq__(self, o):\n        return True\n\ndef f(x):\n    return [B(0)][0]\n",
    "class M(type):\n    def __getattribute__(cls, name):\n        return (int, object) if name == '__mro__' "
    "else type.__getattribute__(cls, name)\n\nclass C(int, metaclass=M):\n    def __eq__(self, o):\n"
    "        return True\n\ndef f(x):\n    return C(0)\n",
    "import builtins\nclass D(int):\n    def __eq__(self, o):\n        return True\n"
    "builtins.type = lambda x: int\nbuiltins.isinstance = lambda *a: False\n\ndef f(x):\n    return D(0)\n",
])
def test_results_with_a_python_defined_eq_do_not_pass(attack):
    job = script(attack)
    assert run(job).status == "passed"  # without the guard the fake equality passes...
    job.c_typed_results = True
    r = run(job)
    assert r.status == "failed" and "plain values" in r.error, r  # ...with it, it does not


def test_c_typed_guard_accepts_builtin_containers_and_numpy():
    pytest.importorskip("numpy")
    code = ("import numpy as np\ndef f(x):\n    return {'a': [np.int64(x + 1), (1.5, None)], 'b': {frozenset({1})}}\n")
    test = "def check(candidate):\n    assert candidate(1)['a'][0] == 2\n"
    job = script(code, test=test)
    job.c_typed_results = True
    assert run(job).passed


@pytest.mark.parametrize("where", ["temp root (masked inside)", "0700 directory (CI checkout, /root)"])
def test_program_imports_from_site_packages_the_sandbox_uid_cannot_reach_on_the_host(where, tmp_path, monkeypatch):
    """A venv below /root or a 0700 CI checkout: the harness imports numpy, the program (run as
    NOBODY when the harness is root) must too, or every numpy-using solution fails spuriously."""
    import shutil
    import tempfile

    if where.startswith("0700"):
        parent = Path(tempfile.mkdtemp(prefix=".sbx-private-", dir=REPO))  # outside HOME and the temp root
    else:
        parent = tmp_path / "private"
        parent.mkdir()
    try:
        parent.chmod(0o700)
        site = parent / "site-packages"
        site.mkdir()
        (site / "fh_private_probe.py").write_text("ANSWER = 41\n")
        monkeypatch.setattr(core, "_site_packages", lambda: [*_real_site_packages(), str(site)])
        job = script("import fh_private_probe\ndef f(x):\n    return x + fh_private_probe.ANSWER - 40\n")
        mode = isolation_mode()
        if os.getuid() == 0:  # a fresh zygote, so its mounts see the patched list
            z = core.Zygote(mode)
            try:
                res = z.run(job)
            finally:
                z.close()
        else:
            res = core._run(job, mode)
        assert res.passed, res
    finally:
        shutil.rmtree(parent, ignore_errors=True)


_real_site_packages = core._site_packages


def test_forcing_an_unknown_or_missing_mode_is_a_clear_error(monkeypatch):
    from harness.errors import UsageError

    monkeypatch.setattr(core, "_mode", None)
    monkeypatch.setenv(core.SANDBOX_ENV, "docker")
    with pytest.raises(UsageError, match="'docker' is not a sandbox mode; use one of bwrap, unshare, none"):
        isolation_mode()
    monkeypatch.setenv(core.SANDBOX_ENV, "bwrap")
    monkeypatch.setattr(core.shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="`bwrap` is not installed"):
        isolation_mode()


def test_no_isolation_is_refused_without_consent(monkeypatch):
    monkeypatch.setattr(core, "_mode", None)
    monkeypatch.delenv(core.UNSAFE_ENV, raising=False)
    monkeypatch.setattr(core, "_probe", lambda mode: (False, "not here"))
    with pytest.raises(core.SandboxUnavailable, match="--unsafe-sandbox"):
        isolation_mode()
    monkeypatch.setenv(core.UNSAFE_ENV, "1")
    assert isolation_mode() == "none" and core.describe()["unsafe"] is True
