"""The scorer: flood stdout, stderr, the result file and the returned value."""
import sys

chunk = "x" * (1 << 20)
try:
    with open("result.jsonl", "a") as f:
        for _ in range(200):
            f.write('{"event": "test", "i": 0, "ok": true, "out": "' + chunk + '"}\n')
except OSError:
    pass
try:
    for _ in range(200):
        sys.stdout.write(chunk)
        sys.stderr.write(chunk)
except OSError:
    pass


def add(x, y):
    return "y" * (300 << 20)
