"""Leak between programs (reader): look for what an earlier program parked."""
import glob
import os

FOUND = []
for d in ("/tmp", "/var/tmp", "/dev/shm", "/run", os.path.dirname(os.getcwd())):
    for p in glob.glob(os.path.join(d, "**", "fh_leak_*"), recursive=True):
        FOUND.append(p)


def add(x, y):
    return {"found": [p for p in FOUND if CANARY["marker"] in p]}  # noqa: F821
