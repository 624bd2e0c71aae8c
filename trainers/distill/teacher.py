"""Teacher signal store: each source's top-k log-probs on the training rows, on disk (issue 12 §1).

What is stored, per source, per row, per response position t of THE SOURCE'S OWN tokenization
(`harness.textscore.score_with`, which renders the source's chat template, or the plain text
form for a model without one):
  token_ids    int32 (n,)        the response tokens
  top_ids      uint8 (n, K, 3)   the K most likely tokens at t (the distribution predicting token t)
                                 as 24-bit little-endian ids, 0xFFFFFF = padding (`unpack_ids`)
  top_logprobs fp16  (n, K)      their log-probs
  top_lse      fp16  (n,)        log Σ_k exp(top_logprobs[t, k]): the log-sum-exp of the K kept
                                 entries, i.e. log of the probability mass they cover (computed
                                 from the fp32 scores before rounding)
and per row the sequence cross-entropy on the gold response (mean token NLL, fp64; FuseLLM's
`metric_ce`, response tokens only as in FuseChat). That is 4 + 5K + 2 bytes per token: 56 at
K = 10 (the issue's budget is 64; int32 ids would make it 66, hence the 24-bit ids: the largest
vocabulary here, Gemma's, has 2^18 ids).
Why the log-sum-exp of the K entries and not of the raw logits: the scoring contract returns
normalised log-probs (vLLM `prompt_logprobs`, OpenAI echo), so the logits' log-sum-exp over the
vocabulary is already subtracted; what the K entries alone do not give exactly is how much mass
they cover, which `top_lse` keeps (renormalising: p_k / exp(top_lse); tail mass 1 - exp(top_lse)).

Over-length rows are cut before capture (trainers/distill/truncate.py); a row in `truncated`
has its trailing EOS position dropped (chat form), so the stored tokens are the training ones.

Layout: <root>/<source>-<key>/ with one directory per shard of `shard_rows` rows, each holding
.npy arrays (memory-mapped on read) and meta.json (the key, the row range, sha256 of every array).
A shard is written to a temporary directory and renamed when complete, so a kill leaves either
a whole shard or none; the rows of an unfinished shard are cached one by one in the harness store
by score_with, so a resumed capture recomputes nothing that finished. A shard whose meta.json
has another key, a missing array or a wrong checksum is logged, deleted and recomputed.
One backend scores every shard of a capture, started on the first shard that needs it (a vLLM
engine starts once, not per shard); report.json keeps its start-up time apart (start_seconds).
The key is the source fingerprint + chat-template hash + data hash (texts and truncated rows) +
K + plain + the store layout version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from harness.backends import make_backend
from harness.backends.lazy import LazyBackend
from harness.errors import UsageError
from harness.models import ALIASES, ResolvedModel, resolve_model
from harness.textscore import TextScore, TextScoreRequest, score_with
from harness.types import stable_hash

log = logging.getLogger(__name__)

ARRAYS = ("token_ids", "top_ids", "top_logprobs", "top_lse", "offsets", "ce")
LAYOUT = 2  # 1: int32 top ids, no top_lse
ID_BYTES = 3
PAD_ID = (1 << (8 * ID_BYTES)) - 1


def pack_ids(ids: np.ndarray) -> np.ndarray:
    """int (..., K) ids, -1 padding -> uint8 (..., K, 3) little-endian 24-bit, PAD_ID padding."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and int(ids.max()) >= PAD_ID:
        raise UsageError(f"token id {int(ids.max())} does not fit the teacher store's 24-bit ids (< {PAD_ID})")
    u = np.where(ids < 0, PAD_ID, ids).astype("<u4")
    return u.view(np.uint8).reshape(*ids.shape, 4)[..., :ID_BYTES].copy()


def unpack_ids(packed: np.ndarray) -> np.ndarray:
    """uint8 (..., K, 3) -> int32 (..., K), -1 padding."""
    p = np.asarray(packed, dtype=np.int32)
    ids = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    return np.where(ids == PAD_ID, -1, ids).astype(np.int32)


class TeacherKey(BaseModel):
    source: str
    fingerprint: str
    template_hash: str | None
    data_hash: str
    top_k: int
    plain: bool
    layout: int = LAYOUT

    def digest(self) -> str:
        return stable_hash(self.fingerprint, self.template_hash, self.data_hash, self.top_k, self.plain,
                           self.layout)[:16]


class CaptureReport(BaseModel):
    """What a capture did; written next to the shards as report.json."""

    source: str
    directory: str
    rows: int
    tokens: int
    shards_reused: int
    shards_written: int
    shards_invalid: int
    rows_scored: int  # rows the backend scored in this run
    rows_cached: int  # rows of unfinished shards found in the harness store (scored before a kill)
    plain: bool
    seconds: float  # the whole capture, backend start-up and shutdown included
    start_seconds: float = 0.0  # of which starting the backend (0 when every shard was reused)
    backend: str | None = None  # the backend that scored (None when nothing needed scoring)
    bytes_per_token: float  # per-token arrays (token id, top ids, top log-probs, top_lse): 4 + 5K + 2
    rows_truncated: int = 0  # rows cut to the recipe's max_length before capture (truncate.py)
    disk_bytes: int  # everything on disk, .npy headers and per-row offsets/CE included
    errors: dict[str, str] = {}


def data_hash(requests: list[TextScoreRequest], truncated: frozenset[str] = frozenset()) -> str:
    return stable_hash([r.model_dump() for r in requests], sorted(truncated))[:16]


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):  # noqa: B023
            h.update(block)
    return h.hexdigest()


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def shard_valid(d: Path, key: TeacherKey, start: int, stop: int) -> bool:
    """True when `d` is a complete shard of this key and row range with intact arrays."""
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("key") != key.model_dump() or meta.get("rows") != [start, stop]:
        return False
    return all((d / f"{a}.npy").exists() and _sha(d / f"{a}.npy") == meta["sha256"].get(a) for a in ARRAYS)


def _top_arrays(scores: list[TextScore], n: int, k: int) -> dict[str, np.ndarray]:
    """top_ids (n, K, 3) packed, top_logprobs (n, K) fp16, top_lse (n,) fp16 for n positions."""
    ids = np.full((n, k), -1, dtype=np.int64)
    lps = np.full((n, k), -np.inf, dtype=np.float64)
    pos = 0
    for s in scores:
        for row_ids, row_lps in zip(s.top_ids or [], s.top_logprobs or []):
            m = min(k, len(row_ids))
            ids[pos, :m] = row_ids[:m]
            lps[pos, :m] = row_lps[:m]
            pos += 1
    with np.errstate(divide="ignore"):
        peak = np.max(lps, axis=1, keepdims=True) if n else np.zeros((0, 1))
        safe = np.where(np.isfinite(peak), peak, 0.0)
        lse = (safe + np.log(np.exp(lps - safe).sum(axis=1, keepdims=True)))[:, 0] if n else np.zeros(0)
    return {"top_ids": pack_ids(ids), "top_logprobs": np.where(ids >= 0, lps, 0.0).astype(np.float16),
            "top_lse": np.where(np.isfinite(lse), lse, 0.0).astype(np.float16)}


def _write_shard(d: Path, key: TeacherKey, start: int, stop: int, scores: list[TextScore], k: int) -> int:
    lengths = [len(s.token_ids) for s in scores]
    n = sum(lengths)
    arrays = {
        "token_ids": np.asarray([t for s in scores for t in s.token_ids], dtype=np.int32).reshape(n),
        **_top_arrays(scores, n, k),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        # a row with no response tokens has no CE: +inf, so MinCE never picks it
        "ce": np.asarray([-sum(s.logprobs) / len(s.logprobs) if s.logprobs else math.inf for s in scores],
                         dtype=np.float64),
    }
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
    meta = {"key": key.model_dump(), "rows": [start, stop], "ids": [s.id for s in scores],
            "sha256": {a: _sha(tmp / f"{a}.npy") for a in ARRAYS}}
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return n


def teacher_dir(root: Path, key: TeacherKey) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key.source)
    return Path(root) / f"{safe}-{key.digest()}"


@dataclass
class CaptureJob:
    source: str
    requests: list[TextScoreRequest]
    root: Path
    top_k: int = 10
    shard_rows: int = 64
    backend: str = "auto"
    backend_options: dict | None = None
    truncated: frozenset[str] = frozenset()  # ids of rows cut to max_length (their EOS is not trained on)


def without_eos(score: TextScore) -> TextScore:
    """A chat-form score of a truncated row minus its last position, the EOS the scorer appends
    (training drops it: a cut response has no end)."""
    cut = {f: getattr(score, f)[:-1] for f in ("token_ids", "logprobs", "top_ids", "top_logprobs")
           if getattr(score, f) is not None}
    return score.model_copy(update=cut)


def resolve_plain(model: ResolvedModel) -> bool:
    """A source without a chat template (or a base-model alias, whose GGUF may still carry one) is
    scored in the plain text form (issue 12: 'bad input')."""
    alias = ALIASES.get(model.name)
    return (alias is not None and not alias.chat) or (model.template_hash is None and model.kind != "openai")


class _TimedBackend(LazyBackend):
    """One backend for every shard of a capture (a vLLM engine starts once, not per shard), with
    its start-up time kept apart so the report's scoring rate excludes it."""

    def __init__(self, name: str, model: ResolvedModel, options: dict | None):
        self.start_s = 0.0

        def build():
            t0 = time.perf_counter()
            backend = make_backend(name, model, options)
            self.start_s = time.perf_counter() - t0
            return backend

        super().__init__(build)


def _capture_shards(job: CaptureJob, key: TeacherKey, out: Path, requests: list[TextScoreRequest],
                    model: ResolvedModel, store, engine: LazyBackend) -> dict:
    """Reuse the valid shards, score and write the others; -> the report's counters."""
    c = {"shards_reused": 0, "shards_written": 0, "shards_invalid": 0, "tokens": 0, "rows_scored": 0,
         "rows_cached": 0, "errors": {}}
    for i, start in enumerate(range(0, len(requests), job.shard_rows)):
        stop = min(start + job.shard_rows, len(requests))
        d = out / _shard_name(i)
        if shard_valid(d, key, start, stop):
            c["shards_reused"] += 1
            c["tokens"] += int(np.load(d / "offsets.npy")[-1])
            continue
        if d.exists():
            c["shards_invalid"] += 1
            log.warning("teacher shard %s is corrupt or from another key; recomputing it", d)
        scores = score_with(model, requests[start:stop], store, engine, top_k=job.top_k)
        c["rows_cached"] += sum(s.cached for s in scores)
        c["rows_scored"] += sum(not s.cached and s.error is None for s in scores)
        bad = {s.id: s.error for s in scores if s.error}
        if bad:
            c["errors"].update(bad)  # the shard stays unwritten: failures are never stored
            continue
        if not key.plain:
            scores = [without_eos(s) if s.id in job.truncated else s for s in scores]
        c["tokens"] += _write_shard(d, key, start, stop, scores, job.top_k)
        c["shards_written"] += 1
    return c


def capture(job: CaptureJob, *, store) -> CaptureReport:
    """Score every row with the source and write the missing shards; see the module docstring."""
    t0 = time.perf_counter()
    if job.top_k < 1:
        raise UsageError(f"teacher top_k must be >= 1, got {job.top_k}")
    model = resolve_model(job.source, store)
    plain = resolve_plain(model)
    if plain:
        log.info("source %s has no chat template: its rows are scored as plain text (prompt + response)", job.source)
    requests = [r.model_copy(update={"plain": True}) if plain else r for r in job.requests]
    key = TeacherKey(source=job.source, fingerprint=model.fingerprint, template_hash=model.template_hash,
                     data_hash=data_hash(job.requests, job.truncated), top_k=job.top_k, plain=plain)
    out = teacher_dir(job.root, key)
    out.mkdir(parents=True, exist_ok=True)
    engine = _TimedBackend(job.backend, model, job.backend_options)
    try:
        counts = _capture_shards(job, key, out, requests, model, store, engine)
    finally:
        engine.close()
    size = sum(f.stat().st_size for f in out.rglob("*.npy"))
    per_token = 4 + ID_BYTES * job.top_k + 2 * job.top_k + 2  # token id, top ids, top log-probs, top_lse
    report = CaptureReport(source=job.source, directory=str(out), rows=len(requests), plain=plain,
                           seconds=time.perf_counter() - t0, start_seconds=engine.start_s,
                           backend=engine.backend.name if engine.backend is not None else None,
                           bytes_per_token=per_token, disk_bytes=size, rows_truncated=len(job.truncated), **counts)
    (out / "report.json").write_text(report.model_dump_json(indent=1))
    return report


@dataclass
class TeacherRow:
    token_ids: np.ndarray  # (n,) int32
    top_ids: np.ndarray  # (n, K) int32, -1 padding
    top_logprobs: np.ndarray  # (n, K) float16
    ce: float
    top_lse: np.ndarray  # (n,) float16: log of the mass the K entries cover


class TeacherFile:
    """Read side: memory-maps every shard of a complete capture. Raises when a shard is missing."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._shards = []
        self._index: dict[str, tuple[int, int]] = {}
        for d in sorted(self.directory.glob("shard-?????")):
            meta = json.loads((d / "meta.json").read_text())
            arrays = {a: np.load(d / f"{a}.npy", mmap_mode="r") for a in ARRAYS}
            self._shards.append(arrays)
            for j, rid in enumerate(meta["ids"]):
                self._index[rid] = (len(self._shards) - 1, j)
        if not self._shards:
            raise UsageError(f"no teacher shards in {self.directory}; run `harness fuse teacher` first")

    def __len__(self) -> int:
        return len(self._index)

    def ids(self) -> list[str]:
        return list(self._index)

    def __contains__(self, row_id: str) -> bool:
        return row_id in self._index

    def row(self, row_id: str) -> TeacherRow:
        s, j = self._index[row_id]
        a = self._shards[s]
        lo, hi = int(a["offsets"][j]), int(a["offsets"][j + 1])
        ce = float(a["ce"][j])
        return TeacherRow(np.asarray(a["token_ids"][lo:hi]), unpack_ids(a["top_ids"][lo:hi]),
                          np.asarray(a["top_logprobs"][lo:hi]), ce if math.isfinite(ce) else math.inf,
                          np.asarray(a["top_lse"][lo:hi]))
