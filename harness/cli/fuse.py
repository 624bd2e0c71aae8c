"""`harness fuse data --recipe R.yaml`: build fusion training data (FuseChat-3.0 / WRPO) from
the sources' sampled answers. See docs/fusion.md and trainers/fusion/."""

from __future__ import annotations

import json
from pathlib import Path

from harness.cli._common import console, err_console, open_store, parse_key_values


def register(sub, parent) -> None:
    fu = sub.add_parser("fuse", help="build fusion data: sample sources, score, select SFT/DPO/WRPO rows")
    fu_sub = fu.add_subparsers(dest="fuse_command", required=True)
    d = fu_sub.add_parser("data", parents=[parent],
                          help="sample every source on the prompt pools, score, select, decontaminate, write")
    d.add_argument("--recipe", required=True, help="fusion recipe YAML (trainers/recipes/fusion_*.yaml)")
    d.add_argument("--output-dir", help="write the data here (overrides the recipe's output_dir)")
    d.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override top-level recipe keys, e.g. output_dir=out (YAML-typed)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_data)
    t = fu_sub.add_parser("teacher", parents=[parent],
                          help="token-level fusion: capture the pivot's and every source's top-k log-probs, "
                               "map cross-tokenizer vocabularies (docs/fusion.md)")
    t.add_argument("--recipe", required=True, help="teacher recipe YAML (trainers/recipes/distill_cpu.yaml)")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override top-level recipe keys (YAML-typed)")
    # the pipeline passes --no-progress to every `harness fuse` stage; capture draws no bars of its own
    t.add_argument("--no-progress", action="store_true", help="accepted like the other stages (no bars here)")
    t.set_defaults(func=cmd_teacher)


def cmd_teacher(args) -> int:
    from trainers.distill.recipe import load_recipe, run_teacher

    recipe, base = load_recipe(args.recipe, parse_key_values(args.overrides, "override"))
    manifest, reports = run_teacher(recipe, base, open_store(args))
    for e in [manifest.pivot, *manifest.sources]:
        r = reports[e.name]
        how = "plain text (no chat template)" if e.plain else "chat template"
        cov = "" if e.coverage is None else f", {100 * e.coverage:.0f}% of pivot positions aligned one-to-one"
        console.print(f"{e.name} ({e.model}): {r['rows']} rows, {r['tokens']} tokens, {r['shards_reused']} shards "
                      f"reused, {r['shards_written']} written, {r['rows_cached']} rows from the store; {how}"
                      f"{'' if e.same_tokenizer else ', cross-tokenizer'}{cov}")
        for rid, why in r["errors"].items():
            err_console.print(f"[bold red]error:[/] {e.name} row {rid}: {why}")
    cut = manifest.truncation
    if cut is not None and cut.truncated:
        console.print(f"{cut.truncated} of {cut.rows} rows cut to max_length={cut.max_length} pivot tokens (every "
                      "model scores the same cut text; they lose their EOS)")
    if cut is not None and cut.over_context:
        console.print(f"rows longer than a model's context, cut for every model to fit: {cut.over_context} "
                      f"(limits {cut.context_limits})")
    if reports["dropped_rows"]:
        console.print(f"dropped rows: {reports['dropped_rows']}")
    console.print(f"wrote {Path(manifest.map_cache).parent / 'teacher.json'}")
    return 1 if any(reports[e.name]["errors"] for e in [manifest.pivot, *manifest.sources]) else 0


def cmd_data(args) -> int:
    from trainers.fusion.config import load_recipe
    from trainers.fusion.pipeline import build_data, check_recipe_paths

    overrides = parse_key_values(args.overrides, "override")
    if args.output_dir:
        overrides["output_dir"] = str(Path(args.output_dir).resolve())
    recipe, base = load_recipe(args.recipe, overrides)
    check_recipe_paths(recipe, base)
    store = open_store(args)
    res = build_data(recipe, base, store, data_dir=Path(args.data_dir) if args.data_dir else None,
                     progress=not args.no_progress)
    rep = res.report
    for name, p in rep["pools"].items():
        extra = f" (dropped {p['empty']} empty, {p['duplicate']} duplicate)" if p["empty"] or p["duplicate"] else ""
        console.print(f"pool {name}: {p['kept']}/{p['rows']} prompts{extra}")
    for name, s in rep["sampling"].items():
        console.print(f"{name} ({s['model']}): {s['requests']} prompts, {s['cached']} cached, "
                      f"{s['generated']} generated, {s['errors']} errors"
                      + (f", FAILED: {s['failed']}" if s["failed"] else ""))
    stats = json.loads((res.output_dir / "stats.json").read_text())["sources"]
    for name, s in stats.items():
        cr = s.get("correct_rate")
        share = s.get("chosen_share")
        console.print(f"  {name}: correct {'n/a' if cr is None else f'{100 * cr:.0f}%'}, chosen "
                      f"{'n/a' if share is None else f'{100 * share:.0f}%'}, mean {s['mean_tokens'] or 0:.0f} tokens")
    sel = rep["selection"]
    for what in ("sft", "dpo", "wrpo"):
        dropped = sel[f"{what}_dropped"]
        why = "; ".join(f"{n} {r}" for r, n in dropped.items())
        console.print(f"{what}: {res.counts[what]} rows" + (f" (dropped: {why})" if why else ""))
    if sel.get("wrpo_y_wt_from_y_ws"):
        console.print(f"  wrpo: {sel['wrpo_y_wt_from_y_ws']} rows use y_ws as y_wt (no correct target sample; "
                      "selection.wrpo_without_correct_target: y_ws)")
    cont = json.loads((res.output_dir / "contamination.json").read_text())
    console.print(f"contamination ({cont['n']}-grams vs {', '.join(cont['checked']) or 'no benchmarks'}): "
                  f"{len(cont['contaminated_prompts'])} prompts hit"
                  + (", dropped" if cont["drop"] and cont["contaminated_prompts"] else ""))
    if cont["skipped"]:
        console.print(f"  not checked (data missing): {', '.join(cont['skipped'])}")
    console.print(f"wrote {res.output_dir}")
    if res.failed_models:
        for name, why in res.failed_models.items():
            err_console.print(f"[bold red]error:[/] {name} failed mid-sampling: {why}. Its finished answers are in "
                              "the store and in this data; run the same command again to resume.")
        return 1
    return 0
