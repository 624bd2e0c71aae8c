"""Arena-Hard-Auto (Li et al., 2024, "From Crowdsourced Data to High-Quality Benchmarks:
Arena-Hard and BenchBuilder Pipeline"; lmarena/arena-hard-auto).

Data: v0.1 (default): 500 questions, <data dir>/arena_hard/v0.1/question.jsonl
(lmarena/arena-hard-auto@196f6b8); baseline answers gpt-4-0314 from
arena_hard/v0.1/model_answer/. Option `version: v2.0`: the 500 hard_prompt questions with
the o3-mini-2025-01-31 baseline (the creative_writing baseline is not shipped, so those 250
are left out and the result says so). Item id: the question uid.
Prompt: the question as the only user message. Generation: greedy, max 4096 (FuseEval).
Option `answers: <model>` judges a shipped answer file (arena_hard/<version>/model_answer/
<model>.jsonl) instead of the candidate's generations.
Judge: upstream's system prompt (judge_utils.py OG_ARENA_HARD_PROMPT) and prompt template,
temperature 0, max_tokens 4096 (option `judge_max_tokens`), two games per question
(game 1: A = baseline, B = model; game 2: swapped). Verdict: the label in [[...]] (then
[...]); a reply with no label is continued once as upstream ("continue your judgment and
finish by outputting a final verdict label"); several different labels, or still none =
unparseable, counted, kept raw, left out.
Published judge: gpt-4-1106-preview (v0.1), gpt-4.1 (v2.0).
Metric (show_result.py, v0.1): each game is a battle against the baseline, strong verdicts
(A>>B, B>>A) repeated 3 times, ties half a win; Bradley-Terry by logistic regression
(sklearn, no penalty) anchored at the baseline = 1000; score = predicted win rate vs the
baseline (percent); 95% CI from the 2.5/97.5 percentiles of `bootstrap_rounds` (default
100, >= 100) bootstrap resamples of the battles, seed 42, as upstream. Style control is
not implemented. Per item: score = mean outcome of its two games for the model
(win 1, tie 0.5, loss 0; NaN when neither game has a verdict).
VERSION 1.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Benchmark, Example, take
from harness.data import DataSource, load_rows, read_jsonl, resolve_data_dir
from harness.errors import DataNotFoundError, UsageError
from harness.judges import JudgeCall, get_judge, judge_info, judge_spec, snapshot, stats_delta
from harness.judges.parsers import ARENA_LABELS, arena_verdict, has_label
from harness.types import Completion, Request, SamplingParams

log = logging.getLogger(__name__)

# arena-hard-auto utils/judge_utils.py OG_ARENA_HARD_PROMPT (= legacy judge_config.yaml system_prompt)
SYSTEM = """Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your job is to evaluate which assistant's answer is better.

Begin your evaluation by generating your own answer to the prompt. You must provide your answers before judging any answers.

When evaluating the assistants' answers, compare both assistants' answers with your answer. You must identify and correct any mistakes or inaccurate information.

Then consider if the assistant's answers are helpful, relevant, and concise. Helpful means the answer correctly responds to the prompt or follows the instructions. Note when user prompt has any ambiguity or more than one interpretation, it is more helpful and appropriate to ask for clarifications or more information from the user than providing an answer based on assumptions. Relevant means all parts of the response closely connect or are appropriate to what is being asked. Concise means the response is clear and not verbose or excessive.

Then consider the creativity and novelty of the assistant's answers when needed. Finally, identify any missing important information in the assistants' answers that would be beneficial to include when responding to the user prompt.

After providing your explanation, you must output only one of the following choices as your final verdict with a label:

1. Assistant A is significantly better: [[A>>B]]
2. Assistant A is slightly better: [[A>B]]
3. Tie, relatively the same: [[A=B]]
4. Assistant B is slightly better: [[B>A]]
5. Assistant B is significantly better: [[B>>A]]

Example output: "My final verdict is tie: [[A=B]]"."""
TEMPLATE = ("<|User Prompt|>\n{question}\n\n<|The Start of Assistant A's Answer|>\n{answer_a}\n"
            "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{answer_b}\n"
            "<|The End of Assistant B's Answer|>")
PROMPT_VERSION = "arena-hard-v0.1-og@196f6b8"
CONTINUE = "continue your judgment and finish by outputting a final verdict label"  # gen_judgment.py
WEIGHT = 3  # show_result.py: a strong verdict counts as three battles
VERSIONS = {
    "v0.1": {"baseline": "gpt-4-0314", "judge": "gpt-4-1106-preview", "category": None},
    "v2.0": {"baseline": "o3-mini-2025-01-31", "judge": "gpt-4.1", "category": "hard_prompt"},
}


def judge_messages(question: str, answer_a: str, answer_b: str) -> tuple[dict[str, str], ...]:
    user = TEMPLATE.replace("{question}", "\0q").replace("{answer_a}", "\0a").replace("{answer_b}", "\0b")
    parts = {"\0q": question, "\0a": answer_a, "\0b": answer_b}
    for k, v in parts.items():  # placeholders swapped for NULs first, so answers are never re-substituted
        user = user.replace(k, v.replace("\0", ""))
    return ({"role": "system", "content": SYSTEM}, {"role": "user", "content": user})


def answer_text(row: dict[str, Any]) -> str:
    """An answer row in the current (messages) or legacy (choices/turns) upstream format."""
    if "messages" in row:
        content = row["messages"][-1]["content"]
        return content["answer"] if isinstance(content, dict) else content
    return row["choices"][0]["turns"][0]["content"]


class ArenaHard(Benchmark):
    name = "arena-hard"
    VERSION = "1"
    headline = "score"
    default_params = SamplingParams(temperature=0.0, max_tokens=4096)

    @property
    def version_info(self) -> dict[str, Any]:
        v = self.options.get("version", "v0.1")
        if v not in VERSIONS:
            raise UsageError(f"arena-hard option version={v!r} is not known; use one of {', '.join(VERSIONS)}")
        return {"name": v, **VERSIONS[v]}

    def _answers(self, model: str) -> dict[str, str]:
        v = self.version_info["name"]
        root = resolve_data_dir(self.ctx.data_dir)
        path = root / "arena_hard" / v / "model_answer" / f"{model}.jsonl" if root else None
        if path is None or not path.exists():
            have = sorted(p.stem for p in path.parent.glob("*.jsonl")) if path and path.parent.exists() else []
            raise DataNotFoundError(f"no arena-hard {v} answers for {model!r} at {path or '<no data dir>'}; "
                                    f"shipped: {', '.join(have) or 'none'}. Pass --data-dir ../shared/benchmarks")
        return {r["uid"] if "uid" in r else r["question_id"]: answer_text(r) for r in read_jsonl(path)}

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        vi = self.version_info
        rows, self.dataset_revision = load_rows(self.name, DataSource(f"arena_hard/{vi['name']}/question.jsonl"),
                                                self.ctx.data_dir)
        if vi["category"]:
            dropped = sum(r.get("category") != vi["category"] for r in rows)
            if dropped:
                log.warning("arena-hard %s: %d questions outside %r left out (their baseline is not shipped)",
                            vi["name"], dropped, vi["category"])
            rows = [r for r in rows if r.get("category") == vi["category"]]
        baseline = self._answers(vi["baseline"])
        given = self._answers(self.options["answers"]) if self.options.get("answers") else None
        examples = []
        for r in rows:
            uid = r.get("uid") or r.get("question_id")
            prompt = r["prompt"] if "prompt" in r else r["turns"][0]["content"]
            data = {"question": prompt, "category": r.get("category"), "cluster": r.get("cluster"),
                    "baseline": baseline[uid]}
            if given is not None:
                data["answer"] = given[uid]
            examples.append(Example(id=uid, data=data))
        return take(examples, limit)

    def to_requests(self, example: Example) -> list[Request]:
        if "answer" in example.data:  # judging a shipped answer file: nothing to generate
            return []
        return [self.chat(example, example.data["question"])]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict[str, Any]]:
        vi = self.version_info
        published = self.options.get("published_judge", vi["judge"])
        judge = get_judge(self.ctx, judge_spec(self), self.name, published)
        before = snapshot(judge)
        params = SamplingParams(temperature=0.0, max_tokens=int(self.options.get("judge_max_tokens", 4096)))
        items, calls, where = [], [], []
        for ex in examples:
            if "answer" in ex.data:
                answer, err = ex.data["answer"], None
            else:
                c = completions[self.request_id(ex)]
                answer, err = c.text, c.error
            item: dict[str, Any] = {"id": ex.id, "score": math.nan, "answer_tokens_chars": len(answer or ""),
                                    "games": [None, None]}
            items.append(item)
            if err:
                item["error"] = f"generation failed: {err}"
                continue
            q, base = ex.data["question"], ex.data["baseline"]
            for g, (a, b) in enumerate(((base, answer), (answer, base))):
                calls.append(JudgeCall(id=self.request_id(ex, f"#judge{g + 1}"), messages=judge_messages(q, a, b),
                                       params=params))
                where.append((item, g))
        replies = judge.run(calls, PROMPT_VERSION)
        # Upstream (gen_judgment.py, number_of_judgment_attempts = 2): a reply with no label at
        # all is continued once, the judge asked to finish with a verdict; an ambiguous one is not.
        again = [i for i, r in enumerate(replies) if not r.error and not has_label(r.text)]
        if again:
            cont = [JudgeCall(id=calls[i].id + "-cont", params=params, messages=calls[i].messages + (
                {"role": "assistant", "content": replies[i].text or ""}, {"role": "user", "content": CONTINUE}))
                for i in again]
            for i, r in zip(again, judge.run(cont, PROMPT_VERSION)):
                replies[i] = r if r.error else replace(r, text=(replies[i].text or "") + "\n" + (r.text or ""))
        errors = unparseable = 0
        for (item, g), reply in zip(where, replies):
            game: dict[str, Any] = {"judgment": reply.text, "score": None}
            if reply.error:
                game["error"] = reply.error
                errors += 1
            else:
                game["score"] = arena_verdict(reply.text)
                unparseable += game["score"] is None
            item["games"][g] = game
        for item in items:
            outcomes = [_model_outcome(g, i) for i, g in enumerate(item["games"]) if g and g.get("score")]
            if outcomes:
                item["score"] = sum(outcomes) / len(outcomes)
        self._judge = judge_info(judge, PROMPT_VERSION, published, stats_delta(before, snapshot(judge)),
                                 judge_errors=errors, unparseable=unparseable)
        self._judge["baseline"] = vi["baseline"]
        return items

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        vi = self.version_info
        rows = [{"question_id": s["id"], "model": "model", "games": [g or {} for g in s["games"]]} for s in scores]
        rounds = int(self.options.get("bootstrap_rounds", 100))
        res = arena_hard_scores(rows, baseline=vi["baseline"], rounds=rounds)
        m = res.get("model") or {"score": None, "lower": None, "upper": None, "battles": 0}
        n_games = sum(1 for s in scores for g in s["games"] if g)
        out = {"score": {"value": m["score"], "ci_low": m["lower"], "ci_high": m["upper"],
                         "n": sum(1 for s in scores if not math.isnan(s["score"])),
                         "bootstrap_rounds": rounds, "baseline": vi["baseline"], "battles": m["battles"]},
               "judge_errors": {"value": sum(1 for s in scores for g in s["games"] if g and g.get("error")),
                                "n": n_games},
               "judge_unparseable": {"value": sum(1 for s in scores for g in s["games"]
                                                  if g and not g.get("error") and g.get("score") is None),
                                     "n": n_games}}
        return out

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["arena_hard_version"] = self.version_info["name"]
        if self.options.get("answers"):
            out["answers_from"] = self.options["answers"]
        if hasattr(self, "_judge"):
            out["judge"] = self._judge
        return out


def _model_outcome(game: dict[str, Any], index: int) -> float:
    """The model's result in one game: game 1 has the model as B, game 2 as A."""
    label = game["score"]
    if label == "A=B":
        return 0.5
    a_wins = label in ("A>B", "A>>B")
    return float(a_wins if index == 1 else not a_wins)


# ---- aggregation (upstream show_result.py, v0.1) ------------------------------------------
def battles_from_judgments(rows: list[dict[str, Any]], baseline: str) -> list[tuple[str, str, str]]:
    """(model_a, model_b, winner) battles; model_a is always the baseline, as upstream."""
    battles = []
    for row in rows:
        for g, game in enumerate(row["games"][:2]):
            label = (game or {}).get("score")
            if label not in ARENA_LABELS:
                continue  # no verdict: weight 0 upstream
            weight = WEIGHT if label in ("A>>B", "B>>A") else 1
            if label == "A=B":
                winner = "tie"
            else:
                a_wins = label in ("A>B", "A>>B")
                # game 1: A is the baseline (model_a); game 2: A is the model (model_b)
                winner = "model_a" if a_wins == (g == 0) else "model_b"
            battles.extend([(baseline, row["model"], winner)] * weight)
    return battles


def compute_mle_elo(battles: list[tuple[str, str, str]], baseline: str, scale: float = 400, base: float = 10,
                    init: float = 1000) -> dict[str, float]:
    """Bradley-Terry ratings by unpenalised logistic regression; every battle counted twice
    and a tie as one win each way (show_result.py::compute_mle_elo)."""
    models = sorted({m for a, b, _ in battles for m in (a, b)})
    if baseline in models and all(baseline in (a, b) for a, b, _ in battles):
        # Every battle is against the baseline (always so for judgments): the likelihood
        # splits per model and each MLE has a closed form, logit(P) with
        # P = (wins + ties / 2) / battles. Same estimator as the fit below, 100x faster.
        out = {baseline: init}
        for m in models:
            if m == baseline:
                continue
            mine = [(a, w) for a, b, w in battles if m in (a, b)]
            p = sum(0.5 if w == "tie" else float((w == "model_b") == (a == baseline)) for a, w in mine) / len(mine)
            out[m] = init + (math.inf if p == 1 else -math.inf if p == 0 else scale * math.log(p / (1 - p), base))
        return out
    return fit_mle_elo(battles, baseline, scale, base, init)


def fit_mle_elo(battles: list[tuple[str, str, str]], baseline: str, scale: float = 400, base: float = 10,
                init: float = 1000) -> dict[str, float]:
    """The general case: upstream's logistic regression (any battle graph)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    models = sorted({m for a, b, _ in battles for m in (a, b)})
    idx = {m: i for i, m in enumerate(models)}
    n = len(battles)
    doubled = battles + battles
    X = np.zeros((2 * n, len(models)))
    rows = np.arange(2 * n)
    X[rows, [idx[a] for a, _, _ in doubled]] = math.log(base)
    X[rows, [idx[b] for _, b, _ in doubled]] = -math.log(base)
    Y = np.array([1.0 if w == "model_a" else 0.0 for _, _, w in doubled])
    Y[:n][np.array([w == "tie" for _, _, w in battles], dtype=bool)] = 1.0
    if len(set(Y.tolist())) < 2:  # one outcome only: the MLE is at infinity
        sign = 1.0 if Y[0] == 1.0 else -1.0
        return {m: init + (0.0 if m == baseline else -sign * math.inf) for m in models}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn deprecations and convergence chatter
        lr = LogisticRegression(fit_intercept=False, C=math.inf, tol=1e-8, max_iter=1000)
        lr.fit(X, Y)
    elo = scale * lr.coef_[0] + init
    if baseline in idx:
        elo += init - elo[idx[baseline]]
    return {m: float(elo[idx[m]]) for m in models}


def win_rate_vs(ratings: dict[str, float], baseline: str, scale: float = 400, base: float = 10) -> dict[str, float]:
    """Predicted win rate (percent, 2 decimals as upstream) of each model against the baseline."""
    out = {}
    for m, r in ratings.items():
        x = (ratings[baseline] - r) / scale * math.log(base)
        p = 0.0 if x > 700 else 1.0 if x < -700 else 1 / (1 + math.exp(x))  # no overflow at +-inf
        out[m] = round(p * 100, 2) if m != baseline else 50.0
    return out


def arena_hard_scores(rows: list[dict[str, Any]], baseline: str, rounds: int = 100,
                      seed: int = 42) -> dict[str, dict[str, Any]]:
    """{model: {score, lower, upper, battles}} from judgment rows ({question_id, model, games:
    [{score}, {score}]}), the way show_result.py computes the v0.1 leaderboard."""
    import numpy as np

    if rounds < 100:
        raise UsageError(f"bootstrap rounds must be >= 100 for a meaningful 95% CI, got {rounds}")
    battles = battles_from_judgments(rows, baseline)
    if not battles:
        return {}
    point = win_rate_vs(compute_mle_elo(battles, baseline), baseline)
    rng = np.random.RandomState(seed)
    boots: dict[str, list[float]] = {m: [] for m in point}
    for _ in range(rounds):
        sample = [battles[i] for i in rng.randint(0, len(battles), size=len(battles))]
        elo = compute_mle_elo(sample, baseline)
        for m in point:
            boots[m].append(elo.get(m, math.nan))
    out = {}
    for m in point:
        if m == baseline:
            continue
        b = np.array(boots[m], dtype=float)
        b = b[~np.isnan(b)]
        lo_hi = {}
        for key, q in (("lower", 2.5), ("upper", 97.5)):
            finite = np.clip(b, -1e9, 1e9)
            lo_hi[key] = win_rate_vs({m: float(np.percentile(finite, q)), baseline: 1000.0}, baseline)[m]
        out[m] = {"score": point[m], **lo_hi, "battles": sum(1 for a, bb, _ in battles if bb == m)}
    return out


def read_judgments(paths: list[Path]) -> list[dict[str, Any]]:
    """Upstream judgment JSONL (legacy: question_id/model/games[{score}], current: uid/model/games)."""
    rows = []
    from harness.data import read_jsonl_records

    for path in paths:
        for n, r in read_jsonl_records(path, "an arena-hard judgment row"):
            if "games" not in r or "model" not in r:
                raise UsageError(f"{path}:{n}: expected an arena-hard judgment row with 'model' and 'games' "
                                 "(model_judgment/<judge>/<model>.jsonl)")
            games = [g if isinstance(g, dict) else {} for g in r["games"]]
            if len(games) != 2:
                raise UsageError(f"{path}:{n}: expected 2 games (both orders), found {len(games)}")
            rows.append({"question_id": r.get("uid") or r.get("question_id"), "model": r["model"], "games": games})
    return rows

