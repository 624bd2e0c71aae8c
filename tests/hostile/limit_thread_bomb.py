"""Limits: start threads (and processes) until something stops it; report how many."""
import os
import threading
import time

n = 0
try:
    for _ in range(100000):
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        n += 1
except (RuntimeError, OSError, MemoryError):
    pass
forks = 0
try:
    for _ in range(1000):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        forks += 1
except OSError:
    pass


def add(x, y):
    return {"threads": n, "forks": forks}
