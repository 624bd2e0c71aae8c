"""Token-level fusion benchmarks (docs/performance.md, "Token-level fusion"). Run:
  flock /tmp/heavy.lock .tox/test/bin/python -m pytest tests/bench_distill.py --benchmark-enable -q -p no:cacheprovider

  * step: forward + loss + backward of SmolLM2-135M on one batch (4 x 192 tokens), plain SFT vs
    distill_ce (K = 10 fused target) vs uld / gld (K = 10 teacher entries); target <= 1.5x SFT
  * MinED: Gemma-3-270M -> SmolLM2 map restricted to the Gemma ids occurring in 64 GSM8K rows
  * DTW: two tokenizations of one ~1k-token text
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rapidfuzz")

from trainers import losses as L  # noqa: E402
from trainers.distill import align as A  # noqa: E402
from trainers.distill import losses as D  # noqa: E402

B, T, K = 4, 192, 10


@pytest.fixture(scope="module")
def model(embedded_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(str(embedded_model_dir), dtype=torch.float32).train()


@pytest.fixture(scope="module")
def batch(model):
    g = torch.Generator().manual_seed(0)
    v = model.config.vocab_size
    ids = torch.randint(0, v, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    mask[:, 64:] = 1
    tid = torch.randint(0, v, (B, T - 1, K), generator=g)
    tpr = torch.softmax(torch.randn(B, T - 1, K, generator=g), -1)
    tlp = torch.log_softmax(torch.randn(B, T - 64, 262144 // 1024, generator=g), -1)[..., :K]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "loss_mask": mask, "target_ids": tid,
            "target_probs": tpr, "teacher_logprobs": tlp, "teacher_mask": torch.ones(B, T - 64)}


def _step(model, b, method):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
    if method == "sft":
        logps, lens = L.sequence_logps(logits, b["input_ids"], b["loss_mask"])
        loss = -logps.sum() / lens.sum()
    elif method == "distill_ce":
        loss = D.distill_ce(logits, b["input_ids"], b["loss_mask"], b["target_ids"], b["target_probs"]).loss
    elif method == "uld":
        loss = D.uld(logits, b["input_ids"], b["loss_mask"], b["teacher_logprobs"], b["teacher_mask"]).loss
    else:
        loss = D.gld(logits, b["input_ids"], b["loss_mask"], b["teacher_logprobs"], b["teacher_mask"]).loss
    loss.backward()
    return loss.item()


@pytest.mark.parametrize("method", ["sft", "distill_ce", "uld", "gld"])
def test_bench_step(benchmark, model, batch, method):
    benchmark.group = "distill step (SmolLM2-135M, 4 x 192 tokens, K = 10)"
    benchmark.pedantic(_step, args=(model, batch, method), rounds=3, warmup_rounds=1)


@pytest.fixture(scope="module")
def vocabs(embedded_model_dir, data_dir):
    from transformers import AutoTokenizer

    from harness.models import ensure_alias

    g = AutoTokenizer.from_pretrained(str(ensure_alias("gemma3-270m")))
    s = AutoTokenizer.from_pretrained(str(embedded_model_dir))
    rows = [json.loads(x) for x in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:64]]
    return g, s, A.vocab_texts(g), A.vocab_texts(s), rows


def test_bench_mined_map_occurring_ids(benchmark, vocabs, tmp_path):
    g, _, gt, st, rows = vocabs
    ids = sorted({i for r in rows for i in g(r["question"] + " " + r["answer"])["input_ids"]})
    benchmark.group = "MinED Gemma-3-270M -> SmolLM2 (occurring ids)"
    benchmark.extra_info["ids"] = len(ids)
    benchmark.extra_info["not_exact"] = sum(gt[i] not in set(st) for i in ids)
    benchmark.pedantic(A.mined_map, args=(ids, gt, st), rounds=1, iterations=1)


def test_bench_dtw_1k_tokens(benchmark, vocabs):
    g, s, gt, st, rows = vocabs
    text = " ".join(r["question"] + " " + r["answer"] for r in rows)
    a = [st[i] for i in s(text)["input_ids"]][:1000]
    b = [gt[i] for i in g(text)["input_ids"]][:1000]
    benchmark.group = "DTW per 1k-token row"
    benchmark.extra_info["tokens"] = [len(a), len(b)]
    a2b, _ = benchmark.pedantic(A.dtw, args=(a, b), rounds=3, iterations=1)
    benchmark.extra_info["one_to_one_identical"] = float(np.mean([len(j) == 1 and a[i] == b[j[0]]
                                                                   for i, j in enumerate(a2b)]))
