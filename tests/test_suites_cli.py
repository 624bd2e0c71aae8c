"""Suite validation and CLI usage errors: clear messages, file:line, exit code 2, no traceback."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.suites_config import available_suites, load_suite


def test_shipped_suites_validate():
    names = available_suites()
    assert {"smoke", "math", "fusechat3"} <= set(names)
    for name in names:
        spec = load_suite(name)
        assert spec.benchmarks, name


def test_smoke_covers_every_registered_benchmark():
    from harness.benchmarks import BENCHMARKS

    smoke = {b.name for b in load_suite("smoke").benchmarks}
    assert set(BENCHMARKS.names()) <= smoke


@pytest.mark.parametrize("text,line,needles", [
    # unknown benchmark: the line of the entry and a suggestion
    ("name: s\nbenchmarks:\n  - gsm8k\n  - name: math50\n    limit: 3\n", 4, ["math50", "math500"]),
    # misspelt key: the allowed keys are listed
    ("name: s\nbenchmarks:\n  - name: gsm8k\n    temprature: 0.5\n", 4, ["temprature", "temperature"]),
    # bad value: the dotted key is named
    ("name: s\ndefaults:\n  max_tokens: -5\nbenchmarks: [gsm8k]\n", 3, ["defaults.max_tokens"]),
])
def test_invalid_suite_points_at_file_line(tmp_path, text, line, needles):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(UsageError) as e:
        load_suite(str(f))
    msg = str(e.value)
    assert f"{f}:{line}" in msg
    for needle in needles:
        assert needle in msg


def test_malformed_yaml_gives_file_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: s\nbenchmarks:\n  - gsm8k\n   - math500: [\n")
    with pytest.raises(UsageError) as e:
        load_suite(str(f))
    assert str(f) in str(e.value) and "not valid YAML" in str(e.value)


def test_unknown_suite_did_you_mean():
    with pytest.raises(UsageError, match="Did you mean 'smoke'"):
        load_suite("smok")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_unknown_suite_exit_2_no_traceback(capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "suite", "smok", "--store", str(tmp_path / "s.sqlite"))
    assert code == 2
    assert "smoke" in err and "Traceback" not in err + out


def test_cli_unknown_model_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "suite", "smoke", "--model", "smollm2-135m-instruc",
                           "--store", str(tmp_path / "s.sqlite"))
    assert code == 2 and "smollm2-135m-instruct" in err


def test_cli_bad_openai_spec(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "suite", "smoke", "--model", "openai:gpt-4",
                           "--store", str(tmp_path / "s.sqlite"))
    assert code == 2 and "openai:<model>@<base_url>" in err


def test_cli_unreachable_server(capsys, tmp_path, data_dir):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run_cli(capsys, "run", "suite", "smoke", "--benchmarks", "gsm8k", "--limit", "1",
                           "--model", f"openai:m@http://127.0.0.1:{port}/v1", "--backend-option", "max_retries=2",
                           "--backend-option", "backoff=0.01", "--data-dir", str(data_dir),
                           "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o"))
    assert code == 2
    assert f"127.0.0.1:{port}" in err and "unreachable" in err


def test_cli_missing_data_names_both_places(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(capsys, "score", "gsm8k", "--completions", str(_completions(tmp_path, [])),
                           "--data-dir", str(tmp_path / "nowhere"))
    assert code == 2
    err = " ".join(err.split())  # rich wraps long lines
    assert "nowhere" in err and "gsm8k/test.jsonl" in err and "openai/gsm8k" in err and "--data-dir" in err


def test_cli_models_lists_alias(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "models", "--store", str(tmp_path / "s.sqlite"))
    assert code == 0 and "smollm2-135m-instruct" in out


def _completions(tmp_path, rows):
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def test_score_gsm8k_from_file(capsys, tmp_path, data_dir):
    rows = [{"id": "0", "completion": "16-3-4=9 eggs, 9*2 = \\boxed{18}"},
            {"id": "1", "completion": "The answer is 2."},
            {"id": "2", "completion": "I think #### 70,000"}]
    code, out, err = run_cli(capsys, "score", "gsm8k", "--completions", str(_completions(tmp_path, rows)),
                             "--data-dir", str(data_dir))
    assert code == 0
    items = [json.loads(line) for line in out.splitlines()]
    assert [i["id"] for i in items] == ["0", "1", "2"]
    assert [i["correct"] for i in items] == [True, False, True]  # golds: 18, 3, 70000
    assert items[0]["extracted"] == "18" and items[0]["gold"] == "18"
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["metrics"]["accuracy"]["n"] == 3
    assert abs(summary["metrics"]["accuracy"]["value"] - 200 / 3) < 1e-6


def test_score_summary_flag_and_unknown_id(capsys, tmp_path, data_dir):
    f = _completions(tmp_path, [{"id": "test/precalculus/807.json", "completion": "\\boxed{(3, \\frac{\\pi}{2})}"}])
    code, out, _ = run_cli(capsys, "score", "math500", "--completions", str(f), "--data-dir", str(data_dir),
                           "--summary")
    assert code == 0 and json.loads(out)["metrics"]["accuracy"]["value"] == 100.0
    bad = _completions(tmp_path, [{"id": "nope", "completion": "1"}])
    code, _, err = run_cli(capsys, "score", "math500", "--completions", str(bad), "--data-dir", str(data_dir))
    assert code == 2 and "'nope'" in err


def test_score_aime_multiple_samples(capsys, tmp_path, data_dir):
    f = _completions(tmp_path, [{"id": "2025-I-1", "completions": ["\\boxed{70}", "\\boxed{71}", "\\boxed{70}"]}])
    code, out, _ = run_cli(capsys, "score", "aime25", "--completions", str(f), "--data-dir", str(data_dir))
    assert code == 0
    item = json.loads(out.splitlines()[0])
    assert item["correct_per_sample"] == [True, False, True] and item["cons_correct"] is True
