"""`harness models`: built-in aliases, what is cached, and models registered in the store."""

from __future__ import annotations

from rich.markup import escape

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
        for c in ("name", "kind", "parents", "fingerprint", "template", "path"):
            t.add_column(c, overflow="fold")
        for m in rows:
            t.add_row(m.name, m.kind, _lineage(store, m), m.fingerprint[:24], m.template_hash or "", m.path or "")
        console.print(t)
    return 0


def _lineage(store, m) -> str:
    """Every parent with its role; a merge adds its method, SCE semantics and fallback count."""
    parts = [p.parent if p.role == "trained-from" else f"{p.parent} ({p.role})" for p in store.model_parents(m.name)]
    merge = (m.info or {}).get("merge")
    if merge:
        how = merge["method"]
        if merge.get("uniform_fallback_tensors") is not None:
            how += f", {merge['uniform_fallback_tensors']}/{merge['sce_tensors']} tensors uniform"
        parts.append(f"merge: {how}")
    return escape("\n".join(parts))  # names may contain [brackets], which rich reads as markup
