"""The leaderboard page in a real headless Chromium (Debian `chromium`, driven by Playwright
over the DevTools protocol; no Playwright browser download). Sorts a column, opens a
drill-down, asserts on the DOM (the fusion data section included), checks there are no
console errors or network fetches, and saves screenshots as artefacts (also to $HARNESS_ARTIFACTS when set)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness.types import Completion, Request, SamplingParams
from leaderboards import build_leaderboard
from leaderboards.render import write_site
from leaderboards.spec import LeaderboardSpec
from tests.conftest import requires_chromium
from tests.test_gate_helpers import PARAMS, binary_items, make_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
EVIL = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> the answer is \\boxed{42}"


def _artefact(path: Path) -> None:
    dest = os.environ.get("HARNESS_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(dest) / path.name)


@pytest.fixture
def site(store, tmp_path):
    params = SamplingParams.from_dict(PARAMS)
    models = {"src": (0.8, 0.6), "tgt": (0.3, 0.2), "cand": (0.6, 0.5), "base": (0.4, 0.3)}
    for seed, (k, (g, m)) in enumerate(models.items()):
        make_run(store, f"run-{k}", k, {"gsm8k": binary_items(40, g, 2 * seed),
                                         "math500": binary_items(30, m, 2 * seed + 1)})
        for i in range(40):
            text = EVIL if (k == "cand" and i == 0) else f"{k} reasons about item {i}: \\boxed{{{i}}}"
            req = Request(id=f"gsm8k/{i}", messages=({"role": "user", "content": f"Question {i}?"},), params=params)
            store.put_completion([f"{k}-{i}"], f"fp-{k}", req, Completion(texts=[text], finish_reasons=["stop"]))
    spec = LeaderboardSpec(name="browser", title="Browser test board", suite="math",
                           models=[{"model": "src", "role": "source"}, {"model": "tgt", "role": "target"},
                                   {"model": "cand", "role": "candidate"}, {"model": "base", "role": "baseline"}])
    # fusion data stats (the format `harness fuse data` writes): "src" is a leaderboard row,
    # the other source's name is hostile and must show as text
    fusion = tmp_path / "fusion"
    fusion.mkdir()
    entry = {"answers": 80, "dpo_pairs": 10, "wrpo_y_ws": 0, "correct_rate": 0.75, "verified_answers": 80,
             "mean_score": 0.75, "mean_chars": 412.5, "mean_tokens": 101.25, "truncation_rate": 0.0125}
    (fusion / "stats.json").write_text(json.dumps({"sources": {
        "src": {**entry, "chosen_sft": 30, "chosen_share": 0.75},
        EVIL: {**entry, "chosen_sft": 10, "chosen_share": 0.25, "correct_rate": 0.5,
               # a checkpoint path as the pipeline records it: long, and with no space to wrap at
               "model": "/home/researcher/fusion-runs/" + "specialist-" * 12 + "/checkpoint-final"},
        "target": {**entry, "wrpo_y_ws": None}},
        "sft_rows": 40, "dpo_rows": 20, "wrpo_rows": 0}))
    lb = build_leaderboard(spec, store, fusion_stats=[fusion / "stats.json"])
    return lb, write_site(lb, tmp_path / "site", store)


@requires_chromium
@pytest.mark.timeout(180)
def test_leaderboard_in_headless_chromium(site, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    lb, index = site
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS, viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: None if r.url.startswith(("file://", "data:"))
                else problems.append(f"network fetch: {r.url}"))
        page.goto(index.as_uri())
        assert page.title() == "Browser test board · leaderboard"

        # sort by gsm8k: first click descending (best first), second ascending
        expected = sorted(lb.rows, key=lambda r: r.cells["gsm8k"]["value"], reverse=True)
        head = page.locator("#board th[data-bench=gsm8k]")
        head.click()
        assert head.get_attribute("aria-sort") == "descending"
        order = page.eval_on_selector_all("#board tbody tr", "rs => rs.map(r => r.dataset.model)")
        assert order == [r.key for r in expected]
        head.click()
        assert head.get_attribute("aria-sort") == "ascending"
        assert page.eval_on_selector_all("#board tbody tr", "rs => rs.map(r => r.dataset.model)") == order[::-1]
        shown = page.locator("#board tr[data-model=cand] td[data-sort] a").first.inner_text()
        assert shown == f"{lb.row('cand').cells['gsm8k']['value']:.2f}"
        assert page.locator("#deltas tbody tr").count() == 3  # cand: gsm8k, math500, average
        assert page.locator("#chart-gsm8k svg rect.bar").count() == 4
        assert "git sha" in page.locator("#provenance").inner_text()

        # fusion data: the source that is a leaderboard row, its share bar, the hostile name as text
        fusion = page.locator("#fusion-1")
        assert fusion.is_visible()
        src_row = fusion.locator("tr[data-source=src]")
        assert src_row.get_attribute("data-model") == "src" and src_row.locator("td.share .val").inner_text() == "75.0%"
        assert src_row.locator("td.share rect.bar").get_attribute("width") == "75.0"
        assert fusion.locator("tfoot tr.total").inner_text().split("\t")[:4] == ["all sources", "160", "40", "100.0%"]
        name_cell = fusion.locator("tbody tr").nth(1).locator("td").first
        assert name_cell.inner_text().startswith(EVIL) and name_cell.locator("small").inner_text().endswith(
            "/checkpoint-final")
        fusion.locator("th", has_text="correct").click()  # sorts: src (75%) first, then the 50% one
        assert page.eval_on_selector_all("#fusion-1 tbody tr", "rs => rs.map(r => r.dataset.source)") == ["src", EVIL]
        fusion.locator("th", has_text="correct").click()
        assert page.eval_on_selector_all("#fusion-1 tbody tr", "rs => rs.map(r => r.dataset.source)") == [EVIL, "src"]
        assert page.evaluate("window.__pwned") is None
        # a 1200px window: the page never scrolls sideways and the fusion table fits whole
        page.set_viewport_size({"width": 1200, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        assert page.evaluate("(() => { const t = document.querySelector('#fusion-1 table.fusion-sources');"
                             " return t.scrollWidth <= t.parentElement.clientWidth; })()")
        page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)
        fusion.screenshot(path=str(tmp_path / "fusion.png"))

        # drill down into the candidate's gsm8k items
        page.locator("#board tr[data-model=cand] td a[href='items/cand/gsm8k.html']").click()
        page.wait_for_url("**/items/cand/gsm8k.html")
        assert page.locator("#items tbody tr").count() == 40
        answer = page.locator("#items tr[data-item='0'] pre.answer").inner_text()
        assert answer == EVIL  # rendered as text...
        assert page.evaluate("window.__pwned") is None  # ...and never run
        assert page.locator("#items img").count() == 0
        page.locator("#items th", has_text="score").click()
        first = page.eval_on_selector_all("#items tbody tr td:nth-child(2)", "cs => cs.map(c => c.dataset.sort)")
        assert first == sorted(first, key=float, reverse=True)
        page.screenshot(path=str(tmp_path / "drilldown.png"))

        # where target and candidate differ
        page.go_back()
        page.locator("#diffs a[href='diff/tgt--cand/gsm8k.html']").click()
        page.wait_for_url("**/diff/tgt--cand/gsm8k.html")
        ta, tc = lb.row("tgt").run.scores["gsm8k"], lb.row("cand").run.scores["gsm8k"]
        differing = {i for i in ta if ta[i]["score"] != tc[i]["score"]}
        rows = page.eval_on_selector_all("#diff tbody tr", "rs => rs.map(r => r.dataset.item)")
        assert set(rows) == differing and len(rows) == len(differing)
        ctx.close()
    assert problems == []
    for shot in ("leaderboard.png", "drilldown.png", "fusion.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
        _artefact(tmp_path / shot)
