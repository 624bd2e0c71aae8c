"""Fusion data statistics on the leaderboard (issue 7): a stats.json written by the real
`harness fuse data` stage (scripted engines, real store, real scorers, as in
tests/test_fusion_data.py) and hand-made ones in the same format, rendered into the page;
matching sources to rows; escaping; the errors for wrong files."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import UsageError
from leaderboards import build_leaderboard, load_spec
from leaderboards.fusion import load_fusion_stats
from leaderboards.render import write_site
from leaderboards.spec import LeaderboardSpec
from tests.test_gate_helpers import make_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _Cells(HTMLParser):
    """Text of each cell of each <tr data-source=...> (tables keyed by their class)."""

    def __init__(self):
        super().__init__()
        self.rows: dict[tuple[str, str], list[str]] = {}
        self.table = ""
        self.cur: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = a.get("class") or ""
        elif tag == "tr" and "data-source" in a:
            self.cur = self.rows.setdefault((self.table, a["data-source"]), [])
        elif tag == "td" and self.cur is not None:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None and self.cur is not None:
            self.cur.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr":
            self.cur = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def cells(html: str) -> dict[tuple[str, str], list[str]]:
    p = _Cells()
    p.feed(html)
    return p.rows


def pct(v):
    return "–" if v is None else f"{100 * v:.1f}%"


# ---- a stats.json from the real data stage --------------------------------------------------
@pytest.fixture(scope="module")
def fused(tmp_path_factory, data_dir):
    """`build_data` with scripted engines: "strong" is right (on its first sample) on the first
    four questions, "weak" on the last two, so SFT takes 4 answers from strong and 2 from weak."""
    from harness.store import Store
    from tests.fakes import FakeBackend
    from tests.test_fusion_data import _math_recipe, gsm8k_gold_by_question
    from trainers.fusion.pipeline import build_data

    tmp = tmp_path_factory.mktemp("fused")
    golds = gsm8k_gold_by_question(data_dir, 6)
    order = list(golds)

    def responder(right_q: set[int], right_samples: set[int]):
        def respond(req, i):
            q = req.messages[-1]["content"].split("\nPlease reason")[0]
            ok = order.index(q) in right_q and i in right_samples
            return f"Step by step (sample {i}). The answer is \\boxed{{{golds[q] if ok else int(golds[q]) + 1}}}."
        return respond

    recipe, base = _math_recipe(tmp, data_dir, rows=6)
    fakes = {"strong": FakeBackend(responder({0, 1, 2, 3}, {0})), "weak": FakeBackend(responder({4, 5}, {0, 1})),
             "target": FakeBackend(responder({0, 1, 2, 3, 4, 5}, {1}))}
    store = Store(tmp / "fusion-store.sqlite")
    try:
        res = build_data(recipe, base, store, progress=False,
                         backend_factories={k: (lambda f=f: f) for k, f in fakes.items()})
    finally:
        store.close()
    return res.output_dir, recipe


def test_real_stats_json_is_rendered_with_its_numbers(fused, store, tmp_path):
    out, recipe = fused
    stats = json.loads((out / "stats.json").read_text())
    src = stats["sources"]
    assert src["strong"]["chosen_sft"] == 4 and src["weak"]["chosen_sft"] == 2  # the fixture's premise
    strong_model = next(s.model for s in recipe.sources if s.name == "strong")
    make_run(store, "r-strong", strong_model, {"gsm8k": {"0": 1.0, "1": 0.0}})
    make_run(store, "r-tgt", "tgt", {"gsm8k": {"0": 0.0, "1": 0.0}})
    spec = LeaderboardSpec(name="f", suite="math", models=[
        {"model": strong_model, "role": "source", "label": "Strong (label)"}, {"model": "tgt", "role": "target"}])
    lb = build_leaderboard(spec, store, fusion_stats=[out])  # the output directory is accepted too
    fd = lb.fusion[0]
    assert fd.path == str(out / "stats.json") and fd.recipe == recipe.name
    by = {s.name: s for s in fd.sources}
    assert (by["strong"].row, by["strong"].matched_by) == ("Strong (label)", "model")
    assert by["weak"].row is None and fd.target is not None and fd.target.row is None

    html = write_site(lb, tmp_path / "site", store).read_text()
    assert "Fusion data: where the training answers came from" in html
    rows = cells(html)
    for name in ("strong", "weak"):
        st = src[name]
        c = rows[("sortable fusion-sources", name)]
        assert c[1:] == [str(st["answers"]), str(st["chosen_sft"]), pct(st["chosen_share"]), str(st["dpo_pairs"]),
                         str(st["wrpo_y_ws"]), f"{pct(st['correct_rate'])}of {st['verified_answers']} verified",
                         f"{st['mean_score']:.3f}", f"{st['mean_tokens']:.1f}", f"{st['mean_chars']:.0f}",
                         pct(st["truncation_rate"])]
    assert rows[("sortable fusion-sources", "strong")][0].startswith("Strong (label) source")  # the row's label
    assert 'source “strong”' in rows[("sortable fusion-sources", "strong")][0]
    assert rows[("sortable fusion-sources", "strong")][3] == "66.7%"
    assert rows[("sortable fusion-sources", "weak")][3] == "33.3%"
    t = rows[("sortable fusion-sources", "target")]
    assert t[1] == str(src["target"]["answers"]) and t[6].startswith(pct(src["target"]["correct_rate"]))
    # shares add up: the total row is 100% and its chosen count is the number of SFT rows
    assert 'class="total"><td class="name">all sources</td><td>24</td><td>6</td><td>100.0%</td>' in html
    assert stats["sft_rows"] == 6
    # report.json beside it: sampling per model and the pool
    report = json.loads((out / "report.json").read_text())
    samp = rows[("fusion-sampling", "strong")]
    assert samp[1:4] == [str(report["sampling"]["strong"][k]) for k in ("requests", "cached", "generated")]
    assert ("fusion-sampling", "target") in rows
    assert '<tr data-pool="gsm"><td class="name">gsm</td>\n<td>6</td><td>6</td><td>0</td><td>0</td>' in html


def test_fusion_section_only_when_asked(store, tmp_path):
    make_run(store, "r", "m", {"gsm8k": {"0": 1.0}})
    lb = build_leaderboard(LeaderboardSpec(name="n", suite="math", models=[{"model": "m", "role": "baseline"}]), store)
    assert lb.fusion == [] and 'id="fusion"' not in write_site(lb, tmp_path / "s", store).read_text()


# ---- hand-made files in the same format ------------------------------------------------------
EVIL = "<script>window.__pwned = 1</script>"
EVIL_MODEL = '<img src=x onerror="window.__pwned = 2">'


def _entry(answers, chosen, share, dpo=0, ws=0, correct=0.5, score=0.5, chars=100.0, tokens=25.0, trunc=0.0):
    return {"answers": answers, "chosen_sft": chosen, "chosen_share": share, "dpo_pairs": dpo, "wrpo_y_ws": ws,
            "correct_rate": correct, "verified_answers": answers, "mean_score": score, "mean_chars": chars,
            "mean_tokens": tokens, "truncation_rate": trunc}


def write_stats(d: Path, sources: dict, report: dict | None = None, sft_rows: int = 8) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "stats.json").write_text(json.dumps({"sources": sources, "sft_rows": sft_rows, "dpo_rows": 3,
                                              "wrpo_rows": 0}))
    if report is not None:
        (d / "report.json").write_text(json.dumps(report))
    return d / "stats.json"


def test_source_names_are_escaped(store, tmp_path):
    make_run(store, "r", "m", {"gsm8k": {"0": 1.0}})
    stats = write_stats(tmp_path / "data", {EVIL: _entry(8, 8, 1.0, dpo=3)}, report={
        "recipe": {"name": "<b>recipe</b>", "sources": [{"name": EVIL, "model": EVIL_MODEL}]},
        "pools": {"<i>pool</i>": {"rows": 9, "kept": 8, "empty": 1, "duplicate": 0}},
        "sampling": {EVIL: {"model": EVIL_MODEL, "requests": 8, "failed": "<script>x()</script>"}},
        "selection": {"sft_dropped": {"<u>why</u>": 2}}})
    lb = build_leaderboard(LeaderboardSpec(name="e", suite="math", models=[{"model": "m", "role": "baseline"}]),
                           store, fusion_stats=[stats])
    html = write_site(lb, tmp_path / "site", store).read_text()
    for raw in (EVIL, EVIL_MODEL, "<b>recipe</b>", "<i>pool</i>", "<u>why</u>", "<script>x()"):
        assert raw not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html and "&lt;b&gt;recipe&lt;/b&gt;" in html
    assert "&lt;u&gt;why&lt;/u&gt; 2" in html
    assert html.count("<script>") == 1  # only the page's own sort script


def test_rows_match_by_fingerprint_then_model_then_name(store, tmp_path):
    """The recipe names models however it likes (a local dir, an alias): the same weights
    still find their row through the sampling record's fingerprint."""
    make_run(store, "r1", "gemma-2-27b", {"gsm8k": {"0": 1.0}})  # fingerprint fp-gemma-2-27b
    make_run(store, "r2", "qwen", {"gsm8k": {"0": 1.0}})
    make_run(store, "r3", "llama", {"gsm8k": {"0": 1.0}})
    make_run(store, "r4", "llama-8b", {"gsm8k": {"0": 0.0}})
    spec = LeaderboardSpec(name="m", suite="math", models=[
        {"model": "gemma-2-27b", "role": "source", "label": "Gemma"}, {"model": "qwen", "role": "source"},
        {"model": "llama", "role": "baseline", "label": "llama-base"}, {"model": "llama", "role": "source"},
        {"model": "llama-8b", "role": "target", "label": "T"}])
    stats = write_stats(tmp_path / "d", {"g": _entry(8, 4, 0.5), "q": _entry(8, 3, 0.375),
                                         "llama": _entry(8, 1, 0.125), "other": _entry(8, 0, 0.0),
                                         "target": {"answers": 8, "correct_rate": 0.25}}, report={
        "recipe": {"sources": [{"name": "g", "model": "/models/local/gemma"}, {"name": "q", "model": "qwen"},
                               {"name": "llama", "model": "/elsewhere/llama"}, {"name": "other", "model": "x"}],
                   "target": {"model": "/ckpt/llama-8b-sft"}},
        "sampling": {"g": {"fingerprint": "fp-gemma-2-27b"}, "target": {"fingerprint": "fp-llama-8b"}}})
    lb = build_leaderboard(spec, store, fusion_stats=[stats])
    fd = lb.fusion[0]
    got = {s.name: (s.row, s.role, s.matched_by) for s in [*fd.sources, fd.target]}
    assert got == {"g": ("Gemma", "source", "fingerprint"), "q": ("qwen", "source", "model"),
                   "llama": ("llama", "source", "name"),  # the source row wins over the baseline of that name
                   "other": (None, None, None), "target": ("T", "target", "fingerprint")}
    html = write_site(lb, tmp_path / "site", store).read_text()
    assert 'data-source="g" data-model="Gemma"' in html and 'data-source="target" data-model="T"' in html
    shares = [c[3] for (t, _), c in cells(html).items() if t == "sortable fusion-sources" and c[3] != "–"]
    assert shares == ["50.0%", "37.5%", "12.5%", "0.0%"]
    assert 'all sources</td><td>32</td><td>8</td><td>100.0%</td>' in html


def test_a_source_named_target_is_still_a_source(tmp_path):
    """The target's entry is the one without selection counts, not any entry called "target"."""
    fd = load_fusion_stats(write_stats(tmp_path / "d", {"target": _entry(4, 2, 1.0)}))
    assert fd.target is None and [s.name for s in fd.sources] == ["target"]


def test_report_json_is_optional_and_read_leniently(store, tmp_path):
    make_run(store, "r", "m", {"gsm8k": {"0": 1.0}})
    spec = LeaderboardSpec(name="o", suite="math", models=[{"model": "m", "role": "baseline"}])
    alone = write_stats(tmp_path / "alone", {"m": _entry(8, 8, 1.0)})
    garbled = write_stats(tmp_path / "garbled", {"m": _entry(8, 8, 1.0)})
    (tmp_path / "garbled/report.json").write_text("{not json")
    lb = build_leaderboard(spec, store, fusion_stats=[alone, garbled])
    assert "no report.json beside stats.json" in lb.fusion[0].notes[0]
    assert "report.json beside stats.json could not be read" in lb.fusion[1].notes[0]
    assert lb.fusion[0].sources[0].row == "m"  # matched by name without a report
    html = write_site(lb, tmp_path / "site", store).read_text()
    assert html.count('class="fusion"') == 2 and "could not be read" in html


# ---- wrong files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("content,msg", [
    (None, "does not exist; expected the stats.json that `harness fuse data` writes"),
    ("{oops", "is not valid JSON"),
    ("[1, 2]", "holds a JSON list; expected the stats.json"),
    ('{"sft_rows": 3}', "sources: Field required"),
    ('{"sources": {}}', "sources: Dictionary should have at least 1 item"),
    ('{"sources": {"a": {"answers": "many"}}}', "sources.a.answers: Input should be a valid integer"),
    ('{"sources": {"a": {"answers": 3, "chosen_share": 1.5}}}', "sources.a.chosen_share: Input should be less"),
])
def test_wrong_stats_files_name_the_path_and_what_was_expected(tmp_path, content, msg):
    p = tmp_path / "stats.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(UsageError, match=re.escape(msg)) as e:
        load_fusion_stats(p)
    assert str(p) in str(e.value)
    if content is not None and content.startswith('{"s'):
        assert "Expected the stats.json that `harness fuse data` writes" in str(e.value)


def test_directory_without_stats_json(tmp_path):
    with pytest.raises(UsageError, match="is a directory without a stats.json"):
        load_fusion_stats(tmp_path)


# ---- the definition and the CLI -------------------------------------------------------------------
def test_definition_paths_are_relative_to_the_yaml_and_cli_adds_more(store, tmp_path, capsys):
    make_run(store, "r", "m", {"gsm8k": {"0": 1.0}})
    board = tmp_path / "boards"
    write_stats(board / "data/a", {"m": _entry(8, 8, 1.0)})
    other = write_stats(tmp_path / "b", {"m": _entry(4, 4, 1.0)}, sft_rows=4)
    (board / "lb.yaml").write_text("name: y\nsuite: math\nmodels:\n  - {model: m, role: baseline}\n"
                                   "fusion_stats: [data/a/stats.json]\n")
    spec = load_spec(str(board / "lb.yaml"))
    assert spec.fusion_stats == [str((board / "data/a/stats.json").resolve())]
    out = tmp_path / "site"
    # the definition's file, plus one from the command line, plus the definition's again (shown once)
    assert main(["leaderboard", "build", str(board / "lb.yaml"), "--store", str(store.path), "--out", str(out),
                 "--fusion-stats", str(other), "--fusion-stats", str(board / "data/a")]) == 0
    assert "fusion data from 2 stats.json" in " ".join(capsys.readouterr().out.split())
    html = (out / "index.html").read_text()
    assert html.count('class="fusion"') == 2 and f'data-stats="{other}"' in html
    # --suite boards take the flag as well
    assert main(["leaderboard", "build", "--suite", "math", "--store", str(store.path), "--out", str(tmp_path / "q"),
                 "--fusion-stats", str(other)]) == 0
    assert 'id="fusion-1"' in (tmp_path / "q/index.html").read_text()


def test_missing_stats_fail_before_any_page_is_written(store, tmp_path, capsys):
    make_run(store, "r", "m", {"gsm8k": {"0": 1.0}})
    (tmp_path / "lb.yaml").write_text("name: y\nsuite: math\nmodels:\n  - {model: m, role: baseline}\n"
                                      "fusion_stats: [nowhere/stats.json]\n")
    with pytest.raises(UsageError, match=re.escape(f"{str(tmp_path / 'nowhere/stats.json')!r} does not exist")):
        build_leaderboard(load_spec(str(tmp_path / "lb.yaml")), store)
    out = tmp_path / "site"
    bad = tmp_path / "bad.json"
    bad.write_text('{"sources": []}')
    assert main(["leaderboard", "build", "--suite", "math", "--store", str(store.path), "--out", str(out),
                 "--fusion-stats", str(bad)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(bad) in err and "sources: Input should be a valid dictionary" in err
    assert not (out / "index.html").exists()


def test_attach_after_the_build(store, tmp_path):
    """What `harness pipeline` calls once the data stage has written its stats.json."""
    make_run(store, "r", "m", {"gsm8k": {"0": 1.0}})
    lb = build_leaderboard(LeaderboardSpec(name="a", suite="math", models=[{"model": "m", "role": "source"}]), store)
    d = tmp_path / "fusion-out"
    write_stats(d, {"m": _entry(8, 8, 1.0)})
    fd = lb.attach_fusion_stats(d)
    assert lb.attach_fusion_stats(d / "stats.json") is fd and lb.fusion == [fd]
    assert fd.sources[0].row == "m" and fd.sources[0].role == "source"
    assert 'data-source="m" data-model="m"' in write_site(lb, tmp_path / "site", store).read_text()
    with pytest.raises(UsageError, match="does not exist"):
        lb.attach_fusion_stats(tmp_path / "nope.json")
