"""What the console shows: the harness's own lines by default, everything with -v.

Why fd-level capture: vLLM, torch and Triton write from C code, from their own logging
handlers bound to sys.stdout, and from engine worker processes that inherit file
descriptors 1 and 2. Only redirecting the descriptors themselves catches all of it, so
during a run they point at a log file in the run's results folder and the CLI's own rich
consoles write to duplicates of the original terminal descriptors.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import rich

from harness.cli._common import console, err_console

OWN_LOGGERS = ("harness", "trainers", "leaderboards")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("harness.cli")


class OwnRecords(logging.Filter):
    """Quiet mode: the harness's own records, and errors from anyone."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] in OWN_LOGGERS or record.levelno >= logging.ERROR


class OncePerMessage(logging.Filter):
    """A warning that matters (truncation, judge not comparable, sandbox mode) is shown once,
    however many benchmarks or engines repeat it; the log file keeps every copy."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def configure_logging(verbosity: int) -> None:
    """0: the harness's INFO lines; library and engine logs hidden (they go to the run log).
    1 (-v): library and engine INFO too. 2 (-vv): the harness's DEBUG lines as well."""
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
    handler.harness_console = True  # type: ignore[attr-defined]  # ours to replace on the next call
    handler.addFilter(OncePerMessage())
    if verbosity == 0:
        handler.addFilter(OwnRecords())
        logging.captureWarnings(True)  # Python warnings from libraries: the run log, not the console
    root = logging.getLogger()
    # replace only our own handler: others' (pytest's caplog, an embedding app's) stay
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "harness_console", False)] + [handler]
    root.setLevel(logging.INFO if verbosity else logging.WARNING)
    own = logging.DEBUG if verbosity >= 2 else logging.INFO
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)
    rich.reconfigure(stderr=True)  # progress bars (rich's global console) share the log's stream


@contextmanager
def run_log(path: Path, verbosity: int) -> Iterator[Path | None]:
    """Send file descriptors 1 and 2, and every log record at INFO or above, to `path` while
    the block runs (not with -v, nor when stdio are not the process's own, as under pytest's
    capsys). Yields the log path, or None when nothing is captured."""
    if verbosity > 0 or sys.stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    term_out, term_err = os.fdopen(os.dup(1), "w", buffering=1), os.fdopen(os.dup(2), "w", buffering=1)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    console.file, err_console.file = term_out, term_err
    rich.reconfigure(file=term_err)
    to_file = logging.StreamHandler(sys.stderr)  # sys.stderr now writes to the log file
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)  # engine INFO records reach the file; the console filter drops them
    root.addHandler(to_file)
    # vLLM's own handler writes to sys.stdout (fd 1, the file); keep its INFO lines
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO")
    try:
        yield path
    finally:
        root.removeHandler(to_file)
        root.setLevel(old_level)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(term_out.fileno(), 1)
        os.dup2(term_err.fileno(), 2)
        console.file, err_console.file = None, None  # back to sys.stdout / sys.stderr
        rich.reconfigure(stderr=True)
        term_out.close()
        term_err.close()


# ---- offline ------------------------------------------------------------------------------
HUB_TIMEOUT_S = 1.5


def detect_offline(timeout: float = HUB_TIMEOUT_S) -> str | None:
    """Why the hub cannot be used, or None when it answers. Checked once per command: one TCP
    connect to the hub endpoint (DNS included) bounded by `timeout`, no retries. When offline,
    HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 are set for the rest of the process, so data
    loaders skip the hub at once (and say so) instead of retrying it."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlsplit(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    # a thread, because create_connection's timeout does not bound the DNS lookup
    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    if outcome and outcome[0] is None:
        return None
    why = (f"{type(outcome[0]).__name__}: {outcome[0]}" if outcome else f"no answer within {timeout:g}s")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    return f"hub {host}:{port} not reachable ({why})"
