"""Persistence: read and modify the results store in the harness's working directory, and
drop files there the harness would later read."""
import os

RES = {"read": None, "wrote": []}
try:
    RES["read"] = open(CANARY["cwd_file"]).read()[:100]  # noqa: F821
except OSError as e:
    RES["read_error"] = type(e).__name__
for p in [CANARY["cwd_file"], os.path.join(CANARY["cwd_dir"], "fh_planted.py"),  # noqa: F821
          os.path.join(CANARY["cwd_dir"], "fh_planted.pth")]:  # noqa: F821
    try:
        with open(p, "a") as f:
            f.write("\nPWNED = True\n")
        RES["wrote"].append(p)
    except OSError:
        pass


def add(x, y):
    return RES
