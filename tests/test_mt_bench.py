"""MT-Bench: turn-2 requests see the model's own first answer, per-category temperatures,
reference-guided prompts, and the score arithmetic (unit, scripted judge)."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest

from harness.benchmarks.base import Context
from harness.benchmarks.mt_bench import MTBench, mt_bench_metrics
from harness.judges import Judge
from harness.runner import LazyBackend
from harness.types import Completion
from tests.conftest import harness_cli
from tests.fakes import FakeBackend


class M:
    name = kind = path = "scripted"
    fingerprint, template_hash = "fp:s", None


def _bench(data_dir, store, respond, **options):
    ctx = Context(data_dir=data_dir, store=store, judge="scripted", seed=7)
    fake = FakeBackend(respond)
    b = MTBench(ctx=ctx, options=options)
    # the runner passes the run's judge to score(); these unit tests bind it once
    b.score = partial(b.score, judge=Judge(model=M(), store=store, backend=LazyBackend(lambda: fake)))
    return b, fake


def test_turns_temperatures_and_references(data_dir, store):
    b, _ = _bench(data_dir, store, lambda r, i: "[[5]]")
    exs = {e.id: e for e in b.load()}
    assert len(exs) == 80
    writing, math_q, stem = exs["81"], exs["111"], exs["141"]
    assert writing.data["category"] == "writing" and math_q.data["category"] == "math"
    r1 = b.to_requests(writing)[0]
    assert r1.params.temperature == 0.7 and r1.params.seed == 7
    assert b.to_requests(math_q)[0].params.temperature == 0.0 and b.to_requests(math_q)[0].params.seed is None
    assert b.to_requests(stem)[0].params.temperature == 0.1
    comps = {r1.id: Completion(texts=["Aloha from Hawaii!"], finish_reasons=["stop"])}
    (r2,) = b.next_requests(writing, comps)
    assert r2.id == "mt-bench/81#t2"
    assert [m["role"] for m in r2.messages] == ["user", "assistant", "user"]
    assert r2.messages[1]["content"] == "Aloha from Hawaii!"  # the model's own first answer
    comps[r2.id] = Completion(texts=["A..."], finish_reasons=["stop"])
    assert b.next_requests(writing, comps) == []  # done: the runner's loop ends
    assert math_q.data["reference"] and len(math_q.data["reference"]) == 2
    fixed = MTBench(ctx=b.ctx, options={"temperature_per_category": False})
    assert fixed.to_requests(writing)[0].params.temperature == 0.0


def test_scoring_arithmetic_and_unparseable(data_dir, store):
    # ratings scripted per judge prompt: turn 1 -> 8, turn 2 -> 4; one reply unparseable
    def respond(r, i):
        user = r.messages[-1]["content"]
        if "Rome" in user:
            return "I would give it a six."  # no [[x]]: unparseable, kept raw
        return "Rating: [[4]]" if "### User:" in user else "Rating: [[8]]"

    b, fake = _bench(data_dir, store, respond)
    exs = [e for e in b.load() if e.id in ("81", "111", "131")]
    comps = {}
    for e in exs:
        comps[b.request_id(e)] = Completion(texts=["answer one"], finish_reasons=["stop"])
        comps[b.request_id(e, "#t2")] = Completion(texts=["answer two" + (" Rome" if e.id == "131" else "")],
                                                   finish_reasons=["stop"])
    scores = b.score(exs, comps)
    by = {s["id"]: s for s in scores}
    assert by["81"]["turns"][0]["rating"] == 8 and by["81"]["turns"][1]["rating"] == 4
    assert by["81"]["score"] == 6.0
    assert by["111"]["turns"][0]["judge_prompt"] == "single-math-v1"  # reference-guided
    assert by["111"]["turns"][1]["judge_prompt"] == "single-math-v1-multi-turn"
    assert by["81"]["turns"][0]["judge_prompt"] == "single-v1"
    assert by["131"]["turns"][1]["unparseable"] and by["131"]["turns"][1]["judgment"] == "I would give it a six."
    assert by["131"]["score"] == 8.0  # the unparseable turn is left out, not scored
    m = b.aggregate(scores)
    assert m["overall"]["value"] == pytest.approx((8 + 4 + 8 + 4 + 8) / 5) and m["overall"]["n"] == 5
    assert m["turn_1"]["value"] == 8.0 and m["turn_2"]["value"] == 4.0 and m["turn_2"]["n"] == 2
    assert m["category_writing"]["value"] == 6.0 and m["category_extraction"]["value"] == 8.0
    assert m["judge_unparseable"]["value"] == 1 and m["judge_errors"]["value"] == 0
    # the reference answer reached the math judge prompt
    math_prompt = next(r for call in fake.calls for r in call if r.id == "mt-bench/111#judge-t1")
    assert exs[1].data["reference"][0][:40] in math_prompt.messages[-1]["content"]
    # a second scoring pass is served from the cache
    before = fake.generated
    b.score(exs, comps)
    assert fake.generated == before


def test_failed_generation_is_not_judged(data_dir, store):
    b, fake = _bench(data_dir, store, lambda r, i: "[[9]]")
    (ex,) = [e for e in b.load() if e.id == "81"]
    comps = {b.request_id(ex): Completion(texts=[], finish_reasons=[], error="HTTP 503")}
    assert b.next_requests(ex, comps) == []
    (s,) = b.score([ex], comps)
    assert math.isnan(s["score"]) and fake.generated == 0


def test_metrics_arithmetic():
    scores = [{"category": "math", "turns": [{"rating": 10.0}, {"rating": 2.0}]},
              {"category": "math", "turns": [{"rating": 6.0}, {"rating": None, "unparseable": True}]},
              {"category": "coding", "turns": [{"rating": 1.0}, {"rating": 3.0}]}]
    m = mt_bench_metrics(scores)
    assert m["overall"]["value"] == pytest.approx(22 / 5)
    assert m["turn_1"]["value"] == pytest.approx(17 / 3) and m["turn_2"]["value"] == 2.5
    assert m["category_math"]["value"] == 6.0 and m["category_coding"]["value"] == 2.0
    assert m["overall"]["ci_low"] <= m["overall"]["value"] <= m["overall"]["ci_high"]
    assert m["judge_unparseable"] == {"value": 1, "n": 6}


def test_aggregate_cli_fastchat_judgments(tmp_path):
    rows = [{"question_id": 81, "model": "vicuna", "judge": ["gpt-4", "single-v1"], "score": 9, "turn": 1},
            {"question_id": 81, "model": "vicuna", "judge": ["gpt-4", "single-v1-multi-turn"], "score": 7, "turn": 2},
            {"question_id": 82, "model": "vicuna", "judge": ["gpt-4", "single-v1"], "score": -1, "turn": 1}]
    f = tmp_path / "gpt-4_single.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    out = json.loads(harness_cli("aggregate", "mt-bench", "--judgments", str(f), "--json").stdout)
    m = out["models"]["vicuna"]
    assert m["overall"]["value"] == 8.0 and m["judge_unparseable"]["value"] == 1
