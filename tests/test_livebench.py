"""LiveBench: hub-only data (offline: a clear where-it-looked error, skipped when optional),
LiveBench's release filter and its average of category means."""

import pytest

from harness.benchmarks.base import Context
from harness.benchmarks.livebench import LiveBench, average_of_categories, in_release
from harness.errors import DataNotFoundError


def test_offline_error_names_the_places_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as e:
        LiveBench(ctx=Context(data_dir=tmp_path)).load()
    msg = str(e.value)
    assert str(tmp_path / "livebench" / "math.jsonl") in msg and "livebench/math" in msg and "--data-dir" in msg


def test_release_filter():
    assert in_release({"livebench_release_date": "2024-07-26"}, "2024-08-31")
    assert not in_release({"livebench_release_date": "2024-10-01"}, "2024-08-31")
    assert not in_release({"livebench_release_date": "2024-06-24", "livebench_removal_date": "2024-08-31"},
                          "2024-08-31")
    assert in_release({"livebench_release_date": "2024-06-24", "livebench_removal_date": "2024-11-25"},
                      "2024-08-31")


def test_average_is_mean_of_category_means_of_task_means():
    scores = [{"category": "math", "task": "a", "score": 1.0}, {"category": "math", "task": "a", "score": 1.0},
              {"category": "math", "task": "a", "score": 1.0}, {"category": "math", "task": "b", "score": 0.0},
              {"category": "language", "task": "c", "score": 0.5}, {"category": "language", "task": "c",
                                                                      "score": None}]
    avg, cats = average_of_categories(scores)
    assert cats == {"language": 50.0, "math": 50.0} and avg == 50.0
