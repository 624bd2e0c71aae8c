"""EvalPlus's chat codegen prompt, shared by `humaneval` and `mbpp-plus` as FuseChat-3.0's
FuseEval runs both (Code-Eval/eval_plus/model.py, evalplus `make_raw_chat_prompt`; notes in
shared/BENCHMARKS_MORE.md §1.3).

User turn: "Please provide a self-contained Python script that solves the following problem in
a markdown code block:\\n```\\n{prompt.strip()}\\n```\\n".
Assistant prefill (Llama-3 / Gemma-2 chat models): "Below is a Python script with a
self-contained function that solves the problem and passes corresponding tests:\\n```python\\n";
the model continues inside that open fence.
Stops: EvalPlus's "\\nif __name__", "\\ndef main(", "\\nprint(", FuseEval's "\\n#" (a comment at
column 0 ends the sample) and "\\n```" for chat models; the end-of-turn tokens are the backend's.
A prefilled reply is read as the prefill's fence plus the continuation (`prefilled_reply`),
closed when the stop cut the closing fence off.
"""

from __future__ import annotations

INSTRUCTION = "Please provide a self-contained Python script that solves the following problem in a markdown code block:"
RESPONSE_PREFIX = "Below is a Python script with a self-contained function that solves the problem and passes " \
                  "corresponding tests:"
PREFILL = f"{RESPONSE_PREFIX}\n```python\n"
STOP = ("\nif __name__", "\ndef main(", "\nprint(", "\n#", "\n```")


def user_message(prompt: str) -> str:
    """The user turn for one problem statement (HumanEval's signature + docstring, MBPP+'s prompt)."""
    return f"{INSTRUCTION}\n```\n{prompt.strip()}\n```\n"


def messages(prompt: str, prefill: bool) -> tuple[dict[str, str], ...]:
    """The chat messages; with `prefill`, an assistant turn the model continues."""
    user = {"role": "user", "content": user_message(prompt)}
    return (user, {"role": "assistant", "content": PREFILL}) if prefill else (user,)


def prefilled_reply(reply: str) -> str:
    """A continuation of PREFILL as a whole markdown reply: the prefill's ```python fence, the
    generated code, and a closing fence unless the model wrote one (the "\\n```" stop cuts it)."""
    return "```python\n" + reply + ("" if "```" in reply else "\n```")
