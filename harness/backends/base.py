"""The Backend contract (DESIGN.md §3): batched, order-preserving generation.

`generate` may call `on_result(index, completion)` as each request finishes, before it
returns; the runner stores each completion there, which is what makes a SIGKILL lose
nothing that had finished.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from harness.errors import UsageError
from harness.types import Completion, Message, Request

OnResult = Callable[[int, Completion], None]


class Backend(Protocol):
    name: str

    def generate(self, requests: list[Request], on_result: OnResult | None = None) -> list[Completion]: ...

    def close(self) -> None: ...


def render_chat(tokenizer, messages: list[Message] | tuple[Message, ...], template: str | None,
                model_name: str) -> list[int]:
    """Token ids of the chat prompt, rendered by the model's own template (or --chat-template).

    Why tokens, not text: rendering once here and sending token ids means the vLLM and
    transformers backends see exactly the same prompt, with no double BOS."""
    tpl = template if template is not None else getattr(tokenizer, "chat_template", None)
    if not tpl:
        raise UsageError(f"model {model_name!r} has no chat template; pass --chat-template FILE "
                         "(a Jinja template as in tokenizer_config.json)")
    ids = tokenizer.apply_chat_template(list(messages), chat_template=tpl, add_generation_prompt=True,
                                        tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)
