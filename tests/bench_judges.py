"""pytest-benchmark: how fast a fully cached re-judge is served from the store, and proof by
counting that it makes zero backend calls. (Live judgments/s on vLLM-CPU come from the
`judge.judgments_per_s` field of a real run's results.json; see docs/performance.md.)

    pytest tests/bench_judges.py --benchmark-only -q
"""

from __future__ import annotations

from harness.judges import Judge, JudgeCall
from harness.runner import LazyBackend
from harness.types import SamplingParams
from tests.fakes import FakeBackend

N = 500


class _Model:
    name = kind = path = "bench-judge"
    fingerprint, template_hash = "fp:bench", None


def _calls():
    return [JudgeCall(id=f"b/{i}", messages=({"role": "system", "content": "judge"},
                                              {"role": "user", "content": f"question {i} " + "answer " * 300}),
                      params=SamplingParams(max_tokens=16)) for i in range(N)]


def test_cached_rejudge(benchmark, store):
    calls = _calls()
    Judge(model=_Model(), store=store, backend=LazyBackend(lambda: FakeBackend(lambda r, i: "[[A=B]]"))).run(
        calls, "v1")
    built = []

    def rejudge():
        fake = FakeBackend(lambda r, i: "never")
        j = Judge(model=_Model(), store=store, backend=LazyBackend(lambda: built.append(1) or fake))
        out = j.run(calls, "v1")
        assert j.stats.backend_calls == 0 and fake.generated == 0
        return out

    out = benchmark(rejudge)
    assert not built  # no backend was ever constructed
    assert len(out) == N and all(r.cached and r.text == "[[A=B]]" for r in out)
