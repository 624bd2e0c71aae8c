"""AlpacaEval 2: the LC reproduction from the published annotations (a must), the CLI, and
scoring with a scripted judge (unit)."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest

from tests.conftest import harness_cli


def _err(proc) -> str:
    """stderr with rich's line wrapping undone."""
    return " ".join(proc.stderr.split())

pytest.importorskip("alpaca_eval")

PUBLISHED_LC = {"gpt-3.5-turbo-1106": 19.30, "gemma-7b-it": 10.43, "FuseChat-Llama-3.1-8B-Instruct": 65.39}


def _annotations(data_dir, model):
    return data_dir / "alpaca_eval" / "results" / model / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json"


@pytest.mark.parametrize("model,lc", sorted(PUBLISHED_LC.items()))
def test_lc_reproduces_published(data_dir, model, lc):
    from harness.benchmarks.alpaca_eval import alpaca_metrics, read_annotations

    m = alpaca_metrics(read_annotations(_annotations(data_dir, model)), data_dir)
    assert round(m["length_controlled_winrate"]["value"], 2) == lc
    # the raw win rate, checked against the leaderboard row beside the annotations
    rows = [json.loads(x) for x in (data_dir / "alpaca_eval" / "leaderboards" / "selected_models.jsonl")
            .read_text().split("\n") if x.strip()]
    row = next(r for r in rows if r["model"] == model)
    assert m["win_rate"]["value"] == pytest.approx(float(row["win_rate"]), abs=1e-3)
    assert m["length_controlled_winrate"]["n"] == 805
    lo, hi = m["length_controlled_winrate"]["ci_low"], m["length_controlled_winrate"]["ci_high"]
    assert lo < lc < hi


def test_aggregate_cli_reproduces_fusechat(data_dir):
    proc = harness_cli("aggregate", "alpaca-eval-2", "--annotations",
                       str(_annotations(data_dir, "FuseChat-Llama-3.1-8B-Instruct")), "--data-dir", str(data_dir),
                       "--json")
    out = json.loads(proc.stdout)
    assert round(out["metrics"]["length_controlled_winrate"]["value"], 2) == 65.39
    assert out["model"] == "FuseChat-Llama-3.1-8B-Instruct"


def test_aggregate_cli_bad_input(tmp_path, data_dir):
    proc = harness_cli("aggregate", "alpaca-eval-2", "--annotations", str(tmp_path / "none.json"), check=False)
    assert proc.returncode == 2 and "does not exist" in _err(proc) and "Traceback" not in _err(proc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "x"}]))
    proc = harness_cli("aggregate", "alpaca-eval-2", "--annotations", str(bad), "--data-dir", str(data_dir),
                       check=False)
    assert proc.returncode == 2 and "lacks" in _err(proc) and "preference" in _err(proc)
    proc = harness_cli("aggregate", "alpaca-eval-2", "--annotations", str(_annotations(data_dir, "gemma-7b-it")),
                       "--data-dir", str(tmp_path), check=False)
    assert proc.returncode == 2 and "df_gamed.csv" in _err(proc)
    proc = harness_cli("aggregate", "alpaca-eval", check=False)
    assert proc.returncode == 2 and "alpaca-eval-2" in _err(proc)


# ---- scoring with a scripted judge ---------------------------------------------------------------
class _Judged:
    """Scripted judge replies: logprobs favouring the model's position, or plain text."""

    def __init__(self, with_logprobs: bool, fail_first: bool = False):
        self.with_logprobs, self.fail_first = with_logprobs, fail_first
        self.generated = 0

    def generate(self, requests, on_result=None):
        from harness.types import Completion

        out = []
        for i, r in enumerate(requests):
            user = r.messages[-1]["content"]
            # the model's answer says MODEL; find which identifier holds it
            model_is_m = user.index("MODEL") < user.index('"M"')
            label = "m" if model_is_m else "M"
            if self.fail_first and i == 0:
                c = Completion(texts=[], finish_reasons=[], error="HTTP 429: rate limited")
            elif self.with_logprobs:
                top = {label: math.log(0.8), ("M" if label == "m" else "m"): math.log(0.2)}
                c = Completion(texts=[label], finish_reasons=["length"], prompt_tokens=100, completion_tokens=[1],
                               logprobs=[[{"token": label, "logprob": top[label], "top": top}]])
            else:
                c = Completion(texts=[label], finish_reasons=["length"], prompt_tokens=100, completion_tokens=[1])
            self.generated += 1
            if on_result:
                on_result(i, c)
            out.append(c)
        return out

    def close(self):
        pass


def _run(data_dir, store, backend, n=6):
    from harness.benchmarks.alpaca_eval import AlpacaEval2
    from harness.benchmarks.base import Context
    from harness.judges import Judge
    from harness.runner import LazyBackend
    from harness.types import Completion

    ctx = Context(data_dir=data_dir, store=store, judge="scripted")

    class M:
        name = kind = path = "scripted"
        fingerprint, template_hash = "fp:s", None

    b = AlpacaEval2(ctx=ctx)
    # the runner passes the run's judge to score(); these unit tests bind it once
    b.score = partial(b.score, judge=Judge(model=M(), store=store, backend=LazyBackend(lambda: backend)))
    exs = b.load(limit=n)
    comps = {b.request_id(e): Completion(texts=["MODEL answer " + "x" * (10 * k)], finish_reasons=["stop"])
             for k, e in enumerate(exs)}
    scores = b.score(exs, comps)
    return b, scores, b.aggregate(scores)


def test_score_with_logprobs_undoes_the_switch(data_dir, store):
    b, scores, metrics = _run(data_dir, store, _Judged(with_logprobs=True))
    # the judge always gives the model's position 0.8: after undoing the switch every
    # preference must be 1.8, whichever order the item was shown in
    assert {s["is_switched_outputs"] for s in scores} == {True, False}
    assert all(s["preference"] == pytest.approx(1.8) for s in scores)
    assert all(s["score"] == pytest.approx(0.8) for s in scores)
    assert metrics["win_rate"]["value"] == pytest.approx(80.0)
    assert metrics["argmax_fallback"]["value"] == 0
    judge = b.score.keywords["judge"]
    from harness.judges import judge_info

    j = judge_info(judge, b, judge.stats, metrics)
    assert j["comparable"] is False and j["model_id"] == "scripted" and j["prompt_tokens"] == 600


def test_argmax_fallback_is_flagged_and_errors_counted(data_dir, store):
    b, scores, metrics = _run(data_dir, store, _Judged(with_logprobs=False, fail_first=True))
    assert metrics["argmax_fallback"]["value"] == 5
    assert metrics["judge_errors"]["value"] == 1
    errored = [s for s in scores if "judge_error" in s]
    assert len(errored) == 1 and math.isnan(errored[0]["score"]) and errored[0]["preference"] is None
    assert all(s["preference"] == 2.0 for s in scores if "judge_error" not in s)
    assert metrics["win_rate"]["n"] == 5  # the error is neither a win, a loss nor a tie


@pytest.mark.parametrize("model", ["gemma-7b-it", "gpt-3.5-turbo-1106"])
def test_parser_and_switch_reproduce_published_preferences(data_dir, model):
    """Re-parse GPT-4-turbo's raw logprobs stored in the published annotations with our
    parser and order switch: every per-item preference must come out as published."""
    from harness.benchmarks.alpaca_eval import is_switched
    from harness.judges.parsers import alpaca_logprob_preference

    rows = json.loads(_annotations(data_dir, model).read_text())
    checked = 0
    for r in rows:
        raw = r.get("raw_completion")
        if not isinstance(raw, dict):
            continue  # a few rows upstream were annotated without stored logprobs
        tok = raw["logprobs"]["content"][0]
        lp = [{"token": tok["token"], "logprob": tok["logprob"],
               "top": {t["token"]: t["logprob"] for t in tok["top_logprobs"]}}]
        pref = alpaca_logprob_preference(lp)
        if is_switched(r["instruction"]):
            pref = 3 - pref
        assert pref == pytest.approx(float(r["preference"]), abs=1e-6), r["instruction"][:60]
        checked += 1
    assert checked >= 800


def test_load_aligns_references(data_dir):
    from harness.benchmarks.alpaca_eval import AlpacaEval2
    from harness.benchmarks.base import Context

    exs = AlpacaEval2(ctx=Context(data_dir=data_dir)).load()
    refs = json.loads((data_dir / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json").read_text())
    assert len(exs) == 805 and [e.data["reference"] for e in exs] == [r["output"] for r in refs]
