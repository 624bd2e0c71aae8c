"""`harness merge --config M.yaml`: merge models with mergekit and register the result as a
candidate whose parents are the base and every merged model. See docs/fusion.md (merging)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.cli._common import console, open_store, parse_key_values
from harness.errors import UsageError


def register(sub, parent) -> None:
    p = sub.add_parser("merge", parents=[parent],
                       help="merge models with mergekit (SCE, TIES, ...) into a registered candidate")
    p.add_argument("--config", required=True,
                   help="mergekit config YAML; models may be store candidates or aliases "
                        "(trainers/recipes/merge_*.yaml). merge_method sce_fuseai = the FuseAI fork's SCE")
    p.add_argument("--name", help="candidate name in the store (default: the config file's stem)")
    p.add_argument("--output-dir", help="merged model directory (default: <store dir>/merges/<name>)")
    p.add_argument("--lazy-unpickle", action="store_true",
                   help="mergekit's lazy loader for .bin checkpoints (low memory)")
    p.add_argument("--low-cpu-memory", action="store_true", help="mergekit: keep fewer tensors in memory")
    p.add_argument("--out-shard-size", help="mergekit: output shard size, e.g. 1B or 500M")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other mergekit MergeOptions field, e.g. num_threads=2 (repeatable)")
    p.set_defaults(func=cmd_merge)


def _options(args) -> dict:
    from mergekit.common import parse_kmb

    opts = parse_key_values(args.option, "mergekit option")
    if args.lazy_unpickle:
        opts["lazy_unpickle"] = True
    if args.low_cpu_memory:
        opts["low_cpu_memory"] = True
    if args.out_shard_size:
        opts["out_shard_size"] = parse_kmb(args.out_shard_size)
    return opts


def cmd_merge(args) -> int:
    if importlib.util.find_spec("mergekit") is None:
        raise UsageError("`harness merge` needs mergekit (LGPL-3.0, an optional extra): "
                         "pip install 'fuse-harness[merge]'")
    from trainers.merge.run import run_merge

    name = args.name or Path(args.config).stem
    store = open_store(args)
    out = Path(args.output_dir) if args.output_dir else Path(args.store).parent / "merges" / name
    res = run_merge(args.config, name=name, out_dir=out, store=store, options=_options(args))
    p = res.provenance
    console.print(f"merged {p.method} in {p.seconds:.1f}s -> {res.path}", highlight=False)
    console.print("parents: " + ", ".join(f"{m} ({role})" for m, role in res.parents), highlight=False)
    if p.sce_tensors is not None:
        console.print(f"SCE semantics: {p.sce_semantics}\nuniform-weight fallback: "
                      f"{p.uniform_fallback_tensors} of {p.sce_tensors} tensors", highlight=False)
    console.print(f"registered candidate {res.name!r}; evaluate it with "
                  f"`harness run suite SUITE --model {res.name}`", highlight=False)
    return 0
