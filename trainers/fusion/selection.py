"""FuseChat-3.0 / WRPO selection rules, as pure functions over scored answers.

Inputs: `items` (PromptItems, in pool order) and `answers[item.id]` = every scored Answer
for that prompt (all sources together; `Answer.source` says whose). Outputs are rows in the
trainer's formats (trainers/data.py): SFT {messages}, preference {prompt, chosen, rejected},
WRPO {prompt, y_ws, y_wt, y_l}, plus bookkeeping fields the loader ignores (id, source,
scores), and counts of every prompt dropped, by reason.

Eligibility: an answer with no score (a judge reply that did not parse) is never chosen.
On verified pools (math, code) `correct` decides: chosen answers must be correct and
rejected ones incorrect; instruction answers have no verdict and are ranked by score alone.

Ties are broken deterministically, so the same scores always give the same data:
  best  = highest score, then the SHORTER text (a correct answer that says less is less
          likely to carry wrong reasoning into SFT, and length bias is the known failure of
          preference data), then the source's position in the recipe, then the sample index;
  worst = lowest score, then the LONGER text, then source position, then sample index.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

VERIFIED = ("math", "code")


def _eligible(a, want_correct: bool | None) -> bool:
    if a.score is None or not a.text.strip():
        return False
    return want_correct is None or a.correct is want_correct


def best(answers: list, order: dict[str, int], correct: bool | None = None):
    pool = [a for a in answers if _eligible(a, correct)]
    if not pool:
        return None
    return min(pool, key=lambda a: (-a.score, len(a.text), order.get(a.source, len(order)), a.index))


def worst(answers: list, order: dict[str, int], correct: bool | None = None):
    pool = [a for a in answers if _eligible(a, correct)]
    if not pool:
        return None
    return min(pool, key=lambda a: (a.score, -len(a.text), order.get(a.source, len(order)), a.index))


def _order(sources: list[str]) -> dict[str, int]:
    return {s: i for i, s in enumerate(sources)}


def best_answer(item, answers: list, order: dict[str, int]):
    """The SFT answer: best correct one on verified pools, best scored one otherwise."""
    return best(answers, order, True if item.kind in VERIFIED else None)


def with_y_ws(items: list, answers: dict[str, list], sources: list[str]) -> list:
    """The prompts that have an SFT answer, i.e. a WRPO y_ws: the only ones worth target samples."""
    order = _order(sources)
    return [it for it in items if best_answer(it, answers.get(it.id, []), order) is not None]


def select_sft(items: list, answers: dict[str, list], sources: list[str]) -> tuple[list[dict], Counter]:
    order, rows, dropped = _order(sources), [], Counter()
    for it in items:
        a = best_answer(it, answers.get(it.id, []), order)
        if a is None:
            dropped["no answers" if not answers.get(it.id) else
                    "no correct answer" if it.kind in VERIFIED else "no scored answer"] += 1
            continue
        rows.append({"id": it.id, "pool": it.pool, "messages": [*it.messages, {"role": "assistant", "content": a.text}],
                     "source": a.source, "score": a.score})
    return rows, dropped


def same_source_pair(item, answers: list, source: str, order: dict[str, int], gap_min: float, gap_max: float,
                     gap_on_verified: bool) -> tuple[Any, Any, str | None]:
    """(chosen, rejected, None) for one source's answers, or (None, None, why not)."""
    mine = [a for a in answers if a.source == source]
    verified = item.kind in VERIFIED
    chosen = best(mine, order, True if verified else None)
    rejected = worst(mine, order, False if verified else None)
    if chosen is None or rejected is None:
        return None, None, "no correct and incorrect answer from one source" if verified else "no scored answers"
    if chosen is rejected or chosen.text.strip() == rejected.text.strip():
        return None, None, "chosen equals rejected"
    gap = chosen.score - rejected.score
    if (not verified or gap_on_verified) and not (gap_min <= gap <= gap_max):
        return None, None, "reward gap outside window"
    return chosen, rejected, None


def _source_rank(ans: list, source: str, order: dict[str, int], verified: bool) -> tuple:
    """Sources whose best answer is best come first (same order as `best`)."""
    b = best([a for a in ans if a.source == source], order, True if verified else None)
    pos = order.get(source, len(order))
    return (0, -b.score, len(b.text), pos) if b else (1, 0, 0, pos)


def select_dpo(items: list, answers: dict[str, list], sources: list[str], gap_min: float = 0.01,
               gap_max: float = 0.1, gap_on_verified: bool = False) -> tuple[list[dict], Counter]:
    """One pair per prompt: best vs worst answer of the SAME source (FuseChat-3.0), reward gap
    in [gap_min, gap_max]. Sources are tried from the one whose best answer is best overall
    (the SFT answer's source) down; the first source with a valid pair gives the row. The
    drop reason counted is the best source's."""
    order, rows, dropped = _order(sources), [], Counter()
    for it in items:
        ans = answers.get(it.id, [])
        present = {a.source for a in ans}
        if not present:
            dropped["no answers"] += 1
            continue
        verified = it.kind in VERIFIED

        first_reason = None
        for s in sorted(present, key=lambda s, ans=ans, v=verified: _source_rank(ans, s, order, v)):
            c, r, why = same_source_pair(it, ans, s, order, gap_min, gap_max, gap_on_verified)
            if c is not None:
                rows.append({"id": it.id, "pool": it.pool, "prompt": it.prompt, "chosen": c.text,
                             "rejected": r.text, "source": s, "chosen_score": c.score, "rejected_score": r.score,
                             "gap": c.score - r.score})
                break
            first_reason = first_reason or why
        else:
            dropped[first_reason or "no pair"] += 1
    return rows, dropped


def select_wrpo(items: list, answers: dict[str, list], target_answers: dict[str, list],
                sources: list[str], without_correct_target: str = "drop") -> tuple[list[dict], Counter]:
    """WRPO quadruples: y_ws = the best source answer (the SFT answer), y_wt = the target's best
    own sample, y_l = the target's worst; on verified pools y_wt must be correct and y_l
    incorrect, on instruction pools y_wt must score strictly higher than y_l. A verified prompt
    with no correct target sample is dropped, or with `without_correct_target="y_ws"` keeps
    y_ws as y_wt (the row is then DPO(y_ws > y_l); `y_wt_from` says so)."""
    order, rows, dropped = _order(sources), [], Counter()
    for it in items:
        ws = best_answer(it, answers.get(it.id, []), order)
        if ws is None:
            dropped["no source answer to use as y_ws"] += 1
            continue
        tgt = target_answers.get(it.id, [])
        if not tgt:
            dropped["no target samples"] += 1
            continue
        verified = it.kind in VERIFIED
        wt = best(tgt, order, True if verified else None)
        lo = worst(tgt, order, False if verified else None)
        wt_is_ws = wt is None and verified and without_correct_target == "y_ws" and lo is not None
        if wt_is_ws:
            wt = ws
        if wt is None:
            dropped["no correct target sample" if verified else "no scored target sample"] += 1
            continue
        if lo is None:
            dropped["no incorrect target sample"] += 1
            continue
        if wt is lo or wt.text.strip() == lo.text.strip() or (not verified and wt.score <= lo.score):
            dropped["target samples tie"] += 1
            continue
        rows.append({"id": it.id, "pool": it.pool, "prompt": it.prompt, "y_ws": ws.text, "y_wt": wt.text,
                     "y_l": lo.text, "source": ws.source, "y_ws_score": ws.score, "y_wt_score": wt.score,
                     "y_l_score": lo.score, **({"y_wt_from": "y_ws"} if wt_is_ws else {})})
    return rows, dropped


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoredAnswer(_Row):
    source: str
    text: str
    score: float | None
    correct: bool | None = None
    weight: float | None = Field(None, description="an explicit weight (objective option weighting: given)")


class SourcePair(_Row):
    source: str
    chosen: str
    rejected: str
    chosen_score: float | None
    rejected_score: float | None
    weight: float | None = None


class FuseRow(_Row):
    """One prompt with every source's usable answers and one same-source pair per source
    (fuse.jsonl; the trainer's `fuse_sft` / `fuse_pref` row formats, FuseRL). Scores stay raw:
    the objective's weight function turns them into weights, so ablating it needs no new data."""

    id: str
    pool: str = ""
    prompt: str | list[dict]
    verified: bool = False
    answers: list[ScoredAnswer] = Field(default_factory=list)
    pairs: list[SourcePair] = Field(default_factory=list)


def select_fuse(items: list, answers: dict[str, list], sources: list[str], gap_min: float = 0.01,
                gap_max: float = 0.1, gap_on_verified: bool = False) -> tuple[list[dict], Counter]:
    """FuseRL rows: per prompt, every eligible answer of every source (correct ones on verified
    pools, scored ones otherwise; ordered like `best`) and one `same_source_pair` per source that
    has one. A prompt with neither is dropped with the reason."""
    order, rows, dropped = _order(sources), [], Counter()
    for it in items:
        ans = answers.get(it.id, [])
        if not ans:
            dropped["no answers"] += 1
            continue
        verified = it.kind in VERIFIED
        usable = sorted((a for a in ans if _eligible(a, True if verified else None)),
                        key=lambda a: (-a.score, len(a.text), order.get(a.source, len(order)), a.index))
        pairs = []
        for s in sorted({a.source for a in ans}, key=lambda s: order.get(s, len(order))):
            c, r, _ = same_source_pair(it, ans, s, order, gap_min, gap_max, gap_on_verified)
            if c is not None:
                pairs.append(SourcePair(source=s, chosen=c.text, rejected=r.text, chosen_score=c.score,
                                        rejected_score=r.score))
        if not usable and not pairs:
            dropped["no correct answer and no pair" if verified else "no scored answer"] += 1
            continue
        row = FuseRow(id=it.id, pool=it.pool, prompt=it.prompt, verified=verified, pairs=pairs,
                      answers=[ScoredAnswer(source=a.source, text=a.text, score=a.score, correct=a.correct)
                               for a in usable])
        rows.append(row.model_dump(mode="json"))
    return rows, dropped


def source_stats(items: list, answers: dict[str, list], sources: list[str], sft_rows: list[dict],
                 dpo_rows: list[dict], wrpo_rows: list[dict] | None = None) -> dict[str, Any]:
    """Per source: how often its answer was chosen, how often it was right, how long it talks."""
    kind = {it.id: it.kind for it in items}
    acc: dict[str, dict[str, Any]] = {s: defaultdict(float) for s in sources}
    for it in items:
        for a in answers.get(it.id, []):
            if a.source not in acc:
                continue
            d = acc[a.source]
            d["answers"] += 1
            d["chars"] += len(a.text)
            d["tokens"] += a.tokens
            d["truncated"] += a.finish_reason == "length"
            if a.score is not None:
                d["scored"] += 1
                d["score_sum"] += a.score
            if kind[it.id] in VERIFIED and a.correct is not None:
                d["verified"] += 1
                d["correct"] += bool(a.correct)
    chosen = Counter(r["source"] for r in sft_rows)
    pairs = Counter(r["source"] for r in dpo_rows)
    ws = Counter(r["source"] for r in (wrpo_rows or []))
    out = {}
    for s in sources:
        d = acc[s]
        n = d["answers"]
        out[s] = {
            "answers": int(n),
            "chosen_sft": int(chosen[s]),
            "chosen_share": chosen[s] / len(sft_rows) if sft_rows else None,
            "dpo_pairs": int(pairs[s]),
            "wrpo_y_ws": int(ws[s]),
            "correct_rate": d["correct"] / d["verified"] if d["verified"] else None,
            "verified_answers": int(d["verified"]),
            "mean_score": d["score_sum"] / d["scored"] if d["scored"] else None,
            "mean_chars": d["chars"] / n if n else None,
            "mean_tokens": d["tokens"] / n if n else None,
            "truncation_rate": d["truncated"] / n if n else None,
        }
    return out
