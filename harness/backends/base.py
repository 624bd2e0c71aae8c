"""The Backend contract (DESIGN.md §3): batched, order-preserving generation.

`generate` may call `on_result(index, completion)` as each request finishes, before it
returns; the runner stores each completion there, which is what makes a SIGKILL lose
nothing that had finished.

`score` returns per-token log-probs of given texts under the backend's model (the spec is
harness/textscore.py); it calls `on_result(index, score)` the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from harness.errors import UsageError
from harness.types import Completion, Message, Request

if TYPE_CHECKING:
    from harness.textscore import OnScore, TextScore, TextScoreRequest

OnResult = Callable[[int, Completion], None]


class Backend(Protocol):
    name: str

    def generate(self, requests: list[Request], on_result: OnResult | None = None) -> list[Completion]: ...

    def score(self, requests: list[TextScoreRequest], top_k: int = 0,
              on_result: OnScore | None = None) -> list[TextScore]: ...

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
    if messages and messages[-1]["role"] == "assistant":
        return _render_prefilled(tokenizer, messages, tpl)
    ids = tokenizer.apply_chat_template(list(messages), chat_template=tpl, add_generation_prompt=True,
                                        tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


# EvalPlus's splitter (evalplus/provider/utility.py make_raw_chat_prompt)
_MAGIC_SPLITTER = "-[[]]-this-is-really-our-highest-priority-[[]]-"


def _render_prefilled(tokenizer, messages, tpl: str) -> list[int]:
    """A final assistant message is a prefill the model continues (EvalPlus's MBPP+ and
    HumanEval+ chat prompts): rendered as EvalPlus does, the whole conversation with a
    splitter after the prefill, cut at the splitter. Unlike transformers'
    continue_final_message this keeps the prefill's trailing newline."""
    *head, last = messages
    closed = [*head, {"role": "assistant", "content": last["content"] + _MAGIC_SPLITTER + "\n```\n"}]
    text = tokenizer.apply_chat_template(closed, chat_template=tpl, tokenize=False)
    if _MAGIC_SPLITTER not in text:
        raise UsageError("the chat template dropped the assistant prefill; this model cannot continue a prefilled turn")
    return list(tokenizer(text.split(_MAGIC_SPLITTER)[0], add_special_tokens=False)["input_ids"])
