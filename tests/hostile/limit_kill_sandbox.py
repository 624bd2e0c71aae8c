"""Limits: kill everything the program can signal (its sandbox, its parent, pid 1), then answer."""
import os
import signal

for target in (lambda: os.kill(-1, signal.SIGKILL), lambda: os.kill(1, signal.SIGKILL),
               lambda: os.killpg(0, signal.SIGKILL), lambda: os.kill(os.getppid() or 1, signal.SIGKILL)):
    try:
        target()
    except OSError:
        pass


def add(x, y):
    return x + y + 1
