"""Wall time and peak RSS of an SCE merge of three SmolLM2-135M models (the base and two copies
with seeded deltas), each setting in a fresh process so its peak RSS is its own:

    python -m trainers.merge.bench --work /tmp/merge-bench --select-topk 1.0 0.1 [--method sce_fuseai]
        [--lazy-unpickle] [--out-shard-size 100M]

Prints one JSON line per setting: seconds (the whole `run_merge`, registration included),
mergekit_seconds, peak_rss_mb (VmHWM: the whole process), rss_before_merge_mb (imports; the
merge's own memory is the difference), the fallback count, and the peaks of the two parts of RSS
sampled every 10 ms during the merge: peak_anon_mb (heap: tensors mergekit computes and holds)
and peak_file_mb (file-backed pages: the safetensors inputs that mergekit reads through mmap,
which the kernel can drop under memory pressure). docs/performance.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from harness.models import ensure_alias
from harness.store import Store
from trainers.merge.run import run_merge


def perturbed_copy(base: Path, out: Path, seed: int, rel_std: float = 0.01) -> Path:
    """`base` with N(0, (rel_std · std(tensor))²) added to every floating tensor (a cheap,
    deterministic stand-in for a fine-tune); tokenizer and chat template copied. Reused if present."""
    from safetensors.torch import load_file, save_file

    if (out / "model.safetensors").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("*.safetensors"))
    sd = load_file(base / "model.safetensors")
    g = torch.Generator().manual_seed(seed)
    for k, t in sd.items():
        if t.is_floating_point() and t.numel() > 1:
            sd[k] = t + rel_std * t.float().std() * torch.randn(t.shape, generator=g, dtype=t.dtype)
    save_file(sd, tmp / "model.safetensors", metadata={"format": "pt"})
    tmp.rename(out)
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _status_mb() -> dict[str, float]:
    """RssAnon / RssFile / RssShmem of this process from /proc/self/status, in MiB (Linux)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0]) / 1024
    return out


@contextmanager
def sampled_rss(interval_s: float = 0.01) -> Iterator[dict[str, float]]:
    """Peak RssAnon / RssFile (MiB) while the block runs, sampled every `interval_s` by a thread;
    VmHWM cannot say which part of RSS was the heap and which the mmap'd input files."""
    peaks: dict[str, float] = {"RssAnon": 0.0, "RssFile": 0.0, "RssShmem": 0.0}
    done = threading.Event()

    def sample() -> None:
        while True:
            for k, v in _status_mb().items():
                peaks[k] = max(peaks[k], v)
            if done.wait(interval_s):
                return

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield peaks
    finally:
        done.set()
        t.join()


def _one(work: Path, topk: float, method: str, options: dict) -> dict:
    cfg = {"merge_method": method, "base_model": str(work / "base"), "dtype": "float32",
           "models": [{"model": str(work / "a")}, {"model": str(work / "b")}], "parameters": {"select_topk": topk}}
    before = _rss_mb()
    t0 = time.perf_counter()
    with sampled_rss() as peaks:
        res = run_merge(cfg, name=f"bench-{method}-{topk}", out_dir=work / f"out-{method}-{topk}",
                        store=Store(work / "store.sqlite"), options=options)
    return {"method": method, "select_topk": topk, "options": options, "seconds": round(time.perf_counter() - t0, 2),
            "mergekit_seconds": round(res.provenance.seconds, 2), "peak_rss_mb": round(_rss_mb()),
            "peak_anon_mb": round(peaks["RssAnon"]), "peak_file_mb": round(peaks["RssFile"]),
            "rss_before_merge_mb": round(before), "model_mb": round((work / "base" / "model.safetensors")
                                                                    .stat().st_size / 2**20),
            "uniform_fallback_tensors": res.provenance.uniform_fallback_tensors,
            "sce_tensors": res.provenance.sce_tensors}


def prepare(work: Path) -> None:
    base = ensure_alias("smollm2-135m-instruct")
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "base").exists():
        (work / "base").symlink_to(base)
    perturbed_copy(base, work / "a", 1)
    perturbed_copy(base, work / "b", 2)


def run_setting(work: Path, topk: float, method: str = "sce", lazy_unpickle: bool = False,
                out_shard_size: str | None = None) -> dict:
    """One merge in a fresh process; returns its JSON record."""
    cmd = [sys.executable, "-m", "trainers.merge.bench", "--work", str(work), "--one", str(topk), "--method", method]
    if lazy_unpickle:
        cmd.append("--lazy-unpickle")
    if out_shard_size:
        cmd += ["--out-shard-size", out_shard_size]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="directory for the two copies and the outputs")
    p.add_argument("--select-topk", type=float, nargs="+", default=[1.0, 0.1])
    p.add_argument("--method", default="sce", help="sce (mergekit 0.1.5) or sce_fuseai")
    p.add_argument("--lazy-unpickle", action="store_true")
    p.add_argument("--out-shard-size", help="mergekit's out_shard_size, e.g. 100M (default: mergekit's 5B)")
    p.add_argument("--one", type=float, help=argparse.SUPPRESS)  # internal: the child process
    a = p.parse_args(argv)
    if a.one is not None:
        from mergekit.options import parse_kmb

        options = {"lazy_unpickle": a.lazy_unpickle, "quiet": True}
        if a.out_shard_size:
            options["out_shard_size"] = parse_kmb(a.out_shard_size)
        print(json.dumps(_one(a.work, a.one, a.method, options)))
        return
    prepare(a.work)
    for topk in a.select_topk:
        print(json.dumps(run_setting(a.work, topk, a.method, a.lazy_unpickle, a.out_shard_size)), flush=True)


if __name__ == "__main__":
    main()
