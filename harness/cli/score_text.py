"""`harness score-text --model M --data rows.jsonl [--top-k K]`: per-token log-probs of texts.

Each input line: {"id": ..., "messages": [{"role": ..., "content": ...}], "response": "...",
"plain": false}; "prompt": "..." is accepted as a one-user-message shorthand. Each output
line (stdout): the TextScore (harness/textscore.py) plus "total". Scores are cached in the
store; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from harness.cli._common import err_console, existing_file, open_store, parse_key_values


def register(sub, parent) -> None:
    p = sub.add_parser("score-text", parents=[parent],
                       help="per-token log-probs of (messages, response) rows under a model")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="alias, local dir, hub id or openai:<model>@<base_url> (default: the embedded model)")
    p.add_argument("--data", required=True,
                   help='JSONL: {"id", "messages" (or "prompt"), "response", "plain"} per line')
    p.add_argument("--top-k", type=int, default=0, help="also return the k most likely tokens per position")
    p.add_argument("--backend", default="auto", help="auto | vllm | hf | openai")
    p.add_argument("--backend-option", action="append", metavar="KEY=VALUE",
                   help="passed to the backend, e.g. batch_size=8, or tokenizer=DIR for openai")
    p.add_argument("--chat-template", help="Jinja chat template file for models without one")
    p.set_defaults(func=cmd_score_text)


def read_rows(path: str):
    from harness.data import read_jsonl_records
    from harness.errors import UsageError
    from harness.textscore import TextScoreRequest

    expected = '{"id": ..., "messages": [...] or "prompt": "...", "response": "...", "plain": false} per line'
    out = []
    for n, row in read_jsonl_records(existing_file(path, "--data file"), expected):
        if "prompt" in row and "messages" not in row:
            row = {**{k: v for k, v in row.items() if k != "prompt"},
                   "messages": [{"role": "user", "content": row["prompt"]}]}
        if "id" in row and not isinstance(row["id"], str):
            row = {**row, "id": str(row["id"])}
        try:
            out.append(TextScoreRequest.model_validate(row))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise UsageError(f"{path}:{n}: {problems}. Expected {expected}") from None
    return out


def cmd_score_text(args) -> int:
    from harness.errors import UsageError
    from harness.textscore import score_texts

    if args.top_k < 0:
        raise UsageError(f"--top-k must be >= 0, got {args.top_k}")
    rows = read_rows(args.data)
    store = open_store(args)
    scores = score_texts(args.model, rows, store=store, top_k=args.top_k, backend=args.backend,
                         backend_options=parse_key_values(args.backend_option, "--backend-option"),
                         chat_template_file=args.chat_template)
    for s in scores:
        print(json.dumps({**s.model_dump(), "total": s.total}, ensure_ascii=False))
    failed = sum(s.error is not None for s in scores)
    cached = sum(s.cached for s in scores)
    err_console.print(f"{len(scores)} texts: {len(scores) - failed - cached} scored, {cached} cached, {failed} failed"
                      + ("; re-run the same command to retry the failures" if failed else ""))
    return 1 if failed else 0
