"""Leak between programs (writer): a SysV shared-memory segment with a known key."""
import ctypes

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
RES = {}
shmid = libc.shmget(CANARY["shm_key"], 4096, 0o1666)  # noqa: F821 - IPC_CREAT | 0666
RES["shmid"] = shmid
if shmid >= 0:
    addr = libc.shmat(shmid, None, 0)
    if addr not in (None, ctypes.c_void_p(-1).value):
        ctypes.memmove(addr, CANARY["marker"].encode(), len(CANARY["marker"]))  # noqa: F821
        RES["wrote"] = True


def add(x, y):
    return RES
