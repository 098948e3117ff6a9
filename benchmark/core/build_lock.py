"""One builder per cache entry across processes: the others wait for it, then reuse what it wrote.

Grid workers share the model cache, the teacher-output cache and the MinED vocabulary maps. Every entry is
already written atomically (temporary file, then rename), so a reader never sees half an entry; this lock only
keeps two workers from spending minutes building the same entry side by side. Callers re-check for the entry
once they hold the lock. Lock files stay behind: removing one would let a newcomer lock a fresh file while a
waiter still holds the old one.
"""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def lock_path(target: Path) -> Path:
    """The lock file guarding ``target`` (a file or folder), beside it."""
    return target.with_name(f".{target.name}.lock")


@contextmanager
def build_lock(target: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on ``target``'s lock file; blocks while another process or thread holds it.

    ``flock`` locks belong to an open file description, so two threads of one process exclude each other as two
    processes do, and the kernel drops the lock of a process that dies.
    """
    path = lock_path(Path(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
