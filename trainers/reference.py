"""Reference log-probs, computed once per (reference model, tokenized dataset) and cached.

Why: the official DPO/WRPO code runs the frozen reference model on every step, which for
WRPO is a forward over three responses per row that never changes between epochs. We run
it once, store the summed log-probs beside the data (`<data>.refcache/<key>.json`), and
preference steps then run only the policy. The cache key is the reference model's
fingerprint plus the hash of the tokenized data (`tokenized_hash`: data, template,
tokenizer and truncation), so changing any of them computes a fresh file instead of
silently reusing stale numbers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from harness.types import stable_hash
from trainers.data import Example, collate, tokenized_hash

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def cache_path(data_source: str, ref_fingerprint: str, examples: list[Example], kinds: tuple[str, ...],
               dtype: str) -> Path:
    key = stable_hash(CACHE_VERSION, ref_fingerprint, tokenized_hash(examples), list(kinds), dtype)[:24]
    if data_source.startswith("hf:"):
        from harness.models import cache_dir

        base = cache_dir() / "refcache" / data_source[3:].replace("/", "__").replace(":", "_")
    else:
        base = Path(data_source + ".refcache")
    return base / f"{key}.json"


def compute_logps(model, examples: list[Example], kinds: tuple[str, ...], pad_id: int, batch_size: int,
                  device, autocast=None, progress: bool = False) -> dict[str, dict[str, float]]:
    """{example id: {kind: summed log-prob}} under `model`, no gradients."""
    import contextlib

    import torch

    from trainers.losses import sequence_logps

    out: dict[str, dict[str, float]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(examples), desc="reference log-probs", unit="row")
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk, kinds, pad_id).items()}
            with autocast() if autocast else contextlib.nullcontext():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               use_cache=False).logits
            logps, _ = sequence_logps(logits, batch["input_ids"], batch["loss_mask"])
            logps = logps.view(len(kinds), len(chunk)).cpu().tolist()
            for j, ex in enumerate(chunk):
                out[ex.id] = {k: logps[i][j] for i, k in enumerate(kinds)}
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def load_or_compute(path: Path, compute) -> tuple[dict[str, dict[str, float]], bool]:
    """The cached log-probs at `path`, or compute() and write them atomically. Returns (logps, was_cached)."""
    if path.exists():
        try:
            payload = json.loads(path.read_text())
            log.info("reference log-probs: cache hit %s", path)
            return payload["logps"], True
        except (OSError, ValueError, KeyError):
            log.warning("reference cache %s is unreadable; recomputing", path)
    t0 = time.perf_counter()
    logps = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "seconds": time.perf_counter() - t0, "logps": logps}))
    tmp.replace(path)
    log.info("reference log-probs: computed %d rows in %.1fs -> %s", len(logps), time.perf_counter() - t0, path)
    return logps, False


def source_logps(examples: list[Example], kinds: tuple[str, ...], sources: list[str], store, *,
                 backend: str = "auto", score=None) -> tuple[dict[str, dict[str, list[list[float]]]], dict[str, str]]:
    """Every source model's summed log-prob and token count of every response, each under the
    source's own tokenizer and chat template (InfiFPO's `fuse_*_logps`; harness.textscore,
    cached in the store, so a crash or a second run rescores nothing).

    Returns ({example id: {kind: [[sum, n_tokens] per source, in `sources` order]}},
    {example id: why a source could not score it}); the caller drops and reports those rows.
    `score` replaces `harness.textscore.score_texts` in unit tests only."""
    from harness.textscore import TextScoreRequest

    if score is None:
        from harness.textscore import score_texts as score
    out: dict[str, dict[str, list[list[float]]]] = {ex.id: {k: [] for k in kinds} for ex in examples}
    bad: dict[str, str] = {}
    for model in sources:
        requests = [TextScoreRequest(id=f"{ex.id}\t{k}", messages=ex.prompt_messages, response=ex.texts[k])
                    for ex in examples for k in kinds]
        t0 = time.perf_counter()
        for r in score(model, requests, store=store, backend=backend):
            ex_id, kind = r.id.split("\t")
            if r.error is not None:
                bad.setdefault(ex_id, f"source {model} could not score it: {r.error}")
                continue
            out[ex_id][kind].append([r.total, float(len(r.logprobs))])
        log.info("source log-probs of %s: %d texts in %.1fs", model, len(requests), time.perf_counter() - t0)
    return {i: v for i, v in out.items() if i not in bad}, bad
