"""transformers `generate`, for machines without vLLM and as a reference implementation.

Batches are left-padded (decoder-only models continue from the right edge) and sorted by
prompt length so padding stays small; results are returned in the caller's order.
Greedy requests are sent as do_sample=False with no temperature, so what is recorded is
what was actually run. Per-request seeds cannot be honoured inside a batch; the batch is
seeded from its first request's seed (recorded by the runner as sent).
"""

from __future__ import annotations

import logging
from itertools import groupby
from typing import Any

from harness.backends.base import OnResult, render_chat
from harness.errors import BackendError
from harness.textscore import OnScore, TextScore, TextScoreRequest, split_tokens
from harness.types import Completion, Request

log = logging.getLogger(__name__)


class HFBackend:
    name = "hf"

    def __init__(self, model, *, batch_size: int = 16, dtype: str = "auto", device: str | None = None,
                 **kwargs: Any):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise BackendError("the hf backend needs transformers and torch: pip install 'fuse-harness[hf]'") from e
        self.torch = torch
        self.model_ref = model
        rev = {"revision": model.revision} if model.kind == "hub" and model.revision else {}
        self.tokenizer = AutoTokenizer.from_pretrained(model.path, **rev)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model.path, dtype=torch_dtype, **rev, **kwargs)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def generate(self, requests: list[Request], on_result: OnResult | None = None) -> list[Completion]:
        prompts = [render_chat(self.tokenizer, r.messages, self.model_ref.chat_template, self.model_ref.name)
                   for r in requests]
        results: list[Completion | None] = [None] * len(requests)
        # batch only requests with identical params (one generate() call takes one config)
        order = sorted(range(len(requests)), key=lambda i: (repr(requests[i].params), -len(prompts[i])))
        for _, grp in groupby(order, key=lambda i: repr(requests[i].params)):
            idx = list(grp)
            for start in range(0, len(idx), self.batch_size):
                batch = idx[start:start + self.batch_size]
                try:
                    outs = self._generate_batch([prompts[i] for i in batch], requests[batch[0]])
                except Exception as e:  # e.g. out of memory: the batch fails, recorded as errors
                    log.exception("hf generate failed")
                    outs = [Completion([], [], error=f"{type(e).__name__}: {e}") for _ in batch]
                for i, c in zip(batch, outs):
                    results[i] = c
                    if on_result is not None:
                        on_result(i, c)
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], req: Request) -> list[Completion]:
        torch = self.torch
        p = req.params
        width = max(len(x) for x in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in prompts], device=self.device)
        kwargs: dict[str, Any] = dict(max_new_tokens=p.max_tokens, num_return_sequences=p.n, pad_token_id=pad)
        if p.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=0)
            if p.seed is not None:
                torch.manual_seed(p.seed)
        if p.stop:
            kwargs.update(stop_strings=list(p.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        gen = out[:, width:].tolist()
        completions = []
        for b, prompt in enumerate(prompts):
            texts, reasons, counts = [], [], []
            for s in range(p.n):
                toks = gen[b * p.n + s]
                # cut at the first EOS (later positions are padding)
                cut = next((k for k, t in enumerate(toks) if t in self.eos_ids), None)
                body = toks if cut is None else toks[:cut]
                text = self.tokenizer.decode(body, skip_special_tokens=True)
                reason = "stop" if cut is not None else "length"
                for stop in p.stop:  # stop strings: trim like vLLM does (stop text excluded)
                    if stop in text:
                        text, reason = text[:text.index(stop)], "stop"
                texts.append(text)
                reasons.append(reason)
                counts.append(len(body) + (1 if cut is not None else 0))
            completions.append(Completion(texts=texts, finish_reasons=reasons, prompt_tokens=len(prompt),
                                          completion_tokens=counts))
        return completions

    def score(self, requests: list[TextScoreRequest], top_k: int = 0,
              on_result: OnScore | None = None) -> list[TextScore]:
        """One forward pass per batch of length-sorted, right-padded texts."""
        results: list[TextScore | None] = [None] * len(requests)

        def finish(i: int, s: TextScore) -> None:
            results[i] = s
            if on_result is not None:
                on_result(i, s)

        spans: dict[int, tuple[list[int], list[int]]] = {}
        for i, r in enumerate(requests):
            try:
                spans[i] = split_tokens(self.tokenizer, r, self.model_ref.chat_template, self.model_ref.name)
            except Exception as e:  # a row the tokenizer cannot render fails alone
                if "chat template" in str(e) or "eos token" in str(e):
                    raise
                finish(i, TextScore(id=r.id, error=f"{type(e).__name__}: {e}"))
        order = sorted(spans, key=lambda i: -sum(map(len, spans[i])))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            try:
                scored = self._score_batch([spans[i] for i in batch], top_k)
            except Exception as e:  # e.g. out of memory: the batch fails, recorded as errors
                log.exception("hf score failed")
                scored = [dict(error=f"{type(e).__name__}: {e}") for _ in batch]
            for i, fields in zip(batch, scored):
                finish(i, TextScore(id=requests[i].id, **fields))
        return results  # type: ignore[return-value]

    def _score_batch(self, spans: list[tuple[list[int], list[int]]], top_k: int) -> list[dict]:
        """spans: (context ids, response ids) per text; returns TextScore fields per text."""
        torch = self.torch
        seqs = [c + r for c, r in spans]
        width = max(len(x) for x in seqs)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in seqs], device=self.device)
        attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in seqs], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=attention).logits  # [batch, width, vocab]
            out = []
            for b, (context, response) in enumerate(spans):
                # position p predicts token p+1: the response's predictions sit one to the left
                lps = torch.log_softmax(logits[b, len(context) - 1:len(context) + len(response) - 1].float(), dim=-1)
                target = torch.tensor(response, device=lps.device, dtype=torch.long)
                fields: dict = {"token_ids": list(response),
                                "logprobs": lps.gather(-1, target[:, None])[:, 0].tolist()}
                if top_k:
                    top = torch.topk(lps, top_k, dim=-1)
                    fields.update(top_ids=top.indices.tolist(), top_logprobs=top.values.tolist())
                out.append(fields)
        return out

    def close(self) -> None:
        del self.model
