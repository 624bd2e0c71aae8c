"""The teacher-signal recipe (`harness fuse teacher --recipe R.yaml`) and what the stage writes.

  pivot: smollm2-135m-instruct      # the model that will be trained; its own top-k competes in MinCE
  sources:                          # same- or cross-tokenizer models
    - {name: math, model: runs/specialist-math}
    - {name: gemma, model: gemma3-270m, max_context: 2048}   # no chat template -> plain text form
                                    # (said in the report); max_context: default its config's (truncate.py)
  data: data/sft.jsonl              # SFT rows (trainers/data.py formats), relative to the recipe
  limit: 32
  top_k: 10
  max_length: 1024                  # as the training run's: responses cut, rows counted (truncate.py)
  max_prompt_length: 512
  output_dir: runs/teacher

The stage captures the pivot and every source (trainers/distill/teacher.py), builds the vocabulary
map of each cross-tokenizer source for the ids that occur (cached under output_dir/maps) and
writes output_dir/teacher.json (`TeacherManifest`), which the distillation objectives read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UsageError
from harness.models import resolve_model
from harness.textscore import TextScoreRequest
from harness.yamlio import load_yaml_mapping
from trainers.data import _Bad, load_raw, normalize
from trainers.distill import align as A
from trainers.distill import targets as TG
from trainers.distill.teacher import CaptureJob, TeacherFile, capture, resolve_plain
from trainers.distill.truncate import (
    ModelContext,
    TruncationReport,
    context_limit,
    fit_contexts,
    truncate_requests,
)

log = logging.getLogger(__name__)

MANIFEST = "teacher.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    model: str
    backend: str | None = Field(None, description="scoring backend for this source; default: the recipe's")
    max_context: int | None = Field(None, ge=8, description="tokens this source scores at most (prompt + response); "
                                    "default: its config's, below max_model_len under vLLM (truncate.py)")


class TeacherRecipe(_Strict):
    pivot: str = "smollm2-135m-instruct"
    sources: list[SourceSpec] = Field(min_length=1)
    data: str
    limit: int | None = Field(None, ge=1)
    top_k: int = Field(10, ge=1, description="FuseLLM forward_for_logits.py --top_k_logits 10")
    shard_rows: int = Field(64, ge=1)
    backend: str = "auto"
    vocab_align: Literal["mined", "exact", "statistics"] = Field("mined", description=(
        "mined: FuseLLM --vocab_align_type soft (the README setting); exact: hard; "
        "statistics: FuseChat's co-alignment map (align_token_and_vocab.py --align_type default)"))
    token_rules: Literal["fusellm", "fusechat"] | None = Field(None, description=(
        "which pivot positions take a source's top-k: fusellm (one-to-one matches, one-hot otherwise) or "
        "fusechat (also its n-to-1 / 1-to-n suffix and prefix rules); default: fusechat with statistics"))
    coverage_warning: float = Field(0.5, ge=0, le=1, description="warn below this share of one-to-one positions")
    max_length: int = Field(1024, ge=8, description="the training run's max_length (trainer default): prompt + "
                            "response pivot tokens; longer responses are cut for every model (truncate.py)")
    max_prompt_length: int = Field(512, ge=1, description="the training run's: rows with longer prompts are dropped")
    pivot_max_context: int | None = Field(None, ge=8, description="the pivot's max_context (see SourceSpec)")
    output_dir: str


class SourceEntry(BaseModel):
    name: str
    model: str
    directory: str
    fingerprint: str
    plain: bool
    same_tokenizer: bool
    coverage: float | None = None  # one-to-one aligned share of pivot response positions (cross only)


class TeacherManifest(BaseModel):
    pivot: SourceEntry
    sources: list[SourceEntry]
    top_k: int
    vocab_align: str
    token_rules: str = "fusellm"
    map_cache: str
    data: str
    rows: int
    truncation: TruncationReport | None = None  # rows cut to max_length / dropped for their prompt


def load_recipe(path: str, overrides: dict | None = None) -> tuple[TeacherRecipe, Path]:
    raw = load_yaml_mapping(Path(path), "teacher recipe", "see trainers/recipes/distill_cpu.yaml")
    raw.update(overrides or {})
    base = Path(path).resolve().parent
    try:
        recipe = TeacherRecipe(**raw)
    except Exception as e:  # pydantic's message names the key and what was expected
        raise UsageError(f"{path}: {e}") from e
    names = [s.name for s in recipe.sources]
    if len(set(names)) != len(names) or "pivot" in names:
        raise UsageError(f"{path}: source names must be unique and not 'pivot', got {names}")
    return recipe, base


def requests_from_rows(rows: list) -> tuple[list[TextScoreRequest], dict[int, str]]:
    """One request per valid SFT row, id = the row number (the training Example id)."""
    out, dropped = [], {}
    for i, row in enumerate(rows):
        try:
            messages, responses = normalize(row, "sft")
        except _Bad as e:
            dropped[i] = str(e)
            continue
        out.append(TextScoreRequest(id=str(i), messages=messages, response=responses["response"]))
    return out, dropped


def read_manifest(path: str | Path) -> TeacherManifest:
    p = Path(path)
    p = p / MANIFEST if p.is_dir() else p
    if not p.exists():
        raise UsageError(f"teacher manifest {p} not found; run `harness fuse teacher --recipe R.yaml` first")
    return TeacherManifest.model_validate_json(p.read_text())


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _entry(name: str, model: str, rep, resolved, same: bool) -> SourceEntry:
    return SourceEntry(name=name, model=model, directory=rep.directory, fingerprint=resolved.fingerprint,
                       plain=rep.plain, same_tokenizer=same)


def _checked(rep, name: str):
    if rep.errors:
        first = next(iter(rep.errors.items()))
        raise UsageError(f"{name}: {len(rep.errors)} rows could not be scored (first: row {first[0]}: {first[1]}); "
                         f"the finished shards are kept in {rep.directory}: run the same command again to retry")
    return rep


def _requests(recipe: TeacherRecipe, data: str, pivot_tok) -> tuple[list[TextScoreRequest], TruncationReport, dict]:
    """The rows every model scores: valid SFT rows, cut to the recipe's max_length on the pivot's tokens."""
    rows, _ = load_raw(data, recipe.limit)
    requests, dropped = requests_from_rows(rows)
    requests, cut, too_long = truncate_requests(requests, pivot_tok, max_length=recipe.max_length,
                                                max_prompt_length=recipe.max_prompt_length, model_name=recipe.pivot)
    dropped.update({int(rid): why for rid, why in too_long.items()})
    if not requests:
        raise UsageError(f"no valid SFT rows in {data}: {dropped}")
    return requests, cut, dropped


def _model_contexts(recipe: TeacherRecipe, store, pivot_model, pivot_tok) -> list[ModelContext]:
    """Every model's tokenizer, scoring form and context limit, for the check before any capture."""
    out = [ModelContext("pivot", pivot_tok, pivot_model, resolve_plain(pivot_model),
                        context_limit(pivot_model, recipe.backend, None, recipe.pivot_max_context))]
    for src in recipe.sources:
        model = resolve_model(src.model, store)
        out.append(ModelContext(src.name, _tokenizer(model.path), model, resolve_plain(model),
                                context_limit(model, src.backend or recipe.backend, None, src.max_context)))
    return out


def run_teacher(recipe: TeacherRecipe, base: Path, store) -> tuple[TeacherManifest, dict]:
    """Capture the pivot and every source, map the cross-tokenizer vocabularies, measure coverage,
    write the manifest. Returns it with the per-model capture reports (and the rows dropped)."""
    out = (base / recipe.output_dir).resolve()
    data = str((base / recipe.data).resolve()) if not recipe.data.startswith("hf:") else recipe.data
    pivot_model = resolve_model(recipe.pivot, store)
    pivot_tok = _tokenizer(pivot_model.path)
    requests, cut, dropped = _requests(recipe, data, pivot_tok)
    requests = fit_contexts(requests, pivot_tok, _model_contexts(recipe, store, pivot_model, pivot_tok), cut)
    reports = {"dropped_rows": dropped, "truncation": cut.model_dump()}
    truncated = frozenset(cut.truncated_rows)
    rules = recipe.token_rules or TG.default_rules(recipe.vocab_align)
    job = CaptureJob(recipe.pivot, requests, out / "teachers", recipe.top_k, recipe.shard_rows, recipe.backend,
                     truncated=truncated)
    prep = _checked(capture(job, store=store), "pivot")
    reports["pivot"] = prep.model_dump()
    pivot_texts = A.vocab_texts(pivot_tok)
    pivot = _entry("pivot", recipe.pivot, prep, pivot_model, True)
    entries = []
    ids = [r.id for r in requests]
    for src in recipe.sources:
        rep = _checked(capture(CaptureJob(src.model, requests, out / "teachers", recipe.top_k, recipe.shard_rows,
                                          src.backend or recipe.backend, truncated=truncated), store=store), src.name)
        reports[src.name] = rep.model_dump()
        model = resolve_model(src.model, store)
        tok = _tokenizer(model.path)
        texts = A.vocab_texts(tok)
        same = A.texts_hash(texts) == A.texts_hash(pivot_texts)
        entry = _entry(src.name, src.model, rep, model, same)
        if not same:
            pivot_file = TeacherFile(Path(prep.directory))
            sig = TG.cross_source(src.name, TeacherFile(Path(rep.directory)), tok, pivot_texts, ids,
                                  vocab_align=recipe.vocab_align, pivot=pivot_file, cache_dir=out / "maps",
                                  rules=rules)
            stats = TG.AlignStats()
            for rid in ids:
                TG.fused_targets(rid, pivot_file.row(rid).token_ids.tolist(), pivot_file, [sig], pivot_texts,
                                 stats=stats)
            entry.coverage = TG.warn_coverage(stats, recipe.coverage_warning)[src.name]
        entries.append(entry)
    manifest = TeacherManifest(pivot=pivot, sources=entries, top_k=recipe.top_k, vocab_align=recipe.vocab_align,
                               token_rules=rules, map_cache=str(out / "maps"), data=data, rows=len(requests),
                               truncation=cut)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=1))
    return manifest, reports
