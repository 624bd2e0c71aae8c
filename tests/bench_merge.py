"""pytest-benchmark: an SCE merge of three SmolLM2-135M models (the base and two perturbed
copies) at select_topk 1.0 and 0.1, each in a fresh process so peak RSS is per setting --
`flock /tmp/heavy.lock pytest tests/bench_merge.py --benchmark-enable`. The figures in
docs/performance.md come from `python -m trainers.merge.bench` (same code, JSON lines)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("mergekit", reason="the `merge` extra (mergekit) is not installed")


@pytest.fixture(scope="module")
def work(embedded_model_dir, tmp_path_factory):
    from trainers.merge.bench import prepare

    d = tmp_path_factory.mktemp("merge-bench")
    prepare(d)
    return d


@pytest.mark.parametrize("method", ["sce", "sce_fuseai"])
@pytest.mark.parametrize("topk", [1.0, 0.1])
def test_sce_merge_three_135m_models(benchmark, work, topk, method):
    from trainers.merge.bench import run_setting

    record = benchmark.pedantic(run_setting, args=(work, topk, method), rounds=1, iterations=1)
    benchmark.extra_info.update(record)
    assert record["sce_tensors"] > 0
