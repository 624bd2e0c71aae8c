"""A sandbox for model-written code (DESIGN.md §7); see core.py for what it enforces and docs/sandbox.md."""

from harness.sandbox.core import (
    Job,
    Limits,
    RunResult,
    default_workers,
    describe,
    isolation_mode,
    run,
    run_many,
    speed_factor,
)

__all__ = ["Job", "Limits", "RunResult", "default_workers", "describe", "isolation_mode", "run", "run_many",
           "speed_factor"]
