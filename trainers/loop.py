"""The one training loop for SFT and every preference loss (DESIGN.md §3, §6).

Why a small loop of our own on `accelerate` instead of transformers' Trainer: the methods
differ only in the loss, the collated response kinds and the α schedule; a Trainer
subclass would need a custom collator, a custom `compute_loss`, a callback for α, a
sampler override to keep the cached reference log-probs aligned with shuffled rows, and a
logging hook for per-kind rewards, i.e. most of a loop, spread over overrides of a large
and fast-moving API. `accelerate` gives the parts that are genuinely hard (DDP, DeepSpeed
ZeRO-2/3, mixed precision, gradient accumulation, checkpoint state incl. RNGs) through
its small stable API, and the same script runs under `accelerate launch` / `deepspeed`.

What one optimizer step does: a micro-batch of B rows becomes one forward over K·B
sequences (K response kinds, as the official `concatenated_forward`); summed response
log-probs go to the objective's loss (`trainers.objectives`, over `trainers.losses`);
reference log-probs come from the per-dataset cache (`trainers.reference`) unless
`precompute_ref: false`, which runs the reference every step like the official code (kept
for the throughput comparison).

The parts, in order (`train`): `_setup` (accelerator, output dir, resume point), `_policy`,
`_load_examples` (rows in the objective's format), `_precompute` (what the objective `needs`:
source log-probs, reference log-probs), `_prepare_training` (model, optimizer, loader,
schedule), `_train_steps` (with `_loss` per micro-batch: the forward and what the objective
declared it takes, `_log_metrics`, `_save_checkpoint`) and `_save_and_register`. No part
tests a method name: the objective's entry says what it needs.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError
from trainers.config import TrainConfig
from trainers.data import DataReport, Example, collate, load_raw, tokenize_rows, tokenized_hash
from trainers.losses import sequence_logps, token_logps
from trainers.objectives import REFERENCE, SOURCE_LOGPS, Objective, StepInputs, reduce_loss

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


@dataclass
class TrainResult:
    output_dir: Path
    candidate: str | None
    steps: int
    report: DataReport
    metrics_file: Path
    first_metrics: dict[str, Any] | None
    last_metrics: dict[str, Any] | None
    seconds: float
    ref_cache: str | None = None
    ref_cache_hit: bool | None = None
    main_process: bool = True  # False on the other ranks of a multi-process run: they save nothing


def prepare_output_dir(out: Path, overwrite: bool, resume: bool) -> Path | None:
    """Refuse to clobber a finished or running directory unless told; return the checkpoint to resume."""
    if resume:
        ckpt = latest_checkpoint(out)
        if ckpt is None:
            raise UsageError(f"--resume: no checkpoint under {out}/checkpoints; start without --resume "
                             "(or set save_steps so runs leave checkpoints)")
        return ckpt
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"output directory {str(out)!r} exists and is not empty; pass --overwrite to replace it, "
                             "--resume to continue from its last checkpoint, or choose another output_dir")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return None


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((p for p in (out / "checkpoints").glob("step-*") if (p / STATE_FILE).exists()),
                   key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


class _EpochOrder:
    """Indices in a per-epoch permutation seeded by (seed, epoch). Deterministic on resume
    without depending on sampler state that accelerate may or may not checkpoint."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.perm = n, seed, list(range(n))

    def set_epoch(self, epoch: int) -> None:
        import torch

        self.perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return self.perm[i]


def _mixed_precision(setting, torch) -> str:
    if setting is False:
        return "no"
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if setting is True and not supported:
        log.warning("bf16 requested but this device has no fast bf16; CPU autocast to bf16 is used (slower on "
                    "CPUs without AMX)")
        return "bf16"
    return "bf16" if supported else "no"


def adamw_kwargs(torch, device) -> dict:
    """The fused AdamW kernel where torch has one for the device (CPU, CUDA): one pass over each
    parameter instead of foreach's model-sized temporaries. Same update rule; for SmolLM2-135M
    on the shared 2-core box 0.25 -> 0.07 s quiet, 13.8 -> 2.2 s under load (docs/performance.md)."""
    return {"fused": True} if torch.device(device).type in ("cpu", "cuda") else {}


def _deepspeed_process_group(ds_plugin) -> list:
    """Prepare torch.distributed for DeepSpeed where accelerate 1.15 does not; return kwargs handlers.

    * Not launched (a recipe's `deepspeed:` key under plain `harness train`): DeepSpeed needs a
      process group even for one process, and accelerate only creates one for launched ranks
      (it fails later at its first barrier). The rank variables of a one-process world are set.
    * CPU-only ranks: accelerate picks the backend from the device (nccl, xccl, ...) and has
      none for CPU unless `cpu=True`, which turns DeepSpeed off. With no backend DeepSpeed
      still initialises torch.distributed itself (gloo, world size N), but accelerate records
      `num_processes = 1`, fills the `auto` batch sizes for one rank, and DeepSpeed's engine
      init fails (`train_batch_size ... 1 != 1 * 1 * 2`). Naming DeepSpeed's own CPU backend
      (gloo, or ccl with oneCCL) makes accelerate count the real world size.
    """
    import os
    import socket

    from accelerate.utils import InitProcessGroupKwargs, parse_flag_from_env

    # `accelerate launch --use_deepspeed` asks through the environment, a recipe through the plugin
    if ds_plugin is None and not parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
        return []
    if int(os.environ.get("LOCAL_RANK", -1)) == -1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
            os.environ.setdefault(key, value)
        log.info("DeepSpeed without a launcher: one process (use `accelerate launch --use_deepspeed` for more)")
    from deepspeed.accelerator import get_accelerator

    ds_accel = get_accelerator()
    if ds_accel.device_name() != "cpu":
        return []  # accelerate knows the GPU backends
    return [InitProcessGroupKwargs(backend=ds_accel.communication_backend_name())]


@dataclass
class _Run:
    """Set-up shared by every part of a run: where it writes, which process this is."""

    cfg: TrainConfig
    objective: Objective
    hp: Any  # the objective's Params
    accelerator: Any
    out: Path
    mixed: str
    resume_from: Path | None
    progress: bool

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


@dataclass
class _Signals:
    """What the objective needs precomputed (its `needs`), keyed by example id."""

    ref_logps: dict[str, dict[str, float]] | None = None
    ref_model: Any = None  # precompute_ref: false runs the reference every step instead
    sources: dict[str, dict[str, list[list[float]]]] | None = None  # id -> kind -> [[sum, n] per source]
    cache_file: str | None = None
    cache_hit: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)  # example id at each position of the example list
    extras: Any = None  # Objective.batch_extras' per-batch function (token-level teacher signal)


@dataclass
class _Training:
    model: Any
    optimizer: Any
    loader: Any
    scheduler: Any
    order: _EpochOrder
    total_steps: int


@dataclass
class _Log:
    """Metrics accumulated between logging steps, and what was logged."""

    file: Path
    acc: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    tokens: int = 0
    t_last: float = field(default_factory=time.perf_counter)
    total_tokens: int = 0  # non-padding tokens this process trained on (since a resume: not before it)
    t_start: float = field(default_factory=time.perf_counter)
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None


def train(cfg: TrainConfig, store=None, *, overwrite: bool = False, resume: bool = False,
          progress: bool = True) -> TrainResult:
    t_start = time.perf_counter()
    run = _setup(cfg, overwrite, resume, progress)
    policy, tokenizer, pad_id = _policy(cfg, store)
    examples, report, raw_hash = _load_examples(run, policy, tokenizer)
    signals, examples = _precompute(run, examples, pad_id, store, report)
    tr = _prepare_training(run, policy, examples, pad_id)
    global_step, log_state = _train_steps(run, tr, signals)
    candidate = _save_and_register(run, tr, policy, tokenizer, examples, report, raw_hash, signals, global_step,
                                   log_state, store)
    return TrainResult(output_dir=run.out, candidate=candidate, steps=global_step, report=report,
                       metrics_file=log_state.file, first_metrics=log_state.first, last_metrics=log_state.last,
                       seconds=time.perf_counter() - t_start, ref_cache=signals.cache_file,
                       ref_cache_hit=signals.cache_hit, main_process=run.main)


def _setup(cfg: TrainConfig, overwrite: bool, resume: bool, progress: bool) -> _Run:
    """Accelerator (DeepSpeed when configured), output directory, the checkpoint to resume, seed."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, set_seed

    out = Path(cfg.output_dir)
    ds_plugin = None
    if cfg.deepspeed:
        if not Path(cfg.deepspeed).is_file():
            raise UsageError(f"deepspeed config {cfg.deepspeed!r} does not exist; see trainers/deepspeed/*.json")
        ds_plugin = DeepSpeedPlugin(hf_ds_config=cfg.deepspeed)
    mixed = _mixed_precision(cfg.bf16, torch)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision=mixed,
                              deepspeed_plugin=ds_plugin, kwargs_handlers=_deepspeed_process_group(ds_plugin))
    main = accelerator.is_main_process
    log.info("accelerate: %s, %d process(es), device %s, mixed precision %s", accelerator.distributed_type,
             accelerator.num_processes, accelerator.device, mixed)
    resume_from = prepare_output_dir(out, overwrite, resume) if main else None
    accelerator.wait_for_everyone()
    if not main and resume:
        resume_from = latest_checkpoint(out)
    set_seed(cfg.seed)
    return _Run(cfg=cfg, objective=cfg.objective_spec, hp=cfg.hyper, accelerator=accelerator, out=out, mixed=mixed,
                resume_from=resume_from, progress=progress)


def _policy(cfg: TrainConfig, store):
    from transformers import AutoTokenizer

    from harness.models import resolve_model

    policy = resolve_model(cfg.model, store=store)
    if policy.kind in ("openai", "hub") or not policy.path:
        raise UsageError(f"model {cfg.model!r} must be a local model (alias, candidate or directory) to train it")
    tokenizer = AutoTokenizer.from_pretrained(policy.path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return policy, tokenizer, pad_id


def _load_examples(run: _Run, policy, tokenizer) -> tuple[list[Example], DataReport, str]:
    """Rows in the objective's format, validated and tokenized; weighted when the objective weighs rows."""
    cfg = run.cfg
    weigh = run.objective.row_weights(run.hp) if run.objective.row_weights else None
    rows, raw_hash = load_raw(cfg.data, cfg.data_limit)
    examples, report = tokenize_rows(rows, run.objective.row_format, tokenizer, max_length=cfg.max_length,
                                     max_prompt_length=cfg.max_prompt_length, model_name=policy.name, weigh=weigh)
    log.info("data %s: %s", cfg.data, report.summary())
    if run.main:
        (run.out / "train_config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
    if not examples:
        _write_report(run, report)
        raise UsageError(f"no usable rows in {cfg.data}: {report.summary()}")
    return examples, report, raw_hash


def _write_report(run: _Run, report: DataReport) -> None:
    if run.main:
        (run.out / "data_report.json").write_text(json.dumps(report.to_dict(), indent=2))


def _precompute(run: _Run, examples: list[Example], pad_id: int, store,
                report: DataReport) -> tuple[_Signals, list[Example]]:
    """The objective's `needs`: source log-probs first (rows a source cannot score are dropped
    and reported), then reference log-probs of what is left."""
    needs = run.objective.needs(run.hp)
    signals = _Signals()
    if SOURCE_LOGPS in needs and not run.hp.sources:
        signals.sources = _given_sources(examples)
    elif SOURCE_LOGPS in needs:
        from trainers.reference import source_logps

        def score():
            return source_logps(examples, run.objective.kinds, run.hp.sources, store, backend=run.hp.source_backend)

        # the main rank scores first (results land in the store); the other ranks then read them
        if run.main:
            signals.sources, bad = score()
        run.accelerator.wait_for_everyone()
        if not run.main:
            signals.sources, bad = score()
        for ex_id, why in bad.items():
            report.drop(why.split(":")[0], int(ex_id.split(".")[0]))
        examples = [ex for ex in examples if ex.id not in bad]
        report.kept -= len(bad)
        signals.info["sources"] = list(run.hp.sources)
        if not examples:
            _write_report(run, report)
            raise UsageError(f"no rows left after scoring with the source models: {report.summary()}")
    _write_report(run, report)
    if REFERENCE in needs:
        _reference(run, examples, pad_id, store, signals)
    signals.ids = [ex.id for ex in examples]
    if run.objective.batch_extras is not None:
        signals.extras = run.objective.batch_extras(run.hp, examples, store)
    return signals, examples


def _given_sources(examples: list[Example]) -> dict[str, dict[str, list[list[float]]]]:
    """Source log-probs the rows bring (InfiFPO's format); every row must, with one source count."""
    missing = [ex.id for ex in examples if ex.source_logps is None]
    if missing:
        raise UsageError(f"{len(missing)} rows (first: row {missing[0]}) have no fuse_chosen_logps / "
                         "fuse_rejected_logps; name the source models (objective: {sources: [...]}) to score them")
    counts = {len(ex.source_logps["chosen"]) for ex in examples}
    if len(counts) > 1:
        raise UsageError(f"rows name different numbers of sources ({sorted(counts)}); every row needs the same")
    return {ex.id: ex.source_logps for ex in examples}


def _reference(run: _Run, examples: list[Example], pad_id: int, store, signals: _Signals) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from harness.models import resolve_model

    cfg, accelerator, device = run.cfg, run.accelerator, run.accelerator.device
    kinds = run.objective.kinds
    ref = resolve_model(cfg.ref_model or cfg.model, store=store)
    signals.info.update(ref_model=ref.name, ref_fingerprint=ref.fingerprint)

    def load_ref():
        m = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32).to(device)
        m.requires_grad_(False)
        return m.eval()

    if not cfg.precompute_ref:
        signals.ref_model = load_ref()
        return
    from trainers.reference import cache_path, compute_logps, load_or_compute

    path = cache_path(cfg.data, ref.fingerprint, examples, kinds, run.mixed)

    def compute():
        m = load_ref()
        try:
            return compute_logps(m, examples, kinds, pad_id, cfg.ref_batch_size, device,
                                 autocast=accelerator.autocast, progress=run.progress and run.main)
        finally:
            del m

    # every rank computes or reads the same file; the main rank writes it first
    if run.main:
        signals.ref_logps, signals.cache_hit = load_or_compute(path, compute)
    accelerator.wait_for_everyone()
    if not run.main:
        signals.ref_logps, signals.cache_hit = load_or_compute(path, compute)
    signals.cache_file = str(path)


def _prepare_training(run: _Run, policy, examples: list[Example], pad_id: int) -> _Training:
    """Policy, fused AdamW, the epoch-seeded loader and the hand-stepped schedule."""
    import torch
    from accelerate.utils import DistributedType
    from transformers import AutoModelForCausalLM, get_scheduler

    cfg, accelerator = run.cfg, run.accelerator
    kinds = run.objective.kinds
    model = AutoModelForCausalLM.from_pretrained(policy.path, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    # DeepSpeed steps the optimizer on its own flat partitions: keep torch's default kernel there
    fused = ({} if accelerator.distributed_type == DistributedType.DEEPSPEED
             else adamw_kwargs(torch, accelerator.device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    order = _EpochOrder(len(examples), cfg.seed)
    weighted = run.objective.row_weights is not None

    def collate_fn(idx: list[int]):
        batch = collate([examples[i] for i in idx], kinds, pad_id)
        batch["idx"] = torch.tensor(idx)
        if weighted:
            batch["weights"] = torch.tensor([examples[i].weight for i in idx], dtype=torch.float32)
        return batch

    loader = torch.utils.data.DataLoader(order, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate_fn)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    updates_per_epoch = max(1, math.ceil(len(loader) / cfg.gradient_accumulation_steps))
    total_steps = cfg.max_steps or max(1, math.ceil(updates_per_epoch * cfg.epochs))
    # Stepped by hand once per optimizer step (not accelerate-prepared, which would step it
    # once per process and shorten the schedule under data parallelism).
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=warmup_steps(cfg.warmup_ratio, total_steps),
                              num_training_steps=total_steps)
    return _Training(model, optimizer, loader, scheduler, order, total_steps)


def _step_inputs(run: _Run, batch: dict, logps, lens, signals: _Signals, alpha: float, torch) -> StepInputs:
    """Hand the objective what it declared: per-kind sums and lengths, precomputed signals, weights."""
    kinds = run.objective.kinds
    b = batch["idx"].shape[0]
    x = StepInputs(policy=dict(zip(kinds, logps.view(len(kinds), b))),
                   lengths=dict(zip(kinds, lens.view(len(kinds), b))), weights=batch.get("weights"), batch=batch,
                   alpha=alpha)
    if signals.ref_logps is not None or signals.sources is not None or signals.extras is not None:
        # batch["idx"] are positions in the example list; the caches are keyed by example id
        ids = [signals.ids[i] for i in batch["idx"].tolist()]
    if signals.extras is not None:
        batch.update(signals.extras(ids, batch))
    if signals.ref_logps is not None:
        x.ref = {k: torch.tensor([signals.ref_logps[i][k] for i in ids], device=logps.device) for k in kinds}
    elif signals.ref_model is not None:
        with torch.no_grad(), run.accelerator.autocast():
            r_logits = signals.ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         use_cache=False).logits
            r, _ = sequence_logps(r_logits, batch["input_ids"], batch["loss_mask"])
            del r_logits
        x.ref = dict(zip(kinds, r.view(len(kinds), b)))
    if signals.sources is not None:
        both = {k: torch.tensor([signals.sources[i][k] for i in ids], device=logps.device) for k in kinds}
        x.sources = {k: v[..., 0] for k, v in both.items()}
        x.source_lengths = {k: v[..., 1] for k, v in both.items()}
    return x


def _loss(run: _Run, model, batch: dict, signals: _Signals, alpha: float, lg: _Log):
    """One micro-batch: a forward over every response kind, the objective's loss, metrics."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logps, lens = sequence_logps(logits, batch["input_ids"], batch["loss_mask"])
    inputs = run.objective.inputs
    if inputs == "token_logps":
        tl, tm = token_logps(logits, batch["input_ids"], batch["loss_mask"])
    if inputs != "logits":
        del logits  # the (N, T, V) tensor is the step's largest; free it before the loss
    x = _step_inputs(run, batch, logps, lens, signals, alpha, torch)
    if inputs == "token_logps":
        x.token_logps, x.token_mask = tl, tm
    elif inputs == "logits":
        x.logits = logits
    lo = run.objective.loss(x, run.hp)
    loss = reduce_loss(lo, x.weights)
    acc = lg.acc
    for k, v in lo.rewards.items():
        acc[f"rewards/{k}"].append(v.mean().item())
    if lo.margins is not None:
        for k, v in x.policy.items():
            acc[f"logps/{k}"].append(v.detach().mean().item())
        acc["margins"].append(lo.margins.mean().item())
        acc["accuracies"].append((lo.margins > 0).float().mean().item())
    if run.objective.metrics is not None:
        for k, v in run.objective.metrics(lo).items():
            acc[k].append(v)
    acc["loss"].append(loss.item())
    n_tokens = int(batch["attention_mask"].sum().item())
    lg.tokens += n_tokens
    lg.total_tokens += n_tokens
    return loss


def _resume_position(run: _Run, tr: _Training) -> tuple[int, int, int]:
    if run.resume_from is None:
        return 0, 0, 0
    run.accelerator.load_state(str(run.resume_from))
    state = json.loads((run.resume_from / STATE_FILE).read_text())
    tr.scheduler.load_state_dict(state["scheduler"])
    log.info("resuming from %s (step %d of %d)", run.resume_from, state["global_step"], tr.total_steps)
    return state["global_step"], state["epoch"], state["batches_in_epoch"]


def _alpha(run: _Run, step: int, total: int) -> float:
    return run.objective.alpha(step, total, run.hp) if run.objective.alpha is not None else 0.0


def _train_steps(run: _Run, tr: _Training, signals: _Signals) -> tuple[int, _Log]:
    """The epochs: accumulate, clip, step, log, checkpoint; returns the last step and the log."""
    cfg, accelerator, model = run.cfg, run.accelerator, tr.model
    global_step, epoch, skip = _resume_position(run, tr)
    lg = _Log(file=run.out / "metrics.jsonl")
    bar = None
    if run.progress and run.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=tr.total_steps, initial=global_step, desc=f"{cfg.method} {run.out.name}", unit="step")
    alpha = _alpha(run, global_step, tr.total_steps)
    model.train()
    done = global_step >= tr.total_steps
    while not done:
        tr.order.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(tr.loader, skip) if skip else tr.loader
        batches_in_epoch = skip
        skip = 0
        for batch in epoch_loader:
            batches_in_epoch += 1
            with accelerator.accumulate(model):
                loss = _loss(run, model, batch, signals, alpha, lg)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    gn = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    if gn is not None:
                        lg.acc["grad_norm"].append(float(gn))
                tr.optimizer.step()
                tr.optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step_lr = tr.scheduler.get_last_lr()[0]  # the rate this update used, not the next one's
            tr.scheduler.step()
            global_step += 1
            if global_step % cfg.logging_steps == 0 or global_step == tr.total_steps:
                _log_metrics(run, lg, global_step, epoch + batches_in_epoch / max(1, len(tr.loader)), step_lr, alpha,
                             bar)
            if bar is not None:
                bar.update(1)
            alpha = _alpha(run, global_step, tr.total_steps)
            if cfg.save_steps and global_step % cfg.save_steps == 0 and global_step < tr.total_steps:
                _save_checkpoint(accelerator, run.out, global_step, epoch, batches_in_epoch, tr.scheduler)
            if global_step >= tr.total_steps:
                done = True
                break
        else:
            epoch += 1
    if bar is not None:
        bar.close()
    return global_step, lg


def _log_metrics(run: _Run, lg: _Log, step: int, epoch: float, lr: float, alpha: float, bar) -> None:
    now = time.perf_counter()
    rec = {"step": step, "epoch": round(epoch, 4), "lr": lr, **{k: sum(v) / len(v) for k, v in lg.acc.items()},
           "tokens_per_s": lg.tokens / max(now - lg.t_last, 1e-9)}
    if run.objective.alpha is not None:
        rec["alpha"] = alpha
    lg.acc.clear()
    lg.tokens, lg.t_last = 0, now
    if run.main:
        with lg.file.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
    lg.first = lg.first or rec
    lg.last = rec
    if bar is not None:
        bar.set_postfix({k: f"{rec[k]:.4g}" for k in ("loss", "margins") if k in rec})


def _save_and_register(run: _Run, tr: _Training, policy, tokenizer, examples: list[Example], report: DataReport,
                       raw_hash: str, signals: _Signals, steps: int, lg: _Log, store) -> str | None:
    """The final model as a plain HF directory vLLM and transformers load, and its store record."""
    accelerator, out, cfg = run.accelerator, run.out, run.cfg
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(tr.model)
    state_dict = accelerator.get_state_dict(tr.model)
    if not run.main:
        return None
    unwrapped.config.use_cache = True
    unwrapped.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(out)
    src_template = Path(policy.path) / "chat_template.jinja"
    if src_template.exists() and not (out / "chat_template.jinja").exists():
        shutil.copy(src_template, out / "chat_template.jinja")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    info = {"method": cfg.method, "config": cfg.model_dump(), "data": cfg.data, "data_hash": raw_hash,
            "tokenized_hash": tokenized_hash(examples), "data_report": report.to_dict(), "steps": steps,
            "parent_fingerprint": policy.fingerprint, "first_metrics": lg.first, "last_metrics": lg.last,
            "ref_cache": signals.cache_file, "train_tokens": lg.total_tokens,
            "train_seconds": round(time.perf_counter() - lg.t_start, 1), **signals.info}
    (out / "train_info.json").write_text(json.dumps(info, indent=2))
    if store is None:
        return None
    return register_candidate(store, cfg.candidate_name, out, policy.name, info)


def warmup_steps(ratio: float, total_steps: int) -> int:
    """ceil(ratio × steps) as transformers counts it, but never every step: warmup starts at
    lr 0, so a 1-step run (a handful of preference rows) would train at lr 0 and register a
    candidate identical to its parent."""
    return min(math.ceil(ratio * total_steps), max(total_steps - 1, 0))


def _save_checkpoint(accelerator, out: Path, step: int, epoch: int, batches_in_epoch: int, scheduler) -> None:
    """Full training state (weights, optimizer, RNGs via accelerate) plus our position in the data.
    Only the newest checkpoint is kept: the final model is what gets registered."""
    path = out / "checkpoints" / f"step-{step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / STATE_FILE).write_text(json.dumps({"global_step": step, "epoch": epoch,
                                                   "batches_in_epoch": batches_in_epoch,
                                                   "scheduler": scheduler.state_dict()}))
        for old in (out / "checkpoints").glob("step-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s", path)


def register_candidate(store, name: str, out: Path, parent: str, info: dict[str, Any]) -> str:
    from harness.models import directory_fingerprint, read_chat_template, template_hash
    from harness.store import ModelRecord

    store.register_model(ModelRecord(name=name, fingerprint=directory_fingerprint(out), kind="candidate",
                                     path=str(out.resolve()), template_hash=template_hash(read_chat_template(out)),
                                     parent=parent, info=info))
    log.info("registered candidate %r (parent %r) -> %s", name, parent, out)
    return name


__all__ = ["train", "TrainResult", "Example"]
