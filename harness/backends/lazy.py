"""A backend built on first use, so a fully cached run never loads a model or opens a
connection. Shared by the runner (the candidate's engine) and the judge pool."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class LazyBackend:
    """Builds the backend on first use, so cached runs never load a model."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self.backend = None
        self._closed = False
        self.close_s = 0.0

    def get(self):
        if self.backend is None:
            self.backend = self._factory()
        return self.backend

    def close(self) -> None:
        """Idempotent; keeps the reference so results can still say what was started."""
        if self.backend is not None and not self._closed:
            self._closed = True
            t0 = time.perf_counter()
            self.backend.close()
            self.close_s = time.perf_counter() - t0  # engine shutdown, reported apart like start-up
