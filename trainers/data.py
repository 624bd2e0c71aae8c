"""Training data: load rows, validate them, tokenize them the way the official code does.

Formats (one JSON object per line, or a Hugging Face dataset via `hf:<name>[:<split>]`):
  sft   {"messages": [{"role": ..., "content": ...}, ..., {"role": "assistant", ...}]}
        (or {"prompt": ..., "response": ...})
  pref  {"prompt": ..., "chosen": ..., "rejected": ...}
  wrpo  {"prompt": ..., "y_ws": ..., "y_wt": ..., "y_l": ...}
  fuse_sft / fuse_pref   one row per prompt with every source's scored answers and same-source
        pairs (`FuseRow`, written by the fusion data stage as fuse.jsonl): fuse_sft trains on each
        answer, fuse_pref on each pair, with per-prompt weights from the scores (FuseRL)
A prompt is a string (one user turn) or a list of messages; a response is a string or a
list of messages whose last one is the assistant's (UltraFeedback style, where `chosen`
holds the whole conversation; then the prompt may be omitted).

Tokenization (as the official DPO/WRPO code): the prompt is rendered with the model's
chat template and the generation prompt (the same ids the harness sends to vLLM at
evaluation, `render_chat`); each response is tokenized without special tokens and EOS is
appended; the loss covers response tokens only (SFT: only the final assistant turn).

Truncation: a row whose prompt is longer than `max_prompt_length` is dropped (cutting a
prompt changes the question); responses are cut at the end so prompt + response fits
`max_length` (they then lose their EOS), and the report counts how many were cut.

Validation never raises mid-epoch: malformed rows are dropped here, before training, and
reported by reason with counts and the first few row numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.types import stable_hash
from trainers.fusion.selection import FuseRow
from trainers.losses import KINDS

log = logging.getLogger(__name__)


@dataclass
class Example:
    id: str
    prompt_ids: list[int]
    responses: dict[str, list[int]]  # kind -> response token ids (EOS included unless truncated)
    weight: float = 1.0  # per-row weight (FuseRL); 1 for every other format
    prompt_messages: list[dict] | None = None  # the chat prompt, for scoring by other models
    texts: dict[str, str] | None = None  # kind -> response text, for scoring by other models
    source_logps: dict[str, list[list[float]]] | None = None  # kind -> [[sum, n_tokens] per source], given


@dataclass
class DataReport:
    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # reason -> row numbers
    truncated_responses: int = 0

    def drop(self, reason: str, row: int) -> None:
        self.dropped[reason] += 1
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(row)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "kept": self.kept, "dropped": dict(self.dropped),
                "dropped_rows_sample": {k: v for k, v in self.examples.items()},
                "truncated_responses": self.truncated_responses}

    def summary(self) -> str:
        parts = [f"{self.kept}/{self.total} rows kept"]
        parts += [f"{n} dropped: {r} (rows {', '.join(map(str, self.examples[r]))}{', ...' if n > 5 else ''})"
                  for r, n in self.dropped.most_common()]
        if self.truncated_responses:
            parts.append(f"{self.truncated_responses} responses truncated to max_length")
        return "; ".join(parts)


def load_raw(source: str, limit: int | None = None) -> tuple[list[Any], str]:
    """Rows from a JSONL file or `hf:<name>[:<split>]`, plus a hash of the raw data.
    A line that is not JSON becomes a `None` row, dropped by validation with its reason."""
    if source.startswith("hf:"):
        name, _, split = source[3:].partition(":")
        try:
            import datasets
        except ImportError as e:
            raise UsageError("hf: datasets need the datasets package: pip install 'fuse-harness[data]'") from e
        try:
            ds = datasets.load_dataset(name, split=split or "train")
        except Exception as e:
            raise UsageError(f"could not load dataset {name!r} split {split or 'train'!r}: {e}") from e
        rows = [dict(r) for r in (ds.select(range(min(limit, len(ds)))) if limit else ds)]
        return rows, "hf:" + stable_hash(name, split, getattr(ds, "_fingerprint", None), len(rows))
    p = Path(source)
    if not p.is_file():
        raise UsageError(f"training data {source!r} does not exist; give a JSONL file or hf:<dataset>[:<split>]")
    rows: list[Any] = []
    h = hashlib.sha256()
    with p.open("rb") as fh:
        for line in fh:
            if limit is not None and len(rows) >= limit:
                break
            h.update(line)
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                rows.append(None)
    return rows, "sha256:" + h.hexdigest()[:32]


class _Bad(Exception):
    """A row problem; the message is the reason shown in the report."""


def _messages(value: Any, field_name: str) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise _Bad(f"empty {field_name}")
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and isinstance(
            m.get("content"), str) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise _Bad(f"bad {field_name} (expected a string or a list of {{role, content}} messages)")


def _response(value: Any, field_name: str) -> tuple[str, list[dict] | None]:
    """The response text, plus the conversation before it when the value is a conversation."""
    if isinstance(value, list):
        msgs = _messages(value, field_name)
        if msgs[-1]["role"] != "assistant":
            raise _Bad(f"bad {field_name} (last message is not the assistant's)")
        text, context = msgs[-1]["content"], msgs[:-1] or None
    elif isinstance(value, str):
        text, context = value, None
    else:
        raise _Bad(f"bad {field_name} (expected a string)")
    if not text.strip():
        raise _Bad(f"empty {field_name}")
    return text, context


def normalize(row: Any, fmt: str) -> tuple[list[dict], dict[str, str]]:
    """(prompt messages, {kind: response text}) or raises _Bad with the reason."""
    if not isinstance(row, dict):
        raise _Bad("not a JSON object")
    if fmt == "sft":
        if "messages" in row:
            msgs = _messages(row["messages"], "messages")
            if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
                raise _Bad("bad messages (need a prompt and a final assistant turn)")
            if not msgs[-1]["content"].strip():
                raise _Bad("empty response")
            return msgs[:-1], {"response": msgs[-1]["content"]}
        for f in ("prompt", "response"):
            if f not in row:
                raise _Bad("missing field 'messages'")
        text, _ = _response(row["response"], "response")
        return _messages(row["prompt"], "prompt"), {"response": text}
    kinds = KINDS[fmt]
    for f in kinds:
        if f not in row or row[f] is None:
            raise _Bad(f"missing field {f!r}")
    responses, context = {}, None
    for f in kinds:
        responses[f], ctx = _response(row[f], f)
        context = context or ctx
    if row.get("prompt") is not None:
        prompt = _messages(row["prompt"], "prompt")
    elif context is not None:
        prompt = context
    else:
        raise _Bad("missing field 'prompt'")
    if prompt[-1]["role"] == "assistant":
        raise _Bad("bad prompt (ends with an assistant turn)")
    pair = ("chosen", "rejected") if fmt == "pref" else ("y_wt", "y_l")
    if responses[pair[0]].strip() == responses[pair[1]].strip():
        raise _Bad(f"{pair[0]} equals {pair[1]}")
    return prompt, responses


GROUP_FORMATS = ("fuse_sft", "fuse_pref")


def given_source_logps(row: Any) -> dict[str, list[list[float]]] | None:
    """Source log-probs a preference row brings in InfiFPO's released format (README @ d770ebe):
    `fuse_{chosen,rejected}_logps` (sums) and `fuse_mean_{chosen,rejected}_logps` (per-token
    means), one entry per source; token counts are sum / mean. None when the row has none."""
    if not isinstance(row, dict) or "fuse_chosen_logps" not in row:
        return None
    out = {}
    for kind in ("chosen", "rejected"):
        sums, means = row.get(f"fuse_{kind}_logps"), row.get(f"fuse_mean_{kind}_logps")
        ok = (isinstance(sums, list) and isinstance(means, list) and len(sums) == len(means) > 0
              and all(isinstance(v, (int, float)) and math.isfinite(v) for v in sums + means)
              and all(m < 0 for m in means))
        if not ok:
            raise _Bad(f"bad fuse_{kind}_logps / fuse_mean_{kind}_logps (equal-length lists of finite log-probs, "
                       "means < 0)")
        out[kind] = [[float(t), float(t) / float(m)] for t, m in zip(sums, means)]
    if len(out["chosen"]) != len(out["rejected"]):
        raise _Bad("fuse_chosen_logps and fuse_rejected_logps name different numbers of sources")
    return out


def _check_weights(weights: list[float]) -> list[float]:
    """Per-prompt weights normalised to sum 1, or _Bad naming what is wrong with them."""
    if any(w is None or math.isnan(w) for w in weights):
        raise _Bad("weights: NaN or missing")
    if any(w < 0 for w in weights):
        raise _Bad("weights: negative")
    total = sum(weights)
    if not total > 0:
        raise _Bad("weights: all zero")
    return [w / total for w in weights]


def expand_group(row: Any, fmt: str, weigh=None) -> list[tuple[list[dict], dict[str, str], float]]:
    """A FuseRow as (prompt, {kind: text}, weight) units: every answer (fuse_sft) or every
    same-source pair (fuse_pref). `weigh(scores) -> weights` is the objective's weight function;
    None uses the rows' own `weight` fields. Weights are normalised per prompt."""
    if not isinstance(row, dict):
        raise _Bad("not a JSON object")
    try:
        g = FuseRow.model_validate(row)
    except ValueError as e:
        raise _Bad(f"bad fuse row ({str(e).splitlines()[0]})") from None
    prompt = _messages(g.prompt, "prompt")
    if fmt == "fuse_sft":
        items = [(a.score, a.weight, {"response": _response(a.text, "response")[0]}) for a in g.answers]
    else:
        items = [(p.chosen_score, p.weight, {"chosen": _response(p.chosen, "chosen")[0],
                                             "rejected": _response(p.rejected, "rejected")[0]}) for p in g.pairs]
    if not items:
        raise _Bad("no answers" if fmt == "fuse_sft" else "no pairs")
    raw = weigh([s if s is not None else math.nan for s, _, _ in items]) if weigh else [w for _, w, _ in items]
    weights = _check_weights(raw)
    return [(prompt, texts, w) for (_, _, texts), w in zip(items, weights)]


def _units(row: Any, fmt: str, weigh) -> list[tuple[list[dict], dict[str, str], float]]:
    if fmt in GROUP_FORMATS:
        return expand_group(row, fmt, weigh)
    prompt, responses = normalize(row, fmt)
    return [(prompt, responses, 1.0)]


def tokenize_rows(rows: list[Any], fmt: str, tokenizer, *, max_length: int, max_prompt_length: int,
                  chat_template: str | None = None, model_name: str = "model",
                  weigh=None) -> tuple[list[Example], DataReport]:
    """Validate and tokenize; returns the kept examples and the report of what was dropped.
    Group formats (fuse_*) give several examples per row, ids `<row>.<j>`, weighted by `weigh`."""
    from harness.backends.base import render_chat

    eos = tokenizer.eos_token_id
    if eos is None:
        raise UsageError(f"the tokenizer of {model_name!r} has no eos token; set eos_token in tokenizer_config.json")
    report = DataReport(total=len(rows))
    out: list[Example] = []
    kept_rows = 0
    for i, row in enumerate(rows):
        try:
            units = _units(row, fmt, weigh)
            given = given_source_logps(row) if fmt == "pref" else None
        except _Bad as e:
            report.drop(str(e), i)
            continue
        prompt = units[0][0]
        prompt_ids = render_chat(tokenizer, prompt, chat_template, model_name)
        if len(prompt_ids) > max_prompt_length:
            report.drop(f"prompt longer than max_prompt_length={max_prompt_length}", i)
            continue
        room = max_length - len(prompt_ids)
        if room < 1:
            report.drop(f"prompt leaves no room for a response within max_length={max_length}", i)
            continue
        kept_rows += 1
        for j, (_, responses, weight) in enumerate(units):
            ids_by_kind = {}
            for kind, text in responses.items():
                ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [eos]
                if len(ids) > room:
                    ids = ids[:room]
                    report.truncated_responses += 1
                ids_by_kind[kind] = ids
            # the row number, not a user id: ids key the reference cache and must be unique
            out.append(Example(id=str(i) if fmt not in GROUP_FORMATS else f"{i}.{j}", prompt_ids=list(prompt_ids),
                               responses=ids_by_kind, weight=weight, prompt_messages=prompt, texts=responses,
                               source_logps=given))
    report.kept = kept_rows  # rows; a group row gives several examples
    return out, report


def tokenized_hash(examples: list[Example]) -> str:
    """Hash of exactly what the model sees: changes with the data, the template, the
    tokenizer and the truncation settings, which is what invalidates cached reference log-probs."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.prompt_ids, sorted(ex.responses.items())]).encode())
    return h.hexdigest()[:32]


def collate(examples: list[Example], kinds: tuple[str, ...], pad_id: int):
    """Right-padded batch with every kind stacked kind-major: rows [k*B:(k+1)*B] are kind k.

    Returns input_ids, attention_mask, loss_mask (K*B, T): one forward for all responses,
    as the official code's `concatenated_forward`."""
    import torch

    seqs, masks = [], []
    for kind in kinds:
        for ex in examples:
            r = ex.responses[kind]
            seqs.append(ex.prompt_ids + r)
            masks.append([0] * len(ex.prompt_ids) + [1] * len(r))
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for j, (s, m) in enumerate(zip(seqs, masks)):
        input_ids[j, :len(s)] = torch.tensor(s)
        attention[j, :len(s)] = 1
        loss_mask[j, :len(s)] = torch.tensor(m)
    return {"input_ids": input_ids, "attention_mask": attention, "loss_mask": loss_mask}
