"""AlignBench v1.1: upstream's rating parser on judge outputs written the way GPT-4 answers,
show_result's arithmetic, the judge prompt, per-category temperatures, and scoring with a
scripted judge (unit)."""

from __future__ import annotations

import math
from functools import partial

import pytest

from harness.benchmarks.alignbench import AlignBench, alignbench_overall, alignbench_rating
from harness.benchmarks.base import Context
from harness.judges import Judge
from harness.runner import LazyBackend
from harness.types import Completion
from tests.fakes import FakeBackend

GOOD = ("AI助手的答案与参考答案相比，遗漏了高音萨克斯的调性。\n"
        "1. 事实正确性: 助手给出的调性有误。打分：3\n2. 满足用户需求: 部分满足。打分：4\n"
        "3. 清晰度: 表达清晰。打分：8\n4. 完备性: 不够完整。打分：4\n"
        "综合以上评价，给出综合分数。\n"
        "{'事实正确性': 3, '满足用户需求': 4, '清晰度': 8, '完备性': 4, '综合得分': 4}")


@pytest.mark.parametrize("text,rating,score", [
    (GOOD, {"事实正确性": 3, "满足用户需求": 4, "清晰度": 8, "完备性": 4, "综合得分": 4}, 4.0),
    # the LAST dict wins (the prompt's own example dict may be echoed earlier)
    ("格式示例 {'事实正确性': 9, '综合得分': 7}\n评价……\n{'事实正确性': 2, '综合得分': 2}", {"事实正确性": 2, "综合得分": 2}, 2.0),
    # no dict, but the overall score is stated in upstream's form: fallback regex (decimals allowed)
    ("评价……最终 '综合得分': 6.5 分", {}, 6.5),
    # a dict without 综合得分, and the overall stated elsewhere
    ("'综合得分': 5\n{'事实正确性': 6, '满足用户需求': 5}", {"事实正确性": 6, "满足用户需求": 5}, 5.0),
    # multi-line dict: upstream's '.' does not cross newlines, so only the fallback can apply
    ("{'事实正确性': 7,\n'综合得分': 7}", {}, 7.0),
    # double quotes or full-width colon are not upstream's format: unparseable
    ('{"事实正确性": 7, "综合得分": 7}', {}, None),
    ("{'综合得分'：7}", {}, None),
    ("", {}, None),
])
def test_rating_parser(text, rating, score):
    assert alignbench_rating(text) == (rating, score)


def test_overall_is_mean_of_reasoning_and_language():
    means = {"数学计算": 4.0, "逻辑推理": 6.0, "基本任务": 7.0, "中文理解": 7.0, "综合问答": 7.0, "文本写作": 7.0,
             "角色扮演": 7.0, "专业能力": 1.0}
    got = alignbench_overall(means)
    assert got["reasoning"] == 5.0 and got["language"] == 6.0 and got["overall"] == 5.5


class M:
    name = kind = path = "scripted"
    fingerprint, template_hash = "fp:s", None


def _bench(data_dir, store, respond, **options):
    b = AlignBench(ctx=Context(data_dir=data_dir, store=store, seed=3), options=options)
    fake = FakeBackend(respond)
    b.score = partial(b.score, judge=Judge(model=M(), store=store, backend=LazyBackend(lambda: fake)))
    return b, fake


def test_data_temperatures_and_judge_prompt(data_dir, store):
    b, _ = _bench(data_dir, store, lambda r, i: GOOD)
    exs = {e.id: e for e in b.load()}
    assert len(exs) == 683
    math_q = next(e for e in exs.values() if e.data["category"] == "数学计算")
    writing = next(e for e in exs.values() if e.data["category"] == "文本写作")
    assert b.to_requests(math_q)[0].params.temperature == 0.1
    r = b.to_requests(writing)[0]
    assert r.params.temperature == 0.7 and r.params.seed == 3 and r.params.max_tokens == 4096
    p = b.judge_prompt(exs["1"].data, "答案X")
    # 音乐 -> 事实与解释型回答 -> its four dimensions, with definitions, and the reference
    assert "由于您评估的回答类型是专业能力" in p and "1. 事实正确性: 回答中提供的信息是否准确无误" in p
    assert "4. 完备性:" in p and "5. " not in p.split("我们会给您提供")[0]
    assert "[参考答案开始]\n" + exs["1"].data["reference"] + "\n[参考答案结束]" in p
    assert p.endswith("[助手的答案开始]\n答案X\n[助手的答案结束]\n")
    assert "{'维度一': 打分, '维度二': 打分, ..., '综合得分': 打分}" in p


def test_score_unparseable_and_failed_generation(data_dir, store):
    replies = iter([GOOD, "no dict at all"])
    b, _ = _bench(data_dir, store, lambda r, i: next(replies))
    exs = b.load(limit=3)
    comps = {b.request_id(exs[0]): Completion(texts=["a"], finish_reasons=["stop"]),
             b.request_id(exs[1]): Completion(texts=["b"], finish_reasons=["stop"]),
             b.request_id(exs[2]): Completion(texts=[], finish_reasons=[], error="boom")}
    scores = b.score(exs, comps)
    assert scores[0]["score"] == 4.0 and scores[1]["score"] == -1.0 and scores[1]["unparseable"]
    assert math.isnan(scores[2]["score"]) and "boom" in scores[2]["error"]
    m = b.aggregate(scores)
    assert m["judge_unparseable"]["value"] == 1 and m["overall"]["n"] == 2
    assert m["overall"]["value"] == pytest.approx(1.5)  # both in 专业能力: language only
    excl = AlignBench(ctx=b.ctx, options={"unparseable": "exclude"})
    for s in scores:
        if s.get("unparseable"):
            s["score"] = math.nan
    assert excl.aggregate(scores)["overall"]["value"] == 4.0
