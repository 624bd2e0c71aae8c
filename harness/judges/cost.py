"""The judge cost ledger `harness show RUN` prints: per judged benchmark, who judged, how
many calls were made or reused, the tokens they used and, with a price table, what the
calls made in this run cost.

Price table (YAML or JSON), USD per million tokens, keyed by judge model id (the served
model name, e.g. the part before '@' in openai:<model>@<url>) or the full --judge spec:

    gpt-4-1106-preview: {input: 10.00, output: 30.00}
    gpt-4.1: {input: 2.00, output: 8.00}

Passed with `HARNESS_PRICES=FILE` (or `load_prices(path)`). Models not in the table get
no cost (shown as unknown, never as zero).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.errors import UsageError

PRICES_ENV = "HARNESS_PRICES"


def load_prices(path: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    path = path or os.environ.get(PRICES_ENV)
    if not path:
        return {}
    from harness.yamlio import load_yaml_mapping

    p = Path(path)
    data = load_yaml_mapping(p, "price table", f"set by ${PRICES_ENV} or --prices; it maps model ids to "
                             "{input: USD/1M, output: USD/1M}")
    out = {}
    for model, price in data.items():
        if not (isinstance(price, dict) and {"input", "output"} <= set(price)
                and all(isinstance(price[k], (int, float)) for k in ("input", "output"))):
            raise UsageError(f"{p}: price of {model!r} must be {{input: <USD per 1M>, output: <USD per 1M>}}, "
                             f"got {price!r}")
        out[str(model)] = {"input": float(price["input"]), "output": float(price["output"])}
    return out


def cost_ledger(results: dict[str, Any], prices: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """One row per judged benchmark, plus a 'total' row when there is more than one."""
    prices = prices or {}
    rows = []
    for name, b in (results.get("benchmarks") or {}).items():
        j = b.get("judge")
        if not isinstance(j, dict):
            continue
        price = prices.get(j.get("model_id")) or prices.get(j.get("model"))
        cost = total_cost = None
        pt, ct = j.get("prompt_tokens", 0), j.get("completion_tokens", 0)
        cpt, cct = j.get("cached_prompt_tokens", 0), j.get("cached_completion_tokens", 0)
        if price is not None:
            cost = (pt * price["input"] + ct * price["output"]) / 1e6
            total_cost = cost + (cpt * price["input"] + cct * price["output"]) / 1e6
        rows.append({"benchmark": name, "judge": j.get("model_id"), "comparable": bool(j.get("comparable")),
                     "prompt_version": j.get("prompt_version"), "calls": j.get("calls", 0),
                     "cached": j.get("cached", 0), "backend_calls": j.get("backend_calls", 0),
                     "errors": j.get("errors", 0), "prompt_tokens": pt,
                     "completion_tokens": ct, "cached_prompt_tokens": cpt, "cached_completion_tokens": cct,
                     "cost_usd": cost, "total_cost_usd": total_cost})
    if len(rows) > 1:
        total: dict[str, Any] = {"benchmark": "total", "judge": "", "comparable": all(r["comparable"] for r in rows),
                                 "prompt_version": ""}
        for k in ("calls", "cached", "backend_calls", "errors", "prompt_tokens", "completion_tokens",
                  "cached_prompt_tokens", "cached_completion_tokens"):
            total[k] = sum(r[k] for r in rows)
        for k in ("cost_usd", "total_cost_usd"):
            costs = [r[k] for r in rows]
            total[k] = sum(costs) if all(c is not None for c in costs) else None
        rows.append(total)
    return rows


def ledger_table(rows: list[dict[str, Any]]):
    """The ledger as a compact rich Table (the CLI prints it)."""
    from rich.table import Table

    def usd(v):
        return "?" if v is None else f"{v:.4f}"

    t = Table(title="judge cost ledger (made = calls sent in this run; cached = reused, free now)")
    for c in ("benchmark", "judge", "comparable", "made/cached/errors", "tokens in/out (made)",
              "tokens in/out (cached)", "USD run", "USD total"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["benchmark"], r["judge"] or "", "yes" if r["comparable"] else "NO",
                  f"{r['backend_calls']}/{r['cached']}/{r['errors']}", f"{r['prompt_tokens']}/{r['completion_tokens']}",
                  f"{r['cached_prompt_tokens']}/{r['cached_completion_tokens']}", usd(r["cost_usd"]),
                  usd(r["total_cost_usd"]))
    return t
