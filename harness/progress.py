"""One progress bar per phase (generating, judging) with items/s and generated tokens/s.

Drawn on rich's global console, which the CLI points at the terminal (also while a run's
file descriptors are captured into its log); only on a terminal. Every phase also logs
one summary line when it ends."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class PhaseProgress:
    """A rich progress bar with items/s and generated tokens/s (only on a terminal)."""

    def __init__(self, enabled: bool, description: str, total: int):
        import rich

        # rich's global console: the CLI points it at the terminal, even while the run's
        # file descriptors are captured into its log file
        self.enabled = enabled and rich.get_console().is_terminal
        self.description, self.total = description, total
        self.tokens, self.t0 = 0, time.perf_counter()

    def __enter__(self):
        if not self.enabled:
            return self._advance_quiet
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False)
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=self.total, rate="")
        return self._advance

    def _advance(self, items: int, tokens: int) -> None:
        self.tokens += tokens
        el = max(time.perf_counter() - self.t0, 1e-9)
        done = self.bar.tasks[0].completed + items
        self.bar.update(self.task, advance=items, rate=f"{done / el:.1f} items/s {self.tokens / el:.0f} tok/s")

    def _advance_quiet(self, items: int, tokens: int) -> None:
        self.tokens += tokens

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        el = time.perf_counter() - self.t0
        log.info("%s: %d requests in %.1fs (%.0f generated tokens/s)", self.description, self.total, el,
                 self.tokens / max(el, 1e-9))
        return False
