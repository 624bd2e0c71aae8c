"""`harness score` with several completions per item: every line is scored and counted."""

from __future__ import annotations

import json

from harness.benchmarks.base import Context
from harness.benchmarks.gsm8k import GSM8K
from harness.cli import main
from harness.cli.score import CompletionsFile, score_passes


def _write(tmp_path, rows):
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _repeated_rows():
    """39 lines over 22 gsm8k ids (items 0..16 once, 17..21 with 4 lines each, 2 of 4 right)."""
    rows = [{"id": str(i), "completion": "\\boxed{-1}"} for i in range(17)]
    for i in range(17, 22):
        rows += [{"id": str(i), "completion": t} for t in ("\\boxed{-1}", "\\boxed{-2}", "A", "B")]
    rows.append({"id": "0", "completion": "\\boxed{18}"})  # a second sample for item 0: correct (gold 18)
    rows.append({"id": "1", "completion": "\\boxed{3}"})   # item 1, gold 3
    return rows[:39] if len(rows) >= 39 else rows


def test_repeated_ids_are_scored_as_n_samples_and_counted(capsys, tmp_path, data_dir):
    rows = _repeated_rows()
    assert len(rows) == 39 and len({r["id"] for r in rows}) == 22
    code, out, err = _cli(capsys, "score", "gsm8k", "--completions", str(_write(tmp_path, rows)),
                          "--data-dir", str(data_dir))
    assert code == 0
    items = {json.loads(line)["id"]: json.loads(line) for line in out.splitlines()}
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["input"]["lines"] == 39 and summary["input"]["items"] == 22
    assert summary["input"]["samples"] == 39 and summary["input"]["scored_samples"] == 39
    assert summary["input"]["samples_per_item"] == {"1": 15, "2": 2, "4": 5}
    assert items["0"]["n"] == 2 and items["0"]["correct_per_sample"] == [False, True] and items["0"]["score"] == 0.5
    assert summary["metrics"]["accuracy"]["n"] == 22
    assert abs(summary["metrics"]["accuracy"]["value"] - 100 * (0.5 + 0.5) / 22) < 1e-6


def test_single_sample_benchmark_is_scored_in_passes(tmp_path, data_dir):
    class OneSample(GSM8K):  # a benchmark that only reads the first sample
        scores_every_sample = False

    bench = OneSample(ctx=Context(data_dir=data_dir))
    examples = {ex.id: ex for ex in bench.load(limit=3)}
    given = CompletionsFile(lines=5, samples={"0": ["\\boxed{1}", "\\boxed{18}", "\\boxed{18}"], "1": ["\\boxed{3}"],
                                              "2": ["x"]})
    passes = score_passes(bench, examples, given)
    assert [k for k, _ in passes] == [0, 1, 2]
    assert [len(s) for _, s in passes] == [3, 1, 1]  # 5 samples, each scored once
    assert [s["correct"] for s in passes[0][1]] == [False, True, False]
    assert passes[1][1][0]["correct"] is True


def test_mmlu_pro_whole_file_with_two_samples_per_item(capsys, tmp_path, data_dir):
    rows = [{"id": "70", "completion": "The best answer is I."}, {"id": "70", "completion": "Answer: A"},
            {"id": "71", "completion": "nothing"}]
    code, out, err = _cli(capsys, "score", "mmlu-pro", "--completions", str(_write(tmp_path, rows)),
                          "--data-dir", str(data_dir), "--summary")
    summary = json.loads(out)
    assert code == 0 and summary["input"]["scored_samples"] == 3
    assert summary["metrics"]["strict_accuracy"]["n"] == 2
