"""The scorer: a directory tree far deeper than Python's recursion limit in the temp dir (a
recursive walk or rmtree of it is a RecursionError), with symlink loops."""
import os

base = os.getcwd()
os.symlink(".", "loop")
fd = os.open(".", os.O_RDONLY)
for _ in range(5000):
    try:
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    except OSError:
        break
os.close(fd)


def add(x, y):
    return x + y + 1
