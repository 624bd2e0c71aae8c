"""Typed per-benchmark options (unknown keys are errors with did-you-mean) and the seeded,
stratified `--limit` sample."""

from collections import Counter

import pytest

from harness.benchmarks import BENCHMARKS
from harness.benchmarks.base import Example, stratified_sample
from harness.errors import UsageError
from harness.suites_config import available_suites, load_suite


def test_typo_in_option_is_an_error_at_file_line_with_did_you_mean(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbenchmarks:\n  - gsm8k\n  - name: arena-hard\n    options:\n"
                    "      judge_max_tokens: 64\n      style_contol: true\n")
    with pytest.raises(UsageError) as e:
        load_suite(str(path))
    msg = str(e.value)
    assert f"{path}:7:" in msg and "'style_contol'" in msg and "Did you mean 'style_control'" in msg


def test_option_on_a_benchmark_without_options_and_bad_value():
    with pytest.raises(UsageError, match="gsm8k takes no options"):
        BENCHMARKS.resolve("gsm8k")(options={"limit_sample": "first"})
    with pytest.raises(UsageError, match="workers"):
        BENCHMARKS.resolve("humaneval")(options={"workers": "many"})


@pytest.mark.parametrize("suite", available_suites())
def test_shipped_suites_have_valid_options(suite):
    load_suite(suite)


def _examples():
    return [Example(str(i), {"c": c}) for i, c in enumerate("a" * 50 + "b" * 30 + "c" * 20)]


def test_stratified_sample_is_proportional_seeded_and_in_input_order():
    ex = _examples()
    s = stratified_sample(ex, 10, 0, lambda e: e.data["c"])
    assert Counter(e.data["c"] for e in s) == {"a": 5, "b": 3, "c": 2}
    assert [int(e.id) for e in s] == sorted(int(e.id) for e in s)
    assert s == stratified_sample(ex, 10, 0, lambda e: e.data["c"])
    assert s != stratified_sample(ex, 10, 1, lambda e: e.data["c"])


def test_stratified_sample_smaller_than_strata_count_covers_distinct_strata():
    s = stratified_sample(_examples(), 2, 3, lambda e: e.data["c"])
    assert len(s) == 2 and len({e.data["c"] for e in s}) == 2
