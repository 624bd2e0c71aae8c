"""`harness models`: built-in aliases, what is cached, and models registered in the store."""

from __future__ import annotations

from harness.cli._common import console, open_store


def register(sub, parent) -> None:
    p = sub.add_parser("models", parents=[parent], help="list model aliases, cached conversions and stored models")
    p.set_defaults(func=cmd_models)


def cmd_models(args) -> int:
    from rich.table import Table

    from harness.models import ALIASES, cached_aliases

    t = Table(title="built-in aliases")
    for c in ("alias", "description", "cached at"):
        t.add_column(c)
    cached = cached_aliases()
    for name, a in ALIASES.items():
        t.add_row(name, a.description, str(cached[name]) if cached[name] else "not yet (converted on first use)")
    console.print(t)
    store = open_store(args)
    rows = store.list_models()
    if rows:
        t = Table(title=f"models in {args.store}")
        for c in ("name", "kind", "parent", "fingerprint", "template", "path"):
            t.add_column(c)
        for m in rows:
            t.add_row(m.name, m.kind, m.parent or "", m.fingerprint[:24], m.template_hash or "", m.path or "")
        console.print(t)
    return 0
