"""Errors a user can fix. The CLI prints these without a traceback and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """A problem the user can fix (bad name, bad file, missing data, unreachable server)."""

    exit_code = 2


class UsageError(HarnessError):
    """Bad command-line input or configuration."""


class DataNotFoundError(HarnessError):
    """Benchmark data was found neither in the data dir nor on the hub."""


class BackendError(HarnessError):
    """A backend could not be started or reached."""


def did_you_mean(kind: str, name: str, valid: Iterable[str]) -> UsageError:
    """Build an 'unknown X' error that suggests the closest valid names and lists them all."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UsageError(f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid)}.")
