"""Explicit, lazily resolved registries (DESIGN.md §8.3).

A registry maps a name to "module:attribute". Nothing is imported until a name is
resolved, so listing benchmarks never imports torch or vLLM.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.errors import did_you_mean


class Registry:
    """`prefixes` map a name prefix to a factory "module:function" called with the full name
    (e.g. "lm-eval:" -> one benchmark class per lm-eval task, which a fixed table cannot list)."""

    def __init__(self, kind: str, entries: dict[str, str], prefixes: dict[str, str] | None = None):
        self.kind = kind
        self._entries = dict(entries)
        self._prefixes = dict(prefixes or {})

    def names(self) -> list[str]:
        return sorted(self._entries)

    def _prefix(self, name: str) -> str | None:
        return next((p for p in self._prefixes if name.startswith(p) and len(name) > len(p)), None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or self._prefix(name) is not None

    def check(self, name: str) -> None:
        if name not in self:
            raise did_you_mean(self.kind, name, [*self._entries, *(p + "<name>" for p in self._prefixes)])

    def resolve(self, name: str) -> Any:
        self.check(name)
        prefix = self._prefix(name) if name not in self._entries else None
        module_name, _, attr = (self._prefixes[prefix] if prefix else self._entries[name]).partition(":")
        found = getattr(importlib.import_module(module_name), attr)
        return found(name) if prefix else found
