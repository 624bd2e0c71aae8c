"""AlpacaEval 2 (Dubois et al., 2024, "Length-Controlled AlpacaEval: A Simple Way to Debias
Automatic Evaluators"; tatsu-lab/alpaca_eval).

Data: the 805 AlpacaEval instructions (tatsu-lab/alpaca_eval@cd543a1, offline
<data dir>/alpaca_eval/alpaca_eval.jsonl); reference outputs gpt4_1106_preview
(<data dir>/alpaca_eval/results/gpt4_1106_preview/model_outputs.json), matched by instruction.
Item id: the 0-based row index, as a string.
Prompt: the instruction as the only user message. Generation: greedy, max 4096 (FuseEval).
Judge: the `weighted_alpaca_eval_gpt4_turbo` annotator: its prompt (alpaca_eval_clf.txt,
split into system + user messages as alpaca_eval does), max_tokens 1, temperature 1,
top-5 logprobs; preference = 2 - P(m)/(P(m)+P(M)) from the first token's logprobs, with
the reference as output_1 and the model as output_2, their order switched per item by
upstream's seeded coin (seed "is_switched_outputs" + instruction + "0"), and switched
preferences mapped back by 3 - x. A backend without logprobs falls back to the argmax
label (preference 1 or 2); such items are counted in `argmax_fallback` and the result is
flagged. Published judge: gpt-4-1106-preview.
Metrics, computed by the `alpaca_eval` package itself: length-controlled win rate (headline,
CI = ±1.96 LC standard error), win rate (CI = ±1.96 standard error), its standard error,
average output length (characters). Judge errors and unparseable replies are counted and
left out (never a win, loss or tie).
Per item: score = preference - 1 (the model's win probability; NaN when unjudged).
VERSION 1.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import random
import re
import warnings
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Example, JudgedOptions, take
from harness.data import DataSource, file_revision, load_rows, resolve_data_dir
from harness.errors import DataNotFoundError, HarnessError, UsageError
from harness.judges import Judge, JudgeCall, JudgedBenchmark, missing_judge
from harness.judges.parsers import alpaca_argmax_preference, alpaca_logprob_preference
from harness.types import Completion, Request, SamplingParams

log = logging.getLogger(__name__)

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
PROMPT_VERSION = "alpaca_eval_clf_gpt4_turbo@0.6.6"
PUBLISHED_JUDGE = "gpt-4-1106-preview"
REFERENCE_GENERATOR = "gpt4_1106_preview"
SWITCH_COLUMN = "is_switched_outputs"
SWITCH_SEED = 0  # PairwiseAnnotator passes its seed (default 0) to the processor, not BaseProcessor's 123

# alpaca_eval/evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt (v0.6.6),
# already split into chat messages the way alpaca_eval.utils.prompt_to_chatml does.
SYSTEM = ("You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) "
          "based on the quality of their responses to a given instruction. This process will be used to create a "
          "leaderboard reflecting the most accurate and human-preferred answers.")
USER = '''I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.

## Instruction

{
    "instruction": """{instruction}""",
}

## Model Outputs

Here are the unordered outputs from the models. Each output is associated with a specific model, identified by a unique model identifier.

{
    {
        "model_identifier": "m",
        "output": """{output_1}"""
    },
    {
        "model_identifier": "M",
        "output": """{output_2}"""
    }
}

## Task

Evaluate the models based on the quality and relevance of their outputs, and select the model that generated the best output. Answer by providing the model identifier of the best model. We will use your output as the name of the best model, so make sure your output only contains one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.

## Best Model Identifier'''
JUDGE_PARAMS = SamplingParams(n=1, temperature=1.0, max_tokens=1, logprobs=5, seed=0)
_FIELDS = re.compile(r"\{(instruction|output_1|output_2)\}")


def judge_messages(instruction: str, output_1: str, output_2: str) -> tuple[dict[str, str], ...]:
    """The annotator's messages. One pass over the placeholders so that text inside an
    output that looks like a placeholder is never substituted."""
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    user = _FIELDS.sub(lambda m: values[m.group(1)], USER)
    return ({"role": "system", "content": SYSTEM}, {"role": "user", "content": user.strip()})


def is_switched(instruction: str, seed: int = SWITCH_SEED) -> bool:
    """alpaca_eval's RandomSwitchTwoColumnsProcessor: a coin seeded by the instruction."""
    return random.Random(SWITCH_COLUMN + instruction + str(seed)).choices([False, True], k=1)[0]


class AlpacaEval2Options(JudgedOptions):
    """Keys this benchmark reads from `options` (unknown keys are errors at suite load)."""


class AlpacaEval2(JudgedBenchmark):
    Options = AlpacaEval2Options
    name = "alpaca-eval-2"
    VERSION = "1"
    headline = "length_controlled_winrate"
    default_params = SamplingParams(temperature=0.0, max_tokens=4096)
    PROMPT_VERSION = PROMPT_VERSION
    PUBLISHED_JUDGE = PUBLISHED_JUDGE
    # constrained_verdicts: the one generated token is a preference label; the preference
    # still comes from its logprobs (raw, before the constraint) when the backend returns them
    VERDICT_REGEX = r"[mM]"
    source = DataSource("alpaca_eval/alpaca_eval.jsonl", hub_id="tatsu-lab/alpaca_eval",
                        hub_config="alpaca_eval", hub_split="eval")
    reference_file = "alpaca_eval/results/gpt4_1106_preview/model_outputs.json"

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        refs = self._references()
        examples = []
        for i, r in enumerate(rows):
            if r["instruction"] not in refs:
                raise DataNotFoundError(f"no {REFERENCE_GENERATOR} reference output for AlpacaEval item {i} "
                                        f"({r['instruction'][:60]!r}) in {self.reference_file}")
            examples.append(Example(id=str(i), data={"instruction": r["instruction"], "dataset": r.get("dataset"),
                                                     "reference": refs[r["instruction"]]}))
        return take(examples, limit)

    def _references(self) -> dict[str, str]:
        root = resolve_data_dir(self.ctx.data_dir)
        path = root / self.reference_file if root else None
        if path is None or not path.exists():
            raise DataNotFoundError(f"AlpacaEval 2 needs the {REFERENCE_GENERATOR} reference outputs at "
                                    f"<data dir>/{self.reference_file}; pass --data-dir ../shared/benchmarks")
        self.reference_revision = file_revision(path)
        return {r["instruction"]: r["output"] for r in json.loads(path.read_text(encoding="utf-8"))}

    def to_requests(self, example: Example) -> list[Request]:
        return [self.chat(example, example.data["instruction"])]

    def score(self, examples: list[Example], completions: dict[str, Completion],
              judge: Judge | None = None) -> list[dict[str, Any]]:
        if judge is None:
            raise missing_judge(self.name, self.published_judge)
        params = self.judge_params(judge, JUDGE_PARAMS)
        items, calls, where = [], [], []
        for ex in examples:
            c = completions[self.request_id(ex)]
            item: dict[str, Any] = {"id": ex.id, "score": math.nan, "instruction": ex.data["instruction"],
                                    "output": c.text, "generator_1": REFERENCE_GENERATOR,
                                    "output_length": len(c.text), "preference": None}
            items.append(item)
            if c.error:
                item["error"] = f"generation failed: {c.error}"
                continue
            switched = is_switched(ex.data["instruction"])
            out_1, out_2 = ex.data["reference"], c.text
            if switched:
                out_1, out_2 = out_2, out_1
            item["is_switched_outputs"] = switched
            calls.append(JudgeCall(id=self.request_id(ex, "#judge"),
                                   messages=judge_messages(ex.data["instruction"], out_1, out_2),
                                   params=params))
            where.append(item)
        replies = judge.run(calls, self.PROMPT_VERSION)
        fallback = 0
        for item, reply in zip(where, replies):
            item["judge_text"] = reply.text
            if reply.error:
                item["judge_error"] = reply.error
                continue
            pref = alpaca_logprob_preference(reply.logprobs)
            if reply.logprobs is None:
                pref = alpaca_argmax_preference(reply.text)
                item["argmax_fallback"] = True
                fallback += 1
            if pref is None:
                item["unparseable"] = True
                continue
            if item["is_switched_outputs"]:
                pref = 3.0 - pref
            item["preference"] = pref
            item["score"] = pref - 1.0
        if fallback:
            log.warning("alpaca-eval-2: %d item(s) judged by argmax label (backend gave no logprobs): "
                        "the preference is binarised and not comparable to weighted_alpaca_eval", fallback)
        return items

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        annotations = [{"instruction": s["instruction"], "output_1": None, "output_2": s["output"],
                        "generator_1": REFERENCE_GENERATOR, "generator_2": "model", "annotator": ANNOTATOR,
                        "preference": s["preference"], "reference_length": None}
                       for s in scores if s.get("preference") is not None]
        # the GLM needs the reference text: rebuild it from the loaded data
        refs = self._references()
        for a in annotations:
            a["output_1"] = refs[a["instruction"]]
        metrics = alpaca_metrics(annotations, self.ctx.data_dir) if annotations else _empty_metrics()
        metrics["judge_errors"] = {"value": sum("judge_error" in s for s in scores), "n": len(scores)}
        metrics["judge_unparseable"] = {"value": sum(bool(s.get("unparseable")) for s in scores), "n": len(scores)}
        metrics["argmax_fallback"] = {"value": sum(bool(s.get("argmax_fallback")) for s in scores),
                                      "n": len(scores)}
        return metrics

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["reference"] = {"generator": REFERENCE_GENERATOR, "revision": getattr(self, "reference_revision", None)}
        return out


def _empty_metrics() -> dict[str, dict[str, Any]]:
    none = {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    return {"length_controlled_winrate": dict(none), "win_rate": dict(none), "standard_error": dict(none),
            "avg_length": dict(none)}


def df_gamed_path(data_dir: str | Path | None) -> Path:
    root = resolve_data_dir(data_dir)
    path = root / "alpaca_eval" / "df_gamed.csv" if root else None
    if path is None or not path.exists():
        raise DataNotFoundError(
            "the length-controlled win rate needs alpaca_eval/df_gamed.csv (the file alpaca_eval would download "
            f"from the hub) under the data dir; looked in {path or 'no data dir set'}. "
            "Fix: pass --data-dir ../shared/benchmarks (or set $HARNESS_DATA_DIR)")
    return path


def alpaca_metrics(annotations: list[dict[str, Any]], data_dir: str | Path | None) -> dict[str, dict[str, Any]]:
    """LC win rate, win rate, standard error and average length by the `alpaca_eval`
    package, from annotations in upstream's shape (instruction, output_1 = reference,
    output_2 = model, generator_1/2, annotator, preference in [1, 2])."""
    try:
        import pandas as pd
        from alpaca_eval.metrics import glm_winrate
    except ImportError as e:
        raise HarnessError("AlpacaEval 2 metrics need the alpaca_eval package: "
                           "pip install 'alpaca-eval==0.6.6' 'setuptools<81'") from e
    from unittest import mock

    gamed = str(df_gamed_path(data_dir))
    df = pd.DataFrame(annotations)
    df["preference"] = df["preference"].astype(float)  # upstream files store it as a string
    if df["generator_2"].nunique() != 1:
        raise UsageError(f"annotations hold {df['generator_2'].nunique()} models (generator_2); "
                         "aggregate one model's annotations at a time")
    # Why mock: glm_winrate fetches df_gamed.csv with hf_hub_download; the data dir has the
    # same file, so point the call there instead of the network. save_weights_dir=None keeps
    # the package from writing fitted weights into site-packages.
    with mock.patch.object(glm_winrate, "hf_hub_download", lambda **_: gamed), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        out = glm_winrate.get_length_controlled_winrate(df, save_weights_dir=None, is_warn_extreme_changes=False)
    n = int(out["n_total"])
    lc, lc_se = float(out["length_controlled_winrate"]), float(out.get("lc_standard_error", math.nan))
    wr, se = float(out["win_rate"]), float(out["standard_error"])

    def ci(v: float, s: float) -> dict[str, Any]:
        ok = not math.isnan(s)
        return {"value": v, "ci_low": v - 1.96 * s if ok else None, "ci_high": v + 1.96 * s if ok else None,
                "n": n, "standard_error": s if ok else None}

    return {"length_controlled_winrate": ci(lc, lc_se), "win_rate": ci(wr, se),
            "standard_error": {"value": se, "n": n},
            "discrete_win_rate": {"value": float(out["discrete_win_rate"]), "n": n},
            "avg_length": {"value": float(df["output_2"].str.len().mean()), "n": n},
            "n_wins": {"value": int(out["n_wins"]), "n": n}, "n_draws": {"value": int(out["n_draws"]), "n": n}}


def read_annotations(path: Path) -> list[dict[str, Any]]:
    """An upstream annotations.json (a JSON array) or JSONL of the same rows."""
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        try:
            rows = [json.loads(line) for line in text.split("\n") if line.strip()]
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: neither a JSON array nor JSONL ({e.msg} at line {e.lineno})") from None
    if not isinstance(rows, list) or not rows:
        raise UsageError(f"{path}: expected a non-empty list of annotations")
    need = {"instruction", "output_1", "output_2", "preference", "generator_2"}
    for i, r in enumerate(rows):
        missing = need - set(r) if isinstance(r, dict) else need
        if missing:
            raise UsageError(f"{path}: annotation {i} lacks {', '.join(sorted(missing))}; expected alpaca_eval's "
                             "annotations.json rows (instruction, output_1, output_2, generator_1/2, preference)")
    for r in rows:
        r.setdefault("annotator", ANNOTATOR)
        r.setdefault("generator_1", REFERENCE_GENERATOR)
    return rows
