"""AMC23: real data, FuseEval's Qwen2.5-Math prompt, math-verify verdicts."""

from harness.benchmarks.amc23 import AMC23, INSTRUCTION, gold_text
from harness.benchmarks.base import Context
from harness.types import Completion


def test_gold_text():
    assert [gold_text(a) for a in (27.0, -1.0, 3159.0, 0.5, "7")] == ["27", "-1", "3159", "0.5", "7"]


def test_forty_problems_and_system_prompt(data_dir):
    b = AMC23(ctx=Context(data_dir=data_dir))
    exs = b.load()
    assert len(exs) == 40 and exs[0].data["gold"] == "27"
    msgs = b.to_requests(exs[0])[0].messages
    assert msgs[0] == {"role": "system", "content": INSTRUCTION} and msgs[1]["role"] == "user"
    user = AMC23(ctx=Context(data_dir=data_dir), options={"prompt_style": "user"}).to_requests(exs[0])[0].messages
    assert len(user) == 1 and user[0]["content"].endswith("\n" + INSTRUCTION)
    assert b.params.max_tokens == 2048 and b.params.greedy


def test_scoring_boxed_answers(data_dir):
    b = AMC23(ctx=Context(data_dir=data_dir))
    exs = b.load(limit=2)
    comps = {b.request_id(exs[0]): Completion(texts=["so \\boxed{27}"], finish_reasons=["stop"]),
             b.request_id(exs[1]): Completion(texts=["\\boxed{1}"], finish_reasons=["stop"])}
    scores = b.score(exs, comps)
    assert scores[0]["correct"] is True
    assert scores[1]["correct"] is (exs[1].data["gold"] == "1")
    assert b.aggregate(scores)["accuracy"]["n"] == 2
