"""Fusion data construction (issue 7): pools, sampling through the real runner and store,
real scorers (math-verify, sandbox, judge layer, transformers reward model), contamination,
the whole `build_data` stage, resumption after a source fails. Engines are scripted fakes
here (unit tests); tests/test_fusion_e2e.py runs the real model through vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.errors import UsageError
from tests.fakes import FakeBackend
from trainers.data import normalize
from trainers.fusion.config import PoolSpec, load_recipe
from trainers.fusion.pipeline import build_data
from trainers.fusion.pools import MBPP_TASKS, load_pools
from trainers.fusion.selection import FuseRow

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def model_dir(tmp_path: Path, name: str) -> Path:
    """A model directory the resolver accepts; its config makes the fingerprint unique. Only
    used with scripted backends, which never load weights."""
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "name": name}))
    return d


def write_recipe(tmp_path: Path, **recipe) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(recipe))
    return p


def gsm8k_gold_by_question(data_dir: Path, rows: int) -> dict[str, str]:
    from harness.benchmarks.math_answers import gsm8k_gold

    out = {}
    with open(data_dir / "gsm8k" / "train.jsonl") as fh:
        for _, line in zip(range(rows), fh):
            r = json.loads(line)
            out[r["question"]] = gsm8k_gold(r["answer"])
    return out


def math_responder(golds: dict[str, str], right_samples: set[int]):
    """Sample i answers the gold when i is in right_samples, else gold + 1."""
    def respond(req, i):
        q = req.messages[-1]["content"].split("\nPlease reason")[0]
        g = golds[q]
        val = g if i in right_samples else str(int(g) + 1)
        return f"Let me think step by step (sample {i}). The answer is \\boxed{{{val}}}."
    return respond


# ---- pools ---------------------------------------------------------------------------------
def test_builtin_pools_read_the_shared_data(data_dir):
    items, reps = load_pools([PoolSpec(name="g", kind="math", builtin="gsm8k-train", offset=2, limit=3),
                              PoolSpec(name="m", kind="code", builtin="mbpp")], data_dir, Path("."))
    g = [it for it in items if it.pool == "g"]
    m = [it for it in items if it.pool == "m"]
    assert [it.id for it in g] == ["g/2", "g/3", "g/4"]
    assert "\\boxed{}" in g[0].prompt and g[0].meta["gold"].lstrip("-").isdigit()
    assert {int(it.id.split("/")[1]) for it in m} == MBPP_TASKS
    assert all(it.meta["entry_point"] and it.meta["tests"] for it in m)
    assert reps["m"].kept == 474


def test_duplicates_and_empty_prompts_are_reported_and_dropped(tmp_path):
    pool = tmp_path / "pool.jsonl"
    rows = [{"prompt": "Write a haiku."}, {"prompt": "  "}, {"prompt": "Write  a haiku. "}, {"question": "Q2"},
            {"prompt": "Write a limerick."}, {"text": ""}]
    pool.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items, reps = load_pools([PoolSpec(name="i", kind="instruction", path=str(pool))], None, tmp_path)
    assert [it.prompt for it in items] == ["Write a haiku.", "Q2", "Write a limerick."]
    r = reps["i"]
    assert (r.rows, r.kept, r.empty, r.duplicate) == (6, 3, 2, 1)
    assert r.examples["duplicate"] == ["i/2"]


def test_pool_field_errors_name_the_fields(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(UsageError, match="instruction"):
        load_pools([PoolSpec(name="i", kind="instruction", path=str(pool))], None, tmp_path)
    with pytest.raises(UsageError, match="field 'prompt_text'"):
        load_pools([PoolSpec(name="i", kind="instruction", path=str(pool), field="prompt_text")], None, tmp_path)


# ---- recipe errors ---------------------------------------------------------------------------
def test_recipe_errors_are_clear(tmp_path, store):
    base = {"output_dir": str(tmp_path / "out"), "sources": [{"name": "a", "model": str(model_dir(tmp_path, "a"))}]}
    p = write_recipe(tmp_path, **base, pools=[{"name": "g", "kind": "math", "builtin": "gsm8k-train", "limt": 2}])
    with pytest.raises(UsageError, match=r"pools\[0\]\.limt.*pools\[0\]\.limit"):
        load_recipe(p)
    p = write_recipe(tmp_path, **base, pools=[{"name": "i", "kind": "instruction", "path": "x.jsonl"}])
    with pytest.raises(UsageError, match="reward_model or scoring.judge"):
        load_recipe(p)
    p = write_recipe(tmp_path, **{**base, "sources": [{"name": "a", "model": "smollm2-135m-instruc"}]},
                     pools=[{"name": "g", "kind": "math", "builtin": "gsm8k-train"}])
    recipe, b = load_recipe(p)
    with pytest.raises(UsageError, match="unknown model 'smollm2-135m-instruc'.*smollm2-135m-instruct"):
        build_data(recipe, b, store)
    p = write_recipe(tmp_path, **base, pools=[{"name": "g", "kind": "math", "builtin": "gsm8k-train"}],
                     contamination={"benchmarks": ["gsm8"]})
    recipe, b = load_recipe(p)
    with pytest.raises(UsageError, match="unknown benchmark 'gsm8'"):
        build_data(recipe, b, store)
    twice = [{"name": "a", "model": str(tmp_path / "a")}, {"name": "b", "model": str(tmp_path / "a")}]
    p = write_recipe(tmp_path, **{**base, "sources": twice},
                     pools=[{"name": "g", "kind": "math", "builtin": "gsm8k-train"}])
    recipe, b = load_recipe(p)
    with pytest.raises(UsageError, match="same model"):
        build_data(recipe, b, store)


# ---- the whole stage with scripted engines -------------------------------------------------------
def _math_recipe(tmp_path, data_dir, rows=4, target=True, **extra):
    recipe = {"output_dir": str(tmp_path / "out"), "data_dir": str(data_dir),
              "pools": [{"name": "gsm", "kind": "math", "builtin": "gsm8k-train", "limit": rows}],
              "sources": [{"name": "strong", "model": str(model_dir(tmp_path, "strong"))},
                          {"name": "weak", "model": str(model_dir(tmp_path, "weak"))}],
              "sampling": {"n": 2, "max_tokens": 64},
              "contamination": {"benchmarks": ["gsm8k"]}, **extra}
    if target:
        recipe["target"] = {"model": str(model_dir(tmp_path, "target")), "n": 2}
    return load_recipe(write_recipe(tmp_path, **recipe))


def test_build_data_writes_trainer_ready_files(tmp_path, store, data_dir):
    recipe, base = _math_recipe(tmp_path, data_dir)
    golds = gsm8k_gold_by_question(data_dir, 4)
    fakes = {"strong": FakeBackend(math_responder(golds, {0})), "weak": FakeBackend(math_responder(golds, set())),
             "target": FakeBackend(math_responder(golds, {1}))}
    res = build_data(recipe, base, store, progress=False, backend_factories={k: (lambda f=f: f) for k, f in fakes.items()})
    out = res.output_dir
    sft = [json.loads(x) for x in (out / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(x) for x in (out / "dpo.jsonl").read_text().splitlines()]
    wrpo = [json.loads(x) for x in (out / "wrpo.jsonl").read_text().splitlines()]
    assert len(sft) == len(dpo) == len(wrpo) == 4
    for r in sft:
        assert r["source"] == "strong" and "(sample 0)" in r["messages"][-1]["content"]
        normalize(r, "sft")
    for r in dpo:  # strong is the only source with a correct answer: its own right vs wrong
        assert r["source"] == "strong" and "(sample 0)" in r["chosen"] and "(sample 1)" in r["rejected"]
        normalize(r, "pref")
    for r in wrpo:
        assert "(sample 0)" in r["y_ws"] and "(sample 1)" in r["y_wt"] and "(sample 0)" in r["y_l"]
        normalize(r, "wrpo")
    fuse = [FuseRow.model_validate_json(x) for x in (out / "fuse.jsonl").read_text().splitlines()]
    assert len(fuse) == 4 and res.counts["fuse"] == 4
    for r in fuse:  # FuseRL rows: every correct answer (only strong's), one same-source pair
        assert [a.source for a in r.answers] == ["strong"] and r.verified
        assert [(p.source, p.chosen_score, p.rejected_score) for p in r.pairs] == [("strong", 1.0, 0.0)]
    stats = json.loads((out / "stats.json").read_text())["sources"]
    assert stats["strong"]["chosen_share"] == 1.0 and stats["strong"]["correct_rate"] == 0.5
    assert stats["weak"]["chosen_share"] == 0.0 and stats["weak"]["correct_rate"] == 0.0
    assert stats["target"]["correct_rate"] == 0.5
    report = json.loads((out / "report.json").read_text())
    assert report["sampling"]["strong"]["generated"] == 4 and report["failed_models"] == {}
    assert report["scorers"]["gsm"]["type"] == "verifier"
    answers = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers[0]["answers"]) == 4 and answers[0]["answers"][0]["extracted"] is not None
    # A second run is served from the store: no engine is built at all.
    def boom():
        raise AssertionError("engine started on a fully cached run")
    res2 = build_data(recipe, base, store, progress=False,
                      backend_factories={"strong": boom, "weak": boom, "target": boom})
    assert res2.counts == res.counts
    assert json.loads((out / "report.json").read_text())["sampling"]["strong"]["cached"] == 4


def test_target_samples_only_prompts_that_have_a_y_ws(tmp_path, store, data_dir):
    """WRPO rows need a source winner: the target is not sampled on prompts no source got right."""
    recipe, base = _math_recipe(tmp_path, data_dir)
    golds = gsm8k_gold_by_question(data_dir, 4)
    solved = list(golds)[1:3]  # the sources get only questions 1 and 2 right
    def some_right(req, i):
        q = req.messages[-1]["content"].split("\nPlease reason")[0]
        val = golds[q] if (q in solved and i == 0) else str(int(golds[q]) + 1)
        return f"Sample {i}: \\boxed{{{val}}}."
    fakes = {"strong": FakeBackend(some_right), "weak": FakeBackend(some_right),
             "target": FakeBackend(math_responder(golds, {1}))}
    res = build_data(recipe, base, store, progress=False, backend_factories={k: (lambda f=f: f) for k, f in fakes.items()})
    sampled = [r.id for call in fakes["target"].calls for r in call]
    assert sorted(sampled) == ["gsm/1", "gsm/2"]
    assert res.counts["wrpo"] == 2
    report = json.loads((res.output_dir / "report.json").read_text())
    assert report["sampling"]["target"]["requests"] == 2 and report["sampling"]["target"]["prompts_without_y_ws"] == 2
    assert report["selection"]["wrpo_dropped"] == {"no source answer to use as y_ws": 2}


class CrashingBackend(FakeBackend):
    """Answers `ok` requests, then the engine dies (as a crashed vLLM worker would)."""

    def __init__(self, respond, ok: int):
        super().__init__(respond)
        self.ok = ok

    def generate(self, requests, on_result=None):
        for i, r in enumerate(requests):
            if i >= self.ok:
                raise RuntimeError("engine died")
            super().generate([r], on_result=lambda _j, c, i=i: on_result(i, c) if on_result else None)


def test_failing_source_keeps_finished_answers_and_resumes(tmp_path, store, data_dir):
    recipe, base = _math_recipe(tmp_path, data_dir, target=False)
    golds = gsm8k_gold_by_question(data_dir, 4)
    good = FakeBackend(math_responder(golds, {0}))
    crash = CrashingBackend(math_responder(golds, {0, 1}), ok=2)
    res = build_data(recipe, base, store, progress=False,
                     backend_factories={"strong": lambda: good, "weak": lambda: crash})
    assert "engine died" in res.failed_models["weak"]
    rep = res.report["sampling"]["weak"]
    assert rep["missing"] == 2 and rep["failed"]
    answers = [json.loads(x) for x in (res.output_dir / "answers.jsonl").read_text().splitlines()]
    weak_counts = [sum(a["source"] == "weak" for a in row["answers"]) for row in answers]
    assert weak_counts == [2, 2, 0, 0]  # the two finished prompts are kept
    # Resume: only the two unfinished prompts reach the engine.
    again = FakeBackend(math_responder(golds, {0, 1}))
    res2 = build_data(recipe, base, store, progress=False,
                      backend_factories={"strong": lambda: good, "weak": lambda: again})
    assert res2.failed_models == {}
    assert sum(len(c) for c in again.calls) == 2
    assert res2.report["sampling"]["weak"]["cached"] == 2
    assert res2.counts["sft"] == 4


# ---- contamination ---------------------------------------------------------------------------
def test_contamination_finds_planted_overlaps_and_nothing_else(data_dir):
    from harness.benchmarks.humaneval import load_humaneval_rows
    from harness.data import read_jsonl
    from trainers.fusion.contamination import build_index, check_texts

    index = build_index(data_dir, 13)
    assert "gsm8k" in index.loaded and "humaneval" in index.loaded
    assert "livecodebench" in index.skipped or "livecodebench" in index.loaded
    test_q = read_jsonl(data_dir / "gsm8k" / "test.jsonl")[7]["question"]
    solution = load_humaneval_rows(data_dir)[0][3]["prompt"]  # a HumanEval prompt copied into an answer
    planted = [("p1", "prompt", "Here is a problem for you: " + test_q.upper().replace(" ", "  ")),
               ("p2", "answer", "Sure!\n" + solution + "\nHope that helps.")]
    train = read_jsonl(data_dir / "gsm8k" / "train.jsonl")[:10]
    clean = [(f"c{i}", "prompt", r["question"]) for i, r in enumerate(train)]
    clean += [("c-new", "prompt", "Write a short poem about the sea at night, with thirteen or more words in it.")]
    hits = check_texts(planted + clean, index)
    assert {(h["id"], h["benchmark"]) for h in hits} == {("p1", "gsm8k"), ("p2", "humaneval")}
    assert [h["benchmark_item"] for h in hits if h["id"] == "p1"] == ["7"]
    # The n is configurable: a 40-gram index does not match a 20-word copy.
    twenty = " ".join(test_q.split()[:20])
    assert check_texts([("x", "prompt", twenty)], build_index(data_dir, 40, ["gsm8k"])) == []
    assert check_texts([("x", "prompt", twenty)], build_index(data_dir, 13, ["gsm8k"]))


def test_contaminated_rows_are_dropped_by_default_and_kept_when_asked(tmp_path, store, data_dir):
    from harness.data import read_jsonl

    test_row = read_jsonl(data_dir / "gsm8k" / "test.jsonl")[11]
    pool = tmp_path / "math.jsonl"
    rows = [{"question": test_row["question"], "answer": test_row["answer"]},
            {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "#### 7"}]
    pool.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    def run(drop: bool):
        recipe = {"output_dir": str(tmp_path / f"out-{drop}"), "pools": [{"name": "m", "kind": "math", "path": str(pool),
                                                          "answer_field": "answer"}],
                  "sources": [{"name": "s", "model": str(tmp_path / "s")}], "sampling": {"n": 1},
                  "contamination": {"benchmarks": ["gsm8k", "math500"], "drop": drop}}
        r, b = load_recipe(write_recipe(tmp_path, **recipe))
        golds = {"Tom": "7", test_row["question"][:10]: test_row["answer"].split("####")[-1].strip()}
        fake = FakeBackend(lambda req, i: "\\boxed{{{}}}".format(next(v for k, v in golds.items()
                                                                if req.messages[0]["content"].startswith(k))))
        return build_data(r, b, store, data_dir=data_dir, progress=False, backend_factories={"s": lambda: fake})

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "config.json").write_text("{}")
    res = run(True)
    cont = json.loads((res.output_dir / "contamination.json").read_text())
    assert cont["contaminated_prompts"] == ["m/0"] and cont["hits"][0]["benchmark_item"] == "11"
    assert [json.loads(x)["id"] for x in (res.output_dir / "sft.jsonl").read_text().splitlines()] == ["m/1"]
    res = run(False)
    assert len((res.output_dir / "sft.jsonl").read_text().splitlines()) == 2


# ---- scorers -------------------------------------------------------------------------------
def test_code_answers_are_scored_by_running_mbpp_tests(data_dir):
    from trainers.fusion.pools import load_pools
    from trainers.fusion.sampling import Answer
    from trainers.fusion.scoring import score_code

    items, _ = load_pools([PoolSpec(name="m", kind="code", builtin="mbpp", limit=2)], data_dir, Path("."))
    refs = {json.loads(x)["task_id"]: json.loads(x)["code"] for x in
            (data_dir / "prompts" / "mbpp.jsonl").read_text().splitlines() if x.strip()}
    pairs = []
    for it in items:
        ref = refs[int(it.id.split("/")[1])]
        wrong = ref.replace("return", "return None and", 1)
        pairs.append((it, [Answer(f"Here you go:\n```python\n{ref}\n```", "s", 0),
                           Answer(f"```python\n{wrong}\n```", "s", 1), Answer("I cannot write code.", "s", 2)]))
    score_code(pairs)
    for _, answers in pairs:
        assert [a.correct for a in answers] == [True, False, False]
        assert answers[2].detail["outcome"] == "no code found"


def test_judge_ranks_instruction_answers_and_is_cached(tmp_path, store):
    from harness.judges import Judge
    from harness.models import resolve_model
    from harness.runner import LazyBackend
    from trainers.fusion.pools import PromptItem
    from trainers.fusion.sampling import Answer
    from trainers.fusion.scoring import score_with_judge

    fake = FakeBackend(lambda r, i: "Good.\nRating: [[8]]" if "GOOD" in r.messages[-1]["content"] else "no idea")
    judge = Judge(model=resolve_model(str(model_dir(tmp_path, "judge")), store), store=store,
                  backend=LazyBackend(lambda: fake))
    it = PromptItem(id="i/0", pool="i", kind="instruction", prompt="Say hi")
    answers = [Answer("GOOD hi", "s", 0), Answer("bad", "s", 1)]
    rec = score_with_judge([(it, answers)], judge)
    assert answers[0].score == pytest.approx(0.8) and answers[1].score is None
    assert rec["unparsed"] == 1 and rec["type"] == "judge"
    calls = len(fake.calls)
    score_with_judge([(it, [Answer("GOOD hi", "s", 0)])], judge)
    assert len(fake.calls) == calls  # served from the store


def test_reward_model_scores_through_transformers_and_caches(store, embedded_model_dir):
    """The embedded model with a fresh (untrained) scalar head: proves the plumbing only, it
    is not a reward model. The head is seeded so the run is reproducible."""
    import torch

    from trainers.fusion.pools import PromptItem
    from trainers.fusion.sampling import Answer
    from trainers.fusion.scoring import RewardModel, score_with_reward

    torch.manual_seed(0)
    rm = RewardModel("smollm2-135m-instruct", store, batch_size=2)
    it = PromptItem(id="i/0", pool="i", kind="instruction", prompt="Name a colour.")
    answers = [Answer("Blue.", "s", 0), Answer("The colour of the sky on a clear day is blue.", "s", 1),
               Answer("Red", "s", 2)]
    rec = score_with_reward([(it, answers)], rm)
    assert rec["type"] == "reward_model" and rec["model"] == "smollm2-135m-instruct"
    scores = [a.score for a in answers]
    assert all(isinstance(s, float) for s in scores) and len(set(scores)) == 3
    rm2 = RewardModel("smollm2-135m-instruct", store)
    again = [Answer(a.text, "s", a.index) for a in answers]
    score_with_reward([(it, again)], rm2)
    assert [a.score for a in again] == scores and rm2._net is None  # cached: the model was never loaded
