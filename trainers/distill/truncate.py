"""Over-length rows in token-level fusion: cut once, on the pivot's tokens, before any capture.

The rule is the trainer's (trainers/data.py::tokenize_rows) applied with the recipe's
`max_length` / `max_prompt_length` and the pivot's tokenizer and chat template:
  * a row whose rendered prompt is longer than max_prompt_length (or leaves no room for a
    response) is dropped, with the trainer's reason;
  * a response whose tokens + EOS exceed room = max_length - len(prompt) keeps its first `room`
    tokens r_0..r_{room-1} and loses its EOS.
The cut is made on the TEXT: the response becomes response[:end of r_{room-1}] (the tokenizer's
offset mapping), and every model, pivot and sources alike, scores that same text on its own
tokenization. So the pivot's stored tokens are the training tokens (the capture drops the EOS
the chat form appends to a cut row, teacher.without_eos) and a cross-tokenizer source covers
the same characters, which is what its alignment to the pivot needs. Checked per row: if the
pivot's tokens of the cut text differ from r_0..r_{room-1} (a BPE merge across the cut), the row
is cut one token earlier until they agree, never silently mismatched.

Training with a smaller max_length than the capture cuts the pivot positions further; the
cross-tokenizer sources are then cut to the same bytes at read time (`cut_to_bytes`).

Then each model's context, checked up front (`fit_contexts`), before any scoring call: a row that
some model (pivot or source) cannot score whole on ITS OWN tokenization (its chat or plain form,
EOS included) is cut further, for every model alike, to the longest pivot-token prefix that every
model can score, and counted per model (`over_context`) and warned about. The row then trains past
the cut with the CLM term only (targets.fused_targets: rows_short), as a row cut by a shorter
capture would. Why cut and not skip: a skipped row would have no teacher signal and stop the
training ("row X has no teacher signal"). A model whose context cannot even hold a row's prompt is
an error naming the rows and the fix, raised before anything is scored. The limit of a model is
its config's max_position_embeddings, under vLLM also below the engine's max_model_len (vLLM
rejects a text of max_model_len tokens or more), or the recipe's `max_context` for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from harness.backends import pick_backend
from harness.backends.base import render_chat
from harness.backends.vllm_backend import DEFAULT_MAX_MODEL_LEN
from harness.errors import UsageError
from harness.models import ResolvedModel
from harness.textscore import TextScoreRequest, split_tokens
from trainers.distill.align import text_bytes

log = logging.getLogger(__name__)


class TruncationReport(BaseModel):
    """What the cut did; part of teacher.json (the stage's provenance)."""

    max_length: int
    max_prompt_length: int
    rows: int
    truncated: int = 0  # responses cut to fit max_length (EOS lost)
    dropped: int = 0  # prompts too long (the trainer drops them too)
    truncated_rows: list[str] = []  # ids of the cut rows (all of them: they key the capture)
    cut_earlier: int = 0  # rows cut one or more tokens before `room` to keep the tokens identical
    context_limits: dict[str, int | None] = {}  # model name -> tokens it scores at most (None: unchecked)
    over_context: dict[str, int] = {}  # model name -> rows longer than its context (cut for every model)


def _response_ids(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)))
    return list(enc["input_ids"]), enc.get("offset_mapping")


def cut_response(tokenizer, response: str, room: int) -> tuple[str, int]:
    """(prefix of `response`, tokens kept): the longest prefix ending at a token boundary whose own
    tokenization is the first `kept` <= room tokens of the response's tokenization."""
    ids, offsets = _response_ids(tokenizer, response)
    for kept in range(min(room, len(ids)), 0, -1):
        end = offsets[kept - 1][1] if offsets is not None else len(tokenizer.decode(ids[:kept]))
        prefix = response[:end]
        if _response_ids(tokenizer, prefix)[0] == ids[:kept]:
            return prefix, kept
    return "", 0


def truncate_requests(requests: list[TextScoreRequest], tokenizer, *, max_length: int, max_prompt_length: int,
                      model_name: str) -> tuple[list[TextScoreRequest], TruncationReport, dict[str, str]]:
    """-> (requests to capture, with cut responses; the report; {dropped row id: reason})."""
    eos = tokenizer.eos_token_id
    rep = TruncationReport(max_length=max_length, max_prompt_length=max_prompt_length, rows=len(requests))
    out, dropped = [], {}
    for r in requests:
        prompt = render_chat(tokenizer, r.messages, None, model_name)
        room = max_length - len(prompt)
        if len(prompt) > max_prompt_length:
            dropped[r.id] = f"prompt longer than max_prompt_length={max_prompt_length}"
        elif room < 1:
            dropped[r.id] = f"prompt leaves no room for a response within max_length={max_length}"
        if r.id in dropped:
            continue
        ids, _ = _response_ids(tokenizer, r.response)
        if len(ids) + (eos is not None) <= room:
            out.append(r)
            continue
        prefix, kept = cut_response(tokenizer, r.response, room)
        rep.cut_earlier += kept < min(room, len(ids))
        rep.truncated_rows.append(r.id)
        out.append(r.model_copy(update={"response": prefix}))
    rep.truncated, rep.dropped = len(rep.truncated_rows), len(dropped)
    if rep.truncated or rep.dropped:
        log.warning("teacher data: %d of %d rows cut to max_length=%d (responses lose their end and EOS), %d dropped "
                    "(prompt longer than max_prompt_length=%d)", rep.truncated, rep.rows, max_length, rep.dropped,
                    max_prompt_length)
    return out, rep, dropped


def cut_to_bytes(texts: list[str], token_ids: list[int], n_bytes: int) -> int:
    """How many leading tokens of a stream fit in `n_bytes` UTF-8 bytes of decoded text (the
    characters the cut pivot tokens cover). texts: the stream's decoded vocabulary."""
    total = 0
    for i, t in enumerate(token_ids):
        total += len(text_bytes(texts[t]))
        if total > n_bytes:
            return i
    return len(token_ids)


@dataclass
class ModelContext:
    """One model's side of the context check: its tokenizer, scoring form and limit."""

    name: str  # the recipe's name for it ("pivot" or the source's name)
    tokenizer: Any
    model: ResolvedModel
    plain: bool
    limit: int | None  # tokens one scoring call takes at most (prompt + response + EOS); None: unchecked


def context_limit(model: ResolvedModel, backend: str, options: dict | None, override: int | None) -> int | None:
    """The most tokens one scoring call of `model` can take on `backend`; see the module docstring."""
    if override is not None:
        return override
    if model.kind == "openai":
        return None  # the server knows its own limit; its errors are recorded per row
    from transformers import AutoConfig

    n = getattr(AutoConfig.from_pretrained(model.path).get_text_config(), "max_position_embeddings", None)
    if pick_backend(backend, model) == "vllm":
        limits = [x for x in ((options or {}).get("max_model_len", DEFAULT_MAX_MODEL_LEN), n) if x is not None]
        return min(limits) - 1 if limits else None
    return n


def _length(m: ModelContext, r: TextScoreRequest, response: str | None = None) -> int:
    req = r.model_copy(update={"plain": m.plain, **({"response": response} if response is not None else {})})
    context, resp = split_tokens(m.tokenizer, req, m.model.chat_template, m.model.name)
    return len(context) + len(resp)


def _cut_to_fit(r: TextScoreRequest, pivot_tok, models: list[ModelContext], over: list[ModelContext]) -> str | None:
    """The longest pivot-token prefix of r.response that every model scores within its limit."""
    ids, offsets = _response_ids(pivot_tok, r.response)
    chars = len(r.response)
    for m in over:  # a first guess from each model's own tokens; verified below
        prefix, _ = cut_response(m.tokenizer, r.response, max(m.limit - _length(m, r, ""), 0))
        chars = min(chars, len(prefix))
    kept = (sum(end <= chars for _, end in offsets) if offsets is not None
            else len(ids) * chars // max(len(r.response), 1))
    while kept > 0:
        prefix, got = cut_response(pivot_tok, r.response, kept)
        if all(m.limit is None or _length(m, r, prefix) <= m.limit for m in models):
            return prefix
        kept = got - 1
    return None


def fit_contexts(requests: list[TextScoreRequest], pivot_tok, models: list[ModelContext],
                 rep: TruncationReport) -> list[TextScoreRequest]:
    """Cut the rows some model cannot score whole (module docstring); updates `rep`. Raises, before
    any scoring, when a model cannot hold a row's prompt."""
    rep.context_limits = {m.name: m.limit for m in models}
    out, no_room = [], {}
    for r in requests:
        over = [m for m in models if m.limit is not None and _length(m, r) > m.limit]
        if not over:
            out.append(r)
            continue
        prefix = _cut_to_fit(r, pivot_tok, models, over)
        if prefix is None:
            no_room[r.id] = [m.name for m in over]
            continue
        for m in over:
            rep.over_context[m.name] = rep.over_context.get(m.name, 0) + 1
        if r.id not in rep.truncated_rows:
            rep.truncated_rows.append(r.id)
        out.append(r.model_copy(update={"response": prefix}))
    if no_room:
        first = next(iter(no_room.items()))
        raise UsageError(f"{len(no_room)} rows leave no room for a response within a model's context (first: row "
                         f"{first[0]}, {first[1]}; limits {rep.context_limits}); lower max_prompt_length below the "
                         "smallest limit, or set a larger max_context / backend max_model_len for that model")
    rep.truncated = len(rep.truncated_rows)
    if rep.over_context:
        log.warning("teacher data: rows longer than a model's context, cut for every model to fit (they lose their "
                    "end and EOS; training past the cut is CLM only): %s (limits %s)", rep.over_context,
                    rep.context_limits)
    return out
