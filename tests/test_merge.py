"""Parameter merging (trainers/merge): SCE's two semantics by hand, the fallback count, parity
with mergekit's own API, lineage in the store, and the bad-input errors. Tiny random Llama models
(2 layers, hidden 16) make each merge take well under a second; mergekit is real throughout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mergekit", reason="the `merge` extra (mergekit) is not installed")

from safetensors.torch import load_file, save_file  # noqa: E402

from harness.errors import UsageError  # noqa: E402
from harness.store import ModelParent, ModelRecord  # noqa: E402
from leaderboards import build_leaderboard  # noqa: E402
from leaderboards.render import write_site  # noqa: E402
from leaderboards.spec import LeaderboardSpec  # noqa: E402
from tests.test_gate_helpers import binary_items, make_run  # noqa: E402
from trainers.merge.checks import check_base_present  # noqa: E402
from trainers.merge.config import load_merge_config  # noqa: E402
from trainers.merge.run import PROVENANCE_FILE, run_merge  # noqa: E402
from trainers.merge.sce import counting_fallbacks, fuseai_sce, register_fuseai_method  # noqa: E402

# Two task vectors over a zero base, worked by hand in the docstrings below.
TAU_1 = [2.0, -2.0, 3.0, 0.0]
TAU_2 = [1.0, 2.0, -2.0, 0.0]


def _merge_tensors(method: str, scale: float = 1.0, **params):
    from mergekit.merge_methods.api import merge_tensors

    with counting_fallbacks() as count:
        out = merge_tensors([torch.zeros(4), torch.tensor(TAU_1) * scale, torch.tensor(TAU_2) * scale],
                            method, base_index=0, parameters=params)
    return out, count


def test_fuseai_sce_hand_example_full_selection():
    """w = mean(τ²) = (17/4, 9/4) -> (17/26, 9/26). Σ τ = (3, 0, 1, 0) >= 0, so only positive
    entries survive erase: position 0 keeps both (2·17/26 + 1·9/26) / 1 = 43/26, position 1
    keeps τ_2 only (2), position 2 keeps τ_1 only (3), position 3 is 0 / (0 -> 1) = 0."""
    out = fuseai_sce([torch.tensor(TAU_1), torch.tensor(TAU_2)], torch.zeros(4), select_topk=1.0)
    assert out.tolist() == pytest.approx([43 / 26, 2.0, 3.0, 0.0], abs=1e-6)
    via_mergekit, count = _merge_tensors("sce_fuseai", select_topk=1.0)
    assert torch.equal(via_mergekit, out)
    assert (count.tensors, count.uniform_fallback) == (1, 0)


def test_fuseai_and_mergekit_sce_differ_on_selection_as_computed_by_hand():
    """select_topk 0.5: Var_j τ = (.25, 4, 6.25, 0), 3 non-zero -> k = int(1.5) = 1 keeps position 2.
    FuseAI: weights from the masked τ: (9/4, 4/4) -> (9/13, 4/13); merge the UNMASKED τ:
    position 0 = 2·9/13 + 1·4/13 = 22/13. mergekit 0.1.5: τ itself is masked to (0, 0, 3, 0) and
    (0, 0, -2, 0); Σ = +1 keeps τ_1 only -> (0, 0, 3, 0)."""
    fuse = fuseai_sce([torch.tensor(TAU_1), torch.tensor(TAU_2)], torch.zeros(4), select_topk=0.5)
    assert fuse.tolist() == pytest.approx([22 / 13, 2.0, 3.0, 0.0], abs=1e-6)
    mk, _ = _merge_tensors("sce", select_topk=0.5)
    assert mk.tolist() == pytest.approx([0.0, 0.0, 3.0, 0.0], abs=1e-6)


def test_tiny_deltas_take_mergekits_uniform_fallback_but_not_fuseais():
    """Scaled by 1e-4, Σ_j mean(τ_j²) = 6.5e-8 < 1e-6: mergekit weighs (1/2, 1/2), position 0 =
    (2 + 1)/2 · 1e-4; the fork still weighs 17/26, 9/26 -> 43/26 · 1e-4."""
    mk, mk_count = _merge_tensors("sce", scale=1e-4)
    fuse, fuse_count = _merge_tensors("sce_fuseai", scale=1e-4)
    assert mk[0].item() == pytest.approx(1.5e-4, rel=1e-5)
    assert fuse[0].item() == pytest.approx(43 / 26 * 1e-4, rel=1e-5)
    assert (mk_count.uniform_fallback, fuse_count.uniform_fallback) == (1, 0)


# ---- tiny models on disk -------------------------------------------------------------------------
def _save_tiny(path: Path, hidden: int = 16) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(path)


def _perturbed(base: Path, out: Path, seed: int, scales: dict[str, float]) -> None:
    """A copy of `base` whose tensor t gets Gaussian noise of std scales[t] (0 or absent: unchanged)."""
    shutil.copytree(base, out)
    sd = load_file(base / "model.safetensors")
    g = torch.Generator().manual_seed(seed)
    for k, s in scales.items():
        if s:
            sd[k] = sd[k] + s * torch.randn(sd[k].shape, generator=g)
    save_file(sd, out / "model.safetensors", metadata={"format": "pt"})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """base + A + B. Per tensor: 'big' deltas (std 0.1, Σ mean τ² ≈ 2e-2), 'tiny' ones (std 1e-5,
    ≈ 2e-10, below mergekit's 1e-6), or none (τ = 0 in both, the fork's only fallback)."""
    root = tmp_path_factory.mktemp("tiny")
    _save_tiny(root / "base")
    names = sorted(load_file(root / "base" / "model.safetensors"))
    kinds = {n: ("zero" if "norm" in n else "tiny" if "layers.1." in n else "big") for n in names}
    std = {"big": 0.1, "tiny": 1e-5, "zero": 0.0}
    for seed, m in ((1, "a"), (2, "b")):
        _perturbed(root / "base", root / m, seed, {n: std[k] for n, k in kinds.items()})
    return root, kinds


def _cfg(root: Path, method: str = "sce", topk: float = 1.0) -> dict:
    return {"merge_method": method, "base_model": str(root / "base"), "dtype": "float32",
            "models": [{"model": str(root / "a")}, {"model": str(root / "b")}],
            "parameters": {"select_topk": topk}}


@pytest.mark.parametrize("method,falls_back", [("sce", {"tiny", "zero"}), ("sce_fuseai", {"zero"})])
def test_fallback_count_recorded_for_constructed_deltas(tiny, store, tmp_path, method, falls_back):
    root, kinds = tiny
    res = run_merge(_cfg(root, method), name=f"m-{method}", out_dir=tmp_path / "out", store=store,
                    options={"copy_tokenizer": False})
    expected = sum(k in falls_back for k in kinds.values())
    assert 0 < expected < len(kinds)
    assert res.provenance.sce_tensors == len(kinds)
    assert res.provenance.uniform_fallback_tensors == expected
    stored = store.get_model(f"m-{method}").info["merge"]
    assert stored["uniform_fallback_tensors"] == expected and stored["method"] == method
    assert stored["sce_semantics"].startswith("mergekit-0.1.5" if method == "sce" else "FuseAI")


@pytest.mark.parametrize("topk", [1.0, 0.5])
def test_harness_merge_is_bit_identical_to_mergekit_api(tiny, store, tmp_path, topk):
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge as mergekit_run_merge
    from mergekit.options import MergeOptions

    root, _ = tiny
    ours = run_merge(_cfg(root, topk=topk), name="ours", out_dir=tmp_path / "ours", store=store,
                     options={"copy_tokenizer": False})
    mergekit_run_merge(MergeConfiguration.model_validate(_cfg(root, topk=topk)), str(tmp_path / "direct"),
                       MergeOptions(copy_tokenizer=False))
    a = load_file(Path(ours.path) / "model.safetensors")
    b = load_file(tmp_path / "direct" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"],
                           load_file(root / "base" / "model.safetensors")["model.layers.0.mlp.up_proj.weight"])


def test_lineage_has_every_parent_and_resolves_store_names(tiny, store, tmp_path):
    root, _ = tiny
    for n in ("base", "a", "b"):
        store.register_model(ModelRecord(n + "-model", f"fp-{n}", "candidate", path=str(root / n)))
    cfg = {"merge_method": "sce_fuseai", "base_model": "base-model", "dtype": "float32",
           "models": [{"model": "a-model"}, {"model": "b-model"}, {"model": "base-model"}]}
    res = run_merge(cfg, name="merged", out_dir=tmp_path / "merged", store=store,
                    options={"copy_tokenizer": False})
    assert store.model_parents("merged") == [ModelParent("base-model", "base"), ModelParent("a-model", "merged"),
                                             ModelParent("b-model", "merged")]
    assert store.get_model("merged").parent == "base-model"  # the single-parent column still reads
    assert res.provenance.models["a-model"] == str((root / "a").resolve())
    assert json.loads((Path(res.path) / PROVENANCE_FILE).read_text())["method"] == "sce_fuseai"


def test_single_parent_models_keep_reading_through_model_parents(store):
    store.register_model(ModelRecord("c", "fp", "candidate", parent="smollm2-135m-instruct"))
    assert store.model_parents("c") == [ModelParent("smollm2-135m-instruct", "trained-from")]
    assert store.model_parents("absent") == []


def test_different_architecture_names_both_models_and_first_tensor(tiny, store, tmp_path):
    root, _ = tiny
    _save_tiny(tmp_path / "wide", hidden=32)
    cfg = _cfg(root)
    cfg["models"][1]["model"] = str(tmp_path / "wide")
    with pytest.raises(UsageError) as e:
        run_merge(cfg, name="bad", out_dir=tmp_path / "bad", store=store)
    msg = str(e.value)
    assert str(tmp_path / "wide") in msg and str(root / "base") in msg
    assert "model.embed_tokens.weight" in msg and "[64, 32]" in msg and "[64, 16]" in msg
    assert store.get_model("bad") is None and not (tmp_path / "bad").exists()


def test_missing_base_is_a_clear_error(tiny, store, tmp_path):
    root, _ = tiny
    cfg = _cfg(root)
    del cfg["base_model"]
    with pytest.raises(UsageError, match="needs a base model.*base_model"):
        run_merge(cfg, name="nobase", out_dir=tmp_path / "nobase", store=store)


def test_unknown_method_and_option_suggest_names(tiny, store, tmp_path):
    root, _ = tiny
    with pytest.raises(UsageError, match="Did you mean 'sce'"):
        run_merge(_cfg(root, method="sec"), name="x", out_dir=tmp_path / "x", store=store)
    with pytest.raises(UsageError, match="lazy_unpickle"):
        run_merge(_cfg(root), name="x", out_dir=tmp_path / "x", store=store, options={"lazy_unpicle": True})


def test_merge_killed_halfway_registers_nothing_and_next_run_redoes_it(tiny, store, tmp_path, monkeypatch):
    import mergekit.merge

    root, _ = tiny
    real = mergekit.merge.run_merge

    def killed(config, out_path, options, **kw):  # a partial shard on disk, then Ctrl-C
        Path(out_path).mkdir(parents=True)
        (Path(out_path) / "model-00001-of-00002.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(mergekit.merge, "run_merge", killed)
    models = tmp_path / "models"
    with pytest.raises(KeyboardInterrupt):
        run_merge(_cfg(root), name="k", out_dir=models / "k", store=store, options={"copy_tokenizer": False})
    assert store.get_model("k") is None
    assert list(models.iterdir()) == []  # no out dir, no partial dir
    monkeypatch.setattr(mergekit.merge, "run_merge", real)
    run_merge(_cfg(root), name="k", out_dir=models / "k", store=store, options={"copy_tokenizer": False})
    assert store.get_model("k") is not None and (models / "k" / "model.safetensors").exists()


def test_cli_merge_then_models_shows_lineage(tiny, tmp_path):
    import os
    import subprocess
    import sys

    import yaml

    root, _ = tiny
    cfg = tmp_path / "merge_tiny.yaml"
    cfg.write_text(yaml.safe_dump(_cfg(root, "sce_fuseai", 1.0)))  # a fresh process must know sce_fuseai
    env = {**os.environ, "COLUMNS": "400"}
    harness = [sys.executable, "-m", "harness.cli", "--store", str(tmp_path / "s.sqlite")]

    def run(*argv: str) -> str:
        p = subprocess.run([*harness[:3], argv[0], *harness[3:], *argv[1:]], capture_output=True, text=True,
                           env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        return p.stdout

    out = run("merge", "--config", str(cfg), "--option", "copy_tokenizer=false")
    assert "uniform-weight fallback:" in out and "merge_tiny" in out
    assert (tmp_path / "merges" / "merge_tiny" / "model.safetensors").exists()
    listing = run("models")
    assert f"{root / 'base'} (base)" in listing and f"{root / 'a'} (merged)" in listing
    assert "merge: sce_fuseai, " in listing and "tensors uniform" in listing


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[1] / "trainers" / "recipes")
                                          .glob("merge_*.yaml")), ids=lambda p: p.stem)
def test_shipped_merge_recipes_are_valid_mergekit_configs(recipe):
    from mergekit.config import MergeConfiguration

    register_fuseai_method()
    cfg = load_merge_config(recipe)
    MergeConfiguration.model_validate(cfg)
    check_base_present(cfg["merge_method"], cfg.get("base_model"))
    assert cfg["merge_method"] in ("sce", "sce_fuseai")


def test_leaderboard_shows_every_parent_of_a_merged_candidate(store, tmp_path):
    store.register_model(ModelRecord("merged", "fp-merged", "candidate", path="/m", parent="tgt"),
                         parents=[ModelParent("tgt", "base"), ModelParent("math-tune", "merged"),
                                  ModelParent("chat-tune", "merged")])
    store.register_model(ModelRecord("sft", "fp-sft", "candidate", path="/s", parent="tgt"))  # old-style
    for i, m in enumerate(("tgt", "merged", "sft")):
        make_run(store, f"r{i}", m, {"gsm8k": binary_items(20, 0.5, i)})
    spec = LeaderboardSpec(name="t", suite="math", models=[
        {"model": "tgt", "role": "target"}, {"model": "merged", "role": "candidate"},
        {"model": "sft", "role": "candidate"}])
    lb = build_leaderboard(spec, store)
    assert lb.lineage == {"merged": [("tgt", "base"), ("math-tune", "merged"), ("chat-tune", "merged")],
                          "sft": [("tgt", "trained-from")]}
    html = write_site(lb, tmp_path / "site", store).read_text()
    assert "parents: tgt (base), math-tune (merged), chat-tune (merged)" in html
    assert "parents: tgt</small>" in html
