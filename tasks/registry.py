"""The task registry: the built-in adapters, where the data lives, and a fingerprint of a task's files."""
from __future__ import annotations

import functools
import hashlib
import importlib
import os
from pathlib import Path

from benchmark.registry import Registry
from tasks.base import TASKS, Task, require_file

__all__ = [
    "TASKS", "BUILTIN_TASK_MODULES", "load_tasks", "default_data_dir", "user_data_dir", "resolve_data_dir",
    "data_fingerprint",
]

# Modules whose import registers the built-in tasks (each decorates its class with @TASKS.register).
BUILTIN_TASK_MODULES = ("tasks.qed", "tasks.squad", "tasks.fairytaleqa", "tasks.pubmedqa", "tasks.dialogsum")
DATA_DIR_ENV = "CTKD_DATA_DIR"


def load_tasks() -> Registry[type[Task]]:
    """Import the built-in adapters (registering them once) and return the registry."""
    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(module)
    return TASKS


def default_data_dir() -> Path | None:
    """``$CTKD_DATA_DIR`` if set, else ``<repo root>/../shared/data`` if it exists, else None."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def user_data_dir() -> Path:
    """The per-user folder that fetched data goes to: ``$XDG_CACHE_HOME/ctkd-bench/data``, else
    ``~/.cache/ctkd-bench/data``."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "ctkd-bench" / "data"


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory of a run: ``explicit`` (``--data-dir``), else :func:`default_data_dir`, else
    :func:`user_data_dir` (which may not exist yet: ``data fetch`` creates it)."""
    if explicit is not None:
        return Path(explicit)
    return default_data_dir() or user_data_dir()


def data_fingerprint(task: Task) -> str:
    """SHA-256 hex digest over ``task.data_files()``: each file's name relative to the task folder and its bytes,
    in name order. Cached per process (the files are read-only inputs; DialogSum alone is 12 MB)."""
    root = task.data_dir.resolve()
    named = sorted((path.resolve().relative_to(root).as_posix(), str(path.resolve())) for path in task.data_files())
    return _fingerprint(tuple(named))


@functools.cache
def _fingerprint(named_files: tuple[tuple[str, str], ...]) -> str:
    digest = hashlib.sha256()
    for name, path in named_files:
        content = require_file(Path(path)).read_bytes()
        encoded = name.encode("utf-8")
        # Length-prefix both parts so that no two different file sets hash the same byte stream.
        digest.update(len(encoded).to_bytes(8, "big") + encoded + len(content).to_bytes(8, "big"))
        digest.update(content)
    return digest.hexdigest()
