"""Task adapters: ``tasks.load("qed")`` gives a ready task; ``TASKS`` (``tasks.registry``) lists them all."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.base import Task


def load(name: str, data_dir: str | Path | None = None) -> Task:
    """The task registered as ``name`` (or an alias) reading ``data_dir``; by default the run's data directory
    (``$CTKD_DATA_DIR``, ``../shared/data`` or the per-user folder ``run_bench.py data`` fetches into). Unknown
    names and missing folders raise one-line errors naming what is accepted."""
    from benchmark.core.paths import resolve_data_dir
    from tasks.registry import load_tasks

    return load_tasks().get(name)(resolve_data_dir(data_dir))
