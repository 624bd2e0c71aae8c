"""Leak between programs (reader): attach the segment an earlier program made, read it."""
import ctypes

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
RES = {"read": ""}
shmid = libc.shmget(CANARY["shm_key"], 0, 0)  # noqa: F821
if shmid >= 0:
    addr = libc.shmat(shmid, None, 0)
    if addr not in (None, ctypes.c_void_p(-1).value):
        RES["read"] = ctypes.string_at(addr, 64).split(b"\0")[0].decode("utf-8", "replace")


def add(x, y):
    return RES
