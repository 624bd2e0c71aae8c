"""The embedded SQLite store: models, runs, generations, judgments, scores (DESIGN.md §3).

Why SQLite in WAL mode: one file a researcher can copy, readers never block the writer,
and several processes can write the same store at once (writes take the lock with
BEGIN IMMEDIATE and wait on `busy_timeout` instead of failing). Every row is committed
as soon as it exists, so a crash or SIGKILL loses nothing that had finished.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.types import Completion, Request, stable_hash

log = logging.getLogger(__name__)

DEFAULT_STORE = Path(".harness") / "store.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,            -- alias | local | hub | openai | candidate
    path TEXT,
    template_hash TEXT,
    parent TEXT,                   -- for trained candidates: the model they started from
    info TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    model TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,          -- running | finished | failed | interrupted
    started_at REAL NOT NULL,
    finished_at REAL,
    results TEXT
);
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,          -- hash(model fp, template hash, messages, params, sample index)
    model_fingerprint TEXT NOT NULL,
    request_id TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    messages TEXT NOT NULL,
    params TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    logprobs TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,          -- hash(judge id, prompt version, judge messages, params)
    judge TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    messages TEXT NOT NULL,
    text TEXT,
    logprobs TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    error TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS scores (
    run_id TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    item_id TEXT NOT NULL,
    score TEXT NOT NULL,           -- JSON: benchmark-specific per-item record
    PRIMARY KEY (run_id, benchmark, item_id)
);
CREATE TABLE IF NOT EXISTS text_scores (
    key TEXT PRIMARY KEY,          -- hash(model fp, template hash, messages, response, plain, top_k)
    model_fingerprint TEXT NOT NULL,
    request_id TEXT NOT NULL,      -- the first request that asked (informational)
    result TEXT NOT NULL,          -- JSON: token_ids, logprobs, top_ids, top_logprobs (textscore.py)
    created_at REAL NOT NULL
);
-- which generations a run used (cached or new), named by benchmark and item: recorded by the
-- runner, so readers never recover the benchmark or item by parsing request ids
CREATE TABLE IF NOT EXISTS run_generations (
    run_id TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    item_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    key TEXT NOT NULL,             -- generations.key
    PRIMARY KEY (run_id, request_id, sample_index)
);
CREATE INDEX IF NOT EXISTS scores_by_run ON scores(run_id, benchmark);
CREATE INDEX IF NOT EXISTS generations_by_model ON generations(model_fingerprint, request_id);
-- lineage: every parent of a model (a merge has the base and each merged model). models.parent
-- stays the single "started from" model; this table adds the full list in order.
CREATE TABLE IF NOT EXISTS model_parents (
    model TEXT NOT NULL,
    position INTEGER NOT NULL,
    parent TEXT NOT NULL,
    role TEXT NOT NULL,            -- base | merged | trained-from
    PRIMARY KEY (model, position)
);
"""


@dataclass
class ModelRecord:
    name: str
    fingerprint: str
    kind: str
    path: str | None = None
    template_hash: str | None = None
    parent: str | None = None
    info: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelParent:
    """One edge of a model's lineage: `parent` is a model name, `role` says how it was used."""

    parent: str
    role: str  # base | merged | trained-from


def generation_key(model_fingerprint: str, template_hash: str | None, request: Request, sample_index: int) -> str:
    """DESIGN.md §3 cache key. The request id is deliberately *not* part of it: the same
    prompt with the same params is the same generation whichever benchmark asks for it."""
    return stable_hash(
        model_fingerprint, template_hash, list(request.messages), request.params.to_dict(), sample_index
    )


class Store:
    def __init__(self, path: str | os.PathLike = DEFAULT_STORE):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per Store; guarded by a lock so the OpenAI backend's callback
        # threads can write through it too.
        self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._enable_wal()
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # executescript commits on its own, so it runs outside _write(); IF NOT EXISTS makes
        # it safe for two processes opening a new store at once.
        with self._lock:
            self._conn.executescript(_SCHEMA)
        with self._write():
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _enable_wal(self) -> None:
        """Switching a new database to WAL needs an exclusive lock and SQLite answers a
        concurrent switch with SQLITE_BUSY without calling the busy handler, so two processes
        opening a fresh store at once (e.g. two training ranks) fail; retry for a while."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction. BEGIN IMMEDIATE takes the write lock up front so two
        processes never deadlock upgrading read locks."""
        with self._lock:
            for attempt in range(20):
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:  # busy beyond busy_timeout: back off
                    if "locked" not in str(e) or attempt == 19:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, tuple(args))
            cols = [c[0] for c in cur.description or ()]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

    # ---- models -------------------------------------------------------------------
    def register_model(self, rec: ModelRecord, parents: list[ModelParent] | None = None) -> None:
        """Insert or replace a model. `parents` (in order) replaces its lineage in the same
        transaction, so a model is never visible without its parents."""
        with self._write() as c:
            c.execute(
                "INSERT INTO models(name, fingerprint, kind, path, template_hash, parent, info, created_at)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET fingerprint=excluded.fingerprint,"
                " kind=excluded.kind, path=excluded.path, template_hash=excluded.template_hash,"
                " parent=excluded.parent, info=excluded.info",
                (rec.name, rec.fingerprint, rec.kind, rec.path, rec.template_hash, rec.parent,
                 json.dumps(rec.info or {}), time.time()),
            )
            if parents is not None:
                c.execute("DELETE FROM model_parents WHERE model = ?", (rec.name,))
                c.executemany("INSERT INTO model_parents(model, position, parent, role) VALUES (?,?,?,?)",
                              [(rec.name, i, p.parent, p.role) for i, p in enumerate(parents)])

    def get_model(self, name: str) -> ModelRecord | None:
        rows = self._query("SELECT * FROM models WHERE name = ?", (name,))
        if not rows:
            return None
        r = rows[0]
        return ModelRecord(r["name"], r["fingerprint"], r["kind"], r["path"], r["template_hash"], r["parent"],
                           json.loads(r["info"]))

    def model_parents(self, name: str) -> list[ModelParent]:
        """The model's parents in order; models registered before lineage existed (or with a
        single parent only) report their `parent` column as one "trained-from" parent."""
        rows = self._query("SELECT parent, role FROM model_parents WHERE model = ? ORDER BY position", (name,))
        if rows:
            return [ModelParent(r["parent"], r["role"]) for r in rows]
        rec = self.get_model(name)
        return [ModelParent(rec.parent, "trained-from")] if rec is not None and rec.parent else []

    def list_models(self) -> list[ModelRecord]:
        return [ModelRecord(r["name"], r["fingerprint"], r["kind"], r["path"], r["template_hash"], r["parent"],
                            json.loads(r["info"]))
                for r in self._query("SELECT * FROM models ORDER BY created_at")]

    # ---- generations --------------------------------------------------------------
    def lookup_generations(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):  # stay under SQLite's host-parameter limit
            chunk = keys[i:i + 500]
            q = f"SELECT * FROM generations WHERE key IN ({','.join('?' * len(chunk))})"
            for r in self._query(q, chunk):
                out[r["key"]] = r
        return out

    def generations_for(self, model_fingerprint: str, benchmarks: list[str]) -> list[dict[str, Any]]:
        """Every stored sample of a model for these benchmarks (request ids "<bench>/..."),
        oldest first: what leaderboards and drill-downs show next to the scores."""
        if not benchmarks:
            return []
        return self._query(
            "SELECT request_id, sample_index, messages, params, text, finish_reason FROM generations"
            " WHERE model_fingerprint = ? AND substr(request_id, 1, instr(request_id, '/') - 1)"
            f" IN ({','.join('?' * len(benchmarks))}) ORDER BY created_at", (model_fingerprint, *benchmarks))

    def link_run_generations(self, run_id: str, rows: list[tuple[str, str, str, int, str]]) -> None:
        """Record that a run used these generations: (benchmark, item id, request id, sample
        index, generation key) each. Idempotent (a resumed pass links the same rows again)."""
        with self._write() as c:
            c.executemany("INSERT OR IGNORE INTO run_generations VALUES (?,?,?,?,?,?)",
                          [(run_id, *r) for r in rows])

    def run_generations(self, run_id: str) -> list[dict[str, Any]]:
        """The generations a run used, with their benchmark and item; [] for runs recorded
        before the link table existed."""
        return self._query(
            "SELECT l.benchmark, l.item_id, l.request_id, l.sample_index, g.messages, g.params, g.text,"
            " g.finish_reason FROM run_generations l JOIN generations g ON g.key = l.key"
            " WHERE l.run_id = ? ORDER BY l.benchmark, l.request_id, l.sample_index", (run_id,))

    def put_completion(self, keys: list[str], model_fingerprint: str, request: Request, completion: Completion) -> None:
        """Store each sample of a finished completion. Failed requests are not cached:
        an error must be retried next time, never replayed as an answer."""
        if completion.error is not None:
            return
        if len(completion.texts) != len(keys):  # a partial result is not a cache entry
            log.warning("request %s returned %d of %d samples; not cached", request.id,
                        len(completion.texts), len(keys))
            return
        now = time.time()
        rows = []
        for i, key in enumerate(keys):
            lp = completion.logprobs[i] if completion.logprobs and i < len(completion.logprobs) else None
            rows.append((key, model_fingerprint, request.id, i, request.messages_json(),
                         json.dumps(request.params.to_dict()), completion.texts[i], completion.finish_reasons[i],
                         completion.prompt_tokens,
                         completion.completion_tokens[i] if i < len(completion.completion_tokens) else None,
                         json.dumps(lp) if lp is not None else None, now))
        with self._write() as c:
            c.executemany("INSERT OR IGNORE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    # ---- judgments ----------------------------------------------------------------
    def lookup_judgments(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT * FROM judgments WHERE key IN ({','.join('?' * len(chunk))}) AND error IS NULL"
            for r in self._query(q, chunk):
                out[r["key"]] = r
        return out

    def put_judgment(self, key: str, judge: str, prompt_version: str, messages: list[dict], text: str | None,
                     logprobs: Any = None, prompt_tokens: int | None = None, completion_tokens: int | None = None,
                     error: str | None = None) -> None:
        with self._write() as c:
            c.execute(
                "INSERT OR REPLACE INTO judgments VALUES (?,?,?,?,?,?,?,?,?,?)",
                (key, judge, prompt_version, json.dumps(messages, ensure_ascii=False), text,
                 json.dumps(logprobs) if logprobs is not None else None, prompt_tokens, completion_tokens,
                 error, time.time()),
            )

    # ---- text scores (harness/textscore.py) -----------------------------------------
    def lookup_text_scores(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """key -> stored result for the keys that are cached (errors are never stored)."""
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for r in self._query(f"SELECT key, result FROM text_scores WHERE key IN ({','.join('?' * len(chunk))})",
                                 chunk):
                out[r["key"]] = json.loads(r["result"])
        return out

    def put_text_score(self, key: str, model_fingerprint: str, request_id: str, result: dict[str, Any]) -> None:
        """Commit one finished score at once (a crash keeps it)."""
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO text_scores VALUES (?,?,?,?,?)",
                      (key, model_fingerprint, request_id, json.dumps(result), time.time()))

    # ---- runs and scores ----------------------------------------------------------
    def create_run(self, run_id: str, suite: str, model: str, model_fingerprint: str, config: dict) -> None:
        with self._write() as c:
            c.execute("INSERT INTO runs(id, suite, model, model_fingerprint, config, status, started_at)"
                      " VALUES (?,?,?,?,?,?,?)",
                      (run_id, suite, model, model_fingerprint, json.dumps(config), "running", time.time()))

    def finish_run(self, run_id: str, status: str, results: dict | None) -> None:
        with self._write() as c:
            c.execute("UPDATE runs SET status=?, finished_at=?, results=? WHERE id=?",
                      (status, time.time(), json.dumps(results) if results is not None else None, run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            # accept a unique prefix, as git does for shas
            rows = self._query("SELECT * FROM runs WHERE id LIKE ?", (run_id + "%",))
            if len(rows) != 1:
                return None
        r = rows[0]
        r["config"] = json.loads(r["config"])
        r["results"] = json.loads(r["results"]) if r["results"] else None
        return r

    def list_runs(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT id, suite, model, model_fingerprint, status, started_at, finished_at, results"
                           " FROM runs ORDER BY started_at")
        for r in rows:
            r["results"] = json.loads(r["results"]) if r["results"] else None
        return rows

    def put_scores(self, run_id: str, benchmark: str, items: list[tuple[str, dict]]) -> None:
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO scores VALUES (?,?,?,?)",
                          [(run_id, benchmark, item_id, json.dumps(score, ensure_ascii=False, default=str))
                           for item_id, score in items])

    def get_scores(self, run_id: str, benchmark: str | None = None) -> dict[str, dict[str, dict]]:
        """{benchmark: {item_id: score}} for a run."""
        if benchmark is None:
            rows = self._query("SELECT benchmark, item_id, score FROM scores WHERE run_id = ?", (run_id,))
        else:
            rows = self._query("SELECT benchmark, item_id, score FROM scores WHERE run_id = ? AND benchmark = ?",
                               (run_id, benchmark))
        out: dict[str, dict[str, dict]] = {}
        for r in rows:
            out.setdefault(r["benchmark"], {})[r["item_id"]] = json.loads(r["score"])
        return out
