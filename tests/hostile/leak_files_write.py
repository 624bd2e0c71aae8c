"""Leak between programs (writer): park a marker in every shared scratch place."""
import os

WROTE = []
for d in ("/tmp", "/var/tmp", "/dev/shm", "/run", os.path.dirname(os.getcwd())):
    try:
        with open(os.path.join(d, "fh_leak_" + CANARY["marker"]), "w") as f:  # noqa: F821
            f.write(CANARY["marker"])  # noqa: F821
        WROTE.append(d)
    except OSError:
        pass


def add(x, y):
    return {"wrote": WROTE}
