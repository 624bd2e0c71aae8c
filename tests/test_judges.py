"""Judge layer: verdict parsers (table-driven, from real judge replies), caching/resume,
errors that never become verdicts, and the cost ledger. Unit tests: scripted backend."""

from __future__ import annotations

import math

import pytest

from harness.benchmarks.base import Context
from harness.judges import Judge, JudgeCall, judge_info
from harness.judges.cost import cost_ledger, load_prices
from harness.judges.parsers import (
    alpaca_argmax_preference,
    alpaca_logprob_preference,
    arena_verdict,
    mt_bench_rating,
)
from harness.runner import LazyBackend
from harness.types import SamplingParams
from tests.fakes import FakeBackend

# ---- parsers ---------------------------------------------------------------------------------
# Arena-Hard: endings of real gpt-4-1106-preview judgments (arena-hard-auto model_judgment files)
ARENA_CASES = [
    ("...Assistant B's answer is more concise.\n\nMy final verdict is: Assistant B is slightly better: [[B>A]]", "B>A"),
    ("My final verdict is tie: [[A=B]].", "A=B"),
    ("Therefore, my final verdict is: Assistant A is significantly better: [[A>>B]]", "A>>B"),
    ("My final verdict is: [[B>>A]]", "B>>A"),
    ("Assistant A is slightly better: [[A>B]]", "A>B"),
    # upstream's second pattern: single brackets
    ("My final verdict is [B>A].", "B>A"),
    # two different labels: ambiguous, upstream gives no verdict
    ("At first I thought [[A>B]] but on reflection [[B>A]]", None),
    # the same label twice is fine
    ("[[A=B]] ... so again: [[A=B]]", "A=B"),
    ("I cannot decide between the two answers.", None),
    ("", None),
    (None, None),
    ("[[AB]]", None),  # matches the character class but is no label
    ("Example output: [[C]]", None),
]


@pytest.mark.parametrize("text,expected", ARENA_CASES)
def test_arena_verdict(text, expected):
    assert arena_verdict(text) == expected


# MT-Bench: FastChat gpt-4 single judgments end like these
MT_CASES = [
    ("The response is accurate and engaging. Rating: [[8]]", 8.0),
    ("...the assistant's answer is incorrect.\n\nRating: [[2]]", 2.0),
    ("Rating: [[7.5]]", 7.5),
    ("Rating: [9]", 9.0),  # backup pattern
    ("Rating: [[10]] and earlier [3]", 10.0),  # double brackets win over the backup
    ("I would rate this response 6 out of 10.", None),  # FastChat: -1, unparseable
    ("Rating: [[rating]]", None),
    (None, None),
]


@pytest.mark.parametrize("text,expected", MT_CASES)
def test_mt_bench_rating(text, expected):
    assert mt_bench_rating(text) == expected


def _lp(top):
    return [{"token": max(top, key=top.get), "logprob": max(top.values()), "top": top}]


def test_alpaca_logprob_preference_matches_upstream_example():
    # the example completion in alpaca_eval's logprob_parser docstring: M -0.0176, m -4.0488
    top = {"M": -0.017597131, "m": -4.048847, "Both": -14.9, "The": -15.7, "Based": -15.9}
    p_m = math.exp(-4.048847) / (math.exp(-4.048847) + math.exp(-0.017597131))
    assert alpaca_logprob_preference(_lp(top)) == pytest.approx(2 - p_m)
    assert alpaca_logprob_preference(_lp({"m": -0.1})) == pytest.approx(1.0)  # only m present
    assert alpaca_logprob_preference(_lp({"M": -0.1})) == pytest.approx(2.0)
    assert alpaca_logprob_preference(_lp({" M": -0.1, "The": -1})) is None  # upstream: exact tokens only
    assert alpaca_logprob_preference(None) is None


def test_alpaca_argmax_fallback():
    assert alpaca_argmax_preference("m") == 1.0
    assert alpaca_argmax_preference("M\n") == 2.0
    assert alpaca_argmax_preference("Model m") is None


def test_alpaca_eval_prompt_is_upstreams():
    """Our copy of the annotator prompt, split into messages as alpaca_eval does."""
    pytest.importorskip("alpaca_eval")
    from pathlib import Path

    import alpaca_eval
    from alpaca_eval.utils import prompt_to_chatml

    from harness.benchmarks.alpaca_eval import judge_messages

    tpl = (Path(alpaca_eval.__file__).parent / "evaluators_configs" / "alpaca_eval_clf_gpt4_turbo"
           / "alpaca_eval_clf.txt").read_text()
    filled = tpl.replace("{instruction}", "Say hi").replace("{output_1}", "hi").replace("{output_2}", "hello")
    assert list(judge_messages("Say hi", "hi", "hello")) == prompt_to_chatml(filled)


def test_alpaca_switch_matches_upstream_processor():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("alpaca_eval")
    from alpaca_eval.processors import RandomSwitchTwoColumnsProcessor

    from harness.benchmarks.alpaca_eval import is_switched

    instr = [f"instruction {i}" for i in range(40)]
    # seed=0: what PairwiseAnnotator hands its processors (its own default seed)
    proc = RandomSwitchTwoColumnsProcessor(two_columns_to_switch=["output_1", "output_2"], seed=0,
                                           random_seed_columns=["instruction"], _switch_column="is_switched_outputs")
    df = proc.preprocess(pd.DataFrame({"instruction": instr, "output_1": ["a"] * 40, "output_2": ["b"] * 40}))
    assert list(df["is_switched_outputs"]) == [is_switched(i) for i in instr]
    assert 5 < sum(is_switched(i) for i in instr) < 35  # really random-looking, not constant


# ---- caching, resume, errors ----------------------------------------------------------------
class _Model:
    name = kind = "fake-judge"
    path = "fake-judge"
    fingerprint = "fp:fake"
    template_hash = "t0"


def _judge(store, backend):
    return Judge(model=_Model(), store=store, backend=LazyBackend(lambda: backend))


def _calls(n):
    return [JudgeCall(id=f"b/{i}#judge", messages=({"role": "user", "content": f"judge {i}"},),
                      params=SamplingParams(max_tokens=8)) for i in range(n)]


def test_cached_rejudge_makes_zero_backend_calls(store):
    fake = FakeBackend(respond=lambda r, i: "Rating: [[7]]")
    j1 = _judge(store, fake)
    r1 = j1.run(_calls(5), "v1")
    assert [r.text for r in r1] == ["Rating: [[7]]"] * 5
    assert fake.generated == 5 and j1.stats.backend_calls == 5
    fresh = FakeBackend(respond=lambda r, i: "never")
    j2 = _judge(store, fresh)
    r2 = j2.run(_calls(5), "v1")
    assert fresh.generated == 0 and j2.backend.backend is None  # no engine was even built
    assert all(r.cached for r in r2) and [r.text for r in r2] == [r.text for r in r1]
    assert j2.stats.cached == 5 and j2.stats.cached_completion_tokens == 5 * 2
    # a new prompt version is a different judgment
    j3 = _judge(store, FakeBackend(respond=lambda r, i: "Rating: [[3]]"))
    assert j3.run(_calls(1), "v2")[0].text == "Rating: [[3]]"


def test_interrupted_judging_resumes(store):
    crashing = FakeBackend(respond=lambda r, i: "[[A=B]]", crash_after=3)
    with pytest.raises(KeyboardInterrupt):
        _judge(store, crashing).run(_calls(6), "v1")
    resumed = FakeBackend(respond=lambda r, i: "[[A=B]]")
    out = _judge(store, resumed).run(_calls(6), "v1")
    assert resumed.generated == 3  # only the three that had not finished
    assert sum(r.cached for r in out) == 3


def test_judge_errors_are_recorded_and_retried(store):
    failing = FakeBackend(respond=lambda r, i: "[[B>A]]", fail_ids={"b/1#judge"})
    j = _judge(store, failing)
    out = j.run(_calls(3), "v1")
    assert out[1].error and out[1].text is None and j.stats.errors == 1
    assert out[0].text == "[[B>A]]"
    # the error row is stored but never served as a hit: the next run asks again
    again = FakeBackend(respond=lambda r, i: "[[B>A]]")
    out2 = _judge(store, again).run(_calls(3), "v1")
    assert again.generated == 1 and out2[1].text == "[[B>A]]"


def test_unreachable_judge_becomes_errors_not_verdicts(store):
    from harness.errors import BackendError

    def boom():
        raise BackendError("server unreachable at http://127.0.0.1:9/v1 after 5 tries")

    j = Judge(model=_Model(), store=store, backend=LazyBackend(boom))
    out = j.run(_calls(2), "v1")
    assert all(r.error and "unreachable" in r.error for r in out) and j.stats.errors == 2


def test_judge_info_flags_non_published_judge(store, data_dir):
    from harness.benchmarks.mt_bench import MTBench

    j = _judge(store, FakeBackend())
    metrics = {"judge_errors": {"value": 1, "n": 4}, "judge_unparseable": {"value": 2, "n": 4}}
    info = judge_info(j, MTBench(ctx=Context(data_dir=data_dir)), j.stats, metrics)
    assert info["comparable"] is False and "NOT comparable" in info["warning"]
    assert info["model_id"] == "fake-judge" and info["prompt_version"] == MTBench.PROMPT_VERSION
    assert info["published_judge"] == "gpt-4" and info["judge_errors"] == 1 and info["unparseable"] == 2
    assert info["constrained"] is False


# ---- constrained verdicts -------------------------------------------------------------------
def test_constrained_calls_carry_the_grammar_and_are_counted(store, data_dir):
    from harness.benchmarks.arena_hard import ArenaHard

    fake = FakeBackend(respond=lambda r, i: "[[A>B]]")
    j = _judge(store, fake)
    j.can_constrain = True
    bench = ArenaHard(ctx=Context(data_dir=data_dir), options={"constrained_verdicts": True})
    params = bench.judge_params(j, SamplingParams(max_tokens=16))
    assert params.regex == ArenaHard.VERDICT_REGEX
    j.run([JudgeCall(id="a/1#judge1", messages=({"role": "user", "content": "x"},), params=params)], "v1")
    assert fake.calls[0][0].params.regex == ArenaHard.VERDICT_REGEX and j.stats.constrained_calls == 1
    # off by default: published judges run their published protocol
    assert ArenaHard(ctx=Context(data_dir=data_dir)).judge_params(j, SamplingParams()).regex is None
    # an unset regex stays out of the cache key, so existing keys did not change
    assert "regex" not in SamplingParams().to_dict()


def test_backend_that_cannot_constrain_falls_back_with_one_warning(store, data_dir, caplog):
    from harness.benchmarks.mt_bench import MTBench

    j = _judge(store, FakeBackend())  # can_constrain False: e.g. transformers or an OpenAI API
    bench = MTBench(ctx=Context(data_dir=data_dir), options={"constrained_verdicts": True})
    with caplog.at_level("WARNING", logger="harness.judges"):
        first = bench.judge_params(j, SamplingParams(max_tokens=8))
        again = bench.judge_params(j, SamplingParams(max_tokens=8))
    assert first.regex is None and again.regex is None
    assert sum("cannot constrain" in r.getMessage() for r in caplog.records) == 1


def test_openai_judge_constrains_only_when_told_how_its_server_takes_a_regex(store):
    from harness.judges import JudgePool

    spec = "openai:some-judge@http://127.0.0.1:9/v1"  # never contacted: the backend is lazy
    assert JudgePool(store).get(spec).can_constrain is False  # OpenAI's API rejects the fields
    told = JudgePool(store, backend_options={"regex_field": "structured_outputs"}).get(spec)
    assert told.can_constrain is True


def test_an_http_judge_uses_the_openai_backend_whatever_the_candidates_backend(store):
    # `run suite fusechat3 --backend vllm`: the pool's backend (vllm) is for local judges; the
    # suite's GPT-4 judge is served over HTTP and once failed with "use --backend openai"
    from harness.judges import JudgePool

    judge = JudgePool(store, backend="vllm").get("openai:gpt-4-1106-preview@http://127.0.0.1:9/v1")
    assert judge.model.kind == "openai" and judge.can_constrain is False
    judge.close()  # never started: the backend is lazy


def test_openai_payload_carries_the_regex_in_the_servers_field():
    from harness.backends.openai_backend import OpenAIBackend
    from harness.errors import UsageError
    from harness.models import resolve_model
    from harness.types import Request

    model = resolve_model("openai:j@http://127.0.0.1:9/v1")
    req = Request("r", ({"role": "user", "content": "x"},), SamplingParams(max_tokens=4, regex=r"\[\[[AB]\]\]"))
    for field, expected in (("structured_outputs", {"structured_outputs": {"regex": r"\[\[[AB]\]\]"}}),
                            ("guided_regex", {"guided_regex": r"\[\[[AB]\]\]"})):
        b = OpenAIBackend.__new__(OpenAIBackend)  # payload only: no server to reach
        b.model, b.regex_field = model, field
        body = b._payload(req)
        assert {k: body[k] for k in expected} == expected
    with pytest.raises(UsageError, match="regex_field='response_format'.*structured_outputs, guided_regex"):
        OpenAIBackend(model, regex_field="response_format")


# ---- the runner owns the judges -------------------------------------------------------------
class _CountingBackend(FakeBackend):
    closed = 0

    def close(self):
        type(self).closed += 1


def _judged_suite(tmp_path, judge_line: str):
    from harness.suites_config import load_suite

    f = tmp_path / "judged.yaml"
    f.write_text("name: judged\nbenchmarks:\n"
                 "  - {name: arena-hard, limit: 2, options: {answers: gpt-4-0613, judge_max_tokens: 8}}\n"
                 "  - {name: mt-bench, limit: 1, max_tokens: 8, options: {judge_max_tokens: 8}}\n" + judge_line)
    return load_suite(str(f))


def test_runner_builds_one_judge_per_run_and_closes_it(tmp_path, store, data_dir, embedded_model_dir,
                                                       monkeypatch):
    import harness.backends as backends
    from harness.models import ResolvedModel
    from harness.runner import RunOptions, run_suite

    made = []

    def make(name, model, options=None):
        b = _CountingBackend(respond=lambda r, i: "Rating: [[6]] and [[A=B]]")
        made.append(model.name)
        return b

    monkeypatch.setattr(backends, "make_backend", make)
    _CountingBackend.closed = 0
    candidate = ResolvedModel(name="cand", kind="local", path="/nowhere", fingerprint="sha256:c", template_hash="t")
    spec = _judged_suite(tmp_path, f"judge: {embedded_model_dir}\n")
    res = run_suite(spec, candidate, store, RunOptions(data_dir=data_dir, out=tmp_path / "o"))
    judge_name = made[-1]
    assert made.count(judge_name) == 1 and made.count("cand") == 1  # one judge engine for both benchmarks
    assert _CountingBackend.closed == 2  # the candidate's engine and the judge's, closed by the runner
    for name in ("arena-hard", "mt-bench"):
        j = res["benchmarks"][name]["judge"]
        assert j["model"] == judge_name and j["backend_calls"] > 0 and j["comparable"] is False
    assert res["benchmarks"]["mt-bench"]["metrics"]["overall"]["value"] == 6.0


def test_judged_benchmark_without_judge_is_a_usage_error(tmp_path, store, data_dir, monkeypatch):
    import harness.backends as backends
    from harness.errors import UsageError
    from harness.models import ResolvedModel
    from harness.runner import RunOptions, run_suite

    monkeypatch.setattr(backends, "make_backend", lambda name, model, options=None: FakeBackend())
    candidate = ResolvedModel(name="cand", kind="local", path="/nowhere", fingerprint="sha256:c", template_hash="t")
    with pytest.raises(UsageError, match="--judge"):
        run_suite(_judged_suite(tmp_path, ""), candidate, store, RunOptions(data_dir=data_dir, out=tmp_path / "o"))


# ---- cost ledger -------------------------------------------------------------------------------
def test_cost_ledger(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpt-4-1106-preview: {input: 10, output: 30}\n")
    results = {"benchmarks": {
        "arena-hard": {"judge": {"model": "openai:gpt-4-1106-preview@http://x/v1", "model_id": "gpt-4-1106-preview",
                                 "comparable": True, "calls": 10, "cached": 4, "backend_calls": 6, "errors": 0,
                                 "prompt_tokens": 1_000_000, "completion_tokens": 100_000}},
        "mt-bench": {"judge": {"model": "smollm2-135m-instruct", "model_id": "smollm2-135m-instruct",
                               "comparable": False, "calls": 2, "backend_calls": 2, "prompt_tokens": 10,
                               "completion_tokens": 5}},
        "gsm8k": {"metrics": {}}}}
    rows = cost_ledger(results, load_prices(prices))
    assert [r["benchmark"] for r in rows] == ["arena-hard", "mt-bench", "total"]
    assert rows[0]["cost_usd"] == pytest.approx(10 + 3)
    assert rows[0]["total_cost_usd"] == pytest.approx(10 + 3)  # no cached tokens recorded here
    assert rows[1]["cost_usd"] is None  # unknown price: unknown cost, never zero
    assert rows[2]["cost_usd"] is None and rows[2]["calls"] == 12 and rows[2]["comparable"] is False


def test_bad_price_table_names_the_problem(tmp_path):
    from harness.errors import UsageError

    bad = tmp_path / "p.yaml"
    bad.write_text("gpt-4: 10\n")
    with pytest.raises(UsageError, match="gpt-4"):
        load_prices(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_prices(tmp_path / "nope.yaml")


# ---- harness score --judge: re-judging saved completions --------------------------------------
def test_score_cli_rejudges_saved_completions(tmp_path, data_dir, embedded_model_dir, monkeypatch, capsys):
    import json as _json

    import harness.backends as backends
    from harness.cli import main

    made = []

    def make(name, model, options=None):
        made.append(FakeBackend(respond=lambda r, i: "m"))  # argmax label: output_1 preferred
        return made[-1]

    monkeypatch.setattr(backends, "make_backend", make)
    f = tmp_path / "alpaca.jsonl"
    f.write_text("".join(_json.dumps({"id": str(i), "completion": f"answer {i}"}) + "\n" for i in range(3)))
    common = ["score", "alpaca-eval-2", "--completions", str(f), "--data-dir", str(data_dir),
              "--store", str(tmp_path / "s.sqlite"), "--summary"]
    assert main(common) == 2
    assert "--judge" in capsys.readouterr().err  # says how, and --judge is then accepted
    assert main([*common, "--judge", str(embedded_model_dir)]) == 0
    summary = _json.loads(capsys.readouterr().out)
    m = summary["metrics"]
    assert summary["judge"]["comparable"] is False and summary["judge"]["backend_calls"] == 3
    assert m["judge_unparseable"]["value"] == 0 and m["argmax_fallback"]["value"] == 3
    assert m["win_rate"]["value"] is not None and made[0].generated == 3
    assert main([*common, "--judge", str(embedded_model_dir)]) == 0  # judgments come from the store
    assert len(made) == 1 or made[-1].generated == 0
    assert main(["score", "gsm8k", "--completions", str(f), "--data-dir", str(data_dir), "--judge", "x"]) == 2


def test_score_cli_rejudges_both_mt_bench_turns_from_a_runs_sample_file(tmp_path, data_dir, embedded_model_dir,
                                                                         monkeypatch, capsys):
    """A run's own sample file carries each item's request ids ("81" and "81#t2"), so
    re-judging it rates the second turn too, with the second answer in the judge prompt."""
    import json as _json

    import harness.backends as backends
    from harness.cli import main

    made = []

    def make(name, model, options=None):
        made.append(FakeBackend(respond=lambda r, i: "Rating: [[7]]"))
        return made[-1]

    monkeypatch.setattr(backends, "make_backend", make)
    f = tmp_path / "mt-bench.jsonl"
    rows = [{"id": "81", "completion": "first answer",
             "samples": {"mt-bench/81": ["first answer"], "mt-bench/81#t2": ["SECOND-TURN answer"]}},
            {"id": "82", "completion": "only turn one"}]  # a plain row: turn 2 reported missing
    f.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    args = ["score", "mt-bench", "--completions", str(f), "--data-dir", str(data_dir),
            "--store", str(tmp_path / "s.sqlite"), "--judge", str(embedded_model_dir)]
    assert main(args) == 0
    items = {s["id"]: s for s in map(_json.loads, capsys.readouterr().out.splitlines())}
    assert [t["rating"] for t in items["81"]["turns"]] == [7.0, 7.0]
    assert items["82"]["turns"][0]["rating"] == 7.0 and items["82"]["turns"][1]["rating"] is None
    prompts = [r.messages[-1]["content"] for call in made[0].calls for r in call]
    assert len(prompts) == 3 and sum("SECOND-TURN answer" in p for p in prompts) == 1
    # a samples key that is not one of the item's requests is named, not ignored
    f.write_text(_json.dumps({"id": "81", "completion": "a", "samples": {"mt-bench/99#t2": ["b"]}}) + "\n")
    assert main(args) == 2
    assert "'mt-bench/99#t2' is not one of its requests" in capsys.readouterr().err
