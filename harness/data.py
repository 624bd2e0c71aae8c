"""Where benchmark data comes from: a local data dir laid out like shared/benchmarks, or the hub.

Local first when a data dir is set (offline users and CI), else the hub at a pinned
revision through `datasets`. If neither works the error names both places and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataNotFoundError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "HARNESS_DATA_DIR"


@dataclass(frozen=True)
class DataSource:
    """Where one benchmark's rows live."""

    local_path: str  # relative to the data dir, e.g. "gsm8k/test.jsonl"
    hub_id: str | None = None  # e.g. "openai/gsm8k"
    hub_config: str | None = None
    hub_split: str = "test"
    hub_revision: str | None = None  # a commit sha, or None for the default branch


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    d = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(d).expanduser() if d else None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    # Split on "\n" only: some prompts contain U+2028, which str.splitlines() would split on.
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def read_jsonl_records(path: Path, expected: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line of a user-supplied JSONL file; a line
    that is not a JSON object is a UsageError at file:line saying what was `expected`."""
    from harness.errors import UsageError

    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{n}: not JSON ({e.msg}); expected {expected}") from None
        if not isinstance(row, dict):
            raise UsageError(f"{path}:{n}: expected {expected}")
        out.append((n, row))
    return out


def file_revision(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_rows(benchmark: str, source: DataSource, data_dir: str | os.PathLike | None) -> tuple[list[dict], str]:
    """Rows of a benchmark and a revision string recorded in results (file hash or hub sha)."""
    root = resolve_data_dir(data_dir)
    looked: list[str] = []
    if root is not None:
        path = root / source.local_path
        if path.exists():
            rows = read_jsonl(path) if path.suffix == ".jsonl" else json.loads(path.read_text())
            return rows, f"local:{source.local_path}@{file_revision(path)}"
        looked.append(f"{path} (data dir)")
    else:
        looked.append(f"no data dir set (--data-dir or ${DATA_DIR_ENV})")
    if source.hub_id is not None and os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            import datasets

            ds = datasets.load_dataset(source.hub_id, source.hub_config, split=source.hub_split,
                                       revision=source.hub_revision)
            rev = source.hub_revision or getattr(ds.info, "version", None) or "default"
            return [dict(r) for r in ds], f"hub:{source.hub_id}@{rev}"
        except ImportError:
            looked.append(f"hub {source.hub_id}: `datasets` is not installed (pip install 'fuse-harness[data]')")
        except Exception as e:  # offline, gated, renamed...
            looked.append(f"hub {source.hub_id}@{source.hub_revision or 'main'}: {type(e).__name__}: {e}"[:300])
    elif source.hub_id is not None:
        looked.append(f"hub {source.hub_id}: skipped because HF_HUB_OFFLINE=1")
    raise DataNotFoundError(
        f"no data for benchmark {benchmark!r}. Looked in: " + "; ".join(looked)
        + f". Fix: pass --data-dir DIR (or set ${DATA_DIR_ENV}) to a folder containing {source.local_path}, "
        "e.g. --data-dir ../shared/benchmarks, or go online so the hub copy can be downloaded."
    )
