"""Scan a result store (``<root>/<task>/<pair>/<method>/seed<k>/``) into records; read-only.

A cell is complete iff it holds ``DONE``; only complete cells carry scores. A cell without ``DONE`` but with
``FAILED.json`` is a failure to report (``DONE`` wins when both exist: the failure is from an earlier attempt).
Any other cell is in progress and ignored. Hidden entries and directories not named ``seed<int>`` at the seed
level are not cells, so files written beside the cells (leaderboards, ``skipped_pairs.json``) never interfere.

A complete cell whose files are missing or disagree with its directory raises :class:`StoreError`: a leaderboard
built over a corrupt store would print numbers nobody can trust.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from benchmark.results import failure_reason

# Reserved method names: the reference rows the runner stores beside the distillation methods.
TEACHER = "teacher"
UNTRAINED = "untrained"
SFT = "sft"

_SEED_DIR = re.compile(r"seed(\d+)")


class StoreError(ValueError):
    """A complete cell or store-level file that cannot be read as the store format requires."""


@dataclass(frozen=True)
class CellRecord:
    """One complete cell: its coordinates, its raw metric values (0-100 scale) and what identifies its config."""

    task: str
    pair: str
    method: str
    seed: int
    config_hash: str
    headline_metric: str
    metrics: dict[str, float]
    wall_time_s: float | None
    train_s_per_step: float | None = None  # training wall time per optimizer step (None: no training)
    peak_memory_mb: float | None = None  # the cell's peak (GPU allocated or CPU resident), from run.json


@dataclass(frozen=True)
class FailedCell:
    task: str
    pair: str
    method: str
    seed: int
    reason: str


@dataclass(frozen=True)
class SkippedPair:
    pair: str
    reason: str


@dataclass(frozen=True)
class StoreScan:
    """Everything the leaderboards read from one store, in a deterministic (sorted) order."""

    root: Path
    cells: tuple[CellRecord, ...]
    failed: tuple[FailedCell, ...]
    skipped: tuple[SkippedPair, ...]
    headline_metrics: dict[str, str]  # task -> its headline metric, the same for every cell of the task


def scan_store(root: str | Path) -> StoreScan:
    """Read every cell under ``root`` and ``root/skipped_pairs.json``; raise :class:`StoreError` on corrupt data."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"result store directory {root} does not exist")
    cells: list[CellRecord] = []
    failed: list[FailedCell] = []
    for task, pair, method, seed, cell_dir in _cell_dirs(root):
        if (cell_dir / "DONE").exists():
            cells.append(_read_cell(cell_dir, task, pair, method, seed))
        elif (cell_dir / "FAILED.json").exists():
            failed.append(FailedCell(task, pair, method, seed, failure_reason(cell_dir)))
    return StoreScan(root, tuple(cells), tuple(failed), _read_skipped(root), _headline_metrics(cells))


def _subdirs(path: Path) -> Iterator[Path]:
    yield from (p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith("."))


def _cell_dirs(root: Path) -> Iterator[tuple[str, str, str, int, Path]]:
    for task_dir in _subdirs(root):
        for pair_dir in _subdirs(task_dir):
            for method_dir in _subdirs(pair_dir):
                seed_dirs = [(int(m.group(1)), d) for d in _subdirs(method_dir) if (m := _SEED_DIR.fullmatch(d.name))]
                for seed, seed_dir in sorted(seed_dirs):
                    yield task_dir.name, pair_dir.name, method_dir.name, seed, seed_dir


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{path} is not valid JSON: {error}") from None


def _read_cell(cell_dir: Path, task: str, pair: str, method: str, seed: int) -> CellRecord:
    config_file = cell_dir / "config.json"
    stored = _read_json(config_file)
    config = stored.get("config") if isinstance(stored, dict) else None
    if not isinstance(config, dict) or not isinstance(stored.get("hash"), str):
        raise StoreError(f"{config_file} must be an object with a string 'hash' and a 'config' object")
    # The directory names the cell; a config that says otherwise means files were moved or mixed up.
    for key, expected in (("task", task), ("pair", pair), ("method", method), ("seed", seed)):
        if key in config and config[key] != expected:
            raise StoreError(f"{config_file}: config {key} {config[key]!r} does not match its directory ({expected!r})")
    if (config.get("role") == TEACHER) != (method == TEACHER):
        raise StoreError(f"{config_file}: role {config.get('role')!r} does not fit method {method!r}")
    headline = config.get("headline_metric")
    if not isinstance(headline, str):
        raise StoreError(f"{config_file}: config has no 'headline_metric'")
    metrics = _read_metrics(cell_dir / "metrics.json")
    if headline not in metrics:
        raise StoreError(f"{config_file}: headline metric {headline!r} is not among metrics {sorted(metrics)}")
    return CellRecord(task, pair, method, seed, stored["hash"], headline, metrics, **_costs(cell_dir / "run.json"))


def _read_metrics(path: Path) -> dict[str, float]:
    metrics = _read_json(path)
    if not isinstance(metrics, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise StoreError(f"{path} must map metric names to numbers")
    return {name: float(value) for name, value in sorted(metrics.items())}


def _costs(path: Path) -> dict[str, float | None]:
    """Wall time, training time per step and peak memory from ``run.json``; each optional, as is the file itself
    (a present but unreadable file is still an error). A resumed cell's step time counts only the steps it ran."""
    run = _read_json(path) if path.exists() else {}
    run = run if isinstance(run, dict) else {}
    train = run.get("train") if isinstance(run.get("train"), dict) else {}
    steps_run = (_finite(train.get("steps")) or 0) - (_finite(train.get("resumed_from_step")) or 0)
    train_wall = _finite(train.get("wall_time_s"))
    return {
        "wall_time_s": _finite(run.get("wall_time_s")),
        "train_s_per_step": train_wall / steps_run if train_wall is not None and steps_run > 0 else None,
        "peak_memory_mb": _finite(run.get("peak_memory_mb")),
    }


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _read_skipped(root: Path) -> tuple[SkippedPair, ...]:
    path = root / "skipped_pairs.json"
    if not path.exists():
        return ()
    entries = _read_json(path)
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "pair" in e for e in entries):
        raise StoreError(f"{path} must be a list of objects with 'pair' and 'reason'")
    skipped = (SkippedPair(str(e["pair"]), str(e.get("reason", ""))) for e in entries)
    return tuple(sorted(skipped, key=lambda s: (s.pair, s.reason)))


def _headline_metrics(cells: list[CellRecord]) -> dict[str, str]:
    headline: dict[str, str] = {}
    for cell in cells:
        if headline.setdefault(cell.task, cell.headline_metric) != cell.headline_metric:
            raise StoreError(
                f"task {cell.task!r} has two headline metrics, {headline[cell.task]!r} and {cell.headline_metric!r} "
                f"(seen in {cell.pair}/{cell.method}/seed{cell.seed})"
            )
    return dict(sorted(headline.items()))
