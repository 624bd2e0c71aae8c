"""A scripted backend for unit tests of the runner. Never used for end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable

from harness.types import Completion, Request


class FakeBackend:
    name = "fake"

    def __init__(self, respond: Callable[[Request, int], str] | None = None, fail_ids: set[str] | None = None,
                 crash_after: int | None = None):
        self.respond = respond or (lambda r, i: f"The answer is \\boxed{{{len(r.messages[-1]['content']) % 7}}}")
        self.fail_ids = fail_ids or set()
        self.crash_after = crash_after
        self.calls: list[list[Request]] = []
        self.generated = 0

    def generate(self, requests, on_result=None):
        self.calls.append(list(requests))
        out = []
        for i, r in enumerate(requests):
            if self.crash_after is not None and self.generated >= self.crash_after:
                raise KeyboardInterrupt("simulated crash")
            if r.id in self.fail_ids:
                c = Completion(texts=[], finish_reasons=[], error="HTTP 503: scripted failure")
            else:
                texts = [self.respond(r, s) for s in range(r.params.n)]
                c = Completion(texts=texts, finish_reasons=["stop"] * r.params.n, prompt_tokens=10,
                               completion_tokens=[len(t.split()) for t in texts])
            self.generated += 1
            if on_result is not None:
                on_result(i, c)
            out.append(c)
        return out

    def close(self):
        pass
