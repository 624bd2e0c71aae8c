"""pytest-benchmark: build a 10-model x 8-benchmark leaderboard (issue 5 asks for < 10 s).

Run: pytest tests/bench_leaderboard.py --benchmark-enable -q
Store: 10 finished runs (5 sources, 1 target, 3 candidates, 1 baseline), 8 benchmarks x 200
items each (pass/fail, 0..1 win values and 1..10 judge ratings), with a stored prompt and a
~1.5 kB answer per item, so every drill-down and diff page is rendered for real.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from harness.types import SamplingParams
from leaderboards import build_leaderboard
from leaderboards.render import write_site
from leaderboards.spec import LeaderboardSpec
from tests.test_gate_helpers import PARAMS, make_run

BENCHES = ["gsm8k", "math500", "aime24", "aime25", "humaneval", "livecodebench", "alpaca_eval", "mt_bench"]
N_ITEMS = 200
ROLES = ["source"] * 5 + ["target"] + ["candidate"] * 3 + ["baseline"]


def _scores(bench: str, rng) -> dict[str, float]:
    if bench == "mt_bench":
        return {str(i): float(rng.integers(1, 11)) for i in range(N_ITEMS)}
    if bench == "alpaca_eval":
        return {str(i): float(rng.random()) for i in range(N_ITEMS)}
    return {str(i): float(rng.random() < rng.uniform(0.2, 0.8)) for i in range(N_ITEMS)}


def make_big_store(d):
    """The store described in the module docstring, in directory d."""
    from harness.store import Store

    store = Store(d / "s.sqlite")
    rng = np.random.default_rng(0)
    params = json.dumps(SamplingParams.from_dict(PARAMS).to_dict())
    rows = []
    for m, _role in enumerate(ROLES):
        model = f"model-{m}"
        make_run(store, f"run-{m}", model, {b: _scores(b, rng) for b in BENCHES},
                 extra={"alpaca_eval": {str(i): {"judge_text": "Output (a) is better. " * 20} for i in range(N_ITEMS)}})
        for b in BENCHES:
            for i in range(N_ITEMS):
                msg = json.dumps([{"role": "user", "content": f"{b} question {i}: " + "lorem ipsum " * 30}])
                rows.append((f"k-{m}-{b}-{i}", f"fp-{model}", f"{b}/{i}", 0, msg, params,
                             f"<p>answer {i}</p> " + "step by step reasoning " * 60, "stop", 10, 300, None, time.time()))
    with store._write() as c:  # bulk insert: the fixture is not what is measured
        c.executemany("INSERT INTO generations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    spec = LeaderboardSpec(name="bench", suite="math",
                           models=[{"model": f"model-{m}", "role": r} for m, r in enumerate(ROLES)])
    return store, spec


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    store, spec = make_big_store(d)
    yield store, spec, d
    store.close()


def test_build_10_models_x_8_benchmarks(benchmark, big_store):
    store, spec, d = big_store
    counter = iter(range(1000))

    def build():
        lb = build_leaderboard(spec, store)
        return write_site(lb, d / f"site{next(counter)}", store)

    index = benchmark.pedantic(build, rounds=3, iterations=1)
    site = index.parent
    assert len(list(site.glob("items/*/*.html"))) == 80
    assert len(list(site.glob("diff/*/*.html"))) == 3 * 2 * 8  # each candidate vs target and best source
