"""A tiny random Llama with the embedded model's real tokenizer and chat template.

Why: loss parity, data and loop tests need a real transformers model and tokenizer, but not
135M parameters; this one trains a step in well under a second on CPU and still loads in
vLLM (head_dim 32)."""

from __future__ import annotations

import shutil
from pathlib import Path


def make_tiny_model(src: Path, out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (out / "model.safetensors").exists():
        return out
    tok = AutoTokenizer.from_pretrained(src)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    if (src / "chat_template.jinja").exists():
        shutil.copy(src / "chat_template.jinja", out / "chat_template.jinja")
    return out
