"""Backend registry. `auto` picks vLLM when importable, else transformers; `openai:` models
always use the openai backend."""

from __future__ import annotations

import importlib.util
from typing import Any

from harness.errors import UsageError
from harness.registry import Registry

BACKENDS = Registry(
    "backend",
    {
        "vllm": "harness.backends.vllm_backend:VLLMBackend",
        "hf": "harness.backends.hf_backend:HFBackend",
        "openai": "harness.backends.openai_backend:OpenAIBackend",
    },
)


def pick_backend(name: str, model) -> str:
    if model.kind == "openai":
        if name not in ("auto", "openai"):
            raise UsageError(f"model {model.name!r} is served over HTTP; use --backend openai (or auto), not {name!r}")
        return "openai"
    if name == "auto":
        return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    if name == "openai":
        raise UsageError("--backend openai needs --model openai:<model>@<base_url>")
    BACKENDS.check(name)
    return name


def make_backend(name: str, model, options: dict[str, Any] | None = None):
    """Build the backend for a resolved model. Heavy imports happen here, not at import time."""
    chosen = pick_backend(name, model)
    cls = BACKENDS.resolve(chosen)
    return cls(model, **(options or {}))
