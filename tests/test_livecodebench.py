"""LiveCodeBench: the upstream code_generation_lite format (hand-written problems in
tests/data/livecodebench, both stdin and functional kinds, private tests encoded upstream's
way), filters, grading in the real sandbox, and bad input (issue 3)."""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import zlib
from pathlib import Path

import pytest

from harness.benchmarks.base import Context
from harness.benchmarks.livecodebench import (
    IMPORTS,
    LiveCodeBench,
    decode_tests,
    files_for,
    lines_match,
    user_prompt,
    values_match,
)
from harness.errors import DataNotFoundError, HarnessError, UsageError
from harness.types import Completion
from tests.conftest import REPO, harness_cli

DATA = REPO / "tests" / "data"

GOOD = {
    "abc900_a": "```python\nn = int(input())\nprint(sum(map(int, input().split())))\n```",
    "lc9001": ("```python\nclass Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
               "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
               "                return [seen[target - x], i]\n            seen[x] = i\n```"),
    "abc901_b": ("Read everything at once:\n```python\nimport sys\ndef main():\n    data = sys.stdin.read().split()\n"
                 "    n = int(data[0])\n    print(sum(map(int, data[1:1 + n])) / n)\nmain()\n```"),
    "lc9002": ("```python\nclass Solution:\n    def maxSubArray(self, nums):\n        best = cur = nums[0]\n"
               "        for x in nums[1:]:\n            cur = max(x, cur + x)\n            best = max(best, cur)\n"
               "        return best\n```"),
}
WRONG = {
    "abc900_a": "```python\nn = int(input())\nprint(max(map(int, input().split())))\n```",  # passes test 0? no: 3 != 6
    "lc9001": "```python\nclass Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n```",
    "abc901_b": "```python\nimport sys\ndata = sys.stdin.read().split()\nprint(int(data[1]) // 1)\n```",
    "lc9002": "```python\nclass Solution:\n    def maxSubArray(self, nums):\n        return sum(nums)\n```",
}


def bench(**options) -> LiveCodeBench:
    return LiveCodeBench(options={"release_version": "release_v2", **options}, ctx=Context(data_dir=DATA))


def score(b: LiveCodeBench, replies: dict[str, str]) -> dict[str, dict]:
    exs = b.load()
    comps = {b.request_id(e): Completion(texts=[replies[e.id]], finish_reasons=["stop"]) for e in exs}
    return {s["id"]: s for s in b.score(exs, comps)}


def test_loads_both_kinds_with_public_and_private_tests():
    exs = {e.id: e for e in bench().load()}
    assert set(exs) == {"abc900_a", "lc9001", "abc901_b", "lc9002"}
    assert not exs["abc900_a"].data["functional"] and exs["lc9001"].data["functional"]
    assert exs["lc9001"].data["func_name"] == "twoSum"
    assert len(exs["abc900_a"].data["tests"]) == 5  # 2 public + 3 private (compressed pickle)
    assert exs["abc900_a"].data["tests"][2] == {"input": "4\n10 20 30 40\n", "output": "100\n", "testtype": "stdin"}


def test_release_versions_window_and_difficulty():
    assert [e.id for e in bench(release_version="release_v1").load()] == ["abc900_a", "lc9001"]
    assert [e.id for e in bench(release_version="v2").load()] == ["abc901_b", "lc9002"]
    fuse = bench(start_date="2024-08-01", end_date="2024-11-30").load()
    assert [e.id for e in fuse] == ["lc9001", "abc901_b", "lc9002"]
    assert [e.id for e in bench(start_date="2024-08-01", end_date="2024-11-30", difficulty="hard").load()] == [
        "abc901_b", "lc9002"]
    assert [e.id for e in bench(difficulty=["easy", "medium"]).load(limit=1)] == ["abc900_a"]
    assert files_for("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert files_for("v2_v4") == ["test2.jsonl", "test3.jsonl", "test4.jsonl"]
    with pytest.raises(UsageError, match="release_v9"):
        files_for("release_v9")
    with pytest.raises(UsageError, match="YYYY-MM-DD"):
        bench(start_date="August").load()


def test_prompts_follow_upstream_formats():
    exs = {e.id: e for e in bench().load()}
    b = bench()
    func = b.to_requests(exs["lc9001"])[0].messages
    assert func[0]["role"] == "system" and func[0]["content"].startswith("You are an expert Python programmer.")
    assert "### Format: You will use the following starter code" in func[1]["content"]
    assert "def twoSum(self" in func[1]["content"]
    stdin = b.to_requests(exs["abc900_a"])[0].messages[1]["content"]
    assert stdin == user_prompt(exs["abc900_a"].data["question"], "")
    assert "Read the inputs from stdin" in stdin and "# YOUR CODE HERE" in stdin
    assert stdin.endswith("### Answer: (use the provided format with backticks)\n\n")
    assert b.params.stop == ()  # no '###' stop trap


def test_correct_code_passes_both_kinds():
    scores = score(bench(), GOOD)
    assert {k: s["outcome"] for k, s in scores.items()} == dict.fromkeys(GOOD, "passed")
    assert all(s["correct"] and s["score"] == 1.0 for s in scores.values())


def test_wrong_code_fails_both_kinds_with_first_failing_test():
    scores = score(bench(), WRONG)
    assert {k: s["outcome"] for k, s in scores.items()} == dict.fromkeys(WRONG, "failed")
    first = scores["lc9001"]["first_failing_test"]
    assert first["index"] == 1 and first["expected"] == "[1, 2]" and first["got"] == "[0, 1]"
    assert scores["abc900_a"]["first_failing_test"]["got"].strip() == "3"
    # functional: [5,4,-1,7,8] sums to 23 = the answer, so the first failure is the first public test
    assert scores["lc9002"]["first_failing_test"]["index"] == 0


def test_failure_only_in_private_tests_is_caught():
    # passes both public tests of abc900_a (N <= 3 items), wrong on the private ones
    sneaky = "```python\nn = int(input())\na = list(map(int, input().split()))\nprint(sum(a[:3]))\n```"
    s = score(bench(release_version="v1"), {**GOOD, "abc900_a": sneaky})["abc900_a"]
    assert s["outcome"] == "failed" and s["first_failing_test"]["index"] == 2


def test_runtime_error_timeout_syntax_and_no_code_outcomes():
    replies = {
        "abc900_a": "```python\nprint(1 / 0)\n```",
        "lc9001": "```python\nclass Solution:\n    def twoSum(self, nums, target):\n        while True:\n            pass\n```",
        "abc901_b": "```python\nprint('unclosed'\n```",
        "lc9002": "Use Kadane's algorithm.",
    }
    b = bench(timeout_s=0.5)
    scores = score(b, replies)
    assert scores["abc900_a"]["outcome"] == "runtime error" and "ZeroDivisionError" in scores["abc900_a"]["reason"]
    assert scores["lc9001"]["outcome"] == "timeout"
    assert scores["abc901_b"]["outcome"] == "syntax error"
    assert scores["lc9002"]["outcome"] == "no code found" and scores["lc9002"]["reason"] == "no code found"
    m = b.aggregate(list(scores.values()))
    assert m["pass@1"]["value"] == 0.0 and m["pass@1"]["outcomes"]["timeout"] == 1
    assert m["pass@1_hard"]["n"] == 2


def test_stdin_grading_is_upstreams():
    assert lines_match("2.5\n", "2.50\n") and lines_match("1 2  \n3\n\n", "1 2\n3")
    assert not lines_match("2.5000001", "2.5") and not lines_match("1\n2", "1") and not lines_match("yes", "Yes")
    assert values_match("[0, 1]", "[0,1]") and not values_match("[1, 0]", "[0, 1]")
    assert "sys.setrecursionlimit(50000)" in IMPORTS


def test_private_tests_decode_without_running_pickled_code():
    tests = [{"input": "1", "output": "2", "testtype": "stdin"}]
    enc = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()
    assert decode_tests(enc, "p1", "private_test_cases") == tests

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, ("/nonexistent-evil-path",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(HarnessError, match="'p2'.*refusing to load shutil.rmtree"):
        decode_tests(evil, "p2", "private_test_cases")


def _copy_data(tmp_path: Path, mutate) -> Path:
    src = DATA / "livecodebench" / "code_generation_lite" / "test.jsonl"
    dst = tmp_path / "livecodebench" / "code_generation_lite"
    dst.mkdir(parents=True)
    rows = [json.loads(x) for x in src.read_text().split("\n") if x.strip()]
    mutate(rows)
    (dst / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


@pytest.mark.parametrize("field,value,match", [
    ("private_test_cases", "not base64 at all!!", "'lc9001': cannot decode private_test_cases"),
    ("public_test_cases", json.dumps([{"input": 1}]), "'lc9001': public_test_cases must be a list"),
    ("metadata", "{}", "'lc9001': functional tests but no metadata.func_name"),
    ("contest_date", "last tuesday", "'lc9001'"),
])
def test_malformed_test_data_names_the_problem(tmp_path, field, value, match):
    def mutate(rows):
        rows[1][field] = value

    d = _copy_data(tmp_path, mutate)
    with pytest.raises(HarnessError, match=match):
        LiveCodeBench(options={"release_version": "release_v1"}, ctx=Context(data_dir=d)).load()


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as e:
        LiveCodeBench(ctx=Context(data_dir=tmp_path)).load()
    msg = str(e.value)
    assert str(tmp_path / "livecodebench" / "code_generation_lite") in msg and "HF_HUB_OFFLINE" in msg
    assert "--data-dir" in msg


def test_harness_score_livecodebench_cli(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"id": "lc9001", "completion": GOOD["lc9001"]}) + "\n"
                 + json.dumps({"id": "abc900_a", "completion": WRONG["abc900_a"]}) + "\n")
    proc = harness_cli("score", "livecodebench", "--completions", str(f), "--data-dir", str(DATA))
    by = {x["id"]: x for x in (json.loads(line) for line in proc.stdout.split("\n") if line.startswith("{"))}
    assert by["lc9001"]["correct"] is True and by["lc9001"]["outcome"] == "passed"
    assert by["abc900_a"]["correct"] is False and by["abc900_a"]["outcome"] == "failed"
