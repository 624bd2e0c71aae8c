"""`harness fuse data`: pools -> samples -> scores -> selection -> contamination -> files.

Output directory (every file rewritten atomically at the end of a run):
  sft.jsonl            {id, pool, messages, source, score}                  (trainer format "sft")
  dpo.jsonl            {id, pool, prompt, chosen, rejected, source, gap...} (trainer format "pref")
  wrpo.jsonl           {id, pool, prompt, y_ws, y_wt, y_l, source, ...}     (trainer format "wrpo"; needs `target`)
  fuse.jsonl           {id, pool, prompt, verified, answers[], pairs[]}     (FuseRow: trainer formats "fuse_sft",
                       "fuse_pref"): every source's usable answers and one same-source pair per source (FuseRL)
  answers.jsonl        every scored answer per prompt (sources and target), for audits
  stats.json           per-source statistics (chosen share, correctness, lengths, truncation)
  contamination.json   the n-gram hits, what was dropped, which benchmarks were checked/skipped
  report.json          pools (dropped empty/duplicate), sampling per model, scorers, selection drops
Resumable: every answer is in the store the moment it exists and reward/judge scores are
cached too, so re-running the same recipe after a kill or a failed source only generates
what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    output_dir: Path
    counts: dict[str, int]
    report: dict[str, Any]
    failed_models: dict[str, str] = field(default_factory=dict)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def score_answers(items: list, answers: dict[str, list], recipe, store, seed: int = 0,
                  judge_state: dict | None = None, reward_state: dict | None = None) -> dict[str, Any]:
    """Score in place; returns {pool: what scored it}. Reward model / judge are built once and
    kept in the *_state dicts so sources and target share one engine."""
    from trainers.fusion import scoring

    by_kind: dict[str, list] = {"math": [], "code": [], "instruction": []}
    for it in items:
        if answers.get(it.id):
            by_kind[it.kind].append((it, answers[it.id]))
    records: dict[str, Any] = {
        "math": {"type": "verifier", "name": "math-verify (extract_answer + is_equivalent vs gold)"},
        "code": {"type": "verifier", "name": "sandbox (MBPP test_list as check())"}}
    for it, ans in by_kind["math"]:
        scoring.score_math(it, ans)
    if by_kind["code"]:
        scoring.score_code(by_kind["code"], timeout_s=recipe.scoring.code_timeout_s)
    if by_kind["instruction"]:
        s = recipe.scoring
        if s.reward_model:
            state = reward_state if reward_state is not None else {}
            if "rm" not in state:
                state["rm"] = scoring.RewardModel(s.reward_model, store, s.reward_batch_size)
            records["instruction"] = scoring.score_with_reward(by_kind["instruction"], state["rm"])
        else:
            state = judge_state if judge_state is not None else {}
            if "judge" not in state:
                from harness.judges import JudgePool

                # one judge for the data stage; build_data closes it (state["judge"].close())
                state["judge"] = JudgePool(store, seed=seed, backend=s.judge_backend).get(s.judge)
            records["instruction"] = scoring.score_with_judge(by_kind["instruction"], state["judge"])
    return {it.pool: records.get(it.kind) for it in items}


def build_data(recipe, base: Path, store, data_dir: Path | None = None, progress: bool = True,
               backend_factories: dict[str, Any] | None = None) -> BuildResult:
    """Run the whole data stage. `backend_factories` (label -> factory) is for unit tests only:
    it swaps the engine of a source, never the runner, the store or the scorers."""
    from harness.models import resolve_model
    from trainers.fusion import contamination, selection
    from trainers.fusion.pools import load_pools
    from trainers.fusion.sampling import build_requests, sample_model

    t_start = time.perf_counter()
    factories = backend_factories or {}
    # output_dir and data_dir are relative to the working directory, as in the training recipes;
    # pool files are relative to the recipe (they usually sit beside it).
    out_dir = Path(recipe.output_dir)
    if recipe.data_dir:
        data_dir = Path(recipe.data_dir)
    elif data_dir is None and os.environ.get("HARNESS_DATA_DIR"):
        data_dir = Path(os.environ["HARNESS_DATA_DIR"])

    # Fail on bad names before hours of sampling: models, benchmarks.
    seen: dict[str, str] = {}
    for s in recipe.sources:
        fp = resolve_model(s.model, store).fingerprint
        if fp in seen:  # same weights, same cache keys: the "second" source would replay the first's answers
            raise UsageError(f"sources {seen[fp]!r} and {s.name!r} are the same model ({s.model}); their answers "
                             "would be identical. Give each source a different model")
        seen[fp] = s.name
    if recipe.target is not None:
        resolve_model(recipe.target.model, store)
    if recipe.contamination.benchmarks is not None:
        from harness.benchmarks import BENCHMARKS

        for b in recipe.contamination.benchmarks:
            BENCHMARKS.check(b)

    items, pool_reports = load_pools(recipe.pools, data_dir, base)
    pool_n = {p.name: p.n or recipe.sampling.n for p in recipe.pools}
    requests = build_requests(items, lambda it: pool_n[it.pool], recipe.sampling)
    source_names = [s.name for s in recipe.sources]
    answers: dict[str, list] = {it.id: [] for it in items}
    sampling_reports: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for s in recipe.sources:
        got, rep = sample_model(s.name, s.model, requests, store, s.backend, s.backend_options, progress,
                                backend_factory=factories.get(s.name), sampling=recipe.sampling)
        sampling_reports[s.name] = rep.to_dict()
        if rep.failed:
            failed[s.name] = rep.failed
        for rid, ans in got.items():
            answers[rid].extend(ans)

    judge_state: dict = {}
    reward_state: dict = {}
    scorers = score_answers(items, answers, recipe, store, recipe.sampling.seed, judge_state, reward_state)

    target_answers: dict[str, list] = {}
    if recipe.target is not None:
        t = recipe.target
        # Target samples only serve WRPO rows, and a row needs a y_ws: prompts no source got
        # right (most of a hard pool for small models) would be sampled for nothing.
        t_items = selection.with_y_ws(items, answers, source_names)
        t_requests = build_requests(t_items, lambda it: t.n or max(pool_n[it.pool], 2), recipe.sampling)
        target_answers, rep = sample_model("target", t.model, t_requests, store, t.backend, t.backend_options,
                                           progress, backend_factory=factories.get("target"),
                                           sampling=recipe.sampling)
        sampling_reports["target"] = {**rep.to_dict(), "prompts_without_y_ws": len(items) - len(t_items)}
        if rep.failed:
            failed["target"] = rep.failed
        score_answers(items, target_answers, recipe, store, recipe.sampling.seed, judge_state, reward_state)
    if "judge" in judge_state:
        judge_state["judge"].close()

    sel = recipe.selection
    sft, sft_drop = selection.select_sft(items, answers, source_names)
    dpo, dpo_drop = selection.select_dpo(items, answers, source_names, sel.gap_min, sel.gap_max, sel.gap_on_verified)
    fuse, fuse_drop = selection.select_fuse(items, answers, source_names, sel.gap_min, sel.gap_max,
                                            sel.gap_on_verified)
    wrpo, wrpo_drop = (selection.select_wrpo(items, answers, target_answers, source_names,
                                             sel.wrpo_without_correct_target)
                       if recipe.target is not None else ([], Counter()))

    # Contamination: every prompt, and every answer that would be trained towards.
    c = recipe.contamination
    index = contamination.build_index(data_dir, c.n, c.benchmarks, c.hub)
    prompt_of = {it.id: it.prompt for it in items}
    texts = [(it.id, "prompt", it.prompt) for it in items if answers.get(it.id)]
    texts += [(r["id"], "sft.response", r["messages"][-1]["content"]) for r in sft]
    texts += [(r["id"], "dpo.chosen", r["chosen"]) for r in dpo]
    texts += [(r["id"], f"wrpo.{k}", r[k]) for r in wrpo for k in ("y_ws", "y_wt")]
    texts += [(r["id"], "fuse.answer", a["text"]) for r in fuse for a in r["answers"]]
    texts += [(r["id"], "fuse.chosen", p["chosen"]) for r in fuse for p in r["pairs"]]
    hits = contamination.check_texts(texts, index)
    hit_ids = {h["id"] for h in hits}
    before = {"sft": len(sft), "dpo": len(dpo), "wrpo": len(wrpo)}
    if c.drop and hit_ids:
        sft = [r for r in sft if r["id"] not in hit_ids]
        dpo = [r for r in dpo if r["id"] not in hit_ids]
        wrpo = [r for r in wrpo if r["id"] not in hit_ids]
        fuse = [r for r in fuse if r["id"] not in hit_ids]
    if hits:
        log.warning("contamination: %d prompts overlap a benchmark (%s); %s", len(hit_ids),
                    ", ".join(sorted({h['benchmark'] for h in hits})), "dropped" if c.drop else "kept (drop: false)")

    stats = selection.source_stats(items, answers, source_names, sft, dpo, wrpo)
    if target_answers:
        stats_t = selection.source_stats(items, target_answers, ["target"], [], [], [])
        stats["target"] = {k: v for k, v in stats_t["target"].items()
                           if k not in ("chosen_sft", "chosen_share", "dpo_pairs", "wrpo_y_ws")}

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out_dir / "sft.jsonl", sft)
    _write_jsonl(out_dir / "dpo.jsonl", dpo)
    _write_jsonl(out_dir / "fuse.jsonl", fuse)
    if recipe.target is not None:
        _write_jsonl(out_dir / "wrpo.jsonl", wrpo)
    _write_jsonl(out_dir / "answers.jsonl", [
        {"id": it.id, "pool": it.pool, "kind": it.kind, "prompt": prompt_of[it.id],
         "answers": [a.to_dict() for a in answers.get(it.id, [])],
         "target_answers": [a.to_dict() for a in target_answers.get(it.id, [])]} for it in items])
    _write_json(out_dir / "stats.json", {"sources": stats, "sft_rows": len(sft), "dpo_rows": len(dpo),
                                         "wrpo_rows": len(wrpo)})
    _write_json(out_dir / "contamination.json", {
        "n": c.n, "drop": c.drop, "checked": index.loaded, "skipped": index.skipped, "ngrams": len(index.grams),
        "hits": hits, "contaminated_prompts": sorted(hit_ids), "rows_before": before,
        "rows_after": {"sft": len(sft), "dpo": len(dpo), "wrpo": len(wrpo)}})
    counts = {"prompts": len(items), "sft": len(sft), "dpo": len(dpo), "wrpo": len(wrpo), "fuse": len(fuse),
              "contaminated_prompts": len(hit_ids)}
    report = {
        "recipe": recipe.model_dump(), "data_dir": str(data_dir) if data_dir else None,
        "pools": {k: v.to_dict() for k, v in pool_reports.items()},
        "sampling": sampling_reports, "failed_models": failed, "scorers": scorers,
        "selection": {"sft_dropped": dict(sft_drop), "dpo_dropped": dict(dpo_drop), "wrpo_dropped": dict(wrpo_drop),
                      "fuse_dropped": dict(fuse_drop),
                      "wrpo_y_wt_from_y_ws": sum(r.get("y_wt_from") == "y_ws" for r in wrpo),
                      "tie_break": "best: score desc, shorter text, source order, sample index; "
                                   "worst: score asc, longer text, source order, sample index"},
        "counts": counts, "seconds": round(time.perf_counter() - t_start, 2),
    }
    _write_json(out_dir / "report.json", report)
    return BuildResult(output_dir=out_dir, counts=counts, report=report, failed_models=failed)


def check_recipe_paths(recipe, base: Path) -> None:
    """Cheap checks the CLI runs before anything heavy (file pools exist)."""
    for p in recipe.pools:
        if p.path:
            path = Path(p.path) if Path(p.path).is_absolute() else base / p.path
            if not path.is_file():
                raise UsageError(f"pool {p.name!r}: {path} does not exist")
