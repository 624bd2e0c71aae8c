"""The hostile programs of tests/hostile/ (issue 18) in every isolation mode the harness runs in.

Each program answers `add(x, y)` wrongly, so a `passed` verdict can only come from an attack;
programs aimed at the host return what they found, and the host side is checked too (canary
files unchanged, listeners never reached, nothing planted). Both modes run here: `bwrap` when
installed (CI installs it), `unshare` always (what a fresh machine without bubblewrap gets)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.sandbox import Job, Limits, core, plain, run_many
from harness.scoring.code import FunctionTest, check_functions
from tests.conftest import REPO

HOSTILE = Path(__file__).parent / "hostile"
PROGRAMS = sorted(p.stem for p in HOSTILE.glob("*.py"))
ADD = FunctionTest(entry_point="add", reference="def add(x, y):\n    return x + y\n",
                   test="import math\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n"
                        "    assert math.fabs(candidate(0.5, 0.25) - 0.75) < 1e-9\n    assert candidate(-1, 1) == 0\n")
GOOD = "def add(x, y):\n    return x + y\n"
_usable: dict[str, tuple[bool, str]] = {}


@pytest.fixture(params=["bwrap", "unshare", "unshare-per-program"])
def mode(request, monkeypatch):
    """bwrap and unshare with warm workers (root), and unshare with one sandbox per program
    (the path a non-root user takes)."""
    m = request.param
    if m == "unshare-per-program":
        monkeypatch.setattr(core, "ZYGOTES", False)
        m = "unshare"
    if m not in _usable:
        _usable[m] = core._probe(m)
    ok, why = _usable[m]
    if not ok:
        if m == "bwrap" and os.environ.get("CI"):
            pytest.fail(f"bwrap must work in CI: {why}")
        pytest.skip(f"{m} unavailable here: {why}")
    monkeypatch.setattr(core, "_mode", m)
    return m


class _Listener:
    """A TCP listener on the host's 127.0.0.1 and a unix socket under /run that record any
    connection a sandboxed program makes."""

    def __init__(self):
        self.hits: list[str] = []
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.port = self.tcp.getsockname()[1]
        run_dir = "/run" if os.access("/run", os.W_OK) else str(REPO / ".pytest-run")
        os.makedirs(run_dir, exist_ok=True)
        self.unix_path = os.path.join(run_dir, f"fh-test-{secrets.token_hex(4)}.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(8)
        self.done = threading.Event()
        for s in (self.tcp, self.unix):
            s.settimeout(0.1)
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s):
        while not self.done.is_set():
            try:
                conn, _ = s.accept()
                self.hits.append(repr(conn.recv(100)))
                conn.close()
            except OSError:
                continue

    def close(self):
        self.done.set()
        self.tcp.close()
        self.unix.close()
        os.unlink(self.unix_path)


@pytest.fixture(scope="module")
def canary():
    token = secrets.token_hex(8)
    secret = f"fh-canary-secret-{token}"
    home_file = Path(os.path.expanduser("~")) / f".fh_canary_{token}"
    home_file.write_text(secret)
    cwd_file = Path(os.getcwd()) / f".fh_canary_store_{token}"
    cwd_file.write_text("store-v1 " + secret)
    old = os.environ.get("FH_TEST_API_KEY")
    os.environ["FH_TEST_API_KEY"] = secret
    listener = _Listener()
    # /proc/<pid>/environ shows a process's initial environment: a stand-in harness process
    # started with the key, as `harness` would be.
    keyholder = subprocess.Popen(["sleep", "3600"], env={**os.environ, "FH_TEST_API_KEY": secret})
    c = {"secret": secret, "home_file": str(home_file), "cwd_file": str(cwd_file), "cwd_dir": os.getcwd(),
         "site_dirs": core._site_packages(), "port": listener.port, "unix_socket": listener.unix_path,
         "marker": f"m{token}", "shm_key": int(token[:6], 16), "listener": listener}
    yield c
    keyholder.kill()
    keyholder.wait()
    listener.close()
    home_file.unlink()
    cwd_file.unlink()
    if old is None:
        os.environ.pop("FH_TEST_API_KEY", None)
    else:
        os.environ["FH_TEST_API_KEY"] = old


def program(name: str, canary: dict) -> str:
    values = {k: v for k, v in canary.items() if k != "listener"}
    return f"CANARY = {values!r}\n" + (HOSTILE / f"{name}.py").read_text()


def evidence(name: str, canary: dict, **limits):
    """Run a hostile program's module code and one call of add(2, 3); what it returned."""
    job = Job(mode="calls", code=program(name, canary), entry_point="add", inputs=[plain.dumps([[2, 3], {}])],
              limits=Limits(**{"wall_s": 30.0, "per_test_s": 25.0, **limits}))
    r = core.run(job)
    ok = [e for e in r.tests if e.get("ok")]
    found = plain.loads(ok[0]["out"], max_chars=1 << 20) if ok else None
    everything = f"{found!r} {r.stdout_tail} {r.stderr_tail} {r.error}"
    assert canary["secret"] not in everything, (name, everything[:2000])
    return found, r


# ---- every program: never a pass, in both verdict paths ------------------------------------
@pytest.mark.parametrize("with_reference", [True, False], ids=["recorded", "replayed"])
def test_no_hostile_program_passes(mode, canary, with_reference):
    test = ADD if with_reference else ADD.model_copy(update={"reference": None})
    cases = [(name, program(name, canary), test) for name in PROGRAMS] + [("good", GOOD, test)]
    t0 = time.monotonic()
    res = check_functions(cases, timeout_s=3.0)
    passed = sorted(k for k, v in res.items() if v.passed)
    assert passed == ["good"], {k: (v.outcome, v.reason) for k, v in res.items()}
    assert all(v.decided_by == "harness" for v in res.values())
    assert time.monotonic() - t0 < 600


# ---- forged passes -------------------------------------------------------------------------
def test_answer_key_and_test_source_are_out_of_reach(mode, canary):
    found, _ = evidence("forge_read_answers", canary)
    assert found == {"found": {}}


def test_always_equal_results_are_not_values(mode, canary):
    _, r = evidence("forge_always_equal", canary)
    # only the type's name crosses ({"$o": ...}); the lying __eq__ stays in the program's process
    assert r.tests and r.tests[0]["ok"] and set(plain.loads_bounded(r.tests[0]["out"])) == {"$o"}
    back = plain.loads(r.tests[0]["out"])
    assert isinstance(back, plain.Opaque) and back != 5 and not (back == back.type_name)


# ---- host secrets, persistence -------------------------------------------------------------
def test_harness_environment_through_proc_is_unreachable(mode, canary):
    found, _ = evidence("host_proc_environ", canary)
    assert found == {"found": []}


def test_home_secret_is_unreachable(mode, canary):
    found, _ = evidence("host_home_secret", canary)
    assert found == {"found": []}


def test_store_and_cwd_cannot_be_read_or_changed(mode, canary):
    before = Path(canary["cwd_file"]).read_text()
    found, _ = evidence("host_store_cwd", canary)
    assert found["read"] is None and found["wrote"] == []
    assert Path(canary["cwd_file"]).read_text() == before
    assert not (Path(canary["cwd_dir"]) / "fh_planted.py").exists()
    assert not (Path(canary["cwd_dir"]) / "fh_planted.pth").exists()


def test_site_packages_cannot_be_planted(mode, canary):
    found, _ = evidence("host_site_pth", canary)
    assert found == {"wrote": []}
    for d in canary["site_dirs"]:
        assert not (Path(d) / "zz_fh_pwned.pth").exists() and not (Path(d) / "fh_pwned_module.py").exists()
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('FH_PWNED'))"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "None"


# ---- network -------------------------------------------------------------------------------
def test_host_tcp_listener_and_unix_sockets_are_unreachable(mode, canary):
    tcp, _ = evidence("net_tcp_localhost", canary)
    unix, _ = evidence("net_unix_sockets", canary)
    time.sleep(0.3)
    assert not any(x.startswith("connected") for x in tcp["net"])
    assert unix == {"connected": []}
    assert canary["listener"].hits == []


# ---- leaks between programs ----------------------------------------------------------------
def test_files_do_not_leak_between_programs(mode, canary):
    evidence("leak_files_write", canary)
    found, _ = evidence("leak_files_read", canary)
    assert found == {"found": []}
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not Path(d, "fh_leak_" + canary["marker"]).exists()


def test_sysv_shared_memory_does_not_leak_between_programs(mode, canary):
    wrote, _ = evidence("leak_sysv_shm_write", canary)
    read, _ = evidence("leak_sysv_shm_read", canary)
    assert read["read"] != canary["marker"], (wrote, read)
    # and nothing of it is left on the host
    ipcs = Path("/proc/sysvipc/shm").read_text()
    assert not any(line.split()[:1] == [str(canary["shm_key"])] for line in ipcs.splitlines()[1:])


# ---- limits --------------------------------------------------------------------------------
def test_thread_bomb_stops_at_the_process_limit(mode, canary):
    found, r = evidence("limit_thread_bomb", canary, processes=32)
    if found is not None:
        assert found["threads"] + found["forks"] <= 64, found
    assert core.run(Job(mode="calls", code=GOOD, entry_point="add", inputs=[plain.dumps([[2, 3], {}])])).tests


def test_dev_shm_cannot_park_memory(mode, canary):
    found, _ = evidence("limit_dev_shm_memory", canary)
    assert not any(isinstance(v, int) and v > 1 for v in found["parked_mib"].values()), found


def test_killing_the_sandbox_is_that_programs_outcome(mode, canary):
    _, r = evidence("limit_kill_sandbox", canary)
    res = list(run_many([Job(mode="calls", code=GOOD, entry_point="add", inputs=[plain.dumps([[2, 3], {}])])]))
    assert res[0].tests and res[0].tests[0]["ok"]


# ---- the scorer survives -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["scorer_fifo", "scorer_deep_tree", "scorer_deep_json"])
def test_scorer_survives_what_a_program_leaves(mode, canary, name):
    jobs = [Job(mode="calls", code=program(name, canary), entry_point="add", tag=name,
                inputs=[plain.dumps([[2, 3], {}])], limits=Limits(wall_s=30.0, per_test_s=25.0)),
            Job(mode="calls", code=GOOD, entry_point="add", tag="good", inputs=[plain.dumps([[2, 3], {}])])]
    t0 = time.monotonic()
    res = {r.tag: r for r in run_many(jobs, workers=2)}
    assert time.monotonic() - t0 < 120
    assert res["good"].tests[0]["ok"] and plain.loads(res["good"].tests[0]["out"]) == 5
    assert res[name].status != "passed"
    assert not [p for p in Path(core.tempfile.gettempdir()).glob("fh-sbx-*") if (p / "d").exists()]


def test_output_flood_keeps_the_harness_small(mode):
    """A fresh process scores the flood program and reports its own peak memory."""
    code = (
        "import sys\n"
        "from harness.sandbox import core\n"
        f"core._mode = {mode!r}\n"
        f"core.ZYGOTES = {core.ZYGOTES!r}\n"
        "from harness.scoring.code import check_functions\n"
        "from tests.test_sandbox_hostile import ADD, GOOD, HOSTILE\n"
        "src = 'CANARY = {}\\n' + (HOSTILE / 'scorer_output_flood.py').read_text()\n"
        "res = check_functions([('flood', src, ADD), ('good', GOOD, ADD)])\n"
        # VmHWM is this process's own peak: ru_maxrss also counts the (large) pytest parent's
        # RSS inherited across fork+exec, which failed this test only late in a full run
        "hwm = next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM'))\n"
        "print(res['flood'].outcome, res['good'].outcome, hwm >> 10)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    flood, good, peak_mib = out.stdout.split()[-3:]
    assert flood != "passed" and good == "passed", out.stderr[-2000:]
    assert int(peak_mib) < 400, peak_mib


def test_hostile_programs_exist_for_every_class():
    prefixes = {n.split("_")[0] for n in PROGRAMS}
    assert prefixes == {"forge", "host", "net", "leak", "limit", "scorer"}
    assert shutil.which("unshare"), "util-linux unshare is the fallback the tests above exercise"
