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
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

from harness.backends.base import render_chat
from harness.textscore import TextScoreRequest
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
