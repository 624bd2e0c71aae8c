"""Score every answer with the scorer its pool's kind calls for (DESIGN.md §2: the verifier
that grades an evaluation also ranks fusion answers).

  math         harness.scoring.math: extract_answer + is_equivalent (math-verify)
               against the gold answer; score 1.0 / 0.0, `correct` set.
  code         MBPP tests through harness.scoring.code (the HumanEval path's check_programs; a
               thin adapter: MBPP's assert list becomes a check(candidate) function). The
               answer's function only returns plain values for the asserts' inputs, in its own
               sandbox; the asserts run with no model code in the process (issue 18), so an
               answer cannot forge its reward. Score 1.0 / 0.0, `correct` set.
  instruction  a reward model (transformers AutoModelForSequenceClassification, score = the
               logit of the single label) or a judge (harness.judges, FastChat's single-answer
               1-10 prompt, score = rating / 10); `correct` stays None (no verifier). An
               unparsable judge reply leaves the score None: that answer is never selected.
Reward scores and judge verdicts are cached in the store's judgments table, so a re-run
scores only new answers. What scored each pool is recorded in the output's report.
"""

from __future__ import annotations

import logging
from typing import Any

from harness.types import SamplingParams, stable_hash

log = logging.getLogger(__name__)

REWARD_VERSION = "fusion-reward-v1"
JUDGE_VERSION = "fusion-judge-fastchat-single-v1"
# FastChat llm_judge single-v1 (judge_prompts.jsonl), the same rubric MT-Bench grades with.
JUDGE_SYSTEM = "You are a helpful assistant."
JUDGE_TEMPLATE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, "
    "you must rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for "
    "example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n"
    "[The End of Assistant's Answer]")


# ---- math ----------------------------------------------------------------------------------
def score_math(item, answers: list) -> None:
    from harness.scoring.math import extract_answer, is_equivalent

    gold = item.meta["gold"]
    for a in answers:
        extracted = extract_answer(a.text)
        a.correct = bool(is_equivalent(gold, extracted))
        a.score = float(a.correct)
        a.detail = {"extracted": extracted, "gold": gold, "scorer": "math-verify"}


# ---- code ----------------------------------------------------------------------------------
def score_code(pairs: list[tuple[Any, list]], timeout_s: float = 3.0, workers: int | None = None) -> None:
    """All code answers of all prompts in one sandbox batch (it runs one job per core)."""
    from harness.benchmarks.evalplus_mbpp import mbpp_assert_test
    from harness.benchmarks.humaneval import check_programs
    from harness.benchmarks.mbpp_plus import program_from_reply

    jobs, refs = [], {}
    for item, answers in pairs:
        entry = item.meta.get("entry_point")
        test = mbpp_assert_test(item.meta.get("tests") or [], item.meta.get("test_setup_code") or "")
        for a in answers:
            jobs.append(((item.id, a.source, a.index), program_from_reply(a.text, entry), test, entry))
            if item.meta.get("reference"):  # a reference solution: inputs recorded, not discovered
                refs[(item.id, a.source, a.index)] = item.meta["reference"]
    results = check_programs(jobs, timeout_s=timeout_s, workers=workers, references=refs) if jobs else {}
    for item, answers in pairs:
        for a in answers:
            r = results[(item.id, a.source, a.index)]
            a.correct = r["outcome"] == "passed"
            a.score = float(a.correct)
            a.detail = {"outcome": r["outcome"], "reason": r.get("reason"), "scorer": "sandbox:mbpp-tests",
                        "decided_by": r.get("decided_by")}


# ---- instructions: reward model ------------------------------------------------------------
class RewardModel:
    """A sequence-classification reward model (e.g. Skywork-Reward, ArmoRM's scalar head).

    Why the store: scoring thousands of answers is the second most expensive stage after
    sampling; keyed by (model fingerprint, template, conversation), a re-run is free."""

    def __init__(self, spec: str, store, batch_size: int = 4):
        from harness.models import resolve_model

        self.model = resolve_model(spec, store)
        if self.model.kind == "openai":
            from harness.errors import UsageError

            raise UsageError(f"reward model {spec!r} is an HTTP model; a reward model must be a local or hub "
                             "sequence-classification model (use scoring.judge for a model behind an API)")
        self.store, self.batch_size = store, batch_size
        self._net = self._tok = None

    @property
    def record(self) -> dict[str, Any]:
        return {"type": "reward_model", "model": self.model.name, "fingerprint": self.model.fingerprint,
                "version": REWARD_VERSION}

    def key(self, messages: list[dict]) -> str:
        return stable_hash("reward", self.model.fingerprint, self.model.template_hash, REWARD_VERSION, messages)

    def _load(self):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = self.model.path
        self._tok = AutoTokenizer.from_pretrained(path)
        self._net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
        self._net.eval()
        if self._net.config.pad_token_id is None:
            self._net.config.pad_token_id = self._tok.pad_token_id if self._tok.pad_token_id is not None \
                else self._tok.eos_token_id
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token

    def score(self, conversations: list[list[dict]]) -> list[float]:
        keys = [self.key(c) for c in conversations]
        hits = self.store.lookup_judgments(keys)
        out: list[float | None] = [float(hits[k]["text"]) if k in hits else None for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            import torch

            if self._net is None:
                self._load()
            log.info("reward model %s: scoring %d answers (%d cached)", self.model.name, len(todo),
                     len(keys) - len(todo))
            for s in range(0, len(todo), self.batch_size):
                batch = todo[s:s + self.batch_size]
                texts = [self._tok.apply_chat_template(conversations[i], tokenize=False) for i in batch]
                enc = self._tok(texts, return_tensors="pt", padding=True, truncation=True, add_special_tokens=False)
                with torch.no_grad():
                    logits = self._net(**enc).logits  # [batch, num_labels]
                for i, v in zip(batch, logits[:, 0].tolist()):
                    out[i] = float(v)
                    self.store.put_judgment(keys[i], self.model.name, REWARD_VERSION, conversations[i], repr(out[i]))
        return out  # type: ignore[return-value]


# ---- instructions: judge -------------------------------------------------------------------
def judge_calls(pairs: list[tuple[Any, list]]):
    from harness.judges import JudgeCall

    params = SamplingParams(temperature=0.0, max_tokens=512)
    calls, where = [], []
    for item, answers in pairs:
        for a in answers:
            msgs = ({"role": "system", "content": JUDGE_SYSTEM},
                    {"role": "user", "content": JUDGE_TEMPLATE.format(question=item.prompt, answer=a.text)})
            calls.append(JudgeCall(id=f"{item.id}/{a.source}/{a.index}", messages=msgs, params=params))
            where.append(a)
    return calls, where


def score_with_judge(pairs: list[tuple[Any, list]], judge) -> dict[str, Any]:
    from harness.judges.parsers import mt_bench_rating

    calls, where = judge_calls(pairs)
    replies = judge.run(calls, JUDGE_VERSION) if calls else []
    unparsed = errors = 0
    for a, r in zip(where, replies):
        rating = mt_bench_rating(r.text) if r.error is None else None
        errors += r.error is not None
        unparsed += r.error is None and rating is None
        a.score = rating / 10.0 if rating is not None else None
        a.detail = {"scorer": f"judge:{judge.model.name}", "rating": rating, "judge_error": r.error}
    return {"type": "judge", "model": judge.model.name, "fingerprint": judge.model.fingerprint,
            "prompt_version": JUDGE_VERSION, "calls": len(calls), "unparsed": unparsed, "errors": errors}


def score_with_reward(pairs: list[tuple[Any, list]], rm: RewardModel) -> dict[str, Any]:
    convs, where = [], []
    for item, answers in pairs:
        for a in answers:
            convs.append([*item.messages, {"role": "assistant", "content": a.text}])
            where.append(a)
    for a, v in zip(where, rm.score(convs) if convs else []):
        a.score = v
        a.detail = {"scorer": f"reward:{rm.model.name}"}
    return {**rm.record, "answers": len(convs)}
