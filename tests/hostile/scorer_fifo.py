"""The scorer: replace every file the harness reads back by a FIFO nobody writes to (a blocking
open would hang the whole run), and leave FIFOs and sockets all over the temp dir."""
import os
import socket

for name in ("result.jsonl", ".stdout", ".stderr", "out/0", "fifo_a", "fifo_b"):
    try:
        if os.path.lexists(name):
            os.unlink(name)
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        os.mkfifo(name)
    except OSError:
        pass
try:
    socket.socket(socket.AF_UNIX).bind("sock")
except OSError:
    pass


def add(x, y):
    return x + y + 1
