"""HTML for a Leaderboard: one self-contained index page plus drill-down pages.

Self-contained means: CSS, JavaScript and charts (SVG) are inlined, nothing is fetched, so
the directory can be opened from file:// offline, mailed, or kept as a CI artefact. Every
string that came from a model, a judge or a dataset goes through Jinja2's autoescape, so an
answer containing <script> is shown as text, never run.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from leaderboards.build import Leaderboard, fmt, run_texts

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"

CHART_W, BAR_H = 420, 18
SHARE_W = 100  # the fusion table's share-of-SFT bar


@dataclass(frozen=True)
class PageLink:
    """A page written beside index.html by another module (e.g. the bake-off's fusion.html),
    linked from the index's header so a reader finds it."""

    href: str  # relative to index.html
    text: str


def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.0f}%"
    env.filters["pct1"] = lambda v: "–" if v is None else f"{100 * v:.1f}%"
    env.filters["num"] = lambda v: "–" if v is None else (f"{v:.0f}" if isinstance(v, float) else str(v))
    env.filters["p"] = lambda p: "" if p is None else (f"{p:.1e}" if p < 0.001 else f"{p:.3f}")
    env.filters["sortval"] = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"
    env.filters["js"] = lambda v: json.dumps(v, sort_keys=True)
    return env


def _natural(item_id: str):
    """Item ids are mostly row numbers: sort "10" after "9"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", item_id)]


def _scale(lb: Leaderboard) -> dict[str, float]:
    """Per-benchmark axis maximum for CI bars and charts (all rows on one scale)."""
    out = {}
    for b in lb.benchmarks:
        hi = [max(c.get("ci_high") or c["value"], c["value"]) for r in lb.rows if (c := r.cells.get(b["name"]))]
        top = max(hi) if hi else 1.0
        out[b["name"]] = 100.0 if 50 < top <= 100 else (top * 1.1 if top > 0 else 1.0)
    return out


def _x(v: float | None, top: float, width: float) -> float:
    if v is None:
        return 0.0
    return round(max(0.0, min(width, v / top * width)), 1)


def _charts(lb: Leaderboard, scale: dict[str, float]) -> list[dict[str, Any]]:
    charts = []
    for b in lb.benchmarks:
        top = scale[b["name"]]
        bars = []
        for r in lb.rows:
            c = r.cells.get(b["name"])
            if c is None:
                continue
            bars.append({"key": r.key, "role": r.entry.role, "value": c["value"],
                         "w": _x(c["value"], top, CHART_W), "lo": _x(c.get("ci_low"), top, CHART_W),
                         "hi": _x(c.get("ci_high"), top, CHART_W)})
        charts.append({"bench": b["name"], "metric": b["headline"], "top": top, "bars": bars,
                       "height": BAR_H * len(bars) + 24, "width": CHART_W})
    return charts


# Item fragments are escaped once here and reused by the item page and every diff page
# (markupsafe.escape is what Jinja2's autoescape calls); rendering them through template
# macros per item was most of the build time for large boards.
def _pre(text: str, cls: str = "") -> str:
    return f'<pre{f" class={cls!r}" if cls else ""}>{escape(text)}</pre>'


def _prompt_html(prompt) -> Markup:
    if not prompt:
        return Markup("<small>(prompt not stored)</small>")
    return Markup("".join(f"<b>{escape(m.get('role', ''))}</b>{_pre(str(m.get('content', '')))}" for m in prompt))


def _answer_html(answer, extra) -> Markup:
    out = _pre(answer, "answer") if answer is not None else "<small>(answer not stored)</small>"
    out += "".join(f"<details><summary>{escape(label)}</summary>{_pre(text)}</details>" for label, text in extra)
    return Markup(out)


def _fields_html(s: dict) -> Markup:
    """A score dict's fields other than id/score (extracted answer, gold, verdict, judge text)."""
    parts = []
    for k, v in s.items():
        if k in ("id", "score", "completion", "samples"):
            continue
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
        body = _pre(text) if len(text) > 80 or "\n" in text else str(escape(text))
        parts.append(f"<dt>{escape(k)}</dt><dd>{body}</dd>")
    return Markup(f"<dl>{''.join(parts)}</dl>" if parts else "")


def _items(scores: dict[str, dict], texts: dict[str, dict]) -> list[dict[str, Any]]:
    items = []
    for item_id in sorted(scores, key=_natural):
        s = scores[item_id]
        t = texts.get(item_id, {})
        score = s.get("score")
        items.append({"id": item_id, "score": score, "score_text": fmt(score),
                      "score_sort": "" if score is None else f"{score:.6g}",
                      "score_cls": "score-1" if score == 1 else ("score-0" if score == 0 else ""),
                      "has_prompt": bool(t.get("prompt")), "prompt_html": _prompt_html(t.get("prompt")),
                      "answer_html": _answer_html(t.get("answer"), t.get("extra") or []),
                      "fields_html": _fields_html(s)})
    return items


def write_site(lb: Leaderboard, out_dir: Path, store=None, links: Sequence[PageLink] = ()) -> Path:
    """Write index.html, items/<model>/<bench>.html and diff/<a>--<b>/<bench>.html. `links`: pages
    the caller writes beside index.html, linked from its header."""
    env = _env()
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = _scale(lb)
    bench_names = [b["name"] for b in lb.benchmarks]

    item_cache: dict[tuple[str, str], list[dict]] = {}
    for r in lb.rows:
        texts = run_texts(store, r.run)
        for b in bench_names:
            if b in r.run.scores:
                item_cache[(r.key, b)] = _items(r.run.scores[b], texts.get(b, {}))

    page = env.get_template("items.html.j2")
    for r in lb.rows:
        d = out_dir / "items" / r.slug
        d.mkdir(parents=True, exist_ok=True)
        for b in bench_names:
            if (r.key, b) in item_cache:
                (d / f"{b}.html").write_text(page.render(lb=lb, row=r, bench=b, items=item_cache[(r.key, b)]),
                                             encoding="utf-8")

    diffs = []
    diff_page = env.get_template("diff.html.j2")
    for a_key, b_key in lb.pairs():
        a, b = lb.row(a_key), lb.row(b_key)
        d = out_dir / "diff" / f"{a.slug}--{b.slug}"
        bench_links = []
        for bench in bench_names:
            ia = {i["id"]: i for i in item_cache.get((a.key, bench), [])}
            ib = {i["id"]: i for i in item_cache.get((b.key, bench), [])}
            shared = [i for i in ia if i in ib]
            if not shared:
                continue
            changed = [(ia[i], ib[i]) for i in shared if ia[i]["score"] != ib[i]["score"]]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{bench}.html").write_text(
                diff_page.render(lb=lb, a=a, b=b, bench=bench, changed=changed, n_shared=len(shared),
                                 a_better=sum((x["score"] or 0) > (y["score"] or 0) for x, y in changed)),
                encoding="utf-8")
            bench_links.append({"bench": bench, "href": f"diff/{a.slug}--{b.slug}/{bench}.html", "n": len(changed),
                          "shared": len(shared)})
        diffs.append({"a": a, "b": b, "links": bench_links})

    index = out_dir / "index.html"
    index.write_text(env.get_template("index.html.j2").render(
        lb=lb, scale=scale, charts=_charts(lb, scale), diffs=diffs, bar_w=80, share_w=SHARE_W,
        xpos=lambda v, top, w: _x(v, top, w), has_items={k for k in item_cache}, links=list(links)),
        encoding="utf-8")
    log.info("leaderboard %s: %d rows x %d benchmarks -> %s", lb.spec.name, len(lb.rows), len(bench_names), index)
    return index
