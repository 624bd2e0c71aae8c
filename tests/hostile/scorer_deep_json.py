"""The scorer: deeply nested JSON where the harness parses: result lines written directly, and a
deeply nested return value."""
import os

deep = "[" * 200000 + "]" * 200000
with open("result.jsonl", "a") as f:
    f.write('{"event": "test", "i": 0, "ok": true, "out": ' + deep + "}\n")
    f.write('{"event": "test", "i": 0, "ok": true, "out": "' + deep + '"}\n')
    f.write(deep + "\n")
os.write(1, deep.encode())


def add(x, y):
    v = []
    for _ in range(100000):
        v = [v]
    return v
