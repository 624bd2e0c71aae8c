"""GPQA-Diamond (Rein et al., 2023, "GPQA: A Graduate-Level Google-Proof Q&A Benchmark"),
as FuseChat-3.0's FuseEval scores it.

Data: FuseEval's "gpqa_formatted/diamond" (198 items; `Question`, `options` (4, order fixed
in the file and already shuffled), `answer` (int), `Canary String`). GPQA's authors ask that
examples never appear in plain text online, so the copy is kept only inside
<data dir>/gpqa_diamond/gpqa_diamond_fuseeval.zip, encrypted with the authors' public
password (option `zip_password`). It is read in memory: decrypted rows are never written to
disk or logs, per-item scores hold only ids and letters, and `public_items = False` tells
the leaderboard to show item ids instead of prompts and answers. The decrypted member's
sha256 is checked; a wrong password or a changed file is a clear error.
Item id: the 0-based row index.
Protocol: harness.benchmarks.mc_cot (FuseEval's zero-shot CoT prompt, greedy, 2048 tokens,
stop "Question:", extraction chain + fixed-index fallback (4 options -> D), strict accuracy
beside it). FuseEval runs GPQA with max_model_len 8192 (4096 for the others): a backend
setting, not a benchmark one.
Metric: accuracy over the 198 items. `--limit N` takes the first N (one category).
VERSION 1.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from typing import Literal

from harness.benchmarks.base import Example
from harness.benchmarks.mc_cot import MCOptions, MultipleChoiceCoT
from harness.data import resolve_data_dir
from harness.errors import DataNotFoundError, UsageError

ZIP_PATH = "gpqa_diamond/gpqa_diamond_fuseeval.zip"
MEMBER = "gpqa_diamond_formatted.jsonl"
MEMBER_SHA256 = "b4b47341212bb49de000ad03c136cbdfdfb7d8178a10300ed0fd179f2ada92cd"
# Published by the GPQA authors in the idavidrein/gpqa README for their own archive.
PASSWORD = "deserted-untie-orchid"


class GPQAOptions(MCOptions):
    limit_sample: Literal["stratified", "first"] = "first"  # one category: first N rows
    zip_password: str = PASSWORD


def read_encrypted_rows(data_dir, password: str) -> tuple[list[dict], str]:
    """The 198 rows, decrypted in memory, after checking the member's sha256."""
    root = resolve_data_dir(data_dir)
    path = root / ZIP_PATH if root is not None else None
    if path is None or not path.exists():
        where = str(path) if path is not None else "no data dir set (--data-dir or $HARNESS_DATA_DIR)"
        raise DataNotFoundError(f"no data for benchmark 'gpqa-diamond'. Looked in: {where}. Fix: pass --data-dir "
                                f"to a folder containing {ZIP_PATH} (e.g. ../shared/benchmarks).")
    try:
        with zipfile.ZipFile(path) as z:
            blob = z.read(MEMBER, pwd=password.encode())
    except RuntimeError as e:  # zipfile's "Bad password for file ..."
        raise UsageError(f"{path}: cannot decrypt {MEMBER}: {e}. Fix: set option zip_password to the password "
                         "published in the idavidrein/gpqa README.") from None
    except (KeyError, zipfile.BadZipFile) as e:
        raise UsageError(f"{path}: not the expected archive ({e}); it must hold {MEMBER}.") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MEMBER_SHA256:
        raise UsageError(f"{path}: {MEMBER} has sha256 {digest}, expected {MEMBER_SHA256} (the file changed). "
                         "Fix: restore the archive listed in the data README.")
    rows = [json.loads(line) for line in blob.decode("utf-8").split("\n") if line.strip()]
    return rows, f"local:{ZIP_PATH}!{MEMBER}@sha256:{digest[:16]}"


class GPQADiamond(MultipleChoiceCoT):
    name = "gpqa-diamond"
    VERSION = "1"
    Options = GPQAOptions
    public_items = False

    def rows(self) -> list[Example]:
        rows, self.dataset_revision = read_encrypted_rows(self.ctx.data_dir, self.opts.zip_password)
        return [Example(id=str(i), data={"question": r["Question"], "options": list(r["options"]),
                                         "gold": int(r["answer"]), "category": "gpqa_diamond"})
                for i, r in enumerate(rows)]
