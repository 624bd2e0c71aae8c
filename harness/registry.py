"""Explicit, lazily resolved registries (DESIGN.md §8.3).

A registry maps a name to "module:attribute". Nothing is imported until a name is
resolved, so listing benchmarks never imports torch or vLLM.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.errors import did_you_mean


class Registry:
    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def check(self, name: str) -> None:
        if name not in self._entries:
            raise did_you_mean(self.kind, name, self._entries)

    def resolve(self, name: str) -> Any:
        self.check(name)
        module_name, _, attr = self._entries[name].partition(":")
        return getattr(importlib.import_module(module_name), attr)
