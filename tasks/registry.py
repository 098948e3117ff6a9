"""The task registry: the built-in adapters, where the data lives, and a fingerprint of a task's files."""
from __future__ import annotations

import functools
import hashlib
import importlib
from pathlib import Path

from benchmark.core.registry import Registry
from tasks.base import Task, require_file

__all__ = ["TASKS", "BUILTIN_TASK_MODULES", "load_tasks", "data_fingerprint"]

TASKS: Registry[type[Task]] = Registry("task", name_attribute="name")
# Modules whose import registers the built-in tasks (each decorates its class with @TASKS.register).
BUILTIN_TASK_MODULES = ("tasks.qed", "tasks.squad", "tasks.fairytaleqa", "tasks.pubmedqa", "tasks.dialogsum")


def load_tasks() -> Registry[type[Task]]:
    """Import the built-in adapters (registering them once) and return the registry."""
    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(module)
    return TASKS


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
