"""Prompt pools: rows -> PromptItems (the exact messages sent, plus what scoring needs).

Built-in pools read the shared data dir:
  gsm8k-train  <data dir>/gsm8k/train.jsonl, prompted exactly like the GSM8K benchmark
               (so answers are in the format the evaluation checks), gold = number after ####.
  mbpp         <data dir>/prompts/mbpp.jsonl, tasks 1-10 and 511-974 only (11-510 are MBPP's
               test split, which an MBPP evaluation would use), with their test_list.
Other pools: a JSONL file, or a hub dataset for online users, whose prompt is the `field`
given or the first of prompt / question / text.

Empty prompts and duplicates (same text after whitespace normalisation, across all pools;
the first occurrence is kept) are dropped and counted per pool, with a few example ids.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError

log = logging.getLogger(__name__)

PROMPT_FIELDS = ("prompt", "question", "text")
MBPP_TASKS = set(range(1, 11)) | set(range(511, 975))
MBPP_PROMPT = ("{text}\nYour code should pass these tests:\n\n{tests}\n\n"
               "Write the Python function in a markdown code block.")


@dataclass(frozen=True)
class PromptItem:
    id: str  # "<pool>/<row id>", stable across runs: the request id and the row id in the data
    pool: str
    kind: str  # math | code | instruction
    prompt: str  # the user turn, as sent
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def messages(self) -> tuple[dict[str, str], ...]:
        return ({"role": "user", "content": self.prompt},)


@dataclass
class PoolReport:
    rows: int = 0
    kept: int = 0
    empty: int = 0
    duplicate: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> a few row ids

    def drop(self, reason: str, row_id: str) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        ids = self.examples.setdefault(reason, [])
        if len(ids) < 5:
            ids.append(row_id)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "kept": self.kept, "empty": self.empty, "duplicate": self.duplicate,
                "examples": self.examples}


def _read_jsonl(path: Path, what: str) -> list[Any]:
    if not path.is_file():
        raise UsageError(f"{what}: {path} does not exist")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            raise UsageError(f"{what}: line {i + 1} of {path} is not JSON ({e}); fix or remove it") from e
    return rows


def _data_dir(data_dir: Path | None, what: str) -> Path:
    if data_dir is None:
        raise UsageError(f"{what} reads the benchmark data dir: pass --data-dir (e.g. ../shared/benchmarks), "
                         "set $HARNESS_DATA_DIR, or set data_dir: in the recipe")
    return Path(data_dir)


def mbpp_entry_point(row: dict[str, Any]) -> str | None:
    """The function the tests call: the first name called in test_list that the reference
    code defines (tests like `assert math.isclose(f(x), y)` call other names first)."""
    defined = re.findall(r"^\s*def\s+(\w+)\s*\(", row.get("code", ""), re.M)
    for name in re.findall(r"(\w+)\s*\(", "\n".join(row.get("test_list", []))):
        if name in defined:
            return name
    return defined[0] if defined else None


def _gsm8k_rows(spec, data_dir: Path | None) -> list[tuple[str, str, dict]]:
    from harness.benchmarks.gsm8k import PROMPT
    from harness.benchmarks.math_answers import gsm8k_gold

    path = _data_dir(data_dir, f"pool {spec.name!r} (gsm8k-train)") / "gsm8k" / "train.jsonl"
    rows = _read_jsonl(path, f"pool {spec.name!r}")
    return [(str(i), PROMPT.format(question=r["question"]) if (r.get("question") or "").strip() else "",
             {"gold": gsm8k_gold(r["answer"]), "question": r.get("question")}) for i, r in enumerate(rows)]


def _mbpp_rows(spec, data_dir: Path | None) -> list[tuple[str, str, dict]]:
    path = _data_dir(data_dir, f"pool {spec.name!r} (mbpp)") / "prompts" / "mbpp.jsonl"
    out = []
    for r in _read_jsonl(path, f"pool {spec.name!r}"):
        if int(r["task_id"]) not in MBPP_TASKS:
            continue
        tests = list(r.get("test_list") or [])
        text = (r.get("text") or "").strip()
        prompt = MBPP_PROMPT.format(text=text, tests="\n".join(tests)) if text else ""
        out.append((str(r["task_id"]), prompt, {"tests": tests, "test_setup_code": r.get("test_setup_code") or "",
                                                "entry_point": mbpp_entry_point(r), "question": text}))
    return out


def _generic_rows(spec, base: Path) -> list[tuple[str, str, dict]]:
    if spec.path:
        p = Path(spec.path)
        rows = _read_jsonl(p if p.is_absolute() else base / p, f"pool {spec.name!r}")
    else:
        name, _, split = spec.hf.partition(":")
        try:
            import datasets

            rows = [dict(r) for r in datasets.load_dataset(name, split=split or "train")]
        except ImportError as e:
            raise UsageError("hf pools need the datasets package: pip install 'fuse-harness[data]'") from e
        except Exception as e:
            raise UsageError(f"pool {spec.name!r}: could not load hub dataset {spec.hf!r}: {e}") from e
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            out.append((str(i), "", {}))
            continue
        fields = [spec.field] if spec.field else [f for f in PROMPT_FIELDS if f in r]
        if spec.field and spec.field not in r and i == 0:
            raise UsageError(f"pool {spec.name!r}: field {spec.field!r} is not in the rows (they have "
                             f"{', '.join(sorted(r))}); set `field:` to one of them")
        if not fields and i == 0:
            raise UsageError(f"pool {spec.name!r}: rows have none of {', '.join(PROMPT_FIELDS)} "
                             f"(they have {', '.join(sorted(r))}); set `field:`")
        text = r.get(fields[0]) if fields else None
        meta: dict[str, Any] = {}
        if spec.answer_field:
            ans = str(r.get(spec.answer_field, ""))
            meta["gold"] = ans.split("####")[-1].strip().replace(",", "") if "####" in ans else ans.strip()
        rid = str(r.get("id", i))
        out.append((rid, text if isinstance(text, str) else "", meta))
    return out


def load_pools(specs: list, data_dir: Path | None, base: Path) -> tuple[list[PromptItem], dict[str, PoolReport]]:
    """All pools' items in recipe order, and per pool what was dropped and why."""
    items: list[PromptItem] = []
    reports: dict[str, PoolReport] = {}
    seen: dict[str, str] = {}  # normalised prompt -> item id that has it
    for spec in specs:
        if spec.builtin == "gsm8k-train":
            rows = _gsm8k_rows(spec, data_dir)
        elif spec.builtin == "mbpp":
            rows = _mbpp_rows(spec, data_dir)
        else:
            rows = _generic_rows(spec, base)
        rows = rows[spec.offset:]
        if spec.limit is not None:
            rows = rows[:spec.limit]
        rep = reports[spec.name] = PoolReport(rows=len(rows))
        for rid, prompt, meta in rows:
            item_id = f"{spec.name}/{rid}"
            norm = " ".join(prompt.split())
            if not norm:
                rep.drop("empty", item_id)
                continue
            if norm in seen:
                rep.drop("duplicate", item_id)
                continue
            seen[norm] = item_id
            items.append(PromptItem(id=item_id, pool=spec.name, kind=spec.kind, prompt=prompt, meta=meta))
            rep.kept += 1
        if rep.empty or rep.duplicate:
            log.warning("pool %s: dropped %d empty and %d duplicate prompts of %d (e.g. %s)", spec.name, rep.empty,
                        rep.duplicate, rep.rows, ", ".join(i for ids in rep.examples.values() for i in ids[:2]))
        if not rep.kept:
            raise UsageError(f"pool {spec.name!r} has no usable prompts ({rep.rows} rows, {rep.empty} empty, "
                             f"{rep.duplicate} duplicate); check its offset/limit and field")
    return items, reports
