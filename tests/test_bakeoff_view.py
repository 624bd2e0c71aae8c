"""The bake-off's fusion view (leaderboards/fusion_view.py) on constructed runs: its paired
differences, CIs and p-values equal `harness gate --json` on the same runs, families and parents
come from the store's records, skipped stages are listed, and the page sorts and fits 1200 px in a
real headless Chromium."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.store import ModelParent, ModelRecord
from leaderboards import build_leaderboard
from leaderboards.fusion_view import build_fusion_view, family_of, index_link, write_fusion_view
from leaderboards.render import write_site
from leaderboards.spec import LeaderboardSpec
from tests.conftest import requires_chromium
from tests.test_browser_leaderboard import CHROMIUM, FLAGS, _artefact
from tests.test_gate_helpers import binary_items, make_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# accuracy per model on (gsm8k, mbpp-plus): the candidates differ from the target by known amounts
ACC = {"src": (0.8, 0.6), "tgt": (0.3, 0.3), "c-sft": (0.55, 0.35), "c-wrpo": (0.6, 0.3),
       "c-pair": (0.35, 0.3), "c-sce": (0.5, 0.4)}
INFO = {
    "c-sft": ({"method": "sft", "data": "/w/data/sft.jsonl", "data_report": {"kept": 40, "total": 42},
               "steps": 20, "train_tokens": 12345, "train_seconds": 61.5}, "tgt"),
    "c-wrpo": ({"method": "wrpo", "data": "/w/data-target/wrpo.jsonl", "data_report": {"kept": 9, "total": 9},
                "steps": 5, "train_tokens": 4321, "train_seconds": 30.0}, "c-sft"),
    "c-pair": ({"method": "distill_ce", "config": {"objective": {"sources": ["gemma"]}}, "data": "/w/data/sft.jsonl",
                "steps": 3, "train_tokens": 999}, "tgt"),
    "c-sce": ({"merge": {"method": "sce_fuseai", "models": {"c-pair": "/m/a", "c-sft": "/m/b"}, "seconds": 4.2}},
              "tgt"),
}
PARENTS = {"c-sce": [("tgt", "base"), ("c-pair", "merged"), ("c-sft", "merged")]}


@pytest.fixture
def board(store):
    for model, (info, parent) in INFO.items():
        parents = [ModelParent(p, r) for p, r in PARENTS.get(model, [(parent, "trained-from")])]
        store.register_model(ModelRecord(name=model, fingerprint=f"fp-{model}", kind="candidate",
                                         path=f"/models/{model}", parent=parent, info=info), parents=parents)
    for seed, (model, (g, m)) in enumerate(ACC.items()):
        make_run(store, f"run-{model}", model, {"gsm8k": binary_items(60, g, 2 * seed),
                                                 "mbpp-plus": binary_items(30, m, 2 * seed + 1)})
    roles = {"src": "source", "tgt": "target"}
    spec = LeaderboardSpec(name="bake", title="Bake-off test", suite="math",
                           models=[{"model": k, "role": roles.get(k, "candidate")} for k in ACC])
    return build_leaderboard(spec, store)


def test_view_numbers_equal_harness_gate_on_the_same_runs(board, store, tmp_path):
    view = build_fusion_view(board, store, skipped={"distill": "teacher: model 'gemma3-270m' needs the package x"})
    assert [r.key for r in view.rows] == ["c-sft", "c-wrpo", "c-pair", "c-sce"]
    for row in view.rows:
        out = tmp_path / f"{row.key}.json"
        main(["gate", "--store", str(store.path), "--baseline", "run-tgt", "--candidate", f"run-{row.key}",
              "--json", str(out)])
        gate = {b["benchmark"]: b for b in json.loads(out.read_text())["benchmarks"]}
        assert sorted(gate) == sorted(d.benchmark for d in row.deltas) == ["gsm8k", "mbpp-plus"]
        for d in row.deltas:
            g = gate[d.benchmark]
            assert (d.delta, d.ci_low, d.ci_high, d.p_adjusted, d.n, d.status) == \
                (g["delta"], g["ci_low"], g["ci_high"], g["p_adjusted"], g["n"], g["status"])
            # recovered: the leaderboard's own figure for this candidate and benchmark
            lb_d = next(x for x in board.deltas[row.key] if x.benchmark == d.benchmark)
            assert d.recovered == lb_d.recovered
    sft = view.row("c-sft").deltas[0]
    src, tgt = board.row("src").cells["gsm8k"]["value"], board.row("tgt").cells["gsm8k"]["value"]
    cand = board.row("c-sft").cells["gsm8k"]["value"]
    assert sft.recovered == pytest.approx((cand - tgt) / (src - tgt))


def test_view_families_parents_costs_and_skipped_stages(board, store, tmp_path):
    view = build_fusion_view(board, store, wall_s={"c-sft": 70.0},
                             skipped={"distill": "teacher: model 'gemma3-270m' needs the package x"})
    assert {r.key: r.family for r in view.rows} == {
        "c-sft": "sft", "c-wrpo": "sft → wrpo", "c-pair": "distill_ce (pairwise: gemma)", "c-sce": "merge sce_fuseai"}
    assert view.row("c-sce").parents == PARENTS["c-sce"]
    assert view.row("c-wrpo").parents == [("c-sft", "trained-from")]
    sft, wrpo, sce = view.row("c-sft"), view.row("c-wrpo"), view.row("c-sce")
    assert (sft.cost.wall_s, sft.cost.tokens, sft.cost.steps) == (70.0, 12345, 20)  # the pipeline's seconds win
    assert (wrpo.cost.wall_s, wrpo.data) == (30.0, "wrpo.jsonl (9/9 rows)")
    assert (sce.cost.wall_s, sce.cost.tokens, sce.data) == (4.2, 0, "weights of c-pair, c-sft")
    assert family_of(store, "tgt") == "–" and family_of(store, "nowhere") == "–"

    page = write_fusion_view(view, tmp_path / "site").read_text()
    assert page.count("<tr data-candidate=") == 4
    assert 'data-stage="distill"' in page and "needs the package x" in page
    d = sft.deltas[0]
    assert f"{d.delta:+.1f}" in page and f"[{d.ci_low:+.1f}, {d.ci_high:+.1f}]" in page


def test_a_candidate_without_shared_items_keeps_its_row_with_a_note(store, tmp_path):
    make_run(store, "run-tgt", "tgt", {"gsm8k": binary_items(10, 0.5, 0)})
    make_run(store, "run-odd", "odd", {"mbpp-plus": binary_items(10, 0.5, 1)})
    spec = LeaderboardSpec(name="b", suite="math", models=[{"model": "tgt", "role": "target"},
                                                           {"model": "odd", "role": "candidate"}])
    view = build_fusion_view(build_leaderboard(spec, store), store)
    assert view.row("odd").deltas == [] and view.row("odd").note == "no benchmark scored in both runs"


def test_the_index_links_the_fusion_view_only_when_one_is_written(board, store, tmp_path):
    view = build_fusion_view(board, store, skipped={"distill": "teacher: missing"})
    assert 'href="fusion.html"' not in write_site(board, tmp_path / "plain", store).read_text()
    index = write_site(board, tmp_path / "site", store, links=[index_link(view)]).read_text()
    assert index.count('href="fusion.html"') == 1
    assert "Fusion view: 4 candidates against the target" in index and "skipped stages: 1" in index


@requires_chromium
@pytest.mark.timeout(180)
def test_fusion_view_in_headless_chromium_at_1200px(board, store, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    view = build_fusion_view(board, store, skipped={"distill": "teacher: <b>not bold</b> missing"})
    write_site(board, tmp_path / "site", store, links=[index_link(view)])
    page_path = write_fusion_view(view, tmp_path / "site")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS, viewport={"width": 1200, "height": 900})
        page = ctx.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: None if r.url.startswith(("file://", "data:"))
                else problems.append(f"network fetch: {r.url}"))
        page.goto(page_path.as_uri())
        assert page.title() == "Bake-off test · fusion view"
        head = page.locator("#fusion-view th[data-bench=gsm8k]")
        head.click()  # descending: the largest gain over the target first
        order = page.eval_on_selector_all("#fusion-view tbody tr", "rs => rs.map(r => r.dataset.candidate)")
        by_delta = sorted(view.rows, key=lambda r: next(d.delta for d in r.deltas if d.benchmark == "gsm8k"),
                          reverse=True)
        assert order == [r.key for r in by_delta]
        head.click()
        assert page.eval_on_selector_all("#fusion-view tbody tr", "rs => rs.map(r => r.dataset.candidate)") == \
            order[::-1]
        assert page.locator("#skipped li[data-stage=distill]").inner_text().endswith("<b>not bold</b> missing")
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        assert page.evaluate("(() => { const t = document.querySelector('#fusion-view');"
                             " return t.scrollWidth <= t.parentElement.clientWidth; })()")
        page.screenshot(path=str(tmp_path / "fusion_view.png"), full_page=True)
        _artefact(tmp_path / "fusion_view.png")
        page.locator("a[href='index.html']").click()
        page.wait_for_url("**/index.html")
        page.locator("#pages a[href='fusion.html']").click()  # and back again from the index
        page.wait_for_url("**/fusion.html")
        assert page.title() == "Bake-off test · fusion view"
        ctx.close()
    assert problems == []
